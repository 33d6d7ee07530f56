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
from diffclosure.errors import UserFacingError, remake_hint


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
# CSV files cannot hold metadata, so each table (CSV, and the JSON files stats.json and
# summary.json) gets a small JSON file beside it, written together with it (write_table,
# write_json_table): a table never exists without its provenance, nor a new sidecar beside a
# table it does not describe. The sidecar also records the table's sha256 and its row count, and
# every reader checks them (read_table_text): one flipped digit or a truncated file is named with
# the rule that remakes it instead of flowing into a report.
SIDECAR_SUFFIX = ".provenance.json"


class TableError(UserFacingError):
    """A table (CSV/JSON) lacks its sidecar, or differs from what the sidecar recorded."""


def sidecar_path(path: str | Path) -> Path:
    """metrics.csv -> metrics.csv.provenance.json, in the same folder."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def data_rows(text: str, csv_table: bool) -> int:
    """Rows of a table: CSV records after the header; 1 for a JSON document."""
    if not csv_table:
        return 1
    return max(0, sum(1 for _ in csv.reader(io.StringIO(text))) - 1)


def integrity(data: bytes, csv_table: bool) -> dict:
    """What a sidecar records of its table's bytes."""
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
            "rows": data_rows(data.decode("utf-8", errors="replace"), csv_table)}


def _sidecar_text(path, data: bytes, cfg: dict, stage: str, config_hash: str | None,
                  meta: dict | None = None) -> str:
    prov = provenance(cfg, stage)
    if config_hash is not None:
        prov["config_hash"] = config_hash
    doc = {"file": Path(path).name, "provenance": prov,
           "integrity": integrity(data, Path(path).suffix == ".csv")}
    if meta:
        doc["meta"] = meta
    return json_text(doc)


def csv_text(rows: list[dict], columns: list[str]) -> str:
    """The CSV of `rows` (dicts) in `columns` order, floats as %.6g: what write_table takes."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: (f"{r[c]:.6g}" if isinstance(r[c], float) else r[c]) for c in columns})
    return buf.getvalue()


def write_table(path: str | Path, text: str, cfg: dict, stage: str, *,
                config_hash: str | None = None, meta: dict | None = None) -> None:
    """Write a table (CSV text, or a JSON document's text) and its sidecar together,
    atomically: both or neither.

    `config_hash` replaces the hash of `cfg` where a stage already stores another one for the
    same run (e.g. training, whose hash leaves out the thread count), so one run has one hash.
    `meta` (JSON-able) is kept in the sidecar for the table's readers (read_sidecar_meta).
    """
    data = text.encode()
    side = _sidecar_text(path, data, cfg, stage, config_hash, meta)
    write_files_atomic({path: data, sidecar_path(path): side.encode()})


def write_json_table(path: str | Path, doc: dict, cfg: dict, stage: str) -> None:
    """A JSON document (strict: NaN as null) with its sidecar, as write_table."""
    write_table(path, json_text(doc), cfg, stage)


def _read_sidecar_doc(path: Path) -> dict | None:
    try:
        doc = json.loads(sidecar_path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def table_problem(path: str | Path) -> str | None:
    """What is wrong with a table against its sidecar, in words, or None when it matches."""
    path = Path(path)
    doc = _read_sidecar_doc(path)
    if doc is None:
        return (f"its sidecar {sidecar_path(path).name} (provenance, checksum, row count) is "
                "missing or unreadable")
    rec = doc.get("integrity")
    if not isinstance(rec, dict) or "sha256" not in rec:
        return f"its sidecar {sidecar_path(path).name} records no checksum (an older version)"
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() == rec["sha256"]:
        return None
    rows = data_rows(data.decode("utf-8", errors="replace"), path.suffix == ".csv")
    if path.suffix == ".csv" and rows != rec.get("rows"):
        return (f"it holds {rows} rows where {rec.get('rows')} were written (truncated or "
                "edited since)")
    return ("its content differs from what was written (sha256 mismatch: changed or damaged "
            "since; not even one digit may change)")


def check_table(path: str | Path) -> None:
    """Raise TableError naming the file and the rule that remakes it unless the table is what
    its sidecar recorded."""
    problem = table_problem(path)
    if problem:
        raise TableError(f"{path}: {problem}. {remake_hint(path)}")


def read_table_text(path: str | Path) -> str:
    """A table's text, checked against its sidecar (check_table)."""
    check_table(path)
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TableError(f"{path}: not UTF-8 text ({exc}). {remake_hint(path)}") from None


def read_sidecar(path: str | Path) -> dict:
    """The provenance recorded for the table `path` ({} when it has no readable sidecar)."""
    doc = _read_sidecar_doc(Path(path)) or {}
    prov = doc.get("provenance")
    return dict(prov) if isinstance(prov, dict) else {}


def read_sidecar_meta(path: str | Path) -> dict:
    """The `meta` a table's sidecar holds ({} when none)."""
    doc = _read_sidecar_doc(Path(path)) or {}
    meta = doc.get("meta")
    return dict(meta) if isinstance(meta, dict) else {}


def footer(prov: dict) -> str:
    """One line naming what made a text output (the report's summary.md ends with it)."""
    return (f"Provenance: diffclosure {prov.get('diffclosure_version', '?')}, git commit "
            f"{prov.get('git_commit', '?')}, config hash {prov.get('config_hash', '?')}, stage "
            f"{prov.get('stage', '?')}, created {prov.get('created', '?')}.")


def png_metadata() -> dict:
    """PNG text chunks for matplotlib's savefig(metadata=...): version and commit (a figure
    function does not see the config, so no config hash here)."""
    return {"Software": f"diffclosure {__version__} (git {git_commit()})"}
