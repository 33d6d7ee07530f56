"""How long the learned closure's error stays coherent, measured a priori on the test set: what
rollout.tau: auto correlates the sampler's noise over (sampling/noise_source.py).

The closure's sampler draws an ensemble for every record of every test trajectory (consecutive
records, dataset's record interval apart), and the correlation time of the error of the
ensemble mean (metrics.correlation_time) is the memory of the model's error: the time over which
a coupled run's members should keep their random inputs, so that their spread grows as their
error does.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from diffclosure.config import ConfigError
from diffclosure.data import h5io
from diffclosure.data.stats import check_digest, load_stats
from diffclosure.metrics.correlation_time import correlation_time

log = logging.getLogger(__name__)
CHUNK_PIXELS = 2**21  # samples x pixels drawn at once (a few tens of MB)


def measure_error_time(cs, sampler, test_path: str | Path, ensemble: int, seed: int) -> dict:
    """{tau, amplitude, lags, correlation, record_interval, trajectories} of `sampler` through
    the ClosureSampler `cs` on the test split `test_path` (normalised by cs itself)."""
    path = Path(test_path)
    check_digest(load_stats(path.parent), path)
    with h5io.open_input(path, required=("target", "time", *cs.conditions)) as fh:
        fields = {c: fh[c][()].astype(np.float32) for c in ("target", *cs.conditions)}
        times = np.asarray(fh["time"][()], dtype=float)
    if len(times) < 3:
        raise ConfigError(f"rollout.tau: auto needs at least 3 records per test trajectory in "
                          f"{path}, found {len(times)}; raise dataset.duration or set rollout.tau")
    gen = torch.Generator(device=cs.device).manual_seed(int(seed))
    n = fields["target"].shape[-1]
    chunk = max(1, CHUNK_PIXELS // (ensemble * n * n))  # records sampled together
    errors = []
    for traj in range(fields["target"].shape[0]):
        means = []
        for lo in range(0, len(times), chunk):
            sl = slice(lo, lo + chunk)
            kw = {c: fields[c][traj, sl] for c in cs.conditions if c != "vorticity"}
            samples = cs.sample(sampler, fields["vorticity"][traj, sl], **kw,
                                ensemble=ensemble, generator=gen)
            means.append(samples.float().cpu().numpy().mean(axis=1))
        errors.append(np.concatenate(means) - fields["target"][traj])
    dt = float(np.median(np.diff(times)))
    fit = correlation_time(np.stack(errors), dt, max_lag=min(10, len(times) - 1))
    log.info("error of %s a priori: correlation time %.3g (amplitude %.3g) over %d test "
             "trajectories", sampler.label, fit.tau, fit.amplitude, len(errors))
    return {"tau": fit.tau, "amplitude": fit.amplitude, "lags": fit.lags,
            "correlation": fit.correlation, "record_interval": dt, "trajectories": len(errors)}
