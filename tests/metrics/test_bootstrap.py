"""Bootstrap intervals, similarity and rankings with ties (metrics.bootstrap)."""

import math

import numpy as np
import pytest

from diffclosure.metrics import bootstrap


def test_the_interval_covers_a_known_mean_at_about_the_nominal_rate():
    """Samples of N(mu, 1) as 'states': the 95% interval of their mean covers mu in about 95%
    of repeated experiments (the percentile bootstrap under-covers a little at n = 30)."""
    rng = np.random.default_rng(0)
    mu, n, trials, covered = 0.7, 30, 300, 0
    for trial in range(trials):
        x = mu + rng.standard_normal(n)
        lo, hi = bootstrap.interval(lambda s, m, x=x: float(x[s].mean()), n, 1, draws=400,
                                    seed=trial)
        covered += lo <= mu <= hi
    rate = covered / trials
    # Binomial sd at 0.95 over 300 trials: 0.013; the bootstrap's own bias at n = 30: ~0.01.
    assert 0.89 <= rate <= 0.985, rate


def test_hierarchical_draws_pair_states_across_ensemble_sizes_and_repeat_with_the_seed():
    a = list(bootstrap.hierarchical_draws(5, 1, draws=20, seed=3))
    b = list(bootstrap.hierarchical_draws(5, 8, draws=20, seed=3))
    c = list(bootstrap.hierarchical_draws(5, 8, draws=20, seed=3))
    assert all(np.array_equal(sa, sb) for (sa, _), (sb, _) in zip(a, b, strict=True))
    assert all(np.array_equal(mb, mc) for (_, mb), (_, mc) in zip(b, c, strict=True))
    assert b[0][1].shape == (5, 8) and b[0][1].max() < 8
    # Not every draw is the identity: the states are resampled.
    assert any(len(np.unique(s)) < 5 for s, _ in a)


def test_similarity_is_one_for_the_reference_and_zero_for_no_closure():
    assert bootstrap.similarity(0.0, 0.4) == 1.0
    assert bootstrap.similarity(0.4, 0.4) == 0.0
    assert bootstrap.similarity(0.8, 0.4) == pytest.approx(-1.0)
    assert math.isnan(bootstrap.similarity(0.1, 0.0))


def test_overlapping_intervals_tie_and_separated_ones_do_not():
    ivs = [(0.1, 0.3), (0.2, 0.4), (0.5, 0.6), (math.nan, math.nan)]
    assert bootstrap.ranks_with_ties(ivs) == [1, 1, 3, 4]
    # Higher is better: the interval above all others is first.
    assert bootstrap.ranks_with_ties(ivs, higher_is_better=True) == [2, 2, 1, 4]
    # Equal points measured once tie; different ones do not.
    assert bootstrap.ranks_with_ties([(7.0, 7.0), (7.0, 7.0), (2.0, 2.0)], True) == [1, 1, 3]


def test_percentile_interval_ignores_non_finite_draws():
    lo, hi = bootstrap.percentile_interval([np.nan, *np.linspace(0, 1, 1001), np.inf])
    assert lo == pytest.approx(0.025) and hi == pytest.approx(0.975)
    assert all(math.isnan(v) for v in bootstrap.percentile_interval([np.nan]))
