"""Pseudo-spectral solver of forced, stochastic 2-D Navier-Stokes in vorticity form.

Equation, on the periodic square [0, L)^2 (fields (B, n, n) indexed [y, x], any even n):

    dw/dt + u.grad(w) = nu lap(w) - mu w + f + sigma xi,   lap(psi) = -w,
    u = d psi/dy,  v = -d psi/dx,

with the nonlinear product dealiased by the 2/3 rule (its spectrum is masked to
|k_x|, |k_y| < n/3, the mask of ``Grid.dealias``) and sigma*xi the noise of
:mod:`diffclosure.solver.noise` (each step adds sigma*sqrt(dt)*eta).

Usage::

    solver = Solver(128, nu=1e-3, dt=1e-3, forcing=f, noise=NoiseSpec(5e-5, 0.005, 10.0))
    state = solver.from_physical(w0)                 # (B, n, n) -> spectral state
    for s in range(steps):
        eta = solver.sample_noise(noise_rngs)        # one numpy Generator per trajectory
        state = solver.step(state, eta, t=s * solver.dt)
    w = solver.physical(state)                       # numpy (B, n, n) float64

Capabilities:

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
  (B, n, n), each computed directly (never as a residual), so that

      w^{n+1} - w^n == dt * (advection + viscous + drag + forcing + noise + closure)

  holds to round-off: advection = -(dealiased u.grad w) as it entered the scheme, viscous =
  nu lap((w^n + w^{n+1})/2), drag = -mu (w^n + w^{n+1})/2, forcing = f, noise = increment/dt,
  closure = the tendency used. Also "G" = viscous + noise and "H" = advection + noise, the
  paper's closure terms, and "G_paper" = nu lap(w^n) + 2 noise, the research code's stored G
  (not a part of the sum above: it is meant to enter a step as 0.5 * dt * G_paper on top of the
  implicit half of Crank-Nicolson, see coarse.g_split). ``terms=("G",)`` (any names of
  :data:`TERM_NAMES`) returns only those (bit-identical to the same entries of the full dict),
  transforming only what they need.
* Schemes: "euler_cn" (the paper's: explicit Euler for advection, forcing, noise and closure,
  Crank-Nicolson for viscosity and drag; first order) and "heun_cn" (Heun predictor-corrector
  for the explicit terms, Crank-Nicolson for the linear ones; second order for smooth
  deterministic flows; the noise increment and the closure, evaluated at the start of the step,
  enter once and identically in predictor and corrector).
* ``advection=False`` / ``viscosity=False`` switch those terms off (coarse "known physics" runs
  getting the missing G or H from a closure); ``viscosity="implicit"`` keeps only the implicit
  half of Crank-Nicolson, nu lap(w^{n+1})/2 (the research code's known physics for its G).
* Blow-up guard: every ``check_every`` steps (``check`` can also be called, e.g. at records) the
  state must be finite and the CFL number max(|u|, |v|) dt/dx at most ``cfl_max``; otherwise
  :class:`diffclosure.errors.BlowUpError` names time, step and CFL and suggests a smaller dt.
* Backends (:mod:`diffclosure.solver.fft`): "pyfftw" (default; planned FFTW transforms,
  ``threads`` and ``planner`` configurable, wisdom cached), "numpy", "torch" (``device``).
  They agree to ~1e-12 relative in float64.

Cost of a step: 4 inverse + 1 forward FFT per nonlinear evaluation (one evaluation for
euler_cn, two for heun_cn) plus a handful of fused in-place array operations; nothing is
allocated in the hot path except the returned state (pass ``out`` to avoid even that).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import numpy as np

from diffclosure.errors import BlowUpError
from diffclosure.solver.fft import Backend, get_backend
from diffclosure.solver.grid import Grid
from diffclosure.solver.noise import NoiseSampler, NoiseSpec

log = logging.getLogger(__name__)

SCHEMES = ("euler_cn", "heun_cn")
TERMS = ("advection", "viscous", "drag", "forcing", "noise", "closure")
# The paper's closure terms, as sums of the above (each a physical sum, as in the full dict).
COMPOSITE = {"G": ("viscous", "noise"), "H": ("advection", "noise")}
# The research code's G: the explicit viscous half counted twice with the noise (coarse.g_split).
PAPER_G = "G_paper"
TERM_NAMES = TERMS + tuple(COMPOSITE) + (PAPER_G,)

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


class _Workspace:
    """Preallocated FFT plans and scratch arrays for one batch size."""

    def __init__(self, solver: Solver, batch: int):
        bk, n = solver.backend, solver.n
        spectral = (batch, n, n // 2 + 1)
        # u, v, dw/dx, dw/dy of each trajectory are transformed together: (B, 4, n, m).
        self.inv = bk.plan_irfft2((batch, 4), n)
        self.fwd = bk.plan_rfft2((batch,), n)
        self.base = bk.empty(spectral, complex_=True)
        self.tmp = bk.empty(spectral, complex_=True)
        self.n0 = bk.empty(spectral, complex_=True) if solver.scheme == "heun_cn" else None
        self.noise = None  # noise buffer, made on first use


class _DeviceNoise:
    """Noise of the torch backend: draw the mode box on the host, copy only the box.

    Only the (B, 2K+1, K+1) box of the noise sampler is non-zero, a few percent of the
    (B, n, n//2+1) spectrum at n >= 128: it is drawn into a host buffer (page-locked on CUDA,
    so the copy is a true asynchronous DMA), copied with ``non_blocking`` into a device box and
    scattered on the device into a zero spectrum whose other modes are never touched.

    Two host buffers alternate: before one is refilled, the event recorded after its last copy
    is awaited. That wait covers at most the work queued up to the copy two steps ago, so the
    host draws step k+1's noise while the device still runs step k (no per-step sync).
    """

    def __init__(self, solver: Solver, batch: int):
        import torch

        bk, n, sampler = solver.backend, solver.n, solver.noise_sampler
        K = sampler.K
        self.sampler, self.device = sampler, bk.device
        self.cuda = bk.device.type == "cuda"
        box = (batch, 2 * K + 1, K + 1)
        self.host = [torch.zeros(box, dtype=torch.complex128, pin_memory=self.cuda)
                     for _ in range(2)]
        self.host_np = [h.numpy() for h in self.host]  # numpy views sharing the memory
        self.events = [None, None]
        self.turn = 0
        self.box = torch.zeros(box, dtype=torch.complex128, device=bk.device)
        self.full = bk.zeros((batch, n, n // 2 + 1), complex_=True)

    def fill(self, rngs):
        import torch

        i, self.turn = self.turn, 1 - self.turn
        if self.events[i] is not None:
            self.events[i].synchronize()  # the copy that last read host[i] is done
        self.sampler.sample_box(rngs, out=self.host_np[i])
        self.box.copy_(self.host[i], non_blocking=self.cuda)
        if self.cuda:
            ev = torch.cuda.Event()
            ev.record(torch.cuda.current_stream(self.device))
            self.events[i] = ev
        # Same stream: the scatter runs after the copy, the next step's kernels after both.
        self.sampler.scatter(self.box, self.full)
        return self.full


class Solver:
    """Batched pseudo-spectral vorticity solver; see the module docstring."""

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
        scheme: str = "euler_cn",
        backend: str | Backend = "pyfftw",
        threads: int = 1,
        planner: str = "FFTW_MEASURE",
        device=None,
        advection: bool = True,
        viscosity: bool = True,
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
        if not cfl_max > 0:
            raise ValueError(f"dns.cfl_max must be > 0, got {cfl_max}")
        if int(check_every) < 1:
            raise ValueError(f"dns.check_every must be >= 1, got {check_every}")
        self.grid = Grid(int(n), float(length))
        self.n = self.grid.n
        self.nu, self.drag, self.dt = float(nu), float(drag), float(dt)
        self.scheme = scheme
        if viscosity not in (True, False, "implicit"):
            raise ValueError(f"viscosity must be True, False or 'implicit', got {viscosity!r}")
        self.advection = bool(advection)
        self.viscosity = viscosity if viscosity == "implicit" else bool(viscosity)
        self.cfl_max, self.check_every = float(cfl_max), int(check_every)
        self.backend = (
            backend
            if isinstance(backend, Backend)
            else get_backend(backend, threads=threads, planner=planner, device=device)
        )
        self.noise = noise if (noise is not None and noise.active) else None
        self.noise_sampler = NoiseSampler(self.grid, self.noise) if self.noise else None
        self.steps_taken = 0
        self._workspaces: dict[int, _Workspace] = {}
        self._build_operators(forcing)

    # -- set-up -------------------------------------------------------------------------
    def _build_operators(self, forcing):
        g, n, bk, dt = self.grid, self.n, self.backend, self.dt
        clean = g.nyquist_free  # odd derivatives of the Nyquist modes are ill-defined: zero
        vel = np.stack([1j * g.ky * g.inv_k2, -1j * g.kx * g.inv_k2]) * clean
        grad = np.stack([1j * g.kx + 0 * g.ky, 1j * g.ky + 0 * g.kx]) * clean
        # The hot-path inverse transform is unnormalised: fold the 1/n^2 into the multipliers.
        self._m4 = bk.asarray(np.concatenate([vel, grad]) / (n * n), complex_=True)
        self._vel = bk.asarray(vel, complex_=True)
        lam = self.drag + (self.nu * g.k2 if self.viscosity else 0.0 * g.k2)
        lam_explicit = lam if self.viscosity != "implicit" else self.drag + 0.0 * g.k2
        a_plus = 1.0 + 0.5 * dt * lam
        # Real multipliers stored as complex: complex*complex beats complex*real in numpy.
        self._A = bk.asarray((1.0 - 0.5 * dt * lam_explicit) / a_plus, complex_=True)
        self._Bc = bk.asarray(dt / a_plus, complex_=True)
        self._half_Bc = bk.asarray(0.5 * dt / a_plus, complex_=True)
        self._visc_op = bk.asarray(-self.nu * g.k2, complex_=True)
        if self.noise is not None:
            scale = self.noise.sigma * math.sqrt(dt)
            self._noise_mult = bk.asarray(scale / a_plus, complex_=True)
            self._noise_scale = scale
        if forcing is not None:
            forcing = np.asarray(forcing, dtype=np.float64)
            if forcing.shape != (n, n):
                raise ValueError(f"forcing must be an ({n}, {n}) field, got {forcing.shape}")
            self.forcing = forcing
            f_hat = np.fft.rfft2(forcing)
            self._f_hat = bk.asarray(f_hat, complex_=True)
            self._fB = bk.asarray(f_hat * dt / a_plus, complex_=True)
        else:
            self.forcing = None
            self._f_hat = self._fB = None
        # 2/3 rule as slices (zeroing slices beats multiplying by a mask): keep |k| <= kmax.
        kmax = (n - 1) // 3
        self._dealias_rows = slice(kmax + 1, n - kmax)
        self._dealias_cols = slice(kmax + 1, None)
        mask = np.ones(g.k2.shape, dtype=bool)
        mask[self._dealias_rows, :] = False
        mask[:, self._dealias_cols] = False
        if not np.array_equal(mask, g.dealias):
            raise AssertionError("dealiasing slices disagree with Grid.dealias")

    def _workspace(self, batch: int) -> _Workspace:
        ws = self._workspaces.get(batch)
        if ws is None:
            ws = self._workspaces[batch] = _Workspace(self, batch)
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

    def _spectral(self, x, batch: int, what: str):
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
        the torch backend only the sampler's box of modes travels to the device (see
        :class:`_DeviceNoise`); the values are those of the numpy backends, bit for bit.
        """
        if self.noise_sampler is None:
            return None
        ws = self._workspace(len(rngs))
        if self.backend.is_torch:
            if ws.noise is None:
                ws.noise = _DeviceNoise(self, len(rngs))
            return ws.noise.fill(rngs)
        if ws.noise is None:
            ws.noise = self.backend.zeros((len(rngs), self.n, self.n // 2 + 1), complex_=True)
        return self.noise_sampler.sample(rngs, out=ws.noise)

    # -- the right-hand side ------------------------------------------------------------
    def nonlinear(self, state, ws: _Workspace | None = None):
        """Dealiased rfft2(u.grad w) (B, n, m), in the state's units.

        Returns a workspace buffer that the next evaluation overwrites.
        """
        xp = self.backend.xp
        ws = ws or self._workspace(state.shape[0])
        inp = ws.inv.input
        xp.multiply(state[:, None], self._m4, out=inp)
        phys = ws.inv.execute()
        u, v, wx, wy = phys[:, 0], phys[:, 1], phys[:, 2], phys[:, 3]
        prod = ws.fwd.input
        xp.multiply(u, wx, out=prod)
        xp.multiply(v, wy, out=u)  # u is scratch from here on
        xp.add(prod, u, out=prod)
        N = ws.fwd.execute()
        N[:, self._dealias_rows, :] = 0
        N[:, :, self._dealias_cols] = 0
        return N

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
        ws = self._workspace(state.shape[0])
        state, return_terms, dN, C_hat = self._step_inputs(
            state, noise_hat, closure, t, return_terms, out, closure_hat, terms)

        # Nonlinear term at the start of the step (before `out`, which may alias `state`).
        N0 = None
        if self.advection:
            N0 = self.nonlinear(state, ws)
            if ws.n0 is not None:
                ws.n0[...] = N0
                N0 = ws.n0
        out, adv_sum = self._advance(ws, state, N0, C_hat, dN, out, return_terms)

        t_new = t + self.dt
        self.steps_taken += 1
        if self.steps_taken % self.check_every == 0:
            self.check(out, t_new)
        if not return_terms:
            return out
        if self.advection and self.scheme == "euler_cn":
            adv_hat = -N0
        elif self.advection:
            adv_hat = -0.5 * adv_sum
        else:
            adv_hat = None
        return out, self._terms(state, out, adv_hat, dN, C_hat,
                                TERM_NAMES if terms is None else tuple(terms))

    def _step_inputs(self, state, noise_hat, closure, t, return_terms, out, closure_hat, terms):
        """step's arguments checked: the state (a copy when the terms need it and `out`
        aliases it), whether terms are returned, and the noise and closure spectra."""
        bk, n = self.backend, self.n
        B = state.shape[0]
        if noise_hat is not None and self.noise is None:
            raise ValueError("noise_hat given but the solver has no noise (noise=None or sigma=0)")
        if closure is not None and closure_hat is not None:
            raise ValueError("give the closure as a callable or as closure_hat, not both")
        if terms is not None:
            unknown = [k for k in terms if k not in TERM_NAMES]
            if unknown:
                raise ValueError(f"terms: unknown {unknown}; choose from {TERM_NAMES}")
            return_terms = True
        if return_terms and out is state:
            state = state.clone() if bk.is_torch else state.copy()
        dN = self._spectral(noise_hat, B, "noise_hat") if noise_hat is not None else None
        C_hat = None
        if closure is not None:
            C = closure(self.physical_backend(state), t)
            if tuple(C.shape) != (B, n, n):
                raise ValueError(f"closure returned shape {tuple(C.shape)}, expected {(B, n, n)}")
            C_hat = bk.rfft2(C)
        elif closure_hat is not None:
            C_hat = self._spectral(closure_hat, B, "closure_hat")
        return state, return_terms, dN, C_hat

    def _advance(self, ws: _Workspace, state, N0, C_hat, dN, out, return_terms):
        """The new state written into `out` (allocated when None), and the sum of the
        nonlinear evaluations (heun_cn with terms; else None)."""
        bk, xp = self.backend, self.backend.xp
        # base = A w^n + dt/(1 + dt lam/2) (f + closure) + noise/(1 + dt lam/2): all but advection.
        base = ws.base
        xp.multiply(state, self._A, out=base)
        if self._fB is not None:
            xp.add(base, self._fB, out=base)
        if C_hat is not None:
            xp.multiply(C_hat, self._Bc, out=ws.tmp)
            xp.add(base, ws.tmp, out=base)
        if dN is not None:
            xp.multiply(dN, self._noise_mult, out=ws.tmp)
            xp.add(base, ws.tmp, out=base)

        if out is None:
            out = bk.empty(tuple(state.shape), complex_=True)
        adv_sum = None  # sum of the nonlinear evaluations entering the step (for the terms)
        if not self.advection:
            out[...] = base
        elif self.scheme == "euler_cn":
            xp.multiply(N0, self._Bc, out=out)
            xp.subtract(base, out, out=out)
        else:  # heun_cn: predictor w* = base - Bc N(w^n); corrector with (N(w^n) + N(w*))/2
            xp.multiply(N0, self._Bc, out=out)
            xp.subtract(base, out, out=out)
            N1 = self.nonlinear(out, ws)
            xp.add(N0, N1, out=out)
            if return_terms:
                adv_sum = out.clone() if bk.is_torch else out.copy()
            xp.multiply(out, self._half_Bc, out=out)
            xp.subtract(base, out, out=out)
        return out, adv_sum

    def _terms(self, w0, w1, adv_hat, dN, C_hat, names=TERM_NAMES) -> dict:
        """Physical contributions of one step, each computed from what entered it.

        Only the spectra that `names` need are built and transformed (in one batched inverse
        transform); a term that did not act this step is an exact zero without a transform.
        """
        bk, n = self.backend, self.n
        need = []
        for k in names:
            for part in COMPOSITE.get(k, (k,)):
                if part not in need:
                    need.append(part)
        mid = 0.5 * (w0 + w1) if {"viscous", "drag"} & set(need) else None

        def spectrum(k):  # None: the term is zero this step
            if k == "advection":
                return adv_hat
            if k == "viscous":
                if self.viscosity == "implicit":
                    return 0.5 * self._visc_op * w1
                return self._visc_op * mid if self.viscosity else None
            if k == PAPER_G:
                g = self._visc_op * w0
                return g if dN is None else g + dN * (2 * self._noise_scale / self.dt)
            if k == "drag":
                return -self.drag * mid
            if k == "forcing":
                return self._f_hat if self._f_hat is None else self._f_hat + 0 * w0
            if k == "noise":
                return dN * (self._noise_scale / self.dt) if dN is not None else None
            return C_hat

        spectra = {k: spectrum(k) for k in need}
        live = [k for k in need if spectra[k] is not None]
        shape = (w0.shape[0], n, n)
        terms = {k: bk.zeros(shape) for k in need if spectra[k] is None}
        if live:
            phys = bk.irfft2(bk.xp.stack([spectra[k] for k in live]), n)
            terms.update({k: phys[i] for i, k in enumerate(live)})
        for k, (a, b) in COMPOSITE.items():
            if k in names:
                terms[k] = terms[a] + terms[b]
        return {k: terms[k] for k in names}

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
        # A diverging state overflows on the way (velocities of huge vorticity): numpy would
        # print RuntimeWarnings just before the error that explains them, so they are silenced.
        with np.errstate(over="ignore", invalid="ignore"):
            if not self.backend.all_finite(state):
                raise BlowUpError(t, self.steps_taken, None, self.dt,
                                  "non-finite vorticity (NaN/Inf)")
            cfl = self.cfl(state)
        if not math.isfinite(cfl):
            raise BlowUpError(t, self.steps_taken, None, self.dt,
                              "non-finite velocity (the vorticity overflows)")
        if cfl > self.cfl_max:
            raise BlowUpError(
                t, self.steps_taken, cfl, self.dt, f"CFL number above cfl_max={self.cfl_max:g}"
            )
        return cfl

    def energy(self, state) -> np.ndarray:
        """Kinetic energy per trajectory, 0.5 * mean(u^2 + v^2), numpy (B,)."""
        u, v = (self.backend.to_numpy(a) for a in self.velocity(state))
        return 0.5 * (u**2 + v**2).mean(axis=(-2, -1))

    def enstrophy(self, state) -> np.ndarray:
        """Enstrophy per trajectory, 0.5 * mean(w^2), numpy (B,)."""
        w = self.physical(state)
        return 0.5 * (w**2).mean(axis=(-2, -1))
