"""Bootstrap confidence intervals of a-posteriori scores, and rankings that respect them.

A rollout's score comes from a few initial states, each with a few ensemble members. The units of
the bootstrap are the initial states, and within each drawn state its members (a two-stage,
hierarchical bootstrap): states are drawn with replacement, and for each drawn state its members
are drawn with replacement. The reference of a state (the filtered DNS from the same initial
state) goes with it, so a score against the reference is resampled paired.

The interval is the percentile interval of the resampled scores. A ranking by such scores counts
only differences the intervals resolve: a closure's rank is one plus the number of closures whose
whole interval lies below its own, so closures with overlapping intervals tie.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

LEVEL = 0.95
DRAWS = 1000


def hierarchical_draws(states: int, members: int, draws: int = DRAWS,
                       seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """`draws` resamples (state indices (S,), member indices (S, M)): the states drawn with
    replacement, then each drawn state's members with replacement. The same seed gives the
    same draws, and the state draws do not depend on `members`: closures with different
    ensemble sizes resampled with one seed are paired state by state."""
    state_seq, member_seq = np.random.SeedSequence(seed).spawn(2)
    rng_s, rng_m = np.random.default_rng(state_seq), np.random.default_rng(member_seq)
    for _ in range(draws):
        s = rng_s.integers(0, states, states)
        m = rng_m.integers(0, members, (states, members))
        yield s, m


def percentile_interval(values, level: float = LEVEL) -> tuple[float, float]:
    """The central `level` interval of the finite `values` ((nan, nan) when none are)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not v.size:
        return float("nan"), float("nan")
    tail = 50.0 * (1.0 - level)
    lo, hi = np.percentile(v, [tail, 100.0 - tail])
    return float(lo), float(hi)


def interval(score: Callable[[np.ndarray, np.ndarray], float], states: int, members: int,
             draws: int = DRAWS, seed: int = 0, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of `score(state_idx, member_idx)` over hierarchical resamples."""
    return percentile_interval(
        [score(s, m) for s, m in hierarchical_draws(states, members, draws, seed)], level)


def similarity(distance: float, distance_none: float) -> float:
    """The pyqg benchmark's similarity 1 - D(closure) / D(no closure): 1 for a closure that
    matches the reference, 0 for one no better than no closure, < 0 for a worse one."""
    if not np.isfinite(distance) or not np.isfinite(distance_none) or distance_none <= 0:
        return float("nan")
    return 1.0 - distance / distance_none


def ranks_with_ties(intervals: list[tuple[float, float]],
                    higher_is_better: bool = False) -> list[int]:
    """Rank of each (lo, hi) interval: 1 + how many others are better beyond doubt (their whole
    interval below this one's lower end; above its upper end when higher is better). Overlapping
    intervals tie. An interval with a nan end (a score that does not exist) ranks last."""
    valid = [np.isfinite(lo) and np.isfinite(hi) for lo, hi in intervals]
    ranks = []
    for i, (lo, hi) in enumerate(intervals):
        if not valid[i]:
            ranks.append(sum(valid) + 1)
            continue
        better = 0
        for j, (lo_j, hi_j) in enumerate(intervals):
            if j == i or not valid[j]:
                continue
            better += (lo_j > hi) if higher_is_better else (hi_j < lo)
        ranks.append(better + 1)
    return ranks
