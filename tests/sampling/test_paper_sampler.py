"""The paper's sampler, exactly: the research code's Karras grid in time and its Euler-Maruyama
loop (AIMS-Madison/SBM_FNO_Closure, utility.py: get_sigmas_karras and sampler), transcribed here
on raw Gaussian data, against paper_em on the same data normalised by its std."""

import math

import pytest
import torch

from diffclosure.model.sde import make_sde
from diffclosure.sampling.denoiser import Denoiser
from diffclosure.sampling.samplers import make_sampler
from diffclosure.sampling.schedules import make_schedule

SDE = make_sde({"kind": "ve", "s": 26.0})


def research_grid(n, time_min, time_max, rho=7.0):
    """get_sigmas_karras as the research code calls it: with times, then a final 0."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    grid = (time_max ** (1 / rho) + ramp * (time_min ** (1 / rho) - time_max ** (1 / rho))) ** rho
    return torch.cat([grid, grid.new_zeros(1)])


def research_loop(score_raw, shape, num_steps, time_noises, gen):
    """utility.sampler's loop, on raw data, drawing its noise from `gen` in the same order."""
    def marginal_prob_std(t):
        return torch.sqrt((26.0 ** (2 * t) - 1.0) / (2 * math.log(26.0)))

    def diffusion_coeff(t):
        return 26.0**t

    t = torch.ones(shape[0], dtype=torch.float64) * time_noises[0]
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * marginal_prob_std(t)[:, None, None]
    mean_x = x
    for i in range(num_steps):
        batch_time_step = torch.ones(shape[0], dtype=torch.float64) * time_noises[i]
        step_size = time_noises[i] - time_noises[i + 1]
        g = diffusion_coeff(batch_time_step)
        grad = score_raw(batch_time_step, x)
        mean_x = x + (g**2)[:, None, None] * grad * step_size
        x = mean_x + torch.sqrt(step_size) * g[:, None, None] * torch.randn(
            x.shape, generator=gen, dtype=torch.float64)
    return mean_x


def test_the_karras_time_grid_is_the_research_codes_and_not_our_karras_grid():
    ours = make_schedule("karras_time", SDE, 10, 0.1, 1e-3)
    torch.testing.assert_close(ours, research_grid(10, 1e-3, 0.1), rtol=1e-12, atol=0)
    sigma_spaced = make_schedule("karras", SDE, 10, 0.1, 1e-3)
    rel = ((sigma_spaced[1:-2] - ours[1:-2]).abs() / ours[1:-2]).max()
    assert rel > 0.005  # spacing noise levels is another sampler


@pytest.mark.parametrize("scale", [0.28, 1.0])
def test_paper_em_on_normalised_data_is_the_research_loop_on_raw_data(scale):
    """Raw data N(0, scale^2) per point, whose exact score is -x / (scale^2 + std(t)^2); ours
    sees x / scale and the score of N(0, 1). Same seed, same draws: the same samples."""
    shape = (6, 8, 8)

    def score_raw(t, x):
        return -x / (scale**2 + SDE.std(t)[:, None, None] ** 2)

    def score_norm(x, t, cond):
        return -x / (1.0 + SDE.std(t.double())[:, None, None, None] ** 2)

    grid = research_grid(10, 1e-3, 0.1)
    raw = research_loop(score_raw, shape, 10, grid, torch.Generator().manual_seed(3))
    sampler = make_sampler({"name": "paper_em", "steps": 10, "schedule": "karras_time",
                            "t_max": 0.1, "t_min": 1e-3, "start": "zero"})
    res = sampler(Denoiser(score_norm, SDE, scale=scale), (6, 1, 8, 8),
                  torch.Generator().manual_seed(3), dtype=torch.float64)
    assert res.nfe == 10
    torch.testing.assert_close(scale * res.samples[:, 0], raw, rtol=1e-10, atol=1e-12)
