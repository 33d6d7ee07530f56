"""The presets that claim to be the paper's carry its physics, window, sampler and precision."""


import pytest
import yaml

from diffclosure import config as C
from diffclosure.sampling.paper import paper_sampler


def _preset(repo_root, name):
    """The preset as Snakemake sees it: merged over config.yaml, validated."""
    preset = repo_root / "workflow" / "presets" / f"{name}.yaml"
    return C.load(C.read_run_config([preset], cwd=repo_root)[0])


@pytest.mark.parametrize("name,target", [("paper-H", "H"), ("paper-G", "G")])
def test_paper_presets_are_the_papers_experiment(repo_root, name, target):
    cfg = _preset(repo_root, name)
    assert cfg["coarse"]["target"] == target
    assert cfg["dns"]["noise"]["sigma"] == pytest.approx(5e-5)
    assert cfg["dns"]["spinup"] == 20.0 and cfg["dns"]["duration"] == 20.0
    assert cfg["dataset"]["duration"] is None and cfg["dataset"]["start"] == 0.0  # 20-40 s
    assert C.rollout_start(cfg["dns"], cfg["rollout"]) == 30.0
    assert cfg["rollout"]["duration"] == 20.0
    assert cfg["train"]["bf16"] is False
    assert cfg["rollout"]["tau"] == 0  # independent noise at every sampling, as the paper
    # The research code's sampler, step for step (tests/sampling/test_paper_sampler.py).
    for sampler in (cfg["rollout"]["sampler"], cfg["train"]["monitor"]["sampler"]):
        assert {k: sampler[k] for k in paper_sampler()} == paper_sampler()


def test_default_rollouts_start_after_the_training_window(repo_root):
    cfg = C.load(yaml.safe_load((repo_root / "config.yaml").read_text()))
    dns, ds = cfg["dns"], cfg["dataset"]
    train_end = dns["spinup"] + ds["start"] + ds["duration"]
    assert C.rollout_start(dns, cfg["rollout"]) > train_end


@pytest.mark.parametrize("name", ["les-turbulence", "les-turbulence-gpu"])
def test_les_presets_are_an_les_without_measurements(repo_root, name):
    from diffclosure import config as C

    cfg = _preset(repo_root, name)
    dns, coarse, ro = cfg["dns"], cfg["coarse"], cfg["rollout"]
    assert coarse["target"] == "sgs" and dns["forcing"]["kind"] == "ring"
    assert not cfg["measurements"]["enabled"] and "measurements" not in ro["closures"]
    # The sgs reference is the filtered DNS: the rollout starts inside the recorded window and
    # has a reference for at least 5 time units (past it, statistics only: rollout-metrics).
    start = C.rollout_start(dns, ro)
    end = dns["spinup"] + dns["duration"]
    assert dns["spinup"] <= start and min(start + ro["duration"], end) - start >= 5.0
    # The forcing scale is resolved well inside the LES grid's band, the subgrid part is not.
    assert dns["forcing"]["wavenumber"] <= coarse["n"] // 8


@pytest.mark.parametrize("name", [None, "paper-H", "paper-G", "les-sgs", "les-turbulence",
                                  "les-turbulence-gpu"])
def test_every_config_trains_to_a_plateau_within_an_epoch_bound(repo_root, name):
    """An epoch bound above the plateau rule's window, a margin of a few percent, and a window
    that spans at least a third of a learning-rate step, so that a short stall between two
    decays of the learning rate is not taken for the plateau (issue 22)."""
    cfg = (C.load(C.read_run_config([], cwd=repo_root)[0]) if name is None
           else _preset(repo_root, name))
    tr = cfg["train"]
    window, margin = tr["plateau"]["window"], tr["plateau"]["margin"]
    assert 0 < window < tr["epochs"] and 0 < margin <= 0.05
    assert 3 * window >= tr["lr_step"]


@pytest.mark.parametrize("name", ["paper-H", "paper-G", "les-sgs", "les-turbulence",
                                  "les-turbulence-gpu"])
def test_presets_stop_on_the_validation_loss_whatever_config_yaml_stops_on(repo_root, name):
    """config.yaml stops on the monitor's a-priori D_Fro (sized for its own 10-epoch checks);
    a preset merged over it keeps the validation loss its windows were sized for and its
    README numbers were trained with, unless it says otherwise."""
    assert C.load(C.read_run_config([], cwd=repo_root)[0])["train"]["plateau"]["metric"] == (
        "apriori_dfro_mean")
    assert _preset(repo_root, name)["train"]["plateau"]["metric"] == "val_loss"
