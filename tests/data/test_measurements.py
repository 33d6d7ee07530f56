"""Sparse-measurement lattice, noise and encoders."""

import numpy as np
import pytest

from diffclosure.data import measurements as M


def band_limited(seed, shape, n, kmax):
    """Random real field with integer wavenumbers |k_x|, |k_y| <= kmax."""
    w_hat = np.fft.fft2(np.random.default_rng(seed).standard_normal(shape + (n, n)))
    k = np.fft.fftfreq(n, 1.0 / n)
    w_hat[..., (np.abs(k[:, None]) > kmax) | (np.abs(k[None, :]) > kmax)] = 0
    return np.fft.ifft2(w_hat).real


def test_lattice_is_fixed_in_physical_space():
    np.testing.assert_array_equal(M.lattice_indices(64, 16), np.arange(0, 64, 4))
    # The same physical points at every resolution: x = index * L / m.
    for m in (16, 32, 128):
        np.testing.assert_allclose(M.lattice_indices(m, 8) / m, np.arange(8) / 8)
    t = np.arange(2 * 32 * 32, dtype=float).reshape(2, 32, 32)
    vals = M.sample(t, 8)
    assert vals.shape == (2, 8, 8)
    np.testing.assert_array_equal(vals, t[:, ::4, ::4])


def test_lattice_that_does_not_divide_the_grid_is_named():
    with pytest.raises(M.MeasurementError, match=r"measurements.lattice: a 6x6 lattice does not"):
        M.sample(np.zeros((32, 32)), 6)


@pytest.mark.parametrize("m,p", [(32, 8), (64, 16), (20, 5)])
def test_interp_reproduces_a_band_limited_field(m, p):
    kmax = (p - 1) // 2  # strictly below p/2
    field = band_limited(0, (3,), m, kmax)
    enc = M.encode(M.sample(field, p), m, "interp")
    np.testing.assert_allclose(enc, field, atol=1e-12)


def test_conv_kernel_width_in_grid_points():
    assert M.conv_kernel_points(64, 16, 1.75) == 7  # the paper's 7x7 at 64^2 with 16^2
    assert M.conv_kernel_points(32, 8, 1.75) == 7
    assert M.conv_kernel_points(32, 16, 1.75) == 3
    assert M.conv_kernel_points(64, 16, 1.0) % 2 == 1
    with pytest.raises(M.MeasurementError, match="measurements.conv_width"):
        M.conv_kernel_points(64, 8, 0.25)


def test_conv_leaves_a_constant_field_unchanged():
    for c in (0.1, -3.7, 1e-7):
        vals = np.full((2, 16, 16), c)
        np.testing.assert_array_equal(M.encode(vals, 64, "conv", 1.75), np.full((2, 64, 64), c))


def test_conv_spans_exactly_the_measured_range_and_is_a_box_mean_between():
    vals = np.random.default_rng(1).standard_normal((3, 8, 8))
    enc = M.encode(vals, 32, "conv", 1.75)
    np.testing.assert_allclose(enc.min(axis=(-1, -2)), vals.min(axis=(-1, -2)), atol=1e-12)
    np.testing.assert_allclose(enc.max(axis=(-1, -2)), vals.max(axis=(-1, -2)), atol=1e-12)
    # A lone nonzero measurement at the origin: with a 7-point box and lattice spacing 4, the
    # points within 3 cells of it (circularly: rows/cols 29..31 too) see it; others see zeros.
    one = np.zeros((8, 8))
    one[0, 0] = 1.0
    enc = M.encode(one, 32, "conv", 1.75)
    reach = np.r_[0:4, 29:32]
    assert np.all(enc[np.ix_(reach, reach)] > 0)
    assert np.all(enc[5:28, :] == 0) and np.all(enc[:, 5:28] == 0)


@pytest.mark.parametrize("kind", ["interp", "conv"])
def test_encoders_are_periodic(kind):
    # Shifting the field by one lattice spacing shifts the encoding by m/p grid points.
    m, p = 32, 8
    vals = np.random.default_rng(2).standard_normal((2, p, p))
    enc = M.encode(vals, m, kind, 1.75)
    for shift in ((1, 0), (0, -1), (3, 5)):
        rolled = M.encode(np.roll(vals, shift, axis=(-2, -1)), m, kind, 1.75)
        expected = np.roll(enc, (shift[0] * m // p, shift[1] * m // p), axis=(-2, -1))
        if kind == "conv":
            np.testing.assert_array_equal(rolled, expected)
        else:
            np.testing.assert_allclose(rolled, expected, atol=1e-12)


def test_noise_is_seeded_and_scaled():
    vals = np.zeros((200, 16, 16))
    a = M.add_noise(vals, 0.1, 2.0, M.noise_rng(0, 3))
    b = M.add_noise(vals, 0.1, 2.0, M.noise_rng(0, 3))
    c = M.add_noise(vals, 0.1, 2.0, M.noise_rng(0, 4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # std 0.2 estimated from 51200 normals: relative standard error ~0.3%.
    assert abs(a.std() / 0.2 - 1) < 0.02
    np.testing.assert_array_equal(M.add_noise(vals + 1, 0.0, 2.0, M.noise_rng(0, 3)), vals + 1)


def test_unknown_encoder_is_named():
    with pytest.raises(M.MeasurementError, match="measurements.encoder"):
        M.encode(np.zeros((4, 4)), 8, "nearest")
