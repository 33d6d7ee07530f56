# An LES (target sgs) also gets the a-priori LES scores of every closure on the test states.
LES_A_PRIORI_OUTPUTS = (
    {
        "les_a_priori": f"{OUT}/sampling/les_a_priori.csv",
        "les_pi_spectra": report(
            f"{OUT}/sampling/les_pi_spectra.png",
            caption="../report/les_pi_spectra.rst",
            category="3. Sampling",
        ),
    }
    if config["coarse"]["target"] == "sgs"
    else {}
)


rule sample_benchmark:
    """Samplers and step budgets: accuracy against cost, and resolution invariance."""
    input:
        unpack(sample_benchmark_inputs),
    output:
        benchmark=f"{OUT}/sampling/benchmark.csv",
        resolution=f"{OUT}/sampling/resolution.csv",
        pareto=report(
            f"{OUT}/sampling/pareto.png", caption="../report/pareto.rst", category="3. Sampling"
        ),
        samples=report(
            f"{OUT}/sampling/samples.png", caption="../report/samples.rst", category="3. Sampling"
        ),
        spectra=report(
            f"{OUT}/sampling/spectra.png", caption="../report/samples.rst", category="3. Sampling"
        ),
        rank_histogram=report(
            f"{OUT}/sampling/rank_histogram.png",
            caption="../report/rank_histogram_a_priori.rst",
            category="3. Sampling",
        ),
        **LES_A_PRIORI_OUTPUTS,
    params:
        # dns adds the noise's known spectrum; an LES's a-priori scores also read coarse.
        cfg=lambda w: sections(
            "device", "sde", "sampling", "dns", *(["coarse"] if LES_A_PRIORI_OUTPUTS else [])
        ),
        outdir=lambda w, output: os.path.dirname(output.benchmark),
        data=lambda w, input: os.path.dirname(input.stats),
        onestep=lambda w, input: f"--onestep {input.onestep}" if "onestep" in input.keys() else "",
    conda:
        GPU_ENV
    log:
        f"{OUT}/logs/sample_benchmark.log",
    benchmark:
        f"{OUT}/benchmarks/sample_benchmark.tsv"
    threads: config["train"]["threads"]
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=1 if config["device"] != "cpu" else 0,
    shell:
        "python -m diffclosure sample-benchmark --config {params.cfg} --data {params.data} --model {input.model} {params.onestep} "
        "--outdir {params.outdir} --threads {threads} > {log} 2>&1"
