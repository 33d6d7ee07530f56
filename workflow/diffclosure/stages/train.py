"""Stage `train`: denoising score matching of the conditional FNO score model.

    python -m diffclosure train --config CFG --data DATASET_DIR --outdir MODEL_DIR [--threads T]

Reads DATASET_DIR/{train,val}.h5 and stats.json; writes MODEL_DIR/score.pt (the EMA weights of
the best epoch, where the plateau rule or the epoch bound stopped training, and the settings to
rebuild it), last.pt (resumable state, every epoch), history.csv and curves.png. Rerunning
after a kill resumes from last.pt (model.resume says when). Under torchrun it trains on all
GPUs and only rank 0 writes (model.distributed, docs/multi-gpu.md).

The stage reads the dataset, sets up the processes, resumes or builds the run, hands it to the
fit loop (model.fit) with a callback that saves last.pt and history.csv after every epoch, and
writes the final files (model.training_files, plots.training).
"""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from diffclosure import config
from diffclosure.data.datasets import load_training_splits, place_splits
from diffclosure.model.augment import Augment
from diffclosure.model.distributed import (
    Dist,
    configure_determinism,
    setup_distributed,
    teardown_distributed,
)
from diffclosure.model.fit import TrainingRun, build_run, fit
from diffclosure.model.resume import save_last, training_identity, try_resume
from diffclosure.model.score_net import ScoreNet
from diffclosure.model.sde import make_sde
from diffclosure.model.stopping import Plateau
from diffclosure.model.training_files import (
    CURVES,
    HISTORY,
    LAST,
    SCORE,
    training_outcome,
    write_history,
    write_score,
)
from diffclosure.plots.training import plot_curves
from diffclosure.sampling.monitor import make_monitor

log = logging.getLogger(__name__)
SECTIONS = ["device", "sde", "model", "train"]


@dataclass
class TrainResult:
    net: ScoreNet  # raw weights after the last epoch
    ema_net: ScoreNet  # EMA weights after the last epoch (score.pt keeps the best epoch's)
    history: list[dict] = field(default_factory=list)
    resumed_from: int = 0  # epochs already done when this call started


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True,
                        help="dataset folder with train.h5, val.h5, stats.json")
    parser.add_argument("--outdir", required=True, help="model folder (score.pt, history.csv, ...)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: train.threads)")
    parser.add_argument("--stream", action="store_true",
                        help="read samples from HDF5 on demand even when they fit in memory")


def main(args: argparse.Namespace) -> int:
    cfg = config.load(args.config, sections=SECTIONS)
    if args.threads is not None and args.threads < 1:
        raise config.ConfigError(f"--threads: must be >= 1, got {args.threads}")
    result = train(cfg, args.data, args.outdir, threads=args.threads,
                   in_memory=False if args.stream else None)
    if result.history:
        last = result.history[-1]
        log.info("done: %d epochs, final train loss %.5g, val loss %.5g",
                 last["epoch"], last["train_loss"], last["val_loss"])
    return 0


def train(
    cfg: dict,
    data_dir: str | Path,
    outdir: str | Path,
    threads: int | None = None,
    in_memory: bool | None = None,
) -> TrainResult:
    """Train on DATA_DIR/{train,val}.h5 and write MODEL_DIR/{score.pt,last.pt,history.csv,
    curves.png}. `cfg` holds the validated sections device, sde, model and train."""
    # Inputs first: a missing or broken file fails before any work.
    stats, data, content = read_dataset(data_dir, in_memory)
    dctx, device = setup_distributed(cfg.get("device", "auto"))
    try:
        configure_determinism(device, threads or cfg["train"]["threads"])
        data = place_splits(*data, device)
        return _train(cfg, stats, content, data, Path(outdir), dctx, device)
    finally:
        teardown_distributed(dctx)


def read_dataset(data_dir: str | Path, in_memory: bool | None):
    """(stats, (train split, val split), the digests of train.h5 and val.h5), checked
    (data.datasets.load_training_splits)."""
    stats, train_set, val_set = load_training_splits(data_dir, in_memory)
    # The files' digests, verified against stats.json above: what identifies the data for a
    # resume, beyond the statistics (measurements.lattice or .noise leave those unchanged).
    content = ",".join(stats["digests"][f"{s}.h5"] for s in ("train", "val"))
    return stats, (train_set, val_set), content


def _train(cfg, stats, content: str, data, outdir: Path, dctx: Dist, device) -> TrainResult:
    train_set = data[0]
    conditions = list(train_set.conditions)
    sde = make_sde(cfg["sde"])
    run = build_run(cfg, sde, len(conditions), device)
    identity = training_identity(cfg, stats, conditions, train_set.n, len(train_set), content)
    if dctx.main:
        outdir.mkdir(parents=True, exist_ok=True)
    dctx.barrier()
    start, history = try_resume(outdir / LAST, identity, run, cfg["train"]["epochs"],
                                Plateau.from_config(cfg["train"]))

    def save_epoch(epoch: int, history: list[dict]) -> None:
        save_last(outdir / LAST, run, identity, epoch, history)
        write_history(outdir / HISTORY, history, cfg)

    monitor = make_monitor(cfg["train"]["monitor"], data[1], stats, cfg["sde"],
                           cfg["train"]["seed"], device)
    augment = Augment.from_stats(stats, conditions) if cfg["train"]["augment"] else None
    history, reason = fit(run, cfg, sde, data, dctx, device, start, history, save_epoch,
                          monitor, augment)
    if dctx.main:
        dataset = {"conditions": conditions, "stats": stats, "n": train_set.n}
        _write_final(outdir, cfg, sde, dataset, identity, run, history, reason)
    dctx.barrier()
    # Under a monitor stopping metric the validation loss is computed at the checks only.
    checked = [r for r in history if cfg["train"]["plateau"]["metric"] == "val_loss"
               or math.isfinite(r.get(cfg["train"]["plateau"]["metric"], math.nan))]
    if checked and not all(math.isfinite(r["val_loss"]) for r in checked):
        log.warning("non-finite validation loss in the history; check the data normalisation")
    return TrainResult(run.net, run.ema.model, history, start)


def _write_final(outdir: Path, cfg: dict, sde, dataset: dict, identity: dict,
                 run: TrainingRun, history: list[dict], reason: str) -> None:
    """score.pt (the best epoch's EMA weights) with its settings and provenance, history.csv
    (with how training ended) and curves.png."""
    outcome = training_outcome(history, run.best, reason, cfg["train"])
    write_score(outdir / SCORE, cfg, sde, dataset, identity, run, outcome)
    write_history(outdir / HISTORY, history, cfg, outcome)
    if history:
        plot_curves(outdir / CURVES, history, outcome)
    log.info("stopped after epoch %d of at most %d: %s", outcome["epochs"],
             cfg["train"]["epochs"], reason)
    log.info("wrote %s: EMA weights of epoch %d (%s %.5g, validation loss %.5g)",
             outdir / SCORE, outcome["best_epoch"], outcome["best_metric"],
             outcome["best_value"], outcome["best_val_loss"])
