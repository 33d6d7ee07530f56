"""Stage `distill`: the trained score model distilled into a one-step conditional generator.

    python -m diffclosure distill --config CFG --data DATASET_DIR --model score.pt
        --output model/onestep.pt [--threads T]

Reads score.pt (the teacher, EMA weights), DATASET_DIR/train.h5 and stats.json (the conditions
the generator learns on, and the check that the model belongs to this dataset) and val.h5 (the
validation loss each round stops on, distill.plateau); writes
onestep.pt (atomic): the student's weights, the teacher's settings and settings["onestep"] =
{t_max, start, teacher, score_model, history}. How and why: sampling/distill.py. The sampler
`onestep` (sampling.samplers, rollout.sampler) runs it at one network evaluation per sample.
"""

from __future__ import annotations

import copy
import logging
import time

from diffclosure import config as cfgmod

log = logging.getLogger(__name__)

SECTIONS = ["device", "sde", "distill"]


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True,
                        help="dataset folder (train.h5, val.h5, stats.json)")
    parser.add_argument("--model", required=True, help="trained score model (score.pt)")
    parser.add_argument("--output", required=True, help="one-step generator to write (.pt)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch")


def start_mode(start: str, conditions: list[str]) -> str:
    """The start mean the teacher sampler uses with a model of these conditions."""
    if start == "auto":
        return "measurements" if "measurements" in conditions else "zero"
    if start == "measurements" and "measurements" not in conditions:
        raise cfgmod.ConfigError("distill.teacher.start: 'measurements' but the model has no"
                                 " measurements condition; use auto or zero")
    return start


def start_mean_fn(mode: str, conditions: list[str]):
    """cond (B, C, n, n) -> the mean of the sampler's initial noise, as ClosureSampler does."""
    if mode == "zero":
        return lambda cond: 0.0
    i = conditions.index("measurements")
    return lambda cond: cond[:, i:i + 1]


def _teacher(cfg: dict, model_path, data_dir, device):
    """(score network, settings, ClosureSampler) after checking it against the dataset."""
    from diffclosure.model.checkpoint import load_model
    from diffclosure.sampling.closure_sampler import ClosureSampler, check_stats

    net, settings = load_model(model_path, device)
    if dict(settings["sde"]) != dict(cfg["sde"]):
        log.warning("sde: the model was trained with %s, the config says %s; using the model's",
                    settings["sde"], cfg["sde"])
    cs = ClosureSampler(net, settings, device)
    check_stats(cs, model_path, data_dir)
    return net.requires_grad_(False), settings, cs


def main(args) -> int:
    cfg = cfgmod.load(args.config, sections=SECTIONS)
    if args.threads < 1:
        raise cfgmod.ConfigError(f"--threads: must be >= 1, got {args.threads}")
    import torch

    from diffclosure.data.datasets import load_training_splits
    from diffclosure.devices import resolve_device
    from diffclosure.model.sde import make_sde
    from diffclosure.model.stopping import Plateau
    from diffclosure.provenance import provenance
    from diffclosure.sampling import distill as dm

    dc = cfg["distill"]
    teacher = dm.teacher_sampler(dc["teacher"])  # config errors before any work
    torch.set_num_threads(args.threads)
    device = resolve_device(cfg["device"])
    net, settings, cs = _teacher(cfg, args.model, args.data, device)
    mode = start_mode(teacher.start, cs.conditions)
    _, data, val = load_training_splits(args.data, in_memory=True)
    data, val = data.to(device), val.to(device)
    torch.manual_seed(dc["seed"])
    student = copy.deepcopy(net).requires_grad_(True).train()
    tic = time.perf_counter()
    result = dm.distil(net, student, teacher, data, make_sde(settings["sde"]),
                       start_mean_fn(mode, cs.conditions), epochs=dc["epochs"],
                       batch_size=dc["batch_size"], lr=dc["lr"], seed=dc["seed"], val=val,
                       plateau=Plateau.from_config(dc))
    meta = {"t_max": teacher.t_max, "start": mode, "teacher": teacher.as_dict(),
            "score_model": str(settings.get("config_hash", "")), "history": result.history}
    prov = provenance({**cfg, "score_model": meta["score_model"]}, "distill")
    dm.save_onestep(args.output, result.student.cpu(), settings, meta, prov)
    log.info("wrote %s: %d rounds from %s in %.1f s; last loss %.4g", args.output,
             result.history[-1]["round"], teacher.label, time.perf_counter() - tic,
             result.history[-1]["loss"])
    return 0
