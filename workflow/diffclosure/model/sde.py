"""Forward noising SDEs behind one small interface, so samplers and training never special-case.

An SDE here is dx = f(x, t) dt + g(t) dW on t in [0, 1] with a Gaussian perturbation kernel
x_t | x_0 ~ N(mean_scale(t) x_0, std(t)^2 I). Samplers only use drift, diffusion, std,
mean_scale and prior_std, so a VP or EDM-style parameterisation can be added beside VESDE.
"""

from __future__ import annotations

import math

import torch

from diffclosure.config import ConfigError


class VESDE:
    """Variance exploding SDE: drift 0, g(t) = s^t, std(t) = sqrt((s^(2t) - 1) / (2 ln s))."""

    kind = "ve"

    def __init__(self, s: float = 26.0):
        if not s > 1:
            raise ConfigError(f"sde.s: must exceed 1, got {s}")
        self.s = float(s)
        self._log_s = math.log(self.s)

    def drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)

    def diffusion(self, t):
        """g(t); works on floats and tensors."""
        return self.s**t

    def std(self, t):
        """Marginal std of x_t - x_0, sqrt(int_0^t g^2)."""
        if isinstance(t, torch.Tensor):
            return torch.sqrt((self.s ** (2 * t) - 1.0) / (2 * self._log_s))
        return math.sqrt((self.s ** (2 * t) - 1.0) / (2 * self._log_s))

    def mean_scale(self, t):
        return torch.ones_like(t) if isinstance(t, torch.Tensor) else 1.0

    def prior_std(self, t: float = 1.0) -> float:
        return self.std(t)

    def time_of_std(self, sigma):
        """Inverse of std(t): the time at which the marginal std equals sigma."""
        if isinstance(sigma, torch.Tensor):
            return torch.log1p(2 * self._log_s * sigma**2) / (2 * self._log_s)
        return math.log1p(2 * self._log_s * sigma**2) / (2 * self._log_s)

    def settings(self) -> dict:
        return {"kind": self.kind, "s": self.s}


KINDS = ("ve",)


def make_sde(cfg: dict) -> VESDE:
    """Build the SDE from the config's `sde` section (a ConfigError names the bad field)."""
    kind = cfg.get("kind", "ve")
    if kind == "ve":
        return VESDE(cfg.get("s", 26.0))
    raise ConfigError(f"sde.kind: unknown SDE '{kind}'; choose one of {list(KINDS)}")
