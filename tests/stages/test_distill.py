"""The distill stage: progressive distillation into a one-step generator, and its sampler.

The Gaussian check: x = mu + C^(1/2) z with C diagonal in Fourier space (eigenvalues lam_k) has
the exact score -(C + sigma^2)^-1 (x - mu) under the VE SDE, and the probability-flow ODE from
x_T = mu + T z (T = std(t_max)) ends, mode by mode, at mu + sqrt(lam / (lam + T^2)) (x_T - mu):
the exact distribution of the sampler is N(mu, lam T^2 / (lam + T^2)) per mode (narrower than
C: the start is narrower than the marginal N(mu, C + T^2)). The teacher is that exact score in
4 probability-flow Heun steps (as the default config); the students are per-mode linear maps,
one per grid time, which can represent the exact flow.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from diffclosure import config as cfgmod
from diffclosure.data.datasets import InMemorySplit
from diffclosure.model.sde import VESDE
from diffclosure.sampling.closure_sampler import ClosureSampler, ConditionError
from diffclosure.sampling.denoiser import Denoiser
from diffclosure.sampling.distill import distil, load_onestep, teacher_sampler
from diffclosure.sampling.samplers import make_sampler

from support.pipeline import (
    completed_tiny_run,
    planned_jobs,
    results,
    run_cli,
    snakemake,
    tiny_config,
    write_config,
)
from support.tables import csv_rows

N = 8
SDE = VESDE(26.0)
K = torch.fft.fftfreq(N, 1.0 / N, dtype=torch.float64)
LAM = 0.1 + 0.9 / (1 + 0.3 * K[None, :] ** 2 + 0.1 * K[:, None] ** 2)  # lam(k) = lam(-k)
XS = torch.arange(N, dtype=torch.float64) / N
MU = torch.sin(2 * math.pi * XS)[None, :] + 0.5 * torch.cos(2 * math.pi * XS)[:, None] + 0.3
T_MAX = 0.1  # the paper's truncated start, the pipeline's default
TEACHER = {"name": "ode_heun", "steps": 4, "schedule": "karras", "t_max": T_MAX}


def _modes(x):
    return torch.fft.fft2(x, norm="ortho")


def _field(modes):
    return torch.fft.ifft2(modes, norm="ortho").real


def exact_score(x, t, cond):
    """Score of x_t for the Gaussian centred on `cond` (the condition path is exercised)."""
    s2 = SDE.std(t.to(torch.float64))[:, None, None] ** 2
    return _field(-_modes(x - cond) / (LAM + s2))


class ModeStudent(nn.Module):
    """score = F^-1 (w_j F(x - cond)) / sigma_j^2 with a real factor per mode and grid time t_j:
    the one-step data prediction x + sigma^2 score is then cond + (1 + w_j)(x - cond) per mode,
    so w = 0 is the identity and the exact flow has w = sqrt(lam/(lam + T^2)) - 1."""

    def __init__(self, times):
        super().__init__()
        self.register_buffer("times", torch.tensor(times, dtype=torch.float64))
        self.w = nn.Parameter(torch.zeros(len(times), N, N, dtype=torch.float64))

    def index(self, t):
        return int((self.times - float(t[0])).abs().argmin())

    def forward(self, x, t, cond):
        s2 = SDE.std(float(t[0])) ** 2
        return _field(self.w[self.index(t)] * _modes(x - cond)) / s2


class NoNoiseStudent(ModeStudent):
    """A generator that never sees the noise: its data prediction is cond + b_j, a learned field
    per grid time, whatever x is (what a regression on the condition alone can be)."""

    def forward(self, x, t, cond):
        s2 = SDE.std(float(t[0])) ** 2
        return (cond + self.w[self.index(t)] - x) / s2


def gaussian_data(batch, seed):
    """Exact samples of the Gaussian (the states of the intermediate rounds) and conditions."""
    z = torch.randn((batch, N, N), generator=torch.Generator().manual_seed(seed),
                    dtype=torch.float64)
    x0 = MU + _field(LAM.sqrt() * _modes(z))
    return InMemorySplit(x0, MU.expand(batch, N, N).clone(), [])


def distilled_samples(student_cls, batch=4000):
    sampler = teacher_sampler(TEACHER)
    student = student_cls([float(t) for t in sampler.times(SDE)])
    result = distil(exact_score, student, sampler, gaussian_data(512, 0), SDE,
                    lambda cond: cond, epochs=15, batch_size=64, lr=0.05, seed=1)
    assert [r["round"] for r in result.history][-1] == 2  # 4 -> 2 -> 1
    one = make_sampler({"name": "onestep", "t_max": T_MAX})
    gen = torch.Generator().manual_seed(7)
    res = one(Denoiser(result.student, SDE, MU.expand(batch, N, N)), (batch, N, N), gen,
              prior_mean=MU, dtype=torch.float64)
    return res


def moment_errors(samples):
    """(mean statistic, mean and max |variance ratio - 1| over modes) against the teacher's
    exact distribution N(mu, lam T^2 / (lam + T^2)) per mode."""
    batch = samples.shape[0]
    big_t2 = SDE.std(T_MAX) ** 2
    var = LAM * big_t2 / (LAM + big_t2)
    modes = _modes(samples - MU)
    mean_modes = modes.mean(0)
    # Each mode of the sample mean has variance var/B: B|m_k|^2/var averages 1.
    z2 = float((mean_modes.abs() ** 2 * batch / var).mean())
    ratio = ((modes - mean_modes).abs() ** 2).mean(0) / var
    return z2, float((ratio.mean() - 1).abs()), float((ratio - 1).abs().max())


def test_one_step_samples_match_the_exact_gaussian():
    res = distilled_samples(ModeStudent)
    assert res.nfe == 1  # counted: one call of the student
    z2, var_err, var_worst = moment_errors(res.samples)
    # Monte Carlo: ~0.3% on the pooled variance, ~2-3% per mode (4000 samples); the teacher's
    # own error is ~0.4% here (its 4 Heun steps, measured), the distillation's about as much.
    assert z2 < 1.8, z2
    assert var_err < 0.02, var_err
    assert var_worst < 0.10, var_worst


def test_a_student_without_the_noise_input_fails_the_same_check():
    res = distilled_samples(NoNoiseStudent)
    z2, var_err, _ = moment_errors(res.samples)
    assert var_err > 0.9  # collapsed onto the mean: no spread, the closure is no longer stochastic


def test_teacher_settings_are_checked():
    for name in ("em", "dpm2m"):  # stochastic; multistep
        with pytest.raises(cfgmod.ConfigError, match="distill.teacher.name"):
            teacher_sampler({"name": name, "steps": 4})
    with pytest.raises(cfgmod.ConfigError, match="power of two"):
        teacher_sampler({"name": "ode_heun", "steps": 6})


def test_onestep_without_distill_is_refused_by_the_config(repo_root):
    cfg = cfgmod.read_yaml(repo_root / "config.yaml")
    cfg["distill"] = {"enabled": False}
    with pytest.raises(cfgmod.ConfigError, match=r"sampling.samplers\[5\].name.*distill.enabled"):
        cfgmod.load(cfg)
    cfg["sampling"]["samplers"] = cfg["sampling"]["samplers"][:5]
    cfgmod.load(cfg)  # nothing uses it: fine


def test_samplers_and_models_must_fit_each_other():
    class Net(nn.Module):
        def encode(self, cond):
            return cond

        def forward(self, x, t, cond=None, *, features=None):
            return torch.zeros_like(x)

    stats = {"target": {"mean": 0.0, "std": 1.0}, "vorticity": {"mean": 0.0, "std": 1.0}}
    score = {"sde": {}, "conditions": ["vorticity"], "stats": stats}
    w = torch.zeros(1, N, N)
    with pytest.raises(ConditionError, match="onestep.pt"):
        ClosureSampler(Net(), score).sample(make_sampler({"name": "onestep"}), w)
    gen = {**score, "onestep": {"t_max": 0.1, "start": "zero"}}
    with pytest.raises(ConditionError, match="only runs the onestep sampler"):
        ClosureSampler(Net(), gen).sample(make_sampler({"name": "em", "steps": 2}), w)
    out, nfe = ClosureSampler(Net(), gen).sample(make_sampler({"name": "onestep"}), w,
                                                 return_nfe=True)
    assert nfe == 1 and out.shape == (1, 1, N, N)


# ----------------------------------------------------------------------------- the stage
@pytest.mark.slow
def test_missing_or_foreign_score_model_is_named(tmp_path):
    cfg = json.dumps({"device": "cpu", "sde": {}, "distill": {}})
    out = tmp_path / "onestep.pt"
    res = run_cli("distill", "--config", cfg, "--data", tmp_path, "--model",
                  tmp_path / "score.pt", "--output", out)
    assert res.returncode == 1 and "score.pt: score model not found" in res.stderr
    (tmp_path / "score.pt").write_bytes(b"not a model")
    res = run_cli("distill", "--config", cfg, "--data", tmp_path, "--model",
                  tmp_path / "score.pt", "--output", out)
    assert res.returncode == 1 and "not a readable torch score model" in res.stderr
    assert not out.exists()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return completed_tiny_run(tmp_path_factory)


@pytest.mark.slow
def test_stage_output_runs_in_the_benchmark_at_one_nfe(workdir, tmp_path):
    out = results(workdir)
    onestep = out / "model" / "onestep.pt"  # made by the pipeline's distill rule
    net, settings = load_onestep(onestep)
    assert settings["onestep"]["t_max"] == 0.1 and settings["onestep"]["start"] == "measurements"
    # The score model is not a generator, nor the generator a score model: named errors.
    res = run_cli("distill", "--config", json.dumps({"device": "cpu", "sde": {}, "distill": {}}),
                  "--data", out / "dataset", "--model", onestep, "--output", tmp_path / "x.pt")
    assert res.returncode == 1 and "not a diffclosure score model" in res.stderr
    cfg = tiny_config()
    sampling = {**cfg["sampling"], "samplers": [{"name": "onestep"}], "repeats": 1}
    args = ["--config", json.dumps({"device": "cpu", "sde": {}, "sampling": sampling}),
            "--data", out / "dataset", "--model", out / "model" / "score.pt",
            "--outdir", tmp_path / "bench"]
    res = run_cli("sample-benchmark", *args)
    assert res.returncode == 1 and "pass --onestep" in res.stderr
    res = run_cli("sample-benchmark", *args, "--onestep", onestep)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = {r["name"]: r for r in csv_rows(tmp_path / "bench" / "benchmark.csv")}
    assert rows["onestep"]["nfe"] == "1" and float(rows["onestep"]["t_max"]) == 0.1
    # It keeps a spread: the members of a condition differ (spread/skill well above 0).
    assert float(rows["onestep"]["spread_skill"]) > 0.2


def _dry_run(workdir, tmp_path, **changes):
    cfg = tiny_config()
    for section, values in changes.items():
        cfg[section] = {**cfg.get(section, {}), **values}
    res = snakemake(workdir, "-n", "--quiet", "rules",
                    configfile=write_config(tmp_path / "changed.yaml", cfg))
    assert res.returncode == 0, res.stderr
    return planned_jobs(res.stdout + res.stderr)


@pytest.mark.slow
def test_only_the_jobs_that_use_the_generator_depend_on_it(workdir, tmp_path):
    # tiny.yaml benchmarks no onestep sampler: a distill change reruns distill alone.
    assert _dry_run(workdir, tmp_path, distill={"epochs": 2}) == {"distill": 1, "all": 1}
    samplers = tiny_config()["sampling"]["samplers"] + [{"name": "onestep"}]
    assert _dry_run(workdir, tmp_path, sampling={"samplers": samplers}) == {
        "sample_benchmark": 1, "report": 1, "all": 1}
    jobs = _dry_run(workdir, tmp_path, rollout={"sampler": {"name": "onestep"}})
    assert jobs == {"rollout": 1, "rollout_metrics": 1, "report": 1, "all": 1}
