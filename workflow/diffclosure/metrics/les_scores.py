"""The a-posteriori LES scores of one closure, with bootstrap confidence intervals.

The scores (rollout-metrics' les.csv) compare a closure's rollouts, vorticity (S, M, T, n, n)
for S initial states and M members, with the filtered DNS from the same states, (S, T, n, n):

- energy_spectrum_error, enstrophy_spectrum_error: metrics.spectra.spectrum_error of the
  time-mean spectra, pooled over every finite field;
- energy_error, enstrophy_error: the mean over records of the relative error of the members'
  mean energy (enstrophy) against the reference's mean over states;

A rollout longer than the filtered DNS's recorded window has NaN reference records past it:
the reference's spectra, PDF and energy are then its statistics pooled over the window (and the
drawn states), and records past the window compare the members' mean energy (enstrophy) with
the reference's time mean. A climate score of a long run, not a forecast score.
- pdf_hellinger: the Hellinger distance of the one-point vorticity PDFs (metrics.les.pdf_distances'
  bins: the reference's range widened by half, values beyond clipped into the end bins).

Each score is a function of sums over (state, member) units, so :class:`Units` keeps those sums
once and a bootstrap resample (metrics.bootstrap) costs a few sums, not a recomputation of
spectra. On the full sample the scores are exactly those of the fields themselves (a test holds
them equal).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diffclosure.data.flow_stats import energy_enstrophy
from diffclosure.metrics import bootstrap
from diffclosure.metrics.les import enstrophy_spectrum, hellinger
from diffclosure.metrics.spectra import energy_spectrum, spectrum_error

SCORES = ("energy_spectrum_error", "enstrophy_spectrum_error", "energy_error",
          "enstrophy_error", "pdf_hellinger")
BINS = 81


@dataclass
class Units:
    """Sums per unit: a unit is (state, member) for a closure and a state for the reference,
    whose arrays carry no member axis."""
    energy: np.ndarray       # (..., K) sum of the energy spectra of the unit's finite fields
    enstrophy: np.ndarray    # (..., K) the same for the enstrophy spectra
    fields: np.ndarray       # (...,) how many finite fields
    e_series: np.ndarray     # (..., T) energy against time (nan after a blow-up)
    z_series: np.ndarray     # (..., T) enstrophy against time
    hist: np.ndarray         # (..., BINS) counts of the finite values on the shared bins


def pdf_edges(reference) -> np.ndarray:
    r = np.asarray(reference, dtype=float)
    lim = 1.5 * float(np.abs(r[np.isfinite(r)]).max()) or 1.0
    return np.linspace(-lim, lim, BINS + 1)


def units(vorticity, length: float, edges: np.ndarray) -> Units:
    """Per-unit sums of fields (..., T, n, n): every axis before time is a unit axis."""
    v = np.asarray(vorticity, dtype=np.float64)
    lead, (T, n) = v.shape[:-3], v.shape[-3:-1]
    flat = v.reshape((-1, T, n, n))
    finite = np.isfinite(flat).all(axis=(-2, -1))  # (U, T)
    k_len = len(energy_spectrum(np.zeros((n, n)), length)[0])
    e_sum, z_sum = np.zeros((len(flat), k_len)), np.zeros((len(flat), k_len))
    hist = np.zeros((len(flat), BINS))
    lim = edges[-1]
    for u, f in enumerate(flat):
        ok = f[finite[u]]
        if len(ok):
            e_sum[u] = energy_spectrum(ok, length)[1].sum(axis=0)
            z_sum[u] = enstrophy_spectrum(ok)[1].sum(axis=0)
        vals = f[np.isfinite(f)]
        hist[u] = np.histogram(np.clip(vals, -lim, lim), bins=edges)[0]
    with np.errstate(invalid="ignore", over="ignore"):
        e, z = energy_enstrophy(v, length)
    return Units(e_sum.reshape(lead + (k_len,)), z_sum.reshape(lead + (k_len,)),
                 finite.sum(axis=1).reshape(lead), e, z, hist.reshape(lead + (BINS,)))


def _relative_error(series, reference) -> float:
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(series - reference) / np.abs(reference)
    rel = rel[np.isfinite(rel)]
    return float(rel.mean()) if rel.size else float("nan")


def _pooled_past_window(series) -> np.ndarray:
    """The mean over states of (S, T) reference series, its time mean where it has no record
    (past the DNS's window)."""
    mean = series.mean(axis=0)
    finite = np.isfinite(mean)
    if finite.all() or not finite.any():
        return mean
    return np.where(finite, mean, mean[finite].mean())


def _density(counts, edges):
    total = counts.sum()
    return counts / (total * np.diff(edges)) if total > 0 else np.zeros_like(counts)


def scores(closure: Units, reference: Units, edges: np.ndarray,
           states: np.ndarray | None = None, members: np.ndarray | None = None) -> dict:
    """SCORES of the closure on the (states, members) resample ((S,), (S, M) index arrays;
    None = every unit once), against the reference on the same states."""
    S, M = closure.fields.shape
    s = np.arange(S) if states is None else states
    m = np.broadcast_to(np.arange(M), (len(s), M)) if members is None else members
    sel = (s[:, None], m)

    def pooled(a, count):
        c = count.sum()
        return a.reshape(-1, a.shape[-1]).sum(axis=0) / c if c else None

    out = {}
    for name, c_sum, r_sum in (("energy", closure.energy, reference.energy),
                               ("enstrophy", closure.enstrophy, reference.enstrophy)):
        a, b = pooled(c_sum[sel], closure.fields[sel]), pooled(r_sum[s], reference.fields[s])
        out[f"{name}_spectrum_error"] = (spectrum_error(a, b) if a is not None and b is not None
                                         else float("nan"))
    out["energy_error"] = _relative_error(closure.e_series[sel].mean(axis=(0, 1)),
                                          _pooled_past_window(reference.e_series[s]))
    out["enstrophy_error"] = _relative_error(closure.z_series[sel].mean(axis=(0, 1)),
                                             _pooled_past_window(reference.z_series[s]))
    p = closure.hist[sel].reshape(-1, BINS).sum(axis=0)
    q = reference.hist[s].sum(axis=0)
    out["pdf_hellinger"] = (hellinger(_density(p, edges), _density(q, edges), edges)
                            if p.sum() and q.sum() else float("nan"))
    return out


def resampled(closure: Units, reference: Units, edges: np.ndarray,
              draws: int = bootstrap.DRAWS, seed: int = 0) -> dict[str, np.ndarray]:
    """{score: (draws,) values} over hierarchical resamples (metrics.bootstrap). The states of
    draw i do not depend on the number of members, so two closures resampled with one seed are
    paired state by state (their difference or ratio can be resampled too)."""
    S, M = closure.fields.shape
    rows = [scores(closure, reference, edges, s, m)
            for s, m in bootstrap.hierarchical_draws(S, M, draws, seed)]
    return {name: np.array([r[name] for r in rows]) for name in SCORES}


def with_intervals(point: dict, draws: dict, none_point: dict | None = None,
                   none_draws: dict | None = None, level: float = bootstrap.LEVEL) -> dict:
    """The point scores with <score>_lo and <score>_hi, the bootstrap interval of each, and,
    given the scores of no closure on the same draws, similarity_<score> = 1 - D / D(none)
    with its paired interval."""
    out = dict(point)
    for name in SCORES:
        out[f"{name}_lo"], out[f"{name}_hi"] = bootstrap.percentile_interval(draws[name], level)
        if none_point is None:
            continue
        out[f"similarity_{name}"] = bootstrap.similarity(point[name], none_point[name])
        with np.errstate(invalid="ignore", divide="ignore"):
            sim = 1.0 - draws[name] / none_draws[name]
        out[f"similarity_{name}_lo"], out[f"similarity_{name}_hi"] = \
            bootstrap.percentile_interval(sim, level)
    return out
