"""Loading and validating the pipeline configuration.

One schema (workflow/schemas/config.schema.yaml) is the single source of truth: the Snakefile
and every `python -m diffclosure <stage>` validate against it and fill its defaults, so a
stage run alone sees exactly the settings the pipeline would give it.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config.yaml"


class ConfigError(ValueError):
    """A configuration problem, with the offending field named in the message."""


def load_schema() -> dict:
    with open(SCHEMA_PATH) as fh:
        return yaml.safe_load(fh)


def _with_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def _field(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _explain(err: jsonschema.ValidationError) -> str:
    field = _field(err.absolute_path)
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        known = ", ".join(sorted(err.schema.get("properties", {})))
        where = _field(list(err.absolute_path) + extra[:1])
        return f"{where}: unknown key; known keys here: {known}"
    if err.validator == "required":
        return f"{field}: {err.message}; add the section (an empty mapping {{}} takes the defaults)"
    if err.validator == "multipleOf" and err.validator_value == 2:
        return f"{field}: must be even, got {err.instance}"
    return f"{field}: {err.message}"


def validate(config: dict, schema: dict | None = None) -> dict:
    """Validate `config` (in place, defaults filled) and check cross-field rules."""
    schema = schema or load_schema()
    errors = sorted(
        _Validator(schema).iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path]
    )
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(_explain(e) for e in errors))
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
    }
    errors = sorted(
        _Validator(sub).iter_errors(sections), key=lambda e: [str(p) for p in e.absolute_path]
    )
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(_explain(e) for e in errors))
    check_consistency(sections)
    return sections


def check_consistency(cfg: dict) -> None:
    """Rules that span fields; each message names the field and the fix."""
    problems = []
    dns = cfg.get("dns")
    if dns:
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
    coarse = cfg.get("coarse")
    if dns and coarse:
        for name, m in [("coarse.n", coarse["n"])] + [
            (f"coarse.test_resolutions[{i}]", r) for i, r in enumerate(coarse["test_resolutions"])
        ]:
            if m > dns["n"] or dns["n"] % m:
                problems.append(f"{name}: {m} must divide dns.n={dns['n']}")
    meas = cfg.get("measurements")
    if coarse and meas and meas["enabled"]:
        for m in [coarse["n"], *coarse["test_resolutions"]]:
            if m % meas["lattice"]:
                problems.append(
                    f"measurements.lattice: a {meas['lattice']}x{meas['lattice']} lattice does not"
                    f" divide the {m}^2 grid; pick a lattice that divides every resolution"
                )
                break
    ds = cfg.get("dataset")
    if dns and ds:
        needed = ds["val_trajectories"] + ds["test_trajectories"] + 1
        if dns["trajectories"] < needed:
            problems.append(
                f"dns.trajectories: {dns['trajectories']} leaves no training trajectory after"
                f" {ds['val_trajectories']} validation and {ds['test_trajectories']} test ones;"
                f" use at least {needed}"
            )
    ro = cfg.get("rollout")
    if dns and ro:
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
    if ds and ro and ro["initial_states"] > ds["test_trajectories"]:
        problems.append(
            f"rollout.initial_states: {ro['initial_states']} initial states but only"
            f" {ds['test_trajectories']} test trajectories (dataset.test_trajectories);"
            " lower one or raise the other"
        )
    tr = cfg.get("train")
    if tr and tr["t_min"] >= tr["t_max"]:
        problems.append(f"train.t_min: {tr['t_min']} must be below train.t_max={tr['t_max']}")
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def _is_multiple(value: float, unit: float) -> bool:
    k = value / unit
    return abs(k - round(k)) <= 1e-6 * max(1.0, k) and round(k) >= 1


def load(source: str | Path | dict | None = None, sections: list[str] | None = None) -> dict:
    """Load a config from a YAML/JSON path, an inline JSON string or a dict, and validate it.

    A config file must be complete (every section present) and is validated against the whole
    schema. An inline JSON string or a dict may hold only some sections (as Snakemake rules pass
    them); it is validated section by section.
    """
    if source is None:
        source = DEFAULT_CONFIG
    if isinstance(source, dict):
        cfg = copy.deepcopy(source)
    elif isinstance(source, str) and source.lstrip().startswith("{"):
        try:
            cfg = json.loads(source)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--config: inline JSON does not parse ({exc})") from None
    else:
        path = Path(source)
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        with open(path) as fh:
            cfg = yaml.safe_load(fh) or {}
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


def section_hash(cfg: dict) -> str:
    """Short stable hash of (part of) a config, stored in every output for provenance."""
    blob = json.dumps(cfg, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
