"""Exponential moving average of a network's weights (the weights used to validate and sample).

The effective decay is min(decay, (1 + k)/(10 + k)) after k updates (the warm-up of
tf.train.ExponentialMovingAverage): with a fixed 0.999 and the few hundred steps of a small run,
the average would still be half made of the random initial weights.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, net: nn.Module, decay: float):
        if not 0 <= decay <= 1:
            raise ValueError(f"train.ema must be in [0, 1], got {decay}")
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(net).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        d = self.current_decay()
        for avg, p in zip(self.model.parameters(), net.parameters(), strict=True):
            avg.lerp_(p.detach(), 1.0 - d)  # avg = d*avg + (1-d)*p
        for avg, b in zip(self.model.buffers(), net.buffers(), strict=True):
            avg.copy_(b)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "model": self.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.decay = state["decay"]
        self.updates = state["updates"]
        self.model.load_state_dict(state["model"])
