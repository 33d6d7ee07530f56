"""How hard each trajectory is for the learned closure, from one finished run: the a-priori D_Fro
of the rollout sampler's ensemble mean on every trajectory of the train, validation and test
splits, and, per initial state of the rollout files, the a-posteriori D_Fro and the ensemble's
spread and skill. What shows that trajectories differ in difficulty far more than the
ensemble's spread does (README, "Three validation trajectories, not one").

    python benchmarks/per_trajectory.py --results results/default [--config config.yaml]
        [--every 8] [--rollouts diffusion diffusion_mean]

A priori: rollout.ensemble samples for every `every`-th record of each trajectory (its
measurements and conditions as the dataset holds them), D_Fro of their mean against the true
term, averaged over those records; one torch generator seeded 0 per split.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from diffclosure import config as cfgmod  # noqa: E402
from diffclosure.metrics.fields import d_fro  # noqa: E402
from diffclosure.metrics.probabilistic import spread_skill  # noqa: E402
from diffclosure.metrics.times import report_times  # noqa: E402
from diffclosure.sampling.samplers import make_sampler  # noqa: E402
from diffclosure.stages.rollout import SECTIONS, rollout_sampler  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def a_priori(cfg: dict, results: Path, every: int, threads: int) -> None:
    data = results / "dataset"
    cs = rollout_sampler(cfg, results / "model" / "score.pt", data, threads)
    sampler = make_sampler(dict(cfg["rollout"]["sampler"]), "rollout.sampler")
    print("a priori: D_Fro of the ensemble mean of", cfg["rollout"]["ensemble"], "samples,",
          f"every {every}th record")
    for split in ("train", "val", "test"):
        with h5py.File(data / f"{split}.h5") as fh:
            ids = fh["trajectory"][()]
            fields = {c: fh[c][()] for c in ("target", *cs.conditions)}
        gen = torch.Generator().manual_seed(0)
        row = []
        for i, tid in enumerate(ids):
            sl = slice(0, None, every)
            kw = {c: fields[c][i, sl] for c in cs.conditions if c != "vorticity"}
            samples = cs.sample(sampler, fields["vorticity"][i, sl], **kw,
                                ensemble=cfg["rollout"]["ensemble"], generator=gen)
            mean = samples.float().numpy().mean(axis=1)
            row.append(f"{int(tid)}: {float(np.mean(d_fro(mean, fields['target'][i, sl]))):.3f}")
        print(f"  {split:5s}", "  ".join(row))


def a_posteriori(results: Path, closures: list[str]) -> None:
    print("a posteriori, per initial state (trajectory): D_Fro of the members (median) and of "
          "the ensemble mean, spread and skill (metrics.probabilistic.spread_skill)")
    for name in closures:
        with h5py.File(results / "rollout" / f"{name}.h5") as fh:
            v, r = fh["vorticity"][()].astype(float), fh["reference"][()].astype(float)
            times, ids = fh["time"][()], fh["trajectory"][()]
        for t in report_times(times, [0.25, 0.5, 0.75, 1.0]):
            j = int(np.argmin(np.abs(times - t)))
            cells = []
            for s, tid in enumerate(ids):
                member = float(np.median(d_fro(v[s, :, j], r[s, j][None])))
                mean = float(d_fro(v[s, :, j].mean(axis=0), r[s, j]))
                cell = f"{int(tid)}: member {member:.4f} mean {mean:.4f}"
                if v.shape[1] > 1:
                    ss = spread_skill(v[s:s + 1, :, j], r[s:s + 1, j], axis=1)
                    cell += f" spread {ss.spread:.4f} skill {ss.skill:.4f}"
                cells.append(cell)
            print(f"  {name} t = {times[j]:g}:", " | ".join(cells))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", required=True, help="a finished run's folder, results/<run>")
    p.add_argument("--config", nargs="+", default=[], help="that run's config files")
    p.add_argument("--every", type=int, default=8, help="every how many records (a priori)")
    p.add_argument("--rollouts", nargs="*", default=["diffusion", "diffusion_mean"],
                   help="rollout files (closure names) to break down per state")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg, _ = cfgmod.read_run_config(args.config, cwd=ROOT)
    cfg = cfgmod.load(cfg, sections=SECTIONS)
    results = Path(args.results)
    a_priori(cfg, results, args.every, args.threads)
    a_posteriori(results, args.rollouts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
