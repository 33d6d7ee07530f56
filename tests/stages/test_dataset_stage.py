"""The coarse and dataset stages on small synthetic DNS shards written here."""

import json

import h5py
import numpy as np
import pytest

from diffclosure.coarse import classical
from diffclosure.config import ConfigError
from diffclosure.data import h5io
from diffclosure.data.h5io import DataFileError
from diffclosure.rollout import closures as cl

from support.dns_shards import (
    DNS_ATTRS,
    TIMES,
    N,
    coarse_cfg,
    run_coarse,
    run_dataset,
    sections,
    write_dns,
)
from support.noise_terms import solver_noise_terms

pytestmark = pytest.mark.slow  # the quick tier (-m "not slow") skips this module


@pytest.mark.parametrize("target", ["G", "H"])
def test_subsampled_targets_are_the_fine_records_at_the_coarse_points(tmp_path, target):
    write_dns(tmp_path / "dns.h5", [0, 1])
    assert run_coarse(coarse_cfg(target=target), tmp_path / "dns.h5", tmp_path / "c.h5") == 0
    with h5py.File(tmp_path / "dns.h5") as fine, h5py.File(tmp_path / "c.h5") as out:
        assert out.attrs["target"] == target and out.attrs["dns.nu"] == 1e-3
        for m in (16, 32):
            s = N // m
            g = out[f"n{m}"]
            np.testing.assert_array_equal(g["target"][()], fine[target][:, :, ::s, ::s])
            np.testing.assert_array_equal(g["vorticity"][()], fine["vorticity"][:, :, ::s, ::s])
            np.testing.assert_array_equal(g["time"][()], fine["time"][()])
            np.testing.assert_array_equal(g["trajectory"][()], [0, 1])
            np.testing.assert_allclose(g["x"][()], np.arange(m) / m)
            assert g["target"].dtype == np.float32


# The Smagorinsky estimate in each target's convention, from the definitions: Pi enters the
# coarse equation as -Pi, so Pi's estimate is the model Pi_model itself; H enters as +H and
# carries the subgrid transfer as -Pi, so H's estimate is -Pi_model.
ESTIMATE_SIGN = {"sgs": 1.0, "H": -1.0}


@pytest.mark.parametrize("target", sorted(ESTIMATE_SIGN))
def test_smagorinsky_channel_uses_the_configured_constant_width_and_sign(tmp_path, target):
    write_dns(tmp_path / "dns.h5", [0])
    cs, width_cells, m = 0.2, 3.0, 16  # neither is the schema default (0.16, 2.0)
    cfg = coarse_cfg(target=target, classical_estimate=True, test_resolutions=[m],
                     smagorinsky_cs=cs, filter_width=width_cells)
    assert run_coarse(cfg, tmp_path / "dns.h5", tmp_path / "c.h5") == 0
    with h5py.File(tmp_path / "c.h5") as out:
        g = out[f"n{m}"]
        w = g["vorticity"][()].astype(float)
        got = g["smagorinsky"][()]
        delta = width_cells * 1.0 / m  # filter_width coarse cells of coarse.n, L = 1
        expected = ESTIMATE_SIGN[target] * classical.smagorinsky(w, 1.0, delta, cs)
        scale = np.abs(expected).max()
        np.testing.assert_allclose(got, expected, atol=1e-5 * scale)
        # The rollout conditions a learned closure with its own function: it must agree.
        rollout_channel = cl.smagorinsky_condition(target, cfg, 1.0)(w)
        np.testing.assert_allclose(got, rollout_channel, atol=1e-5 * scale)
        assert g.attrs["method"] == ("filter" if target == "sgs" else "subsample")


def test_grids_are_checked_against_the_input_not_the_default_dns(tmp_path):
    # The rule passes only the coarse section; its grids must be checked against the DNS file
    # (256^2 here, above the default dns.n = 128).
    write_dns(tmp_path / "dns.h5", [3], n=256, times=1)
    cfg = coarse_cfg(n=64, test_resolutions=[64, 256])
    assert run_coarse(cfg, tmp_path / "dns.h5", tmp_path / "c.h5") == 0
    with h5py.File(tmp_path / "c.h5") as out:
        assert out["n256/target"].shape == (1, 1, 256, 256)


def test_dns_file_missing_a_field_is_named(tmp_path):
    write_dns(tmp_path / "dns.h5", [0], fields=("vorticity", "G"))
    with pytest.raises(DataFileError, match=r"dns\.h5: lacks field\(s\) H"):
        run_coarse(coarse_cfg(target="H"), tmp_path / "dns.h5", tmp_path / "c.h5")
    assert not (tmp_path / "c.h5").exists()


def test_coarse_grid_not_dividing_the_dns_grid_is_named(tmp_path):
    write_dns(tmp_path / "dns.h5", [0])
    with pytest.raises(ConfigError, match=r"coarse.test_resolutions\[1\]: 24 must divide"):
        run_coarse(coarse_cfg(test_resolutions=[16, 24]), tmp_path / "dns.h5", tmp_path / "c.h5")


# ------------------------------------------------------------------------------ dataset stage
@pytest.fixture
def shards(tmp_path):
    """Two coarse shards of 8 trajectories whose means differ by trajectory (offset 10 * id)."""
    cfg = coarse_cfg()
    paths = []
    for i, ids in enumerate(([0, 1, 2, 3], [4, 5, 6, 7])):
        write_dns(tmp_path / f"dns-{i}.h5", ids, offset_per_id=10.0)
        run_coarse(cfg, tmp_path / f"dns-{i}.h5", tmp_path / f"coarse-{i}.h5")
        paths.append(tmp_path / f"coarse-{i}.h5")
    return cfg, paths


def test_dataset_splits_statistics_and_measurements(tmp_path, shards):
    cfg, paths = shards
    out = tmp_path / "ds"
    assert run_dataset(sections(cfg), paths, out) == 0
    stats = json.loads((out / "stats.json").read_text())
    split = stats["split"]
    sets = {k: set(v) for k, v in split.items()}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not sets[a] & sets[b], (a, b)
    assert sets["train"] | sets["val"] | sets["test"] == set(range(8))
    assert len(sets["test"]) == 2 and len(sets["val"]) == 2
    assert stats["conditions"] == ["vorticity", "measurements"] and "note" in stats

    files = {name: h5py.File(out / f"{name}.h5") for name in ("train", "val", "test", "test-16",
                                                             "test-32")}
    try:
        for name, fh in files.items():
            key = "test" if name.startswith("test") else name
            np.testing.assert_array_equal(fh["trajectory"][()], split[key])
            # start 0.2 after t0 = 5.0, every 2nd record: 5.2, 5.4
            np.testing.assert_allclose(fh["time"][()], [5.2, 5.4])
            assert json.loads(fh.attrs["conditions"]) == stats["conditions"]
        train = files["train"]["target"][()].astype(float)
        # Trajectory offsets make the splits' means differ; stats must be the training ones.
        assert abs(stats["target"]["mean"] - train.mean()) < 1e-6 * abs(train.mean())
        assert abs(stats["target"]["std"] - train.std()) < 1e-5 * train.std()
        allmean = np.mean([files[s]["target"][()].mean() for s in ("train", "val", "test")])
        assert abs(stats["target"]["mean"] - allmean) > 1.0
        assert stats["measurements"] == stats["target"]
        # Raw lattice values are the target at the lattice points (no noise), and the same
        # physical points give the same values at every test resolution.
        for name, m in (("test-16", 16), ("test-32", 32)):
            fh = files[name]
            s = m // 4
            np.testing.assert_array_equal(fh["measurements_lattice"][()],
                                          fh["target"][:, :, ::s, ::s])
        np.testing.assert_array_equal(files["test-16"]["measurements_lattice"][()],
                                      files["test-32"]["measurements_lattice"][()])
        np.testing.assert_array_equal(files["test"]["target"][()], files["test-16"]["target"][()])
        enc = files["train"]["measurements"][()]
        lat = files["train"]["measurements_lattice"][()]
        np.testing.assert_allclose(enc.max(axis=(-1, -2)), lat.max(axis=(-1, -2)), rtol=1e-6)
    finally:
        for fh in files.values():
            fh.close()
    assert (out / "summary.png").stat().st_size > 1000


def test_dataset_is_reproducible_and_noise_is_seeded(tmp_path, shards):
    cfg, paths = shards
    sec = sections(cfg, noise=0.1, encoder="interp")
    run_dataset(sec, paths, tmp_path / "a")
    run_dataset(sec, paths, tmp_path / "b")
    with h5py.File(tmp_path / "a/train.h5") as a, h5py.File(tmp_path / "b/train.h5") as b:
        for k in ("target", "vorticity", "measurements", "measurements_lattice"):
            np.testing.assert_array_equal(a[k][()], b[k][()])
        s = 16 // 4
        diff = a["measurements_lattice"][()] - a["target"][:, :, ::s, ::s]
        std = json.loads((tmp_path / "a/stats.json").read_text())["target"]["std"]
        assert 0.05 * std < diff.std() < 0.2 * std


def test_lattice_not_dividing_a_grid_is_named(tmp_path, shards):
    cfg, paths = shards
    with pytest.raises((ConfigError, ValueError), match="measurements.lattice: a 3x3 lattice"):
        run_dataset(sections(cfg, lattice=3), paths, tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


def test_too_few_trajectories_is_named(tmp_path, shards):
    cfg, paths = shards
    sec = sections(cfg)
    sec["dataset"]["test_trajectories"] = 6
    with pytest.raises(ConfigError, match="leaves no training trajectory after 2 validation and 6"):
        run_dataset(sec, paths, tmp_path / "ds")


def test_stats_report_the_noise_share_and_the_window_drift(tmp_path):
    # The target of every record is the noise term the solver reports at these dns settings
    # (nothing else acting), so its noise share must come out as 1; the vorticity grows by 2%
    # per record, so the energy and enstrophy (both quadratic) grow by (1 + 0.02 j)^2.
    noise = {"sigma": 5e-5, "alpha": 0.005, "kappa": 10.0}
    dt, ids, n = 1e-3, [0, 1, 2, 3, 4, 5], N
    rngs = [np.random.default_rng([3, i]) for i in range(len(ids) * TIMES)]
    term = solver_noise_terms(n, dt, noise, rngs, length=DNS_ATTRS["length"])
    w0 = np.random.default_rng(1).standard_normal((len(ids), 1, n, n))
    growth = (1 + 0.02 * np.arange(TIMES))[None, :, None, None]
    path = tmp_path / "dns.h5"
    with h5io.atomic_h5(path) as fh:
        h5io.add_coordinate(fh, "trajectory", np.asarray(ids, dtype=np.int64))
        h5io.add_coordinate(fh, "time", 5.0 + 0.1 * np.arange(TIMES))
        h5io.add_coordinate(fh, "y", np.arange(n) / n)
        h5io.add_coordinate(fh, "x", np.arange(n) / n)
        dims = ("trajectory", "time", "y", "x")
        h5io.add_field(fh, "vorticity", w0 * growth, dims)
        h5io.add_field(fh, "H", term.reshape(len(ids), TIMES, n, n), dims)
        h5io.add_field(fh, "G", term.reshape(len(ids), TIMES, n, n), dims)
        h5io.add_field(fh, "forcing", np.zeros((n, n)), ("y", "x"))
        h5io.set_attrs(fh, {"dns": {**DNS_ATTRS, "noise": noise, "dt": dt}})
    assert run_coarse(coarse_cfg(), path, tmp_path / "coarse.h5") == 0
    sections = {"coarse": coarse_cfg(), "measurements": {"lattice": 4},
                "dataset": {"val_trajectories": 1, "test_trajectories": 1}}
    assert run_dataset(sections, [tmp_path / "coarse.h5"], tmp_path / "ds") == 0
    stats = json.loads((tmp_path / "ds" / "stats.json").read_text())
    assert stats["stochastic_forcing"]["share"] == pytest.approx(1.0, abs=0.05)
    window = stats["window"]
    expected = ((1.1**2) - 1) / np.mean((1 + 0.02 * np.arange(TIMES)) ** 2)
    assert window["energy_drift"] == pytest.approx(expected, rel=1e-6)
    assert window["enstrophy_drift"] == pytest.approx(expected, rel=1e-6)
    assert (window["start"], window["end"]) == pytest.approx((5.0, 5.5))


@pytest.mark.parametrize("target", ["G", "H"])
def test_known_noise_target_is_the_term_without_its_noise(tmp_path, target):
    """coarse.noise known: the target is G or H minus the record's noise, H + dealiased
    u.grad w (coarse/targets.without_noise, itself checked against the solver's terms in
    tests/rollout/test_rollout.py), subsampled; heun_cn, whose H hides the noise, and a target
    without that split are refused."""
    from diffclosure.coarse.targets import without_noise

    src = tmp_path / "dns.h5"
    write_dns(src, [0, 1])
    with h5py.File(src, "a") as fh:
        h5io.set_attrs(fh, {"dns": {"scheme": "euler_cn"}})
    cfg = coarse_cfg(target=target, noise="known")
    assert run_coarse(cfg, src, tmp_path / "c.h5") == 0
    with h5py.File(src) as fine, h5py.File(tmp_path / "c.h5") as out:
        want = without_noise(fine[target][()].astype(float), fine["vorticity"][()].astype(float),
                             fine["H"][()].astype(float), DNS_ATTRS["length"])
        got = out["n16"]["target"][()]
        np.testing.assert_allclose(got, want[:, :, ::2, ::2], rtol=1e-6,
                                   atol=1e-6 * np.abs(want).max())
        assert np.abs(got - fine[target][:, :, ::2, ::2]).max() > 1e-3 * np.abs(want).max()
    with h5py.File(src, "a") as fh:
        h5io.set_attrs(fh, {"dns": {"scheme": "heun_cn"}})
    with pytest.raises(ConfigError, match="coarse.noise"):
        run_coarse(cfg, src, tmp_path / "c2.h5")
    from diffclosure import config as cfgmod

    for bad in ({"target": "sgs", "method": "filter"}, {"target": "G", "g_split": "paper"}):
        with pytest.raises(ConfigError, match="coarse.noise: known"):
            cfgmod.load({"coarse": {**bad, "noise": "known"}}, sections=["coarse"])
    with pytest.raises(ConfigError, match="dns.scheme euler_cn"):
        cfgmod.load({"dns": {"scheme": "heun_cn"}, "coarse": {"noise": "known"}},
                    sections=["dns", "coarse"])


def test_paper_g_split_target_is_built_from_w_and_h(tmp_path):
    """coarse.g_split paper: the target is the research code's G from the DNS's w and H
    (coarse/targets.paper_g, itself checked against the solver in tests/rollout/test_rollout.py);
    a heun_cn DNS, whose H hides the noise, is refused naming the field."""
    from diffclosure.coarse.targets import paper_g

    src = tmp_path / "dns.h5"
    write_dns(src, [0, 1], fields=("vorticity", "H"))
    with h5py.File(src, "a") as fh:
        h5io.set_attrs(fh, {"dns": {"scheme": "euler_cn"}})
    cfg = coarse_cfg(target="G", g_split="paper")
    assert run_coarse(cfg, src, tmp_path / "c.h5") == 0
    with h5py.File(src) as fine, h5py.File(tmp_path / "c.h5") as out:
        want = paper_g(fine["vorticity"][()].astype(float), fine["H"][()].astype(float),
                       DNS_ATTRS["nu"])
        got = out["n16"]["target"][()]
        np.testing.assert_allclose(got, want[:, :, ::2, ::2], rtol=1e-6,
                                   atol=1e-6 * np.abs(want).max())
    with h5py.File(src, "a") as fh:
        h5io.set_attrs(fh, {"dns": {"scheme": "heun_cn"}})
    with pytest.raises(ConfigError, match="coarse.g_split"):
        run_coarse(cfg, src, tmp_path / "c2.h5")


def test_fewer_training_trajectories_are_a_subset_and_keep_val_and_test(tmp_path, shards):
    cfg, paths = shards
    splits = {}
    for k in (None, 1, 3):
        sec = sections(cfg)
        sec["dataset"]["train_trajectories"] = k
        out = tmp_path / f"ds-{k}"
        assert run_dataset(sec, paths, out) == 0
        splits[k] = json.loads((out / "stats.json").read_text())["split"]
        with h5py.File(out / "train.h5") as fh:
            np.testing.assert_array_equal(fh["trajectory"][()], splits[k]["train"])
            train = fh["target"][()].astype(float)
        # The statistics are those of the smaller training set (trajectory means differ).
        stats = json.loads((out / "stats.json").read_text())
        assert abs(stats["target"]["mean"] - train.mean()) < 1e-6 * abs(train.mean())
    assert len(splits[None]["train"]) == 4
    assert len(splits[1]["train"]) == 1 and len(splits[3]["train"]) == 3
    assert set(splits[1]["train"]) < set(splits[3]["train"]) < set(splits[None]["train"])
    for k in (1, 3):
        assert splits[k]["val"] == splits[None]["val"]
        assert splits[k]["test"] == splits[None]["test"]
    sec = sections(cfg)
    sec["dataset"]["train_trajectories"] = 5
    with pytest.raises(ConfigError, match="dataset.train_trajectories: 5, but .* leaves 4"):
        run_dataset(sec, paths, tmp_path / "ds-5")
    assert not (tmp_path / "ds-5").exists()


def test_split_refuses_more_training_trajectories_than_are_left():
    from diffclosure.stages.dataset import split_trajectories

    with pytest.raises(ConfigError, match="dataset.train_trajectories: 7, but only 6"):
        split_trajectories(range(10), 2, 2, seed=0, n_train=7)
    assert len(split_trajectories(range(10), 2, 2, seed=0, n_train=6)["train"]) == 6
