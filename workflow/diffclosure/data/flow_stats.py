"""Two facts about the data a closure is trained on, reported by the dataset stage.

- How stochastic the target is: the std of the stochastic-forcing part of the target on the
  coarse grid, from the noise's known law (exact in expectation, no sampling), to be divided by
  the target's measured std. The target holds the noise's increment over one step divided by dt,
  sigma sqrt(dt) eta / dt, so its pointwise variance is sigma^2 kappa sum_k q_k |T_k|^2 / dt,
  where T_k is what the coarse-graining does to Fourier mode k at a grid point: 1 for
  subsampling (it keeps point values), the truncation mask for spectral truncation, filter
  transfer times mask for filter-then-truncate.
- Whether the recorded window is statistically steady: the relative drift of the
  trajectory-mean energy and enstrophy across it.
"""

from __future__ import annotations

import numpy as np

from diffclosure.coarse.filters import transfer_function
from diffclosure.solver.grid import Grid
from diffclosure.solver.noise import NoiseSampler, NoiseSpec, covariance


def noise_multiplicity(target: str, g_split: str = "full", noise: str = "in_target") -> float:
    """How many times sigma*xi enters the stored target: none in the subgrid term or with
    coarse.noise known, twice in the research code's G split (it stores nu lap w + 2 sigma xi),
    once otherwise."""
    if target == "sgs" or noise == "known":
        return 0.0
    return 2.0 if target == "G" and g_split == "paper" else 1.0


def noise_term_std(n: int, length: float, noise: dict, dt: float, coarse: dict,
                   width: float | None = None) -> float:
    """Std of sigma*xi's contribution (once) to a target on coarse.n, coarse-grained from the
    n-grid by coarse.method (module docstring). `noise` holds sigma, alpha, kappa."""
    spec = NoiseSpec(noise["sigma"], noise["alpha"], noise["kappa"])
    grid = Grid(n, length)
    # The sampler draws only the box |k_x|, |k_y| <= K; the rest of q is zero to round-off.
    K = NoiseSampler(grid, spec).K
    q = covariance(grid, spec.alpha)
    ky = np.abs(np.fft.fftfreq(n, 1.0 / n))[:, None]
    kx = np.arange(n // 2 + 1)[None, :]
    q = q * ((ky <= K) & (kx <= K))
    m = coarse["n"]
    gain = np.ones_like(q)
    if coarse["method"] in ("spectral", "filter"):
        gain = ((ky < m // 2) & (kx < m // 2)).astype(float)
        if coarse["method"] == "filter":
            gain = gain * transfer_function(coarse["filter"], width, grid) ** 2
    # rfft layout: columns 1..n/2-1 stand for two modes each (k and -k).
    weights = np.full(n // 2 + 1, 2.0)
    weights[0] = weights[-1] = 1.0
    total = float((q * gain * weights).sum())
    return float(np.sqrt(spec.sigma**2 * spec.kappa * total / dt))


def _spectral(w, length: float):
    """(normalised fft2 of w, |K|^2, 1/|K|^2 with 0 at K = 0) of fields (..., n, n)."""
    w = np.asarray(w, dtype=np.float64)
    n = w.shape[-1]
    k = np.fft.fftfreq(n, 1.0 / n)
    k2 = (2 * np.pi / length) ** 2 * (k[:, None] ** 2 + k[None, :] ** 2)
    inv = np.divide(1.0, k2, out=np.zeros_like(k2), where=k2 > 0)
    return np.fft.fft2(w) / float(n) ** 2, k2, inv


def energy_enstrophy(w, length: float) -> tuple[np.ndarray, np.ndarray]:
    """Energy mean(|u|^2)/2 and enstrophy mean(w^2)/2 of vorticity fields (..., n, n)."""
    w_hat, _, inv = _spectral(w, length)
    return _energy_enstrophy(np.abs(w_hat) ** 2, inv)


def _energy_enstrophy(power, inv) -> tuple[np.ndarray, np.ndarray]:
    return 0.5 * (power * inv).sum(axis=(-2, -1)), 0.5 * power.sum(axis=(-2, -1))


def window_drift(series) -> float:
    """(max - min) / mean of a time series: how far a window is from statistically steady."""
    s = np.asarray(series, dtype=np.float64)
    return float((s.max() - s.min()) / s.mean())


def budget_rates(w, forcing, nu: float, drag: float, length: float) -> dict[str, np.ndarray]:
    """Sources and sinks of energy E and enstrophy Z of vorticity fields (..., n, n) under
    dw/dt + u.grad(w) = nu lap(w) - drag w + forcing (advection moves both between scales and
    creates neither), so dE/dt = energy_injection - energy_dissipation - energy_drag, and the
    same for enstrophy. Injection <psi f>, <w f>; dissipation nu <w^2>, nu <|grad w|^2>;
    drag 2 mu E, 2 mu Z. `forcing` None means unforced."""
    w_hat, k2, inv = _spectral(w, length)
    power = np.abs(w_hat) ** 2
    f_hat = 0.0 if forcing is None else _spectral(forcing, length)[0]
    cross = np.real(np.conj(w_hat) * f_hat)
    energy, enstrophy = _energy_enstrophy(power, inv)  # from the same transform
    return {
        "energy_injection": (cross * inv).sum(axis=(-2, -1)),
        "energy_dissipation": 2.0 * nu * enstrophy,
        "energy_drag": 2.0 * drag * energy,
        "enstrophy_injection": cross.sum(axis=(-2, -1)),
        "enstrophy_dissipation": nu * (power * k2).sum(axis=(-2, -1)),
        "enstrophy_drag": 2.0 * drag * enstrophy,
    }
