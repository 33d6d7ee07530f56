"""DNS stage end to end on tiny configs: layout, reproducibility, sharding, failures."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from diffclosure import cli
from diffclosure import config as configmod
from diffclosure.solver import grid as gridmod
from diffclosure.solver.grid import Grid

BASE = {
    "n": 16, "dt": 0.01, "spinup": 0.03, "duration": 0.02, "record_every": 0.01,
    "trajectories": 5, "shards": 1, "batch": 2, "planner": "FFTW_ESTIMATE",
    "drag": 0.05, "noise": {"sigma": 0.01},
}
# Other sections' defaults are cross-checked against dns.n (see report): keep them consistent.
COARSE = {"n": 16, "test_resolutions": [16]}


def _cfg(**over) -> str:
    dns = {**BASE, **over}
    return json.dumps({"dns": dns, "coarse": COARSE})


def _run(tmp_path, name, shard=0, **over):
    out = tmp_path / f"{name}.h5"
    rc = cli.main(["dns", "--config", _cfg(**over), "--shard", str(shard), "--output", str(out)])
    return rc, out


def _read(path):
    with h5py.File(path, "r") as fh:
        return {k: fh[k][()] for k in ("vorticity", "G", "H", "trajectory", "time", "forcing")}


def test_layout_attrs_and_xarray(tmp_path):
    import xarray as xr

    rc, out = _run(tmp_path, "a")
    assert rc == 0 and out.exists()
    assert not list(tmp_path.glob(".*tmp*"))
    ds = xr.open_dataset(out, engine="h5netcdf")
    for name in ("vorticity", "G", "H"):
        assert ds[name].dims == ("trajectory", "time", "y", "x")
        assert ds[name].dtype == np.float32
        assert ds[name].shape == (5, 3, 16, 16)
    assert ds["forcing"].dims == ("y", "x")
    assert list(ds["trajectory"].values) == [0, 1, 2, 3, 4]
    assert np.allclose(ds["time"].values, [0.03, 0.04, 0.05])
    assert np.allclose(ds["x"].values, np.arange(16) / 16)
    for key in ("dns.nu", "dns.noise.sigma", "dns.n", "seed", "shard", "diffclosure_version",
                "git_commit", "config_hash", "stage", "created"):
        assert key in ds.attrs, key
    assert ds.attrs["stage"] == "dns" and ds.attrs["dns.n"] == 16
    ds.close()


def test_recorded_terms_reproduce_the_next_record(tmp_path):
    """record_every = dt: w(t+dt) - w(t) = dt (G + advection + drag + f), float32 round-off.
    dns.nu is set off its default (1e-3), so a stage that ignored it would fail the H check."""
    nu = 3e-3
    rc, out = _run(tmp_path, "a", nu=nu)
    assert rc == 0
    d = _read(out)
    w, G, H = (d[k].astype(np.float64) for k in ("vorticity", "G", "H"))
    grid, dt, mu, f = Grid(16), BASE["dt"], BASE["drag"], d["forcing"].astype(np.float64)
    adv = -gridmod.advection(grid, w[:, 0])  # independent implementation of u.grad(w)
    mid_drag = -mu * (w[:, 0] + w[:, 1]) / 2
    lhs = w[:, 1] - w[:, 0]
    scale = np.abs(w).max()
    assert np.abs(lhs).max() > 1e-4 * scale
    assert np.allclose(lhs, dt * (G[:, 0] + adv + mid_drag + f), atol=2e-6 * scale)
    visc = nu * gridmod.laplacian(grid, (w[:, 0] + w[:, 1]) / 2)
    assert np.allclose(lhs, dt * (H[:, 0] + visc + mid_drag + f), atol=2e-6 * scale)


def test_same_seed_same_bits_other_seed_differs_and_sharding_invariant(tmp_path):
    _, a = _run(tmp_path, "a")
    _, b = _run(tmp_path, "b")
    _, c = _run(tmp_path, "c", seed=1)
    da, db, dc = _read(a), _read(b), _read(c)
    for k in ("vorticity", "G", "H"):
        assert np.array_equal(da[k], db[k])
        assert not np.allclose(da[k], dc[k])
    # Two shards with another batch size: the same trajectories, bit for bit.
    parts = [_read(_run(tmp_path, f"s{i}", shard=i, shards=2, batch=3)[1]) for i in (0, 1)]
    assert list(parts[0]["trajectory"]) == [0, 1, 2] and list(parts[1]["trajectory"]) == [3, 4]
    for k in ("vorticity", "G", "H"):
        assert np.array_equal(np.concatenate([p[k] for p in parts]), da[k])


def test_speed_settings_given_apart_reach_the_stage_and_leave_the_bits_alone(tmp_path):
    """As the pipeline passes them: --config without the speed-only settings, --speed with
    them. They reach the stage (recorded in the file) and change no bit of the fields."""
    _, base = _run(tmp_path, "base")
    science = {k: v for k, v in BASE.items() if k not in configmod.SPEED_ONLY["dns"]}
    speed = {"batch": 3, "planner": "FFTW_MEASURE", "threads": 2}
    out = tmp_path / "speed.h5"
    rc = cli.main(["dns", "--config", json.dumps({"dns": science, "coarse": COARSE}),
                   "--speed", json.dumps({"dns": speed, "train": {"threads": 3}}),
                   "--shard", "0", "--output", str(out)])
    assert rc == 0
    with h5py.File(out, "r") as fh:
        recorded = {k: fh.attrs[f"dns.{k}"] for k in speed}
    assert {k: (v.decode() if isinstance(v, bytes) else v) for k, v in recorded.items()} == speed
    a, b = _read(base), _read(out)
    for k in ("vorticity", "G", "H"):
        assert np.array_equal(a[k], b[k])


def test_blow_up_exits_nonzero_and_writes_nothing(tmp_path, caplog):
    rc, out = _run(tmp_path, "bad", dt=0.5, spinup=1.0, duration=1.0, record_every=0.5,
                   initial={"alpha": 1.0, "tau": 1.0}, check_every=1, nu=1e-5)
    assert rc == 1
    assert not out.exists() and not list(tmp_path.iterdir())
    assert "blew up" in caplog.text and "CFL" in caplog.text


@pytest.mark.parametrize(
    "over,field",
    [({"nu": "a lot"}, "dns.nu"), ({"nu": -1.0}, "dns.nu"), ({"n": 17}, "dns.n"),
     ({"viscosity": 1.0}, "dns.viscosity"), ({"noise": {"sigma": -1}}, "dns.noise.sigma")],
)
def test_bad_config_names_the_field(over, field):
    with pytest.raises(configmod.ConfigError, match=field.replace(".", r"\.")):
        configmod.load(json.loads(_cfg(**over)), sections=["dns"])


def test_bad_shard_and_non_multiple_spinup_fail_before_writing(tmp_path):
    rc, out = _run(tmp_path, "x", shard=3)
    assert rc == 1 and not out.exists()
    rc, out = _run(tmp_path, "y", spinup=0.015)
    assert rc == 1 and not out.exists()


def test_info_prints_provenance(tmp_path, capsys):
    _, out = _run(tmp_path, "a")
    assert cli.main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    for key in ("diffclosure_version", "git_commit", "config_hash", "stage: dns", "dns.nu",
                "vorticity: (5, 3, 16, 16) float32"):
        assert key in text
