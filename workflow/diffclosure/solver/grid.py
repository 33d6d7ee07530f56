"""The periodic square grid and its wavenumbers, in NumPy (float64).

Conventions used across the package: fields are real arrays (..., n, n) indexed [y, x];
x_j = j*L/n; spectra are real-FFT layouts (..., n, n//2 + 1) from `numpy.fft.rfft2`
(normalisation "backward": w_hat = sum_j w_j exp(-i k.x_j)).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class Grid:
    n: int
    length: float = 1.0

    def __post_init__(self):
        if self.n < 2 or self.n % 2:
            raise ValueError(f"grid size n must be an even integer >= 2, got {self.n}")
        if not self.length > 0:
            raise ValueError(f"domain length must be positive, got {self.length}")

    @property
    def dx(self) -> float:
        return self.length / self.n

    @cached_property
    def x(self) -> np.ndarray:
        return np.arange(self.n) * self.dx

    @cached_property
    def mesh(self) -> tuple[np.ndarray, np.ndarray]:
        """(X, Y), each (n, n), indexed [y, x]."""
        X, Y = np.meshgrid(self.x, self.x, indexing="xy")
        return X, Y

    @cached_property
    def kx(self) -> np.ndarray:
        """Angular wavenumbers along x for the rfft axis, shape (1, n//2+1)."""
        return (2 * np.pi / self.length * np.arange(self.n // 2 + 1))[None, :]

    @cached_property
    def ky(self) -> np.ndarray:
        """Angular wavenumbers along y, shape (n, 1)."""
        return (2 * np.pi / self.length * np.fft.fftfreq(self.n, 1.0 / self.n))[:, None]

    @cached_property
    def k2(self) -> np.ndarray:
        """|k|^2, shape (n, n//2+1)."""
        return self.kx**2 + self.ky**2

    @cached_property
    def inv_k2(self) -> np.ndarray:
        """1/|k|^2 with the mean mode set to 0 (the streamfunction has zero mean)."""
        with np.errstate(divide="ignore"):
            inv = np.where(self.k2 > 0, 1.0 / np.where(self.k2 > 0, self.k2, 1.0), 0.0)
        return inv

    @cached_property
    def integer_k(self) -> tuple[np.ndarray, np.ndarray]:
        """Integer wavenumbers (ky, kx) broadcastable to (n, n//2+1)."""
        return (
            np.fft.fftfreq(self.n, 1.0 / self.n)[:, None],
            np.arange(self.n // 2 + 1)[None, :].astype(float),
        )

    @cached_property
    def dealias(self) -> np.ndarray:
        """2/3-rule mask: keep integer |kx|, |ky| < n/3 (strictly below (2/3)(n/2))."""
        iy, ix = self.integer_k
        cut = self.n / 3.0
        return (np.abs(iy) < cut) & (np.abs(ix) < cut)

    @cached_property
    def nyquist_free(self) -> np.ndarray:
        """Mask removing the Nyquist row/column, where odd derivatives are ill-defined."""
        iy, ix = self.integer_k
        return (np.abs(iy) != self.n // 2) & (ix != self.n // 2)


def rfft2(w):
    return np.fft.rfft2(w)


def irfft2(w_hat, n: int):
    return np.fft.irfft2(w_hat, s=(n, n))


def velocity_hat(grid: Grid, w_hat):
    """(u_hat, v_hat) from vorticity: psi = w/|k|^2, u = d psi/dy, v = -d psi/dx."""
    psi = w_hat * grid.inv_k2
    return 1j * grid.ky * psi, -1j * grid.kx * psi


def gradient_hat(grid: Grid, f_hat):
    """(df/dx, df/dy) in spectral space."""
    return 1j * grid.kx * f_hat, 1j * grid.ky * f_hat


def advection(grid: Grid, w, dealias: bool = True):
    """u.grad(w) on the grid (pseudo-spectral, products in physical space), real array.

    Dealiasing masks the product with the 2/3 rule, as the solver does.
    """
    w_hat = rfft2(w)
    u_hat, v_hat = velocity_hat(grid, w_hat)
    wx_hat, wy_hat = gradient_hat(grid, w_hat)
    n = grid.n
    prod = irfft2(u_hat, n) * irfft2(wx_hat, n) + irfft2(v_hat, n) * irfft2(wy_hat, n)
    if dealias:
        prod = irfft2(rfft2(prod) * grid.dealias, n)
    return prod


def laplacian(grid: Grid, w):
    return irfft2(-grid.k2 * rfft2(w), grid.n)


def velocity(grid: Grid, w):
    u_hat, v_hat = velocity_hat(grid, rfft2(w))
    return irfft2(u_hat, grid.n), irfft2(v_hat, grid.n)
