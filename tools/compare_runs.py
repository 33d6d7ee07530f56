"""Are two pipeline runs the same, bit for bit? Compares every result file of run A with run B.

    python tools/compare_runs.py results/default /elsewhere/results/default

A refactor must not change results: run the default pipeline before and after it, and compare.
Compared exactly: every HDF5 dataset (values, shape, dtype; NaN where NaN) and attribute, every
CSV cell, every JSON value, every tensor of a .pt checkpoint. Not compared, because they differ
between any two runs: provenance (creation time, git commit, package version, host), wall-clock
costs (columns and attributes named like seconds, cost, wall, elapsed), figures and animations
(their metadata holds times), logs and Snakemake's own files. What exists in only one run is
listed as added or missing, apart from what changed: a new output is not a changed result.

Exit status 0 when nothing changed (additions allowed), 1 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

import h5py
import numpy as np

# Values that differ between two runs of the same computation.
# code_version and identity are hashes of the code and inputs behind a checkpoint (for resume
# decisions): a refactor changes them by design, while its weights must stay the same.
VOLATILE = re.compile(r"(created|git_commit|diffclosure_version|host|seconds|cost|wall|elapsed|"
                      r"timing|duration_s|samples_per_s|provenance_time|code_version|identity)",
                      re.IGNORECASE)
SKIPPED_SUFFIXES = {".png", ".mp4", ".gif", ".log", ".tsv", ".md"}


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def compare_hdf5(pa: Path, pb: Path) -> list[str]:
    out = []
    with h5py.File(pa, "r") as fa, h5py.File(pb, "r") as fb:
        names_a, names_b = set(), set()
        fa.visit(names_a.add)
        fb.visit(names_b.add)
        out += [f"missing in B: {n}" for n in sorted(names_a - names_b)]
        out += [f"added in B: {n}" for n in sorted(names_b - names_a)]
        for name in sorted({""} | (names_a & names_b)):
            oa, ob = (fa[name], fb[name]) if name else (fa, fb)
            if isinstance(oa, h5py.Dataset) and not _same(oa[()], ob[()]):
                out.append(f"changed: dataset {name}")
            for key in sorted(set(oa.attrs) | set(ob.attrs)):
                if VOLATILE.search(key) or key in ("DIMENSION_LIST", "REFERENCE_LIST"):
                    continue
                where = f"attribute {name or '/'}:{key}"
                if key not in ob.attrs:
                    out.append(f"missing in B: {where}")
                elif key not in oa.attrs:
                    out.append(f"added in B: {where}")
                elif not _attr_same(oa.attrs[key], ob.attrs[key]):
                    out.append(f"changed: {where}")
    return out


def _attr_same(a, b) -> bool:
    try:
        return _same(a, b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def compare_csv(pa: Path, pb: Path) -> list[str]:
    ra, rb = (list(csv.reader(p.open())) for p in (pa, pb))
    if not ra or not rb or ra[0] != rb[0]:
        return ["changed: header"]
    if len(ra) != len(rb):
        return [f"changed: {len(ra) - 1} rows against {len(rb) - 1}"]
    keep = [i for i, col in enumerate(ra[0]) if not VOLATILE.search(col)]
    return [f"changed: row {j} column {ra[0][i]}" for j, (x, y) in enumerate(zip(ra, rb,
            strict=True)) for i in keep if x[i] != y[i]]


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not VOLATILE.search(k)}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _json_diff(a, b, where: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in a:
            path = f"{where}/{k}" if where else k
            out += (_json_diff(a[k], b[k], path) if k in b else [f"missing in B: key {path}"])
        return out + [f"added in B: key {where}/{k}" if where else f"added in B: key {k}"
                      for k in b if k not in a]
    return [] if a == b else [f"changed: key {where}" if where else "changed"]


def compare_json(pa: Path, pb: Path) -> list[str]:
    a, b = (_strip(json.loads(p.read_text())) for p in (pa, pb))
    return _json_diff(a, b, "")


def compare_checkpoint(pa: Path, pb: Path) -> list[str]:
    import torch

    a, b = (torch.load(p, map_location="cpu", weights_only=False) for p in (pa, pb))
    out = []

    def walk(x, y, where):
        if isinstance(x, torch.Tensor):
            if not (isinstance(y, torch.Tensor) and x.shape == y.shape and x.dtype == y.dtype
                    and torch.equal(x, y)):
                out.append(f"changed: tensor {where}")
        elif isinstance(x, dict) and isinstance(y, dict):
            for k in x.keys() | y.keys():
                if VOLATILE.search(str(k)):
                    continue
                if k not in y:
                    out.append(f"missing in B: {where}/{k}")
                elif k not in x:
                    out.append(f"added in B: {where}/{k}")
                else:
                    walk(x[k], y[k], f"{where}/{k}")
        elif isinstance(x, list | tuple) and isinstance(y, list | tuple) and len(x) == len(y):
            for i, (u, v) in enumerate(zip(x, y, strict=True)):
                walk(u, v, f"{where}[{i}]")
        elif isinstance(x, float | int | np.ndarray | np.generic):
            if not _attr_same(x, y):
                out.append(f"changed: {where}")
        elif x != y:
            out.append(f"changed: {where}")

    walk(a, b, "")
    return out


COMPARERS = {".h5": compare_hdf5, ".csv": compare_csv, ".json": compare_json,
             ".pt": compare_checkpoint}


def compare_runs(a: Path, b: Path) -> dict[str, list[str]]:
    """{relative path: differences} for every result file of either run (empty: identical)."""
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    report = {}
    for rel in sorted(files_a | files_b):
        if rel.suffix in SKIPPED_SUFFIXES or "logs" in rel.parts or "benchmarks" in rel.parts:
            continue
        if rel.name.endswith(".provenance.json"):
            continue
        if rel not in files_b:
            report[str(rel)] = ["missing in B"]
        elif rel not in files_a:
            report[str(rel)] = ["added in B"]
        elif rel.suffix in COMPARERS:
            report[str(rel)] = COMPARERS[rel.suffix](a / rel, b / rel)
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("a", type=Path, help="results/<run> of the first run")
    p.add_argument("b", type=Path, help="results/<run> of the second run")
    args = p.parse_args(argv)
    for d in (args.a, args.b):
        if not d.is_dir():
            p.error(f"{d}: not a folder; pass two results/<run> folders")
    report = compare_runs(args.a, args.b)
    changed = 0
    for rel, diffs in report.items():
        real = [d for d in diffs if not d.startswith("added in B")]
        changed += bool(real)
        status = "CHANGED" if real else ("added" if diffs else "same")
        print(f"{status:<8} {rel}" + "".join(f"\n         {d}" for d in diffs[:8]))
    print(f"\n{len(report)} files compared, {changed} changed")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
