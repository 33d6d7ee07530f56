"""The a-priori check of a model while it trains (train.monitor): the learning curve in the
quantity users care about, not only in the denoising loss.

Every `every` epochs the EMA network samples `ensemble` closures for `conditions` validation
states with the configured sampler, and the samples are scored against the true term in
physical units: D_Fro of the ensemble mean and of the members, the correlation of the ensemble
mean with the truth (for the sgs target: the a-priori correlation with Pi) and spread/skill.
The columns land in history.csv and curves.png. The draws come from their own generator
(train.seed, epoch), so monitoring never changes the training's random stream or its weights;
the stopping rule reads the validation loss, not these scores.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from diffclosure.config import ConfigError
from diffclosure.metrics.fields import d_fro
from diffclosure.metrics.probabilistic import spread_skill
from diffclosure.model.fit import stream_seed
from diffclosure.sampling.denoiser import Denoiser
from diffclosure.sampling.samplers import make_sampler

COLUMNS = ("apriori_dfro_mean", "apriori_dfro_member", "apriori_corr", "apriori_spread_skill")
_STREAM = 2**31 - 2  # the stream index of the monitor's generator seeds (model.fit.stream_seed)


def evenly_spaced(total: int, count: int) -> torch.Tensor:
    """`count` indices spread evenly over range(total) (all of them if count >= total)."""
    if count >= total:
        return torch.arange(total)
    return torch.from_numpy(np.unique(np.round(np.linspace(0, total - 1, count)).astype(int)))


def correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each pair of fields (..., n, n)."""
    a = a - a.mean(axis=(-2, -1), keepdims=True)
    b = b - b.mean(axis=(-2, -1), keepdims=True)
    num = (a * b).sum(axis=(-2, -1))
    return num / np.sqrt((a * a).sum(axis=(-2, -1)) * (b * b).sum(axis=(-2, -1)))


def score(samples: np.ndarray, truth: np.ndarray) -> dict:
    """The monitor's columns for samples (k, M, n, n) against truth (k, n, n), physical."""
    mean = samples.mean(axis=1)
    return {
        "apriori_dfro_mean": float(d_fro(mean, truth).mean()),
        "apriori_dfro_member": float(d_fro(samples, truth[:, None]).mean()),
        "apriori_corr": float(correlation(mean, truth).mean()),
        "apriori_spread_skill": float(spread_skill(samples, truth, axis=1).ratio),
    }


def make_monitor(monitor: dict, val_split, stats: dict, sde, seed: int,
                 device) -> Callable[[torch.nn.Module, int, bool], dict] | None:
    """monitor(ema_net, epoch, last) -> the columns above, checked every `every` epochs and
    after the last one (NaN on the epochs it skips), or None when train.monitor.every is 0.
    `val_split` holds normalised samples (data.datasets)."""
    every = int(monitor.get("every", 0))
    if every <= 0:
        return None
    sampler = make_sampler(monitor["sampler"], where="train.monitor.sampler")
    x0, cond = val_split.get_batch(evenly_spaced(len(val_split), int(monitor["conditions"])))
    x0, cond = x0.to(device), cond.to(device)
    m = int(monitor["ensemble"])
    conditions = list(val_split.conditions)
    mean, std = float(stats["target"]["mean"]), float(stats["target"]["std"])
    truth = (x0[:, 0].double().cpu().numpy() * std + mean)
    rep = cond.repeat_interleave(m, dim=0)
    start = sampler.start
    if start == "auto":
        start = "measurements" if "measurements" in conditions else "zero"
    if start == "measurements" and "measurements" not in conditions:
        raise ConfigError("train.monitor.sampler.start: 'measurements' but the dataset has no "
                          "measurements condition; use auto or zero")
    prior = rep[:, conditions.index("measurements")][:, None] if start == "measurements" else 0.0
    nan = dict.fromkeys(COLUMNS, float("nan"))

    def check(net: torch.nn.Module, epoch: int, last: bool = False) -> dict:
        if epoch % every and not last:
            return dict(nan)
        gen = torch.Generator(device=device).manual_seed(stream_seed(seed, _STREAM, epoch))
        with torch.inference_mode():
            res = sampler(Denoiser(net, sde, rep), (rep.shape[0], 1, *x0.shape[-2:]), gen,
                          prior_mean=prior)
        samples = res.samples.double().cpu().numpy().reshape(len(truth), m, *truth.shape[1:])
        return score(samples * std + mean, truth)

    return check
