"""Which record times a table shows."""

from __future__ import annotations


def report_times(times, fractions) -> list[float]:
    """The record times nearest each fraction of the last one (report.times): the columns of
    the report's tables, the paper's 35/40/45/50 s of its 30 -> 50 s rollout being quarters."""
    times = sorted({float(t) for t in times})
    return [min(times, key=lambda t, f=f: abs(t - f * times[-1])) for f in fractions]
