def rollout_inputs(wildcards):
    inputs = {"dns": dns_shards(), "data": f"{DATASET}/test.h5", "stats": f"{DATASET}/stats.json"}
    if wildcards.closure == "diffusion":
        inputs["model"] = MODEL
    return inputs


rule rollout:
    """Coarse simulation coupled with one closure, from held-out initial states."""
    input:
        unpack(rollout_inputs),
    output:
        f"{OUT}/rollout/{{closure}}.h5",
    params:
        cfg=lambda w: sections("device", "dns", "coarse", "measurements", "sde", "rollout"),
        model=lambda w, input: f"--model {input.model}" if "model" in input.keys() else "",
    wildcard_constraints:
        closure="|".join(CLOSURES),
    log:
        f"{OUT}/logs/rollout/{{closure}}.log",
    benchmark:
        f"{OUT}/benchmarks/rollout/{{closure}}.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=lambda w: 1 if w.closure == "diffusion" and config["device"] != "cpu" else 0,
    shell:
        "{PY} rollout --config {params.cfg} --closure {wildcards.closure} --dns {input.dns} "
        "--data {DATASET} {params.model} --threads {threads} --output {output} > {log} 2>&1"


rule rollout_metrics:
    """Metrics of every closure against the reference, and their figures."""
    input:
        expand(f"{OUT}/rollout/{{closure}}.h5", closure=CLOSURES),
    output:
        metrics=f"{OUT}/rollout/metrics.csv",
        error=report(
            f"{OUT}/rollout/error.png", caption="../report/error.rst", category="4. Rollouts"
        ),
        spectra=report(
            f"{OUT}/rollout/spectra.png", caption="../report/spectra.rst", category="4. Rollouts"
        ),
        snapshots=report(
            f"{OUT}/rollout/snapshots.png",
            caption="../report/snapshots.rst",
            category="4. Rollouts",
        ),
    params:
        cfg=lambda w: sections("rollout"),
    log:
        f"{OUT}/logs/rollout_metrics.log",
    shell:
        "{PY} rollout-metrics --config {params.cfg} --inputs {input} "
        "--outdir {OUT}/rollout > {log} 2>&1"
