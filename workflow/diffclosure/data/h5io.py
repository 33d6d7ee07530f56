"""HDF5 conventions: atomic writes, named dimensions, parameters as attributes.

Fields are float32 on disk with layout (trajectory, time, y, x). Dimension scales are
attached so `xarray.open_dataset(path, engine="h5netcdf")` shows named dims. Every dataset,
coordinates included, carries Fletcher-32 checksums, so a file whose data bytes were damaged
fails on read instead of handing garbage values to the next stage.

Every read goes through `open_input`: any error while opening the file or reading a dataset
becomes DataFileError naming the file, the dataset and the command that remakes it. Every output
is written through `atomic_h5` (diffclosure.atomic: temporary name, renamed when complete).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import h5py
import numpy as np

from diffclosure.atomic import atomic_path, check_free_space
from diffclosure.errors import UserFacingError, remake_hint

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


@contextlib.contextmanager
def atomic_h5(path: str | Path, expected_bytes: int | None = None) -> Iterator[h5py.File]:
    """Open `path` for writing under a temporary name; rename only when the block succeeds.

    `expected_bytes` (the array bytes the block will write) is checked against the free disk
    space before the block runs. A failed block (a full disk included) removes the temporary.
    """
    path = Path(path)
    if expected_bytes is not None:
        check_free_space(path, expected_bytes)
    with atomic_path(path, keep_suffix=False) as tmp:
        # No chunk cache: our writers write whole chunks, and without one a full disk fails the
        # write that hits it, not the final close after all the compute.
        fh = h5py.File(tmp, "w", rdcc_nbytes=0)
        try:
            yield fh
            fh.flush()
        except BaseException:
            _abandon(fh, tmp)
            raise
        fh.close()


def _abandon(fh: h5py.File, tmp: Path) -> None:
    """Close a file whose write failed, once. Closing flushes HDF5's metadata; when that fails too
    (a full disk), HDF5 is left half-closed and crashes at exit (segfault). Emptying the file
    first frees its space, so the flush of the (small) metadata succeeds."""
    with contextlib.suppress(OSError):
        os.truncate(tmp, 0)
    try:
        fh.close()
    except Exception as exc:  # noqa: BLE001 (the block's own error is the one to report)
        log.debug("closing the abandoned %s failed: %s", tmp, exc)


def add_array(fh: h5py.Group, name: str, values) -> h5py.Dataset:
    """A small array (coordinates, ids) with a Fletcher-32 checksum, like the fields: a damaged
    time or grid value fails on read instead of silently shifting results."""
    values = np.asarray(values)
    if values.ndim == 0 or values.size == 0:  # HDF5 cannot chunk these, so no checksum either
        return fh.create_dataset(name, data=values)
    return fh.create_dataset(name, data=values, chunks=values.shape, fletcher32=True)


def add_coordinate(fh: h5py.File, name: str, values, attrs: Mapping | None = None) -> h5py.Dataset:
    ds = add_array(fh, name, values)
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


# ----------------------------------------------------------------------------- reading
def damaged(path, what: str, exc: BaseException) -> DataFileError:
    """The error for a file whose bytes are damaged (checksum, truncation, broken metadata)."""
    return DataFileError(
        f"{path}: damaged HDF5 file, {what} cannot be read ({exc}). {remake_hint(path)}"
    )


class _Checked:
    """Opening a member fails with DataFileError naming the file and the member."""

    def __getitem__(self, name):
        try:
            obj = super().__getitem__(name)
        except KeyError as exc:  # h5py says KeyError both for "absent" and "header unreadable"
            if not isinstance(name, str) or not self._has_link(name):
                raise
            raise damaged(self.file.filename, f"'{name}' in {self.name}", exc) from None
        except (OSError, RuntimeError) as exc:
            raise damaged(self.file.filename, f"'{name}' in {self.name}", exc) from None
        if isinstance(obj, h5py.Dataset):
            return CheckedDataset(obj.id)
        if isinstance(obj, h5py.Group):
            return CheckedGroup(obj.id)
        return obj

    def _has_link(self, name: str) -> bool:
        try:
            return super().__contains__(name)
        except (OSError, RuntimeError):
            return True


class CheckedGroup(_Checked, h5py.Group):
    pass


class CheckedDataset(h5py.Dataset):
    """Reading fails with DataFileError naming the file and the dataset (h5py's own error, e.g.
    "filter returned failure during read" for a checksum mismatch, names neither)."""

    def _damaged(self, exc) -> DataFileError:
        return damaged(self.file.filename, f"dataset '{self.name}'", exc)

    def __getitem__(self, args, new_dtype=None):
        try:
            return super().__getitem__(args, new_dtype=new_dtype)
        except (OSError, RuntimeError) as exc:
            raise self._damaged(exc) from None

    def read_direct(self, *args, **kwargs):  # np.asarray(dataset) reads through here
        try:
            return super().read_direct(*args, **kwargs)
        except (OSError, RuntimeError) as exc:
            raise self._damaged(exc) from None


class InputFile(_Checked, h5py.File):
    """A read-only HDF5 input whose every member and read fails naming the file (open_input)."""


# Datasets up to this many values are read (and so checksum-verified) when a file is opened.
SMALL_DATASET = 2**16


def _verify_small_datasets(fh: InputFile) -> None:
    """Read every small dataset (coordinates, ids, lattice positions: kilobytes) once, so that a
    damaged time or grid value fails in every stage that opens the file, not only in the stages
    that happen to read it."""
    names = []
    fh.visititems(lambda name, obj: names.append(name)
                  if isinstance(obj, h5py.Dataset) and obj.size <= SMALL_DATASET else None)
    for name in names:
        fh[name][()]


def open_input(path: str | Path, required: tuple[str, ...] = ()) -> InputFile:
    """Open an input HDF5 file read-only; fail clearly if it is missing, corrupt or incomplete.

    Datasets read from it raise DataFileError (file, dataset, fix) on damaged bytes.
    """
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"{path}: file not found; run the stage that makes it first")
    try:
        fh = InputFile(path, "r")
    except OSError as exc:
        raise DataFileError(
            f"{path}: not a readable HDF5 file (truncated or corrupted?): {exc}. "
            f"{remake_hint(path)}"
        ) from None
    try:
        missing = [r for r in required if r not in fh]
        _verify_small_datasets(fh)
    except DataFileError:  # (a RuntimeError too, so caught first)
        fh.close()
        raise
    except (OSError, RuntimeError) as exc:  # damaged metadata (e.g. a group's symbol table)
        fh.close()
        raise damaged(path, "its list of fields", exc) from None
    if missing:
        fh.close()
        raise DataFileError(
            f"{path}: lacks field(s) {', '.join(missing)}; it was not made by this version of "
            f"the pipeline or with this target. {remake_hint(path)}"
        )
    return fh


def read_attrs(obj: h5py.HLObject) -> dict:
    out = {}
    try:
        items = list(obj.attrs.items())
    except (OSError, RuntimeError) as exc:  # damaged metadata opens fine and fails only here
        raise damaged(obj.file.filename, f"the attributes of {obj.name}", exc) from None
    for k, v in items:
        if isinstance(v, bytes):
            v = v.decode()
        if isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out
