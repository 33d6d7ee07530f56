"""Equations and steppers apart: a new equation is a few lines and both steppers solve it at
their order; the known-physics equations hold exactly their terms."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from diffclosure.solver import grid as gridmod
from diffclosure.solver.equation import implicit_half_viscosity, navier_stokes
from diffclosure.solver.grid import Grid
from diffclosure.solver.initial import gaussian_random_field
from diffclosure.solver.navier_stokes import Solver


@dataclass(frozen=True)
class Beta:
    """-beta v, the beta-plane term (a background vorticity gradient beta along y): a state term
    that the package does not have, defined here from the equation interface alone."""

    beta: float
    name = "beta"
    kind = "state"

    def bind(self, grid, backend):
        # -beta v = beta d(psi)/dx with psi_hat = w_hat / |k|^2.
        mult = backend.asarray(self.beta * 1j * grid.kx * grid.inv_k2 * grid.nyquist_free,
                               complex_=True)

        class Term:
            def scratch(self, batch):
                return backend.empty((batch, grid.n, grid.n // 2 + 1), complex_=True)

            def __call__(self, state, buf):
                return backend.xp.multiply(state, mult, out=buf)

        return Term()


def beta_plane(beta):
    def physics(nu, drag, forcing, noise):
        return navier_stokes(nu, drag, forcing, noise).with_terms(Beta(beta))

    return physics


def _rossby_wave(grid, t, beta, nu, kx=1, ky=1):
    """A Rossby wave, exact for the nonlinear beta-plane equation (one wavevector: u.grad w
    = 0): w = cos(k.x + beta k_x t/|k|^2) exp(-nu |k|^2 t), angular k = 2 pi (kx, ky)/L."""
    X, Y = grid.mesh
    c = 2 * np.pi / grid.length
    k2 = c**2 * (kx**2 + ky**2)
    return np.cos(c * (kx * X + ky * Y) + beta * c * kx * t / k2) * np.exp(-nu * k2 * t)


@pytest.mark.parametrize("scheme, order", [("euler_cn", 1), ("heun_cn", 2)])
def test_each_stepper_converges_at_its_order_on_a_new_equation(scheme, order):
    n, beta, nu, T = 16, 50.0, 1e-3, 1.0
    grid = Grid(n)
    errors = []
    for dt in (0.02, 0.01, 0.005):
        solver = Solver(n, 1.0, nu, dt, physics=beta_plane(beta), scheme=scheme,
                        backend="numpy")
        state = solver.from_physical(_rossby_wave(grid, 0.0, beta, nu))
        for s in range(int(round(T / dt))):
            state = solver.step(state, t=s * dt, out=state)
        errors.append(np.abs(solver.physical(state)[0] - _rossby_wave(grid, T, beta, nu)).max())
    rates = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(np.abs(rates - order) < 0.1), rates
    assert errors[-1] < (0.05 if order == 1 else 1e-3)  # and the wave is the right one


@pytest.mark.parametrize("scheme", ["euler_cn", "heun_cn"])
def test_state_terms_of_a_new_equation_add_up_in_the_budget(scheme):
    n, beta = 32, 20.0
    grid = Grid(n)
    w0 = gaussian_random_field(grid, [np.random.default_rng([3, i]) for i in range(2)])
    solver = Solver(n, 1.0, 2e-3, 5e-3, drag=0.1, physics=beta_plane(beta), scheme=scheme,
                    backend="numpy")
    new, terms = solver.step(solver.from_physical(w0), return_terms=True)
    w1, dt = solver.physical(new), solver.dt
    total = sum(terms[k] for k in ("advection", "viscous", "drag", "forcing", "noise", "closure"))
    assert np.abs(w1 - w0 - dt * total).max() < 1e-12 * np.abs(w0).max()
    if scheme == "euler_cn":  # the state terms at w^n: advection and beta, by other formulas
        v = np.stack([gridmod.velocity(grid, w)[1] for w in w0])
        expected = -gridmod.advection(grid, w0) - beta * v
        assert np.allclose(terms["advection"], expected, atol=1e-10 * np.abs(expected).max())


def test_implicit_half_viscosity_is_half_the_viscosity_at_the_new_state():
    n, nu = 32, 5e-3
    grid = Grid(n)
    w0 = np.random.default_rng(4).standard_normal((1, n, n))
    solver = Solver(n, 1.0, nu, 0.01, drag=0.2, physics=implicit_half_viscosity,
                    backend="numpy")
    new, terms = solver.step(solver.from_physical(w0), closure=lambda w, t: 0.3 * w,
                             return_terms=True)
    w1 = solver.physical(new)
    lap1 = gridmod.laplacian(grid, w1[0])
    assert np.allclose(terms["viscous"][0], 0.5 * nu * lap1, atol=1e-12 * np.abs(lap1).max())
    assert np.allclose(terms["drag"], -0.2 * 0.5 * (w0 + w1), atol=1e-13)
    known = terms["advection"] + terms["viscous"] + terms["drag"] + terms["closure"]
    assert np.abs(w1 - w0 - solver.dt * known).max() < 1e-12 * np.abs(w0).max()
    assert np.all(terms["noise"] == 0) and np.all(terms["forcing"] == 0)
