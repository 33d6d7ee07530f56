"""Filters and coarse-graining against Fourier analysis on the periodic square."""

import numpy as np
import pytest

from diffclosure.coarse import coarsen, filters
from diffclosure.solver.grid import Grid

L = 2.0  # a non-unit domain catches forgotten 2 pi / L factors


def mode(n, a, b, phase=0.3, length=L):
    """cos(k.x + phase) with integer wavenumbers (a, b) along (x, y); returns field and |k|."""
    X, Y = Grid(n, length).mesh
    kx, ky = 2 * np.pi * a / length, 2 * np.pi * b / length
    return np.cos(kx * X + ky * Y + phase), kx, ky


def band_limited(rng, shape, n, kmax, length=L):
    """Random real field with integer wavenumbers |k_x|, |k_y| <= kmax (< n/2)."""
    w = rng.standard_normal(shape + (n, n))
    w_hat = np.fft.rfft2(w)
    iy = np.fft.fftfreq(n, 1.0 / n)[:, None]
    ix = np.arange(n // 2 + 1)[None, :]
    w_hat[..., (np.abs(iy) > kmax) | (ix > kmax)] = 0
    return np.fft.irfft2(w_hat, s=(n, n))


@pytest.mark.parametrize("a,b", [(1, 0), (0, 3), (2, -5), (7, 4)])
def test_transfer_functions_on_single_modes(a, b):
    n, delta = 32, 0.3
    w, kx, ky = mode(n, a, b)
    expected = {
        "gaussian": np.exp(-(kx**2 + ky**2) * delta**2 / 24),
        "box": (np.sin(kx * delta / 2) / (kx * delta / 2) if kx else 1.0)
        * (np.sin(ky * delta / 2) / (ky * delta / 2) if ky else 1.0),
        "sharp": float(abs(kx) <= np.pi / delta and abs(ky) <= np.pi / delta),
    }
    for kind, gain in expected.items():
        out = filters.filter_field(w, kind, delta, L)
        np.testing.assert_allclose(out, gain * w, atol=1e-12, err_msg=kind)


def test_sharp_cutoff_is_per_direction():
    # Cutoff pi/Delta corresponds to integer wavenumber 4 when Delta = L/8: (4, 4) is kept
    # although its radius exceeds 4, (5, 0) is removed.
    delta = L / 8
    kept, _, _ = mode(32, 4, 4)
    dropped, _, _ = mode(32, 5, 0)
    np.testing.assert_allclose(filters.filter_field(kept, "sharp", delta, L), kept, atol=1e-12)
    np.testing.assert_allclose(filters.filter_field(dropped, "sharp", delta, L), 0, atol=1e-12)


def test_sharp_filter_is_idempotent():
    w = np.random.default_rng(0).standard_normal((3, 32, 32))
    once = filters.filter_field(w, "sharp", 0.2, L)
    twice = filters.filter_field(once, "sharp", 0.2, L)
    np.testing.assert_allclose(twice, once, atol=1e-12)
    assert np.abs(once - w).max() > 0.1  # it did remove something


@pytest.mark.parametrize("kind", ["box", "gaussian"])
def test_box_and_gaussian_preserve_the_mean(kind):
    w = np.random.default_rng(1).standard_normal((4, 24, 24)) + 3.0
    out = filters.filter_field(w, kind, 0.37, L)
    np.testing.assert_allclose(out.mean(axis=(-1, -2)), w.mean(axis=(-1, -2)), atol=1e-12)


def _ddx(w, length=L):
    n = w.shape[-1]
    k = 2 * np.pi / length * np.arange(n // 2 + 1)
    k[-1] = 0.0  # the Nyquist column carries no derivative
    return np.fft.irfft2(1j * k * np.fft.rfft2(w), s=(n, n))


@pytest.mark.parametrize("kind", filters.FILTERS)
def test_filtering_commutes_with_derivatives(kind):
    w = np.random.default_rng(2).standard_normal((2, 32, 32))
    lhs = filters.filter_field(_ddx(w), kind, 0.25, L)
    rhs = _ddx(filters.filter_field(w, kind, 0.25, L))
    np.testing.assert_allclose(lhs, rhs, atol=1e-10)


def test_box_is_the_running_mean_of_the_interpolant():
    # Running mean of cos(k x) over [x - D/2, x + D/2] = sin(k D/2)/(k D/2) cos(k x),
    # computed here by quadrature of the analytic mode, not by the filter.
    n, delta, a = 16, 0.45, 3
    x = np.arange(n) * L / n
    k = 2 * np.pi * a / L
    s = np.linspace(-delta / 2, delta / 2, 2001)
    running = np.trapezoid(np.cos(k * (x[:, None] + s[None, :])), s, axis=1) / delta
    w = np.broadcast_to(np.cos(k * x), (n, n))
    out = filters.filter_field(w, "box", delta, L)
    np.testing.assert_allclose(out[0], running, atol=1e-6)


# ------------------------------------------------------------------------------ coarse-graining
def test_truncation_of_a_band_limited_field_equals_subsampling():
    w = band_limited(np.random.default_rng(3), (2,), 64, kmax=7)
    np.testing.assert_allclose(coarsen.truncate(w, 16), coarsen.subsample(w, 16), atol=1e-12)


def test_truncation_keeps_modes_below_m_half_and_drops_the_nyquist():
    keep, _, _ = mode(32, 7, -7)
    nyq, _, _ = mode(32, 8, 0, phase=0.0)
    np.testing.assert_allclose(coarsen.truncate(keep, 16), keep[::2, ::2], atol=1e-12)
    np.testing.assert_allclose(coarsen.truncate(nyq, 16), 0.0, atol=1e-12)


def test_resample_up_interpolates_and_down_recovers():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((3, 8, 8))  # Nyquist content included
    up = coarsen.resample(w, 32)
    np.testing.assert_allclose(up[..., ::4, ::4], w, atol=1e-12)  # takes the source values
    smooth = band_limited(rng, (2,), 8, kmax=3)
    np.testing.assert_allclose(coarsen.resample(coarsen.resample(smooth, 32), 8), smooth,
                               atol=1e-12)


def test_resample_up_reproduces_a_band_limited_field_exactly():
    fine, _, _ = mode(64, 3, -2)
    np.testing.assert_allclose(coarsen.resample(fine[::8, ::8], 64), fine, atol=1e-12)


@pytest.mark.parametrize("a,b", [(0, 0), (1, 0), (0, -2), (3, -2), (-3, 3), (2, 1),
                                 (4, 0), (0, -4), (5, 2), (-2, 7), (4, 4)])
def test_filter_then_truncate_of_a_single_mode(a, b):
    # coarsen(..., "filter") from 32^2 to 8^2 keeps integer wavenumbers |a|, |b| < 4, each
    # multiplied by the Gaussian's transfer function exp(-|k|^2 Delta^2 / 24) (the kernel with
    # second moment Delta^2 / 12), k = 2 pi (a, b) / L; the rest, the coarse Nyquist included,
    # is removed.
    n, m, delta = 32, 8, 0.3
    w, kx, ky = mode(n, a, b)
    out = coarsen.coarsen(w, m, "filter", L, "gaussian", delta)
    if abs(a) < m // 2 and abs(b) < m // 2:
        gain = np.exp(-(kx**2 + ky**2) * delta**2 / 24)
        expected = gain * mode(m, a, b)[0]
    else:
        expected = np.zeros((m, m))
    np.testing.assert_allclose(out, expected, atol=1e-12)


def test_bad_coarse_grid_is_named():
    w = np.zeros((2, 32, 32))
    with pytest.raises(coarsen.ResolutionError, match="12 must divide the source grid 32"):
        coarsen.subsample(w, 12)
    with pytest.raises(ValueError, match="unknown filter kind"):
        filters.filter_field(w, "tophat", 0.1)
