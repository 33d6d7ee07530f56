"""tools/compare_runs.py: identical runs pass, volatile values are ignored, a changed value, a
NaN moved or a changed weight is caught, and a new output is an addition, not a change."""

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import compare_runs  # noqa: E402


def _make_run(root: Path, value: float = 1.0, created: str = "t0", cost: float = 1.0,
              weight: float = 0.5, extra: bool = False, nu: bool = True) -> Path:
    (root / "dns").mkdir(parents=True)
    (root / "rollout").mkdir()
    (root / "model").mkdir()
    with h5py.File(root / "dns" / "shard-0.h5", "w") as fh:
        fh.create_dataset("vorticity", data=np.array([[value, np.nan], [2.0, 3.0]]))
        fh.attrs["created"] = created
        if nu:
            fh.attrs["dns.nu"] = 1e-3
        if extra:
            fh.create_dataset("spinup_energy", data=np.ones(3))
    (root / "rollout" / "metrics.csv").write_text(
        f"closure,d_fro,cost_s_per_time\ndiffusion,{value},{cost}\n")
    (root / "rollout" / "summary.json").write_text(json.dumps(
        {"diffusion": {"d_fro": value, "cost_s_per_time": cost}}))
    torch.save({"model": {"w": torch.tensor([weight, 1.0])}, "created": created},
               root / "model" / "score.pt")
    return root


def test_identical_runs_differ_only_in_volatile_values(tmp_path):
    a = _make_run(tmp_path / "a")
    b = _make_run(tmp_path / "b", created="t1", cost=9.0)
    report = compare_runs.compare_runs(a, b)
    assert set(report) == {"dns/shard-0.h5", "rollout/metrics.csv", "rollout/summary.json",
                           "model/score.pt"}
    assert all(diffs == [] for diffs in report.values())
    assert compare_runs.main([str(a), str(b)]) == 0


def test_changed_values_are_caught_and_additions_are_not_changes(tmp_path, capsys):
    a = _make_run(tmp_path / "a")
    report = compare_runs.compare_runs(a, _make_run(tmp_path / "b", value=1.0 + 1e-15))
    assert report["dns/shard-0.h5"] == ["changed: dataset vorticity"]
    assert report["rollout/metrics.csv"] == ["changed: row 1 column d_fro"]
    assert report["rollout/summary.json"] == ["changed: key diffusion/d_fro"]
    report = compare_runs.compare_runs(a, _make_run(tmp_path / "c", weight=0.25))
    assert report["model/score.pt"] == ["changed: tensor /model/w"]
    added = _make_run(tmp_path / "d", extra=True)
    assert compare_runs.compare_runs(a, added)["dns/shard-0.h5"] == ["added in B: spinup_energy"]
    assert compare_runs.main([str(a), str(added)]) == 0
    assert compare_runs.main([str(added), str(a)]) == 1  # the other way round it is missing
    report = compare_runs.compare_runs(a, _make_run(tmp_path / "e", nu=False))
    assert report["dns/shard-0.h5"] == ["missing in B: attribute /:dns.nu"]
