"""No silent damage (issue #20): damaged tables and statistics are refused by the stage that
reads them, a blown-up closure is shouted about, and a plain rerun after a killed job finishes
the run with results identical to a clean one.

Every drill works on a copy of the tiny pipeline run shared by the workflow tests
(support/pipeline.py) and runs the real command line: `python -m diffclosure ...` for one stage,
`snakemake` for the pipeline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diffclosure.provenance import write_json_table

from support.pipeline import (
    REPO,
    TINY,
    assert_clear_failure,
    completed_tiny_run,
    env,
    results,
    run_cli,
    sections_json,
)

pytestmark = pytest.mark.slow  # the quick tier (-m "not slow") skips this module

sys.path.insert(0, str(REPO / "tools"))
import compare_runs  # noqa: E402


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    """Workdir of the shared clean tiny run (read only)."""
    return completed_tiny_run(tmp_path_factory)


def copy_workdir(clean: Path, dest: Path) -> Path:
    """A copy of a workdir (results and Snakemake's records), with the file times kept, so that
    Snakemake sees the copy as complete as the original."""
    shutil.copytree(clean, dest, symlinks=True, ignore=shutil.ignore_patterns("locks"))
    return dest


# ----------------------------------------------------------------------------- damaged tables
def flip_digit(path: Path) -> None:
    """Change one digit of the first data line (CSV) or the first number (JSON)."""
    text = path.read_text()
    start = text.index("\n") + 1 if path.suffix == ".csv" else text.index(":")
    m = re.compile(r"\d").search(text, start)
    i = m.start()
    text = text[:i] + str((int(text[i]) + 1) % 10) + text[i + 1:]
    path.write_text(text)


def truncate(path: Path) -> None:
    """Keep the first half of the file: whole lines of a CSV, bytes of a JSON document."""
    data = path.read_bytes()
    if path.suffix == ".csv":
        lines = data.splitlines(keepends=True)
        path.write_bytes(b"".join(lines[: max(2, len(lines) // 2)]))
    else:
        path.write_bytes(data[: len(data) // 2])


# table (under results/tiny/), the rule that writes it, the stage that reads it
TABLES = {
    "stats.json": ("dataset/stats.json", "dataset", "train"),
    "history.csv": ("model/history.csv", "train", "report"),
    "benchmark.csv": ("sampling/benchmark.csv", "sample_benchmark", "report"),
    "resolution.csv": ("sampling/resolution.csv", "sample_benchmark", "report"),
    "metrics.csv": ("rollout/metrics.csv", "rollout_metrics", "report"),
    "probabilistic.csv": ("rollout/probabilistic.csv", "rollout_metrics", "report"),
    "summary.json": ("rollout/summary.json", "rollout_metrics", "report"),
    "summary.csv": ("rollout/summary.csv", "rollout_metrics", "info"),
}


def read_with(stage: str, res: Path, rel: str, out: Path):
    if stage == "train":
        return run_cli("train", "--config", sections_json("device", "sde", "model", "train",
                                                          train={"epochs": 1}),
                       "--data", res / "dataset", "--outdir", out)
    if stage == "report":
        return run_cli("report", "--config", json.dumps({"run": "tiny", "report": {}}),
                       "--results", res, "--outdir", out)
    return run_cli("info", res / rel)


@pytest.mark.parametrize("how", ["digit", "truncate"])
@pytest.mark.parametrize("table", list(TABLES))
def test_a_damaged_table_is_refused_naming_it_and_its_rule(clean, tmp_path, table, how):
    rel, rule, reader = TABLES[table]
    res = tmp_path / "results"
    shutil.copytree(results(clean), res)
    (flip_digit if how == "digit" else truncate)(res / rel)
    out = tmp_path / "out"
    done = read_with(reader, res, rel, out)
    assert_clear_failure(done, str(res / rel), f"--forcerun {rule}")
    assert not out.exists() or not any(out.iterdir())


def test_info_checks_every_table_of_a_folder(clean, tmp_path):
    res = tmp_path / "results"
    shutil.copytree(results(clean), res)
    ok = run_cli("info", res)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.count("integrity: matches") >= len(TABLES)
    truncate(res / "rollout" / "summary.csv")
    bad = run_cli("info", res)
    assert bad.returncode == 1
    assert "FAILED" in bad.stdout and "summary.csv" in bad.stderr


# ----------------------------------------------------------------------------- statistics
def rollout_diffusion(res: Path, out: Path):
    cfg = sections_json("device", "dns", "coarse", "measurements", "sde", "rollout")
    return run_cli("rollout", "--config", cfg, "--closure", "diffusion", "--dns",
                   *sorted((res / "dns").glob("shard-*.h5")), "--data", res / "dataset",
                   "--model", res / "model" / "score.pt", "--output", out)


def scaled_std(res: Path) -> dict:
    stats = json.loads((res / "dataset" / "stats.json").read_text())
    stats["target"]["std"] *= 10
    return stats


def test_edited_statistics_are_refused_with_the_cause_and_the_fix(clean, tmp_path):
    res = tmp_path / "results"
    shutil.copytree(results(clean), res)
    stats_path = res / "dataset" / "stats.json"
    # An edit: its checksum no longer matches. Retraining on it is refused too.
    stats_path.write_text(json.dumps(scaled_std(res), indent=2))
    for done in (rollout_diffusion(res, tmp_path / "r.h5"),
                 read_with("train", res, "", tmp_path / "model")):
        assert_clear_failure(done, str(stats_path), "--forcerun dataset")
    # Rewritten with a matching sidecar (as a dataset remade from other data): the rollout sees
    # a model trained on other statistics and names both causes; training sees statistics that
    # do not describe train.h5.
    write_json_table(stats_path, scaled_std(results(clean)), {}, "dataset")
    done = rollout_diffusion(res, tmp_path / "r.h5")
    assert_clear_failure(done, str(stats_path), "--forcerun train", "--forcerun dataset")
    done = read_with("train", res, "", tmp_path / "model")
    assert_clear_failure(done, "do not describe", "--forcerun dataset")
    assert not (tmp_path / "r.h5").exists() and not (tmp_path / "model").exists()


def snakemake_in(workdir: Path, *args: str, extra_env: dict | None = None,
                 timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--configfile", str(TINY), "--cores", "2", *args]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout,
                          env={**env(), **(extra_env or {})})


def assert_same_run(clean: Path, workdir: Path) -> None:
    """Every file of the clean run exists in `workdir`, and every result is the same."""
    def files(root):
        return {p.relative_to(root) for p in results(root).rglob("*") if p.is_file()
                and "logs" not in p.parts and "benchmarks" not in p.parts}

    assert files(clean) <= files(workdir), sorted(map(str, files(clean) - files(workdir)))
    report = compare_runs.compare_runs(results(clean), results(workdir))
    changed = {k: v for k, v in report.items() if any(not d.startswith("added") for d in v)}
    assert not changed, changed


def test_after_forcerun_dataset_the_results_are_those_of_a_clean_run(clean, tmp_path):
    work = copy_workdir(clean, tmp_path / "work")
    stats_path = results(work) / "dataset" / "stats.json"
    stats_path.write_text(json.dumps(scaled_std(results(work)), indent=2))
    done = snakemake_in(work, "--forcerun", "dataset")
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_run(clean, work)


# ----------------------------------------------------------------------------- blow-up
# Fault injection without a hook in the package: a sitecustomize module on the jobs' PYTHONPATH
# makes the Smagorinsky closure's tendency explode, as a badly scaled closure would.
EXPLODE = """
import diffclosure.rollout.closures as closures

_tendency = closures.ClassicalClosure.tendency


def tendency(self, w, step, t):
    return _tendency(self, w, step, t) + 1e6 * w


closures.ClassicalClosure.tendency = tendency
"""


def test_a_closure_that_blows_up_is_named_with_its_cause(clean, tmp_path):
    work = copy_workdir(clean, tmp_path / "work")
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(EXPLODE)
    path = os.pathsep.join([str(inject), *filter(None, [os.environ.get("PYTHONPATH")])])
    done = snakemake_in(work, "--forcerun", "results/tiny/rollout/smagorinsky.h5",
                        extra_env={"PYTHONPATH": path})
    # A blow-up is a result, reported, not a failed run: exit status 0.
    assert done.returncode == 0, done.stderr[-3000:]
    warnings = [line for line in done.stderr.splitlines() if line.startswith("WARNING: closure")]
    assert len(warnings) == 1 and "smagorinsky blew up at t =" in warnings[0]
    assert "the closure is the cause" in warnings[0] and "none" in warnings[0]
    summary = (results(work) / "report" / "summary.md").read_text()
    assert "## Warning: blow-ups" in summary
    assert re.search(r"\| smagorinsky \| blew up at t = [\d.e-]+ \|", summary)
    assert "smagorinsky (blew up at t = " in summary  # its cost row
    side = json.loads((results(work) / "rollout" / "summary.json").read_text())
    assert side["closures"]["smagorinsky"]["blowup"] is True
    assert not side["closures"]["none"]["blowup"]


# ----------------------------------------------------------------------------- killed jobs
# The command-line stage each rule runs (python -m diffclosure <stage>).
STAGES = {"dns": "dns", "coarse": "coarse", "dataset": "dataset", "train": "train",
          "distill": "distill", "sample_benchmark": "sample-benchmark", "rollout": "rollout",
          "rollout_metrics": "rollout-metrics", "report": "report"}


def job_pids(workdir: Path, stage: str) -> list[int]:
    """Processes running `python -m diffclosure <stage>` in `workdir`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if (b"diffclosure" in argv and stage.encode() in argv
                and os.path.realpath(cwd) == os.path.realpath(workdir)):
            found.append(int(proc.name))
    return found


def start_snakemake(workdir: Path, log: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--configfile", str(TINY), "--cores", "2", *args]
    with open(log, "a") as fh:
        return subprocess.Popen(cmd, cwd=workdir, stdout=fh, stderr=subprocess.STDOUT,
                                env=env())


def kill_next_job(run: subprocess.Popen, workdir: Path, stages: set[str]) -> str | None:
    """SIGKILL the first job of one of `stages` seen while `run` goes on; its rule, or None
    when the run ended without starting one."""
    while run.poll() is None:
        for rule in sorted(stages):
            pids = job_pids(workdir, STAGES[rule])
            if pids:
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                return rule
        time.sleep(0.003)
    return None


def test_a_plain_rerun_after_a_killed_job_of_each_stage_completes_the_run(clean, tmp_path):
    """kill -9 of one job of every stage in turn: after each kill Snakemake fails, and the next
    plain `snakemake` redoes what the killed job left undone (and is itself killed in its next
    stage). A stage whose jobs all ran before their turn is forced to run again. The last plain
    run finishes, with every output of a clean run, and the same results."""
    work = copy_workdir(clean, tmp_path / "work")
    log = tmp_path / "snakemake.log"
    left = set(STAGES)
    run = start_snakemake(work, log, "--forcerun", "dns")
    deadline = time.monotonic() + 900
    while left and time.monotonic() < deadline:
        killed = kill_next_job(run, work, left)
        code = run.wait(timeout=600)
        if killed is None:  # finished before a job of what is left started
            assert code == 0, log.read_text()[-3000:]
            run = start_snakemake(work, log, "--forcerun", *sorted(left))
            continue
        assert code != 0, f"killing the {killed} job did not fail the run"
        left.discard(killed)
        run = start_snakemake(work, log)  # the plain rerun
    assert not left, f"no job seen of {sorted(left)}"
    assert run.wait(timeout=600) == 0, log.read_text()[-3000:]
    assert_same_run(clean, work)
