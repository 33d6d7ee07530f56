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

With a correlation per wavenumber shell (rho_shells, from the error's memory per scale:
metrics.correlation_time.shell_correlation_times), the AR(1) runs per Fourier mode of the last two
axes, z_j = F^-1[rho(|k|) F z_{j-1} + sqrt(1 - rho(|k|)^2) F xi_j]. rho is real and even in k, so
every mode of z_j has the variance of white noise again: z_j is still N(0, 1) at every point and
white in space, and only scales that remember keep their draws. Why per scale: the LES preset's
error remembers 0.5 of itself one record later at |k| <= 4 and 0.06 at the cutoff, and a draw held
at the smallest resolved scales forces them like a stochastic backscatter, piling up energy there.
"""

from __future__ import annotations

import math

import torch

from diffclosure.metrics.spectra import _shells


class CorrelatedNoise:
    """AR(1) Gaussian draws across samplings, from `generator`, with lag-one correlation rho;
    with `rho_shells` (rho of integer wavenumber shell 0, 1, ...), per Fourier mode of square
    draws instead (module docstring; draws that are not square fields keep rho)."""

    def __init__(self, generator: torch.Generator, rho: float, rho_shells=None):
        for r in [rho, *(rho_shells if rho_shells is not None else [])]:
            if not 0.0 <= r < 1.0:
                raise ValueError(f"rho must be in [0, 1), got {r}")
        self.generator, self.rho = generator, float(rho)
        self.rho_shells = None if rho_shells is None else [float(r) for r in rho_shells]
        self._filters: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
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
            z = self._continue(self._previous[k], fresh)
        else:  # the first sampling, or a draw the last one did not make: stationary start
            z = fresh
        self._current.append(z)
        return z

    def _continue(self, previous: torch.Tensor, fresh: torch.Tensor) -> torch.Tensor:
        n = fresh.shape[-1]
        if self.rho_shells is None or fresh.dim() < 2 or fresh.shape[-2] != n:
            return self.rho * previous + math.sqrt(1.0 - self.rho**2) * fresh
        keep, new = self._filter(n, fresh.dtype)
        dims = (-2, -1)
        spec = (keep * torch.fft.rfft2(previous, dim=dims, norm="ortho")
                + new * torch.fft.rfft2(fresh, dim=dims, norm="ortho"))
        return torch.fft.irfft2(spec, s=(n, n), dim=dims, norm="ortho")

    def _filter(self, n: int, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """rho(|k|) and sqrt(1 - rho(|k|)^2) on the rfft2 layout of an n x n field; shells past
        the list's end take its last entry."""
        key = (n, dtype)
        if key not in self._filters:
            # the shells of metrics.spectra, on the rfft2 half of the fft2 layout
            shell = torch.from_numpy(_shells(n)[0].reshape(n, n)[:, : n // 2 + 1])
            table = torch.tensor(self.rho_shells, dtype=torch.float64)
            rho = table[shell.clamp(max=table.numel() - 1)]
            self._filters[key] = (rho.to(self.device, dtype),
                                  torch.sqrt(1.0 - rho**2).to(self.device, dtype))
        return self._filters[key]


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
