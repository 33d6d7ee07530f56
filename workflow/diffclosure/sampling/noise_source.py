"""Where a sampler's Gaussian draws come from: a torch.Generator (independent draws), or a
CorrelatedNoise whose draws evolve in time across the samplings of a coupled run.

A coupled run samples its closure every R solver steps. With independent noise at every
sampling the members' differences add up like white noise over the steps, while the model's
error is coherent in time: the ensemble stays far narrower than its error (README, Results).
CorrelatedNoise makes each random input of the sampler (its start noise, the Euler-Maruyama and
Langevin noises, the one-step generator's latent) an AR(1) process across samplings,

    z_j = rho z_{j-1} + sqrt(1 - rho^2) xi_j,   rho = exp(-R dt / tau),

as stochastic parameterisations of weather models (SPPT) and the generative pyqg closures of
Perezhogin, Zanna & Fernandez-Granda (2023) evolve theirs. Every z_j is N(0, 1): a sampling sees
exactly the noise law it was trained for, only its memory of the last sampling changes. The k-th
draw of a sampling continues the k-th draw of the previous one: a sampler makes the same draws
in the same order every time (same steps, same shapes).
"""

from __future__ import annotations

import math

import torch


class CorrelatedNoise:
    """AR(1) Gaussian draws across samplings, from `generator`, with lag-one correlation rho."""

    def __init__(self, generator: torch.Generator, rho: float):
        if not 0.0 <= rho < 1.0:
            raise ValueError(f"rho must be in [0, 1), got {rho}")
        self.generator, self.rho = generator, float(rho)
        self._previous: list[torch.Tensor] = []
        self._current: list[torch.Tensor] = []

    @property
    def device(self) -> torch.device:
        return self.generator.device

    def begin(self) -> None:
        """Start a new sampling: its k-th draw continues the last sampling's k-th."""
        self._previous, self._current = self._current, []

    def randn(self, shape, dtype=torch.float32) -> torch.Tensor:
        fresh = torch.randn(shape, generator=self.generator, device=self.device, dtype=dtype)
        k = len(self._current)
        if k < len(self._previous) and self._previous[k].shape == fresh.shape:
            z = self.rho * self._previous[k] + math.sqrt(1.0 - self.rho**2) * fresh
        else:  # the first sampling, or a draw the last one did not make: stationary start
            z = fresh
        self._current.append(z)
        return z


def randn(shape, source, dtype=torch.float32, device=None) -> torch.Tensor:
    """Standard normal draws of `shape` from `source`: a torch.Generator or a CorrelatedNoise."""
    if isinstance(source, CorrelatedNoise):
        out = source.randn(shape, dtype)
        return out if device is None else out.to(device)
    return torch.randn(shape, generator=source, device=device or source.device, dtype=dtype)


def rho_for(tau: float, interval: float) -> float:
    """The lag-one correlation of draws `interval` time units apart, for a correlation time
    tau > 0 (tau 0 means independent draws: no CorrelatedNoise at all)."""
    if tau <= 0 or interval <= 0:
        raise ValueError(f"need tau > 0 and interval > 0, got {tau}, {interval}")
    return math.exp(-interval / tau)
