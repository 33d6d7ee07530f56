"""Training stage end to end on tiny synthetic dataset files: outputs, learning, bit-exact resume,
clear input errors, streamed loading and two-process DistributedDataParallel on the CPU (gloo)."""

import json
import logging
import math
import os
import socket

import h5py
import numpy as np
import pytest
import torch

from diffclosure import config
from diffclosure.cli import main as cli_main
from diffclosure.data.datasets import load_split
from diffclosure.data.h5io import DataFileError, add_coordinate, add_field, atomic_h5
from diffclosure.model.checkpoint import load_model
from diffclosure.model.stopping import Plateau, best_epoch, first_stop
from diffclosure.provenance import read_sidecar_meta
from diffclosure.stages import train as train_stage
from diffclosure.stages.train import train

from support.datasets import split_stats, write_stats
from support.tables import csv_rows
from support.training import TRAIN_SECTIONS

torch.set_num_threads(1)
N = 8
CONDITIONS = ["vorticity", "measurements"]
TARGET_MEAN, TARGET_STD, A, S0 = 2.0, 5.0, 1.5, 0.3
def write_split(path, n_traj, n_time, seed):
    """A conditional Gaussian in physical units: target = mean + std*(A*w + S0*noise)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n_traj, n_time, N, N))
    target = TARGET_MEAN + TARGET_STD * (A * w + S0 * rng.standard_normal(w.shape))
    meas = target + 0.1 * TARGET_STD * rng.standard_normal(w.shape)
    with atomic_h5(path) as fh:
        add_coordinate(fh, "trajectory", np.arange(n_traj))
        add_coordinate(fh, "time", np.arange(n_time) * 0.1)
        add_coordinate(fh, "y", np.arange(N) / N)
        add_coordinate(fh, "x", np.arange(N) / N)
        dims = ("trajectory", "time", "y", "x")
        add_field(fh, "target", target, dims)
        add_field(fh, "vorticity", w, dims)
        add_field(fh, "measurements", meas, dims)
        fh.attrs["conditions"] = json.dumps(CONDITIONS)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    d = tmp_path_factory.mktemp("dataset")
    write_split(d / "train.h5", 4, 10, 0)
    write_split(d / "val.h5", 1, 10, 1)
    # The statistics of the training split itself, as the dataset stage computes them.
    write_stats(d, {**split_stats(d / "train.h5", ["target", "vorticity"]),
                    "conditions": CONDITIONS})
    return d


def cfg(**train_changes):
    c = json.loads(json.dumps(TRAIN_SECTIONS))
    c["train"].update(train_changes)
    return config.load(c, sections=["device", "sde", "model", "train"])


@pytest.mark.slow
def test_stage_end_to_end(dataset, tmp_path):
    out = tmp_path / "model"
    rc = cli_main(["train", "--config", json.dumps(TRAIN_SECTIONS), "--data", str(dataset),
                   "--outdir", str(out), "--threads", "1"])
    assert rc == 0
    for name in ("score.pt", "last.pt", "history.csv", "curves.png"):
        assert (out / name).stat().st_size > 0
    rows = csv_rows(out / "history.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert set(rows[0]) == {"epoch", "train_loss", "val_loss", "lr", "seconds",
                            "apriori_dfro_mean", "apriori_dfro_member", "apriori_corr",
                            "apriori_spread_skill"}
    # train.monitor (every 10 epochs by default) also checks the last epoch
    assert [r["epoch"] for r in rows if r["apriori_dfro_mean"]] == ["6"]
    # StepLR: lr halves after lr_step=4 epochs
    assert float(rows[3]["lr"]) == float(rows[0]["lr"]) == 1e-2
    assert float(rows[4]["lr"]) == pytest.approx(0.5e-2)
    # learning: the validation loss (fixed noise, EMA weights) drops well below its start
    assert float(rows[-1]["val_loss"]) < 0.6 * float(rows[0]["val_loss"])
    net, settings = load_model(out / "score.pt")
    assert settings["conditions"] == CONDITIONS and settings["n"] == N
    assert settings["stats"]["target"] == json.loads(
        (dataset / "stats.json").read_text())["target"]
    assert settings["model"]["coords"] is False
    # the reloaded model runs at a finer grid with the same weights
    with torch.no_grad():
        y = net(torch.randn(2, 1, 16, 16), torch.rand(2), torch.randn(2, 2, 16, 16))
    assert torch.isfinite(y).all()


def _states_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_resume_is_bit_exact(dataset, tmp_path, monkeypatch, caplog):
    full = train(cfg(), dataset, tmp_path / "full")

    # kill after epoch 3: write_history runs right after last.pt is saved
    real = train_stage.write_history
    calls = []

    def dying(*args):
        real(*args)
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_stage, "write_history", dying)
    with pytest.raises(KeyboardInterrupt):
        train(cfg(), dataset, tmp_path / "killed")
    assert not (tmp_path / "killed" / "score.pt").exists()
    monkeypatch.setattr(train_stage, "write_history", real)
    with caplog.at_level(logging.INFO, logger="diffclosure"):
        resumed = train(cfg(), dataset, tmp_path / "killed")
    assert "resuming" in caplog.text and resumed.resumed_from == 3

    a = torch.load(tmp_path / "full" / "score.pt", weights_only=True)
    b = torch.load(tmp_path / "killed" / "score.pt", weights_only=True)
    assert _states_equal(a["state_dict"], b["state_dict"])
    assert _states_equal(a["ema_state_dict"], b["ema_state_dict"])
    assert [r["val_loss"] for r in full.history] == [r["val_loss"] for r in resumed.history]

    # raising train.epochs extends a finished run exactly as a longer run would have gone
    train(cfg(epochs=4), dataset, tmp_path / "extended")
    extended = train(cfg(), dataset, tmp_path / "extended")
    assert extended.resumed_from == 4
    assert _states_equal(extended.ema_net.state_dict(), full.ema_net.state_dict())

    # a different seed is a different run: last.pt is not reused and the weights differ
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="diffclosure"):
        other = train(cfg(seed=1), dataset, tmp_path / "killed")
    assert "starting over" in caplog.text and other.resumed_from == 0
    assert not _states_equal(other.net.state_dict(), full.net.state_dict())


# The tiny run reaches a plateau of its validation loss at about epoch 40 (lr halved every 10
# epochs); with margin 0 the rule waits for 3 epochs without any improvement, so the best epoch
# lies before the last one.
PLATEAU = {"epochs": 80, "lr_step": 10, "plateau": {"window": 3, "margin": 0.0}}


@pytest.mark.slow
def test_training_stops_at_the_plateau_and_keeps_the_best_epoch(dataset, tmp_path):
    run = train(cfg(**PLATEAU), dataset, tmp_path / "plateau")
    stop, reason = first_stop(run.history, Plateau(3, 0.0), 80)
    assert len(run.history) == stop < 80 and reason.startswith("plateau")
    best, best_val = best_epoch(run.history)
    assert best < stop and best_val == min(r["val_loss"] for r in run.history)
    # score.pt holds the EMA weights of the best epoch: those of the same run stopped there
    kept = torch.load(tmp_path / "plateau" / "score.pt", weights_only=True)
    cut = train(cfg(**{**PLATEAU, "epochs": best, "plateau": {"window": 0}}), dataset,
                tmp_path / "cut")
    assert _states_equal(kept["ema_state_dict"], cut.ema_net.state_dict())
    outcome = kept["settings"]["training"]
    assert (outcome["epochs"], outcome["best_epoch"]) == (stop, best)
    assert outcome["stop_reason"] == reason
    # the report's record of it: history.csv's sidecar
    assert read_sidecar_meta(tmp_path / "plateau" / "history.csv")["outcome"] == outcome


@pytest.mark.slow
def test_a_monitor_metric_stops_at_its_own_plateau_and_keeps_its_best_epoch(dataset, tmp_path):
    """train.plateau.metric apriori_dfro_mean: the rule reads train.monitor's D_Fro at its
    checks (the validation loss is computed there only), stops at a check, and score.pt holds
    the EMA weights of the check with the lowest D_Fro: those of the run cut there."""
    rule = {"metric": "apriori_dfro_mean", "window": 4, "margin": 0.02}
    monitor = {"every": 2, "conditions": 4, "ensemble": 2}
    run = train(cfg(epochs=60, lr_step=10, plateau=rule, monitor=monitor), dataset,
                tmp_path / "m")
    stop, reason = first_stop(run.history, Plateau(4, 0.02, "apriori_dfro_mean"), 60)
    assert len(run.history) == stop and stop % 2 == 0
    checks = [r["epoch"] for r in run.history if math.isfinite(r["apriori_dfro_mean"])]
    assert checks == list(range(2, stop + 1, 2))
    assert [r["epoch"] for r in run.history if math.isfinite(r["val_loss"])] == checks
    best, value = best_epoch(run.history, "apriori_dfro_mean")
    kept = torch.load(tmp_path / "m" / "score.pt", weights_only=True)
    outcome = kept["settings"]["training"]
    assert (outcome["best_epoch"], outcome["best_metric"]) == (best, "apriori_dfro_mean")
    assert outcome["best_value"] == pytest.approx(value)
    cut = train(cfg(epochs=best, lr_step=10, plateau={"window": 0}, monitor=monitor), dataset,
                tmp_path / "cut")
    assert _states_equal(kept["ema_state_dict"], cut.ema_net.state_dict())
    assert stop < 60 and reason.startswith("plateau") and "a-priori D_Fro" in reason


@pytest.mark.slow
def test_a_run_resumed_with_another_stopping_metric_picks_its_best_again(dataset, tmp_path,
                                                                         caplog):
    """The best epoch last.pt holds was chosen by the validation loss; resumed under the monitor
    metric it is not compared with a D_Fro but dropped, and the best is picked among the epochs
    after the resume."""
    monitor = {"every": 2, "conditions": 4, "ensemble": 2}
    out = tmp_path / "m"
    first = train(cfg(epochs=6, plateau={"window": 0}, monitor=monitor), dataset, out)
    assert len(first.history) == 6
    rule = {"metric": "apriori_dfro_mean", "window": 0}
    with caplog.at_level(logging.WARNING, logger="diffclosure"):
        resumed = train(cfg(epochs=10, plateau=rule, monitor=monitor), dataset, out)
    assert resumed.resumed_from == 6 and "picked again from epoch 7" in caplog.text
    outcome = torch.load(out / "score.pt", weights_only=True)["settings"]["training"]
    after = [r for r in resumed.history[6:] if math.isfinite(r["apriori_dfro_mean"])]
    best = min(after, key=lambda r: r["apriori_dfro_mean"])
    assert (outcome["best_epoch"], outcome["best_metric"]) == (best["epoch"],
                                                                "apriori_dfro_mean")


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_stop_and_a_stopped_run_trains_no_more(
        dataset, tmp_path, monkeypatch, caplog):
    full = train(cfg(**PLATEAU), dataset, tmp_path / "full")
    real, calls = train_stage.write_history, []

    def dying(*args, **kwargs):
        real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 20:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_stage, "write_history", dying)
    with pytest.raises(KeyboardInterrupt):
        train(cfg(**PLATEAU), dataset, tmp_path / "killed")
    monkeypatch.setattr(train_stage, "write_history", real)
    resumed = train(cfg(**PLATEAU), dataset, tmp_path / "killed")
    assert resumed.resumed_from == 20
    assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in full.history]
    a, b = (torch.load(tmp_path / d / "score.pt", weights_only=True) for d in ("full", "killed"))
    assert _states_equal(a["ema_state_dict"], b["ema_state_dict"])
    # a higher epoch bound does not restart a run that stopped at its plateau
    with caplog.at_level(logging.WARNING, logger="diffclosure"):
        again = train(cfg(**{**PLATEAU, "epochs": 200}), dataset, tmp_path / "killed")
    assert len(again.history) == len(full.history) and "had already stopped" in caplog.text
    c = torch.load(tmp_path / "killed" / "score.pt", weights_only=True)
    assert _states_equal(a["ema_state_dict"], c["ema_state_dict"])


@pytest.mark.slow
def test_a_looser_rule_continues_a_stopped_run_and_a_stricter_one_starts_over(
        dataset, tmp_path, caplog):
    out = tmp_path / "model"
    first = train(cfg(**PLATEAU), dataset, out)
    stop = len(first.history)
    # A longer window would not have stopped there: the run continues from last.pt, exactly as
    # a run with that rule from the start goes (monitor settings change nothing either).
    looser = {**PLATEAU, "plateau": {"window": 6, "margin": 0.0}}
    resumed = train(cfg(**looser, monitor={"every": 5}), dataset, out)
    assert resumed.resumed_from == stop and len(resumed.history) > stop
    straight = train(cfg(**looser), dataset, tmp_path / "straight")
    assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in straight.history]
    # A stricter rule would have stopped before the epochs last.pt holds: start over.
    stricter = {**PLATEAU, "plateau": {"window": 1, "margin": 0.05}}
    with caplog.at_level(logging.WARNING, logger="diffclosure"):
        again = train(cfg(**stricter), dataset, out)
    assert again.resumed_from == 0 and "would have stopped after epoch" in caplog.text


@pytest.mark.slow
def test_monitor_scores_the_model_without_changing_it(dataset, tmp_path):
    monitored = train(cfg(epochs=6, monitor={"every": 2, "conditions": 4, "ensemble": 3}),
                      dataset, tmp_path / "on")
    plain = train(cfg(epochs=6, monitor={"every": 0}), dataset, tmp_path / "off")
    assert _states_equal(monitored.ema_net.state_dict(), plain.ema_net.state_dict())
    rows = csv_rows(tmp_path / "on" / "history.csv")
    checked = [int(r["epoch"]) for r in rows if r["apriori_dfro_mean"]]
    assert checked == [2, 4, 6]
    for r in rows:
        if r["apriori_dfro_mean"]:
            # the ensemble mean is closer to the truth than its members on average (Jensen)
            assert 0 < float(r["apriori_dfro_mean"]) <= float(r["apriori_dfro_member"])
            assert -1 <= float(r["apriori_corr"]) <= 1
    assert "apriori_dfro_mean" not in csv_rows(tmp_path / "off" / "history.csv")[0]


def test_missing_inputs_fail_before_work(dataset, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("stats.json", "stats.json.provenance.json", "train.h5"):
        (broken / name).write_bytes((dataset / name).read_bytes())
    with pytest.raises(DataFileError, match="val.h5: file not found"):
        train(cfg(), broken, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with h5py.File(broken / "val.h5", "w") as fh:  # lists a condition it lacks
        fh["target"] = np.zeros((1, 2, N, N), np.float32)
        fh["vorticity"] = np.zeros((1, 2, N, N), np.float32)
        fh.attrs["conditions"] = json.dumps(CONDITIONS)
    # not the val.h5 the statistics were made with: refused before it is read
    with pytest.raises(DataFileError, match="val.h5: not the file the statistics"):
        train(cfg(), broken, tmp_path / "out")
    stats = json.loads((dataset / "stats.json").read_text())
    write_stats(broken, stats)  # a dataset made that way: the missing field is named
    with pytest.raises(DataFileError, match=r"val.h5.*\['measurements'\]"):
        train(cfg(), broken, tmp_path / "out")
    write_stats(broken, {"vorticity": {"mean": 0, "std": 1}})
    with pytest.raises(DataFileError, match="stats.json.*'target'"):
        train(cfg(), broken, tmp_path / "out")


def test_streamed_split_equals_in_memory(dataset):
    mem = load_split(dataset, "train", in_memory=True)
    stream = load_split(dataset, "train", in_memory=False)
    assert len(mem) == len(stream) == 40 and mem.conditions == stream.conditions == CONDITIONS
    idx = torch.tensor([7, 0, 33, 12])
    for a, b in zip(mem.get_batch(idx), stream.get_batch(idx), strict=True):
        assert torch.allclose(a, b)
    # normalisation: vorticity has the stats' mean 0, std 1; measurements use the target's
    with h5py.File(dataset / "train.h5") as fh:
        raw = fh["measurements"][0, 3]
    target = json.loads((dataset / "stats.json").read_text())["target"]
    assert np.allclose(mem.cond[3, 1].numpy(), (raw - target["mean"]) / target["std"],
                       atol=1e-5)


def _ddp_worker(rank, port, data, outdir, cfg_dict):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2",
                      RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    result = train(cfg_dict, data, outdir)
    torch.save(result.net.state_dict(), f"{outdir}/../rank{rank}.pt")


@pytest.mark.slow
def test_two_process_ddp_on_cpu(dataset, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "model"
    torch.multiprocessing.spawn(_ddp_worker, args=(port, str(dataset), str(out), cfg()),
                                nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert _states_equal(r0, r1)  # DDP keeps the replicas identical
    for name in ("score.pt", "last.pt", "history.csv", "curves.png"):
        assert (out / name).exists()
    rows = csv_rows(out / "history.csv")
    assert len(rows) == 6
    assert float(rows[-1]["val_loss"]) < 0.6 * float(rows[0]["val_loss"])
