"""Deterministic forcing fields f(x, y) of the vorticity equation (physical space, float64).

kinds (config dns.forcing.kind):
  paper       amplitude * (sin(2 pi (x+y)/L) + cos(2 pi (x+y)/L))   (the paper's, amplitude 0.1)
  kolmogorov  amplitude * cos(2 pi wavenumber y / L)
  none        no forcing (returns None)
"""

from __future__ import annotations

import numpy as np

from diffclosure.solver.grid import Grid

KINDS = ("paper", "kolmogorov", "none")


def make_forcing(
    kind: str, grid: Grid, amplitude: float = 0.1, wavenumber: int = 4
) -> np.ndarray | None:
    """The forcing field (n, n) indexed [y, x], or None for kind "none"."""
    X, Y = grid.mesh
    two_pi_over_l = 2 * np.pi / grid.length
    if kind == "paper":
        phase = two_pi_over_l * (X + Y)
        return amplitude * (np.sin(phase) + np.cos(phase))
    if kind == "kolmogorov":
        if int(wavenumber) != wavenumber or wavenumber < 1:
            raise ValueError(f"dns.forcing.wavenumber must be a positive integer, got {wavenumber}")
        if wavenumber >= grid.n // 2:
            raise ValueError(
                f"dns.forcing.wavenumber={wavenumber} is not resolved on a {grid.n}^2 grid;"
                f" use a wavenumber below {grid.n // 2}"
            )
        return amplitude * np.cos(two_pi_over_l * wavenumber * Y)
    if kind == "none":
        return None
    raise ValueError(
        f"dns.forcing.kind: unknown forcing {kind!r}; choose one of {', '.join(KINDS)}"
    )
