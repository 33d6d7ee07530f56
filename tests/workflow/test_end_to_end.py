"""The whole pipeline through the real snakemake on tests/fixtures/tiny.yaml (issues #6, #7).

One pipeline run (shared with test_reliability.py, see support/pipeline.py) is checked for:
completeness (every declared output, Snakemake agrees nothing is left to do, no temporary
files left behind); the science (the learned closure beats no closure at the end of the rollout,
the exact closure reproduces the reference to round-off, with D_Fro recomputed here from the
rollout files by its definition); the file contract (xarray opens every HDF5 output with named
dims, provenance attrs, `python -m diffclosure info`); and partial reruns, with dry runs on top
of the completed run: which rules a config change, --until or --forcerun would run.
"""

from __future__ import annotations

import re
import subprocess

import h5py
import numpy as np
import pytest
import xarray as xr

import diffclosure as pkg
from diffclosure import config as cfgmod

from support.pipeline import (
    REPO,
    completed_tiny_run,
    planned_jobs,
    results,
    run_cli,
    snakemake,
    tiny_config,
    write_config,
)
from support.tables import csv_rows

pytestmark = pytest.mark.slow  # the quick tier (-m "not slow") skips this module

CLOSURES = ("none", "true", "diffusion", "smagorinsky")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return completed_tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def out(workdir):
    return results(workdir)


# ----------------------------------------------------------------------------- completeness
def declared_outputs() -> list[str]:
    """Every file the rules declare for tiny.yaml (2 shards, test grids 16 and 32, 4 closures)."""
    files = [f"dns/shard-{i}.h5" for i in (0, 1)] + [f"coarse/shard-{i}.h5" for i in (0, 1)]
    files += [f"dataset/{s}.h5" for s in ("train", "val", "test", "test-16", "test-32")]
    files += ["dataset/stats.json", "dataset/summary.png"]
    files += ["model/score.pt", "model/history.csv", "model/curves.png"]
    files += [f"sampling/{f}" for f in ("benchmark.csv", "resolution.csv", "pareto.png",
                                         "samples.png", "spectra.png")]
    files += [f"rollout/{c}.h5" for c in CLOSURES]
    files += [f"rollout/{f}" for f in ("metrics.csv", "summary.csv", "summary.json",
                                        "error.png", "spectra.png", "snapshots.png")]
    files += ["report/summary.md", "report/animation.mp4"]
    return files


def test_pipeline_completes_with_every_declared_output(out):
    missing = [f for f in declared_outputs() if not (out / f).is_file()]
    assert not missing, f"missing outputs: {missing}"
    empty = [f for f in declared_outputs() if (out / f).stat().st_size == 0]
    assert not empty, f"empty outputs: {empty}"
    # A clean run leaves no temporary file of the atomic writers behind.
    leftovers = [p for p in out.rglob("*") if ".tmp-" in p.name]
    assert not leftovers, leftovers


def test_snakemake_has_nothing_left_to_do(workdir):
    res = snakemake(workdir, "-n", "--quiet", "rules")
    assert res.returncode == 0, res.stderr
    assert planned_jobs(res.stdout + res.stderr) == {}


# ----------------------------------------------------------------------------- the science
def final_d_fro_from_files(out, closure: str) -> tuple[float, np.ndarray]:
    """D_Fro = ||mean over members of w - w_ref|| / ||w_ref||, mean over initial states, by its
    definition from rollout/<closure>.h5; returned at the last record and over all records."""
    with h5py.File(out / "rollout" / f"{closure}.h5", "r") as fh:
        w = fh["vorticity"][()].astype(np.float64)  # (state, member, time, y, x)
        ref = fh["reference"][()].astype(np.float64)  # (state, time, y, x)
    err = np.linalg.norm(w.mean(axis=1) - ref, axis=(-2, -1))
    d = (err / np.linalg.norm(ref, axis=(-2, -1))).mean(axis=0)  # (time,)
    return float(d[-1]), d


def final_d_fro_from_csv(out, closure: str) -> float:
    """The ensemble-mean D_Fro at the last time in rollout/metrics.csv, mean over states."""
    rows = [r for r in csv_rows(out / "rollout" / "metrics.csv")
            if r["closure"] == closure and r["member"] == "mean"]
    assert rows, f"no ensemble-mean rows for {closure} in metrics.csv"
    last = max(float(r["time"]) for r in rows)
    return float(np.mean([float(r["d_fro"]) for r in rows if float(r["time"]) == last]))


def test_learned_closure_beats_no_closure(out):
    diffusion, _ = final_d_fro_from_files(out, "diffusion")
    none, _ = final_d_fro_from_files(out, "none")
    # The dropped closure term must matter at all, or the comparison says nothing.
    assert none > 1e-2
    assert diffusion < none, f"D_Fro at the end: diffusion {diffusion:.4g} vs none {none:.4g}"
    # metrics.csv says the same as the definition applied to the rollout files
    for closure in CLOSURES:
        direct, _ = final_d_fro_from_files(out, closure)
        assert final_d_fro_from_csv(out, closure) == pytest.approx(direct, rel=1e-4, abs=1e-7)


def test_exact_closure_stays_at_round_off(out):
    _, d = final_d_fro_from_files(out, "true")
    # Replaying the DNS's own closure terms reproduces the reference up to float32 storage.
    assert np.all(d < 1e-6), d


# ----------------------------------------------------------------------------- file contract
H5_OUTPUTS = [
    ("dns/shard-0.h5", None, ("vorticity", "G", "H")),
    ("coarse/shard-1.h5", "n16", ("vorticity", "target")),
    ("coarse/shard-1.h5", "n32", ("vorticity", "target")),
    ("dataset/train.h5", None, ("vorticity", "target", "measurements")),
    ("dataset/test-32.h5", None, ("vorticity", "target", "measurements")),
    ("rollout/diffusion.h5", None, ("reference",)),
]


def git(*args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
    except OSError:
        return None


def check_provenance(attrs: dict, where: str) -> None:
    for key in ("diffclosure_version", "git_commit", "config_hash"):
        assert key in attrs, f"{where}: no {key}"
    assert attrs["diffclosure_version"] == pkg.__version__, where
    assert re.fullmatch(r"[0-9a-f]{16}", attrs["config_hash"]), where
    head = git("rev-parse", "HEAD")
    if head is not None and head.returncode == 0:  # a checkout: the commit is recorded
        m = re.fullmatch(r"([0-9a-f]{40})(-dirty)?", attrs["git_commit"])
        assert m, f"{where}: git_commit {attrs['git_commit']!r}"
        # HEAD itself, or an ancestor when someone committed since the pipeline ran
        assert git("merge-base", "--is-ancestor", m.group(1), "HEAD").returncode == 0, where


@pytest.mark.parametrize("path,group,fields", H5_OUTPUTS)
def test_hdf5_outputs_open_with_xarray_named_dims_and_provenance(out, path, group, fields):
    with xr.open_dataset(out / path, engine="h5netcdf", group=group) as ds:
        for name in fields:
            dims = ds[name].dims
            assert dims[-2:] == ("y", "x"), (name, dims)
            assert dims[0] in ("trajectory", "state"), (name, dims)
            assert "time" in dims, (name, dims)
            assert ds[name].dtype == np.float32
    with h5py.File(out / path, "r") as fh:
        check_provenance({k: (v.decode() if isinstance(v, bytes) else v)
                          for k, v in fh.attrs.items()}, path)


def test_dns_records_the_hash_of_its_config_and_its_time_grid(out):
    """config_hash is the hash of the (defaults-filled) dns section that made the file, and the
    record times are spinup + k * record_every."""
    dns = cfgmod.load(tiny_config(), sections=["dns"])["dns"]
    with h5py.File(out / "dns" / "shard-0.h5", "r") as fh:
        assert fh.attrs["config_hash"] == cfgmod.section_hash(dns)
        times = fh["time"][()]
    k = np.arange(round(dns["duration"] / dns["record_every"]) + 1)
    np.testing.assert_allclose(times, dns["spinup"] + k * dns["record_every"], atol=1e-12)


def test_info_prints_the_provenance(out):
    files = ["dns/shard-0.h5", "coarse/shard-0.h5", "dataset/test.h5", "rollout/none.h5",
             "model/score.pt"]
    res = run_cli("info", *files, cwd=out)
    assert res.returncode == 0, res.stderr
    blocks = re.split(r"^== ", res.stdout, flags=re.M)[1:]
    assert len(blocks) == len(files)
    for path, block in zip(files, blocks, strict=True):
        assert block.startswith(path)
        prov = dict(re.findall(r"^  (diffclosure_version|git_commit|config_hash): (\S+)$",
                               block, flags=re.M))
        check_provenance(prov, path)
        if path.endswith(".h5"):  # what info printed is what the file holds
            with h5py.File(out / path, "r") as fh:
                assert prov["config_hash"] == fh.attrs["config_hash"]


# ----------------------------------------------------------------------------- partial reruns
def dry_run(workdir, tmp_path, *args, **changes) -> dict[str, int]:
    """{rule: jobs} that snakemake would run on top of the completed run, with tiny.yaml's
    sections updated by `changes` (section -> {field: value})."""
    cfg = tiny_config()
    for section, values in changes.items():
        cfg[section] = {**cfg[section], **values}
    configfile = write_config(tmp_path / "changed.yaml", cfg)
    res = snakemake(workdir, "-n", "--quiet", "rules", *args, configfile=configfile)
    assert res.returncode == 0, res.stderr
    return planned_jobs(res.stdout + res.stderr)


def test_sampler_change_reruns_only_the_benchmark_and_report(workdir, tmp_path):
    samplers = tiny_config()["sampling"]["samplers"] + [{"name": "ode_heun", "steps": 3}]
    jobs = dry_run(workdir, tmp_path, sampling={"samplers": samplers})
    assert jobs == {"sample_benchmark": 1, "report": 1, "all": 1}


def test_training_change_reruns_training_and_downstream_only(workdir, tmp_path):
    jobs = dry_run(workdir, tmp_path, train={"lr": 2.0e-3})
    # Only the diffusion rollout depends on the model; the other closures are not rerun.
    assert jobs == {"train": 1, "distill": 1, "sample_benchmark": 1, "rollout": 1,
                    "rollout_metrics": 1, "report": 1, "all": 1}


def test_rollout_sampler_change_reruns_only_the_learned_closure(workdir, tmp_path):
    sampler = {"name": "ode_heun", "steps": 3, "schedule": "karras", "t_max": 0.1}
    jobs = dry_run(workdir, tmp_path, rollout={"sampler": sampler})
    assert jobs == {"rollout": 1, "rollout_metrics": 1, "report": 1, "all": 1}


def test_dns_seed_change_reruns_everything(workdir, tmp_path):
    jobs = dry_run(workdir, tmp_path, dns={"seed": 7})
    assert jobs == {"dns": 2, "coarse": 2, "dataset": 1, "train": 1, "distill": 1,
                    "sample_benchmark": 1, "rollout": len(CLOSURES), "rollout_metrics": 1,
                    "report": 1, "all": 1}


@pytest.mark.slow
@pytest.mark.parametrize(("section", "change"), [
    ("dns", {"threads": 2}), ("dns", {"batch": 5}), ("dns", {"planner": "FFTW_MEASURE"}),
    ("train", {"threads": 2}),
])
def test_speed_only_settings_rerun_nothing(workdir, tmp_path, section, change):
    """Threads, batch and planner leave the bits alone (tests/stages/test_dns_stage.py), so changing
    one on a completed run plans no job."""
    assert set(change) <= set(cfgmod.SPEED_ONLY[section])
    assert dry_run(workdir, tmp_path, **{section: change}) == {}


def test_until_train_plans_nothing_past_training(workdir, tmp_path):
    # With a new DNS seed every stage is outdated, yet --until train stops at train.
    jobs = dry_run(workdir, tmp_path, "--until", "train", dns={"seed": 7})
    assert jobs == {"dns": 2, "coarse": 2, "dataset": 1, "train": 1}


def test_forcerun_sample_benchmark_reruns_it_and_its_dependants(workdir, tmp_path):
    jobs = dry_run(workdir, tmp_path, "--forcerun", "sample_benchmark")
    assert jobs == {"sample_benchmark": 1, "report": 1, "all": 1}


def test_snakemake_report_collects_the_figures_of_every_stage(workdir, tmp_path):
    html = tmp_path / "report.html"
    res = snakemake(workdir, "--report", str(html))
    assert res.returncode == 0, res.stderr[-2000:]
    text = html.read_text(errors="replace")
    for name in ("summary.png", "curves.png", "pareto.png", "samples.png", "error.png",
                 "spectra.png", "snapshots.png", "summary.md"):
        assert name in text, name
