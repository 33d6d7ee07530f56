"""How much the validation loss depends on its fixed noise: the DSM loss of a trained model on the
validation split, with 1 and with 4 noise draws per sample at stratified times (fit.validate's
recipe), over several noise seeds. The plateau rule compares losses a few percent apart, so the
noise the validation loss is fixed to should not dominate it.

    python benchmarks/validation_noise.py --results results/default [--config config.yaml]
        [--seeds 12] [--draws 1 4]

Prints one row per number of draws: the mean, std and std/mean of the loss over the seeds.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from diffclosure import config
from diffclosure.data.datasets import load_training_splits
from diffclosure.model.checkpoint import load_model
from diffclosure.model.fit import stratified_times
from diffclosure.model.loss import dsm_loss


def validation_loss(net, val, t_min: float, t_max: float, draws: int, seed: int,
                    batch: int = 8) -> float:
    gen = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(val), batch):
            x0, cond = val.get_batch(torch.arange(start, min(start + batch, len(val))))
            x0 = x0.repeat_interleave(draws, dim=0)
            t = stratified_times(t_min, t_max, x0.shape[0] // draws, draws, gen, "cpu")
            per = dsm_loss(net, x0, cond, net.sde, t=t, generator=gen, reduce=False)
            total += float(per.double().sum())
            count += per.shape[0]
    return total / count


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", type=Path, default=Path("results/default"))
    p.add_argument("--config", type=Path, default=Path("config.yaml"),
                   help="the run's config (its train.t_min and t_max)")
    p.add_argument("--seeds", type=int, default=12)
    p.add_argument("--draws", type=int, nargs="+", default=[1, 4])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    net, _ = load_model(args.results / "model" / "score.pt")
    net.eval()
    _, _, val = load_training_splits(args.results / "dataset", True)
    tr = config.load(args.config)["train"]
    print(f"{len(val)} validation samples, t ~ U({tr['t_min']}, {tr['t_max']}), "
          f"{args.seeds} noise seeds")
    print(f"{'draws':>6} {'mean':>9} {'std':>9} {'std/mean':>9} {'min':>9} {'max':>9}")
    for draws in args.draws:
        losses = [validation_loss(net, val, tr["t_min"], tr["t_max"], draws, seed)
                  for seed in range(args.seeds)]
        mean, std = statistics.fmean(losses), statistics.stdev(losses)
        print(f"{draws:>6} {mean:>9.3f} {std:>9.3f} {std / mean:>9.3f} {min(losses):>9.3f}"
              f" {max(losses):>9.3f}")


if __name__ == "__main__":
    main()
