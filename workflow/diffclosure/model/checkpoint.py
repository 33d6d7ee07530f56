"""Model files: the final score.pt and the resumable last.pt.

score.pt = {"state_dict", "ema_state_dict", "settings"}; `settings` holds everything needed to
rebuild the network without the config: the model and sde sections, the condition channel names,
the normalisation stats, the training grid n, the package version and the config hash.
Files are written atomically and read with `weights_only=True` (no code runs on load).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import torch

from diffclosure.atomic import write_bytes_atomic
from diffclosure.errors import UserFacingError, remake_hint
from diffclosure.model.score_net import ScoreNet, build_score_net
from diffclosure.model.sde import make_sde

FORMAT = "diffclosure-score/1"
SETTINGS_KEYS = ("model", "sde", "conditions", "stats", "n", "version", "config_hash")


class CheckpointError(UserFacingError):
    """A model file is missing, corrupted, not ours, or inconsistent with its settings."""


def save_torch_atomic(obj, path: str | Path) -> None:
    """torch.save to a temporary file beside `path`, renamed when complete.

    Serialised in memory first (model files are small): torch's own file writer reports a full
    disk as an opaque "iostream error", Python's write as ENOSPC, which becomes DiskFullError.
    """
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes_atomic(path, buf.getvalue())


def save_checkpoint(
    path: str | Path, net: ScoreNet, ema_net: ScoreNet, settings: dict,
    provenance: dict | None = None,
) -> None:
    """Write the final model file (score.pt); `provenance` (provenance.provenance()) is stored
    beside the settings, where `python -m diffclosure info` looks for it."""
    missing = [k for k in SETTINGS_KEYS if k not in settings]
    if missing:
        raise ValueError(f"settings lack {missing}")
    save_torch_atomic(
        {
            "format": FORMAT,
            "state_dict": net.state_dict(),
            "ema_state_dict": ema_net.state_dict(),
            "settings": dict(settings),
            "provenance": dict(provenance or {}),
        },
        path,
    )


def _load_failure(exc: Exception) -> str:
    """What went wrong in torch.load, without torch's advice to retry with weights_only=False.

    That advice is unsafe (unpickling an untrusted file runs code) and misleading here: our
    files hold only tensors and plain containers, so a file the safe loader refuses is damaged
    or foreign, and loading it anyway would not help.
    """
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) or "weights_only" in text:
        # Keep torch's diagnosis ("Unsupported operand 95", "Unsupported global: ...") only.
        _, _, detail = text.partition("WeightsUnpickler error:")
        detail = next((ln.strip() for ln in detail.splitlines() if ln.strip()), "")
        detail = detail.split(" was not an allowed global")[0]
        return ("it holds data the safe loader (weights_only=True) refuses"
                + (f" ({detail})" if detail else ""))
    # First sentence of the first line: torch appends paragraphs of generic advice.
    first = text.strip().splitlines()[0].split(". ")[0].rstrip(".") if text.strip() else ""
    if isinstance(exc, (EOFError, KeyError)) or not first:  # torch's "KeyError: 101" says nothing
        return f"unexpected content or end of file ({type(exc).__name__})"
    return f"{type(exc).__name__}: {first}"


def read_torch(path: str | Path, what: str = "checkpoint") -> dict:
    """torch.load a dict with clear errors for a missing, truncated or foreign file."""
    path = Path(path)
    stage = "distill" if path.name == "onestep.pt" else "train"
    if not path.exists():
        raise CheckpointError(f"{path}: {what} not found; make it first (stage {stage})")
    try:
        blob = path.read_bytes()
        obj = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for garbage (pickle, zip, runtime)
        raise CheckpointError(
            f"{path}: not a readable torch {what} (truncated, corrupted or not a diffclosure "
            f"model file): {_load_failure(exc)}. {remake_hint(path)}"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a diffclosure {what} (holds a {type(obj).__name__})")
    return obj


def build_from_settings(settings: dict) -> ScoreNet:
    """A freshly initialised network with the architecture described by `settings`."""
    sde = make_sde(settings["sde"])
    return build_score_net(settings["model"], sde, len(settings["conditions"]))


def _load_state(net: ScoreNet, state, path: Path, key: str) -> None:
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: '{key}' is not a state dict")
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {missing[:4]}{' ...' if len(missing) > 4 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:4]}{' ...' if len(unexpected) > 4 else ''}")
        if shapes:
            parts.append(f"shape mismatch {shapes[:3]}{' ...' if len(shapes) > 3 else ''}")
        raise CheckpointError(
            f"{path}: '{key}' does not match the network its settings describe "
            f"({'; '.join(parts)}); the file was edited or written by another version. "
            "Retrain the model."
        )
    net.load_state_dict(state)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[ScoreNet, dict]:
    """(network with the EMA weights, in eval mode on `device`, settings) from a score.pt."""
    path = Path(path)
    ckpt = read_torch(path, "score model")
    missing = [k for k in ("state_dict", "ema_state_dict", "settings") if k not in ckpt]
    if missing:
        raise CheckpointError(
            f"{path}: not a diffclosure score model (lacks {', '.join(missing)}); "
            "pass the score.pt written by the train stage"
        )
    settings = ckpt["settings"]
    lacking = [k for k in SETTINGS_KEYS if not isinstance(settings, dict) or k not in settings]
    if lacking:
        raise CheckpointError(f"{path}: settings lack {', '.join(lacking)}; retrain the model")
    try:
        net = build_from_settings(settings)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: settings cannot rebuild the network: {exc}") from None
    _load_state(net, ckpt["ema_state_dict"], path, "ema_state_dict")
    return net.to(device).eval(), settings
