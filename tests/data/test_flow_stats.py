"""The dataset stage's facts about its data: the noise share of the target and the window drift."""

import math

import numpy as np
import pytest

from diffclosure.coarse.coarsen import coarsen
from diffclosure.coarse.filters import filter_width
from diffclosure.data import flow_stats

from support.noise_terms import solver_noise_terms

NOISE = {"sigma": 5e-5, "alpha": 0.005, "kappa": 10.0}


@pytest.mark.parametrize("method", ["subsample", "spectral", "filter"])
def test_noise_term_std_matches_sampled_noise_after_coarse_graining(method):
    # Draw many steps' noise terms with the real solver on the fine grid, coarse-grain them as
    # the coarse stage would (its filter width rule), and compare the std with the formula.
    n, m, dt = 64, 16, 1e-3
    rngs = [np.random.default_rng([7, i]) for i in range(600)]
    term = solver_noise_terms(n, dt, NOISE, rngs)
    coarse = {"n": m, "method": method, "filter": "box", "filter_width": 3.0}
    width = filter_width(coarse, 1.0)
    sampled = np.sqrt(np.mean(coarsen(term, m, method, 1.0, "box", width) ** 2))
    exact = flow_stats.noise_term_std(n, 1.0, NOISE, dt, coarse, width)
    assert sampled == pytest.approx(exact, rel=0.03)


def test_noise_term_std_scales_as_sigma_over_sqrt_dt():
    coarse = {"n": 32, "method": "subsample"}
    base = flow_stats.noise_term_std(128, 1.0, NOISE, 1e-3, coarse)
    assert flow_stats.noise_term_std(128, 1.0, {**NOISE, "sigma": 1e-4}, 1e-3, coarse) == (
        pytest.approx(2 * base))
    assert flow_stats.noise_term_std(128, 1.0, NOISE, 4e-3, coarse) == pytest.approx(base / 2)
    # sum_k q_k over the lattice ~ the integral 1/(4 pi alpha) minus the missing mean mode.
    approx = math.sqrt(NOISE["sigma"] ** 2 * NOISE["kappa"] / 1e-3
                       * (1 / (4 * math.pi * NOISE["alpha"]) - 1))
    assert base == pytest.approx(approx, rel=0.01)


def test_energy_enstrophy_of_a_single_mode():
    # w = a cos(2 pi k x / L): enstrophy a^2/4, velocity amplitude a L/(2 pi k), energy a^2 L^2 /
    # (16 pi^2 k^2).
    n, a, k, length = 32, 1.7, 3, 2.0
    x = np.arange(n) * length / n
    w = a * np.cos(2 * np.pi * k * x / length)[None, :] * np.ones((n, 1))
    energy, enstrophy = flow_stats.energy_enstrophy(w, length)
    assert enstrophy == pytest.approx(a**2 / 4, rel=1e-12)
    assert energy == pytest.approx(a**2 * length**2 / (16 * np.pi**2 * k**2), rel=1e-12)


def test_window_drift():
    assert flow_stats.window_drift([1.0, 1.0, 1.0]) == 0.0
    assert flow_stats.window_drift([0.9, 1.0, 1.1]) == pytest.approx(0.2)
