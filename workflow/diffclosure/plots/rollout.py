"""Figures of the coupled rollouts: error against time, statistics, snapshots.

Pure plotting: every function takes arrays already computed (diffclosure.stages.rollout_metrics
computes them) and writes one PNG atomically. Closures get fixed colours so that the same
closure looks the same in every figure.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from diffclosure.atomic import atomic_path  # noqa: E402
from diffclosure.provenance import png_metadata  # noqa: E402
from diffclosure.rollout.registry import REGISTRY  # noqa: E402

# A D_Fro of 0 (the oracle at t = 0) cannot sit on a log axis: clip at this floor.
FLOOR = 1e-16


def colour(name: str) -> str:
    """The reference in black, a closure in its registry colour, anything else in grey."""
    if name == "reference":
        return "black"
    spec = REGISTRY.get(name)
    return "tab:gray" if spec is None else spec.colour


def _save(fig, path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png", metadata=png_metadata())
    plt.close(fig)


def error_figure(path, curves: dict, ylabel: str = "D_Fro = ||w - w_ref|| / ||w_ref||") -> None:
    """D_Fro against time for every closure on one plot.

    curves[name] = {"time": (T,), "median": (T,), "lo": (T,), "hi": (T,), "blowup": float|None,
    "ensemble_mean": (T,) or None}: the line is the members' median error (over members and
    initial states), the band spans them, the dashed line is the ensemble-mean field's error.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, c in curves.items():
        t = np.asarray(c["time"])
        ax.plot(t, np.maximum(c["median"], FLOOR), color=colour(name), label=name)
        if c.get("ensemble_mean") is not None:
            ax.plot(t, np.maximum(c["ensemble_mean"], FLOOR), color=colour(name), ls="--",
                    lw=1, label=f"{name} (ensemble mean)")
        if c.get("lo") is not None and not np.allclose(c["lo"], c["hi"], equal_nan=True):
            ax.fill_between(t, np.maximum(c["lo"], FLOOR), np.maximum(c["hi"], FLOOR),
                            color=colour(name), alpha=0.2, lw=0)
        if c.get("blowup") is not None and np.isfinite(c["blowup"]):
            ax.axvline(c["blowup"], color=colour(name), ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("time since rollout start")
    ax.set_ylabel(ylabel)
    ax.set_title("a-posteriori error per member (band: members and states; dotted: blow-up)",
                 fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def les_spectra_figure(path, energy: dict, enstrophy: dict, cutoff: float | None = None) -> None:
    """The standard LES figure: the time-mean energy spectra (left) and enstrophy spectra
    (right) of every closure and of the filtered DNS ("reference", black) on one plot each;
    `cutoff` (the coarse grid's n/2) drawn dotted. Values are {name: (k, spectrum)}."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, spectra, label in ((axes[0], energy, "E(k)"), (axes[1], enstrophy, "Z(k)")):
        for name, (k, e) in spectra.items():
            # The corner shells past the cutoff are incomplete: their tiny sums only mislead.
            sel = (k >= 1) & (e > 0) & (k <= (cutoff or np.inf))
            ax.loglog(k[sel], e[sel], color=colour(name), label=name,
                      lw=2.2 if name == "reference" else 1.2)
        if cutoff:
            ax.axvline(cutoff, color="gray", ls=":", lw=1)
        ax.set_xlabel("|k|")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_title("energy spectra (time mean; black: filtered DNS)")
    axes[1].set_title("enstrophy spectra")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def spectra_figure(path, spectra: dict, pdfs: dict, enstrophy: dict) -> None:
    """Three panels: energy spectra with a k^-3 line, vorticity PDFs, enstrophy against time.

    spectra[name] = (k, E); pdfs[name] = (centres, density); enstrophy[name] = (time, Z).
    "reference" is drawn in black.
    """
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    ax = axes[0]
    for name, (k, e) in spectra.items():
        sel = (k >= 1) & (e > 0)
        ax.loglog(k[sel], e[sel], color=colour(name), label=name,
                  lw=2 if name == "reference" else 1.2)
    if "reference" in spectra:
        k, e = spectra["reference"]
        k0 = 4 if len(k) > 5 else 1
        if e[k0] > 0:
            kk = k[k0:]
            ax.loglog(kk, e[k0] * (kk / k0) ** -3.0, "k--", lw=0.8, label="k^-3")
    ax.set_xlabel("|k|")
    ax.set_ylabel("E(k)")
    ax.set_title("energy spectrum (time mean)")
    ax.legend(fontsize=7)
    ax = axes[1]
    for name, (x, d) in pdfs.items():
        ax.semilogy(x, np.where(d > 0, d, np.nan), color=colour(name), label=name,
                    lw=2 if name == "reference" else 1.2)
    ax.set_xlabel("vorticity")
    ax.set_ylabel("PDF")
    ax.set_title("vorticity PDF")
    ax = axes[2]
    for name, (t, z) in enstrophy.items():
        ax.plot(t, z, color=colour(name), label=name, lw=2 if name == "reference" else 1.2)
    ax.set_xlabel("time since rollout start")
    ax.set_ylabel("enstrophy 0.5 <w^2>")
    ax.set_title("enstrophy")
    for a in axes:
        a.grid(alpha=0.3, which="both")
    fig.tight_layout()
    _save(fig, path)


def snapshots_figure(path, rows: dict, times, length: float = 1.0) -> None:
    """Grid of snapshots: the reference's vorticity on top, then each closure's error against it.

    rows[name] = (len(times), n, n), the reference first. Errors w - w_ref share one symmetric
    colour scale so closures compare at a glance; fields that look alike still show their error.
    """
    names = list(rows)
    ref = rows[names[0]]
    cols = len(times)
    fig, axes = plt.subplots(len(names), cols, figsize=(2.3 * cols + 1.2, 2.2 * len(names)),
                             squeeze=False, layout="constrained")
    vmax = float(np.nanmax(np.abs(ref))) or 1.0
    diffs = {name: rows[name] - ref for name in names[1:]}
    emax = max([float(np.nanmax(np.abs(d))) for d in diffs.values()] + [1e-30])
    im_field = im_err = None
    for j in range(cols):
        for i, name in enumerate(names):
            ax = axes[i, j]
            if i == 0:
                im_field = ax.imshow(ref[j], origin="lower", cmap="RdBu_r", vmin=-vmax,
                                     vmax=vmax, extent=(0, length, 0, length))
                ax.set_title(f"t = {times[j]:.3g}", fontsize=9)
            else:
                im_err = ax.imshow(diffs[name][j], origin="lower", cmap="PuOr_r", vmin=-emax,
                                   vmax=emax, extent=(0, length, 0, length))
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(name if i == 0 else f"{name} - {names[0]}", fontsize=9)
    fig.colorbar(im_field, ax=axes[0, :], shrink=0.9, label="vorticity")
    if im_err is not None:
        fig.colorbar(im_err, ax=axes[1:, :], shrink=0.6, label="error")
    _save(fig, path)


def rank_histogram_figure(path, hists: dict, what: str = "reference") -> None:
    """Rank of the `what` among the members, one panel per ensemble (a stochastic closure).

    hists[panel] = {label (a time, a sampler): frequencies (M+1,) summing to 1}. The dotted
    line is the flat 1/(M+1) of a calibrated ensemble; a U means too little spread, a dome too
    much. Also used by the sampler benchmark (a priori: the true term among the samples).
    """
    names = list(hists) or ["no ensemble"]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        bars = hists.get(name, {})
        if not bars:
            ax.text(0.5, 0.5, "no ensemble of more than one member", ha="center",
                    va="center", transform=ax.transAxes)
            continue
        width = 0.8 / len(bars)
        for i, (label, freq) in enumerate(bars.items()):
            ranks = np.arange(len(freq))
            ax.bar(ranks + (i - (len(bars) - 1) / 2) * width, freq, width=width,
                   label=label, color=plt.cm.viridis(i / max(len(bars) - 1, 1)))
        ax.axhline(1.0 / len(freq), color="k", ls=":", lw=1)
        ax.set_xticks(ranks)
        ax.set_xlabel(f"rank of the {what} among the members")
        ax.set_ylabel("frequency over grid points and samples")
        ax.set_title(name)
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
