"""Stage `report`: the headline tables next to the paper's numbers, and the animation.

    python -m diffclosure report --config CFG --results results/<run> --outdir results/<run>/report

Sections: run, report. Reads rollout/metrics.csv, rollout/summary.json (or the rollout files'
attributes), sampling/benchmark.csv and sampling/resolution.csv under --results; every input but
metrics.csv is optional (a missing one becomes a note in the report). Writes, atomically:

- summary.md: a-posteriori D_Fro of every closure at report.times (fractions of the rollout: the
  scaled analog of the paper's 35/40/45/50 s over its 30 -> 50 s rollout): per member (median
  and min-max over members and states, the headline), the paper's definition (member 0,
  normalised by the generated field), the ensemble mean's, and rollout/probabilistic.csv
  (CRPS, spread/skill, rank histograms; optional); costs and cost
  ratios, a-priori errors and resolution invariance from the sampler benchmark, each beside the
  paper's numbers (:data:`PAPER`) and the command that reproduces it; a last line
  "Provenance: ..." (version, git commit, config hash, stage, time).
- animation.mp4 (report.animation; GIF beside it without ffmpeg): reference, the learned
  closure (first member) and no closure side by side, first initial state. Skipped, with a
  log line, when the diffusion or the none rollout is absent.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
from pathlib import Path

import numpy as np

from diffclosure import atomic
from diffclosure import config as cfgmod
from diffclosure.data import h5io
from diffclosure.data.h5io import DataFileError
from diffclosure.errors import UserFacingError
from diffclosure.metrics.times import paired_records, report_times
from diffclosure.provenance import footer, provenance, read_sidecar_meta, read_table_text

log = logging.getLogger(__name__)

# The paper's numbers, copied from /work/shared/PAPER.md ("Numbers from the research code's
# notebook outputs"): Dong, Chen & Wu, J. Comput. Phys. 534 (2025) 114005, arXiv:2408.02965.
PAPER = {
    # A-posteriori D_Fro, single trajectory, 64^2, rollout t = 30 -> 50 s.
    "a_posteriori_times": [35.0, 40.0, 45.0, 50.0],
    "a_posteriori": {
        "G learned (conv encoder)": [0.023, 0.044, 0.053, 0.071],
        "G dropped": [0.186, 0.348, 0.517, 0.695],
        "H learned (10 steps, every 5)": [0.027, 0.032, 0.035, 0.047],
        "H dropped": [0.715, 0.951, 0.879, 0.725],
    },
    # A-priori D_Fro of the sampled closure (100 test samples, 10-step sampler), trained at
    # 64^2 and applied unchanged at finer grids.
    "resolutions": [64, 128, 256],
    "a_priori": {
        "H, interp": [0.040, 0.058, 0.071],
        "H, conv": [0.054, 0.081, 0.107],
        "G, interp": [0.092, 0.130, 0.166],
        "G, conv": [0.093, 0.111, 0.135],
    },
    # Cost (one GPU, H closure): 20,000 coupled steps (20 s simulated) with and without closure.
    "cost": {"with_closure_s": 208.0, "without_closure_s": 5.65, "simulated_time": 20.0},
}

COMMANDS = {
    "a_posteriori": "snakemake --cores all --forcerun rollout",
    "cost": "snakemake --cores all --forcerun rollout",
    "a_priori": "snakemake --cores all --forcerun sample_benchmark",
    "report": "snakemake --cores all --forcerun report",
}


def add_arguments(parser) -> None:
    parser.add_argument("--results", required=True, help="results/<run> folder")
    parser.add_argument("--outdir", required=True, help="folder for summary.md and animation")


# ----------------------------------------------------------------------------- reading
# The rule that writes each input, for the command that remakes a damaged one.
MADE_BY = {"metrics.csv": "rollout_metrics", "summary.json": "rollout_metrics",
           "benchmark.csv": "sample_benchmark", "resolution.csv": "sample_benchmark"}


def _damaged(path: Path, why: str) -> DataFileError:
    rule = MADE_BY.get(path.name, "rollout_metrics")
    return DataFileError(f"{path}: {why}. Remake it with `snakemake --cores all --forcerun "
                         f"{rule}` (with your --configfile, if any)")


def _read_csv(path: Path, reader) -> list:
    """The rows of a CSV table, after checking it against its sidecar (checksum, rows)."""
    text = read_table_text(path)
    try:
        return list(reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise _damaged(path, f"not a readable CSV table ({exc})") from None


def read_metrics(path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise _damaged(path, "not found")
    rows = _read_csv(path, csv.DictReader)
    need = {"closure", "state", "member", "time", "d_fro", "d_fro_paper"}
    if not rows or not need <= set(rows[0]):
        raise _damaged(path, f"empty or lacks columns {sorted(need)}")
    bad = next((r for r in rows if not (_is_number(r["time"]) and _is_number(r["d_fro"]))), None)
    if bad is not None:
        raise _damaged(path, f"a row has a non-numeric time or d_fro ({bad})")
    return rows


def read_csv_table(path) -> tuple[list[str], list[list[str]]] | None:
    path = Path(path)
    if not path.exists():
        return None
    rows = _read_csv(path, csv.reader)
    return (rows[0], rows[1:]) if rows else None


def values_at(rows: list[dict], fractions, keep, column: str = "d_fro"):
    """{closure: [the `column` values of the rows `keep` accepts, at each chosen time]}, at the
    record nearest each fraction of the rollout (the times rollout_metrics scores), and the
    times used."""
    chosen = report_times([r["time"] for r in rows], fractions)
    out: dict[str, dict[float, list[float]]] = {}
    for r in rows:
        if keep(r):
            at = out.setdefault(r["closure"], {t: [] for t in chosen})
            if float(r["time"]) in at:
                at[float(r["time"])].append(float(r[column]))
    return {name: [at[t] for t in chosen] for name, at in out.items()}, chosen


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def d_fro_at(rows: list[dict], fractions) -> tuple[dict, list[float]]:
    """Ensemble-mean field's D_Fro (mean over states) per closure at the record nearest each
    fraction of the rollout duration. Returns ({closure: [values]}, the times used)."""
    table, chosen = values_at(rows, fractions, lambda r: r["member"] == "mean")
    return {name: [_mean(v) for v in vals] for name, vals in table.items()}, chosen


def member_d_fro_at(rows: list[dict], fractions) -> tuple[dict, list[float]]:
    """Per-member D_Fro as (median, min, max) over members and states, per closure and time."""
    table, chosen = values_at(rows, fractions, lambda r: r["member"] != "mean")
    return {name: [(float(np.median(v)), min(v), max(v)) if v else (float("nan"),) * 3
                   for v in vals] for name, vals in table.items()}, chosen


def paper_d_fro_at(rows: list[dict], fractions) -> tuple[dict, list[float]]:
    """The paper's definition: member 0, ||w - w_ref|| / ||w||, mean over initial states."""
    table, chosen = values_at(rows, fractions, lambda r: r["member"] == "0", "d_fro_paper")
    return {name: [_mean(v) for v in vals] for name, vals in table.items()}, chosen


def costs(results: Path) -> dict:
    """{closure: summary entry} from rollout/summary.json, else from the rollout files."""
    path = results / "rollout" / "summary.json"
    if path.exists():
        try:
            closures = json.loads(read_table_text(path)).get("closures", {})
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
            raise _damaged(path, f"not a readable JSON summary ({exc})") from None
        # null stands for a value that is not a number (strict JSON has no NaN).
        return {name: {k: float("nan") if v is None else v for k, v in entry.items()}
                for name, entry in closures.items()}
    out = {}
    for f in sorted((results / "rollout").glob("*.h5")):
        with h5io.open_input(f) as fh:
            a = h5io.read_attrs(fh)
        out[str(a.get("closure", f.stem))] = {
            "cost_s_per_time": a.get("cost_coupled_s_per_time", float("nan")),
            "dns_cost_s_per_time": a.get("cost_dns_s_per_time", float("nan")),
            "cost_ratio_vs_dns": a.get("cost_ratio_vs_dns", float("nan")),
            "target": a.get("target", ""),
        }
    return out


# ----------------------------------------------------------------------------- markdown
def _num(x, digits: int = 3) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(v):
        return "n/a"
    return f"{v:.{digits}g}"


def md_table(header, rows) -> str:
    lines = ["| " + " | ".join(str(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _csv_md(table, limit: int = 40) -> str:
    header, rows = table
    body = [[_num(c, 4) if _is_number(c) else c for c in r] for r in rows[:limit]]
    extra = f"\n\n({len(rows) - limit} more rows in the CSV)" if len(rows) > limit else ""
    return md_table(header, body) + extra


def _is_number(s) -> bool:
    try:
        float(s)
        return True
    except (TypeError, ValueError):
        return False


def build_summary(run: str, report_cfg: dict, results: Path) -> str:
    rows = read_metrics(results / "rollout" / "metrics.csv")
    fractions = report_cfg["times"]
    summ = costs(results)
    target = next((str(s.get("target")) for s in summ.values() if s.get("target")), "?")
    out = [f"# diffclosure report: run `{run}` (target {target})", ""]
    out += [
        "Every number below was computed by this pipeline run; the paper's numbers (Dong, Chen & "
        "Wu, J. Comput. Phys. 534 (2025) 114005, from the research code's notebook outputs) are "
        "shown beside them. Our runs are scaled down (grids, durations, training), so compare "
        "orders of magnitude and orderings, not digits.", "",
        *blowup_section(summ),
        *data_section(results),
        *training_section(results),
        *a_posteriori_section(rows, fractions, results, summ),
    ]
    out += ["Paper (64^2, single trajectory, D_Fro at t = 35 / 40 / 45 / 50 s):", ""]
    out += [md_table(["run"] + [f"t = {t:g} s" for t in PAPER["a_posteriori_times"]],
                     [[k] + [f"{v:.3f}" for v in vals]
                      for k, vals in PAPER["a_posteriori"].items()]), ""]
    out += [f"Reproduce: `{COMMANDS['a_posteriori']}` (then `rollout_metrics` and `report` rerun "
            "as dependants). Figures: [error](../rollout/error.png), "
            "[spectra](../rollout/spectra.png), [snapshots](../rollout/snapshots.png).", ""]

    out += les_section(results)
    out += cost_section(summ)
    out += a_priori_section(results)
    out += ["---", f"This file: `{COMMANDS['report']}`.", ""]
    return "\n".join(out)


def cost_section(summ: dict) -> list[str]:
    """Wall time per simulated time unit of each coupled run against the DNS and the paper."""
    out = ["## Cost", "",
           "Warm wall time per simulated time unit of each coupled run (closure included) and of "
           "the fine-grid DNS it stands in for, measured in the same job; ratio = coupled / DNS "
           "(below 1: the closure pays off). 'vs none' = slowdown against the coarse run "
           "without closure (the paper's 37x).", ""]
    none_cost = float(summ.get("none", {}).get("cost_s_per_time", float("nan")))
    body = []
    for name, s in sorted(summ.items()):
        c = float(s.get("cost_s_per_time", float("nan")))
        if s.get("blowup"):
            name = f"{name} (blew up at t = {_num(s.get('blowup_time'))}: cost of the part run)"
        body.append([name, _num(c), _num(s.get("dns_cost_s_per_time")),
                     _num(s.get("cost_ratio_vs_dns")), _num(c / none_cost if none_cost > 0
                                                            else float("nan"))])
    out += [md_table(["closure", "s / time unit", "DNS s / time unit", "ratio vs DNS",
                      "vs none"], body), ""]
    pc = PAPER["cost"]
    out += [f"Paper (one GPU, H closure, 64^2): 20,000 coupled steps took {pc['with_closure_s']:g}"
            f" s with the closure against {pc['without_closure_s']:g} s without: "
            f"{pc['with_closure_s'] / pc['simulated_time']:.3g} vs "
            f"{pc['without_closure_s'] / pc['simulated_time']:.3g} s per simulated second, "
            f"{pc['with_closure_s'] / pc['without_closure_s']:.0f}x slower.", "",
            f"Reproduce: `{COMMANDS['cost']}`.", ""]
    return out


def a_priori_section(results: Path) -> list[str]:
    """The sampler benchmark and resolution tables beside the paper's a-priori numbers."""
    out = ["## A-priori error of the sampled closure", "",
           "Per sampler, over sampling.ensemble samples per test condition: d_fro_mean = D_Fro "
           "of the ensemble-mean sample (flattering, as a posteriori), d_fro_member = each "
           "sample's own D_Fro, averaged; crps per grid point; spread_skill (1 when "
           "calibrated); rank_deviation and rank_outer of the rank histogram of the true term "
           "among the samples (0 and 1 when flat; rank_outer > 1: too little spread). "
           "Figures: [rank histograms](../sampling/rank_histogram.png), "
           "[spectra](../sampling/spectra.png) (dashed: the stochastic forcing's known "
           "share, sigma^2 kappa q_k / dt per mode).", ""]
    bench = read_csv_table(results / "sampling" / "benchmark.csv")
    out += [_csv_md(bench) if bench else "sampling/benchmark.csv not found (run "
            "sample_benchmark).", ""]
    res = read_csv_table(results / "sampling" / "resolution.csv")
    out += ["Resolution invariance (model trained at coarse.n, applied unchanged at finer "
            "grids):", "", _csv_md(res) if res else "sampling/resolution.csv not found.", ""]
    out += ["Paper (D_Fro, 100 test samples, 10-step sampler, trained at 64^2):", ""]
    out += [md_table(["target, encoder"] + [f"{m}^2" for m in PAPER["resolutions"]],
                     [[k] + [f"{v:.3f}" for v in vals] for k, vals in PAPER["a_priori"].items()]),
            "", f"Reproduce: `{COMMANDS['a_priori']}`.", ""]
    return out


def data_section(results: Path) -> list[str]:
    """How stochastic the target is and how steady the recorded window (dataset/stats.json)."""
    path = results / "dataset" / "stats.json"
    if not path.exists():
        return ["## The data", "", "dataset/stats.json not found (run the dataset stage).", ""]
    try:
        stats = json.loads(read_table_text(path))
    except FileNotFoundError:
        return ["## The data", "", "dataset/stats.json not found (run the dataset stage).", ""]
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _damaged(path, f"not valid JSON ({exc})") from None
    out = ["## The data", ""]
    noise = stats.get("stochastic_forcing") or {}
    if noise.get("share") is not None:
        out += [f"Stochastic share of the target: the stochastic forcing's part has std "
                f"{noise['noise_std']:.3g} against the target's {noise['target_std']:.3g}, a "
                f"share of **{noise['share']:.3f}** (std ratio; from the noise's known law)."]
    win = stats.get("window") or {}
    if win:
        out += [f"Training window t = {win['start']:g} to {win['end']:g}: the trajectory-mean "
                f"energy drifts by **{win['energy_drift']:.1%}** and the enstrophy by "
                f"**{win['enstrophy_drift']:.1%}** across it ((max - min) / mean, at "
                f"{win['grid']}^2)."]
    spin = win.get("spinup")
    if spin:
        t, e, z = spin["time"], spin["energy"], spin["enstrophy"]
        picks = sorted({round(i * (len(t) - 1) / 6) for i in range(7)})
        out += ["", f"Spin-up of the DNS ({spin['grid']}^2, mean over all trajectories): over "
                f"its second half the energy drifts by **{spin['energy_drift_second_half']:.1%}**"
                f" and the enstrophy by **{spin['enstrophy_drift_second_half']:.1%}**.", "",
                md_table(["t", *(f"{t[i]:g}" for i in picks)],
                         [["energy", *(f"{e[i]:.4g}" for i in picks)],
                          ["enstrophy", *(f"{z[i]:.4g}" for i in picks)]])]
    return out + [""]


def training_section(results: Path, limit: int = 12) -> list[str]:
    """Where and why training stopped, and the learning curve (model/history.csv and the
    outcome its sidecar records)."""
    path = results / "model" / "history.csv"
    table = read_csv_table(path)
    out = ["## Training", ""]
    if not table:
        return out + ["model/history.csv not found (run train).", ""]
    header, body = table
    rows = [dict(zip(header, r, strict=False)) for r in body]
    outcome = read_sidecar_meta(path).get("outcome") or {}
    if outcome:
        from diffclosure.model.stopping import METRICS

        metric = outcome.get("best_metric", "val_loss")
        value = outcome.get("best_value", outcome["best_val_loss"])
        out += [f"Stopped after epoch **{outcome['epochs']}** of at most {outcome['max_epochs']}"
                f" ({outcome['stop_reason']}). The model kept is the EMA weights of epoch "
                f"**{outcome['best_epoch']}**, the lowest "
                f"{METRICS.get(metric, metric).removeprefix('the ')} ({_num(value, 4)}). "
                "Figure: [learning curves](../model/curves.png).", ""]
    monitored = [r for r in rows if _is_number(r.get("apriori_dfro_mean", ""))]
    shown = monitored or rows
    step = max(1, math.ceil(len(shown) / limit))
    picked = shown[::step] + ([shown[-1]] if (len(shown) - 1) % step else [])
    cols = [c for c in ("epoch", "train_loss", "val_loss", "lr", "apriori_dfro_mean",
                        "apriori_dfro_member", "apriori_corr", "apriori_spread_skill")
            if c in header]
    out += ["Learning curve (validation loss: DSM loss of the EMA weights on the validation "
            "split; apriori_*: train.monitor's samples on validation states, D_Fro of the "
            "ensemble mean and per member, correlation with the truth, spread/skill):", "",
            md_table(cols, [[_num(r[c], 4) for c in cols] for r in picked]), ""]
    return out


def _blown(summ: dict, closure: str, t: float) -> str | None:
    """"blew up at t = ..." for a closure's cell at a time after its blow-up, else None."""
    s = summ.get(closure) or {}
    blow = float(s.get("blowup_time", math.nan)) if s.get("blowup") else math.nan
    if s.get("blowup") and (math.isnan(blow) or float(t) >= blow - 1e-9):
        return f"blew up at t = {_num(blow)}" if math.isfinite(blow) else "blew up"
    return None


def blowup_section(summ: dict) -> list[str]:
    """A warning at the top of the report for every closure that blew up, with its cause."""
    lines = [f"- **{name}** {s.get('blowup_cause') or 'blew up'}."
             for name, s in sorted(summ.items()) if s.get("blowup")]
    if not lines:
        return []
    return ["## Warning: blow-ups", "",
            "These coupled runs blew up; their numbers after the blow-up are missing, marked "
            "\"blew up at t = ...\" below, and their cost is that of the part they ran "
            "(rollout/summary.csv, column blowup_cause):", "", *lines, ""]


def a_posteriori_section(rows: list[dict], fractions, results: Path,
                         summ: dict | None = None) -> list[str]:
    """Per-member D_Fro (the headline), the paper's definition, the ensemble mean's, and the
    probabilistic scores of rollout/probabilistic.csv, as markdown lines; cells after a
    closure's blow-up (`summ`, costs()) say so."""
    summ = summ or {}
    members, chosen = member_d_fro_at(rows, fractions)
    header = ["closure"] + [f"t = {_num(t)}" for t in chosen]
    out = [
        "## A-posteriori error D_Fro = ||w - w_ref|| / ||w_ref||", "",
        f"At fractions {', '.join(_num(f) for f in fractions)} of the rollout (the paper: 35, "
        "40, 45, 50 s of a 30 -> 50 s rollout, i.e. quarters). Headline: each ensemble member's "
        "own D_Fro against the reference, **median [min, max] over members and initial "
        "states** (a deterministic closure has one member: its value). `measurements` is the "
        "closure taken to be the encoded sparse measurements the learned model is conditioned "
        "on, no model: the learned closure's gain over it is what the model adds.", "",
        md_table(header, [[name] + [_blown(summ, name, t) or f"{_num(m)} [{_num(lo)}, {_num(hi)}]"
                                    for t, (m, lo, hi) in zip(chosen, v, strict=True)]
                          for name, v in sorted(members.items())]), "",
        "The paper's definition: one sample (member 0), normalised by the generated field, "
        "||w - w_ref|| / ||w||; mean over initial states (the paper has one trajectory):", "",
    ]
    paper, _ = paper_d_fro_at(rows, fractions)
    mean, _ = d_fro_at(rows, fractions)
    def cells(table):
        return [[name] + [_blown(summ, name, t) or _num(x) for t, x in zip(chosen, v,
                                                                           strict=True)]
                for name, v in sorted(table.items())]

    out += [md_table(header, cells(paper)),
            "", "D_Fro of the ensemble-mean field (averaging members smooths the field, which "
            "flatters it; mean over initial states):", "",
            md_table(header, cells(mean)), ""]
    prob = read_csv_table(results / "rollout" / "probabilistic.csv")
    out += ["Probabilistic scores at the same times, pooled over grid points and initial states "
            "(rollout/probabilistic.csv): crps per grid point (for one member: its mean absolute "
            "error), crps_fair (the member pairs over M(M-1): unbiased for a small ensemble), "
            "energy_score (fair, of each whole field, RMS-normalised), spread/skill = ensemble "
            "spread over the RMSE of the ensemble mean (1 when "
            "calibrated, below 1 too little spread), rank_deviation = rms relative deviation of "
            "the rank histogram from flat (0 = flat), rank_outer = the outer ranks' share over "
            "their flat share (> 1: a U, too little spread). Figure: "
            "[rank histograms](../rollout/rank_histogram.png).", "",
            _csv_md(prob) if prob else "rollout/probabilistic.csv not found (rerun "
            "rollout_metrics).", "", *calibration_lines(results)]
    return out


def calibration_lines(results: Path) -> list[str]:
    """The learned closure's noise settings as its rollout file records them (tau and
    inflation, and what measured them a priori), or nothing."""
    from diffclosure.rollout import registry

    path = results / "rollout" / f"{registry.learned()}.h5"
    if not path.exists():
        return []
    with h5io.open_input(path) as fh:
        a = h5io.read_attrs(fh)
    if "rollout_tau" not in a:
        return []
    measured = json.loads(a["error_time"]) if a.get("error_time") else {}
    where = (f" (measured a priori on {measured.get('split', 'the validation split')}: "
             f"the model's error decorrelates over {_num(measured.get('tau'))} time units, its "
             f"sampler's spread/skill is {_num(measured.get('spread_skill'))})"
             if measured else "")
    post = measured.get("posterior")
    after = (f" A coupled run of the learned closure from {len(post['states'])} validation "
             f"states, widened {_num(post['inflation_prior'])}x (the a-priori factor), had "
             f"spread/skill {_num(post['spread_skill_mean'])} (geometric mean over its "
             f"records), so the rollout widens {_num(post['inflation'])}x."
             if post else "")
    shells = a.get("rollout_tau_shells")
    over = (f"tau = {_num(a['rollout_tau'])} time units" if shells is None else
            f"a time per wavenumber shell, the memory of the model's error at that scale "
            f"({_shell_taus(shells)})")
    return [f"The learned closure's random inputs are correlated over {over} across samplings "
            f"and its members' deviations widened {_num(a.get('rollout_inflation', 1.0))}x"
            f"{where}.{after}", ""]


def _shell_taus(shells) -> str:
    """'|k| = 1: 0.27, 2: 0.19, 4: 0.13, 8: 0.085, 16: 0.035' for the powers of two present."""
    taus = list(np.ravel(shells))
    picks = [k for k in (1, 2, 4, 8, 16, 32, 64, 128) if k < len(taus)]
    return "|k| = " + ", ".join(f"{k}: {_num(taus[k])}" for k in picks)


# les.csv columns ranked (lower is better; stable_time: higher), as shown in the LES table.
LES_RANKED = {"energy_spectrum_error": "E(k) error", "enstrophy_spectrum_error": "Z(k) error",
              "enstrophy_error": "enstrophy error", "pdf_hellinger": "PDF Hellinger",
              "stable_time": "stable until", "cost_s_per_time": "s / time unit"}
# The scores with bootstrap intervals (<col>_lo, <col>_hi in les.csv) and similarities.
LES_INTERVALS = ("energy_spectrum_error", "enstrophy_spectrum_error", "enstrophy_error",
                 "pdf_hellinger")


def _value(r: dict, col: str) -> float:
    return float(r[col]) if _is_number(r.get(col, "")) else math.nan


def _interval(r: dict, col: str) -> tuple[float, float]:
    """The score's bootstrap interval, or the point itself (a score measured once: a tie needs
    equal values) when les.csv has none."""
    lo, hi = _value(r, f"{col}_lo"), _value(r, f"{col}_hi")
    if math.isnan(lo) or math.isnan(hi):
        v = _value(r, col)
        return v, v
    return lo, hi


def is_oracle(closure: str) -> bool:
    from diffclosure.rollout import registry

    return closure in registry.REGISTRY and registry.lookup(closure).oracle


def les_ranking(rows: list[dict]) -> list[tuple[float, dict]]:
    """(mean rank over LES_RANKED, row), best first, of the closures a simulation can run (the
    oracle is left out). Per column a closure's rank is 1 + the number of closures better beyond
    the bootstrap intervals (metrics.bootstrap.ranks_with_ties): overlapping intervals tie, and
    a missing value (nan) ranks last."""
    from diffclosure.metrics.bootstrap import ranks_with_ties

    rows = [r for r in rows if not is_oracle(r["closure"])]
    ranks = {id(r): [] for r in rows}
    for col in LES_RANKED:
        higher = col == "stable_time"
        for r, rank in zip(rows, ranks_with_ties([_interval(r, col) for r in rows], higher),
                           strict=True):
            ranks[id(r)].append(rank)
    return sorted(((float(np.mean(ranks[id(r)])), r) for r in rows), key=lambda x: x[0])


def _with_interval(r: dict, col: str) -> str:
    lo, hi = _value(r, f"{col}_lo"), _value(r, f"{col}_hi")
    if math.isnan(lo) or math.isnan(hi):
        return _num(r.get(col, "nan"))
    return f"{_num(r[col])} [{_num(lo, 2)}, {_num(hi, 2)}]"


def les_section(results: Path) -> list[str]:
    """The LES ranking of rollout/les.csv (sgs runs only; nothing when it is absent)."""
    table = read_csv_table(results / "rollout" / "les.csv")
    if not table:
        return []
    header, body = table
    rows = [dict(zip(header, r, strict=True)) for r in body]
    ranked = les_ranking(rows)
    oracles = [r for r in rows if is_oracle(r["closure"])]
    short = rows[0]["short_time"] if rows else "?"
    cols = ["rank", "closure", *LES_RANKED.values(), "PDF W1", f"D_Fro at t = {_num(short)}",
            "mean rank"]
    table_rows = [[i + 1, r["closure"],
                   *(_with_interval(r, c) if c in LES_INTERVALS else _num(r[c])
                     for c in LES_RANKED),
                   _num(r["pdf_wasserstein1"]), _num(r["short_d_fro_member_median"]),
                   _num(mean_rank)] for i, (mean_rank, r) in enumerate(ranked)]
    table_rows += [["-", f"{r['closure']} (oracle, not ranked)",
                    *(_with_interval(r, c) if c in LES_INTERVALS else _num(r[c])
                      for c in LES_RANKED),
                    _num(r["pdf_wasserstein1"]), _num(r["short_d_fro_member_median"]), "-"]
                   for r in oracles]
    out = ["## LES: every closure against the filtered DNS", "",
           "A posteriori, over every initial state, member and record (rollout/les.csv): "
           "E(k) and Z(k) error = RMS over shells of log(spectrum / filtered DNS's) of the "
           "time-mean energy and enstrophy spectra; enstrophy error = mean relative error of the "
           "members' mean enstrophy against time; PDF Hellinger and W1 = distances of the "
           "one-point vorticity PDF to the filtered DNS's; stable until = the blow-up time, or "
           "the rollout's end; D_Fro = median per-member D_Fro at the first report time. In "
           "brackets the 95% bootstrap interval, over initial states and then members. "
           "Ranked by the mean of the ranks in the six columns before W1, where a closure's "
           "rank is 1 + the number of closures better beyond the intervals (overlapping "
           "intervals tie). `true` is the filtered DNS's Pi held over each record interval: "
           "an oracle no simulation can run, shown but not ranked. "
           "Figure: [spectra](../rollout/les_spectra.png).", "",
           md_table(cols, table_rows), ""]
    return out + les_similarity_lines(rows) + les_a_priori_lines(results)


def les_similarity_lines(rows: list[dict]) -> list[str]:
    """The similarity table, 1 - D(closure) / D(none) per score (the pyqg benchmark's)."""
    if not any(f"similarity_{c}" in r for r in rows for c in LES_INTERVALS):
        return []
    body = [[r["closure"], *(_with_interval(r, f"similarity_{c}") for c in LES_INTERVALS)]
            for r in rows]
    return ["Similarity to the filtered DNS, 1 - D(closure) / D(no closure), per score (1 = "
            "the filtered DNS's statistics, 0 = no better than no closure; as in the pyqg "
            "benchmark of Ross et al., JAMES 2023), with its 95% interval paired state by "
            "state:", "",
            md_table(["closure", *(LES_RANKED[c] for c in LES_INTERVALS)], body), ""]


def les_a_priori_lines(results: Path) -> list[str]:
    """The a-priori LES table of sampling/les_a_priori.csv, as markdown lines."""
    table = read_csv_table(results / "sampling" / "les_a_priori.csv")
    if not table:
        return ["A priori: sampling/les_a_priori.csv not found (rerun sample_benchmark).", ""]
    return ["A priori, on the held-out filtered states of the sampler benchmark "
            "(sampling/les_a_priori.csv): correlation of the modelled Pi with the true Pi; "
            "energy and enstrophy transfer to the subgrid as a multiple of the true transfer "
            "(1 = right, 0 = none, < 0 = the wrong way); the share of the enstrophy transfer "
            "that goes back to the resolved scales, summed over wavenumber shells (backscatter "
            "per shell, not per point), of the model and of the truth; the RMS log error of "
            "Pi's power spectrum. The learned closure per member (as a rollout uses it) and as "
            "its ensemble mean. Figure: [Pi spectra and transfer](../sampling/les_pi_spectra.png).",
            "", _csv_md(table), ""]


def _animation(results: Path, outdir: Path, report_cfg: dict) -> Path | None:
    from diffclosure.plots.animation import write_animation
    from diffclosure.rollout import registry

    learned_name = registry.learned()
    files = {name: results / "rollout" / f"{name}.h5" for name in (learned_name, "none")}
    missing = [n for n, p in files.items() if not p.exists()]
    if missing:
        log.info("animation skipped: no %s rollout in %s", " or ".join(missing),
                 results / "rollout")
        return None
    with h5io.open_input(files[learned_name], required=("vorticity", "reference", "time")) as fh:
        learned, reference = fh["vorticity"][0, 0], fh["reference"][0]
        times = fh["time"][()]
        length = float(h5io.read_attrs(fh).get("dns.length", 1.0))
    with h5io.open_input(files["none"], required=("vorticity",)) as fh:
        dropped = fh["vorticity"][0, 0]
    n = paired_records(reference[None])  # a run past the DNS's window has no reference there
    panels = {"reference": reference[:n], "learned closure": learned[:n],
              "no closure": dropped[:n]}
    return write_animation(outdir / "animation.mp4", panels, times[:n], report_cfg["fps"],
                           report_cfg["max_frames"], length)


def blowup_warnings(results) -> list[str]:
    """One console line per closure that blew up (the Snakefile prints them when the run
    ends); none when rollout/summary.json is absent or unreadable."""
    try:
        summ = costs(Path(results))
    except (UserFacingError, OSError, ValueError):  # the stages name a damaged file
        return []
    return [f"WARNING: closure {name} {s.get('blowup_cause') or 'blew up'} (see "
            f"{Path(results) / 'report' / 'summary.md'})"
            for name, s in sorted(summ.items()) if s.get("blowup")]


_LINK = re.compile(r"\[([^\]]+)\]\(\.\./([^)]+)\)")


def unlink_missing(text: str, results: Path) -> str:
    """The summary with every link to a file under `results` that does not exist replaced by
    its text and a note: the report never points at nothing."""
    def keep(m):
        return m.group(0) if (results / m.group(2)).exists() else (
            f"{m.group(1)} (../{m.group(2)} is missing: rerun the stage that makes it)")

    return _LINK.sub(keep, text)


def main(args) -> int:
    cfg = cfgmod.load(args.config, sections=["run", "report"])
    results, outdir = Path(args.results), Path(args.outdir)
    text = unlink_missing(build_summary(cfg["run"], cfg["report"], results), results)
    text += footer(provenance(cfg, "report")) + "\n"
    atomic.write_text_atomic(outdir / "summary.md", text)
    log.info("wrote %s", outdir / "summary.md")
    if cfg["report"]["animation"]:
        path = _animation(results, outdir, cfg["report"])
        if path is not None:
            log.info("wrote %s", path)
    return 0
