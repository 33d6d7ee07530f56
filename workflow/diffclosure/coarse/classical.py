"""Classical eddy-viscosity closures of the subgrid term Pi, chosen by name from CLASSICAL.

Every closure is ``fn(w_bar, length, delta, constant=None) -> Pi_model`` on the coarse vorticity
(..., m, m) and returns an estimate of Pi = filtered(u.grad w) - u_bar.grad(w_bar) in the same
sign convention as coarse/targets.py: the coarse equation gets the tendency -Pi_model. The
models are gradient diffusion of vorticity,

    Pi_model = -div(nu_t grad w_bar),     so the tendency -Pi_model = div(nu_t grad w_bar),

- Smagorinsky: nu_t = (Cs Delta)^2 |S|, |S| = sqrt(2 S_ij S_ij) of the resolved velocity;
- Leith:       nu_t = (Cl Delta)^3 |grad w_bar|;
- dynamic Smagorinsky: (Cs Delta)^2 -> c Delta^2 with c from the Germano identity and Lilly's
  least squares, one domain-averaged c per sample, clipped at c >= 0.

Derivatives are spectral with the Nyquist row/column removed. That makes the discrete derivative
exactly skew-adjoint, so sum(w * div(nu_t grad w)) = -sum(nu_t |grad w|^2) <= 0 holds to
round-off: a non-negative eddy viscosity can only remove enstrophy. Products and |S| are taken
pointwise (no dealiasing: the eddy viscosity is not a polynomial of the field).
"""

from __future__ import annotations

import numpy as np

from diffclosure.coarse.filters import transfer_function
from diffclosure.solver.grid import Grid, irfft2, rfft2

DEFAULT_CONSTANTS = {"smagorinsky": 0.16, "leith": 0.2}


def _size(w) -> int:
    if w.ndim < 2 or w.shape[-1] != w.shape[-2]:
        raise ValueError(f"vorticity must be (..., m, m), got shape {w.shape}")
    return w.shape[-1]


def _ddx(grid: Grid, f_hat):
    return irfft2(1j * grid.kx * grid.nyquist_free * f_hat, grid.n)


def _ddy(grid: Grid, f_hat):
    return irfft2(1j * grid.ky * grid.nyquist_free * f_hat, grid.n)


def strain_magnitude(grid: Grid, w_hat) -> np.ndarray:
    """|S| = sqrt(2 S_ij S_ij) = sqrt(4 u_x^2 + (u_y + v_x)^2) (incompressible: v_y = -u_x)."""
    psi = w_hat * grid.inv_k2
    u_hat, v_hat = 1j * grid.ky * psi, -1j * grid.kx * psi
    ux, uy, vx = _ddx(grid, u_hat), _ddy(grid, u_hat), _ddx(grid, v_hat)
    return np.sqrt(4 * ux**2 + (uy + vx) ** 2)


def gradient(grid: Grid, w_hat) -> tuple[np.ndarray, np.ndarray]:
    """(dw/dx, dw/dy) with the Nyquist row/column removed."""
    return _ddx(grid, w_hat), _ddy(grid, w_hat)


def eddy_diffusion(grid: Grid, w_hat, nu_t) -> np.ndarray:
    """Pi_model = -div(nu_t grad w), same derivative operator for grad and div."""
    gx, gy = gradient(grid, w_hat)
    return -(_ddx(grid, rfft2(nu_t * gx)) + _ddy(grid, rfft2(nu_t * gy)))


def smagorinsky_viscosity(w_bar, length: float, delta: float, constant: float | None = None):
    """nu_t = (Cs Delta)^2 |S|."""
    w_bar = np.asarray(w_bar, dtype=float)
    grid = Grid(_size(w_bar), length)
    cs = DEFAULT_CONSTANTS["smagorinsky"] if constant is None else constant
    return (cs * delta) ** 2 * strain_magnitude(grid, rfft2(w_bar))


def leith_viscosity(w_bar, length: float, delta: float, constant: float | None = None):
    """nu_t = (Cl Delta)^3 |grad w|."""
    w_bar = np.asarray(w_bar, dtype=float)
    grid = Grid(_size(w_bar), length)
    cl = DEFAULT_CONSTANTS["leith"] if constant is None else constant
    gx, gy = gradient(grid, rfft2(w_bar))
    return (cl * delta) ** 3 * np.sqrt(gx**2 + gy**2)


def smagorinsky(w_bar, length: float, delta: float, constant: float | None = None) -> np.ndarray:
    """Smagorinsky estimate of Pi (constant = Cs, default 0.16)."""
    w_bar = np.asarray(w_bar, dtype=float)
    nu_t = smagorinsky_viscosity(w_bar, length, delta, constant)
    return eddy_diffusion(Grid(_size(w_bar), length), rfft2(w_bar), nu_t)


def leith(w_bar, length: float, delta: float, constant: float | None = None) -> np.ndarray:
    """Leith estimate of Pi (constant = Cl, default 0.2)."""
    w_bar = np.asarray(w_bar, dtype=float)
    nu_t = leith_viscosity(w_bar, length, delta, constant)
    return eddy_diffusion(Grid(_size(w_bar), length), rfft2(w_bar), nu_t)


def dynamic_coefficient(
    w_bar, length: float, delta: float, test_filter: str = "gaussian", ratio: float = 2.0
) -> np.ndarray:
    """Germano-Lilly c (= Cs^2) per sample, shape w_bar.shape[:-2], clipped at >= 0.

    Subgrid vorticity flux sigma_j = filtered(u_j w) - u_bar_j w_bar, modelled as
    -c Delta^2 |S| d_j w_bar. Applying a test filter (^) of width ratio*Delta to the resolved
    field, the Germano identity L_j = (u_j w_bar)^ - u^_j w^ = c M_j with
    M_j = (Delta^2 |S| d_j w_bar)^ - (ratio Delta)^2 |S^| d_j w^ is solved in the least-squares
    sense over the domain: c = <L_j M_j> / <M_j M_j>. Negative c (backscatter) would make the
    model anti-diffusive and unstable, so it is clipped to 0.
    """
    w_bar = np.asarray(w_bar, dtype=float)
    grid = Grid(_size(w_bar), length)
    t_hat = transfer_function(test_filter, ratio * delta, grid)
    n = grid.n

    def hat(f):
        return irfft2(rfft2(f) * t_hat, n)

    w_hat = rfft2(w_bar)
    psi = w_hat * grid.inv_k2
    u, v = irfft2(1j * grid.ky * psi, n), irfft2(-1j * grid.kx * psi, n)
    w_t = hat(w_bar)
    lx = hat(u * w_bar) - hat(u) * w_t
    ly = hat(v * w_bar) - hat(v) * w_t

    s_bar = strain_magnitude(grid, w_hat)
    gx, gy = gradient(grid, w_hat)
    wt_hat = rfft2(w_t)
    s_t = strain_magnitude(grid, wt_hat)
    gxt, gyt = gradient(grid, wt_hat)
    big = (ratio * delta) ** 2
    mx = hat(delta**2 * s_bar * gx) - big * s_t * gxt
    my = hat(delta**2 * s_bar * gy) - big * s_t * gyt

    num = np.mean(lx * mx + ly * my, axis=(-2, -1))
    den = np.mean(mx**2 + my**2, axis=(-2, -1))
    c = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return np.maximum(c, 0.0)


def dynamic_smagorinsky(
    w_bar, length: float, delta: float, constant: float | None = None
) -> np.ndarray:
    """Dynamic Smagorinsky estimate of Pi; `constant` is unused (c is computed per sample)."""
    w_bar = np.asarray(w_bar, dtype=float)
    grid = Grid(_size(w_bar), length)
    w_hat = rfft2(w_bar)
    c = dynamic_coefficient(w_bar, length, delta)[..., None, None]
    nu_t = c * delta**2 * strain_magnitude(grid, w_hat)
    return eddy_diffusion(grid, w_hat, nu_t)


CLASSICAL = {
    "smagorinsky": smagorinsky,
    "leith": leith,
    "dynamic_smagorinsky": dynamic_smagorinsky,
}


def constant_from_config(name: str, coarse_cfg: dict) -> float | None:
    """The constant the config sets for closure `name` (None for the dynamic model)."""
    return {
        "smagorinsky": coarse_cfg.get("smagorinsky_cs"),
        "leith": coarse_cfg.get("leith_cl"),
    }.get(name)


def classical_closure(name: str):
    """The closure function registered under `name`, with a clear error for unknown names."""
    try:
        return CLASSICAL[name]
    except KeyError:
        raise ValueError(
            f"unknown classical closure {name!r}; choose one of {', '.join(CLASSICAL)}"
        ) from None


def estimate_of_target(
    target: str, w_bar, length: float, delta: float, name: str = "smagorinsky",
    constant: float | None = None,
) -> np.ndarray:
    """A classical estimate in the sign convention of `target`.

    sgs (Pi) enters the coarse equation as -Pi, so its estimate is Pi_model. G and H are
    tendencies that enter with a plus sign, so their eddy-viscosity estimate is -Pi_model.
    """
    pi = classical_closure(name)(w_bar, length, delta, constant)
    return pi if target == "sgs" else -pi
