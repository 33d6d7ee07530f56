rule report:
    """Headline table next to the paper's numbers, and the animation."""
    input:
        benchmark=f"{OUT}/sampling/benchmark.csv",
        resolution=f"{OUT}/sampling/resolution.csv",
        metrics=f"{OUT}/rollout/metrics.csv",
        rollout_summary=f"{OUT}/rollout/summary.json",
        probabilistic=f"{OUT}/rollout/probabilistic.csv",
        stats=f"{DATASET}/stats.json",
        history=f"{OUT}/model/history.csv",
        # Everything the summary links to, so it never links a file that does not exist.
        linked=[*rules.sample_benchmark.output, *rules.rollout_metrics.output,
                rules.train.output.curves],
        rollouts=expand(f"{OUT}/rollout/{{closure}}.h5", closure=CLOSURES),
    output:
        **report_outputs(),
    params:
        cfg=lambda w: sections("run", "report"),
        results=lambda w, input: os.path.dirname(os.path.dirname(input.metrics)),
        outdir=lambda w, output: os.path.dirname(output.summary),
    conda:
        CPU_ENV
    log:
        f"{OUT}/logs/report.log",
    shell:
        "python -m diffclosure report --config {params.cfg} --results {params.results} --outdir {params.outdir} > {log} 2>&1"
