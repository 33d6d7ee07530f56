"""Where the closure pays off: wall time per simulated time unit of the DNS at 128^2 ... 1024^2
against the coupled coarse run with each closure, and the resolution at which each breaks even.

DNS: the dns section's full stochastic physics (the paper's: nu 1e-3, its forcing, sigma 5e-5,
euler_cn), one state, float64, timed by rollout.coupled.dns_cost (steps after two warm-up
steps, enough for 0.3 s, extrapolated to one time unit). Its time step is CFL-limited: dt_n is the
largest dt <= 1e-3 whose CFL number max(|u|, |v|) dt/dx on a realistic state is at most the
limit, by default the paper's own (dt = 1e-3 at 256^2 on that state; ``--cfl`` sets another).
So dt = 1e-3 up to 256^2 and halves with the grid spacing above. The realistic state is the
initial random field plus the steady viscous response to the forcing, f / (nu |k|^2 + drag),
made at 256^2 and interpolated: the flow relaxes to that response, whose velocity dominates the
statistically steady flow (max |u| 0.19 here; a 64^2 spin-up reaches 0.18 at t = 25).

Coupled: the coarse known-physics solver of ``--target`` at ``--coarse``^2, dt = 1e-3, advanced
through rollout.coupled.run_coupled (the rollout stage's loop) with each closure:

- ``none`` and ``smagorinsky`` (deterministic: one member);
- ``held``: a learned term drawn once and held with fresh hold noise (the learned closure's
  floor: everything but the sampling);
- ``em10`` / ``dpm4`` / ``onestep``: the learned closure (rollout.closures.DiffusionClosure)
  with an untrained network of the paper's size (model.checkpoint.build_from_settings: cost, not
  accuracy), conditioned on the vorticity and encoded sparse measurements, sampled every R steps
  (R in ``--resample``, default 5 and 20) with the paper's 10-step Euler-Maruyama, the 4-step
  DPM-Solver++(2M) or the distill stage's one-step generator (1 network call), held with noise
  in between.

Stochastic closures run with 1 and ``--members`` members; as in the rollout stage, the coupled
run advances all members of one state, the DNS that one state. Break-even: the smallest DNS
resolution whose cost per time unit exceeds the coupled run's.

    python benchmarks/breakeven.py [--device cpu|cuda] [--threads 1] [--quick]
                                   [--resample 5 20] [--figure breakeven.png]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling benchmarks, also on import

import numpy as np  # noqa: E402
import torch  # noqa: E402
from rollout import closures as simple_closure  # noqa: E402
from training import PAPER  # noqa: E402

from diffclosure import config as cfgmod  # noqa: E402
from diffclosure.coarse.coarsen import resample  # noqa: E402
from diffclosure.model.checkpoint import build_from_settings  # noqa: E402
from diffclosure.rollout import closures as cl  # noqa: E402
from diffclosure.rollout import reference as ref  # noqa: E402
from diffclosure.rollout.coupled import dns_cost, run_coupled  # noqa: E402
from diffclosure.sampling.closure_sampler import ClosureSampler  # noqa: E402
from diffclosure.sampling.paper import PAPER_TARGET_RMS, paper_sampler  # noqa: E402
from diffclosure.sampling.samplers import make_sampler  # noqa: E402
from diffclosure.solver.forcing import make_forcing  # noqa: E402
from diffclosure.solver.grid import Grid, irfft2, rfft2, velocity  # noqa: E402
from diffclosure.solver.initial import gaussian_random_field  # noqa: E402

PAPER_DT, PAPER_N = 1e-3, 256
RESAMPLE_EVERY = 5  # the warm-up of every coupled timing: one sampling interval of the default
TINY_MODEL = {"width": 4, "modes": 3, "layers": 1, "embedding_features": 8,
              "embedding_scale": 4.0, "head": [8], "coords": False}
LEARNED = {"em10": "learned, EM 10 NFE", "dpm4": "learned, DPM++ 4 NFE",
           "onestep": "learned, one-step 1 NFE"}
LABELS = {"none": "no closure", "smagorinsky": "smagorinsky",
          "held": "held learned term (no sampling)", **LEARNED}
STOCHASTIC = ("held", *LEARNED)


@dataclass
class Settings:
    sizes: tuple = (128, 256, 512, 1024)
    coarse: int = 64
    target: str = "H"
    members: int = 4
    closures: tuple = ("none", "smagorinsky", "held", "em10", "dpm4", "onestep")
    resample: tuple = (5, 20)  # steps between samplings of the learned closures
    dns_steps: int = 5  # timed steps; quadrupled until a timing spans min_wall_s
    coupled_steps: int = 20  # likewise, after one sampling interval of warm-up
    min_wall_s: float = 0.3  # shorter timings are dominated by jitter
    repeats: int = 3
    cfl: float | None = None
    model: dict | None = None  # None: the paper's network
    threads: int = 1
    device: str = "cpu"


QUICK = {"sizes": (32, 64), "coarse": 16, "members": 2, "dns_steps": 2, "coupled_steps": 5,
         "min_wall_s": 0.0, "repeats": 1, "model": TINY_MODEL}


def dns_section(s: Settings, n: int) -> dict:
    """The default dns section (the paper's physics) on an n-grid, backend of the device."""
    backend = "torch" if s.device.startswith("cuda") else "pyfftw"
    return cfgmod.load({"dns": {"n": n, "backend": backend, "threads": s.threads}},
                       sections=["dns"])["dns"]


def coupled_sections(s: Settings) -> dict:
    """The sections the coupled run reads, its grid standing in for the DNS grid."""
    return cfgmod.load({"dns": dns_section(s, s.coarse),
                        "coarse": {"n": s.coarse, "target": s.target,
                                   "test_resolutions": [s.coarse]},
                        "measurements": {"lattice": max(2, s.coarse // 4)},
                        "sde": {}, "rollout": {}},
                       sections=["dns", "coarse", "measurements", "sde", "rollout"])


def median_cost(measure, steps: int, dt: float, s: Settings, repeats: int | None = None):
    """Median of measure(steps) (seconds per time unit) over repeats, steps first quadrupled
    until one timing spans s.min_wall_s."""
    cost = measure(steps)
    while cost * steps * dt < s.min_wall_s:
        steps *= 4
        cost = measure(steps)
    rest = [measure(steps) for _ in range((s.repeats if repeats is None else repeats) - 1)]
    return statistics.median([cost, *rest])


# ----------------------------------------------------------------------------- DNS
def realistic_state(dns: dict, n: int, seed: int = 0) -> np.ndarray:
    """(1, n, n): the initial random field plus the forcing's steady viscous response, made at
    the paper's 256^2 and interpolated, so that every resolution sees the same flow."""
    if n != PAPER_N:
        return resample(realistic_state(dns, PAPER_N, seed), n)
    grid = Grid(n, dns["length"])
    init = dns["initial"]
    w = gaussian_random_field(grid, [np.random.default_rng(seed)], init["alpha"], init["tau"])
    f = dns["forcing"]
    force = make_forcing(f["kind"], grid, f["amplitude"], f["wavenumber"])
    if force is not None:
        damping = dns["nu"] * grid.k2 + dns["drag"]
        damping[0, 0] = 1.0  # the forcing has no mean
        w = w + irfft2(rfft2(force) / damping, n)
    return w


def cfl_number(dns: dict, w: np.ndarray, dt: float) -> float:
    n = w.shape[-1]
    u, v = velocity(Grid(n, dns["length"]), w)
    return float(max(np.abs(u).max(), np.abs(v).max()) * dt * n / dns["length"])


def time_step(dns: dict, w: np.ndarray, limit: float) -> float:
    """Largest dt <= the paper's with a CFL number of at most `limit` on the state w."""
    return min(PAPER_DT, PAPER_DT * limit / cfl_number(dns, w, PAPER_DT))


def dns_rows(s: Settings) -> list[dict]:
    """Per DNS resolution: dt, CFL, ms per step, s per simulated time unit."""
    dns = dns_section(s, PAPER_N)
    limit = s.cfl or cfl_number(dns, realistic_state(dns, PAPER_N), PAPER_DT)
    rows = []
    for n in s.sizes:
        w = realistic_state(dns, n)
        dt = time_step(dns, w, limit)
        cfg = {**dns_section(s, n), "dt": dt}
        cost = median_cost(lambda k, cfg=cfg, w=w: dns_cost(
            cfg, w, steps=k, threads=s.threads, device=s.device), s.dns_steps, dt, s)
        rows.append({"n": n, "dt": dt, "cfl": cfl_number(dns, w, dt), "s_per_time": cost,
                     "ms_per_step": 1e3 * cost * dt})
    return rows


# ----------------------------------------------------------------------------- coupled
def learned_sampler(s: Settings, sde: dict) -> ClosureSampler:
    """An untrained score network of the paper's size (or s.model) behind the rollout's
    sampler."""
    rms = PAPER_TARGET_RMS.get(s.target, 1.0)
    settings = {"model": s.model or PAPER, "sde": sde,
                "conditions": ["vorticity", "measurements"],
                "stats": {"target": {"mean": 0.0, "std": rms},
                          "vorticity": {"mean": 0.0, "std": 1.0}}}
    torch.manual_seed(0)
    net = build_from_settings(settings).to(s.device).eval()
    return ClosureSampler(net, settings, s.device)


def as_onestep(score: ClosureSampler) -> ClosureSampler:
    """The same network as the distill stage's one-step generator (settings["onestep"]): a
    student has the teacher's architecture, so its cost is the score network's for one call."""
    meta = {"t_max": 0.1, "start": "measurements"}
    return ClosureSampler(score.net, {**score.settings, "onestep": meta}, score.device)


def make_closure(name: str, s: Settings, cfg: dict, w0: np.ndarray, members: int, obj,
                 resample: int = RESAMPLE_EVERY):
    dns, coarse = cfg["dns"], cfg["coarse"]
    if name == "none":
        return cl.NoClosure()
    if name == "smagorinsky":
        return cl.ClassicalClosure(name, s.target, coarse, dns["nu"], dns["length"], s.coarse)
    if name == "held":
        return simple_closure("held+noise", dns, coarse, s.coarse, members)
    rms = PAPER_TARGET_RMS.get(s.target, 1.0)
    spec = {"em10": paper_sampler(),
            "dpm4": {"name": "dpm2m", "steps": 4, "schedule": "karras", "t_max": 0.1},
            "onestep": {"name": "onestep"}}[name]
    # The measured term stands in for the reference's: its encoding is paid, its source is not
    # (the rollout stage excludes the reference run from the coupled cost too).
    term = rms * w0 / w0.std()
    rng = np.random.default_rng(0)
    meas = cl.Measurements(lambda step: term, cfg["measurements"], s.coarse, rms, rng)
    return cl.DiffusionClosure(
        obj[name], make_sampler(spec, where=name), states=1, members=members,
        resample_every=resample, hold="reuse_noise",
        hold_std=cfg["rollout"]["hold_noise"] * rms, measurements=meas,
        generator=torch.Generator(device=s.device).manual_seed(0), rng=rng)


def coupled_cost(name: str, s: Settings, cfg: dict, w0: np.ndarray, members: int, obj,
                 resample: int = RESAMPLE_EVERY) -> float:
    """Warm seconds per simulated time unit of the coupled run (median_cost; one run for the
    learned closure: its timed samplings dominate, and each run costs seconds)."""

    def measure(timed: int) -> float:
        solver = ref.known_solver(cfg["dns"], s.coarse, s.target, threads=s.threads,
                                  device=s.device)
        clo = make_closure(name, s, cfg, w0, members, obj, resample)
        # At least two samplings are timed, whatever the interval.
        steps = RESAMPLE_EVERY + max(timed, 2 * resample)
        res = run_coupled(solver, w0, clo, steps, steps, members=members,
                          warmup=RESAMPLE_EVERY)
        if res.blowup_time is not None:
            raise RuntimeError(f"closure {name} blew up in the benchmark: {res.blowup_reason}")
        return res.wall_per_time

    return median_cost(measure, s.coupled_steps, cfg["dns"]["dt"], s,
                       1 if name in LEARNED else None)


def closure_rows(s: Settings, dns: list[dict]) -> list[dict]:
    cfg = coupled_sections(s)
    w0 = realistic_state(cfg["dns"], s.coarse)
    obj = {}
    if set(LEARNED) & set(s.closures):
        score = learned_sampler(s, cfg["sde"])
        obj = {"em10": score, "dpm4": score, "onestep": as_onestep(score)}
    costs = {r["n"]: r["s_per_time"] for r in dns}
    rows = []
    for name in s.closures:
        for every in s.resample if name in LEARNED else (None,):
            for m in (1, s.members) if name in STOCHASTIC else (1,):
                cost = coupled_cost(name, s, cfg, w0, m, obj, every or RESAMPLE_EVERY)
                rows.append({"closure": name, "members": m, "resample": every,
                             "s_per_time": cost, "ms_per_step": 1e3 * cost * cfg["dns"]["dt"],
                             "break_even": break_even(costs, cost)})
    return rows


def break_even(dns_costs: dict[int, float], coupled: float) -> int | None:
    """Smallest DNS resolution costing more per time unit than the coupled run (None: none)."""
    dearer = [n for n, cost in dns_costs.items() if cost > coupled]
    return min(dearer) if dearer else None


# ----------------------------------------------------------------------------- output
def format_table(s: Settings, dns: list[dict], rows: list[dict]) -> str:
    lines = [f"DNS, full physics, 1 state, float64, device {s.device}, {s.threads} thread(s); "
             f"dt CFL-limited (docstring), >= {s.min_wall_s:g} s timed",
             f"{'n':>6} {'dt':>9} {'CFL':>6} {'ms/step':>9} {'s/time unit':>12}"]
    lines += [f"{r['n']:>4}^2 {r['dt']:>9.3g} {r['cfl']:>6.3f} {r['ms_per_step']:>9.3f} "
              f"{r['s_per_time']:>12.4g}" for r in dns]
    largest = max(r["n"] for r in dns)
    lines += ["", f"coupled {s.coarse}^2, target {s.target}, dt {PAPER_DT:g}, "
              f">= {s.coupled_steps} steps timed; break-even = smallest DNS n costing more",
              f"{'closure':<36} {'members':>7} {'ms/step':>9} {'s/time unit':>12} "
              f"{'break-even':>11}"]
    for r in rows:
        be = f"{r['break_even']}^2" if r["break_even"] else f"> {largest}^2"
        lines.append(f"{label(r):<36} {r['members']:>7} {r['ms_per_step']:>9.3f} "
                     f"{r['s_per_time']:>12.4g} {be:>11}")
    return "\n".join(lines)


def label(row: dict) -> str:
    every = row.get("resample")
    return LABELS[row["closure"]] + (f" / {every} steps" if every else "")


def plot(s: Settings, dns: list[dict], rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5))
    ns = [r["n"] for r in dns]
    ax.loglog(ns, [r["s_per_time"] for r in dns], "ko-", lw=2, label="DNS")
    names = list(dict.fromkeys(label(r) for r in rows))
    # One colour per closure and interval (tab20 holds 20 distinct ones), members by line style.
    colours = plt.get_cmap("tab20")(np.arange(len(names)) % 20)
    for i, name in enumerate(names):
        for r in (r for r in rows if label(r) == name):
            ax.axhline(r["s_per_time"], color=colours[i],
                       ls="-" if r["members"] == 1 else "--",
                       label=f"{name}, {r['members']} member(s)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns, [f"{n}$^2$" for n in ns])
    ax.set_xlabel("DNS resolution")
    ax.set_ylabel("wall s per simulated time unit")
    ax.set_title(f"coupled {s.coarse}$^2$ runs against the DNS ({s.device})")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(s: Settings) -> tuple[list[dict], list[dict]]:
    torch.set_num_threads(s.threads)
    dns = dns_rows(s)
    return dns, closure_rows(s, dns)


def settings_from(args) -> Settings:
    s = Settings(**(QUICK if args.quick else {}))
    s.device, s.threads, s.cfl, s.target = args.device, args.threads, args.cfl, args.target
    s.members = args.members or s.members
    s.coarse = args.coarse or s.coarse
    s.resample = tuple(args.resample) if args.resample else s.resample
    return s


def check(args, parser) -> None:
    """Every flag checked before any work starts."""
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch sees no CUDA device (CPU-only build, no "
                     "driver or CUDA_VISIBLE_DEVICES empty); use --device cpu")
    if args.threads < 1:
        parser.error(f"--threads: must be >= 1, got {args.threads}")
    if args.coarse is not None and (args.coarse < 8 or args.coarse % 2):
        parser.error(f"--coarse: an even grid size >= 8, got {args.coarse}")
    if args.members is not None and args.members < 1:
        parser.error(f"--members: must be >= 1, got {args.members}")
    if args.resample and min(args.resample) < 1:
        parser.error(f"--resample: steps between samplings must be >= 1, got {args.resample}")
    if args.cfl is not None and not args.cfl > 0:
        parser.error(f"--cfl: must be > 0, got {args.cfl}")
    if args.figure and not Path(args.figure).resolve().parent.is_dir():
        parser.error(f"--figure: folder {Path(args.figure).parent} does not exist; create it")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    p.add_argument("--threads", type=int, default=1, help="FFT and torch CPU threads")
    p.add_argument("--coarse", type=int, default=None, help="coarse grid of the coupled run "
                   "(default 64, the paper's)")
    p.add_argument("--target", choices=["G", "H"], default="H", help="closure target (default H)")
    p.add_argument("--members", type=int, default=None, help="ensemble size M (default 4)")
    p.add_argument("--cfl", type=float, default=None,
                   help="CFL limit of the DNS time step (default: the paper's at 256^2)")
    p.add_argument("--resample", type=int, nargs="+", default=None,
                   help="steps between samplings of the learned closures (default 5 20)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    p.add_argument("--figure", default=None, help="write the figure to this PNG")
    args = p.parse_args(argv)
    check(args, p)
    s = settings_from(args)
    tic = time.perf_counter()
    dns, rows = run(s)
    print(format_table(s, dns, rows))
    print(f"\n({time.perf_counter() - tic:.0f} s, torch {torch.__version__})")
    if args.figure:
        plot(s, dns, rows, args.figure)
        print(f"figure: {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
