"""Reverse-time samplers for a score-based diffusion model, each one short function.

Every sampler takes the network through a Denoiser (sampling.denoiser), the start state and the
grid of times, and only what its method uses besides:

    sampler(denoiser, x, times[, generator][, snr=]) -> the samples

- denoiser: denoiser.score(x, t) is the score of x_t, denoiser.denoised(x, t) the data
  prediction; it holds the condition and the SDE, and counts the network evaluations (the NFE).
- x: the state at times[0]. `Sampler` draws it as N(prior_mean, std(t_0)^2) with the generator
  before the sampler runs (the distill stage passes states it chose instead).
- times: decreasing floats t_0 > ... > t_N (sampling.schedules); N steps. A final t_N = 0 means
  the last step lands on sigma = 0 and is taken noise-free (Tweedie / Euler to sigma = 0).
  Starting at t_0 < 1 is the paper's truncated start.
- generator: a torch.Generator, taken only by the stochastic samplers (em, pc); its device is
  where the noise lives. Same seed, same bits. A noise_source.CorrelatedNoise in its place makes
  the draws of consecutive samplings an AR(1) process (the coupled runs' rollout.tau).
- snr: the Langevin corrector's signal-to-noise ratio, taken only by pc.

`run_sampler` calls one of them by name with what it takes; `Sampler` (one config entry, built
by `make_sampler` from the schema's sampler definition) adds the schedule and the start draw and
reports the samples with the NFE the denoiser counted.

The probability-flow samplers integrate in sigma = std(t) (as Karras et al.): for the VE SDE
dx/dt = -g(t)^2/2 score and d(sigma^2)/dt = g(t)^2, so dx/dsigma = -sigma * score
= (x - x0)/sigma with the data prediction x0 = x + sigma^2 * score.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

from diffclosure.config import ConfigError, validate_entry
from diffclosure.sampling.denoiser import Denoiser
from diffclosure.sampling.noise_source import randn as noise_randn
from diffclosure.sampling.schedules import make_schedule


class SampleResult(NamedTuple):
    samples: torch.Tensor
    nfe: int  # network evaluations of the run, as the denoiser counted them


def _randn(x: torch.Tensor, generator) -> torch.Tensor:
    """Noise shaped as x from `generator` (a torch.Generator or a noise_source.CorrelatedNoise)."""
    return noise_randn(x.shape, generator, dtype=x.dtype, device=x.device)


@torch.inference_mode()
def em(denoiser: Denoiser, x, times: list[float], generator: torch.Generator) -> torch.Tensor:
    """Euler-Maruyama on the reverse SDE dx = -g^2 score dt + g dW-bar (time running down).

    The last step returns its noise-free mean (as the paper and Song et al. do).
    """
    n = len(times) - 1
    for i in range(n):
        t, dt = times[i], times[i] - times[i + 1]
        g = denoiser.sde.diffusion(t)
        x = x + (g * g * dt) * denoiser.score(x, t)
        if i < n - 1:
            x = x + (g * math.sqrt(dt)) * _randn(x, generator)
    return x


@torch.inference_mode()
def paper_em(denoiser: Denoiser, x, times: list[float], generator: torch.Generator
             ) -> torch.Tensor:
    """The research code's Euler-Maruyama loop (utility.sampler), step for step, on the raw data
    x_raw = scale * x, with `times` its own grid (the karras_time schedule plus 0).

    Its step at t_i: mean = x_raw + g(t_i)^2 score_raw dt_i, x_raw = mean + g(t_i) sqrt(dt_i) z,
    and the last mean is returned. In our units (x = x_raw / scale) the raw noise level std(t_i)
    is std(t_i) / scale, the level our network saw at the time tau_i with std(tau_i) =
    std(t_i) / scale, and score_raw = score(x, tau_i) / scale; every coefficient is divided by
    scale accordingly. With scale 1 this is `em` on the same grid.
    """
    sde, scale = denoiser.sde, denoiser.scale
    n = len(times) - 1
    for i in range(n):
        t, dt = times[i], times[i] - times[i + 1]
        g = sde.diffusion(t)
        tau = float(sde.time_of_std(sde.std(t) / scale))
        x = x + (g * g * dt / (scale * scale)) * denoiser.score(x, tau)
        if i < n - 1:
            x = x + (g * math.sqrt(dt) / scale) * _randn(x, generator)
    return x


@torch.inference_mode()
def pc(denoiser: Denoiser, x, times: list[float], generator: torch.Generator, *,
       snr: float) -> torch.Tensor:
    """Predictor-corrector (Song et al. 2021): one Langevin corrector step, then an EM step.

    Corrector step size eps = 2 (snr ||z|| / ||score||)^2 per sample (Song et al.'s rule,
    alpha = 1 for the VE SDE): x <- x + eps score + sqrt(2 eps) z. The last predictor step
    returns its noise-free mean.
    """
    n = len(times) - 1
    dims = tuple(range(1, x.ndim))
    for i in range(n):
        t, dt = times[i], times[i] - times[i + 1]
        grad = denoiser.score(x, t)
        z = _randn(x, generator)
        g_norm = torch.linalg.vector_norm(grad, dim=dims, keepdim=True)
        z_norm = torch.linalg.vector_norm(z, dim=dims, keepdim=True)
        eps = 2.0 * (snr * z_norm / g_norm.clamp_min(1e-30)) ** 2
        x = x + eps * grad + torch.sqrt(2.0 * eps) * z
        g = denoiser.sde.diffusion(t)
        x = x + (g * g * dt) * denoiser.score(x, t)
        if i < n - 1:
            x = x + (g * math.sqrt(dt)) * _randn(x, generator)
    return x


@torch.inference_mode()
def ode_euler(denoiser: Denoiser, x, times: list[float]) -> torch.Tensor:
    """Probability-flow ODE, explicit Euler in sigma: x <- x + (s' - s)(x - x0)/s."""
    sig = [denoiser.sigma(t) for t in times]
    for i in range(len(times) - 1):
        d = (x - denoiser.denoised(x, times[i])) / sig[i]
        x = x + (sig[i + 1] - sig[i]) * d
    return x


@torch.inference_mode()
def ode_heun(denoiser: Denoiser, x, times: list[float]) -> torch.Tensor:
    """Probability-flow ODE, Heun (trapezoidal predictor-corrector) in sigma; second order.

    A step to sigma = 0 is taken as an Euler step (Karras et al.): it lands exactly on the
    data prediction x0, and the corrector would need the score at sigma = 0.
    """
    sig = [denoiser.sigma(t) for t in times]
    for i in range(len(times) - 1):
        h = sig[i + 1] - sig[i]
        d = (x - denoiser.denoised(x, times[i])) / sig[i]
        x_pred = x + h * d
        if sig[i + 1] == 0:
            x = x_pred
            continue
        d_pred = (x_pred - denoiser.denoised(x_pred, times[i + 1])) / sig[i + 1]
        x = x + (0.5 * h) * (d + d_pred)
    return x


@torch.inference_mode()
def dpm2m(denoiser: Denoiser, x, times: list[float]) -> torch.Tensor:
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
    sig = [denoiser.sigma(t) for t in times]
    x0_prev, h_prev = None, None
    for i in range(len(times) - 1):
        x0 = denoiser.denoised(x, times[i])
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
    return x


@torch.inference_mode()
def onestep(denoiser: Denoiser, x, times: list[float]) -> torch.Tensor:
    """One jump from t_0 to sigma = 0: x0 = x + sigma_0^2 score(x, t_0), a single score call.

    With a score model this is Tweedie's posterior mean (the first step of every ODE sampler);
    with the student of the distill stage (sampling/distill.py) it is the one-step generator
    G(z, condition) that reproduces its teacher's many-step samples. Only t_0 is used.
    """
    return denoiser.denoised(x, times[0])


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "onestep": onestep,
    "em": em,
    "paper_em": paper_em,
    "pc": pc,
    "ode_euler": ode_euler,
    "ode_heun": ode_heun,
    "dpm2m": dpm2m,
}


def run_sampler(name: str, denoiser: Denoiser, x: torch.Tensor, schedule,
                generator: torch.Generator | None = None, *, snr: float | None = None
                ) -> torch.Tensor:
    """Sampler `name` from the state x at schedule[0] down the grid `schedule`, passed only
    the generator and snr if its signature takes them (snr is pc's alone)."""
    times = [float(t) for t in schedule]
    if len(times) < 2 or any(b >= a for a, b in zip(times, times[1:], strict=False)):
        raise ValueError("schedule must hold at least two strictly decreasing times")
    fn = SAMPLERS[name]
    takes = inspect.signature(fn).parameters
    options = {key: value for key, value in (("generator", generator), ("snr", snr))
               if key in takes}
    missing = [key for key, value in options.items() if value is None]
    if missing:
        raise TypeError(f"sampler {name} needs {', '.join(missing)}")
    return fn(denoiser, x, times, **options)


def draw_start(shape, sigma: float, prior_mean, generator: torch.Generator,
               dtype=torch.float32) -> torch.Tensor:
    """The initial state N(prior_mean, sigma^2), on the generator's device."""
    device = generator.device
    noise = noise_randn(shape, generator, dtype=dtype, device=device)
    return noise * sigma + torch.as_tensor(prior_mean, device=device, dtype=dtype)


@dataclass(frozen=True)
class Sampler:
    """A sampler with its step budget and schedule, built from one config entry (make_sampler;
    the keys and their meaning: $defs.sampler in the config schema)."""

    name: str
    steps: int
    schedule: str
    t_max: float
    t_min: float
    rho: float
    snr: float
    denoise: bool
    # Mean of the initial noise: "zero" (the paper's N(0, std(t_max)^2)), "measurements" (centred
    # on the encoded sparse measurements) or "auto" (measurements when the model has them).
    start: str

    @property
    def label(self) -> str:
        if self.name == "onestep":  # start time and mean are the distilled generator's
            return "onestep"
        base = f"{self.name}-{self.steps}-{self.schedule}-t{self.t_max:g}"
        return base if self.start == "auto" else f"{base}-{self.start}"

    def times(self, sde) -> torch.Tensor:
        if self.name == "onestep":
            return torch.tensor([self.t_max, 0.0], dtype=torch.float64)
        return make_schedule(
            self.schedule, sde, self.steps, self.t_max, self.t_min, self.rho, self.denoise
        )

    def __call__(self, denoiser: Denoiser, shape, generator: torch.Generator, *,
                 prior_mean=0.0, dtype=torch.float32) -> SampleResult:
        """Samples of `shape` from N(prior_mean, std(t_max)^2) at t_max down to the end of
        the schedule, with the NFE this run cost."""
        times = self.times(denoiser.sde)
        sigma = denoiser.sigma(float(times[0]))
        if self.name == "paper_em":  # its times are the raw data's: std(t) / scale here
            sigma /= denoiser.scale
        x = draw_start(shape, sigma, prior_mean, generator, dtype)
        before = denoiser.calls
        samples = run_sampler(self.name, denoiser, x, times, generator, snr=self.snr)
        return SampleResult(samples, denoiser.calls - before)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


# The schema node a sampler entry is checked against: a sampling.samplers entry, the shared
# definition plus that site's requirements and its default t_max.
ENTRY_NODE = ("properties", "sampling", "properties", "samplers", "items")


def make_sampler(cfg: dict, where: str = "sampling.samplers") -> Sampler:
    """Build a Sampler from a config entry {name, steps, schedule, t_max, ...}.

    The entry is checked against the schema (unknown keys, types, names) and missing keys take
    its defaults, those of a sampling.samplers entry; `where` names the entry in messages.
    """
    entry = validate_entry(cfg, ENTRY_NODE, where)
    # The one-step generator takes one step whatever `steps` says (rollout.sampler's schema
    # default fills in 10); its start time and mean come from onestep.pt (bind_onestep).
    # The schema's integer admits 4.0 (YAML's `steps: 4.0`); the schedules need an int.
    steps = 1 if entry["name"] == "onestep" else int(entry["steps"])
    sampler = Sampler(
        name=entry["name"], steps=steps, schedule=entry["schedule"],
        t_max=float(entry["t_max"]), t_min=float(entry["t_min"]), rho=float(entry["rho"]),
        snr=float(entry["snr"]), denoise=bool(entry["denoise"]), start=str(entry["start"]),
    )
    if not 0 < sampler.t_min < sampler.t_max:
        raise ConfigError(
            f"{where}.t_min: need 0 < t_min < t_max, got t_min={sampler.t_min},"
            f" t_max={sampler.t_max}; lower t_min or raise t_max"
        )
    return sampler
