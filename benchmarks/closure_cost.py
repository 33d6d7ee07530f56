"""Cost of every closure of a finished run per member and simulated time unit, and per network
call, measured in one process on one machine, so that the ratios to a classical closure hold.

Every row is one short coupled run through the rollout stage's own call path
(rollout.coupled.run_rollout, the run's score.pt, DNS shards and dataset) from the run's test
states, with the run's rollout section but for `--duration` (and, for the learned closures, the
sampler's steps `--steps`, default: the configured ones). The learned closure's tau and inflation
are fixed here, tau 0 and inflation 1, so that no calibration runs first (a correlated draw costs
one extra FFT pair per sampling, beside 6-10 network calls). Cost is the coupled run's
warm seconds per simulated time unit (run_rollout's own timer), divided by its members; per
network call, the learned closure's seconds over its sampler's calls.

    python benchmarks/closure_cost.py --results results/les-turbulence \\
        --config workflow/presets/les-turbulence.yaml [--duration 0.5] [--steps 10 6] \\
        [--closures leith smagorinsky diffusion diffusion_mean] [--threads 1] \\
        [--onestep results/les-turbulence/model/onestep.pt]

--onestep also times the learned closures with the distilled one-step generator (rollout.sampler
onestep, one network call per sampling); --steps 0 leaves out the score model's own sampler. A
run whose rollout.sampler is already onestep (the LES preset) times that, from its
model/onestep.pt, and --steps does not apply.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from diffclosure import config as cfgmod  # noqa: E402
from diffclosure.rollout import registry  # noqa: E402
from diffclosure.rollout.coupled import run_rollout  # noqa: E402
from diffclosure.stages.rollout import SECTIONS, rollout_sampler  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def measure(cfg: dict, closure: str, run: dict, threads: int) -> dict:
    """One row: cost per time unit (all members and per member), and per network call."""
    needs_model = registry.lookup(closure).needs_model
    sampler = cfg["rollout"]["sampler"]
    onestep = cfgmod.reads_onestep(sampler)
    model = run["onestep"] if onestep else run["score"]
    obj = rollout_sampler(cfg, model, run["data"], threads) if needs_model else None
    res = run_rollout(cfg, closure, run["dns"], run["data"], obj, threads=threads,
                      show_progress=False)
    a = res.attrs
    members = res.vorticity.shape[1]
    per_time = float(a["cost_coupled_s_per_time"])
    steps = (1 if onestep else sampler["steps"]) if needs_model else 0
    # sample_calls counts samplings; each is `steps` network calls on all members at once
    calls = int(a.get("sample_calls", 0)) * steps
    duration = float(cfg["rollout"]["duration"])
    label = ("onestep" if onestep else steps) if needs_model else "-"
    return {"closure": closure, "steps": label, "members": members,
            "s_per_time": per_time, "s_per_member_time": per_time / members,
            "ms_per_call": 1e3 * per_time * duration / calls if calls else float("nan")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", required=True, help="a finished run's folder, results/<run>")
    p.add_argument("--config", nargs="+", default=[], help="that run's config files")
    p.add_argument("--closures", nargs="+",
                   default=["leith", "smagorinsky", "diffusion", "diffusion_mean"])
    p.add_argument("--steps", nargs="+", type=int, default=None,
                   help="sampler steps of the learned closures (default: the configured)")
    p.add_argument("--duration", type=float, default=0.5, help="simulated time of each run")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--onestep", default=None,
                   help="the run's distilled generator (model/onestep.pt) to time as well")
    args = p.parse_args(argv)
    results = Path(args.results)
    cfg, _ = cfgmod.read_run_config(args.config, cwd=ROOT)
    cfg = cfgmod.load(cfg, sections=SECTIONS)
    cfg["rollout"].update(duration=args.duration, tau=0.0, inflation=1.0)
    run = {"score": results / "model" / "score.pt", "data": results / "dataset",
           "dns": sorted(str(s) for s in (results / "dns").glob("shard-*.h5")),
           "onestep": args.onestep or results / "model" / "onestep.pt"}
    # A run whose sampler is the one-step generator has no step count to vary.
    configured_onestep = cfgmod.reads_onestep(cfg["rollout"]["sampler"])
    rows = []
    for closure in args.closures:
        learned = registry.lookup(closure).needs_model
        variants = [None]
        if learned and not configured_onestep:
            variants = [s for s in (args.steps or [None]) if s != 0]
            if args.onestep:
                variants.append("onestep")
        for steps in variants:
            c = copy.deepcopy(cfg)
            if steps == "onestep":
                c["rollout"]["sampler"] = {"name": "onestep"}
            elif steps:
                c["rollout"]["sampler"]["steps"] = steps
            rows.append(measure(c, closure, run, args.threads))
            print(f"measured {closure} {steps or ''}", file=sys.stderr, flush=True)
    base = next((r["s_per_member_time"] for r in rows if r["closure"] == "leith"), None)
    print(f"{'closure':16s} {'steps':>5s} {'members':>7s} {'s/time':>8s} {'s/member/time':>13s} "
          f"{'x leith':>7s} {'ms/call':>8s}")
    for r in rows:
        ratio = r["s_per_member_time"] / base if base else float("nan")
        print(f"{r['closure']:16s} {r['steps']!s:>5s} {r['members']:7d} {r['s_per_time']:8.3g} "
              f"{r['s_per_member_time']:13.3g} {ratio:7.3g} {r['ms_per_call']:8.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
