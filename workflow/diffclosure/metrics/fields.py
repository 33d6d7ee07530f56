"""Pointwise and field-wise error measures between fields (..., n, n); numpy in, numpy out.

Torch tensors are accepted too (moved to the CPU and converted). "Per sample" means over the
last two axes: the result has the leading shape of the inputs (broadcast against each other).
"""

from __future__ import annotations

import numpy as np

FIELD_AXES = (-2, -1)


def as_numpy(a) -> np.ndarray:
    """A numpy view of an array or a (possibly CUDA, possibly grad-tracking) torch tensor."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def d_fro(a, b, axes=FIELD_AXES) -> np.ndarray:
    """Relative Frobenius error ||a - b|| / ||b|| per sample (over `axes`); the paper's D_Fro."""
    a, b = as_numpy(a), as_numpy(b)
    a = a.astype(np.float64, copy=False)
    b = b.astype(np.float64, copy=False)
    num = np.sqrt(np.sum((a - b) ** 2, axis=axes))
    den = np.sqrt(np.sum(np.broadcast_to(b, np.broadcast_shapes(a.shape, b.shape)) ** 2, axis=axes))
    with np.errstate(divide="ignore", invalid="ignore"):
        return num / den


def d_fro_mean(a, b, axes=FIELD_AXES) -> float:
    """D_Fro averaged over all samples."""
    return float(np.mean(d_fro(a, b, axes)))


def mse(a, b, axes=FIELD_AXES) -> np.ndarray:
    """Mean squared error per sample."""
    a, b = as_numpy(a).astype(np.float64), as_numpy(b).astype(np.float64)
    return np.mean((a - b) ** 2, axis=axes)


def correlation(a, b, axes=FIELD_AXES) -> np.ndarray:
    """Pearson correlation of two fields per sample (means removed over `axes`)."""
    a, b = as_numpy(a).astype(np.float64), as_numpy(b).astype(np.float64)
    a = a - a.mean(axis=axes, keepdims=True)
    b = b - b.mean(axis=axes, keepdims=True)
    num = np.sum(a * b, axis=axes)
    den = np.sqrt(np.sum(a * a, axis=axes) * np.sum(b * b, axis=axes))
    with np.errstate(divide="ignore", invalid="ignore"):
        return num / den


def pdf(values, bins: int | np.ndarray = 101, value_range=None) -> tuple[np.ndarray, np.ndarray]:
    """Histogram estimate of the PDF of all `values`: (bin centres, density).

    Pass the reference's `value_range` (or bin edges) to compare several fields on one grid.
    """
    v = as_numpy(values).astype(np.float64).ravel()
    dens, edges = np.histogram(v, bins=bins, range=value_range, density=True)
    return 0.5 * (edges[1:] + edges[:-1]), dens
