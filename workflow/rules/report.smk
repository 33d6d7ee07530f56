rule report:
    """Headline table next to the paper's numbers, and the animation."""
    input:
        benchmark=f"{OUT}/sampling/benchmark.csv",
        resolution=f"{OUT}/sampling/resolution.csv",
        metrics=f"{OUT}/rollout/metrics.csv",
        rollouts=expand(f"{OUT}/rollout/{{closure}}.h5", closure=CLOSURES),
    output:
        summary=report(
            f"{OUT}/report/summary.md", caption="../report/summary.rst", category="5. Report"
        ),
    params:
        cfg=lambda w: sections("run", "report"),
    log:
        f"{OUT}/logs/report.log",
    shell:
        "{PY} report --config {params.cfg} --results {OUT} --outdir {OUT}/report > {log} 2>&1"
