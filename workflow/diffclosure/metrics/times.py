"""Which record times a table shows."""

from __future__ import annotations

import numpy as np


def report_times(times, fractions) -> list[float]:
    """The record times nearest each fraction of the last one (report.times): the columns of
    the report's tables, the paper's 35/40/45/50 s of its 30 -> 50 s rollout being quarters."""
    times = sorted({float(t) for t in times})
    return [min(times, key=lambda t, f=f: abs(t - f * times[-1])) for f in fractions]


def paired_records(reference) -> int:
    """How many leading records of a reference (S, T, n, n) are finite in every state: all T,
    or those up to the end of the DNS's recorded window for an sgs rollout run past it."""
    r = np.asarray(reference)
    ok = np.isfinite(r).reshape(r.shape[0], r.shape[1], -1).all(axis=(0, 2))
    return len(ok) if ok.all() else int(np.argmin(ok))
