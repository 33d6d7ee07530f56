"""Figures of the sampler benchmark: accuracy against cost, sample panels, spectra.

Each function takes plain arrays / row dicts and writes one PNG atomically.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from diffclosure.atomic import atomic_path  # noqa: E402
from diffclosure.plots.rollout import colour  # noqa: E402
from diffclosure.provenance import png_metadata  # noqa: E402
from diffclosure.rollout.registry import REGISTRY  # noqa: E402


def _save(fig, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png", metadata=png_metadata())
    plt.close(fig)


def pareto_figure(rows: list[dict], path: str | Path) -> None:
    """D_Fro of the ensemble mean against NFE and against wall time per sample, per sampler."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    # One curve per sampler and start (a zero-mean and a measurement-centred start differ a lot).
    def group(r):
        start = r.get("start", "")
        return r["name"] if start in ("", "auto") else f"{r['name']} ({start} start)"

    groups = sorted({group(r) for r in rows})
    markers = dict(zip(groups, "osD^v<>ph", strict=False))
    for g in groups:
        sel = sorted((r for r in rows if group(r) == g), key=lambda r: r["nfe"])
        for ax, key in zip(axes, ("nfe", "seconds_per_sample"), strict=True):
            ax.plot([r[key] for r in sel], [r["d_fro_mean"] for r in sel],
                    marker=markers.get(g, "o"), label=g,
                    linestyle="-" if len(sel) > 1 else "none")
            for r in sel:
                ax.annotate(f"{r['steps']}/{r['schedule'][0]}", (r[key], r["d_fro_mean"]),
                            textcoords="offset points", xytext=(4, 3), fontsize=7)
    ref = max((r for r in rows if r["name"] == "em"), key=lambda r: r["nfe"], default=None)
    for ax, label in zip(axes, ("score evaluations (NFE)", "wall time per sample [s]"),
                         strict=True):
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, which="both")
        if ref is not None:
            ax.axhline(ref["d_fro_mean"], color="k", lw=0.8, ls=":")
            ax.axhline(1.05 * ref["d_fro_mean"], color="0.5", lw=0.8, ls="--")
    axes[0].set_ylabel("D_Fro of the ensemble mean")
    axes[0].legend(fontsize=8)
    fig.suptitle("Sampler accuracy against cost (dotted: 1000-step EM; dashed: +5%)")
    _save(fig, path)


def samples_figure(vorticity, truth, samples, path: str | Path, measurements=None,
                   title: str = "", rows: int = 3) -> None:
    """Per condition: vorticity, (measurements), truth, two members, ensemble mean and std."""
    rows = min(rows, truth.shape[0])
    cols = ["vorticity"] + (["measurements"] if measurements is not None else [])
    cols += ["truth", "member 1", "member 2", "ensemble mean", "ensemble std"]
    fig, axes = plt.subplots(rows, len(cols), figsize=(2.1 * len(cols), 2.1 * rows),
                             squeeze=False)
    for i in range(rows):
        lim = float(np.abs(truth[i]).max()) or 1.0
        panels = [vorticity[i]] + ([measurements[i]] if measurements is not None else [])
        members = [samples[i, j % samples.shape[1]] for j in range(2)]
        panels += [truth[i], *members, samples[i].mean(0), samples[i].std(0)]
        for j, (ax, img, name) in enumerate(zip(axes[i], panels, cols, strict=True)):
            if name == "vorticity":
                vl = float(np.abs(img).max()) or 1.0
                ax.imshow(img, origin="lower", cmap="RdBu_r", vmin=-vl, vmax=vl)
            elif name == "ensemble std":
                ax.imshow(img, origin="lower", cmap="viridis", vmin=0)
            else:
                ax.imshow(img, origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=9)
            del j
    fig.suptitle(title)
    _save(fig, path)


def spectra_figure(k, truth_spectrum, spectra: dict, path: str | Path, n: int,
                   noise=None) -> None:
    """Mean power spectra of the samples of each sampler against the truth's, shells 1..n/2.

    `noise`: the stochastic forcing's known share of the term's spectrum (metrics.spectra.
    noise_spectrum), drawn dashed where it is above 1e-6 of the truth's largest shell.
    """
    fig, ax = plt.subplots(figsize=(6, 4.2))
    sel = slice(1, n // 2 + 1)
    ax.loglog(k[sel], truth_spectrum[sel], color="k", lw=2, label="truth")
    if noise is not None:
        shown = noise[sel] > 1e-6 * np.max(truth_spectrum[sel])
        ax.loglog(k[sel][shown], noise[sel][shown], color="k", ls="--", lw=1,
                  label="noise term sigma^2 kappa q_k / dt (known)")
    for label, spec in spectra.items():
        ax.loglog(k[sel], spec[sel], lw=1, label=label)
    ax.set_xlabel("wavenumber k")
    ax.set_ylabel("power spectrum of the closure term")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    _save(fig, path)


def les_pi_spectra_figure(path: str | Path, spectra: dict, cutoff: int) -> None:
    """A priori LES: the power spectrum of Pi (left) and the subgrid enstrophy transfer
    spectrum T_Z(k) (right, symlog: backscatter shells are negative) of every closure, shells
    1..cutoff. spectra[name] = (k, P(k), T(k)); "true" is drawn in black."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, (k, p, t) in spectra.items():
        sel = (k >= 1) & (k <= cutoff)
        # Classical closures in their rollout colours; the learned ones (one per sampler) cycle.
        style = ({"color": "k", "lw": 2.2} if name == "true" else
                 {"color": colour(name), "lw": 1.2} if name in REGISTRY else {"lw": 1.2})
        shown = sel & (p > 0)
        axes[0].loglog(k[shown], p[shown], label=name, **style)
        axes[1].plot(k[sel], t[sel], label=name, **style)
    axes[1].set_xscale("log")
    axes[1].set_yscale("symlog", linthresh=1e-3 * max(
        (np.abs(t).max() for _, _, t in spectra.values()), default=1.0) or 1.0)
    axes[1].axhline(0.0, color="gray", lw=0.8)
    axes[0].set_title("a priori: power spectrum of Pi")
    axes[1].set_title("subgrid enstrophy transfer T_Z(k) (> 0: to the subgrid)")
    for ax in axes:
        ax.set_xlabel("|k|")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
