"""The symmetries of the square (solver/symmetry.py): a group acting on pseudo-scalar fields, under
which the Navier-Stokes step and the subgrid term commute when the forcing does, and the
training augmentation built on them (model/augment.py)."""

import numpy as np
import pytest

from diffclosure import config as C
from diffclosure.coarse.targets import subgrid_term
from diffclosure.solver import symmetry as S
from diffclosure.solver.forcing import make_forcing
from diffclosure.solver.grid import Grid
from diffclosure.solver.initial import gaussian_random_field
from diffclosure.solver.navier_stokes import Solver


def _field(n, seed, count=1):
    rng = np.random.default_rng(seed)
    return gaussian_random_field(Grid(n, 1.0), [rng for _ in range(count)])


def test_the_eight_elements_are_distinct_and_form_a_group_with_the_sign_character():
    w = _field(16, 0)[0]
    images = [S.transform(w, e) for e in S.ELEMENTS]
    for a in range(8):
        for b in range(a + 1, 8):
            assert not np.allclose(images[a], images[b])
    for a in S.ELEMENTS:
        for b in S.ELEMENTS:
            ab = S.transform(S.transform(w, b), a)
            match = [c for c in S.ELEMENTS if np.array_equal(ab, images[c])]
            assert len(match) == 1  # closed under composition
            assert S.determinant(match[0]) == S.determinant(a) * S.determinant(b)
    # Reflections are their own inverses; the rotation by 90 degrees has order 4.
    for e in S.ELEMENTS:
        if S.determinant(e) < 0:
            assert np.array_equal(S.transform(images[e], e), w)
    rotations = [e for e in S.ELEMENTS if S.determinant(e) > 0 and e]
    assert any(not np.array_equal(S.transform(S.transform(w, e), e), w) for e in rotations)


def test_a_reflection_is_about_the_origin_of_the_grid():
    n = 8
    w = np.zeros((n, n))
    w[0, 1] = 1.0  # x = h, y = 0
    rx = S.transform(w, 0b010, pseudo=False)  # x -> -x
    assert rx[0, n - 1] == 1.0 and rx.sum() == 1.0
    swap = S.transform(w, 0b100, pseudo=False)  # x <-> y
    assert swap[1, 0] == 1.0
    assert S.transform(w, 0b010)[0, n - 1] == -1.0  # a pseudo-scalar flips sign


def test_the_symmetric_ring_commutes_and_the_random_ring_and_the_paper_forcing_do_not():
    grid = Grid(64, 1.0)
    sym = make_forcing("ring", grid, 10.0, 4, symmetric=True)
    assert np.sqrt(np.mean(sym**2)) == pytest.approx(10.0)
    for e in S.ELEMENTS:
        np.testing.assert_allclose(S.transform(sym, e), sym, atol=1e-12)
    # Still a ring forcing: all its power on round(|k|) = 4.
    k = np.fft.fftfreq(64, 1 / 64)
    ring = np.rint(np.hypot(*np.meshgrid(k, k, indexing="ij"))) == 4
    power = np.abs(np.fft.fft2(sym)) ** 2
    assert power[~ring].sum() < 1e-20 * power.sum()
    for other in (make_forcing("ring", grid, 10.0, 4), make_forcing("paper", grid, 0.1)):
        assert max(np.abs(S.transform(other, e) - other).max() for e in S.ELEMENTS) > 0.1
    with pytest.raises(ValueError, match="dns.forcing.symmetric"):
        make_forcing("paper", grid, 0.1, symmetric=True)


@pytest.mark.parametrize("symmetric", [True, False])
def test_the_navier_stokes_step_commutes_with_d4_exactly_when_the_forcing_does(symmetric):
    n, steps = 32, 20
    forcing = make_forcing("ring", Grid(n, 1.0), 10.0, 4, symmetric=symmetric)
    solver = Solver(n, 1.0, 1e-3, 2e-3, drag=0.3, forcing=forcing, scheme="heun_cn",
                    backend="numpy")
    w0 = 3.0 * _field(n, 1)

    def run(w):
        state = solver.from_physical(w)
        for s in range(steps):
            state = solver.step(state, t=s * solver.dt)
        return solver.physical(state)

    base = run(w0)
    errors = [np.abs(run(S.transform(w0, e)) - S.transform(base, e)).max() / np.abs(base).max()
              for e in S.ELEMENTS]
    if symmetric:
        assert max(errors) < 1e-12, errors
    else:
        assert max(errors) > 1e-3, errors


@pytest.mark.parametrize("kind", ["box", "gaussian", "sharp"])
def test_the_filtered_state_and_the_subgrid_term_commute_with_d4(kind):
    """Pi of the transformed DNS field is the transformed Pi, for every element."""
    w = 5.0 * _field(64, 2)[0]
    w_bar, pi = subgrid_term(w, 16, kind, 2.0 / 16)
    for e in S.ELEMENTS:
        w_bar_e, pi_e = subgrid_term(S.transform(w, e), 16, kind, 2.0 / 16)
        np.testing.assert_allclose(w_bar_e, S.transform(w_bar, e), atol=1e-12)
        np.testing.assert_allclose(pi_e, S.transform(pi, e), atol=1e-10 * np.abs(pi).max())


def test_augmentation_is_exact_on_normalised_channels_with_nonzero_means():
    import torch

    from diffclosure.model.augment import Augment

    raw = torch.as_tensor(_field(16, 3, count=3 * 64).reshape(64, 3, 16, 16), dtype=torch.float32)
    raw = raw + torch.tensor([0.3, -0.2, 0.1]).reshape(1, 3, 1, 1)  # means that are not 0
    mean, std = torch.tensor([0.3, -0.2, 0.1]), torch.tensor([2.0, 1.5, 0.5])
    norm = (raw - mean.reshape(1, 3, 1, 1)) / std.reshape(1, 3, 1, 1)
    aug = Augment((mean / std).tolist())
    gen = torch.Generator().manual_seed(0)
    x0, cond = aug(norm[:, :1], norm[:, 1:], gen)
    elements = torch.randint(0, 8, (64,), generator=torch.Generator().manual_seed(0))
    assert len(set(elements.tolist())) == 8
    for i, e in enumerate(elements.tolist()):
        want = (S.transform(raw[i], e) - mean.reshape(3, 1, 1)) / std.reshape(3, 1, 1)
        got = torch.cat([x0[i], cond[i]])
        torch.testing.assert_close(got, want, atol=2e-6, rtol=1e-5)


def test_the_orbit_of_a_pseudo_scalar_has_mean_zero_and_the_same_variance():
    """What augmentation does to the data's statistics: over the orbit of any field the mean of
    a pseudo-scalar is 0 (reflections flip it), the mean square is unchanged."""
    w = _field(16, 4)[0] + 0.7
    orbit = np.stack([S.transform(w, e) for e in S.ELEMENTS])
    assert abs(orbit.mean()) < 1e-12
    assert np.mean(orbit**2) == pytest.approx(np.mean(w**2))


def test_the_config_check_refuses_augmentation_where_the_forcing_breaks_the_symmetry():
    base = {"dns": {"forcing": {"kind": "paper"}}, "train": {"augment": True}}
    with pytest.raises(C.ConfigError, match="train.augment"):
        C.load(base)
    ring = {"dns": {"forcing": {"kind": "ring", "amplitude": 10.0, "symmetric": True}},
            "train": {"augment": True}}
    assert C.load(ring)["train"]["augment"] is True
    with pytest.raises(C.ConfigError, match="dns.forcing.symmetric"):
        C.load({"dns": {"forcing": {"kind": "kolmogorov", "symmetric": True}}})
