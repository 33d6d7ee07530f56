"""Accuracy against cost of the learned closure, one curve per lever, from one finished run.

Every point is one rollout of the `diffusion` closure through the rollout stage's own call path
(rollout.coupled.run_rollout, the run's score.pt or onestep.pt, its DNS shards and dataset),
with one setting of the run's rollout section changed:

- sampler: the configured sampler, DPM-Solver++(2M) with 4 and 2 steps and the distill stage's
  one-step generator, each at the configured resampling interval;
- resample: the one-step generator sampled every 1, 5, 10, 20 and 40 steps, held with fresh
  noise in between (hold reuse_noise), and every 10 steps held without noise (reuse);
- members: M = 1, 4 and 8 members of each state advanced as one batch (states x members);
- threads: 1 and 2 torch / FFT threads;
- compile: torch.compile of the one-step network;
- precision: bf16 autocast of the network (CUDA only: skipped on the CPU, where the FNO's
  FFTs have no bf16 kernels).

Accuracy: the a-posteriori D_Fro of every member at the horizon (the rollout's end), median
[min, max] over states x members: per member, as a stochastic closure is used. Cost: warm wall
seconds per simulated time unit of the coupled run (closure and coarse solver, all members),
and that per member. All points are measured in one run on one machine, so compare ratios.
Same seeds in every point: differences within one setting's [min, max] are sampling noise.
Settings that several curves share (the one-step generator at the configured interval, members
and threads) are run once and appear in each curve.

    python benchmarks/cost_accuracy.py --results results/default [--config PRESET.yaml ...]
        [--levers sampler resample members threads compile precision] [--quick]
        [--figure cost_accuracy.png]
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from diffclosure import config as cfgmod  # noqa: E402
from diffclosure.devices import resolve_device  # noqa: E402
from diffclosure.metrics.fields import d_fro  # noqa: E402
from diffclosure.rollout.coupled import run_rollout  # noqa: E402
from diffclosure.stages.rollout import (  # noqa: E402
    SECTIONS,
    resolve_calibration,
    rollout_sampler,
)

ROOT = Path(__file__).resolve().parents[1]

LEVERS = ("sampler", "resample", "members", "threads", "compile", "precision")
ONESTEP = {"name": "onestep"}


def points(lever: str, ro: dict) -> list[tuple[str, dict]]:
    """(label, rollout-section changes) of one lever's curve; {} is the run's own setting."""
    if lever == "sampler":
        return [(f"configured {ro['sampler']['name']}", {}),
                ("dpm2m 4", {"sampler": {"name": "dpm2m", "steps": 4, "schedule": "karras",
                                         "t_max": 0.1}}),
                ("dpm2m 2", {"sampler": {"name": "dpm2m", "steps": 2, "schedule": "karras",
                                         "t_max": 0.1}}),
                ("onestep", {"sampler": ONESTEP})]
    if lever == "resample":
        return [*[(f"every {r}", {"sampler": ONESTEP, "resample_every": r})
                  for r in (1, 5, 10, 20, 40)],
                ("every 10, no hold noise", {"sampler": ONESTEP, "resample_every": 10,
                                             "hold": "reuse"})]
    if lever == "members":
        return [(f"M = {m}", {"sampler": ONESTEP, "ensemble": m}) for m in (1, 4, 8)]
    if lever == "threads":
        return [(f"{t} thread(s)", {"sampler": ONESTEP, "threads": t}) for t in (1, 2)]
    if lever == "compile":
        return [("eager", {"sampler": ONESTEP}), ("torch.compile", {"sampler": ONESTEP,
                                                                   "compile": True})]
    if lever == "precision":
        return [("fp32", {"sampler": ONESTEP}), ("bf16 autocast", {"sampler": ONESTEP,
                                                                   "bf16": True})]
    raise ValueError(f"unknown lever {lever!r}; choose from {', '.join(LEVERS)}")


def resolve(cfg: dict, change: dict) -> tuple[dict, int, bool]:
    """The config with `change` applied, and the threads and compile flag it asks for."""
    cfg = copy.deepcopy(cfg)
    change = dict(change)
    threads = change.pop("threads", 1)
    compiled = change.pop("compile", False)
    cfg["rollout"].update(change)
    return cfg, threads, compiled


def run_point(cfg: dict, threads: int, compiled: bool, run: dict) -> dict:
    """One rollout of these settings; its accuracy and cost (module docstring)."""
    ro = cfg["rollout"]
    model = run["onestep"] if cfgmod.reads_onestep(ro["sampler"]) else run["score"]
    obj = rollout_sampler(cfg, model, run["data"], threads, compile=compiled)
    tau, inflation, _ = resolve_calibration(cfg, obj, run["data"], run["dns"])  # as the stage
    cfg = {**cfg, "rollout": {**ro, "tau": tau, "inflation": inflation}}
    tic = time.perf_counter()
    res = run_rollout(cfg, "diffusion", run["dns"], run["data"], obj, threads=threads,
                      show_progress=False)
    wall = time.perf_counter() - tic
    err = d_fro(res.vorticity[:, :, -1], res.reference[:, None, -1]).ravel()
    a = res.attrs
    members = int(a["members"])
    return {
        "members": members, "resample": int(ro["resample_every"]), "threads": threads,
        "sample_calls": int(a.get("sample_calls", 0)), "blowup": bool(a["blowup"]),
        "d_fro_median": float(np.median(err)), "d_fro_min": float(np.min(err)),
        "d_fro_max": float(np.max(err)), "horizon": float(res.time[-1]),
        "s_per_time": float(a["cost_coupled_s_per_time"]),
        "s_per_time_per_member": float(a["cost_coupled_s_per_time"]) / members,
        "dns_s_per_time": float(a["cost_dns_s_per_time"]), "wall_s": wall,
    }


def run_lever(lever: str, cfg: dict, run: dict, done: dict | None = None) -> list[dict]:
    """The rows of one lever's curve. `done` maps settings already run (by any lever) to their
    result: the curves share their base point, which is then run once."""
    done = {} if done is None else done
    cuda = resolve_device(cfg["device"]).type == "cuda"
    rows = []
    for label, change in points(lever, cfg["rollout"]):
        if change.get("bf16") and not cuda:
            rows.append({"lever": lever, "setting": label, "skipped": "CUDA only"})
            continue
        point_cfg, threads, compiled = resolve(cfg, change)
        key = json.dumps([point_cfg["rollout"], threads, compiled], sort_keys=True)
        try:
            if key not in done:
                done[key] = run_point(point_cfg, threads, compiled, run)
            rows.append({"lever": lever, "setting": label, **done[key]})
        except Exception as exc:  # a lever that cannot run here (e.g. no compiler) is a row
            if lever != "compile":
                raise
            rows.append({"lever": lever, "setting": label,
                         "skipped": f"{type(exc).__name__}: {str(exc).splitlines()[0][:60]}"})
        r = rows[-1]
        if "skipped" not in r:
            print(f"  {lever}, {label}: D_Fro {r['d_fro_median']:.4f}, {r['s_per_time']:.3g} s"
                  f" per time unit ({r['wall_s']:.0f} s)", flush=True)
    return rows


HEADER = (f"{'lever':<10} {'setting':<26} {'M':>2} {'R':>3} {'thr':>3} {'D_Fro median':>12} "
          f"{'[min, max]':>17} {'s/time':>8} {'s/time/M':>8} {'xDNS':>6}")


def format_row(r: dict, dns: float) -> str:
    """One table line; xDNS against `dns`, the fine DNS's cost (median over the points)."""
    if "skipped" in r:
        return f"{r['lever']:<10} {r['setting']:<26} skipped: {r['skipped']}"
    blow = " BLEW UP" if r["blowup"] else ""
    return (f"{r['lever']:<10} {r['setting']:<26} {r['members']:>2} {r['resample']:>3} "
            f"{r['threads']:>3} {r['d_fro_median']:>12.4f} "
            f"[{r['d_fro_min']:.4f}, {r['d_fro_max']:.4f}] {r['s_per_time']:>8.3g} "
            f"{r['s_per_time_per_member']:>8.3g} "
            f"{r['s_per_time_per_member'] / dns:>6.2f}{blow}")


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for lever in dict.fromkeys(r["lever"] for r in rows):
        pts = sorted((r for r in rows if r["lever"] == lever and "skipped" not in r),
                     key=lambda r: r["s_per_time_per_member"])
        if not pts:
            continue
        x = [r["s_per_time_per_member"] for r in pts]
        y = [r["d_fro_median"] for r in pts]
        ax.plot(x, y, "o-", label=lever)
        for i, (r, xi, yi) in enumerate(zip(pts, x, y, strict=True)):
            # Alternate above and below: the points of one lever often sit close together.
            ax.annotate(r["setting"], (xi, yi), fontsize=6, xytext=(3, 4 if i % 2 else -9),
                        textcoords="offset points")
    dns = [r["dns_s_per_time"] for r in rows if "dns_s_per_time" in r]
    if dns:
        ax.axvline(np.median(dns), color="k", ls=":", label="fine DNS (the same states)")
    ax.set_xscale("log")
    ax.set_xlabel("wall s per simulated time unit, per member")
    ax.set_ylabel("a-posteriori D_Fro per member at the horizon (median)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_files(results: Path) -> dict:
    """The finished run's files the rollouts need, each checked before any work."""
    files = {"score": results / "model" / "score.pt", "onestep": results / "model" / "onestep.pt",
             "data": results / "dataset", "dns": sorted((results / "dns").glob("shard-*.h5"))}
    missing = [str(p) for k, p in files.items() if k != "dns" and not Path(p).exists()]
    if not files["dns"]:
        missing.append(str(results / "dns" / "shard-*.h5"))
    if missing:
        raise SystemExit(f"--results {results}: missing {', '.join(missing)}; run the pipeline "
                         "(snakemake --cores all) with the distill stage enabled first")
    return files


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", required=True, help="a finished run's folder, results/<run>")
    p.add_argument("--config", nargs="+", default=[],
                   help="the config files of that run, merged over config.yaml in order as "
                        "snakemake's --configfile (default: config.yaml alone)")
    p.add_argument("--levers", nargs="+", default=list(LEVERS), choices=LEVERS)
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: a tenth of the rollout, one state")
    p.add_argument("--figure", default=None, help="write the figure to this PNG")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    run = run_files(Path(args.results))
    cfg, _ = cfgmod.read_run_config(args.config, cwd=ROOT)
    cfg = cfgmod.load(cfg, sections=SECTIONS)
    if args.quick:
        ro = cfg["rollout"]
        ro["duration"] = ro["record_every"] = max(cfg["dns"]["dt"] * 20, ro["duration"] / 10)
        ro["initial_states"] = 1
    tic = time.perf_counter()
    print(f"learned closure, target {cfg['coarse']['target']} at {cfg['coarse']['n']}^2, "
          f"{cfg['rollout']['initial_states']} states, rollout {cfg['rollout']['duration']:g} "
          f"time units; R = steps between samplings; xDNS = s/time/M over the fine DNS's "
          f"{cfg['dns']['n']}^2 cost per state")
    done = {}
    rows = [r for lever in args.levers for r in run_lever(lever, cfg, run, done)]
    dns = float(np.median([r["dns_s_per_time"] for r in rows if "dns_s_per_time" in r]))
    print(f"\nfine DNS {cfg['dns']['n']}^2, the same states: {dns:.3g} s per time unit (median"
          " over the points)")
    print(HEADER)
    print("\n".join(format_row(r, dns) for r in rows))
    print(f"\n({time.perf_counter() - tic:.0f} s, torch {torch.__version__})")
    if args.figure:
        plot(rows, args.figure)
        print(f"figure: {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
