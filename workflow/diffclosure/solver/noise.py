"""Stochastic forcing sigma*xi: white in time, smooth in space (a Q-Wiener process).

Convention (what one solver step adds to the vorticity):

    w  <-  w + sigma * sqrt(dt) * eta,
    eta(x) = Re sum_{k in Z_n^2} sqrt(q_k) (a_k + i b_k) exp(2 pi i k.x / L),
    a_k, b_k iid N(0, kappa),   q_k = exp(-alpha |2 pi k / L|^2),   q_0 = 0.

So the normalised Fourier coefficients c_k = rfft2(eta)_k / n^2 satisfy E|c_k|^2 = kappa q_k
(real and imaginary parts independent, each of variance kappa q_k / 2), eta has zero mean
(vorticity on the torus does), and with only noise acting Var(c_k of w(t)) = sigma^2 kappa q_k t:
linear in t and independent of dt, i.e. sigma*xi is a genuine space-time white-in-time forcing.

Modes: only the box |k_x|, |k_y| <= K is drawn, where K is the largest wavenumber with
sqrt(q_k) >= 1e-16 times its largest value (the others are zero to round-off), capped at
n/2 - 1 so the Nyquist row and column, where a real field's odd modes are ill-defined, are never
forced. K = 19 for alpha = 0.005, L = 1, whatever n: a cheap 39 x 39 box, not n^2 normals.

Randomness: one numpy Generator per trajectory; each call draws, for every trajectory, one
(2, 2K+1, 2K+1) block of standard normals in a fixed order, so a trajectory's noise depends only
on its own generator, never on the batch it is in nor on the FFT backend. N(0, kappa) is drawn as
sqrt(kappa) times a standard normal (the research code sums kappa standard normals: same law).

Mapping to the research code (X. Dong / J.-L. Wu, generator_sns.py with Lord, Powell & Shardlow
Alg. 4.5 and 10.6): there ``b_k = sqrt(q_k) * n^2 / (L * sqrt(dt))`` (the 1/sqrt(dt) makes
``dW = Re ifft2(b_k * (sum of kappa complex normals))`` a sample of dW/dt, as its docstring
says) and each step adds ``dt * sigma_r * rfft2(dW)`` once. The per-step increment is therefore
``sigma_r * sqrt(dt) * eta / L`` (the real part of their non-Hermitian complex field has the
law of eta above): our convention, so sigma = sigma_r / L, and at the paper's L = 1 their
sigma_r = 5e-5 IS our sigma = 5e-5, at any dt. The one difference: their q_0 = 1 also forces
the mean (k = 0) mode, which ours leaves alone. tests/solver/test_solver_noise.py rebuilds their
increment from these formulas and compares it with ours.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from diffclosure.solver.grid import Grid


@dataclass(frozen=True)
class NoiseSpec:
    """Amplitude sigma, smoothness alpha and complex-normal variance kappa of sigma*xi."""

    sigma: float = 5e-5
    alpha: float = 0.005
    kappa: float = 10.0

    def __post_init__(self):
        if not self.sigma >= 0:
            raise ValueError(f"dns.noise.sigma must be >= 0, got {self.sigma}")
        if not self.alpha > 0:
            raise ValueError(f"dns.noise.alpha must be > 0, got {self.alpha}")
        if not self.kappa > 0:
            raise ValueError(f"dns.noise.kappa must be > 0, got {self.kappa}")

    @property
    def active(self) -> bool:
        return self.sigma > 0


def covariance(grid: Grid, alpha: float) -> np.ndarray:
    """q_k = exp(-alpha |2 pi k/L|^2) on the rfft layout (n, n//2+1), q_0 = 0, Nyquist 0."""
    q = np.exp(-alpha * grid.k2)
    q[0, 0] = 0.0
    return q * grid.nyquist_free


def box_size(grid: Grid, alpha: float, rel_tol: float = 1e-16) -> int:
    """Largest K with sqrt(q) at |k| = K above rel_tol * max sqrt(q), capped at n/2 - 1."""
    # sqrt(q_k) = exp(-alpha (2 pi k/L)^2 / 2); its largest value over k != 0 is at |k| = 1.
    c = alpha * (2 * math.pi / grid.length) ** 2 / 2
    k_max = math.sqrt(1.0 + math.log(1.0 / rel_tol) / c)
    return max(1, min(int(math.floor(k_max)), grid.n // 2 - 1))


class NoiseSampler:
    """Draws rfft2(eta) (B, n, n//2+1) for a batch of trajectories, one Generator each."""

    def __init__(self, grid: Grid, spec: NoiseSpec, rel_tol: float = 1e-16):
        self.grid, self.spec = grid, spec
        n = grid.n
        K = box_size(grid, spec.alpha, rel_tol)
        self.K = K
        k = np.arange(-K, K + 1)
        ky, kx = np.meshgrid(k, k, indexing="ij")
        kk = (2 * math.pi / grid.length) ** 2 * (kx**2 + ky**2)
        sqrt_q = np.exp(-spec.alpha * kk / 2)
        sqrt_q[K, K] = 0.0  # q_0 = 0: no forcing of the mean vorticity
        # n^2 turns the normalised coefficients c_k into the unnormalised rfft2 layout.
        self._amp = sqrt_q * math.sqrt(spec.kappa) * n * n
        # rfft rows of ky = -K..K (fftfreq order) and columns kx = 0..K.
        self._rows = np.mod(k, n)
        self._cols = slice(0, K + 1)

    def sample_box(self, rngs: Sequence[np.random.Generator], out: np.ndarray | None = None):
        """The non-zero box of rfft2(eta): (B, 2K+1, K+1) complex128, rows k_y = -K..K,
        columns k_x = 0..K (all other modes of the spectrum are zero)."""
        K = self.K
        shape = (len(rngs), 2 * K + 1, K + 1)
        if out is None:
            out = np.empty(shape, dtype=np.complex128)
        elif out.shape != shape:
            raise ValueError(f"noise box buffer has shape {out.shape}, expected {shape}")
        for b, rng in enumerate(rngs):
            g = rng.standard_normal((2, 2 * K + 1, 2 * K + 1))
            z = self._amp * (g[0] + 1j * g[1])
            # Re(sum z_k e_k) = sum_k e_k (z_k + conj z_{-k}) / 2; index flip maps k -> -k.
            c = 0.5 * (z + np.conj(z[::-1, ::-1]))
            out[b] = c[:, K:]
        return out

    def scatter(self, box, out):
        """Write a box (B, 2K+1, K+1) into the spectrum `out` (B, n, n//2+1), numpy or torch.

        Rows k_y = -K..-1 are the last K rows of the rfft layout, k_y = 0..K the first K+1:
        two slice copies (2K+1 <= n-1, so they never overlap).
        """
        n, K = self.grid.n, self.K
        out[:, n - K :, : K + 1] = box[:, :K]
        out[:, : K + 1, : K + 1] = box[:, K:]
        return out

    def sample(self, rngs: Sequence[np.random.Generator], out: np.ndarray | None = None):
        """rfft2(eta) for each generator, shape (B, n, n//2+1) complex128.

        `out`, if given, must be zeros or the result of an earlier call: only the mode box is
        written, the rest stays zero.
        """
        n = self.grid.n
        shape = (len(rngs), n, n // 2 + 1)
        if out is None:
            out = np.zeros(shape, dtype=np.complex128)
        elif out.shape != shape:
            raise ValueError(f"noise buffer has shape {out.shape}, expected {shape}")
        return self.scatter(self.sample_box(rngs), out)


def white_noise_rfft2(rng: np.random.Generator, batch: int, n: int, std: float,
                      out: np.ndarray | None = None) -> np.ndarray:
    """rfft2 of `batch` fields of iid N(0, std^2) points on an n x n grid, drawn directly.

    The law of X = rfft2(x) for white x: E|X_k|^2 = n^2 std^2 at every mode; where k and -k
    differ, Re and Im are independent N(0, n^2 std^2 / 2) and X_{-k} = conj(X_k); the four
    self-conjugate modes (k_x, k_y in {0, n/2}) are real N(0, n^2 std^2). In the rfft layout
    only the columns k_x = 0 and n/2 hold pairs (rows k_y and -k_y), filled here by symmetry.
    Same law as ``numpy.fft.rfft2(std * rng.standard_normal((batch, n, n)))`` (other draws),
    without the transform: what a held closure term's per-step white noise costs in spectral
    space. `n` must be even.
    """
    if n % 2:
        raise ValueError(f"white_noise_rfft2 needs an even n, got {n}")
    m, h = n // 2 + 1, n // 2
    shape = (batch, n, m)
    if out is None:
        out = np.empty(shape, dtype=np.complex128)
    elif out.shape != shape or out.dtype != np.complex128:
        raise ValueError(f"white-noise buffer must be complex128 {shape}, got {out.shape}")
    g = rng.standard_normal((batch, n, m, 2))
    out[...] = g.view(np.complex128)[..., 0]
    out *= std * n / math.sqrt(2.0)
    for c in (0, h):
        col = out[:, :, c]
        col[:, h + 1 :] = np.conj(col[:, 1:h][:, ::-1])
        col[:, 0] = (std * n) * g[:, 0, c, 0]
        col[:, h] = (std * n) * g[:, h, c, 0]
    return out
