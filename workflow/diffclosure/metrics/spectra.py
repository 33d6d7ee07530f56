"""Isotropic (shell-summed) spectra of periodic fields (..., n, n) on [0, L)^2.

Integer shells: shell k holds the Fourier modes whose integer wavenumber (kx, ky) has
round(sqrt(kx^2 + ky^2)) = k, for k = 0 ... round(n/sqrt(2)) (the corner modes included, so the
shells sum to the whole variance: Parseval). Spectra are shell sums, the usual E(k) whose sum
over k is the total, so a k^-3 enstrophy-cascade line can be drawn against them;
`average=True` gives shell means instead.
"""

from __future__ import annotations

import functools

import numpy as np

from diffclosure.metrics.fields import as_numpy
from diffclosure.solver.grid import Grid
from diffclosure.solver.noise import covariance


@functools.lru_cache(maxsize=16)
def _shells(n: int):
    k = np.fft.fftfreq(n, 1.0 / n)
    kk = np.sqrt(k[:, None] ** 2 + k[None, :] ** 2)
    idx = np.rint(kk).astype(np.int64).ravel()
    order = np.argsort(idx, kind="stable")
    counts = np.bincount(idx)
    return idx, order, counts, (k[:, None] ** 2 + k[None, :] ** 2)


def _shell_sum(dens: np.ndarray, n: int, average: bool) -> tuple[np.ndarray, np.ndarray]:
    idx, order, counts, _ = _shells(n)
    flat = dens.reshape(dens.shape[:-2] + (n * n,))[..., order]
    present = np.flatnonzero(counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[present]
    out = np.zeros(dens.shape[:-2] + (counts.size,))
    out[..., present] = np.add.reduceat(flat, starts, axis=-1)
    if average:
        out[..., present] /= counts[present]
    return np.arange(counts.size, dtype=np.float64), out


def power_spectrum(field, average: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(k, P(k)) with sum_k P(k) = mean(field^2) over the grid (Parseval), per leading index."""
    f = as_numpy(field).astype(np.float64)
    n = f.shape[-1]
    if f.shape[-2] != n:
        raise ValueError(f"power_spectrum needs square fields, got shape {f.shape}")
    dens = np.abs(np.fft.fft2(f)) ** 2 / float(n) ** 4
    return _shell_sum(dens, n, average)


def energy_spectrum(vorticity, length: float = 1.0, average: bool = False):
    """(k, E(k)) of the velocity of a vorticity field, sum_k E(k) = mean(|u|^2)/2.

    |u_hat|^2 = |w_hat|^2 / |K|^2 with the angular wavenumber K = 2 pi k / L; the mean mode
    carries no velocity.
    """
    w = as_numpy(vorticity).astype(np.float64)
    n = w.shape[-1]
    _, _, _, k2 = _shells(n)
    kk2 = (2.0 * np.pi / length) ** 2 * k2
    inv = np.zeros_like(kk2)
    inv[kk2 > 0] = 1.0 / kk2[kk2 > 0]
    dens = 0.5 * np.abs(np.fft.fft2(w)) ** 2 / float(n) ** 4 * inv
    return _shell_sum(dens, n, average)


def spectrum_error(spectrum, reference, kmin: int = 1, kmax: int | None = None) -> float:
    """RMS over shells kmin..kmax of log(spectrum / reference): a typical relative error.

    Logs weigh every scale alike (a spectrum spans decades); 0.1 ~ 10% off per shell.
    kmax defaults to the last complete shell n/2 = len(reference)/sqrt(2), corners excluded.
    Leading axes are averaged first (compare mean spectra). Empty / zero shells are skipped.
    """
    a = as_numpy(spectrum).astype(np.float64)
    b = as_numpy(reference).astype(np.float64)
    a = a.reshape(-1, a.shape[-1]).mean(axis=0)
    b = b.reshape(-1, b.shape[-1]).mean(axis=0)
    if kmax is None:
        kmax = int(round((b.size - 1) / np.sqrt(2.0)))
    sel = slice(kmin, kmax + 1)
    a, b = a[sel], b[sel]
    ok = (a > 0) & (b > 0)
    if not ok.any():
        return float("nan")
    return float(np.sqrt(np.mean(np.log(a[ok] / b[ok]) ** 2)))


def noise_spectrum(n: int, length: float, sigma: float, alpha: float, kappa: float, dt: float,
                   scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(k, P(k)): the expected power spectrum of the noise term of G and H, as power_spectrum.

    That term is the noise's increment of one step over dt: sigma sqrt(dt) eta / dt (see
    solver/noise.py). eta's Fourier coefficient at any mode k of the full fft2 layout,
    normalised by n^2, is (z_k + conj z_-k)/2 with E|z_k|^2 = 2 kappa q_k, so its variance is
    kappa q_k; the term's is sigma^2 kappa q_k / dt. Shell-summed like power_spectrum, so
    sum_k P(k) = E mean(term^2). A grid coarser than the noise's band (|k| <~ 10 at the default
    alpha) would alias it; this line does not. `scale` multiplies the term (e.g. 2 where a
    target holds 2 sigma xi, or 1/std for normalised units).
    """
    q = covariance(Grid(n, length), alpha)  # rfft layout; q depends on kx^2 only
    full = np.concatenate([q, q[:, n // 2 - 1 : 0 : -1]], axis=1)
    return _shell_sum(scale**2 * sigma**2 * kappa / dt * full, n, average=False)
