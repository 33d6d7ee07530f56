"""LES diagnostics of a subgrid term Pi and of coarse flows; pure functions, numpy in and out.

Conventions: Pi enters the filtered vorticity equation as -Pi (coarse/targets.py), so it takes
energy and enstrophy out of the resolved field w_bar at the rates

    energy transfer    T_E = <psi_bar Pi>    (lap psi_bar = -w_bar)
    enstrophy transfer T_Z = <w_bar Pi>

(<.> the grid mean; positive = forward transfer to the subgrid, negative = backscatter). The
spectral versions split the same sums over integer shells (Parseval), so they sum to the
physical-space numbers. Fields are (..., n, n) on [0, L)^2; leading axes are kept.

A-posteriori: the enstrophy spectrum (the energy spectrum lives in metrics.spectra) and two
distances between one-point PDFs: Hellinger (of histograms on shared bins) and Wasserstein-1
(of the samples themselves, no binning).
"""

from __future__ import annotations

import numpy as np

from diffclosure.metrics.fields import as_numpy, correlation
from diffclosure.metrics.spectra import _shell_sum, _shells, power_spectrum

QUANTITIES = ("energy", "enstrophy")


def _weights(n: int, length: float, quantity: str) -> np.ndarray:
    """1/|K|^2 (energy: w times it is psi) or 1 (enstrophy) on the full fft2 layout."""
    if quantity not in QUANTITIES:
        raise ValueError(f"quantity must be one of {QUANTITIES}, got {quantity!r}")
    if quantity == "enstrophy":
        return np.ones((n, n))
    k2 = (2.0 * np.pi / length) ** 2 * _shells(n)[3]
    return np.divide(1.0, k2, out=np.zeros_like(k2), where=k2 > 0)


def _fields(w_bar, pi):
    w, p = as_numpy(w_bar).astype(np.float64), as_numpy(pi).astype(np.float64)
    if w.shape[-2:] != p.shape[-2:] or w.shape[-1] != w.shape[-2]:
        raise ValueError(f"w_bar {w.shape} and Pi {p.shape} must be square fields on one grid")
    return w, p


def subgrid_transfer(w_bar, pi, length: float = 1.0, quantity: str = "enstrophy"):
    """T_E = <psi_bar Pi> or T_Z = <w_bar Pi> in physical space, per leading index."""
    w, p = _fields(w_bar, pi)
    weights = _weights(w.shape[-1], length, quantity)
    if quantity == "energy":
        w = np.fft.ifft2(np.fft.fft2(w) * weights).real  # psi_bar
    return np.mean(w * p, axis=(-2, -1))


def transfer_spectrum(w_bar, pi, length: float = 1.0, quantity: str = "enstrophy"):
    """(k, T(k)): the transfer split over integer shells, sum_k T(k) = subgrid_transfer."""
    w, p = _fields(w_bar, pi)
    n = w.shape[-1]
    cross = np.real(np.conj(np.fft.fft2(w)) * np.fft.fft2(p)) / float(n) ** 4
    return _shell_sum(cross * _weights(n, length, quantity), n, average=False)


def backscatter_share(w_bar, pi, length: float = 1.0) -> np.ndarray:
    """The share of the enstrophy transfer that goes back to the resolved field, per leading
    index: sum_k max(-T_Z(k), 0) / sum_k |T_Z(k)| over the integer shells of transfer_spectrum
    (0 = forward at every scale, 1 = backward at every scale; nan where Pi transfers nothing).

    Per shell, not per point: the pointwise w_bar Pi < 0 counts the transport part of the
    transfer as backscatter. For an eddy viscosity, w Pi = nu_t |grad w|^2 - div(nu_t w grad w),
    whose divergence is negative at a third of the points while nothing goes back; per shell a
    spectral eddy viscosity nu(k) >= 0 gives T_Z(k) = sum nu(k) |k|^2 |w_k|^2 >= 0 exactly, and
    one varying in space (Smagorinsky, Leith) nearly so (the tests bound it)."""
    _, t = transfer_spectrum(w_bar, pi, length, "enstrophy")
    total = np.abs(t).sum(axis=-1)
    back = np.maximum(-t, 0.0).sum(axis=-1)
    return np.divide(back, total, out=np.full_like(total, np.nan), where=total > 0)


def a_priori_scores(pi_model, pi_true, w_bar, length: float = 1.0) -> dict[str, float]:
    """A modelled Pi against the true one on the same filtered states (..., n, n), pooled:
    correlation (mean over samples), transfer ratios model / true of energy and enstrophy
    (1 = the right amount), and the backscatter share (per shell) of each."""
    # A model Pi that is zero on a state (a clipped dynamic coefficient) has no correlation
    # there; the mean is over the states where it is defined.
    corr = np.ravel(correlation(pi_model, pi_true))
    corr = corr[np.isfinite(corr)]
    out = {"correlation": float(corr.mean()) if corr.size else float("nan")}
    for q in QUANTITIES:
        true = float(np.mean(subgrid_transfer(w_bar, pi_true, length, q)))
        model = float(np.mean(subgrid_transfer(w_bar, pi_model, length, q)))
        out[f"{q}_transfer_ratio"] = model / true if true != 0 else float("nan")
    for key, p in (("backscatter_model", pi_model), ("backscatter_true", pi_true)):
        share = backscatter_share(w_bar, p, length)  # Pi = 0 transfers nothing: no share
        out[key] = float(np.nanmean(share)) if np.isfinite(share).any() else 0.0
    return out


def enstrophy_spectrum(vorticity):
    """(k, Z(k)), sum_k Z(k) = mean(w^2)/2 (= |K|^2 E(k) shell by shell)."""
    k, p = power_spectrum(vorticity)
    return k, 0.5 * p


def hellinger(p, q, edges) -> float:
    """Hellinger distance sqrt(1 - int sqrt(p q)) of two densities on the bins `edges`
    (in [0, 1]: 0 for equal laws, 1 for disjoint supports)."""
    p, q, width = np.asarray(p, float), np.asarray(q, float), np.diff(np.asarray(edges, float))
    return float(np.sqrt(max(0.0, 1.0 - np.sum(np.sqrt(p * q) * width))))


def wasserstein1(a, b, points: int | None = None) -> float:
    """W1 = int_0^1 |F_a^-1(u) - F_b^-1(u)| du between the empirical laws of two samples
    (non-finite values dropped), by the quantiles at `points` midpoints (default: the larger
    sample's size, exact for two samples of that size)."""
    a, b = (np.sort(v[np.isfinite(v)]) for v in
            (as_numpy(a).astype(float).ravel(), as_numpy(b).astype(float).ravel()))
    if not (a.size and b.size):
        return float("nan")
    m = points or max(a.size, b.size)
    u = (np.arange(m) + 0.5) / m
    qa = a[np.minimum((u * a.size).astype(np.int64), a.size - 1)]
    qb = b[np.minimum((u * b.size).astype(np.int64), b.size - 1)]
    return float(np.mean(np.abs(qa - qb)))


def pdf_distances(values, reference, bins: int = 81) -> dict[str, float]:
    """Hellinger (histograms on bins over the reference's range widened by half) and
    Wasserstein-1 between the one-point PDFs of `values` and `reference` (finite entries)."""
    v, r = (x[np.isfinite(x)] for x in
            (as_numpy(values).astype(float).ravel(), as_numpy(reference).astype(float).ravel()))
    if not (v.size and r.size):
        return {"hellinger": float("nan"), "wasserstein1": float("nan")}
    lim = 1.5 * float(np.abs(r).max()) or 1.0
    edges = np.linspace(-lim, lim, bins + 1)
    # Mass outside the reference's range still counts: as a density on the open ends it would
    # be lost, so values are clipped into the end bins.
    p, _ = np.histogram(np.clip(v, -lim, lim), bins=edges, density=True)
    q, _ = np.histogram(r, bins=edges, density=True)
    return {"hellinger": hellinger(p, q, edges), "wasserstein1": wasserstein1(v, r)}
