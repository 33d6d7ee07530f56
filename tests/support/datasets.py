"""Dataset folders made by hand for stage tests: stats.json written as the dataset stage writes
it, with its sidecar (checksum) and the digest of every split file in the folder."""

from __future__ import annotations

from pathlib import Path

from diffclosure.data.digest import content_digest
from diffclosure.provenance import write_json_table


def write_stats(folder: Path, stats: dict) -> Path:
    """FOLDER/stats.json holding `stats` plus the digests of FOLDER/*.h5, with its sidecar."""
    folder = Path(folder)
    digests = {p.name: content_digest([p]) for p in sorted(folder.glob("*.h5"))}
    path = folder / "stats.json"
    write_json_table(path, {**stats, "digests": digests}, {"test": "hand-made"}, "dataset")
    return path


def split_stats(path: Path, channels) -> dict:
    """{channel: {"mean", "std"}} of a split file, as the dataset stage computes them from the
    training split (float64 over every record)."""
    import h5py
    import numpy as np

    with h5py.File(path, "r") as fh:
        return {c: {"mean": float(np.mean(fh[c][()], dtype=np.float64)),
                    "std": float(np.std(fh[c][()].astype(np.float64)))} for c in channels}
