"""The 2-D vorticity equation as data: its linear (implicit) part and its explicit terms.

Per Fourier mode k of w (the rfft2 layout of :mod:`diffclosure.solver.grid`):

    dw/dt = -lam(k) w  +  E(w)  +  f  +  sigma xi  +  C

* Linear terms, diagonal in k and stepped by Crank-Nicolson in every scheme (half of the term
  at w^n, half at w^{n+1}): :class:`Viscosity` nu lap(w) (lam = nu |k|^2) and :class:`Drag`
  -mu w (lam = mu). :class:`ImplicitHalfViscosity` is only the implicit half, nu lap(w^{n+1})/2:
  the research code's known viscosity for its G (coarse.g_split paper).
* Explicit terms. State-dependent ones (``kind = "state"``), evaluated again at each stage of a
  scheme: :class:`Advection`, -(u.grad w) with the product dealiased by the 2/3 rule (its
  spectrum kept for |k_x|, |k_y| < n/3, the mask of ``Grid.dealias``), u = d psi/dy,
  v = -d psi/dx, lap(psi) = -w. Frozen ones, taken once per step as they are: :class:`Forcing` f
  and :class:`Noise` sigma xi (:mod:`diffclosure.solver.noise`; a step adds sigma sqrt(dt) eta).
  The closure C is an explicit term of every equation whose value the caller gives each step
  (Solver.step's ``closure`` / ``closure_hat``).

An equation is a value (:class:`Equation`), built by a constructor taking (nu, drag, forcing,
noise): :func:`navier_stokes` is the full physics; the known physics of a coarse run whose
closure supplies G or H are other equations, not switches: :func:`no_viscosity` (a closure of
G = viscous + noise), :func:`implicit_half_viscosity` (G under g_split paper) and
:func:`no_advection` (H = advection + noise). A new physical model is one more such function;
a new state-dependent term needs ``name``, ``kind = "state"`` and ``bind(grid, backend)``
returning an object with ``scratch(batch)`` (its buffers) and ``__call__(state, scratch)`` (its
tendency spectrum), as :class:`Advection` does (tests/solver/test_solver_equations.py adds the
beta-plane term in a few lines).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diffclosure.solver.grid import Grid
from diffclosure.solver.noise import NoiseSpec


# ----------------------------------------------------------------------------- linear terms
class LinearTerm:
    """A term -lam(k) w, diagonal in k; a subclass gives its ``rate`` lam (and a ``name``)."""

    explicit_half = True  # both Crank-Nicolson halves

    def symbol(self, grid: Grid):
        """The term's multiplier of w, -lam."""
        return -self.rate(grid)

    def contribution(self, symbol, w0, w1, mid):
        """The term's spectrum in one step, from the states that entered it."""
        return symbol * mid


@dataclass(frozen=True)
class Viscosity(LinearTerm):
    """nu lap(w): lam = nu |k|^2."""

    nu: float
    name = "viscous"

    def rate(self, grid: Grid):
        return self.nu * grid.k2


@dataclass(frozen=True)
class ImplicitHalfViscosity(Viscosity):
    """nu lap(w^{n+1}) / 2 alone: the implicit Crank-Nicolson half of the viscosity."""

    explicit_half = False

    def contribution(self, symbol, w0, w1, mid):
        return 0.5 * symbol * w1


@dataclass(frozen=True)
class Drag(LinearTerm):
    """Linear (Rayleigh) drag -mu w: lam = mu."""

    mu: float
    name = "drag"

    def rate(self, grid: Grid):
        return self.mu


# ----------------------------------------------------------------------------- explicit terms
@dataclass(frozen=True, eq=False)
class Forcing:
    """Deterministic forcing f(x, y), an (n, n) physical field."""

    field: np.ndarray
    name = "forcing"
    kind = "forcing"


@dataclass(frozen=True)
class Noise:
    """Stochastic forcing sigma xi of :class:`~diffclosure.solver.noise.NoiseSpec`."""

    spec: NoiseSpec
    name = "noise"
    kind = "noise"


class Advection:
    """-(u.grad w), dealiased by the 2/3 rule: the equation's nonlinear term."""

    name = "advection"
    kind = "state"

    def bind(self, grid: Grid, backend) -> AdvectionOperator:
        return AdvectionOperator(grid, backend)

    def __eq__(self, other):
        return isinstance(other, Advection)

    def __hash__(self):
        return hash(Advection)


class AdvectionOperator:
    """The advection tendency of a state, on preallocated FFT plans.

    Cost: 4 inverse real FFTs (u, v, dw/dx, dw/dy of each trajectory transformed together,
    (B, 4, n, m)) and 1 forward; nothing allocated.
    """

    def __init__(self, grid: Grid, backend):
        n, self.backend = grid.n, backend
        clean = grid.nyquist_free  # odd derivatives of the Nyquist modes are ill-defined: zero
        vel = np.stack([1j * grid.ky * grid.inv_k2, -1j * grid.kx * grid.inv_k2]) * clean
        grad = np.stack([1j * grid.kx + 0 * grid.ky, 1j * grid.ky + 0 * grid.kx]) * clean
        # The velocity multipliers carry the minus sign of -(u.grad w): the product is then the
        # tendency itself at no extra cost. The hot-path inverse transform is unnormalised: the
        # 1/n^2 is folded into the multipliers.
        self.multipliers = backend.asarray(np.concatenate([-vel, grad]) / (n * n), complex_=True)
        # 2/3 rule as slices (zeroing slices beats multiplying by a mask): keep |k| <= kmax.
        kmax = (n - 1) // 3
        self.rows, self.cols = slice(kmax + 1, n - kmax), slice(kmax + 1, None)
        mask = np.ones(grid.k2.shape, dtype=bool)
        mask[self.rows, :] = False
        mask[:, self.cols] = False
        if not np.array_equal(mask, grid.dealias):
            raise AssertionError("dealiasing slices disagree with Grid.dealias")
        self.n = n

    def scratch(self, batch: int):
        """The plans of one batch size: inverse (B, 4) and forward (B,)."""
        return (self.backend.plan_irfft2((batch, 4), self.n),
                self.backend.plan_rfft2((batch,), self.n))

    def __call__(self, state, scratch):
        """rfft2 of -(dealiased u.grad w): a plan buffer, overwritten by the next call."""
        xp = self.backend.xp
        inv, fwd = scratch
        xp.multiply(state[:, None], self.multipliers, out=inv.input)
        phys = inv.execute()
        u, v, wx, wy = phys[:, 0], phys[:, 1], phys[:, 2], phys[:, 3]
        prod = fwd.input
        xp.multiply(u, wx, out=prod)
        xp.multiply(v, wy, out=u)  # u is scratch from here on
        xp.add(prod, u, out=prod)
        tendency = fwd.execute()
        tendency[:, self.rows, :] = 0
        tendency[:, :, self.cols] = 0
        return tendency


# ----------------------------------------------------------------------------- the equation
@dataclass(frozen=True)
class Equation:
    """Linear terms (Crank-Nicolson) and explicit terms; the closure is always accepted."""

    linear: tuple = ()
    explicit: tuple = ()

    def __post_init__(self):
        names = [t.name for t in (*self.linear, *self.explicit)]
        twice = sorted({k for k in names if names.count(k) > 1})
        if twice:
            raise ValueError(f"equation: terms {twice} appear more than once")

    def term(self, name: str):
        """The term called `name`, or None when the equation lacks it."""
        return next((t for t in (*self.linear, *self.explicit) if t.name == name), None)

    def with_terms(self, *terms) -> Equation:
        """This equation plus more terms (linear ones have a ``rate``)."""
        linear = tuple(t for t in terms if hasattr(t, "rate"))
        explicit = tuple(t for t in terms if not hasattr(t, "rate"))
        return Equation(self.linear + linear, self.explicit + explicit)

    @property
    def state_terms(self) -> tuple:
        return tuple(t for t in self.explicit if t.kind == "state")

    @property
    def forcing(self) -> np.ndarray | None:
        f = self.term("forcing")
        return None if f is None else f.field

    @property
    def noise(self) -> NoiseSpec | None:
        z = self.term("noise")
        return None if z is None else z.spec


def _frozen(forcing, noise) -> tuple:
    """The frozen explicit terms: forcing unless None, noise unless absent or sigma = 0."""
    out = () if forcing is None else (Forcing(np.asarray(forcing, dtype=np.float64)),)
    if noise is not None and noise.active:
        out += (Noise(noise),)
    return out


def navier_stokes(nu: float, drag: float = 0.0, forcing=None, noise: NoiseSpec | None = None):
    """The full physics: advection, viscosity, drag, forcing and noise."""
    return Equation((Viscosity(nu), Drag(drag)), (Advection(), *_frozen(forcing, noise)))


def no_viscosity(nu: float, drag: float = 0.0, forcing=None, noise: NoiseSpec | None = None):
    """Navier-Stokes without viscosity (`nu` unused): what a closure of G leaves known."""
    return Equation((Drag(drag),), (Advection(), *_frozen(forcing, noise)))


def implicit_half_viscosity(nu: float, drag: float = 0.0, forcing=None,
                            noise: NoiseSpec | None = None):
    """Navier-Stokes with only the implicit half of the viscosity, nu lap(w^{n+1})/2: the
    research code's known physics for its G (coarse.g_split paper)."""
    return Equation((ImplicitHalfViscosity(nu), Drag(drag)),
                    (Advection(), *_frozen(forcing, noise)))


def no_advection(nu: float, drag: float = 0.0, forcing=None, noise: NoiseSpec | None = None):
    """Navier-Stokes without advection (forced Stokes flow): what a closure of H leaves known."""
    return Equation((Viscosity(nu), Drag(drag)), _frozen(forcing, noise))
