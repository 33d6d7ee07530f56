"""Figure of a training run: the learning curves (curves.png)."""

from __future__ import annotations

import math
from pathlib import Path

from diffclosure.atomic import atomic_path


def _finite(history: list[dict], key: str) -> tuple[list, list]:
    pts = [(r["epoch"], r[key]) for r in history
           if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_curves(path: Path, history: list[dict], outcome: dict | None = None) -> None:
    """Training and validation loss against epoch (log scale) with the learning rate, the best
    epoch and where and why training stopped; a second panel with the a-priori scores of
    train.monitor when the history has them."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    monitored = bool(_finite(history, "apriori_dfro_mean")[0])
    fig, axes = plt.subplots(1, 2 if monitored else 1, figsize=(11 if monitored else 6, 4),
                             layout="constrained", squeeze=False)
    ax = axes[0, 0]
    epochs = [r["epoch"] for r in history]
    ax.semilogy(epochs, [r["train_loss"] for r in history], label="train (raw weights)")
    # Only the epochs where it was computed (every epoch, or train.monitor's under a monitor
    # stopping metric).
    ax.semilogy(*_finite(history, "val_loss"), marker=".",
                label="validation (EMA weights)")
    if outcome and outcome.get("best_epoch"):
        ax.axvline(outcome["best_epoch"], color="k", ls="--", lw=1,
                   label=f"best epoch {outcome['best_epoch']} (kept)")
        ax.set_title(_stop_title(outcome), fontsize=8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("DSM loss (per sample, sum over pixels)")
    ax2 = ax.twinx()
    ax2.semilogy(epochs, [r["lr"] for r in history], color="0.6", ls=":", label="learning rate")
    ax2.set_ylabel("learning rate", color="0.4")
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [ln.get_label() for ln in lines], loc="upper right", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    if monitored:
        _monitor_panel(axes[0, 1], history, outcome)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def _stop_title(outcome: dict) -> str:
    reason = str(outcome.get("stop_reason", ""))
    kind = reason.split(":")[0] if reason else "?"
    return (f"stopped after epoch {outcome.get('epochs')} of at most "
            f"{outcome.get('max_epochs')} ({kind})")


def _monitor_panel(ax, history: list[dict], outcome: dict | None) -> None:
    """A-priori D_Fro (ensemble mean, member), correlation and spread/skill on validation
    states against epoch."""
    for key, label in (("apriori_dfro_mean", "D_Fro, ensemble mean"),
                       ("apriori_dfro_member", "D_Fro, per member")):
        x, y = _finite(history, key)
        ax.plot(x, y, marker="o", ms=3, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("a-priori D_Fro on validation states")
    ax.grid(True, which="both", alpha=0.3)
    ax3 = ax.twinx()
    for key, label, style in (("apriori_corr", "correlation with the truth", "-."),
                              ("apriori_spread_skill", "spread/skill", ":")):
        x, y = _finite(history, key)
        ax3.plot(x, y, color="0.35", ls=style, label=label)
    ax3.set_ylim(0, 1.5)
    ax3.set_ylabel("correlation, spread/skill")
    if outcome and outcome.get("best_epoch"):
        ax.axvline(outcome["best_epoch"], color="k", ls="--", lw=1)
    lines = ax.get_lines() + ax3.get_lines()
    ax.legend(lines, [ln.get_label() for ln in lines], loc="upper right", fontsize=8)
    ax.set_title("a-priori check (train.monitor)", fontsize=8)
