"""benchmarks/breakeven.py, cost_accuracy.py, gpu_check.py and solver.py --against: the
break-even rule, the CFL-limited time step, flag checks, a lever curve on a finished run, the GPU
check without CUDA, and the solver timed against another checkout's code."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from diffclosure import config as C
from diffclosure.solver.grid import Grid

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import breakeven  # noqa: E402
import closure_cost  # noqa: E402
import cost_accuracy  # noqa: E402

from support.pipeline import TINY  # noqa: E402

# Seconds per simulated time unit, growing like a DNS does (hand-made, not measured).
COSTS = {128: 1.3, 256: 8.0, 512: 70.0, 1024: 600.0}


@pytest.mark.parametrize("coupled,expected", [
    (0.5, 128),    # cheaper than every DNS: pays off already against 128^2
    (1.3, 256),    # a tie is no saving: the first DNS strictly dearer
    (20.0, 512),
    (599.0, 1024),
    (700.0, None),  # dearer than every DNS measured
])
def test_break_even_is_the_smallest_dearer_resolution(coupled, expected):
    assert breakeven.break_even(COSTS, coupled) == expected
    shuffled = dict(reversed(list(COSTS.items())))  # the table's order does not matter
    assert breakeven.break_even(shuffled, coupled) == expected


def _shear(n: int, amplitude: float) -> np.ndarray:
    """w = A sin(2 pi x): lap psi = -w gives v = -A cos(2 pi x) / (2 pi), u = 0."""
    x = Grid(n).x
    return amplitude * np.sin(2 * np.pi * x)[None, None, :].repeat(n, axis=1)


def test_cfl_number_of_a_shear_flow_is_its_closed_form():
    dns = C.load({"dns": {}}, sections=["dns"])["dns"]
    amplitude, n, dt = 3.0, 64, 1e-3
    expected = amplitude / (2 * np.pi) * dt * n  # max|v| dt / dx on the unit square
    assert breakeven.cfl_number(dns, _shear(n, amplitude), dt) == pytest.approx(expected, rel=1e-9)


def test_time_step_is_the_papers_while_the_flow_allows_it():
    dns = C.load({"dns": {}}, sections=["dns"])["dns"]
    # max|v| = 1/(2 pi): CFL 0.02 at 128^2 with the paper's dt, under the limit 0.2
    assert breakeven.time_step(dns, _shear(128, 1.0), 0.2) == 1e-3


def test_time_step_of_a_fast_flow_is_cut_to_the_cfl_limit():
    dns = C.load({"dns": {}}, sections=["dns"])["dns"]
    amplitude, n, limit = 50.0, 128, 0.2  # CFL 1.02 at the paper's dt
    dt = breakeven.time_step(dns, _shear(n, amplitude), limit)
    assert dt == pytest.approx(limit * (1 / n) / (amplitude / (2 * np.pi)), rel=1e-9)


def test_breakeven_cuda_without_a_device_names_the_flag(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exc:
        breakeven.main(["--device", "cuda"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--device cuda" in err and "--device cpu" in err


def _rows(table: str) -> dict[str, tuple[str, str]]:
    """{what: (result, status)} from gpu_check's table."""
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.split(" | ")]
        if len(cells) == 4 and cells[0] != "section":
            rows[cells[1]] = (cells[2], cells[3])
    return rows


@pytest.mark.slow
def test_gpu_check_on_a_cpu_runs_the_cpu_rows_and_names_what_it_skips():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # a CPU machine, even on a GPU runner
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--quick"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = _rows(proc.stdout)
    gpu = [w for w in rows if "cuda" in w or "GPU" in w]
    cpu = [w for w in rows if w not in gpu]
    # every GPU-only section is listed: solver, training fp32 and bf16, sampler, break-even
    assert len(gpu) == 5, proc.stdout
    for what in gpu:
        assert rows[what] == ("", "skipped (no CUDA device)"), what
    assert any("torch on cpu" in w for w in cpu) and any("pyfftw on cpu" in w for w in cpu)
    assert any(w.startswith("train") for w in cpu)
    assert sum(w.startswith("sampler") for w in cpu) == 2  # batch 1 and batch 64
    for what in cpu:
        result, status = rows[what]
        assert status == "ran" and result, (what, rows[what])
    tests = rows["CUDA / device tests"][0]
    assert " 0 failed" in tests and not tests.startswith("0 passed")


@pytest.mark.slow
def test_cost_accuracy_lever_drives_the_rollout_stage(out):
    """The resampling curve on the tiny run's model: each point is a real rollout, so the
    learned closure samples ceil(steps / R) times; bf16 is named as skipped on a CPU."""
    run = cost_accuracy.run_files(out)
    cfg = C.load(C.read_run_config([TINY], cwd=ROOT)[0], sections=cost_accuracy.SECTIONS)
    cfg["rollout"]["duration"] = 0.1  # 100 steps: enough to tell the intervals apart
    steps = round(cfg["rollout"]["duration"] / cfg["dns"]["dt"])
    done = {}
    rows = cost_accuracy.run_lever("resample", cfg, run, done)
    by = {r["setting"]: r for r in rows}
    for every in (1, 5, 10, 20, 40):
        row = by[f"every {every}"]
        assert row["sample_calls"] == -(-steps // every)
        assert np.isfinite(row["d_fro_median"]) and row["d_fro_min"] <= row["d_fro_max"]
    assert len(done) == 6  # five intervals and the hold without noise, each run once
    if not torch.cuda.is_available():
        (skip,) = cost_accuracy.run_lever("precision", cfg, run, done)[1:]
        assert skip["skipped"] == "CUDA only"


@pytest.mark.slow
def test_closure_cost_rows_on_a_finished_run(out, capsys):
    """Each row is a real rollout of the run's closures: the stochastic closure's cost is
    split over its members, the deterministic learned one has one member, and the table is
    relative to Leith (its own row 1)."""
    cfg = C.load(C.read_run_config([TINY], cwd=ROOT)[0], sections=closure_cost.SECTIONS)
    cfg["rollout"].update(duration=0.1, tau=0.0, inflation=1.0)
    run = {"score": out / "model" / "score.pt", "data": out / "dataset",
           "dns": sorted(str(p) for p in (out / "dns").glob("shard-*.h5")),
           "onestep": out / "model" / "onestep.pt"}
    rows = {r["closure"]: r for r in (closure_cost.measure(cfg, c, run, 1)
                                      for c in ("leith", "diffusion", "diffusion_mean"))}
    # The distilled generator: one network call per sampling, on all members at once.
    one = closure_cost.measure({**cfg, "rollout": {**cfg["rollout"],
                                                   "sampler": {"name": "onestep"}}},
                               "diffusion", run, 1)
    assert one["steps"] == "onestep" and one["members"] == cfg["rollout"]["ensemble"]
    assert one["ms_per_call"] > 0
    assert rows["diffusion"]["members"] == cfg["rollout"]["ensemble"]
    assert rows["diffusion_mean"]["members"] == 1
    for r in rows.values():
        assert r["s_per_member_time"] == pytest.approx(r["s_per_time"] / r["members"])
    assert np.isnan(rows["leith"]["ms_per_call"])  # no network
    assert all(rows[c]["ms_per_call"] > 0 for c in ("diffusion", "diffusion_mean"))
    assert closure_cost.main(["--results", str(out), "--config", str(TINY), "--duration",
                              "0.1", "--closures", "leith", "none"]) == 0
    table = capsys.readouterr().out.splitlines()
    leith = next(line.split() for line in table if line.startswith("leith"))
    assert float(leith[5]) == 1.0  # x leith


@pytest.mark.slow
def test_solver_benchmark_times_the_other_checkouts_code(tmp_path):
    """--against runs the step table on the given checkout's package: a copy of ours whose
    step sleeps 5 ms is the slower side in every case."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(ROOT / "workflow" / "diffclosure", old / "workflow" / "diffclosure",
                    ignore=shutil.ignore_patterns("__pycache__"))
    solver_py = old / "workflow" / "diffclosure" / "solver" / "navier_stokes.py"
    text = solver_py.read_text()
    step = '        """Advance by dt; returns the new state'
    assert step in text
    solver_py.write_text(text.replace(step, "        __import__('time').sleep(0.005)\n" + step))
    proc = subprocess.run([sys.executable, "benchmarks/solver.py", "--against", str(old),
                           "--step-sizes", "16", "--repeats", "3", "--rounds", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines() if line.split()[:1] in
            (["euler_cn"], ["heun_cn"])]
    assert len(rows) == 8  # 2 schemes x 2 backends x 1 size x 2 batches
    assert all(float(old_ms) >= 5.0 > float(new_ms) for *_, old_ms, new_ms, _ in rows)
    missing = subprocess.run([sys.executable, "benchmarks/solver.py", "--against",
                              str(tmp_path / "nothing")], cwd=ROOT, capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode != 0 and "no workflow/diffclosure there" in missing.stderr
