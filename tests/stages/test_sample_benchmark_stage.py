"""The sample-benchmark stage end to end on tiny files, with an analytic score as the "model".

The fake model says: normalised target = normalised measurement + S0 * white noise, so the
exact score is -(x - m) / (S0^2 + sigma^2). The test data are drawn from exactly that law,
so a faithful sampler gives a calibrated ensemble (spread/skill ~ 1).
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from diffclosure import cli
from diffclosure.config import ConfigError
from diffclosure.errors import UserFacingError
from diffclosure.model.sde import VESDE
from diffclosure.stages import sample_benchmark as stage

from support.datasets import write_stats
from support.tables import csv_rows

S0 = 0.3
STATS = {"target": {"mean": 0.5, "std": 2.0}, "vorticity": {"mean": 0.0, "std": 3.0},
         "measurements": {"mean": 0.5, "std": 2.0}}
SETTINGS = {"sde": {"kind": "ve", "s": 26.0}, "conditions": ["vorticity", "measurements"],
            "stats": STATS, "n": 8}


class GaussianScore(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.sde = VESDE(26.0)

    def encode(self, cond):  # the ScoreNet contract: the condition's features, once
        return cond

    def forward(self, x, t, cond=None, *, features=None):
        cond = features.repeat_interleave(x.shape[0] // features.shape[0], dim=0)
        assert x.shape[1] == 1 and cond.shape[1] == 2 and t.shape == (x.shape[0],)
        s2 = self.sde.std(t)[:, None, None, None] ** 2
        return -(x - cond[:, 1:2]) / (S0**2 + s2)


def _write(path, n, seed):
    rng = np.random.default_rng(seed)
    shape = (2, 3, n, n)
    meas = 0.5 + 2.0 * rng.standard_normal(shape)
    with h5py.File(path, "w") as fh:
        fh["measurements"] = meas.astype(np.float32)
        fh["target"] = (meas + 2.0 * S0 * rng.standard_normal(shape)).astype(np.float32)
        fh["vorticity"] = (3.0 * rng.standard_normal(shape)).astype(np.float32)
        fh.attrs["conditions"] = json.dumps(["vorticity", "measurements"])


@pytest.fixture()
def dataset(tmp_path, monkeypatch):
    data = tmp_path / "dataset"
    data.mkdir()
    _write(data / "test.h5", 8, 0)
    _write(data / "test-8.h5", 8, 0)
    _write(data / "test-16.h5", 16, 1)
    write_stats(data, STATS)
    monkeypatch.setattr(stage, "load_model", lambda path, device: (GaussianScore(), SETTINGS))
    torch.set_num_threads(1)
    return data


CONFIG = {
    "device": "cpu",
    "sde": {"kind": "ve", "s": 26.0},
    "sampling": {
        "samplers": [
            {"name": "dpm2m", "steps": 4, "schedule": "karras", "t_max": 0.1},
            {"name": "ode_heun", "steps": 3, "schedule": "karras", "t_max": 1.0},
        ],
        "ensemble": 4, "test_samples": 4, "repeats": 1, "seed": 3,
    },
}


def _run(data, outdir, config=CONFIG):
    argv = ["sample-benchmark", "--config", json.dumps(config), "--data", str(data),
            "--model", "unused.pt", "--outdir", str(outdir), "--threads", "1"]
    args = cli.build_parser("sample-benchmark").parse_args(argv)
    return stage.main(args)


@pytest.mark.slow
def test_stage_end_to_end(dataset, tmp_path):
    out = tmp_path / "out"
    assert _run(dataset, out) == 0
    rows = csv_rows(out / "benchmark.csv")
    got = [(r["name"], int(r["steps"]), r["schedule"]) for r in rows]
    # The configured samplers, the references that were absent (the 1000-step EM, our Karras
    # EM at the paper's times and the paper's exact sampler, all started from zero), then the
    # model-free baseline of the encoded measurements.
    assert got == [("dpm2m", 4, "karras"), ("ode_heun", 3, "karras"),
                   ("em", 1000, "uniform"), ("em", 10, "karras"),
                   ("paper_em", 10, "karras_time"), ("measurements-only", 0, "")]
    assert [r["start"] for r in rows[2:5]] == ["zero", "zero", "zero"]
    baseline = rows[-1]
    assert int(baseline["nfe"]) == 0 and float(baseline["d_fro_mean"]) > 0
    # Network calls, as the methods define them: one per step for dpm2m (multistep) and EM;
    # Heun two per step but one on its last step, the Euler step to sigma = 0.
    assert [int(r["nfe"]) for r in rows[:-1]] == [4, 2 * 3 - 1, 1000, 10, 10]
    for r in rows[:-1]:
        assert float(r["seconds_per_sample"]) > 0
        assert np.isfinite(float(r["crps"])) and float(r["d_fro_mean"]) > 0
    ref = rows[2]
    assert float(ref["d_fro_rel_reference"]) == pytest.approx(1.0)
    # The data follow the model's law: the 1000-step EM ensemble is calibrated, and its mean
    # is closer to the truth than a single member is.
    assert 0.7 < float(ref["spread_skill"]) < 1.35
    assert float(ref["d_fro_mean"]) < float(ref["d_fro_member"])
    # ... and its rank histogram is flat: 256 independent points over 5 ranks, the outer two
    # hold 2/5 of them (binomial std 0.077 of their flat share).
    assert abs(float(ref["rank_outer"]) - 1) < 0.3 and float(ref["rank_deviation"]) < 0.4
    # Squeezing the samples towards their mean (a sampler with too little spread) gives a U.
    samples = stage.draw(*_sampler_obj_and_data(dataset), ensemble=4, seed=3, chunk=4)[0]
    truth = _sampler_obj_and_data(dataset)[2]["target"]
    mean = samples.mean(axis=1, keepdims=True)
    squeezed = stage.score_samples(mean + 0.3 * (samples - mean), truth)
    assert squeezed["rank_outer"] > 1.5
    assert baseline["rank_outer"] == "nan"  # one "member": nothing to rank among

    res = csv_rows(out / "resolution.csv")
    assert sorted({int(r["n"]) for r in res}) == [8, 16]
    assert {r["sampler"] for r in res} >= {"paper_em-10-karras_time-t0.1-zero"}  # the paper's
    for name in ("pareto.png", "samples.png", "spectra.png", "rank_histogram.png"):
        assert (out / name).stat().st_size > 1000
    assert not list(out.glob(".*tmp*"))  # no temporary leftovers

    # Same config and seed: the same numbers (wall time aside).
    out2 = tmp_path / "out2"
    assert _run(dataset, out2) == 0
    rows2 = csv_rows(out2 / "benchmark.csv")
    for a, b in zip(rows, rows2, strict=True):
        a.pop("seconds_per_sample"), b.pop("seconds_per_sample")
        assert a == b
    assert csv_rows(out2 / "resolution.csv") == res


def _sampler_obj_and_data(data):
    from diffclosure.sampling.closure_sampler import ClosureSampler

    cs = ClosureSampler(GaussianScore(), SETTINGS, "cpu")
    sampler = stage.make_sampler(stage.REFERENCE)
    return cs, sampler, stage.read_test_set(data / "test.h5", cs.conditions, 4)


def test_stage_input_errors(dataset, tmp_path):
    with pytest.raises(UserFacingError, match="test.h5"):
        _run(tmp_path / "nowhere", tmp_path / "o")
    bad = json.loads(json.dumps(CONFIG))
    bad["sampling"]["samplers"][0]["name"] = "ddim"
    with pytest.raises(ConfigError, match="samplers"):
        _run(dataset, tmp_path / "o", bad)
    with h5py.File(dataset / "test.h5", "a") as fh:
        del fh["measurements"]
    # changed since stats.json recorded its digest: refused, naming the file and the fix
    with pytest.raises(UserFacingError, match="test.h5: not the file the statistics"):
        _run(dataset, tmp_path / "o")
    write_stats(dataset, STATS)  # a dataset made without the field: the field is named
    with pytest.raises(UserFacingError, match="measurements"):
        _run(dataset, tmp_path / "o")


def test_closure_sampler_units_and_conditions():
    from diffclosure.sampling.closure_sampler import ClosureSampler, ConditionError
    from diffclosure.sampling.samplers import make_sampler

    torch.set_num_threads(1)
    cs = ClosureSampler(GaussianScore(), SETTINGS, "cpu")
    rng = np.random.default_rng(0)
    meas = torch.as_tensor(0.5 + 2.0 * rng.standard_normal((3, 8, 8)), dtype=torch.float32)
    vort = torch.zeros(3, 8, 8)
    sampler = make_sampler({"name": "ode_heun", "steps": 20, "t_max": 1.0})
    out = cs.sample(sampler, vort, meas, ensemble=400, start="measurements",
                    generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 400, 8, 8)
    # Physical units: mean = measurement, std = target std * S0 (normalised law N(m, S0^2)).
    assert float((out.mean(1) - meas).abs().max()) < 0.2
    assert float(out.std(1).mean()) == pytest.approx(2.0 * S0, rel=0.05)
    with pytest.raises(ConditionError, match="measurements"):
        cs.sample(sampler, vort, None)
    with pytest.raises(ConditionError, match="shape"):
        cs.sample(sampler, vort, meas[:, :4])


@pytest.mark.slow
def test_noise_line_only_for_targets_that_hold_the_noise(dataset, tmp_path):
    from diffclosure import config as cfgmod

    dns = cfgmod.load({"dns": {}}, sections=["dns"])["dns"]
    lines = {}
    for target, split in (("sgs", "full"), ("H", "full"), ("G", "full"), ("G", "paper")):
        with h5py.File(dataset / "test.h5", "a") as fh:
            fh.attrs["target"], fh.attrs["coarse.g_split"] = target, split
        lines[target, split] = stage.noise_line(dataset, dns, 8)
    assert lines["sgs", "full"] is None
    np.testing.assert_array_equal(lines["G", "full"], lines["H", "full"])
    # The research code's G stores 2 sigma xi: four times the power.
    np.testing.assert_allclose(lines["G", "paper"], 4 * lines["G", "full"])
    # The stage draws it when the config has a dns section (spectra.png is written).
    assert _run(dataset, tmp_path / "o", {**CONFIG, "dns": {}}) == 0
    assert (tmp_path / "o" / "spectra.png").stat().st_size > 1000
