"""The correlation time of a sequence of fields, on AR(1) fields of known memory, with and
without a memoryless part (the nugget a finite ensemble's mean carries)."""

import math

import numpy as np
import pytest

from diffclosure.metrics.correlation_time import correlation_time, lag_correlations


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
