"""Errors whose message is the whole story: the CLI prints them without a traceback."""

from __future__ import annotations


class UserFacingError(RuntimeError):
    """Base class of errors caused by input or settings, with the fix in the message."""


class BlowUpError(UserFacingError):
    """The simulation produced a non-finite value or exceeded the CFL bound."""

    def __init__(self, time: float, step: int, cfl: float, dt: float, reason: str):
        self.time, self.step, self.cfl, self.dt = time, step, cfl, dt
        super().__init__(
            f"simulation blew up at t={time:.6g} (step {step}): {reason}; CFL number {cfl:.3g}. "
            f"Reduce the time step (dns.dt={dt:g}; try {dt / 4:g}) or raise the viscosity."
        )
