"""Coupled rollouts: the oracle reproduces the reference, dropping the term departs from it,
classical closures dissipate enstrophy, and the diffusion path batches, resamples and holds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffclosure import config as cfgmod
from diffclosure.coarse.classical import classical_closure
from diffclosure.metrics.fields import d_fro
from diffclosure.rollout import closures as cl
from diffclosure.rollout import reference as ref
from diffclosure.rollout.coupled import run_coupled
from diffclosure.solver.grid import Grid
from diffclosure.solver.initial import gaussian_random_field

from support.datasets import write_stats

N = 16


def dns_section(**over) -> dict:
    dns = {"n": 32, "backend": "numpy", "noise": {"sigma": 0.5}, "dt": 1e-3, "nu": 1e-3}
    dns.update(over)
    return cfgmod.load({"dns": dns}, sections=["dns"])["dns"]


def coarse_section(target="G", **over) -> dict:
    c = {"target": target, "n": N, "test_resolutions": [N]}
    c.update(over)
    return cfgmod.load({"coarse": c}, sections=["coarse"])["coarse"]


def initial(states=2, n=N, seed=1) -> np.ndarray:
    rngs = [np.random.default_rng([seed, i]) for i in range(states)]
    return gaussian_random_field(Grid(n), rngs)


@pytest.mark.parametrize("target", ["G", "H"])
def test_oracle_reproduces_reference_to_round_off(target):
    dns = dns_section()
    w0, steps, stride = initial(), 60, 20
    reference = ref.run_reference(ref.full_solver(dns, N), w0, steps, stride,
                                  ref.noise_generators(7, 2), target).records
    oracle = cl.OracleGH(ref.full_solver(dns, N), ref.noise_generators(7, 2), target)
    res = run_coupled(ref.known_solver(dns, N, target), w0, oracle, steps, stride)
    rollout = res.records
    assert rollout.shape == reference.shape == (2, steps // stride + 1, N, N)
    err = np.abs(rollout - reference).max() / np.abs(reference).max()
    assert err < 1e-12
    # Not trivially true: another noise realisation changes the reference far beyond round-off,
    # and so does dropping the term.
    other = ref.run_reference(ref.full_solver(dns, N), w0, steps, stride,
                              ref.noise_generators(8, 2), target).records
    assert np.abs(other - reference).max() / np.abs(reference).max() > 1e-6
    assert res.blowup_time is None and res.steps_done == steps


def test_paper_g_split_oracle_reproduces_reference_to_round_off():
    """coarse.g_split paper: known physics keeps the implicit viscous half, the oracle adds
    0.5 x (nu lap w^n + 2 noise); with euler_cn that is the reference step itself. The oracle
    is built by the registry from the config, as a rollout builds it."""
    dns = dns_section()
    paper = rollout_cfg(dns, "G", "paper", seed=7)
    w0, steps, stride = initial(), 60, 20
    reference = ref.run_reference(ref.full_solver(dns, N), w0, steps, stride,
                                  ref.noise_generators(7, 2), "G_paper")

    def rollout(cfg):
        oracle = build_closure("true", cfg, None, states=2)
        known = ref.known_solver(dns, N, "G", coarse=paper["coarse"])
        res = run_coupled(known, w0, oracle, steps, stride)
        return np.abs(res.records - reference.records).max() / np.abs(reference.records).max()

    assert rollout(paper) < 1e-12
    # The full split's oracle on this known physics counts the implicit half twice.
    assert rollout(rollout_cfg(dns, "G", "full", seed=7)) > 1e-6


def test_paper_g_from_a_dns_record_is_the_solvers():
    """The coarse stage's research-code G, built from w and H alone, is the solver's G_paper."""
    from diffclosure.coarse.targets import paper_g

    dns = dns_section(n=N)
    solver = ref.full_solver(dns, N)
    w = initial()
    _, terms = solver.step(solver.from_physical(w), solver.sample_noise(ref.noise_generators(1, 2)),
                           terms=("H", "G_paper"))
    want = terms["G_paper"]
    np.testing.assert_allclose(paper_g(w, terms["H"], dns["nu"]), want,
                               atol=1e-12 * np.abs(want).max())


@pytest.mark.parametrize("target", ["G", "H"])
def test_no_closure_departs_from_reference(target):
    dns = dns_section(nu=5e-3, noise={"sigma": 1e-3})
    w0, steps, stride = initial(), 100, 20
    reference = ref.run_reference(ref.full_solver(dns, N), w0, steps, stride,
                                  ref.noise_generators(0, 2), target).records
    res = run_coupled(ref.known_solver(dns, N, target), w0, cl.NoClosure(), steps, stride)
    err = d_fro(res.records, reference).mean(axis=0)  # (T,)
    assert err[0] < 1e-14
    assert np.all(np.diff(err) > 0), err  # grows with time
    assert err[-1] > 1e-3


@pytest.mark.parametrize("name", cl.CLASSICAL)
def test_classical_closure_dissipates_enstrophy(name):
    """Enstrophy production of the eddy-viscosity tendency, int w (-Pi_model) <= 0."""
    w = initial(states=3, n=32)
    pi = classical_closure(name)(w, 1.0, 2.0 / 32, None)
    production = np.sum(w * -pi, axis=(-2, -1))
    scale = np.sum(w * w, axis=(-2, -1))
    assert np.all(production <= 1e-12 * scale)
    if name != "dynamic_smagorinsky":  # the dynamic coefficient may clip to 0
        assert np.all(production < -1e-6 * scale)
    # The closure object adds only known physics around the same eddy tendency.
    for target in ("sgs", "G", "H"):
        c = cl.ClassicalClosure(name, target, coarse_section(target, n=32), 1e-3, 1.0, 32)
        eddy = c.tendency(w, 0, 0.0)
        if target == "G":
            eddy -= 1e-3 * np.fft.irfft2(-Grid(32).k2 * np.fft.rfft2(w), s=(32, 32))
        elif target == "H":
            from diffclosure.solver.grid import advection

            eddy += advection(Grid(32), w)
        assert np.all(np.sum(w * eddy, axis=(-2, -1)) <= 1e-12 * scale)


@pytest.mark.parametrize("name", cl.CLASSICAL)
def test_classical_closure_stable_over_rollout(name):
    """Unforced, weakly viscous sgs rollout: finite, no blow-up, enstrophy not above no-closure."""
    dns = dns_section(nu=1e-5, forcing={"kind": "none"}, noise={"sigma": 0.0}, dt=2e-3)
    coarse = coarse_section("sgs")
    w0 = initial(states=2, n=N) * 3.0
    solver = ref.known_solver(dns, N, "sgs", coarse=coarse)
    closure = cl.ClassicalClosure(name, "sgs", coarse, dns["nu"], 1.0, N)
    with_c = run_coupled(solver, w0, closure, 200, 50)
    without = run_coupled(ref.known_solver(dns, N, "sgs", coarse=coarse), w0, cl.NoClosure(),
                          200, 50)
    assert with_c.blowup_time is None and np.isfinite(with_c.records).all()

    def enstrophy(r):
        return 0.5 * (r**2).mean(axis=(-2, -1))

    z, z0 = enstrophy(with_c.records), enstrophy(without.records)
    assert np.all(z[:, -1] <= z0[:, -1] * (1 + 1e-12))
    if name != "dynamic_smagorinsky":  # (its coefficient may clip to 0: then no closure)
        # The eddy viscosity's O(dt) removal beats explicit Euler's O(dt^2) enstrophy growth.
        assert np.all(np.diff(z, axis=1) < 0)
        assert np.all(z[:, -1] < 0.999 * z0[:, -1])


# ----------------------------------------------------------------------------- diffusion path
class StandIn:
    """Stand-in for ClosureSampler: records every call, returns a chosen field."""

    def __init__(self, conditions=("vorticity", "measurements"), mode="measurements", seed=0):
        self.conditions = list(conditions)
        self.calls = []
        self.mode = mode
        self.rng = np.random.default_rng(seed)

    def sample(self, sampler, vorticity, measurements=None, smagorinsky=None, *, ensemble=1,
               generator=None):
        self.calls.append({"vorticity": np.array(vorticity), "measurements":
                           None if measurements is None else np.array(measurements),
                           "ensemble": ensemble})
        if self.mode == "measurements":
            out = np.asarray(measurements)
        else:
            out = self.rng.standard_normal(np.shape(vorticity))
        return out[:, None].repeat(ensemble, axis=1)


def _full_measurements(reference, n):
    meas = {"lattice": n, "encoder": "interp", "noise": 0.0, "conv_width": 1.75}
    return cl.Measurements(lambda k: reference.terms[k], meas, n, 1.0, np.random.default_rng(0))


def rollout_cfg(dns: dict, target: str, g_split: str = "full", **rollout) -> dict:
    """A rollout config as the stage loads it: measurements on every coarse grid point."""
    ro = {"resample_every": 1, "hold": "reuse", "hold_noise": 0.0, "measurements": True}
    ro.update(rollout)
    return cfgmod.load({
        "dns": dns, "coarse": {"target": target, "g_split": g_split, "n": N,
                               "test_resolutions": [N]},
        "measurements": {"lattice": N, "encoder": "interp", "noise": 0.0},
        "rollout": ro,
    }, sections=["dns", "coarse", "measurements", "rollout"])


def build_closure(name: str, cfg: dict, true_term, states: int, members: int = 1,
                  target_std: float = 1.0, sampler_obj=None, **extra):
    """The closure `name` as run_rollout builds it: through the registry."""
    from diffclosure.rollout import registry

    return registry.build(registry.Context(
        name=name, cfg=cfg, stats={"target": {"std": target_std}}, true_term=true_term,
        states=states, members=members, sampler_obj=sampler_obj, **extra))


@pytest.mark.parametrize("target, g_split", [("G", "full"), ("H", "full"), ("G", "paper")])
def test_diffusion_path_with_exact_sampler_reproduces_reference(target, g_split):
    """Measurements on every grid point + a sampler returning them = the exact term each step.

    The learned closure is built by the registry from the config, as a rollout builds it: its
    measurements of the reference's term, and the factor with which the term enters the
    coarse equation (0.5 G under coarse.g_split paper, on top of the known implicit half of
    the viscosity), both come from that wiring."""
    from diffclosure.rollout import registry

    dns = dns_section()
    cfg = rollout_cfg(dns, target, g_split)
    w0, steps, stride = initial(), 40, 10
    # Under g_split paper the stored target is the research code's G = nu lap w^n + 2 noise.
    stored = "G_paper" if g_split == "paper" else target
    reference = ref.run_reference(ref.full_solver(dns, N), w0, steps, stride,
                                  ref.noise_generators(3, 2), stored, term_steps=range(steps))
    standin = StandIn()
    closure = build_closure(registry.learned(), cfg, lambda k: reference.terms[k], states=2,
                            sampler_obj=standin)
    res = run_coupled(ref.known_solver(dns, N, target, coarse=cfg["coarse"]), w0, closure,
                      steps, stride)
    err = np.abs(res.records - reference.records).max() / np.abs(reference.records).max()
    assert err < 1e-12
    assert len(standin.calls) == steps
    # What the sampler saw at step 0 is the reference's stored term of that step.
    np.testing.assert_array_equal(standin.calls[0]["measurements"], reference.terms[0])


def test_learned_sgs_closure_enters_the_equation_as_minus_pi():
    """The model samples Pi; the coarse equation needs -Pi, as the oracle and the classical
    closures give it. All three are built by the registry from an sgs config, as a rollout
    builds them, so a sign wired wrongly anywhere on that path shows here."""
    from diffclosure.rollout import registry

    rng = np.random.default_rng(4)
    pi = rng.standard_normal((2, N, N))
    cfg = rollout_cfg(dns_section(), "sgs")

    def build(name, **extra):
        return build_closure(name, cfg, lambda step: pi, states=2, sampler_obj=StandIn(),
                             **extra)

    learned = build(registry.learned())
    oracle = build("true", pi=pi[:, None], steps_per_record=1)
    smagorinsky = build("smagorinsky")
    w = rng.standard_normal((2, N, N))
    np.testing.assert_allclose(learned.tendency(w, 0, 0.0), -pi, atol=1e-12)
    np.testing.assert_allclose(oracle.tendency(w, 0, 0.0), -pi, atol=1e-12)
    # An eddy viscosity drains enstrophy: its tendency is -Pi_model with <w Pi_model> > 0.
    assert (w * smagorinsky.tendency(w, 0, 0.0)).sum() < 0


def test_diffusion_batches_resamples_and_holds():
    dns = dns_section()
    S, M, steps, every = 2, 3, 23, 5
    w0 = initial(states=S)
    reference = ref.run_reference(ref.full_solver(dns, N), w0, steps, steps,
                                  ref.noise_generators(0, S), "H",
                                  term_steps=range(0, steps, every))
    standin = StandIn(mode="random")
    closure = cl.DiffusionClosure(standin, None, states=S, members=M, resample_every=every,
                                  hold="reuse", hold_std=0.0,
                                  measurements=_full_measurements(reference, N))
    returned = []

    class Spy:
        name = "diffusion"

        def tendency(self, w, step, t):
            out = closure.tendency(w, step, t)
            returned.append(out.copy())
            return out

    res = run_coupled(ref.known_solver(dns, N, "H"), w0, Spy(), steps, 1, members=M)
    # one call per resample, on the whole (states x members) batch
    assert len(standin.calls) == closure.sample_calls == -(-steps // every)
    for call in standin.calls:
        assert call["vorticity"].shape == (S * M, N, N) and call["ensemble"] == 1
        # members of a state share its measurements
        m = call["measurements"].reshape(S, M, N, N)
        assert np.array_equal(m, np.repeat(m[:, :1], M, axis=1))
    # each member is conditioned on its own current state
    first = standin.calls[0]["vorticity"].reshape(S, M, N, N)
    assert np.allclose(first, w0[:, None])
    second = standin.calls[1]["vorticity"]
    assert np.allclose(second, res.records[:, every])
    assert not np.allclose(second[0], second[1])  # members diverged through their samples
    # hold rule "reuse": exactly the last sample between resamples
    for k, out in enumerate(returned):
        assert np.array_equal(out, returned[k - k % every])
    assert not np.array_equal(returned[0], returned[every])


def test_hold_rule_reuse_noise_adds_small_gaussian_noise():
    """hold reuse_noise: between samples the held sample plus white noise of std
    rollout.hold_noise x the target's std in stats.json (here 0.05 x 2.0 = 0.1)."""
    from diffclosure.rollout import registry

    standin = StandIn(conditions=("vorticity",), mode="random")
    cfg = rollout_cfg(dns_section(), "H", resample_every=40, hold="reuse_noise",
                      hold_noise=0.05, measurements=False)
    closure = build_closure(registry.learned(), cfg, None, states=4, members=2, target_std=2.0,
                            sampler_obj=standin)
    w = np.zeros((8, N, N))
    first = closure.tendency(w, 0, 0.0)
    diffs = np.stack([closure.tendency(w, k, 0.0) - first for k in range(1, 40)])
    assert len(standin.calls) == 1
    # n = 39 x 8 x 16 x 16 = 79,872 independent draws: the sample std's relative standard
    # error is 1/sqrt(2n) = 0.25%, the mean's is std/sqrt(n); allow 5 of each.
    n = diffs.size
    assert abs(diffs.std() / 0.1 - 1) < 5 / np.sqrt(2 * n)
    assert abs(diffs.mean()) < 5 * 0.1 / np.sqrt(n)
    assert not np.array_equal(diffs[0], diffs[1])  # fresh noise each step


def test_measurements_required_when_model_uses_them():
    with pytest.raises(cfgmod.ConfigError, match="rollout.measurements"):
        cl.DiffusionClosure(StandIn(), None, states=1, members=1, resample_every=1,
                            hold="reuse", hold_std=0.0, measurements=None)


def test_sgs_oracle_holds_the_nearest_earlier_record():
    pi = np.arange(3.0)[None, :, None, None] * np.ones((2, 3, 4, 4))
    o = cl.OracleSgs(pi, steps_per_record=10, members=2)
    assert o.tendency(None, 0, 0.0).shape == (4, 4, 4)
    assert np.all(o.tendency(None, 9, 0.0) == 0.0)
    assert np.all(o.tendency(None, 10, 0.0) == -1.0)
    assert np.all(o.tendency(None, 29, 0.0) == -2.0)


def test_blow_up_is_recorded_not_raised():
    """A closure that injects a growing tendency trips the CFL guard: the run stops early,
    records not reached are NaN, and the blow-up time is returned."""

    class Exploding:
        name = "exploding"

        def tendency(self, w, step, t):
            return 1e3 * (step + 1) * w

    dns = dns_section(check_every=5)
    res = run_coupled(ref.known_solver(dns, N, "G"), initial(), Exploding(), 200, 10)
    assert res.blowup_time is not None and res.steps_done < 200
    assert "CFL" in res.blowup_reason or "non-finite" in res.blowup_reason
    reached = res.steps_done // 10
    assert np.isfinite(res.records[:, : reached + 1]).all()
    assert np.isnan(res.records[:, reached + 1 :]).all()


def _sgs_oracle_error(root, every: int, sigma: float = 1e-3, filtered_noise: bool = True):
    """The `true` sgs rollout (stage code path: DNS shard -> run_rollout) against the filtered
    DNS it stands for, when -Pi is known every `every` DNS steps. Relative max error at the end.
    """
    from diffclosure.rollout import coupled
    from diffclosure.stages.dns import run_shard

    dt = 1e-3
    cfg = cfgmod.load({
        "dns": {"n": 64, "backend": "numpy", "dt": dt, "nu": 2e-3, "spinup": 0.02,
                "duration": 0.08, "record_every": every * dt, "trajectories": 2, "shards": 1,
                "seed": 3, "noise": {"sigma": sigma}, "forcing": {"amplitude": 1.0}},
        "coarse": {"target": "sgs", "n": 16, "test_resolutions": [16], "method": "filter",
                   "filter": "box", "filter_width": 2.0},
        "rollout": {"closures": ["true"], "duration": 0.08, "record_every": 0.008,
                    "initial_states": 1, "dns_cost_steps": 1},
    }, sections=["dns", "coarse", "rollout"])
    cfg["measurements"] = {}
    shard = root / f"dns-{every}.h5"
    run_shard(cfg["dns"], 0, shard)
    data = root / "data"
    data.mkdir(exist_ok=True)
    write_stats(data, {"target": {"mean": 0.0, "std": 1.0},
                       "split": {"train": [0], "val": [], "test": [1]}})
    if not filtered_noise:  # the old known physics' noise: none
        orig = ref.filtered_noise
        ref.filtered_noise = lambda *a, **k: None
    try:
        res = coupled.run_rollout(cfg, "true", [str(shard)], data, show_progress=False)
    finally:
        if not filtered_noise:
            ref.filtered_noise = orig
    out, want = res.vorticity[:, 0, -1], res.reference[:, -1]
    return float(np.abs(out - want).max() / np.abs(want).max())


@pytest.mark.slow
def test_sgs_oracle_closes_the_filtered_dns(tmp_path):
    """With the filtered forcing and the filtered DNS's noise as known physics, -Pi closes the
    filtered equation: known at every DNS step, the oracle reproduces the filtered DNS up to
    the DNS's float32 records; held over records of h steps, its error falls like h (first
    order in the hold interval, the closure's time discretisation)."""
    exact = _sgs_oracle_error(tmp_path, 1)
    assert exact < 2e-6, exact
    # The filtered noise is needed: without it the same run is far off.
    assert _sgs_oracle_error(tmp_path, 1, filtered_noise=False) > 100 * exact
    errors = [_sgs_oracle_error(tmp_path, h) for h in (8, 4, 2)]
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(orders >= 0.8), (errors, orders)


class NoiseEcho(StandIn):
    """Returns the draws of the generator it is given, as a sampler's start noise would be."""

    def sample(self, sampler, vorticity, measurements=None, smagorinsky=None, *, ensemble=1,
               generator=None):
        from diffclosure.sampling.noise_source import randn

        self.calls.append(generator)
        return randn((len(vorticity), ensemble, N, N), generator, dtype=torch.float64)


@pytest.mark.parametrize("tau", [0.0, 0.05])
def test_rollout_tau_makes_the_learned_closures_draws_ar1_across_samplings(tau):
    """rollout.tau reaches the learned closure's sampler, through the registry as a rollout
    builds it: consecutive samplings (every resample_every steps of dns.dt) are correlated by
    exp(-resample_every dt / tau); tau 0 keeps independent draws."""
    from diffclosure.rollout import registry

    every, dt = 5, 1e-3
    cfg = rollout_cfg(dns_section(dt=dt), "H", resample_every=every, tau=tau)
    echo = NoiseEcho()
    closure = build_closure(registry.learned(), cfg, lambda k: np.zeros((2, N, N)), states=2,
                            members=3, sampler_obj=echo)
    w = np.zeros((6, N, N))
    draws = np.stack([closure.tendency(w, k, k * dt) for k in range(0, 400 * every, every)])
    z = draws.reshape(len(draws), -1)
    lag = np.mean(z[1:] * z[:-1]) / np.mean(z * z)
    rho = np.exp(-every * dt / tau) if tau else 0.0
    assert lag == pytest.approx(rho, abs=4 / np.sqrt(z.size))
    assert np.var(z) == pytest.approx(1.0, rel=0.05)
    assert isinstance(echo.calls[0], torch.Generator) == (tau == 0)


def test_rollout_tau_shells_correlate_each_scale_by_its_own_memory():
    """Measured memories per shell (rollout.tau_per_shell) reach the learned closure's draws:
    the large scales keep theirs across samplings, the small ones draw fresh."""
    from diffclosure.rollout import registry

    every, dt = 5, 1e-3
    cfg = rollout_cfg(dns_section(dt=dt), "H", resample_every=every, tau=0.0)
    cfg["rollout"]["tau_shells"] = [0.05] * 4 + [0.0]  # |k| <= 3 remember, the rest do not
    echo = NoiseEcho()
    closure = build_closure(registry.learned(), cfg, lambda k: np.zeros((2, N, N)), states=2,
                            members=3, sampler_obj=echo)
    w = np.zeros((6, N, N))
    f = np.fft.fft2(np.stack([closure.tendency(w, k, k * dt) for k in range(0, 300 * every,
                                                                              every)]))
    lag = np.real(np.conj(f[1:]) * f[:-1]).mean(axis=(0, 1)) / (np.abs(f) ** 2).mean(axis=(0, 1))
    k = np.fft.fftfreq(N, 1.0 / N)
    shell = np.rint(np.sqrt(k[:, None] ** 2 + k[None, :] ** 2))
    assert lag[(shell >= 1) & (shell <= 3)].mean() == pytest.approx(np.exp(-every * dt / 0.05),
                                                                      abs=0.03)
    assert abs(lag[shell >= 5].mean()) < 0.03


class Draws:
    """Stand-in for ClosureSampler with distinct draws per member: returns base + noise and
    keeps what it returned."""

    def __init__(self, seed=0):
        self.conditions = ["vorticity", "measurements"]
        self.rng = np.random.default_rng(seed)
        self.returned, self.ensembles = [], []

    def sample(self, sampler, vorticity, measurements=None, smagorinsky=None, *, ensemble=1,
               generator=None):
        b, n = np.shape(vorticity)[0], np.shape(vorticity)[-1]
        out = np.asarray(measurements)[:, None] + self.rng.standard_normal((b, ensemble, n, n))
        self.returned.append(out)
        self.ensembles.append(ensemble)
        return out


def test_diffusion_mean_is_one_member_holding_the_mean_of_its_samples():
    from diffclosure.rollout import registry

    rng = np.random.default_rng(7)
    term = rng.standard_normal((3, N, N))
    cfg = rollout_cfg(dns_section(), "H", resample_every=4, mean_samples=8,
                      hold="reuse_noise", hold_noise=0.5)
    spec = registry.lookup("diffusion_mean")
    assert spec.needs_model and not spec.stochastic and "tau" not in spec.reads
    draws = Draws()
    closure = build_closure("diffusion_mean", cfg, lambda step: term, states=3,
                            sampler_obj=draws)
    w = rng.standard_normal((3, N, N))
    out = [closure.tendency(w, k, 0.0) for k in range(8)]
    assert draws.ensembles == [8, 8]  # one sampling of 8 per resample, every 4 steps
    np.testing.assert_allclose(out[0], draws.returned[0].mean(axis=1), atol=1e-12)
    # Held as it is, without the hold noise of the stochastic closure.
    assert all(np.array_equal(out[k], out[0]) for k in range(4))
    np.testing.assert_allclose(out[4], draws.returned[1].mean(axis=1), atol=1e-12)
    # The mean of 8 draws is nearer the conditional mean (the measurements) than one draw.
    assert np.std(out[0] - term) < 0.5 * np.std(draws.returned[0][:, 0] - term)


def test_inflation_scales_each_states_member_deviations_and_keeps_its_mean():
    S, M = 2, 4
    rng = np.random.default_rng(8)
    term = rng.standard_normal((S, N, N))

    def closure(inflation):
        meas = cl.Measurements(lambda k: term, {"lattice": N, "encoder": "interp", "noise": 0.0,
                                                "conv_width": 1.75}, N, 1.0,
                               np.random.default_rng(0))
        return cl.DiffusionClosure(Draws(seed=3), None, states=S, members=M, resample_every=1,
                                   hold="reuse", hold_std=0.0, measurements=meas,
                                   inflation=inflation)

    w = np.zeros((S * M, N, N))
    plain = closure(1.0).tendency(w, 0, 0.0).reshape(S, M, N, N)
    wide = closure(2.5).tendency(w, 0, 0.0).reshape(S, M, N, N)
    np.testing.assert_allclose(wide.mean(axis=1), plain.mean(axis=1), atol=1e-12)
    np.testing.assert_allclose(wide - wide.mean(axis=1, keepdims=True),
                               2.5 * (plain - plain.mean(axis=1, keepdims=True)), atol=1e-12)


def test_a_perturbed_ensemble_starts_apart_by_the_set_amplitude_and_is_reproducible():
    from diffclosure.rollout import registry
    from diffclosure.rollout.coupled import initial_perturbation

    spec = registry.lookup("leith_perturbed")
    assert spec.stochastic and spec.perturbed and not registry.lookup("leith").perturbed
    w0 = 3.0 * initial(states=2)
    p = initial_perturbation(w0, 4, 0.01, seed=5)
    assert p.shape == (8, N, N)
    np.testing.assert_allclose(p.mean(axis=(-2, -1)), 0.0, atol=1e-12)
    rms = np.sqrt(np.mean(p**2, axis=(-2, -1))).reshape(2, 4)
    want = 0.01 * np.sqrt(np.mean(w0**2, axis=(-2, -1)))
    np.testing.assert_allclose(rms, np.repeat(want[:, None], 4, axis=1))
    assert not np.allclose(p[0], p[1])  # each member its own perturbation
    np.testing.assert_array_equal(p, initial_perturbation(w0, 4, 0.01, seed=5))
    # The coupled run starts each member from its state plus its perturbation.
    res = run_coupled(ref.known_solver(dns_section(), N, "H"), w0, cl.NoClosure(), 2, 1,
                      members=4, perturbation=p)
    np.testing.assert_allclose(res.records[:, 0], np.repeat(w0, 4, axis=0) + p)


# ----------------------------------------------------------------------- coarse.noise: known
@pytest.mark.parametrize("target, part", [("H", "advection"), ("G", "viscous")])
def test_without_noise_from_a_dns_record_is_the_solvers_deterministic_part(target, part):
    """The coarse stage's G or H without noise, built from a record's w and H alone, is the
    euler_cn step's viscous or advection term: the split the known-noise target relies on."""
    from diffclosure.coarse.targets import without_noise

    dns = dns_section(n=N)
    solver = ref.full_solver(dns, N)
    w = initial()
    _, terms = solver.step(solver.from_physical(w), solver.sample_noise(ref.noise_generators(1, 2)),
                           terms=("H", target, part, "noise"))
    want = terms[part]
    assert np.abs(terms["noise"]).max() > 10 * np.abs(want).max() * 1e-6  # noise is there
    np.testing.assert_allclose(without_noise(terms[target], w, terms["H"]), want,
                               atol=1e-10 * np.abs(terms[target]).max())


def test_known_noise_split_with_the_references_streams_is_the_reference():
    """Known physics with the noise on, plus -u.grad w as the closure, plus the reference's
    own noise streams, is the full-physics reference step for step (euler_cn): the target
    without noise and the solver's noise add up to H exactly."""
    from diffclosure.solver.grid import advection

    dns = dns_section()
    w0, steps, stride = initial(), 40, 20
    reference = ref.run_reference(ref.full_solver(dns, N), w0, steps, stride,
                                  ref.noise_generators(7, 2), "H").records
    known = ref.known_solver(dns, N, "H", physical_noise=True)
    rngs = ref.noise_generators(7, 2)

    class Advection:
        name = "advection"

        def tendency(self, w, step, t):
            return -advection(Grid(N), np.asarray(w), dealias=True)

    res = run_coupled(known, w0, Advection(), steps, stride,
                      noise=lambda k: known.sample_noise(rngs))
    assert np.abs(res.records - reference).max() / np.abs(reference).max() < 1e-12
    # The rollout's physical noise draws its own streams, never the reference's.
    own = ref.PhysicalNoise(known, 7, 2, 1)
    theirs = ref.noise_generators(7, 2)
    first = own(0).copy()  # sample_noise reuses its buffer
    assert not np.allclose(first, known.sample_noise(theirs))


def test_the_coupled_runs_physical_noise_is_white_with_the_physical_law():
    """With nothing but the noise acting (nu ~ 0, no forcing, H's known physics, no closure),
    every step's increment has the variance of the full physics' noise term (the law), the
    increments are uncorrelated in time, and so the state's variance grows linearly, N times
    one step's: a noise held over the resampling interval would grow it quadratically."""
    dns = dns_section(nu=1e-12, forcing={"kind": "none"}, noise={"sigma": 0.5})
    S, M, steps = 2, 8, 40
    known = ref.known_solver(dns, N, "H", physical_noise=True)
    res = run_coupled(known, np.zeros((S, N, N)), cl.NoClosure(), steps, 1, members=M,
                      noise=ref.PhysicalNoise(known, 3, S, M))
    inc = np.diff(res.records, axis=1)  # (S*M, steps, n, n)
    # The law: the full solver's own noise term over as many independent draws.
    full = ref.full_solver(dns, N)
    rngs = [np.random.default_rng([11, i]) for i in range(S * M)]
    law = []
    state = full.from_physical(np.zeros((S * M, N, N)))
    for _ in range(steps):
        _, terms = full.step(state, full.sample_noise(rngs), terms=("noise",))
        law.append(terms["noise"] * dns["dt"])
    var_law = float(np.var(np.stack(law)))
    assert np.var(inc) == pytest.approx(var_law, rel=0.05)
    lag1 = np.mean(inc[:, 1:] * inc[:, :-1]) / np.mean(inc**2)
    assert abs(lag1) < 0.03
    total = res.records[:, -1] - res.records[:, 0]
    assert np.var(total) == pytest.approx(steps * var_law, rel=0.1)
    # members are independent draws
    assert np.abs(res.records[0, -1] - res.records[1, -1]).max() > 0
