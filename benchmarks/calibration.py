"""Calibration of the learned closure's ensemble a posteriori, against the correlation time of its
sampler's noise (rollout.tau), from one finished run.

Every point is one rollout of the `diffusion` closure through the rollout stage's own call path
(rollout.coupled.run_rollout, the run's score.pt, DNS shards and dataset) with rollout.tau set
(0: independent draws at every sampling, the default), scored at the report's times over the
states, members and grid points: spread/skill (1 when calibrated), the rank histogram's outer
share over its flat share (1 when flat, > 1 a U), the fair CRPS per point, and D_Fro of the
ensemble mean and per member (median). auto is the correlation time of the model's a-priori
error that the rollout stage measures for rollout.tau: auto on the validation split
(rollout/error_time.py), and rollout.inflation auto 1 / the a-priori spread/skill there, corrected
by a coupled run from validation states under rollout.calibration.method a_posteriori
(rollout/calibration.py).

    python benchmarks/calibration.py --results results/default [--config PRESET.yaml ...]
        [--tau 0 0.05 0.2 auto 1 10] [--inflation 1 auto] [--members 4] [--sampler onestep]

--inflation lists rollout.inflation values (the members' deviations from their state's mean
times this factor at every sampling); every tau is run with every inflation.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from diffclosure import config as cfgmod  # noqa: E402
from diffclosure.metrics.fields import d_fro  # noqa: E402
from diffclosure.metrics.probabilistic import (  # noqa: E402
    crps,
    rank_flatness,
    rank_histogram,
    spread_skill,
)
from diffclosure.metrics.times import report_times  # noqa: E402
from diffclosure.rollout.coupled import run_rollout  # noqa: E402
from diffclosure.stages.rollout import (  # noqa: E402
    SECTIONS,
    calibrated_config,
    resolve_calibration,
    rollout_sampler,
)

ROOT = Path(__file__).resolve().parents[1]


def scores(v: np.ndarray, ref: np.ndarray, times: np.ndarray, at) -> list[dict]:
    """The calibration columns at each time of `at`; v (S, M, T, n, n), ref (S, T, n, n)."""
    rows = []
    for t in at:
        j = int(np.argmin(np.abs(times - t)))
        ens, obs = v[:, :, j], ref[:, j]
        flat = rank_flatness(rank_histogram(ens, obs, axis=1))
        rows.append({
            "time": float(times[j]),
            "spread_skill": spread_skill(ens, obs, axis=1).ratio,
            "rank_outer": flat.outer,
            "crps_fair": float(np.mean(crps(ens, obs, axis=1, fair=True))),
            "d_fro_mean": float(np.mean(d_fro(ens.mean(axis=1), obs))),
            "d_fro_member": float(np.median(d_fro(ens, obs[:, None]))),
        })
    return rows


def run_point(cfg: dict, tau, run: dict, inflation=1.0) -> tuple[list[dict], float, float, float]:
    """Scores of one rollout with rollout.tau = `tau` and rollout.inflation (numbers, or
    "auto"), its wall time and the correlation time and inflation it used."""
    cfg = copy.deepcopy(cfg)
    cfg["rollout"]["tau"] = tau
    cfg["rollout"]["inflation"] = inflation
    model = run["onestep"] if cfgmod.reads_onestep(cfg["rollout"]["sampler"]) else run["score"]
    obj = rollout_sampler(cfg, model, run["data"], 1)
    # As the rollout stage does: auto measured a priori on the validation split.
    cfg = calibrated_config(cfg, *resolve_calibration(cfg, obj, run["data"], run["dns"]))
    tic = time.perf_counter()
    res = run_rollout(cfg, "diffusion", run["dns"], run["data"], obj, show_progress=False)
    at = report_times(res.time, [0.25, 0.5, 0.75, 1.0])
    return (scores(res.vorticity, res.reference, res.time, at), time.perf_counter() - tic,
            cfg["rollout"]["tau"], cfg["rollout"]["inflation"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", required=True, help="a finished run's folder, results/<run>")
    p.add_argument("--config", nargs="+", default=[], help="that run's config files")
    p.add_argument("--tau", nargs="+", default=["0", "0.05", "0.2", "auto", "1", "10"],
                   help="rollout.tau values; auto = measured from the test set as the rollout "
                        "stage does (marked * in the table)")
    p.add_argument("--inflation", nargs="+", default=["1"],
                   help="rollout.inflation values; auto = measured on the validation split, as "
                        "the rollout stage measures it (rollout.calibration)")
    p.add_argument("--members", type=int, default=None, help="rollout.ensemble (default: the"
                   " config's)")
    p.add_argument("--sampler", default=None, choices=["onestep"],
                   help="sample with the one-step generator instead of the config's sampler")
    args = p.parse_args(argv)
    results = Path(args.results)
    run = {"score": results / "model" / "score.pt", "onestep": results / "model" / "onestep.pt",
           "data": results / "dataset", "dns": sorted((results / "dns").glob("shard-*.h5"))}
    cfg, _ = cfgmod.read_run_config(args.config, cwd=ROOT)
    cfg = cfgmod.load(cfg, sections=SECTIONS)
    if args.members:
        cfg["rollout"]["ensemble"] = args.members
    if args.sampler:
        cfg["rollout"]["sampler"] = {"name": args.sampler}
    ro = cfg["rollout"]
    print(f"learned closure, {ro['initial_states']} states x {ro['ensemble']} members, sampler "
          f"{ro['sampler']['name']}, resampled every {ro['resample_every']} steps of "
          f"dt = {cfg['dns']['dt']:g}")
    print(f"{'tau':>6} {'rho':>7} {'infl':>5} {'time':>5} {'spread/skill':>12} {'rank outer':>10} "
          f"{'CRPS fair':>10} {'D_Fro mean':>10} {'member':>8}")
    for value in args.tau:
        for inflation in args.inflation:
            rows, wall, tau, infl = run_point(
                cfg, value if value == "auto" else float(value), run,
                inflation if inflation == "auto" else float(inflation))
            _print_point(rows, wall, tau, value, infl, ro["resample_every"] * cfg["dns"]["dt"])
    return 0


def _print_point(rows, wall, tau, value, inflation, interval) -> None:
    rho = 0.0 if tau == 0 else float(np.exp(-interval / tau))
    label = f"{tau:.3g}" + ("*" if value == "auto" else "")
    for r in rows:
        print(f"{label:>6} {rho:>7.4f} {inflation:>5.2g} {r['time']:>5.2g} "
              f"{r['spread_skill']:>12.3f} {r['rank_outer']:>10.2f} {r['crps_fair']:>10.4g} "
              f"{r['d_fro_mean']:>10.4f} {r['d_fro_member']:>8.4f}")
    print(f"       ({wall:.0f} s)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
