"""The DNS's noise term as the real solver reports it, for tests of what the data stages make
of a target's stochastic part (tests/data/test_flow_stats.py, tests/stages/test_dataset_stage.py).
"""

from __future__ import annotations

import numpy as np

from diffclosure.solver.equation import no_advection
from diffclosure.solver.navier_stokes import Solver
from diffclosure.solver.noise import NoiseSpec


def solver_noise_terms(n: int, dt: float, noise: dict, rngs, length: float = 1.0) -> np.ndarray:
    """One step's "noise" term (Solver.step terms=("noise",)), one field per generator,
    numpy (len(rngs), n, n): a solver with only the noise acting (no advection, nu = 0, no
    drag or forcing) stepped once from rest. From rest that step's whole change over dt is the
    noise, so the reported term is also checked against the state the step produced."""
    solver = Solver(n, length, 0.0, dt, noise=NoiseSpec(**noise), physics=no_advection,
                    backend="numpy")
    new, terms = solver.step(solver.zeros(len(rngs)), solver.sample_noise(rngs),
                             terms=("noise",))
    term = solver.backend.to_numpy(terms["noise"])
    np.testing.assert_allclose(term, solver.physical(new) / dt, rtol=0,
                               atol=1e-12 * np.abs(term).max())
    return term
