"""LES metrics on fields and samples with known answers (metrics/les.py, metrics/spectra.py)."""

import math

import numpy as np
import pytest

from diffclosure.coarse.targets import subgrid_term
from diffclosure.metrics import les
from diffclosure.metrics.spectra import energy_spectrum
from diffclosure.solver.grid import Grid
from diffclosure.solver.initial import gaussian_random_field

from support.tables import csv_rows

L = 2.0


def _mode(n, k, amplitude=1.0, phase=0.0):
    X, _ = Grid(n, L).mesh
    return amplitude * np.cos(2 * np.pi * k * X / L + phase)


def test_transfer_of_a_single_mode_has_its_closed_form():
    # w = cos(K x), Pi = a cos(K x): T_Z = a/2, T_E = a / (2 K^2), all in shell k.
    n, k, a = 16, 3, -0.4
    w, pi = _mode(n, k), _mode(n, k, a)
    K2 = (2 * np.pi * k / L) ** 2
    assert les.subgrid_transfer(w, pi, L, "enstrophy") == pytest.approx(a / 2, rel=1e-12)
    assert les.subgrid_transfer(w, pi, L, "energy") == pytest.approx(a / (2 * K2), rel=1e-12)
    _, t = les.transfer_spectrum(w, pi, L, "energy")
    assert t[k] == pytest.approx(a / (2 * K2), rel=1e-12)
    assert np.abs(np.delete(t, k)).max() < 1e-15
    # A mode orthogonal to w transfers nothing.
    assert abs(les.subgrid_transfer(w, _mode(n, k, 1.0, np.pi / 2), L)) < 1e-15


@pytest.mark.parametrize("quantity", les.QUANTITIES)
def test_physical_and_spectral_transfer_agree_on_a_real_subgrid_term(quantity):
    # The true Pi of a random 64^2 field box-filtered to 16^2, on a batch of two states.
    fine = Grid(64, L)
    w = 40 * gaussian_random_field(fine, [np.random.default_rng(s) for s in (3, 4)])
    w_bar, pi = subgrid_term(w, 16, "box", 2 * L / 16, L)
    physical = les.subgrid_transfer(w_bar, pi, L, quantity)
    _, spectrum = les.transfer_spectrum(w_bar, pi, L, quantity)
    assert physical.shape == (2,)
    np.testing.assert_allclose(spectrum.sum(axis=-1), physical, rtol=1e-10)
    assert np.abs(physical).min() > 1e-6 * np.abs(spectrum).sum()  # not a trivial 0 = 0


def _spectral_viscosity(w, nu_of_k):
    """Pi = nu(|k|) |k|^2 w_k mode by mode: the subgrid term of a spectral eddy viscosity
    (Pi enters as -Pi, so this drains every mode at the rate nu(k) |k|^2)."""
    n = w.shape[-1]
    k = 2 * np.pi / L * np.fft.fftfreq(n, 1.0 / n)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    return np.fft.ifft2(nu_of_k(np.sqrt(k2)) * k2 * np.fft.fft2(w)).real


def test_backscatter_per_shell_is_zero_for_every_eddy_viscosity():
    rng = np.random.default_rng(2)
    w = 40 * gaussian_random_field(Grid(32, L), [np.random.default_rng(s) for s in range(4)])
    table = rng.uniform(0, 1, 64)  # an arbitrary nu(k) >= 0, shell by shell
    for nu in (lambda k: 1e-3 + 0 * k, lambda k: 1e-9 * k**4,
               lambda k: table[np.minimum(np.rint(k * L / (2 * np.pi)).astype(int), 63)]):
        pi = _spectral_viscosity(w, nu)
        assert np.all(les.backscatter_share(w, pi, L) < 1e-12)  # 0 to round-off
        assert np.all(les.backscatter_share(w, -pi, L) > 1 - 1e-12)  # anti-diffusion: all back
        # the pointwise measure it replaces calls a large share of the points backscatter
    pi = _spectral_viscosity(w, lambda k: 1e-9 * k**4)
    assert np.mean(w * pi < 0) > 0.2
    # eddy viscosities varying in space, as the rollout builds them (see also
    # tests/rollout/test_les_a_priori.py): zero to round-off here, at most 1e-3 of the transfer
    from diffclosure.rollout.les_a_priori import classical_estimates

    coarse = {"filter_width": 2.0, "n": 32, "smagorinsky_cs": 0.16, "leith_cl": 0.2}
    for name in ("smagorinsky", "leith"):
        pi = classical_estimates(w, coarse, {"nu": 1e-3, "length": L})[name]
        assert np.all(les.backscatter_share(w, pi, L) < 1e-3), name
        assert np.mean(w * pi < 0) > 0.1, name


def test_backscatter_share_of_a_two_shell_transfer():
    # w = cos(2 x) + cos(5 y); Pi takes 3 units of enstrophy out of shell 2 and gives 1 back
    # in shell 5 (per unit of w's own enstrophy there): share 1 / (3 + 1).
    n = 32
    X, Y = Grid(n, L).mesh
    a, b = np.cos(2 * np.pi * 2 * X / L), np.cos(2 * np.pi * 5 * Y / L)
    w, pi = a + b, 3 * a - b
    assert les.backscatter_share(w, pi, L) == pytest.approx(0.25, rel=1e-12)
    assert np.isnan(les.backscatter_share(w, 0 * w, L))  # nothing transferred: no share


def test_a_priori_scores_of_a_scaled_model():
    n = 32
    rng = np.random.default_rng(0)
    w = gaussian_random_field(Grid(n, L), [rng])[0]
    pi = gaussian_random_field(Grid(n, L), [rng])[0] + 0.5 * w
    s = les.a_priori_scores(0.5 * pi, pi, w, L)
    assert s["correlation"] == pytest.approx(1.0)
    assert s["energy_transfer_ratio"] == pytest.approx(0.5)
    assert s["enstrophy_transfer_ratio"] == pytest.approx(0.5)
    assert s["backscatter_model"] == s["backscatter_true"]


def test_energy_and_enstrophy_spectra_of_known_modes():
    # w = A cos(K1 x) + B cos(K2 y): E(k1) = A^2 / (4 K1^2), Z(k1) = A^2 / 4, and likewise.
    n, (k1, A), (k2, B) = 32, (2, 3.0), (7, 0.5)
    X, Y = Grid(n, L).mesh
    w = A * np.cos(2 * np.pi * k1 * X / L) + B * np.cos(2 * np.pi * k2 * Y / L)
    _, E = energy_spectrum(w, L)
    _, Z = les.enstrophy_spectrum(w)
    for k, amp in ((k1, A), (k2, B)):
        assert Z[k] == pytest.approx(amp**2 / 4, rel=1e-12)
        assert E[k] == pytest.approx(amp**2 / (4 * (2 * np.pi * k / L) ** 2), rel=1e-12)
    assert Z.sum() == pytest.approx(0.5 * np.mean(w**2), rel=1e-12)


def test_wasserstein1_of_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(1)
    z1, z2 = rng.standard_normal(200_000), rng.standard_normal(150_000)
    # Shifted: |m1 - m2|. Rescaled, same mean: |s1 - s2| sqrt(2/pi) (= |s1 - s2| E|z|).
    assert les.wasserstein1(z1, z2 + 0.7) == pytest.approx(0.7, abs=0.01)
    assert les.wasserstein1(z1, 2.5 * z2) == pytest.approx(1.5 * math.sqrt(2 / math.pi),
                                                           abs=0.01)
    assert les.wasserstein1(z1, z1) == 0.0


def test_hellinger_of_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(2)
    m1, s1, m2, s2 = 0.0, 1.0, 0.8, 1.6
    a, b = m1 + s1 * rng.standard_normal(400_000), m2 + s2 * rng.standard_normal(400_000)
    exact = math.sqrt(1 - math.sqrt(2 * s1 * s2 / (s1**2 + s2**2))
                      * math.exp(-((m1 - m2) ** 2) / (4 * (s1**2 + s2**2))))
    d = les.pdf_distances(a, b, bins=161)
    assert d["hellinger"] == pytest.approx(exact, abs=0.01)
    assert les.pdf_distances(b, b)["hellinger"] == pytest.approx(0.0, abs=1e-6)
    # Disjoint supports are as far apart as two laws can be.
    edges = np.linspace(0, 2, 3)
    assert les.hellinger([1.0, 0.0], [0.0, 1.0], edges) == pytest.approx(1.0)


def test_pdf_distances_ignore_non_finite_values_of_a_blown_up_run():
    rng = np.random.default_rng(3)
    a = rng.standard_normal(10_000)
    b = np.concatenate([a, [np.nan, np.inf]])
    assert les.pdf_distances(b, a) == {"hellinger": 0.0, "wasserstein1": 0.0}


def _write_rollout(path, closure, v, reference, blowup_time=None):
    import h5py

    with h5py.File(path, "w") as fh:
        fh["vorticity"], fh["reference"] = v, reference
        fh["time"] = 0.1 * np.arange(reference.shape[1])
        fh.attrs.update(closure=closure, target="sgs", blowup=blowup_time is not None,
                        blowup_time=np.nan if blowup_time is None else blowup_time,
                        cost_coupled_s_per_time=1.0, **{"dns.length": L})


@pytest.mark.slow
def test_les_table_figure_and_ranking_through_the_stages(tmp_path):
    import json

    from diffclosure import cli

    S, T, n = 2, 6, 16
    rng = np.random.default_rng(5)
    ref = gaussian_random_field(Grid(n, L), [rng for _ in range(S * T)]).reshape(S, T, n, n)
    blown = np.repeat(ref[:, None], 2, axis=1)
    blown[:, :, 3:] = np.nan
    runs = {"true": ref[:, None], "none": 2 * ref[:, None], "smagorinsky": blown}
    for name, v in runs.items():
        _write_rollout(tmp_path / f"{name}.h5", name, v, ref, 0.25 if name == "smagorinsky"
                       else None)
    cfg = json.dumps({"rollout": {}, "report": {}})
    out = tmp_path / "results"
    assert cli.main(["rollout-metrics", "--config", cfg, "--inputs",
                     *(str(tmp_path / f"{c}.h5") for c in runs),
                     "--outdir", str(out / "rollout")]) == 0
    rows = {r["closure"]: r for r in csv_rows(out / "rollout" / "les.csv")}
    true, none, blow = rows["true"], rows["none"], rows["smagorinsky"]
    for col in ("energy_spectrum_error", "enstrophy_error", "pdf_hellinger", "pdf_wasserstein1",
                "short_d_fro_member_median"):
        assert float(true[col]) == 0.0, col
    # Twice the field: four times every spectrum and the enstrophy; W1(X, 2X) = E|X|.
    assert float(none["energy_spectrum_error"]) == pytest.approx(math.log(4), rel=1e-5)
    assert float(none["enstrophy_spectrum_error"]) == pytest.approx(math.log(4), rel=1e-5)
    assert float(none["enstrophy_error"]) == pytest.approx(3.0, rel=1e-5)
    assert float(none["pdf_wasserstein1"]) == pytest.approx(np.abs(ref).mean(), rel=1e-5)
    # Until its blow-up, the third run is the reference itself.
    assert (blow["blowup"], float(blow["stable_time"])) == ("True", 0.25)
    assert float(blow["enstrophy_error"]) < 1e-12
    assert (out / "rollout" / "les_spectra.png").stat().st_size > 0

    rep = json.dumps({"run": "les", "report": {"animation": False}})
    assert cli.main(["report", "--config", rep, "--results", str(out),
                     "--outdir", str(out / "report")]) == 0
    text = (out / "report" / "summary.md").read_text()
    section = text.split("## LES")[1].split("## ")[0]
    ranked = [line.split("|")[2].strip() for line in section.splitlines()
              if line.startswith("| ") and line[2].isdigit()]
    # The oracle is scored but not ranked.
    assert ranked == ["smagorinsky", "none"]
    assert "| - | true (oracle, not ranked) |" in section
    # Every score has its interval, and its similarity to no closure: 1 for the reference.
    for col in ("energy_spectrum_error", "pdf_hellinger"):
        assert float(true[f"similarity_{col}"]) == 1.0
        assert float(none[f"similarity_{col}"]) == 0.0
        assert float(none[f"{col}_lo"]) <= float(none[col]) <= float(none[f"{col}_hi"])
    assert "Similarity to the filtered DNS" in section
