# Paths, config hand-off and input functions shared by every stage.
import json
import os
import shlex

from diffclosure.config import reads_onestep, split_speed
from diffclosure.rollout.registry import learned, lookup, selective_settings

OUT = f"results/{config['run']}"
SHARDS = list(range(config["dns"]["shards"]))
CLOSURES = list(config["rollout"]["closures"])
# Conda environments for --software-deployment-method conda (paths relative to the rule files).
CPU_ENV = "../../envs/cpu.yaml"
# device "auto" means CUDA when present: such jobs get the CUDA build (it also runs on a CPU).
GPU_ENV = "../../envs/cuda.yaml" if config["device"] != "cpu" else CPU_ENV


def sections(*names):
    """The config sections a stage depends on, as one shell-quoted JSON argument.

    Rules pass only these sections as params, so Snakemake's params trigger reruns a stage
    exactly when its own settings change (sampler settings never rerun DNS or training).
    Speed-only settings (config.SPEED_ONLY) are left out: they travel in params.speed.
    """
    science, _ = split_speed({n: config[n] for n in names})
    return shlex.quote(json.dumps(science, sort_keys=True))


class Untracked:
    """A params value that reaches the shell command but that Snakemake does not compare: it
    records and compares only params of builtin types (str, numbers, lists, dicts). The rerun
    test in tests/workflow/test_end_to_end.py holds Snakemake to this."""

    def __init__(self, text):
        self.text = text

    def __str__(self):
        return self.text


# Speed-only settings (threads, batch, FFTW planner) of every section, for a rule's --speed:
# changing one reruns nothing.
SPEED = Untracked(shlex.quote(json.dumps(split_speed(config)[1], sort_keys=True)))


# Rollout settings only some closures read (the closure registry's `reads`). A job receives only
# those its closure reads, and not the list of closures, so a sampler change (or a closure added
# to the list) reruns only the jobs it affects.
SELECTIVE = selective_settings()


def rollout_sections(closure):
    cfg = {n: config[n] for n in ("device", "dns", "coarse", "measurements", "sde")}
    reads = lookup(closure).reads
    skip = {"closures", *(k for k in SELECTIVE if k not in reads)}
    cfg["rollout"] = {k: v for k, v in config["rollout"].items() if k not in skip}
    return shlex.quote(json.dumps(split_speed(cfg)[0], sort_keys=True))


def dns_shards():
    return expand(f"{OUT}/dns/shard-{{shard}}.h5", shard=SHARDS)


def coarse_shards():
    return expand(f"{OUT}/coarse/shard-{{shard}}.h5", shard=SHARDS)


DATASET = f"{OUT}/dataset"
DATASET_FILES = [f"{DATASET}/{s}.h5" for s in ("train", "val", "test")] + [
    f"{DATASET}/test-{m}.h5" for m in config["coarse"]["test_resolutions"]
]
MODEL = f"{OUT}/model/score.pt"
# The distilled one-step generator: an input only of the jobs whose sampler is `onestep`.
ONESTEP = f"{OUT}/model/onestep.pt"


def sample_benchmark_inputs(wildcards):
    inputs = {"model": MODEL, "data": DATASET_FILES, "stats": f"{DATASET}/stats.json"}
    if any(reads_onestep(e) for e in config["sampling"]["samplers"]):
        inputs["onestep"] = ONESTEP
    return inputs


def rollout_inputs(wildcards):
    inputs = {"dns": dns_shards(), "data": f"{DATASET}/test.h5", "stats": f"{DATASET}/stats.json"}
    if lookup(wildcards.closure).needs_model:
        # rollout.tau and rollout.inflation auto are measured on the validation split: a priori
        # on val.h5, then (inflation, calibration.method a_posteriori) by a coupled run from
        # validation states of the DNS shards.
        inputs["val"] = f"{DATASET}/val.h5"
        if reads_onestep(config["rollout"]["sampler"]):
            inputs["onestep"] = ONESTEP
        else:
            inputs["model"] = MODEL
    return inputs


def report_outputs(wildcards=None):
    outputs = {
        "summary": report(
            f"{OUT}/report/summary.md", caption="../report/summary.rst", category="5. Report"
        )
    }
    if config["report"]["animation"] and {learned(), "none"} <= set(CLOSURES):
        outputs["animation"] = report(
            f"{OUT}/report/animation.mp4", caption="../report/animation.rst", category="5. Report"
        )
    return outputs


def all_outputs(rules):
    """Every output of every stage, so that a plain `snakemake` remakes whatever is missing
    (a job killed mid-way, a file deleted), not only what the report reads."""
    per_stage = [rules.dataset, rules.train, rules.sample_benchmark, rules.rollout_metrics,
                 rules.report, *([rules.distill] if config["distill"]["enabled"] else [])]
    return [
        *dns_shards(),
        *coarse_shards(),
        *expand(f"{OUT}/rollout/{{closure}}.h5", closure=CLOSURES),
        *(path for rule in per_stage for path in rule.output),
    ]
