"""Stage `rollout`: a coarse simulation coupled with one closure, against a reference.

    python -m diffclosure rollout --config CFG --closure NAME --dns D0.h5 D1.h5 ... \\
        --data DATASET_DIR [--model score.pt] --output rollout/NAME.h5 [--threads T]

Sections: device, dns, coarse, measurements, sde, rollout. What is simulated and how is in
diffclosure.rollout.coupled (initial states, references, closures, costs, blow-ups).

Output (atomic): vorticity (state, member, time, y, x) and reference (state, time, y, x),
float32; coordinates state, member, time (since the rollout start), y, x, and trajectory
(state -> test trajectory id); attrs: closure, target, costs (cost_coupled_s_per_time,
cost_dns_s_per_time, cost_ratio_vs_dns), blow-up (blowup, blowup_time), the config sections
(flattened) and provenance.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

from diffclosure import config as cfgmod
from diffclosure.atomic import check_free_space
from diffclosure.data import h5io
from diffclosure.provenance import provenance
from diffclosure.rollout import registry
from diffclosure.rollout.coupled import RolloutResult, plan, run_rollout

log = logging.getLogger(__name__)

SECTIONS = ["device", "dns", "coarse", "measurements", "sde", "rollout"]
INFLATION_MAX = 10.0  # the schema's bounds on rollout.inflation: [1 / this, this]


def add_arguments(parser) -> None:
    parser.add_argument("--closure", required=True, choices=registry.names(),
                        help="closure to couple")
    parser.add_argument("--dns", nargs="+", required=True, help="DNS shards (HDF5)")
    parser.add_argument("--data", required=True, help="dataset folder (stats.json: split, stats)")
    parser.add_argument("--model", default=None, help="score.pt (needed by the learned closure)")
    parser.add_argument("--onestep", default=None,
                        help="onestep.pt of the distill stage (instead of --model when"
                             " rollout.sampler.name is onestep)")
    parser.add_argument("--output", required=True, help="rollout file to write (HDF5)")
    parser.add_argument("--threads", type=int, default=1, help="FFT / torch CPU threads")


def write_result(path, result: RolloutResult, cfg: dict, prov: dict) -> None:
    """The rollout file (module docstring), written atomically."""
    S, M, T, n, _ = result.vorticity.shape
    length = cfg["dns"]["length"]
    with h5io.atomic_h5(path) as fh:
        h5io.add_coordinate(fh, "state", np.arange(S))
        h5io.add_coordinate(fh, "member", np.arange(M))
        h5io.add_coordinate(fh, "time", result.time,
                            {"description": "simulated time since the rollout start"})
        xs = np.arange(n) * length / n
        h5io.add_coordinate(fh, "y", xs)
        h5io.add_coordinate(fh, "x", xs)
        traj = h5io.add_array(fh, "trajectory", np.asarray(result.trajectories, np.int64))
        traj.dims[0].attach_scale(fh["state"])
        h5io.add_field(fh, "vorticity", result.vorticity, ("state", "member", "time", "y", "x"))
        h5io.add_field(fh, "reference", result.reference, ("state", "time", "y", "x"))
        h5io.set_attrs(fh, {k: cfg[k] for k in SECTIONS if k in cfg})
        h5io.set_attrs(fh, result.attrs)
        h5io.set_attrs(fh, prov)


def expected_bytes(cfg: dict, closure: str) -> int:
    """Size of the rollout file's fields: members plus the reference, float32."""
    p, ro, n = plan(cfg, closure), cfg["rollout"], cfg["coarse"]["n"]
    records = p["steps"] // p["record_stride"] + 1
    members = registry.members(closure, ro["ensemble"])
    return 4 * n * n * records * ro["initial_states"] * (members + 1)


def rollout_sampler(cfg: dict, model_path, data_dir, threads: int, compile: bool = False):
    """The learned closure's sampler: rollout.sampler over the model file it reads
    (onestep.pt for the one-step generator, else score.pt), checked against the dataset."""
    import torch

    from diffclosure.devices import resolve_device
    from diffclosure.model.checkpoint import load_model
    from diffclosure.sampling.closure_sampler import ClosureSampler, check_stats
    from diffclosure.sampling.distill import load_onestep

    device = resolve_device(cfg["device"])
    torch.set_num_threads(threads)
    onestep = cfgmod.reads_onestep(cfg["rollout"]["sampler"])
    net, settings = (load_onestep if onestep else load_model)(model_path, device)
    log.info("model %s on %s: conditions %s", model_path, device, settings.get("conditions"))
    cs = ClosureSampler(net, settings, device, autocast=cfg["rollout"]["bf16"], compile=compile)
    check_stats(cs, model_path, data_dir)
    return cs


def resolve_calibration(cfg: dict, sampler_obj, data_dir, dns_paths=None,
                        closure: str = "diffusion", threads: int = 1
                        ) -> tuple[float, float, dict]:
    """(rollout.tau, rollout.inflation) as numbers, and what was measured for them, on the
    validation split only. `auto` takes them from one a-priori measurement (rollout.error_time):
    tau the correlation time of the model's error, inflation 1 / the sampler's spread/skill;
    with rollout.calibration.method a_posteriori (the default) that factor is then corrected by
    a coupled run of `closure` from validation states (rollout.calibration; needs the DNS
    shards `dns_paths`). An error with no memory (no lag correlation above the fit's floor)
    gives tau 0, independent draws, with a warning; one whose correlation does not decay is
    refused with what was measured."""
    ro = cfg["rollout"]
    tau, inflation = ro["tau"], ro["inflation"]
    if "auto" not in (tau, inflation):
        return float(tau), float(inflation), {}
    from diffclosure.rollout.error_time import measure_error_time
    from diffclosure.sampling.samplers import make_sampler

    doc = measure_error_time(sampler_obj, make_sampler(dict(ro["sampler"]), "rollout.sampler"),
                             Path(data_dir) / "val.h5", ro["ensemble"], ro["seed"],
                             per_shell=bool(ro.get("tau_per_shell")) and tau == "auto")
    if tau == "auto":
        tau = _tau_of(doc)
    if inflation == "auto":
        inflation = _inflation_of(doc)
        if ro["calibration"]["method"] == "a_posteriori":
            if dns_paths is None:
                raise ValueError("resolve_calibration: the a-posteriori calibration needs the "
                                 "DNS shards (dns_paths)")
            from diffclosure.rollout.calibration import posterior_inflation

            inflation, doc["posterior"] = posterior_inflation(
                cfg, closure, dns_paths, data_dir, sampler_obj, float(tau), inflation,
                INFLATION_MAX, threads=threads, tau_shells=doc.get("tau_shells"))
    return float(tau), float(inflation), doc


def calibrated_config(cfg: dict, tau: float, inflation: float, measured: dict) -> dict:
    """cfg with resolve_calibration's numbers in rollout: tau, inflation and, where measured,
    tau_shells (the memory per wavenumber shell)."""
    return {**cfg, "rollout": {**cfg["rollout"], "tau": tau, "inflation": inflation,
                               "tau_shells": measured.get("tau_shells")}}


def _tau_of(doc: dict) -> float:
    lags = [round(c, 3) for c in doc["correlation"]]
    if math.isnan(doc["tau"]):  # no memory at the record interval
        log.warning("rollout.tau auto: the model's a-priori error has no memory over %g time "
                    "units (lag correlations %s): independent draws (tau 0)",
                    doc["record_interval"], lags)
        return 0.0
    if not doc["tau"] < float("inf"):
        raise cfgmod.ConfigError(
            f"rollout.tau: auto, but the model's a-priori error does not decorrelate over the "
            f"validation records (lag correlations {lags}); set rollout.tau to a number of time "
            "units")
    return float(doc["tau"])


def _inflation_of(doc: dict) -> float:
    ratio = doc["spread_skill"]
    if not math.isfinite(ratio) or ratio <= 0:
        raise cfgmod.ConfigError(
            f"rollout.inflation: auto needs the a-priori spread/skill of an ensemble, measured "
            f"{ratio} (rollout.ensemble must be at least 2); set rollout.inflation to a number")
    # An ensemble too wide a priori is narrowed as one too narrow is widened: by 1 / ratio.
    return min(max(1.0 / ratio, 1.0 / INFLATION_MAX), INFLATION_MAX)


def main(args) -> int:
    cfg = cfgmod.load(args.config, sections=SECTIONS)
    if args.threads < 1:
        raise cfgmod.ConfigError(f"--threads: must be >= 1, got {args.threads}")
    plan(cfg, args.closure)  # every setting checked before any work
    check_free_space(args.output, expected_bytes(cfg, args.closure))
    sampler_obj = None
    if registry.lookup(args.closure).needs_model:
        onestep = cfgmod.reads_onestep(cfg["rollout"]["sampler"])
        path = args.onestep if onestep else args.model
        if not path:
            raise cfgmod.ConfigError(
                "--onestep: rollout.sampler onestep needs the distilled onestep.pt" if onestep
                else f"--model: the {args.closure} closure needs the trained score.pt")
        sampler_obj = rollout_sampler(cfg, path, args.data, args.threads)
    elif args.model:
        log.info("--model ignored for closure %s", args.closure)
    run_cfg, measured = cfg, {}
    if sampler_obj is not None and "tau" in registry.lookup(args.closure).reads:
        tau, inflation, measured = resolve_calibration(cfg, sampler_obj, args.data, args.dns,
                                                       args.closure, args.threads)
        run_cfg = calibrated_config(cfg, tau, inflation, measured)
    result = run_rollout(run_cfg, args.closure, args.dns, args.data, sampler_obj,
                         threads=args.threads)
    if run_cfg is not cfg:  # the correlation time and inflation used, what measured them
        result.attrs["rollout_tau"] = run_cfg["rollout"]["tau"]
        result.attrs["rollout_inflation"] = run_cfg["rollout"]["inflation"]
        if measured.get("tau_shells"):
            result.attrs["rollout_tau_shells"] = np.asarray(measured["tau_shells"])
        if measured:
            result.attrs["error_time"] = json.dumps(measured)
    prov = provenance({**cfg, "closure": args.closure}, "rollout")
    write_result(args.output, result, cfg, prov)
    a = result.attrs
    log.info("wrote %s: %s, %d states x %d members x %d records; cost %.3g s/time unit vs DNS "
             "%.3g (ratio %.3g)%s", args.output, args.closure, *result.vorticity.shape[:3],
             a["cost_coupled_s_per_time"], a["cost_dns_s_per_time"], a["cost_ratio_vs_dns"],
             f"; BLEW UP at t={a['blowup_time']:.4g}" if a["blowup"] else "")
    return 0
