"""The Snakemake workflow as users drive it: validation before any job, a complete DAG."""

import subprocess

import pytest
import yaml


def snakemake(repo_root, *args, timeout=120):
    return subprocess.run(
        ["snakemake", *args],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_dry_run_plans_every_stage(repo_root, tmp_path):
    res = snakemake(repo_root, "-n", "--quiet", "rules", "--directory", str(tmp_path),
                    "--snakefile", str(repo_root / "Snakefile"),
                    "--configfile", str(repo_root / "config.yaml"))
    assert res.returncode == 0, res.stderr
    for rule in ("dns", "coarse", "dataset", "train", "sample_benchmark", "rollout",
                 "rollout_metrics", "report"):
        assert rule in res.stdout


@pytest.mark.slow
def test_bad_config_fails_before_any_job(repo_root, tmp_path):
    cfg = yaml.safe_load((repo_root / "config.yaml").read_text())
    cfg["dns"]["nu"] = -1.0
    cfg["coarse"]["surprise"] = 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    res = snakemake(repo_root, "-n", "--configfile", str(bad), "--directory", str(tmp_path),
                    "--snakefile", str(repo_root / "Snakefile"))
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "dns.nu" in out and "coarse.surprise" in out
    assert not (tmp_path / "results").exists()
