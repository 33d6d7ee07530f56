"""What a training run writes into MODEL_DIR besides last.pt (model.resume): score.pt, the
final model with the settings to rebuild it, and history.csv, the loss per epoch."""

from __future__ import annotations

import copy
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


def training_outcome(history: list[dict], best: dict | None, reason: str, train: dict) -> dict:
    """How a run ended, as score.pt's settings and history.csv's sidecar record it: epochs
    trained, the best epoch (whose EMA weights score.pt holds), the stopping rule and why it
    stopped."""
    return {
        "epochs": int(history[-1]["epoch"]) if history else 0,
        "max_epochs": int(train["epochs"]),
        "best_epoch": int(best["epoch"]) if best else 0,
        "best_val_loss": float(best["val_loss"]) if best else float("nan"),
        "best_metric": best["metric"] if best else "val_loss",
        "best_value": float(best["value"]) if best else float("nan"),
        "plateau": dict(train.get("plateau") or {}),
        "stop_reason": reason,
    }


def run_config_hash(cfg: dict) -> str:
    """The config hash of a training run (score.pt and history.csv): the sde, model and train
    sections without `threads`, which does not change the weights."""
    return section_hash({"sde": cfg["sde"], "model": cfg["model"], "train": {
        k: v for k, v in cfg["train"].items() if k != "threads"}})


def write_history(path: Path, history: list[dict], cfg: dict,
                  outcome: dict | None = None) -> None:
    """history.csv, with its provenance sidecar history.csv.provenance.json (which also holds
    the run's `outcome` once it has ended, for the report)."""
    # The fit loop's columns, then whatever the rows add (train.monitor's), in their order.
    fields = HISTORY_FIELDS + tuple(dict.fromkeys(k for r in history for k in r
                                                  if k not in HISTORY_FIELDS))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: _cell(row.get(k)) for k in fields})
    write_table(path, buf.getvalue(), {k: cfg[k] for k in ("sde", "model", "train")}, "train",
                config_hash=run_config_hash(cfg), meta={"outcome": outcome} if outcome else None)


def _cell(value):
    """A history value as CSV text: NaN (an epoch the monitor skipped) as an empty cell."""
    if isinstance(value, float) and value != value:
        return ""
    return value


def write_score(path: Path, cfg: dict, sde, data: dict, identity: dict, run,
                outcome: dict) -> None:
    """score.pt: the raw weights of the last epoch and the EMA weights of the best one of
    `run` (a fit.TrainingRun), the settings that rebuild the model (`data`: conditions, stats
    and n of the dataset), how training ended (`outcome`) and the provenance."""
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
        "epochs": outcome["epochs"],
        "training": outcome,
    }
    settings["model"].setdefault("coords", False)
    prov = provenance({k: cfg[k] for k in ("sde", "model", "train")}, "train")
    prov["config_hash"] = settings["config_hash"]  # one hash for one run (threads excluded)
    ema = run.ema.model
    if run.best is not None:
        ema = copy.deepcopy(ema)
        ema.load_state_dict(run.best["ema"])
    save_checkpoint(path, run.net, ema, settings, prov)
