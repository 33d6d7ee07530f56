"""Solver against exact solutions and conservation laws (no numbers copied from the code)."""

from __future__ import annotations

import numpy as np
import pytest

from diffclosure.solver.grid import Grid
from diffclosure.solver.navier_stokes import Solver

SCHEMES = ["euler_cn", "heun_cn"]


@pytest.fixture(autouse=True)
def _wisdom(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFCLOSURE_FFTW_WISDOM", str(tmp_path / "wisdom.pickle"))


def _same_shell_field(grid: Grid) -> np.ndarray:
    """Modes (2, 1) and (1, -2), |k|^2 = 5: a steady Euler flow, u.grad(w) = 0 exactly."""
    X, Y = grid.mesh
    c = 2 * np.pi / grid.length
    return np.cos(c * (2 * X + Y)) + 0.7 * np.sin(c * (X - 2 * Y) + 0.3)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_taylor_green_decay_matches_crank_nicolson_and_exact(scheme):
    n, length, nu, dt, steps = 32, 1.5, 0.02, 0.01, 100
    grid = Grid(n, length)
    w0 = _same_shell_field(grid)
    solver = Solver(n, length, nu, dt, scheme=scheme, backend="numpy")
    state = solver.from_physical(w0)
    for s in range(steps):
        state = solver.step(state, t=s * dt)
    w = solver.physical(state)[0]
    lam = nu * 5 * (2 * np.pi / length) ** 2
    T = steps * dt
    r = (1 - lam * dt / 2) / (1 + lam * dt / 2)  # Crank-Nicolson amplification factor
    # Advection vanishes identically, so the scheme is exactly CN on this mode: round-off only.
    assert np.max(np.abs(w - r**steps * w0)) < 1e-12 * np.max(np.abs(w0))
    # Against the exact decay the error is CN's: log r = -lam dt - (lam dt)^3/12 + O(dt^5).
    exact = np.exp(-lam * T) * w0
    rel_err = np.max(np.abs(w - exact)) / np.max(np.abs(exact))
    predicted = lam**3 * dt**2 * T / 12
    assert rel_err == pytest.approx(predicted, rel=0.02)


def _smooth_flow(grid: Grid) -> np.ndarray:
    """Modes of different |k| inside the 2/3 box: genuinely nonlinear, band-limited."""
    X, Y = grid.mesh
    c = 2 * np.pi / grid.length
    return 2 * np.pi * (
        np.cos(c * X) + 0.6 * np.sin(c * (X + 2 * Y)) + 0.4 * np.cos(c * 3 * Y + 1.0)
    )


def _run(solver, w0, T):
    steps = int(round(T / solver.dt))
    state = solver.from_physical(w0)
    for s in range(steps):
        state = solver.step(state, t=s * solver.dt, out=state)
    return solver.physical(state)[0]


@pytest.mark.parametrize("scheme,order", [("euler_cn", 1.0), ("heun_cn", 2.0)])
def test_temporal_convergence_order(scheme, order):
    n, nu, drag, T = 32, 0.01, 0.1, 0.2
    grid = Grid(n)
    w0 = _smooth_flow(grid)
    f = 0.5 * np.sin(2 * np.pi * (grid.mesh[0] + grid.mesh[1]))
    kw = dict(drag=drag, forcing=f, backend="numpy")
    ref = _run(Solver(n, 1.0, nu, T / 1600, scheme="heun_cn", **kw), w0, T)
    dts = [T / 25, T / 50, T / 100]
    errs = [
        np.linalg.norm(_run(Solver(n, 1.0, nu, dt, scheme=scheme, **kw), w0, T) - ref)
        for dt in dts
    ]
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(np.abs(orders - order) < 0.25), (errs, orders)


@pytest.mark.parametrize("scheme,order", [("euler_cn", 1.0), ("heun_cn", 2.0)])
def test_inviscid_energy_and_enstrophy_conserved_to_time_error(scheme, order):
    n, T = 32, 0.2
    grid = Grid(n)
    w0 = _smooth_flow(grid)
    drift = {}
    for dt in (T / 40, T / 80):
        solver = Solver(n, 1.0, 0.0, dt, scheme=scheme, backend="numpy")
        s0 = solver.from_physical(w0)
        e0, z0 = solver.energy(s0)[0], solver.enstrophy(s0)[0]
        w = _run(solver, w0, T)
        s1 = solver.from_physical(w)
        drift[dt] = (abs(solver.energy(s1)[0] / e0 - 1), abs(solver.enstrophy(s1)[0] / z0 - 1))
    (e_big, z_big), (e_small, z_small) = drift[T / 40], drift[T / 80]
    assert max(e_big, z_big) < 5e-2
    # Conserved by the dealiased (Galerkin) semi-discretisation: what drifts is time error,
    # shrinking at least at the scheme's order when dt halves.
    assert e_big / e_small > 2 ** (order - 0.3)
    assert z_big / z_small > 2 ** (order - 0.3)


def test_steady_state_kolmogorov_balance():
    """Kolmogorov flow w = f / (nu |2 pi k|^2 + mu) is an exact steady state (advection = 0)."""
    n, nu, mu, k = 32, 0.01, 0.2, 3
    grid = Grid(n)
    from diffclosure.solver.forcing import make_forcing

    f = make_forcing("kolmogorov", grid, 1.0, k)
    w_steady = f / (nu * (2 * np.pi * k) ** 2 + mu)
    for scheme in SCHEMES:
        solver = Solver(n, 1.0, nu, 0.05, drag=mu, forcing=f, scheme=scheme, backend="numpy")
        w = _run(solver, w_steady, 1.0)
        assert np.max(np.abs(w - w_steady)) < 1e-12
