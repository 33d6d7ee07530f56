rule rollout:
    """Coarse simulation coupled with one closure, from held-out initial states."""
    input:
        unpack(rollout_inputs),
    output:
        f"{OUT}/rollout/{{closure}}.h5",
    params:
        cfg=lambda w: rollout_sections(w.closure),
        speed=SPEED,
        model=lambda w, input: " ".join(
            f"--{k} {getattr(input, k)}" for k in ("model", "onestep") if k in input.keys()
        ),
        data=lambda w, input: os.path.dirname(input.stats),
    wildcard_constraints:
        closure="|".join(CLOSURES),
    conda:
        GPU_ENV
    log:
        f"{OUT}/logs/rollout/{{closure}}.log",
    benchmark:
        f"{OUT}/benchmarks/rollout/{{closure}}.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=lambda w: 1 if lookup(w.closure).gpu and config["device"] != "cpu" else 0,
    shell:
        "python -m diffclosure rollout --config {params.cfg} --speed {params.speed} --closure {wildcards.closure} --dns {input.dns} "
        "--data {params.data} {params.model} --threads {threads} --output {output} > {log} 2>&1"


# An LES (target sgs) also gets its ranking table and the spectra of every closure on one plot.
LES_OUTPUTS = (
    {
        "les": f"{OUT}/rollout/les.csv",
        "les_spectra": report(
            f"{OUT}/rollout/les_spectra.png",
            caption="../report/les_spectra.rst",
            category="4. Rollouts",
        ),
    }
    if config["coarse"]["target"] == "sgs"
    else {}
)


rule rollout_metrics:
    """Metrics of every closure against the reference, and their figures."""
    input:
        expand(f"{OUT}/rollout/{{closure}}.h5", closure=CLOSURES),
    output:
        metrics=f"{OUT}/rollout/metrics.csv",
        summary_csv=f"{OUT}/rollout/summary.csv",
        summary_json=f"{OUT}/rollout/summary.json",
        probabilistic=f"{OUT}/rollout/probabilistic.csv",
        rank_histogram=report(
            f"{OUT}/rollout/rank_histogram.png",
            caption="../report/rank_histogram.rst",
            category="4. Rollouts",
        ),
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
        **LES_OUTPUTS,
    params:
        cfg=lambda w: sections("rollout", "report"),
        outdir=lambda w, output: os.path.dirname(output.metrics),
    conda:
        GPU_ENV
    log:
        f"{OUT}/logs/rollout_metrics.log",
    shell:
        "python -m diffclosure rollout-metrics --config {params.cfg} --inputs {input} "
        "--outdir {params.outdir} > {log} 2>&1"
