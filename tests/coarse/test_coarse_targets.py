"""Subgrid term Pi and classical closures against hand-derived values and identities."""

import numpy as np
import pytest

from diffclosure.coarse import classical, coarsen, filters, targets
from diffclosure.rollout import closures as cl
from diffclosure.solver.grid import Grid, advection, laplacian


def rng_field(seed, shape, n):
    return np.random.default_rng(seed).standard_normal(shape + (n, n))


@pytest.mark.parametrize("kind", filters.FILTERS)
def test_pi_vanishes_for_a_single_fourier_mode(kind):
    # psi is proportional to w for one mode, so u.grad(w) = J(psi, w) = 0 at every scale.
    X, Y = Grid(32).mesh
    w = 1.7 * np.sin(2 * np.pi * (3 * X - 2 * Y) + 0.4)
    w_bar, pi = targets.subgrid_term(w, 16, kind, 1 / 16)
    assert np.abs(pi).max() < 1e-12
    assert np.abs(w_bar).max() > 0.1


def test_pi_of_two_modes_matches_the_hand_derivation():
    # w = a cos(2 pi (2x + y)) + b cos(2 pi 3x) on the unit square. With u = psi_y, v = -psi_x,
    # u.grad(w) = psi_y w_x - psi_x w_y = a b s1 s2 (k1y k2x - k1x k2y)(1/|k1|^2 - 1/|k2|^2)
    # (s_i = sin(k_i.x)); with k1 = 2 pi (2, 1), k2 = 2 pi (3, 0) this is
    # a b (3)(1/5 - 1/9) s1 s2 = (4/15) a b s1 s2
    #   = (2/15) a b [cos(2 pi (x - y)) - cos(2 pi (5x + y))].
    # A sharp filter with cutoff |k_i| <= 2 (Delta = 1/4) keeps k1 and (1, -1), removes k2 and
    # (5, 1); the resolved w_bar is the single mode k1, whose advection is zero. Hence
    # Pi = (2/15) a b cos(2 pi (x - y)).
    a, b = 0.7, 1.3
    X, Y = Grid(32).mesh
    w = a * np.cos(2 * np.pi * (2 * X + Y)) + b * np.cos(2 * np.pi * 3 * X)
    w_bar, pi = targets.subgrid_term(w, 16, "sharp", 0.25)
    Xc, Yc = X[::2, ::2], Y[::2, ::2]
    np.testing.assert_allclose(w_bar, a * np.cos(2 * np.pi * (2 * Xc + Yc)), atol=1e-12)
    np.testing.assert_allclose(pi, 2 * a * b / 15 * np.cos(2 * np.pi * (Xc - Yc)), atol=1e-12)


@pytest.mark.parametrize("width_cells", [1.0, 2.0])
def test_les_identity_with_the_sharp_filter(width_cells):
    # d(w_bar)/dt from the filtered fine right-hand side equals the coarse right-hand side of
    # w_bar minus Pi: the linear terms commute with filtering and truncation.
    n, m, length, nu, mu = 64, 32, 1.0, 1e-3, 0.05
    fine, coarse = Grid(n, length), Grid(m, length)
    w = rng_field(0, (2,), n)
    X, Y = fine.mesh
    f = 0.1 * (np.sin(2 * np.pi * (X + Y)) + np.cos(2 * np.pi * (X + Y)))
    f = f + 0.01 * rng_field(1, (), n)
    delta = width_cells * length / m

    def bar(field):
        return coarsen.filter_truncate(field, m, "sharp", delta, length)

    rhs_fine = -advection(fine, w) + nu * laplacian(fine, w) - mu * w + f
    w_bar, pi = targets.subgrid_term(w, m, "sharp", delta, length)
    rhs_coarse = -advection(coarse, w_bar) + nu * laplacian(coarse, w_bar) - mu * w_bar + bar(f)
    lhs = bar(rhs_fine)
    scale = np.abs(lhs).max()
    np.testing.assert_allclose(lhs, rhs_coarse - pi, atol=1e-12 * scale)
    assert np.abs(pi).max() > 1e-3 * scale  # the closure is not trivially zero here


def test_coarse_state_and_target_for_g_h_subsample_are_the_fine_points():
    fields = {k: rng_field(i, (3,), 32) for i, k in enumerate(("vorticity", "G", "H"))}
    for target in ("G", "H"):
        w, y = targets.coarse_state_and_target(fields, target, 8, "subsample", 1.0, "box", 0.1)
        np.testing.assert_array_equal(y, fields[target][..., ::4, ::4])
        np.testing.assert_array_equal(w, fields["vorticity"][..., ::4, ::4])


# ------------------------------------------------------------------------------ classical closures
A, Q, DELTA = 1.3, 2, 0.05


def _single_mode(n):
    X, _ = Grid(n).mesh
    k = 2 * np.pi * Q
    return A * np.sin(k * X), np.sin(k * X), k


def test_eddy_viscosity_of_a_single_mode_is_analytic():
    # w = A sin(kx): psi = A sin(kx)/k^2, v = -A cos(kx)/k, u = 0, so |S| = |v_x| = |A sin(kx)|
    # and |grad w| = |A k cos(kx)|.
    w, s, k = _single_mode(32)
    c = np.cos(2 * np.pi * Q * Grid(32).mesh[0])
    nu_s = classical.smagorinsky_viscosity(w, 1.0, DELTA, 0.16)
    nu_l = classical.leith_viscosity(w, 1.0, DELTA, 0.2)
    np.testing.assert_allclose(nu_s, (0.16 * DELTA) ** 2 * np.abs(A * s), atol=1e-18)
    np.testing.assert_allclose(nu_l, (0.2 * DELTA) ** 3 * np.abs(A * k * c), atol=1e-18)


@pytest.mark.parametrize(
    "name,constant,power,avg",
    # Projection on the mode: mean(Pi sin) = mean(nu_t w_x (sin)_x) (integration by parts)
    # = C^p Delta^p |A| A k^p mean(g), with mean(|sin| cos^2) = 2/(3 pi) for Smagorinsky (p = 2)
    # and mean(|cos|^3) = 4/(3 pi) for Leith (p = 3).
    [("smagorinsky", 0.16, 2, 2 / (3 * np.pi)), ("leith", 0.2, 3, 4 / (3 * np.pi))],
)
def test_single_mode_estimate_converges_to_the_analytic_projection(name, constant, power, avg):
    errors = []
    for n in (32, 64):
        w, s, k = _single_mode(n)
        pi = classical.CLASSICAL[name](w, 1.0, DELTA, constant)
        exact = avg * (constant * DELTA) ** power * abs(A) * A * k**power
        errors.append(abs(np.mean(pi * s) / exact - 1))
    assert errors[1] < 0.01
    # |S| = |A sin| has kinks, so the pseudo-spectral quadrature is (at least) second order.
    assert np.log2(errors[0] / errors[1]) > 1.9


@pytest.mark.parametrize("name", sorted(classical.CLASSICAL))
def test_closure_tendency_dissipates_enstrophy(name):
    X, Y = Grid(32).mesh
    w = rng_field(3, (3,), 32) + 2 * np.sin(2 * np.pi * (X + 2 * Y))
    pi = classical.CLASSICAL[name](w, 1.0, 1 / 16)
    production = np.sum(w * (-pi), axis=(-1, -2))
    assert np.all(production <= 1e-12 * np.sum(w**2, axis=(-1, -2)))
    if name == "dynamic_smagorinsky":
        assert np.any(production < 0)  # some sample got a positive coefficient
    else:
        assert np.all(production < 0)


def test_dynamic_coefficient_is_nonnegative_and_invariant():
    w = rng_field(4, (4,), 32)
    c = classical.dynamic_coefficient(w, 1.0, 1 / 16)
    assert c.shape == (4,) and np.all(c >= 0)
    # L scales like w^2 and M like |w| w, so c does not depend on the amplitude (> 0) ...
    np.testing.assert_allclose(classical.dynamic_coefficient(3.0 * w, 1.0, 1 / 16), c, rtol=1e-10)
    # ... nor on a periodic translation.
    shifted = np.roll(w, (5, -3), axis=(-2, -1))
    np.testing.assert_allclose(classical.dynamic_coefficient(shifted, 1.0, 1 / 16), c, rtol=1e-10)


@pytest.mark.parametrize("g_split", ["full", "paper"])
@pytest.mark.parametrize("target", ["sgs", "H", "G"])
def test_estimate_sign_follows_the_target_convention(target, g_split):
    # The rollout adds target_sign x (estimate of the target) to dw/dt (an explicit closure
    # tendency). An eddy viscosity entering that way must drain enstrophy: d/dt sum(w^2)/2 gets
    # sum(w * tendency) < 0, whatever the target's own sign convention.
    X, Y = Grid(16).mesh
    w = rng_field(5, (3,), 16) + 2 * np.sin(2 * np.pi * (X + 2 * Y))
    est = classical.estimate_of_target(target, w, 1.0, 1 / 8, constant=0.16)
    tendency = cl.target_sign(target, g_split) * est
    assert np.all(np.sum(w * tendency, axis=(-1, -2)) < -1e-6 * np.sum(w**2, axis=(-1, -2)))


def test_unknown_classical_closure_is_refused():
    with pytest.raises(ValueError, match="unknown classical closure"):
        classical.classical_closure("wale")
