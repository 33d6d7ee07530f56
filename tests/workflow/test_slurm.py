"""The SLURM profile (workflow/profiles/slurm) on a real one-node SLURM cluster.

The test installs SLURM and munge from Debian's packages when they are missing
(.ci/slurm-cluster.sh install), starts slurmctld, slurmd and munged on this machine, runs
workflows through `--executor slurm --profile workflow/profiles/slurm`, and stops every daemon it
started. Needs root; skipped otherwise. Run it alone:
`pytest -m slurm tests/workflow/test_slurm.py`.

1. tests/fixtures/slurm/Snakefile, a toy with the pipeline's rule names and resource shapes,
   whose jobs only record what SLURM gave them: checks that every non-local job went through
   sbatch with the profile's partition, threads, memory, wall time and GPU request, that SLURM's
   own job record (scontrol) agrees, and that the local rule never reached SLURM. The node
   declares one fake GPU (a GRES backed by /dev/null), so GPU jobs are scheduled and run for
   real; what is proven is the request and SLURM's allocation, not CUDA.
2. The real Snakefile up to the DNS stage with a tiny config, once `python -m diffclosure dns`
   exists (skipped before).
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[2]
HELPER = ROOT / ".ci" / "slurm-cluster.sh"
PROFILE = ROOT / "workflow" / "profiles" / "slurm"
TOY = ROOT / "tests" / "fixtures" / "slurm" / "Snakefile"
RUN_TIMEOUT_S = 240  # per workflow run; SIGKILL, since a stuck executor ignores SIGTERM

# The profile's partitions and the threads it gives DNS shards (workflow/profiles/slurm).
CPU_PARTITION, GPU_PARTITION, DNS_THREADS = "cpu", "gpu", 2


def _helper(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run(
        ["bash", str(HELPER), *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="module")
def cluster():
    """A running one-node cluster (config at /etc/slurm/slurm.conf); stopped afterwards."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("needs root on Linux: the test starts slurmctld, slurmd and munged")
    if shutil.which("bash") is None or shutil.which("timeout") is None:
        pytest.skip("needs bash and coreutils' timeout")
    installed = _helper("install")
    if installed.returncode != 0:
        pytest.skip(
            "SLURM packages are absent and could not be installed "
            f"(.ci/slurm-cluster.sh install):\n{_tail(installed.stderr + installed.stdout)}"
        )
    importlib.invalidate_caches()  # the helper may have just pip-installed the plugin
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        pytest.skip("snakemake-executor-plugin-slurm is not installed and pip could not add it")

    # The daemons' state lives outside pytest's temp root: a concurrent pytest run on this
    # machine may prune old temp roots while the cluster still runs.
    state = Path(tempfile.mkdtemp(prefix="diffclosure-slurm-"))
    started = _helper("start", str(state), timeout=180)
    if started.returncode != 0:
        shutil.rmtree(state, ignore_errors=True)
    if started.returncode == 3:
        pytest.skip(f"a SLURM config not written by the test is in the way:\n{started.stderr}")
    assert started.returncode == 0, f"cluster did not start:\n{_tail(started.stderr)}"
    try:
        yield state
    finally:
        stopped = _helper("stop", str(state), timeout=120)
        assert stopped.returncode == 0, f"cluster did not stop cleanly:\n{stopped.stderr}"
        for name in ("slurmctld.pid", "slurmd.pid"):
            assert not (state / name).exists(), f"{name} left behind"
        shutil.rmtree(state, ignore_errors=True)


def _snakemake(workdir: Path, *args: str) -> tuple[int, str]:
    """Run snakemake through the SLURM profile in `workdir`; return (exit code, its output)."""
    env = {
        k: v
        for k, v in os.environ.items()
        # A GPU list or a SLURM job of the caller must not leak into the jobs (--export=ALL).
        if not k.startswith(("SLURM_", "SBATCH_", "SRUN_")) and k != "CUDA_VISIBLE_DEVICES"
    }
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [
        "timeout", "-s", "KILL", str(RUN_TIMEOUT_S),
        sys.executable, "-m", "snakemake",
        "--profile", str(PROFILE),
        "--directory", str(workdir),
        "--verbose", "--nocolor",  # --verbose logs every sbatch call
        # No slurmdbd here, so no sacct: poll squeue (the cluster keeps jobs MinJobAge=600 s).
        "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "5",
        "--slurm-keep-successful-logs",
        *args,
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    (workdir / "snakemake-output.log").write_text(log)
    assert proc.returncode != 137, f"snakemake hung and was killed after {RUN_TIMEOUT_S} s"
    return proc.returncode, log


def _sbatch_calls(log: str) -> dict[str, str]:
    """The sbatch command line of each submitted job (without --wrap), keyed by its comment."""
    calls = {}
    for line in re.findall(r"sbatch call: (sbatch .*?) --wrap=", log):
        comment = re.search(r"--comment (\S+)", line).group(1)
        assert comment not in calls, f"{comment} submitted twice"
        calls[comment] = line
    return calls


def _slurm_jobs(log: str) -> dict[str, dict[str, str]]:
    """SLURM's own record of every job the executor says it submitted, keyed by comment."""
    ids = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    assert ids, "the executor's log names no SLURM job id"
    jobs = {}
    for jobid in ids:
        out = subprocess.run(
            ["scontrol", "-d", "-o", "show", "job", jobid],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        fields = dict(kv.split("=", 1) for kv in out.split() if "=" in kv)
        jobs[fields["Comment"]] = fields
    return jobs


def _record(path: Path) -> dict[str, str]:
    """What a toy job wrote about itself: key=value pairs."""
    assert path.is_file(), f"missing output {path}"
    return dict(kv.split("=", 1) for kv in path.read_text().split())


@pytest.fixture
def workdir(cluster):
    """A working directory for one workflow run, beside the cluster's state (not pruned)."""
    path = Path(tempfile.mkdtemp(prefix="run-", dir=cluster))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_toy_workflow_runs_through_slurm_with_the_profile(workdir):
    shutil.copy(TOY, workdir / "Snakefile")
    rc, log = _snakemake(workdir)
    assert rc == 0, f"snakemake failed:\n{_tail(log, 80)}"

    calls = _sbatch_calls(log)
    jobs = _slurm_jobs(log)
    remote = {
        # comment: (output, partition, gpu, threads)
        "rule_dns_wildcards_0": ("dns/shard-0.txt", CPU_PARTITION, False, DNS_THREADS),
        "rule_dns_wildcards_1": ("dns/shard-1.txt", CPU_PARTITION, False, DNS_THREADS),
        "rule_train": ("model/score.txt", GPU_PARTITION, True, 1),
        "rule_rollout_wildcards_none": ("rollout/none.txt", CPU_PARTITION, False, 1),
        "rule_rollout_wildcards_diffusion": ("rollout/diffusion.txt", GPU_PARTITION, True, 1),
    }
    # Every rule but the local one went through sbatch, each exactly once.
    assert set(calls) == set(remote), f"sbatch calls: {sorted(calls)}"
    assert set(jobs) == set(remote), f"SLURM jobs: {sorted(jobs)}"

    for comment, (output, partition, gpu, threads) in remote.items():
        call, job, rec = calls[comment], jobs[comment], _record(workdir / output)
        # The submission carries the profile's partition and the rule's resources.
        assert f"-p {partition} " in call, call
        assert " --mem 300 " in call and " -t 5 " in call, call
        assert f"--cpus-per-task={threads}" in call, call
        assert ("--gpus=1" in call) == gpu, call
        # SLURM scheduled it as asked and it finished.
        assert job["JobState"] == "COMPLETED", (comment, job["JobState"], job.get("Reason"))
        assert job["Partition"] == partition
        assert job["NumCPUs"] == str(threads)
        assert job["MinMemoryNode"] == "300M" and job["TimeLimit"] == "00:05:00"
        assert ("gres:gpu:1" in job.get("TresPerJob", "")) == gpu, job.get("TresPerJob")
        assert job["JOB_GRES"] == ("gpu:1" if gpu else "(null)"), job["JOB_GRES"]
        # The job that wrote the output is that SLURM job, and saw what SLURM gave it.
        assert rec["job"] == job["JobId"], (comment, rec, job["JobId"])
        assert rec["partition"] == partition
        assert rec["threads"] == str(threads)
        assert (rec["step_gpus"] != "-") == gpu, (comment, rec)

    # The local rule ran in the snakemake process itself, outside any SLURM job.
    report = _record(workdir / "report.txt")
    assert report["job"] == "-" and report["partition"] == "-", report


def _dns_stage_available() -> bool:
    probe = subprocess.run(
        [sys.executable, "-m", "diffclosure", "dns", "--help"], capture_output=True, cwd=ROOT
    )
    return probe.returncode == 0


# Rules whose threads read workflow.cores at parse time break any run without --cores, which
# is every cluster run through the profile.
CORES_BUG = "Workflow requires a total number of cores to be defined"
CORES_BUG_REASON = (
    "`snakemake --profile workflow/profiles/slurm` fails without --cores: a rule's threads use "
    "workflow.cores (workflow/rules/train.smk, sampling.smk); use config['train']['threads'] "
    "(Snakemake caps threads at --cores in local runs anyway). DNS on SLURM passed with --cores."
)

TINY_CONFIG = """\
run: slurm-tiny
device: cpu
dns: {n: 16, spinup: 0.01, duration: 0.01, record_every: 0.005, dt: 0.001,
      trajectories: 4, shards: 2, planner: FFTW_ESTIMATE}
coarse: {n: 16, test_resolutions: [16]}
measurements: {lattice: 4}
dataset: {val_trajectories: 1, test_trajectories: 1, duration: null}
sde: {}
model: {}
train: {}
sampling: {}
rollout: {initial_states: 1, start: null}
report: {}
"""


def test_real_pipeline_dns_stage_runs_through_slurm(workdir):
    if not _dns_stage_available():
        pytest.skip("the DNS stage does not exist yet (`python -m diffclosure dns --help` fails)")
    h5py = pytest.importorskip("h5py")
    config = workdir / "tiny.yaml"
    config.write_text(TINY_CONFIG)
    args = ("--snakefile", str(ROOT / "Snakefile"), "--configfile", str(config), "--until", "dns")

    rc, log = _snakemake(workdir, "-n", *args)
    assert rc == 0, f"dry run failed:\n{_tail(log, 60)}"
    rc, log = _snakemake(workdir, *args)
    known_bug = None
    if rc != 0 and CORES_BUG in log:
        # The user's plain command fails: record why, and still prove the DNS stage on SLURM
        # with an explicit --cores (which only the parse-time threads expression needs).
        known_bug = CORES_BUG_REASON
        rc, log = _snakemake(workdir, "--cores", "8", *args)
    assert rc == 0, f"snakemake failed:\n{_tail(log, 80)}"

    calls, jobs = _sbatch_calls(log), _slurm_jobs(log)
    assert set(jobs) == set(calls) == {"rule_dns_wildcards_0", "rule_dns_wildcards_1"}, jobs
    for comment, job in jobs.items():
        assert job["JobState"] == "COMPLETED" and job["Partition"] == CPU_PARTITION, job
        assert job["NumCPUs"] == str(DNS_THREADS), job["NumCPUs"]  # the profile's set-threads
        mem = re.search(r" --mem (\d+) ", calls[comment]).group(1)  # the rule's estimate
        assert job["MinMemoryNode"] == f"{mem}M", (job["MinMemoryNode"], mem)

    # Two shards of two trajectories each, together every trajectory exactly once.
    seen = []
    for shard in (0, 1):
        path = workdir / "results" / "slurm-tiny" / "dns" / f"shard-{shard}.h5"
        with h5py.File(path, "r") as f:
            w = f["vorticity"][...]
            assert w.ndim == 4 and w.shape[0] == 2 and w.shape[2:] == (16, 16), w.shape
            assert (abs(w) < float("inf")).all()
            seen += [int(t) for t in f["trajectory"][...]]
    assert sorted(seen) == [0, 1, 2, 3], seen
    if known_bug:
        pytest.xfail(known_bug)
