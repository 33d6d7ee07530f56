"""`check-config`: validate config files as the pipeline would see them, naming any problem.

    python -m diffclosure check-config [FILE ...]

The Snakefile reads config.yaml and merges each --configfile on top, key by key; this does the
same, so a preset is checked as Snakemake would run it. The base is the config.yaml beside the
Snakefile in the current directory (else the checkout's); outside any workflow, as an installed
package may be, it is the schema's defaults, and the message says which.

Snakemake reads a --configfile itself, before the Snakefile runs, and a YAML syntax error there
gets Snakemake's own message ("Config file is not valid JSON or YAML") with neither file nor
line; this names both.
"""

from __future__ import annotations

from diffclosure import config as configmod


def add_arguments(parser) -> None:
    parser.add_argument("files", nargs="*",
                        help="config files merged in order on top of the default config"
                        " (./config.yaml beside ./Snakefile, else the checkout's, else the"
                        " schema's defaults), as Snakemake's --configfile")


def main(args) -> int:
    cfg, on = configmod.read_run_config(args.files)
    configmod.validate(cfg)
    print(f"valid: {on} (outputs under results/{cfg['run']}/)")
    return 0
