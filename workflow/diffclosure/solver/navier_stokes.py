"""Pseudo-spectral solver of forced, stochastic 2-D Navier-Stokes in vorticity form.

Equation, on the periodic square [0, L)^2 (fields (B, n, n) indexed [y, x], any even n):

    dw/dt + u.grad(w) = nu lap(w) - mu w + f + sigma xi,   lap(psi) = -w,
    u = d psi/dy,  v = -d psi/dx,

or another equation of :mod:`diffclosure.solver.equation` (``physics``), with sigma*xi the noise
of :mod:`diffclosure.solver.noise` (each step adds sigma*sqrt(dt)*eta).

Usage::

    solver = Solver(128, nu=1e-3, dt=1e-3, forcing=f, noise=NoiseSpec(5e-5, 0.005, 10.0))
    state = solver.from_physical(w0)                 # (B, n, n) -> spectral state
    for s in range(steps):
        eta = solver.sample_noise(noise_rngs)        # one numpy Generator per trajectory
        state = solver.step(state, eta, t=s * solver.dt)
    w = solver.physical(state)                       # numpy (B, n, n) float64

A solver of a config section comes from :func:`diffclosure.solver.factory.solver_for`.

The Solver is a driver: the equation (``physics(nu, drag, forcing, noise)``, default
:func:`~diffclosure.solver.equation.navier_stokes`; the known-physics variants are other
constructors there) is stepped by a stepper of :mod:`diffclosure.solver.steppers` (``scheme``:
"euler_cn", the paper's, first order; "heun_cn", second order for smooth deterministic flows)
on the preallocated workspace of the batch size; :mod:`~diffclosure.solver.budget` gives the
step's terms and :mod:`~diffclosure.solver.blowup` the blow-up policy.

* State: the unnormalised real FFT ``rfft2(w)`` (B, n, n//2+1) as a backend array (numpy for
  "pyfftw"/"numpy", a complex128 torch tensor on ``device`` for "torch"). ``physical`` returns
  numpy; ``from_physical`` accepts numpy arrays or backend arrays, (B, n, n) or (n, n).
* ``step(state, noise_hat=None, closure=None, t=0.0, return_terms=False, out=None, *,
  closure_hat=None, terms=None)``: one step.
  ``noise_hat`` is rfft2(eta) of a unit noise field (``sample_noise``), scaled here by
  sigma*sqrt(dt); None means no noise this step. ``closure(w, t)`` gets the physical vorticity
  (backend array, (B, n, n)) at the start of the step and returns an extra tendency
  (B, n, n) (numpy or backend array); it is added explicitly. ``closure_hat`` instead gives
  that tendency already transformed, rfft2(C) (B, n, n//2+1): a caller holding a term over
  several steps transforms it once (rollout/coupled.py does). ``out`` may be ``state``
  itself (in-place stepping), also with terms (the start state is then copied first).
* ``return_terms=True`` also returns the step's contributions as physical backend arrays
  (B, n, n) (:data:`~diffclosure.solver.budget.TERM_NAMES`: each term, G, H and G_paper, see
  :mod:`~diffclosure.solver.budget`); ``terms=("G",)`` returns only those (bit-identical to the
  same entries of the full dict), transforming only what they need.
* Blow-up guard: every ``check_every`` steps (``check`` can also be called, e.g. at records) the
  state must be finite and the CFL number max(|u|, |v|) dt/dx at most ``cfl_max``; otherwise
  :class:`diffclosure.errors.BlowUpError` names time, step and CFL and suggests a smaller dt.
* Backends (:mod:`diffclosure.solver.fft`): "pyfftw" (default; planned FFTW transforms,
  ``threads`` and ``planner`` configurable, wisdom cached), "numpy", "torch" (``device``).
  They agree to ~1e-12 relative in float64.

Cost of a step: 4 inverse + 1 forward FFT per advection evaluation (one evaluation for
euler_cn, two for heun_cn) plus a handful of fused in-place array operations; nothing is
allocated in the hot path except the returned state (pass ``out`` to avoid even that).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from diffclosure.solver import budget
from diffclosure.solver.blowup import BlowUpGuard
from diffclosure.solver.device_noise import DeviceNoise
from diffclosure.solver.equation import navier_stokes
from diffclosure.solver.fft import Backend, get_backend
from diffclosure.solver.grid import Grid
from diffclosure.solver.noise import NoiseSampler, NoiseSpec
from diffclosure.solver.steppers import STEPPERS, CrankNicolson, Workspace

SCHEMES = tuple(STEPPERS)
# Re-exported: callers name the budget's terms through the solver module.
TERM_NAMES, PAPER_G = budget.TERM_NAMES, budget.PAPER_G

Closure = Callable[[object, float], object]


def whole_steps(interval: float, unit: float, what: str, unit_name: str = "dns.dt", *,
                minimum: int = 1, error: type[Exception] = ValueError) -> int:
    """interval / unit as an integer number of steps (records, ...), or `error` naming `what`.

    One rule for every stage that turns a time into steps (rollout lengths and record spacings
    here, DNS spin-up and records in stages/dns.py): within a relative 1e-6 of an integer, and
    at least `minimum`.
    """
    k = interval / unit
    if abs(k - round(k)) > 1e-6 * max(1.0, abs(k)) or round(k) < minimum:
        kind = "positive multiple" if minimum >= 1 else "multiple"
        raise error(f"{what}: {interval} is not a {kind} of {unit_name}={unit}; choose "
                    f"{what} = k*{unit_name}" + (f" with k >= {minimum}" if minimum > 1 else ""))
    return int(round(k))


class Solver:
    """Batched pseudo-spectral vorticity solver: an equation driven by a stepper (module
    docstring)."""

    def __init__(
        self,
        n: int,
        length: float = 1.0,
        nu: float = 1e-3,
        dt: float = 1e-3,
        *,
        drag: float = 0.0,
        forcing: np.ndarray | None = None,
        noise: NoiseSpec | None = None,
        physics: Callable = navier_stokes,
        scheme: str = "euler_cn",
        backend: str | Backend = "pyfftw",
        threads: int = 1,
        planner: str = "FFTW_MEASURE",
        device=None,
        cfl_max: float = 1.0,
        check_every: int = 50,
    ):
        if scheme not in SCHEMES:
            raise ValueError(f"dns.scheme: unknown scheme {scheme!r}; choose one of {SCHEMES}")
        for name, value in (("nu", nu), ("drag", drag)):
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"dns.{name} must be a finite number >= 0, got {value}")
        if not (dt > 0 and math.isfinite(dt)):
            raise ValueError(f"dns.dt must be > 0, got {dt}")
        self.guard = BlowUpGuard(cfl_max, check_every)
        self.grid = Grid(int(n), float(length))
        self.n = self.grid.n
        self.nu, self.drag, self.dt = float(nu), float(drag), float(dt)
        self.scheme, self.stepper = scheme, STEPPERS[scheme]
        self.backend = (
            backend
            if isinstance(backend, Backend)
            else get_backend(backend, threads=threads, planner=planner, device=device)
        )
        self.equation = physics(self.nu, self.drag, forcing, noise)
        self.forcing, self.noise = self.equation.forcing, self.equation.noise
        self.noise_sampler = NoiseSampler(self.grid, self.noise) if self.noise else None
        self.system = CrankNicolson(self.equation, self.grid, self.backend, self.dt)
        self.budget = budget.Budget(self.equation, self.grid, self.backend, self.dt, self.nu)
        g = self.grid
        self._vel = self.backend.asarray(
            np.stack([1j * g.ky * g.inv_k2, -1j * g.kx * g.inv_k2]) * g.nyquist_free,
            complex_=True)
        self.steps_taken = 0
        self._workspaces: dict[int, Workspace] = {}
        self._noise: dict[int, object] = {}

    def workspace(self, batch: int) -> Workspace:
        """The preallocated buffers of one batch size (made on first use)."""
        ws = self._workspaces.get(batch)
        if ws is None:
            ws = self._workspaces[batch] = self.system.workspace(batch)
        return ws

    # -- conversions --------------------------------------------------------------------
    def from_physical(self, w):
        """Spectral state from physical vorticity (B, n, n) or (n, n), numpy or backend."""
        w = self.backend.asarray(w)
        if w.ndim == 2:
            w = w[None]
        if tuple(w.shape[-2:]) != (self.n, self.n) or w.ndim != 3:
            raise ValueError(f"vorticity must be (B, {self.n}, {self.n}), got {tuple(w.shape)}")
        return self.backend.rfft2(w)

    def physical_backend(self, state):
        """Physical vorticity (B, n, n) as a backend array."""
        return self.backend.irfft2(state, self.n)

    def physical(self, state) -> np.ndarray:
        """Physical vorticity (B, n, n) as a numpy float64 array."""
        return self.backend.to_numpy(self.physical_backend(state))

    def zeros(self, batch: int):
        return self.backend.zeros((batch, self.n, self.n // 2 + 1), complex_=True)

    def spectral(self, x, batch: int, what: str):
        """Backend complex128 (B, n, m) array from numpy or backend input (no copy if possible)."""
        bk = self.backend
        shape = (batch, self.n, self.n // 2 + 1)
        if bk.is_torch:
            import torch

            ok = (isinstance(x, torch.Tensor) and x.dtype == torch.complex128
                  and x.device == bk.device)
        else:
            ok = isinstance(x, np.ndarray) and x.dtype == np.complex128
        x = x if ok else bk.asarray(x, complex_=True)
        if tuple(x.shape) != shape:
            raise ValueError(f"{what} must have shape {shape}, got {tuple(x.shape)}")
        return x

    def sample_noise(self, rngs: Sequence[np.random.Generator]):
        """rfft2(eta) for one step, one Generator per trajectory; None without noise.

        The returned array is a buffer reused by the next call with the same batch size. On
        the torch backend only the sampler's box of modes travels to the device
        (:class:`~diffclosure.solver.device_noise.DeviceNoise`).
        """
        if self.noise_sampler is None:
            return None
        batch = len(rngs)
        buf = self._noise.get(batch)
        if self.backend.is_torch:
            if buf is None:
                buf = self._noise[batch] = DeviceNoise(self.noise_sampler, self.backend, batch)
            return buf.fill(rngs)
        if buf is None:
            buf = self._noise[batch] = self.zeros(batch)
        return self.noise_sampler.sample(rngs, out=buf)

    def explicit_tendency(self, state):
        """The state-dependent explicit terms at `state` as a step evaluates them (for the
        Navier-Stokes equations: rfft2 of -(dealiased u.grad w)); a workspace buffer that the
        next evaluation overwrites, None when the equation has no such term."""
        return self.system.explicit(self.workspace(state.shape[0]), state)

    # -- one step -----------------------------------------------------------------------
    def step(
        self,
        state,
        noise_hat=None,
        closure: Closure | None = None,
        t: float = 0.0,
        return_terms: bool = False,
        out=None,
        *,
        closure_hat=None,
        terms: Sequence[str] | None = None,
    ):
        """Advance by dt; returns the new state, and a dict of terms when `return_terms` or
        `terms` (only those names) is given."""
        names = budget.requested(return_terms, terms)
        if names is not None and out is state:  # the terms need the start state
            state = state.clone() if self.backend.is_torch else state.copy()
        noise_hat, closure_hat = self._step_inputs(state, noise_hat, closure, closure_hat, t)
        new, tendency = self.stepper(self.system, self.workspace(state.shape[0]), state,
                                     closure_hat, noise_hat, out, names is not None)
        self.steps_taken += 1
        if self.guard.due(self.steps_taken):
            self.check(new, t + self.dt)
        if names is None:
            return new
        return new, self.budget(state, new, tendency, noise_hat, closure_hat, names)

    def _step_inputs(self, state, noise_hat, closure, closure_hat, t):
        """The noise and closure spectra of a step, checked."""
        B = state.shape[0]
        if noise_hat is not None and self.noise is None:
            raise ValueError("noise_hat given but the solver has no noise (noise=None or sigma=0)")
        if closure is not None and closure_hat is not None:
            raise ValueError("give the closure as a callable or as closure_hat, not both")
        if noise_hat is not None:
            noise_hat = self.spectral(noise_hat, B, "noise_hat")
        if closure is not None:
            C = closure(self.physical_backend(state), t)
            if tuple(C.shape) != (B, self.n, self.n):
                raise ValueError(f"closure returned shape {tuple(C.shape)}, expected "
                                 f"{(B, self.n, self.n)}")
            return noise_hat, self.backend.rfft2(C)
        if closure_hat is not None:
            closure_hat = self.spectral(closure_hat, B, "closure_hat")
        return noise_hat, closure_hat

    # -- diagnostics --------------------------------------------------------------------
    def velocity(self, state):
        """(u, v) physical backend arrays, each (B, n, n)."""
        uv = self.backend.irfft2(state[:, None] * self._vel, self.n)
        return uv[:, 0], uv[:, 1]

    def cfl(self, state) -> float:
        """max(|u|, |v|) dt / dx over the batch."""
        u, v = self.velocity(state)
        bk = self.backend
        return max(bk.max_abs(u), bk.max_abs(v)) * self.dt / self.grid.dx

    def check(self, state, t: float) -> float:
        """Raise BlowUpError if the state is non-finite or the CFL exceeds cfl_max."""
        return self.guard.check(self.backend, state, self.cfl, t, self.steps_taken, self.dt)

    def energy(self, state) -> np.ndarray:
        """Kinetic energy per trajectory, 0.5 * mean(u^2 + v^2), numpy (B,)."""
        u, v = (self.backend.to_numpy(a) for a in self.velocity(state))
        return 0.5 * (u**2 + v**2).mean(axis=(-2, -1))

    def enstrophy(self, state) -> np.ndarray:
        """Enstrophy per trajectory, 0.5 * mean(w^2), numpy (B,)."""
        w = self.physical(state)
        return 0.5 * (w**2).mean(axis=(-2, -1))
