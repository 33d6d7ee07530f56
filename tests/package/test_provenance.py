"""Provenance of tables (CSV sidecars, JSON "provenance" keys, the report's footer), strict JSON,
and the clean-up of temporaries left by killed jobs (issue #7)."""

from __future__ import annotations

import errno
import json
import math
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from diffclosure import __version__, atomic
from diffclosure import provenance as prov_mod
from diffclosure.data import h5io
from diffclosure.data.h5io import DataFileError
from diffclosure.data.stats import load_stats
from diffclosure.stages import info, report

KEYS = ("diffclosure_version", "git_commit", "config_hash", "stage", "created")


def strict_loads(text: str):
    """json.loads that fails on NaN / Infinity (not JSON, though Python writes them)."""
    def refuse(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


# ----------------------------------------------------------------------------- CSV sidecars
def test_write_table_records_provenance_beside_the_table(tmp_path):
    table = tmp_path / "metrics.csv"
    prov_mod.write_table(table, "a,b\n1,2\n", {"rollout": {"x": 1}}, "rollout_metrics")
    assert table.read_text() == "a,b\n1,2\n"
    side = tmp_path / "metrics.csv.provenance.json"
    assert prov_mod.sidecar_path(table) == side
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv", side.name]
    doc = strict_loads(side.read_text())
    assert doc["file"] == "metrics.csv" and set(KEYS) <= set(doc["provenance"])
    prov = prov_mod.read_sidecar(table)
    assert prov == doc["provenance"]
    assert prov["diffclosure_version"] == __version__ and prov["stage"] == "rollout_metrics"

    # The hash identifies the config: the same config gives the same hash, another one not.
    other = tmp_path / "other.csv"
    prov_mod.write_table(other, "a\n", {"rollout": {"x": 1}}, "rollout_metrics")
    assert prov_mod.read_sidecar(other)["config_hash"] == prov["config_hash"]
    prov_mod.write_table(other, "a\n", {"rollout": {"x": 2}}, "rollout_metrics")
    assert prov_mod.read_sidecar(other)["config_hash"] != prov["config_hash"]
    prov_mod.write_table(other, "a\n", {"rollout": {"x": 2}}, "train", config_hash="abc123")
    assert prov_mod.read_sidecar(other)["config_hash"] == "abc123"


@pytest.mark.parametrize("failing", ["t.csv", "t.csv.provenance.json"])
def test_a_table_and_its_sidecar_are_written_together_or_not_at_all(tmp_path, monkeypatch,
                                                                     failing):
    # The disk fills up while either file is written: the earlier pair stays as it was, no new
    # sidecar describes a table that was not written, and no temporary is left.
    table = tmp_path / "t.csv"
    prov_mod.write_table(table, "old\n", {"a": 1}, "x")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_fsync = atomic._fsync

    def full_disk(path):
        if path.name.startswith(f".{failing}.tmp-"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(path)

    monkeypatch.setattr(atomic, "_fsync", full_disk)
    with pytest.raises(atomic.DiskFullError, match=f"disk full while writing .*{failing}"):
        prov_mod.write_table(table, "new\n", {"a": 2}, "x")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_read_sidecar_without_one_is_empty(tmp_path):
    assert prov_mod.read_sidecar(tmp_path / "none.csv") == {}
    (tmp_path / "bad.csv.provenance.json").write_text("{not json")
    assert prov_mod.read_sidecar(tmp_path / "bad.csv") == {}


def test_footer_names_version_commit_and_hash():
    p = prov_mod.provenance({"report": {}}, "report")
    line = prov_mod.footer(p)
    assert "\n" not in line and line.startswith("Provenance:")
    for key in KEYS:
        assert str(p[key]) in line


# ----------------------------------------------------------------------------- info
def test_info_prints_a_tables_provenance(tmp_path, capsys):
    table = tmp_path / "benchmark.csv"
    prov_mod.write_table(table, "name,nfe\nem,10\nheun,20\n", {"sampling": {}},
                         "sample_benchmark")
    doc = tmp_path / "summary.json"  # a JSON table: written with its sidecar
    prov_mod.write_json_table(doc, {"closures": {}, "provenance": prov_mod.provenance({}, "r")},
                              {}, "rollout_metrics")
    bare = tmp_path / "bare.csv"
    bare.write_text("x\n1\n")
    info.describe(table)
    info.describe(doc)
    info.describe(bare)
    blocks = capsys.readouterr().out.split("== ")[1:]
    recorded = [prov_mod.read_sidecar(table), strict_loads(doc.read_text())["provenance"]]
    for block, prov in zip(blocks, recorded, strict=False):
        for key in KEYS:
            assert f"\n  {key}: {prov[key]}\n" in block, (key, block)
    assert "columns: name, nfe" in blocks[0] and "rows: 2" in blocks[0]
    assert "provenance:\n  (none)" in blocks[2] and "missing" in blocks[2]


# ----------------------------------------------------------------------------- strict JSON
def test_json_outputs_write_null_for_non_finite_numbers(tmp_path):
    doc = {"a": float("nan"), "b": [1.5, float("inf"), -float("inf")],
           "c": {"d": np.float32("nan")}, "e": np.float64(0.1), "f": np.int64(3), "g": True,
           "h": None, "i": "nan"}
    path = tmp_path / "doc.json"
    atomic.write_json_atomic(path, doc)
    back = strict_loads(path.read_text())
    assert back == {"a": None, "b": [1.5, None, None], "c": {"d": None}, "e": 0.1, "f": 3,
                    "g": True, "h": None, "i": "nan"}
    assert type(back["f"]) is int and back["e"] == 0.1  # exact round trip of finite values


def test_load_stats_ignores_provenance_and_rejects_null_statistics(tmp_path):
    stats = {"target": {"mean": 0.5, "std": 2.0}, "vorticity": {"mean": 0.0, "std": 1.0},
             "note": "n", "conditions": ["vorticity"], "split": {"train": [0]},
             "provenance": prov_mod.provenance({}, "dataset")}
    prov_mod.write_json_table(tmp_path / "stats.json", stats, {}, "dataset")
    loaded = load_stats(tmp_path)
    assert "provenance" not in loaded  # describes the file, not the statistics
    assert loaded["target"] == {"mean": 0.5, "std": 2.0}

    stats["vorticity"]["std"] = float("nan")  # written as null
    prov_mod.write_json_table(tmp_path / "stats.json", stats, {}, "dataset")
    with pytest.raises(DataFileError, match=r"stats\.json.*'vorticity'"):
        load_stats(tmp_path)


def test_report_reads_null_as_not_a_number(tmp_path):
    summary = {"threshold": 0.5, "provenance": prov_mod.provenance({}, "rollout_metrics"),
               "closures": {"none": {"blowup": False, "blowup_time": float("nan"),
                                     "cost_s_per_time": 2.0, "target": "H"}}}
    prov_mod.write_json_table(tmp_path / "rollout" / "summary.json", summary, {},
                              "rollout_metrics")
    costs = report.costs(tmp_path)
    assert set(costs) == {"none"}
    assert math.isnan(costs["none"]["blowup_time"]) and costs["none"]["cost_s_per_time"] == 2.0


# ----------------------------------------------------------------------------- stale temporaries
@pytest.fixture
def pids():
    """(pid of a process that has exited, pid of one still running)."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield gone.pid, alive.pid
    finally:
        alive.kill()
        alive.wait()


def test_a_new_atomic_write_removes_temporaries_of_dead_writers(tmp_path, pids):
    dead, live = pids
    host = atomic.host()
    names = {
        f".shard-0.h5.tmp-{host}-{dead}": False,  # a killed writer's leftover: removed
        f".shard-0.h5.tmp-{host}-{live}": True,   # a running writer's file: kept
        f".shard-0.h5.tmp-otherhost-{dead}": True,  # another node's writer: can't tell, kept
        f".shard-0.h5.tmp-{host}-{os.getpid()}x": True,  # not the pattern: kept
        f".shard-1.h5.tmp-{host}-{dead}": True,   # another output's: not this write's business
        ".shard-0.h5.tmp-notapid": True,
        "shard-0.h5.tmp-1": True,             # not hidden: not ours
    }
    for name in names:
        (tmp_path / name).write_bytes(b"partial")
    with h5io.atomic_h5(tmp_path / "shard-0.h5") as fh:
        fh["x"] = np.arange(3)
    present = {p.name for p in tmp_path.iterdir()}
    for name, kept in names.items():
        assert (name in present) == kept, name
    with h5py.File(tmp_path / "shard-0.h5", "r") as fh:
        assert fh["x"][()].tolist() == [0, 1, 2]


def test_atomic_path_removes_temporaries_with_a_suffix(tmp_path, pids):
    dead, live = pids
    host = atomic.host()
    stale = tmp_path / f".m.csv.tmp-{host}-{dead}.csv"
    running = tmp_path / f".m.csv.tmp-{host}-{live}.csv"
    stale.write_text("partial")
    running.write_text("partial")
    atomic.write_text_atomic(tmp_path / "m.csv", "a\n")
    assert not stale.exists() and running.exists()
    assert (tmp_path / "m.csv").read_text() == "a\n"
    assert atomic.remove_stale_temporaries(tmp_path / "m.csv") == []  # nothing left to remove


def test_info_refuses_a_json_table_without_its_sidecar(tmp_path):
    doc = tmp_path / "stats.json"
    atomic.write_json_atomic(doc, {"target": {"mean": 0.0, "std": 1.0}})
    with pytest.raises(prov_mod.TableError, match="sidecar.*--forcerun dataset"):
        info.describe(doc)
