"""Stage `dataset`: train/val/test sets split by trajectory, sparse measurements, statistics.

Inputs are the coarse shards (one group ``n<m>`` per resolution). Outputs in --outdir:

- train.h5, val.h5, test.h5 at coarse.n and test-<m>.h5 for every m in coarse.test_resolutions
  (test trajectories only, the same records at every resolution). Each holds target,
  vorticity, measurements (encoded, physical units; when measurements.enabled), smagorinsky
  (when coarse.classical_estimate), all (trajectory, time, y, x) float32, and
  measurements_lattice (trajectory, time, lattice_y, lattice_x), the raw (noisy) lattice values.
  The root attribute ``conditions`` (JSON list) names the condition channels in order.
- stats.json: {"target": {"mean", "std"}, "vorticity": ..., "smagorinsky": ...,
  "measurements": (a copy of target's), "note": ..., "conditions": [...], "split": {...},
  "provenance": {...}}, the statistics over the training split only.
- summary.png: sample panels and spectra.

The split is a seeded permutation of the sorted global trajectory ids: the first
dataset.test_trajectories are the test set, the next dataset.val_trajectories validation, the
rest training. Measurement noise is drawn per trajectory from (dataset.seed, trajectory id), so
it does not depend on sharding, on the split or on the grid.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from diffclosure import atomic
from diffclosure import config as cfgmod
from diffclosure.atomic import check_free_space
from diffclosure.coarse.filters import filter_width
from diffclosure.data import flow_stats, h5io
from diffclosure.data import measurements as meas_mod
from diffclosure.data.digest import content_digest
from diffclosure.data.h5io import DataFileError
from diffclosure.errors import remake_hint
from diffclosure.metrics.spectra import power_spectrum
from diffclosure.progress import progress
from diffclosure.provenance import provenance, write_json_table

log = logging.getLogger(__name__)

DIMS = ("trajectory", "time", "y", "x")


def add_arguments(parser) -> None:
    parser.add_argument("--inputs", nargs="+", required=True, help="coarse shards (HDF5)")
    parser.add_argument("--outdir", required=True, help="folder for the split files and stats")


# Shards that repeat trajectories come from different DNS runs: both stages must be redone.
REDO_SHARDS = "redo them with `snakemake --cores all --forcerun dns` (it also redoes coarse)"


# ----------------------------------------------------------------------------- pure helpers
def split_trajectories(ids, n_val: int, n_test: int, seed: int,
                       n_train: int | None = None) -> dict[str, list[int]]:
    """Disjoint train/val/test trajectory ids from a seeded permutation of the sorted ids.

    n_train keeps only the first n_train training trajectories of the permutation (None: all),
    so a smaller training set is a subset of every larger one and the validation and test sets
    do not move: a learning curve in data compares models on the same held-out states."""
    ids = sorted(int(i) for i in ids)
    if len(set(ids)) != len(ids):
        raise DataFileError("the coarse shards repeat trajectory ids (shards of different runs?);"
                            f" {REDO_SHARDS}")
    if len(ids) < n_val + n_test + 1:
        raise cfgmod.ConfigError(
            f"dataset.test_trajectories={n_test} + dataset.val_trajectories={n_val} leave no "
            f"training trajectory out of {len(ids)}; lower them or simulate more (dns.trajectories)"
        )
    available = len(ids) - n_val - n_test
    if n_train is not None and n_train > available:
        raise cfgmod.ConfigError(
            f"dataset.train_trajectories: {n_train}, but only {available} of the {len(ids)} "
            "trajectories are left after validation and test; lower it, or null for all")
    perm = np.random.default_rng(seed).permutation(len(ids))
    order = [ids[i] for i in perm]
    last = len(ids) if n_train is None else n_test + n_val + n_train
    return {
        "train": sorted(order[n_test + n_val : last]),
        "val": sorted(order[n_test : n_test + n_val]),
        "test": sorted(order[:n_test]),
    }


def select_times(times, start: float, stride: int, duration: float | None = None) -> np.ndarray:
    """Indices of records in [times[0] + start, times[0] + start + duration], every stride-th
    (duration None: to the last record)."""
    times = np.asarray(times, dtype=float)
    tol = 1e-9 * max(1.0, float(np.abs(times).max()) if times.size else 1.0)
    keep = times >= times[0] + start - tol
    if duration is not None:
        keep &= times <= times[0] + start + duration + tol
    idx = np.flatnonzero(keep)[::stride]
    if idx.size == 0:
        raise cfgmod.ConfigError(
            f"dataset.start: {start} is beyond the recorded window "
            f"[{times[0]:g}, {times[-1]:g}] (relative start at most {times[-1] - times[0]:g})"
        )
    return idx


def channel_names(coarse: dict, meas: dict) -> list[str]:
    """Condition channels in the order the score network receives them."""
    return (
        ["vorticity"]
        + (["measurements"] if meas["enabled"] else [])
        + (["smagorinsky"] if coarse["classical_estimate"] else [])
    )


class RunningStats:
    """Mean and std over many arrays (Chan's parallel update, float64)."""

    def __init__(self):
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def update(self, x) -> None:
        x = np.asarray(x, dtype=np.float64)
        n = x.size
        if n == 0:
            return
        mean = float(x.mean())
        m2 = float(((x - mean) ** 2).sum())
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta**2 * self.count * n / total
        self.count = total

    def result(self) -> dict:
        return {"mean": self.mean, "std": float(np.sqrt(self.m2 / max(self.count, 1)))}


# ----------------------------------------------------------------------------- shard access
class Shards:
    """The coarse shards opened read-only, with an index from trajectory id to (shard, row)."""

    def __init__(self, paths, coarse: dict):
        self.files, self.index = [], {}
        needed = [f"n{m}" for m in sorted({coarse["n"], *coarse["test_resolutions"]})]
        self.times = None
        for path in paths:
            fh = h5io.open_input(path, required=tuple(needed))
            self.files.append(fh)
            target = h5io.read_attrs(fh).get("target")
            if target != coarse["target"]:
                raise DataFileError(
                    f"{path}: holds target {target!r} but coarse.target is "
                    f"{coarse['target']!r}. {remake_hint(path)}"
                )
            for grp in needed:
                fields = ["trajectory", "time", "vorticity", "target"]
                if coarse["classical_estimate"]:
                    fields.append("smagorinsky")
                missing = [f for f in fields if f not in fh[grp]]
                if missing:
                    raise DataFileError(
                        f"{path}: group {grp} lacks {', '.join(missing)}. {remake_hint(path)}"
                        + (" (coarse.classical_estimate is on)" if "smagorinsky" in missing
                           else "")
                    )
            g = fh[needed[0]]
            times = g["time"][()]
            if self.times is None:
                self.times = times
            elif times.shape != self.times.shape or not np.allclose(times, self.times):
                raise DataFileError(
                    f"{path}: record times differ from {paths[0]}; all shards must come from one "
                    "dns configuration"
                )
            for row, tid in enumerate(g["trajectory"][()]):
                if int(tid) in self.index:
                    raise DataFileError(
                        f"{path}: trajectory id {int(tid)} also appears in "
                        f"{self.files[self.index[int(tid)][0]].filename}; {REDO_SHARDS}"
                    )
                self.index[int(tid)] = (len(self.files) - 1, row)
        self.resolutions = sorted({coarse["n"], *coarse["test_resolutions"]})
        self.dns_attrs = {k: v for k, v in h5io.read_attrs(self.files[0]).items()
                          if k.startswith("dns.")}
        self.length = float(self.dns_attrs.get("dns.length", 1.0))

    def read(self, tid: int, m: int, name: str, tsel) -> np.ndarray:
        shard, row = self.index[tid]
        return self.files[shard][f"n{m}"][name][row][tsel].astype(np.float64)

    def close(self):
        for fh in self.files:
            fh.close()


# ----------------------------------------------------------------------------- the stage
def _lattice_values(tid, target, meas, dataset, target_std):
    """Raw lattice values of one trajectory (noise included) -> (time, p, p)."""
    values = meas_mod.sample(target, meas["lattice"])
    return meas_mod.add_noise(
        values, meas["noise"], target_std, meas_mod.noise_rng(dataset["seed"], tid)
    )


def _write_split(path, shards, ids, m, tsel, cfg, channels, target_std, stage_prov, bar):
    coarse, meas, dataset = cfg["coarse"], cfg["measurements"], cfg["dataset"]
    p = meas["lattice"]
    ranges = {}
    with h5io.atomic_h5(path) as out:
        h5io.add_coordinate(out, "trajectory", np.asarray(ids, dtype=np.int64))
        h5io.add_coordinate(out, "time", shards.times[tsel])
        xs = np.arange(m) * shards.length / m
        h5io.add_coordinate(out, "y", xs)
        h5io.add_coordinate(out, "x", xs)
        shape = (len(ids), len(tsel), m, m)
        names = ["target", "vorticity"] + [c for c in channels if c != "vorticity"]
        fields = {k: h5io.create_field(out, k, shape, DIMS) for k in names}
        if meas["enabled"]:
            lat = meas_mod.lattice_indices(m, p) * shards.length / m
            h5io.add_coordinate(out, "lattice_y", lat)
            h5io.add_coordinate(out, "lattice_x", lat)
            fields["measurements_lattice"] = h5io.create_field(
                out, "measurements_lattice", (len(ids), len(tsel), p, p),
                ("trajectory", "time", "lattice_y", "lattice_x"),
            )
        for i, tid in enumerate(ids):
            target = shards.read(tid, m, "target", tsel)
            data = {"target": target, "vorticity": shards.read(tid, m, "vorticity", tsel)}
            if coarse["classical_estimate"]:
                data["smagorinsky"] = shards.read(tid, m, "smagorinsky", tsel)
            if meas["enabled"]:
                vals = _lattice_values(tid, target, meas, dataset, target_std)
                data["measurements_lattice"] = vals
                data["measurements"] = meas_mod.encode(
                    vals, m, meas["encoder"], meas["conv_width"]
                )
            for k, v in data.items():
                fields[k][i] = v
                lo, hi = ranges.get(k, (np.inf, -np.inf))
                ranges[k] = (min(lo, float(v.min())), max(hi, float(v.max())))
            bar.update()
        h5io.set_attrs(out, {k: cfg[k] for k in ("coarse", "measurements", "dataset")})
        h5io.set_attrs(out, {
            "target": coarse["target"], "n": m, "lattice": p, "encoder": meas["encoder"],
            "conv_width": meas["conv_width"], "split": Path(path).stem,
            "conditions": json.dumps(channels), "trajectories": json.dumps([int(i) for i in ids]),
        })
        h5io.set_attrs(out, stage_prov)
    log.info("%s: %s records of %d^2; %s", path, f"{len(ids)}x{len(tsel)}", m,
             ", ".join(f"{k} [{lo:.3g}, {hi:.3g}]" for k, (lo, hi) in ranges.items()))


def _training_stats(shards, ids, m, tsel, coarse) -> dict:
    names = ["target", "vorticity"] + (["smagorinsky"] if coarse["classical_estimate"] else [])
    acc = {k: RunningStats() for k in names}
    for tid in ids:
        for k in names:
            acc[k].update(shards.read(tid, m, k, tsel))
    return {k: a.result() for k, a in acc.items()}


def _stochastic_share(shards, coarse: dict, target_std: float) -> dict:
    """std of the noise part of the target (exact, from the noise's law) over the target's std."""
    attrs = shards.dns_attrs
    keys = [f"dns.noise.{k}" for k in ("sigma", "alpha", "kappa")] + ["dns.dt", "dns.n"]
    if any(k not in attrs for k in keys):  # not written by our dns stage: say so, do not guess
        log.warning("the coarse shards lack %s: stochastic share not computed",
                    [k for k in keys if k not in attrs])
        return {"noise_std": None, "target_std": target_std, "share": None,
                "note": "the DNS attributes lack the noise settings"}
    noise = {k: float(attrs[f"dns.noise.{k}"]) for k in ("sigma", "alpha", "kappa")}
    once = flow_stats.noise_term_std(int(attrs["dns.n"]), shards.length, noise,
                                     float(attrs["dns.dt"]), coarse,
                                     filter_width(coarse, shards.length))
    times = flow_stats.noise_multiplicity(coarse["target"], coarse.get("g_split", "full"),
                                          coarse.get("noise", "in_target"))
    return {
        "noise_std": times * once, "target_std": target_std,
        "share": times * once / target_std if target_std > 0 else float("nan"),
        "note": "std of sigma*xi's part of the target (its known law, exact in expectation) over "
                "the measured std of the target (training split), at coarse.n",
    }


def _window_steadiness(shards, ids, tsel) -> dict:
    """Drift of the trajectory-mean energy and enstrophy across the records the datasets use,
    on the finest grid the coarse shards hold."""
    m = max(shards.resolutions)
    energy = np.zeros(len(tsel))
    enstrophy = np.zeros(len(tsel))
    for tid in ids:
        e, z = flow_stats.energy_enstrophy(shards.read(tid, m, "vorticity", tsel), shards.length)
        energy += e / len(ids)
        enstrophy += z / len(ids)
    times = shards.times[tsel]
    return {
        "start": float(times[0]), "end": float(times[-1]), "grid": m,
        "energy_drift": flow_stats.window_drift(energy),
        "enstrophy_drift": flow_stats.window_drift(enstrophy),
        "energy": [float(times[0]), float(energy[0]), float(times[-1]), float(energy[-1])],
        "note": "drift = (max - min) / mean over the window of the mean over all trajectories",
    }


def _spinup_steadiness(shards) -> dict | None:
    """The DNS's spin-up, mean over all trajectories (from the coarse shards' copy): the
    series, and the drift over its second half (a flow still spinning up drifts there)."""
    if any("spinup" not in fh for fh in shards.files):
        return None
    times = shards.files[0]["spinup"]["time"][()]
    series = {}
    for q in ("energy", "enstrophy"):
        total = sum(fh["spinup"][q][()].sum(axis=0) for fh in shards.files)
        series[q] = total / len(shards.index)
    late = times >= times[-1] / 2
    return {
        "time": times.tolist(), **{q: v.tolist() for q, v in series.items()},
        "grid": int(shards.dns_attrs.get("dns.n", 0)),
        **{f"{q}_drift_second_half": flow_stats.window_drift(v[late])
           for q, v in series.items()},
        "note": "DNS energy and enstrophy during the spin-up, mean over all trajectories; drift"
                " = (max - min) / mean over t >= spinup/2",
    }


def _split_bytes(jobs, records: int, channels: list[str], meas: dict) -> int:
    """Size of the split files' fields (target and conditions, raw lattice values), float32."""
    lattice = meas["lattice"] ** 2 if meas["enabled"] else 0
    return sum(4 * len(ids) * records * ((1 + len(channels)) * m * m + lattice)
               for _, m, ids in jobs)


def _facts_line(stochastic: dict, window: dict) -> str:
    share = stochastic["share"]
    noise = "" if share is None else f"noise share of the target {share:.3f} (std ratio); "
    spin = window.get("spinup")
    spin = "" if not spin else (
        f"; spin-up second half: energy drift {spin['energy_drift_second_half']:.1%}, "
        f"enstrophy {spin['enstrophy_drift_second_half']:.1%}")
    return (f"{noise}window {window['start']:g}-{window['end']:g}: energy drift "
            f"{window['energy_drift']:.1%}, enstrophy drift {window['enstrophy_drift']:.1%}"
            + spin)


def _dns_facts(paths) -> dict:
    """dns.n, dns.length and the trajectory count of the coarse shards (for config checks)."""
    n, length, count = None, 1.0, 0
    for path in paths:
        with h5io.open_input(path) as fh:
            attrs = h5io.read_attrs(fh)
            groups = sorted(k for k in fh if k.startswith("n") and "trajectory" in fh[k])
            if "dns.n" not in attrs or not groups:
                raise DataFileError(
                    f"{path}: not a coarse shard (no dns.n attribute or no n<m> groups). "
                    f"{remake_hint(path)}"
                )
            n, length = int(attrs["dns.n"]), float(attrs.get("dns.length", 1.0))
            count += fh[groups[0]]["trajectory"].shape[0]
    return {"n": n, "length": length, "trajectories": max(count, 1)}


def _check_measurement_grids(coarse: dict, meas: dict, ms_test: list[int]) -> None:
    """The measurement lattice (and conv kernel) fits every grid, before any work."""
    if meas["enabled"]:
        for m in [coarse["n"], *ms_test]:
            meas_mod.lattice_stride(m, meas["lattice"])
            if meas["encoder"] == "conv":
                meas_mod.conv_kernel_points(m, meas["lattice"], meas["conv_width"])


def _dataset_facts(shards, split: dict, tsel, coarse: dict, meas: dict) -> tuple:
    """Training statistics, the target's stochastic share and the window's steadiness."""
    stats = _training_stats(shards, split["train"], coarse["n"], tsel, coarse)
    stochastic = _stochastic_share(shards, coarse, stats["target"]["std"])
    steadiness = _window_steadiness(shards, sorted(shards.index), tsel)
    steadiness["spinup"] = _spinup_steadiness(shards)
    log.info("stochastic share of the target: %s; window: %s", stochastic, steadiness)
    if meas["enabled"]:
        stats["measurements"] = dict(stats["target"])
    return stats, stochastic, steadiness


def _write_stats(path: Path, stats: dict, stochastic, steadiness, channels, split,
                 prov_cfg: dict, digests: dict) -> None:
    """stats.json with its sidecar (checksum); `digests` = {split file: content_digest}, which
    training and the other readers check the files they read against."""
    doc = {
        **stats,
        "note": (
            "mean/std over the training split only, at coarse.n. The measurements channel "
            "is normalised with the target's statistics (its entry is a copy of 'target'), "
            "so measured and predicted values share one scale."
        ),
        "stochastic_forcing": stochastic,
        "window": steadiness,
        "conditions": channels,
        "split": split,
        "digests": digests,
        "provenance": provenance(prov_cfg, "dataset"),
    }
    write_json_table(path, doc, prov_cfg, "dataset")


def main(args) -> int:
    cfg = cfgmod.load_sections(
        args.config, ["coarse", "measurements", "dataset"], _dns_facts(args.inputs)
    )
    coarse, meas, dataset = cfg["coarse"], cfg["measurements"], cfg["dataset"]
    ms_test = sorted(set(coarse["test_resolutions"]))
    _check_measurement_grids(coarse, meas, ms_test)
    outdir = Path(args.outdir)
    shards = Shards(args.inputs, coarse)
    try:
        split = split_trajectories(
            shards.index, dataset["val_trajectories"], dataset["test_trajectories"],
            dataset["seed"], dataset["train_trajectories"],
        )
        tsel = select_times(shards.times, dataset["start"], dataset["stride"],
                            dataset["duration"])
        channels = channel_names(coarse, meas)
        log.info("split: train %s, val %s, test %s; %d records per trajectory",
                 split["train"], split["val"], split["test"], len(tsel))
        jobs = [(s, coarse["n"], split[s]) for s in ("train", "val", "test")]
        jobs += [(f"test-{m}", m, split["test"]) for m in ms_test]
        check_free_space(outdir / "train.h5", _split_bytes(jobs, len(tsel), channels, meas))

        stats, stochastic, steadiness = _dataset_facts(shards, split, tsel, coarse, meas)
        target_std = stats["target"]["std"]
        inputs_hash = sorted(
            str(h5io.read_attrs(fh).get("config_hash", "")) for fh in shards.files
        )
        prov_cfg = {**cfg, "inputs": inputs_hash}
        stage_prov = provenance(prov_cfg, "dataset")
        bar = progress(total=sum(len(ids) for _, _, ids in jobs), desc="dataset", unit="traj")
        for name, m, ids in jobs:
            _write_split(outdir / f"{name}.h5", shards, ids, m, tsel, cfg, channels,
                         target_std, stage_prov, bar)
        bar.close()

        digests = {f"{name}.h5": content_digest([outdir / f"{name}.h5"]) for name, _, _ in jobs}
        _write_stats(outdir / "stats.json", stats, stochastic, steadiness, channels, split,
                     prov_cfg, digests)
        log.info("stats (train): %s", {k: v for k, v in stats.items()})
        _summary_figure(outdir / "summary.png", outdir / "train.h5", channels, coarse["target"],
                        _facts_line(stochastic, steadiness))
    finally:
        shards.close()
    log.info("wrote %s", outdir)
    return 0


def _summary_figure(path, train_path, channels, target_name, facts: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    with h5io.open_input(train_path) as fh:
        panels = ["target"] + channels
        sample = {k: fh[k][0, 0] for k in panels}
        batch = {k: fh[k][:, : min(8, fh[k].shape[1])] for k in panels}
        lattice = fh["lattice_x"][()] if "lattice_x" in fh else None
        xs = fh["x"][()]
    dx = float(xs[1] - xs[0])
    # Pixel i covers [x_i - dx/2, x_i + dx/2], so lattice dots sit on pixel centres.
    extent = (xs[0] - dx / 2, xs[-1] + dx / 2, xs[0] - dx / 2, xs[-1] + dx / 2)

    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(3.2 * (len(panels) + 1), 3.2))
    for ax, k in zip(axes[:-1], panels, strict=True):
        vmax = float(np.abs(sample[k]).max()) or 1.0
        im = ax.imshow(sample[k], origin="lower", extent=extent, cmap="RdBu_r",
                       vmin=-vmax, vmax=vmax)
        ax.set_title(f"target {target_name}" if k == "target" else k)
        if k == "measurements" and lattice is not None:
            gx, gy = np.meshgrid(lattice, lattice)
            ax.plot(gx.ravel(), gy.ravel(), "k.", ms=2)
        fig.colorbar(im, ax=ax, shrink=0.8)
        ax.set_xticks([])
        ax.set_yticks([])
    ax = axes[-1]
    for k in panels:
        # Shell sums of |f_k|^2 (Parseval-normalised), averaged over the batch; shells 1..m/2-1
        # (the mean mode has no place on a log axis, the corner shells are incomplete).
        kk, power = power_spectrum(batch[k])
        m = batch[k].shape[-1]
        e = power.reshape(-1, kk.size).mean(axis=0)
        ax.loglog(kk[1 : m // 2], np.maximum(e[1 : m // 2], 1e-30), label=k)
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("|k| (integer wavenumber)")
    ax.set_title("spectra (train)")
    ax.legend(fontsize=7)
    if facts:
        fig.suptitle(facts, fontsize=9)
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
