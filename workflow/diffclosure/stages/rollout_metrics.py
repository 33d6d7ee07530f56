"""Stage `rollout-metrics`: every closure's rollout against its reference, and the figures.

    python -m diffclosure rollout-metrics --config CFG --inputs rollout/*.h5 --outdir rollout/

Section: rollout. Writes, atomically, in --outdir:

- metrics.csv, long format, one row per (closure, state, member, time); member is a member
  index or "mean" (the ensemble-mean field). Columns: d_fro, mse, correlation (with the
  reference), enstrophy (0.5 <w^2>; of a member, or the members' mean for "mean"),
  enstrophy_reference, and for the "mean" rows spread (sqrt of the members' unbiased variance
  averaged over the grid, times sqrt((M+1)/M): metrics.probabilistic.spread) and crps (energy
  form, mean over the grid). Rows after a blow-up hold nan.
- summary.csv and summary.json, one entry per closure: final D_Fro (ensemble mean and member
  mean, averaged over states), time to decorrelation (first record time at which the
  ensemble-mean field's correlation with the reference drops below
  rollout.correlation_threshold, averaged over states; the rollout duration when it never
  does, flagged by decorrelated=False), blow-up time, cost (wall s per simulated time unit) of
  the coupled run and of the fine DNS and their ratio, and spectrum error against the reference.
  summary.json is strict JSON: a value that is not a number (no blow-up, say) is null; it
  holds a top-level "provenance"; each CSV has a sidecar <name>.csv.provenance.json.
- error.png (D_Fro against time, all closures, member band), spectra.png (energy spectra with a
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
from diffclosure.metrics.fields import correlation, d_fro, mse, pdf
from diffclosure.metrics.probabilistic import crps, spread
from diffclosure.metrics.spectra import energy_spectrum, spectrum_error
from diffclosure.provenance import provenance, write_table

log = logging.getLogger(__name__)

METRIC_COLUMNS = ["d_fro", "mse", "correlation", "enstrophy", "enstrophy_reference", "spread",
                  "crps"]
SUMMARY_COLUMNS = ["closure", "target", "states", "members", "final_time", "final_d_fro",
                   "final_d_fro_members", "time_to_decorrelation", "decorrelated", "blowup",
                   "blowup_time", "cost_s_per_time", "dns_cost_s_per_time", "cost_ratio_vs_dns",
                   "spectrum_error"]


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
                            "(state, member, time, y, x) / (state, time, y, x); rerun rollout")
    if "closure" not in attrs:
        raise DataFileError(f"{path}: lacks the 'closure' attribute; rerun the rollout stage")
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


def rollout_metrics(ro: dict) -> dict:
    """Per-(state, member, time) metrics of one rollout; arrays (S, M, T) and (S, T)."""
    v, r = ro["vorticity"], ro["reference"]
    ens_mean = v.mean(axis=1)
    m = v.shape[1]
    out = {
        "d_fro": d_fro(v, r[:, None]), "mse": mse(v, r[:, None]),
        "correlation": correlation(v, r[:, None]), "enstrophy": enstrophy(v),
        "mean_d_fro": d_fro(ens_mean, r), "mean_mse": mse(ens_mean, r),
        "mean_correlation": correlation(ens_mean, r),
        "mean_enstrophy": enstrophy(v).mean(axis=1), "enstrophy_reference": enstrophy(r),
        "crps": crps(v, r, axis=1).mean(axis=(-2, -1)),
    }
    # A single member has no spread: 0 rather than the nan of an undefined variance.
    out["spread"] = spread(v, axis=1, over=(-2, -1)) if m >= 2 else np.zeros(r.shape[:2])
    return out


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
                rows.append([name, s, k, times[j], mt["d_fro"][s, k, j], mt["mse"][s, k, j],
                             mt["correlation"][s, k, j], mt["enstrophy"][s, k, j], zr, "", ""])
            rows.append([name, s, "mean", times[j], mt["mean_d_fro"][s, j], mt["mean_mse"][s, j],
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


def summarise(ro: dict, mt: dict, threshold: float, ref_spectrum) -> dict:
    a, times = ro["attrs"], ro["time"]
    S, M, T = mt["d_fro"].shape
    dec = [time_to_decorrelation(times, mt["mean_correlation"][s], threshold) for s in range(S)]
    length = float(a.get("dns.length", 1.0))
    spec = _time_mean_spectrum(ro["vorticity"], length)
    spec_err = (spectrum_error(spec[1], ref_spectrum[1]) if spec is not None
                and ref_spectrum is not None else float("nan"))
    blow = a.get("blowup_time", float("nan"))
    return {
        "closure": ro["closure"], "target": a.get("target", ""), "states": S, "members": M,
        "final_time": float(times[-1]),
        "final_d_fro": float(np.mean(mt["mean_d_fro"][:, -1])),
        "final_d_fro_members": float(np.mean(mt["d_fro"][:, :, -1])),
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


def main(args) -> int:
    ro_cfg = cfgmod.load(args.config, sections=["rollout"])["rollout"]
    rollouts = [read_rollout(p) for p in args.inputs]
    names = [r["closure"] for r in rollouts]
    if len(set(names)) != len(names):
        raise DataFileError(f"--inputs: closures repeat ({names}); pass one file per closure")
    outdir = Path(args.outdir)
    # The reference is the same in every file (same states, seeds and physics); take the first
    # and say so if another differs (e.g. files from different configurations).
    reference = rollouts[0]["reference"]
    for r in rollouts[1:]:
        if r["reference"].shape != reference.shape or not np.allclose(
                r["reference"], reference, rtol=1e-5, atol=1e-6):
            log.warning("%s: its reference differs from %s's; were they made with the same "
                        "config?", r["path"], rollouts[0]["path"])
    length = float(rollouts[0]["attrs"].get("dns.length", 1.0))
    ref_spec = _time_mean_spectrum(reference, length)

    rows, summary, per = [], [], {}
    for r in rollouts:
        mt = rollout_metrics(r)
        per[r["closure"]] = mt
        rows += metrics_rows(r, mt)
        summary.append(summarise(r, mt, ro_cfg["correlation_threshold"], ref_spec))
        s = summary[-1]
        log.info("%s: final D_Fro %.3g (members %.3g), decorrelation at %.3g%s, cost ratio %.3g",
                 s["closure"], s["final_d_fro"], s["final_d_fro_members"],
                 s["time_to_decorrelation"], "" if s["decorrelated"] else " (never)",
                 s["cost_ratio_vs_dns"])

    # What determined these tables: the rollout section and the rollouts' own config hashes.
    prov_cfg = {"rollout": ro_cfg,
                "inputs": sorted(str(r["attrs"].get("config_hash", "")) for r in rollouts)}
    write_table(outdir / "metrics.csv",
                _csv(["closure", "state", "member", "time", *METRIC_COLUMNS], rows),
                prov_cfg, "rollout_metrics")
    write_table(outdir / "summary.csv",
                _csv(SUMMARY_COLUMNS, [[s[c] for c in SUMMARY_COLUMNS] for s in summary]),
                prov_cfg, "rollout_metrics")
    # Strict JSON: a NaN (blowup_time of a run that did not blow up, a cost not measured) is
    # written as null.
    doc = {"threshold": ro_cfg["correlation_threshold"],
           "closures": {s["closure"]: s for s in summary},
           "provenance": provenance(prov_cfg, "rollout_metrics")}
    h5io.write_json_atomic(outdir / "summary.json", doc)
    _figures(outdir, rollouts, per, reference, ref_spec, length)
    log.info("wrote %s/{metrics.csv, summary.csv, summary.json, error.png, spectra.png, "
             "snapshots.png}", outdir)
    return 0


def _figures(outdir, rollouts, per, reference, ref_spec, length) -> None:
    from diffclosure.plots.rollout import error_figure, snapshots_figure, spectra_figure

    times = rollouts[0]["time"]
    curves = {}
    for r in rollouts:
        mt = per[r["closure"]]
        member = mt["d_fro"].mean(axis=0)  # (M, T), averaged over states
        curves[r["closure"]] = {
            "time": r["time"], "mean": mt["mean_d_fro"].mean(axis=0),
            "lo": member.min(axis=0), "hi": member.max(axis=0),
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
        ens[r["closure"]] = (r["time"], per[r["closure"]]["mean_enstrophy"].mean(axis=0))
    spectra = {k: v for k, v in spectra.items() if v is not None}
    spectra_figure(outdir / "spectra.png", spectra, pdfs, ens)

    T = len(times)
    cols = sorted({0, T // 3, (2 * T) // 3, T - 1})
    rows = {"reference": reference[0, cols]}
    for r in rollouts:
        rows[r["closure"]] = r["vorticity"][0, 0, cols]
    snapshots_figure(outdir / "snapshots.png", rows, [float(times[c]) for c in cols], length)
