"""Atomic file writes, and a full disk said plainly.

Every output is written under a temporary name `.NAME.tmp-<host>-<pid>[.suffix]` in its own
folder, flushed to the disk and renamed onto NAME only when complete, so a reader never sees a
half-written file. A new write of NAME first deletes the temporaries that killed jobs left behind.

A full disk (ENOSPC, or a full quota) while writing becomes DiskFullError naming the file, with the
partial temporary removed; `check_free_space` refuses, before the compute, an output whose size is
known and does not fit.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import re
import shutil
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from diffclosure.errors import UserFacingError

log = logging.getLogger(__name__)

# HDF5 metadata, checksums and chunk indexes on top of the raw array bytes, and room left for
# the other jobs writing to the same disk at the same time.
SPACE_MARGIN = 0.05
SPACE_SLACK = 16 * 2**20

_NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# h5py and torch wrap the C library's error in their own text; the errno survives only there.
_NO_SPACE_TEXT = re.compile(r"No space left on device|Disk quota exceeded|errno = (28|122)\b")


class DiskFullError(UserFacingError):
    """An output does not fit on its file system; the message names the path and the sizes."""


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether `exc`, or an error it was raised from, says the disk (or the quota) is full."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE_ERRNOS:
            return True
        if _NO_SPACE_TEXT.search(str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def size_text(nbytes: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(nbytes) < 1000:
            return f"{nbytes:.3g} {unit}"
        nbytes /= 1000
    return f"{nbytes:.3g} TB"


def _free(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def disk_full_error(path: str | Path) -> DiskFullError:
    """The error for a write of `path` that ran out of space (the partial file is gone)."""
    free = _free(Path(path).parent)
    now = "" if free is None else f" ({size_text(free)} free there now)"
    return DiskFullError(
        f"disk full while writing {path}{now}; the partial file was removed. Free some space "
        "(or write the results to another disk) and rerun the same command."
    )


def check_free_space(path: str | Path, nbytes: int) -> None:
    """Fail before any compute when the file system of `path` cannot hold about `nbytes` more."""
    folder = Path(path).parent
    folder.mkdir(parents=True, exist_ok=True)
    need = int(nbytes * (1 + SPACE_MARGIN)) + SPACE_SLACK
    free = _free(folder)
    if free is not None and free < need:
        raise DiskFullError(
            f"not enough disk space for {path}: it needs about {size_text(need)} "
            f"({size_text(nbytes)} of data plus a margin) and {folder} has {size_text(free)} "
            "free. Free some space or write the results to another disk, then rerun."
        )


# ----------------------------------------------------------------------------- temporaries
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


def host() -> str:
    """This machine's name, reduced to [A-Za-z0-9_] so temporary names parse unambiguously."""
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"


def tmp_name(path: Path, suffix: str = "") -> Path:
    return path.with_name(f".{path.name}.tmp-{host()}-{os.getpid()}{suffix}")


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
    this_host = host()
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
        if m.group(1) != this_host or pid == os.getpid() or _pid_running(pid):
            continue
        with contextlib.suppress(FileNotFoundError):
            entry.unlink()
            removed.append(entry)
            log.info("removed %s, left by a killed job (pid %d)", entry, pid)
    return removed


def _fsync(path: Path) -> None:
    """Force the bytes to the disk: some file systems (NFS, quotas) report a full disk only here,
    and a file renamed before its bytes are stored can come back empty after a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard(tmp: Path, exc: BaseException, path: Path) -> BaseException:
    """Remove the temporary of a failed write; the error to raise in place of `exc`."""
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    return disk_full_error(path) if is_disk_full(exc) else exc


@contextlib.contextmanager
def atomic_path(path: str | Path, keep_suffix: bool = True) -> Iterator[Path]:
    """A temporary path beside `path`, renamed onto it when the block succeeds.

    keep_suffix=False leaves NAME's suffix off the temporary (so `*.h5` globs never match it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = tmp_name(path, path.suffix if keep_suffix else "")
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        error = _discard(tmp, exc, path)
        if error is exc:
            raise
        raise error from None


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def write_files_atomic(contents: Mapping[str | Path, bytes]) -> None:
    """Write several files that belong together (a table and its provenance sidecar) as one.

    Every temporary is complete before the first rename, and a failure at any point leaves none
    of the new files: never a sidecar describing a table that was not written, or the reverse.
    """
    staged: list[tuple[Path, Path]] = []
    renamed: list[Path] = []
    path = None
    try:
        for path, data in contents.items():
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(path)
            staged.append((path, tmp_name(path, path.suffix)))
            staged[-1][1].write_bytes(data)
            _fsync(staged[-1][1])
        for path, tmp in staged:
            os.replace(tmp, path)
            renamed.append(path)
    except BaseException as exc:
        for done in renamed:
            done.unlink(missing_ok=True)
        error = exc
        for _, tmp in staged:
            error = _discard(tmp, exc, path)
        if error is exc:
            raise
        raise error from None


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


def json_text(doc) -> str:
    """`doc` as strict JSON (non-finite numbers become null), indented."""
    return json.dumps(json_safe(doc), indent=2, allow_nan=False) + "\n"


def write_json_atomic(path: str | Path, doc) -> None:
    write_text_atomic(path, json_text(doc))
