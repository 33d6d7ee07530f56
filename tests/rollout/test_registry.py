"""The closure registry is the one list of closures: the schema agrees with it, and a new
closure is one builder function plus one registry entry, with nothing else to touch."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from diffclosure import config as cfgmod
from diffclosure.plots.rollout import colour
from diffclosure.rollout import registry
from diffclosure.rollout.coupled import run_rollout
from diffclosure.stages.rollout import SECTIONS


def test_schema_enum_is_the_registry():
    rollout = cfgmod.load_schema()["properties"]["rollout"]["properties"]
    assert rollout["closures"]["items"]["enum"] == list(registry.names())
    # A closure may read only settings that exist; the rules pass exactly those.
    assert registry.selective_settings() <= set(rollout)


def test_every_closure_has_its_own_colour():
    colours = [colour(name) for name in registry.names()]
    assert len(set(colours)) == len(colours) and "tab:gray" not in colours
    assert colour("reference") == "black" and colour("not a closure") == "tab:gray"


def test_learned_closure_is_the_one_that_needs_the_model():
    spec = registry.lookup(registry.learned())
    assert spec.needs_model and spec.stochastic
    assert registry.members(registry.learned(), 3) == 3 and registry.members("none", 3) == 1
    # What a closure reads says what it is: the baseline fed the same measurements is
    # measured, but neither stochastic nor model-driven; the classical ones are none of these.
    baseline = registry.lookup("measurements")
    assert baseline.measured and not baseline.stochastic and not baseline.needs_model
    plain = [registry.lookup(n) for n in ("none", "true", "smagorinsky")]
    assert not any(c.measured or c.stochastic or c.needs_model for c in plain)


def test_a_new_closure_is_one_function_and_one_registry_line(tmp_path, monkeypatch):
    from support.rollout_inputs import make_inputs, sections

    steps_seen = []

    def damping(ctx):
        """A toy classical closure: linear damping of the coarse vorticity."""
        rate = 20.0

        def tendency(w, step, t):
            steps_seen.append(step)
            return -rate * w

        return SimpleNamespace(tendency=tendency)

    monkeypatch.setitem(registry.REGISTRY, "damping", registry.Closure("damping", damping))

    paths, data = make_inputs(tmp_path)
    cfg = cfgmod.load(sections(), sections=SECTIONS)
    out = run_rollout(cfg, "damping", paths, data, show_progress=False)
    none = run_rollout(cfg, "none", paths, data, show_progress=False)
    steps = out.attrs["steps"]
    assert steps_seen == list(range(steps))
    assert out.attrs["closure"] == "damping" and out.vorticity.shape[1] == 1
    np.testing.assert_array_equal(out.reference, none.reference)
    np.testing.assert_array_equal(out.vorticity[:, :, 0], none.vorticity[:, :, 0])
    # Damped: less enstrophy at the end than without a closure.
    assert (out.vorticity[:, :, -1] ** 2).sum() < (none.vorticity[:, :, -1] ** 2).sum()


def test_every_rollout_job_of_every_config_validates_on_its_own(repo_root):
    """A rollout job receives only the settings its closure reads (workflow/rules/common.smk,
    rollout_sections): what it receives must validate alone. A rule across settings that one
    closure reads and others do not (tau_per_shell needs tau auto) broke the LES preset's
    classical jobs before tau_per_shell was among the learned closure's reads."""
    import pytest

    selective = registry.selective_settings()
    presets = [None, *sorted((repo_root / "workflow" / "presets").glob("*.yaml"))]
    for preset in presets:
        full = cfgmod.load(cfgmod.read_run_config([preset] if preset else [], cwd=repo_root)[0])
        for closure in full["rollout"]["closures"]:
            reads = registry.lookup(closure).reads
            skip = {"closures", *(k for k in selective if k not in reads)}
            job = {n: full[n] for n in ("device", "dns", "coarse", "measurements", "sde")}
            job["rollout"] = {k: v for k, v in full["rollout"].items() if k not in skip}
            try:
                cfgmod.validate_sections(job)
            except cfgmod.ConfigError as err:
                pytest.fail(f"{preset and preset.name}: the {closure} job's sections: {err}")
