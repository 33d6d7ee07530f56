"""The paper's accelerated sampler, exactly, on our normalised targets.

The research code samples RAW targets (rms ~0.28 for H, ~0.12 for G; shared/PAPER.md) with a
zero-mean 10-step Euler-Maruyama on the grid get_sigmas_karras(10, 1e-3, 0.1): ten times equally
spaced in t^(1/7) from t = 0.1 to 1e-3, then t = 0, the last step's noise-free mean returned.
`paper_em` (sampling/samplers.py) takes those steps on x_raw = std * x, where std is the target's
std our data were normalised by (stats.json): the same algorithm on the same raw targets,
step for step (tests/sampling/test_paper_sampler.py holds it to a transcription of the research
loop). How noisy its start is depends on std(0.1) = 0.375 relative to the raw data: 1.3x the
paper's H, 1.7x ours.
"""

from __future__ import annotations

# The research code's raw target rms (its notebook outputs, shared/PAPER.md): the scale of an
# untrained stand-in network in the benchmarks.
PAPER_TARGET_RMS = {"H": 0.28, "G": 0.12}
PAPER_T_MAX, PAPER_T_MIN, PAPER_STEPS = 0.1, 1e-3, 10


def paper_sampler() -> dict:
    """The paper's sampler as a sampler config entry (sampling.samplers in the schema)."""
    return {"name": "paper_em", "steps": PAPER_STEPS, "schedule": "karras_time",
            "t_max": PAPER_T_MAX, "t_min": PAPER_T_MIN, "start": "zero"}
