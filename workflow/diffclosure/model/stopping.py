"""When training stops: at a measured plateau of a validation metric, or at the epoch bound.

The rule (train.plateau) reads only one column of the history (`metric`: the validation loss, or
the a-priori D_Fro of the rollout's sampler on validation states that train.monitor records), so
it is a pure function of history.csv: a run resumed after a kill takes the same decision at the
same epoch, and a run that stopped at its plateau does not train further when it is resumed.

    stop after epoch e  if  window > 0, e > window  and
        min(metric[e-window+1 .. e]) >= (1 - margin) * min(metric[1 .. e-window])

(minima over the finite values; a monitor metric, measured every train.monitor.every epochs, is
judged only at the epochs where it was) in words: the best value of the last
`window` epochs is not lower than the best before them by more than the fraction `margin`. The
weights kept are those of the best epoch by the same metric (EMA weights), not of the last one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Plateau:
    """train.plateau: `window` epochs (0 = never stop early), relative `margin`."""

    window: int = 0
    margin: float = 0.01
    metric: str = "val_loss"

    @classmethod
    def from_config(cls, section: dict) -> Plateau:
        """The rule of a train or distill section (schema defaults: no window, 1%, the
        validation loss)."""
        rule = section.get("plateau") or {}
        return cls(int(rule.get("window", 0)), float(rule.get("margin", 0.01)),
                   str(rule.get("metric", "val_loss")))

    @property
    def what(self) -> str:
        return METRICS.get(self.metric, self.metric)

    def describe(self) -> str:
        if self.window <= 0:
            return "no plateau rule (train.plateau.window 0): the epoch bound decides"
        return (f"stop when {self.what} has not improved by more than "
                f"{100 * self.margin:g}% in {self.window} epochs")


METRICS = {"val_loss": "the validation loss",
           "apriori_dfro_mean": "the a-priori D_Fro of the ensemble mean on validation states"}


def best_epoch(history: list[dict], metric: str = "val_loss") -> tuple[int, float]:
    """(epoch, value) of the lowest finite `metric` (a history column); the first such epoch on
    ties. (0, inf) for a history without one."""
    best, best_val = 0, math.inf
    for row in history:
        val = float(row.get(metric, math.nan))
        if math.isfinite(val) and val < best_val:
            best, best_val = int(row["epoch"]), val
    return best, best_val


def plateau_reached(history: list[dict], rule: Plateau) -> str | None:
    """Why training stops after the last epoch of `history` by the plateau rule, or None."""
    w = rule.window
    if w <= 0 or len(history) <= w:
        return None
    if rule.metric != "val_loss" and not math.isfinite(
            float(history[-1].get(rule.metric, math.nan))):
        return None  # a monitor metric is judged only where it was measured
    _, before = best_epoch(history[:-w], rule.metric)
    recent_epoch, recent = best_epoch(history[-w:], rule.metric)
    if not math.isfinite(before) or (recent_epoch and recent < (1.0 - rule.margin) * before):
        return None
    return (f"plateau: the best {rule.what.removeprefix('the ')} of epochs {history[-w]['epoch']}-"
            f"{history[-1]['epoch']} ({_fmt(recent)}) is not {100 * rule.margin:g}% below the "
            f"best before them ({_fmt(before)})")


def stop_reason(history: list[dict], rule: Plateau, epochs: int) -> str | None:
    """Why training stops after the last epoch of `history` (plateau or epoch bound), or None
    when it goes on."""
    reason = plateau_reached(history, rule)
    if reason:
        return reason
    if history and int(history[-1]["epoch"]) >= epochs:
        return f"epoch bound: train.epochs = {epochs} reached before a plateau"
    return None


def first_stop(history: list[dict], rule: Plateau, epochs: int) -> tuple[int, str | None]:
    """(epochs to keep, reason): the first epoch of `history` after which the rule stops, or
    (len(history), None) when it never does. A resumed run cut there takes no further step."""
    for e in range(1, len(history) + 1):
        reason = stop_reason(history[:e], rule, epochs)
        if reason:
            return e, reason
    return len(history), None


def _fmt(x: float) -> str:
    return f"{x:.4g}"
