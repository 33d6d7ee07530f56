"""The a-posteriori calibration's pieces: which validation states start it, and the ratio it
divides the a-priori factor by."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from diffclosure.config import ConfigError
from diffclosure.rollout.calibration import posterior_ratio, validation_states


def cfg(target="H", states=6, duration=1.0, rollout_duration=2.0):
    return {"dns": {"spinup": 40.0, "duration": 5.0, "record_every": 0.1},
            "coarse": {"target": target},
            "rollout": {"start": 45.0, "duration": rollout_duration,
                        "calibration": {"states": states, "duration": duration}}}


TIMES = 40.0 + 0.1 * np.arange(51)
STATS = {"split": {"train": [0, 1], "val": [7, 3, 9], "test": [4, 5]}}


def test_validation_states_walk_back_from_the_rollout_start():
    assert validation_states(cfg(), STATS, TIMES) == [
        (7, 45.0), (3, 45.0), (9, 45.0), (7, 44.0), (3, 44.0), (9, 44.0)]
    # the rollout's own duration apart when the calibration's is null; never before the records
    two = validation_states(cfg(states=20, duration=None), STATS, TIMES)
    assert sorted({t for _, t in two}) == pytest.approx([41.0, 43.0, 45.0])
    assert all(i in STATS["split"]["val"] for i, _ in two)


def test_sgs_calibrates_from_the_rollout_start_only(caplog):
    """The sgs reference is the filtered DNS after the start: no earlier start has one."""
    with caplog.at_level(logging.WARNING, logger="diffclosure"):
        states = validation_states(cfg("sgs"), STATS, TIMES)
    assert states == [(7, 45.0), (3, 45.0), (9, 45.0)]
    assert "6 asked, 3 validation states" in caplog.text


def test_no_validation_trajectory_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match="dataset.val_trajectories"):
        validation_states(cfg(), {"split": {"val": [], "test": [1]}}, TIMES)


def test_posterior_ratio_of_a_too_narrow_ensemble():
    """Members mu + c z_m and a reference mu + z, z i.i.d. N(0, 1): the size-corrected spread is
    c sqrt((M + 1) / M), the ensemble mean's rms error sqrt(1 + c^2 / M), so spread/skill is
    their ratio (1 for c = 1), at every record; NaN records end the list."""
    rng = np.random.default_rng(3)
    S, M, T, n = 6, 4, 5, 32
    mu = rng.standard_normal((S, 1, T, n, n))
    for c in (1.0, 0.5):
        members = mu + c * rng.standard_normal((S, M, T, n, n))
        ref = mu[:, 0] + rng.standard_normal((S, T, n, n))
        ratio, ratios = posterior_ratio(members, ref)
        assert len(ratios) == T - 1
        want = c * np.sqrt((M + 1) / M) / np.sqrt(1 + c**2 / M)
        assert ratio == pytest.approx(want, rel=0.03)
        assert ratio == pytest.approx(float(np.exp(np.mean(np.log(ratios)))))
    members[:, :, 3] = np.nan  # a blow-up before the fourth record
    ratio, ratios = posterior_ratio(members, ref)
    assert len(ratios) == 2
    assert np.isnan(posterior_ratio(members[:, :, [0, 3]], ref[:, [0, 3]])[0])
