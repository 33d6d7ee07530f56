"""The term budget of one step: each term's contribution, computed directly (never as a residual).

For a step from w^n to w^{n+1}, as physical backend arrays (B, n, n):

    w^{n+1} - w^n == dt * (advection + viscous + drag + forcing + noise + closure)

holds to round-off, with advection = the state-dependent explicit terms as they entered the
scheme (-(dealiased u.grad w) at w^n for euler_cn, the mean of its two evaluations for heun_cn),
viscous = nu lap((w^n + w^{n+1})/2) (nu lap(w^{n+1})/2 for ImplicitHalfViscosity), drag =
-mu (w^n + w^{n+1})/2, forcing = f, noise = increment/dt, closure = the tendency used; a term the
equation lacks, or that did not act this step, is an exact zero. Also "G" = viscous + noise and
"H" = advection + noise, the paper's closure terms, and "G_paper" = nu lap(w^n) + 2 noise, the
research code's stored G (not a part of the sum: it enters a step as 0.5 * dt * G_paper on top
of the implicit half of Crank-Nicolson, see coarse.g_split), with the solver's nu whether or not
its equation holds the viscosity: a diagnostic of the state, as the research code stores it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from diffclosure.solver.equation import Equation
from diffclosure.solver.grid import Grid

TERMS = ("advection", "viscous", "drag", "forcing", "noise", "closure")
# The paper's closure terms, as sums of the above (each a physical sum, as in the full dict).
COMPOSITE = {"G": ("viscous", "noise"), "H": ("advection", "noise")}
# The research code's G: the explicit viscous half counted twice with the noise (coarse.g_split).
PAPER_G = "G_paper"
TERM_NAMES = TERMS + tuple(COMPOSITE) + (PAPER_G,)


def requested(return_terms: bool, terms: Sequence[str] | None) -> tuple | None:
    """The term names a step returns (None: no terms), checked against TERM_NAMES."""
    if terms is not None:
        unknown = [k for k in terms if k not in TERM_NAMES]
        if unknown:
            raise ValueError(f"terms: unknown {unknown}; choose from {TERM_NAMES}")
        return tuple(terms)
    return TERM_NAMES if return_terms else None


class Budget:
    """The budget of an equation's steps on one grid, backend and dt."""

    def __init__(self, equation: Equation, grid: Grid, backend, dt: float, nu: float):
        self.backend, self.n, self.dt = backend, grid.n, dt
        self.paper_viscous = backend.asarray(-nu * grid.k2, complex_=True)
        self.linear = {}
        for term in equation.linear:
            symbol = term.symbol(grid)
            if isinstance(symbol, np.ndarray):
                symbol = backend.asarray(symbol, complex_=True)
            self.linear[term.name] = (term, symbol)
        f = equation.forcing
        self.f_hat = None if f is None else backend.asarray(np.fft.rfft2(f), complex_=True)
        noise = equation.noise
        self.noise_scale = None if noise is None else noise.sigma * math.sqrt(dt)

    def spectrum(self, name, w0, w1, mid, tendency, noise_hat, closure_hat):
        """The spectrum of term `name` this step; None when it is zero."""
        if name == "advection":
            return tendency
        if name in ("viscous", "drag"):
            term, symbol = self.linear.get(name, (None, None))
            return None if term is None else term.contribution(symbol, w0, w1, mid)
        if name == PAPER_G:
            g = self.paper_viscous * w0
            return g if noise_hat is None else g + noise_hat * (2 * self.noise_scale / self.dt)
        if name == "forcing":
            return self.f_hat if self.f_hat is None else self.f_hat + 0 * w0
        if name == "noise":
            return noise_hat * (self.noise_scale / self.dt) if noise_hat is not None else None
        return closure_hat

    def __call__(self, w0, w1, tendency, noise_hat, closure_hat, names=TERM_NAMES) -> dict:
        """Physical contributions `names` of the step w0 -> w1 (spectral states).

        Only the spectra that `names` need are built and transformed (in one batched inverse
        transform); a zero term is an exact zero without a transform.
        """
        bk = self.backend
        need = []
        for k in names:
            for part in COMPOSITE.get(k, (k,)):
                if part not in need:
                    need.append(part)
        mid = 0.5 * (w0 + w1) if {"viscous", "drag"} & set(need) else None
        spectra = {k: self.spectrum(k, w0, w1, mid, tendency, noise_hat, closure_hat)
                   for k in need}
        live = [k for k in need if spectra[k] is not None]
        terms = {k: bk.zeros((w0.shape[0], self.n, self.n)) for k in need if spectra[k] is None}
        if live:
            phys = bk.irfft2(bk.xp.stack([spectra[k] for k in live]), self.n)
            terms.update({k: phys[i] for i, k in enumerate(live)})
        for k, (a, b) in COMPOSITE.items():
            if k in names:
                terms[k] = terms[a] + terms[b]
        return {k: terms[k] for k in names}
