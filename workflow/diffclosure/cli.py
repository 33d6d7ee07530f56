"""`python -m diffclosure <stage> ...`: every pipeline stage runs alone from the shell.

Stages live in diffclosure.stages.<name> and expose `add_arguments(parser)` and
`main(args) -> int`; they are imported only when chosen, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path

from diffclosure import __version__
from diffclosure.config import ConfigError, with_speed

STAGES = {
    "dns": "Direct numerical simulation of one shard of trajectories.",
    "coarse": "Coarse-grain one DNS shard and compute the closure target.",
    "dataset": "Assemble train/val/test sets (split by trajectory) and normalisation statistics.",
    "train": "Train the conditional score model.",
    "distill": "Distil the score model into a one-step (1-NFE) conditional generator.",
    "sample-benchmark": "Benchmark samplers: accuracy against cost, resolution invariance.",
    "rollout": "Coarse simulation coupled with one closure, against a reference.",
    "rollout-metrics": "Metrics and figures of all rollouts against the reference.",
    "report": "Summary table, figures and animation.",
    "info": "Print the provenance of an output file.",
    "check-config": "Validate a config file and name any problem (YAML line, field and fix).",
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
            if name not in ("info", "check-config"):
                p.add_argument(
                    "--config",
                    default="config.yaml",
                    help="config file (YAML) or inline JSON of the needed sections"
                    " (default: %(default)s)",
                )
                p.add_argument(
                    "--speed",
                    help="inline JSON of speed-only settings (threads, batch, planner) merged"
                    " into an inline JSON --config; the pipeline passes them apart so that"
                    " changing them reruns nothing",
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
        if getattr(args, "speed", None):
            args.config = with_speed(args.config, args.speed)
        _check_outputs(args)
        return int(_module(args.stage).main(args) or 0)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    except Exception as exc:  # a clear one-line reason first; the traceback follows for debugging
        from diffclosure.errors import UserFacingError

        if isinstance(exc, UserFacingError):
            log.error("%s", exc)
            return 1
        from diffclosure.atomic import is_disk_full

        if is_disk_full(exc):  # a write outside the atomic writers (they name their file)
            log.error("disk full: %s. Free some space and rerun.", exc)
            return 1
        raise


def _check_outputs(args) -> None:
    """--output and --outdir can be written, checked before any work (a DNS must not run for an
    hour to then find its output path is a folder)."""
    from diffclosure.errors import UserFacingError

    output, outdir = getattr(args, "output", None), getattr(args, "outdir", None)
    problem = None
    if output is not None:
        path = Path(output)
        if path.is_dir():
            problem = f"--output {output}: is a folder; give the path of the file to write"
        else:
            problem = _unwritable(path.parent, "--output", output)
    if outdir is not None and problem is None:
        path = Path(outdir)
        if path.exists() and not path.is_dir():
            problem = f"--outdir {outdir}: is a file; give a folder (it is made if missing)"
        else:
            problem = _unwritable(path, "--outdir", outdir)
    if problem:
        raise UserFacingError(problem)


def _unwritable(folder: Path, flag: str, given: str) -> str | None:
    """Why files cannot be made in `folder` (made first if missing), None when they can."""
    existing = next(p for p in [folder, *folder.absolute().parents] if p.exists())
    if not existing.is_dir():
        return f"{flag} {given}: {existing} is a file, not a folder; choose another path"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{flag} {given}: no permission to write in {existing}; choose another path"
    return None


if __name__ == "__main__":
    raise SystemExit(main())
