"""Stage `coarse`: coarse-grain one DNS shard and compute the closure target at every resolution.

For each m in sorted({coarse.n} | coarse.test_resolutions) the output has a group ``n<m>`` with
``vorticity`` and ``target`` (and ``smagorinsky`` when coarse.classical_estimate), all
(trajectory, time, y, x) float32, plus the coordinates. The filter width is fixed in physical
units, Delta = coarse.filter_width * L / coarse.n, at every resolution, so the test grids carry
the same physical target sampled more finely.
"""

from __future__ import annotations

import logging

import numpy as np

from diffclosure import config as cfgmod
from diffclosure.coarse.classical import estimate_of_target
from diffclosure.coarse.filters import filter_width
from diffclosure.coarse.targets import coarse_states_and_targets, paper_g, without_noise
from diffclosure.data import h5io
from diffclosure.data.h5io import DataFileError
from diffclosure.errors import remake_hint
from diffclosure.progress import progress
from diffclosure.provenance import provenance

log = logging.getLogger(__name__)

# Fine records processed together: bounds memory at ~32 MB per fine float64 array.
_CHUNK_POINTS = 2**22


def add_arguments(parser) -> None:
    parser.add_argument("--input", required=True, help="DNS shard (HDF5) from the dns stage")
    parser.add_argument("--output", required=True, help="coarse shard to write (HDF5)")


def resolutions(coarse: dict) -> list[int]:
    return sorted({coarse["n"], *coarse["test_resolutions"]})


def _check_grid(coarse: dict, n: int, path) -> None:
    named = [("coarse.n", coarse["n"])] + [
        (f"coarse.test_resolutions[{i}]", m) for i, m in enumerate(coarse["test_resolutions"])
    ]
    for name, m in named:
        if m > n:
            raise cfgmod.ConfigError(
                f"{name}: {m} is finer than the DNS grid n={n} of {path}; a coarse grid is at "
                f"most the DNS grid (a divisor of it, e.g. {n // 4})")
        if n % m:
            raise cfgmod.ConfigError(
                f"{name}: {m} must divide the DNS grid n={n} of {path}; pick a divisor of {n}"
            )


def _read_dns(path):
    """Open the DNS file; fail early, naming the file and the field, when anything is missing."""
    fh = h5io.open_input(path, required=("trajectory", "time", "vorticity"))
    # The DNS stage stores its section flattened as "dns.<field>"; provenance keys stay bare.
    try:
        attrs = {k.removeprefix("dns."): v for k, v in h5io.read_attrs(fh).items()}
    except DataFileError:
        fh.close()
        raise
    shape = fh["vorticity"].shape
    problem = None
    if len(shape) != 4 or shape[-1] != shape[-2]:
        problem = f"field vorticity has shape {shape}, expected (trajectory, time, n, n)"
    elif "length" not in attrs:
        problem = "lacks the attribute 'length' (domain size)"
    elif "n" in attrs and int(attrs["n"]) != shape[-1]:
        problem = f"attribute n={attrs['n']} but the fields are {shape[-1]}^2"
    if problem:
        fh.close()
        raise DataFileError(f"{path}: {problem}. {remake_hint(path)}")
    return fh, attrs


def _read_chunk(fh, fields: list[str], i: int, sl: slice) -> dict:
    """Fine fields of trajectory i, records sl, as float64; damaged bytes fail naming the file
    (field chunks carry checksums, and open_input's reads name the file, see data.h5io)."""
    return {k: fh[k][i, sl].astype(np.float64) for k in fields}


def _check_fields(fh, path, target: str, paper_g: bool = False, known_noise: bool = False
                  ) -> list[str]:
    """The fine fields the target needs, present and shaped like the vorticity."""
    stored = "H" if paper_g else target  # the research code's G is made from w and H
    fields = ["vorticity"] + ([stored] if target in ("G", "H") else [])
    if known_noise and "H" not in fields:  # the noise is recovered from H
        fields.append("H")
    missing = [f for f in fields if f not in fh]
    if missing:
        raise DataFileError(
            f"{path}: lacks field(s) {', '.join(missing)} needed for coarse.target={target}; "
            f"it was not made by this version of the pipeline. {remake_hint(path)}"
        )
    for name in fields[1:]:
        if fh[name].shape != fh["vorticity"].shape:
            raise DataFileError(
                f"{path}: field {name} has shape {fh[name].shape}, vorticity has "
                f"{fh['vorticity'].shape}; the file is inconsistent. {remake_hint(path)}"
            )
    return fields


def _paper_g_split(coarse: dict, dns_attrs: dict, path) -> bool:
    """True when the target is the research code's G (coarse.g_split paper), checked."""
    if coarse["target"] != "G" or coarse["g_split"] != "paper":
        return False
    return _needs_euler_cn(dns_attrs, path, "coarse.g_split: paper", "coarse.g_split: full")


def _known_noise(coarse: dict, dns_attrs: dict, path) -> bool:
    """True when the target's noise part is removed (coarse.noise known), checked."""
    if coarse["noise"] != "known":
        return False
    return _needs_euler_cn(dns_attrs, path, "coarse.noise: known", "coarse.noise: in_target")


def _needs_euler_cn(dns_attrs: dict, path, setting: str, instead: str) -> bool:
    """Both read the step's noise off a record (coarse/targets.record_noise): euler_cn only."""
    scheme = dns_attrs.get("scheme")
    if scheme != "euler_cn":
        raise cfgmod.ConfigError(
            f"{setting} needs a dns.scheme euler_cn DNS (its noise is H + dealiased u.grad w), "
            f"but {path} was made with {scheme!r}; set {instead} or rerun the DNS with "
            "dns.scheme: euler_cn")
    return True


def _copy_spinup(fh, out) -> None:
    """The DNS's spin-up energy and enstrophy series, passed on for the dataset's steadiness
    facts (older DNS files have none), in a group with its own coordinates."""
    if "spinup_time" not in fh:
        return
    g = out.create_group("spinup")
    h5io.add_coordinate(g, "trajectory", fh["trajectory"][()])
    h5io.add_coordinate(g, "time", fh["spinup_time"][()], {"units": "simulation time"})
    for q in ("energy", "enstrophy"):
        h5io.add_field(g, q, fh[f"spinup_{q}"][()], ("trajectory", "time"), dtype=np.float64)


def _create_groups(out, fh, coarse: dict, ms: list[int], method: str, length: float) -> dict:
    """One group n<m> per coarse grid with its coordinates and empty fields; the fields by
    grid and name."""
    n_traj, n_time = fh["vorticity"].shape[:2]
    groups = {}
    for m in ms:
        g = out.create_group(f"n{m}")
        h5io.add_coordinate(g, "trajectory", fh["trajectory"][()])
        h5io.add_coordinate(g, "time", fh["time"][()])
        xs = np.arange(m) * length / m
        h5io.add_coordinate(g, "y", xs)
        h5io.add_coordinate(g, "x", xs)
        shape = (n_traj, n_time, m, m)
        dims = ("trajectory", "time", "y", "x")
        names = ["vorticity", "target"] + (
            ["smagorinsky"] if coarse["classical_estimate"] else []
        )
        groups[m] = {k: h5io.create_field(g, k, shape, dims) for k in names}
        h5io.set_attrs(g, {"n": m, "dx": length / m, "method": method})
    return groups


def _write_coarse(fh, groups: dict, fields: list[str], coarse: dict, dns_attrs: dict,
                  paper: bool, method: str, delta: float, chunk: int,
                  known_noise: bool = False) -> dict:
    """Coarse states and targets of every trajectory, chunk by chunk of records, written into
    `groups`; the target's [min, max] per grid."""
    n_traj, n_time = fh["vorticity"].shape[:2]
    target, ms = coarse["target"], list(groups)
    length = float(dns_attrs["length"])
    starts = list(range(0, n_time, chunk))
    bar = progress(total=n_traj * len(starts), desc="coarse", unit="chunk")
    stats = {m: [np.inf, -np.inf] for m in ms}
    for i in range(n_traj):
        for t0 in starts:
            sl = slice(t0, min(t0 + chunk, n_time))
            fine = _read_chunk(fh, fields, i, sl)
            if paper:
                fine["G"] = paper_g(fine["vorticity"], fine.pop("H"),
                                    float(dns_attrs["nu"]), length)
            if known_noise:
                fine[target] = without_noise(fine[target], fine["vorticity"], fine["H"], length)
            results = coarse_states_and_targets(
                fine, target, ms, method, length, coarse["filter"], delta
            )
            for m, (w, y) in results.items():
                groups[m]["vorticity"][i, sl] = w
                groups[m]["target"][i, sl] = y
                if coarse["classical_estimate"]:
                    groups[m]["smagorinsky"][i, sl] = estimate_of_target(
                        target, w, length, delta, "smagorinsky", coarse["smagorinsky_cs"]
                    )
                stats[m] = [min(stats[m][0], y.min()), max(stats[m][1], y.max())]
            bar.update()
    bar.close()
    return stats


def main(args) -> int:
    fh, dns_attrs = _read_dns(args.input)
    with fh:
        n_traj, n_time, n, _ = fh["vorticity"].shape
        # Not this shard's trajectory count: the dataset checks concern all shards together.
        facts = {"n": n, "length": float(dns_attrs["length"])}
        coarse = cfgmod.load_sections(args.config, ["coarse"], facts)["coarse"]
        target = coarse["target"]
        paper = _paper_g_split(coarse, dns_attrs, args.input)
        known_noise = _known_noise(coarse, dns_attrs, args.input)
        fields = _check_fields(fh, args.input, target, paper, known_noise)
        _check_grid(coarse, n, args.input)
        length = float(dns_attrs["length"])
        delta = filter_width(coarse, length)
        ms = resolutions(coarse)
        method = "filter" if target == "sgs" else coarse["method"]
        if target == "sgs" and coarse["method"] != "filter":
            log.info("target sgs: the state is filtered (%s) whatever coarse.method says",
                     coarse["filter"])
        log.info("%s: %d trajectories x %d records at %d^2 -> %s (target %s, method %s, "
                 "Delta=%.4g)", args.input, n_traj, n_time, n, ms, target, method, delta)

        chunk = max(1, _CHUNK_POINTS // (n * n))
        prov_cfg = {"coarse": coarse, "input_config_hash": dns_attrs.get("config_hash")}
        per_field = sum(n_traj * n_time * m * m * 4 for m in ms)  # float32
        n_fields = 3 if coarse["classical_estimate"] else 2
        with h5io.atomic_h5(args.output, expected_bytes=n_fields * per_field) as out:
            h5io.set_attrs(out, {"coarse": coarse, "dns": dns_attrs})
            h5io.set_attrs(out, {"target": target, "filter_width_physical": delta})
            h5io.set_attrs(out, provenance(prov_cfg, "coarse"))
            _copy_spinup(fh, out)
            groups = _create_groups(out, fh, coarse, ms, method, length)
            stats = _write_coarse(fh, groups, fields, coarse, dns_attrs, paper, method, delta,
                                  chunk, known_noise)
    for m in ms:
        log.info("n%d: target range [%.4g, %.4g]", m, *stats[m])
    log.info("wrote %s", args.output)
    return 0
