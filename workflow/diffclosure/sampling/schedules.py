"""Decreasing time grids for the reverse-time samplers.

A schedule is a 1-D float64 tensor t_0 = t_max > t_1 > ... > t_N of diffusion times; a sampler
takes one step per interval, so N = len(schedule) - 1 steps. Two spacings:

- uniform: equal steps in t (the paper's 1000-step baseline);
- karras: equal steps in sigma^(1/rho) with sigma = sde.std(t) (Karras et al. 2022, rho = 7),
  mapped back to t with sde.time_of_std. It crowds steps at small noise, where the score
  changes fastest.
- karras_time: equal steps in t^(1/rho), the Karras ramp applied to the diffusion time itself:
  what the research code's get_sigmas_karras(n, t_min, t_max) does (it passes times, not noise
  levels). Its nodes differ from karras's by up to a few percent (tests/sampling).

With ``denoise=True`` (the default of `make_schedule`) the N-point grid from t_max to t_min is
followed by t = 0 (sigma = 0): the last step is then the noise-free denoising step from t_min
(Tweedie's formula x + std(t_min)^2 * score for a first-order step). This is what the paper's
"noise-free mean of the last step" and Karras et al.'s final step to sigma = 0 both do, and it
keeps N steps = N score evaluations for the first-order samplers. With ``denoise=False`` the
grid has N + 1 points from t_max to t_min and the samples keep the noise level std(t_min).
"""

from __future__ import annotations

import torch

from diffclosure.config import ConfigError

KINDS = ("uniform", "karras", "karras_time")


def _check(n_points: int, t_max: float, t_min: float) -> None:
    if n_points < 1:
        raise ConfigError(f"sampling steps: need at least 1 step, got {n_points}")
    if not 0 < t_min < t_max:
        raise ConfigError(
            f"sampling t_min/t_max: need 0 < t_min < t_max, got t_min={t_min}, t_max={t_max}"
        )


def uniform(sde, n_points: int, t_max: float = 1.0, t_min: float = 1e-3) -> torch.Tensor:
    """`n_points` times equally spaced from t_max down to t_min (just [t_max] if n_points=1)."""
    _check(n_points, t_max, t_min)
    if n_points == 1:
        return torch.tensor([t_max], dtype=torch.float64)
    return torch.linspace(t_max, t_min, n_points, dtype=torch.float64)


def karras(
    sde, n_points: int, t_max: float = 0.1, t_min: float = 1e-3, rho: float = 7.0
) -> torch.Tensor:
    """`n_points` times equally spaced in std(t)^(1/rho), from t_max down to t_min."""
    _check(n_points, t_max, t_min)
    if n_points == 1:
        return torch.tensor([t_max], dtype=torch.float64)
    s_hi = sde.std(float(t_max)) ** (1.0 / rho)
    s_lo = sde.std(float(t_min)) ** (1.0 / rho)
    frac = torch.linspace(0.0, 1.0, n_points, dtype=torch.float64)
    sigma = (s_hi + frac * (s_lo - s_hi)) ** rho
    t = sde.time_of_std(sigma)
    # Pin the ends exactly: the std/time_of_std round trip moves them in the last bits.
    t[0], t[-1] = t_max, t_min
    return t


def karras_time(n_points: int, t_max: float = 0.1, t_min: float = 1e-3,
                rho: float = 7.0) -> torch.Tensor:
    """`n_points` times equally spaced in t^(1/rho), from t_max down to t_min."""
    _check(n_points, t_max, t_min)
    if n_points == 1:
        return torch.tensor([t_max], dtype=torch.float64)
    frac = torch.linspace(0.0, 1.0, n_points, dtype=torch.float64)
    hi, lo = float(t_max) ** (1.0 / rho), float(t_min) ** (1.0 / rho)
    t = (hi + frac * (lo - hi)) ** rho
    t[0], t[-1] = t_max, t_min
    return t


def make_schedule(
    kind: str,
    sde,
    steps: int,
    t_max: float = 1.0,
    t_min: float = 1e-3,
    rho: float = 7.0,
    denoise: bool = True,
) -> torch.Tensor:
    """The time grid of a `steps`-step sampler (steps + 1 points; see the module docstring)."""
    if kind not in KINDS:
        raise ConfigError(f"sampling schedule: unknown schedule '{kind}'; choose one of {KINDS}")
    if steps < 1:
        raise ConfigError(f"sampling steps: need at least 1 step, got {steps}")
    n_points = steps if denoise else steps + 1
    if kind == "uniform":
        grid = uniform(sde, n_points, t_max, t_min)
    elif kind == "karras_time":
        grid = karras_time(n_points, t_max, t_min, rho)
    else:
        grid = karras(sde, n_points, t_max, t_min, rho)
    if denoise:
        grid = torch.cat([grid, torch.zeros(1, dtype=torch.float64)])
    return grid
