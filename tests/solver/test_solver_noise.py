"""Stochastic forcing: covariance of one draw and linear variance growth in the solver."""

from __future__ import annotations

import numpy as np
import pytest

from diffclosure.solver.equation import no_advection
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
    solver = Solver(n, 1.0, 0.0, dt, noise=spec, physics=no_advection, backend="numpy")
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


def _research_increments(n, dt, sigma, alpha, kappa, draws, rng, length=1.0):
    """The research code's per-step noise increment (generator_sns.py, random_forcing.py),
    rebuilt from its formulas: b_k = sqrt(q_k) n^2 / (L sqrt(dt)) on the FULL n x n spectrum
    (q_0 = 1 included), a complex normal made of kappa summed standard normals per part,
    dW = Re ifft2(b * normal) (numpy's ifft2 carries the 1/n^2), increment = dt * sigma * dW."""
    k = np.fft.fftfreq(n, d=1.0 / n)
    k[n // 2] = n // 2  # their wavenumbers run 0..n/2, -n/2+1..-1
    lam = 2 * np.pi * k / length
    b = np.exp(-alpha * (lam[:, None] ** 2 + lam[None, :] ** 2) / 2) * n * n / (
        length * np.sqrt(dt))
    normal = np.zeros((draws, n, n), dtype=np.complex128)
    for _ in range(int(kappa)):
        normal += rng.standard_normal((draws, n, n)) + 1j * rng.standard_normal((draws, n, n))
    return dt * sigma * np.real(np.fft.ifft2(b * normal))


def _our_increments(n, dt, sigma, alpha, kappa, draws, seed):
    """One step of the solver from w = 0 with only the noise acting: its increment."""
    solver = Solver(n, 1.0, 0.0, dt, noise=NoiseSpec(sigma, alpha, kappa),
                    physics=no_advection, backend="numpy")
    return solver.physical(solver.step(solver.zeros(draws), solver.sample_noise(
        _rngs(draws, seed))))


@pytest.mark.slow
def test_research_codes_sigma_is_ours():
    """Their sigma_r = 5e-5 at dt = 1e-3 gives our increment at sigma = 5e-5 (not 5e-8)."""
    n, dt, sigma_r, alpha, kappa, draws = 64, 1e-3, 5e-5, 0.005, 10, 1500
    theirs = _research_increments(n, dt, sigma_r, alpha, kappa, draws, np.random.default_rng(3))
    theirs -= theirs.mean(axis=(-2, -1), keepdims=True)  # their forced k = 0 mode: excluded
    q = covariance(Grid(n), alpha)
    forced = q > 1e-4 * q.max()
    assert forced.sum() > 50

    def compare(sigma_ours):
        ours = _our_increments(n, dt, sigma_ours, alpha, kappa, draws, seed=4)
        rms = [np.sqrt(np.mean(x**2)) for x in (theirs, ours)]
        power = [np.mean(np.abs(np.fft.rfft2(x) / n**2) ** 2, axis=0)[forced]
                 for x in (theirs, ours)]
        return rms[1] / rms[0], power[1] / power[0]

    rms_ratio, mode_ratio = compare(sigma_r)
    # Each |c_k|^2 is exponential (relative std 1): a ratio of two means of `draws` has
    # relative std sqrt(2 / draws) per mode; the rms pools ~100 modes and all points.
    tol = np.sqrt(2 / draws)
    assert np.all(np.abs(mode_ratio - 1) < 5 * tol)
    assert abs(mode_ratio.mean() - 1) < 4 * tol / np.sqrt(forced.sum()) + 1e-3
    assert abs(rms_ratio - 1) < 0.02
    # Their rms per step is sigma sqrt(dt kappa sum_{k != 0} q_k) ~ 1.9e-5: independent check.
    full = np.exp(-alpha * (2 * np.pi) ** 2 * (np.fft.fftfreq(n, 1 / n)[:, None] ** 2
                                               + np.fft.fftfreq(n, 1 / n)[None, :] ** 2))
    expected = sigma_r * np.sqrt(dt * kappa * (full.sum() - 1))
    assert abs(np.sqrt(np.mean(theirs**2)) / expected - 1) < 0.02
    # The old mapping sigma = sigma_r * dt is 1000x too weak and fails the same comparison.
    old_rms, old_modes = compare(sigma_r * dt)
    assert abs(old_rms - 1) > 0.9 and np.all(np.abs(old_modes - 1) > 5 * tol)
