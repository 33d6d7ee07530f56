"""Training loop of the conditional score model: DSM loss, Adam + StepLR, clipping, EMA, resume.

Reproducibility: every random draw of an epoch (batch order, times, noise) comes from generators
seeded by (train.seed, epoch, rank), never from a running global stream. A run resumed from
last.pt after k epochs therefore continues with exactly the draws the uninterrupted run would
have made, and (same device, same thread count) ends with the same weights bit for bit.

Resume policy: when MODEL_DIR/last.pt exists and was written by the same training identity
(model, sde and train sections except `threads` and `epochs`; the dataset's stats, conditions,
size and content digest; the code version) training continues from it and the log says so;
raising train.epochs therefore extends a finished run, and a resume with no epoch left is
warned about. If the identity differs (the warning names the part), or last.pt is
unreadable, training starts over (last.pt is overwritten after the first
epoch): changing a setting, the data or the code is an intentional rerun, not an error.

Multi-GPU: under torchrun (WORLD_SIZE > 1) the network is wrapped in DistributedDataParallel,
each rank takes its part of every epoch's permutation (DistributedSampler) with
train.batch_size / WORLD_SIZE samples per step (the global batch is unchanged), and only rank 0
writes files. See docs/multi-gpu.md.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from diffclosure import __version__
from diffclosure.atomic import atomic_path
from diffclosure.config import ConfigError, section_hash
from diffclosure.data.datasets import InMemorySplit, content_digest, load_split, load_stats
from diffclosure.devices import resolve_device
from diffclosure.errors import remake_hint
from diffclosure.model.checkpoint import (
    CheckpointError,
    read_torch,
    save_checkpoint,
    save_torch_atomic,
)
from diffclosure.model.ema import EMA
from diffclosure.model.loss import dsm_loss, uniform_times
from diffclosure.model.score_net import ScoreNet, build_score_net, count_parameters
from diffclosure.model.sde import make_sde
from diffclosure.progress import progress
from diffclosure.provenance import code_version, provenance, write_table

log = logging.getLogger(__name__)

LAST = "last.pt"
SCORE = "score.pt"
HISTORY = "history.csv"
CURVES = "curves.png"
HISTORY_FIELDS = ("epoch", "train_loss", "val_loss", "lr", "seconds")
TRAIN_FORMAT = "diffclosure-train/1"
_VALIDATION_STREAM = 2**31 - 1  # the "epoch" index of the fixed validation noise


@dataclass
class TrainResult:
    net: ScoreNet  # raw weights after the last epoch
    ema_net: ScoreNet  # EMA weights (used for validation and sampling)
    history: list[dict] = field(default_factory=list)
    resumed_from: int = 0  # epochs already done when this call started


# ----------------------------------------------------------------------------- environment
@dataclass
class Dist:
    world: int = 1
    rank: int = 0
    local_rank: int = 0
    owns_group: bool = False  # whether we initialised the process group (and must destroy it)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def all_sum(self, values: list[float], device) -> list[float]:
        if self.world == 1:
            return values
        buf = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(buf)
        return buf.tolist()

    def all_sum_tensor(self, buf: torch.Tensor) -> list[float]:
        """Sum a device tensor over ranks in place and bring it to the host (one sync)."""
        if self.world > 1:
            dist.all_reduce(buf)
        return buf.tolist()


# Fraction of the free GPU memory the in-memory training and validation splits may take to be
# kept on the device (the rest is for the network, activations and the optimiser).
DEVICE_DATA_FRACTION = 0.3


def place_splits(train_set, val_set, device: torch.device):
    """Move in-memory splits to a CUDA device when they fit (batches are then gathered there,
    with no per-step host-to-device copy); otherwise leave them on the host."""
    if device.type != "cuda" or not all(isinstance(s, InMemorySplit)
                                        for s in (train_set, val_set)):
        return train_set, val_set
    need = train_set.nbytes + val_set.nbytes
    free, _ = torch.cuda.mem_get_info(device)
    if need > DEVICE_DATA_FRACTION * free:
        log.info("data (%.2f GiB) kept on the host: more than %.0f%% of the free GPU memory",
                 need / 2**30, 100 * DEVICE_DATA_FRACTION)
        return train_set, val_set
    log.info("data (%.2f GiB) kept on %s", need / 2**30, device)
    return train_set.to(device), val_set.to(device)


def _index_device(split) -> torch.device:
    """Where a split wants its batch indices: its own device (in memory) or the host."""
    return split.device if isinstance(split, InMemorySplit) else torch.device("cpu")


def setup_distributed(device_name: str) -> tuple[Dist, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), resolve_device(device_name)
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    device = resolve_device(device_name, local_rank)
    owns = False
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        owns = True
    return Dist(world, dist.get_rank(), local_rank, owns), device


def configure_determinism(device: torch.device, threads: int) -> None:
    torch.set_num_threads(threads)
    if device.type == "cuda":
        # cuBLAS needs this for deterministic GEMMs; only effective before its first use.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


def stream_seed(seed: int, epoch: int, rank: int) -> int:
    """Independent 63-bit seed per (seed, epoch, rank), from NumPy's SeedSequence hashing."""
    a, b = np.random.SeedSequence([seed, epoch, rank]).generate_state(2, np.uint32)
    return (int(a) << 31) ^ int(b)


def make_generator(device: torch.device, seed: int) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


# ----------------------------------------------------------------------------- bookkeeping
# The parts of a training identity, as a refused resume names them.
IDENTITY_PARTS = {
    "settings": "model/sde/train settings",
    "data": "dataset (train.h5, val.h5, stats.json)",
    "code": "code version",
}


def training_identity(cfg: dict, stats: dict, conditions: list[str], n: int, n_train: int,
                      content: str) -> dict[str, str]:
    """Everything that determines the weights after a given epoch, in IDENTITY_PARTS.

    `threads` is left out (a resumed job may get other cores) and so is `epochs`: the draws of an
    epoch do not depend on the total, so raising train.epochs continues a finished run exactly
    as an uninterrupted longer run would have gone. The stats alone do not identify the data:
    measurements.lattice or .noise change the measurements but not their stats (the target's),
    hence `content` (datasets.content_digest of train.h5 and val.h5).
    """
    train = {k: v for k, v in cfg["train"].items() if k not in ("threads", "epochs")}
    return {
        "settings": section_hash({"model": cfg["model"], "sde": cfg["sde"], "train": train}),
        "data": section_hash({"stats": stats, "conditions": conditions, "n": n,
                              "samples": n_train, "content": content}),
        "code": code_version(),
    }


def run_config_hash(cfg: dict) -> str:
    """The config hash of a training run (score.pt and history.csv): the sde, model and train
    sections without `threads`, which does not change the weights."""
    return section_hash({"sde": cfg["sde"], "model": cfg["model"], "train": {
        k: v for k, v in cfg["train"].items() if k != "threads"}})


def write_history(path: Path, history: list[dict], cfg: dict) -> None:
    """history.csv, with its provenance sidecar history.csv.provenance.json."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: row[k] for k in HISTORY_FIELDS})
    write_table(path, buf.getvalue(), {k: cfg[k] for k in ("sde", "model", "train")}, "train",
                config_hash=run_config_hash(cfg))


def plot_curves(path: Path, history: list[dict]) -> None:
    """Training and validation loss against epoch, log scale; learning rate on a second axis."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    ax.semilogy(epochs, [r["train_loss"] for r in history], label="train (raw weights)")
    ax.semilogy(epochs, [r["val_loss"] for r in history], label="validation (EMA weights)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("DSM loss (per sample, sum over pixels)")
    ax2 = ax.twinx()
    ax2.semilogy(epochs, [r["lr"] for r in history], color="0.6", ls=":", label="learning rate")
    ax2.set_ylabel("learning rate", color="0.4")
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [ln.get_label() for ln in lines], loc="upper right")
    ax.grid(True, which="both", alpha=0.3)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def _identity_changes(old, identity: dict[str, str]) -> list[str]:
    """What differs between the identity stored in last.pt and this run's, in words."""
    if not isinstance(old, dict):  # a last.pt of an older version: one opaque hash
        return ["identity format (older version)"]
    changes = []
    for key, what in IDENTITY_PARTS.items():
        if old.get(key) != identity[key]:
            detail = f" ({old.get(key)} -> {identity[key]})" if key == "code" else ""
            changes.append(what + detail)
    return changes


def _try_resume(path: Path, identity: dict[str, str], parts: dict) -> tuple[int, list[dict]]:
    """Load last.pt into `parts` if it belongs to this run; return (epochs done, history)."""
    if not path.exists():
        return 0, []
    try:
        state = read_torch(path, "training checkpoint")
        if state.get("format") != TRAIN_FORMAT:
            raise CheckpointError(f"{path}: not a diffclosure training checkpoint")
    except CheckpointError as exc:
        log.warning("%s; starting over", exc)
        return 0, []
    if int(state.get("epoch", 0)) > parts["epochs"]:
        log.warning("%s holds %d epochs, more than train.epochs=%d; starting over", path,
                    state["epoch"], parts["epochs"])
        return 0, []
    changes = _identity_changes(state.get("identity"), identity)
    if changes:
        log.warning("%s was written with another %s; starting over from scratch (it is "
                    "overwritten after the first epoch)", path, ", ".join(changes))
        return 0, []
    parts["net"].load_state_dict(state["model"])
    parts["ema"].load_state_dict(state["ema"])
    parts["optimizer"].load_state_dict(state["optimizer"])
    parts["scheduler"].load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    log.info("resuming from %s after epoch %d of %d", path, state["epoch"],
             parts["epochs"])
    if int(state["epoch"]) == parts["epochs"]:
        log.warning("%s already holds all %d epochs of this run (same settings, data and code): "
                    "no training done, score.pt is rewritten from it. To train again from "
                    "scratch, delete %s", path, parts["epochs"], path)
    return int(state["epoch"]), list(state["history"])


# ----------------------------------------------------------------------------- the loop
def _validate(ema_net, val, device, cfg, dctx: Dist, batch: int, autocast) -> float:
    """Mean DSM loss of the EMA weights on the validation split with fixed times and noise."""
    tr = cfg["train"]
    sampler = uniform_times(tr["t_min"], tr["t_max"])
    gen = make_generator(device, stream_seed(tr["seed"], _VALIDATION_STREAM, dctx.rank))
    idx = torch.arange(len(val))[dctx.rank :: dctx.world].to(_index_device(val))
    # Summed on the device: one host sync per validation, not one per batch.
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    with torch.no_grad():
        for start in range(0, len(idx), batch):
            x0, cond = (a.to(device, non_blocking=True)
                        for a in val.get_batch(idx[start : start + batch]))
            with autocast():
                per = dsm_loss(ema_net, x0, cond, ema_net.sde, sampler, gen, reduce=False)
            total += per.double().sum()
            count += per.shape[0]
    total, count = dctx.all_sum_tensor(
        torch.stack([total, torch.tensor(float(count), dtype=torch.float64, device=device)]))
    return total / max(count, 1.0)


def train(
    cfg: dict,
    data_dir: str | Path,
    outdir: str | Path,
    threads: int | None = None,
    in_memory: bool | None = None,
) -> TrainResult:
    """Train on DATA_DIR/{train,val}.h5 and write MODEL_DIR/{score.pt,last.pt,history.csv,
    curves.png}. `cfg` holds the validated sections device, sde, model and train."""
    tr = cfg["train"]
    outdir = Path(outdir)
    # Inputs first: a missing or broken file fails before any work.
    stats = load_stats(data_dir)
    train_set = load_split(data_dir, "train", stats, in_memory)
    val_set = load_split(data_dir, "val", stats, in_memory)
    if train_set.conditions != val_set.conditions or train_set.n != val_set.n:
        raise ConfigError(f"{data_dir}: train.h5 and val.h5 differ in conditions or grid size."
                          f" {remake_hint(Path(data_dir) / 'train.h5')}")
    if len(train_set) == 0 or len(val_set) == 0:
        raise ConfigError(f"{data_dir}: the train or validation split is empty")
    content = content_digest([Path(data_dir) / "train.h5", Path(data_dir) / "val.h5"])

    dctx, device = setup_distributed(cfg.get("device", "auto"))
    try:
        configure_determinism(device, threads or tr["threads"])
        train_set, val_set = place_splits(train_set, val_set, device)
        return _train(cfg, stats, content, train_set, val_set, outdir, dctx, device)
    finally:
        if dctx.owns_group:
            dist.destroy_process_group()


def _build_training(cfg, sde, n_conditions: int, device) -> dict:
    """net, ema, optimizer and scheduler, the weights drawn from train.seed."""
    tr = cfg["train"]
    torch.manual_seed(tr["seed"])  # same initial weights on every rank and every rerun
    net = build_score_net(cfg["model"], sde, n_conditions).to(device)
    ema = EMA(net, tr["ema"])
    optimizer = torch.optim.Adam(net.parameters(), lr=tr["lr"])
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, tr["lr_step"], tr["lr_gamma"])
    return dict(net=net, ema=ema, optimizer=optimizer, scheduler=scheduler, epochs=tr["epochs"])


def _forward_model(net, tr: dict, dctx: Dist, device):
    """The network as the training steps call it: DDP-wrapped on several ranks, compiled
    under train.compile."""
    model = net
    if dctx.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )
    return torch.compile(model) if tr["compile"] else model


def _train_epoch(parts: dict, forward, sde, train_set, order, per_rank: int, t_sampler, gen,
                 autocast, grad_clip: float, device):
    """One pass over `order`: the loss summed on the device (float64) and the samples seen."""
    net, ema, optimizer = parts["net"], parts["ema"], parts["optimizer"]
    # The loss is summed on the device and checked once per epoch: a float() or an
    # isfinite() test per step would stall the host on every step. A non-finite loss
    # makes the sum non-finite, so nothing is missed; only the report comes at the epoch's
    # end, before anything of the epoch is written.
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    seen = 0
    for b in range(0, len(order), per_rank):
        x0, cond = (a.to(device, non_blocking=True) for a in train_set.get_batch(
            order[b : b + per_rank]))
        with autocast():
            loss = dsm_loss(forward, x0, cond, sde, t_sampler, gen)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
        optimizer.step()
        ema.update(net)
        loss_sum += loss.detach().double() * x0.shape[0]
        seen += x0.shape[0]
    return loss_sum, seen


def _save_last(path: Path, parts: dict, identity: dict, epoch: int, history: list) -> None:
    """The resumable state after `epoch` epochs (last.pt)."""
    save_torch_atomic(
        {"format": TRAIN_FORMAT, "identity": identity, "epoch": epoch,
         "model": parts["net"].state_dict(), "ema": parts["ema"].state_dict(),
         "optimizer": parts["optimizer"].state_dict(),
         "scheduler": parts["scheduler"].state_dict(),
         "rng": {"torch": torch.get_rng_state()}, "history": history},
        path,
    )


def _write_final(outdir: Path, cfg, sde, conditions: list, stats, n: int, identity: dict,
                 parts: dict, history: list) -> None:
    """score.pt with its settings and provenance, history.csv and curves.png."""
    settings = {
        "model": dict(cfg["model"]),
        "sde": sde.settings(),
        "conditions": conditions,
        "stats": stats,
        "n": n,
        "version": __version__,
        "config_hash": run_config_hash(cfg),
        "identity": section_hash(identity),
        "code_version": identity["code"],
        "epochs": cfg["train"]["epochs"],
    }
    settings["model"].setdefault("coords", False)
    prov = provenance({k: cfg[k] for k in ("sde", "model", "train")}, "train")
    prov["config_hash"] = settings["config_hash"]  # one hash for one run (threads excluded)
    save_checkpoint(outdir / SCORE, parts["net"], parts["ema"].model, settings, prov)
    write_history(outdir / HISTORY, history, cfg)
    if history:
        plot_curves(outdir / CURVES, history)
    final = history[-1] if history else {}
    log.info("wrote %s (final val loss %s)", outdir / SCORE,
             f"{final['val_loss']:.5g}" if final else "n/a")


def _log_start(net, device, train_set, val_set, batch_size: int, per_rank: int,
               world: int) -> None:
    log.info(
        "training %d parameters on %s: %d train / %d val samples of %d^2, conditions %s, "
        "batch %d%s", count_parameters(net), device, len(train_set), len(val_set),
        train_set.n, list(train_set.conditions), batch_size,
        f" ({per_rank} on each of {world} ranks)" if world > 1 else "",
    )


def _summed_loss(loss_sum, seen: int, dctx: Dist, device, epoch: int, scheduler):
    """The epoch's loss sum and sample count over all ranks; FloatingPointError if the loss
    is not finite."""
    # Summed over ranks before the test, so every rank sees the same verdict (no rank
    # waits in a collective for one that raised).
    loss_sum, seen = dctx.all_sum_tensor(torch.stack(
        [loss_sum, torch.tensor(float(seen), dtype=torch.float64, device=device)]))
    if not math.isfinite(loss_sum):
        raise FloatingPointError(
            f"training loss is {loss_sum} (non-finite) in epoch {epoch + 1}; lower "
            f"train.lr (now {scheduler.get_last_lr()[0]:g}) or set train.grad_clip"
        )
    return loss_sum, seen


def _train(cfg, stats, content: str, train_set, val_set, outdir: Path, dctx: Dist,
           device) -> TrainResult:
    tr = cfg["train"]
    conditions = list(train_set.conditions)
    sde = make_sde(cfg["sde"])
    parts = _build_training(cfg, sde, len(conditions), device)
    net, ema, scheduler = parts["net"], parts["ema"], parts["scheduler"]
    identity = training_identity(cfg, stats, conditions, train_set.n, len(train_set), content)
    if dctx.main:
        outdir.mkdir(parents=True, exist_ok=True)
    dctx.barrier()
    start, history = _try_resume(outdir / LAST, identity, parts)

    per_rank = max(1, tr["batch_size"] // dctx.world)
    if dctx.main:
        _log_start(net, device, train_set, val_set, tr["batch_size"], per_rank, dctx.world)
    forward = _forward_model(net, tr, dctx, device)
    use_bf16 = tr["bf16"] and device.type == "cuda"

    def autocast():
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16)

    sampler = DistributedSampler(
        range(len(train_set)), num_replicas=dctx.world, rank=dctx.rank, shuffle=True,
        seed=tr["seed"], drop_last=False,
    )
    t_sampler = uniform_times(tr["t_min"], tr["t_max"])
    bar = progress(total=tr["epochs"], initial=start, desc="train", unit="epoch",
                   enabled=dctx.main)
    for epoch in range(start, tr["epochs"]):
        tic = time.perf_counter()
        net.train()
        sampler.set_epoch(epoch)
        order = torch.tensor(list(iter(sampler)), dtype=torch.long).to(_index_device(train_set))
        gen = make_generator(device, stream_seed(tr["seed"], epoch, dctx.rank))
        loss_sum, seen = _train_epoch(parts, forward, sde, train_set, order, per_rank,
                                      t_sampler, gen, autocast, tr["grad_clip"], device)
        loss_sum, seen = _summed_loss(loss_sum, seen, dctx, device, epoch, scheduler)
        lr = scheduler.get_last_lr()[0]
        scheduler.step()
        val_loss = _validate(ema.model, val_set, device, cfg, dctx, per_rank, autocast)
        row = dict(epoch=epoch + 1, train_loss=loss_sum / seen, val_loss=val_loss, lr=lr,
                   seconds=time.perf_counter() - tic)
        history.append(row)
        if dctx.main:
            _save_last(outdir / LAST, parts, identity, epoch + 1, history)
            write_history(outdir / HISTORY, history, cfg)
            log.info("epoch %d/%d: train %.5g, val %.5g, lr %.3g, %.1f s", epoch + 1,
                     tr["epochs"], row["train_loss"], val_loss, lr, row["seconds"])
            bar.set_postfix(train=f"{row['train_loss']:.4g}", val=f"{val_loss:.4g}")
        bar.update(1)
        dctx.barrier()  # no rank races ahead while rank 0 writes
    bar.close()

    if dctx.main:
        _write_final(outdir, cfg, sde, conditions, stats, train_set.n, identity, parts, history)
    dctx.barrier()
    if history and not all(math.isfinite(r["val_loss"]) for r in history):
        log.warning("non-finite validation loss in the history; check the data normalisation")
    return TrainResult(net, ema.model, history, start)
