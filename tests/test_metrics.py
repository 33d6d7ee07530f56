"""Metrics against exact values: norms, Parseval, closed-form Gaussian CRPS, calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffclosure.metrics.fields import correlation, d_fro, d_fro_mean, mse, pdf
from diffclosure.metrics.probabilistic import crps, crps_gaussian, spread_skill
from diffclosure.metrics.spectra import energy_spectrum, power_spectrum, spectrum_error

RNG = np.random.default_rng(0)


def test_d_fro_zero_for_identity_and_scales():
    b = RNG.standard_normal((5, 16, 16))
    assert np.all(d_fro(b, b) == 0)
    # a = (1 + c) b  ->  ||a - b|| / ||b|| = |c| exactly, per sample; invariant to scaling both.
    np.testing.assert_allclose(d_fro(1.3 * b, b), 0.3, rtol=1e-12)
    np.testing.assert_allclose(d_fro(7 * 1.3 * b, 7 * b), 0.3, rtol=1e-12)
    np.testing.assert_allclose(d_fro(np.zeros_like(b), b), 1.0)
    assert d_fro(1.3 * b, b).shape == (5,)
    assert d_fro_mean(torch.as_tensor(1.1 * b), torch.as_tensor(b)) == pytest.approx(0.1)


def test_mse_and_correlation():
    a = RNG.standard_normal((3, 8, 8))
    np.testing.assert_allclose(mse(a + 0.5, a), 0.25)
    np.testing.assert_allclose(correlation(a, 2 * a + 1), 1.0)
    np.testing.assert_allclose(correlation(a, -a), -1.0)
    x = np.arange(16) / 16
    ones = np.ones((16, 1))
    s, c = np.sin(2 * np.pi * x)[None, :] * ones, np.cos(2 * np.pi * x)[None, :] * ones
    assert abs(correlation(s, c)) < 1e-12  # orthogonal modes


def test_pdf_of_gaussian_samples():
    centres, dens = pdf(RNG.standard_normal(400_000), bins=41, value_range=(-4, 4))
    exact = np.exp(-0.5 * centres**2) / math.sqrt(2 * math.pi)
    assert np.abs(dens - exact).max() < 0.01
    assert np.sum(dens) * (centres[1] - centres[0]) == pytest.approx(1.0)


def test_crps_point_ensemble_is_mae():
    y = RNG.standard_normal((4, 8, 8))
    point = RNG.standard_normal((1, 4, 8, 8))
    np.testing.assert_allclose(crps(point, y), np.abs(point[0] - y))
    same = np.repeat(point, 5, axis=0)  # five identical members: still a point forecast
    np.testing.assert_allclose(crps(same, y), np.abs(point[0] - y), atol=1e-12)


def test_crps_matches_brute_force_pairs():
    ens, y = RNG.standard_normal((7, 5)), RNG.standard_normal(5)
    pairs = np.abs(ens[:, None] - ens[None, :]).sum(axis=(0, 1))
    expected = np.abs(ens - y).mean(0) - 0.5 * pairs / 49
    np.testing.assert_allclose(crps(ens, y), expected, rtol=1e-12)
    np.testing.assert_allclose(crps(ens, y, fair=True), np.abs(ens - y).mean(0) - 0.5 * pairs / 42)
    np.testing.assert_allclose(crps(np.moveaxis(ens, 0, 1), y, axis=1), expected)


def test_crps_of_gaussian_ensemble_approaches_closed_form():
    obs = np.array([-1.5, 0.0, 0.3, 2.0])
    ens = 0.5 + 2.0 * RNG.standard_normal((20_000, obs.size))
    exact = crps_gaussian(0.5, 2.0, obs)
    np.testing.assert_allclose(crps(ens, obs, fair=True), exact, rtol=0.02)
    # Sanity of the closed form itself: at the mean, crps = std (sqrt(2) - 1) / sqrt(pi).
    assert crps_gaussian(0.0, 1.0, 0.0) == pytest.approx((math.sqrt(2) - 1) / math.sqrt(math.pi))


@pytest.mark.parametrize("members", [2, 5, 20])
def test_spread_skill_is_one_when_calibrated(members):
    # Truth and members are exchangeable draws around a random per-point centre.
    centre = 3 * RNG.standard_normal((400, 16, 16))
    truth = centre + RNG.standard_normal(centre.shape)
    ens = centre[None] + RNG.standard_normal((members,) + centre.shape)
    ss = spread_skill(ens, truth)
    assert ss.ratio == pytest.approx(1.0, abs=0.02)
    under = spread_skill(centre[None] + 0.5 * (ens - centre[None]), truth)
    assert under.ratio < 0.8  # an under-dispersive ensemble is flagged


def test_power_spectrum_single_mode_parseval():
    n = 32
    y, x = np.meshgrid(np.arange(n) / n, np.arange(n) / n, indexing="ij")
    amp = 1.7
    f = amp * np.cos(2 * np.pi * (3 * x + 4 * y))  # |k| = 5 exactly
    k, p = power_spectrum(f)
    assert p[5] == pytest.approx(amp**2 / 2)  # mean(f^2) = amp^2 / 2, all in shell 5
    assert np.sum(np.delete(p, 5)) < 1e-20
    g = RNG.standard_normal((3, n, n))
    _, pg = power_spectrum(g)
    np.testing.assert_allclose(pg.sum(-1), np.mean(g**2, axis=(-2, -1)))


def test_energy_spectrum_single_mode():
    n, L = 16, 2.0
    y, x = np.meshgrid(np.arange(n) * L / n, np.arange(n) * L / n, indexing="ij")
    kx = 2 * np.pi * 2 / L
    w = np.sin(kx * x)  # psi = w / kx^2, u = (0, -d psi/dx) -> |u|^2 mean = 1/(2 kx^2)
    k, e = energy_spectrum(w, length=L)
    assert e[2] == pytest.approx(0.5 * 0.5 / kx**2)
    assert e.sum() == pytest.approx(e[2])


def test_spectrum_error():
    p = np.array([0.0, 1.0, 0.5, 0.25, 0.1, 0.05, 0.01, 0.001])
    assert spectrum_error(p, p) == 0
    assert spectrum_error(1.1 * p, p, kmax=5) == pytest.approx(math.log(1.1))
