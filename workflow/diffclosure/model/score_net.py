"""The conditional FNO score network of the paper (PAPER.md, "The score model").

One FNO branch for the noisy target and one per condition channel (vorticity, encoded sparse
measurements, optional Smagorinsky estimate). The time t enters through a Gaussian Fourier
embedding and an MLP, added per channel after every Fourier layer of the target branch. The
branches are concatenated and projected by 1x1 convolutions through `head` to one channel; the
result is divided by std(t), so the network itself only has to predict -z (order one).

Coordinates: the paper lifts (value, x, y). Grid coordinates make the network depend on absolute
position, which the physics (periodic, statistically homogeneous turbulence) does not, and they
tie the learned function to the training domain. With `coords=False` (our default) the network
is exactly equivariant to periodic shifts and has nothing resolution-specific in its inputs, so
it is a translation-equivariant, resolution-invariant closure. `coords=True` reproduces the
paper's lifting.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from diffclosure.model.fno import FNOBranch, GaussianFourierEmbedding, PointwiseConv


class ScoreNet(nn.Module):
    """score(x, t, cond) of the noisy normalised target.

    Shapes: x (B, 1, n, n), t (B,), cond (B, n_conditions, n, n) -> (B, 1, n, n). Any even n
    works with the same weights.
    """

    def __init__(
        self,
        n_conditions: int,
        width: int,
        modes: int,
        layers: int,
        embedding_features: int,
        embedding_scale: float,
        head: list[int] | tuple[int, ...],
        sde,
        coords: bool = False,
    ):
        super().__init__()
        if n_conditions < 0:
            raise ValueError(f"n_conditions must be >= 0, got {n_conditions}")
        self.n_conditions = n_conditions
        self.sde = sde
        self.embed = GaussianFourierEmbedding(embedding_features, embedding_scale)
        self.embed_mlp = nn.Linear(embedding_features, embedding_features)
        # One projection of the embedding per Fourier layer of the target branch.
        self.embed_dense = nn.ModuleList(
            nn.Linear(embedding_features, width) for _ in range(layers)
        )
        self.target_branch = FNOBranch(width, modes, layers, coords)
        self.cond_branches = nn.ModuleList(
            FNOBranch(width, modes, layers, coords) for _ in range(n_conditions)
        )
        sizes = [width * (1 + n_conditions), *head, 1]
        self.head = nn.ModuleList(
            PointwiseConv(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )

    def encode(self, cond: torch.Tensor | None) -> torch.Tensor | None:
        """The condition branches' features (B, width * n_conditions, n, n), or None without
        conditions. They depend on neither x nor t: a sampler computes them once for all its
        steps and members, training once for all the noise draws of a sample."""
        c = 0 if cond is None else cond.shape[1]
        if c != self.n_conditions:
            raise ValueError(f"the network expects {self.n_conditions} condition channels, got {c}")
        if not self.n_conditions:
            return None
        return torch.cat([branch(cond[:, i : i + 1]) for i, branch in
                          enumerate(self.cond_branches)], dim=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None, *,
                features: torch.Tensor | None = None):
        """The score of x (B, 1, n, n) at times t (B,) given cond (B', C, n, n), or given the
        condition's `features` (encode(cond)) instead. B may be a multiple k of B': each
        condition then serves k consecutive rows of x (members, or noise draws), and its
        branches run once."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"x must be (B, 1, n, n), got {tuple(x.shape)}")
        if features is None:
            features = self.encode(cond)
        t = t.reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t.reshape(-1)
        emb = F.gelu(self.embed_mlp(self.embed(t)))
        shifts = [dense(emb) for dense in self.embed_dense]
        hs = [self.target_branch(x, shifts)]
        if features is not None:
            hs.append(_per_row(features, x.shape[0]))
        h = torch.cat(hs, dim=1)
        for i, conv in enumerate(self.head):
            h = conv(h)
            if i < len(self.head) - 1:
                h = F.gelu(h)
        # Divide in float32: std(t) spans four orders of magnitude.
        std = self.sde.std(t.float())
        return h.float() / std[:, None, None, None]


def _per_row(features: torch.Tensor, rows: int) -> torch.Tensor:
    """Condition features for `rows` rows of x: each of the B' conditions repeated
    rows / B' times in a row (members and draws of one condition are consecutive)."""
    b = features.shape[0]
    if b == rows:
        return features
    if rows % b:
        raise ValueError(f"x has {rows} rows, not a multiple of the condition's {b}")
    return features.repeat_interleave(rows // b, dim=0)


def count_parameters(net: nn.Module, trainable_only: bool = True) -> int:
    """Real parameters (complex spectral weights are stored as real pairs, so counted twice)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)


def build_score_net(model_cfg: dict, sde, n_conditions: int) -> ScoreNet:
    """A ScoreNet from the config's `model` section (defaults already filled by config.load)."""
    return ScoreNet(
        n_conditions=n_conditions,
        width=model_cfg["width"],
        modes=model_cfg["modes"],
        layers=model_cfg["layers"],
        embedding_features=model_cfg["embedding_features"],
        embedding_scale=model_cfg["embedding_scale"],
        head=list(model_cfg["head"]),
        sde=sde,
        coords=bool(model_cfg.get("coords", False)),
    )
