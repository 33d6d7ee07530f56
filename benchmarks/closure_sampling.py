"""Cost of one sampling of the learned closure, as a rollout pays it: ClosureSampler.sample on a
batch of states (states x members), with the score network at a config's size.

    python benchmarks/closure_sampling.py [--config CFG] [--batch 8] [--n 32] [--threads 1]
        [--repeats 20] [--profile] [--against DIR [--rounds 3]]

Prints the wall time per sampling call and per network evaluation (median over --repeats calls
after a warm-up), for the config's rollout sampler (default config.yaml: 10-step Euler-Maruyama)
and the one-step jump. The network has random weights (the cost does not depend on them).
--profile adds torch.profiler's top operators of one call. --against DIR times the same cases
with the code of another checkout (`git worktree add DIR <commit>`) and this one, alternately in
fresh processes, and prints old/new per case: the before/after of a change to the hot path,
measured in one run on one machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(args) -> dict[str, dict]:
    import torch

    from diffclosure import config as cfgmod
    from diffclosure.model.score_net import build_score_net
    from diffclosure.model.sde import make_sde
    from diffclosure.sampling.closure_sampler import ClosureSampler
    from diffclosure.sampling.samplers import make_sampler

    torch.set_num_threads(args.threads)
    # Only the sections used here: another checkout's schema may not know the others' keys.
    whole = cfgmod.read_run_config([args.config] if args.config else [], cwd=ROOT)[0]
    cfg = cfgmod.load({k: whole[k] for k in ("sde", "model", "rollout")},
                      sections=["sde", "model", "rollout"])
    sde = make_sde(cfg["sde"])
    torch.manual_seed(0)
    net = build_score_net(cfg["model"], sde, 2).eval()
    settings = {"sde": cfg["sde"], "conditions": ["vorticity", "measurements"],
                "stats": {"target": {"mean": 0.0, "std": 1.0},
                          "vorticity": {"mean": 0.0, "std": 1.0}}}
    cs = ClosureSampler(net, settings, "cpu")
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(args.batch, args.n, args.n, generator=gen)
    meas = torch.randn(args.batch, args.n, args.n, generator=gen)
    cases = {"rollout sampler": make_sampler(cfg["rollout"]["sampler"], "rollout.sampler"),
             "one network call (em, 1 step)": make_sampler({"name": "em", "steps": 1,
                                                            "t_max": 0.1})}
    out = {}
    for label, sampler in cases.items():
        for _ in range(3):  # warm-up
            cs.sample(sampler, w, meas, generator=gen)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            _, nfe = cs.sample(sampler, w, meas, generator=gen, return_nfe=True)
            times.append(time.perf_counter() - t0)
        call = statistics.median(times)
        out[label] = {"nfe": nfe, "ms_per_call": 1e3 * call, "ms_per_nfe": 1e3 * call / nfe}
        if args.profile and label == "rollout sampler":
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU]) as prof:
                cs.sample(sampler, w, meas, generator=gen)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12),
                  file=sys.stderr)
    return out


def table(rows: dict[str, dict]) -> str:
    lines = [f"{'case':<32}{'NFE':>5}{'ms / call':>12}{'ms / NFE':>11}"]
    lines += [f"{k:<32}{v['nfe']:>5d}{v['ms_per_call']:>12.2f}{v['ms_per_nfe']:>11.2f}"
              for k, v in rows.items()]
    return "\n".join(lines)


def run_with(code_root: Path, argv: list[str]) -> dict:
    """This script's measurement in a fresh process that imports the package from code_root."""
    env = {**os.environ, "PYTHONPATH": str(code_root / "workflow")}
    res = subprocess.run([sys.executable, __file__, *argv, "--json"], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout.splitlines()[-1])


def against(args, argv: list[str]) -> None:
    old_root = Path(args.against).resolve()
    per = {"old": [], "new": []}
    for _ in range(args.rounds):
        per["old"].append(run_with(old_root, argv))
        per["new"].append(run_with(ROOT, argv))
    print(f"{'case':<32}{'old ms':>10}{'new ms':>10}{'new/old':>9}")
    for case in per["new"][0]:
        old = statistics.median(r[case]["ms_per_call"] for r in per["old"])
        new = statistics.median(r[case]["ms_per_call"] for r in per["new"])
        print(f"{case:<32}{old:>10.2f}{new:>10.2f}{new / old:>9.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=None, help="a preset merged over config.yaml")
    p.add_argument("--batch", type=int, default=8, help="states x members sampled together")
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--against", default=None, help="another checkout to compare with")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.against:
        argv = [a for a in sys.argv[1:] if a not in ("--against", args.against)]
        against(args, argv)
        return
    rows = measure(args)
    print(json.dumps(rows) if args.json else table(rows))


if __name__ == "__main__":
    main()
