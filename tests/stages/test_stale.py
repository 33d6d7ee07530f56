"""No result from a stale model (issue 11): training starts over when the dataset's content or
the code changed, not only its settings, and still resumes when nothing did; a rollout refuses
a stats.json that is not the one the model was trained with. Driven through the real stage
entry points (dataset, train, rollout) on tiny synthetic files."""

import json
import logging

import pytest
import torch

import diffclosure.model.resume as resume_mod
from diffclosure.cli import main as cli_main
from diffclosure.data.stats import load_stats

from support.datasets import write_stats
from support.dns_shards import coarse_cfg, run_coarse, run_dataset, write_dns
from support.dns_shards import sections as dataset_sections
from support.rollout_inputs import make_inputs, make_model, run_stage
from support.rollout_inputs import sections as rollout_sections
from support.training import TRAIN_SECTIONS

pytestmark = pytest.mark.slow  # the quick tier (-m "not slow") skips this module

EPOCHS = 2
TRAIN_CFG = {**TRAIN_SECTIONS, "train": {**TRAIN_SECTIONS["train"], "epochs": EPOCHS}}


@pytest.fixture(scope="module")
def coarse(tmp_path_factory):
    """Two coarse shards of 4 trajectories each (the dataset stage's input)."""
    root = tmp_path_factory.mktemp("coarse")
    cfg, paths = coarse_cfg(), []
    for i, ids in enumerate(([0, 1, 2, 3], [4, 5, 6, 7])):
        write_dns(root / f"dns-{i}.h5", ids, offset_per_id=10.0)
        assert run_coarse(cfg, root / f"dns-{i}.h5", root / f"coarse-{i}.h5") == 0
        paths.append(root / f"coarse-{i}.h5")
    return cfg, paths


def build_dataset(data, coarse, **measurements):
    cfg, paths = coarse
    assert run_dataset(dataset_sections(cfg, **measurements), paths, data) == 0


def train_stage(data, model, threads=1) -> int:
    return cli_main(["train", "--config", json.dumps(TRAIN_CFG), "--data", str(data),
                     "--outdir", str(model), "--threads", str(threads)])


def weights(model) -> dict:
    return torch.load(model / "score.pt", weights_only=True)["ema_state_dict"]


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("change", [{"lattice": 2}, {"noise": 0.1}], ids=["lattice", "noise"])
def test_changed_measurements_retrain(coarse, tmp_path, caplog, change):
    data, model = tmp_path / "dataset", tmp_path / "model"
    build_dataset(data, coarse)
    assert train_stage(data, model) == 0
    old_weights, old_stats = weights(model), load_stats(data)

    build_dataset(data, coarse, **change)  # the dataset stage reruns in place, as in the pipeline
    # The drill's trap: measurements are normalised with the target's stats, so the statistics
    # are unchanged and only the files' content tells the two datasets apart (stats.json's
    # digests of the split files, and training's digest of them).
    new_stats = load_stats(data)
    assert new_stats.pop("digests")["train.h5"] != old_stats.pop("digests")["train.h5"]
    assert new_stats == old_stats
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="diffclosure"):
        assert train_stage(data, model) == 0
    assert "another dataset (train.h5, val.h5, stats.json)" in caplog.text
    assert "starting over" in caplog.text and "resuming" not in caplog.text
    new_weights = weights(model)
    assert not same(new_weights, old_weights)
    # ... and it is exactly the model a first training on the new data makes
    assert train_stage(data, tmp_path / "fresh") == 0
    assert same(new_weights, weights(tmp_path / "fresh"))


def test_unchanged_rerun_resumes_and_code_change_retrains(coarse, tmp_path, caplog, monkeypatch):
    data, model = tmp_path / "dataset", tmp_path / "model"
    build_dataset(data, coarse)
    assert train_stage(data, model) == 0
    old_weights = weights(model)

    # Same values rewritten (new creation time) and another thread count: nothing that changes
    # the weights changed, so last.pt is reused, with a warning that no epoch was left to run.
    build_dataset(data, coarse)
    with caplog.at_level(logging.INFO, logger="diffclosure"):
        assert train_stage(data, model, threads=2) == 0
    assert f"resuming from {model / 'last.pt'} after epoch {EPOCHS} of {EPOCHS}" in caplog.text
    assert "no training done" in caplog.text and "starting over" not in caplog.text
    assert same(weights(model), old_weights)

    monkeypatch.setattr(resume_mod, "code_version", lambda: "diffclosure 0.1.0, sources edited")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="diffclosure"):
        assert train_stage(data, model) == 0
    assert "another code version" in caplog.text and "sources edited" in caplog.text
    assert "resuming" not in caplog.text
    assert f"epoch 1/{EPOCHS}:" in caplog.text  # the epochs were run again
    last = torch.load(model / "last.pt", weights_only=True)
    assert last["identity"]["code"] == "diffclosure 0.1.0, sources edited"


@pytest.mark.parametrize("channel,key", [("target", "std"), ("vorticity", "mean")])
def test_rollout_refuses_stats_that_are_not_the_models(tmp_path, caplog, channel, key):
    paths, data = make_inputs(tmp_path)
    model = make_model(tmp_path / "model" / "score.pt")
    stats = json.loads((data / "stats.json").read_text())
    stats[channel][key] += 0.25  # as if the dataset had been rebuilt after training
    write_stats(data, stats)
    with caplog.at_level(logging.ERROR, logger="diffclosure"):
        assert run_stage(tmp_path, "diffusion", rollout_sections(), paths, data, model) == 1
    assert str(data / "stats.json") in caplog.text and str(model) in caplog.text
    assert f"{channel} mean/std" in caplog.text and "--forcerun train" in caplog.text
    assert not (tmp_path / "rollout" / "diffusion.h5").exists()
