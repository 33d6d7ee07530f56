"""diffclosure.devices.resolve_device: the rules of the `device` field, and the solvers' one device
policy (solver/factory.py) through the DNS stage's and the rollout's call paths, with CUDA faked
present or absent (torch.cuda.is_available / device_count patched), so it runs on any machine."""

import pytest
import torch

from diffclosure.config import ConfigError
from diffclosure.devices import resolve_device


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_cpu_is_cpu_with_or_without_cuda(monkeypatch):
    for present in (False, True):
        monkeypatch.setattr(torch.cuda, "is_available", lambda p=present: p)
        assert resolve_device("cpu") == torch.device("cpu")


def test_auto_without_cuda_is_cpu(no_cuda):
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("auto", local_rank=1) == torch.device("cpu")


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_asked_but_absent_names_the_field(no_cuda, name):
    with pytest.raises(ConfigError, match=rf"^device: '{name}' requested but torch sees no CUDA"):
        resolve_device(name)


def test_auto_and_cuda_with_gpus_take_this_ranks_gpu(two_gpus):
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    # under torchrun each rank passes its LOCAL_RANK: ranks do not pile onto GPU 0
    assert resolve_device("auto", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)


def test_explicit_gpu_is_kept_and_checked_against_the_count(two_gpus):
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cuda:1", local_rank=0) == torch.device("cuda", 1)  # explicit wins
    with pytest.raises(ConfigError, match=r"device: 'cuda:2' .* sees 2 CUDA device\(s\)"):
        resolve_device("cuda:2")
    with pytest.raises(ConfigError, match=r"device: 'cuda:5' .* sees 2 CUDA"):
        resolve_device("cuda", local_rank=5)


def test_not_a_device_names_the_field():
    with pytest.raises(ConfigError, match="device: 'gpu' is not a torch device"):
        resolve_device("gpu")


# ----------------------------------------------------------------------------- solvers
def _dns(backend="torch"):
    from diffclosure import config as cfgmod

    return cfgmod.load({"dns": {"n": 16, "backend": backend, "threads": 1}},
                       sections=["dns"])["dns"]


def _stage_solvers(dns, **device):
    """A solver from each stage's call path: the DNS stage's, the rollout's full and known."""
    from diffclosure.rollout import reference as ref
    from diffclosure.stages import dns as dns_stage

    return [dns_stage.build_solver(dns, **device), ref.full_solver(dns, 16, **device),
            ref.known_solver(dns, 16, "G", **device)]


def test_torch_solvers_without_cuda_run_on_the_cpu(no_cuda):
    for solver in _stage_solvers(_dns()):  # the default device: auto
        assert solver.backend.device == torch.device("cpu")
    with pytest.raises(ConfigError, match=r"^device: 'cuda' requested but torch sees no CUDA"):
        _stage_solvers(_dns(), device="cuda")


def test_device_cpu_is_honoured_with_a_gpu_present(two_gpus):
    from diffclosure.solver.factory import solver_device

    for solver in _stage_solvers(_dns(), device="cpu"):
        assert solver.backend.device == torch.device("cpu")
    assert solver_device("torch", "auto") == torch.device("cuda", 0)
    # The host backends keep their arrays on the host whatever the device says.
    assert solver_device("numpy", "cuda") is None
    for solver in _stage_solvers(_dns("numpy"), device="cuda"):
        assert solver.backend.device is None
