"""Progressive distillation of the conditional score model into a one-step generator.

The generator is x0 = G(z, c) = x + std(t_max)^2 * student(x, t_max, c), with
x = mean + std(t_max) z drawn exactly as the samplers start (the `onestep` sampler,
sampling.samplers). The student is the same FNO as the teacher and starts from its weights, so
before any training G is Tweedie's denoiser, the first step of every ODE sampler.

Why progressive distillation (Salimans & Ho 2022) rather than consistency distillation
(Song et al. 2023):

- Spread. Both distil the probability-flow ODE, a deterministic map from the start noise z to a
  sample, so the generator's output varies with z as the teacher's samples do: the closure stays
  stochastic. In PD every round regresses the student's one step on two deterministic teacher
  steps from the same state. The target is a function of (x, c), so the least-squares minimiser
  is that map itself, not an average: nothing pulls the student toward the conditional mean, as
  a regression on data x0 given c would (the mean-regressor this stage must not become).
- Cost on a CPU. PD needs log2(N) rounds, each a plain regression with a fixed teacher and an
  exact target; started from the teacher's weights each round is a short fine-tune (the default
  teacher of 4 probability-flow Heun steps from t = 0.1 takes two rounds of a few epochs). CD learns
  self-consistency between adjacent times against an EMA copy of itself: the boundary condition
  at t = 0 reaches t_max only after many updates (Song et al. train 600k-800k iterations), and
  its one-step samples lag its two-step ones; a budget of about a minute would leave it near its
  initialisation.
- The teacher's own sampler. Round 1's teacher steps are those of the configured sampler
  (distill.teacher: a deterministic one-step solver, ode_heun or ode_euler, started like the
  benchmarked samplers, centred on the measurements by default); later rounds' teachers are
  the previous student in DDIM steps, as in Salimans & Ho.

States of a round: at t_max they are drawn as the sampler draws them (mean + std(t_max) z), the
only states the final generator meets; at later grid times they are the data noised to that
level (Salimans & Ho), where the intermediate students are evaluated.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from diffclosure.model.stopping import Plateau, plateau_reached
from diffclosure.sampling.denoiser import Denoiser
from diffclosure.sampling.samplers import Sampler, run_sampler

log = logging.getLogger(__name__)

FORMAT = "diffclosure-onestep/1"
# Deterministic (one target per state and condition) and one-step: the teacher's pairs of steps
# then compose to exactly its whole run. A multistep solver (dpm2m) restarted at every pair
# would take first-order steps where its full run takes second-order ones.
TEACHERS = ("ode_euler", "ode_heun")
NO_PLATEAU = Plateau()  # every round takes its epoch bound


@dataclass
class DistillResult:
    student: nn.Module
    history: list[dict] = field(default_factory=list)  # round, steps, epoch, loss


def teacher_sampler(cfg: dict) -> Sampler:
    """The distill.teacher entry as a Sampler; its grid is the one the rounds halve."""
    from diffclosure.config import ConfigError
    from diffclosure.sampling.samplers import make_sampler

    name = cfg.get("name", "ode_heun")
    if name not in TEACHERS:
        raise ConfigError(f"distill.teacher.name: '{name}' cannot teach; choose one of "
                          f"{list(TEACHERS)} (deterministic one-step solvers: a stochastic teacher"
                          " has no single target, a multistep one does not split into pairs)")
    steps = cfg.get("steps", 4)
    if not isinstance(steps, int) or steps < 2 or steps & (steps - 1):
        raise ConfigError(f"distill.teacher.steps: need a power of two >= 2, got {steps!r};"
                          " each round halves the steps down to one")
    return make_sampler({**cfg, "name": name, "denoise": True}, where="distill.teacher")


def _teacher_pair(fn: Callable, name: str, times: list[float], x, cond, sde, gen) -> torch.Tensor:
    """Two steps of sampler `name` with score `fn` from x over times [t_a, t_mid, t_b]."""
    out = run_sampler(name, Denoiser(fn, sde, cond), x, times, gen)
    return out.clone()  # out of inference mode: a target autograd may keep


def _states(data, idx, j: int, times, sde, start_mean, gen):
    """(x at grid time times[j], condition) for the samples idx (module docstring)."""
    x0, cond = data.get_batch(idx)
    z = torch.randn(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype)
    base = start_mean(cond) if j == 0 else x0
    return base + sde.std(times[j]) * z, cond


def _landing(student: nn.Module, x, cond, sde, ta: float, tb: float) -> torch.Tensor:
    """Where one DDIM step of the student from x at ta lands at tb."""
    sa, sb = sde.std(ta), sde.std(tb)
    pred = Denoiser(student, sde, cond).denoised(x, ta)  # with autograd
    return (sb / sa) * x + (1.0 - sb / sa) * pred


@dataclass
class _RoundSetup:
    """What a round's regression steps and its validation share: the teacher, its grid of
    pairs, the SDE and the start mean."""
    teacher: Callable
    name: str
    times: list[float]
    sde: object
    start_mean: Callable

    @property
    def pairs(self) -> list[tuple[float, float, float]]:
        t = self.times
        return [(t[2 * i], t[2 * i + 1], t[2 * i + 2]) for i in range(len(t) // 2)]

    def loss(self, student, data, idx, j: int, gen) -> torch.Tensor:
        """Squared error (sum over pixels, batch mean) of the student's landing against two
        teacher steps over pair j, for the samples idx."""
        ta, tm, tb = self.pairs[j]
        x, cond = _states(data, idx, 2 * j, self.times, self.sde, self.start_mean, gen)
        target = _teacher_pair(self.teacher, self.name, [ta, tm, tb], x, cond, self.sde, gen)
        land = _landing(student, x, cond, self.sde, ta, tb)
        return ((land - target) ** 2).flatten(1).sum(1).mean()


def _validation_loss(setup: _RoundSetup, student, val, batch_size: int, seed: int) -> float:
    """The round's loss on the validation split, every pair, the same noise at every epoch."""
    gen = torch.Generator(device=_device(val)).manual_seed(seed)
    total, seen = 0.0, 0
    with torch.no_grad():
        for j in range(len(setup.pairs)):
            for b in range(0, len(val), batch_size):
                idx = torch.arange(b, min(b + batch_size, len(val))).to(_device(val))
                total += float(setup.loss(student, val, idx, j, gen)) * len(idx)
                seen += len(idx)
    return total / max(seen, 1)


def distil_round(teacher: Callable, teacher_name: str, student: nn.Module, times: list[float],
                 data, sde, start_mean: Callable, *, epochs: int, batch_size: int, lr: float,
                 gen: torch.Generator, round_index: int = 1, val=None,
                 plateau: Plateau = NO_PLATEAU) -> list[dict]:
    """Train `student` so that one DDIM step over times[2i] -> times[2i+2] lands where two
    teacher steps do. `times` is the teacher's grid (ends at 0); returns the epoch losses.

    The loss is the squared error of the landing point. In the last round (one step to 0) it
    is the error of the generated sample itself. The learning rate decays to 0 (cosine) over
    the `epochs` bound. With a validation split `val`, each epoch also scores the student there
    (val_loss); the round stops at a plateau of it (model.stopping, distill.plateau) and the
    student keeps the weights of its best epoch.
    """
    setup = _RoundSetup(teacher, teacher_name, times, sde, start_mean)
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    # Adam moves each weight by about lr per step however small the gradient: without a decay
    # the student would hover lr away from the exact target it can reach.
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, epochs * math.ceil(len(data) / batch_size))
    val_seed = int(torch.randint(2**62, (1,), generator=gen))
    history, best = [], None
    for epoch in range(epochs):
        order = torch.randperm(len(data), generator=gen).to(_device(data))
        total, seen = 0.0, 0
        for b in range(0, len(order), batch_size):
            j = int(torch.randint(len(setup.pairs), (1,), generator=gen))
            loss = setup.loss(student, data, order[b:b + batch_size], j, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            decay.step()
            total += float(loss.detach()) * min(batch_size, len(order) - b)
            seen += min(batch_size, len(order) - b)
        if not math.isfinite(total):
            raise FloatingPointError(f"distillation loss is {total} in round {round_index}; lower"
                                     " distill.lr")
        row = {"round": round_index, "steps": len(setup.pairs), "epoch": epoch + 1,
               "loss": total / max(seen, 1), "val_loss": float("nan")}
        if val is not None:
            row["val_loss"] = _validation_loss(setup, student, val, batch_size, val_seed)
            if math.isfinite(row["val_loss"]) and (best is None
                                                   or row["val_loss"] < best["val_loss"]):
                best = {"val_loss": row["val_loss"], "epoch": epoch + 1,
                        "state": copy.deepcopy(student.state_dict())}
        history.append(row)
        log.info("round %d (%d -> %d steps), epoch %d: loss %.4g, validation %.4g",
                 round_index, 2 * len(setup.pairs), len(setup.pairs), epoch + 1, row["loss"],
                 row["val_loss"])
        reason = plateau_reached(history, plateau) if val is not None else None
        if reason:
            log.info("round %d stops: %s", round_index, reason)
            break
    if best is not None:
        student.load_state_dict(best["state"])
        log.info("round %d keeps the student of epoch %d (validation %.4g)", round_index,
                 best["epoch"], best["val_loss"])
    return history


def _device(data) -> torch.device:
    return getattr(data, "device", torch.device("cpu"))


def distil(teacher: Callable, student: nn.Module, sampler: Sampler, data, sde,
           start_mean: Callable, *, epochs: int, batch_size: int, lr: float,
           seed: int = 0, val=None, plateau: Plateau = NO_PLATEAU) -> DistillResult:
    """Progressive distillation of the deterministic `sampler` run with score `teacher` into
    `student`, a network with the teacher's signature net(x, t, cond) -> score.

    `data.get_batch(idx)` -> (x0, cond) of normalised samples (data.datasets splits); round
    1's states at t_max are start_mean(cond) + std(t_max) z, as the sampler starts. After
    log2(sampler.steps) rounds the student is the one-step generator (`onestep` sampler).
    With a validation split `val` every round stops at its plateau (distil_round).
    """
    gen = torch.Generator(device=_device(data)).manual_seed(seed)
    times = [float(t) for t in sampler.times(sde)]
    name, history, rnd = sampler.name, [], 1
    while len(times) > 2:
        history += distil_round(teacher, name, student, times, data, sde, start_mean,
                                epochs=epochs, batch_size=batch_size, lr=lr, gen=gen,
                                round_index=rnd, val=val, plateau=plateau)
        # The student becomes the next round's teacher, in DDIM steps on every other time.
        teacher = copy.deepcopy(student).eval().requires_grad_(False)
        name, times, rnd = "ode_euler", times[::2], rnd + 1
    return DistillResult(student.eval(), history)


# ----------------------------------------------------------------------------- the file
def save_onestep(path, student: nn.Module, settings: dict, meta: dict, provenance: dict) -> None:
    """model/onestep.pt: the student's weights, the teacher's settings (network, sde,
    conditions, stats) plus settings["onestep"] = meta (t_max, start, teacher, score model)."""
    from diffclosure.model.checkpoint import save_torch_atomic

    save_torch_atomic({"format": FORMAT, "state_dict": student.state_dict(),
                       "settings": {**settings, "onestep": dict(meta)},
                       "provenance": dict(provenance)}, path)


def load_onestep(path, device="cpu") -> tuple[nn.Module, dict]:
    """(generator network in eval mode on `device`, settings) from an onestep.pt."""
    from pathlib import Path

    from diffclosure.model.checkpoint import (
        SETTINGS_KEYS,
        CheckpointError,
        _load_state,
        build_from_settings,
        read_torch,
    )

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: one-step generator not found; make it with the distill "
                              "stage (snakemake --cores all --until distill, or python -m "
                              "diffclosure distill)")
    ckpt = read_torch(path, "one-step generator")
    settings = ckpt.get("settings")
    if ckpt.get("format") != FORMAT or not isinstance(settings, dict) or any(
            k not in settings for k in (*SETTINGS_KEYS, "onestep")):
        raise CheckpointError(f"{path}: not a diffclosure one-step generator (format "
                              f"{ckpt.get('format')!r}); pass the onestep.pt written by the "
                              "distill stage, not a score.pt")
    net = build_from_settings(settings)
    _load_state(net, ckpt.get("state_dict"), path, "state_dict")
    return net.to(device).eval(), settings
