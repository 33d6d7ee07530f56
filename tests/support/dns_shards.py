"""Tiny inputs of the coarse and dataset stages: DNS shards in the layout the dns stage
writes, the config sections, and the two stages called as the command line calls them."""

from __future__ import annotations

import argparse
import json

import numpy as np

from diffclosure.data import h5io
from diffclosure.stages import coarse as coarse_stage
from diffclosure.stages import dataset as dataset_stage

N, TIMES = 32, 6
DNS_ATTRS = {
    "n": N, "length": 1.0, "nu": 1e-3, "dt": 1e-3, "drag": 0.0, "forcing.kind": "paper",
    "forcing.amplitude": 0.1, "forcing.wavenumber": 4, "noise.sigma": 5e-5, "seed": 0,
    "config_hash": "synthetic",
}


def write_dns(path, ids, fields=("vorticity", "G", "H"), offset_per_id=0.0, n=N, times=TIMES):
    """A DNS shard in the documented layout; trajectory `i` gets offset `offset_per_id * i`."""
    rng = np.random.default_rng(int(ids[0]))
    with h5io.atomic_h5(path) as fh:
        h5io.add_coordinate(fh, "trajectory", np.asarray(ids, dtype=np.int64))
        h5io.add_coordinate(fh, "time", 5.0 + 0.1 * np.arange(times))
        xs = np.arange(n) / n
        h5io.add_coordinate(fh, "y", xs)
        h5io.add_coordinate(fh, "x", xs)
        offsets = offset_per_id * np.asarray(ids, dtype=float)[:, None, None, None]
        for name in fields:
            data = rng.standard_normal((len(ids), times, n, n)) + offsets
            h5io.add_field(fh, name, data, ("trajectory", "time", "y", "x"))
        h5io.add_field(fh, "forcing", np.zeros((n, n)), ("y", "x"))
        h5io.set_attrs(fh, {"dns": {**DNS_ATTRS, "n": n}})  # as the dns stage writes them


def coarse_cfg(**over):
    cfg = {"target": "H", "n": 16, "method": "subsample", "test_resolutions": [16, 32]}
    cfg.update(over)
    return cfg


def run_coarse(cfg, src, dst):
    args = argparse.Namespace(config=json.dumps({"coarse": cfg}), input=str(src), output=str(dst))
    return coarse_stage.main(args)


def run_dataset(sections, inputs, outdir):
    args = argparse.Namespace(
        config=json.dumps(sections), inputs=[str(p) for p in inputs], outdir=str(outdir)
    )
    return dataset_stage.main(args)


def sections(cfg, **meas):
    m = {"lattice": 4, "encoder": "conv"}
    m.update(meas)
    return {"coarse": cfg, "measurements": m,
            "dataset": {"val_trajectories": 2, "test_trajectories": 2, "start": 0.2, "stride": 2}}
