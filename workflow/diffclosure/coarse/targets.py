"""Closure targets on the coarse grid: the DNS terms G and H, and the LES subgrid term Pi.

Sign conventions (docs/architecture.md):

- G = nu lap(w) + noise and H = -u.grad(w) + noise are tendencies recorded by the DNS; they enter
  the coarse equation with a plus sign. They are brought to the coarse grid by the configured
  coarse-graining (for ``subsample`` the coarse values are the fine records at the coarse points).
- The subgrid term of the filtered equation. Filtering dw/dt + u.grad(w) = nu lap(w) - mu w + f
  + noise (filter and linear operators commute on the periodic grid) gives

      d(w_bar)/dt + u_bar.grad(w_bar) = nu lap(w_bar) - mu w_bar + f_bar + noise_bar - Pi,
      Pi = filtered(u.grad w) - u_bar.grad(w_bar),

  so Pi enters the coarse equation with a minus sign. Here the filtered advection is computed
  on the fine grid with the DNS's 2/3-rule dealiasing, filtered and truncated to the coarse grid;
  the resolved advection u_bar.grad(w_bar) is computed on the coarse grid exactly as a coarse
  pseudo-spectral solver does (2/3 rule at the coarse resolution). With that choice the true Pi
  closes the coarse solver's right-hand side exactly (up to time discretisation): whatever the
  coarse products lose to dealiasing is part of the closure.
"""

from __future__ import annotations

import numpy as np

from diffclosure.coarse.coarsen import check_divides, coarsen, truncate_hat
from diffclosure.coarse.filters import filter_hat, transfer_function
from diffclosure.solver.grid import Grid, advection, irfft2, laplacian, rfft2

TARGETS = ("G", "H", "sgs")


def filtered_state(w, m: int, kind: str, width: float, length: float = 1.0) -> np.ndarray:
    """w_bar on the m-grid: filter of width `width` (physical units) on the fine grid, truncate."""
    w = np.asarray(w, dtype=float)
    n = w.shape[-1]
    check_divides(n, m)
    return irfft2(truncate_hat(filter_hat(rfft2(w), kind, width, Grid(n, length)), n, m), m)


def subgrid_terms(
    w, ms, kind: str, width: float, length: float = 1.0
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{m: (w_bar, Pi)} on several coarse grids, sharing the fine-grid work (one advection)."""
    w = np.asarray(w, dtype=float)
    n = w.shape[-1]
    for m in ms:
        check_divides(n, m)
    fine = Grid(n, length)
    transfer = transfer_function(kind, width, fine)
    adv_hat = rfft2(advection(fine, w, dealias=True)) * transfer
    w_hat = rfft2(w) * transfer
    out = {}
    for m in ms:
        w_bar = irfft2(truncate_hat(w_hat, n, m), m)
        adv_bar = irfft2(truncate_hat(adv_hat, n, m), m)
        out[m] = (w_bar, adv_bar - advection(Grid(m, length), w_bar, dealias=True))
    return out


def subgrid_term(
    w, m: int, kind: str, width: float, length: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """(w_bar, Pi) on the m-grid from fine vorticity w (..., n, n).

    Pi = T(F(u.grad w)) - u_bar.grad(w_bar), T = truncation to m, F = filter of width `width`;
    the filtered equation carries -Pi (see the module docstring).
    """
    return subgrid_terms(w, [m], kind, width, length)[m]


def paper_g(w, h, nu: float, length: float = 1.0) -> np.ndarray:
    """The research code's G = nu lap(w^n) + 2 noise from a DNS record's w and H (same grid),
    the noise from :func:`record_noise`."""
    grid = Grid(np.shape(w)[-1], length)
    return nu * laplacian(grid, w) + 2.0 * record_noise(w, h, length)


def record_noise(w, h, length: float = 1.0) -> np.ndarray:
    """The step's noise in a DNS record, H + dealiased u.grad(w^n): exact for the euler_cn DNS,
    whose H is -u.grad(w^n) + noise (heun_cn averages two advections, so it cannot be
    recovered)."""
    return h + advection(Grid(np.shape(w)[-1], length), w, dealias=True)


def without_noise(term, w, h, length: float = 1.0) -> np.ndarray:
    """G or H of a DNS record without the step's noise (coarse.noise known): H becomes
    -u.grad(w^n) and G the step's viscous tendency."""
    return term - record_noise(w, h, length)


def coarse_states_and_targets(
    fields: dict,
    target: str,
    ms,
    method: str,
    length: float,
    filter_kind: str,
    width: float,
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{m: (coarse vorticity, coarse target)} for one batch of fine records.

    `fields` maps "vorticity" (and "G" / "H" for those targets) to fine arrays (..., n, n).
    The sgs target always filters (with `filter_kind`, `width`), whatever `method` says, so the
    state and Pi come from the same w_bar.
    """
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    if target == "sgs":
        return subgrid_terms(fields["vorticity"], ms, filter_kind, width, length)
    return {
        m: (
            coarsen(fields["vorticity"], m, method, length, filter_kind, width),
            coarsen(fields[target], m, method, length, filter_kind, width),
        )
        for m in ms
    }


def coarse_state_and_target(
    fields: dict,
    target: str,
    m: int,
    method: str,
    length: float,
    filter_kind: str,
    width: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(coarse vorticity, coarse target) on one grid; see coarse_states_and_targets."""
    return coarse_states_and_targets(fields, target, [m], method, length, filter_kind, width)[m]
