"""How long an error stays coherent: the correlation time of a sequence of fields.

For sequences e_t of fields recorded dt apart (S independent sequences of T records), the pooled
lag-k correlation

    c_k = sum_{s,t} <e_{s,t}, e_{s,t+k}> / sqrt(sum <e_{s,t}, e_{s,t}> sum <e_{s,t+k}, e_{s,t+k}>)

is fitted by c_k = A exp(-k dt / tau) over the lags where it is clearly positive. The amplitude
A <= 1 absorbs a part with no memory at all (a nugget: for the error of a finite ensemble's mean,
its residual sampling noise), so tau is the memory of the coherent part, what a coupled run's
correlated sampling should match (sampling/noise_source.py).

Per wavenumber shell (shell_correlation_times), the same fit of the same sums restricted to the
Fourier modes of one shell: an error whose large scales remember longer than its small ones
(the LES preset's, issue 21) gets a memory per scale.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from diffclosure.metrics.spectra import _shell_sum


class CorrelationTime(NamedTuple):
    tau: float  # time units; inf when no decay is seen, nan when nothing correlates
    amplitude: float  # A of the fit
    lags: list[float]  # lag times of the correlations (k dt)
    correlation: list[float]  # c_k


def lag_correlations(series: np.ndarray, max_lag: int) -> np.ndarray:
    """c_1 .. c_max_lag of `series` (S, T, ...) pooled over the S sequences."""
    e = np.asarray(series, dtype=np.float64).reshape(series.shape[0], series.shape[1], -1)
    out = []
    for k in range(1, max_lag + 1):
        a, b = e[:, :-k], e[:, k:]
        out.append(float(np.sum(a * b) / math.sqrt(np.sum(a * a) * np.sum(b * b))))
    return np.array(out)


def correlation_time(series: np.ndarray, dt: float, max_lag: int = 10,
                     floor: float = 0.05) -> CorrelationTime:
    """The fitted correlation time (module docstring) of `series` (S, T, ...) recorded every
    dt, from the lags 1 .. max_lag (at most T - 1) up to the first whose correlation is not
    above `floor`."""
    max_lag = _max_lag(series, max_lag)
    return fit_correlation_time(lag_correlations(series, max_lag), dt, floor)


def shell_correlation_times(series: np.ndarray, dt: float, max_lag: int = 10,
                            floor: float = 0.05) -> list[CorrelationTime]:
    """correlation_time of each integer wavenumber shell of square fields `series`
    (S, T, n, n): shell k holds the Fourier modes with round(|k|) = k (metrics.spectra), so
    entry k is the memory of the part of the fields at that scale (entry 0: the mean)."""
    e = np.asarray(series, dtype=np.float64)
    n = e.shape[-1]
    if e.ndim != 4 or e.shape[-2] != n:
        raise ValueError(f"shell_correlation_times needs (S, T, n, n) fields, got {e.shape}")
    max_lag = _max_lag(e, max_lag)
    f = np.fft.fft2(e)
    power = np.abs(f) ** 2
    correlations = []
    for k in range(1, max_lag + 1):
        a, b = f[:, :-k], f[:, k:]
        # Parseval per shell: the lag products and powers of the shell's modes.
        _, cross = _shell_sum(np.real(np.conj(a) * b).sum(axis=(0, 1)), n, average=False)
        _, pa = _shell_sum(power[:, :-k].sum(axis=(0, 1)), n, average=False)
        _, pb = _shell_sum(power[:, k:].sum(axis=(0, 1)), n, average=False)
        den = np.sqrt(pa * pb)
        correlations.append(np.divide(cross, den, out=np.zeros_like(cross), where=den > 0))
    c = np.stack(correlations, axis=1)  # (shells, lags)
    return [fit_correlation_time(row, dt, floor) for row in c]


def _max_lag(series, max_lag: int) -> int:
    t = np.asarray(series).shape[1]
    if min(max_lag, t - 1) < 1:
        raise ValueError(f"need at least 2 records per sequence, got {t}")
    return min(max_lag, t - 1)


def fit_correlation_time(correlations, dt: float, floor: float = 0.05) -> CorrelationTime:
    """A exp(-lag / tau) fitted to the lag correlations c_1, c_2, ... (lags dt apart) up to the
    first that is not above `floor`."""
    c = np.asarray(correlations, dtype=np.float64)
    max_lag = c.size
    lags = dt * np.arange(1, max_lag + 1)
    # The leading run of lags above the floor: past the first lag at or below it, what is left
    # is noise around zero, not the decay.
    below = np.flatnonzero(c <= floor)
    keep = np.arange(max_lag) < (below[0] if below.size else max_lag)
    if not keep.any():
        return CorrelationTime(float("nan"), 0.0, lags.tolist(), c.tolist())
    if keep.sum() == 1:  # one point fixes no slope: take A = 1
        slope, intercept = math.log(c[keep][0]) / lags[keep][0], 0.0
    else:
        slope, intercept = np.polyfit(lags[keep], np.log(c[keep]), 1)
    tau = -1.0 / slope if slope < 0 else float("inf")
    return CorrelationTime(float(tau), float(math.exp(intercept)), lags.tolist(), c.tolist())
