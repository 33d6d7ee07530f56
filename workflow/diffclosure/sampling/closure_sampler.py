"""The learned closure as one callable: physical fields in, physical closure samples out.

ClosureSampler hides the network and its normalisation from its callers (the sample benchmark,
the coupled rollouts): it normalises the condition fields with the training statistics,
repeats each condition `ensemble` times, runs a sampler on the normalised target through a
Denoiser of its score (sampling.denoiser, which counts the NFE) and maps the samples back to
physical units.

Network contract (model/checkpoint.load_model, model.score_net.ScoreNet): net.encode(cond
(B,C,n,n)) -> the condition's features, run once per sampling; net(x (B*k,1,n,n), t (B*k,),
features=) -> score of the normalised target, each condition serving k consecutive rows of x;
settings["conditions"] names the C channels in order
("vorticity", "measurements", "smagorinsky"); settings["stats"][name] = {"mean", "std"}
(the measurements use the target's statistics).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace
from pathlib import Path

import torch

from diffclosure.data.stats import load_stats, stats_key
from diffclosure.errors import UserFacingError
from diffclosure.model.checkpoint import CheckpointError
from diffclosure.model.sde import make_sde
from diffclosure.sampling.denoiser import Denoiser
from diffclosure.sampling.samplers import Sampler

log = logging.getLogger(__name__)

KNOWN_CONDITIONS = ("vorticity", "measurements", "smagorinsky")


class ConditionError(UserFacingError):
    """A condition field the model needs is missing or has the wrong shape."""


def _stat(stats: dict, name: str, key: str) -> float:
    try:
        value = stats[name][key]
    except (KeyError, TypeError):
        raise ConditionError(
            f"model settings: stats lack '{name}.{key}'; the checkpoint was not made from a"
            " dataset stats.json of this version. Retrain the model."
        ) from None
    if isinstance(value, (list, tuple)):  # per-channel stats stored as a one-element list
        value = value[0]
    return float(value)


def bind_onestep(sampler: Sampler, settings: dict) -> Sampler:
    """The sampler as a model of these settings runs it. The one-step generator (settings of an
    onestep.pt) only runs the `onestep` sampler, from the start time and mean it was distilled
    for; a score model runs every other sampler."""
    meta = settings.get("onestep")
    if sampler.name == "onestep" and meta is None:
        raise ConditionError(
            "sampler onestep: needs the distilled generator model/onestep.pt (stage distill),"
            " not a score model; pass it with --onestep")
    if meta is None:
        return sampler
    if sampler.name != "onestep":
        raise ConditionError(
            f"sampler {sampler.name}: the model is a one-step generator (onestep.pt), which only"
            " runs the onestep sampler; pass the score.pt for the other samplers")
    return replace(sampler, steps=1, t_max=float(meta["t_max"]), start=str(meta["start"]))


class ClosureSampler:
    """Sample the closure term given physical-unit conditions.

    Args:
        net: the score network (eval mode), already on `device`.
        settings: the checkpoint settings ("sde", "conditions", "stats").
        device: torch device of the network and of the samples.
        autocast: bf16 autocast of the network on CUDA (ignored on the CPU).
        compile: torch.compile the network (pays off for long sampling runs on a GPU).
    """

    def __init__(self, net, settings: dict, device="cpu", *, autocast: bool = False,
                 compile: bool = False):
        self.device = torch.device(device)
        self.settings = settings
        self.sde = make_sde(settings["sde"])
        self.conditions = list(settings["conditions"])
        unknown = [c for c in self.conditions if c not in KNOWN_CONDITIONS]
        if unknown:
            raise ConditionError(
                f"model settings: unknown condition channel(s) {unknown}; known: {KNOWN_CONDITIONS}"
            )
        stats = settings["stats"]
        self.target_mean = _stat(stats, "target", "mean")
        self.target_std = _stat(stats, "target", "std")
        # Measurements of the target share the target's scale (see stats.json's note).
        self.norms = {
            c: (self.target_mean, self.target_std) if c == "measurements"
            else (_stat(stats, c, "mean"), _stat(stats, c, "std"))
            for c in self.conditions
        }
        self.autocast = autocast and self.device.type == "cuda"
        self.net = torch.compile(net) if compile else net

    def _autocast(self):
        return (torch.autocast("cuda", dtype=torch.bfloat16) if self.autocast
                else contextlib.nullcontext())

    def score_fn(self, x: torch.Tensor, t: torch.Tensor, features) -> torch.Tensor:
        """The sampler-facing score: x (B*k,1,n,n) normalised, t (B*k,), the condition's
        features (encode_conditions: B conditions, each for k consecutive rows of x)."""
        with self._autocast():
            out = self.net(x, t, features=features)
        return out.to(x.dtype)

    @torch.inference_mode()
    def encode_conditions(self, cond: torch.Tensor):
        """The network's condition features of cond (B,C,n,n) (model.score_net.ScoreNet.encode):
        computed once per sampling, not at each of its network evaluations, since they depend
        on neither x nor t."""
        with self._autocast():
            return self.net.encode(cond)

    def normalised_conditions(self, vorticity, measurements=None, smagorinsky=None) -> torch.Tensor:
        """(B, C, n, n) float32 on the device, channels in the model's order."""
        given = {"vorticity": vorticity, "measurements": measurements, "smagorinsky": smagorinsky}
        shape = tuple(torch.as_tensor(vorticity).shape)
        if len(shape) != 3 or shape[1] != shape[2]:
            raise ConditionError(f"vorticity: expected (batch, n, n), got shape {shape}")
        chans = []
        for c in self.conditions:
            field = given[c]
            if field is None:
                raise ConditionError(
                    f"{c}: the model was trained with the '{c}' condition; pass it "
                    f"(the model's conditions: {self.conditions})"
                )
            field = torch.as_tensor(field).to(self.device, torch.float32)
            if tuple(field.shape) != shape:
                raise ConditionError(
                    f"{c}: shape {tuple(field.shape)} differs from the vorticity's {shape}"
                )
            mean, std = self.norms[c]
            chans.append((field - mean) / std)
        return torch.stack(chans, dim=1)

    def sample(self, sampler: Sampler, vorticity, measurements=None, smagorinsky=None, *,
               ensemble: int = 1, generator: torch.Generator | None = None,
               return_nfe: bool = False, start: str | None = None):
        """Physical-unit closure samples (B, ensemble, n, n), float32 on the device.

        Members of one condition share its condition fields and differ by their noise. With
        `return_nfe` the result is (samples, nfe). `start` is the mean of the initial noise:
        "zero" (the paper's N(0, std(t_max)^2) in normalised units) or "measurements" (centred
        on the encoded measurements, which a truncated start otherwise ignores); None takes
        the sampler's own `start`, whose "auto" means "measurements" when the model is
        conditioned on them. With normalised targets (std 1) a start truncated at std(t_max)
        well below 1 is far from the true marginal unless it is centred on a good estimate.
        """
        sampler = bind_onestep(sampler, self.settings)
        cond = self.normalised_conditions(vorticity, measurements, smagorinsky)
        b, _, n, _ = cond.shape
        features = self.encode_conditions(cond)  # members share their condition's features
        if generator is None:
            generator = torch.Generator(device=self.device).manual_seed(0)
        start = sampler.start if start is None else start
        if start == "auto":
            start = "measurements" if "measurements" in self.conditions else "zero"
        if start == "zero":
            prior_mean = 0.0
        elif start == "measurements" and "measurements" in self.conditions:
            i = self.conditions.index("measurements")
            prior_mean = cond[:, i : i + 1].repeat_interleave(ensemble, dim=0)
        else:
            raise ConditionError(f"start: '{start}' needs a 'measurements' condition or use 'zero'")
        res = sampler(Denoiser(self.score_fn, self.sde, features, scale=self.target_std),
                      (b * ensemble, 1, n, n),
                      generator, dtype=torch.float32, prior_mean=prior_mean)
        out = res.samples.reshape(b, ensemble, n, n) * self.target_std + self.target_mean
        return (out, res.nfe) if return_nfe else out

    __call__ = sample


def check_stats(cs, model_path, data_dir) -> None:
    """Fail unless DATA_DIR/stats.json holds the statistics the model normalises with.

    The rollout takes the target's scale (measurement and hold noise) and the test split from
    stats.json, the sampler normalises with the stats stored in score.pt: a model and a dataset
    of two different runs would otherwise be mixed without a word.
    """
    path = Path(data_dir) / "stats.json"
    stats = load_stats(data_dir)
    differ = []
    for channel, (mean, std) in {"target": (cs.target_mean, cs.target_std), **cs.norms}.items():
        entry = stats.get(stats_key(channel)) or {}
        if (entry.get("mean"), entry.get("std")) != (mean, std):
            differ.append(f"{channel} mean/std {entry.get('mean')}/{entry.get('std')} there, "
                          f"{mean}/{std} in the model")
    if "conditions" in stats and list(stats["conditions"]) != cs.conditions:
        differ.append(f"conditions {stats['conditions']} there, {cs.conditions} in the model")
    if differ:
        raise CheckpointError(
            f"{path} does not match the statistics stored in {model_path} ({'; '.join(differ)})."
            " Two causes, and which it is: stats.json itself is intact (it matches the checksum "
            "the dataset stage recorded beside it), so the model is the stale one, trained on "
            "another dataset: retrain it with `snakemake --cores all --forcerun train` "
            f"(standalone: python -m diffclosure train --data {data_dir} --outdir "
            f"{Path(model_path).parent} --config CFG), or pass --data the dataset folder the "
            "model was trained on. (Had stats.json been damaged or edited, reading it would "
            "have failed with the advice to remake the dataset: --forcerun dataset.)"
        )
