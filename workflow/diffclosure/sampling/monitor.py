"""The a-priori check of a model while it trains (train.monitor): the learning curve in the
quantity users care about, not only in the denoising loss.

Every `every` epochs the EMA network samples `ensemble` closures for `conditions` validation
states with the configured sampler, through the ClosureSampler a rollout uses (the condition
features computed once, the sampler's start as configured), and the samples are scored against
the true term in physical units: D_Fro of the ensemble mean and of the members, the correlation
of the ensemble mean with the truth (for the sgs target: the a-priori correlation with Pi) and
spread/skill. The columns land in history.csv and curves.png. The draws come from their own
generator, seeded from train.seed alone: the same draws at every check, so the curve moves only
with the weights (what train.plateau.metric apriori_dfro_mean needs to stop on it), and
monitoring never changes the training's random stream or its weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from diffclosure.config import ConfigError
from diffclosure.data.datasets import pick_indices
from diffclosure.data.stats import stats_key
from diffclosure.metrics.fields import correlation, d_fro
from diffclosure.metrics.probabilistic import spread_skill
from diffclosure.model.fit import stream_seed
from diffclosure.sampling.closure_sampler import ClosureSampler
from diffclosure.sampling.samplers import make_sampler

COLUMNS = ("apriori_dfro_mean", "apriori_dfro_member", "apriori_corr", "apriori_spread_skill")
_STREAM = 2**31 - 2  # the stream index of the monitor's generator seeds (model.fit.stream_seed)


def score(samples, truth) -> dict:
    """The monitor's columns for samples (k, M, n, n) against truth (k, n, n), physical."""
    mean = samples.mean(axis=1)
    return {
        "apriori_dfro_mean": float(d_fro(mean, truth).mean()),
        "apriori_dfro_member": float(d_fro(samples, truth[:, None]).mean()),
        "apriori_corr": float(correlation(mean, truth).mean()),
        "apriori_spread_skill": float(spread_skill(samples, truth, axis=1).ratio),
    }


def physical(split, idx, stats: dict) -> dict[str, torch.Tensor]:
    """The samples `idx` of a normalised split (data.datasets) back in physical units, by name
    ("target" and each condition; measurements share the target's statistics)."""
    x0, cond = (a.cpu() for a in split.get_batch(torch.as_tensor(idx)))
    channels = {"target": x0[:, 0]} | {c: cond[:, i] for i, c in enumerate(split.conditions)}
    return {c: v * stats[stats_key(c)]["std"] + stats[stats_key(c)]["mean"]
            for c, v in channels.items()}


def make_monitor(monitor: dict, val_split, stats: dict, sde_cfg: dict, seed: int,
                 device) -> Callable[[torch.nn.Module, int, bool], dict] | None:
    """monitor(ema_net, epoch, last) -> the columns above, checked every `every` epochs and
    after the last one (NaN on the epochs it skips), or None when train.monitor.every is 0."""
    every = int(monitor.get("every", 0))
    if every <= 0:
        return None
    sampler = make_sampler(monitor["sampler"], where="train.monitor.sampler")
    if sampler.start == "measurements" and "measurements" not in val_split.conditions:
        raise ConfigError("train.monitor.sampler.start: 'measurements' but the dataset has no "
                          "measurements condition; use auto or zero")
    fields = physical(val_split, pick_indices(len(val_split), int(monitor["conditions"])), stats)
    truth = fields.pop("target").double().numpy()
    settings = {"sde": sde_cfg, "conditions": list(val_split.conditions), "stats": stats}
    nan = dict.fromkeys(COLUMNS, float("nan"))

    def check(net: torch.nn.Module, epoch: int, last: bool = False) -> dict:
        if epoch % every and not last:
            return dict(nan)
        gen = torch.Generator(device=device).manual_seed(stream_seed(seed, _STREAM, 0))
        samples = ClosureSampler(net, settings, device).sample(
            sampler, fields["vorticity"], fields.get("measurements"), fields.get("smagorinsky"),
            ensemble=int(monitor["ensemble"]), generator=gen)
        return score(samples.double().cpu().numpy(), truth)

    return check
