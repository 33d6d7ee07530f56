"""The package installed from a wheel, away from the repository: its schema and defaults travel
with it, and a copy of the workflow folder without the package's sources runs on it.

The wheel goes into a fresh venv that borrows this interpreter's third-party packages (numpy,
torch, snakemake) through a .pth file, so nothing is downloaded. A .pth line only adds a folder to
sys.path; the .pth files inside it are not run, so the editable install of the checkout (itself a
.pth) stays out of the fresh venv.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from support.pipeline import REPO, TINY, env

# The workflow folder a user gets beside an installed package: everything but its sources.
# envs/ too: Snakemake records each rule's conda file with a finished job, conda or not.
WORKFLOW_PARTS = ("Snakefile", "config.yaml", "envs", "workflow/rules", "workflow/report",
                  "workflow/presets", "workflow/profiles")
STAGES = ("dns", "coarse", "dataset", "train", "sample_benchmark", "rollout", "rollout_metrics",
          "report")


def _run(cmd, cwd: Path, venv: Path | None = None, timeout: float = 300):
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                         timeout=timeout, env=_env(venv) if venv else env())
    assert res.returncode == 0, f"{cmd}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def _env(venv: Path) -> dict:
    # Jobs run `python -m diffclosure`: the venv's python must come first on PATH, and no
    # PYTHONPATH may lead back to the checkout.
    out = env()
    out.pop("PYTHONPATH", None)
    out.update(PATH=f"{venv / 'bin'}{os.pathsep}{out.get('PATH', '')}", VIRTUAL_ENV=str(venv))
    return out


def _borrowed_site_dirs() -> list[str]:
    dirs = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    dirs |= {p for p in sys.path if Path(p).name in ("site-packages", "dist-packages")}
    return sorted(d for d in dirs if Path(d).is_dir())


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv with the wheel of this checkout installed (not editable)."""
    root = tmp_path_factory.mktemp("wheel")
    # Built from a copy: a build in the checkout leaves build/ and *.egg-info behind, and a stale
    # build/lib could supply a file that the package data no longer lists.
    src = root / "src"
    shutil.copytree(REPO / "workflow" / "diffclosure", src / "workflow" / "diffclosure",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--no-index", "-q", "-w", root / "dist", src], cwd=root)
    wheel = next((root / "dist").glob("diffclosure-*.whl"))

    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=root)
    purelib = _run([venv / "bin" / "python", "-c",
                    "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                   cwd=root, venv=venv).stdout.strip()
    (Path(purelib) / "borrowed.pth").write_text("\n".join(_borrowed_site_dirs()) + "\n")
    _run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install",
          "--no-deps", "--no-index", "-q", wheel], cwd=root)
    return venv


@pytest.fixture(scope="module")
def workflow_copy(venv, tmp_path_factory) -> Path:
    wf = tmp_path_factory.mktemp("workflow")
    for part in WORKFLOW_PARTS:
        (shutil.copytree if (REPO / part).is_dir() else shutil.copy)(REPO / part, wf / part)
    assert not (wf / "workflow" / "diffclosure").exists()
    return wf


def test_every_data_file_of_the_package_is_package_data(repo_root):
    """A file the package reads but setuptools does not ship works in a checkout only."""
    tomllib = pytest.importorskip("tomllib")
    setuptools = tomllib.loads((repo_root / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools["package-data"]["diffclosure"]
    pkg = repo_root / "workflow" / "diffclosure"
    data = [p.relative_to(pkg).as_posix() for p in pkg.rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc")]
    assert data, "the schema at least is package data"
    assert not [p for p in data if not any(fnmatch.fnmatch(p, pat) for pat in patterns)]


@pytest.mark.slow
def test_the_installed_package_is_the_wheel(venv, tmp_path):
    res = _run([venv / "bin" / "python", "-c",
                "import json, diffclosure, diffclosure.config as C; print(json.dumps("
                "[diffclosure.__file__, str(C.SCHEMA_PATH), C.CHECKOUT is None]))"],
               cwd=tmp_path, venv=venv)
    module, schema, no_checkout = json.loads(res.stdout)
    assert Path(module).is_relative_to(venv), module
    assert Path(schema).is_relative_to(venv) and Path(schema).is_file(), schema
    assert no_checkout


@pytest.mark.slow
def test_check_config_works_outside_any_workflow(venv, tmp_path):
    """No config.yaml to start from: the preset goes on top of the schema's defaults."""
    for cmd in ([venv / "bin" / "python", "-m", "diffclosure"], [venv / "bin" / "diffclosure"]):
        res = _run([*cmd, "check-config", TINY], cwd=tmp_path, venv=venv)
        assert f"valid: {TINY} on top of the schema's defaults" in res.stdout, res.stdout
        assert "results/tiny/" in res.stdout


@pytest.mark.slow
def test_check_config_starts_from_the_workflow_folder_it_runs_in(venv, workflow_copy):
    res = _run([venv / "bin" / "python", "-m", "diffclosure", "check-config", TINY],
               cwd=workflow_copy, venv=venv)
    assert f"on top of {workflow_copy / 'config.yaml'}" in res.stdout, res.stdout


@pytest.mark.slow
def test_a_workflow_copy_plans_the_default_pipeline(venv, workflow_copy):
    res = _run([venv / "bin" / "python", "-m", "snakemake", "-n", "--cores", "1", "--quiet",
                "rules"], cwd=workflow_copy, venv=venv)
    for rule in STAGES:
        assert rule in res.stdout, res.stdout


@pytest.mark.slow
def test_a_workflow_copy_runs_up_to_the_dataset(venv, workflow_copy):
    _run([venv / "bin" / "python", "-m", "snakemake", "--cores", "2", "--until", "dataset",
          "--configfile", TINY], cwd=workflow_copy, venv=venv, timeout=600)
    stats = json.loads((workflow_copy / "results" / "tiny" / "dataset" / "stats.json")
                       .read_text())
    # Made by the wheel: no checkout to take a commit from.
    assert stats["provenance"]["git_commit"] == "unknown"
