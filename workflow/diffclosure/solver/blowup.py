"""The blow-up policy: a state must stay finite and its CFL number at most cfl_max.

The solver checks every ``check_every`` steps (and callers at their records, e.g. before a
state is written); a failure is a :class:`diffclosure.errors.BlowUpError` naming the time, the
step and the CFL number and suggesting a smaller dt.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from diffclosure.errors import BlowUpError


class BlowUpGuard:
    """cfl_max and check_every (dns.cfl_max, dns.check_every), checked when built."""

    def __init__(self, cfl_max: float = 1.0, check_every: int = 50):
        if not cfl_max > 0:
            raise ValueError(f"dns.cfl_max must be > 0, got {cfl_max}")
        if int(check_every) < 1:
            raise ValueError(f"dns.check_every must be >= 1, got {check_every}")
        self.cfl_max, self.check_every = float(cfl_max), int(check_every)

    def due(self, steps_taken: int) -> bool:
        return steps_taken % self.check_every == 0

    def check(self, backend, state, cfl: Callable[[object], float], t: float, step: int,
              dt: float) -> float:
        """The CFL number of `state` (spectral), or BlowUpError."""
        # A diverging state overflows on the way (velocities of huge vorticity): numpy would
        # print RuntimeWarnings just before the error that explains them, so they are silenced.
        with np.errstate(over="ignore", invalid="ignore"):
            if not backend.all_finite(state):
                raise BlowUpError(t, step, None, dt, "non-finite vorticity (NaN/Inf)")
            number = cfl(state)
        if not math.isfinite(number):
            raise BlowUpError(t, step, None, dt, "non-finite velocity (the vorticity overflows)")
        if number > self.cfl_max:
            raise BlowUpError(t, step, number, dt, f"CFL number above cfl_max={self.cfl_max:g}")
        return number
