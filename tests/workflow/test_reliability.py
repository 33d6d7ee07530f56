"""Reliability drills on the real command line (issue #7): jobs killed with SIGKILL, a solver
blow-up, damaged inputs, foreign checkpoints, provenance of every output.

Every stage runs as `python -m diffclosure ...` in a subprocess, as Snakemake runs it. Inputs
come from the tiny pipeline run shared with test_end_to_end.py (support/pipeline.py); whatever a
drill damages is a copy.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from diffclosure import __version__

from support.pipeline import (
    assert_clear_failure,
    run_cli,
    sections_json,
    start_cli,
)

pytestmark = pytest.mark.slow  # the quick tier (-m "not slow") skips this module


def wait_for(predicate, proc, timeout: float = 60.0, what: str = "") -> None:
    """Poll until predicate() holds; fail if the process ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"process ended (rc={proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def sigkill(proc) -> None:
    assert proc.poll() is None, "the job finished before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def h5_contents(path: Path) -> dict:
    """Every dataset's bytes and every attribute, except the creation time."""
    items = {}
    with h5py.File(path, "r") as fh:
        def visit(name, obj):
            attrs = {k: np.asarray(v).tobytes() for k, v in obj.attrs.items()
                     if k not in ("created", "DIMENSION_LIST", "REFERENCE_LIST")}
            data = obj[()].tobytes() if isinstance(obj, h5py.Dataset) else b""
            items[name] = (data, attrs)

        visit("/", fh)
        fh.visititems(visit)
    return items


# ----------------------------------------------------------------------------- kill -9: DNS
# Big enough to run a few seconds: 128^2, 3000 steps, two trajectories.
DNS_LONG = {"n": 128, "dt": 2.0e-3, "spinup": 5.0, "duration": 1.0, "record_every": 0.1,
            "trajectories": 2, "shards": 1, "batch": 2, "planner": "FFTW_ESTIMATE"}


def test_killed_dns_leaves_no_finished_looking_file_and_rerun_is_bit_identical(tmp_path):
    cfg = json.dumps({"dns": DNS_LONG})
    killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
    killed_dir.mkdir()
    output = killed_dir / "shard-0.h5"
    args = ("dns", "--config", cfg, "--shard", "0", "--threads", "1")
    proc = start_cli(*args, "--output", output, log=tmp_path / "killed.log")

    def temp_files():
        return [p for p in killed_dir.iterdir() if p != output]

    wait_for(lambda: temp_files(), proc, what="the DNS job to open its output")
    time.sleep(0.5)  # part-way through the time loop
    sigkill(proc)

    assert not output.exists(), "a killed DNS job left a file at the output path"
    leftovers = temp_files()
    assert leftovers, "expected the killed job's temporary file"
    for p in leftovers:  # hidden, marked temporary, not matching Snakemake's shard-{i}.h5
        assert p.name.startswith(".") and ".tmp-" in p.name and not p.name.endswith(".h5"), p

    rerun = run_cli(*args, "--output", output)
    assert rerun.returncode == 0, rerun.stderr
    # The rerun removed the temporary the killed job (a dead pid) could not clean up.
    assert sorted(killed_dir.iterdir()) == [output], sorted(killed_dir.iterdir())
    clean = run_cli(*args, "--output", clean_dir / "shard-0.h5")
    assert clean.returncode == 0, clean.stderr
    a, b = h5_contents(output), h5_contents(clean_dir / "shard-0.h5")
    assert a.keys() == b.keys()
    for name in a:
        assert a[name] == b[name], f"{name} differs between the rerun and an uninterrupted run"


# ----------------------------------------------------------------------------- kill -9: train
def test_killed_training_resumes_from_its_checkpoint_to_identical_weights(out, tmp_path):
    cfg = sections_json("device", "sde", "model", "train", train={"epochs": 5})
    args = ("train", "--config", cfg, "--data", out / "dataset", "--threads", "1")

    killed = tmp_path / "killed"
    proc = start_cli(*args, "--outdir", killed, log=tmp_path / "killed.log")
    wait_for(lambda: (killed / "last.pt").exists(), proc, what="the first epoch's last.pt")
    sigkill(proc)
    assert not (killed / "score.pt").exists()
    done = torch.load(killed / "last.pt", map_location="cpu", weights_only=True)["epoch"]
    assert 1 <= done < 5

    resumed = run_cli(*args, "--outdir", killed)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {killed / 'last.pt'} after epoch {done}" in resumed.stderr
    clean = run_cli(*args, "--outdir", tmp_path / "clean")
    assert clean.returncode == 0, clean.stderr

    a = torch.load(killed / "score.pt", map_location="cpu", weights_only=True)
    b = torch.load(tmp_path / "clean" / "score.pt", map_location="cpu", weights_only=True)
    for key in ("state_dict", "ema_state_dict"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs"


# ----------------------------------------------------------------------------- blow-up
def test_blow_up_stops_with_a_clear_error_and_no_output(tmp_path):
    # dt = 0.1 is ~50x the stable step: the explicit advection diverges within a few hundred steps.
    dns = {"n": 32, "dt": 0.1, "spinup": 50.0, "duration": 1.0, "record_every": 0.5,
           "trajectories": 1, "shards": 1, "batch": 1}
    output = tmp_path / "shard-0.h5"
    res = run_cli("dns", "--config", json.dumps({"dns": dns}), "--shard", "0",
                  "--output", output)
    assert_clear_failure(res, "blew up", "dns.dt=0.1")
    error = [line for line in res.stderr.splitlines() if " ERROR " in line][-1]
    # A NaN state has no meaningful CFL number: the message says what is non-finite instead.
    assert "CFL number nan" not in error and "CFL number inf" not in error, error
    assert "non-finite" in error or "above cfl_max" in error, error
    assert list(tmp_path.iterdir()) == [], "a failed DNS job left files behind"


# ----------------------------------------------------------------------------- damaged inputs
def damage(path: Path, how: str) -> None:
    size = path.stat().st_size
    rng = np.random.default_rng(0)
    if how == "truncated":
        os.truncate(path, size // 2)
        return
    if how == "header":  # the superblock: the file no longer looks like HDF5
        offset, count = 0, 64
    elif how == "metadata":  # object headers and heaps of the root group
        offset, count = 512, 1024
    elif how == "coordinate":  # time[0] changes a little: the coordinate's checksum catches it
        from test_damage import flip_bit

        flip_bit(path, "time")
        return
    else:  # "data": the bytes of one vorticity chunk (caught by the chunk checksums)
        with h5py.File(path, "r") as fh:
            info = fh["vorticity"].id.get_chunk_info(3)
        offset, count = info.byte_offset + 64, 256
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(rng.integers(0, 256, count, dtype=np.uint8).tobytes())


@pytest.mark.parametrize("how", ["truncated", "header", "metadata", "data", "coordinate"])
def test_coarse_stage_names_a_damaged_dns_shard(out, tmp_path, how):
    shard = tmp_path / "shard-0.h5"
    shard.write_bytes((out / "dns" / "shard-0.h5").read_bytes())
    damage(shard, how)
    output = tmp_path / "coarse" / "shard-0.h5"
    res = run_cli("coarse", "--config", sections_json("coarse"), "--input", shard,
                  "--output", output)
    assert_clear_failure(res, str(shard), "rerun")
    assert not output.exists()
    assert not output.parent.exists() or not list(output.parent.iterdir())


def foreign_checkpoints(out, tmp_path) -> dict[str, Path]:
    real = out / "model" / "score.pt"
    files = {}
    files["random bytes"] = tmp_path / "random.pt"
    files["random bytes"].write_bytes(np.random.default_rng(0).bytes(4096))
    files["truncated"] = tmp_path / "truncated.pt"
    files["truncated"].write_bytes(real.read_bytes()[: real.stat().st_size // 2])
    # The weights of a narrower network under settings that describe the trained one.
    from diffclosure.model.checkpoint import build_from_settings

    ckpt = torch.load(real, map_location="cpu", weights_only=True)
    narrow = {**ckpt["settings"], "model": {**ckpt["settings"]["model"], "width": 4}}
    assert ckpt["settings"]["model"]["width"] != 4
    state = build_from_settings(narrow).state_dict()
    files["other width"] = tmp_path / "width.pt"
    torch.save({**ckpt, "state_dict": state, "ema_state_dict": state}, files["other width"])
    return files


@pytest.mark.parametrize("kind", ["random bytes", "truncated", "other width"])
def test_sample_benchmark_names_a_foreign_checkpoint(out, tmp_path, kind):
    model = foreign_checkpoints(out, tmp_path)[kind]
    outdir = tmp_path / "sampling"
    res = run_cli("sample-benchmark", "--config", sections_json("device", "sde", "sampling"),
                  "--data", out / "dataset", "--model", model, "--outdir", outdir)
    assert_clear_failure(res, str(model))
    # torch's advice to retry with weights_only=False (unsafe: runs code) is not passed on.
    assert "weights_only=False" not in res.stderr and "weights_only` set to" not in res.stderr
    assert not outdir.exists() or not list(outdir.iterdir())


# ----------------------------------------------------------------------------- provenance
def test_every_hdf5_and_checkpoint_output_records_provenance(out):
    files = sorted(out.rglob("*.h5")) + [out / "model" / "score.pt"]
    assert len(files) >= 13
    lacking = {}
    for path in files:
        if path.suffix == ".pt":
            attrs = torch.load(path, map_location="cpu", weights_only=True)["provenance"]
        else:
            with h5py.File(path, "r") as fh:
                attrs = {k: v.decode() if isinstance(v, bytes) else v
                         for k, v in fh.attrs.items()}
        missing = [k for k in ("diffclosure_version", "git_commit", "config_hash")
                   if not attrs.get(k)]
        if missing or attrs["diffclosure_version"] != __version__:
            lacking[str(path.relative_to(out))] = missing or attrs["diffclosure_version"]
    assert not lacking, lacking
    res = run_cli("info", *files)
    assert res.returncode == 0, res.stderr
    blocks = res.stdout.split("== ")[1:]
    assert len(blocks) == len(files)
    for path, block in zip(files, blocks, strict=True):
        assert block.startswith(str(path)) and "\nprovenance:\n" in block, block[:200]
        keys = set()
        for line in block.split("\nprovenance:\n", 1)[1].splitlines():
            if not line.startswith("  "):  # the next heading ends the section
                break
            keys.add(line.split(":", 1)[0].strip())
        assert {"diffclosure_version", "git_commit", "config_hash"} <= keys, (path, keys)


PROVENANCE = ("diffclosure_version", "git_commit", "config_hash")
TABLES = ("dataset/stats.json", "rollout/summary.json", "model/history.csv",
          "sampling/benchmark.csv", "sampling/resolution.csv", "rollout/metrics.csv",
          "rollout/summary.csv", "rollout/probabilistic.csv")


def info_provenance(stdout: str) -> dict[str, dict[str, str]]:
    """{file: {key: value}} of the "provenance:" sections printed by `info`."""
    out = {}
    for block in stdout.split("== ")[1:]:
        name, _, body = block.partition("\n")
        section = body.split("provenance:\n", 1)[1] if "provenance:\n" in body else ""
        keys = {}
        for line in section.splitlines():
            if not line.startswith("  "):  # the next heading ends the section
                break
            key, _, value = line.strip().partition(": ")
            keys[key] = value
        out[name.strip()] = keys
    return out


def test_tables_record_provenance(out):
    files = [out / p for p in TABLES]
    csvs = sorted(out.rglob("*.csv"))
    assert set(csvs) <= set(files), f"a table this test does not know: {set(csvs) - set(files)}"
    recorded = {}
    for path in files:
        if path.suffix == ".json":
            prov = json.loads(path.read_text())["provenance"]
        else:
            sidecar = path.with_name(path.name + ".provenance.json")
            assert sidecar.exists(), path
            doc = json.loads(sidecar.read_text())
            assert doc["file"] == path.name
            prov = doc["provenance"]
        assert all(prov.get(k) for k in PROVENANCE), (path, prov)
        assert prov["diffclosure_version"] == __version__
        recorded[str(path)] = prov
    # history.csv and score.pt come from one training run: one config hash.
    score = torch.load(out / "model" / "score.pt", map_location="cpu", weights_only=True)
    assert recorded[str(out / "model/history.csv")]["config_hash"] == \
        score["provenance"]["config_hash"]
    # summary.md ends with a provenance line: version, commit, a 16-hex-digit config hash.
    last = (out / "report" / "summary.md").read_text().rstrip().splitlines()[-1]
    commit = score["provenance"]["git_commit"].removesuffix("-dirty")
    assert last.startswith("Provenance:") and __version__ in last and commit in last, last
    assert re.search(r"config hash [0-9a-f]{16}\b", last), last

    res = run_cli("info", *files)
    assert res.returncode == 0, res.stderr
    printed = info_provenance(res.stdout)
    assert set(printed) == set(recorded)
    for name, prov in recorded.items():
        for key in PROVENANCE:
            assert printed[name].get(key) == str(prov[key]), (name, key, printed[name])


def test_rollout_summary_json_is_strict(out):
    # Strict JSON has no NaN: json.loads with a parse_constant hook fails on NaN/Infinity.
    def refuse(name):
        raise AssertionError(f"summary.json holds {name}")

    doc = json.loads((out / "rollout" / "summary.json").read_text(), parse_constant=refuse)
    for name, entry in doc["closures"].items():
        # Only runs that blew up have a blow-up time; the others hold null, not NaN.
        assert (entry["blowup_time"] is None) == (not entry["blowup"]), (name, entry)
