"""Samplers against the exact score of a Gaussian random field diagonal in Fourier space.

The field x = mu + C^(1/2) z with C = F^-1 diag(lam) F (F the orthonormal 2-D DFT, lam_k = lam_-k
so C is real). Under the VE SDE, x_t ~ N(mu, C + sigma(t)^2 I), so the score is
-(C + sigma^2)^-1 (x - mu), applied in the real eigenbasis of C (eigenvalues = lam), and the
probability-flow ODE solution is closed-form per mode:
y(sigma) = y(T) sqrt((lam + sigma^2) / (lam + T^2)).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffclosure.config import ConfigError
from diffclosure.model.score_net import build_score_net
from diffclosure.model.sde import VESDE
from diffclosure.sampling.closure_sampler import ClosureSampler
from diffclosure.sampling.denoiser import Denoiser
from diffclosure.sampling.samplers import SAMPLERS, make_sampler, run_sampler
from diffclosure.sampling.schedules import karras, make_schedule, uniform

N = 8
SDE = VESDE(26.0)


def _field():
    k = torch.fft.fftfreq(N, 1.0 / N, dtype=torch.float64)
    ky, kx = k[:, None], k[None, :]
    lam = 0.1 + 0.9 / (1 + 0.3 * kx**2 + 0.1 * ky**2)  # anisotropic, lam(k) = lam(-k)
    xs = torch.arange(N, dtype=torch.float64) / N
    mu = torch.sin(2 * math.pi * xs)[None, :] + 0.5 * torch.cos(2 * math.pi * xs)[:, None] + 0.3
    # C as a real matrix, then its eigenbasis: exact, and two small matmuls per score call.
    eye = torch.eye(N * N, dtype=torch.float64).reshape(-1, N, N)
    cov = torch.fft.ifft2(lam * torch.fft.fft2(eye, norm="ortho"), norm="ortho").real
    ev, vecs = torch.linalg.eigh(cov.reshape(N * N, N * N))
    return lam, mu, ev, vecs


LAM, MU, EV, VECS = _field()


def gaussian_score(x, t, cond):
    """Exact score of x_t; `cond` is the mean field (so the condition path is exercised)."""
    s2 = SDE.std(t.to(torch.float64))[:, None] ** 2
    y = (x - cond).reshape(x.shape[0], -1) @ VECS
    return (-(y / (EV + s2)) @ VECS.T).reshape(x.shape).to(x.dtype)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_schedules_are_decreasing_with_right_ends():
    for grid in (uniform(SDE, 11, 1.0, 1e-3), karras(SDE, 11, 0.1, 1e-3, 7.0)):
        assert grid[0] > grid[-1] and bool((grid[1:] < grid[:-1]).all())
    k = karras(SDE, 11, 0.1, 1e-3, 7.0)
    assert float(k[0]) == 0.1 and float(k[-1]) == 1e-3
    # Karras spacing: equal steps in std^(1/7).
    r = SDE.std(k) ** (1 / 7)
    assert torch.allclose(r[1:] - r[:-1], (r[1] - r[0]).expand(10), rtol=1e-9)
    with_zero = make_schedule("karras", SDE, 10, 0.1, 1e-3, denoise=True)
    assert len(with_zero) == 11 and float(with_zero[-1]) == 0.0 and float(with_zero[-2]) == 1e-3
    without = make_schedule("karras", SDE, 10, 0.1, 1e-3, denoise=False)
    assert len(without) == 11 and float(without[-1]) == 1e-3


BUDGETS = [
    {"name": "em", "steps": 1000, "schedule": "uniform", "t_max": 1.0},
    {"name": "em", "steps": 300, "schedule": "karras", "t_max": 1.0},
    {"name": "pc", "steps": 200, "schedule": "karras", "t_max": 1.0},  # the default snr
    {"name": "ode_euler", "steps": 400, "schedule": "karras", "t_max": 1.0},
    {"name": "ode_heun", "steps": 20, "schedule": "karras", "t_max": 1.0},
    {"name": "dpm2m", "steps": 20, "schedule": "karras", "t_max": 1.0},
]


@pytest.mark.parametrize("cfg", BUDGETS, ids=lambda c: f"{c['name']}-{c['steps']}-{c['schedule']}")
@pytest.mark.slow
def test_samples_match_gaussian_mean_and_mode_variances(cfg):
    batch = 2000
    sampler = make_sampler(cfg)
    gen = torch.Generator().manual_seed(11)
    res = sampler(Denoiser(gaussian_score, SDE, MU), (batch, N, N), gen, prior_mean=MU,
                  dtype=torch.float64)
    assert res.samples.shape == (batch, N, N)
    modes = torch.fft.fft2(res.samples - MU, norm="ortho")
    mean_modes = modes.mean(0)
    # Mean: each mode of the sample mean has variance lam/B, so B|m_k|^2/lam averages 1.
    z2 = mean_modes.abs() ** 2 * batch / LAM
    assert float(z2.mean()) < 1.8, float(z2.mean())
    assert float(z2.max()) < 16.0
    # Per-mode variance: relative MC error ~ 2-3% per mode, ~0.5% for the average.
    ratio = ((modes - mean_modes).abs() ** 2).mean(0) / LAM
    assert abs(float(ratio.mean()) - 1) < 0.03, float(ratio.mean())
    assert float((ratio - 1).abs().max()) < 0.16, float((ratio - 1).abs().max())


@pytest.mark.slow
def test_pc_default_snr_keeps_the_variance_within_one_percent():
    """At generous steps the default corrector's unadjusted-Langevin bias stays below 1%."""
    batch = 4000
    sampler = make_sampler({"name": "pc", "steps": 400, "schedule": "karras", "t_max": 1.0})
    res = sampler(Denoiser(gaussian_score, SDE, MU), (batch, N, N),
                  torch.Generator().manual_seed(5), prior_mean=MU, dtype=torch.float64)
    modes = torch.fft.fft2(res.samples - MU, norm="ortho")
    ratio = ((modes - modes.mean(0)).abs() ** 2).mean(0) / LAM
    # Pooled over 64 modes the Monte Carlo error is sqrt(2 / batch) / 8 ~ 0.3%.
    assert abs(float(ratio.mean()) - 1) < 0.01, float(ratio.mean())


def _ode_error(name: str, steps: int, t_max: float = 0.5, t_min: float = 1e-3) -> float:
    batch = 8
    sampler = make_sampler({"name": name, "steps": steps, "t_max": t_max, "t_min": t_min,
                            "denoise": False})
    res = sampler(Denoiser(gaussian_score, SDE, MU), (batch, N, N),
                  torch.Generator().manual_seed(3), prior_mean=MU, dtype=torch.float64)
    # The same start the sampler drew, then the exact flow to sigma_min.
    big_t, s_min = SDE.std(t_max), SDE.std(t_min)
    x_start = torch.randn((batch, N, N), generator=torch.Generator().manual_seed(3),
                          dtype=torch.float64) * big_t + MU
    y = (x_start - MU).reshape(batch, -1) @ VECS
    exact = ((y * torch.sqrt((EV + s_min**2) / (EV + big_t**2))) @ VECS.T).reshape(batch, N, N)
    exact = exact + MU
    return float((res.samples - exact).norm() / exact.norm())


@pytest.mark.parametrize("name,order", [("ode_euler", 1), ("ode_heun", 2), ("dpm2m", 2)])
def test_probability_flow_convergence_order(name, order):
    steps = [8, 16, 32, 64]
    errors = [_ode_error(name, s) for s in steps]
    slope = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.25, (errors, slope)
    assert errors[-1] < errors[0]


def _small_fno_sampler(onestep: bool = False) -> ClosureSampler:
    """The learned-closure path with a small random FNO score network (2 conditions)."""
    torch.manual_seed(0)
    model = {"width": 4, "modes": 2, "layers": 1, "embedding_features": 4,
             "embedding_scale": 30.0, "head": [4], "coords": False}
    settings = {"sde": {"kind": "ve", "s": 26.0}, "conditions": ["vorticity", "measurements"],
                "stats": {"target": {"mean": 0.5, "std": 2.0},
                          "vorticity": {"mean": 0.0, "std": 3.0}}}
    if onestep:  # the same network posing as the distilled generator
        settings["onestep"] = {"t_max": 0.1, "start": "measurements"}
    return ClosureSampler(build_score_net(model, SDE, 2).eval(), settings)


# Network evaluations of N = 5 steps, from the definition of each method. With denoise the
# grid ends with a step to sigma = 0.
NFE_OF_5_STEPS = [
    ("em", True, 5), ("em", False, 5),  # one score per Euler-Maruyama step
    ("pc", True, 10), ("pc", False, 10),  # a Langevin corrector and a predictor per step
    ("ode_euler", True, 5), ("ode_euler", False, 5),  # one data prediction per step
    # Heun: a predictor and a corrector evaluation per step, 2N; the step to sigma = 0 is an
    # Euler step (the corrector would need the score at sigma = 0), so 2N - 1 with denoise.
    ("ode_heun", True, 9), ("ode_heun", False, 10),
    # DPM-Solver++(2M) is multistep: it reuses the last step's data prediction, one new per step.
    ("dpm2m", True, 5), ("dpm2m", False, 5),
    ("onestep", True, 1),  # the distilled generator: one jump, whatever `steps` says
]


@pytest.mark.parametrize(("name", "denoise", "nfe"), NFE_OF_5_STEPS)
def test_nfe_is_the_network_calls_the_method_defines(name, denoise, nfe):
    cs = _small_fno_sampler(onestep=name == "onestep")
    calls, encoded = [], []

    def seen(module, args, kwargs, output):
        x, t = args
        calls.append((x.shape[0], tuple(t.shape), kwargs["features"].shape[0]))

    cs.net.register_forward_hook(seen, with_kwargs=True)
    cs.net.cond_branches[0].register_forward_hook(
        lambda module, args, output: encoded.append(args[0].shape[0]))
    sampler = make_sampler({"name": name, "steps": 5, "t_max": 0.1, "denoise": denoise})
    vorticity, measurements = torch.randn(2, 8, 8), torch.randn(2, 8, 8)
    out, counted = cs.sample(sampler, vorticity, measurements, ensemble=3, return_nfe=True)
    assert len(calls) == counted == nfe
    # Each evaluation is one call on the whole batch (2 conditions x 3 members), given the
    # features of the 2 conditions, which the condition branches computed once.
    assert set(calls) == {(6, (6,), 2)}
    assert encoded == [2]
    assert out.shape == (2, 3, 8, 8) and torch.isfinite(out).all()


def test_features_computed_once_give_the_scores_of_the_full_call():
    """Sampling with the condition branches run once (features per condition, repeated for
    the members inside the network) is the same function as the network called on the
    repeated conditions at every evaluation."""
    cs = _small_fno_sampler()
    x, t = torch.randn(6, 1, 8, 8), torch.rand(6)
    cond = torch.randn(2, 2, 8, 8)
    with torch.no_grad():
        full = cs.net(x, t, cond.repeat_interleave(3, dim=0))
        once = cs.net(x, t, features=cs.net.encode(cond))
    torch.testing.assert_close(once, full, rtol=1e-5, atol=1e-5)


def test_the_deterministic_samplers_draw_no_noise():
    """Only em, paper_em and pc take the generator: the probability-flow solvers and the
    one-step jump are functions of their start state."""
    x = torch.randn(3, N, N, generator=torch.Generator().manual_seed(1))
    times = [0.1, 0.05, 0.01, 0.0]
    for name in sorted(SAMPLERS):
        gen = torch.Generator().manual_seed(2)
        state = gen.get_state()
        run_sampler(name, Denoiser(gaussian_score, SDE, MU), x, times, gen, snr=0.01)
        assert torch.equal(gen.get_state(), state) == (name not in ("em", "paper_em", "pc")), name


def test_snr_reaches_pc_and_the_other_samplers_ignore_it():
    """snr is the Langevin corrector's; the schema documents that the others ignore it."""
    def samples(name, snr):
        sampler = make_sampler({"name": name, "steps": 4, "t_max": 0.1, "snr": snr})
        gen = torch.Generator().manual_seed(4)
        return sampler(Denoiser(gaussian_score, SDE, MU), (3, N, N), gen, prior_mean=MU).samples

    assert not torch.equal(samples("pc", 0.01), samples("pc", 0.5))
    for name in ("em", "ode_euler", "ode_heun", "dpm2m", "onestep"):
        assert torch.equal(samples(name, 0.01), samples(name, 0.5)), name
    with pytest.raises(TypeError, match="snr"):
        run_sampler("pc", Denoiser(gaussian_score, SDE, MU), MU[None], [0.1, 0.0],
                    torch.Generator())


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_seed_reproducibility(name):
    sampler = make_sampler({"name": name, "steps": 4, "t_max": 0.1})

    def run(seed):
        gen = torch.Generator().manual_seed(seed)
        return sampler(Denoiser(gaussian_score, SDE, MU), (4, N, N), gen).samples

    a, b, c = run(5), run(5), run(6)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("t_max", [1e-3, 0.1])
def test_one_step_em_shrinks_each_mode_by_the_exact_factor(t_max):
    """A 1-step schedule [t_max, 0] is one noise-free EM step from x = mu + sigma z:
    x' = x + g(t)^2 t score(x, t). In the eigenbasis of C the Gaussian score is
    -y / (lam + sigma^2), so every mode shrinks by exactly f = 1 - g(t)^2 t / (lam + sigma^2),
    sigma = std(t), g(t) = s^t. (For small t, g^2 t = sigma^2 (1 + O(t ln s)) and f tends to
    Tweedie's lam / (lam + sigma^2).) t = 0.1 is the paper's truncated start: f in [0.2, 0.84];
    t = 1e-3 moves the samples by ~0.1-1%, still far above round-off."""
    batch = 64
    sampler = make_sampler({"name": "em", "steps": 1, "t_max": t_max, "t_min": 1e-4})
    res = sampler(Denoiser(gaussian_score, SDE, MU), (batch, N, N),
                  torch.Generator().manual_seed(0), prior_mean=MU, dtype=torch.float64)
    assert res.nfe == 1
    # The starting state the sampler drew from the same seed, in the eigenbasis of C.
    sigma = SDE.std(t_max)
    z = torch.randn((batch, N, N), generator=torch.Generator().manual_seed(0),
                    dtype=torch.float64)
    y0 = (sigma * z).reshape(batch, -1) @ VECS
    y1 = (res.samples - MU).reshape(batch, -1) @ VECS
    factor = 1.0 - SDE.diffusion(t_max) ** 2 * t_max / (EV + sigma**2)
    assert float((1 - factor).min()) > 5e-4  # a sampler that does nothing fails below
    assert torch.allclose(y1, factor * y0, rtol=0, atol=1e-12 * float(y0.abs().max()))


def test_make_sampler_errors_name_the_field():
    with pytest.raises(ConfigError, match="name"):
        make_sampler({"name": "ddim", "steps": 4})
    with pytest.raises(ConfigError, match="t_min"):
        make_sampler({"name": "em", "steps": 4, "t_max": 0.1, "t_min": 0.5})
    with pytest.raises(ConfigError, match="steps"):
        make_sampler({"name": "em", "steps": 0})
    with pytest.raises(ConfigError, match=r"rollout\.sampler\.steps_: unknown key"):
        make_sampler({"name": "em", "steps_": 4}, where="rollout.sampler")
    with pytest.raises(ConfigError, match=r"sampling\.samplers\[2\]: 'steps' is a required"):
        make_sampler({"name": "pc"}, where="sampling.samplers[2]")
    s = make_sampler({"name": "dpm2m", "steps": 4, "schedule": "karras", "t_max": 0.1})
    assert s.label == "dpm2m-4-karras-t0.1"
