"""`python -m diffclosure <stage> ...`: every pipeline stage runs alone from the shell.

Stages live in diffclosure.stages.<name> and expose `add_arguments(parser)` and
`main(args) -> int`; they are imported only when chosen, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from diffclosure import __version__
from diffclosure.config import ConfigError

STAGES = {
    "dns": "Direct numerical simulation of one shard of trajectories.",
    "coarse": "Coarse-grain one DNS shard and compute the closure target.",
    "dataset": "Assemble train/val/test sets (split by trajectory) and normalisation statistics.",
    "train": "Train the conditional score model.",
    "sample-benchmark": "Benchmark samplers: accuracy against cost, resolution invariance.",
    "rollout": "Coarse simulation coupled with one closure, against a reference.",
    "rollout-metrics": "Metrics and figures of all rollouts against the reference.",
    "report": "Summary table, figures and animation.",
    "info": "Print the provenance of an output file.",
}


def _module(stage: str):
    return importlib.import_module(f"diffclosure.stages.{stage.replace('-', '_')}")


def build_parser(stage: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m diffclosure", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--version", action="version", version=f"diffclosure {__version__}")
    sub = parser.add_subparsers(dest="stage", metavar="<stage>", required=True)
    for name, help_text in STAGES.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == stage:
            _module(name).add_arguments(p)
            if name != "info":
                p.add_argument(
                    "--config",
                    default="config.yaml",
                    help="config file (YAML) or inline JSON of the needed sections"
                    " (default: %(default)s)",
                )
            p.add_argument(
                "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
            )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    stage = next((a for a in argv if not a.startswith("-")), None)
    if stage not in STAGES:
        stage = None
    args = build_parser(stage).parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    log = logging.getLogger("diffclosure")
    try:
        return int(_module(args.stage).main(args) or 0)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    except Exception as exc:  # a clear one-line reason first; the traceback follows for debugging
        from diffclosure.errors import UserFacingError

        if isinstance(exc, UserFacingError):
            log.error("%s", exc)
            return 1
        raise


if __name__ == "__main__":
    raise SystemExit(main())
