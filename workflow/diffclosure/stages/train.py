"""Stage `train`: denoising score matching of the conditional FNO score model.

    python -m diffclosure train --config CFG --data DATASET_DIR --outdir MODEL_DIR [--threads T]

Reads DATASET_DIR/{train,val}.h5 and stats.json; writes MODEL_DIR/score.pt (final model with EMA
weights and the settings to rebuild it), last.pt (resumable state, every epoch), history.csv and
curves.png. Rerunning after a kill resumes from last.pt. Under torchrun it trains on all GPUs
(docs/multi-gpu.md).
"""

from __future__ import annotations

import argparse
import logging

from diffclosure import config

log = logging.getLogger(__name__)
SECTIONS = ["device", "sde", "model", "train"]


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
    from diffclosure.model.train import train  # torch import only when the stage runs

    result = train(cfg, args.data, args.outdir, threads=args.threads,
                   in_memory=False if args.stream else None)
    if result.history:
        last = result.history[-1]
        log.info("done: %d epochs, final train loss %.5g, val loss %.5g",
                 last["epoch"], last["train_loss"], last["val_loss"])
    return 0
