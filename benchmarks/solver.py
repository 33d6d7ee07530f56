"""Cost of the solver: one right-hand-side evaluation against its FFT floor, and one full step.

RHS table: for n in 128, 256, 512 and each backend, the time of one evaluation of the advection
term exactly as a step does it (spectral multipliers for u, v, dw/dx, dw/dy, four inverse real
FFTs, the product, one forward real FFT, 2/3-rule masking), batch 1, float64, one thread, warm,
median of repeats; next to the "FFT floor": the same backend's planned transforms alone (4
inverse + 1 forward, the transforms one evaluation needs), and their ratio. Then the speed-up
of pyfftw over numpy, and fluidsim's ns2d `tendencies_nonlin` with its pyfftw backend if
fluidsim is installed.

Step table: one full in-place step (``solver.step(state, eta, out=state)``, the DNS stage's hot
path) of the paper's physics with noise and forcing, per scheme (euler_cn, heun_cn), backend
(pyfftw, numpy), n (128, 256) and batch (1, 4): median ms per step and per trajectory-step.

    python benchmarks/solver.py [--sizes 128 256 512] [--step-sizes 128 256] [--repeats 50]
    python benchmarks/solver.py --against OLD_CHECKOUT [--rounds 3]

``--against`` times the step table with the code of another checkout of the repository (e.g.
``git worktree add /tmp/old <commit>``) and with this one, alternately, ``--rounds`` times each
in fresh processes, and prints the minimum of each side, new/old per step and their geometric
mean: a change to the solver is held to "no slower" in one run on one machine.

Targets at 256^2: pyfftw >= 1.5x faster than numpy, and within 1.5x of its FFT floor.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from diffclosure.solver.forcing import make_forcing  # noqa: E402
from diffclosure.solver.navier_stokes import Solver  # noqa: E402
from diffclosure.solver.noise import NoiseSpec  # noqa: E402


def _median_time(fn, repeats: int, before=None) -> float:
    for _ in range(3):  # warm up (plans, caches, first-touch of buffers)
        if before:
            before()
        fn()
    times = []
    for _ in range(repeats):
        if before:
            before()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def bench_backend(name: str, n: int, repeats: int) -> tuple[float, float]:
    """(rhs seconds, fft-floor seconds) for one backend at n^2."""
    solver = Solver(n, backend=name, threads=1, planner="FFTW_MEASURE")
    rng = np.random.default_rng(0)
    state = solver.from_physical(rng.standard_normal((1, n, n)))
    rhs = _median_time(lambda: solver.explicit_tendency(state), repeats)

    # The floor: the very plans the evaluation uses, on realistic (refilled) input.
    solver.explicit_tendency(state)
    inv, fwd = solver.workspace(1).scratch[0]  # the advection term's plans
    bk = solver.backend
    saved = bk.to_numpy(inv.input).copy() if not bk.is_torch else inv.input.clone()
    saved_fwd = bk.to_numpy(fwd.input).copy() if not bk.is_torch else fwd.input.clone()

    def refill():
        inv.input[...] = saved
        fwd.input[...] = saved_fwd

    def transforms():
        inv.execute()
        fwd.execute()

    floor = _median_time(transforms, repeats, before=refill)
    return rhs, floor


def bench_step(scheme: str, backend: str, n: int, batch: int, repeats: int) -> float:
    """Median seconds of one in-place step with noise and forcing."""
    from diffclosure.solver.grid import Grid

    solver = Solver(n, 1.0, 1e-3, 1e-4, forcing=make_forcing("paper", Grid(n)),
                    noise=NoiseSpec(5e-5, 0.005, 10.0), scheme=scheme, backend=backend,
                    threads=1, planner="FFTW_MEASURE")
    rngs = [np.random.default_rng([0, i]) for i in range(batch)]
    state = solver.from_physical(np.random.default_rng(1).standard_normal((batch, n, n)))
    eta = solver.sample_noise(rngs)
    return _median_time(lambda: solver.step(state, eta, out=state), repeats)


def step_times(sizes, repeats: int) -> dict[str, float]:
    """{"scheme backend n batch": median seconds of one step} over the step table's cases."""
    return {f"{scheme} {backend} {n} {batch}": bench_step(scheme, backend, n, batch, repeats)
            for scheme in ("euler_cn", "heun_cn") for backend in ("pyfftw", "numpy")
            for n in sizes for batch in (1, 4)}


def step_table(sizes, repeats: int) -> None:
    print(f"one full step (in place, noise and forcing), 1 thread, median of {repeats}")
    header = (f"{'scheme':>9} {'backend':>8} {'n':>5} {'batch':>6} {'ms/step':>9} "
              f"{'ms/traj-step':>13}")
    print(header)
    print("-" * len(header))
    for case, t in step_times(sizes, repeats).items():
        scheme, backend, n, batch = case.split()
        print(f"{scheme:>9} {backend:>8} {n:>5} {batch:>6} {t * 1e3:>9.3f} "
              f"{t * 1e3 / int(batch):>13.3f}")


def _times_of(workflow: Path, sizes, repeats: int) -> dict[str, float]:
    """The step table timed in a fresh process importing the package from `workflow`."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "times.json"
        env = {**os.environ, "PYTHONPATH": str(workflow)}
        subprocess.run([sys.executable, __file__, "--step-json", str(out), "--repeats",
                        str(repeats), "--step-sizes", *map(str, sizes)], env=env, check=True)
        return json.loads(out.read_text())


def compare(checkout: Path, sizes, repeats: int, rounds: int) -> None:
    """The step table of `checkout`'s code against this code (module docstring)."""
    old_code = Path(checkout).resolve() / "workflow"
    if not (old_code / "diffclosure").is_dir():
        raise SystemExit(f"--against {checkout}: no workflow/diffclosure there; give a "
                         "checkout of this repository (git worktree add DIR COMMIT)")
    new_code = Path(__file__).resolve().parents[1] / "workflow"
    best: dict[str, dict[str, float]] = {"old": {}, "new": {}}
    for _ in range(rounds):
        for side, code in (("old", old_code), ("new", new_code)):
            for case, t in _times_of(code, sizes, repeats).items():
                best[side][case] = min(t, best[side].get(case, math.inf))
    print(f"one full step, old = {old_code.parent}, new = this checkout; minimum over "
          f"{rounds} alternating runs of the median of {repeats} steps")
    print(f"{'case':<28} {'old ms':>9} {'new ms':>9} {'new/old':>8}")
    ratios = []
    for case, old in best["old"].items():
        new = best["new"][case]
        ratios.append(new / old)
        print(f"{case:<28} {old * 1e3:>9.3f} {new * 1e3:>9.3f} {new / old:>8.2f}")
    gmean = math.exp(sum(map(math.log, ratios)) / len(ratios))
    print(f"geometric mean of new/old: {gmean:.2f}")


def bench_fluidsim(n: int, repeats: int) -> float | None:
    try:
        import fluidsim  # noqa: F401
    except ImportError:
        return None
    tmp = tempfile.mkdtemp(prefix="fluidsim-bench-")
    os.environ.setdefault("FLUIDSIM_PATH", tmp)
    os.environ.setdefault("FLUIDDYN_PATH_SCRATCH", tmp)
    from fluidsim.solvers.ns2d.solver import Simul

    params = Simul.create_default_params()
    params.oper.nx = params.oper.ny = n
    params.oper.type_fft = "fft2d.with_pyfftw"
    params.oper.coef_dealiasing = 2.0 / 3.0
    params.output.HAS_TO_SAVE = False
    params.output.ONLINE_PLOT_OK = False
    params.short_name_type_run = "bench"
    params.init_fields.type = "noise"
    with contextlib.redirect_stdout(io.StringIO()):
        sim = Simul(params)
    state = sim.state.state_spect
    return _median_time(lambda: sim.tendencies_nonlin(state), repeats)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--step-sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--against", type=Path, default=None,
                        help="another checkout: time its solver step against this one's")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of --against")
    parser.add_argument("--step-json", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step_json:  # one side of --against, in its own process
        args.step_json.write_text(json.dumps(step_times(args.step_sizes, args.repeats)))
        return 0
    if args.against:
        compare(args.against, args.step_sizes, args.repeats, args.rounds)
        return 0
    try:
        import torch

        torch.set_num_threads(1)
        backends = ["pyfftw", "numpy", "torch"]
    except ImportError:
        backends = ["pyfftw", "numpy"]

    print(f"one RHS evaluation (nonlinear term), batch 1, float64, 1 thread, "
          f"median of {args.repeats}")
    header = f"{'n':>5} {'backend':>9} {'rhs [ms]':>10} {'fft floor [ms]':>15} {'rhs/floor':>10}"
    print(header)
    print("-" * len(header))
    results = {}
    for n in args.sizes:
        for name in backends:
            rhs, floor = bench_backend(name, n, args.repeats)
            results[n, name] = rhs
            print(f"{n:>5} {name:>9} {rhs * 1e3:>10.3f} {floor * 1e3:>15.3f} {rhs / floor:>10.2f}")
        fs = bench_fluidsim(n, args.repeats)
        if fs is None:
            print(f"{n:>5} {'fluidsim':>9} {'not installed':>10}")
        else:
            results[n, "fluidsim"] = fs
            print(f"{n:>5} {'fluidsim':>9} {fs * 1e3:>10.3f} {'':>15} {'':>10}"
                  "   (ns2d tendencies_nonlin, fft2d.with_pyfftw)")
    print()
    print(f"{'n':>5} {'pyfftw speed-up over numpy':>28}")
    for n in args.sizes:
        print(f"{n:>5} {results[n, 'numpy'] / results[n, 'pyfftw']:>28.2f}")
    print()
    step_table(args.step_sizes, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
