rule distill:
    """Progressive distillation of the score model into a one-step generator (the sampler
    `onestep`); GPU when present."""
    input:
        model=MODEL,
        train=f"{DATASET}/train.h5",
        val=f"{DATASET}/val.h5",
        stats=f"{DATASET}/stats.json",
    output:
        onestep=ONESTEP,
    params:
        cfg=lambda w: sections("device", "sde", "distill"),
        data=lambda w, input: os.path.dirname(input.stats),
    conda:
        GPU_ENV
    log:
        f"{OUT}/logs/distill.log",
    benchmark:
        f"{OUT}/benchmarks/distill.tsv"
    threads: config["train"]["threads"]
    resources:
        mem_mb=8000,
        runtime=30,
        gpu=1 if config["device"] != "cpu" else 0,
    shell:
        "python -m diffclosure distill --config {params.cfg} --data {params.data} --model {input.model} "
        "--output {output.onestep} --threads {threads} > {log} 2>&1"
