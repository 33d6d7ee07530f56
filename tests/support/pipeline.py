"""Helpers for the tests that drive the real pipeline: snakemake and `python -m diffclosure` as
subprocesses, one tiny pipeline run shared by every test module of a session, dry-run parsing.

The tiny run is made once per pytest session (whichever module asks first) and shared: the
end-to-end checks, the partial-rerun dry runs and the reliability drills only read from it
(drills copy what they damage), so one ~40 s pipeline run serves all of them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "fixtures" / "tiny.yaml"
RUN = "tiny"  # tiny.yaml's `run`: outputs land in <workdir>/results/tiny


def env() -> dict:
    """Subprocess environment: one thread per process (2 shared cores), no display."""
    out = dict(os.environ)
    out.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    return out


def snakemake(workdir: Path, *args: str, configfile: Path = TINY, timeout: float = 120,
              ) -> subprocess.CompletedProcess:
    """Run the repository's Snakefile on `configfile` with outputs under `workdir`."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--configfile", str(configfile), *args]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout,
                          env=env())


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 120,
                ) -> subprocess.CompletedProcess:
    """`python -m diffclosure ARGS` to completion."""
    return subprocess.run([sys.executable, "-m", "diffclosure", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env())


def start_cli(*args: str, log: Path, cwd: Path | None = None) -> subprocess.Popen:
    """`python -m diffclosure ARGS` in the background, stdout+stderr to `log` (for kill drills)."""
    with open(log, "w") as fh:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "diffclosure", *map(str, args)], cwd=cwd,
                                stdout=fh, stderr=subprocess.STDOUT, env=env())


def tiny_config() -> dict:
    """tiny.yaml as written (defaults not filled)."""
    return yaml.safe_load(TINY.read_text())


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def sections_json(*names: str, cfg: dict | None = None, **overrides) -> str:
    """Inline JSON of some tiny.yaml sections (as the rules pass them), with section overrides
    merged in: sections_json("train", train={"epochs": 3})."""
    import json

    cfg = tiny_config() if cfg is None else cfg
    out = {n: cfg.get(n, {}) for n in names}
    for name, values in overrides.items():
        out[name] = {**out.get(name, {}), **values} if isinstance(values, dict) else values
    return json.dumps(out)


def planned_jobs(stdout: str) -> dict[str, int]:
    """{rule: job count} from the "Job stats" table of `snakemake -n --quiet rules`.

    Empty when Snakemake has nothing to do. The table is printed twice by some versions; the
    first copy is read.
    """
    lines = stdout.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if re.match(r"^job\s+count\s*$", line))
    except StopIteration:
        if "Nothing to be done" in stdout:
            return {}
        raise AssertionError(f"no job table in snakemake output:\n{stdout}") from None
    jobs = {}
    for line in lines[start + 2:]:  # skip the header and the dashes
        m = re.match(r"^(\S+)\s+(\d+)\s*$", line)
        if not m or m.group(1) == "total":
            break
        jobs[m.group(1)] = int(m.group(2))
    return jobs


_RUNS: dict[str, Path] = {}


def completed_tiny_run(tmp_path_factory) -> Path:
    """Workdir of one complete tiny pipeline run, made at most once per session.

    Cached here rather than in a session fixture so that every module importing this helper
    shares it without touching tests/conftest.py.
    """
    if "tiny" not in _RUNS:
        workdir = tmp_path_factory.mktemp("tiny-pipeline")
        res = snakemake(workdir, "--cores", "2", timeout=600)
        if res.returncode != 0:
            logs = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}"
                             for p in sorted((workdir / "results").rglob("*.log")))
            raise AssertionError(
                f"tiny pipeline failed (rc={res.returncode}):\n{res.stderr[-5000:]}\n{logs}"
            )
        _RUNS["tiny"] = workdir
    return _RUNS["tiny"]


def results(workdir: Path) -> Path:
    return workdir / "results" / RUN


def assert_clear_failure(res, *needles: str) -> None:
    """Non-zero exit, a one-line reason in stderr naming what is wrong, no traceback."""
    assert res.returncode != 0
    assert "Traceback" not in res.stderr, res.stderr
    errors = [line for line in res.stderr.splitlines() if " ERROR " in line]
    assert errors, res.stderr
    for needle in needles:
        assert needle in errors[-1], (needle, errors[-1])
