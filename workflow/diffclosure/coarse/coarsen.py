"""Moving periodic fields between grids: subsampling, spectral truncation, resampling.

All functions take real arrays (..., n, n) indexed [y, x] and return (..., m, m):

- ``subsample``: every (n/m)-th point, starting at index 0 (the paper's choice for G and H;
  keeps the exact point values, aliases the unresolved modes).
- ``truncate``: sharp spectral truncation, keeping integer wavenumbers |k_x|, |k_y| < m/2. The
  coarse Nyquist row/column is dropped because a real field cannot carry a sine there and odd
  derivatives of it are undefined; coefficients are rescaled by (m/n)^2 for the unnormalised FFT
  so point values keep their amplitude.
- ``filter_truncate``: an LES filter (coarse/filters.py) followed by truncation.
- ``resample``: trigonometric interpolation to any even grid: truncation when m < n, zero
  padding when m > n. Padding splits the source Nyquist mode evenly between +n/2 and -n/2, so
  the fine field is the real trigonometric interpolant and takes the source values exactly at
  the source points.
"""

from __future__ import annotations

import numpy as np

from diffclosure.coarse.filters import filter_hat
from diffclosure.errors import UserFacingError
from diffclosure.solver.grid import Grid, irfft2, rfft2

METHODS = ("subsample", "spectral", "filter")


class ResolutionError(UserFacingError, ValueError):
    """A target grid that the source grid cannot be reduced to (or an odd/non-square grid)."""


def _size(w) -> int:
    if w.ndim < 2 or w.shape[-1] != w.shape[-2]:
        raise ResolutionError(f"fields must be square arrays (..., n, n), got shape {w.shape}")
    return w.shape[-1]


def check_divides(n: int, m: int, what: str = "coarse grid") -> int:
    """Stride n/m, or a clear error when the coarse grid m does not divide n."""
    if m < 2 or m % 2:
        raise ResolutionError(f"{what} {m}: must be an even integer >= 2")
    if m > n or n % m:
        raise ResolutionError(f"{what} {m} must divide the source grid {n}; pick a divisor of {n}")
    return n // m


def truncate_hat(w_hat: np.ndarray, n: int, m: int) -> np.ndarray:
    """Real-FFT spectrum of an n-grid field -> that of its m-grid truncation (m <= n)."""
    h = m // 2
    out = np.zeros(w_hat.shape[:-2] + (m, h + 1), dtype=complex)
    out[..., :h, :h] = w_hat[..., :h, :h]
    if h > 1:
        out[..., h + 1 :, :h] = w_hat[..., n - (h - 1) :, :h]
    return out * (m / n) ** 2


def pad_hat(w_hat: np.ndarray, n: int, m: int) -> np.ndarray:
    """Real-FFT spectrum of an n-grid field -> that of its trigonometric interpolant on m >= n."""
    h = n // 2
    cols = w_hat.copy()
    cols[..., h] *= 0.5  # Nyquist column: half at +n/2 (stored), half at -n/2 (implied).
    out = np.zeros(w_hat.shape[:-2] + (m, m // 2 + 1), dtype=complex)
    out[..., :h, : h + 1] = cols[..., :h, :]
    if h > 1:
        out[..., m - h + 1 :, : h + 1] = cols[..., h + 1 :, :]
    out[..., h, : h + 1] = 0.5 * cols[..., h, :]  # Nyquist row split between +n/2 and -n/2.
    out[..., m - h, : h + 1] += 0.5 * cols[..., h, :]
    return out * (m / n) ** 2


def subsample(w, m: int) -> np.ndarray:
    """Every (n/m)-th point from index 0 (a view when possible)."""
    w = np.asarray(w)
    s = check_divides(_size(w), m)
    return w[..., ::s, ::s]


def truncate(w, m: int) -> np.ndarray:
    """Spectral truncation to m x m: keep |k_x|, |k_y| < m/2."""
    w = np.asarray(w, dtype=float)
    n = _size(w)
    check_divides(n, m)
    return irfft2(truncate_hat(rfft2(w), n, m), m)


def resample(w, m: int) -> np.ndarray:
    """Trigonometric interpolation of a periodic field to an m x m grid (up or down)."""
    w = np.asarray(w, dtype=float)
    n = _size(w)
    if m < 2 or m % 2:
        raise ResolutionError(f"resample target grid {m}: must be an even integer >= 2")
    if m == n:
        return w.copy()
    if m < n:
        return irfft2(truncate_hat(rfft2(w), n, m), m)
    return irfft2(pad_hat(rfft2(w), n, m), m)


def filter_truncate(w, m: int, kind: str, width: float, length: float = 1.0) -> np.ndarray:
    """Filter of width `width` (physical units), then truncation to m x m."""
    w = np.asarray(w, dtype=float)
    n = _size(w)
    check_divides(n, m)
    w_hat = filter_hat(rfft2(w), kind, width, Grid(n, length))
    return irfft2(truncate_hat(w_hat, n, m), m)


def coarsen(
    w,
    m: int,
    method: str,
    length: float = 1.0,
    filter_kind: str = "gaussian",
    width: float | None = None,
) -> np.ndarray:
    """Coarse-grain by `method` (subsample | spectral | filter); width is needed for filter."""
    if method == "subsample":
        return np.asarray(subsample(w, m), dtype=float)
    if method == "spectral":
        return truncate(w, m)
    if method == "filter":
        if width is None:
            raise ValueError("method='filter' needs a filter width")
        return filter_truncate(w, m, filter_kind, width, length)
    raise ValueError(f"unknown coarse-graining method {method!r}; choose one of {METHODS}")
