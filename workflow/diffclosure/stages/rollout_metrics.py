"""Stage `rollout-metrics`: every closure's rollout against its reference, and the figures.

    python -m diffclosure rollout-metrics --config CFG --inputs rollout/*.h5 --outdir rollout/

Sections: rollout, report (its times pick the records of the probabilistic table and the rank
histograms, the same ones as the report's tables). Writes, atomically, in --outdir:

- metrics.csv, long format, one row per (closure, state, member, time); member is a member
  index or "mean" (the ensemble-mean field). Columns: d_fro (||w - w_ref|| / ||w_ref|| of that
  member or of the ensemble-mean field), d_fro_paper (the paper's normalisation by the
  generated field, ||w - w_ref|| / ||w||), mse, correlation (with the
  reference), enstrophy (0.5 <w^2>; of a member, or the members' mean for "mean"),
  enstrophy_reference, and for the "mean" rows spread (sqrt of the members' unbiased variance
  averaged over the grid, times sqrt((M+1)/M): metrics.probabilistic.spread) and crps (energy
  form, mean over the grid). Rows after a blow-up hold nan.
- probabilistic.csv, one row per (closure, report time), pooled over initial states and grid
  points: members; crps (per point, mean; for one member its mean absolute error), crps_fair
  (the same with the member pairs over M(M-1): unbiased for small M), energy_score (fair, of
  each whole field, RMS-normalised: metrics.probabilistic.energy_score; mean over states); spread
  (metrics.probabilistic.spread, pooled) and rmse_ensemble_mean, their ratio spread_skill
  (1 when calibrated; nan for one member); the rank histogram of the reference among the
  members as rank_frequencies (space-separated, summing to 1), rank_deviation (rms of
  frequency / flat - 1) and rank_outer (outer ranks over their flat share: > 1 a U, too little
  spread; < 1 a dome). rank_histogram.png draws the histograms.
- summary.csv and summary.json, one entry per closure, at the last record:
  final_d_fro_member_median (over members and states), final_d_fro_paper (member 0,
  normalised by the generated field, mean over states), final_d_fro_ensemble_mean (mean over
  states), time to decorrelation (first record time at which the
  ensemble-mean field's correlation with the reference drops below
  rollout.correlation_threshold, averaged over states; the rollout duration when it never
  does, flagged by decorrelated=False), blow-up time, cost (wall s per simulated time unit) of
  the coupled run and of the fine DNS and their ratio, and spectrum error against the reference.
  summary.json is strict JSON: a value that is not a number (no blow-up, say) is null; it
  holds a top-level "provenance"; each CSV has a sidecar <name>.csv.provenance.json.
- target sgs only (an LES): les.csv, one row per closure: LES_COLUMNS, i.e. the log-spectrum
  errors of the time-mean energy and enstrophy spectra against the filtered DNS's
  (metrics.spectra.spectrum_error), the relative errors of the members' mean energy and
  enstrophy against time (mean over records), the distances of the vorticity PDF to the
  filtered DNS's (Hellinger, Wasserstein-1: metrics.les), the median per-member D_Fro at the
  first report time (short-time skill), blow-up, the time it stayed finite, and the cost; and
  les_spectra.png, the energy and enstrophy spectra of every closure and the filtered DNS.
- A rollout past the DNS's recorded window (sgs; its reference records there are NaN): every
  table and figure that pairs a record with the reference (metrics.csv, probabilistic.csv, the
  summary's final and decorrelation entries, error.png, snapshots.png) reads the records up to
  the window's end, the report times included; les.csv, the summary's spectrum error, the
  spectra and PDFs of spectra.png read the whole run, against the filtered DNS pooled over the
  window (metrics.les_scores), and summary's duration is the whole run's.
- error.png (per-member D_Fro against time: median line, band over members and states, the
  ensemble mean dashed), spectra.png (energy spectra with a
  k^-3 line, vorticity PDFs, enstrophy against time), snapshots.png (reference and the first
  member of each closure at a few times, first initial state).
"""

from __future__ import annotations

import csv
import io
import logging
import math
from pathlib import Path

import numpy as np

from diffclosure import config as cfgmod
from diffclosure.data import h5io
from diffclosure.data.h5io import DataFileError
from diffclosure.errors import remake_hint
from diffclosure.metrics import les_scores
from diffclosure.metrics.fields import correlation, d_fro, mse, pdf
from diffclosure.metrics.les import enstrophy_spectrum, wasserstein1
from diffclosure.metrics.probabilistic import (
    crps,
    energy_score,
    rank_flatness,
    rank_histogram,
    spread,
    spread_skill,
)
from diffclosure.metrics.spectra import energy_spectrum, spectrum_error
from diffclosure.metrics.times import paired_records, report_times
from diffclosure.provenance import provenance, write_json_table, write_table
from diffclosure.rollout import registry

log = logging.getLogger(__name__)

METRIC_COLUMNS = ["d_fro", "d_fro_paper", "mse", "correlation", "enstrophy",
                  "enstrophy_reference", "spread", "crps"]
PROB_COLUMNS = ["closure", "time", "members", "crps", "crps_fair", "energy_score", "spread",
                "rmse_ensemble_mean",
                "spread_skill", "rank_deviation", "rank_outer", "rank_frequencies"]
SUMMARY_COLUMNS = ["closure", "target", "states", "members", "final_time", "duration",
                   "final_d_fro_member_median", "final_d_fro_paper", "final_d_fro_ensemble_mean",
                   "time_to_decorrelation", "decorrelated", "blowup",
                   "blowup_time", "cost_s_per_time", "dns_cost_s_per_time", "cost_ratio_vs_dns",
                   "spectrum_error", "blowup_cause"]

LES_COLUMNS = ["closure", "energy_spectrum_error", "enstrophy_spectrum_error", "energy_error",
               "enstrophy_error", "pdf_hellinger", "pdf_wasserstein1", "short_time",
               "short_d_fro_member_median", "blowup", "stable_time", "cost_s_per_time"]


def les_columns(has_none: bool) -> list[str]:
    """les.csv's columns: LES_COLUMNS, each score's 95% interval, and its similarity to no
    closure with that interval (when `none` was run)."""
    cols = list(LES_COLUMNS)
    for name in les_scores.SCORES:
        cols += [f"{name}_lo", f"{name}_hi"]
    if has_none:
        for name in les_scores.SCORES:
            cols += [f"similarity_{name}", f"similarity_{name}_lo", f"similarity_{name}_hi"]
    return cols


def add_arguments(parser) -> None:
    parser.add_argument("--inputs", nargs="+", required=True, help="rollout files (HDF5)")
    parser.add_argument("--outdir", required=True, help="folder for metrics, summary, figures")


def read_rollout(path) -> dict:
    """One rollout file as arrays (float64) and its attributes."""
    with h5io.open_input(path, required=("vorticity", "reference", "time")) as fh:
        attrs = h5io.read_attrs(fh)
        out = {
            "vorticity": fh["vorticity"][()].astype(np.float64),
            "reference": fh["reference"][()].astype(np.float64),
            "time": fh["time"][()].astype(np.float64),
            "attrs": attrs,
            "path": str(path),
        }
    v, r = out["vorticity"], out["reference"]
    if v.ndim != 5 or r.ndim != 4 or v.shape[0] != r.shape[0] or v.shape[2:] != r.shape[1:]:
        raise DataFileError(f"{path}: vorticity {v.shape} and reference {r.shape} do not match "
                            "(state, member, time, y, x) / (state, time, y, x). "
                            f"{remake_hint(path)}")
    if "closure" not in attrs:
        raise DataFileError(f"{path}: lacks the 'closure' attribute. {remake_hint(path)}")
    out["closure"] = str(attrs["closure"])
    return out


def enstrophy(w) -> np.ndarray:
    return 0.5 * np.mean(np.asarray(w, dtype=float) ** 2, axis=(-2, -1))


def time_to_decorrelation(times, corr, threshold: float) -> tuple[float, bool]:
    """First time with corr < threshold (a nan after a blow-up counts as decorrelated).

    Returns (time, True), or (last time, False) when the correlation never drops below.
    """
    below = ~(np.asarray(corr) >= threshold)
    idx = np.flatnonzero(below)
    if idx.size:
        return float(times[idx[0]]), True
    return float(times[-1]), False


def paired(ro: dict) -> dict:
    """The rollout's records that have a reference: all of them, or those up to the end of the
    DNS's recorded window for a run past it (module docstring); "full" keeps the whole."""
    r = ro["reference"]
    n = paired_records(r)
    if n == r.shape[1]:
        return ro
    return {**ro, "vorticity": ro["vorticity"][:, :, :n], "reference": r[:, :n],
            "time": ro["time"][:n], "full": ro}


def rollout_metrics(ro: dict) -> dict:
    """Per-(state, member, time) metrics of one rollout; arrays (S, M, T) and (S, T)."""
    v, r = ro["vorticity"], ro["reference"]
    ens_mean = v.mean(axis=1)
    m = v.shape[1]
    out = {
        "d_fro": d_fro(v, r[:, None]), "d_fro_paper": d_fro(r[:, None], v),
        "mse": mse(v, r[:, None]),
        "correlation": correlation(v, r[:, None]), "enstrophy": enstrophy(v),
        "mean_d_fro": d_fro(ens_mean, r), "mean_d_fro_paper": d_fro(r, ens_mean),
        "mean_mse": mse(ens_mean, r),
        "mean_correlation": correlation(ens_mean, r),
        "mean_enstrophy": enstrophy(v).mean(axis=1), "enstrophy_reference": enstrophy(r),
        "crps": crps(v, r, axis=1).mean(axis=(-2, -1)),
    }
    # A single member has no spread: 0 rather than the nan of an undefined variance.
    out["spread"] = spread(v, axis=1, over=(-2, -1)) if m >= 2 else np.zeros(r.shape[:2])
    return out


def probabilistic_rows(ro: dict, mt: dict, at) -> tuple[list[dict], dict]:
    """probabilistic.csv rows of one rollout at the record times `at` (module docstring), and
    its rank frequencies {"t = <time>": (M+1,)}, empty for one member (nothing to rank among)."""
    v, r, times = ro["vorticity"], ro["reference"], ro["time"]
    m = v.shape[1]
    rows, hists = [], {}
    for t in at:
        j = int(np.argmin(np.abs(times - t)))
        row = {"closure": ro["closure"], "time": float(times[j]), "members": m,
               "crps": float(np.mean(mt["crps"][:, j])),
               "crps_fair": float(np.mean(crps(v[:, :, j], r[:, j], axis=1, fair=True))),
               "energy_score": float(np.mean(energy_score(v[:, :, j], r[:, j], axis=1))),
               "rmse_ensemble_mean": math.sqrt(float(np.mean(mt["mean_mse"][:, j]))),
               "spread": math.nan, "spread_skill": math.nan, "rank_deviation": math.nan,
               "rank_outer": math.nan, "rank_frequencies": ""}
        if m >= 2:
            ss = spread_skill(v[:, :, j], r[:, j], axis=1)
            counts = rank_histogram(v[:, :, j], r[:, j], axis=1)
            flat = rank_flatness(counts)
            freq = counts / max(counts.sum(), 1.0)
            hists[f"t = {row['time']:.3g}"] = freq
            row.update(spread=ss.spread, spread_skill=ss.ratio, rank_deviation=flat.deviation,
                       rank_outer=flat.outer,
                       rank_frequencies=" ".join(f"{x:.4g}" for x in freq))
        rows.append(row)
    return rows, hists


def _fmt(x) -> str:
    if isinstance(x, str):
        return x
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return f"{float(x):.6g}"


def metrics_rows(ro: dict, mt: dict) -> list[list]:
    rows = []
    name, times = ro["closure"], ro["time"]
    S, M, T = mt["d_fro"].shape
    for s in range(S):
        for j in range(T):
            zr = mt["enstrophy_reference"][s, j]
            for k in range(M):
                rows.append([name, s, k, times[j], mt["d_fro"][s, k, j],
                             mt["d_fro_paper"][s, k, j], mt["mse"][s, k, j],
                             mt["correlation"][s, k, j], mt["enstrophy"][s, k, j], zr, "", ""])
            rows.append([name, s, "mean", times[j], mt["mean_d_fro"][s, j],
                         mt["mean_d_fro_paper"][s, j], mt["mean_mse"][s, j],
                         mt["mean_correlation"][s, j], mt["mean_enstrophy"][s, j], zr,
                         mt["spread"][s, j], mt["crps"][s, j]])
    return rows


def _time_mean_spectrum(fields, length):
    """Energy spectrum averaged over every finite field (..., n, n)."""
    f = fields.reshape((-1,) + fields.shape[-2:])
    f = f[np.isfinite(f).all(axis=(-2, -1))]
    if not len(f):
        return None
    k, e = energy_spectrum(f, length)
    return k, e.mean(axis=0)


def _les_spectra(fields, length):
    """Time-mean (k, E) and (k, Z) over every finite field, or (None, None)."""
    energy = _time_mean_spectrum(fields, length)
    f = fields.reshape((-1,) + fields.shape[-2:])
    f = f[np.isfinite(f).all(axis=(-2, -1))]
    if energy is None:
        return None, None
    k, z = enstrophy_spectrum(f)
    return energy, (k, z.mean(axis=0))


def les_row(ro: dict, mt: dict, scored: dict, reference, short_time: float,
            summary: dict) -> dict:
    """One les.csv row (module docstring): the closure's scores with their intervals
    (metrics.les_scores), W1, the short-time skill, stability and cost."""
    v, times = ro["vorticity"], ro["time"]
    j = int(np.argmin(np.abs(times - short_time)))
    blow = summary["blowup_time"]
    return {"closure": ro["closure"], **scored,
            "pdf_wasserstein1": wasserstein1(v, reference),
            "short_time": float(times[j]),
            "short_d_fro_member_median": float(np.median(mt["d_fro"][:, :, j])),
            "blowup": summary["blowup"],
            "stable_time": blow if summary["blowup"] and math.isfinite(blow)
            else float(times[-1]),
            "cost_s_per_time": summary["cost_s_per_time"]}


def les_scores_of(rollouts, reference, length: float, seed: int = 0) -> dict[str, dict]:
    """{closure: its LES scores with bootstrap intervals and, when `none` is among the
    closures, similarities to no closure} (metrics.les_scores; every closure resampled with
    the same seed, so the similarity is paired state by state)."""
    edges = les_scores.pdf_edges(reference)
    ref_units = les_scores.units(reference, length, edges)
    points, draws = {}, {}
    for r in rollouts:
        u = les_scores.units(r["vorticity"], length, edges)
        points[r["closure"]] = les_scores.scores(u, ref_units, edges)
        draws[r["closure"]] = les_scores.resampled(u, ref_units, edges, seed=seed)
    none = "none" if "none" in points else None
    out = {}
    for name in points:
        out[name] = les_scores.with_intervals(
            points[name], draws[name], points.get(none), draws.get(none))
    return out


def write_les(outdir: Path, rollouts, per, summary, reference, length, short_time,
              prov_cfg, cutoff) -> None:
    """les.csv and les_spectra.png of an sgs run (module docstring)."""
    from diffclosure.plots.rollout import les_spectra_figure

    ref_spectra = _les_spectra(reference, length)
    scored = les_scores_of(rollouts, reference, length)
    rows, energy, enstrophy_ = [], {"reference": ref_spectra[0]}, {"reference": ref_spectra[1]}
    for r, s in zip(rollouts, summary, strict=True):
        rows.append(les_row(r, per[r["closure"]], scored[r["closure"]], reference, short_time,
                            s))
        spectra = _les_spectra(r["vorticity"], length)
        if spectra[0] is not None:
            energy[r["closure"]], enstrophy_[r["closure"]] = spectra
    columns = les_columns(has_none=any(r["closure"] == "none" for r in rollouts))
    write_table(outdir / "les.csv",
                _csv(columns, [[x.get(c, math.nan) for c in columns] for x in rows]),
                prov_cfg, "rollout_metrics")
    les_spectra_figure(outdir / "les_spectra.png", energy, enstrophy_, cutoff)


def summarise(ro: dict, mt: dict, threshold: float, ref_spectrum) -> dict:
    a, times = ro["attrs"], ro["time"]
    S, M, T = mt["d_fro"].shape
    dec = [time_to_decorrelation(times, mt["mean_correlation"][s], threshold) for s in range(S)]
    length = float(a.get("dns.length", 1.0))
    full = ro.get("full", ro)
    spec = _time_mean_spectrum(full["vorticity"], length)
    spec_err = (spectrum_error(spec[1], ref_spectrum[1]) if spec is not None
                and ref_spectrum is not None else float("nan"))
    blow = a.get("blowup_time", float("nan"))
    return {
        "closure": ro["closure"], "target": a.get("target", ""), "states": S, "members": M,
        "final_time": float(times[-1]), "duration": float(full["time"][-1]),
        "final_d_fro_member_median": float(np.median(mt["d_fro"][:, :, -1])),
        "final_d_fro_paper": float(np.mean(mt["d_fro_paper"][:, 0, -1])),
        "final_d_fro_ensemble_mean": float(np.mean(mt["mean_d_fro"][:, -1])),
        "time_to_decorrelation": float(np.mean([d[0] for d in dec])),
        "decorrelated": bool(all(d[1] for d in dec)),
        "blowup": bool(a.get("blowup", False)),
        "blowup_time": float(blow) if blow is not None else float("nan"),
        "cost_s_per_time": float(a.get("cost_coupled_s_per_time", float("nan"))),
        "dns_cost_s_per_time": float(a.get("cost_dns_s_per_time", float("nan"))),
        "cost_ratio_vs_dns": float(a.get("cost_ratio_vs_dns", float("nan"))),
        "spectrum_error": spec_err,
    }


def _csv(header, rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow([_fmt(x) for x in r])
    return buf.getvalue()


def _read_inputs(paths) -> tuple[list[dict], np.ndarray]:
    """The rollouts, one per closure, and their common reference."""
    rollouts = [read_rollout(p) for p in paths]
    names = [r["closure"] for r in rollouts]
    if len(set(names)) != len(names):
        raise DataFileError(f"--inputs: closures repeat ({names}); pass one file per closure")
    # The reference is the same in every file (same states, seeds and physics); take the first
    # and say so if another differs (e.g. files from different configurations).
    reference = rollouts[0]["reference"]
    for r in rollouts[1:]:
        if r["reference"].shape != reference.shape or not np.allclose(
                r["reference"], reference, rtol=1e-5, atol=1e-6, equal_nan=True):
            log.warning("%s: its reference differs from %s's; were they made with the same "
                        "config?", r["path"], rollouts[0]["path"])
    return rollouts, reference


def _score_rollouts(rollouts: list[dict], at, threshold: float, ref_spec) -> tuple:
    """Per closure: the metrics, and the rows of metrics.csv, summary and probabilistic.csv,
    and the rank histograms."""
    rows, summary, per, prob, hists = [], [], {}, [], {}
    for r in map(paired, rollouts):
        mt = rollout_metrics(r)
        per[r["closure"]] = mt
        rows += metrics_rows(r, mt)
        p_rows, p_hists = probabilistic_rows(r, mt, at)
        prob += p_rows
        if p_hists:
            hists[r["closure"]] = p_hists
        summary.append(summarise(r, mt, threshold, ref_spec))
        s = summary[-1]
        log.info("%s: final D_Fro per member (median) %.3g, paper's %.3g, ensemble mean %.3g, "
                 "decorrelation at %.3g%s, cost ratio %.3g", s["closure"],
                 s["final_d_fro_member_median"], s["final_d_fro_paper"],
                 s["final_d_fro_ensemble_mean"],
                 s["time_to_decorrelation"], "" if s["decorrelated"] else " (never)",
                 s["cost_ratio_vs_dns"])
    for s in summary:
        s["blowup_cause"] = ""
    for name, cause in blowup_causes(summary).items():
        next(s for s in summary if s["closure"] == name)["blowup_cause"] = cause
        log.warning("closure %s %s", name, cause)
    return rows, summary, per, prob, hists


def _suspects(closure: str) -> str:
    """What to check when `closure` blows up where others stay stable."""
    if closure in ("none", "true"):  # nothing of its own to blame: the coarse physics is marginal
        return ("the coarse run is marginal at this step without a stabilising closure; "
                "reduce dns.dt (a quarter of it, say) or raise dns.nu")
    spec = registry.lookup(closure)
    if spec.needs_model:
        scales = "rollout.hold_noise, measurements.noise, rollout.sampler or the model itself"
    elif spec.measured:
        scales = "measurements.noise"
    else:
        scales = "coarse.smagorinsky_cs / coarse.leith_cl"
    return f"the closure is the cause. Check {scales}; reducing dns.dt is not the fix"


def blowup_causes(summary: list[dict]) -> dict[str, str]:
    """{closure: what blew up and which setting to blame} for every closure that blew up. A
    closure that blows up where others stay stable at the same coarse time step is itself the
    cause; when every closure blows up, the coarse run is (its time step or viscosity)."""
    stable = sorted(s["closure"] for s in summary if not s["blowup"])
    out = {}
    for s in summary:
        if not s["blowup"]:
            continue
        when = (f"blew up at t = {s['blowup_time']:.4g}" if math.isfinite(s["blowup_time"])
                else "blew up")
        if stable:
            out[s["closure"]] = (
                f"{when}, while {', '.join(stable)} stayed stable at the same dns.dt: "
                f"{_suspects(s['closure'])}")
        else:
            out[s["closure"]] = (
                f"{when}; every closure blew up, so the coarse run itself is unstable: reduce "
                "dns.dt (a quarter of it, say) or raise dns.nu")
    return out


def _write_tables(outdir: Path, rows, summary, prob, prov_cfg: dict, threshold: float) -> None:
    """metrics.csv, summary.csv, probabilistic.csv and summary.json."""
    write_table(outdir / "metrics.csv",
                _csv(["closure", "state", "member", "time", *METRIC_COLUMNS], rows),
                prov_cfg, "rollout_metrics")
    write_table(outdir / "summary.csv",
                _csv(SUMMARY_COLUMNS, [[s[c] for c in SUMMARY_COLUMNS] for s in summary]),
                prov_cfg, "rollout_metrics")
    write_table(outdir / "probabilistic.csv",
                _csv(PROB_COLUMNS, [[p[c] for c in PROB_COLUMNS] for p in prob]),
                prov_cfg, "rollout_metrics")
    # Strict JSON: a NaN (blowup_time of a run that did not blow up, a cost not measured) is
    # written as null.
    doc = {"threshold": threshold,
           "closures": {s["closure"]: s for s in summary},
           "provenance": provenance(prov_cfg, "rollout_metrics")}
    write_json_table(outdir / "summary.json", doc, prov_cfg, "rollout_metrics")


def main(args) -> int:
    cfg = cfgmod.load(args.config, sections=["rollout", "report"])
    ro_cfg, fractions = cfg["rollout"], cfg["report"]["times"]
    rollouts, reference = _read_inputs(args.inputs)
    outdir = Path(args.outdir)
    length = float(rollouts[0]["attrs"].get("dns.length", 1.0))
    ref_spec = _time_mean_spectrum(reference, length)

    at = report_times(paired(rollouts[0])["time"], fractions)
    rows, summary, per, prob, hists = _score_rollouts(
        rollouts, at, ro_cfg["correlation_threshold"], ref_spec)

    # What determined these tables: the rollout section and the rollouts' own config hashes.
    prov_cfg = {"rollout": ro_cfg, "report_times": fractions,
                "inputs": sorted(str(r["attrs"].get("config_hash", "")) for r in rollouts)}
    _write_tables(outdir, rows, summary, prob, prov_cfg, ro_cfg["correlation_threshold"])
    if rollouts[0]["attrs"].get("target") == "sgs":
        write_les(outdir, rollouts, per, summary, reference, length, at[0], prov_cfg,
                  reference.shape[-1] / 2)
    _figures(outdir, rollouts, per, reference, ref_spec, length)
    from diffclosure.plots.rollout import rank_histogram_figure

    rank_histogram_figure(outdir / "rank_histogram.png", hists)
    log.info("wrote %s/{metrics.csv, summary.csv, summary.json, probabilistic.csv, error.png, "
             "spectra.png, snapshots.png, rank_histogram.png}", outdir)
    return 0


def _figures(outdir, rollouts, per, reference, ref_spec, length) -> None:
    from diffclosure.plots.rollout import error_figure, snapshots_figure, spectra_figure

    times = rollouts[0]["time"]
    curves = {}
    for r in rollouts:
        mt = per[r["closure"]]
        member = mt["d_fro"].reshape(-1, mt["d_fro"].shape[-1])  # (S*M, T): the paired records
        curves[r["closure"]] = {
            "time": r["time"][:member.shape[-1]], "median": np.median(member, axis=0),
            "lo": member.min(axis=0), "hi": member.max(axis=0),
            "ensemble_mean": mt["mean_d_fro"].mean(axis=0) if mt["d_fro"].shape[1] > 1 else None,
            "blowup": r["attrs"].get("blowup_time"),
        }
    error_figure(outdir / "error.png", curves)

    finite = reference[np.isfinite(reference)]
    lim = float(np.abs(finite).max()) * 1.5 if finite.size else 1.0
    bins = np.linspace(-lim, lim, 81)
    spectra, pdfs, ens = {"reference": ref_spec}, {"reference": pdf(reference, bins)}, {
        "reference": (times, enstrophy(reference).mean(axis=0))}
    for r in rollouts:
        spec = _time_mean_spectrum(r["vorticity"], length)
        if spec is not None:
            spectra[r["closure"]] = spec
        v = r["vorticity"]
        if np.isfinite(v).any():
            pdfs[r["closure"]] = pdf(v[np.isfinite(v)], bins)
        ens[r["closure"]] = (r["time"], enstrophy(v).mean(axis=(0, 1)))
    spectra = {k: v for k, v in spectra.items() if v is not None}
    spectra_figure(outdir / "spectra.png", spectra, pdfs, ens)

    T = per[rollouts[0]["closure"]]["d_fro"].shape[-1]  # the snapshots show the paired records
    cols = sorted({0, T // 3, (2 * T) // 3, T - 1})
    rows = {"reference": reference[0, cols]}
    for r in rollouts:
        rows[r["closure"]] = r["vorticity"][0, 0, cols]
    snapshots_figure(outdir / "snapshots.png", rows, [float(times[c]) for c in cols], length)
