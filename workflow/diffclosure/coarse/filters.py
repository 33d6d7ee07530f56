"""LES filters on the periodic square as spectral transfer functions.

A filter of width Delta (physical units) multiplies each Fourier mode k = (k_x, k_y) (angular
wavenumbers 2 pi j / L) by a real, even transfer function T(k):

- ``sharp``:    T = 1 where |k_x| <= pi/Delta and |k_y| <= pi/Delta, else 0. The cutoff is
                per direction (a square in k-space), not radial, so that it commutes with
                spectral truncation to a coarser grid, which also cuts per direction.
- ``gaussian``: T = exp(-|k|^2 Delta^2 / 24) (second moment of the kernel = Delta^2 / 12).
- ``box``:      T = sinc(k_x Delta/2) sinc(k_y Delta/2), sinc(z) = sin(z)/z: the running mean
                over a Delta x Delta square of the field's trigonometric interpolant (exact
                for band-limited fields, whatever the relation of Delta to the grid).

All filters are functions of arrays of any batch shape (..., n, n) on [0, L)^2; box and
Gaussian keep the mean (T(0) = 1), the sharp filter is a projection (idempotent).
"""

from __future__ import annotations

import numpy as np

from diffclosure.solver.grid import Grid, irfft2, rfft2

FILTERS = ("sharp", "gaussian", "box")


def _check(kind: str, width: float) -> None:
    if kind not in FILTERS:
        raise ValueError(f"unknown filter kind {kind!r}; choose one of {', '.join(FILTERS)}")
    if not width > 0:
        raise ValueError(f"filter width must be positive (physical units), got {width}")


def filter_width(coarse: dict, length: float) -> float:
    """Delta in physical units: coarse.filter_width coarse-grid spacings of the training grid
    (coarse.n), the same at every resolution (the coarse stage, rollouts and closures)."""
    return coarse["filter_width"] * length / coarse["n"]


def transfer_function(kind: str, width: float, grid: Grid) -> np.ndarray:
    """T(k) on the real-FFT layout of `grid`, shape (n, n//2 + 1), float64."""
    _check(kind, width)
    kx, ky = grid.kx, grid.ky
    if kind == "sharp":
        cut = np.pi / width
        # A relative tolerance keeps a mode that sits exactly on the cutoff (e.g. Delta = 2 dx_c)
        # from flipping with the last bit of pi.
        tol = 1e-9 * cut
        return ((np.abs(kx) <= cut + tol) & (np.abs(ky) <= cut + tol)).astype(float)
    if kind == "gaussian":
        return np.exp(-grid.k2 * width**2 / 24.0)
    # np.sinc is the normalised sin(pi z)/(pi z); divide the argument by pi.
    return np.sinc(kx * width / (2 * np.pi)) * np.sinc(ky * width / (2 * np.pi))


def filter_hat(w_hat: np.ndarray, kind: str, width: float, grid: Grid) -> np.ndarray:
    """Filter in spectral space (real-FFT layout)."""
    return w_hat * transfer_function(kind, width, grid)


def filter_field(w, kind: str, width: float, length: float = 1.0) -> np.ndarray:
    """Filtered field, same shape as `w` (..., n, n); `width` in the units of `length`."""
    w = np.asarray(w, dtype=float)
    n = w.shape[-1]
    if w.shape[-2] != n:
        raise ValueError(f"fields must be square (..., n, n), got shape {w.shape}")
    grid = Grid(n, length)
    return irfft2(filter_hat(rfft2(w), kind, width, grid), n)
