"""The normalisation statistics of a dataset folder (stats.json), read without torch.

The dataset stage writes the mean and std of every channel of the training split; training,
distillation and the rollouts normalise with them. Rollouts and the stats check read this file
without needing torch, so the reader lives apart from the torch datasets (data.datasets).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from diffclosure.data.digest import content_digest
from diffclosure.data.h5io import DataFileError
from diffclosure.errors import remake_hint
from diffclosure.provenance import check_table

# Top-level keys of stats.json that are bookkeeping, not channel statistics.
STATS_META_KEYS = ("conditions", "note", "split", "provenance", "stochastic_forcing", "window",
                   "digests")


def stats_key(channel: str) -> str:
    """Measurements of the target are normalised with the target's statistics."""
    return "target" if channel == "measurements" else channel


def load_stats(dataset_dir: str | Path) -> dict:
    """stats.json of a dataset folder, checked; without its "provenance" entry.

    The provenance (creation time, commit) describes the file, not the statistics: leaving it
    out keeps the training identity and the settings stored in score.pt independent of when
    the dataset was written.
    """
    path = Path(dataset_dir) / "stats.json"
    if not path.exists():
        raise DataFileError(f"{path}: file not found; run the dataset stage first")
    check_table(path)  # a flipped digit or an edit since the dataset stage wrote it
    try:
        stats = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFileError(f"{path}: not valid JSON ({exc}). {remake_hint(path)}") from None
    if not isinstance(stats, dict) or "target" not in stats:
        raise DataFileError(f"{path}: lacks the 'target' statistics. {remake_hint(path)}")
    stats.pop("provenance", None)
    for name, entry in stats.items():
        if name in STATS_META_KEYS:
            continue
        if not (isinstance(entry, dict) and "mean" in entry and "std" in entry):
            raise DataFileError(f"{path}: entry '{name}' lacks mean/std. {remake_hint(path)}")
        # null is how a non-finite value is written (strict JSON has no NaN).
        if not all(isinstance(entry[k], (int, float)) and math.isfinite(entry[k])
                   for k in ("mean", "std")):
            raise DataFileError(f"{path}: '{name}' has mean {entry['mean']}, std {entry['std']}"
                                " (non-finite data in the training split?); rerun the dataset"
                                " stage on finite data")
        if not float(entry["std"]) > 0:
            raise DataFileError(f"{path}: '{name}' has std {entry['std']} (constant field?)")
    return stats


def check_digest(stats: dict, path: str | Path) -> None:
    """Fail unless the split file `path` holds what the dataset stage wrote beside this
    stats.json (its content digest there): statistics and data of two runs never mix."""
    path = Path(path)
    recorded = (stats.get("digests") or {}).get(path.name)
    if recorded is None:
        raise DataFileError(f"{path.parent / 'stats.json'}: records no digest of {path.name} "
                            f"(written by an older version). {remake_hint(path)}")
    if content_digest([path]) != recorded:
        raise DataFileError(
            f"{path}: not the file the statistics in {path.parent / 'stats.json'} were made "
            f"with (its content digest differs from the one recorded there): the folder mixes "
            f"the files of two dataset runs, or one was changed since. {remake_hint(path)}")
