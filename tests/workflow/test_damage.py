"""Damaged data named, a full disk said plainly (issue #11).

Every kind of HDF5 file the pipeline passes between stages is damaged by one flipped bit, in a
field's chunk and in a coordinate value, and the stage that reads it must stop with an error
that names the file, the dataset and the command that remakes it (no traceback, non-zero exit).
A full disk is simulated before the compute (free space reported by shutil.disk_usage) and while
writing (ENOSPC from the write): a plain message, and nothing left that looks complete.

Inputs come from the tiny pipeline run shared with test_end_to_end.py (support/pipeline.py); every
damaged file is a copy.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import h5py
import pytest

from diffclosure import atomic, cli
from diffclosure.stages import coarse as coarse_stage
from diffclosure.stages import dataset as dataset_stage
from diffclosure.stages import dns as dns_stage
from diffclosure.stages import rollout as rollout_stage

from support.pipeline import (
    assert_clear_failure,
    env,
    run_cli,
    sections_json,
)

pytestmark = pytest.mark.slow  # the quick tier (-m "not slow") skips this module


def flip_bit(path: Path, dataset: str, chunk: int = 0) -> None:
    """Flip the lowest bit of the first stored byte of one chunk of `dataset`, as a failing disk
    or a bad copy would. In a coordinate this is a tiny change of its first value (the low byte
    of a little-endian number): exactly what went unnoticed before coordinates had checksums."""
    with h5py.File(path, "r") as fh:
        offset = fh[dataset].id.get_chunk_info(chunk).byte_offset
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)[0]
        fh.seek(offset)
        fh.write(bytes([byte ^ 1]))


def copy_folder(out: Path, tmp_path: Path, folder: str) -> Path:
    """A copy of results/<run>/<folder> under tmp_path/<folder> (the folder name tells the error
    which rule remakes the file)."""
    return Path(shutil.copytree(out / folder, tmp_path / folder))


# ----------------------------------------------------------------------------- damaged data
# file (under results/<run>/), a field to damage, a coordinate to damage, the rule that makes
# the file, and the stage that reads it.
FILES = {
    "coarse shard": ("coarse/shard-0.h5", "n16/target", "n16/time", "coarse", "dataset"),
    "train split": ("dataset/train.h5", "target", "time", "dataset", "train"),
    "val split": ("dataset/val.h5", "vorticity", "time", "dataset", "train"),
    "test split": ("dataset/test.h5", "target", "time", "dataset", "sample-benchmark"),
    "test split at 32": ("dataset/test-32.h5", "measurements", "x", "dataset",
                         "sample-benchmark"),
    "rollout file": ("rollout/none.h5", "vorticity", "time", "rollout", "rollout-metrics"),
}


def run_reader(stage: str, out: Path, tmp_path: Path, newout: Path):
    """Run `stage` on the damaged copies under tmp_path (the rest from the tiny run), writing
    to `newout`."""
    if stage == "dataset":
        shards = sorted((tmp_path / "coarse").glob("shard-*.h5"))
        return run_cli("dataset", "--config", sections_json("coarse", "measurements", "dataset"),
                       "--inputs", *shards, "--outdir", newout)
    if stage == "train":
        return run_cli("train", "--config",
                       sections_json("device", "sde", "model", "train", train={"epochs": 1}),
                       "--data", tmp_path / "dataset", "--outdir", newout)
    if stage == "sample-benchmark":
        return run_cli("sample-benchmark", "--config", sections_json("device", "sde", "sampling"),
                       "--data", tmp_path / "dataset", "--model", out / "model" / "score.pt",
                       "--outdir", newout)
    return run_cli("rollout-metrics", "--config", sections_json("rollout", "report"),
                   "--inputs", tmp_path / "rollout" / "none.h5", out / "rollout" / "true.h5",
                   "--outdir", newout)


@pytest.mark.parametrize("where", ["field", "coordinate"])
@pytest.mark.parametrize("kind", list(FILES))
def test_a_damaged_file_is_named_with_the_command_that_remakes_it(out, tmp_path, kind, where):
    rel, field, coordinate, rule, reader = FILES[kind]
    folder, name = rel.split("/")
    path = copy_folder(out, tmp_path, folder) / name
    dataset = field if where == "field" else coordinate
    flip_bit(path, dataset)
    newout = tmp_path / "new"
    res = run_reader(reader, out, tmp_path, newout)
    assert_clear_failure(res, str(path), f"'/{dataset}'", f"--forcerun {rule}")
    assert not newout.exists() or not any(newout.rglob("*"))


# ----------------------------------------------------------------------------- full disk
def in_process(*argv, caplog) -> tuple[int, str]:
    """cli.main(argv) in this process (so that monkeypatches apply); its exit code and the last
    error it logged."""
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="diffclosure"):
        rc = cli.main([str(a) for a in argv])
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    return rc, errors[-1] if errors else ""


def stage_args(stage: str, out: Path, output: Path) -> list:
    """Arguments of `stage` run on the tiny run's inputs, writing `output`."""
    if stage == "dns":
        return ["dns", "--config", sections_json("dns"), "--shard", 0, "--output", output]
    if stage == "coarse":
        return ["coarse", "--config", sections_json("coarse"), "--input",
                out / "dns" / "shard-0.h5", "--output", output]
    if stage == "dataset":
        return ["dataset", "--config", sections_json("coarse", "measurements", "dataset"),
                "--inputs", *sorted((out / "coarse").glob("shard-*.h5")),
                "--outdir", output.parent]
    return ["rollout", "--config",
            sections_json("device", "dns", "coarse", "measurements", "sde", "rollout"),
            "--closure", "none", "--dns", *sorted((out / "dns").glob("shard-*.h5")),
            "--data", out / "dataset", "--output", output]


# The real output each stage would write (its size checks the estimate) and the function whose
# call means the compute has started.
PRECHECKED = {
    "dns": ("dns/shard-0.h5", dns_stage, "_run_batch"),
    "coarse": ("coarse/shard-0.h5", coarse_stage, "coarse_states_and_targets"),
    "dataset": ("dataset/train.h5", dataset_stage, "_training_stats"),
    "rollout": ("rollout/none.h5", rollout_stage, "run_rollout"),
}


@pytest.mark.parametrize("stage", list(PRECHECKED))
def test_a_full_disk_is_refused_before_the_compute(out, tmp_path, monkeypatch, caplog, stage):
    rel, module, compute = PRECHECKED[stage]
    output = tmp_path / rel

    def started(*args, **kwargs):
        raise AssertionError(f"{stage}: the compute started on a full disk")

    monkeypatch.setattr(module, compute, started)
    free = 10**6
    monkeypatch.setattr(shutil, "disk_usage", lambda p: types.SimpleNamespace(free=free))
    rc, message = in_process(*stage_args(stage, out, output), caplog=caplog)
    assert rc == 1
    assert f"not enough disk space for {output}" in message, message
    assert "1 MB free" in message
    assert not output.parent.exists() or not any(output.parent.iterdir())
    # The size it asked for is that of the real output (the tiny run's) less its metadata:
    # attributes and chunk indexes add tens of kB per file, the fields are the rest.
    data = re.search(r"\(([\d.]+) (kB|MB|GB) of data", message)
    need = float(data.group(1)) * {"kB": 1e3, "MB": 1e6, "GB": 1e9}[data.group(2)]
    files = list((out / "dataset").glob("*.h5")) if stage == "dataset" else [out / rel]
    real = sum(p.stat().st_size for p in files)
    assert need <= real < 1.25 * need + 100e3 * len(files), (need, real)


def fail_writes_to(monkeypatch, name: str) -> None:
    """Every atomic write of a file called `name` ends with ENOSPC, as a full disk reports it
    when the bytes reach it (write, flush or fsync)."""
    real_fsync = atomic._fsync

    def fsync(path: Path):
        if path.name.startswith(f".{name}.tmp-"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(path)

    monkeypatch.setattr(atomic, "_fsync", fsync)


def test_a_full_disk_while_writing_an_hdf5_file(out, tmp_path, monkeypatch, caplog):
    # h5py reports ENOSPC as an OSError whose text carries the C library's errno and message.
    real_setitem, calls = h5py.Dataset.__setitem__, []

    def setitem(self, key, value):
        calls.append(key)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "Can't write data (file write failed: errno = 28, "
                                        "error message = 'No space left on device')")
        real_setitem(self, key, value)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", setitem)
    output = tmp_path / "dns" / "shard-0.h5"
    rc, message = in_process(*stage_args("dns", out, output), caplog=caplog)
    assert rc == 1 and len(calls) == 3
    assert message.startswith(f"disk full while writing {output}"), message
    assert list(output.parent.iterdir()) == []


def test_a_full_disk_while_saving_a_checkpoint(out, tmp_path, monkeypatch, caplog):
    # torch's own writer said "iostream error"; the model files are now written by Python.
    fail_writes_to(monkeypatch, "last.pt")
    outdir = tmp_path / "model"
    rc, message = in_process(
        "train", "--config", sections_json("device", "sde", "model", "train",
                                           train={"epochs": 1}),
        "--data", out / "dataset", "--outdir", outdir, caplog=caplog)
    assert rc == 1
    assert message.startswith(f"disk full while writing {outdir / 'last.pt'}"), message
    assert not list(outdir.glob("*.pt")) and not list(outdir.glob(".*"))


def test_a_full_disk_while_writing_a_table_leaves_neither_it_nor_its_sidecar(
        out, tmp_path, monkeypatch, caplog):
    fail_writes_to(monkeypatch, "summary.csv.provenance.json")
    outdir = tmp_path / "metrics"
    rc, message = in_process(
        "rollout-metrics", "--config", sections_json("rollout", "report"),
        "--inputs", *sorted((out / "rollout").glob("*.h5")), "--outdir", outdir, caplog=caplog)
    assert rc == 1
    assert message.startswith("disk full while writing") and "summary.csv" in message, message
    names = {p.name for p in outdir.iterdir()}
    assert "summary.csv" not in names and "summary.csv.provenance.json" not in names
    assert not [n for n in names if ".tmp-" in n]


# ----------------------------------------------------------------------------- a real full disk
@pytest.fixture
def small_disk(tmp_path):
    """A 1 MB tmpfs (needs root; skipped elsewhere)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
            capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


DNS_2MB = {"n": 32, "dt": 2e-3, "spinup": 0.1, "duration": 1.0, "record_every": 0.01,
           "trajectories": 4, "shards": 1, "batch": 4, "planner": "FFTW_ESTIMATE"}


def test_a_real_full_disk_during_dns_is_a_message_not_a_crash(small_disk):
    # HDF5 used to report the full disk only when closing the file, after all the compute, and
    # then crash at exit (segfault, exit 139). The pre-check is switched off to reach the write.
    import json

    output = small_disk / "dns" / "shard-0.h5"
    args = ["dns", "--config", json.dumps({"dns": DNS_2MB}), "--shard", "0", "--output",
            str(output)]
    code = ("import sys; from diffclosure import cli; from diffclosure.stages import dns; "
            "dns.check_free_space = lambda *a: None; raise SystemExit(cli.main(sys.argv[1:]))")
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         timeout=120, env=env())
    assert_clear_failure(res, f"disk full while writing {output}")
    assert res.returncode == 1
    assert list(output.parent.iterdir()) == []
    res = run_cli(*args)  # with the pre-check: refused before the simulation
    assert_clear_failure(res, f"not enough disk space for {output}")


def test_remake_advice_names_the_rule_that_writes_the_file():
    from diffclosure.errors import remake_hint

    assert "--forcerun rollout_metrics" in remake_hint("results/x/rollout/metrics.csv")
    assert "--forcerun rollout`" in remake_hint("results/x/rollout/diffusion.h5")
    assert "--forcerun distill" in remake_hint("results/x/model/onestep.pt")
    assert "--forcerun train" in remake_hint("results/x/model/score.pt")
