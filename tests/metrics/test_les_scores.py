"""The LES scores from per-unit sums (metrics.les_scores) against the scores of the fields."""

import numpy as np
import pytest

from diffclosure.metrics import les, les_scores
from diffclosure.metrics.spectra import energy_spectrum, spectrum_error
from diffclosure.solver.grid import Grid
from diffclosure.solver.initial import gaussian_random_field

L = 1.0


def _fields(shape, seed):
    rng = np.random.default_rng(seed)
    count = int(np.prod(shape))
    return gaussian_random_field(Grid(16, L), [rng for _ in range(count)]).reshape(
        (*shape, 16, 16))


def _direct(v, ref):
    """The scores as rollout-metrics computed them before, from the pooled fields."""
    def pooled(fields, fn):
        f = fields.reshape(-1, 16, 16)
        f = f[np.isfinite(f).all(axis=(-2, -1))]
        return fn(f)[1].mean(axis=0)

    from diffclosure.data.flow_stats import energy_enstrophy

    def rel(a, b):
        r = np.abs(a - b) / np.abs(b)
        return float(r[np.isfinite(r)].mean())

    with np.errstate(invalid="ignore"):
        e, z = energy_enstrophy(v, L)
    e_ref, z_ref = energy_enstrophy(ref, L)
    return {
        "energy_spectrum_error": spectrum_error(pooled(v, lambda f: energy_spectrum(f, L)),
                                                pooled(ref, lambda f: energy_spectrum(f, L))),
        "enstrophy_spectrum_error": spectrum_error(pooled(v, les.enstrophy_spectrum),
                                                   pooled(ref, les.enstrophy_spectrum)),
        "energy_error": rel(e.mean(axis=(0, 1)), e_ref.mean(axis=0)),
        "enstrophy_error": rel(z.mean(axis=(0, 1)), z_ref.mean(axis=0)),
        "pdf_hellinger": les.pdf_distances(v, ref)["hellinger"],
    }


def test_full_sample_scores_equal_those_of_the_fields_with_a_blow_up():
    ref = _fields((3, 5), 1)
    v = 1.3 * _fields((3, 4, 5), 2)
    v[1, 2, 3:] = np.nan  # one member of one state blew up
    edges = les_scores.pdf_edges(ref)
    got = les_scores.scores(les_scores.units(v, L, edges), les_scores.units(ref, L, edges), edges)
    want = _direct(v, ref)
    for name in les_scores.SCORES:
        assert got[name] == pytest.approx(want[name], rel=1e-10), name


def test_the_reference_scores_zero_with_similarity_one_and_no_closure_similarity_zero():
    ref = _fields((4, 5), 3)
    edges = les_scores.pdf_edges(ref)
    ref_u = les_scores.units(ref, L, edges)
    runs = {"true": ref[:, None], "none": 1.7 * ref[:, None]}
    u = {k: les_scores.units(v, L, edges) for k, v in runs.items()}
    point = {k: les_scores.scores(x, ref_u, edges) for k, x in u.items()}
    draws = {k: les_scores.resampled(x, ref_u, edges, draws=50) for k, x in u.items()}
    true = les_scores.with_intervals(point["true"], draws["true"], point["none"], draws["none"])
    none = les_scores.with_intervals(point["none"], draws["none"], point["none"], draws["none"])
    for name in les_scores.SCORES:
        assert true[name] == 0.0 and true[f"{name}_hi"] == 0.0
        assert true[f"similarity_{name}"] == 1.0
        assert none[f"similarity_{name}"] == 0.0
        assert none[f"similarity_{name}_lo"] == none[f"similarity_{name}_hi"] == 0.0
        assert none[f"{name}_lo"] <= none[name] <= none[f"{name}_hi"]


def test_the_interval_widens_when_states_disagree():
    """Two closures equally wrong on average; one is wrong the same way on every state, the
    other very differently from state to state: only the second has a wide interval."""
    ref = _fields((6, 4), 4)
    scale_same = np.full(6, 1.5)[:, None, None, None, None]
    scale_diff = np.array([1.0, 2.0, 1.0, 2.0, 1.0, 2.0])[:, None, None, None, None]
    edges = les_scores.pdf_edges(ref)
    ref_u = les_scores.units(ref, L, edges)
    widths = []
    for scale in (scale_same, scale_diff):
        u = les_scores.units(scale * ref[:, None], L, edges)
        out = les_scores.with_intervals(les_scores.scores(u, ref_u, edges),
                                        les_scores.resampled(u, ref_u, edges, draws=200))
        widths.append(out["enstrophy_error_hi"] - out["enstrophy_error_lo"])
    assert widths[0] < 1e-9 < 0.1 < widths[1]


def test_records_past_the_reference_window_are_scored_against_its_pooled_statistics():
    """A run of 6 records whose reference (2 states) ends after 3: the reference's statistics
    are those of its 3 records, and past them the energy is compared with its time mean."""
    from diffclosure.data.flow_stats import energy_enstrophy

    ref = _fields((2, 3), seed=3)
    e, _ = energy_enstrophy(ref, L)
    ref = ref / np.sqrt(e)[..., None, None]  # energy 1 in every record
    padded = np.concatenate([ref, np.full_like(ref, np.nan)], axis=1)
    # The closure repeats the window's fields (in another order) past it: the same pooled
    # spectra and PDF, and the reference's (constant) energy.
    run = np.concatenate([ref, ref[:, ::-1]], axis=1)[:, None]  # (S, M=1, 6, n, n)
    edges = les_scores.pdf_edges(padded)
    r_units = les_scores.units(padded, L, edges)
    s = les_scores.scores(les_scores.units(run, L, edges), r_units, edges)
    for name in ("energy_spectrum_error", "enstrophy_spectrum_error", "pdf_hellinger",
                 "energy_error"):
        assert s[name] == pytest.approx(0.0, abs=1e-12), name
    # Twice the amplitude past the window: 4x the energy there, a relative error of 3 on 3 of
    # the 6 records.
    run[:, :, 3:] *= 2
    s = les_scores.scores(les_scores.units(run, L, edges), r_units, edges)
    assert s["energy_error"] == pytest.approx(1.5, rel=1e-12)
    assert s["energy_spectrum_error"] > 0.5
