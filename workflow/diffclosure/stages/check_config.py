"""`check-config`: validate config files as the pipeline would see them, naming any problem.

    python -m diffclosure check-config [FILE ...]

The Snakefile reads config.yaml and merges each --configfile on top, key by key; this does the
same, so a preset is checked as Snakemake would run it. Snakemake reads a --configfile itself,
before the Snakefile runs, and a YAML syntax error there gets Snakemake's own message ("Config
file is not valid JSON or YAML") with neither file nor line; this names both.
"""

from __future__ import annotations

from diffclosure import config as configmod


def add_arguments(parser) -> None:
    parser.add_argument("files", nargs="*",
                        help="config files merged in order on top of config.yaml, as"
                        " Snakemake's --configfile")


def merge(base: dict, extra: dict) -> dict:
    """Snakemake's merge of a --configfile over the configfile: nested, lists replaced."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def main(args) -> int:
    cfg = configmod.read_yaml(configmod.DEFAULT_CONFIG)
    for path in args.files:
        extra = configmod.read_yaml(path)
        if not isinstance(extra, dict):
            raise configmod.ConfigError(f"{path}: must be a mapping of sections")
        merge(cfg, extra)
    configmod.validate(cfg)
    print(f"valid: {', '.join(map(str, args.files)) or configmod.DEFAULT_CONFIG}"
          f" (outputs under results/{cfg['run']}/)")
    return 0
