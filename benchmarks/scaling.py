"""The learned LES closure's learning curves in data and epochs, a priori and a posteriori.

    python benchmarks/scaling.py --results results/les-turbulence \
        --config workflow/presets/les-turbulence.yaml --trajectories 2 4 8 --epochs 120 \
        [--extra 8:30] [--duration 3.5] [--closure diffusion_mean] [--workdir scaling]
        [--threads 2]

For each training set of K trajectories (`dataset.train_trajectories`: the smaller sets are
subsets of the larger, and the validation and test states are those of the run) and each epoch
bound E, it runs the project's own stages on the run's coarse and DNS files:

1. `dataset` with dataset.train_trajectories = K;
2. `train` with train.epochs = E (the preset's plateau rule may stop it sooner; history.csv
   holds the validation loss and the a-priori correlation with Pi of the 4-sample mean on
   validation states against epochs, train.monitor);
3. `rollout` of the learned closure (`--closure`, the deterministic `diffusion_mean` by default:
   no calibration run, so the curve measures the model, not the noise settings) from the test
   states for --duration time units, and Leith's rollout once as the bar;
4. the a-posteriori LES scores with bootstrap intervals (rollout-metrics' les.csv columns).

A step whose output exists is not redone, so a second call with more sizes adds rows. Prints
one row per (K, E): samples, epochs run, best validation loss, the a-priori correlation at the
last monitored epoch, and the energy-spectrum, enstrophy-spectrum and PDF errors with their
intervals; then Leith's. Wall times are of each step as run here (other work on the machine
counts: time it alone for a cost claim).
"""

from __future__ import annotations

import argparse
import csv
import glob
import subprocess
import sys
import time
from pathlib import Path

import yaml

from diffclosure import config as cfgmod
from diffclosure.stages.rollout_metrics import les_scores_of, read_rollout

SCORES = ("energy_spectrum_error", "enstrophy_spectrum_error", "pdf_hellinger")


def _run(args: list[str], log: Path) -> float:
    tic = time.perf_counter()
    with open(log, "w") as fh:
        done = subprocess.run([sys.executable, "-m", "diffclosure", *args], stdout=fh,
                              stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"{' '.join(args[:1])} failed (exit {done.returncode}); see {log}")
    return time.perf_counter() - tic


def _config(base: dict, where: Path, trajectories: int | None, epochs: int | None,
            duration: float) -> Path:
    cfg = yaml.safe_load(yaml.safe_dump(base))
    cfg["dataset"]["train_trajectories"] = trajectories
    if epochs is not None:
        cfg["train"]["epochs"] = epochs
    cfg["rollout"]["duration"] = duration
    cfgmod.validate(cfg)
    where.mkdir(parents=True, exist_ok=True)
    path = where / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _history(model_dir: Path) -> dict:
    with open(model_dir / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    monitored = [r for r in rows if r.get("apriori_corr")]
    return {"epochs": len(rows),
            "val_loss": min(float(r["val_loss"]) for r in rows),
            "apriori_corr": float(monitored[-1]["apriori_corr"]) if monitored else float("nan")}


def _samples(data_dir: Path) -> int:
    import h5py

    with h5py.File(data_dir / "train.h5") as fh:
        return int(fh["target"].shape[0] * fh["target"].shape[1])


def _score(path: Path, length: float) -> dict:
    """les.csv's scores of one rollout file, and the time it stayed finite."""
    r = read_rollout(path)
    blowup = r["attrs"].get("blowup_time", float("nan"))
    stable = float(r["time"][-1]) if not r["attrs"].get("blowup") else float(blowup)
    return {**les_scores_of([r], r["reference"], length)[r["closure"]], "stable_until": stable}


def _interval(s: dict, name: str) -> str:
    return f"{s[name]:.3g} [{s[name + '_lo']:.3g}, {s[name + '_hi']:.3g}]"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", required=True, help="a run's results folder (coarse/, dns/)")
    p.add_argument("--config", required=True, help="the run's preset (merged on config.yaml)")
    p.add_argument("--trajectories", type=int, nargs="+", required=True,
                   help="training-set sizes K (dataset.train_trajectories)")
    p.add_argument("--epochs", type=int, nargs="+", default=[None],
                   help="epoch bounds E (default: the preset's)")
    p.add_argument("--extra", nargs="*", default=[],
                   help="more (K, E) pairs as K:E, beyond the K x E grid")
    p.add_argument("--duration", type=float, default=3.5, help="rollout time units")
    p.add_argument("--closure", default="diffusion_mean", choices=["diffusion", "diffusion_mean"])
    p.add_argument("--workdir", default="scaling")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()

    res, work = Path(a.results), Path(a.workdir)
    base, _ = cfgmod.read_run_config([a.config])
    coarse = sorted(glob.glob(str(res / "coarse" / "shard-*.h5")))
    dns = sorted(glob.glob(str(res / "dns" / "shard-*.h5")))
    if not coarse or not dns:
        raise SystemExit(f"--results {res}: no coarse/shard-*.h5 or dns/shard-*.h5; run the "
                         "pipeline's dns and coarse stages first")
    grid = [(k, e) for k in a.trajectories for e in a.epochs]
    grid += [tuple(int(x) for x in pair.split(":")) for pair in a.extra]
    length = float(base["dns"]["length"])
    threads = ["--threads", str(a.threads)]

    rows = []
    for k, e in grid:
        run = work / f"K{k}-E{e if e is not None else base['train']['epochs']}"
        cfg = _config(base, run, k, e, a.duration)
        data, model, out = run / "dataset", run / "model", run / f"{a.closure}.h5"
        wall = {}
        if not (data / "stats.json").exists():
            wall["dataset"] = _run(["dataset", "--config", str(cfg), "--inputs", *coarse,
                                    "--outdir", str(data)], run / "dataset.log")
        if not (model / "score.pt").exists():
            wall["train"] = _run(["train", "--config", str(cfg), "--data", str(data),
                                  "--outdir", str(model), *threads], run / "train.log")
        if not out.exists():
            wall["rollout"] = _run(["rollout", "--config", str(cfg), "--closure", a.closure,
                                    "--dns", *dns, "--data", str(data), "--model",
                                    str(model / "score.pt"), "--output", str(out), *threads],
                                   run / "rollout.log")
        rows.append({"K": k, "samples": _samples(data), **_history(model),
                     **_score(out, length), "wall": wall})
        print(f"done K={k} E={e}: {rows[-1]['wall']}", flush=True)

    leith_dir = work / "leith"
    leith = leith_dir / "leith.h5"
    if not leith.exists():
        cfg = _config(base, leith_dir, None, None, a.duration)
        _run(["rollout", "--config", str(cfg), "--closure", "leith", "--dns", *dns,
              "--data", str(work / f"K{grid[-1][0]}-E{grid[-1][1] or base['train']['epochs']}"
                            / "dataset"),
              "--output", str(leith), *threads], leith_dir / "rollout.log")
    bar = _score(leith, length)

    print(f"\n{a.closure}, {a.duration:g} time units from the run's test states; in brackets the "
          "95% bootstrap interval over states and members")
    print("| training trajectories | samples | epochs run | best val loss | a-priori corr "
          "(4-sample mean, val) | E(k) error | Z(k) error | PDF Hellinger | stable until |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["K"], r["epochs"])):
        print(f"| {r['K']} | {r['samples']} | {r['epochs']} | {r['val_loss']:.1f} | "
              f"{r['apriori_corr']:.3f} | " + " | ".join(_interval(r, s) for s in SCORES)
              + f" | {r['stable_until']:.3g} |")
    print("| leith | - | - | - | - | " + " | ".join(_interval(bar, s) for s in SCORES)
          + f" | {bar['stable_until']:.3g} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
