"""The config schema and loader: defaults, and clear errors that name the field."""

import copy
import json

import pytest
import yaml

from diffclosure import config as C
from diffclosure.config import merge


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


def test_the_schema_alone_makes_a_valid_config():
    """What an installed package starts from outside any workflow folder."""
    cfg = C.load(C.schema_defaults())
    assert cfg["run"] == "default" and cfg["dns"]["n"] == 128


def test_default_config_is_the_workflow_folders_then_the_checkouts(repo_root, tmp_path):
    assert C.default_config_path(tmp_path) == repo_root / "config.yaml"
    (tmp_path / "config.yaml").write_text("run: here\n")
    assert C.default_config_path(tmp_path) == repo_root / "config.yaml"  # no Snakefile beside it
    (tmp_path / "Snakefile").write_text("")
    assert C.default_config_path(tmp_path) == tmp_path / "config.yaml"
    assert C.read_default_config(tmp_path) == ({"run": "here"}, str(tmp_path / "config.yaml"))


def test_a_run_config_is_the_default_with_each_file_merged_in_order(tmp_path):
    """As Snakemake merges --configfile: nested keys replaced one by one, lists whole, later
    files over earlier ones; a file that is not a mapping is named."""
    (tmp_path / "Snakefile").write_text("")
    (tmp_path / "config.yaml").write_text("run: base\ndns: {n: 64, dt: 0.01}\nlist: [1, 2]\n")
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("dns: {n: 32}\nlist: [3]\n")
    b.write_text("dns: {n: 16}\nrun: b\n")
    cfg, on = C.read_run_config([a, b], cwd=tmp_path)
    assert cfg == {"run": "b", "dns": {"n": 16, "dt": 0.01}, "list": [3]}
    assert on == f"{a}, {b} on top of {tmp_path / 'config.yaml'}"
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just a list\n")
    with pytest.raises(C.ConfigError, match="bad.yaml: must be a mapping of sections"):
        C.read_run_config([bad], cwd=tmp_path)


def test_check_config_names_the_config_it_starts_from(repo_root, monkeypatch, capsys):
    from diffclosure import cli

    monkeypatch.chdir(repo_root)
    tiny = repo_root / "tests" / "fixtures" / "tiny.yaml"
    assert cli.main(["check-config", str(tiny)]) == 0
    assert f"valid: {tiny} on top of {repo_root / 'config.yaml'}" in capsys.readouterr().out
    monkeypatch.setattr(C, "CHECKOUT", None)
    monkeypatch.chdir(tiny.parent)
    assert cli.main(["check-config", str(tiny)]) == 0
    assert "on top of the schema's defaults (outputs under results/tiny/)" in (
        capsys.readouterr().out)


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
    for name, node in schema["$defs"].items():  # shared definitions, used through $ref
        walk(node, f"$defs.{name}")
    assert not undocumented, f"schema fields without description or default: {undocumented}"


def test_conda_envs_parse_and_list_the_package(repo_root):
    for name in ("cpu.yaml", "cuda.yaml"):
        env = yaml.safe_load((repo_root / "envs" / name).read_text())
        deps = env["dependencies"]
        assert any(isinstance(d, str) and d.startswith("pytorch") for d in deps)
        pip = next(d["pip"] for d in deps if isinstance(d, dict))
        assert "-e .." in pip


@pytest.mark.parametrize("preset", ["paper-G", "paper-H", "les-sgs"])
def test_presets_validate_on_top_of_the_default(default_cfg, repo_root, preset):
    override = yaml.safe_load((repo_root / "workflow" / "presets" / f"{preset}.yaml").read_text())
    cfg = C.load(merge(copy.deepcopy(default_cfg), override))
    assert cfg["run"] == preset
    assert cfg["dns"]["n"] == 256 and cfg["dns"]["trajectories"] == 100


def test_partial_sections_do_not_take_other_sections_defaults():
    # a 256^2 coarse setting alone must not be checked against the default dns.n = 128
    cfg = C.load(json.dumps({"coarse": {"n": 64, "test_resolutions": [64, 128, 256]}}))
    assert set(cfg) == {"coarse"}
    with pytest.raises(C.ConfigError, match="nonsense: unknown section"):
        C.load(json.dumps({"nonsense": {}}))


# ----------------------------------------------------------------------------- config gaps
def _snakemake_dry_run(snakefile, workdir, *args):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "snakemake", "-n", "-p", "--snakefile", str(snakefile),
           "--directory", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("field", "value"), [("nu", float("nan")), ("dt", float("nan")),
                                              ("length", float("inf"))])
def test_non_finite_numbers_are_refused_naming_the_field(default_cfg, tmp_path, field, value):
    # NaN passes every bound (each comparison with it is false) and inf passes lower ones.
    cfg = copy.deepcopy(default_cfg)
    cfg["dns"][field] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))  # written as .nan / .inf, as a user would
    for source in (path, json.dumps({"dns": cfg["dns"]})):
        with pytest.raises(C.ConfigError, match=rf"dns\.{field}: must be a finite number"):
            C.load(source)


def test_numbers_written_like_2e_3_are_read_as_numbers(default_cfg, tmp_path):
    # YAML 1.1 (PyYAML) reads 2e-3 and 1.0e3 as strings: they lack a dot or an exponent sign.
    text = (tmp_path / "c.yaml")
    cfg = copy.deepcopy(default_cfg)
    cfg["dns"].update(dt="PLACEHOLDER_DT", duration="PLACEHOLDER_DURATION")
    text.write_text(yaml.safe_dump(cfg).replace("PLACEHOLDER_DT", "2e-3")
                    .replace("PLACEHOLDER_DURATION", "0.5E1"))
    assert yaml.safe_load(text.read_text())["dns"]["dt"] == "2e-3"
    loaded = C.load(text)
    assert loaded["dns"]["dt"] == 0.002 and loaded["dns"]["duration"] == 5.0
    # A string that only looks like a number elsewhere stays an error naming the field.
    cfg["dns"].update(dt="fast", duration=5.0)
    with pytest.raises(C.ConfigError, match=r"dns\.dt: 'fast' is not of type 'number'"):
        C.load(cfg)
    # An integer field written with an exponent is named with the fix.
    cfg["dns"].update(dt=1e-3, trajectories="1e2")
    with pytest.raises(C.ConfigError, match=r"dns\.trajectories: .* whole number"):
        C.load(cfg)


@pytest.mark.slow
def test_snakefile_reads_2e_3_as_a_number(repo_root, tmp_path):
    """Snakemake loads --configfile itself (YAML 1.1 too); the jobs get the float."""
    text = (repo_root / "tests" / "fixtures" / "tiny.yaml").read_text()
    assert "dt: 2.0e-3" in text
    path = tmp_path / "tiny.yaml"
    path.write_text(text.replace("dt: 2.0e-3", "dt: 2e-3"))
    res = _snakemake_dry_run(repo_root / "Snakefile", tmp_path, "--configfile", str(path))
    assert res.returncode == 0, res.stderr
    dns_cmd = next(line for line in res.stdout.splitlines() if "diffclosure dns" in line)
    assert '"dt": 0.002' in dns_cmd


BROKEN_YAML = "run: x\ndns:\n  n: 64\n  dt: [1, 2\n  nu: 1e-3\n"  # the list never closes


def test_yaml_syntax_error_names_file_and_line_from_every_stage(tmp_path, caplog):
    from diffclosure import cli

    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN_YAML)
    rc = cli.main(["dns", "--config", str(path), "--shard", "0", "--output",
                   str(tmp_path / "x.h5")])
    assert rc == 2 and not (tmp_path / "x.h5").exists()
    # PyYAML finds the problem where the unclosed list meets the next key: line 5.
    assert f"{path}, line 5" in caplog.text and "not valid YAML" in caplog.text
    caplog.clear()
    assert cli.main(["check-config", str(path)]) == 2
    assert f"{path}, line 5" in caplog.text


@pytest.mark.slow
def test_yaml_syntax_error_in_the_default_config_names_file_and_line(repo_root, tmp_path):
    import shutil

    copy_root = tmp_path / "repo"
    shutil.copytree(repo_root / "workflow", copy_root / "workflow",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(repo_root / "Snakefile", copy_root / "Snakefile")
    (copy_root / "config.yaml").write_text(BROKEN_YAML)
    res = _snakemake_dry_run(copy_root / "Snakefile", tmp_path)
    assert res.returncode != 0
    assert f"{copy_root / 'config.yaml'}, line 5" in res.stdout + res.stderr


def test_speed_settings_travel_apart_and_rebuild_the_config(repo_root):
    """What a rule passes (--config without the speed-only settings, --speed with them) is
    the config the stage would read from the file."""
    tiny = yaml.safe_load((repo_root / "tests" / "fixtures" / "tiny.yaml").read_text())
    full = C.load(copy.deepcopy(tiny))
    science, speed = C.split_speed({n: full[n] for n in ("dns", "train")})
    assert "batch" not in science["dns"] and "threads" not in science["train"]
    assert speed["dns"]["batch"] == tiny["dns"]["batch"]
    rebuilt = C.load(C.with_speed(json.dumps(science), json.dumps(speed)))
    assert rebuilt == {n: full[n] for n in ("dns", "train")}
    with pytest.raises(C.ConfigError, match=r"--speed: dns\.n is not a speed-only setting"):
        C.with_speed(json.dumps(science), json.dumps({"dns": {"n": 64}}))


@pytest.mark.parametrize("case", ["output is a folder", "parent is a file", "outdir is a file"])
def test_output_paths_are_checked_before_any_work(tmp_path, caplog, monkeypatch, case):
    from diffclosure import cli
    from diffclosure.stages import dataset, dns

    def must_not_run(*args, **kwargs):
        raise AssertionError("the stage ran")

    monkeypatch.setattr(dns, "main", must_not_run)
    monkeypatch.setattr(dataset, "main", must_not_run)
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("")
    args = {"output is a folder": ["dns", "--shard", "0", "--output", str(tmp_path / "folder")],
            "parent is a file": ["dns", "--shard", "0", "--output",
                                 str(tmp_path / "file" / "sub" / "x.h5")],
            "outdir is a file": ["dataset", "--inputs", "x.h5", "--outdir",
                                 str(tmp_path / "file")]}[case]
    assert cli.main(args) == 1
    assert ("is a folder" if case == "output is a folder" else "is a file") in caplog.text


def _with_samplers(cfg: dict, rollout: dict, entries: list) -> dict:
    cfg = copy.deepcopy(cfg)
    cfg["rollout"]["sampler"] = rollout
    cfg["sampling"]["samplers"] = entries
    return cfg


SAMPLER_DEFAULTS = {"schedule": "karras", "t_min": 1e-3, "rho": 7.0, "snr": 0.01,
                    "denoise": True, "start": "auto"}


def test_one_sampler_definition_with_the_defaults_of_each_site(default_cfg):
    """sampling.samplers and rollout.sampler refer to $defs.sampler; each adds its own defaults
    (the rollout: the paper's 10 steps from t = 0.1) and the definition fills the rest."""
    cfg = C.load(_with_samplers(default_cfg, {"name": "pc"}, [{"name": "em", "steps": 3}]))
    assert cfg["rollout"]["sampler"] == {"name": "pc", "steps": 10, "t_max": 0.1,
                                         **SAMPLER_DEFAULTS}
    assert cfg["sampling"]["samplers"] == [{"name": "em", "steps": 3, "t_max": 1.0,
                                            **SAMPLER_DEFAULTS}]
    assert C.load(_with_samplers(default_cfg, {}, []))["rollout"]["sampler"]["name"] == "em"
    # A stage validates only its sections: the definition travels with them.
    alone = C.load(json.dumps({"rollout": {**default_cfg["rollout"], "sampler": {"steps": 4}}}))
    assert alone["rollout"]["sampler"]["snr"] == 0.01 and alone["rollout"]["sampler"]["steps"] == 4


def test_snakemake_reads_the_shared_sampler_definition(default_cfg):
    """The Snakefile validates with Snakemake too: it must resolve $ref and fill as we do."""
    from snakemake.utils import validate as snakemake_validate

    raw = _with_samplers(default_cfg, {"name": "pc"}, [{"name": "em", "steps": 3}])
    theirs = copy.deepcopy(raw)
    snakemake_validate(theirs, str(C.SCHEMA_PATH))
    ours = C.load(raw)
    assert theirs["rollout"]["sampler"] == ours["rollout"]["sampler"]
    assert theirs["sampling"]["samplers"] == ours["sampling"]["samplers"]


@pytest.mark.parametrize(
    ("rollout", "entries", "field", "words"),
    [
        ({"name": "pc", "corrector": 1}, [], "rollout.sampler.corrector", "unknown key"),
        ({}, [{"name": "em", "steps": 3, "snr": -1}], "sampling.samplers.0.snr", "minimum"),
        ({}, [{"name": "ddim", "steps": 3}], "sampling.samplers.0.name", "is not one of"),
        ({}, [{"name": "em"}], "sampling.samplers.0", "'steps' is a required property"),
        ({"name": "em", "steps": 0}, [], "rollout.sampler.steps", "minimum"),
    ],
)
def test_bad_sampler_entries_name_the_field(default_cfg, rollout, entries, field, words):
    with pytest.raises(C.ConfigError) as err:
        C.load(_with_samplers(default_cfg, rollout, entries))
    assert f"{field}: " in str(err.value) and words in str(err.value)


def test_make_sampler_takes_the_schemas_defaults(default_cfg):
    """A sampler entry built as the code writes it (no defaults) and as the config holds it
    (defaults filled by validation) are the same sampler."""
    from diffclosure.sampling.samplers import make_sampler

    raw = {"name": "pc", "steps": 3}
    filled = C.load(_with_samplers(default_cfg, {}, [raw]))["sampling"]["samplers"][0]
    assert make_sampler(raw) == make_sampler(filled)
    assert make_sampler(raw).snr == 0.01 and make_sampler(raw).t_max == 1.0
    # `steps: 4.0` is a valid integer to the schema; the sampler gets the int its schedule needs.
    from diffclosure.model.sde import VESDE

    four = make_sampler({"name": "em", "steps": 4.0})
    assert four.steps == 4 and type(four.steps) is int and len(four.times(VESDE(26.0))) == 5


def test_a_monitor_stopping_metric_needs_the_monitor_and_a_window_that_holds_a_check():
    """train.plateau.metric apriori_dfro_mean is measured by train.monitor every `every`
    epochs: off, or a window shorter than that, would leave the rule nothing to judge."""
    ok = {"plateau": {"metric": "apriori_dfro_mean", "window": 20}, "monitor": {"every": 10}}
    assert C.load({"train": ok}, sections=["train"])
    for bad, field in (({"plateau": {"metric": "apriori_dfro_mean", "window": 5}},
                        "train.plateau.window"),
                       ({"plateau": {"metric": "apriori_dfro_mean", "window": 20},
                         "monitor": {"every": 0}}, "train.plateau.metric")):
        with pytest.raises(C.ConfigError, match=field):
            C.load({"train": bad}, sections=["train"])


def test_a_calibration_run_shorter_than_a_record_is_refused_naming_its_field():
    for duration in (0.05, 0.0015):
        with pytest.raises(C.ConfigError, match="rollout.calibration.duration"):
            C.load({"dns": {}, "rollout": {"calibration": {"duration": duration}}},
                   sections=["dns", "rollout"])
    assert C.load({"dns": {}, "rollout": {"calibration": {"duration": 0.2}}},
                  sections=["dns", "rollout"])
