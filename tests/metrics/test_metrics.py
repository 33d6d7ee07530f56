"""Metrics against exact values: norms, Parseval, closed-form Gaussian CRPS, calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffclosure.metrics.fields import correlation, d_fro, d_fro_mean, mse, pdf
from diffclosure.metrics.probabilistic import (
    crps,
    crps_gaussian,
    rank_flatness,
    rank_histogram,
    spread_skill,
)
from diffclosure.metrics.spectra import (
    _shells,
    energy_spectrum,
    noise_spectrum,
    power_spectrum,
    spectrum_error,
)

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


def test_rank_histogram_of_exchangeable_ensemble_is_flat():
    members, points = 4, 50_000
    draws = RNG.standard_normal((members + 1, points))
    counts = rank_histogram(draws[1:], draws[0])
    assert counts.shape == (members + 1,) and counts.sum() == pytest.approx(points)
    flat = rank_flatness(counts)
    # Independent points: chi^2 with M degrees of freedom; 99.9% quantile of chi^2_4 is 18.5.
    assert flat.chi2_dof * members < 18.5
    assert abs(flat.outer - 1) < 5 * math.sqrt(2 / (members + 1) / points) * (members + 1) / 2


def test_rank_histogram_of_under_dispersed_ensemble_is_u_shaped():
    from scipy import integrate, stats

    members, points, s = 4, 50_000, 0.3
    obs = RNG.standard_normal(points)
    ens = s * RNG.standard_normal((points, members))  # members on axis 1
    counts = rank_histogram(ens, obs, axis=1)
    assert counts[0] > counts[1] > counts[2] < counts[3] < counts[4]
    # P(rank 0) = P(y below every member) = int phi(y) (1 - Phi(y/s))^M dy.
    p0 = integrate.quad(lambda y: stats.norm.pdf(y) * stats.norm.sf(y / s) ** members,
                        -10, 10)[0]
    assert counts[0] / points == pytest.approx(p0, abs=5 * math.sqrt(p0 / points))
    # By symmetry the top rank has p0 too: outer = 2 p0 / (2 / (M+1)), a U far above 1.
    assert rank_flatness(counts).outer == pytest.approx(p0 * (members + 1), rel=0.03)


def test_rank_histogram_ties_and_exact_ranks():
    ens = np.array([[0.0, 0.0, 1.0], [1.0, -1.0, 3.0]])  # two members, three points
    obs = np.array([0.5, 0.0, np.nan])  # rank 1; one member below, one tied: 1 or 2; skipped
    np.testing.assert_allclose(rank_histogram(ens, obs), [0.0, 1.5, 0.5])
    same = RNG.standard_normal(1000)
    counts = rank_histogram(np.stack([same] * 3), same)  # every rank equally possible
    np.testing.assert_allclose(counts, 250.0)
    assert rank_flatness(counts).deviation == pytest.approx(0.0, abs=1e-12)


def test_noise_spectrum_matches_the_solver_noise_term():
    """The noise term a solver step reports (increment / dt) has the predicted spectrum."""
    from diffclosure.solver.navier_stokes import Solver
    from diffclosure.solver.noise import NoiseSpec

    n, dt, batch = 32, 1e-3, 300
    spec = NoiseSpec(5e-5, alpha=0.005, kappa=10.0)
    solver = Solver(n, 1.0, 1e-3, dt, noise=spec, backend="numpy")
    rngs = [np.random.default_rng([7, j]) for j in range(batch)]
    state = solver.from_physical(np.zeros((batch, n, n)))
    _, terms = solver.step(state, solver.sample_noise(rngs), terms=("noise",))
    k, measured = power_spectrum(np.asarray(terms["noise"]))
    _, expected = noise_spectrum(n, 1.0, spec.sigma, spec.alpha, spec.kappa, dt)
    # Each shell sums counts/2 independent complex modes, |c|^2 exponential: relative std
    # 1/sqrt(batch * counts / 2) where the modes share one q (the low shells nearly do).
    counts = _shells(n)[2]
    for shell in range(1, 6):
        tol = 5 / math.sqrt(batch * counts[shell] / 2)
        assert measured.mean(0)[shell] / expected[shell] == pytest.approx(1, abs=tol)
    assert expected[0] == 0 and expected[n // 2 + 1 :].sum() < 1e-12 * expected.sum()
    _, doubled = noise_spectrum(n, 1.0, spec.sigma, spec.alpha, spec.kappa, dt, scale=2.0)
    np.testing.assert_allclose(doubled, 4 * expected)


def test_report_times_are_the_records_nearest_each_fraction_of_the_last():
    from diffclosure.metrics.times import report_times

    times = [20.0, 0.0, 7.5, 5.0, 10.0, 10.0, 15.0, 2.5]  # unsorted, one repeated
    assert report_times(times, [0.25, 0.5, 1.0]) == [5.0, 10.0, 20.0]
    assert report_times(times, [0.3]) == [5.0]  # 6.0 is nearer 5.0 than 7.5


def test_paired_records_end_where_any_state_loses_its_reference():
    from diffclosure.metrics.times import paired_records

    ref = np.ones((2, 6, 4, 4))
    assert paired_records(ref) == 6
    ref[1, 4:] = np.nan  # one state's reference ends after 4 records
    ref[0, 5, 0, 0] = np.nan
    assert paired_records(ref) == 4
    ref[0, 0, 1, 1] = np.inf
    assert paired_records(ref) == 0
