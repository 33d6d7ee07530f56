"""Fourier neural operator building blocks on the periodic square.

A spectral convolution multiplies the lowest `modes` x `modes` Fourier coefficients of its input
(both signs of ky, non-negative kx from the real FFT) by learned complex matrices and drops the
rest. Because the weights live in Fourier space and the FFTs use the "backward" normalisation
(forward unscaled, inverse divided by n^2), the same weights act on any grid: a band-limited
field sampled at 32^2 or at 64^2 is mapped to the same band-limited output. A multiplication in
Fourier space also commutes with periodic shifts (torch.roll), so an FNO without coordinate
inputs is exactly translation equivariant.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class _ContiguousBmm(torch.autograd.Function):
    """torch.bmm whose backward makes its operands contiguous first.

    The gradient reaching the spectral product is a permuted view; the CPU bmm of a
    non-contiguous batch copies it one matrix at a time (a select and a clone per Fourier mode),
    which made the backward of the product ~17% of a training step. One copy of the whole
    batch is far cheaper.
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(a, b)
        return torch.bmm(a, b)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        a, b = ctx.saved_tensors
        grad = grad.contiguous()
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_a = torch.bmm(grad, b.transpose(1, 2).contiguous())
        if ctx.needs_input_grad[1]:
            grad_b = torch.bmm(a.transpose(1, 2).contiguous(), grad)
        return grad_a, grad_b


def contiguous_bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b per batch entry; plain torch.bmm when no gradient is needed."""
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
        return _ContiguousBmm.apply(a, b)
    return torch.bmm(a, b)


class SpectralConv2d(nn.Module):
    """y = irfft2(W(k) rfft2(x)) on the retained modes; input/output (B, C, n, n).

    Weights are stored as real pairs (..., 2) so that optimisers, EMA and DDP see ordinary real
    tensors; `torch.view_as_complex` turns them into complex numbers at use. The FFT part always
    runs in float32 (bf16 FFTs are neither supported for general sizes nor accurate enough), so
    the layer is safe under bf16 autocast.
    """

    def __init__(self, in_channels: int, out_channels: int, modes: int):
        super().__init__()
        if modes < 1:
            raise ValueError(f"model.modes must be >= 1, got {modes}")
        self.in_channels, self.out_channels, self.modes = in_channels, out_channels, modes
        # Same scale as the usual FNO init: |W| ~ 1/(in*out), keeps the layer near-identity-free.
        scale = 1.0 / (in_channels * out_channels)
        shape = (in_channels, out_channels, modes, modes, 2)
        self.weight_pos = nn.Parameter(scale * torch.rand(shape))  # ky = 0 .. modes-1
        self.weight_neg = nn.Parameter(scale * torch.rand(shape))  # ky = -modes .. -1

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, modes={self.modes}"

    def _block(self, my: int, mx: int) -> torch.Tensor:
        """The real (M, 2cin, 2cout) block of the retained weights, contiguous. Without
        gradients (sampling) it is kept between calls until the weights change (their in-place
        version counters: an optimiser step, an EMA update, load_state_dict): for the small
        batches of a rollout, rebuilding it was most of the layer's time (issue 24's profile:
        the copies and concatenations of 16-mode weights, 3 MB per layer per call)."""
        wp, wn = self.weight_pos, self.weight_neg
        key = (my, mx, wp._version, wn._version, wp.data_ptr(), wn.data_ptr(), wp.device)
        cached = not torch.is_grad_enabled()
        if cached and getattr(self, "_cache_key", None) == key:
            return self._cache
        w = torch.cat([wp[:, :, :my, :mx], wn[:, :, self.modes - my :, :mx]], dim=2).float()
        wr, wi = w[..., 0].flatten(2), w[..., 1].flatten(2)  # (cin, cout, M)
        block = torch.cat([torch.cat([wr, wi], 1), torch.cat([-wi, wr], 1)], 0)
        block = block.permute(2, 0, 1).contiguous()
        if cached:
            self._cache_key, self._cache = key, block
        return block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n_y, n_x = x.shape[-2:]
        # Modes a grid cannot hold are dropped, so small grids work with the same weights.
        my = min(self.modes, n_y // 2)
        mx = min(self.modes, n_x // 2 + 1)
        with torch.autocast(device_type=x.device.type, enabled=False):
            xf = torch.fft.rfft2(x.float())
            batch, cout = x.shape[0], self.out_channels
            # Both ky bands in one product. Complex batched matmul runs a loop per matrix on the
            # CPU, so the complex product is done as one real matmul with the 2x2 block
            # [[Re W, Im W], [-Im W, Re W]] acting on (Re x, Im x).
            modes_in = torch.cat([xf[:, :, :my, :mx], xf[:, :, n_y - my :, :mx]], dim=2)
            xin = torch.cat([modes_in.real, modes_in.imag], 1).flatten(2)  # (B, 2cin, M)
            # (M, B, 2cin) @ (M, 2cin, 2cout): contiguous operands, else bmm copies per matrix.
            prod = contiguous_bmm(xin.permute(2, 0, 1).contiguous(), self._block(my, mx))
            prod = prod.permute(1, 2, 0).reshape(batch, 2 * cout, 2 * my, mx)
            mixed = torch.complex(prod[:, :cout], prod[:, cout:])
            out = xf.new_zeros(batch, cout, n_y, n_x // 2 + 1)
            out[:, :, :my, :mx] = mixed[:, :, :my]
            out[:, :, n_y - my :, :mx] = mixed[:, :, my:]
            return torch.fft.irfft2(out, s=(n_y, n_x))


class PointwiseConv(nn.Conv2d):
    """A 1x1 convolution computed as one matrix product over the channel axis.

    Same parameters (and state-dict keys) as nn.Conv2d(in, out, 1); on the CPU the matmul
    avoids the per-call layout conversions of the convolution backend, several times faster
    at the small widths used here.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, n_y, n_x = x.shape
        w = self.weight.view(self.out_channels, self.in_channels)
        # bmm with the weight expanded over the batch: torch.matmul of a matrix with a batch
        # folds the batch into a transposed product whose backward is ~1.6x slower on the CPU.
        y = torch.bmm(w.to(x.dtype).expand(b, -1, -1), x.reshape(b, self.in_channels, n_y * n_x))
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)[:, None]
        return y.view(b, self.out_channels, n_y, n_x)


class FourierLayer(nn.Module):
    """One FNO layer: GELU(spectral conv + pointwise 1x1 conv [+ per-channel bias from outside])."""

    def __init__(self, width: int, modes: int):
        super().__init__()
        self.spectral = SpectralConv2d(width, width, modes)
        self.pointwise = PointwiseConv(width, width)

    def forward(self, h: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
        out = self.spectral(h) + self.pointwise(h)
        if shift is not None:  # (B, width) time embedding, added per channel
            out = out + shift[:, :, None, None]
        return F.gelu(out)


def grid_coordinates(batch: int, n_y: int, n_x: int, device, dtype) -> torch.Tensor:
    """(batch, 2, n_y, n_x) coordinates (x, y) in [0, 1): x_j = j/n on the unit square."""
    y = torch.arange(n_y, device=device, dtype=dtype) / n_y
    x = torch.arange(n_x, device=device, dtype=dtype) / n_x
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    return torch.stack([xx, yy]).expand(batch, 2, n_y, n_x)


class FNOBranch(nn.Module):
    """Lift one input channel (optionally with (x, y)) to `width` and apply `layers` Fourier layers.

    `forward(v, shifts)` takes optional per-layer (B, width) additions (the time embedding of the
    noisy-target branch).
    """

    def __init__(self, width: int, modes: int, layers: int, coords: bool = False):
        super().__init__()
        self.coords = coords
        self.lift = PointwiseConv(3 if coords else 1, width)
        self.layers = nn.ModuleList(FourierLayer(width, modes) for _ in range(layers))

    def forward(self, v: torch.Tensor, shifts: list[torch.Tensor] | None = None) -> torch.Tensor:
        if self.coords:
            b, _, n_y, n_x = v.shape
            v = torch.cat([v, grid_coordinates(b, n_y, n_x, v.device, v.dtype)], dim=1)
        h = self.lift(v)
        for i, layer in enumerate(self.layers):
            h = layer(h, None if shifts is None else shifts[i])
        return h


class GaussianFourierEmbedding(nn.Module):
    """[sin(2 pi W t), cos(2 pi W t)] with fixed W ~ N(0, scale^2) (Tancik et al.; Song et al.).

    W is a buffer: part of the state dict (so a reloaded model is the same function) but not
    trained, as in the paper.
    """

    def __init__(self, features: int, scale: float):
        super().__init__()
        if features % 2:
            raise ValueError(f"model.embedding_features must be even, got {features}")
        self.register_buffer("freqs", torch.randn(features // 2) * scale)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        arg = 2 * math.pi * t.float()[:, None] * self.freqs[None, :]
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)
