"""Stage `rollout` on tiny synthetic DNS / dataset files: file layout, costs, sgs window, errors."""

from __future__ import annotations

import json
import logging

import h5py
import numpy as np
import pytest
import xarray as xr

from diffclosure import cli
from diffclosure import config as cfgmod
from diffclosure.data import h5io

from support.datasets import write_stats
from support.rollout_inputs import (
    N_FINE,
    TEST,
    N,
    make_inputs,
    make_model,
    run_stage,
    sections,
)

pytestmark = pytest.mark.slow  # the quick tier (-m "not slow") skips this module


@pytest.fixture(scope="module")
def g_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    paths, data = make_inputs(root)
    model = make_model(root / "model" / "score.pt")
    cfg = sections()
    for closure in ("none", "true", "smagorinsky", "diffusion"):
        assert run_stage(root, closure, cfg, paths, data, model) == 0
    return root


def test_rollout_file_layout(g_run):
    for closure, members in (("none", 1), ("true", 1), ("smagorinsky", 1), ("diffusion", 2)):
        path = g_run / "rollout" / f"{closure}.h5"
        with h5py.File(path) as fh:
            assert fh["vorticity"].shape == (2, members, 5, N, N)
            assert fh["reference"].shape == (2, 5, N, N)
            assert fh["vorticity"].dtype == np.float32
            assert np.allclose(fh["time"][()], [0, 0.005, 0.01, 0.015, 0.02])
            assert list(fh["trajectory"][()]) == TEST
            a = h5io.read_attrs(fh)
            assert a["closure"] == closure and a["target"] == "G"
            assert a["cost_coupled_s_per_time"] > 0 and a["cost_dns_s_per_time"] > 0
            assert np.isclose(a["cost_ratio_vs_dns"],
                              a["cost_coupled_s_per_time"] / a["cost_dns_s_per_time"])
            assert not a["blowup"] and "config_hash" in a
            # every rollout starts from the subsampled first DNS record of the test trajectory
            with h5py.File(g_run / "dns" / "shard-1.h5") as d:
                w0 = d["vorticity"][0, 0, ::2, ::2]  # trajectory 2, first record
            assert np.allclose(fh["vorticity"][0, :, 0], w0, atol=1e-6)
            assert np.allclose(fh["reference"][0, 0], w0, atol=1e-6)
        ds = xr.open_dataset(path, engine="h5netcdf")
        assert ds["vorticity"].dims == ("state", "member", "time", "y", "x")
        ds.close()
    # the diffusion closure was resampled every 5 of the 20 steps
    with h5py.File(g_run / "rollout" / "diffusion.h5") as fh:
        assert fh.attrs["sample_calls"] == 4


def test_references_agree_and_oracle_matches(g_run):
    refs = {}
    for closure in ("none", "true", "diffusion"):
        with h5py.File(g_run / "rollout" / f"{closure}.h5") as fh:
            refs[closure] = fh["reference"][()]
            if closure == "true":
                v = fh["vorticity"][:, 0]
    assert np.array_equal(refs["none"], refs["true"])
    assert np.array_equal(refs["none"], refs["diffusion"])
    assert np.abs(v - refs["true"]).max() <= 1e-6 * np.abs(refs["true"]).max()


def test_sgs_rollout_runs_past_the_dns_window_and_is_scored_on_statistics(tmp_path, caplog):
    """The DNS records 0.02 time units (3 records); the rollout asks 0.05 (6). A closure of
    its own runs them all, the oracle `true` stops with the window; past it the reference is
    NaN, the paired tables end with the window and les.csv scores the whole run."""
    paths, data = make_inputs(tmp_path, target="sgs")
    cfg = sections("sgs", duration=0.05, record_every=0.01)
    for closure in ("true", "none"):
        assert run_stage(tmp_path, closure, cfg, paths, data) == 0
    assert "stops at 0.02" in caplog.text
    with h5py.File(tmp_path / "rollout" / "true.h5") as t, \
            h5py.File(tmp_path / "rollout" / "none.h5") as n:
        ref = t["reference"][()]
        assert t["vorticity"].shape == n["vorticity"].shape == (2, 1, 6, N, N)
        assert np.array_equal(ref, n["reference"][()], equal_nan=True)
        assert np.isfinite(ref[:, :3]).all() and np.isnan(ref[:, 3:]).all()
        assert np.isfinite(t["vorticity"][:, :, :3]).all()
        assert np.allclose(t["vorticity"][:, 0, 0], ref[:, 0], atol=1e-6)
        assert np.isnan(t["vorticity"][:, :, 3:]).all() and not t.attrs["blowup"]
        assert np.isfinite(n["vorticity"][()]).all() and not n.attrs["blowup"]
    out = tmp_path / "rollout"
    inputs = [str(out / f"{c}.h5") for c in ("none", "true")]
    ro_cfg = json.dumps({"rollout": cfg["rollout"], "report": {}})
    assert cli.main(["rollout-metrics", "--config", ro_cfg, "--inputs", *inputs,
                     "--outdir", str(out)]) == 0
    from support.tables import csv_rows

    times = {float(r["time"]) for r in csv_rows(out / "metrics.csv")}
    assert max(times) == pytest.approx(0.02)
    assert all(np.isfinite(float(r["d_fro"])) for r in csv_rows(out / "metrics.csv"))
    summary = {r["closure"]: r for r in csv_rows(out / "summary.csv")}
    assert float(summary["none"]["final_time"]) == pytest.approx(0.02)
    assert float(summary["none"]["duration"]) == pytest.approx(0.05)
    les = {r["closure"]: r for r in csv_rows(out / "les.csv")}
    assert np.isfinite(float(les["none"]["energy_spectrum_error"]))
    assert np.isfinite(float(les["none"]["energy_error"]))


def test_bad_inputs_fail_before_work(tmp_path):
    paths, data = make_inputs(tmp_path)
    out = tmp_path / "rollout" / "diffusion.h5"
    assert run_stage(tmp_path, "diffusion", sections(), paths, data) == 2  # no --model
    assert run_stage(tmp_path, "none", sections(record_every=0.0015), paths, data) == 2
    assert run_stage(tmp_path, "none", sections(initial_states=3), paths, data) == 2
    assert run_stage(tmp_path, "none", sections(), paths[:1], data) == 1  # trajectory 2 absent
    assert not out.exists() and not (tmp_path / "rollout" / "none.h5").exists()


def test_measurements_closure_equals_the_oracle_for_a_band_limited_term(tmp_path):
    """Vorticity in the |k| = 1 shell, no forcing, no noise: advection vanishes, G = nu lap w
    stays in that shell, which a 4x4 lattice samples exactly (trigonometric interpolation is
    exact below the lattice's Nyquist). Measured every step, the term is then the reference's
    own, and the rollout reproduces the reference as the oracle does; dropping it does not."""
    paths, data = make_inputs(tmp_path)
    x = np.arange(N_FINE) / N_FINE
    y = x[:, None]
    w = (np.cos(2 * np.pi * x) + 0.5 * np.sin(2 * np.pi * y)
         + 0.3 * np.sin(2 * np.pi * (x + 0.1)))
    for path in paths:
        with h5py.File(path, "a") as fh:
            fh["vorticity"][...] = np.broadcast_to(w, fh["vorticity"].shape)
    cfg = sections(resample_every=1)
    cfg["dns"].update(nu=0.01, forcing={"kind": "none"}, noise={"sigma": 0.0})
    for closure in ("none", "measurements"):
        assert run_stage(tmp_path, closure, cfg, paths, data) == 0
    out = {}
    for closure in ("none", "measurements"):
        with h5py.File(tmp_path / "rollout" / f"{closure}.h5") as fh:
            out[closure], ref = fh["vorticity"][:, 0].astype(float), fh["reference"][()]
            assert fh["vorticity"].shape[1] == 1 and fh.attrs["closure"] == closure
    scale = np.abs(ref).max()
    assert np.abs(out["measurements"] - ref).max() <= 1e-6 * scale
    assert np.abs(out["none"] - ref).max() > 1e-4 * scale  # the term matters here


def test_measurements_closure_needs_measurements(tmp_path):
    paths, data = make_inputs(tmp_path)
    off = sections(measurements=False)
    assert run_stage(tmp_path, "measurements", off, paths, data) == 2
    disabled = sections()
    disabled["measurements"] = {"lattice": 4, "enabled": False}
    assert run_stage(tmp_path, "measurements", disabled, paths, data) == 2
    assert not (tmp_path / "rollout" / "measurements.h5").exists()
    # The whole config (what Snakemake loads before any job) says it too.
    from diffclosure import config as cfgmod

    whole = {"measurements": {"enabled": False}, "rollout": {"closures": ["measurements"]}}
    with pytest.raises(cfgmod.ConfigError, match="rollout.closures"):
        cfgmod.load(whole, sections=["measurements", "rollout"])
    whole["measurements"]["enabled"] = True
    assert cfgmod.load(whole, sections=["measurements", "rollout"])


def test_rollout_starts_at_the_configured_record(tmp_path):
    paths, data = make_inputs(tmp_path)
    assert run_stage(tmp_path, "none", sections(start=5.01), paths, data) == 0
    with h5py.File(tmp_path / "rollout" / "none.h5") as fh:
        assert fh.attrs["start_time"] == pytest.approx(5.01)
        with h5py.File(tmp_path / "dns" / "shard-1.h5") as d:
            w1 = d["vorticity"][0, 1, ::2, ::2]  # trajectory 2, second record (t = 5.01)
        assert np.allclose(fh["reference"][0, 0], w1, atol=1e-6)
        assert np.allclose(fh["vorticity"][0, 0, 0], w1, atol=1e-6)
    # a time that is no record, or outside the records, fails before any work
    for start in (5.015, 5.5):
        out = tmp_path / "bad" / "none.h5"
        argv = ["rollout", "--config", json.dumps(sections(start=start)), "--closure", "none",
                "--dns", *paths, "--data", str(data), "--output", str(out)]
        assert cli.main(argv) == 2
        assert not out.exists()


def write_val_split(data, tau: float | None, records: int = 12, dt: float = 0.01):
    """data/val.h5 (what rollout.tau and rollout.inflation auto are measured on) whose target
    is an AR(1) sequence of fields of correlation time tau in every trajectory (None:
    independent records), 10x the target's std of stats.json, so that the error of an
    untrained model's samples is the target's; stats.json's digests redone."""
    rng = np.random.default_rng(7)
    shape = (2, records, N, N)
    target = np.empty(shape)
    target[:, 0] = rng.standard_normal(shape[:1] + shape[2:])
    rho = 0.0 if tau is None else np.exp(-dt / tau)
    for t in range(1, records):
        target[:, t] = rho * target[:, t - 1] + np.sqrt(1 - rho**2) * rng.standard_normal(
            (2, N, N))
    with h5io.atomic_h5(data / "val.h5") as fh:
        h5io.add_coordinate(fh, "trajectory", np.array([3, 1]))
        h5io.add_coordinate(fh, "time", 5.0 + dt * np.arange(records))
        h5io.add_coordinate(fh, "y", np.arange(N) / N)
        h5io.add_coordinate(fh, "x", np.arange(N) / N)
        dims = ("trajectory", "time", "y", "x")
        h5io.add_field(fh, "target", 5.0 * target, dims)
        h5io.add_field(fh, "vorticity", rng.standard_normal(shape), dims)
        h5io.add_field(fh, "measurements", 0.1 * rng.standard_normal(shape), dims)
    stats = json.loads((data / "stats.json").read_text())
    write_stats(data, {k: v for k, v in stats.items() if k != "digests"})


def test_tau_auto_measures_the_error_memory_and_records_it(tmp_path, caplog):
    paths, data = make_inputs(tmp_path)
    model = make_model(tmp_path / "model" / "score.pt")
    write_val_split(data, tau=0.05)
    cfg = sections(tau="auto")
    assert run_stage(tmp_path, "diffusion", cfg, paths, data, model) == 0
    with h5py.File(tmp_path / "rollout" / "diffusion.h5") as fh:
        a = h5io.read_attrs(fh)
    measured = json.loads(a["error_time"])
    assert a["rollout_tau"] == measured["tau"] == pytest.approx(0.05, rel=0.3)
    assert measured["record_interval"] == pytest.approx(0.01)
    assert measured["split"] == "val.h5" and a["rollout_inflation"] == 1.0  # not asked for
    # records without memory: independent draws, with a warning that says why
    write_val_split(data, tau=None)
    with caplog.at_level(logging.WARNING, logger="diffclosure"):
        assert run_stage(tmp_path, "diffusion", cfg, paths, data, model) == 0
    assert "has no memory" in caplog.text
    with h5py.File(tmp_path / "rollout" / "diffusion.h5") as fh:
        assert h5io.read_attrs(fh)["rollout_tau"] == 0.0


def test_tau_per_shell_measures_each_scales_memory_and_records_it(tmp_path):
    """An error white in space with one memory: every shell measures about that memory, the
    rollout file keeps the list, and the config refuses the option without tau auto."""
    paths, data = make_inputs(tmp_path)
    model = make_model(tmp_path / "model" / "score.pt")
    write_val_split(data, tau=0.05, records=80)
    assert run_stage(tmp_path, "diffusion", sections(tau="auto", tau_per_shell=True), paths,
                     data, model) == 0
    with h5py.File(tmp_path / "rollout" / "diffusion.h5") as fh:
        a = h5io.read_attrs(fh)
    shells = np.asarray(a["rollout_tau_shells"])
    assert shells.tolist() == json.loads(a["error_time"])["tau_shells"]
    assert shells.size == int(np.rint(np.sqrt(2) * (N // 2))) + 1  # shells 0 .. the corner
    # shells 0 and 1 hold 1 and 4 modes: too few for a precise fit
    assert np.median(shells[2:]) == pytest.approx(0.05, rel=0.2)
    assert np.all((shells[2:] > 0.025) & (shells[2:] < 0.1))
    with pytest.raises(cfgmod.ConfigError, match="rollout.tau_per_shell"):
        cfgmod.validate_sections(sections(tau=0.05, tau_per_shell=True))


def test_inflation_auto_is_the_inverse_of_the_a_priori_spread_skill(tmp_path):
    """An untrained model's samples miss a target 5x their scale: its ensemble is far too
    narrow a priori, and auto widens it by 1 / spread/skill, capped at the schema's 10."""
    from diffclosure.stages.rollout import INFLATION_MAX, _inflation_of

    paths, data = make_inputs(tmp_path)
    model = make_model(tmp_path / "model" / "score.pt")
    write_val_split(data, tau=0.05)
    cfg = sections(inflation="auto", calibration={"method": "a_priori"})
    assert run_stage(tmp_path, "diffusion", cfg, paths, data, model) == 0
    with h5py.File(tmp_path / "rollout" / "diffusion.h5") as fh:
        a = h5io.read_attrs(fh)
    measured = json.loads(a["error_time"])
    assert 0 < measured["spread_skill"] < 1 and "posterior" not in measured
    want = min(1 / measured["spread_skill"], INFLATION_MAX)
    assert a["rollout_inflation"] == pytest.approx(want)
    assert a["rollout_tau"] == 0.0  # tau was not asked for: the config's 0
    # One without spread cannot be measured.
    # An ensemble too wide a priori is narrowed by the same rule, within [0.1, 10].
    assert _inflation_of({"spread_skill": 1.25}) == pytest.approx(0.8)
    assert _inflation_of({"spread_skill": 0.5}) == 2.0
    assert _inflation_of({"spread_skill": 50.0}) == pytest.approx(1 / INFLATION_MAX)
    with pytest.raises(cfgmod.ConfigError, match="rollout.inflation"):
        _inflation_of({"spread_skill": float("nan")})


def test_inflation_auto_a_posteriori_calibrates_a_coupled_run_on_validation_states(tmp_path):
    """a_posteriori (the default) corrects the a-priori factor by a coupled run from the
    validation trajectory, never a test one: the final factor is the prior over the run's
    spread/skill, and the same run widened by it is calibrated. The deviations of the tiny run
    scale with the factor (the same draws, near-linear over 20 steps), so the one correction
    step lands within a few percent of 1."""
    from diffclosure import config as cfgmod
    from diffclosure.data.stats import load_stats
    from diffclosure.rollout.calibration import posterior_ratio, validation_states
    from diffclosure.rollout.coupled import run_rollout
    from diffclosure.stages.rollout import rollout_sampler

    paths, data = make_inputs(tmp_path)
    model = make_model(tmp_path / "model" / "score.pt")
    write_val_split(data, tau=0.05)
    cfg = sections(inflation="auto", calibration={"states": 2})
    assert run_stage(tmp_path, "diffusion", cfg, paths, data, model) == 0
    with h5py.File(tmp_path / "rollout" / "diffusion.h5") as fh:
        a = h5io.read_attrs(fh)
    post = json.loads(a["error_time"])["posterior"]
    assert post["states"] == [[3, 5.0]]  # the validation trajectory; one start fits the records
    prior = min(1 / json.loads(a["error_time"])["spread_skill"], 10.0)  # capped at 10
    assert post["inflation_prior"] == pytest.approx(prior)
    assert len(post["spread_skill"]) == 4  # every record after the start
    assert post["spread_skill_mean"] == pytest.approx(
        float(np.exp(np.mean(np.log(post["spread_skill"])))))
    want = min(max(post["inflation_prior"] / post["spread_skill_mean"], 0.1), 10.0)
    assert a["rollout_inflation"] == pytest.approx(want) == post["inflation"]
    # the a-priori factor was far off here (the untrained model's ensemble, widened 10x, is
    # several times too wide a posteriori)
    assert abs(np.log(post["spread_skill_mean"])) > np.log(1.5)
    # The validation run widened by the final factor is calibrated.
    full = cfgmod.load(cfg, sections=["device", "dns", "coarse", "measurements", "sde",
                                      "rollout"])
    full["rollout"].update(tau=a["rollout_tau"], inflation=a["rollout_inflation"])
    obj = rollout_sampler(full, model, data, 1)
    states = validation_states(full, load_stats(data), [5.0, 5.01, 5.02])
    res = run_rollout(full, "diffusion", paths, data, obj, states=states, measure_cost=False,
                      show_progress=False)
    assert posterior_ratio(res.vorticity, res.reference)[0] == pytest.approx(1.0, abs=0.05)


def test_the_intrinsic_ensemble_is_calibrated_by_construction(tmp_path):
    """intrinsic = the exact physics with an own noise stream per member: members and
    reference are exchangeable draws of the same process, so its spread/skill is 1 up to
    sampling error, while no member is the reference."""
    from diffclosure.metrics.probabilistic import spread_skill

    paths, data = make_inputs(tmp_path)
    cfg = sections(ensemble=8, duration=0.05, record_every=0.01)
    assert run_stage(tmp_path, "intrinsic", cfg, paths, data) == 0
    with h5py.File(tmp_path / "rollout" / "intrinsic.h5") as fh:
        v, r = fh["vorticity"][()].astype(float), fh["reference"][()].astype(float)
        assert fh.attrs["closure"] == "intrinsic" and v.shape[1] == 8
    for j in range(1, v.shape[2]):
        assert spread_skill(v[:, :, j], r[:, j], axis=1).ratio == pytest.approx(1.0, abs=0.2)
        for m in range(8):
            assert np.abs(v[:, m, j] - r[:, j]).max() > 0
    # no physical noise, or the sgs target: nothing to spread, refused before any work
    quiet = sections()
    quiet["dns"]["noise"] = {"sigma": 0.0}
    assert run_stage(tmp_path / "q", "intrinsic", quiet, paths, data) == 2
    sgs_paths, sgs_data = make_inputs(tmp_path / "s", target="sgs")
    assert run_stage(tmp_path / "s", "intrinsic", sections("sgs"), sgs_paths, sgs_data) == 2
    # and the whole config says so before Snakemake starts a job
    whole = {"dns": {}, "coarse": {"target": "sgs", "method": "filter"},
             "rollout": {"closures": ["intrinsic"]}}
    with pytest.raises(cfgmod.ConfigError, match="'intrinsic'.*coarse.target sgs"):
        cfgmod.load(whole, sections=["dns", "coarse", "rollout"])


def test_known_noise_rollouts_add_the_physical_noise_to_every_closure_but_the_oracle(tmp_path):
    """coarse.noise known: the oracle still reproduces the reference (it carries the
    reference's own noise, and the solver adds none); no closure and the learned one get the
    physical noise from the solver, from their own streams, so the same no-closure run now
    differs from the in-target one against the same reference."""
    paths, data = make_inputs(tmp_path)
    model = make_model(tmp_path / "model" / "score.pt")
    known = sections()
    known["coarse"]["noise"] = "known"
    out = {}
    for tag, cfg in (("in_target", sections()), ("known", known)):
        root = tmp_path / tag
        for closure in ("true", "none", "diffusion"):
            assert run_stage(root, closure, cfg, paths, data, model) == 0
            with h5py.File(root / "rollout" / f"{closure}.h5") as fh:
                out[tag, closure] = (fh["vorticity"][()].astype(float),
                                     fh["reference"][()].astype(float))
    v, r = out["known", "true"]
    assert np.abs(v[:, 0] - r).max() <= 1e-6 * np.abs(r).max()
    none_in, none_known = out["in_target", "none"][0], out["known", "none"][0]
    assert np.abs(none_known - none_in).max() > 1e-6 * np.abs(none_in).max()
    assert np.array_equal(out["known", "none"][1], out["in_target", "none"][1])  # same reference
    # without physical noise there is nothing to add: the known-noise run is the plain one
    quiet = sections()
    quiet["coarse"]["noise"] = "known"
    quiet["dns"]["noise"] = {"sigma": 0.0}
    assert run_stage(tmp_path / "quiet", "none", quiet, paths, data) == 0
