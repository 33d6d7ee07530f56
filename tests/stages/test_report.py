"""Stages `rollout-metrics` and `report` on tiny rollouts: files, metric sanity, paper numbers."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from diffclosure import cli
from diffclosure.errors import UserFacingError
from diffclosure.provenance import write_table
from diffclosure.stages import report as report_stage
from diffclosure.stages.rollout_metrics import (
    probabilistic_rows,
    rollout_metrics,
    time_to_decorrelation,
)

from support.datasets import write_stats
from support.rollout_inputs import make_inputs, make_model, run_stage, sections
from support.tables import csv_rows

pytestmark = pytest.mark.slow  # the quick tier (-m "not slow") skips this module

CLOSURES = ("none", "true", "diffusion", "measurements")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    paths, data = make_inputs(root)
    model = make_model(root / "model" / "score.pt")
    cfg = sections(duration=0.03)
    for closure in CLOSURES:
        assert run_stage(root, closure, cfg, paths, data, model) == 0
    inputs = [str(root / "rollout" / f"{c}.h5") for c in CLOSURES]
    ro_cfg = json.dumps({"rollout": cfg["rollout"], "report": {}})
    assert cli.main(["rollout-metrics", "--config", ro_cfg,
                     "--inputs", *inputs, "--outdir", str(root / "rollout")]) == 0
    (root / "sampling").mkdir()
    write_table(root / "sampling" / "benchmark.csv",
                "sampler,nfe,d_fro,seconds\nem-1000-uniform-t1,1000,0.5,2.0\n"
                "em-10-karras-t0.1,10,0.6,0.02\n", {}, "sample_benchmark")
    write_table(root / "sampling" / "resolution.csv", "n,d_fro\n16,0.5\n32,0.55\n", {},
                "sample_benchmark")
    rep = {"run": "test", "report": {"fps": 4, "max_frames": 10}}
    assert cli.main(["report", "--config", json.dumps(rep), "--results", str(root),
                     "--outdir", str(root / "report")]) == 0
    return root


def test_metrics_csv(results):
    rows = csv_rows(results / "rollout" / "metrics.csv")
    assert set(rows[0]) >= {"closure", "state", "member", "time", "d_fro", "mse", "correlation",
                            "spread", "crps", "enstrophy", "enstrophy_reference"}
    # 4 closures x 2 states x 7 records x (members + the mean row)
    assert len(rows) == 2 * 7 * ((1 + 1) + (1 + 1) + (2 + 1) + (1 + 1))
    mean = {c: [r for r in rows if r["closure"] == c and r["member"] == "mean"] for c in CLOSURES}
    # the oracle stays on the reference (float32 storage), none departs and grows
    assert max(float(r["d_fro"]) for r in mean["true"]) < 1e-5
    none = [float(r["d_fro"]) for r in mean["none"] if r["state"] == "0"]
    assert none[0] < 1e-6 and np.all(np.diff(none) > 0)
    assert all(float(r["correlation"]) > 0.99 for r in mean["true"])
    # a single-member closure has no spread; its CRPS is its mean absolute error (>= 0)
    assert all(float(r["spread"]) == 0 for r in mean["none"])
    assert all(float(r["crps"]) >= 0 for r in mean["none"])
    # d_fro_paper of a member row is the paper's ||w - w_ref|| / ||w||, from the file itself
    with h5py.File(results / "rollout" / "diffusion.h5") as fh:
        w, ref = fh["vorticity"][1, 1, -1].astype(float), fh["reference"][1, -1].astype(float)
    row = next(r for r in rows if r["closure"] == "diffusion" and r["state"] == "1"
               and r["member"] == "1" and float(r["time"]) == pytest.approx(0.03))
    assert float(row["d_fro_paper"]) == pytest.approx(
        np.linalg.norm(w - ref) / np.linalg.norm(w), rel=1e-4)
    assert float(row["d_fro"]) == pytest.approx(
        np.linalg.norm(w - ref) / np.linalg.norm(ref), rel=1e-4)


def test_summary_and_figures(results):
    out = results / "rollout"
    summary = {r["closure"]: r for r in csv_rows(out / "summary.csv")}
    assert set(summary) == set(CLOSURES)
    for s in summary.values():
        assert float(s["cost_s_per_time"]) > 0 and float(s["dns_cost_s_per_time"]) > 0
    for col in ("final_d_fro_member_median", "final_d_fro_paper", "final_d_fro_ensemble_mean"):
        assert float(summary["true"][col]) < float(summary["none"][col])
    # one member: its value is the median, the paper's sample and the ensemble mean alike
    none = summary["none"]
    assert float(none["final_d_fro_member_median"]) == float(none["final_d_fro_ensemble_mean"])
    prob = csv_rows(out / "probabilistic.csv")
    assert len(prob) == len(CLOSURES) * 4  # report.times: four fractions
    for p in prob:
        ensemble = p["closure"] == "diffusion"
        assert int(p["members"]) == (2 if ensemble else 1) and float(p["crps"]) >= 0
        assert np.isfinite(float(p["spread_skill"])) == ensemble
        if ensemble:
            freq = [float(f) for f in p["rank_frequencies"].split()]
            assert len(freq) == 3 and sum(freq) == pytest.approx(1, abs=1e-3)
    doc = json.loads((out / "summary.json").read_text())
    assert doc["closures"]["true"]["decorrelated"] is False
    for name in ("error.png", "spectra.png", "snapshots.png", "rank_histogram.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_has_paper_numbers_and_animation(results):
    text = (results / "report" / "summary.md").read_text()
    # Every number of the paper the report holds is shown beside ours.
    paper = report_stage.PAPER
    rows = [*paper["a_posteriori"].values(), *paper["a_priori"].values()]
    for number in [f"{v:.3f}" for row in rows for v in row]:
        assert number in text, number
    for seconds in paper["cost"].values():
        assert f"{seconds:g}" in text
    assert "snakemake --cores all --forcerun rollout" in text
    assert "em-10-karras-t0.1" in text  # the benchmark table is rendered
    for closure in CLOSURES:
        assert f"| {closure} |" in text
    for heading in ("median [min, max] over members", "The paper's definition",
                    "ensemble-mean field", "spread/skill", "rank_outer"):
        assert heading in text
    anim = [p for p in (results / "report").iterdir() if p.name.startswith("animation.")]
    assert len(anim) == 1 and anim[0].stat().st_size > 1000


# The paper's numbers as the research code's notebook outputs give them (Dong, Chen & Wu, J.
# Comput. Phys. 534 (2025) 114005; the tables of the project's PAPER.md), transcribed here on
# their own, so that a typo in the report's copy shows.
PAPER_A_POSTERIORI = {  # D_Fro at t = 35, 40, 45, 50 s, single trajectory
    "G learned": (0.023, 0.044, 0.053, 0.071), "G dropped": (0.186, 0.348, 0.517, 0.695),
    "H learned": (0.027, 0.032, 0.035, 0.047), "H dropped": (0.715, 0.951, 0.879, 0.725),
}
PAPER_A_PRIORI = {  # D_Fro of the sampled closure at 64^2, 128^2, 256^2
    ("H", "interp"): (0.040, 0.058, 0.071), ("H", "conv"): (0.054, 0.081, 0.107),
    ("G", "interp"): (0.092, 0.130, 0.166), ("G", "conv"): (0.093, 0.111, 0.135),
}


def test_the_reports_copy_of_the_papers_numbers_is_the_papers():
    paper = report_stage.PAPER
    assert paper["a_posteriori_times"] == [35.0, 40.0, 45.0, 50.0]
    assert paper["resolutions"] == [64, 128, 256]
    assert sorted(map(tuple, paper["a_posteriori"].values())) == sorted(
        PAPER_A_POSTERIORI.values())
    for (target, encoder), values in PAPER_A_PRIORI.items():
        assert tuple(paper["a_priori"][f"{target}, {encoder}"]) == values
    # 20,000 coupled steps: 208 s with the closure, 5.65 s without, 20 s simulated
    assert paper["cost"] == {"with_closure_s": 208.0, "without_closure_s": 5.65,
                             "simulated_time": 20.0}


def test_report_without_diffusion_skips_animation(tmp_path, results):
    (tmp_path / "rollout").mkdir()
    for name in ("metrics.csv", "summary.json"):
        for f in (name, f"{name}.provenance.json"):
            (tmp_path / "rollout" / f).write_bytes((results / "rollout" / f).read_bytes())
    rep = {"run": "x", "report": {}}
    assert cli.main(["report", "--config", json.dumps(rep), "--results", str(tmp_path),
                     "--outdir", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "summary.md").exists()
    assert not any(p.name.startswith("animation") for p in (tmp_path / "report").iterdir())
    assert "not found" in (tmp_path / "report" / "summary.md").read_text()  # no benchmark


@pytest.mark.parametrize(("name", "content", "rule"), [
    ("rollout/metrics.csv", b"\xff\xfe\x00garbage\x9c\x80", "rollout_metrics"),
    ("rollout/metrics.csv",
     b"closure,state,member,time,d_fro,d_fro_paper\nnone,0,mean,zero,one,two\n",
     "rollout_metrics"),
    ("sampling/benchmark.csv", b"\x89PNG\r\n\x1a\n\x00\xff", "sample_benchmark"),
])
def test_damaged_table_is_named_with_the_command_that_remakes_it(tmp_path, caplog, name,
                                                                  content, rule):
    (tmp_path / "rollout").mkdir()
    (tmp_path / "sampling").mkdir()
    write_table(tmp_path / "rollout" / "metrics.csv",
                "closure,state,member,time,d_fro,d_fro_paper\n"
                "none,0,mean,0.1,0.2,0.2\nnone,0,mean,0.2,0.3,0.3\n", {}, "rollout_metrics")
    write_table(tmp_path / "sampling" / "benchmark.csv", "name,nfe\nem,10\n", {},
                "sample_benchmark")
    (tmp_path / name).write_bytes(content)  # damaged after it was written
    rep = {"run": "x", "report": {"animation": False}}
    assert cli.main(["report", "--config", json.dumps(rep), "--results", str(tmp_path),
                     "--outdir", str(tmp_path / "report")]) == 1
    assert str(tmp_path / name) in caplog.text
    assert f"snakemake --cores all --forcerun {rule}" in caplog.text
    assert not (tmp_path / "report" / "summary.md").exists()


def test_time_to_decorrelation():
    t = np.linspace(0, 1, 11)
    assert time_to_decorrelation(t, 1 - t, 0.75) == (pytest.approx(0.3), True)
    assert time_to_decorrelation(t, np.ones(11), 0.9) == (1.0, False)
    corr = np.ones(11)
    corr[6:] = np.nan  # blow-up
    assert time_to_decorrelation(t, corr, 0.9) == (pytest.approx(0.6), True)


def test_ensemble_metrics_against_exact_values():
    """Two members +-a around the reference: ensemble mean exact, member D_Fro = a ||1||/||r||,
    spread = a sqrt(2) sqrt(3/2) (unbiased variance 2a^2, M = 2), CRPS = a - a/2."""
    rng = np.random.default_rng(0)
    r = rng.standard_normal((1, 3, 8, 8))
    a = 0.1
    v = np.stack([r + a, r - a], axis=1)
    mt = rollout_metrics({"vorticity": v, "reference": r})
    assert np.allclose(mt["mean_d_fro"], 0, atol=1e-15)
    expect = a * 8 / np.sqrt((r**2).sum(axis=(-2, -1)))
    assert np.allclose(mt["d_fro"], expect[:, None])
    assert np.allclose(mt["spread"], a * np.sqrt(2) * np.sqrt(1.5))
    assert np.allclose(mt["crps"], a / 2)
    assert np.allclose(mt["mse"], a**2)


def test_probabilistic_rows_against_exact_values():
    """Members r +- a: the ensemble mean is exact (skill 0), every point ranks the reference in
    the middle (a dome: outer 0), CRPS = a/2; one member has no spread and no ranks."""
    rng = np.random.default_rng(1)
    r = rng.standard_normal((2, 3, 8, 8))
    a = 0.1
    ro = {"vorticity": np.stack([r + a, r - a], axis=1), "reference": r, "closure": "x",
          "time": np.array([0.0, 0.5, 1.0])}
    rows, hists = probabilistic_rows(ro, rollout_metrics(ro), [0.5, 1.0])
    assert [p["time"] for p in rows] == [0.5, 1.0]
    for p in rows:
        assert p["crps"] == pytest.approx(a / 2) and p["rmse_ensemble_mean"] < 1e-12
        assert p["spread"] == pytest.approx(a * np.sqrt(2) * np.sqrt(1.5))
        assert p["rank_outer"] == 0 and p["rank_frequencies"] == "0 1 0"
    np.testing.assert_allclose(hists["t = 1"], [0, 1, 0])
    one = {**ro, "vorticity": ro["vorticity"][:, :1]}
    rows, hists = probabilistic_rows(one, rollout_metrics(one), [1.0])
    assert hists == {} and np.isnan(rows[0]["spread_skill"])
    assert rows[0]["crps"] == pytest.approx(a)  # one member: its mean absolute error


def test_member_band_and_paper_definition_in_the_report_tables():
    rows = [{"closure": "x", "member": m, "state": s, "time": "1.0", "d_fro": str(v),
             "d_fro_paper": str(2 * v)}
            for (s, m), v in {("0", "0"): 0.1, ("0", "1"): 0.4, ("1", "0"): 0.3,
                              ("1", "1"): 0.2, ("0", "mean"): 0.05, ("1", "mean"): 0.15}.items()]
    members, _ = report_stage.member_d_fro_at(rows, [1.0])
    assert members["x"] == [(pytest.approx(0.25), 0.1, 0.4)]
    paper, _ = report_stage.paper_d_fro_at(rows, [1.0])
    assert paper["x"] == [pytest.approx(0.4)]  # member 0 of both states: (0.2 + 0.6) / 2
    mean, _ = report_stage.d_fro_at(rows, [1.0])
    assert mean["x"] == [pytest.approx(0.1)]


def test_d_fro_at_picks_nearest_records():
    rows = [{"closure": "none", "member": "mean", "time": str(t), "d_fro": str(t), "state": "0"}
            for t in np.arange(0, 1.01, 0.1)]
    table, times = report_stage.d_fro_at(rows, [0.25, 0.5, 1.0])
    assert np.allclose(times, [0.2, 0.5, 1.0]) or np.allclose(times, [0.3, 0.5, 1.0])
    assert np.allclose(table["none"], times)


def test_data_section_states_the_noise_share_and_the_window_drift(tmp_path):
    (tmp_path / "dataset").mkdir()
    stats = {"stochastic_forcing": {"noise_std": 0.0193, "target_std": 0.2, "share": 0.0965},
             "window": {"start": 40.0, "end": 44.0, "grid": 128, "energy_drift": 0.0113,
                        "enstrophy_drift": 0.0283}}
    write_stats(tmp_path / "dataset", stats)
    text = "\n".join(report_stage.data_section(tmp_path))
    assert "share of **0.097**" in text
    assert "t = 40 to 44" in text and "**1.1%**" in text and "**2.8%**" in text
    (tmp_path / "dataset" / "stats.json").write_bytes(b"\xff\xfe")
    with pytest.raises(UserFacingError, match="stats.json.*--forcerun dataset"):
        report_stage.data_section(tmp_path)


def test_blow_up_advice_blames_what_can_be_blamed():
    from diffclosure.stages.rollout_metrics import blowup_causes

    def row(name, blew):
        return {"closure": name, "blowup": blew, "blowup_time": 0.5 if blew else float("nan")}

    # a closure that blows up where no closure stays stable: its own scales are the suspects
    causes = blowup_causes([row("none", False), row("smagorinsky", True), row("diffusion", True),
                            row("measurements", True)])
    assert "smagorinsky_cs" in causes["smagorinsky"] and "hold_noise" not in causes["smagorinsky"]
    assert "hold_noise" in causes["diffusion"] and "the closure is the cause" in causes["diffusion"]
    assert "measurements.noise" in causes["measurements"]
    assert all("while none stayed stable" in c for c in causes.values())
    # the run without closure has nothing of its own to blame
    causes = blowup_causes([row("none", True), row("diffusion", False)])
    assert "reduce dns.dt" in causes["none"] and "closure is the cause" not in causes["none"]
    # every closure blew up: the coarse step
    causes = blowup_causes([row("none", True), row("diffusion", True)])
    assert all("every closure blew up" in c and "reduce dns.dt" in c for c in causes.values())


def test_the_report_states_the_learned_closures_noise_settings_and_what_measured_them(tmp_path):
    import json as _json

    import h5py

    from diffclosure.stages.report import calibration_lines

    (tmp_path / "rollout").mkdir()
    assert calibration_lines(tmp_path) == []
    with h5py.File(tmp_path / "rollout" / "diffusion.h5", "w") as fh:
        fh.attrs.update(rollout_tau=1.25, rollout_inflation=1.5,
                        error_time=_json.dumps({"tau": 1.25, "spread_skill": 0.667,
                                                "split": "val.h5"}))
    text = " ".join(calibration_lines(tmp_path))
    assert "tau = 1.25" in text and "widened 1.5x" in text
    assert "val.h5" in text and "0.667" in text
    assert "coupled run" not in text  # a-priori only: no a-posteriori sentence
    post = {"states": [[3, 45.0], [4, 45.0]], "inflation_prior": 1.5, "spread_skill": [0.6],
            "spread_skill_mean": 0.6, "inflation": 2.5}
    with h5py.File(tmp_path / "rollout" / "diffusion.h5", "w") as fh:
        fh.attrs.update(rollout_tau=1.25, rollout_inflation=2.5,
                        error_time=_json.dumps({"tau": 1.25, "spread_skill": 0.667,
                                                "split": "val.h5", "posterior": post}))
    text = " ".join(calibration_lines(tmp_path))
    assert "from 2 validation states" in text and "spread/skill 0.6 " in text
    assert "widens 2.5x" in text
    # a memory per wavenumber shell: the report names it per scale, not one tau
    with h5py.File(tmp_path / "rollout" / "diffusion.h5", "w") as fh:
        fh.attrs.update(rollout_tau=0.063, rollout_inflation=1.1,
                        rollout_tau_shells=[1.5, 0.27, 0.19, 0.15, 0.13, 0.1, 0.09, 0.08, 0.085],
                        error_time=_json.dumps({"tau": 0.063, "spread_skill": 0.9}))
    text = " ".join(calibration_lines(tmp_path))
    assert "per wavenumber shell" in text and "tau = 0.063" not in text
    assert "|k| = 1: 0.27, 2: 0.19, 4: 0.13, 8: 0.085" in text
