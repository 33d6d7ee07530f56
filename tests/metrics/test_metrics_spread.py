"""metrics.probabilistic.spread against exact values and the calibration identity it is built
for, and the config errors of model.sde.make_sde."""

import numpy as np
import pytest

from diffclosure.config import ConfigError
from diffclosure.metrics.probabilistic import spread, spread_skill
from diffclosure.model.sde import make_sde


def test_two_members_exact():
    # members r +- a: unbiased variance 2a^2, M = 2, spread = sqrt(2a^2 * 3/2) = a sqrt(3)
    rng = np.random.default_rng(0)
    r = rng.standard_normal((3, 4, 8, 8))
    a = 0.25
    v = np.stack([r + a, r - a], axis=1)  # (state, member, time, y, x)
    per = spread(v, axis=1, over=(-2, -1))
    assert per.shape == (3, 4)
    assert np.allclose(per, a * np.sqrt(3.0), rtol=1e-12)
    assert spread(v, axis=1) == pytest.approx(a * np.sqrt(3.0), rel=1e-12)


def test_grid_average_is_of_the_variance_not_the_std():
    # half the grid with members +-1, half with +-3 (M = 2): mean variance (2 + 18)/2 = 10
    ens = np.zeros((2, 4, 4))
    ens[0, :2], ens[1, :2] = 1.0, -1.0
    ens[0, 2:], ens[1, 2:] = 3.0, -3.0
    assert spread(ens, over=(-2, -1)) == pytest.approx(np.sqrt(10 * 1.5), rel=1e-12)


def test_calibrated_ensemble_spread_equals_skill():
    # obs and M members iid N(0, 4): E(mean - y)^2 = 4 (1 + 1/M) = spread^2 in expectation
    rng = np.random.default_rng(1)
    m, k = 5, 200_000
    ens, obs = 2.0 * rng.standard_normal((m, k)), 2.0 * rng.standard_normal(k)
    ss = spread_skill(ens, obs)
    assert ss.spread == pytest.approx(2.0 * np.sqrt(1.2), rel=0.01)
    assert ss.ratio == pytest.approx(1.0, abs=0.01)


def test_one_member_has_no_spread():
    with pytest.raises(ValueError, match="at least 2 members"):
        spread(np.zeros((1, 4, 4)))


def test_make_sde_errors_name_the_field():
    assert make_sde({"kind": "ve", "s": 26.0}).s == 26.0
    with pytest.raises(ConfigError, match=r"^sde.kind: unknown SDE 'vp'; choose one of"):
        make_sde({"kind": "vp"})
    with pytest.raises(ConfigError, match=r"^sde.s: must exceed 1"):
        make_sde({"kind": "ve", "s": 0.5})
