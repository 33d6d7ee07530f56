"""Stochastic forcing: covariance of one draw and linear variance growth in the solver."""

from __future__ import annotations

import numpy as np
import pytest

from diffclosure.solver.grid import Grid
from diffclosure.solver.navier_stokes import Solver
from diffclosure.solver.noise import NoiseSampler, NoiseSpec, box_size, covariance


def _rngs(count, seed=0):
    return [np.random.default_rng([seed, j]) for j in range(count)]


def test_single_draw_has_covariance_kappa_q():
    n, samples = 16, 4000
    spec = NoiseSpec(1.0, alpha=0.01, kappa=3.0)
    grid = Grid(n)
    sampler = NoiseSampler(grid, spec)
    eta_hat = sampler.sample(_rngs(samples))
    c = eta_hat / n**2
    q = covariance(grid, spec.alpha)
    power = np.mean(np.abs(c) ** 2, axis=0)
    forced = q > 1e-3
    assert forced.sum() > 20
    ratio = power[forced] / (spec.kappa * q[forced])
    # |c_k|^2 is exponential with mean kappa q_k: relative std 1/sqrt(samples) per mode.
    assert np.all(np.abs(ratio - 1) < 5 / np.sqrt(samples))
    assert abs(ratio.mean() - 1) < 4 / np.sqrt(samples * forced.sum())
    # Zero mean mode, Nyquist row/column never forced, eta real (rfft round trip exact).
    assert np.all(c[:, 0, 0] == 0)
    assert np.all(c[:, n // 2, :] == 0) and np.all(c[:, :, n // 2] == 0)
    eta = np.fft.irfft2(eta_hat[:5], s=(n, n))
    assert np.allclose(np.fft.rfft2(eta), eta_hat[:5], atol=1e-9 * np.abs(eta_hat).max())


def test_box_covers_modes_above_tolerance():
    grid = Grid(256)
    K = box_size(grid, 0.005)
    sqrt_q = np.exp(-0.005 * (2 * np.pi) ** 2 * np.array([K, K + 1]) ** 2 / 2)
    largest = np.exp(-0.005 * (2 * np.pi) ** 2 / 2)
    assert sqrt_q[0] >= 1e-16 * largest > sqrt_q[1]


def test_noise_depends_only_on_each_trajectorys_generator():
    grid, spec = Grid(16), NoiseSpec(1.0, 0.01, 10.0)
    sampler = NoiseSampler(grid, spec)
    batch = sampler.sample(_rngs(3, seed=5))
    single = sampler.sample([np.random.default_rng([5, 2])])
    assert np.array_equal(batch[2], single[0])


@pytest.mark.parametrize("dt", [0.01, 0.0025])
def test_variance_grows_linearly_at_rate_sigma2_kappa_q(dt):
    n, B, T = 16, 600, 0.1
    spec = NoiseSpec(sigma=0.3, alpha=0.01, kappa=2.0)
    solver = Solver(n, 1.0, 1e-3, dt, noise=spec, advection=False, viscosity=False,
                    backend="numpy")
    grid = solver.grid
    q = covariance(grid, spec.alpha)
    forced = q > 1e-3
    rngs = _rngs(B, seed=11)
    state = solver.zeros(B)
    steps = int(round(T / dt))
    checkpoints = {steps // 2, steps}
    measured = []
    for s in range(1, steps + 1):
        state = solver.step(state, solver.sample_noise(rngs), t=(s - 1) * dt)
        if s in checkpoints:
            c = state / n**2
            var = np.mean(np.abs(c) ** 2, axis=0)[forced]
            theory = spec.sigma**2 * spec.kappa * q[forced] * s * dt
            measured.append(var / theory)
    for ratio in measured:
        # Per mode within 5 MC standard errors; pooled over modes within 4.
        assert np.all(np.abs(ratio - 1) < 5 / np.sqrt(B))
        assert abs(ratio.mean() - 1) < 4 / np.sqrt(B * forced.sum()) + 0.01
