"""Info stage: print the provenance and main parameters of diffclosure output files.

    python -m diffclosure info FILE [FILE ...]

HDF5 files (.h5, .hdf5, .nc): the provenance attributes (version, git commit, config hash, stage,
created), every other root attribute (the parameters), and the datasets with shapes.
JSON files: provenance keys found at the top level or under "provenance", then the rest.
CSV tables (.csv): the provenance from the sidecar <name>.csv.provenance.json beside the table,
then the columns and the number of rows. Tables (CSV, and JSON files with a sidecar) are checked
against the checksum and row count their sidecar recorded: a damaged one fails (exit 1) with the
rule that remakes it.
A folder: every output file in it and below, in order; the exit status is 1 if any failed.
PyTorch checkpoints (.pt, .pth): loaded with torch.load(weights_only=True); prints "settings"
(and "provenance") if present, and the top-level keys.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

from diffclosure.errors import UserFacingError

log = logging.getLogger(__name__)

PROVENANCE_KEYS = ("diffclosure_version", "git_commit", "config_hash", "stage", "created")


def add_arguments(parser) -> None:
    parser.add_argument("files", nargs="+", help="output files (.h5, .json, .csv, .pt)")


def _fmt(value) -> str:
    if hasattr(value, "item") and getattr(value, "size", 2) == 1:
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode()
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _print_mapping(title: str, mapping: dict, indent: str = "  ") -> None:
    print(f"{title}:")
    if not mapping:
        print(f"{indent}(none)")
    for key in sorted(mapping):
        print(f"{indent}{key}: {_fmt(mapping[key])}")


def _split(attrs: dict) -> tuple[dict, dict]:
    prov = {k: attrs[k] for k in PROVENANCE_KEYS if k in attrs}
    rest = {k: v for k, v in attrs.items() if k not in prov}
    return prov, rest


def describe_h5(path: Path) -> None:
    from diffclosure.data.h5io import open_input, read_attrs

    with open_input(path) as fh:
        prov, params = _split(read_attrs(fh))
        _print_mapping("provenance", prov)
        _print_mapping("parameters", params)
        print("datasets:")
        items = []

        def visit(name, obj):
            if hasattr(obj, "shape"):
                items.append((name, obj.shape, obj.dtype))

        fh.visititems(visit)
        for name, shape, dtype in items:
            print(f"  {name}: {shape} {dtype}")


def _integrity(path: Path) -> None:
    """Print the table's check against its sidecar; raise TableError when it fails."""
    from diffclosure.provenance import check_table

    check_table(path)
    print("integrity: matches the checksum and row count recorded in its sidecar")


# JSON outputs of the pipeline that are tables, always written with a sidecar.
JSON_TABLES = ("stats.json", "summary.json")


def describe_json(path: Path) -> None:
    from diffclosure.provenance import SIDECAR_SUFFIX, sidecar_path

    if not path.name.endswith(SIDECAR_SUFFIX) and (path.name in JSON_TABLES
                                                   or sidecar_path(path).exists()):
        _integrity(path)  # a missing sidecar of a table fails here
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserFacingError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        print(f"JSON {type(data).__name__} with {len(data)} entries")
        return
    nested = data.get("provenance") if isinstance(data.get("provenance"), dict) else {}
    prov, rest = _split(data)
    prov.update({k: nested[k] for k in PROVENANCE_KEYS if k in nested})
    rest.pop("provenance", None)
    _print_mapping("provenance", prov)
    _print_mapping("contents", rest)


def describe_csv(path: Path) -> None:
    from diffclosure.provenance import read_sidecar, sidecar_path

    prov = read_sidecar(path)
    _print_mapping("provenance", {k: prov[k] for k in PROVENANCE_KEYS if k in prov})
    if not prov:
        print(f"  ({sidecar_path(path).name} missing or unreadable: the table was made before "
              "tables recorded provenance, or by hand)")
    else:
        _integrity(path)
    try:
        with open(path, newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, [])
            count = sum(1 for _ in reader)  # streamed: metrics.csv can be long
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserFacingError(f"{path}: not a readable CSV table ({exc})") from None
    print(f"columns: {', '.join(header) if header else '(none)'}")
    print(f"rows: {count}")


def describe_pt(path: Path) -> None:
    from diffclosure.model.checkpoint import read_torch

    ckpt = read_torch(path)  # weights_only; names the file when it is not a checkpoint
    settings = ckpt.get("settings")
    prov = ckpt.get("provenance") if isinstance(ckpt.get("provenance"), dict) else {}
    if isinstance(settings, dict):
        prov = {**{k: settings[k] for k in PROVENANCE_KEYS if k in settings}, **prov}
    _print_mapping("provenance", prov)
    if isinstance(settings, dict):
        _print_mapping("settings", {k: v for k, v in settings.items() if k not in PROVENANCE_KEYS})
    elif settings is not None:
        print(f"settings: {_fmt(settings)}")
    print("keys: " + ", ".join(map(str, ckpt)))


KNOWN = {".json": describe_json, ".csv": describe_csv, ".pt": describe_pt,
         ".pth": describe_pt, ".h5": describe_h5, ".hdf5": describe_h5, ".nc": describe_h5,
         ".he5": describe_h5}


def describe(path: str | Path) -> None:
    path = Path(path)
    if not path.exists():
        raise UserFacingError(f"{path}: file not found")
    if path.is_dir():
        raise UserFacingError(f"{path}: a folder (main() describes each file in it)")
    print(f"== {path}")
    handler = KNOWN.get(path.suffix.lower())
    if handler is None:
        raise UserFacingError(
            f"{path}: unknown file type {path.suffix or '(none)'}; expected .h5, .json, .csv or"
            " .pt (or a folder of them)"
        )
    handler(path)


def outputs_in(folder: Path) -> list[Path]:
    """The output files under a folder that info describes (sidecars are read with their
    tables, not listed on their own)."""
    from diffclosure.provenance import SIDECAR_SUFFIX

    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in KNOWN
                  and not p.name.endswith(SIDECAR_SUFFIX) and not p.name.startswith("."))


def main(args) -> int:
    paths = []
    for arg in map(Path, args.files):
        if arg.is_dir():
            found = outputs_in(arg)
            if not found:
                raise UserFacingError(f"{arg}: a folder with no output files (.h5, .json, "
                                      ".csv, .pt) in it")
            paths += found
        else:
            paths.append(arg)
    if len(paths) == 1:
        describe(paths[0])
        return 0
    failed = []
    for path in paths:
        try:
            describe(path)
        except UserFacingError as exc:
            print(f"FAILED: {exc}")
            failed.append(path)
    if failed:
        log.error("%d of %d files failed their check: %s", len(failed), len(paths),
                  ", ".join(map(str, failed)))
        return 1
    return 0
