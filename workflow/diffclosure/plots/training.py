"""Figure of a training run: the loss curves (curves.png)."""

from __future__ import annotations

from pathlib import Path

from diffclosure.atomic import atomic_path


def plot_curves(path: Path, history: list[dict]) -> None:
    """Training and validation loss against epoch, log scale; learning rate on a second axis."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    ax.semilogy(epochs, [r["train_loss"] for r in history], label="train (raw weights)")
    ax.semilogy(epochs, [r["val_loss"] for r in history], label="validation (EMA weights)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("DSM loss (per sample, sum over pixels)")
    ax2 = ax.twinx()
    ax2.semilogy(epochs, [r["lr"] for r in history], color="0.6", ls=":", label="learning rate")
    ax2.set_ylabel("learning rate", color="0.4")
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [ln.get_label() for ln in lines], loc="upper right")
    ax.grid(True, which="both", alpha=0.3)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
