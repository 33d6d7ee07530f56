"""How long the learned closure's error stays coherent, and how over-confident its ensemble is,
measured a priori on the validation split: what rollout.tau: auto correlates the sampler's noise
over (sampling/noise_source.py) and what rollout.inflation: auto widens its ensemble by.

The closure's sampler draws an ensemble for every record of every validation trajectory
(consecutive records, the dataset's record interval apart; trajectories the model never trained
on, and never the test trajectories the rollouts are scored on). The correlation time of the
error of the ensemble mean (metrics.correlation_time) is the memory of the model's error: the
time over which a coupled run's members should keep their random inputs, so that their spread
grows as their error does. The spread/skill of the same ensembles (metrics.probabilistic,
corrected for the ensemble size) says by how much the members are too close together: its
inverse is the inflation that calibrates them a priori. With per_shell, the same fit per
wavenumber shell of the error (rollout.tau_per_shell): its memory at each scale.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from diffclosure.config import ConfigError
from diffclosure.data import h5io
from diffclosure.data.stats import check_digest, load_stats
from diffclosure.metrics.correlation_time import correlation_time, shell_correlation_times
from diffclosure.metrics.probabilistic import spread_skill

log = logging.getLogger(__name__)
CHUNK_PIXELS = 2**21  # samples x pixels drawn at once (a few tens of MB)


def measure_error_time(cs, sampler, split_path: str | Path, ensemble: int, seed: int,
                       per_shell: bool = False) -> dict:
    """{tau, amplitude, lags, correlation, record_interval, trajectories, split, spread, skill,
    spread_skill} of `sampler` through the ClosureSampler `cs` on the split file `split_path`
    (val.h5; normalised by cs itself); with per_shell also tau_shells (shell 0, 1, ...; 0 where
    the shell's error has no memory at the record interval) and shell_correlation (each shell's
    lag-one correlation). spread_skill is nan for one member."""
    path = Path(split_path)
    check_digest(load_stats(path.parent), path)
    with h5io.open_input(path, required=("target", "time", *cs.conditions)) as fh:
        fields = {c: fh[c][()].astype(np.float32) for c in ("target", *cs.conditions)}
        times = np.asarray(fh["time"][()], dtype=float)
    if len(times) < 3:
        raise ConfigError(f"rollout.tau: auto needs at least 3 records per trajectory in "
                          f"{path}, found {len(times)}; raise dataset.duration or set rollout.tau")
    gen = torch.Generator(device=cs.device).manual_seed(int(seed))
    n = fields["target"].shape[-1]
    chunk = max(1, CHUNK_PIXELS // (ensemble * n * n))  # records sampled together
    errors, variance, squared, pooled = [], 0.0, 0.0, 0
    for traj in range(fields["target"].shape[0]):
        means = []
        for lo in range(0, len(times), chunk):
            sl = slice(lo, lo + chunk)
            kw = {c: fields[c][traj, sl] for c in cs.conditions if c != "vorticity"}
            samples = cs.sample(sampler, fields["vorticity"][traj, sl], **kw,
                                ensemble=ensemble, generator=gen).float().cpu().numpy()
            means.append(samples.mean(axis=1))
            if ensemble > 1:  # pooled member variance and squared error, as spread_skill
                ss = spread_skill(samples, fields["target"][traj, sl], axis=1)
                count = samples.shape[0]
                variance += count * ss.spread**2
                squared += count * ss.skill**2
                pooled += count
        errors.append(np.concatenate(means) - fields["target"][traj])
    dt = float(np.median(np.diff(times)))
    fit = correlation_time(np.stack(errors), dt, max_lag=min(10, len(times) - 1))
    spread = float(np.sqrt(variance / pooled)) if pooled else float("nan")
    skill = float(np.sqrt(squared / pooled)) if pooled else float("nan")
    ratio = spread / skill if pooled and skill > 0 else float("nan")
    log.info("error of %s a priori on %s: correlation time %.3g (amplitude %.3g) over %d "
             "trajectories, spread/skill %.3g", sampler.label, path.name, fit.tau, fit.amplitude,
             len(errors), ratio)
    doc = {"tau": fit.tau, "amplitude": fit.amplitude, "lags": fit.lags,
           "correlation": fit.correlation, "record_interval": dt, "trajectories": len(errors),
           "split": path.name, "spread": spread, "skill": skill, "spread_skill": ratio}
    if per_shell:
        doc.update(_per_shell(np.stack(errors), dt, min(10, len(times) - 1)))
    return doc


def _per_shell(errors: np.ndarray, dt: float, max_lag: int) -> dict:
    """tau per wavenumber shell (no memory: 0; a memory that does not decay within the lags:
    the longest finite one, so no scale holds its draws forever)."""
    fits = shell_correlation_times(errors, dt, max_lag=max_lag)
    taus = [0.0 if np.isnan(f.tau) else f.tau for f in fits]
    finite = [t for t in taus if np.isfinite(t)]
    cap = max(finite) if finite else 0.0
    taus = [t if np.isfinite(t) else cap for t in taus]
    log.info("a-priori error memory per shell |k| = 0..%d: tau %s", len(taus) - 1,
             " ".join(f"{t:.3g}" for t in taus))
    return {"tau_shells": taus,
            "shell_correlation": [f.correlation[0] for f in fits]}
