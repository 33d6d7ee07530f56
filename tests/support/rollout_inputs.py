"""Tiny inputs of the rollout stage: two DNS shards and a dataset folder in the layouts the
stages write, a small untrained score model, the config sections, and the stage's command."""

from __future__ import annotations

import json

import numpy as np
import torch

from diffclosure import cli
from diffclosure.data import h5io
from diffclosure.model.checkpoint import build_from_settings, save_checkpoint
from diffclosure.solver.grid import Grid
from diffclosure.solver.initial import gaussian_random_field

from support.datasets import write_stats

torch.set_num_threads(1)
N_FINE, N = 32, 16
IDS, TEST = [0, 1, 2, 3], [2, 0]


def sections(target="G", **rollout) -> dict:
    ro = {"duration": 0.02, "record_every": 0.005, "initial_states": 2, "ensemble": 2,
          "dns_cost_steps": 2, "resample_every": 5,
          "sampler": {"name": "em", "steps": 2, "schedule": "karras", "t_max": 0.1}}
    ro.update(rollout)
    return {
        "device": "cpu",
        "dns": {"n": N_FINE, "backend": "numpy", "record_every": 0.01, "duration": 0.02,
                "noise": {"sigma": 1e-3}},
        "coarse": {"target": target, "n": N, "test_resolutions": [N]},
        "measurements": {"lattice": 4},
        "sde": {},
        "rollout": ro,
    }


def make_inputs(root, target="G"):
    """Two DNS shards (3 records each) and a dataset folder with stats.json."""
    rng = [np.random.default_rng([5, i]) for i in IDS]
    w = gaussian_random_field(Grid(N_FINE), rng)
    records = np.stack([w * (1 - 0.1 * j) for j in range(3)], axis=1)  # (traj, time, n, n)
    paths = []
    for shard, ids in enumerate([[0, 1], [2, 3]]):
        path = root / "dns" / f"shard-{shard}.h5"
        with h5io.atomic_h5(path) as fh:
            h5io.add_coordinate(fh, "trajectory", np.asarray(ids))
            h5io.add_coordinate(fh, "time", 5.0 + 0.01 * np.arange(3))
            xs = np.arange(N_FINE) / N_FINE
            h5io.add_coordinate(fh, "y", xs)
            h5io.add_coordinate(fh, "x", xs)
            for name in ("vorticity", "G", "H"):
                h5io.add_field(fh, name, records[ids], ("trajectory", "time", "y", "x"))
            h5io.set_attrs(fh, {"dns": {"length": 1.0, "n": N_FINE}})  # as the dns stage writes
        paths.append(str(path))
    data = root / "dataset"
    data.mkdir(parents=True)
    stats = {"target": {"mean": 0.0, "std": 0.5}, "vorticity": {"mean": 0.0, "std": 1.0},
             "measurements": {"mean": 0.0, "std": 0.5},
             "conditions": ["vorticity", "measurements"],
             "split": {"train": [1], "val": [3], "test": TEST}}
    write_stats(data, stats)
    return paths, data


def make_model(path):
    settings = {"model": {"width": 4, "modes": 3, "layers": 1, "embedding_features": 8,
                          "embedding_scale": 4.0, "head": [8], "coords": False},
                "sde": {"kind": "ve", "s": 26.0}, "conditions": ["vorticity", "measurements"],
                "stats": {"target": {"mean": 0.0, "std": 0.5},
                          "vorticity": {"mean": 0.0, "std": 1.0}},
                "n": N, "version": "test", "config_hash": "test"}
    torch.manual_seed(0)
    net = build_from_settings(settings)
    save_checkpoint(path, net, net, settings)
    return path


def run_stage(root, closure, cfg, paths, data, model=None) -> int:
    argv = ["rollout", "--config", json.dumps(cfg), "--closure", closure, "--dns", *paths,
            "--data", str(data), "--output", str(root / "rollout" / f"{closure}.h5")]
    if model:
        argv += ["--model", str(model)]
    return cli.main(argv)
