"""Loading and validating the pipeline configuration.

One schema (diffclosure/schemas/config.schema.yaml, shipped in the package) is the single source
of truth: the Snakefile and every `python -m diffclosure <stage>` validate against it and fill its
defaults, so a stage run alone sees exactly the settings the pipeline would give it.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import re
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

# Package data, so that an installed wheel validates as a checkout does. Snakemake's validate
# wants a file path; pip installs a wheel unpacked, so the resource is a real file.
_SCHEMA = resources.files("diffclosure") / "schemas" / "config.schema.yaml"
SCHEMA_PATH = Path(str(_SCHEMA))

# The repository this package runs from (editable install, or PYTHONPATH=workflow), or None for an
# installed wheel, which has no config.yaml nor git history of its own to consult.
_HERE = Path(__file__).resolve()
CHECKOUT = _HERE.parents[2] if (_HERE.parents[1].name == "workflow" and
                                (_HERE.parents[2] / "Snakefile").is_file()) else None


class ConfigError(ValueError):
    """A configuration problem, with the offending field named in the message."""


def load_schema() -> dict:
    return yaml.safe_load(_SCHEMA.read_text(encoding="utf-8"))


def default_config_path(cwd: str | Path | None = None) -> Path | None:
    """The config.yaml the pipeline starts from: the one beside the Snakefile in `cwd` (default:
    the current directory, where `snakemake` would find it), else the checkout's; None when
    neither exists (an installed package run outside a workflow)."""
    for root in (Path.cwd() if cwd is None else Path(cwd), CHECKOUT):
        if root is not None and (root / "Snakefile").is_file() and (root / "config.yaml").is_file():
            return root / "config.yaml"
    return None


def schema_defaults(schema: dict | None = None) -> dict:
    """A complete config made of the schema's defaults alone, unvalidated as a file reads."""
    schema = schema or load_schema()
    return {name: copy.deepcopy(schema["properties"][name]["default"])
            for name in schema["required"]}


def read_default_config(cwd: str | Path | None = None) -> tuple[dict, str]:
    """(the default config as written, where it comes from): default_config_path()'s file, or
    the schema's defaults where there is none, so that no workflow folder is needed."""
    path = default_config_path(cwd)
    if path is None:
        return schema_defaults(), "the schema's defaults"
    return read_yaml(path), str(path)


def merge(base: dict, extra: dict) -> dict:
    """Snakemake's merge of a --configfile over the configfile: nested, lists replaced."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def read_run_config(files=(), cwd: str | Path | None = None) -> tuple[dict, str]:
    """(the config a run of `snakemake --configfile FILES...` sees, where it comes from): the
    default config (read_default_config) with each file merged on top in order, unvalidated."""
    cfg, base = read_default_config(cwd)
    for path in files:
        extra = read_yaml(path)
        if not isinstance(extra, dict):
            raise ConfigError(f"{path}: must be a mapping of sections")
        merge(cfg, extra)
    on = f"{', '.join(map(str, files))} on top of {base}" if files else base
    return cfg, on


# Settings that change how fast a stage runs, not what it computes: each trajectory gets its own
# transforms whatever the batch; threads and FFTW planners at most let FFTW pick other algorithms
# (round-off, as on another machine; bit-identical in tests/stages/test_dns_stage.py); training's
# resume identity leaves its threads out. The rules keep them out of the params Snakemake compares
# and hand them over with --speed (workflow/rules/common.smk), so changing one reruns nothing.
SPEED_ONLY = {"dns": ("threads", "batch", "planner"), "train": ("threads",)}

# PyYAML follows YAML 1.1, where a float needs a dot and a signed exponent: `2e-3` and `1.0e3`
# load as strings, from our loader and from Snakemake's alike. Rather than a YAML resolver, which
# would cover only our own loading, validation turns such a string into the float it spells
# wherever the schema wants a number. Only exponent forms: a quoted "0.1" was meant as a string.
_EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _wants_number(schema: dict) -> bool:
    types = schema.get("type", ())
    return "number" in ([types] if isinstance(types, str) else types)


def _as_number(value, schema: dict):
    if isinstance(value, str) and _wants_number(schema) and _EXPONENT_NUMBER.fullmatch(value):
        return float(value)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_as_number(v, schema["items"]) for v in value]
    return value


def _with_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]
    validate_type = validator_class.VALIDATORS["type"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
                elif name in instance:
                    instance[name] = _as_number(instance[name], sub)
        yield from validate_properties(validator, properties, instance, schema)

    def finite_type(validator, types, instance, schema):
        yield from validate_type(validator, types, instance, schema)
        # NaN passes every minimum (comparisons with it are false) and inf passes most.
        if isinstance(instance, float) and not math.isfinite(instance):
            yield jsonschema.ValidationError(f"must be a finite number, got {instance}")

    return jsonschema.validators.extend(
        validator_class, {"properties": set_defaults, "type": finite_type})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def _field(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _explain(err: jsonschema.ValidationError, prefix: tuple = ()) -> str:
    """One line naming the field; `prefix` is the path of an entry validated on its own."""
    path = [*prefix, *err.absolute_path]
    field = _field(path)
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        known = ", ".join(sorted(err.schema.get("properties", {})))
        return f"{_field(path + extra[:1])}: unknown key; known keys here: {known}"
    if err.validator == "required" and not path:
        return f"{field}: {err.message}; add the section (an empty mapping {{}} takes the defaults)"
    if err.validator == "multipleOf" and err.validator_value == 2:
        return f"{field}: must be even, got {err.instance}"
    if err.validator == "type" and isinstance(err.instance, str) and _EXPONENT_NUMBER.fullmatch(
            err.instance):
        return f"{field}: {err.message}; write it as a whole number without an exponent"
    return f"{field}: {err.message}"


def _check(schema: dict, instance, prefix: tuple = ()) -> None:
    """Fill `instance`'s defaults from `schema`; a ConfigError naming every field it breaks."""
    errors = sorted(_Validator(schema).iter_errors(instance),
                    key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(
            _explain(e, prefix) for e in errors))


def validate(config: dict, schema: dict | None = None) -> dict:
    """Validate `config` (in place, defaults filled) and check cross-field rules."""
    _check(schema or load_schema(), config)
    check_consistency(config)
    return config


def validate_sections(sections: dict, schema: dict | None = None) -> dict:
    """Validate a subset of top-level sections (what a Snakemake rule hands to one stage)."""
    schema = schema or load_schema()
    # Only the sections given: defaults of absent sections must not leak into cross-field checks.
    unknown = sorted(set(sections) - set(schema["properties"]))
    if unknown:
        known = ", ".join(sorted(schema["properties"]))
        raise ConfigError(
            f"invalid configuration:\n  {unknown[0]}: unknown section; known: {known}"
        )
    sub = {
        "type": "object",
        "properties": {k: schema["properties"][k] for k in sections},
        "$defs": schema.get("$defs", {}),  # what the sections' $ref point at
    }
    _check(sub, sections)
    check_consistency(sections)
    return sections


def validate_entry(entry: dict, node: tuple[str, ...], where: str) -> dict:
    """A copy of `entry` checked against the schema node at the path `node` (keys of the
    schema itself, e.g. ("$defs", "sampler")) and completed with its defaults; errors name the
    fields under `where`, the entry's place in a config."""
    schema = _schema()
    sub = schema
    for key in node:
        sub = sub[key]
    entry = copy.deepcopy(entry)
    _check({**sub, "$defs": schema.get("$defs", {})}, entry, (where,))
    return entry


@functools.cache
def _schema() -> dict:
    """The schema read once, for validate_entry (callers must not change it)."""
    return load_schema()


def check_consistency(cfg: dict) -> None:
    """Rules that span fields; each message names the field and the fix."""
    dns, coarse, meas = cfg.get("dns"), cfg.get("coarse"), cfg.get("measurements")
    ds, ro = cfg.get("dataset"), cfg.get("rollout")
    problems = [
        *(_dns_problems(dns) if dns else []),
        *_grid_problems(dns, coarse, meas),
        *_trajectory_problems(dns, ds),
        *_rollout_problems(dns, coarse, ro),
        *_cross_stage_problems(cfg, dns, ds, ro, meas),
    ]
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def _dns_problems(dns: dict) -> list[str]:
    problems = []
    if dns["forcing"]["symmetric"] and dns["forcing"]["kind"] != "ring":
        problems.append(
            f"dns.forcing.symmetric: applies to the ring forcing only, not kind "
            f"{dns['forcing']['kind']!r}; set dns.forcing.kind: ring or symmetric: false")
    if not _is_multiple(dns["record_every"], dns["dt"]):
        problems.append(
            f"dns.record_every: {dns['record_every']} is not a multiple of dns.dt={dns['dt']};"
            " choose record_every = k*dt"
        )
    if dns["shards"] > dns["trajectories"]:
        problems.append(
            f"dns.shards: {dns['shards']} shards for {dns['trajectories']} trajectories;"
            " use at most one shard per trajectory"
        )
    return problems


def _grid_problems(dns, coarse, meas) -> list[str]:
    """Coarse grids that the DNS grid or the measurement lattice does not divide."""
    problems = []
    if dns and coarse:
        for name, m in [("coarse.n", coarse["n"])] + [
            (f"coarse.test_resolutions[{i}]", r) for i, r in enumerate(coarse["test_resolutions"])
        ]:
            if m > dns["n"]:
                problems.append(f"{name}: {m} is finer than the DNS grid dns.n={dns['n']}; a "
                                f"coarse grid is at most dns.n (a divisor of it, e.g. "
                                f"{dns['n'] // 4})")
            elif dns["n"] % m:
                problems.append(f"{name}: {m} must divide dns.n={dns['n']}")
    if coarse and meas and meas["enabled"]:
        for m in [coarse["n"], *coarse["test_resolutions"]]:
            if m % meas["lattice"]:
                problems.append(
                    f"measurements.lattice: a {meas['lattice']}x{meas['lattice']} lattice does not"
                    f" divide the {m}^2 grid; pick a lattice that divides every resolution"
                )
                break
    return problems


def _trajectory_problems(dns, ds) -> list[str]:
    if dns and ds:
        needed = ds["val_trajectories"] + ds["test_trajectories"] + 1
        if dns["trajectories"] < needed:
            return [
                f"dns.trajectories: {dns['trajectories']} leaves no training trajectory after"
                f" {ds['val_trajectories']} validation and {ds['test_trajectories']} test ones;"
                f" use at least {needed}"
            ]
        left = dns["trajectories"] - needed + 1
        if ds.get("train_trajectories") is not None and ds["train_trajectories"] > left:
            return [
                f"dataset.train_trajectories: {ds['train_trajectories']}, but dns.trajectories ="
                f" {dns['trajectories']} leaves {left} after validation and test; lower it, or"
                " null for all"
            ]
    return []


def _rollout_problems(dns, coarse, ro) -> list[str]:
    """Rollout record times and start that the DNS time step and records do not allow."""
    problems = []
    if not (dns and ro):
        return problems
    if not _is_multiple(ro["record_every"], dns["dt"]):
        problems.append(
            f"rollout.record_every: {ro['record_every']} is not a multiple of"
            f" dns.dt={dns['dt']}; choose record_every = k*dt"
        )
    if coarse and coarse["target"] == "sgs" and not _is_multiple(
        ro["record_every"], dns["record_every"]
    ):
        problems.append(
            f"rollout.record_every: {ro['record_every']} must be a multiple of"
            f" dns.record_every={dns['record_every']} for the sgs target (its reference is"
            " the filtered DNS at the record times)"
        )
    return problems + _start_problems(dns, ro) + _calibration_problems(dns, ro)


def _calibration_problems(dns: dict, ro: dict) -> list[str]:
    """rollout.calibration.duration must be a whole number of steps holding a record; a memory
    per shell is measured, so it needs tau auto."""
    problems = []
    if ro.get("tau_per_shell") and ro.get("tau") != "auto":
        problems.append(f"rollout.tau_per_shell: true measures the memory of each scale, so it "
                        f"needs rollout.tau: auto (got {ro.get('tau')!r}); set tau auto or "
                        "tau_per_shell false")
    duration = (ro.get("calibration") or {}).get("duration")
    if duration is None:
        return problems
    if not _is_multiple(duration, dns["dt"]) or duration < ro["record_every"] * (1 - 1e-9):
        problems.append(
            f"rollout.calibration.duration: {duration} must be a multiple of dns.dt={dns['dt']} "
            f"of at least rollout.record_every={ro['record_every']} (the calibration run is "
            "scored at its records); or null for rollout.duration")
    return problems


def _cross_stage_problems(cfg: dict, dns, ds, ro, meas) -> list[str]:
    """Dataset window, rollout initial states, baselines and samplers against what the other
    stages provide."""
    problems = []
    if dns and ds and ds["duration"] is not None and ds["start"] + ds["duration"] > dns[
        "duration"
    ] * (1 + 1e-9):
        problems.append(
            f"dataset.duration: start {ds['start']} + duration {ds['duration']} runs past the"
            f" {dns['duration']} time units the DNS records (dns.duration); shorten it or use"
            " null (to the last record)"
        )
    if ds and ro and ro["initial_states"] > ds["test_trajectories"]:
        problems.append(
            f"rollout.initial_states: {ro['initial_states']} initial states but only"
            f" {ds['test_trajectories']} test trajectories (dataset.test_trajectories);"
            " lower one or raise the other"
        )
    co = cfg.get("coarse")
    if co and co["noise"] == "known" and (co["target"] not in ("G", "H")
                                          or co["g_split"] != "full"):
        problems.append(
            f"coarse.noise: known removes the DNS noise from G or H (g_split full); target "
            f"{co['target']}{', g_split paper' if co['g_split'] == 'paper' else ''} has no such"
            " split. Use coarse.noise: in_target")
    if dns and co and co["noise"] == "known" and dns["scheme"] != "euler_cn":
        problems.append(
            f"coarse.noise: known recovers each record's noise as H + dealiased u.grad w, exact "
            f"for dns.scheme euler_cn only, not {dns['scheme']}; use euler_cn or coarse.noise: "
            "in_target")
    if dns and ro and cfg.get("coarse") and "intrinsic" in ro.get("closures", ()):
        problem = intrinsic_problem(dns, cfg["coarse"])
        if problem:
            problems.append(problem)
    baseline = meas and ro and "measurements" in ro.get("closures", ())
    if baseline and measurements_baseline_problem(meas, ro):
        problems.append(measurements_baseline_problem(meas, ro))
    users = onestep_users(cfg)
    if users and cfg.get("distill") and not cfg["distill"]["enabled"]:
        problems.append(f"{users[0]}: the onestep sampler needs model/onestep.pt, but"
                        " distill.enabled is false; set it true or choose another sampler")
    tr = cfg.get("train")
    problems += _stopping_problems(tr) if tr else []
    if tr and tr["t_min"] >= tr["t_max"]:
        problems.append(f"train.t_min: {tr['t_min']} must be below train.t_max={tr['t_max']}")
    if tr and dns and tr["augment"] and not forcing_commutes(dns):
        f = dns["forcing"]
        problems.append(
            f"train.augment: the symmetries of the square map solutions to solutions only when "
            f"the forcing has them, and dns.forcing (kind {f['kind']}"
            f"{', symmetric: false' if f['kind'] == 'ring' else ''}) does not; use "
            "dns.forcing {kind: ring, symmetric: true} or kind none, or set train.augment: false")
    return problems


def _stopping_problems(tr: dict) -> list[str]:
    """train.plateau on a monitor metric needs the monitor, and a window that holds a check."""
    if tr["plateau"]["metric"] == "val_loss":
        return []
    every, window = tr["monitor"]["every"], tr["plateau"]["window"]
    if every <= 0:
        return [f"train.plateau.metric: {tr['plateau']['metric']} is measured by train.monitor, "
                "which is off (train.monitor.every 0); set every > 0 or metric: val_loss"]
    if 0 < window < every:
        return [f"train.plateau.window: {window} epochs hold no train.monitor check (every "
                f"{every} epochs); use a window of at least {every}"]
    return []


def forcing_commutes(dns: dict) -> bool:
    """Whether the DNS equation has the symmetries of the square (solver/symmetry.py): its
    forcing is none or the symmetric ring. The noise of dns.noise has an isotropic law on a
    square box of modes whatever its settings, so it commutes in law."""
    f = dns["forcing"]
    return f["kind"] == "none" or (f["kind"] == "ring" and bool(f["symmetric"]))


def reads_onestep(sampler: dict) -> bool:
    """Whether a sampler entry draws with the distilled one-step generator (model/onestep.pt)
    rather than the score model (model/score.pt): the one test of which file a job reads."""
    return isinstance(sampler, dict) and sampler.get("name") == "onestep"


def onestep_users(cfg: dict) -> list[str]:
    """The config fields that choose the distilled one-step sampler (model/onestep.pt): the
    stages behind them read that file, the others do not."""
    entries = [(f"sampling.samplers[{i}].name", e) for i, e in
               enumerate((cfg.get("sampling") or {}).get("samplers", []))]
    entries.append(("rollout.sampler.name", (cfg.get("rollout") or {}).get("sampler", {})))
    return [where for where, e in entries if reads_onestep(e)]


def intrinsic_problem(dns: dict, coarse: dict) -> str | None:
    """Why the `intrinsic` rollout closure (the physics' own spread) cannot run (None: it can)."""
    if coarse["target"] not in ("G", "H"):
        return (f"rollout.closures: 'intrinsic' is the spread of the physical noise in G and H; "
                f"coarse.target {coarse['target']} has none. Drop it from rollout.closures")
    if not dns["noise"]["sigma"] > 0:
        return ("rollout.closures: 'intrinsic' is the spread of the physical noise, and "
                "dns.noise.sigma is 0. Drop it from rollout.closures")
    return None


def measurements_baseline_problem(meas: dict, ro: dict) -> str | None:
    """Why the `measurements` rollout closure cannot run with these sections (None: it can)."""
    if meas["enabled"] and ro["measurements"]:
        return None
    return ("rollout.closures: the 'measurements' baseline is the encoded sparse measurements of "
            "the true term, but measurements.enabled or rollout.measurements is false; set both "
            "true or drop 'measurements' from rollout.closures")


def rollout_start(dns: dict, ro: dict) -> float:
    """Simulation time of the rollouts' initial state: rollout.start, or the first DNS record."""
    return float(ro["start"]) if ro.get("start") is not None else float(dns["spinup"])


def _start_problems(dns: dict, ro: dict) -> list[str]:
    start, first, last = rollout_start(dns, ro), dns["spinup"], dns["spinup"] + dns["duration"]
    window = f"the DNS records [{first:g}, {last:g}] every {dns['record_every']:g}"
    if not first - 1e-9 * max(1.0, last) <= start <= last * (1 + 1e-9):
        return [f"rollout.start: {start:g} is outside {window}; pick a record time in it (or"
                " lengthen dns.duration)"]
    if start - first > 1e-9 * max(1.0, last) and not _is_multiple(start - first,
                                                                   dns["record_every"]):
        return [f"rollout.start: {start:g} is not a record time of {window}; use dns.spinup + k *"
                " dns.record_every"]
    return []


def _is_multiple(value: float, unit: float) -> bool:
    k = value / unit
    return abs(k - round(k)) <= 1e-6 * max(1.0, k) and round(k) >= 1


def load(source: str | Path | dict | None = None, sections: list[str] | None = None) -> dict:
    """Load a config from a YAML/JSON path, an inline JSON string or a dict, and validate it.

    A config file must be complete (every section present) and is validated against the whole
    schema. An inline JSON string or a dict may hold only some sections (as Snakemake rules pass
    them); it is validated section by section. None: the default config (default_config_path,
    else the schema's defaults).
    """
    if source is None:
        source = default_config_path() or schema_defaults()
    if isinstance(source, dict):
        cfg = copy.deepcopy(source)
    elif isinstance(source, str) and source.lstrip().startswith("{"):
        try:
            cfg = json.loads(source)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--config: inline JSON does not parse ({exc})") from None
    else:
        cfg = read_yaml(source)
    if not isinstance(cfg, dict):
        raise ConfigError("the configuration must be a mapping of sections")
    schema = load_schema()
    from_file = not isinstance(source, dict) and not (
        isinstance(source, str) and source.lstrip().startswith("{")
    )
    if from_file or set(schema["required"]) <= set(cfg):
        validate(cfg, schema)
    else:
        validate_sections(cfg, schema)
    if sections:
        missing = [s for s in sections if s not in cfg]
        if missing:
            raise ConfigError(f"configuration lacks section(s) {', '.join(missing)}")
        cfg = {s: cfg[s] for s in sections}
    return cfg


def load_sections(source, sections: list[str], dns_facts: dict) -> dict:
    """config.load(source, sections), with the input's own dns facts when the source has no dns.

    A Snakemake rule hands a stage only its own sections, and config.load then checks only
    those, so the cross-field rules that involve dns (every grid divides dns.n, enough
    dns.trajectories for the val/test split) would not run at all. Adding a dns section built
    from the actual input (n, length, trajectories) makes them run, against the real data,
    before any work starts; tests/stages/test_dataset_stage.py relies on it. A source that has a dns
    section is validated as it is.
    """
    raw = None
    if isinstance(source, dict):
        raw = dict(source)
    elif isinstance(source, str) and source.lstrip().startswith("{"):
        try:
            raw = json.loads(source)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--config: not valid JSON: {exc}") from None
    elif source is not None and Path(source).is_file():
        raw = read_yaml(source)
    if isinstance(raw, dict) and "dns" not in raw:
        return load({**raw, "dns": {"shards": 1, **dns_facts}}, sections=sections)
    return load(source, sections=sections)


def read_yaml(path: str | Path):
    """The contents of a YAML (or JSON) config file; a syntax error names the file and line."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh) or {}
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(f"{path}{_line(exc.problem_mark)}: not valid YAML: {exc.problem}"
                          + (f" ({exc.context}{_line(exc.context_mark)})" if exc.context else "")
                          + "; fix the syntax there (indentation, brackets, quotes)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file; give a YAML config") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None


def _line(mark) -> str:
    return f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def split_speed(cfg: dict) -> tuple[dict, dict]:
    """({section: settings} without the SPEED_ONLY ones, {section: the SPEED_ONLY ones})."""
    science, speed = {}, {}
    for name, value in cfg.items():
        keys = SPEED_ONLY.get(name, ())
        if isinstance(value, dict) and keys:
            science[name] = {k: v for k, v in value.items() if k not in keys}
            speed[name] = {k: v for k, v in value.items() if k in keys}
        else:
            science[name] = value
    return science, speed


def with_speed(source: str, speed: str) -> str:
    """Inline JSON config `source` with the speed-only settings of `speed` (inline JSON) merged
    into the sections it has: what a rule's --config and --speed together stand for."""
    try:
        cfg, extra = json.loads(source), json.loads(speed)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--config/--speed: inline JSON does not parse ({exc}); --speed goes"
                          " with an inline JSON --config, as the pipeline passes them") from None
    if not isinstance(cfg, dict) or not isinstance(extra, dict):
        raise ConfigError("--config/--speed: each must be a JSON mapping of sections")
    for name, values in extra.items():
        if not isinstance(values, dict):
            raise ConfigError(f"--speed: {name} must be a mapping of settings")
        wrong = sorted(set(values) - set(SPEED_ONLY.get(name, ())))
        if wrong:
            raise ConfigError(f"--speed: {name}.{wrong[0]} is not a speed-only setting (those"
                              f" are {_speed_names()}); put it in --config")
        if isinstance(cfg.get(name), dict):
            cfg[name] = {**cfg[name], **values}
    return json.dumps(cfg)


def _speed_names() -> str:
    return ", ".join(f"{s}.{k}" for s, keys in SPEED_ONLY.items() for k in keys)


def section_hash(cfg: dict) -> str:
    """Short stable hash of (part of) a config, stored in every output for provenance."""
    blob = json.dumps(cfg, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
