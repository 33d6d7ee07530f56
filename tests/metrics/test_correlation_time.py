"""The correlation time of a sequence of fields, on AR(1) fields of known memory, with and
without a memoryless part (the nugget a finite ensemble's mean carries)."""

import math

import numpy as np
import pytest

from diffclosure.metrics.correlation_time import (
    correlation_time,
    lag_correlations,
    shell_correlation_times,
)


def ar1_fields(tau: float, dt: float, sequences: int, records: int, nugget: float, seed=0):
    rng = np.random.default_rng(seed)
    rho = math.exp(-dt / tau)
    x = np.empty((sequences, records, 16, 16))
    x[:, 0] = rng.standard_normal((sequences, 16, 16))
    for t in range(1, records):
        x[:, t] = rho * x[:, t - 1] + math.sqrt(1 - rho**2) * rng.standard_normal(
            (sequences, 16, 16))
    return x + nugget * rng.standard_normal(x.shape)


@pytest.mark.parametrize("tau", [0.3, 1.0, 3.0])
def test_recovers_the_memory_of_ar1_fields(tau):
    fit = correlation_time(ar1_fields(tau, 0.1, 20, 41, nugget=0.0), dt=0.1)
    assert fit.tau == pytest.approx(tau, rel=0.08)
    assert fit.amplitude == pytest.approx(1.0, abs=0.05)


def test_a_memoryless_part_lowers_the_amplitude_not_the_time():
    # Nugget variance 1 on coherent variance 1: every lag's correlation is halved.
    fit = correlation_time(ar1_fields(1.0, 0.1, 20, 41, nugget=1.0), dt=0.1)
    assert fit.tau == pytest.approx(1.0, rel=0.1)
    assert fit.amplitude == pytest.approx(0.5, abs=0.05)
    # the naive reading of the first lag alone would say -dt / log(c_1) = ~0.15
    c1 = lag_correlations(ar1_fields(1.0, 0.1, 20, 41, nugget=1.0), 1)[0]
    assert -0.1 / math.log(c1) < 0.25


def test_white_noise_has_no_memory():
    rng = np.random.default_rng(1)
    fit = correlation_time(rng.standard_normal((10, 30, 16, 16)), dt=0.1)
    assert math.isnan(fit.tau) and fit.amplitude == 0.0


def two_scale_fields(tau_large: float, tau_small: float, dt: float, sequences: int,
                     records: int, cut: float = 4.5, n: int = 16, seed: int = 1):
    """Fields whose Fourier modes with |k| <= cut follow an AR(1) of memory tau_large and the
    rest one of memory tau_small: a low-pass part plus a high-pass part of independent white
    noise, built in numpy from the definition."""
    rng = np.random.default_rng(seed)
    k = np.fft.fftfreq(n, 1.0 / n)
    low = np.sqrt(k[:, None] ** 2 + k[None, :] ** 2) <= cut

    def split(white):
        f = np.fft.fft2(white)
        return np.fft.ifft2(f * low).real, np.fft.ifft2(f * ~low).real

    rho_a, rho_b = math.exp(-dt / tau_large), math.exp(-dt / tau_small)
    a, b = split(rng.standard_normal((sequences, n, n)))
    out = np.empty((sequences, records, n, n))
    for t in range(records):
        if t:
            xa, _ = split(rng.standard_normal((sequences, n, n)))
            _, xb = split(rng.standard_normal((sequences, n, n)))
            a = rho_a * a + math.sqrt(1 - rho_a**2) * xa
            b = rho_b * b + math.sqrt(1 - rho_b**2) * xb
        out[:, t] = a + b
    return out


def test_memory_per_shell_separates_the_scales():
    x = two_scale_fields(1.0, 0.05, dt=0.1, sequences=20, records=41)
    fits = shell_correlation_times(x, dt=0.1)
    # Shells 2..4 hold only the slow part (shells 0 and 1, 1 and 4 modes, are too few for a
    # precise fit); 6..8 only the fast one, whose lag-one correlation exp(-2) = 0.135 is all
    # there is to fit (lag two, 0.018, is below the floor).
    for k in range(2, 5):
        assert fits[k].tau == pytest.approx(1.0, rel=0.2), k
    for k in range(6, 9):
        assert fits[k].tau == pytest.approx(0.05, rel=0.15), k
    # the pooled fit sees one memory, between the two (the fast part holds most of the modes)
    pooled = correlation_time(x, dt=0.1)
    assert 0.05 < pooled.tau and pooled.amplitude < 0.8


def test_memory_per_shell_matches_the_pooled_fit_on_one_scale():
    x = ar1_fields(0.5, 0.1, 40, 41, nugget=0.0)
    fits = shell_correlation_times(x, dt=0.1)
    for k in (3, 6, 9):  # every shell of a field white in space has the same memory
        assert fits[k].tau == pytest.approx(0.5, rel=0.15), k
