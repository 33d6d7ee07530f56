"""Errors whose message is the whole story: the CLI prints them without a traceback."""

from __future__ import annotations

import math


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
        super().__init__(
            f"simulation blew up at t={time:.6g} (step {step}): {reason}{cfl_text}. "
            f"Reduce the time step (dns.dt={dt:g}; try {dt / 4:g}) or raise the viscosity."
        )
