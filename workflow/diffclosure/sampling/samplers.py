"""Reverse-time samplers for a score-based diffusion model, each one short function.

Every sampler has the signature

    sampler(score_fn, condition, shape, schedule, generator, sde, *, prior_mean=0.0,
            dtype=torch.float32, snr=DEFAULT_SNR) -> SampleResult(samples, nfe)

- score_fn(x, t, condition) -> score of x_t, any callable: x (B, ...) tensor, t (B,) tensor of
  diffusion times. The learned network (sampling.closure_sampler) and the analytic score of a
  Gaussian (the tests) go through the same code.
- schedule: decreasing times t_0 > ... > t_N (sampling.schedules); N steps. A final t_N = 0 means
  the last step lands on sigma = 0 and is taken noise-free (Tweedie / Euler to sigma = 0).
  Starting at t_0 < 1 is the paper's truncated start: x_{t_0} ~ N(prior_mean, std(t_0)^2).
- generator: a torch.Generator; its device is where the samples live. Same seed, same bits.
- x_start (optional): start from this state at t_0 instead of drawing it (no noise drawn for
  it); the distill stage takes teacher steps from states it chose.
- nfe: the number of score_fn calls actually made (one call on the whole batch counts once).

The probability-flow samplers integrate in sigma = sde.std(t) (as Karras et al.): for the VE
SDE dx/dt = -g(t)^2/2 score and d(sigma^2)/dt = g(t)^2, so dx/dsigma = -sigma * score
= (x - x0)/sigma with the data prediction x0 = x + sigma^2 * score.

NFE per sampler with N steps: em N; pc 2N; ode_euler N; ode_heun 2N, or 2N - 1 when the last
step goes to sigma = 0 (taken as an Euler step, as Karras et al. do, since the Heun corrector
would need the score at sigma = 0); dpm2m N; onestep 1 (the distilled generator, whatever N).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from diffclosure.config import ConfigError
from diffclosure.sampling.schedules import make_schedule

# Langevin corrector snr of pc. Song et al.'s 0.16 over-spreads an exact Gaussian by ~9% in
# variance at 100-1000 steps: each corrector step is an unadjusted Langevin step whose bias
# accumulates with the number of steps (~ snr^2 * steps here). At 0.01 the variance stays within
# 1% up to ~1000 steps (tests/test_samplers.py); the corrector then does little, so pc is close
# to em at twice the network evaluations.
DEFAULT_SNR = 0.01


class SampleResult(NamedTuple):
    samples: torch.Tensor
    nfe: int


class CountingScore:
    """Wraps a score function and counts its calls (the NFE)."""

    def __init__(self, score_fn: Callable):
        self.score_fn = score_fn
        self.calls = 0

    def __call__(self, x, t, condition):
        self.calls += 1
        return self.score_fn(x, t, condition)


def _setup(score_fn, shape, schedule, generator, sde, prior_mean, dtype, x_start=None):
    """Counter, the float times and stds of the grid, and the initial state x_{t_0} (x_start
    when given: the distill stage runs teacher steps from states it chose)."""
    device = generator.device
    times = [float(t) for t in schedule]
    if len(times) < 2 or any(b >= a for a, b in zip(times, times[1:], strict=False)):
        raise ValueError("schedule must hold at least two strictly decreasing times")
    sigmas = [sde.std(t) for t in times]
    if x_start is not None:
        return CountingScore(score_fn), times, sigmas, x_start.to(dtype)
    noise = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    x = noise * sigmas[0] + torch.as_tensor(prior_mean, device=device, dtype=dtype)
    return CountingScore(score_fn), times, sigmas, x


def _tvec(x: torch.Tensor, t: float) -> torch.Tensor:
    return torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)


def _randn(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


@torch.inference_mode()
def em(score_fn, condition, shape, schedule, generator, sde, *, prior_mean=0.0,
       dtype=torch.float32, x_start=None, **_) -> SampleResult:
    """Euler-Maruyama on the reverse SDE dx = -g^2 score dt + g dW-bar (time running down).

    The last step returns its noise-free mean (as the paper and Song et al. do).
    """
    score, times, _, x = _setup(score_fn, shape, schedule, generator, sde, prior_mean, dtype,
                                x_start)
    n = len(times) - 1
    for i in range(n):
        t, dt = times[i], times[i] - times[i + 1]
        g = sde.diffusion(t)
        x = x + (g * g * dt) * score(x, _tvec(x, t), condition)
        if i < n - 1:
            x = x + (g * math.sqrt(dt)) * _randn(x, generator)
    return SampleResult(x, score.calls)


@torch.inference_mode()
def pc(score_fn, condition, shape, schedule, generator, sde, *, prior_mean=0.0,
       dtype=torch.float32, snr=DEFAULT_SNR, x_start=None, **_) -> SampleResult:
    """Predictor-corrector (Song et al. 2021): one Langevin corrector step, then an EM step.

    Corrector step size eps = 2 (snr ||z|| / ||score||)^2 per sample (Song et al.'s rule,
    alpha = 1 for the VE SDE): x <- x + eps score + sqrt(2 eps) z. The last predictor step
    returns its noise-free mean.
    """
    score, times, _, x = _setup(score_fn, shape, schedule, generator, sde, prior_mean, dtype,
                                x_start)
    n = len(times) - 1
    dims = tuple(range(1, x.ndim))
    for i in range(n):
        t, dt = times[i], times[i] - times[i + 1]
        tv = _tvec(x, t)
        grad = score(x, tv, condition)
        z = _randn(x, generator)
        g_norm = torch.linalg.vector_norm(grad, dim=dims, keepdim=True)
        z_norm = torch.linalg.vector_norm(z, dim=dims, keepdim=True)
        eps = 2.0 * (snr * z_norm / g_norm.clamp_min(1e-30)) ** 2
        x = x + eps * grad + torch.sqrt(2.0 * eps) * z
        g = sde.diffusion(t)
        x = x + (g * g * dt) * score(x, tv, condition)
        if i < n - 1:
            x = x + (g * math.sqrt(dt)) * _randn(x, generator)
    return SampleResult(x, score.calls)


def _x0(score, x, t, sigma, condition):
    """Data prediction (Tweedie): x0 = x + sigma^2 * score(x, t)."""
    return x + (sigma * sigma) * score(x, _tvec(x, t), condition)


@torch.inference_mode()
def ode_euler(score_fn, condition, shape, schedule, generator, sde, *, prior_mean=0.0,
              dtype=torch.float32, x_start=None, **_) -> SampleResult:
    """Probability-flow ODE, explicit Euler in sigma: x <- x + (s' - s)(x - x0)/s."""
    score, times, sig, x = _setup(score_fn, shape, schedule, generator, sde, prior_mean, dtype,
                                  x_start)
    for i in range(len(times) - 1):
        d = (x - _x0(score, x, times[i], sig[i], condition)) / sig[i]
        x = x + (sig[i + 1] - sig[i]) * d
    return SampleResult(x, score.calls)


@torch.inference_mode()
def ode_heun(score_fn, condition, shape, schedule, generator, sde, *, prior_mean=0.0,
             dtype=torch.float32, x_start=None, **_) -> SampleResult:
    """Probability-flow ODE, Heun (trapezoidal predictor-corrector) in sigma; second order.

    A step to sigma = 0 is taken as an Euler step (Karras et al.): it lands exactly on the
    data prediction x0, and the corrector would need the score at sigma = 0.
    """
    score, times, sig, x = _setup(score_fn, shape, schedule, generator, sde, prior_mean, dtype,
                                  x_start)
    for i in range(len(times) - 1):
        h = sig[i + 1] - sig[i]
        d = (x - _x0(score, x, times[i], sig[i], condition)) / sig[i]
        x_pred = x + h * d
        if sig[i + 1] == 0:
            x = x_pred
            continue
        d_pred = (x_pred - _x0(score, x_pred, times[i + 1], sig[i + 1], condition)) / sig[i + 1]
        x = x + (0.5 * h) * (d + d_pred)
    return SampleResult(x, score.calls)


@torch.inference_mode()
def dpm2m(score_fn, condition, shape, schedule, generator, sde, *, prior_mean=0.0,
          dtype=torch.float32, x_start=None, **_) -> SampleResult:
    """DPM-Solver++(2M) for the VE probability-flow ODE, multistep in lambda = -log(sigma).

    With lambda, d(x/sigma)/dlambda = x0 * exp(lambda) exactly, so over a step of size
    h = lambda' - lambda
        x' = (sigma'/sigma) x + sigma' * int exp(lambda) x0(lambda) dlambda.
    Holding x0 constant gives the first-order step x' = (sigma'/sigma) x + (1 - sigma'/sigma) x0;
    2M replaces x0 by the extrapolation D = (1 + 1/(2r)) x0_i - 1/(2r) x0_{i-1} with
    r = h_{i-1}/h_i, which makes the step second order at one score call per step. The first
    step (no history) and a step to sigma = 0 are first order; the latter returns x0 itself,
    the denoised data prediction.
    """
    score, times, sig, x = _setup(score_fn, shape, schedule, generator, sde, prior_mean, dtype,
                                  x_start)
    x0_prev, h_prev = None, None
    for i in range(len(times) - 1):
        x0 = _x0(score, x, times[i], sig[i], condition)
        if sig[i + 1] == 0:
            x = x0
            break
        h = math.log(sig[i] / sig[i + 1])
        ratio = sig[i + 1] / sig[i]
        if x0_prev is None:
            d = x0
        else:
            r = h_prev / h
            d = (1.0 + 0.5 / r) * x0 - (0.5 / r) * x0_prev
        x = ratio * x + (1.0 - ratio) * d
        x0_prev, h_prev = x0, h
    return SampleResult(x, score.calls)


@torch.inference_mode()
def onestep(score_fn, condition, shape, schedule, generator, sde, *, prior_mean=0.0,
            dtype=torch.float32, x_start=None, **_) -> SampleResult:
    """One jump from t_0 to sigma = 0: x0 = x + sigma_0^2 score(x, t_0), a single score call.

    With a score model this is Tweedie's posterior mean (the first step of every ODE sampler);
    with the student of the distill stage (model/distill.py) it is the one-step generator
    G(z, condition) that reproduces its teacher's many-step samples. Only t_0 is used.
    """
    score, times, sig, x = _setup(score_fn, shape, schedule, generator, sde, prior_mean, dtype,
                                  x_start)
    return SampleResult(_x0(score, x, times[0], sig[0], condition), score.calls)


SAMPLERS: dict[str, Callable[..., SampleResult]] = {
    "onestep": onestep,
    "em": em,
    "pc": pc,
    "ode_euler": ode_euler,
    "ode_heun": ode_heun,
    "dpm2m": dpm2m,
}


def expected_nfe(name: str, steps: int, denoise: bool = True) -> int:
    """Score evaluations a sampler makes for `steps` steps (what it reports as nfe)."""
    if name == "onestep":
        return 1
    if name in ("em", "ode_euler", "dpm2m"):
        return steps
    if name == "pc":
        return 2 * steps
    if name == "ode_heun":
        return 2 * steps - (1 if denoise else 0)
    raise ConfigError(f"sampler name: unknown sampler '{name}'; choose one of {sorted(SAMPLERS)}")



START_MODES = ("auto", "zero", "measurements")

@dataclass(frozen=True)
class Sampler:
    """A sampler with its step budget and schedule, built from one config entry."""

    name: str
    steps: int
    schedule: str = "karras"
    t_max: float = 1.0
    t_min: float = 1e-3
    rho: float = 7.0
    snr: float = DEFAULT_SNR
    denoise: bool = True
    # Mean of the initial noise: "zero" (the paper's N(0, std(t_max)^2)), "measurements" (centred
    # on the encoded sparse measurements) or "auto" (measurements when the model has them).
    start: str = "auto"

    @property
    def label(self) -> str:
        if self.name == "onestep":  # start time and mean are the distilled generator's
            return "onestep"
        base = f"{self.name}-{self.steps}-{self.schedule}-t{self.t_max:g}"
        return base if self.start == "auto" else f"{base}-{self.start}"

    @property
    def nfe(self) -> int:
        return expected_nfe(self.name, self.steps, self.denoise)

    def times(self, sde) -> torch.Tensor:
        if self.name == "onestep":
            return torch.tensor([self.t_max, 0.0], dtype=torch.float64)
        return make_schedule(
            self.schedule, sde, self.steps, self.t_max, self.t_min, self.rho, self.denoise
        )

    def __call__(self, score_fn, condition, shape, generator, sde, **options: Any) -> SampleResult:
        fn = SAMPLERS[self.name]
        return fn(score_fn, condition, shape, self.times(sde), generator, sde,
                  snr=self.snr, **options)

    def as_dict(self) -> dict:
        return {
            "name": self.name, "steps": self.steps, "schedule": self.schedule,
            "t_max": self.t_max, "t_min": self.t_min, "rho": self.rho, "snr": self.snr,
            "denoise": self.denoise, "start": self.start,
        }


def make_sampler(cfg: dict, where: str = "sampling.samplers") -> Sampler:
    """Build a Sampler from a config entry {name, steps, schedule, t_max, t_min, rho, snr}.

    Missing keys take the schema's defaults; `denoise` (default true) may be given too.
    `where` names the entry in error messages.
    """
    known = {"name", "steps", "schedule", "t_max", "t_min", "rho", "snr", "denoise", "start"}
    extra = sorted(set(cfg) - known)
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(extra)}; known: {sorted(known)}")
    name = cfg.get("name")
    if name not in SAMPLERS:
        raise ConfigError(
            f"{where}.name: unknown sampler '{name}'; choose one of {sorted(SAMPLERS)}"
        )
    # The one-step generator takes one step whatever `steps` says (rollout.sampler's schema
    # default fills in 10); its start time and mean come from onestep.pt (bind_onestep).
    steps = 1 if name == "onestep" else cfg.get("steps")
    if not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"{where}.steps: need a positive integer, got {steps!r}")
    sampler = Sampler(
        name=name,
        steps=steps,
        schedule=cfg.get("schedule", "karras"),
        t_max=float(cfg.get("t_max", 1.0)),
        t_min=float(cfg.get("t_min", 1e-3)),
        rho=float(cfg.get("rho", 7.0)),
        snr=float(cfg.get("snr", DEFAULT_SNR)),
        denoise=bool(cfg.get("denoise", True)),
        start=str(cfg.get("start", "auto")),
    )
    if sampler.start not in START_MODES:
        raise ConfigError(
            f"{where}.start: unknown start '{sampler.start}'; choose one of {list(START_MODES)}"
        )
    if not 0 < sampler.t_min < sampler.t_max:
        raise ConfigError(
            f"{where}.t_min: need 0 < t_min < t_max, got t_min={sampler.t_min},"
            f" t_max={sampler.t_max}; lower t_min or raise t_max"
        )
    if sampler.schedule not in ("uniform", "karras"):
        raise ConfigError(f"{where}.schedule: unknown schedule '{sampler.schedule}'")
    return sampler
