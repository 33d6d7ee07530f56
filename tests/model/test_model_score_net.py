"""The FNO score network: any grid with the same weights, shift equivariance, parameter count,
resolution invariance of the spectral convolution, bf16 autocast, and learning an analytic score."""

import math

import pytest
import torch

from diffclosure.model.fno import SpectralConv2d
from diffclosure.model.loss import dsm_loss, uniform_times
from diffclosure.model.score_net import ScoreNet, count_parameters
from diffclosure.model.sde import VESDE

from support.ve_sde import ve_std

torch.set_num_threads(1)
S = 26.0
SDE = VESDE(S)


def tiny_net(coords=False, n_conditions=2, seed=0):
    torch.manual_seed(seed)
    return ScoreNet(n_conditions, 6, 4, 2, 16, 4.0, [12, 8], SDE, coords=coords)


def inputs(n, b=2, c=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, 1, n, n, generator=g), 0.05 + torch.rand(b, generator=g),
            torch.randn(b, c, n, n, generator=g))


@pytest.mark.parametrize("coords", [False, True])
def test_same_weights_run_at_several_grids(coords):
    net = tiny_net(coords)
    for n in (4, 8, 16, 32, 64):
        x, t, c = inputs(n)
        out = net(x, t, c)
        assert out.shape == (2, 1, n, n) and torch.isfinite(out).all()


def _shift_error(coords: bool) -> float:
    """Relative error of net(roll(inputs)) against roll(net(inputs)) for a fixed shift."""
    net = tiny_net(coords)
    x, t, c = inputs(32)
    shift = (5, -3)
    with torch.no_grad():
        out = net(x, t, c)
        out_shifted = net(torch.roll(x, shift, (-2, -1)), t, torch.roll(c, shift, (-2, -1)))
    return float((out_shifted - torch.roll(out, shift, (-2, -1))).abs().max() / out.abs().max())


def test_periodic_shift_equivariance_without_coordinates():
    assert _shift_error(coords=False) < 1e-5


def test_coordinates_break_shift_equivariance():
    # the paper's (value, x, y) lifting depends on absolute position: the test above is not vacuous
    assert _shift_error(coords=True) > 1e-3


def test_spectral_conv_is_resolution_invariant_on_band_limited_fields():
    """A trigonometric polynomial with |k| < modes sampled at 16^2 and 32^2 maps to the same
    band-limited output: the coarse output equals the fine one at the shared points."""
    torch.manual_seed(0)
    conv = SpectralConv2d(2, 3, modes=4)

    def field(n):
        j = torch.arange(n, dtype=torch.float64) / n
        y, x = torch.meshgrid(j, j, indexing="ij")
        a = torch.sin(2 * math.pi * (x + 2 * y)) + 0.5 * torch.cos(2 * math.pi * 3 * x)
        b = torch.cos(2 * math.pi * (-2 * x + 3 * y)) + 0.3
        return torch.stack([a, b])[None].float()

    with torch.no_grad():
        coarse, fine = conv(field(16)), conv(field(32))
    assert (coarse - fine[..., ::2, ::2]).abs().max() < 1e-5 * fine.abs().max()
    assert fine.abs().max() > 1e-3  # the retained modes carry signal


def test_spectral_conv_keeps_its_weight_block_only_while_the_weights_stand():
    """Without gradients the layer reuses its weight block between calls (the rollout's hot
    path); the result is the same bits as building it anew, and any in-place change of the
    weights (an optimiser step, an EMA copy, load_state_dict) is seen at the next call."""
    torch.manual_seed(0)
    layer = SpectralConv2d(3, 4, 5)
    x = torch.randn(2, 3, 16, 16)
    fresh = layer(x).detach()  # with gradients: never cached
    with torch.no_grad():
        first, second = layer(x), layer(x)
        assert torch.equal(first, fresh) and torch.equal(second, fresh)
        layer.weight_pos.mul_(2.0)  # in place, as an optimiser or an EMA update writes
        changed = layer(x)
    assert not torch.equal(changed, fresh)
    assert torch.equal(changed, layer(x).detach())  # the same as building it anew
    other = SpectralConv2d(3, 4, 5)
    with torch.no_grad():
        other(x)  # its own block, cached
    other.load_state_dict(layer.state_dict())
    with torch.no_grad():
        assert torch.equal(other(x), changed)
    # a smaller grid keeps fewer modes: another block, not the cached one
    small = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(layer(small), layer(small).detach())
    assert torch.equal(layer(small).detach(), torch.no_grad()(layer)(small))


def test_parameter_count_matches_the_architecture():
    """Paper size: 3 branches of width 20, 4 layers of 8x8 modes, embedding 256, head
    [40, 20, 20, 128]. Count by hand: complex spectral weights are two reals."""
    w, m, L, e, head = 20, 8, 4, 256, [40, 20, 20, 128]
    for coords in (False, True):
        torch.manual_seed(0)
        net = ScoreNet(2, w, m, L, e, 30.0, head, SDE, coords=coords)
        lift = (3 if coords else 1) * w + w
        layer = 2 * (w * w * m * m * 2) + (w * w + w)
        branch = lift + L * layer
        embedding = (e * e + e) + L * (e * w + w)
        sizes = [3 * w, *head, 1]
        proj = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        assert count_parameters(net) == 3 * branch + embedding + proj
    assert 1.25e6 < count_parameters(net) < 1.4e6  # the paper's "~1.3M real parameters"


class _FixedStd:
    """An SDE stand-in whose std(t) is one constant, to read the head output h directly."""

    def __init__(self, value: float):
        self.value = value

    def std(self, t):
        return torch.full_like(t, self.value)


@pytest.mark.parametrize("t", [1e-4, 0.05, 1.0])
def test_output_is_the_head_output_divided_by_std(t, monkeypatch):
    # score = h(x, t, c) / std(t): the head predicts an order-one -z, the division supplies the
    # 1/std growth as t -> 0.
    net = tiny_net()
    x, _, c = inputs(8, b=2)
    tv = torch.full((2,), t)
    with torch.no_grad():
        score = net(x, tv, c)
        monkeypatch.setattr(net, "sde", _FixedStd(1.0))
        head = net(x, tv, c)  # h itself
        monkeypatch.setattr(net, "sde", _FixedStd(2.0**-10))
        scaled = net(x, tv, c)
    assert head.abs().max() > 1e-3  # not vacuous
    # Dividing by a power of two is exact in floating point: the bits must match.
    assert torch.equal(scaled, head * 2.0**10)
    # With the real SDE: h / std(t), std from the VE closed form written in the test (float64;
    # the network divides in float32, whose std(t) is good to a few 1e-6 even at t = 1e-4).
    assert torch.allclose(score * ve_std(t, S), head, rtol=2e-5, atol=0)


def test_bf16_autocast_runs_and_stays_close():
    net = tiny_net()
    x, t, c = inputs(16)
    with torch.no_grad():
        ref = net(x, t, c)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net(x, t, c)
    assert low.dtype == torch.float32
    assert ((low - ref).norm() / ref.norm()).item() < 0.05


@pytest.mark.slow
def test_learns_the_score_of_a_conditional_gaussian():
    """target = A*cond + s0*noise: the true score of x_t given cond is
    -(x_t - A cond)/(s0^2 + std^2). A short DSM training brings the network close to it."""
    torch.manual_seed(0)
    n, a, s0, t_min, t_max = 8, 1.5, 0.3, 1e-2, 1.0
    net = ScoreNet(1, 8, 4, 2, 16, 4.0, [16], SDE)
    gen = torch.Generator().manual_seed(1)

    def data(b, g):
        c = torch.randn(b, 1, n, n, generator=g)
        return a * c + s0 * torch.randn(b, 1, n, n, generator=g), c

    ge = torch.Generator().manual_seed(2)
    x0e, ce = data(256, ge)
    te = uniform_times(t_min, t_max)(256, ge, "cpu")
    std = ve_std(te, S)[:, None, None, None]
    xt = x0e + std * torch.randn(x0e.shape, generator=ge)
    true = -(xt - a * ce) / (s0**2 + std**2) * std  # std * score: order one at every t

    def rel_err():
        with torch.no_grad():
            return (((net(xt, te, ce) * std - true) ** 2).sum() / (true**2).sum()).item()

    before = rel_err()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(200):
        x0, c = data(64, gen)
        loss = dsm_loss(net, x0, c, SDE, uniform_times(t_min, t_max), gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = rel_err()
    assert after < before / 10
    assert after < 0.1
