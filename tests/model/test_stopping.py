"""The plateau rule on synthetic loss curves: where it stops, which epoch it keeps, and that a
history cut anywhere takes the same decision (what a resumed run relies on)."""

import math

import pytest

from diffclosure.model.stopping import Plateau, best_epoch, first_stop, stop_reason


def history(values):
    return [{"epoch": i + 1, "val_loss": v} for i, v in enumerate(values)]


def decay_then_flat(knee: int, total: int, floor: float = 1.0):
    """A loss that halves every 5 epochs down to `floor` at epoch `knee`, then wobbles by
    +-0.2% around it."""
    out = []
    for e in range(1, total + 1):
        out.append(floor * (2.0 ** ((knee - e) / 5)) if e < knee
                   else floor * (1 + 0.002 * (-1) ** e))
    return out


@pytest.mark.parametrize(("knee", "window"), [(30, 10), (30, 20), (55, 7)])
def test_stops_window_epochs_after_the_last_real_improvement(knee, window):
    curve = decay_then_flat(knee, 200)
    rule = Plateau(window=window, margin=0.01)
    stop, reason = first_stop(history(curve), rule, epochs=200)
    # Halving every 5 epochs is ~13% per epoch; at the knee the curve reaches its floor, 13%
    # below epoch knee - 1, and then wobbles by 0.2%: the knee is the last epoch that gains
    # more than 1%, and the rule stops once `window` epochs after it have passed without one.
    assert stop == knee + window
    assert reason.startswith("plateau")
    epoch, value = best_epoch(history(curve[:stop]))
    assert value == min(curve[:stop]) and curve[epoch - 1] == value


def test_a_steady_slow_decline_is_not_a_plateau_until_it_slows_below_the_margin():
    # 2% per epoch for 50 epochs, then 0.5% per epoch: with a 1% margin over 4 epochs the
    # first phase never stops (4 epochs gain ~8%); the second gains 2% in 4 epochs, also
    # enough; over 2 epochs it gains 1.0%, just not more than the margin.
    curve = [0.98**e for e in range(50)] + [0.98**49 * 0.995**e for e in range(1, 100)]
    assert first_stop(history(curve), Plateau(window=4, margin=0.01), 500)[0] == len(curve)
    stop, reason = first_stop(history(curve), Plateau(window=2, margin=0.01), 500)
    assert stop == 52 and reason.startswith("plateau")


def test_the_epoch_bound_stops_when_the_plateau_does_not():
    curve = [0.9**e for e in range(40)]
    stop, reason = first_stop(history(curve), Plateau(window=5, margin=0.01), epochs=40)
    assert stop == 40 and reason.startswith("epoch bound")
    assert stop_reason(history(curve[:39]), Plateau(window=5, margin=0.01), 40) is None


def test_window_zero_never_stops_early():
    curve = [1.0] * 30
    assert first_stop(history(curve), Plateau(window=0, margin=0.01), 30) == (
        30, "epoch bound: train.epochs = 30 reached before a plateau")


def test_non_finite_losses_never_count_as_improvement():
    curve = [5.0, 4.0, math.nan, math.nan, math.nan]
    assert best_epoch(history(curve)) == (2, 4.0)
    assert stop_reason(history(curve), Plateau(window=3, margin=0.0), 100).startswith("plateau")


def test_the_decision_ignores_whatever_would_come_after_it():
    """What a resumed run relies on: losses after the stop (here: a late drop that a longer
    run would have seen) change nothing up to it."""
    curve = decay_then_flat(20, 80)
    rule = Plateau(window=10, margin=0.01)
    stop, reason = first_stop(history(curve), rule, 80)
    late_drop = curve[:stop] + [0.1 * v for v in curve[stop:]]
    assert first_stop(history(late_drop), rule, 80) == (stop, reason)


def monitored(values, every=10):
    """A history whose a-priori metric is measured every `every` epochs (NaN between), as
    train.monitor records it; the validation loss alongside is only computed there too."""
    rows = []
    for i, v in enumerate(values):
        e = i + 1
        due = e % every == 0
        rows.append({"epoch": e, "val_loss": v * 30 if due else math.nan,
                     "apriori_dfro_mean": v if due else math.nan})
    return rows


def test_a_monitor_metric_is_judged_only_where_it_was_measured():
    """D_Fro falls 5% per check to epoch 100, then 0.5%: with a 20-epoch window and a 2%
    margin the rule stops at the first check whose last two checks gain less than 2% (epoch
    120), never between checks, and keeps the best measured epoch."""
    curve = []
    for e in range(1, 201):
        checks = e // 10
        curve.append(0.95 ** min(checks, 10) * 0.995 ** max(checks - 10, 0))
    rule = Plateau(window=20, margin=0.02, metric="apriori_dfro_mean")
    stop, reason = first_stop(monitored(curve), rule, 300)
    assert stop == 120 and "a-priori D_Fro" in reason
    assert best_epoch(monitored(curve)[:stop], "apriori_dfro_mean") == (120, curve[119])
    # the validation loss rule would read its own column, measured at the same checks only
    assert Plateau.from_config({"plateau": {"window": 20, "metric": "apriori_dfro_mean"}}) \
        .metric == "apriori_dfro_mean"
    for e in range(101, 120):  # between checks nothing is decided
        assert stop_reason(monitored(curve)[:e], rule, 300) is None

