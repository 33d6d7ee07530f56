"""One progress-bar setup for every long loop of the pipeline.

tqdm on stderr (stdout stays free for results); redrawn every 0.5 s on a terminal but only
every 5 s otherwise, so that a Snakemake or Slurm log gets a line every few seconds instead of
thousands of carriage-return updates.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from tqdm import tqdm

TTY_INTERVAL_S = 0.5  # seconds between redraws on a terminal
LOG_INTERVAL_S = 5.0  # seconds between lines when stderr is a file or pipe (a log)


def progress(iterable: Iterable | None = None, total: int | None = None, desc: str | None = None,
             unit: str = "it", *, enabled: bool = True, **options) -> tqdm:
    """A tqdm bar over `iterable` (or a manual one of `total` updates) with the house settings.

    `enabled=False` gives a silent bar (e.g. on non-zero ranks): update() and close() do
    nothing. Further tqdm options (initial, leave, mininterval to override the default, ...)
    pass through.
    """
    # sys.stderr is looked up per call: pytest and loggers may have replaced it since import.
    options.setdefault("mininterval", TTY_INTERVAL_S if sys.stderr.isatty() else LOG_INTERVAL_S)
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr,
                disable=not enabled, **options)
