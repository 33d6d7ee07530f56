rule coarse:
    """Coarse-grain one DNS shard: resolved vorticity and closure target at every test resolution."""
    input:
        f"{OUT}/dns/shard-{{shard}}.h5",
    output:
        f"{OUT}/coarse/shard-{{shard}}.h5",
    params:
        cfg=lambda w: sections("coarse"),
    conda:
        CPU_ENV
    log:
        f"{OUT}/logs/coarse/shard-{{shard}}.log",
    benchmark:
        f"{OUT}/benchmarks/coarse/shard-{{shard}}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "python -m diffclosure coarse --config {params.cfg} --input {input} --output {output} > {log} 2>&1"


rule dataset:
    """Train/val/test split by trajectory, sparse measurements, normalisation statistics."""
    input:
        coarse_shards(),
    output:
        files=DATASET_FILES,
        stats=f"{DATASET}/stats.json",
        figure=report(
            f"{DATASET}/summary.png",
            caption="../report/dataset.rst",
            category="1. Data",
        ),
    params:
        cfg=lambda w: sections("coarse", "measurements", "dataset"),
        outdir=lambda w, output: os.path.dirname(output.stats),
    conda:
        CPU_ENV
    log:
        f"{OUT}/logs/dataset.log",
    benchmark:
        f"{OUT}/benchmarks/dataset.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    shell:
        "python -m diffclosure dataset --config {params.cfg} --inputs {input} --outdir {params.outdir} > {log} 2>&1"
