"""The config's `device` field turned into a torch.device, with one set of rules for every stage.

- "auto": CUDA when torch sees a GPU, else the CPU.
- "cuda": this process's GPU, cuda:<local_rank> (0 outside torchrun; under torchrun each rank
  passes its LOCAL_RANK so that ranks do not share one GPU).
- "cuda:N": that GPU; N must be below the number of GPUs torch sees.
- "cpu" (or anything else torch accepts): as given.

Asking for CUDA where torch sees none (a CPU-only torch build, no driver, CUDA_VISIBLE_DEVICES
empty) is a ConfigError naming `device` before any work starts, rather than a CUDA runtime
error deep inside the first kernel.
"""

from __future__ import annotations

import torch

from diffclosure.config import ConfigError


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The torch.device for the config value `name` (see the module docstring)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device: '{name}' requested but torch sees no CUDA device (CPU-only build, no "
                "driver or CUDA_VISIBLE_DEVICES empty); set device: auto or cpu"
            )
        if name == "cuda":
            name = f"cuda:{local_rank}"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(
            f"device: '{name}' is not a torch device; use auto, cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(
                f"device: '{name}' requested but torch sees {count} CUDA device(s) "
                f"(cuda:0 to cuda:{count - 1}); pick one of those or set device: cuda"
            )
    return device
