"""The report's LES section: the ranking of rollout/les.csv and the a-priori table."""

from diffclosure.provenance import csv_text, write_table
from diffclosure.rollout.les_a_priori import LES_A_PRIORI_COLUMNS
from diffclosure.stages.report import les_ranking, les_section
from diffclosure.stages.rollout_metrics import LES_COLUMNS


def _row(closure, err, stable, cost):
    return {"closure": closure, "energy_spectrum_error": err, "enstrophy_spectrum_error": err,
            "energy_error": err, "enstrophy_error": err, "pdf_hellinger": err,
            "pdf_wasserstein1": err, "short_time": 0.5, "short_d_fro_member_median": err,
            "blowup": stable < 7.0, "stable_time": stable, "cost_s_per_time": cost}


def _write(path, columns, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_table(path, csv_text(rows, columns), {}, "rollout_metrics")


def test_a_closure_better_in_every_column_ranks_first_and_a_blow_up_ranks_last():
    rows = [_row("slow_but_good", 0.1, 7.0, 1.0), _row("blows_up", "nan", 2.0, 1.0),
            _row("best", 0.05, 7.0, 0.5)]
    order = [r["closure"] for _, r in les_ranking(rows)]
    assert order == ["best", "slow_but_good", "blows_up"]


def test_overlapping_intervals_tie_and_the_oracle_is_not_ranked():
    a, b = _row("a", 0.10, 7.0, 1.0), _row("b", 0.12, 7.0, 1.0)
    for r, (lo, hi) in ((a, (0.05, 0.2)), (b, (0.06, 0.25))):
        for col in ("energy_spectrum_error", "enstrophy_spectrum_error", "enstrophy_error",
                    "pdf_hellinger"):
            r[f"{col}_lo"], r[f"{col}_hi"] = lo, hi
    ranked = les_ranking([a, b, _row("true", 0.0, 7.0, 1.0)])
    assert [r["closure"] for _, r in ranked] == ["a", "b"]
    assert ranked[0][0] == ranked[1][0] == 1.0  # every column a tie
    # Without intervals the same points are ranked apart.
    a2, b2 = _row("a", 0.10, 7.0, 1.0), _row("b", 0.12, 7.0, 1.0)
    assert [m for m, _ in les_ranking([a2, b2])] == [1.0, (4 * 2 + 1 + 1) / 6]


def test_les_section_shows_both_tables(tmp_path):
    _write(tmp_path / "rollout" / "les.csv", LES_COLUMNS,
           [_row("none", 0.5, 7.0, 0.1), _row("smagorinsky", 0.2, 7.0, 0.2)])
    apriori = [dict(zip(LES_A_PRIORI_COLUMNS, ["smagorinsky", 1, 0.41, 0.9, 1.1, 0.2, 0.35, 0.5],
                        strict=True))]
    _write(tmp_path / "sampling" / "les_a_priori.csv", LES_A_PRIORI_COLUMNS, apriori)
    text = "\n".join(les_section(tmp_path))
    assert "| 1 | smagorinsky |" in text
    assert "| smagorinsky | 1 | 0.41 |" in text
    (tmp_path / "sampling" / "les_a_priori.csv").unlink()
    assert "les_a_priori.csv not found" in "\n".join(les_section(tmp_path))
