"""Denoising score matching (Vincent 2011; Song et al. 2021), as in the paper.

For x0 from the data, t from a time distribution and z ~ N(0, I), x_t = x0 + std(t) z has the
conditional score -z/std(t). The loss is the batch mean of the pixel sum of (score*std(t) + z)^2;
its minimiser over all functions is the true score of the marginal of x_t (given the condition).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

TimeSampler = Callable[[int, torch.Generator | None, torch.device], torch.Tensor]


def uniform_times(t_min: float, t_max: float) -> TimeSampler:
    """t ~ U(t_min, t_max), the paper's choice."""

    def sample(batch: int, generator=None, device="cpu") -> torch.Tensor:
        u = torch.rand(batch, generator=generator, device=device)
        return t_min + (t_max - t_min) * u

    return sample


def log_uniform_times(t_min: float, t_max: float) -> TimeSampler:
    """log t ~ U(log t_min, log t_max): more weight on small noise levels."""
    lo, hi = torch.log(torch.tensor(t_min)).item(), torch.log(torch.tensor(t_max)).item()

    def sample(batch: int, generator=None, device="cpu") -> torch.Tensor:
        u = torch.rand(batch, generator=generator, device=device)
        return torch.exp(lo + (hi - lo) * u)

    return sample


def dsm_loss(
    score_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor],
    x0: torch.Tensor,
    cond: torch.Tensor | None,
    sde,
    t_sampler: TimeSampler | None = None,
    generator: torch.Generator | None = None,
    t: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    reduce: bool = True,
) -> torch.Tensor:
    """DSM loss of any `score_fn(x_t, t, cond)`.

    Times come from `t`, else from `t_sampler(batch, generator, device)`; noise from `z`, else
    drawn with `generator`. With `reduce=False` the per-sample pixel sums (B,) are returned
    (validation accumulates them). The default time sampler is U(2e-5, 1).
    """
    b = x0.shape[0]
    if t is None:
        t_sampler = t_sampler or uniform_times(2e-5, 1.0)
        t = t_sampler(b, generator, x0.device)
    if z is None:
        z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    std = sde.std(t).to(x0.dtype).reshape(-1, *([1] * (x0.ndim - 1)))
    x_t = x0 + std * z
    score = score_fn(x_t, t, cond)
    per_sample = ((score.float() * std + z) ** 2).flatten(1).sum(dim=1)
    return per_sample.mean() if reduce else per_sample
