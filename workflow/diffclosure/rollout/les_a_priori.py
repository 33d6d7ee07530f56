"""A priori LES scores of every closure on the held-out filtered states (target sgs only).

Written by the sample_benchmark stage: on the same test states as the sampler benchmark, the
subgrid term Pi modelled by each closure against the true Pi (metrics.les.a_priori_scores):
correlation, energy and enstrophy transfer relative to the true transfer (1 = the right
amount, 0 = none), the backscatter share (per wavenumber shell: metrics.les.backscatter_share),
and the error of Pi's log power spectrum over the resolved shells. The classical closures are
built exactly as the rollout builds them (rollout.closures.ClassicalClosure); the learned closure
is scored per member (each sample is one realisation of the stochastic closure, as in a rollout)
and as its ensemble mean. `none` (Pi = 0) and `true` anchor the scale.

The stage writes the rows to les_a_priori.csv (LES_A_PRIORI_COLUMNS) and the spectra to
les_pi_spectra.png.
"""

from __future__ import annotations

import numpy as np

from diffclosure.metrics.les import a_priori_scores, transfer_spectrum
from diffclosure.metrics.spectra import power_spectrum, spectrum_error
from diffclosure.rollout.closures import CLASSICAL, ClassicalClosure

LES_A_PRIORI_COLUMNS = [
    "closure", "members", "correlation", "energy_transfer_ratio", "enstrophy_transfer_ratio",
    "backscatter_model", "backscatter_true", "pi_spectrum_error",
]


def classical_estimates(w_bar, coarse: dict, dns: dict) -> dict[str, np.ndarray]:
    """{name: Pi_model (k, n, n)} of every classical closure, as the rollout computes it."""
    w = np.asarray(w_bar, dtype=np.float64)
    out = {}
    for name in CLASSICAL:
        closure = ClassicalClosure(name, "sgs", coarse, dns["nu"], dns["length"], w.shape[-1])
        out[name] = closure.pi_model(w)
    return out


def _row(name: str, members: int, pi_model, pi_true, w_bar, length: float, spectrum,
         true_spectrum) -> dict:
    """One table row; `spectrum` is the model's mean power spectrum (all zero for Pi = 0,
    whose spectrum error is then NaN)."""
    scores = a_priori_scores(pi_model, pi_true, w_bar, length)
    return {"closure": name, "members": members, **scores,
            "pi_spectrum_error": spectrum_error(spectrum, true_spectrum)}


def les_a_priori(w_bar, pi_true, learned: dict[str, np.ndarray], coarse: dict, dns: dict):
    """Rows of les_a_priori.csv and the (k, Pi spectrum, enstrophy transfer spectrum) per
    closure but `none` (Pi = 0).

    w_bar, pi_true: (k, n, n); learned: {label: samples (k, M, n, n)}."""
    w = np.asarray(w_bar, dtype=np.float64)
    pi = np.asarray(pi_true, dtype=np.float64)
    length = float(dns["length"])
    models = {"none": np.zeros_like(pi), "true": pi, **classical_estimates(w, coarse, dns)}
    spectra = {name: _spectra(w, p, length) for name, p in models.items()}
    true_spec = spectra["true"][1]
    rows = [_row(name, 1, p, pi, w, length, spectra[name][1], true_spec)
            for name, p in models.items()]
    del spectra["none"]  # nothing to draw on log axes
    for label, samples in learned.items():
        s = np.asarray(samples, dtype=np.float64)
        k, m = s.shape[:2]
        flat = s.reshape(k * m, *s.shape[2:])
        w_rep, pi_rep = np.repeat(w, m, axis=0), np.repeat(pi, m, axis=0)
        spectra[f"diffusion {label}"] = _spectra(w_rep, flat, length)
        mean = s.mean(1)
        rows.append(_row(f"diffusion {label} (per member)", m, flat, pi_rep, w_rep, length,
                         spectra[f"diffusion {label}"][1], true_spec))
        rows.append(_row(f"diffusion {label} (ensemble mean)", m, mean, pi, w, length,
                         power_spectrum(mean)[1].reshape(-1, true_spec.size).mean(0),
                         true_spec))
    return rows, spectra


def _spectra(w, pi, length: float):
    k, p = power_spectrum(pi)
    _, t = transfer_spectrum(w, pi, length, "enstrophy")
    return k, p.reshape(-1, k.size).mean(0), t.reshape(-1, k.size).mean(0)
