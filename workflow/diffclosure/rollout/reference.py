"""Initial states, solvers and reference trajectories of the coupled rollouts.

Initial states: the first ``rollout.initial_states`` test trajectories (ids from the dataset's
stats.json split, in that order), their vorticity at the DNS record at ``rollout.start`` (by
default the first record; the default config starts after its training window), brought to the
coarse
grid ``coarse.n`` by the configured coarse-graining: ``coarse.method`` (the paper subsamples)
for the G and H targets, filter-then-truncate for the sgs target (as the coarse stage does, so
a rollout starts from exactly the state the model was trained on).

References:

- G and H: a coarse-grid simulation with the FULL stochastic physics (the dns section's nu,
  drag, scheme, forcing evaluated on the coarse grid, and the noise), as the paper does. Each
  initial state gets its own noise stream, a numpy Generator seeded from (rollout.seed, state
  index) (:func:`noise_generators`); the oracle closure re-creates the same streams, so it sees
  the reference's noise realisation without storing it.
- sgs: the filtered DNS of the held-out trajectory at the DNS record times; no coarse run can
  stand in for it. The rollout is therefore limited to the recorded window (the stage logs it).

Solvers (both from solver/factory.py's solver_for, on the device its policy gives the config's
`device`): :func:`full_solver` (full physics with noise, any grid) and :func:`known_solver`,
the coarse solver with only the physics a closure for `target` does not supply, an equation of
solver/equation.py (:func:`known_physics`):

- G (nu lap w + noise): ``no_viscosity``, without noise; under coarse.g_split paper (the
  research code's G = nu lap w^n + 2 noise, entering as 0.5 G) ``implicit_half_viscosity``: the
  implicit half of the Crank-Nicolson viscosity stays known, as in the research code's coupled
  runs;
- H (-u.grad w + noise): ``no_advection``, without noise;
- sgs (Pi): the filtered equation's known physics: the coarse advection, viscosity and drag,
  the FILTERED forcing f_bar and the filtered DNS's own noise realisation (:class:`FilteredNoise`,
  handed to the coupled loop step by step); the closure supplies -Pi. With -Pi of every DNS
  step, an euler_cn coarse step is then the filtered DNS step itself (filter, truncation and the
  diagonal Crank-Nicolson operators commute), so the oracle is exact up to how often Pi is
  known (tests/rollout/test_rollout.py measures it).

Drag and forcing are always known physics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffclosure.coarse.coarsen import coarsen, truncate_hat
from diffclosure.coarse.filters import filter_width, transfer_function
from diffclosure.coarse.targets import TARGETS, filtered_state, subgrid_term
from diffclosure.config import ConfigError
from diffclosure.data import h5io
from diffclosure.data.h5io import DataFileError
from diffclosure.errors import remake_hint
from diffclosure.solver import equation
from diffclosure.solver.factory import dns_forcing, solver_for
from diffclosure.solver.grid import Grid
from diffclosure.solver.initial import trajectory_streams
from diffclosure.solver.navier_stokes import Solver, whole_steps
from diffclosure.solver.noise import NoiseSampler, NoiseSpec

log = logging.getLogger(__name__)

# Stream tag of the reference noise, so it never coincides with another stream of the seed.
_NOISE_TAG = 0x5EF


def noise_generators(seed: int, states: int) -> list[np.random.Generator]:
    """One independent noise stream per initial state, from (rollout.seed, state index)."""
    return [np.random.default_rng(np.random.SeedSequence([int(seed), i, _NOISE_TAG]))
            for i in range(states)]


def member_noise_generators(seed: int, states: int, members: int) -> list[np.random.Generator]:
    """Independent noise streams for `members` members of each state (state-major), none of
    them the reference's (noise_generators): the physics' own spread (the `intrinsic` closure)."""
    return [np.random.default_rng(np.random.SeedSequence([int(seed), s, _NOISE_TAG, m + 1]))
            for s in range(states) for m in range(members)]


class PhysicalNoise:
    """The dns noise for the known-physics solver under coarse.noise known: rfft2 of a fresh
    unit field every step, from an own stream per (state, member) (member_noise_generators:
    never the reference's), so the coupled run's noise has the physical law, white in time."""

    def __init__(self, solver: Solver, seed: int, states: int, members: int):
        if solver.noise_sampler is None:
            raise ValueError("PhysicalNoise needs a solver with its noise on "
                             "(known_solver(physical_noise=True))")
        self.solver = solver
        self.rngs = member_noise_generators(seed, states, members)

    def __call__(self, step: int):
        return self.solver.sample_noise(self.rngs)


def known_physics(target: str, g_split: str = "full"):
    """The equation constructor of the G or H target's known physics (module docstring)."""
    if target == "H":
        return equation.no_advection
    return equation.implicit_half_viscosity if g_split == "paper" else equation.no_viscosity


def full_solver(dns: dict, n: int, threads: int = 1, backend: str | None = None,
                device="auto") -> Solver:
    """The dns section's full stochastic physics on an n-grid (device: the config's `device`,
    see solver/factory.py)."""
    return solver_for(dns, n, threads=threads, backend=backend, device=device)


def known_solver(dns: dict, n: int, target: str, threads: int = 1, backend: str | None = None,
                 device="auto", coarse: dict | None = None,
                 physical_noise: bool = False) -> Solver:
    """The coarse solver with the known physics of `target` only (module docstring).

    sgs needs the `coarse` section (its filter makes f_bar); its noise is switched on but drawn
    by nobody: the coupled loop passes :class:`FilteredNoise`'s spectra to each step. G reads
    coarse.g_split from it (default full). `physical_noise` (G and H under coarse.noise known)
    switches the dns noise on, drawn by :class:`PhysicalNoise`.
    """
    if target not in TARGETS:
        raise ConfigError(f"coarse.target: unknown target {target!r}; choose one of {TARGETS}")
    if target != "sgs":
        physics = known_physics(target, (coarse or {}).get("g_split", "full"))
        return solver_for(dns, n, physics, noise=physical_noise, threads=threads,
                          backend=backend, device=device)
    if coarse is None:
        raise ValueError("known_solver: the sgs target needs the coarse section (its filter)")
    f = dns_forcing(dns, Grid(dns["n"], dns["length"]))
    f_bar = (None if f is None else
             filtered_state(f, n, coarse["filter"], filter_width(coarse, dns["length"]),
                            dns["length"]))
    return solver_for(dns, n, threads=threads, backend=backend, device=device, forcing=f_bar)


class FilteredNoise:
    """The filtered DNS's noise realisation on the coarse grid, one step per call.

    Re-draws the DNS's own noise (trajectory_streams(dns.seed, id), one box per step from t = 0,
    as stages/dns.py does), skips the steps before `start_time`, and returns, per call, the
    filtered and truncated rfft2 of eta on coarse.n (in the coarse grid's unnormalised layout,
    so the coarse solver scales it by sigma*sqrt(dt) exactly as the DNS did), each state
    repeated `members` times. None from :func:`filtered_noise` when the DNS has no noise.
    """

    def __init__(self, dns: dict, coarse: dict, ids, start_time: float, members: int = 1):
        fine = Grid(dns["n"], dns["length"])
        nz = dns["noise"]
        self.sampler = NoiseSampler(fine, NoiseSpec(nz["sigma"], nz["alpha"], nz["kappa"]))
        self.rngs = [trajectory_streams(dns["seed"], j)[1] for j in ids]
        self.transfer = transfer_function(coarse["filter"], filter_width(coarse, dns["length"]),
                                          fine)
        self.n, self.m, self.members = fine.n, coarse["n"], int(members)
        skip = whole_steps(start_time, dns["dt"], "rollout start time", minimum=0,
                           error=ConfigError)
        for _ in range(skip):  # a Generator cannot jump: replay the DNS's draws
            self.sampler.sample_box(self.rngs)
        self._fine = None

    def __call__(self, step: int) -> np.ndarray:
        self._fine = self.sampler.sample(self.rngs, out=self._fine)
        hat = truncate_hat(self._fine * self.transfer, self.n, self.m)
        return np.repeat(hat, self.members, axis=0)


def filtered_noise(dns: dict, coarse: dict, ids, start_time: float, members: int = 1):
    """:class:`FilteredNoise` for the sgs known physics, or None without DNS noise."""
    if not dns["noise"]["sigma"] > 0:
        return None
    return FilteredNoise(dns, coarse, ids, start_time, members)


# ----------------------------------------------------------------------------- DNS input
@dataclass
class DnsStates:
    """Fine vorticity of the chosen test trajectories, all records (S, T, N, N) float64."""

    ids: list[int]
    vorticity: np.ndarray
    times: np.ndarray
    length: float


def test_ids(stats: dict, count: int, path: str | Path = "stats.json") -> list[int]:
    """The first `count` test trajectory ids of the dataset split."""
    try:
        ids = [int(i) for i in stats["split"]["test"]]
    except (KeyError, TypeError):
        raise DataFileError(f"{path}: lacks split.test. {remake_hint(path)}") from None
    if len(ids) < count:
        raise ConfigError(
            f"rollout.initial_states: {count} requested but the dataset holds only {len(ids)} "
            f"test trajectories ({path}); lower rollout.initial_states or raise "
            "dataset.test_trajectories"
        )
    return ids[:count]


def start_record(times, start: float, path="the DNS shards") -> int:
    """Index of the record at time `start`, or a named error."""
    times = np.asarray(times, dtype=float)
    tol = 1e-6 * max(1.0, abs(float(start)))
    hits = np.flatnonzero(np.abs(times - float(start)) <= tol)
    if hits.size == 0:
        raise ConfigError(
            f"rollout.start: {start:g} is not a record time of {path} (records "
            f"{times[0]:g}..{times[-1]:g}); pick one of them, or rerun dns with a window that "
            "holds it"
        )
    return int(hits[0])


def read_dns(paths, ids: list[int], start: float, records: int | None = None) -> DnsStates:
    """Fine vorticity of trajectories `ids` from the DNS shards: `records` records (None: all
    that follow) from the record at time `start`."""
    where: dict[int, tuple[Path, int]] = {}
    times, length = None, None
    for path in paths:
        with h5io.open_input(path, required=("vorticity", "trajectory", "time")) as fh:
            for row, tid in enumerate(fh["trajectory"][()]):
                where[int(tid)] = (Path(path), row)
            t = fh["time"][()]
            if times is None:
                times = t
                length = float(h5io.read_attrs(fh).get("dns.length", 1.0))
            elif t.shape != times.shape or not np.allclose(t, times):
                raise DataFileError(f"{path}: record times differ from {paths[0]}; all shards "
                                    "must come from one dns configuration")
    missing = [i for i in ids if i not in where]
    if missing:
        raise DataFileError(
            f"test trajectories {missing} are in none of the DNS shards {[str(p) for p in paths]};"
            " pass every dns/shard-*.h5 of the run (--dns)"
        )
    first = start_record(times, start, paths[0])
    sel = slice(first, None if records is None else first + records)
    fields = []
    for tid in ids:
        path, row = where[tid]
        with h5io.open_input(path) as fh:
            fields.append(fh["vorticity"][row, sel].astype(np.float64))
    return DnsStates(list(ids), np.stack(fields), np.asarray(times[sel], dtype=float), length)


def coarse_initial(w_fine, coarse: dict, length: float) -> np.ndarray:
    """Fine vorticity (..., N, N) -> coarse state (..., n, n) by the target's coarse-graining."""
    m, delta = coarse["n"], filter_width(coarse, length)
    if coarse["target"] == "sgs":
        return filtered_state(w_fine, m, coarse["filter"], delta, length)
    return coarsen(w_fine, m, coarse["method"], length, coarse["filter"], delta)


def filtered_reference(w_fine, coarse: dict, length: float) -> tuple[np.ndarray, np.ndarray]:
    """(w_bar, Pi) on coarse.n from fine records (S, T, N, N): the sgs reference and oracle."""
    return subgrid_term(w_fine, coarse["n"], coarse["filter"], filter_width(coarse, length),
                        length)


# ----------------------------------------------------------------------------- reference run
@dataclass
class Reference:
    """A reference trajectory: records (S, T, n, n) and, at chosen steps, its true term."""

    records: np.ndarray
    terms: dict  # step -> true closure term (S, n, n) float64 (only the steps asked for)


def run_reference(solver: Solver, w0: np.ndarray, steps: int, record_stride: int,
                  rngs, target: str, term_steps=(), progress=None) -> Reference:
    """Advance the full-physics coarse solver `steps` steps from w0 (S, n, n).

    `target` names the solver term kept (G, H, or G_paper: closures.term_name).

    Records every `record_stride` steps (step 0 included). For every step in `term_steps` the
    reference's own `target` term (G or H) of the step that STARTS there is kept: it is what the
    diffusion closure's sparse measurements observe at that time (the DNS records pair a state
    with the term of the step leaving it, and so does the training data).
    """
    term_steps = set(term_steps)
    state = solver.from_physical(w0)
    records = [solver.physical(state)]
    terms = {}
    for k in range(steps):
        eta = solver.sample_noise(rngs)
        if k in term_steps:
            state, contrib = solver.step(state, eta, t=k * solver.dt, out=state,
                                         terms=(target,))
            terms[k] = solver.backend.to_numpy(contrib[target])  # a fresh array
        else:
            state = solver.step(state, eta, t=k * solver.dt, out=state)
        if (k + 1) % record_stride == 0:
            records.append(solver.physical(state))
        if progress is not None:
            progress.update()
    return Reference(np.stack(records, axis=1), terms)
