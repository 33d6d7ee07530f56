"""The config schema and loader: defaults, and clear errors that name the field."""

import copy
import json

import pytest
import yaml

from diffclosure import config as C


@pytest.fixture()
def default_cfg(repo_root):
    with open(repo_root / "config.yaml") as fh:
        return yaml.safe_load(fh)


def test_default_config_validates_and_fills_defaults(default_cfg):
    cfg = C.load(default_cfg)
    # a field absent from config.yaml gets the schema's default
    assert cfg["dns"]["drag"] == 0.0
    assert cfg["train"]["ema"] == pytest.approx(0.999)
    assert cfg["rollout"]["hold"] == "reuse_noise"


def test_empty_sections_take_every_default():
    cfg = C.load({s: {} for s in C.load_schema()["required"] if s != "run"} | {"run": "x"})
    assert cfg["dns"]["n"] == 128 and cfg["coarse"]["target"] == "H"


@pytest.mark.parametrize(
    ("edit", "field", "words"),
    [
        (lambda c: c["dns"].update(nu=-1e-3), "dns.nu", "minimum"),
        (lambda c: c["dns"].update(n=65), "dns.n", "even"),
        (lambda c: c["dns"].update(n="128"), "dns.n", "integer"),
        (lambda c: c["dns"].update(viscosity=1e-3), "dns.viscosity", "unknown key"),
        (lambda c: c.pop("train"), "train", "required"),
        (lambda c: c["coarse"].update(target="Q"), "coarse.target", "is not one of"),
        (lambda c: c["coarse"].update(n=48), "coarse.n", "divide dns.n"),
        (lambda c: c["measurements"].update(lattice=5), "measurements.lattice", "divide"),
        (lambda c: c["dns"].update(record_every=0.00015), "dns.record_every", "multiple of dns.dt"),
        (lambda c: c["dns"].update(trajectories=3), "dns.trajectories", "no training trajectory"),
        (lambda c: (c["coarse"].update(target="sgs"), c["rollout"].update(record_every=0.05)),
         "rollout.record_every", "multiple of dns.record_every"),
        (lambda c: c["rollout"].update(initial_states=5), "rollout.initial_states", "test"),
    ],
)
def test_bad_config_names_the_field(default_cfg, edit, field, words, tmp_path):
    cfg = copy.deepcopy(default_cfg)
    edit(cfg)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(C.ConfigError) as err:
        C.load(path)
    msg = str(err.value)
    assert field in msg and words in msg


def test_sections_validate_alone_and_hash_is_stable(default_cfg):
    full = C.load(default_cfg)
    part = C.load(json.dumps({"dns": default_cfg["dns"]}))
    assert part["dns"] == full["dns"]
    assert C.section_hash(part["dns"]) == C.section_hash(full["dns"])
    changed = copy.deepcopy(full["dns"])
    changed["seed"] = 1
    assert C.section_hash(changed) != C.section_hash(full["dns"])


def test_every_schema_field_is_documented_or_self_explaining():
    schema = C.load_schema()
    undocumented = []

    def walk(node, path):
        for name, sub in node.get("properties", {}).items():
            p = f"{path}.{name}" if path else name
            if sub.get("type") == "object":
                if "description" not in sub:
                    undocumented.append(p)
                walk(sub, p)
            elif "description" not in sub and "default" not in sub:
                undocumented.append(p)

    walk(schema, "")
    assert not undocumented, f"schema fields without description or default: {undocumented}"


def test_conda_envs_parse_and_list_the_package(repo_root):
    for name in ("cpu.yaml", "cuda.yaml"):
        env = yaml.safe_load((repo_root / "envs" / name).read_text())
        deps = env["dependencies"]
        assert any(isinstance(d, str) and d.startswith("pytorch") for d in deps)
        pip = next(d["pip"] for d in deps if isinstance(d, dict))
        assert "-e .." in pip


def _merge(base, override):
    """Snakemake's merge of --configfile over the Snakefile's configfile: nested, lists replaced."""
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


@pytest.mark.parametrize("preset", ["paper-G", "paper-H", "les-sgs"])
def test_presets_validate_on_top_of_the_default(default_cfg, repo_root, preset):
    override = yaml.safe_load((repo_root / "workflow" / "presets" / f"{preset}.yaml").read_text())
    cfg = C.load(_merge(copy.deepcopy(default_cfg), override))
    assert cfg["run"] == preset
    assert cfg["dns"]["n"] == 256 and cfg["dns"]["trajectories"] == 100


def test_partial_sections_do_not_take_other_sections_defaults():
    # a 256^2 coarse setting alone must not be checked against the default dns.n = 128
    cfg = C.load(json.dumps({"coarse": {"n": 64, "test_resolutions": [64, 128, 256]}}))
    assert set(cfg) == {"coarse"}
    with pytest.raises(C.ConfigError, match="nonsense: unknown section"):
        C.load(json.dumps({"nonsense": {}}))
