"""The processes of a training run: one, or one per GPU under torchrun (WORLD_SIZE > 1).

Under torchrun the network is wrapped in DistributedDataParallel, each rank takes its part of
every epoch's permutation with train.batch_size / WORLD_SIZE samples per step (the global
batch is unchanged), losses are summed over ranks, and only rank 0 writes files. The process
set-up also fixes what makes a run repeatable on one device: the thread count and torch's
deterministic algorithms. See docs/multi-gpu.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from diffclosure.devices import resolve_device


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

    def all_sum_tensor(self, buf: torch.Tensor) -> list[float]:
        """Sum a device tensor over ranks in place and bring it to the host (one sync)."""
        if self.world > 1:
            dist.all_reduce(buf)
        return buf.tolist()


def setup_distributed(device_name: str) -> tuple[Dist, torch.device]:
    """This process's rank and device, joining the process group under torchrun."""
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


def teardown_distributed(dctx: Dist) -> None:
    """Leave the process group if setup_distributed made it (a caller's group is theirs)."""
    if dctx.owns_group:
        dist.destroy_process_group()


def configure_determinism(device: torch.device, threads: int) -> None:
    torch.set_num_threads(threads)
    if device.type == "cuda":
        # cuBLAS needs this for deterministic GEMMs; only effective before its first use.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


def forward_model(net, dctx: Dist, device, compile_net: bool):
    """The network as the training steps call it: DDP-wrapped on several ranks, compiled
    when `compile_net` (train.compile)."""
    model = net
    if dctx.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )
    return torch.compile(model) if compile_net else model
