"""How long an error stays coherent: the correlation time of a sequence of fields.

For sequences e_t of fields recorded dt apart (S independent sequences of T records), the pooled
lag-k correlation

    c_k = sum_{s,t} <e_{s,t}, e_{s,t+k}> / sqrt(sum <e_{s,t}, e_{s,t}> sum <e_{s,t+k}, e_{s,t+k}>)

is fitted by c_k = A exp(-k dt / tau) over the lags where it is clearly positive. The amplitude
A <= 1 absorbs a part with no memory at all (a nugget: for the error of a finite ensemble's mean,
its residual sampling noise), so tau is the memory of the coherent part, what a coupled run's
correlated sampling should match (sampling/noise_source.py).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np


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
    t = np.asarray(series).shape[1]
    max_lag = min(max_lag, t - 1)
    if max_lag < 1:
        raise ValueError(f"need at least 2 records per sequence, got {t}")
    c = lag_correlations(series, max_lag)
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
