"""Errors whose message is the whole story: the CLI prints them without a traceback."""

from __future__ import annotations

import math
from pathlib import Path


class UserFacingError(RuntimeError):
    """Base class of errors caused by input or settings, with the fix in the message."""


class BlowUpError(UserFacingError):
    """The simulation produced a non-finite value or exceeded the CFL bound.

    `cfl` is None (or not finite) when the state itself is non-finite: a CFL number computed
    from NaN velocities means nothing, so the message leaves it out.
    """

    def __init__(self, time: float, step: int, cfl: float | None, dt: float, reason: str):
        self.time, self.step, self.cfl, self.dt = time, step, cfl, dt
        cfl_text = (f"; CFL number {cfl:.3g}"
                    if cfl is not None and math.isfinite(cfl) else "")
        # What happened, without advice: a coupled run gives its own (rollout.coupled).
        self.detail = f"simulation blew up at t={time:.6g} (step {step}): {reason}{cfl_text}"
        super().__init__(
            f"{self.detail}. Reduce the time step (dns.dt={dt:g}; try {dt / 4:g}) or raise the "
            "viscosity."
        )


# The Snakemake rule that makes each kind of output, by its folder under results/<run>/.
PRODUCING_RULE = {"dns": "dns", "coarse": "coarse", "dataset": "dataset", "model": "train",
                  "sampling": "sample_benchmark", "rollout": "rollout", "report": "report"}
# Files whose rule is not their folder's: the rollout folder's tables and figures come from
# rollout_metrics (forcing `rollout` would redo every coupled run), onestep.pt from distill.
PRODUCING_RULE_BY_NAME = {
    "onestep.pt": "distill", "score.pt": "train", "last.pt": "train", "history.csv": "train",
    "stats.json": "dataset", "benchmark.csv": "sample_benchmark",
    "resolution.csv": "sample_benchmark", "les_a_priori.csv": "sample_benchmark",
    "metrics.csv": "rollout_metrics",
    "probabilistic.csv": "rollout_metrics", "les.csv": "rollout_metrics",
    "summary.csv": "rollout_metrics", "summary.json": "rollout_metrics",
}


def remake_hint(path) -> str:
    """How to remake a damaged or stale output: force its producing rule. Deleting the file and
    rerunning Snakemake is not enough: with newer files made from it downstream, Snakemake can
    answer "Nothing to be done" and keep results built on the old file."""
    path = Path(path)
    rule = PRODUCING_RULE_BY_NAME.get(path.name) or PRODUCING_RULE.get(path.parent.name)
    if rule is None:
        return ("Remake it by rerunning the stage that wrote it (`python -m diffclosure <stage>`,"
                " or `snakemake --cores all --forcerun <rule>` in a pipeline run).")
    return (f"Remake it by rerunning its stage: `snakemake --cores all --forcerun {rule}` (with "
            "your --configfile, if any), which also redoes everything made from it.")
