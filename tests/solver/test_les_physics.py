"""Forced 2-D turbulence for the LES benchmark: the ring forcing and the DNS's energy budget."""

import math

import numpy as np
import pytest

from diffclosure.data.flow_stats import budget_rates, energy_enstrophy
from diffclosure.metrics.spectra import power_spectrum
from diffclosure.solver.forcing import make_forcing
from diffclosure.solver.grid import Grid
from diffclosure.solver.initial import gaussian_random_field
from diffclosure.solver.navier_stokes import Solver


@pytest.mark.parametrize("kf", [4, 6, 8])
def test_ring_forcing_lives_on_its_shell_with_rms_amplitude(kf):
    f = make_forcing("ring", Grid(64, 2.0), 0.7, kf)
    k, p = power_spectrum(f)
    assert p[kf] == pytest.approx(0.7**2, rel=1e-12)  # all of mean(f^2) in shell kf
    assert math.sqrt(np.mean(f**2)) == pytest.approx(0.7, rel=1e-12)
    assert abs(f.mean()) < 1e-12


def test_ring_forcing_is_one_function_on_every_grid():
    # The coarse solvers evaluate it on their own grid: it must be the fine field subsampled.
    fine, coarse = (make_forcing("ring", Grid(n, 1.0), 1.0, 5) for n in (96, 32))
    np.testing.assert_allclose(fine[::3, ::3], coarse, atol=1e-12)


def test_ring_forcing_rejects_an_unresolved_wavenumber():
    with pytest.raises(ValueError, match="dns.forcing.wavenumber=16"):
        make_forcing("ring", Grid(32), 1.0, 16)


def test_budget_rates_of_a_single_mode():
    # w = cos(2 pi k x / L): E = 1/(4 K^2), Z = 1/4, <|grad w|^2> = K^2 / 2, K = 2 pi k / L.
    n, L, k, nu, mu = 16, 2.0, 3, 0.01, 0.3
    X, _ = Grid(n, L).mesh
    w = np.cos(2 * np.pi * k * X / L)
    K2 = (2 * np.pi * k / L) ** 2
    b = budget_rates(w, 2 * w, nu, mu, L)  # f = 2 w: injection 2 <psi w> = 4 E, 2 <w^2> = 4 Z
    expected = {"energy_injection": 1 / K2, "energy_dissipation": nu / 2,
                "energy_drag": mu / (2 * K2), "enstrophy_injection": 1.0,
                "enstrophy_dissipation": nu * K2 / 2, "enstrophy_drag": mu / 2}
    for name, value in expected.items():
        assert b[name] == pytest.approx(value, rel=1e-12), name


def _budget_residuals(scheme: str, dt: float, T: float = 0.2):
    """E(T) - E(0) minus the time integral of (injection - dissipation - drag), and the same
    for Z, for a vigorous forced flow with drag (the trapezoid rule over the step states)."""
    n, L, nu, mu = 32, 1.0, 2e-3, 0.1
    grid = Grid(n, L)
    f = make_forcing("ring", grid, 2.0, 4)
    # Band-limited to the 2/3 rule: the dealiased advection then conserves E and Z exactly in
    # continuous time, so what is left is the time scheme's error alone.
    w0 = 20 * gaussian_random_field(grid, [np.random.default_rng(1)])
    w0 = np.fft.irfft2(np.fft.rfft2(w0) * grid.dealias, s=(n, n))
    solver = Solver(n, L, nu, dt, drag=mu, forcing=f, scheme=scheme, backend="numpy")
    state, ws = solver.from_physical(w0), [w0[0]]
    for i in range(int(round(T / dt))):
        state = solver.step(state, t=i * dt)
        ws.append(solver.physical(state)[0])
    ws = np.array(ws)
    E, Z = energy_enstrophy(ws, L)
    b = budget_rates(ws, f, nu, mu, L)
    out = []
    for q, name in ((E, "energy"), (Z, "enstrophy")):
        rate = b[f"{name}_injection"] - b[f"{name}_dissipation"] - b[f"{name}_drag"]
        out.append(abs(q[-1] - q[0] - dt * (rate[1:] + rate[:-1]).sum() / 2) / abs(q[-1] - q[0]))
    return out


@pytest.mark.parametrize("scheme, order", [("euler_cn", 1), ("heun_cn", 2)])
def test_dns_energy_and_enstrophy_budgets_close_to_the_schemes_order(scheme, order):
    coarse, fine = _budget_residuals(scheme, 4e-3), _budget_residuals(scheme, 2e-3)
    for r_coarse, r_fine in zip(coarse, fine, strict=True):
        observed = math.log2(r_coarse / r_fine)
        # Heun's drift of a quadratic invariant is of higher order than its local error.
        assert observed > order - 0.2
        if order == 1:
            assert observed < 1.2
        assert r_fine < (0.03 if order == 1 else 1e-3)
