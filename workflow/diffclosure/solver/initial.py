"""Random initial vorticity: a zero-mean Gaussian random field (GRF).

Covariance (4 pi^2 |k|^2 + tau^2)^(-alpha) (for L = 1; |2 pi k/L|^2 in general), alpha = 2.5,
tau = 7 by default, with the amplitude convention of the FNO Navier-Stokes data generator
(Li et al., GaussianRF): sqrt-eigenvalues sqrt(2) * sigma0 * (|2 pi k/L|^2 + tau^2)^(-alpha/2)
with sigma0 = tau^(alpha - 1) (= tau^(alpha - d/2) in d = 2). That generator draws complex
normals with unit-variance real and imaginary parts and keeps the real part of the inverse FFT;
its normalised coefficients c_k = rfft2(w)_k / n^2 then have

    E|c_k|^2 = 2 sigma0^2 (|2 pi k/L|^2 + tau^2)^(-alpha),   c_0 = 0.

Here the same law is drawn as white noise filtered in Fourier space (one real standard normal
per grid point, from one numpy Generator per trajectory), so a trajectory's field depends only on
its generator. The Nyquist row and column are zeroed (their spectral weight is ~1e-9 of the
largest for the defaults), keeping the field exactly representable by the solver's derivatives.
Spin-up to a statistically steady state is the DNS stage's job.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from diffclosure.solver.grid import Grid


def grf_spectrum(grid: Grid, alpha: float = 2.5, tau: float = 7.0, sigma0: float | None = None):
    """E|c_k|^2 of the initial field on the rfft layout (n, n//2+1)."""
    if sigma0 is None:
        sigma0 = tau ** (alpha - 1.0)
    spec = 2.0 * sigma0**2 * (grid.k2 + tau**2) ** (-alpha)
    spec[0, 0] = 0.0
    return spec * grid.nyquist_free


def gaussian_random_field(
    grid: Grid,
    rngs: Sequence[np.random.Generator],
    alpha: float = 2.5,
    tau: float = 7.0,
    sigma0: float | None = None,
) -> np.ndarray:
    """One zero-mean GRF sample per generator: (B, n, n) float64, indexed [y, x]."""
    if not alpha > 0 or not tau > 0:
        raise ValueError(f"dns.initial.alpha and tau must be > 0, got alpha={alpha}, tau={tau}")
    n = grid.n
    # rfft2 of unit white noise has E|.|^2 = n^2; scale it to E|c_k|^2 = spectrum, c = rfft2/n^2.
    filt = n * np.sqrt(grf_spectrum(grid, alpha, tau, sigma0))
    white = np.stack([rng.standard_normal((n, n)) for rng in rngs])
    return np.fft.irfft2(np.fft.rfft2(white) * filt, s=(n, n))


def trajectory_streams(
    seed: int, trajectory: int
) -> tuple[np.random.Generator, np.random.Generator]:
    """(initial, noise) Generators of the trajectory with global id `trajectory`.

    SeedSequence([seed, trajectory]) spawned into two children: the same trajectory gets the
    same numbers whatever the sharding or batching.
    """
    init_ss, noise_ss = np.random.SeedSequence([int(seed), int(trajectory)]).spawn(2)
    return np.random.default_rng(init_ss), np.random.default_rng(noise_ss)


__all__ = ["gaussian_random_field", "grf_spectrum", "trajectory_streams"]
