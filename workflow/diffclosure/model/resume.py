"""The resumable state of a training run (last.pt) and when it may be resumed.

Policy: when MODEL_DIR/last.pt exists and was written by the same training identity (model, sde
and train sections except `threads`, `epochs`, `plateau` and `monitor`, which do not change the
weights of an epoch; the dataset's stats, conditions, size and content digest; the code version)
training continues from it and the log says so. Raising train.epochs therefore extends a run
that stopped at its bound; a run that stopped at its plateau stays stopped (model.fit says so),
unless a looser train.plateau lets it go on. A stricter rule that would have stopped before the
epochs in last.pt starts over, since the best epoch up to that earlier stop is not kept. If the
identity differs (the warning names the part), or last.pt is unreadable, training starts over
(last.pt is overwritten after the first epoch): changing a setting, the data or the code is an
intentional rerun, not an error.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from diffclosure.config import section_hash
from diffclosure.model.checkpoint import CheckpointError, read_torch, save_torch_atomic
from diffclosure.model.stopping import Plateau, first_stop
from diffclosure.provenance import code_version

log = logging.getLogger(__name__)

TRAIN_FORMAT = "diffclosure-train/1"
# train settings that do not change the weights after a given epoch: not part of the identity.
UNTRACKED = ("threads", "epochs", "plateau", "monitor")

# The parts of a training identity, as a refused resume names them.
IDENTITY_PARTS = {
    "settings": "model/sde/train settings",
    "data": "dataset (train.h5, val.h5, stats.json)",
    "code": "code version",
}


def training_identity(cfg: dict, stats: dict, conditions: list[str], n: int, n_train: int,
                      content: str) -> dict[str, str]:
    """Everything that determines the weights after a given epoch, in IDENTITY_PARTS.

    `threads` is left out (a resumed job may get other cores) and so are `epochs`, `plateau` and
    `monitor`: the draws of an epoch depend on none of them, so a longer bound or a looser rule
    continues a run exactly as an uninterrupted run would have gone (try_resume checks that the
    rule would not have stopped earlier), and the monitor draws from its own generator. The
    stats alone do not identify the data: measurements.lattice or .noise change the
    measurements but not their stats (the target's), hence `content` (the content digests of
    train.h5 and val.h5 that stats.json records and the train stage has checked).
    """
    train = {k: v for k, v in cfg["train"].items() if k not in UNTRACKED}
    return {
        "settings": section_hash({"model": cfg["model"], "sde": cfg["sde"], "train": train}),
        "data": section_hash({"stats": stats, "conditions": conditions, "n": n,
                              "samples": n_train, "content": content}),
        "code": code_version(),
    }


def _identity_changes(old, identity: dict[str, str]) -> list[str]:
    """What differs between the identity stored in last.pt and this run's, in words."""
    if not isinstance(old, dict):  # a last.pt of an older version: one opaque hash
        return ["identity format (older version)"]
    changes = []
    for key, what in IDENTITY_PARTS.items():
        if old.get(key) != identity[key]:
            detail = f" ({old.get(key)} -> {identity[key]})" if key == "code" else ""
            changes.append(what + detail)
    return changes


def _resumable(path: Path, identity: dict[str, str], epochs: int) -> dict | None:
    """The state in last.pt if it belongs to this run, else None (the log says why)."""
    try:
        state = read_torch(path, "training checkpoint")
        if state.get("format") != TRAIN_FORMAT:
            raise CheckpointError(f"{path}: not a diffclosure training checkpoint")
    except CheckpointError as exc:
        log.warning("%s; starting over", exc)
        return None
    if int(state.get("epoch", 0)) > epochs:
        log.warning("%s holds %d epochs, more than train.epochs=%d; starting over", path,
                    state["epoch"], epochs)
        return None
    changes = _identity_changes(state.get("identity"), identity)
    if changes:
        log.warning("%s was written with another %s; starting over from scratch (it is "
                    "overwritten after the first epoch)", path, ", ".join(changes))
        return None
    return state


def try_resume(path: Path, identity: dict[str, str], run, epochs: int,
               rule: Plateau | None = None) -> tuple[int, list[dict]]:
    """Load last.pt into `run` (a fit.TrainingRun) if it belongs to this run and `rule` (the
    plateau rule) would not have stopped it before its last epoch; return (epochs done,
    history)."""
    if not path.exists():
        return 0, []
    state = _resumable(path, identity, epochs)
    if state is None:
        return 0, []
    history = list(state["history"])
    stop, reason = first_stop(history, rule or Plateau(window=0), epochs)
    if stop < len(history):
        log.warning("%s holds %d epochs, but train.plateau would have stopped after epoch %d "
                    "(%s); starting over from scratch", path, len(history), stop, reason)
        return 0, []
    run.net.load_state_dict(state["model"])
    run.ema.load_state_dict(state["ema"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.best = state.get("best")
    if run.best is not None and "metric" not in run.best:  # last.pt from before the metric
        run.best = {**run.best, "metric": "val_loss", "value": run.best["val_loss"]}
    metric = (rule or Plateau()).metric
    if run.best is not None and run.best["metric"] != metric:
        # Chosen by another train.plateau.metric: not comparable. The best of this metric is
        # picked among the epochs from here on.
        log.warning("%s kept the best epoch by %s; train.plateau.metric is now %s, so the best "
                    "is picked again from epoch %d on", path, run.best["metric"],
                    metric, int(state["epoch"]) + 1)
        run.best = None
    torch.set_rng_state(state["rng"]["torch"])
    log.info("resuming from %s after epoch %d of %d", path, state["epoch"], epochs)
    return int(state["epoch"]), history


def save_last(path: Path, run, identity: dict, epoch: int, history: list) -> None:
    """The resumable state after `epoch` epochs (last.pt)."""
    save_torch_atomic(
        {"format": TRAIN_FORMAT, "identity": identity, "epoch": epoch,
         "model": run.net.state_dict(), "ema": run.ema.state_dict(),
         "optimizer": run.optimizer.state_dict(),
         "scheduler": run.scheduler.state_dict(),
         "rng": {"torch": torch.get_rng_state()}, "history": history, "best": run.best},
        path,
    )
