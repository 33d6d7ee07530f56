"""Cost of one step of the coupled coarse rollout, per closure, in ms/step (1 thread, warm).

For n in 32 and 64 (``--sizes``), batch ``--batch`` (states), target G, the coarse
known-physics solver (dns defaults of config.yaml with the given ``--backend``) coupled through
``rollout.coupled.run_coupled`` with:

- ``none``: no closure (the solver's floor);
- ``held``: a closure returning one fixed array every step and declaring that it ignores the
  state (``needs_state``), as a held diffusion sample does (sampling excluded);
- ``held-plain``: the same without the hint (the loop builds the physical state each step);
- ``held+noise``: the diffusion closure held with rule ``reuse_noise`` (a stand-in sampler
  drawn once, then the held sample plus fresh white noise each step);
- ``oracle``: the reference's own G recomputed each step (OracleGH: a full-physics step);
- ``smagorinsky``: the classical closure (eddy viscosity + nu lap w).

    python benchmarks/rollout.py [--sizes 32 64] [--batch 20] [--steps 300] [--backend pyfftw]

Times are wall seconds of the timed steps of run_coupled (warm-up excluded) / steps, median of
``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import os
import statistics

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from diffclosure import config as cfgmod  # noqa: E402
from diffclosure.rollout import closures as cl  # noqa: E402
from diffclosure.rollout import reference as ref  # noqa: E402
from diffclosure.rollout.coupled import run_coupled  # noqa: E402
from diffclosure.solver.grid import Grid  # noqa: E402
from diffclosure.solver.initial import gaussian_random_field  # noqa: E402


class Held:
    """Returns the same fixed array every step (ignoring the state, and saying so)."""

    name = "held"

    def __init__(self, value):
        self.value = value

    def needs_state(self, step):
        return False

    def tendency(self, w, step, t):
        return self.value


class HeldPlain:
    """The same, as a plain closure without the needs_state hint (the state is built)."""

    name = "held-plain"

    def __init__(self, value):
        self.value = value

    def tendency(self, w, step, t):
        return self.value


class _Sampler:
    """Stand-in for the model: one random field per trajectory, drawn once."""

    conditions = ["vorticity"]

    def sample(self, sampler, vorticity, measurements=None, smagorinsky=None, *, ensemble=1,
               generator=None):
        rng = np.random.default_rng(0)
        return 1e-3 * rng.standard_normal((vorticity.shape[0], ensemble, *vorticity.shape[1:]))


def closures(name: str, dns: dict, coarse: dict, n: int, batch: int, device="cpu"):
    if name == "none":
        return cl.NoClosure()
    if name == "held":
        return Held(np.zeros((batch, n, n)))
    if name == "held-plain":
        return HeldPlain(np.zeros((batch, n, n)))
    if name == "held+noise":
        return cl.DiffusionClosure(_Sampler(), None, states=batch, members=1,
                                   resample_every=10**9, hold="reuse_noise", hold_std=1e-4,
                                   measurements=None, rng=np.random.default_rng(1))
    if name == "oracle":
        return cl.OracleGH(ref.full_solver(dns, n, device=device), ref.noise_generators(0, batch),
                           "G")
    return cl.ClassicalClosure(name, "G", coarse, dns["nu"], dns["length"], n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backend", default="pyfftw", choices=["pyfftw", "numpy", "torch"])
    ap.add_argument("--device", default="cpu",
                    help="device of the torch backend (cpu, cuda, auto; default cpu)")
    ap.add_argument("--closures", nargs="+",
                    default=["none", "held", "held-plain", "held+noise", "oracle",
                             "smagorinsky"])
    args = ap.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass

    print(f"coupled rollout, target G, batch {args.batch}, {args.steps} steps, "
          f"backend {args.backend}" + (f" on {args.device}" if args.backend == "torch" else "")
          + f", 1 thread; ms/step (median of {args.repeats})")
    print(f"{'closure':<14}" + "".join(f"{f'{n}^2':>10}" for n in args.sizes))
    rows = {}
    for n in args.sizes:
        cfg = cfgmod.load({"dns": {"n": 2 * n, "backend": args.backend, "threads": 1},
                           "coarse": {"n": n, "test_resolutions": [n], "target": "G"}},
                          sections=["dns", "coarse"])
        dns, coarse = cfg["dns"], cfg["coarse"]
        rngs = [np.random.default_rng([3, i]) for i in range(args.batch)]
        w0 = gaussian_random_field(Grid(n, dns["length"]), rngs)
        for name in args.closures:
            times = []
            for _ in range(args.repeats):
                solver = ref.known_solver(dns, n, "G", device=args.device)
                closure = closures(name, dns, coarse, n, args.batch, args.device)
                res = run_coupled(solver, w0, closure, args.steps, args.steps, warmup=5)
                times.append(res.wall_per_time * solver.dt * 1e3)
            rows.setdefault(name, []).append(statistics.median(times))
    for name, vals in rows.items():
        print(f"{name:<14}" + "".join(f"{v:10.3f}" for v in vals))


if __name__ == "__main__":
    main()
