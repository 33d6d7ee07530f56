"""Per-term contributions of a step: the update identity and each term's content."""

from __future__ import annotations

import numpy as np
import pytest

from diffclosure.errors import BlowUpError
from diffclosure.solver import grid as gridmod
from diffclosure.solver.equation import no_advection, no_viscosity
from diffclosure.solver.forcing import make_forcing
from diffclosure.solver.grid import Grid
from diffclosure.solver.initial import gaussian_random_field, trajectory_streams
from diffclosure.solver.navier_stokes import Solver
from diffclosure.solver.noise import NoiseSpec


def _setup(scheme, backend="numpy"):
    n, B = 32, 2
    grid = Grid(n, 2.0)
    w0 = gaussian_random_field(grid, [trajectory_streams(1, j)[0] for j in range(B)])
    f = make_forcing("kolmogorov", grid, 0.3, 2)
    solver = Solver(n, 2.0, 2e-3, 5e-3, drag=0.1, forcing=f, scheme=scheme, backend=backend,
                    noise=NoiseSpec(0.02, 0.005, 10.0), planner="FFTW_ESTIMATE")
    rngs = [trajectory_streams(1, j)[1] for j in range(B)]
    return solver, grid, w0, rngs


def closure(w, t):
    return 0.05 * np.sin(w) + t


@pytest.mark.parametrize("scheme", ["euler_cn", "heun_cn"])
@pytest.mark.parametrize("backend", ["numpy", "pyfftw"])
def test_terms_reproduce_the_update(scheme, backend):
    solver, grid, w0, rngs = _setup(scheme, backend)
    state = solver.from_physical(w0)
    eta = solver.sample_noise(rngs)
    eta_copy = np.array(eta)
    new, terms = solver.step(state, eta, closure=closure, t=0.3, return_terms=True)
    w1, dt = solver.physical(new), solver.dt
    scale = np.abs(w1 - w0).max()
    tol = 1e-12 * np.abs(w0).max()
    known_g = terms["advection"] + terms["drag"] + terms["forcing"] + terms["closure"]
    known_h = terms["viscous"] + terms["drag"] + terms["forcing"] + terms["closure"]
    assert np.abs(w1 - (w0 + dt * (terms["G"] + known_g))).max() < tol
    assert np.abs(w1 - (w0 + dt * (terms["H"] + known_h))).max() < tol
    assert scale > 1e3 * tol  # the step did something

    # Each term's content, against independent formulas.
    mid = 0.5 * (w0 + w1)
    assert np.allclose(terms["viscous"], solver.nu * gridmod.laplacian(grid, mid), atol=tol)
    assert np.allclose(terms["drag"], -solver.drag * mid, atol=tol)
    assert np.allclose(terms["forcing"], solver.forcing, atol=tol)
    noise = 0.02 * np.sqrt(dt) * np.fft.irfft2(eta_copy, s=(32, 32)) / dt
    assert np.allclose(terms["noise"], noise, atol=tol)
    assert np.allclose(terms["closure"], closure(w0, 0.3), atol=tol)
    if scheme == "euler_cn":  # grid.advection is a separate implementation of u.grad(w)
        assert np.allclose(terms["advection"], -gridmod.advection(grid, w0), atol=tol)


def test_known_physics_equations_lack_their_terms():
    n = 16
    grid = Grid(n)
    w0 = gaussian_random_field(grid, [np.random.default_rng(0)])
    solver = Solver(n, nu=0.01, dt=0.01, physics=no_advection, backend="numpy")
    _, terms = solver.step(solver.from_physical(w0), return_terms=True)
    assert np.all(terms["advection"] == 0)
    solver = Solver(n, nu=0.01, dt=0.01, physics=no_viscosity, backend="numpy")
    new, terms = solver.step(solver.from_physical(w0), return_terms=True)
    assert np.all(terms["viscous"] == 0)
    # Pure Euler advection: the update is exactly dt * advection.
    assert np.allclose(solver.physical(new)[0] - w0, solver.dt * terms["advection"][0],
                       atol=1e-13)


def test_blow_up_guard_names_time_step_and_cfl():
    n = 32
    grid = Grid(n)
    w0 = 50 * gaussian_random_field(grid, [np.random.default_rng(0)])
    solver = Solver(n, nu=1e-4, dt=0.5, check_every=2, backend="numpy")
    state = solver.from_physical(w0)
    with pytest.raises(BlowUpError) as info:
        for s in range(10):
            state = solver.step(state, t=s * solver.dt)
    err = info.value
    assert err.step == 2 and err.time == pytest.approx(1.0) and err.cfl > 1
    msg = str(err)
    assert "t=1" in msg and "step 2" in msg and "CFL" in msg and "dns.dt=0.5" in msg
    bad = solver.from_physical(np.full((1, n, n), np.nan))
    with pytest.raises(BlowUpError, match="non-finite"):
        solver.check(bad, 0.0)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_blow_up_of_a_non_finite_state_has_no_cfl_and_no_warnings(value):
    import warnings

    n = 16
    solver = Solver(n, nu=1e-3, dt=0.01, backend="numpy")
    w = np.zeros((1, n, n))
    w[0, 3, 5] = value
    with np.errstate(all="ignore"):
        state = solver.from_physical(w)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy RuntimeWarning inside the guard fails here
        with pytest.raises(BlowUpError) as info:
            solver.check(state, 0.5)
    msg = str(info.value)
    assert "non-finite vorticity" in msg and "CFL" not in msg and info.value.cfl is None
    assert "t=0.5" in msg and "dns.dt=0.01" in msg
