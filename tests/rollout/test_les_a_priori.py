"""A priori LES scores (rollout/les_a_priori.py): anchors with known answers, the sign of the
eddy-viscosity closures' transfer, and the files the sample_benchmark stage writes."""


import numpy as np
import pytest

from diffclosure.rollout.closures import CLASSICAL
from diffclosure.rollout.les_a_priori import LES_A_PRIORI_COLUMNS, les_a_priori
from diffclosure.solver.grid import Grid, laplacian
from diffclosure.stages.sample_benchmark import write_les_a_priori

from support.tables import csv_rows

N = 32
COARSE = {"filter_width": 2.0, "n": N, "smagorinsky_cs": 0.16, "leith_cl": 0.2}
DNS = {"nu": 1e-3, "length": 1.0}


def _smooth_fields(count: int, seed: int = 0) -> np.ndarray:
    """Random vorticity with energy in shells 1..6 (so gradients are resolved)."""
    rng = np.random.default_rng(seed)
    k = np.fft.fftfreq(N, 1.0 / N)
    kk = np.hypot(*np.meshgrid(k, k, indexing="ij"))
    amp = np.where((kk >= 1) & (kk <= 6), 1.0, 0.0)
    spec = amp * (rng.standard_normal((count, N, N)) + 1j * rng.standard_normal((count, N, N)))
    return np.fft.ifft2(spec).real * N


def _by_name(rows):
    return {r["closure"]: r for r in rows}


def test_anchors_and_a_sign_flipped_model():
    w = _smooth_fields(3)
    pi = np.random.default_rng(1).standard_normal((3, N, N))  # power in every shell
    members = np.stack([pi, pi, pi], axis=1)
    rows, spectra = les_a_priori(w, pi, {"same": members, "flipped": -members}, COARSE, DNS)
    r = _by_name(rows)
    for name in ("true", "diffusion same (per member)", "diffusion same (ensemble mean)"):
        assert r[name]["correlation"] == pytest.approx(1.0)
        assert r[name]["enstrophy_transfer_ratio"] == pytest.approx(1.0)
        assert r[name]["energy_transfer_ratio"] == pytest.approx(1.0)
        assert r[name]["pi_spectrum_error"] == pytest.approx(0.0, abs=1e-12)
    # A closure wired with the wrong sign transfers the opposite way.
    flipped = r["diffusion flipped (per member)"]
    assert flipped["correlation"] == pytest.approx(-1.0)
    assert flipped["enstrophy_transfer_ratio"] == pytest.approx(-1.0)
    assert r["none"]["enstrophy_transfer_ratio"] == 0.0
    assert r["none"]["backscatter_model"] == 0.0
    assert {"true", *CLASSICAL, "diffusion same"} <= set(spectra)


def test_eddy_viscosity_closures_only_take_enstrophy_out():
    """Pi = -div(nu_t grad w) with nu_t >= 0 gives <w Pi> = <nu_t |grad w|^2> >= 0 on every
    state: against a true Pi that also drains enstrophy (a viscous one), the transfer ratio of
    Smagorinsky and Leith is positive, and of the opposite sign against one that feeds it."""
    w = _smooth_fields(4)
    drain = -laplacian(Grid(N, 1.0), w)  # <w (-lap w)> = <|grad w|^2> > 0
    for pi_true, sign in ((drain, 1.0), (-drain, -1.0)):
        r = _by_name(les_a_priori(w, pi_true, {}, COARSE, DNS)[0])
        for name in ("smagorinsky", "leith"):
            assert sign * r[name]["enstrophy_transfer_ratio"] > 0
            assert sign * r[name]["energy_transfer_ratio"] > 0


def test_stage_writes_the_table_and_the_figure(tmp_path):
    w = _smooth_fields(2)
    pi = _smooth_fields(2, seed=2)
    data = {"vorticity": w.astype(np.float32), "target": pi.astype(np.float32)}
    learned = {"EM-10": np.stack([pi, 0.5 * pi], axis=1).astype(np.float32)}
    rows = write_les_a_priori(tmp_path, data, learned, COARSE, DNS, {"coarse": COARSE})
    table = csv_rows(tmp_path / "les_a_priori.csv")
    assert list(table[0]) == LES_A_PRIORI_COLUMNS
    assert [t["closure"] for t in table] == [r["closure"] for r in rows]
    assert {"none", "true", *CLASSICAL, "diffusion EM-10 (per member)"} <= {
        t["closure"] for t in table}
    mean_row = next(t for t in table if t["closure"] == "diffusion EM-10 (ensemble mean)")
    assert float(mean_row["enstrophy_transfer_ratio"]) == pytest.approx(0.75, rel=1e-5)
    assert (tmp_path / "les_pi_spectra.png").stat().st_size > 1000
    assert (tmp_path / "les_a_priori.csv.provenance.json").exists()
