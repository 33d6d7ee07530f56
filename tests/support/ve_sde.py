"""The variance-exploding SDE's marginal std written from its definition, for tests that need
the noise level a score or loss should see (never the SDE object's own std).

dx = g(t) dW with g(t) = s^t (model/sde.py, after Song et al. 2021's VE SDE as the paper uses
it), from x_0 at t = 0: x_t - x_0 has variance int_0^t s^(2u) du = (s^(2t) - 1) / (2 ln s).
"""

from __future__ import annotations

import math

import torch


def ve_std(t, s: float):
    """sqrt((s^(2t) - 1) / (2 ln s)) for a float t or a tensor of times (same dtype)."""
    var = (s ** (2 * t) - 1.0) / (2.0 * math.log(s))
    return torch.sqrt(var) if isinstance(var, torch.Tensor) else math.sqrt(var)
