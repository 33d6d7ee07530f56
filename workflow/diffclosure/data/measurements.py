"""Sparse measurements of the closure target and their encoders to the full grid.

The lattice is p x p points fixed in physical space: on an m-grid (p divides m) they are the
grid indices 0, m/p, 2 m/p, ... in each direction, so the same physical points are measured at
every resolution. Encoders turn the p x p values into an (m, m) condition field:

- ``interp``: periodic trigonometric interpolation (spectral zero padding). A field whose
  integer wavenumbers satisfy |k_x|, |k_y| < p/2 is reproduced exactly from its lattice values.
- ``conv``: the masked field (values at the lattice points, 0 elsewhere) is summed over a
  periodic (circular) box of w x w points, w odd ~ conv_width * m/p, and divided by the same box
  sum of the mask, i.e. each point gets the mean of the measurements within the box. The result
  is then mapped affinely onto [min, max] of the measured values, as the research code does.
  A constant field stays exactly constant. (The research code convolved with zero padding on
  a periodic domain, which biases values near the edges; the convolution here is circular.)
"""

from __future__ import annotations

import numpy as np

from diffclosure.coarse.coarsen import resample
from diffclosure.errors import UserFacingError

ENCODERS = ("interp", "conv")


class MeasurementError(UserFacingError, ValueError):
    """A lattice or encoder setting that does not fit the grid; the message names the fix."""


def lattice_stride(m: int, p: int) -> int:
    """Grid points between lattice points on an m-grid, or a clear error if p does not divide m."""
    if p < 1 or m % p:
        raise MeasurementError(
            f"measurements.lattice: a {p}x{p} lattice does not divide the {m}^2 grid; "
            "pick a lattice size that divides every resolution"
        )
    return m // p


def lattice_indices(m: int, p: int) -> np.ndarray:
    """Grid indices of the lattice along one axis of an m-grid."""
    return np.arange(0, m, lattice_stride(m, p))


def sample(target, p: int) -> np.ndarray:
    """Values of `target` (..., m, m) at the p x p lattice points -> (..., p, p)."""
    target = np.asarray(target)
    s = lattice_stride(target.shape[-1], p)
    return target[..., ::s, ::s]


def noise_rng(seed: int, trajectory: int) -> np.random.Generator:
    """Measurement-noise stream of one trajectory: independent of sharding, split and grid."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(trajectory), 3]))


def add_noise(values, relative: float, scale: float, rng: np.random.Generator) -> np.ndarray:
    """values + N(0, (relative * scale)^2), scale = the target's std; a no-op when relative=0."""
    values = np.asarray(values, dtype=float)
    if relative <= 0:
        return values
    return values + relative * scale * rng.standard_normal(values.shape)


def _interp_odd(values: np.ndarray, m: int) -> np.ndarray:
    """Zero padding for an odd lattice (no Nyquist mode to split)."""
    p = values.shape[-1]
    h = (p - 1) // 2
    coef = np.fft.fft2(values)
    out = np.zeros(values.shape[:-2] + (m, m), dtype=complex)
    rows = np.r_[0 : h + 1, m - h : m] if h else np.r_[0:1]
    src = np.r_[0 : h + 1, p - h : p] if h else np.r_[0:1]
    out[..., rows[:, None], rows[None, :]] = coef[..., src[:, None], src[None, :]]
    return np.fft.ifft2(out).real * (m / p) ** 2


def encode_interp(values, m: int) -> np.ndarray:
    """Trigonometric interpolation of the (..., p, p) lattice values to (..., m, m)."""
    values = np.asarray(values, dtype=float)
    p = values.shape[-1]
    lattice_stride(m, p)
    if p == m:
        return values.copy()
    if p % 2:
        return _interp_odd(values, m)
    return resample(values, m)


def conv_kernel_points(m: int, p: int, conv_width: float) -> int:
    """Odd box width in grid points nearest conv_width * m/p (7 at m=64, p=16, width 1.75)."""
    s = lattice_stride(m, p)
    half = int(np.floor((conv_width * s - 1) / 2 + 0.5))
    if half < s // 2:
        raise MeasurementError(
            f"measurements.conv_width: {conv_width} lattice spacings gives a {2 * half + 1}-point "
            f"box at {m}^2 with a {p}x{p} lattice, which leaves grid points with no measurement "
            "in reach; use conv_width >= 1"
        )
    return 2 * half + 1


def _box_sum(f: np.ndarray, half: int) -> np.ndarray:
    """Circular box sum over (2 half + 1)^2 points; the same additions at every point, so a
    shifted input gives the exactly shifted output."""
    for axis in (-1, -2):
        g = f.copy()
        for d in range(1, half + 1):
            g += np.roll(f, d, axis=axis) + np.roll(f, -d, axis=axis)
        f = g
    return f


def encode_conv(values, m: int, conv_width: float) -> np.ndarray:
    """Masked lattice values -> circular box mean -> affine map onto the measured [min, max]."""
    values = np.asarray(values, dtype=float)
    p = values.shape[-1]
    s = lattice_stride(m, p)
    half = conv_kernel_points(m, p, conv_width) // 2
    masked = np.zeros(values.shape[:-2] + (m, m))
    masked[..., ::s, ::s] = values
    mask = np.zeros((m, m))
    mask[::s, ::s] = 1.0
    mean = _box_sum(masked, half) / _box_sum(mask, half)

    vmin = values.min(axis=(-2, -1), keepdims=True)
    vmax = values.max(axis=(-2, -1), keepdims=True)
    emin = mean.min(axis=(-2, -1), keepdims=True)
    emax = mean.max(axis=(-2, -1), keepdims=True)
    span = emax - emin
    safe = np.where(span > 0, span, 1.0)
    scaled = vmin + (mean - emin) / safe * (vmax - vmin)
    # Constant measurements give exactly that constant (the box mean can carry round-off).
    return np.where(vmax > vmin, scaled, vmin * np.ones_like(mean))


def encode(values, m: int, kind: str, conv_width: float = 1.75) -> np.ndarray:
    """Encode lattice values (..., p, p) to the full (..., m, m) grid with `kind`."""
    if kind == "interp":
        return encode_interp(values, m)
    if kind == "conv":
        return encode_conv(values, m, conv_width)
    raise MeasurementError(
        f"measurements.encoder: unknown encoder {kind!r}; choose one of {', '.join(ENCODERS)}"
    )
