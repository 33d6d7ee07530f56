rule dns:
    """Direct numerical simulation of one shard of trajectories (fine grid, with G and H)."""
    output:
        f"{OUT}/dns/shard-{{shard}}.h5",
    params:
        cfg=lambda w: sections("dns"),
        speed=SPEED,
    conda:
        CPU_ENV
    log:
        f"{OUT}/logs/dns/shard-{{shard}}.log",
    benchmark:
        f"{OUT}/benchmarks/dns/shard-{{shard}}.tsv"
    threads: config["dns"]["threads"]
    resources:
        mem_mb=lambda w: 1000 + 40 * config["dns"]["batch"] * (config["dns"]["n"] // 64) ** 2,
        runtime=lambda w: 60 + int(config["dns"]["trajectories"] / len(SHARDS) * (config["dns"]["n"] / 128) ** 3 * (config["dns"]["spinup"] + config["dns"]["duration"]) / config["dns"]["dt"] / 2e4),
    shell:
        "python -m diffclosure dns --config {params.cfg} --speed {params.speed} --shard {wildcards.shard} --threads {threads} "
        "--output {output} > {log} 2>&1"
