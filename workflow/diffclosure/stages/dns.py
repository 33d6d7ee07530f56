"""DNS stage: simulate one shard of trajectories on the fine grid and record w, G and H.

    python -m diffclosure dns --config CFG --shard I --output PATH [--threads T]

Uses only the config section "dns". Trajectories 0..trajectories-1 are split into `shards`
contiguous chunks (numpy.array_split); this job runs chunk I, `batch` trajectories at a time.
Each trajectory j draws its initial field and its noise from np.random.SeedSequence([seed, j])
spawned into (initial, noise) streams, so its bits do not depend on sharding or batching.

After `spinup`, records are taken at t_j = spinup + j*record_every, j = 0..round(duration /
record_every): the vorticity w(t_j) and, for the same instant, the closure terms G (viscous +
noise) and H (advection + noise) of the step that starts at t_j (with that step's noise).
Output (written atomically; a blow-up or any failure leaves no file): datasets vorticity, G, H
(trajectory, time, y, x) float32; coordinates trajectory (global ids), time, y, x; forcing (y, x);
attributes: the dns section flattened as dns.*, seed, shard, shards and provenance.
The spin-up is kept as a time series, to show the flow was statistically steady before the
first record (when spinup > 0): spinup_energy and spinup_enstrophy (trajectory, spinup_time)
float64, mean(|u|^2)/2 and mean(w^2)/2 every record_every from t = 0 up to the first record.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from diffclosure import config as configmod
from diffclosure.atomic import check_free_space
from diffclosure.data import h5io
from diffclosure.data.flow_stats import energy_enstrophy
from diffclosure.errors import UserFacingError
from diffclosure.progress import progress as progress_bar
from diffclosure.provenance import provenance
from diffclosure.solver.factory import solver_for
from diffclosure.solver.initial import gaussian_random_field, trajectory_streams
from diffclosure.solver.navier_stokes import Solver, whole_steps

log = logging.getLogger(__name__)

FIELD_DESCRIPTIONS = {
    "vorticity": "vorticity w at the record time t",
    "G": "viscous + noise contributions of the step from t: nu*lap((w(t) + w(t+dt))/2)"
         " (Crank-Nicolson) + increment/dt of the stochastic forcing",
    "H": "advection + noise contributions of the step from t: -(dealiased u.grad w)"
         " + increment/dt of the stochastic forcing",
}

SPINUP_SERIES = {
    "energy": "mean(|u|^2)/2 during the spin-up, every record_every",
    "enstrophy": "mean(w^2)/2 during the spin-up, every record_every",
}


def add_arguments(parser) -> None:
    parser.add_argument(
        "--shard", type=int, required=True, help="index of the shard to run (0-based)"
    )
    parser.add_argument("--output", required=True, help="HDF5 file to write")
    parser.add_argument(
        "--threads", type=int, default=None, help="FFT threads (default: dns.threads)"
    )


def shard_ids(dns: dict, shard: int) -> np.ndarray:
    """Global trajectory ids of one shard (contiguous chunks of numpy.array_split)."""
    if not 0 <= shard < dns["shards"]:
        raise UserFacingError(
            f"--shard {shard}: dns.shards={dns['shards']}, so the shard index must be in"
            f" 0..{dns['shards'] - 1}"
        )
    return np.array_split(np.arange(dns["trajectories"]), dns["shards"])[shard]


def build_solver(dns: dict, threads: int | None = None, device="auto") -> Solver:
    """The DNS solver of a (validated) dns section: solver_for's, with `threads` (default
    dns.threads) also set as torch's thread count on the torch backend."""
    threads = threads or dns["threads"]
    if dns["backend"] == "torch":
        import torch

        torch.set_num_threads(threads)
    return solver_for(dns, threads=threads, device=device)


def run_shard(dns: dict, shard: int, output, threads: int | None = None) -> None:
    """Simulate one shard and write its HDF5 file (atomically)."""
    ids = shard_ids(dns, shard)
    dt = dns["dt"]
    spin = whole_steps(dns["spinup"], dt, "dns.spinup", minimum=0, error=UserFacingError)
    every = whole_steps(dns["record_every"], dt, "dns.record_every", error=UserFacingError)
    n_rec = 1 + whole_steps(dns["duration"], dns["record_every"], "dns.duration",
                            "dns.record_every", error=UserFacingError)
    total = spin + (n_rec - 1) * every + 1  # the last record needs its own step for G and H
    times = dns["spinup"] + dns["record_every"] * np.arange(n_rec)
    # The fields' float32 bytes must fit before the (possibly hours of) compute starts.
    check_free_space(output, len(FIELD_DESCRIPTIONS) * len(ids) * n_rec * dns["n"] ** 2 * 4)

    try:  # config errors surface here, before any output
        solver = build_solver(dns, threads)
    except ValueError as exc:
        raise UserFacingError(str(exc)) from None
    grid = solver.grid
    n = grid.n
    log.info(
        "dns shard %d/%d: trajectories %s, n=%d, %d steps each (%d spin-up), %d records, "
        "backend %s, scheme %s",
        shard, dns["shards"], _ids_str(ids), n, total, spin, n_rec, dns["backend"], dns["scheme"],
    )
    progress = progress_bar(total=total * len(ids), desc=f"dns shard {shard}", unit="traj-step")
    dims = ("trajectory", "time", "y", "x")
    with h5io.atomic_h5(output) as fh:
        h5io.add_coordinate(fh, "trajectory", ids.astype(np.int64))
        h5io.add_coordinate(fh, "time", times, {"units": "simulation time"})
        h5io.add_coordinate(fh, "y", grid.x)
        h5io.add_coordinate(fh, "x", grid.x)
        forcing = solver.forcing if solver.forcing is not None else np.zeros((n, n))
        h5io.add_field(fh, "forcing", forcing, ("y", "x"),
                       {"description": "deterministic forcing f(x, y)"})
        spin_times = dt * np.arange(0, spin, every)
        if spin_times.size:
            h5io.add_coordinate(fh, "spinup_time", spin_times, {"units": "simulation time"})
        spin_series = {q: np.zeros((len(ids), spin_times.size)) for q in SPINUP_SERIES}
        shape = (len(ids), n_rec, n, n)
        fields = {}
        for name, text in FIELD_DESCRIPTIONS.items():
            fields[name] = h5io.create_field(fh, name, shape, dims)
            h5io.set_attrs(fields[name], {"description": text})
        h5io.set_attrs(fh, {"dns": dns, "seed": dns["seed"], "shard": shard,
                            "shards": dns["shards"], **provenance(dns, "dns")})

        for start in range(0, len(ids), dns["batch"]):
            batch = ids[start:start + dns["batch"]]
            _run_batch(solver, dns, batch, slice(start, start + len(batch)), fields,
                       spin_series, spin, every, n_rec, total, progress)
        if spin_times.size:
            for q, text in SPINUP_SERIES.items():
                h5io.add_field(fh, f"spinup_{q}", spin_series[q], ("trajectory", "spinup_time"),
                               {"description": text}, dtype=np.float64)
            energy = spin_series["energy"].mean(0)
            log.info("spin-up, mean energy over the shard at t = %s: %s",
                     " ".join(f"{t:g}" for t in spin_times[::max(1, spin_times.size // 8)]),
                     " ".join(f"{e:.4g}" for e in energy[::max(1, spin_times.size // 8)]))
    progress.close()


def _run_batch(solver, dns, batch, rows, fields, spin_series, spin, every, n_rec, total,
               progress):
    streams = [trajectory_streams(dns["seed"], j) for j in batch]
    init = dns["initial"]
    w0 = gaussian_random_field(solver.grid, [s[0] for s in streams], init["alpha"], init["tau"])
    noise_rngs = [s[1] for s in streams]
    state = solver.from_physical(w0)
    dt = solver.dt
    t_start = time.perf_counter()
    record = 0
    # A blowing-up state overflows before the guard sees it; the guard's error is the message.
    with np.errstate(over="ignore", invalid="ignore"):
        for s in range(total):
            t = s * dt
            eta = solver.sample_noise(noise_rngs)
            if s < spin and s % every == 0:
                energy, enstrophy = energy_enstrophy(solver.physical(state), dns["length"])
                spin_series["energy"][rows, s // every] = energy
                spin_series["enstrophy"][rows, s // every] = enstrophy
            if s >= spin and (s - spin) % every == 0:
                solver.check(state, t)
                w = solver.physical(state)
                state, terms = solver.step(state, eta, t=t, return_terms=True, out=None)
                fields["vorticity"][rows, record] = w.astype(np.float32)
                for name in ("G", "H"):
                    term = solver.backend.to_numpy(terms[name])
                    fields[name][rows, record] = term.astype(np.float32)
                record += 1
            else:
                state = solver.step(state, eta, t=t, out=state)
            progress.update(len(batch))
    assert record == n_rec
    elapsed = time.perf_counter() - t_start
    log.info(
        "trajectories %s done: %d steps in %.1f s (%.1f steps/s, %.1f trajectory-steps/s)",
        _ids_str(batch), total, elapsed, total / elapsed, total * len(batch) / elapsed,
    )


def _ids_str(ids) -> str:
    ids = list(map(int, ids))
    return f"{ids[0]}..{ids[-1]}" if len(ids) > 1 else str(ids[0])


def main(args) -> int:
    cfg = configmod.load(args.config, sections=["dns"])
    dns = cfg["dns"]
    if args.threads is not None and args.threads < 1:
        raise UserFacingError(f"--threads must be >= 1, got {args.threads}")
    run_shard(dns, args.shard, args.output, args.threads)
    log.info("wrote %s", args.output)
    return 0
