"""What a training run writes into MODEL_DIR besides last.pt (model.resume): score.pt, the
final model with the settings to rebuild it, and history.csv, the loss per epoch."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from diffclosure import __version__
from diffclosure.config import section_hash
from diffclosure.model.checkpoint import save_checkpoint
from diffclosure.provenance import provenance, write_table

LAST = "last.pt"
SCORE = "score.pt"
HISTORY = "history.csv"
CURVES = "curves.png"
HISTORY_FIELDS = ("epoch", "train_loss", "val_loss", "lr", "seconds")


def run_config_hash(cfg: dict) -> str:
    """The config hash of a training run (score.pt and history.csv): the sde, model and train
    sections without `threads`, which does not change the weights."""
    return section_hash({"sde": cfg["sde"], "model": cfg["model"], "train": {
        k: v for k, v in cfg["train"].items() if k != "threads"}})


def write_history(path: Path, history: list[dict], cfg: dict) -> None:
    """history.csv, with its provenance sidecar history.csv.provenance.json."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: row[k] for k in HISTORY_FIELDS})
    write_table(path, buf.getvalue(), {k: cfg[k] for k in ("sde", "model", "train")}, "train",
                config_hash=run_config_hash(cfg))


def write_score(path: Path, cfg: dict, sde, data: dict, identity: dict, run) -> None:
    """score.pt: the raw and EMA weights of `run` (a fit.TrainingRun), the settings that
    rebuild the model (`data`: conditions, stats and n of the dataset) and the provenance."""
    settings = {
        "model": dict(cfg["model"]),
        "sde": sde.settings(),
        "conditions": data["conditions"],
        "stats": data["stats"],
        "n": data["n"],
        "version": __version__,
        "config_hash": run_config_hash(cfg),
        "identity": section_hash(identity),
        "code_version": identity["code"],
        "epochs": cfg["train"]["epochs"],
    }
    settings["model"].setdefault("coords", False)
    prov = provenance({k: cfg[k] for k in ("sde", "model", "train")}, "train")
    prov["config_hash"] = settings["config_hash"]  # one hash for one run (threads excluded)
    save_checkpoint(path, run.net, run.ema.model, settings, prov)
