"""Training batches augmented by the symmetries of the square (solver/symmetry.py), train.augment.

Each sample of a batch gets its own random element of D4, applied to its target and to every
condition channel alike. The channels are normalised, (x - mean) / std, and are pseudo-scalars,
so a reflection maps the raw value x to -x: the normalised value z to -z - 2 mean / std. With
that offset the transform is exact whatever the channel means (a training split's means are
near 0 but not 0).
"""

from __future__ import annotations

import torch

from diffclosure.data.stats import stats_key
from diffclosure.solver import symmetry


class Augment:
    """Random D4 elements per sample on normalised (target, condition) batches."""

    def __init__(self, offsets):
        # mean / std of each channel, target first, as a (1, 1 + C, 1, 1) tensor.
        self.offsets = torch.as_tensor(offsets, dtype=torch.float32).reshape(1, -1, 1, 1)

    @classmethod
    def from_stats(cls, stats: dict, conditions: list[str]) -> Augment:
        return cls([float(stats[stats_key(name)]["mean"]) / float(stats[stats_key(name)]["std"])
                    for name in ["target", *conditions]])

    def __call__(self, x0: torch.Tensor, cond: torch.Tensor, gen: torch.Generator):
        both = torch.cat([x0, cond], dim=1)
        elements = torch.randint(0, len(symmetry.ELEMENTS), (both.shape[0],), generator=gen,
                                 device=gen.device).to(both.device)
        out = both.clone()
        offsets = self.offsets.to(both.device, both.dtype)
        for e in symmetry.ELEMENTS:
            if e == 0:
                continue  # the identity
            rows = (elements == e).nonzero(as_tuple=True)[0]
            if not len(rows):
                continue
            moved = symmetry.transform(both[rows], e, pseudo=False)
            out[rows] = -moved - 2.0 * offsets if symmetry.determinant(e) < 0 else moved
        return out[:, : x0.shape[1]], out[:, x0.shape[1]:]
