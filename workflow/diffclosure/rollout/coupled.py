"""The coarse solver coupled with a closure, run against a reference: one rollout.

:func:`run_rollout` does everything one ``rollout`` job needs (the stage only adds files):

1. initial states and the reference (rollout/reference.py): the first rollout.initial_states
   test trajectories at their first DNS record, coarse-grained; for G/H a full-physics coarse
   run with its own per-state noise stream, for sgs the filtered DNS. A rollout may run past
   the DNS's recorded window (a long run scored on statistics: rollout-metrics' les.csv
   compares its spectra and PDFs with the filtered DNS's pooled over the window); its reference
   records there are NaN. Closures that read the DNS's own subgrid term (`true`, measurements
   of it) cannot, and stop with the window, their later records NaN as well;
2. the closure from the registry (rollout/registry.py);
3. the coupled run (:func:`run_coupled`): the known-physics coarse solver plus the closure
   tendency, all states x members advanced as ONE batch, recorded every rollout.record_every;
4. the cost: warm wall time per simulated time unit of the coupled run (closure included,
   reference and I/O excluded) and, measured in the same job, that of the fine-grid DNS the
   closure stands in for (:func:`dns_cost`: a short run of dns.n with the dns settings, for the
   same number of initial states, extrapolated), so cost ratios come from one machine and run.

Cost convention: the DNS advances the S initial states; the coupled run advances S x M fields
(M ensemble members of a stochastic closure). The ratio compares what each costs to produce a
prediction for the S initial states, ensemble included.

A blow-up of the coupled run (non-finite state, or CFL above dns.cfl_max, checked every
dns.check_every steps and at every record) is a result, not a crash: the run stops, records not
reached stay NaN, and the blow-up time is returned.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from diffclosure.config import ConfigError, rollout_start
from diffclosure.data.h5io import DataFileError
from diffclosure.data.stats import load_stats
from diffclosure.errors import BlowUpError
from diffclosure.progress import progress
from diffclosure.rollout import closures as cl
from diffclosure.rollout import reference as ref
from diffclosure.rollout import registry
from diffclosure.solver.factory import solver_device
from diffclosure.solver.grid import Grid
from diffclosure.solver.initial import gaussian_random_field
from diffclosure.solver.navier_stokes import whole_steps

log = logging.getLogger(__name__)


def _stride(interval: float, dt: float, what: str) -> int:
    return whole_steps(interval, dt, what, error=ConfigError)


def progress_bar(total: int, desc: str, enabled: bool = True):
    return progress(total=total, desc=desc, unit="step", enabled=enabled)


# ----------------------------------------------------------------------------- coupled loop
@dataclass
class CoupledResult:
    records: np.ndarray  # (S*M, T, n, n) float64; NaN where not reached (blow-up)
    steps_done: int
    blowup_time: float | None
    blowup_reason: str
    wall_per_time: float  # warm seconds per simulated time unit
    steps_timed: int


class ClosureSpectrum:
    """The closure's tendency of each step as the spectrum Solver.step takes (closure_hat).

    Avoids every transform and copy that is not needed (see the cost contract in
    rollout/closures.py): the physical state is built only when the closure needs it, a term
    returned again as the same object reuses its cached spectrum, and a split closure's
    spectral noise is added to the held spectrum in a preallocated buffer. Numpy arrays go to
    the transform as they are (no conversion copy); the torch backend transfers them once.
    """

    def __init__(self, solver, closure, batch: int):
        self.solver, self.closure = solver, closure
        self.needs_state = getattr(closure, "needs_state", None)
        self.split = getattr(closure, "tendency_split", None)
        self.shape = (batch, solver.n, solver.n)
        self._source, self._hat = None, None  # last physical term and its spectrum
        self._sum = None  # held + noise buffer

    def __call__(self, state, step: int, t: float):
        s = self.solver
        w = None
        if self.needs_state is None or self.needs_state(step):
            w = s.physical(state)
        if self.split is not None:
            held, extra = self.split(w, step, t)
        else:
            held, extra = self.closure.tendency(w, step, t), None
        hat = self._spectrum(held)
        if extra is None:
            return hat
        extra = s.spectral(extra, self.shape[0], "closure noise spectrum")
        if hat is None:
            return extra
        if self._sum is None:
            self._sum = s.backend.empty(tuple(hat.shape), complex_=True)
        s.backend.xp.add(hat, extra, out=self._sum)
        return self._sum

    def _spectrum(self, term):
        if term is None:
            return None
        if term is self._source:
            return self._hat
        if tuple(term.shape) != self.shape:
            raise ValueError(f"closure {getattr(self.closure, 'name', '?')} returned shape "
                             f"{tuple(term.shape)}, expected {self.shape}")
        self._hat = self.solver.backend.rfft2(term)
        self._source = term
        if isinstance(term, np.ndarray):
            term.flags.writeable = False  # an in-place change would go unseen: make it fail
        return self._hat


def _blowup_reason(exc: BlowUpError, closure) -> str:
    """The blow-up in words. With a closure in the loop the time step is not the only suspect:
    the rollout_metrics stage compares with the other closures and says which it is."""
    if isinstance(closure, cl.NoClosure):
        return str(exc)
    return (f"{exc.detail} with closure {getattr(closure, 'name', '?')}; if the other closures "
            f"stay stable at this dns.dt ({exc.dt:g}), the closure is the cause (rollout_metrics"
            " compares them); if they blow up too, reduce dns.dt")


def run_coupled(solver, w0, closure, steps: int, record_stride: int, members: int = 1,
                warmup: int = 1, progress=None, noise=None,
                perturbation=None) -> CoupledResult:
    """Advance w0 (S, n, n), each state repeated `members` times, with `closure`; the members
    start from w0 plus `perturbation` (S * members, n, n) when given.

    `noise(step)`, if given, is the known noise of each step as Solver.step's noise_hat (the
    sgs target's filtered DNS noise, reference.FilteredNoise, or the physical noise of G and H
    under coarse.noise known, reference.PhysicalNoise); otherwise the run has none.

    The closure's tendency is added explicitly (Solver.step's closure_hat, computed by
    :class:`ClosureSpectrum`); the state is stepped in place. The first `warmup` steps (plans,
    first sample, device initialisation) are not timed.
    """
    dt = solver.dt
    w = np.repeat(np.asarray(w0, dtype=float), members, axis=0)
    if perturbation is not None:
        w = w + perturbation
    state = solver.from_physical(w)
    n_rec = steps // record_stride + 1
    records = np.full((w.shape[0], n_rec) + w.shape[1:], np.nan)
    records[:, 0] = solver.physical(state)
    term = None if isinstance(closure, cl.NoClosure) else ClosureSpectrum(solver, closure,
                                                                          w.shape[0])

    warmup = min(warmup, max(steps - 1, 0))
    elapsed, blowup, reason, done = 0.0, None, "", 0
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(steps):
            tic = time.perf_counter()
            try:
                c_hat = term(state, k, k * dt) if term is not None else None
                eta = noise(k) if noise is not None else None
                state = solver.step(state, eta, t=k * dt, out=state, closure_hat=c_hat)
                if (k + 1) % record_stride == 0:
                    solver.check(state, (k + 1) * dt)
            except BlowUpError as exc:
                blowup, reason = exc.time, _blowup_reason(exc, closure)
                log.warning("closure %s blew up at t=%.4g (step %d): %s; stopping this rollout",
                            getattr(closure, "name", "?"), exc.time, k + 1, reason)
                break
            if k >= warmup:
                elapsed += time.perf_counter() - tic
            done = k + 1
            if done % record_stride == 0:
                records[:, done // record_stride] = solver.physical(state)
            if progress is not None:
                progress.update()
    timed = max(done - warmup, 0)
    per_time = elapsed / (timed * dt) if timed else float("nan")
    return CoupledResult(records, done, blowup, reason, per_time, timed)


def dns_cost(dns: dict, w_fine, steps: int = 20, threads: int = 1, warmup: int = 2,
             seed: int = 0, device=None) -> float:
    """Warm wall seconds per simulated time unit of the fine DNS (dns.n, full physics).

    Runs `warmup` + `steps` steps from the fine states w_fine (S, N, N) and extrapolates.
    """
    solver = ref.full_solver(dns, w_fine.shape[-1], threads=threads, device=device)
    rngs = ref.noise_generators(seed, w_fine.shape[0])
    state = solver.from_physical(w_fine)
    for k in range(warmup):
        state = solver.step(state, solver.sample_noise(rngs), t=k * solver.dt, out=state)
    tic = time.perf_counter()
    for k in range(steps):
        state = solver.step(state, solver.sample_noise(rngs), t=k * solver.dt, out=state)
    solver.physical(state)  # synchronise (torch backends)
    return (time.perf_counter() - tic) / (steps * solver.dt)


# ----------------------------------------------------------------------------- one rollout
@dataclass
class RolloutResult:
    closure: str
    target: str
    vorticity: np.ndarray  # (S, M, T, n, n)
    reference: np.ndarray  # (S, T, n, n)
    time: np.ndarray  # (T,) time since the rollout start
    trajectories: list[int]
    start_time: float
    attrs: dict = field(default_factory=dict)


def plan(cfg: dict, closure: str) -> dict:
    """Steps and strides of a rollout; every setting is checked before any work starts."""
    dns, ro = cfg["dns"], cfg["rollout"]
    spec = registry.lookup(closure)
    dt = dns["dt"]
    steps = _stride(ro["duration"], dt, "rollout.duration")
    stride = _stride(ro["record_every"], dt, "rollout.record_every")
    if stride > steps:
        raise ConfigError(f"rollout.record_every: {ro['record_every']} exceeds rollout.duration="
                          f"{ro['duration']}; record at least once")
    steps -= steps % stride
    out = {"steps": steps, "record_stride": stride, "dt": dt}
    problem = spec.check(cfg)
    if problem:
        raise ConfigError(problem)
    if cfg["coarse"]["target"] == "sgs":
        spr = _stride(dns["record_every"], dt, "dns.record_every")
        if stride % spr:
            raise ConfigError(
                f"rollout.record_every: {ro['record_every']} must be a multiple of "
                f"dns.record_every={dns['record_every']} for the sgs target (its reference is "
                "the filtered DNS at the record times)"
            )
        out["steps_per_dns_record"] = spr
    return out


def _sgs_steps(steps: int, stride: int, spr: int, n_records: int, ro: dict, dt: float,
               past_window: bool) -> int:
    """The steps of an sgs rollout that the filtered DNS's recorded window pairs with a
    reference; `past_window` says whether the run goes on past them (only for the log)."""
    window = (n_records - 1) * spr
    paired = steps
    if steps > window:
        paired = window - window % stride
        if past_window:
            log.info("sgs target: the filtered DNS is recorded for %.4g time units; the rollout "
                     "runs its %.4g, and its records past the window are scored on statistics "
                     "only (les.csv)", window * dt, steps * dt)
        else:
            log.warning("sgs target: the reference is the filtered DNS, recorded for %.4g time "
                        "units; this run stops at %.4g of rollout.duration=%.4g", window * dt,
                        paired * dt, ro["duration"])
    if paired < stride:
        raise ConfigError("rollout.duration: the DNS window holds no record after the "
                          "first; record a longer dns.duration")
    return paired


def _recorded_and_run_steps(cfg: dict, p: dict, spec, n_records: int, need_terms: bool,
                            paired_only: bool) -> tuple[int, int]:
    """(steps the rollout file records, steps the coupled run takes): both the planned steps,
    but for sgs: past the DNS's window only a closure of its own runs (one that reads the DNS's
    subgrid term has none there, and records NaN), and `paired_only` stops every run with it."""
    steps, stride = p["steps"], p["record_stride"]
    if cfg["coarse"]["target"] != "sgs":
        return steps, steps
    alone = not (paired_only or spec.oracle or need_terms)
    paired = _sgs_steps(steps, stride, p["steps_per_dns_record"], n_records, cfg["rollout"],
                        cfg["dns"]["dt"], alone)
    return (paired if paired_only else steps), (steps if alone else paired)


def _padded(records: np.ndarray, n_rec: int, axis: int) -> np.ndarray:
    """records with NaN records appended along `axis` up to n_rec."""
    missing = n_rec - records.shape[axis]
    if missing <= 0:
        return records
    shape = list(records.shape)
    shape[axis] = missing
    return np.concatenate([records, np.full(shape, np.nan, dtype=records.dtype)], axis=axis)


def _reference(cfg: dict, fine, w0, steps: int, stride: int, spr, n_rec: int, need_terms,
               bar, threads: int, device):
    """The reference records, the true closure term at step k as a function, and the filtered
    DNS's term (sgs; else None)."""
    dns, coarse, ro = cfg["dns"], cfg["coarse"], cfg["rollout"]
    target, n, length = coarse["target"], coarse["n"], dns["length"]
    pi = None
    if target == "sgs":
        w_bar, pi = ref.filtered_reference(fine.vorticity, coarse, length)
        reference = _padded(w_bar[:, :: stride // spr][:, :n_rec], n_rec, axis=1)

        def true_term(k):
            return pi[:, min(k // spr, pi.shape[1] - 1)]
    else:
        full = ref.full_solver(dns, n, threads=threads, device=device)
        sample_steps = range(0, steps, ro["resample_every"])
        r = ref.run_reference(full, w0, steps, stride,
                              ref.noise_generators(ro["seed"], w0.shape[0]),
                              cl.term_name(target, coarse["g_split"], coarse["noise"]),
                              term_steps=sample_steps if need_terms else (),
                              progress=bar)
        reference = r.records

        def true_term(k):
            return r.terms[k]
    return reference, true_term, pi


def _rollout_attrs(closure: str, cfg: dict, steps: int, stride: int, S: int, M: int, ids,
                   start_time: float, res: CoupledResult, dns_per_time: float,
                   dns_steps: int, closure_attrs: dict) -> dict:
    """The rollout file's attributes: the run's shape, its blow-up and its cost, then the
    closure's own (`closure_attrs`)."""
    dns, coarse = cfg["dns"], cfg["coarse"]
    attrs = {
        "closure": closure, "target": coarse["target"], "n": coarse["n"], "dt": dns["dt"],
        "steps": steps,
        "steps_done": res.steps_done, "record_stride": stride, "states": S, "members": M,
        "trajectories": json.dumps(ids), "start_time": start_time,
        "blowup": res.blowup_time is not None,
        "blowup_time": float("nan") if res.blowup_time is None else float(res.blowup_time),
        "blowup_reason": res.blowup_reason,
        "cost_coupled_s_per_time": res.wall_per_time,
        "cost_dns_s_per_time": dns_per_time,
        "cost_ratio_vs_dns": (res.wall_per_time / dns_per_time
                              if dns_per_time > 0 else float("nan")),
        "cost_steps_timed": res.steps_timed, "cost_dns_steps_timed": dns_steps,
        "dns_n": dns["n"],
    }
    attrs.update(closure_attrs)
    return attrs


def _fine_dns_cost(dns: dict, w0_fine, ro: dict, threads: int, device) -> tuple[float, int]:
    """The cost of the fine DNS the closure stands in for: (s per time unit, steps timed)."""
    steps = ro["dns_cost_steps"]
    per_time = dns_cost(dns, w0_fine, steps=steps, threads=threads, seed=ro["seed"],
                        device=device)
    log.info("fine DNS (%d^2, %d states): %.4g s per simulated time unit (%d steps timed)",
             dns["n"], w0_fine.shape[0], per_time, steps)
    return per_time, steps


def initial_perturbation(w0, members: int, amplitude: float, seed: int) -> np.ndarray:
    """(S * members, n, n) perturbations of the initial states w0 (S, n, n) for a
    perturbed-initial-condition ensemble: for each member a random field with the initial
    field's spectral shape (solver.initial), of rms `amplitude` times its state's rms, from
    its own generator; zero mean, so the vorticity stays a vorticity on the torus."""
    w0 = np.asarray(w0, dtype=float)
    S, n = w0.shape[0], w0.shape[-1]
    rngs = [np.random.default_rng(np.random.SeedSequence([seed, 0x1C, s, m]))
            for s in range(S) for m in range(members)]
    fields = gaussian_random_field(Grid(n, 1.0), rngs)
    fields -= fields.mean(axis=(-2, -1), keepdims=True)
    fields /= np.sqrt(np.mean(fields**2, axis=(-2, -1), keepdims=True))
    scale = amplitude * np.sqrt(np.mean(w0**2, axis=(-2, -1)))
    return fields * np.repeat(scale, members)[:, None, None]


def run_rollout(cfg: dict, closure: str, dns_paths, data_dir, sampler_obj=None, *,
                threads: int = 1, generator=None, show_progress: bool = True,
                states: list[tuple[int, float]] | None = None,
                measure_cost: bool = True, paired_only: bool = False) -> RolloutResult:
    """One rollout job (module docstring); `sampler_obj`, the trained model's sampler, for a
    closure whose registry entry needs_model. `states`: the initial states as (trajectory id,
    start time), by default the first rollout.initial_states test trajectories at the rollout
    start (rollout/calibration.py passes validation states; sgs states share one start).
    `measure_cost=False` skips timing the fine DNS (its attributes are then nan).
    `paired_only`: an sgs run stops with the DNS's recorded window even when rollout.duration
    is longer (the calibration run, which needs a reference at every record)."""
    dns, coarse, ro = cfg["dns"], cfg["coarse"], cfg["rollout"]
    target, length, dt = coarse["target"], dns["length"], dns["dt"]
    p = plan(cfg, closure)
    spec = registry.lookup(closure)
    if spec.needs_model and sampler_obj is None:
        # The rollout stage names the file to pass before it gets here; this guards callers.
        raise ValueError(f"run_rollout: the {closure} closure needs sampler_obj, the trained "
                         "model's sampler (stages.rollout.rollout_sampler)")
    stats = load_stats(data_dir)
    device = solver_device(dns["backend"], cfg.get("device", "auto"))  # a bad one fails here
    states = _test_states(dns, ro, stats, data_dir) if states is None else states
    S, M, ids = len(states), registry.members(closure, ro["ensemble"]), [i for i, _ in states]
    fine = _read_states(dns_paths, states, target, dns["n"])
    stride, spr = p["record_stride"], p.get("steps_per_dns_record")
    need_terms = spec.measured and ro["measurements"]
    steps, run_steps = _recorded_and_run_steps(cfg, p, spec, fine.vorticity.shape[1], need_terms,
                                               paired_only)
    n_rec = steps // stride + 1
    w0 = ref.coarse_initial(fine.vorticity[:, 0], coarse, length)
    bar = progress_bar(run_steps * (1 if target == "sgs" else 2), f"rollout {closure}",
                       show_progress)
    reference, true_term, pi = _reference(cfg, fine, w0, steps, stride, spr, n_rec, need_terms,
                                          bar, threads, device)
    clo = registry.build(registry.Context(
        closure, cfg, stats, true_term, S, M, threads=threads, device=device,
        sampler_obj=sampler_obj, generator=generator, pi=pi, steps_per_record=spr))

    solver, noise = _known_physics(cfg, spec, ids, float(fine.times[0]), M, threads, device)
    perturbation = (initial_perturbation(w0, M, ro["perturbation"], ro["seed"])
                    if spec.perturbed else None)
    res = run_coupled(solver, w0, clo, run_steps, stride, members=M, warmup=spec.warmup(ro),
                      progress=bar, noise=noise, perturbation=perturbation)
    bar.close()
    records = _padded(res.records, n_rec, axis=1)
    vort = records.reshape((S, M) + records.shape[1:])
    log.info("coupled run: %d/%d steps, %.4g s per simulated time unit (warm, %d steps timed)",
             res.steps_done, run_steps, res.wall_per_time, res.steps_timed)

    dns_per_time, dns_steps = (_fine_dns_cost(dns, fine.vorticity[:, 0], ro, threads, device)
                               if measure_cost else (float("nan"), 0))
    attrs = _rollout_attrs(closure, cfg, steps, stride, S, M, ids, float(fine.times[0]), res,
                           dns_per_time, dns_steps, spec.attrs(clo))
    if math.isnan(res.wall_per_time):
        log.warning("too few steps to time the coupled run")
    times = np.arange(n_rec) * stride * dt
    return RolloutResult(closure, target, vort, reference, times, ids, float(fine.times[0]),
                         attrs)


def _test_states(dns: dict, ro: dict, stats: dict, data_dir) -> list[tuple[int, float]]:
    """The first rollout.initial_states test trajectories at the rollout start."""
    start = rollout_start(dns, ro)
    return [(i, start) for i in ref.test_ids(stats, ro["initial_states"],
                                             Path(data_dir) / "stats.json")]


def _known_physics(cfg: dict, spec, ids, start_time: float, members: int, threads: int,
                   device):
    """The coarse solver of what the closure does not supply, and the noise the coupled loop
    hands it each step: the filtered DNS's (sgs), the physical noise (G, H under coarse.noise
    known; white in time, an own stream per member; not for the oracles, which carry the
    reference's), or none."""
    dns, coarse, ro = cfg["dns"], cfg["coarse"], cfg["rollout"]
    target = coarse["target"]
    physical = (target != "sgs" and coarse["noise"] == "known" and not spec.oracle
                and dns["noise"]["sigma"] > 0)
    solver = ref.known_solver(dns, coarse["n"], target, threads=threads, device=device,
                              coarse=coarse, physical_noise=physical)
    if target == "sgs":
        return solver, ref.filtered_noise(dns, coarse, ids, start_time, members)
    if physical:
        return solver, ref.PhysicalNoise(solver, ro["seed"], len(ids), members)
    return solver, None


def _read_states(dns_paths, states: list[tuple[int, float]], target: str,
                 n: int) -> ref.DnsStates:
    """The fine fields (n^2, checked) of (trajectory id, start) pairs: the start record for
    G/H, every record from the (one, shared) start for sgs."""
    fine = _read_fine(dns_paths, states, target)
    if fine.vorticity.shape[-1] != n:
        raise DataFileError(f"DNS shards hold {fine.vorticity.shape[-1]}^2 fields but dns.n is "
                            f"{n}; pass the shards of this configuration")
    return fine


def _read_fine(dns_paths, states: list[tuple[int, float]], target: str) -> ref.DnsStates:
    starts = sorted({float(t) for _, t in states})
    if target == "sgs":
        if len(starts) > 1:
            raise ValueError(f"sgs rollouts share one start time, got {starts}")
        return ref.read_dns(dns_paths, [i for i, _ in states], starts[0])
    fields, times = [], []
    for tid, start in states:
        one = ref.read_dns(dns_paths, [int(tid)], float(start), records=1)
        fields.append(one.vorticity[0])
        times.append(float(one.times[0]))
    if len(starts) > 1:  # the start time attribute then names the first state's
        log.info("initial states at times %s", starts)
    return ref.DnsStates([int(i) for i, _ in states], np.stack(fields), np.asarray(times[:1]),
                         one.length)
