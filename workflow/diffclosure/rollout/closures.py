"""Closures of the coupled coarse solver: the objects behind the names of rollout/registry.py.

A closure supplies the tendency that the coarse solver's known physics lacks (see
rollout/reference.py for what is known per target). Every closure is an object with

    tendency(w, step, t) -> array (B, n, n) or None

where ``w`` is the coarse vorticity at the start of step ``step`` (time ``t``) as a numpy
float64 array (B, n, n), B = states x members with the members of one state adjacent
(b = state * members + member). The coupled loop adds the result explicitly.

Cost contract with the coupled loop (rollout/coupled.py), all optional:

- Returning the *same object* as on the previous step means "unchanged": the loop reuses its
  spectrum instead of transforming it again (a held term costs no FFT). The loop marks a numpy
  array it has cached read-only, so mutating it in place and returning it again fails loudly
  instead of being silently ignored; return a new array for a new term.
- ``needs_state(step) -> bool``: False when the tendency of that step ignores ``w``; the loop
  then passes ``w=None`` and skips building the physical state.
- ``tendency_split(w, step, t) -> (held, noise_hat)``: the term as a (possibly held) physical
  array plus an extra spectral part rfft2 (B, n, n//2+1) complex128 numpy (or None); lets a
  held term with fresh white noise (:class:`DiffusionClosure`, hold ``reuse_noise``) draw its
  noise in spectral space instead of transforming a new physical field every step.

Which closures exist, how each is built and what its rollout job needs: rollout/registry.py.
"""

from __future__ import annotations

import logging

import numpy as np

from diffclosure.coarse.classical import CLASSICAL as CLASSICAL_MODELS
from diffclosure.coarse.classical import classical_closure, constant_from_config, estimate_of_target
from diffclosure.coarse.filters import filter_width
from diffclosure.config import ConfigError
from diffclosure.data import measurements as meas_mod
from diffclosure.solver.grid import Grid, advection, laplacian
from diffclosure.solver.navier_stokes import PAPER_G
from diffclosure.solver.noise import white_noise_rfft2

log = logging.getLogger(__name__)

# The eddy-viscosity models coarse/classical.py defines, each a closure of its own name.
CLASSICAL = tuple(CLASSICAL_MODELS)
HOLD_RULES = ("reuse", "reuse_noise")


class NoClosure:
    """Drop the term."""

    name = "none"

    def tendency(self, w, step, t):
        return None


class OracleGH:
    """The reference's own G or H, recomputed from the current state with its noise (under
    coarse.g_split paper: 0.5 x the research code's G, see :func:`target_sign`)."""

    name = "true"

    def __init__(self, full_solver, rngs, target: str, g_split: str = "full"):
        if target not in ("G", "H"):
            raise ValueError(f"OracleGH is for the G and H targets, not {target!r}")
        self.solver, self.rngs = full_solver, rngs
        self.target, self.weight = term_name(target, g_split), target_sign(target, g_split)

    def tendency(self, w, step, t):
        s = self.solver
        if w.shape[0] != len(self.rngs):
            raise ValueError("the oracle closure runs one member per state")
        eta = s.sample_noise(self.rngs)  # drawn every step, in the reference's order
        # Only the wanted term is transformed (the full dict would cost six transforms).
        _, terms = s.step(s.from_physical(w), eta, t=t, terms=(self.target,))
        term = s.backend.to_numpy(terms[self.target])
        return term if self.weight == 1.0 else self.weight * term


class OracleSgs:
    """-Pi of the filtered DNS at the nearest earlier record, held in between."""

    name = "true"

    def __init__(self, pi_records: np.ndarray, steps_per_record: int, members: int = 1):
        self.pi = np.asarray(pi_records, dtype=float)  # (S, T, n, n)
        self.stride, self.members = int(steps_per_record), int(members)
        self._record, self._term = None, None

    def needs_state(self, step) -> bool:
        return False

    def tendency(self, w, step, t):
        j = min(step // self.stride, self.pi.shape[1] - 1)
        if j != self._record:  # one object per record: held in between (no re-transform)
            term = target_sign("sgs") * self.pi[:, j]
            self._record, self._term = j, np.repeat(term, self.members, axis=0)
        return self._term


class ClassicalClosure:
    """Eddy-viscosity closure; for G/H plus the missing process's deterministic physics."""

    def __init__(self, name: str, target: str, coarse: dict, nu: float, length: float, n: int):
        if name not in CLASSICAL:
            raise ConfigError(f"unknown classical closure {name!r}; choose one of {CLASSICAL}")
        self.name, self.target, self.nu, self.length = name, target, nu, length
        self.g_split = coarse.get("g_split", "full")
        self.fn = classical_closure(name)
        self.constant = constant_from_config(name, coarse)
        self.delta = filter_width(coarse, length)
        self.grid = Grid(n, length)

    def pi_model(self, w) -> np.ndarray:
        return self.fn(w, self.length, self.delta, self.constant)

    def tendency(self, w, step, t):
        out = -self.pi_model(w)
        if self.target == "G":
            # Under the paper's split the known physics already holds the implicit half of the
            # viscosity: the closure adds the explicit half, plus the full eddy-viscosity term.
            half = self.g_split == "paper"
            out += (0.5 if half else 1.0) * self.nu * laplacian(self.grid, w)
        elif self.target == "H":
            out -= advection(self.grid, w, dealias=True)
        return out


class Measurements:
    """Sparse lattice measurements of the reference's true term, encoded as the dataset does.

    `source(step)` returns the true term (S, n, n) at that step; the lattice values get the
    dataset's relative measurement noise (measurements.noise x target std) from `rng`, then
    the configured encoder maps them to the full grid.
    """

    def __init__(self, source, meas: dict, n: int, target_std: float, rng: np.random.Generator):
        meas_mod.lattice_stride(n, meas["lattice"])
        if meas["encoder"] == "conv":
            meas_mod.conv_kernel_points(n, meas["lattice"], meas["conv_width"])
        self.source, self.meas, self.n = source, meas, n
        self.target_std, self.rng = float(target_std), rng

    def __call__(self, step: int) -> np.ndarray:
        values = meas_mod.sample(self.source(step), self.meas["lattice"])
        values = meas_mod.add_noise(values, self.meas["noise"], self.target_std, self.rng)
        return meas_mod.encode(values, self.n, self.meas["encoder"], self.meas["conv_width"])


class MeasuredClosure:
    """The encoded measurements as the term: drawn every `resample_every` steps, held between.

    The learned closure samples at those steps, conditioned on these very measurements, so
    the two rollouts differ only by what the model makes of them.
    """

    name = "measurements"

    def __init__(self, measurements: Measurements, resample_every: int, sign: float = 1.0):
        if resample_every < 1:
            raise ConfigError(f"rollout.resample_every: must be >= 1, got {resample_every}")
        self.measurements, self.every, self.sign = measurements, int(resample_every), sign
        self._term = None

    def needs_state(self, step) -> bool:
        return False

    def tendency(self, w, step, t):
        if self._term is None or step % self.every == 0:
            self._term = self.sign * self.measurements(step)  # a new object: re-transformed
        return self._term


def target_sign(target: str, g_split: str = "full") -> float:
    """Factor with which a target enters the coarse equation: +G, +H, but -Pi for sgs, and
    0.5 G for the research code's G (coarse.g_split paper: G = nu lap w + 2 noise, added as
    0.5 dt G on top of the implicit half of Crank-Nicolson, as its coupled runs do)."""
    if target == "sgs":
        return -1.0
    return 0.5 if (target == "G" and g_split == "paper") else 1.0


def term_name(target: str, g_split: str = "full", noise: str = "in_target") -> str:
    """The solver's term (Solver.step terms=) that is the stored target: with coarse.noise
    known, G and H without their noise part, the viscous and advection terms."""
    if noise == "known":
        return {"G": "viscous", "H": "advection"}[target]
    return PAPER_G if (target == "G" and g_split == "paper") else target


class MeanOfSamples:
    """A closure sampler (DiffusionClosure's `sampler_obj` contract) whose one sample per
    condition is the mean of `count` samples of `obj`: the learned closure's estimate of the
    conditional mean, a deterministic closure up to the sampling error of the mean."""

    def __init__(self, obj, count: int):
        if count < 2:
            raise ConfigError(f"rollout.mean_samples: must be >= 2, got {count}")
        self.obj, self.count = obj, int(count)
        self.conditions = getattr(obj, "conditions", ["vorticity", "measurements"])

    def sample(self, sampler, vorticity, measurements=None, smagorinsky=None, *, ensemble=1,
               generator=None):
        out = self.obj.sample(sampler, vorticity, measurements=measurements,
                              smagorinsky=smagorinsky, ensemble=self.count * ensemble,
                              generator=generator)
        if hasattr(out, "detach"):
            out = out.detach().cpu().numpy()
        out = np.asarray(out, dtype=np.float64)
        b, n = out.shape[0], out.shape[-1]
        return out.reshape(b, ensemble, self.count, n, n).mean(axis=2)


class DiffusionClosure:
    """The learned stochastic closure: one sample per member every `resample_every` steps.

    `sampler_obj.sample(sampler, vorticity, measurements=, smagorinsky=, ensemble=1,
    generator=)` -> (B, 1, n, n) physical samples (sampling.closure_sampler.ClosureSampler or
    any object with that call). The whole batch (states x members) is ONE call: each member is
    conditioned on its own current vorticity and on its state's measurements, so members of a
    state share the measurements and diverge through their samples and states.

    Between samples (`hold`): ``reuse`` returns the last sample; ``reuse_noise`` returns it plus
    independent white Gaussian noise of std `hold_std` per point and step (the paper's "small
    added noise": it keeps the held term stochastic without drifting from the sample), drawn
    in spectral space (:meth:`tendency_split`), so the held sample is transformed once.
    """

    def __init__(self, sampler_obj, sampler, *, states: int, members: int, resample_every: int,
                 hold: str, hold_std: float, measurements: Measurements | None,
                 sign: float = 1.0,
                 smagorinsky=None, generator=None, rng: np.random.Generator | None = None,
                 name: str = "learned", inflation: float = 1.0):
        if hold not in HOLD_RULES:
            raise ConfigError(f"rollout.hold: unknown rule {hold!r}; choose one of {HOLD_RULES}")
        if resample_every < 1:
            raise ConfigError(f"rollout.resample_every: must be >= 1, got {resample_every}")
        self.name = name  # the registry's name, for messages
        self.obj, self.sampler = sampler_obj, sampler
        self.states, self.members = int(states), int(members)
        self.resample_every, self.hold, self.hold_std = int(resample_every), hold, float(hold_std)
        self.measurements, self.smagorinsky = measurements, smagorinsky
        self.generator = generator
        self.inflation = float(inflation)
        # Samples are of the target; the sgs target Pi enters the equation as -Pi.
        self.sign = float(sign)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.last = None
        self._noise = None  # spectral hold-noise buffer, reused every held step
        self.sample_calls = 0
        conditions = list(getattr(sampler_obj, "conditions", ["vorticity", "measurements"]))
        self.needs_measurements = "measurements" in conditions
        self.needs_smagorinsky = "smagorinsky" in conditions
        if self.needs_measurements and measurements is None:
            raise ConfigError(
                "rollout.measurements: the model was trained with sparse measurements; set "
                "rollout.measurements: true (or retrain with measurements.enabled: false)"
            )
        if self.needs_smagorinsky and smagorinsky is None:
            raise ValueError("the model needs a Smagorinsky condition; pass `smagorinsky`")

    def _draw(self, w, step):
        meas = None
        if self.needs_measurements:
            meas = np.repeat(self.measurements(step), self.members, axis=0)
        smag = self.smagorinsky(w) if self.needs_smagorinsky else None
        # A sampling.noise_source.CorrelatedNoise starts a new sampling of its AR(1) process
        # (tested by duck type: this module imports no torch).
        if hasattr(self.generator, "begin"):
            self.generator.begin()
        out = self.obj.sample(self.sampler, w, measurements=meas, smagorinsky=smag,
                              ensemble=1, generator=self.generator)
        self.sample_calls += 1
        if hasattr(out, "detach"):
            out = out.detach().cpu().numpy()
        out = np.asarray(out, dtype=np.float64)
        if out.shape != (w.shape[0], 1) + w.shape[1:]:
            raise ValueError(f"closure sampler returned shape {out.shape}, expected "
                             f"{(w.shape[0], 1) + w.shape[1:]}")
        out = out[:, 0]
        if self.inflation != 1.0 and self.members > 1:
            # Deviations from each state's member mean, inflated (rollout.inflation).
            by_state = out.reshape((self.states, self.members) + out.shape[1:])
            mean = by_state.mean(axis=1, keepdims=True)
            out = (mean + self.inflation * (by_state - mean)).reshape(out.shape)
        return self.sign * out

    def needs_state(self, step) -> bool:
        """Only a resampling step looks at the state."""
        return self.last is None or step % self.resample_every == 0

    def tendency_split(self, w, step, t):
        """(held sample, spectral hold noise or None): see the module docstring.

        The hold noise is white, std `hold_std` per point, drawn directly as its rfft2
        (solver.noise.white_noise_rfft2) into a buffer reused every step.
        """
        if self.needs_state(step):
            if w is None or w.shape[0] != self.states * self.members:
                raise ValueError(f"batch {None if w is None else w.shape[0]} != states x "
                                 f"members = {self.states} x {self.members}")
            self.last = self._draw(w, step)
            return self.last, None
        if self.hold == "reuse" or self.hold_std == 0:
            return self.last, None
        B, n = self.last.shape[0], self.last.shape[-1]
        self._noise = white_noise_rfft2(self.rng, B, n, self.hold_std, out=self._noise)
        return self.last, self._noise

    def tendency(self, w, step, t):
        held, noise_hat = self.tendency_split(w, step, t)
        if noise_hat is None:
            return held
        return held + np.fft.irfft2(noise_hat, s=held.shape[-2:])


def smagorinsky_condition(target: str, coarse: dict, length: float):
    """The Smagorinsky condition channel exactly as the coarse stage computes it."""
    delta = filter_width(coarse, length)

    def fn(w):
        return estimate_of_target(target, w, length, delta, "smagorinsky",
                                  coarse["smagorinsky_cs"])

    return fn
