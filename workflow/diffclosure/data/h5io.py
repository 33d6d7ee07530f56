"""HDF5 conventions: atomic writes, named dimensions, parameters as attributes.

Fields are float32 on disk with layout (trajectory, time, y, x). Dimension scales are
attached so `xarray.open_dataset(path, engine="h5netcdf")` shows named dims. Field chunks carry
Fletcher-32 checksums, so a file whose data bytes were damaged fails on read (OSError) instead
of handing garbage values to the next stage.

Every output is written under a temporary name `.NAME.tmp-<host>-<pid>` and renamed when complete; a
new write of NAME first deletes the temporaries that killed jobs left behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path

import h5py
import numpy as np

from diffclosure.errors import UserFacingError

log = logging.getLogger(__name__)


class DataFileError(UserFacingError):
    """An input file is missing, truncated, corrupted or lacks a field; the message names it."""


def _attr_value(v):
    if isinstance(v, (dict, list, tuple)) and not (
        isinstance(v, (list, tuple)) and v and all(isinstance(x, (int, float)) for x in v)
    ):
        return json.dumps(v, sort_keys=True, default=str)
    if v is None:
        return "null"
    return v


def flatten(d: Mapping, prefix: str = "") -> dict:
    """{'noise': {'sigma': 1}} -> {'noise.sigma': 1}, for HDF5 attributes."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def set_attrs(obj: h5py.HLObject, attrs: Mapping) -> None:
    for k, v in flatten(attrs).items():
        obj.attrs[k] = _attr_value(v)


def _pid_running(pid: int) -> bool:
    """Whether process `pid` exists on this machine (signal 0 only checks, sends nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OverflowError:  # not a pid this system could have
        return False
    return True


def _host() -> str:
    """This machine's name, reduced to [A-Za-z0-9_] so temporary names parse unambiguously."""
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"


def _tmp_name(path: Path, suffix: str = "") -> Path:
    return path.with_name(f".{path.name}.tmp-{_host()}-{os.getpid()}{suffix}")


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete `.NAME.tmp-<host>-<pid>*` beside `path` left by writers that no longer run.

    Only temporaries written on this host are considered: on a shared file system a pid says
    nothing about a writer on another node (a SLURM retry may run there).

    A job killed with SIGKILL cannot clean up its temporary file. Snakemake runs one job per
    output, so when a new write of NAME starts, a temporary of NAME whose writer is gone can only
    be such a leftover. Temporaries of live processes are kept (the pid check is conservative:
    a reused pid keeps a leftover one more time, never deletes a live writer's file).
    """
    path = Path(path)
    prefix = f".{path.name}.tmp-"
    pattern = re.compile(re.escape(prefix) + r"([A-Za-z0-9_]+)-(\d+)(\..*)?")
    host = _host()
    removed = []
    try:
        entries = list(path.parent.iterdir())
    except FileNotFoundError:
        return removed
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if not m:
            continue
        pid = int(m.group(2))
        if m.group(1) != host or pid == os.getpid() or _pid_running(pid):
            continue
        with contextlib.suppress(FileNotFoundError):
            entry.unlink()
            removed.append(entry)
            log.info("removed %s, left by a killed job (pid %d)", entry, pid)
    return removed


@contextlib.contextmanager
def atomic_h5(path: str | Path) -> Iterator[h5py.File]:
    """Open `path` for writing under a temporary name; rename only when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = _tmp_name(path)
    try:
        with h5py.File(tmp, "w") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path`, renamed onto it when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = _tmp_name(path, path.suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def json_safe(value):
    """`value` with every non-finite float (NaN, +-inf) replaced by None, numpy scalars as
    Python numbers: NaN is not JSON, and strict readers (jq, browsers) reject it."""
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_atomic(path: str | Path, doc) -> None:
    """Write `doc` as strict JSON (non-finite numbers become null), indented, atomically."""
    write_text_atomic(path, json.dumps(json_safe(doc), indent=2, allow_nan=False) + "\n")


def add_coordinate(fh: h5py.File, name: str, values, attrs: Mapping | None = None) -> h5py.Dataset:
    ds = fh.create_dataset(name, data=np.asarray(values))
    ds.make_scale(name)
    if attrs:
        set_attrs(ds, attrs)
    return ds


def add_field(
    fh: h5py.File,
    name: str,
    data,
    dims: tuple[str, ...],
    attrs: Mapping | None = None,
    dtype=np.float32,
) -> h5py.Dataset:
    """Write a field and attach the named coordinate scales (which must already exist)."""
    data = np.asarray(data, dtype=dtype)
    chunks = (1,) * (data.ndim - 2) + data.shape[-2:] if data.ndim >= 2 else None
    ds = fh.create_dataset(name, data=data, chunks=chunks, fletcher32=chunks is not None)
    for axis, dim in enumerate(dims):
        if dim in fh:
            ds.dims[axis].attach_scale(fh[dim])
    if attrs:
        set_attrs(ds, attrs)
    return ds


def create_field(
    fh: h5py.File, name: str, shape: tuple[int, ...], dims: tuple[str, ...], dtype=np.float32
) -> h5py.Dataset:
    """An empty field filled incrementally (e.g. record by record during a simulation)."""
    chunks = (1,) * (len(shape) - 2) + tuple(shape[-2:])
    ds = fh.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks, fletcher32=True)
    for axis, dim in enumerate(dims):
        if dim in fh:
            ds.dims[axis].attach_scale(fh[dim])
    return ds


def open_input(path: str | Path, required: tuple[str, ...] = ()) -> h5py.File:
    """Open an input HDF5 file read-only; fail clearly if it is missing, corrupt or incomplete."""
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"{path}: file not found; run the stage that makes it first")
    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise DataFileError(
            f"{path}: not a readable HDF5 file (truncated or corrupted?): {exc}. "
            "Delete it and rerun the stage that makes it."
        ) from None
    try:
        missing = [r for r in required if r not in fh]
    except (OSError, RuntimeError) as exc:  # damaged metadata (e.g. a group's symbol table)
        fh.close()
        raise DataFileError(
            f"{path}: corrupted HDF5 file ({exc}). Delete it and rerun the stage that makes it."
        ) from None
    if missing:
        fh.close()
        raise DataFileError(
            f"{path}: lacks field(s) {', '.join(missing)}; it was not made by this version of "
            "the pipeline or with this target. Rerun the stage that makes it."
        )
    return fh


def read_attrs(obj: h5py.HLObject) -> dict:
    out = {}
    for k, v in obj.attrs.items():
        if isinstance(v, bytes):
            v = v.decode()
        if isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out
