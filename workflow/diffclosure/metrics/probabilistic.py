"""Scores of ensembles against an observation: CRPS, the energy score, spread, spread/skill, the
Gaussian CRPS, rank histograms.

An ensemble array holds members along `axis`; the observation has the ensemble's shape without
that axis. Results are pointwise (obs-shaped) unless stated; average them as needed.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy.special import erf

from diffclosure.metrics.fields import as_numpy


def crps(ensemble, obs, axis: int = 0, fair: bool = False) -> np.ndarray:
    """CRPS of an ensemble, energy form E|X - y| - 1/2 E|X - X'| (exact for M members).

    E|X - X'| over all M^2 ordered pairs (including i = j) is the CRPS of the ensemble's
    empirical distribution. `fair=True` divides the pair sum by M(M-1) instead, the unbiased
    estimate of the CRPS of the distribution the members are drawn from (Ferro 2014).
    The pair sum uses the sorted members: sum_ij |x_i - x_j| = 2 sum_i (2i - M - 1) x_(i).
    """
    ens = np.moveaxis(as_numpy(ensemble).astype(np.float64), axis, 0)
    y = as_numpy(obs).astype(np.float64)
    m = ens.shape[0]
    skill = np.mean(np.abs(ens - y[None]), axis=0)
    if m == 1:
        return skill
    srt = np.sort(ens, axis=0)
    weights = (2.0 * np.arange(1, m + 1) - m - 1).reshape((m,) + (1,) * (srt.ndim - 1))
    pair_sum = 2.0 * np.sum(weights * srt, axis=0)
    pairs = m * (m - 1) if fair else m * m
    return skill - 0.5 * pair_sum / pairs


def energy_score(ensemble, obs, axis: int = 0, over=(-2, -1), fair: bool = True) -> np.ndarray:
    """Energy score E||X - y|| - 1/2 E||X - X'|| of an ensemble of fields (Gneiting & Raftery
    2007): the CRPS of a whole field at once, so it also rewards members with the right spatial
    structure, which pointwise scores cannot see.

    ||.|| is the RMS over the axes `over` of the observation (the Euclidean norm / sqrt(d)), so
    the score is in the field's units and equals the CRPS for d = 1. `fair=True` averages the
    member pairs over M(M-1) (i != j), the unbiased estimate for the distribution the members
    are drawn from; one member scores its RMS error. Returns obs's shape without `over`.
    """
    ens = np.moveaxis(as_numpy(ensemble).astype(np.float64), axis, 0)
    y = as_numpy(obs).astype(np.float64)
    over = tuple(a % y.ndim for a in ((over,) if isinstance(over, int) else over))
    ens_over = tuple(a + 1 for a in over)
    m = ens.shape[0]
    skill = np.mean(np.sqrt(np.mean((ens - y[None]) ** 2, axis=ens_over)), axis=0)
    if m == 1:
        return skill
    pair_sum = 0.0
    for i in range(m):
        for j in range(i + 1, m):
            pair_sum = pair_sum + 2.0 * np.sqrt(np.mean((ens[i] - ens[j]) ** 2, axis=over))
    pairs = m * (m - 1) if fair else m * m
    return skill - 0.5 * pair_sum / pairs


def crps_gaussian(mean, std, obs) -> np.ndarray:
    """Closed-form CRPS of N(mean, std^2) at obs: std [z(2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)]."""
    mean, std, obs = (as_numpy(a).astype(np.float64) for a in (mean, std, obs))
    z = (obs - mean) / std
    cdf = 0.5 * (1.0 + erf(z / math.sqrt(2.0)))
    dens = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return std * (z * (2.0 * cdf - 1.0) + 2.0 * dens - 1.0 / math.sqrt(math.pi))


def spread(ensemble, axis: int = 0, over: int | tuple[int, ...] | None = None):
    """Ensemble spread sqrt(mean(var) * (M+1)/M), var the unbiased variance over the members.

    The (M+1)/M factor makes spread comparable with the RMSE of the ensemble mean (see
    `spread_skill`). The variance, obs-shaped, is averaged over the axes `over` of that shape
    before the root (None: over all of it, giving a float); e.g. members on axis 1 of
    (state, member, time, y, x) with over=(-2, -1) gives one spread per (state, time).
    """
    ens = np.moveaxis(as_numpy(ensemble).astype(np.float64), axis, 0)
    m = ens.shape[0]
    if m < 2:
        raise ValueError("spread needs an ensemble of at least 2 members")
    var = np.mean(np.var(ens, axis=0, ddof=1), axis=over)
    return np.sqrt(var * (m + 1) / m) if over is not None else math.sqrt(var * (m + 1) / m)


class SpreadSkill(NamedTuple):
    spread: float  # sqrt of the mean unbiased member variance, times sqrt((M+1)/M)
    skill: float  # RMSE of the ensemble mean
    ratio: float  # spread / skill; 1 for a calibrated ensemble


def spread_skill(ensemble, obs, axis: int = 0) -> SpreadSkill:
    """Spread/skill of an ensemble, averaged over every point (and sample) of `obs`.

    If the observation is one more draw from the members' distribution (variance s^2), the
    ensemble mean misses it by E(mean - y)^2 = s^2 (1 + 1/M), while the unbiased member
    variance estimates s^2. Spread is therefore reported as sqrt(var * (M+1)/M), so that
    spread/skill -> 1 for a calibrated ensemble of any size M (Fortin et al. 2014).
    """
    ens = np.moveaxis(as_numpy(ensemble).astype(np.float64), axis, 0)
    y = as_numpy(obs).astype(np.float64)
    if ens.shape[0] < 2:
        raise ValueError("spread_skill needs an ensemble of at least 2 members")
    sp = spread(ens)
    skill = math.sqrt(float(np.mean((ens.mean(axis=0) - y) ** 2)))
    return SpreadSkill(sp, skill, sp / skill if skill > 0 else math.inf)


def rank_histogram(ensemble, obs, axis: int = 0) -> np.ndarray:
    """Counts (M+1,) of the observation's rank among the M members, over every point of `obs`.

    The rank is the number of members below the observation (0 ... M). Exchangeable members and
    observation make every rank equally likely (flat); too little spread puts the observation
    outside the members too often (U shape), too much spread gives a dome. A point where the
    observation ties with members (a deterministic or clipped field) spreads its count evenly
    over every rank it could take, so ties neither pile up in one bin nor need a random draw.
    Points where the observation or a member is not finite (a blow-up) are left out.
    """
    ens = np.moveaxis(as_numpy(ensemble).astype(np.float64), axis, 0)
    y = as_numpy(obs).astype(np.float64)
    m = ens.shape[0]
    ok = np.isfinite(y) & np.isfinite(ens).all(axis=0)
    ens, y = ens[:, ok], y[ok]
    below = np.sum(ens < y, axis=0)
    ties = np.sum(ens == y, axis=0)
    share = 1.0 / (ties + 1.0)
    return np.array([np.sum(share[(below <= r) & (r <= below + ties)]) for r in range(m + 1)])


class RankFlatness(NamedTuple):
    chi2_dof: float  # sum (c - e)^2 / e over the M+1 ranks, / M: ~1 for independent points
    deviation: float  # rms over ranks of c/e - 1: 0 when flat, whatever the number of points
    outer: float  # share of the two outer ranks over their flat share 2/(M+1): > 1 is a U


def rank_flatness(counts) -> RankFlatness:
    """How far a rank histogram is from flat (e = the flat count per rank).

    chi2_dof follows chi^2_M / M only when the points are independent; neighbouring grid points
    of one field are not, so for fields `deviation` (scale-free) and `outer` (the direction:
    under- or over-dispersed) are the numbers to read.
    """
    c = np.asarray(counts, dtype=np.float64)
    bins = c.size
    if bins < 2 or not c.sum() > 0:
        return RankFlatness(math.nan, math.nan, math.nan)
    e = c.sum() / bins
    return RankFlatness(float(np.sum((c - e) ** 2) / e / (bins - 1)),
                        float(np.sqrt(np.mean((c / e - 1.0) ** 2))),
                        float((c[0] + c[-1]) / (2.0 * e)))
