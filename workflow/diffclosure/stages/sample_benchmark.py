"""Sampler benchmark: accuracy against cost of every sampler and step budget, and resolution
invariance of the paper's 10-step sampler.

    python -m diffclosure sample-benchmark --config CFG --data DATASET_DIR --model score.pt
        --outdir DIR [--threads T]

Reads DATASET_DIR/test.h5 (training grid) and DATASET_DIR/test-<m>.h5, draws
sampling.ensemble samples for sampling.test_samples conditions spread evenly over the test set
and writes benchmark.csv, resolution.csv (each with its provenance sidecar
<name>.csv.provenance.json), pareto.png, samples.png, spectra.png (with the stochastic
forcing's known spectrum for the G and H targets when the config has a dns section) and
rank_histogram.png to DIR.
benchmark.csv, per sampler: d_fro_mean (D_Fro of the ensemble-mean sample), d_fro_member (each
member's D_Fro, averaged), crps (per point), spread_skill, rank_deviation and rank_outer (the
rank histogram of the truth among the members: rms deviation from flat; outer ranks over
their flat share, > 1 a U: too little spread), all over sampling.ensemble members per
condition (metrics.probabilistic).
Same config and seed, same samples (bit for bit on the CPU): every sampler starts from a
generator seeded with sampling.seed, so all samplers also see the same starting noise.
"""

from __future__ import annotations

import logging
import re
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from diffclosure import config as cfgmod
from diffclosure.data import h5io
from diffclosure.data.datasets import check_layout, pick_indices
from diffclosure.data.stats import check_digest, load_stats
from diffclosure.devices import resolve_device
from diffclosure.errors import UserFacingError
from diffclosure.metrics.fields import d_fro, mse
from diffclosure.metrics.probabilistic import crps, rank_flatness, rank_histogram, spread_skill
from diffclosure.metrics.spectra import noise_spectrum, power_spectrum, spectrum_error
from diffclosure.plots.rollout import rank_histogram_figure
from diffclosure.plots.sampling import (
    les_pi_spectra_figure,
    pareto_figure,
    samples_figure,
    spectra_figure,
)
from diffclosure.progress import progress
from diffclosure.provenance import csv_text, write_table
from diffclosure.rollout.les_a_priori import LES_A_PRIORI_COLUMNS, les_a_priori
from diffclosure.sampling.closure_sampler import ClosureSampler, bind_onestep
from diffclosure.sampling.paper import paper_sampler
from diffclosure.sampling.samplers import Sampler, make_sampler

log = logging.getLogger(__name__)

# Always benchmarked: the paper's baseline and its accelerated sampler.
REFERENCE = {"name": "em", "steps": 1000, "schedule": "uniform", "t_max": 1.0, "t_min": 1e-3,
             "start": "zero"}
# The paper's times on our noise-level Karras grid, from a zero mean: the row that shows what a
# truncated start at t = 0.1 does to normalised data (the exact paper sampler is paper_sampler()).
KARRAS_EM_ZERO = {"name": "em", "steps": 10, "schedule": "karras", "t_max": 0.1, "t_min": 1e-3,
                  "start": "zero"}
CHEAP_NFE = 10  # "cheap" samplers for the resolution table: at most this many score calls

COLUMNS = [
    "name", "start", "steps", "schedule", "t_max", "t_min", "nfe", "seconds_per_sample",
    "d_fro_mean", "d_fro_member", "mse", "crps", "spread_skill", "rank_deviation", "rank_outer",
    "spectrum_error", "d_fro_rel_reference",
]
RES_COLUMNS = ["sampler", "n", "nfe", "d_fro_mean", "d_fro_member", "crps"]


class BenchmarkInputError(UserFacingError):
    """The dataset folder or the model does not fit the benchmark."""


# Seconds of repeated timing per sampler beyond which no further repeat is run.
TIMING_BUDGET_S = 10.0


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="dataset folder with test.h5 and test-<m>.h5")
    parser.add_argument("--model", required=True, help="score model file (score.pt)")
    parser.add_argument("--onestep", default=None,
                        help="one-step generator (onestep.pt of the distill stage); needed when"
                             " sampling.samplers names the onestep sampler")
    parser.add_argument("--outdir", required=True, help="output folder")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch")


def load_model(path, device):
    """The trained network and its settings (indirection so tests can substitute a model)."""
    from diffclosure.model.checkpoint import load_model as _load

    return _load(path, device)


def onestep_sampler(path, model_path, settings: dict, device, samp: dict) -> ClosureSampler:
    """The one-step generator behind a ClosureSampler, checked against the score model."""
    from diffclosure.sampling.distill import load_onestep

    net, one = load_onestep(path, device)
    if one["stats"] != settings["stats"] or list(one["conditions"]) != list(
            settings["conditions"]):
        raise BenchmarkInputError(
            f"{path}: distilled from a model of other data than {model_path} (its stats or"
            " conditions differ); rerun the distill stage (snakemake --cores all --forcerun"
            " distill)")
    return ClosureSampler(net, one, device, autocast=samp["bf16"])


def test_target(data_dir) -> str:
    """The closure target the test set holds (its attributes)."""
    with h5io.open_input(Path(data_dir) / "test.h5") as fh:
        attrs = h5io.read_attrs(fh)
    return str(attrs.get("target", attrs.get("coarse.target")))


def reference_entry(steps: int = 1000) -> dict:
    """The always-run reference sampler with `steps` steps (sampling.reference_steps)."""
    return {**REFERENCE, "steps": int(steps)}


def sampler_list(entries: list[dict], paper: dict | None = None,
                 reference_steps: int = 1000) -> list[Sampler]:
    """The configured samplers plus the references (if absent), without duplicates."""
    samplers = [make_sampler(e, f"sampling.samplers[{i}]") for i, e in enumerate(entries)]
    for ref in (reference_entry(reference_steps), KARRAS_EM_ZERO, *([paper] if paper else [])):
        s = make_sampler(ref)
        if s not in samplers:
            samplers.append(s)
    unique = []
    for s in samplers:
        if s not in unique:
            unique.append(s)
    return unique


def read_test_set(path: Path, conditions: list[str], count: int) -> dict:
    """target and condition fields of the chosen records, float32 (k, n, n) each."""
    fh = h5io.open_input(path, required=("target", *conditions))
    try:
        shape = check_layout(fh, path, conditions)
        n_time = shape[1]
        idx = pick_indices(shape[0] * n_time, count)
        out = {}
        for name in ("target", *conditions):
            ds = fh[name]
            out[name] = np.stack([ds[i // n_time, i % n_time] for i in idx]).astype(np.float32)
        out["index"] = idx
        return out
    finally:
        fh.close()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def draw(cs: ClosureSampler, sampler: Sampler, data: dict, ensemble: int, seed: int,
         chunk: int) -> tuple[np.ndarray, int]:
    """Samples (k, M, n, n) float32 for every condition in `data`, and the NFE per sample."""
    gen = torch.Generator(device=cs.device).manual_seed(seed)
    k = data["target"].shape[0]
    parts, nfe = [], 0
    for lo in range(0, k, chunk):
        sl = slice(lo, lo + chunk)
        kw = {c: data[c][sl] for c in cs.conditions}
        out, nfe = cs.sample(sampler, kw.pop("vorticity"), **kw, ensemble=ensemble,
                             generator=gen, return_nfe=True)
        parts.append(out.float().cpu().numpy())
    return np.concatenate(parts), nfe


def score_samples(samples: np.ndarray, truth: np.ndarray) -> dict:
    """The accuracy columns of one row (samples (k, M, n, n) against truth (k, n, n)), and the
    rank frequencies of the truth among the members (None for one member)."""
    mean = samples.mean(axis=1)
    m = samples.shape[1]
    _, p_s = power_spectrum(samples)
    _, p_t = power_spectrum(truth)
    counts = rank_histogram(samples, truth, axis=1) if m > 1 else np.zeros(1)
    flat = rank_flatness(counts)
    return {
        "rank_deviation": flat.deviation, "rank_outer": flat.outer,
        "rank_frequencies": counts / counts.sum() if m > 1 else None,
        "d_fro_mean": float(d_fro(mean, truth).mean()),
        "d_fro_member": float(d_fro(samples, truth[:, None]).mean()),
        "mse": float(mse(mean, truth).mean()),
        "crps": float(crps(samples, truth, axis=1).mean()),
        "spread_skill": spread_skill(samples, truth, axis=1).ratio if m > 1 else float("nan"),
        "spectrum_error": spectrum_error(p_s, p_t),
    }


def format_table(rows: list[dict]) -> str:
    head = (f"{'sampler':<34}{'NFE':>6}{'s/sample':>11}{'D_Fro mean':>12}{'member':>9}"
            f"{'CRPS':>10}{'spr/skill':>10}{'spec err':>10}{'vs ref':>8}")
    lines = [head]
    for r in rows:
        label = f"{r['name']}-{r['steps']}-{r['schedule']}-t{r['t_max']:g}"
        if r["start"] not in ("", "auto"):
            label += f"-{r['start']}"
        lines.append(
            f"{label:<34}{r['nfe']:>6d}{r['seconds_per_sample']:>11.3g}{r['d_fro_mean']:>12.4f}"
            f"{r['d_fro_member']:>9.4f}{r['crps']:>10.3g}{r['spread_skill']:>10.3f}"
            f"{r['spectrum_error']:>10.3f}{r['d_fro_rel_reference']:>8.3f}"
        )
    return "\n".join(lines)


def _resolution_files(data_dir: Path) -> list[tuple[int, Path]]:
    """(m, DATA_DIR/test-<m>.h5) for the test resolutions stats.json describes (its digests):
    a file left by an earlier config's coarse.test_resolutions is not one of them."""
    described = (load_stats(data_dir).get("digests") or {}).keys()
    found = []
    for p in data_dir.glob("test-*.h5"):
        m = re.fullmatch(r"test-(\d+)\.h5", p.name)
        if m and p.name in described:
            found.append((int(m.group(1)), p))
    return sorted(found)


def _check_inputs(args, cfg: dict, data_dir: Path, whole: dict) -> tuple[dict, list[Sampler],
                                                                         str]:
    """The paper's sampler entry (sampling/paper.py, for the test set's target), the samplers
    to run and the target, or the input error that stops the run before any work."""
    samp = cfg["sampling"]
    sampler_list(samp["samplers"])  # config errors before any work
    if not (data_dir / "test.h5").exists():
        raise BenchmarkInputError(
            f"{data_dir / 'test.h5'}: test set not found; pass --data the dataset folder "
            "(run the dataset stage first)"
        )
    stats = load_stats(data_dir)  # checksummed; the test files must be those it describes
    for path in [data_dir / "test.h5", *(p for _, p in _resolution_files(data_dir))]:
        check_digest(stats, path)
    target = test_target(data_dir)
    missing = [s for s in ("coarse", "dns") if s not in whole]
    if target == "sgs" and missing:
        raise BenchmarkInputError(
            f"target sgs: the a-priori LES scores need the config's {' and '.join(missing)} "
            "section(s); pass the whole config to --config")
    paper_cfg = paper_sampler()
    samplers = sampler_list(samp["samplers"], paper_cfg, samp["reference_steps"])
    if any(s.name == "onestep" for s in samplers) and not args.onestep:
        raise BenchmarkInputError(
            "sampling.samplers names the onestep sampler: pass --onestep with the onestep.pt of"
            " the distill stage (or drop the entry)")
    if args.threads < 1:
        raise BenchmarkInputError(f"--threads: need at least 1, got {args.threads}")
    return paper_cfg, samplers, target


def _load_samplers(args, cfg: dict, device) -> tuple[dict, dict]:
    """The closure samplers by model ("score", and "onestep" with --onestep) and the score
    model's settings."""
    samp = cfg["sampling"]
    net, settings = load_model(args.model, device)
    if dict(settings["sde"]) != dict(cfg["sde"]):
        log.warning("sde: the model was trained with %s, the config says %s; using the model's",
                    settings["sde"], cfg["sde"])
    models = {"score": ClosureSampler(net, settings, device, autocast=samp["bf16"])}
    if args.onestep:
        models["onestep"] = onestep_sampler(args.onestep, args.model, settings, device, samp)
    return models, settings


def _timed_draw(cs: ClosureSampler, s: Sampler, data: dict, samp: dict, chunk: int,
                device) -> tuple[np.ndarray, int, list[float]]:
    """The samples of one sampler, its NFE and the wall time of each repeat."""
    times = []
    for _ in range(samp["repeats"]):
        # Repeats sharpen the timing of cheap samplers; a slow one (the 1000-step reference)
        # is timed once, since its accuracy run already took long enough to be measured.
        if times and sum(times) > TIMING_BUDGET_S:
            break
        _sync(device)
        t0 = time.perf_counter()
        samples, nfe = draw(cs, s, data, samp["ensemble"], samp["seed"], chunk)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return samples, nfe, times


def _benchmark_rows(models: dict, samplers: list[Sampler], data: dict, samp: dict, chunk: int,
                    device) -> tuple[list[dict], dict]:
    """One benchmark.csv row per sampler (and the measurements-only baseline), and each
    sampler's samples."""
    k, ensemble = data["target"].shape[0], samp["ensemble"]
    rows, drawn = [], {}
    for s in progress(samplers, desc="samplers", unit="sampler"):
        cs = _model_for(models, s)
        samples, nfe, times = _timed_draw(cs, s, data, samp, chunk, device)
        drawn[s] = samples
        run = bind_onestep(s, cs.settings)  # onestep: the distilled start time and mean
        rows.append({
            "name": s.name, "start": run.start, "steps": run.steps, "schedule": s.schedule,
            "t_max": run.t_max, "t_min": s.t_min, "nfe": nfe,
            "seconds_per_sample": statistics.median(times) / (k * ensemble),
            **score_samples(samples, data["target"]),
        })
        log.info("%s: NFE %d, D_Fro %.4f", s.label, nfe, rows[-1]["d_fro_mean"])
    if "measurements" in data:
        # Baseline without the model: the encoded sparse measurements themselves (0 NFE).
        rows.append({"name": "measurements-only", "start": "", "steps": 0, "schedule": "",
                     "t_max": 0.0, "t_min": 0.0, "nfe": 0, "seconds_per_sample": 0.0,
                     **score_samples(data["measurements"][:, None], data["target"])})
        log.info("measurements only (no model): D_Fro %.4f", rows[-1]["d_fro_mean"])
    ref = rows[samplers.index(make_sampler(reference_entry(samp["reference_steps"])))]["d_fro_mean"]
    for r in rows:
        r["d_fro_rel_reference"] = r["d_fro_mean"] / ref if ref > 0 else float("nan")
    return rows, drawn


def _model_for(models: dict, s: Sampler) -> ClosureSampler:
    return models["onestep"] if s.name == "onestep" else models["score"]


def _resolution_rows(models: dict, chosen: list[Sampler], res_sets: list, samp: dict,
                     max_pixels: int) -> list[dict]:
    """One resolution.csv row per test grid and chosen sampler."""
    ensemble, seed = samp["ensemble"], samp["seed"]
    res_rows = []
    for m, res_data in res_sets:
        res_chunk = max(1, max_pixels // (ensemble * m * m))
        for s in chosen:
            samples, nfe = draw(_model_for(models, s), s, res_data, ensemble, seed, res_chunk)
            sc = score_samples(samples, res_data["target"])
            res_rows.append({"sampler": s.label, "n": m, "nfe": nfe, **sc})
            log.info("resolution %d^2, %s: D_Fro %.4f (members %.4f)", m, s.label,
                     sc["d_fro_mean"], sc["d_fro_member"])
    return res_rows


def _cheap_choice(rows: list[dict], samplers: list[Sampler], paper: Sampler) -> list[Sampler]:
    """The paper's sampler and the best one with at most CHEAP_NFE calls."""
    cheap = [(r["d_fro_mean"], i) for i, r in enumerate(rows[: len(samplers)])
             if r["nfe"] <= CHEAP_NFE and samplers[i] != paper]
    return [paper] + ([samplers[min(cheap)[1]]] if cheap else [])


def _draw_figures(outdir: Path, rows: list[dict], drawn: dict, samplers: list[Sampler],
                  shown: Sampler, data: dict, data_dir: Path, whole: dict) -> None:
    """pareto.png, samples.png, spectra.png and rank_histogram.png."""
    n = data["target"].shape[-1]
    pareto_figure([r for r in rows if r["nfe"] > 0], outdir / "pareto.png")
    samples_figure(data["vorticity"], data["target"], drawn[shown], outdir / "samples.png",
                   measurements=data.get("measurements"), title=f"{shown.label} samples")
    kk, p_truth = power_spectrum(data["target"])
    spectra = {s.label: power_spectrum(drawn[s])[1].reshape(-1, kk.size).mean(0)
               for s in samplers}
    spectra_figure(kk, p_truth.mean(0), spectra, outdir / "spectra.png", n,
                   noise=noise_line(data_dir, whole["dns"], n) if "dns" in whole else None)
    rank_histogram_figure(outdir / "rank_histogram.png", {"truth among the samples": {
        s.label: r["rank_frequencies"] for s, r in zip(samplers, rows, strict=False)
        if r["rank_frequencies"] is not None}}, what="true term")


def main(args) -> int:
    whole = cfgmod.load(args.config)
    # dns is optional: it only adds the noise's known spectrum to spectra.png.
    cfg = cfgmod.load(whole, sections=["device", "sde", "sampling"])
    samp = cfg["sampling"]
    data_dir, outdir = Path(args.data), Path(args.outdir)
    paper_cfg, samplers, target = _check_inputs(args, cfg, data_dir, whole)
    torch.set_num_threads(args.threads)
    device = resolve_device(cfg["device"])
    models, settings = _load_samplers(args, cfg, device)
    cs = models["score"]
    ensemble, seed = samp["ensemble"], samp["seed"]
    data = read_test_set(data_dir / "test.h5", cs.conditions, samp["test_samples"])
    k, n = data["target"].shape[0], data["target"].shape[-1]
    # Every input read before the compute: a damaged file fails now, not after the benchmark.
    res_sets = [(m, read_test_set(path, cs.conditions, samp["test_samples"]))
                for m, path in _resolution_files(data_dir) or [(n, data_dir / "test.h5")]]
    if "n" in settings and int(settings["n"]) != n:
        log.warning("test.h5 is at %d^2 but the model was trained at %d^2", n, settings["n"])
    max_pixels = 2**24 if device.type == "cuda" else 2**21
    chunk = max(1, max_pixels // (ensemble * n * n))
    log.info("%d conditions x %d members at %d^2 on %s; %d samplers", k, ensemble, n, device,
             len(samplers))

    # Warm-up (kernels, FFT plans), untimed.
    draw(cs, make_sampler({"name": "em", "steps": 1, "t_max": 0.1}),
         {c: v[:1] for c, v in data.items() if c != "index"}, 1, seed, chunk)
    rows, drawn = _benchmark_rows(models, samplers, data, samp, chunk, device)
    # What determined the tables: these sections and the model (its own config hash).
    prov_cfg = {**cfg, "model": str(settings.get("config_hash", ""))}
    write_table(outdir / "benchmark.csv", csv_text(rows, COLUMNS), prov_cfg, "sample_benchmark")
    log.info("sampler benchmark (%d conditions x %d members, %d^2):\n%s", k, ensemble, n,
             format_table(rows))

    # Resolution invariance: the paper's sampler and the best one with at most CHEAP_NFE calls.
    chosen = _cheap_choice(rows, samplers, make_sampler(paper_cfg))
    res_rows = _resolution_rows(models, chosen, res_sets, samp, max_pixels)
    write_table(outdir / "resolution.csv", csv_text(res_rows, RES_COLUMNS), prov_cfg,
                "sample_benchmark")

    # The most accurate cheap sampler (the paper's when none is cheaper).
    _draw_figures(outdir, rows, drawn, samplers, chosen[-1], data, data_dir, whole)
    if target == "sgs":
        write_les(outdir, data, {s.label: drawn[s] for s in samplers}, whole, prov_cfg)
    log.info("wrote %s", outdir)
    return 0


def write_les(outdir: Path, data: dict, learned: dict, whole: dict, prov_cfg: dict) -> None:
    """The a-priori LES scores of an sgs run (rollout/les_a_priori.py), les_a_priori.csv and
    les_pi_spectra.png; _check_inputs made sure the config has the coarse and dns sections."""
    rows = write_les_a_priori(outdir, data, learned, whole["coarse"], whole["dns"],
                              {**prov_cfg, "coarse": whole["coarse"], "dns": whole["dns"]})
    for r in rows:
        log.info("a priori LES, %s: correlation %.3f, enstrophy transfer x%.3f, backscatter "
                 "%.3f (true %.3f)", r["closure"], r["correlation"],
                 r["enstrophy_transfer_ratio"], r["backscatter_model"], r["backscatter_true"])


def write_les_a_priori(outdir: Path, data: dict, learned: dict, coarse: dict, dns: dict,
                       prov_cfg: dict) -> list[dict]:
    """les_a_priori.csv and les_pi_spectra.png in `outdir`; returns the rows."""
    rows, spectra = les_a_priori(data["vorticity"], data["target"], learned, coarse, dns)
    write_table(Path(outdir) / "les_a_priori.csv", csv_text(rows, LES_A_PRIORI_COLUMNS),
                prov_cfg, "sample_benchmark")
    les_pi_spectra_figure(Path(outdir) / "les_pi_spectra.png", spectra,
                          cutoff=data["vorticity"].shape[-1] // 2)
    return rows


def noise_line(data_dir: Path, dns: dict, n: int):
    """The known spectrum of the noise term in the test set's target, in physical units like
    the stored target (twice the term under coarse.g_split paper), or None (sgs: no noise).
    Unfiltered: under coarse.method filter the target's high shells lie below it."""
    from diffclosure.data.flow_stats import noise_multiplicity

    with h5io.open_input(Path(data_dir) / "test.h5") as fh:
        attrs = h5io.read_attrs(fh)
    target = str(attrs.get("target", attrs.get("coarse.target")))
    times = noise_multiplicity(target, str(attrs.get("coarse.g_split", "full")))
    if target not in ("G", "H") or times == 0:
        return None
    nz = dns["noise"]
    return noise_spectrum(n, dns["length"], nz["sigma"], nz["alpha"], nz["kappa"], dns["dt"],
                          scale=times)[1]
