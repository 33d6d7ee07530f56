"""Correlated sampler noise (sampling/noise_source.py): every draw stays N(0, 1), consecutive
samplings are correlated by rho, rho = 0 is the plain generator, and the correlation reaches the
samples through a real sampler."""

import math

import numpy as np
import pytest
import torch

from diffclosure.model.sde import VESDE
from diffclosure.sampling.denoiser import Denoiser
from diffclosure.sampling.noise_source import CorrelatedNoise, rho_for
from diffclosure.sampling.samplers import make_sampler

SDE = VESDE(26.0)


def series(rho: float, samplings: int, shape=(4000,), draws: int = 2, seed: int = 0):
    """(samplings, draws, *shape) values: `draws` draws in each of `samplings` samplings."""
    noise = CorrelatedNoise(torch.Generator().manual_seed(seed), rho)
    out = []
    for _ in range(samplings):
        noise.begin()
        out.append(torch.stack([noise.randn(shape, torch.float64) for _ in range(draws)]))
    return torch.stack(out).numpy()


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.95])
def test_ar1_draws_are_standard_normal_with_lag_one_correlation_rho(rho):
    z = series(rho, samplings=60)
    # 60 x 2 x 4000 values: the mean and variance of N(0, 1) to a few standard errors (the
    # values are correlated in time, which widens the error by sqrt((1 + rho) / (1 - rho))).
    spread = math.sqrt((1 + rho) / (1 - rho))
    assert abs(z.mean()) < 4 * spread / math.sqrt(z.size)
    assert abs(z.var() - 1) < 4 * spread * math.sqrt(2 / z.size)
    for k in range(2):  # each draw of a sampling continues the same draw of the last one
        lag = np.mean(z[1:, k] * z[:-1, k]) / np.mean(z[:, k] ** 2)
        assert lag == pytest.approx(rho, abs=4 * (1 - rho**2) / math.sqrt(59 * 4000) + 1e-3)
    # different draws of a sampling stay independent
    assert abs(np.mean(z[:, 0] * z[:, 1])) < 4 * spread / math.sqrt(z[:, 0].size)


def shell_index(n: int) -> np.ndarray:
    k = np.fft.fftfreq(n, 1.0 / n)
    return np.rint(np.sqrt(k[:, None] ** 2 + k[None, :] ** 2)).astype(int)


def test_ar1_per_shell_keeps_white_standard_normal_draws_and_each_shells_rho():
    n, samplings = 16, 120
    rho_shells = [0.9] * 5 + [0.3] * 3 + [0.0]  # shells past the list take its last entry
    noise = CorrelatedNoise(torch.Generator().manual_seed(5), 0.5, rho_shells=rho_shells)
    z = []
    for _ in range(samplings):
        noise.begin()
        z.append(noise.randn((50, 1, n, n), torch.float64)[:, 0].numpy())
    z = np.stack(z)  # (samplings, 50, n, n)
    # every point N(0, 1): the variance to a few standard errors (the slow shells make
    # consecutive samplings correlated, which at most triples the error)
    assert abs(z.var() - 1) < 3 * 4 * math.sqrt(2 / z.size)
    assert abs(z.mean()) < 3 * 4 / math.sqrt(z.size)
    f = np.fft.fft2(z)
    power = (np.abs(f) ** 2).mean(axis=(0, 1)) / n**2
    # white in space: the same power in every mode (each an average of 6,000 values)
    assert np.all(np.abs(power - 1) < 6 * math.sqrt(1 / (samplings * 50)) * 3)
    lag = np.real(np.conj(f[1:]) * f[:-1]).mean(axis=(0, 1)) / (np.abs(f) ** 2).mean(
        axis=(0, 1))
    shell = shell_index(n)
    for k, expected in ((1, 0.9), (3, 0.9), (6, 0.3), (9, 0.0), (11, 0.0)):
        got = lag[shell == k].mean()
        assert got == pytest.approx(expected, abs=0.05), (k, got)


def test_draws_that_are_not_square_fields_keep_the_pooled_rho():
    noise = CorrelatedNoise(torch.Generator().manual_seed(2), 0.8, rho_shells=[0.0])
    z = []
    for _ in range(80):
        noise.begin()
        z.append(noise.randn((2000,), torch.float64).numpy())
    z = np.stack(z)
    assert np.mean(z[1:] * z[:-1]) / np.mean(z**2) == pytest.approx(0.8, abs=0.02)


def test_rho_zero_is_the_generator_itself():
    a = series(0.0, samplings=3, shape=(7,), seed=3)
    gen = torch.Generator().manual_seed(3)
    b = np.stack([np.stack([torch.randn((7,), generator=gen, dtype=torch.float64).numpy()
                            for _ in range(2)]) for _ in range(3)])
    assert np.array_equal(a, b)


def test_rho_of_a_correlation_time():
    assert rho_for(0.5, 0.005) == pytest.approx(math.exp(-0.01))
    for tau in (0.0, -1.0):
        with pytest.raises(ValueError):
            rho_for(tau, 0.005)


def em_samplings(rho: float, samplings: int = 40) -> np.ndarray:
    """(samplings, 3000) Euler-Maruyama samples (8 steps from t = 1) of N(0, 1) per point, the
    exact score, the sampler's draws from a CorrelatedNoise."""
    sampler = make_sampler({"name": "em", "steps": 8, "t_max": 1.0, "start": "zero"})

    def score(x, t, cond):
        return -x / (1.0 + SDE.std(t)[:, None] ** 2)

    noise = CorrelatedNoise(torch.Generator().manual_seed(1), rho)
    out = []
    for _ in range(samplings):
        noise.begin()
        out.append(sampler(Denoiser(score, SDE), (3000, 1), noise).samples.numpy()[:, 0])
    return np.stack(out)


@pytest.mark.parametrize("rho", [0.0, 0.8])
def test_the_samples_of_consecutive_samplings_are_correlated_by_rho(rho):
    """The sample is a linear function of the sampler's draws, all AR(1) with the same rho, so
    its deviation from the mean is too; each sampling's law is that of independent draws."""
    s = em_samplings(rho)
    s = s - s.mean()
    lag = np.mean(s[1:] * s[:-1]) / np.mean(s**2)
    assert lag == pytest.approx(rho, abs=0.03)
    white = em_samplings(0.0)
    assert np.var(s) == pytest.approx(np.var(white - white.mean()), rel=0.05)
