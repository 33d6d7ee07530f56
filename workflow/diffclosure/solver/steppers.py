"""Time steppers as functions of an equation: Crank-Nicolson for its linear part, Euler or Heun
for its explicit terms.

:class:`CrankNicolson` is an :class:`~diffclosure.solver.equation.Equation` on a grid, a
backend and a step dt, in the form every stepper uses. With lam_new the sum of the linear
terms' rates and lam_old the sum over those with an explicit half (the two agree unless the
equation holds :class:`~diffclosure.solver.equation.ImplicitHalfViscosity`), Crank-Nicolson
turns a step whose explicit terms sum to E into

    w^{n+1} = A w^n + B E,    A = (1 - dt lam_old/2) / (1 + dt lam_new/2),
                              B = dt / (1 + dt lam_new/2),

and the frozen explicit terms (forcing f, closure C, noise increment sigma sqrt(dt) eta) enter
once per step, identically in every stage: F = A w^n + B (f + C) + S eta with
S = sigma sqrt(dt) / (1 + dt lam_new/2).

Steppers (``STEPPERS``), each ``stepper(system, workspace, state, closure_hat, noise_hat, out,
keep) -> (w^{n+1}, tendency)`` where tendency is what the state-dependent terms contributed
(for the term budget; None unless `keep`):

* :func:`euler_cn`: w^{n+1} = F + B E(w^n) (explicit Euler; first order; the paper's scheme);
* :func:`heun_cn`: w* = F + B E(w^n), w^{n+1} = F + B (E(w^n) + E(w*))/2 (Heun; second order
  for smooth deterministic flows).

Both write into the preallocated buffers of a :class:`Workspace` (one per batch size) and into
`out`, which may be `state` itself; nothing is allocated but `out` when it is None (and the
kept tendency of heun_cn).
"""

from __future__ import annotations

import math

import numpy as np

from diffclosure.solver.equation import Equation
from diffclosure.solver.grid import Grid


class Workspace:
    """Scratch of one batch size: the frozen part F, a temporary, the state terms' buffers."""

    def __init__(self, system: CrankNicolson, batch: int):
        bk = system.backend
        self.shape = (batch, system.n, system.n // 2 + 1)
        self.base = bk.empty(self.shape, complex_=True)
        self.tmp = bk.empty(self.shape, complex_=True)
        self.scratch = [op.scratch(batch) for op in system.state_ops]
        self._backend, self._spare = bk, {}

    def spare(self, name: str):
        """A named extra spectral buffer, made on first use."""
        buf = self._spare.get(name)
        if buf is None:
            buf = self._spare[name] = self._backend.empty(self.shape, complex_=True)
        return buf


class CrankNicolson:
    """An equation discretised in time for the steppers (module docstring)."""

    def __init__(self, equation: Equation, grid: Grid, backend, dt: float):
        self.equation, self.backend, self.xp, self.n = equation, backend, backend.xp, grid.n
        lam_new, lam_old = 0.0 * grid.k2, 0.0 * grid.k2
        for term in equation.linear:
            lam_new = lam_new + term.rate(grid)
            if term.explicit_half:
                lam_old = lam_old + term.rate(grid)
        a_plus = 1.0 + 0.5 * dt * lam_new
        # Real multipliers stored as complex: complex*complex beats complex*real in numpy.
        self.A = backend.asarray((1.0 - 0.5 * dt * lam_old) / a_plus, complex_=True)
        self.B = backend.asarray(dt / a_plus, complex_=True)
        self.half_B = backend.asarray(0.5 * dt / a_plus, complex_=True)
        self.fB = self.noise_mult = None
        forcing, noise = equation.forcing, equation.noise
        if forcing is not None:
            if forcing.shape != (grid.n, grid.n):
                raise ValueError(f"forcing must be an ({grid.n}, {grid.n}) field, got "
                                 f"{forcing.shape}")
            self.fB = backend.asarray(np.fft.rfft2(forcing) * dt / a_plus, complex_=True)
        if noise is not None:
            self.noise_mult = backend.asarray(noise.sigma * math.sqrt(dt) / a_plus,
                                              complex_=True)
        self.state_ops = [t.bind(grid, backend) for t in equation.state_terms]

    def workspace(self, batch: int) -> Workspace:
        return Workspace(self, batch)

    def explicit(self, ws: Workspace, state):
        """The state-dependent explicit tendency E(state) (a workspace buffer), or None."""
        if not self.state_ops:
            return None
        first = self.state_ops[0](state, ws.scratch[0])
        if len(self.state_ops) == 1:
            return first
        total = ws.spare("explicit")
        total[...] = first
        for op, scratch in zip(self.state_ops[1:], ws.scratch[1:], strict=True):
            self.xp.add(total, op(state, scratch), out=total)
        return total

    def frozen(self, ws: Workspace, state, closure_hat, noise_hat):
        """F = A w^n + B (f + C) + S eta, in the workspace."""
        xp, base = self.xp, ws.base
        xp.multiply(state, self.A, out=base)
        if self.fB is not None:
            xp.add(base, self.fB, out=base)
        if closure_hat is not None:
            xp.multiply(closure_hat, self.B, out=ws.tmp)
            xp.add(base, ws.tmp, out=base)
        if noise_hat is not None:
            xp.multiply(noise_hat, self.noise_mult, out=ws.tmp)
            xp.add(base, ws.tmp, out=base)
        return base

    def output(self, state, out):
        return self.backend.empty(tuple(state.shape), complex_=True) if out is None else out


def euler_cn(system: CrankNicolson, ws: Workspace, state, closure_hat=None, noise_hat=None,
             out=None, keep: bool = False):
    """w^{n+1} = F + B E(w^n): explicit Euler with Crank-Nicolson (first order)."""
    xp = system.xp
    tendency = system.explicit(ws, state)  # before `out`, which may alias `state`
    base = system.frozen(ws, state, closure_hat, noise_hat)
    out = system.output(state, out)
    if tendency is None:
        out[...] = base
        return out, None
    xp.multiply(tendency, system.B, out=out)
    xp.add(base, out, out=out)
    return out, (tendency if keep else None)


def heun_cn(system: CrankNicolson, ws: Workspace, state, closure_hat=None, noise_hat=None,
            out=None, keep: bool = False):
    """w* = F + B E(w^n); w^{n+1} = F + B (E(w^n) + E(w*))/2: Heun with Crank-Nicolson."""
    if not system.state_ops:  # E = 0: the corrector repeats the predictor, which is Euler's step
        return euler_cn(system, ws, state, closure_hat, noise_hat, out, keep)
    xp = system.xp
    first = ws.spare("first")  # kept apart: the predictor's evaluation overwrites the buffers
    first[...] = system.explicit(ws, state)
    base = system.frozen(ws, state, closure_hat, noise_hat)
    out = system.output(state, out)
    xp.multiply(first, system.B, out=out)
    xp.add(base, out, out=out)  # the predictor w*
    xp.add(first, system.explicit(ws, out), out=out)
    tendency = 0.5 * out if keep else None
    xp.multiply(out, system.half_B, out=out)
    xp.add(base, out, out=out)
    return out, tendency


STEPPERS = {"euler_cn": euler_cn, "heun_cn": heun_cn}
