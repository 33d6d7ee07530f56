"""Dataset splits as normalised torch tensors for training.

DATASET_DIR/{train,val}.h5 hold `target` and the condition channels named (in order) by the root
attribute "conditions" (JSON list), each (trajectory, time, y, x) float32; stats.json holds the
mean/std of every channel from the training split (measurements use the target's). Samples are
the (trajectory, time) pairs flattened to one index.

Both dataset kinds expose `get_batch(indices) -> (target (B,1,n,n), cond (B,C,n,n))` so the
training loop does not care whether the data sit in memory (default when they fit) or are read
lazily from HDF5; `place_splits` moves in-memory splits to a GPU when they fit there. stats.json
is read by data.stats, which needs no torch.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from diffclosure.data.h5io import DataFileError, open_input
from diffclosure.data.stats import check_digest, load_stats, stats_key
from diffclosure.errors import remake_hint

log = logging.getLogger(__name__)


def pick_indices(total: int, count: int) -> np.ndarray:
    """`count` sample indices spread evenly over `total` (all of them if count >= total)."""
    if count >= total:
        return np.arange(total)
    return np.unique(np.round(np.linspace(0, total - 1, count)).astype(int))


def check_layout(fh, path, conditions) -> tuple[int, ...]:
    """Shape of 'target', checked to be (trajectory, time, n, n) and shared by the conditions."""
    shape = fh["target"].shape
    if len(shape) != 4 or shape[-1] != shape[-2]:
        raise DataFileError(
            f"{path}: field 'target' has shape {shape}, expected (trajectory, time, n, n)"
        )
    for c in conditions:
        if fh[c].shape != shape:
            raise DataFileError(
                f"{path}: field '{c}' has shape {fh[c].shape}, but 'target' has {shape}"
            )
    return shape


def read_conditions(fh, path: Path) -> list[str]:
    raw = fh.attrs.get("conditions")
    if raw is None:
        raise DataFileError(
            f"{path}: lacks the root attribute 'conditions'. {remake_hint(path)}"
        )
    if isinstance(raw, bytes):
        raw = raw.decode()
    try:
        names = json.loads(raw) if isinstance(raw, str) else [str(x) for x in raw]
    except json.JSONDecodeError:
        raise DataFileError(f"{path}: attribute 'conditions' is not a JSON list: {raw!r}") from None
    if not isinstance(names, list):
        raise DataFileError(f"{path}: attribute 'conditions' is not a list: {raw!r}")
    return [str(x) for x in names]


def _normalisers(names: list[str], stats: dict, path: Path) -> list[tuple[float, float]]:
    out = []
    for name in ["target", *names]:
        key = stats_key(name)
        if key not in stats:
            raise DataFileError(
                f"{path.parent / 'stats.json'}: no statistics for channel '{name}' (key '{key}')."
                f" {remake_hint(path)}"
            )
        out.append((float(stats[key]["mean"]), float(stats[key]["std"])))
    return out


class InMemorySplit(torch.utils.data.Dataset):
    """All samples as float32 tensors: target (N,1,n,n), cond (N,C,n,n)."""

    def __init__(self, target: torch.Tensor, cond: torch.Tensor, conditions: list[str], path=None):
        self.target, self.cond, self.conditions, self.path = target, cond, conditions, path

    @property
    def n(self) -> int:
        return self.target.shape[-1]

    def __len__(self) -> int:
        return self.target.shape[0]

    def __getitem__(self, i):
        return self.target[i], self.cond[i]

    @property
    def device(self) -> torch.device:
        return self.target.device

    @property
    def nbytes(self) -> int:
        return self.target.nbytes + self.cond.nbytes

    def to(self, device) -> InMemorySplit:
        """The split with its tensors on `device` (batches are then gathered there)."""
        return InMemorySplit(self.target.to(device), self.cond.to(device), self.conditions,
                             self.path)

    def get_batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples `idx` (best on the split's device: no index transfer)."""
        return self.target[idx], self.cond[idx]


class StreamedSplit(torch.utils.data.Dataset):
    """Reads samples from HDF5 on demand (datasets larger than memory).

    The file is opened lazily in each process (h5py handles must not cross a fork).
    """

    def __init__(self, path: Path, conditions: list[str], norms, shape: tuple[int, int, int]):
        self.path, self.conditions, self.norms = path, conditions, norms
        self.n_traj, self.n_time, self._n = shape[0], shape[1], shape[-1]
        self._fh = None

    @property
    def n(self) -> int:
        return self._n

    def __len__(self) -> int:
        return self.n_traj * self.n_time

    def _file(self):
        if self._fh is None:
            self._fh = open_input(self.path)
        return self._fh

    def _read(self, name: str, traj: np.ndarray, time: np.ndarray, mean: float, std: float):
        ds = self._file()[name]
        arr = np.stack([ds[i, j] for i, j in zip(traj, time, strict=True)]).astype(np.float32)
        return (arr - np.float32(mean)) / np.float32(std)

    def get_batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        traj, time = np.divmod(idx, self.n_time)
        channels = [
            self._read(name, traj, time, *norm)
            for name, norm in zip(["target", *self.conditions], self.norms, strict=True)
        ]
        target = torch.from_numpy(channels[0])[:, None]
        cond = torch.from_numpy(np.stack(channels[1:], axis=1)) if self.conditions else (
            torch.zeros(len(idx), 0, self.n, self.n)
        )
        return target, cond

    def __getitem__(self, i):
        t, c = self.get_batch(torch.tensor([i]))
        return t[0], c[0]

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_fh"] = None
        return state


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def load_split(
    dataset_dir: str | Path,
    split: str,
    stats: dict | None = None,
    in_memory: bool | None = None,
    memory_fraction: float = 0.4,
):
    """Load DATASET_DIR/<split>.h5 normalised with stats.json.

    in_memory=None decides by size: in memory when all channels take less than
    `memory_fraction` of the available RAM, else streamed from the file.
    """
    dataset_dir = Path(dataset_dir)
    stats = load_stats(dataset_dir) if stats is None else stats
    path = dataset_dir / f"{split}.h5"
    with open_input(path, required=("target",)) as fh:
        conditions = read_conditions(fh, path)
        absent = [c for c in conditions if c not in fh]
        if absent:
            raise DataFileError(
                f"{path}: attribute 'conditions' names {absent} but the file lacks those fields."
                f" {remake_hint(path)}"
            )
        shape = check_layout(fh, path, conditions)
        if "conditions" in stats and list(stats["conditions"]) != conditions:
            raise DataFileError(
                f"{path}: conditions {conditions} differ from stats.json's {stats['conditions']};"
                f" the dataset folder mixes runs. {remake_hint(path)}"
            )
        norms = _normalisers(conditions, stats, path)
        nbytes = 4 * int(np.prod(shape)) * (1 + len(conditions))
        if in_memory is None:
            in_memory = nbytes < memory_fraction * _available_memory()
            if not in_memory:
                log.info("%s: %.1f GiB does not fit in memory; streaming", path, nbytes / 2**30)
        if not in_memory:
            return StreamedSplit(path, conditions, norms, shape)
        n_samples, n = shape[0] * shape[1], shape[-1]
        chans = []
        for name, (mean, std) in zip(["target", *conditions], norms, strict=True):
            arr = fh[name][...].astype(np.float32).reshape(n_samples, n, n)
            chans.append(torch.from_numpy((arr - np.float32(mean)) / np.float32(std)))
    target = chans[0][:, None].contiguous()
    cond = torch.stack(chans[1:], dim=1) if conditions else torch.zeros(n_samples, 0, n, n)
    return InMemorySplit(target, cond, conditions, path)


# How far the training split, normalised with stats.json, may be from mean 0 and std 1: the
# statistics are those of this very split (float64 sums of float32 data: ~1e-6 off).
NORMALISED_TOLERANCE = 1e-3


def _mean_std(values: torch.Tensor, chunk: int = 256) -> tuple[float, float]:
    """Mean and std (population) of a float32 tensor, summed in float64 a chunk of samples at a
    time: no float64 copy of a whole channel."""
    total = squares = 0.0
    for lo in range(0, values.shape[0], chunk):
        part = values[lo:lo + chunk].double()
        total += float(part.sum())
        squares += float((part * part).sum())
    count = values.numel()
    mean = total / count
    return mean, max(squares / count - mean * mean, 0.0) ** 0.5


def check_normalised(split, stats_path: Path) -> None:
    """Fail unless the training split, normalised with stats.json, has mean 0 and std 1 in
    every channel with statistics of its own (measurements share the target's): stats.json
    then describes this split, whatever its sidecar says. Streamed splits are not read whole
    and are skipped."""
    if not isinstance(split, InMemorySplit):
        return
    channels = {"target": split.target[:, 0]}
    channels.update({c: split.cond[:, i] for i, c in enumerate(split.conditions)
                     if c != "measurements"})
    for name, values in channels.items():
        mean, std = _mean_std(values)
        if abs(mean) > NORMALISED_TOLERANCE or abs(std - 1.0) > NORMALISED_TOLERANCE:
            raise DataFileError(
                f"{stats_path}: its '{stats_key(name)}' statistics do not describe "
                f"{split.path} (normalised with them, its '{name}' has mean {mean:.3g} and std "
                f"{std:.3g} instead of 0 and 1): stats.json was changed or belongs to other data."
                f" {remake_hint(stats_path)}")


def load_training_splits(dataset_dir: str | Path, in_memory: bool | None = None):
    """(stats, train split, val split) of a dataset folder, checked before any work: each file
    is the one stats.json describes (its digests), the statistics describe the training split
    (check_normalised), and the two splits agree in conditions and grid."""
    dataset_dir = Path(dataset_dir)
    stats = load_stats(dataset_dir)
    for split in ("train", "val"):
        check_digest(stats, dataset_dir / f"{split}.h5")
    train_set = load_split(dataset_dir, "train", stats, in_memory)
    val_set = load_split(dataset_dir, "val", stats, in_memory)
    check_normalised(train_set, dataset_dir / "stats.json")
    if train_set.conditions != val_set.conditions or train_set.n != val_set.n:
        raise DataFileError(f"{dataset_dir}: train.h5 and val.h5 differ in conditions or grid "
                            f"size. {remake_hint(dataset_dir / 'train.h5')}")
    if len(train_set) == 0 or len(val_set) == 0:
        raise DataFileError(f"{dataset_dir}: the train or validation split is empty")
    return stats, train_set, val_set


# Fraction of the free GPU memory the in-memory training and validation splits may take to be
# kept on the device (the rest is for the network, activations and the optimiser).
DEVICE_DATA_FRACTION = 0.3


def place_splits(train_set, val_set, device: torch.device):
    """Move in-memory splits to a CUDA device when they fit (batches are then gathered there,
    with no per-step host-to-device copy); otherwise leave them on the host."""
    if device.type != "cuda" or not all(isinstance(s, InMemorySplit)
                                        for s in (train_set, val_set)):
        return train_set, val_set
    need = train_set.nbytes + val_set.nbytes
    free, _ = torch.cuda.mem_get_info(device)
    if need > DEVICE_DATA_FRACTION * free:
        log.info("data (%.2f GiB) kept on the host: more than %.0f%% of the free GPU memory",
                 need / 2**30, 100 * DEVICE_DATA_FRACTION)
        return train_set, val_set
    log.info("data (%.2f GiB) kept on %s", need / 2**30, device)
    return train_set.to(device), val_set.to(device)


def index_device(split) -> torch.device:
    """Where a split wants its batch indices: its own device (in memory) or the host."""
    return split.device if isinstance(split, InMemorySplit) else torch.device("cpu")
