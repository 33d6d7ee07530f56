"""FFT backends: agreement with numpy's definition, plans, wisdom cache, solver agreement."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from diffclosure.solver.fft import get_backend, wisdom_path
from diffclosure.solver.forcing import make_forcing
from diffclosure.solver.grid import Grid
from diffclosure.solver.initial import gaussian_random_field, trajectory_streams
from diffclosure.solver.navier_stokes import Solver
from diffclosure.solver.noise import NoiseSpec

BACKENDS = ["numpy", "pyfftw", "torch"]


@pytest.fixture(autouse=True)
def _wisdom(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFCLOSURE_FFTW_WISDOM", str(tmp_path / "wisdom.pickle"))


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("n", [8, 18])
def test_transforms_match_definition(name, n):
    bk = get_backend(name, planner="FFTW_ESTIMATE")
    x = np.random.default_rng(1).standard_normal((3, n, n))
    # The DFT by its definition, sum_j x_j exp(-2 pi i k.j/n), on the rfft half-plane.
    j = np.arange(n)
    Fy = np.exp(-2j * np.pi * np.outer(j, j) / n)
    Fx = Fy[:, : n // 2 + 1]
    direct = np.einsum("ky,byx,xl->bkl", Fy, x, Fx)
    X = bk.to_numpy(bk.rfft2(bk.asarray(x)))
    assert np.allclose(X, direct, rtol=0, atol=1e-12 * n * n)
    back = bk.to_numpy(bk.irfft2(bk.asarray(X, complex_=True), n))
    assert np.allclose(back, x, rtol=0, atol=1e-13)
    # Plans: unnormalised, any batch shape.
    inv = bk.plan_irfft2((3, 2), n)
    inv.input[...] = bk.asarray(np.stack([X, 2 * X], axis=1), complex_=True)
    out = bk.to_numpy(inv.execute())
    assert np.allclose(out[:, 0], n * n * x, atol=1e-11 * n * n)
    assert np.allclose(out[:, 1], 2 * n * n * x, atol=1e-11 * n * n)
    fwd = bk.plan_rfft2((3,), n)
    fwd.input[...] = bk.asarray(x)
    assert np.allclose(bk.to_numpy(fwd.execute()), direct, atol=1e-12 * n * n)


def test_pyfftw_wisdom_written_atomically_and_reused(tmp_path, monkeypatch):
    from diffclosure.solver import fft

    path = tmp_path / "sub" / "w.pickle"
    monkeypatch.setenv("DIFFCLOSURE_FFTW_WISDOM", str(path))
    assert wisdom_path() == path
    monkeypatch.setattr(fft.PyFFTWBackend, "_wisdom_loaded", False)
    monkeypatch.setattr(fft.PyFFTWBackend, "_wisdom_saved", None)
    bk = get_backend("pyfftw", planner="FFTW_MEASURE")
    bk.plan_rfft2((1,), 24)
    with open(path, "rb") as fh:
        wisdom = pickle.load(fh)
    assert isinstance(wisdom, tuple) and len(wisdom[0]) > 0
    assert not list(path.parent.glob(".*tmp*"))  # no temporary left behind


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="unknown FFT backend 'cupy'"):
        get_backend("cupy")


@pytest.mark.parametrize("scheme", ["euler_cn", "heun_cn"])
def test_three_backends_agree_in_float64(scheme):
    n, B, steps = 32, 3, 25
    grid = Grid(n)
    w0 = gaussian_random_field(grid, [trajectory_streams(7, j)[0] for j in range(B)])
    f = make_forcing("paper", grid, 0.1)
    results = {}
    for name in BACKENDS:
        solver = Solver(n, 1.0, 1e-3, 2e-3, drag=0.05, forcing=f, scheme=scheme, backend=name,
                        planner="FFTW_ESTIMATE", noise=NoiseSpec(0.05, 0.005, 10.0))
        rngs = [trajectory_streams(7, j)[1] for j in range(B)]
        state = solver.from_physical(w0)
        for s in range(steps):
            state = solver.step(state, solver.sample_noise(rngs), t=s * solver.dt)
        results[name] = solver.physical(state)
    ref = results["numpy"]
    assert np.abs(ref - w0).max() > 1e-3  # something happened
    for name in ("pyfftw", "torch"):
        rel = np.abs(results[name] - ref).max() / np.abs(ref).max()
        assert rel < 1e-10, (name, rel)


def test_pyfftw_batch_layout_does_not_change_bits():
    n = 16
    grid = Grid(n)
    w0 = gaussian_random_field(grid, [trajectory_streams(3, j)[0] for j in range(3)])
    f = make_forcing("paper", grid, 0.1)

    def run(ids):
        solver = Solver(n, 1.0, 1e-3, 1e-2, forcing=f, backend="pyfftw",
                        planner="FFTW_ESTIMATE", noise=NoiseSpec(0.05, 0.005, 10.0))
        rngs = [trajectory_streams(3, j)[1] for j in ids]
        state = solver.from_physical(w0[ids])
        for s in range(10):
            state = solver.step(state, solver.sample_noise(rngs), t=s * solver.dt)
        return solver.physical(state)

    together = run([0, 1, 2])
    alone = run([1])
    assert np.array_equal(together[1], alone[0])
