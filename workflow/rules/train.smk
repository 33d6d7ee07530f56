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
        outdir=f"{OUT}/model",
    log:
        f"{OUT}/logs/train.log",
    benchmark:
        f"{OUT}/benchmarks/train.tsv"
    threads: max(1, min(workflow.cores, config["train"]["threads"]))
    resources:
        mem_mb=8000,
        runtime=lambda w: 30 + config["train"]["epochs"],
        gpu=1 if config["device"] != "cpu" else 0,
    shell:
        "{PY} train --config {params.cfg} --data {DATASET} --outdir {params.outdir} "
        "--threads {threads} > {log} 2>&1"
