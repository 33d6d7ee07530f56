"""The fit loop of the conditional score model: DSM loss, Adam + StepLR, clipping, EMA.

Reproducibility: every random draw of an epoch (batch order, times, noise) comes from generators
seeded by (train.seed, epoch, rank), never from a running global stream. A run resumed from
last.pt after k epochs (model.resume) therefore continues with exactly the draws the
uninterrupted run would have made, and (same device, same thread count) ends with the same
weights bit for bit.

The loop writes no file: after each epoch it hands the history to the caller's `on_epoch` (on
rank 0), which saves last.pt and history.csv (stages.train).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DistributedSampler

from diffclosure.data.datasets import index_device
from diffclosure.model.distributed import Dist, forward_model
from diffclosure.model.ema import EMA
from diffclosure.model.loss import dsm_loss, uniform_times
from diffclosure.model.score_net import ScoreNet, build_score_net, count_parameters
from diffclosure.model.stopping import Plateau, stop_reason
from diffclosure.progress import progress

log = logging.getLogger(__name__)

_VALIDATION_STREAM = 2**31 - 1  # the "epoch" index of the fixed validation noise
# Noise draws per validation sample, at stratified times. The draws are fixed, so the loss moves
# only with the weights, but which draws are fixed matters: on the trained default model (41
# validation samples) the loss over 12 noise seeds has std/mean 0.34 with one draw per sample and
# 0.16 with four (benchmarks/validation_noise.py), so one draw is an estimate of the loss that a
# handful of small-t draws can dominate.
VALIDATION_DRAWS = 4


@dataclass
class TrainingRun:
    """What a training step changes, and what last.pt saves."""
    net: ScoreNet
    ema: EMA
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    # The EMA weights of the epoch with the lowest stopping metric (train.plateau.metric):
    # {"epoch", "val_loss", "metric", "value", "ema"} (a state dict), or None before the first
    # epoch. score.pt keeps these.
    best: dict | None = None

    def keep_if_best(self, row: dict, metric: str = "val_loss") -> bool:
        """Remember the EMA weights when `row` (an epoch's history row) beats the best by
        `metric`; a row where it was not measured (NaN) never does."""
        val = float(row.get(metric, math.nan))
        if not math.isfinite(val) or (self.best is not None and val >= self.best["value"]):
            return False
        state = {k: v.detach().clone() for k, v in self.ema.model.state_dict().items()}
        self.best = {"epoch": int(row["epoch"]), "val_loss": float(row["val_loss"]),
                     "metric": metric, "value": val, "ema": state}
        return True


@dataclass
class _Steps:
    """What every step of the loop uses, fixed for the run."""
    tr: dict  # the train section
    sde: object
    dctx: Dist
    device: torch.device
    per_rank: int  # samples per step on this rank
    forward: Callable  # the network as the steps call it (DDP, compiled)
    autocast: Callable
    augment: Callable | None = None  # model.augment.Augment when train.augment


def build_run(cfg: dict, sde, n_conditions: int, device) -> TrainingRun:
    """net, ema, optimizer and scheduler, the weights drawn from train.seed."""
    tr = cfg["train"]
    torch.manual_seed(tr["seed"])  # same initial weights on every rank and every rerun
    net = build_score_net(cfg["model"], sde, n_conditions).to(device)
    ema = EMA(net, tr["ema"])
    optimizer = torch.optim.Adam(net.parameters(), lr=tr["lr"])
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, tr["lr_step"], tr["lr_gamma"])
    return TrainingRun(net, ema, optimizer, scheduler)


def stream_seed(seed: int, epoch: int, rank: int) -> int:
    """Independent 63-bit seed per (seed, epoch, rank), from NumPy's SeedSequence hashing."""
    a, b = np.random.SeedSequence([seed, epoch, rank]).generate_state(2, np.uint32)
    return (int(a) << 31) ^ int(b)


def make_generator(device: torch.device, seed: int) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def stratified_times(t_min: float, t_max: float, batch: int, draws: int,
                     gen: torch.Generator, device) -> torch.Tensor:
    """(batch * draws,) times: for each sample, one uniform draw in each of `draws` equal
    strata of [t_min, t_max] (sample-major order, as x0.repeat_interleave(draws))."""
    u = torch.rand(batch, draws, generator=gen, device=device)
    strata = torch.arange(draws, device=device, dtype=u.dtype)
    return (t_min + (t_max - t_min) * (strata + u) / draws).reshape(-1)


def validate(ema_net, val, steps: _Steps) -> float:
    """Mean DSM loss of the EMA weights on the validation split with fixed times and noise:
    VALIDATION_DRAWS noise draws per sample at stratified times, the same at every epoch."""
    tr, dctx, device = steps.tr, steps.dctx, steps.device
    batch, draws = max(1, steps.per_rank // VALIDATION_DRAWS), VALIDATION_DRAWS
    gen = make_generator(device, stream_seed(tr["seed"], _VALIDATION_STREAM, dctx.rank))
    idx = torch.arange(len(val))[dctx.rank :: dctx.world].to(index_device(val))
    # Summed on the device: one host sync per validation, not one per batch.
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    with torch.no_grad():
        for start in range(0, len(idx), batch):
            x0, cond = (a.to(device, non_blocking=True)
                        for a in val.get_batch(idx[start : start + batch]))
            x0 = x0.repeat_interleave(draws, dim=0)  # the condition serves its draws
            t = stratified_times(tr["t_min"], tr["t_max"], x0.shape[0] // draws, draws, gen,
                                 device)
            with steps.autocast():
                per = dsm_loss(ema_net, x0, cond, ema_net.sde, t=t, generator=gen,
                               reduce=False)
            total += per.double().sum()
            count += per.shape[0]
    total, count = dctx.all_sum_tensor(
        torch.stack([total, torch.tensor(float(count), dtype=torch.float64, device=device)]))
    return total / max(count, 1.0)


def _train_epoch(run: TrainingRun, steps: _Steps, train_set, order, t_sampler, gen):
    """One pass over `order`: the loss summed on the device (float64) and the samples seen."""
    net, ema, optimizer, device = run.net, run.ema, run.optimizer, steps.device
    grad_clip = steps.tr["grad_clip"]
    # The loss is summed on the device and checked once per epoch: a float() or an
    # isfinite() test per step would stall the host on every step. A non-finite loss
    # makes the sum non-finite, so nothing is missed; only the report comes at the epoch's
    # end, before anything of the epoch is written.
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    seen = 0
    draws = int(steps.tr["draws"])
    for b in range(0, len(order), steps.per_rank):
        x0, cond = (a.to(device, non_blocking=True) for a in train_set.get_batch(
            order[b : b + steps.per_rank]))
        if steps.augment is not None:
            x0, cond = steps.augment(x0, cond, gen)
        # train.draws noise draws per sample; the network runs the condition branches once
        # per sample and serves its draws from them (ScoreNet.forward).
        x0 = x0.repeat_interleave(draws, dim=0) if draws > 1 else x0
        with steps.autocast():
            loss = dsm_loss(steps.forward, x0, cond, steps.sde, t_sampler, gen)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
        optimizer.step()
        ema.update(net)
        loss_sum += loss.detach().double() * x0.shape[0]
        seen += x0.shape[0]
    return loss_sum, seen


def _summed_loss(loss_sum, seen: int, steps: _Steps, epoch: int, scheduler):
    """The epoch's loss sum and sample count over all ranks; FloatingPointError if the loss
    is not finite."""
    # Summed over ranks before the test, so every rank sees the same verdict (no rank
    # waits in a collective for one that raised).
    loss_sum, seen = steps.dctx.all_sum_tensor(torch.stack(
        [loss_sum, torch.tensor(float(seen), dtype=torch.float64, device=steps.device)]))
    if not math.isfinite(loss_sum):
        raise FloatingPointError(
            f"training loss is {loss_sum} (non-finite) in epoch {epoch + 1}; lower "
            f"train.lr (now {scheduler.get_last_lr()[0]:g}) or set train.grad_clip"
        )
    return loss_sum, seen


def _epoch(run: TrainingRun, steps: _Steps, data, sampler, t_sampler, epoch: int,
           validate_now: bool = True) -> dict:
    """Train one epoch, step the learning rate, validate (when `validate_now`; else the row's
    val_loss is NaN): the epoch's history row."""
    train_set, val_set = data
    tic = time.perf_counter()
    run.net.train()
    sampler.set_epoch(epoch)
    order = torch.tensor(list(iter(sampler)), dtype=torch.long).to(index_device(train_set))
    gen = make_generator(steps.device, stream_seed(steps.tr["seed"], epoch, steps.dctx.rank))
    loss_sum, seen = _train_epoch(run, steps, train_set, order, t_sampler, gen)
    loss_sum, seen = _summed_loss(loss_sum, seen, steps, epoch, run.scheduler)
    lr = run.scheduler.get_last_lr()[0]
    run.scheduler.step()
    val_loss = validate(run.ema.model, val_set, steps) if validate_now else math.nan
    return dict(epoch=epoch + 1, train_loss=loss_sum / seen, val_loss=val_loss, lr=lr,
                seconds=time.perf_counter() - tic)


def _log_start(net, steps: _Steps, train_set, val_set) -> None:
    world = steps.dctx.world
    log.info(
        "training %d parameters on %s: %d train / %d val samples of %d^2, conditions %s, "
        "batch %d%s", count_parameters(net), steps.device, len(train_set), len(val_set),
        train_set.n, list(train_set.conditions), steps.tr["batch_size"],
        f" ({steps.per_rank} on each of {world} ranks)" if world > 1 else "",
    )


def _steps(run: TrainingRun, tr: dict, sde, dctx: Dist, device, augment=None) -> _Steps:
    use_bf16 = tr["bf16"] and device.type == "cuda"
    autocast = functools.partial(torch.autocast, device_type=device.type, dtype=torch.bfloat16,
                                 enabled=use_bf16)
    return _Steps(tr, sde, dctx, device, max(1, tr["batch_size"] // dctx.world),
                  forward_model(run.net, dctx, device, tr["compile"]), autocast, augment)


def fit(run: TrainingRun, cfg: dict, sde, data, dctx: Dist, device, start: int,
        history: list[dict], on_epoch: Callable[[int, list[dict]], None],
        monitor: Callable[[torch.nn.Module, int, bool], dict] | None = None,
        augment: Callable | None = None) -> tuple[list[dict], str]:
    """Epochs start+1 .. train.epochs on `data` = (train split, validation split), appending
    to `history`, until the plateau rule (model.stopping) or the epoch bound stops it. After each
    epoch every rank adds monitor(ema_net, epoch, last)'s columns to the row (when given; its
    draws are the same on every rank) and rank 0 calls on_epoch(epochs done, history); every
    rank then waits, so that none races ahead while rank 0 writes. `augment` (model.augment)
    transforms each training batch. Returns (history, why it stopped)."""
    tr = cfg["train"]
    rule = Plateau.from_config(tr)
    reason = stop_reason(history, rule, tr["epochs"])
    if reason:  # a resumed run that had already stopped takes no further step
        if dctx.main:
            log.warning("the resumed run had already stopped after epoch %d (%s): no training "
                        "done, score.pt is rewritten from it. To train again from scratch, "
                        "delete last.pt", len(history), reason)
        return history, reason
    train_set = data[0]
    steps = _steps(run, tr, sde, dctx, device, augment)
    if dctx.main:
        _log_start(run.net, steps, *data)
        log.info("stopping rule: %s; at most %d epochs", rule.describe(), tr["epochs"])
    sampler = DistributedSampler(
        range(len(train_set)), num_replicas=dctx.world, rank=dctx.rank, shuffle=True,
        seed=tr["seed"], drop_last=False,
    )
    t_sampler = uniform_times(tr["t_min"], tr["t_max"])
    bar = progress(total=tr["epochs"], initial=start, desc="train", unit="epoch",
                   enabled=dctx.main)
    by_monitor = rule.metric != "val_loss"
    for epoch in range(start, tr["epochs"]):
        # A monitor metric is measured every train.monitor.every epochs and at the bound: the
        # rule judges only there, and the validation loss (a diagnostic then) is computed only
        # there too. Monitors run on every rank (same draws): none waits on rank 0 alone.
        bound = epoch + 1 >= tr["epochs"]
        due = (bound or (epoch + 1) % tr["monitor"]["every"] == 0) if by_monitor else True
        row = _epoch(run, steps, data, sampler, t_sampler, epoch, validate_now=due)
        if by_monitor:
            row.update(_same_on_every_rank(monitor(run.ema.model, epoch + 1, bound), steps))
        history.append(row)
        run.keep_if_best(row, rule.metric)
        reason = stop_reason(history, rule, tr["epochs"])
        if monitor is not None and not by_monitor:
            row.update(monitor(run.ema.model, epoch + 1, bool(reason)))
        if dctx.main:
            on_epoch(epoch + 1, history)
            _log_epoch(row, tr["epochs"], run.best)
            bar.set_postfix(train=f"{row['train_loss']:.4g}", val=f"{row['val_loss']:.4g}")
        bar.update(1)
        dctx.barrier()
        if reason:
            break
    bar.close()
    return history, reason


def _same_on_every_rank(scores: dict, steps: _Steps) -> dict:
    """The monitor's scores averaged over ranks (identical draws and weights make them equal;
    averaging guarantees it), so that every rank takes the stopping decision they feed."""
    if steps.dctx.world <= 1:
        return scores
    keys = list(scores)
    summed = steps.dctx.all_sum_tensor(torch.tensor([float(scores[k]) for k in keys],
                                                    dtype=torch.float64, device=steps.device))
    return {k: v / steps.dctx.world for k, v in zip(keys, summed, strict=True)}


def _log_epoch(row: dict, epochs: int, best: dict | None) -> None:
    extra = "".join(f", {k} {row[k]:.4g}" for k in row
                    if k.startswith("apriori_") and math.isfinite(row[k]))
    log.info("epoch %d/%d: train %.5g, val %.5g (best %s %.5g at epoch %d), lr %.3g%s, %.1f s",
             row["epoch"], epochs, row["train_loss"], row["val_loss"],
             best["metric"] if best else "val_loss", best["value"] if best else math.nan,
             best["epoch"] if best else 0, row["lr"], extra, row["seconds"])

