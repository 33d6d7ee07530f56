"""The shortcuts of the hot paths give the answers of the long way round: selected step terms,
spectral closure terms, cached held terms, the noise box, spectral white noise, device-held
training data, and the shared helpers (filter width, whole steps, stats)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffclosure import config as cfgmod
from diffclosure.config import ConfigError
from diffclosure.rollout import closures as cl
from diffclosure.rollout import reference as ref
from diffclosure.rollout.coupled import ClosureSpectrum, plan, run_coupled
from diffclosure.solver.grid import Grid
from diffclosure.solver.initial import gaussian_random_field
from diffclosure.solver.navier_stokes import TERM_NAMES, Solver, whole_steps
from diffclosure.solver.noise import NoiseSampler, NoiseSpec, white_noise_rfft2

torch.set_num_threads(1)
N = 16


def _solver(backend="numpy", scheme="euler_cn", **kw):
    f = 0.3 * np.sin(4 * np.pi * np.arange(N) / N)[:, None] * np.ones(N)
    return Solver(N, nu=2e-3, dt=5e-3, drag=0.1, forcing=f, scheme=scheme, backend=backend,
                  noise=NoiseSpec(0.02, 0.005, 10.0), planner="FFTW_ESTIMATE", **kw)


def _w0(states=2, n=N, seed=1):
    return gaussian_random_field(Grid(n), [np.random.default_rng([seed, i])
                                           for i in range(states)])


def _dns(**over):
    dns = {"n": 32, "backend": "numpy", "noise": {"sigma": 0.5}, "dt": 1e-3, "nu": 1e-3}
    dns.update(over)
    return cfgmod.load({"dns": dns}, sections=["dns"])["dns"]


# ----------------------------------------------------------------------------- solver
@pytest.mark.parametrize("backend", ["numpy", "pyfftw"])
@pytest.mark.parametrize("scheme", ["euler_cn", "heun_cn"])
def test_selected_terms_equal_the_full_dict(backend, scheme):
    solver = _solver(backend, scheme)
    state = solver.from_physical(_w0())
    eta = solver.sample_noise([np.random.default_rng(i) for i in range(2)])
    new_all, full = solver.step(state, eta, closure=lambda w, t: 0.1 * w, return_terms=True)
    for names in [("G",), ("H",), ("noise", "drag"), ("forcing", "closure", "advection")]:
        new, some = solver.step(state, eta, closure=lambda w, t: 0.1 * w, terms=names)
        assert list(some) == list(names)
        for k in names:
            assert np.array_equal(some[k], full[k]), k
        assert np.array_equal(new, new_all)
    assert set(full) == set(TERM_NAMES)
    with pytest.raises(ValueError, match="terms: unknown"):
        solver.step(state, eta, terms=("Pi",))


@pytest.mark.parametrize("backend", ["numpy", "pyfftw", "torch"])
def test_closure_hat_is_the_closure_transformed(backend):
    solver = _solver(backend)
    w0 = _w0()
    C = np.sin(3 * w0)
    a = solver.step(solver.from_physical(w0), closure=lambda w, t: C)
    state = solver.from_physical(w0)
    b = solver.step(state, closure_hat=np.fft.rfft2(C), out=state)  # in place, numpy input
    assert b is state
    np.testing.assert_allclose(solver.physical(b), solver.physical(a), rtol=0, atol=1e-13)
    with pytest.raises(ValueError, match="not both"):
        solver.step(state, closure=lambda w, t: C, closure_hat=np.fft.rfft2(C))


def test_noise_box_scatters_to_the_full_sample():
    grid = Grid(32)
    sampler = NoiseSampler(grid, NoiseSpec(1.0, 0.005, 10.0))
    full = sampler.sample([np.random.default_rng(i) for i in range(3)])
    box = sampler.sample_box([np.random.default_rng(i) for i in range(3)])
    # The box holds every non-zero mode: the spectrum outside it is exactly zero.
    assert np.abs(box).sum() == pytest.approx(np.abs(full).sum(), rel=1e-14)
    assert np.array_equal(sampler.scatter(box, np.zeros_like(full)), full)


def test_torch_noise_equals_numpy_noise_bit_for_bit():
    a, b = _solver("numpy"), _solver("torch")
    ra = [np.random.default_rng([4, i]) for i in range(3)]
    rb = [np.random.default_rng([4, i]) for i in range(3)]
    for _ in range(3):  # the two alternating host buffers, and one reused
        na, nb = a.sample_noise(ra), b.sample_noise(rb)
        assert isinstance(nb, torch.Tensor)
        assert np.array_equal(na, nb.numpy())


def test_white_noise_rfft2_is_the_spectrum_of_white_noise():
    n, std, B = 16, 0.3, 400
    z = white_noise_rfft2(np.random.default_rng(0), B, n, std)
    x = np.fft.irfft2(z, s=(n, n))
    # A valid real spectrum (Hermitian where the rfft layout repeats modes): round trip exact.
    assert np.abs(np.fft.rfft2(x) - z).max() < 1e-12 * np.abs(z).max()
    # E|X_k|^2 = n^2 std^2 at every mode, so each point has variance std^2 (102,400 draws).
    power = (np.abs(z) ** 2).mean(axis=0) / (n * n * std**2)
    assert abs(power.mean() - 1) < 0.02 and power.min() > 0.7 and power.max() < 1.3
    assert abs(x.std() / std - 1) < 0.01
    # White: neighbouring points uncorrelated.
    for axis in (-1, -2):
        corr = (x * np.roll(x, 1, axis)).mean() / x.var()
        assert abs(corr) < 0.02


# ----------------------------------------------------------------------------- coupled loop
class _Fresh:
    """Returns a new copy of `term` each step: nothing can be cached."""

    name = "fresh"

    def __init__(self, term):
        self.term = term

    def tendency(self, w, step, t):
        return self.term(step).copy()


class _Held(_Fresh):
    """The same values, as one object per value: the loop may reuse the spectrum."""

    def __init__(self, term):
        super().__init__(term)
        self.last, self.seen = (None, None), []

    def needs_state(self, step):
        return False

    def tendency(self, w, step, t):
        self.seen.append(w)
        value = self.term(step)
        if self.last[0] is None or not np.array_equal(self.last[1], value):
            self.last = (value.copy(), value)
        return self.last[0]


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_held_term_cached_by_identity_equals_fresh_terms(backend):
    dns = _dns(backend=backend)
    w0 = _w0()
    rng = np.random.default_rng(2)
    values = [rng.standard_normal((2, N, N)) for _ in range(3)]

    def term(step):  # changes every 7 steps
        return values[(step // 7) % 3]

    held = _Held(term)
    a = run_coupled(ref.known_solver(dns, N, "G"), w0, held, 30, 10)
    b = run_coupled(ref.known_solver(dns, N, "G"), w0, _Fresh(term), 30, 10)
    assert np.array_equal(a.records, b.records)
    assert all(w is None for w in held.seen)  # needs_state False: no state built
    none = run_coupled(ref.known_solver(dns, N, "G"), w0, cl.NoClosure(), 30, 10)
    assert np.abs(a.records - none.records).max() > 1e-3  # the term did act


def test_cached_term_changed_in_place_fails_loudly():
    class Sneaky:
        name = "sneaky"

        def __init__(self):
            self.buf = np.zeros((2, N, N))

        def tendency(self, w, step, t):
            self.buf[...] = step  # same object, new values: would go unseen
            return self.buf

    with pytest.raises(ValueError, match="read-only"):
        run_coupled(ref.known_solver(_dns(), N, "G"), _w0(), Sneaky(), 5, 5)


def test_spectral_hold_noise_adds_the_same_term_as_the_physical_form():
    """ClosureSpectrum of a split closure = rfft2 of what tendency() returns for the same draws."""

    class Sampler:
        conditions = ["vorticity"]

        def sample(self, sampler, vorticity, measurements=None, smagorinsky=None, *,
                   ensemble=1, generator=None):
            return np.cos(vorticity)[:, None]

    def closure():
        return cl.DiffusionClosure(Sampler(), None, states=2, members=1, resample_every=4,
                                   hold="reuse_noise", hold_std=0.1, measurements=None,
                                   rng=np.random.default_rng(5))

    solver = ref.known_solver(_dns(), N, "G")
    state = solver.from_physical(_w0())
    split, plain = ClosureSpectrum(solver, closure(), 2), closure()
    for k in range(6):
        c_hat = split(state, k, 0.0)
        expect = np.fft.rfft2(plain.tendency(solver.physical(state), k, 0.0))
        np.testing.assert_allclose(c_hat, expect, rtol=0, atol=1e-12 * np.abs(expect).max())


@pytest.mark.parametrize("target", ["G", "H"])
def test_oracle_on_the_torch_backend_reproduces_the_reference(target):
    dns = _dns(backend="torch")
    w0, steps, stride = _w0(), 30, 10
    reference = ref.run_reference(ref.full_solver(dns, N), w0, steps, stride,
                                  ref.noise_generators(7, 2), target).records
    oracle = cl.OracleGH(ref.full_solver(dns, N), ref.noise_generators(7, 2), target)
    res = run_coupled(ref.known_solver(dns, N, target), w0, oracle, steps, stride)
    assert np.abs(res.records - reference).max() < 1e-12 * np.abs(reference).max()


# ----------------------------------------------------------------------------- helpers
def test_whole_steps_and_plan_messages():
    assert whole_steps(0.3, 0.1, "x") == 3
    assert whole_steps(0.0, 0.1, "dns.spinup", minimum=0) == 0
    with pytest.raises(ValueError, match=r"dns.spinup: 0.25 is not a multiple of dns.dt=0.1"):
        whole_steps(0.25, 0.1, "dns.spinup", minimum=0)
    with pytest.raises(ValueError, match="positive multiple"):
        whole_steps(0.0, 0.1, "rollout.duration")
    cfg = cfgmod.load({"dns": {"dt": 1e-3}, "rollout": {"duration": 0.05, "record_every": 0.01},
                       "coarse": {"target": "G"}}, sections=["dns", "rollout", "coarse"])
    p = plan(cfg, "none")
    assert p["steps"] == 50 and p["record_stride"] == 10
    cfg["rollout"]["record_every"] = 0.0105
    with pytest.raises(ConfigError, match="rollout.record_every"):
        plan(cfg, "none")


def test_filter_width_is_coarse_spacings_in_physical_units():
    """coarse.filter_width counts coarse grid spacings: 2 spacings of L/n = 2.0/32 on a box of
    side dns.length 2.0 is Delta = 0.125, as the registry builds the classical closure."""
    from diffclosure.rollout import registry

    cfg = cfgmod.load({"dns": _dns(length=2.0),
                       "coarse": {"target": "sgs", "n": 32, "test_resolutions": [32],
                                  "filter_width": 2}},
                      sections=["dns", "coarse"])
    closure = registry.build(registry.Context(name="smagorinsky", cfg=cfg, stats={},
                                              true_term=None, states=1, members=1))
    assert closure.delta == pytest.approx(0.125, rel=1e-12)


# ----------------------------------------------------------------------------- training data
def test_in_memory_split_moves_to_a_device_and_keeps_samples():
    from diffclosure.data.datasets import InMemorySplit, place_splits

    target = torch.arange(24.0).reshape(6, 1, 2, 2)
    split = InMemorySplit(target, torch.zeros(6, 0, 2, 2), [])
    moved = split.to("cpu")
    idx = torch.tensor([4, 1])
    assert torch.equal(moved.get_batch(idx)[0], target[idx]) and moved.device.type == "cpu"
    assert moved.nbytes == 24 * 4
    # On the CPU the splits stay where they are (same objects).
    a, b = place_splits(split, split, torch.device("cpu"))
    assert a is split and b is split
