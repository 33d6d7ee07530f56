"""DSM loss against the closed form for Gaussian data.

For x0 ~ N(mu, s0^2 I) in D pixels and x_t = x0 + sigma z, the exact score is
-(x_t - mu)/(s0^2 + sigma^2), and score*sigma + z = (s0^2 z - sigma (x0 - mu))/(s0^2 + sigma^2)
is N(0, v I) with v = s0^2/(s0^2 + sigma^2). The per-sample loss is v * chi^2_D: mean D v,
variance 2 D v^2. A score off by a constant delta adds exactly D delta^2 sigma^2 in expectation.
"""

import math

import pytest
import torch
from scipy.integrate import quad

from diffclosure.model.loss import dsm_loss, log_uniform_times, uniform_times
from diffclosure.model.sde import VESDE

from support.ve_sde import ve_std

torch.set_num_threads(1)
S = 26.0
SDE = VESDE(S)
MU, S0, N = 0.7, 0.5, 8
D = N * N


def gaussian_batch(b, gen):
    return MU + S0 * torch.randn(b, 1, N, N, generator=gen, dtype=torch.float64)


def exact_score(x, t, cond):
    std = ve_std(t, S).reshape(-1, 1, 1, 1)
    return -(x - MU) / (S0**2 + std**2)


@pytest.mark.parametrize("t_value", [1e-3, 0.05, 0.3, 1.0])
def test_loss_at_exact_score_matches_closed_form(t_value):
    gen = torch.Generator().manual_seed(0)
    b = 4000
    x0 = gaussian_batch(b, gen)
    t = torch.full((b,), t_value, dtype=torch.float64)
    per = dsm_loss(exact_score, x0, None, SDE, t=t, generator=gen, reduce=False)
    sigma = ve_std(t_value, S)
    v = S0**2 / (S0**2 + sigma**2)
    expected, stderr = D * v, v * math.sqrt(2 * D / b)
    assert abs(per.mean().item() - expected) < 5 * stderr
    # per-sample sums are v * chi^2_D: their variance is 2 D v^2
    assert per.var().item() == pytest.approx(2 * D * v**2, rel=0.15)


def test_exact_score_beats_perturbed_scores():
    gen = torch.Generator().manual_seed(1)
    b = 3000
    x0 = gaussian_batch(b, gen)
    t = torch.full((b,), 0.4, dtype=torch.float64)
    z = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    sigma = ve_std(0.4, S)
    base = dsm_loss(exact_score, x0, None, SDE, t=t, z=z)
    # same noise for every candidate: differences are measured without sampling noise in z
    for delta in (0.05, -0.2, 0.5):
        shifted = dsm_loss(lambda x, tt, c, d=delta: exact_score(x, tt, c) + d,
                           x0, None, SDE, t=t, z=z)
        excess = (shifted - base).item()
        assert excess > 0
        assert excess == pytest.approx(D * delta**2 * sigma**2, rel=0.1)
    for scale in (0.9, 1.1):
        scaled = dsm_loss(lambda x, tt, c, s=scale: s * exact_score(x, tt, c),
                          x0, None, SDE, t=t, z=z)
        assert scaled.item() > base.item()


def test_time_averaged_loss_matches_integral():
    t_min, t_max = 1e-2, 1.0
    gen = torch.Generator().manual_seed(2)
    b = 20000
    x0 = gaussian_batch(b, gen)
    per = dsm_loss(exact_score, x0, None, SDE, uniform_times(t_min, t_max), gen, reduce=False)

    def v(t):
        return S0**2 / (S0**2 + ve_std(t, S) ** 2)

    expected = D * quad(v, t_min, t_max)[0] / (t_max - t_min)
    stderr = per.std().item() / math.sqrt(b)
    assert abs(per.mean().item() - expected) < 5 * stderr


def test_time_samplers_respect_their_range():
    gen = torch.Generator().manual_seed(3)
    for make in (uniform_times, log_uniform_times):
        t = make(2e-5, 2.0)(10000, gen, "cpu")
        assert t.min() >= 2e-5 and t.max() <= 2.0
    t = log_uniform_times(1e-4, 1.0)(20000, gen, "cpu")
    # log t uniform: a quarter of the samples below 10^-3 (one of four decades)
    assert (t < 1e-3).float().mean().item() == pytest.approx(0.25, abs=0.02)
