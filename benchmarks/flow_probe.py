"""Probe a config's DNS physics before a long run: energy, enstrophy and CFL number against time,
and the time of a blow-up if there is one. Prints a table; asserts nothing.

    python benchmarks/flow_probe.py                  # config.yaml's physics to t = 60 at 64^2
    python benchmarks/flow_probe.py --config workflow/presets/les-turbulence.yaml \\
        --n 256 --dt 1e-3 --ids 8,9,10,11 --until 6 --every 0.1

The config is merged on top of config.yaml as Snakemake would; --n and --dt override dns.n and
dns.dt. Trajectory j starts from the DNS stage's own initial field and noise stream for j, so a
probe sees the trajectories that the DNS stage would simulate.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

from diffclosure import config as cfgmod  # noqa: E402
from diffclosure.solver.factory import solver_for  # noqa: E402
from diffclosure.solver.initial import gaussian_random_field, trajectory_streams  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=None, help="config merged on top of config.yaml")
    ap.add_argument("--n", type=int, default=64, help="grid (default 64: a cheap probe)")
    ap.add_argument("--dt", type=float, default=None, help="time step (default: dns.dt)")
    ap.add_argument("--ids", default="0,1,2,3,4,5,6,7", help="trajectory ids, comma-separated")
    ap.add_argument("--until", type=float, default=60.0, help="simulated time")
    ap.add_argument("--every", type=float, default=1.0, help="time between table rows")
    args = ap.parse_args()

    cfg, _ = cfgmod.read_run_config([args.config] if args.config else [], cwd=ROOT)
    dns = dict(cfgmod.load(cfg, sections=["dns"])["dns"], n=args.n)
    dns["dt"] = args.dt or dns["dt"]
    solver = solver_for(dns, threads=1)
    ids = [int(i) for i in args.ids.split(",")]
    streams = [trajectory_streams(dns["seed"], j) for j in ids]
    init = dns["initial"]
    state = solver.from_physical(
        gaussian_random_field(solver.grid, [s[0] for s in streams], init["alpha"], init["tau"]))
    rngs = [s[1] for s in streams]
    dt = dns["dt"]
    steps, every = round(args.until / dt), max(1, round(args.every / dt))
    print(f"n={args.n} dt={dt:g} trajectories {ids}; means over trajectories")
    print(f"{'t':>8} {'energy':>12} {'enstrophy':>12} {'CFL':>8}")
    start = time.perf_counter()
    for s in range(steps + 1):
        cfl = solver.cfl(state)
        if not math.isfinite(cfl) or cfl > 1.0:
            print(f"BLOW-UP at t = {s * dt:.4g} (step {s}): CFL {cfl:.3g}")
            return 1
        if s % every == 0:
            print(f"{s * dt:8.3f} {np.mean(solver.energy(state)):12.5e} "
                  f"{np.mean(solver.enstrophy(state)):12.5e} {cfl:8.3f}")
        if s < steps:
            state = solver.step(state, solver.sample_noise(rngs), t=s * dt, out=state)
    print(f"{steps} steps in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
