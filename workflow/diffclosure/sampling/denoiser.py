"""The network as every sampler sees it: one wrapper between a score function and the samplers.

A Denoiser holds a score function score_fn(x, t, condition) (the learned network behind
sampling.closure_sampler, or the analytic score of a Gaussian in the tests), the SDE whose noise
levels it was trained on, and the condition it is run with. The samplers (sampling.samplers)
ask it for

- score(x, t): the score of x_t at the diffusion time t (a float), for the reverse SDE;
- denoised(x, t): the data prediction (Tweedie) x0 = x + sigma^2 score(x, t), sigma = std(t),
  for the probability-flow ODE solvers;

and never see the condition, the time vector the network wants or the conversion between the
two. Every network evaluation goes through `score`, which counts it: `calls` is the NFE of a
run (one call on the whole batch counts once), counted, not predicted.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class Denoiser:
    """score_fn with its SDE and condition bound, counting its calls.

    Args:
        score_fn: score_fn(x (B, ...), t (B,), condition) -> score of x_t, shaped as x.
        sde: the forward SDE (model.sde); std(t) is the noise level at time t.
        condition: passed through to score_fn unchanged (None for an unconditional score).
        scale: the std the data were divided by (the target's std in stats.json): x here is
            x_raw / scale. Only paper_em reads it, to take the research code's steps on the raw
            data; every other sampler works in the normalised units alone.
    """

    def __init__(self, score_fn: Callable, sde, condition=None, scale: float = 1.0):
        self.score_fn, self.sde, self.condition = score_fn, sde, condition
        self.scale = float(scale)
        self.calls = 0

    def sigma(self, t: float) -> float:
        """Noise level std(t) at the diffusion time t."""
        return self.sde.std(t)

    def score(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """Score of x at time t: one network evaluation."""
        self.calls += 1
        tv = torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)
        return self.score_fn(x, tv, self.condition)

    def denoised(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """Data prediction x0 = x + sigma^2 score(x, t) (Tweedie's formula for the VE SDE)."""
        sigma = self.sigma(t)
        return x + (sigma * sigma) * self.score(x, t)
