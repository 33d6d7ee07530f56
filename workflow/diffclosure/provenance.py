"""What made a file: package version, git commit, config hash, time.

HDF5 outputs hold these as root attributes, score.pt under "provenance", JSON outputs under a
top-level "provenance" key, CSV tables in a sidecar `<name>.csv.provenance.json` (write_table),
summary.md in a footer line, PNG figures (where cheap) in a "Software" text chunk.
"""

from __future__ import annotations

import csv
import datetime as _dt
import functools
import hashlib
import io
import json
import subprocess
from pathlib import Path

from diffclosure import __version__
from diffclosure.atomic import json_text, write_files_atomic
from diffclosure.config import CHECKOUT, section_hash


@functools.cache
def git_commit() -> str:
    # An installed package's folder may lie inside some other repository (a venv in a project):
    # that repository's commit says nothing about this code.
    if CHECKOUT is None:
        return "unknown"
    try:
        out = subprocess.run(
            ["git", "-C", str(CHECKOUT), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(CHECKOUT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# The parts of the package that a trained model depends on: the network, loss, SDE and fit loop
# (model/), how datasets are read and normalised (data/), the device policy and the training
# stage that drives them (stages/train.py). Editing plots, reports, rollouts or samplers leaves
# training's result unchanged and must not restart it.
TRAINING_SOURCES = ("model", "data", "devices.py", "config.py", "stages/train.py")


@functools.cache
def source_digest() -> str:
    """Short sha256 over the training code's Python sources (relative paths and bytes)."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    files = [p for name in TRAINING_SOURCES
             for p in ([root / name] if name.endswith(".py") else (root / name).rglob("*.py"))]
    for path in sorted(files):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def code_version() -> str:
    """The version of the code that computes results, for the identity of a resumable run.

    A digest of the package's sources rather than the git commit: the commit stays "<sha>-dirty"
    through any number of uncommitted edits (a resumed run would mix two codes), and it changes
    on commits that touch no package code (docs, tests), which would throw away hours of
    training for nothing. It also works where there is no git checkout (an installed package).
    """
    return f"diffclosure {__version__}, training sources {source_digest()}"


def provenance(cfg: dict, stage: str) -> dict:
    """Attributes stored in every output. `cfg` is the config part that determined it."""
    return {
        "diffclosure_version": __version__,
        "git_commit": git_commit(),
        "config_hash": section_hash(cfg),
        "stage": stage,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


# ----------------------------------------------------------------------------- tables
# CSV files cannot hold metadata, so each one gets a small JSON file beside it, written together
# with its table (write_table): a table never exists without its provenance, nor a new sidecar
# beside a table it does not describe.
SIDECAR_SUFFIX = ".provenance.json"


def sidecar_path(path: str | Path) -> Path:
    """metrics.csv -> metrics.csv.provenance.json, in the same folder."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def _sidecar_text(path, cfg: dict, stage: str, config_hash: str | None) -> str:
    prov = provenance(cfg, stage)
    if config_hash is not None:
        prov["config_hash"] = config_hash
    return json_text({"file": Path(path).name, "provenance": prov})


def csv_text(rows: list[dict], columns: list[str]) -> str:
    """The CSV of `rows` (dicts) in `columns` order, floats as %.6g: what write_table takes."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: (f"{r[c]:.6g}" if isinstance(r[c], float) else r[c]) for c in columns})
    return buf.getvalue()


def write_table(path: str | Path, text: str, cfg: dict, stage: str, *,
                config_hash: str | None = None) -> None:
    """Write a CSV table and its provenance sidecar together, atomically: both or neither.

    `config_hash` replaces the hash of `cfg` where a stage already stores another one for the
    same run (e.g. training, whose hash leaves out the thread count), so one run has one hash.
    """
    write_files_atomic({path: text.encode(),
                        sidecar_path(path): _sidecar_text(path, cfg, stage, config_hash).encode()})


def read_sidecar(path: str | Path) -> dict:
    """The provenance recorded for the table `path` ({} when it has no readable sidecar)."""
    side = sidecar_path(path)
    try:
        doc = json.loads(side.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    prov = doc.get("provenance") if isinstance(doc, dict) else None
    return dict(prov) if isinstance(prov, dict) else {}


def footer(prov: dict) -> str:
    """One line naming what made a text output (the report's summary.md ends with it)."""
    return (f"Provenance: diffclosure {prov.get('diffclosure_version', '?')}, git commit "
            f"{prov.get('git_commit', '?')}, config hash {prov.get('config_hash', '?')}, stage "
            f"{prov.get('stage', '?')}, created {prov.get('created', '?')}.")


def png_metadata() -> dict:
    """PNG text chunks for matplotlib's savefig(metadata=...): version and commit (a figure
    function does not see the config, so no config hash here)."""
    return {"Software": f"diffclosure {__version__} (git {git_commit()})"}
