rule train:
    """Denoising score matching of the conditional FNO score model (GPU when present)."""
    input:
        train=f"{DATASET}/train.h5",
        val=f"{DATASET}/val.h5",
        stats=f"{DATASET}/stats.json",
    output:
        model=MODEL,
        history=f"{OUT}/model/history.csv",
        curves=report(
            f"{OUT}/model/curves.png", caption="../report/curves.rst", category="2. Training"
        ),
    params:
        cfg=lambda w: sections("device", "sde", "model", "train"),
        speed=SPEED,
        outdir=lambda w, output: os.path.dirname(output.model),
        data=lambda w, input: os.path.dirname(input.stats),
        launcher=lambda w: (
            f"torchrun --standalone --nproc_per_node {config['train']['gpus']} -m diffclosure"
            if config["train"]["gpus"] > 1
            else "python -m diffclosure"
        ),
    conda:
        GPU_ENV
    log:
        f"{OUT}/logs/train.log",
    benchmark:
        f"{OUT}/benchmarks/train.tsv"
    threads: config["train"]["threads"]
    resources:
        mem_mb=8000,
        runtime=lambda w: 30 + config["train"]["epochs"],
        gpu=config["train"]["gpus"] if config["device"] != "cpu" else 0,
    shell:
        "{params.launcher} train --config {params.cfg} --speed {params.speed} --data {params.data} --outdir {params.outdir} "
        "--threads {threads} > {log} 2>&1"
