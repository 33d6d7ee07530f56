"""Deterministic forcing fields f(x, y) of the vorticity equation (physical space, float64).

kinds (config dns.forcing.kind):
  paper       amplitude * (sin(2 pi (x+y)/L) + cos(2 pi (x+y)/L))   (the paper's, amplitude 0.1)
  kolmogorov  amplitude * cos(2 pi wavenumber y / L)
  ring        isotropic band: every Fourier mode with round(|k|) = wavenumber, equal amplitudes
              and fixed pseudo-random phases, scaled to rms amplitude (forced turbulence)
  none        no forcing (returns None)
"""

from __future__ import annotations

import numpy as np

from diffclosure.solver.grid import Grid

KINDS = ("paper", "kolmogorov", "ring", "none")
# The ring's phases come from this fixed seed: one forcing field for every run and every grid.
RING_SEED = 20240802


def ring_modes(wavenumber: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer modes (ky, kx) of the ring round(|k|) = wavenumber, one of each +-k pair (the
    upper half-plane), and their phases. Depends on the wavenumber only, never on the grid,
    so the DNS, the coarse solvers and the filter all see the same function."""
    r = np.arange(-wavenumber - 1, wavenumber + 2)
    ky, kx = (a.ravel() for a in np.meshgrid(r, r, indexing="ij"))
    keep = (np.rint(np.hypot(kx, ky)) == wavenumber) & ((ky > 0) | ((ky == 0) & (kx > 0)))
    modes = np.stack([ky[keep], kx[keep]], axis=1)
    phases = np.random.default_rng(RING_SEED).uniform(0, 2 * np.pi, len(modes))
    return modes, phases


def make_forcing(
    kind: str, grid: Grid, amplitude: float = 0.1, wavenumber: int = 4, symmetric: bool = False
) -> np.ndarray | None:
    """The forcing field (n, n) indexed [y, x], or None for kind "none". `symmetric` (ring
    only): the ring's D4 average (solver/symmetry.py), rescaled to the same rms amplitude."""
    if symmetric and kind != "ring":
        raise ValueError(f"dns.forcing.symmetric applies to the ring forcing only, not {kind!r};"
                         " set dns.forcing.kind: ring or symmetric: false")
    X, Y = grid.mesh
    two_pi_over_l = 2 * np.pi / grid.length
    if kind == "paper":
        phase = two_pi_over_l * (X + Y)
        return amplitude * (np.sin(phase) + np.cos(phase))
    if kind in ("kolmogorov", "ring"):
        if int(wavenumber) != wavenumber or wavenumber < 1:
            raise ValueError(f"dns.forcing.wavenumber must be a positive integer, got {wavenumber}")
        if wavenumber >= grid.n // 2:
            raise ValueError(
                f"dns.forcing.wavenumber={wavenumber} is not resolved on a {grid.n}^2 grid;"
                f" use a wavenumber below {grid.n // 2}"
            )
        if kind == "ring":
            return _ring(grid, int(wavenumber), amplitude, symmetric)
        return amplitude * np.cos(two_pi_over_l * wavenumber * Y)
    if kind == "none":
        return None
    raise ValueError(
        f"dns.forcing.kind: unknown forcing {kind!r}; choose one of {', '.join(KINDS)}"
    )


def _ring(grid: Grid, wavenumber: int, amplitude: float, symmetric: bool = False) -> np.ndarray:
    X, Y = grid.mesh
    modes, phases = ring_modes(wavenumber)
    two_pi_over_l = 2 * np.pi / grid.length
    f = sum(np.cos(two_pi_over_l * (kx * X + ky * Y) + ph)
            for (ky, kx), ph in zip(modes, phases, strict=True))
    if symmetric:
        # The D4 average of a field on the ring stays on the ring (the ring is D4-invariant), so
        # the grid rms is the function's rms on any grid that resolves the ring.
        from diffclosure.solver.symmetry import symmetrise

        f = symmetrise(f)
        return amplitude * f / np.sqrt(np.mean(f**2))
    # A sum of N unit cosines of distinct modes has mean square N/2.
    return amplitude * np.sqrt(2.0 / len(modes)) * f
