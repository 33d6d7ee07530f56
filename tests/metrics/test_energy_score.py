"""The energy score of field ensembles (metrics.probabilistic.energy_score)."""

import numpy as np
import pytest

from diffclosure.metrics.probabilistic import crps, energy_score


def test_for_one_point_the_energy_score_is_the_crps():
    rng = np.random.default_rng(0)
    ens, obs = rng.standard_normal((6, 50, 1, 1)), rng.standard_normal((50, 1, 1))
    for fair in (True, False):
        np.testing.assert_allclose(energy_score(ens, obs, fair=fair),
                                   crps(ens, obs, fair=fair)[:, 0, 0], rtol=1e-12)


def test_one_member_scores_its_rms_error():
    rng = np.random.default_rng(1)
    member, obs = rng.standard_normal((1, 3, 8, 8)), rng.standard_normal((3, 8, 8))
    want = np.sqrt(np.mean((member[0] - obs) ** 2, axis=(-2, -1)))
    np.testing.assert_allclose(energy_score(member, obs), want)


def test_the_fair_score_does_not_depend_on_the_ensemble_size_and_the_plain_one_does():
    """Members and observation from one law: the fair score estimates the same number with 2
    members as with 16; the plain score of 2 members is too high (it counts i = j pairs)."""
    rng = np.random.default_rng(2)
    trials, d = 4000, 16
    obs = rng.standard_normal((trials, d, 1))
    ens = rng.standard_normal((16, trials, d, 1))
    fair2, fair16 = (energy_score(ens[:m], obs).mean() for m in (2, 16))
    plain2 = energy_score(ens[:2], obs, fair=False).mean()
    se = energy_score(ens[:2], obs).std() / np.sqrt(trials)
    assert abs(fair2 - fair16) < 4 * se
    assert plain2 - fair16 > 10 * se


@pytest.mark.parametrize("wrong", ["narrow", "wide", "biased", "uncorrelated"])
def test_the_true_law_scores_best_in_expectation(wrong):
    """Propriety, including the spatial structure: members whose points are independent score
    worse than members with the observation's correlations, at the same pointwise law."""
    rng = np.random.default_rng(3)
    trials, d, m = 3000, 12, 8
    corr = 0.8 ** np.abs(np.subtract.outer(np.arange(d), np.arange(d)))
    chol = np.linalg.cholesky(corr)

    def draw(shape):
        return rng.standard_normal(shape + (d,)) @ chol.T

    obs = draw((trials,))[..., None]
    true = draw((m, trials))[..., None]
    other = {"narrow": 0.5 * draw((m, trials)), "wide": 2.0 * draw((m, trials)),
             "biased": 0.7 + draw((m, trials)),
             "uncorrelated": rng.standard_normal((m, trials, d))}[wrong][..., None]
    diff = energy_score(other, obs) - energy_score(true, obs)
    assert diff.mean() > 4 * diff.std() / np.sqrt(trials)
