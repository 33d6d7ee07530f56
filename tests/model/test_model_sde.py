"""The VE SDE's noise level against its definition: std(t)^2 = int_0^t g(u)^2 du, g(t) = s^t."""

import math

import pytest
import torch
from scipy.integrate import quad

from diffclosure.model.sde import VESDE, make_sde

from support.ve_sde import ve_std

S = 26.0


@pytest.mark.parametrize("t", [1e-4, 0.05, 0.3, 0.7, 1.0])
def test_std_squared_is_the_integral_of_the_squared_diffusion(t):
    sde = make_sde({"kind": "ve", "s": S})
    assert sde.diffusion(t) == pytest.approx(S**t, rel=1e-14)
    integral, err = quad(lambda u: sde.diffusion(u) ** 2, 0.0, t, epsabs=0, epsrel=1e-12)
    assert sde.std(t) ** 2 == pytest.approx(integral, rel=1e-10)
    assert sde.std(t) == pytest.approx(ve_std(t, S), rel=1e-12)
    tt = torch.tensor([t], dtype=torch.float64)
    assert sde.std(tt).item() == pytest.approx(math.sqrt(integral), rel=1e-10)


def test_std_vanishes_at_time_zero_and_grows():
    sde = VESDE(S)
    assert sde.std(0.0) == 0.0
    assert sde.std(torch.zeros(1, dtype=torch.float64)).item() == 0.0
    ts = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)
    assert torch.all(torch.diff(sde.std(ts)) > 0)
    assert sde.prior_std() == pytest.approx(math.sqrt((S**2 - 1) / (2 * math.log(S))), rel=1e-12)


@pytest.mark.parametrize("t", [1e-4, 0.3, 1.0])
def test_time_of_std_inverts_std(t):
    sde = VESDE(S)
    assert sde.time_of_std(ve_std(t, S)) == pytest.approx(t, rel=1e-9)
