"""score.pt round trip and clear failures for broken or mismatched files."""

import pytest
import torch

from diffclosure.errors import UserFacingError
from diffclosure.model.checkpoint import (
    CheckpointError,
    build_from_settings,
    load_model,
    save_checkpoint,
)

torch.set_num_threads(1)
MODEL = {"width": 6, "modes": 4, "layers": 2, "embedding_features": 16,
         "embedding_scale": 4.0, "head": [8], "coords": False}


def settings(**model_changes):
    return {"model": {**MODEL, **model_changes}, "sde": {"kind": "ve", "s": 26.0},
            "conditions": ["vorticity", "measurements"],
            "stats": {"target": {"mean": 0.1, "std": 2.0}}, "n": 16, "version": "test",
            "config_hash": "abc"}


def make_pair():
    torch.manual_seed(0)
    net = build_from_settings(settings())
    torch.manual_seed(1)
    ema = build_from_settings(settings())  # different weights: load_model must return these
    return net, ema


def sample(n=16):
    g = torch.Generator().manual_seed(5)
    return torch.randn(3, 1, n, n, generator=g), torch.rand(3, generator=g), torch.randn(
        3, 2, n, n, generator=g)


def test_round_trip_returns_ema_weights_in_eval_mode(tmp_path):
    net, ema = make_pair()
    path = tmp_path / "score.pt"
    save_checkpoint(path, net, ema, settings())
    loaded, st = load_model(path, "cpu")
    assert not loaded.training
    assert st["conditions"] == ["vorticity", "measurements"] and st["n"] == 16
    x, t, c = sample()
    with torch.no_grad():
        assert torch.equal(loaded(x, t, c), ema(x, t, c))
        assert not torch.equal(loaded(x, t, c), net(x, t, c))
    raw = torch.load(path, weights_only=True)
    assert set(raw) >= {"state_dict", "ema_state_dict", "settings"}
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left no temporary


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope.pt")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupted_file_names_the_file(tmp_path, damage):
    net, ema = make_pair()
    path = tmp_path / "score.pt"
    save_checkpoint(path, net, ema, settings())
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2] if damage == "truncate" else b"\x00junk" * 100)
    with pytest.raises(UserFacingError, match="score.pt.*corrupted"):
        load_model(path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(CheckpointError, match="not a diffclosure"):
        load_model(path)
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="lacks state_dict, ema_state_dict, settings"):
        load_model(path)


def test_settings_state_mismatch(tmp_path):
    net, ema = make_pair()
    path = tmp_path / "score.pt"
    save_checkpoint(path, net, ema, settings(width=8))  # settings describe another network
    with pytest.raises(CheckpointError, match="does not match.*shape mismatch"):
        load_model(path)
    save_checkpoint(path, net, ema, {**settings(), "conditions": ["vorticity"]})
    with pytest.raises(CheckpointError, match="unexpected"):
        load_model(path)
    bad = settings()
    del bad["stats"]
    torch.save({"state_dict": {}, "ema_state_dict": {}, "settings": bad}, path)
    with pytest.raises(CheckpointError, match="settings lack stats"):
        load_model(path)


@pytest.mark.parametrize("content", ["random", "foreign class"])
def test_unloadable_file_gets_our_message_not_torchs_unsafe_advice(tmp_path, content):
    import io

    import numpy as np

    path = tmp_path / "score.pt"
    if content == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    else:  # a real torch file holding an object the safe loader refuses (pickle would run code)
        buf = io.BytesIO()
        torch.save({"settings": Foreign()}, buf)
        path.write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    msg = str(info.value)
    assert msg.startswith(str(path)) and "snakemake --cores all --forcerun train" in msg
    assert "weights_only=False" not in msg and "weights_only` set to `False`" not in msg
    assert "\n" not in msg  # one line: torch's multi-paragraph text is not passed on


class Foreign:
    """Any class outside torch's allow-list."""
