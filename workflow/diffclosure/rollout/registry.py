"""The closures a rollout can couple, by name (rollout.closures, ``--closure``): one entry each.

Every place that treats one closure differently from another asks this registry instead of
comparing names: the rules (inputs, the rollout settings a job receives, the GPU resource),
the rollout stage (the model it loads), :func:`~diffclosure.rollout.coupled.run_rollout`
(building the closure, members, timing, extra attributes), the figures (colours) and the
report (the animation). The schema's enum of rollout.closures lists the same names, in this
order (tests/rollout/test_registry.py holds them equal). A new closure is one builder function plus
one :class:`Closure` entry in :data:`REGISTRY`.

The closures (objects in rollout/closures.py):

- ``none``: no term (the paper's "without closure").
- ``true``: the oracle. G/H: the reference's own term, recomputed exactly each step from the
  rollout's current state: a full-physics step of that state, driven by the reference's noise
  realisation (the same per-state generators, drawn in the same order), returns its G or H
  contribution. With euler_cn the coupled step then solves the very equation of the reference
  step, so the rollout reproduces the reference to round-off (a test proves it). sgs: the
  filtered-DNS -Pi at the nearest earlier DNS record, held in between.
- ``diffusion``: the learned model (DiffusionClosure), resampled every rollout.resample_every
  steps for the whole ensemble at once, held in between.
- ``diffusion_mean``: the learned model made deterministic, the baseline that says what its
  noise buys: one member whose term is the mean of rollout.mean_samples samples (MeanOfSamples).
- ``measurements`` (MeasuredClosure): no model, the closure term is the encoded sparse
  measurements of the reference's true term, exactly what the learned closure is conditioned on
  (same lattice, encoder, noise and steps). What the model adds over its input.
- ``<classical>_perturbed``: rollout.ensemble members of that classical closure from initial
  states perturbed by random fields of rms rollout.perturbation times the state's: the
  perturbed-initial-condition ensemble of ensemble forecasting.
- ``smagorinsky``, ``leith``, ``dynamic_smagorinsky`` (ClassicalClosure): for sgs the
  eddy-viscosity tendency -Pi_model of the coarse state. For G and H, the term is not a subgrid
  term but a whole missing physical process, so the classical closure supplies what a classical
  LES would compute for it: the process's deterministic coarse-grid physics (nu lap w for G;
  -dealiased u.grad w for H) plus the eddy-viscosity tendency -Pi_model for the unresolved
  scales. The stochastic forcing has no classical model and is left out (under coarse.noise
  known the coarse solver adds the physical noise, as for every non-oracle closure). This is
  the honest baseline: the coarse simulation a practitioner would run without a learned closure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from diffclosure.config import ConfigError, intrinsic_problem, measurements_baseline_problem
from diffclosure.rollout import closures as cl
from diffclosure.rollout import reference as ref


@dataclass
class Context:
    """Everything a builder may use, gathered by run_rollout once the reference exists.

    ``true_term(step)`` is the reference's true term (S, n, n) at that step: for sgs at every
    step (the filtered DNS's Pi of the nearest earlier record), for G/H only at the resampling
    steps and only when the closure is ``measured`` and rollout.measurements is on (the
    reference records nothing else). ``pi`` and ``steps_per_record`` exist for sgs only.
    """

    name: str
    cfg: dict
    stats: dict
    true_term: Callable[[int], np.ndarray]
    states: int
    members: int
    threads: int = 1
    device: object = None
    sampler_obj: object = None
    generator: object = None
    pi: np.ndarray | None = None
    steps_per_record: int | None = None

    @property
    def target(self) -> str:
        return self.cfg["coarse"]["target"]

    @property
    def sign(self) -> float:
        """How the target enters the coarse equation (-Pi for sgs)."""
        return cl.target_sign(self.target, self.cfg["coarse"]["g_split"])

    def measurements(self) -> cl.Measurements:
        """The sparse measurements of the true term that condition the learned closure.

        A fresh generator of a fixed seed each call: the `measurements` baseline and the
        learned closure thus see the very same measurement noise.
        """
        rng = np.random.default_rng(np.random.SeedSequence([self.cfg["rollout"]["seed"], 0xA11, 1]))
        return cl.Measurements(self.true_term, self.cfg["measurements"], self.cfg["coarse"]["n"],
                               float(self.stats["target"]["std"]), rng)


def _one_step(ro: dict) -> int:
    return 1


def _no_problem(cfg: dict) -> str | None:
    return None


def _no_attrs(closure) -> dict:
    return {}


@dataclass(frozen=True)
class Closure:
    """One closure: how to build it and what its rollout job needs.

    - ``build(ctx)``: the closure object (the cost contract in rollout/closures.py).
    - ``gpu``: the rule asks for a GPU unless the config's device is cpu.
    - ``reads``: the rollout settings only some closures read that this one reads. The rules
      give a job only those of them its closure reads, so a change to one reruns only the
      jobs that read it. What a closure reads also says what it is (properties, so that the
      two can never disagree):
      ``stochastic`` (reads ensemble): run with rollout.ensemble members per initial state
      (otherwise one); ``needs_model`` (reads sampler): the job reads the trained model
      (score.pt, or onestep.pt when rollout.sampler is onestep) and the stage hands its
      sampler to the builder; ``measured`` (reads measurements): conditioned on sparse
      measurements of the true term, so with rollout.measurements on the reference records
      the term at every resampling step.
    - ``warmup(rollout section)``: the first coupled steps left out of the timing (plans,
      first sample, device initialisation).
    - ``check(cfg)``: a problem of the configuration for this closure (a message) or None,
      raised before any work.
    - ``attrs(closure object)``: extra attributes of the rollout file.
    - ``colour``: the closure's colour in every figure.
      ``perturbed`` (reads perturbation): its members start from perturbed initial states.
    - ``oracle``: the closure reads the reference's true term as it runs, or is the exact
      physics itself (``intrinsic``); scored, but left out of the rankings.
    """

    name: str
    build: Callable[[Context], object]
    colour: str = "tab:gray"
    gpu: bool = False
    reads: tuple[str, ...] = ()
    warmup: Callable[[dict], int] = field(default=_one_step)
    check: Callable[[dict], str | None] = field(default=_no_problem)
    attrs: Callable[[object], dict] = field(default=_no_attrs)
    oracle: bool = False

    @property
    def perturbed(self) -> bool:
        """A perturbed-initial-condition ensemble (reads perturbation): its members start from
        the initial state plus rollout.perturbation's random fields
        (coupled.initial_perturbation)."""
        return "perturbation" in self.reads

    @property
    def stochastic(self) -> bool:
        return "ensemble" in self.reads

    @property
    def needs_model(self) -> bool:
        return "sampler" in self.reads

    @property
    def measured(self) -> bool:
        return "measurements" in self.reads


def _none(ctx: Context):
    return cl.NoClosure()


def _oracle(ctx: Context):
    if ctx.target == "sgs":
        return cl.OracleSgs(ctx.pi, ctx.steps_per_record)
    dns, coarse = ctx.cfg["dns"], ctx.cfg["coarse"]
    return cl.OracleGH(ref.full_solver(dns, coarse["n"], threads=ctx.threads, device=ctx.device),
                       ref.noise_generators(ctx.cfg["rollout"]["seed"], ctx.states), ctx.target,
                       coarse["g_split"])


def _intrinsic(ctx: Context):
    """The true G or H with independent physical-noise streams per member: the members differ
    only by the physics' own noise, as the reference differs from each of them."""
    dns, coarse, ro = ctx.cfg["dns"], ctx.cfg["coarse"], ctx.cfg["rollout"]
    oracle = cl.OracleGH(ref.full_solver(dns, coarse["n"], threads=ctx.threads,
                                         device=ctx.device),
                         ref.member_noise_generators(ro["seed"], ctx.states, ctx.members),
                         ctx.target, coarse["g_split"])
    oracle.name = ctx.name
    return oracle


def _intrinsic_problem(cfg: dict) -> str | None:
    return intrinsic_problem(cfg["dns"], cfg["coarse"])


def _learned(ctx: Context):
    dns, coarse, ro = ctx.cfg["dns"], ctx.cfg["coarse"], ctx.cfg["rollout"]
    target_std = float(ctx.stats["target"]["std"])
    measurements = ctx.measurements() if ro["measurements"] else None
    generator = _sampler_generator(ctx)
    from diffclosure.sampling.noise_source import CorrelatedNoise, rho_for
    from diffclosure.sampling.samplers import make_sampler

    for key in ("tau", "inflation"):
        if not isinstance(ro[key], (int, float)):
            raise ConfigError(f"rollout.{key}: auto must be resolved to the measured value "
                              "before the closure is built (stages.rollout.resolve_calibration)")
    interval = ro["resample_every"] * dns["dt"]
    shells = ro.get("tau_shells")  # measured per scale (rollout.tau_per_shell)
    if ro["tau"] > 0 or shells:  # the sampler's draws as AR(1) processes across samplings
        rho = rho_for(ro["tau"], interval) if ro["tau"] > 0 else 0.0
        generator = CorrelatedNoise(generator, rho, rho_shells=None if not shells else [
            rho_for(t, interval) if t > 0 else 0.0 for t in shells])

    return cl.DiffusionClosure(
        ctx.sampler_obj, make_sampler(dict(ro["sampler"]), where="rollout.sampler"),
        states=ctx.states, members=ctx.members, resample_every=ro["resample_every"],
        hold=ro["hold"], hold_std=ro["hold_noise"] * target_std, measurements=measurements,
        sign=ctx.sign, smagorinsky=cl.smagorinsky_condition(ctx.target, coarse, dns["length"]),
        generator=generator, inflation=ro["inflation"],
        rng=np.random.default_rng(np.random.SeedSequence([ro["seed"], 0xA11, 2])),
        name=ctx.name,
    )


def _learned_mean(ctx: Context):
    """diffusion_mean: one member, the mean of rollout.mean_samples samples at every
    resampling, held without noise; its draws are independent across samplings."""
    dns, coarse, ro = ctx.cfg["dns"], ctx.cfg["coarse"], ctx.cfg["rollout"]
    from diffclosure.sampling.samplers import make_sampler

    return cl.DiffusionClosure(
        cl.MeanOfSamples(ctx.sampler_obj, ro["mean_samples"]),
        make_sampler(dict(ro["sampler"]), where="rollout.sampler"),
        states=ctx.states, members=ctx.members, resample_every=ro["resample_every"],
        hold="reuse", hold_std=0.0,
        measurements=ctx.measurements() if ro["measurements"] else None, sign=ctx.sign,
        smagorinsky=cl.smagorinsky_condition(ctx.target, coarse, dns["length"]),
        generator=_sampler_generator(ctx), name=ctx.name)


def _sampler_generator(ctx: Context):
    """The learned closures' torch generator: the context's, or one on the sampler's device
    seeded with rollout.seed."""
    if ctx.generator is not None:
        return ctx.generator
    import torch  # only the learned closures need it

    dev = getattr(ctx.sampler_obj, "device", "cpu")
    return torch.Generator(device=dev).manual_seed(int(ctx.cfg["rollout"]["seed"]))


def _measured(ctx: Context):
    return cl.MeasuredClosure(ctx.measurements(), ctx.cfg["rollout"]["resample_every"], ctx.sign)


def _classical(ctx: Context):
    dns, coarse = ctx.cfg["dns"], ctx.cfg["coarse"]
    name = ctx.name.removesuffix(PERTURBED)  # the ensemble's members share their closure
    return cl.ClassicalClosure(name, ctx.target, coarse, dns["nu"], dns["length"], coarse["n"])


PERTURBED = "_perturbed"


def _resample_interval(ro: dict) -> int:
    # The first interval holds the first model call (and the device's start-up): not timed.
    return ro["resample_every"]


def _sample_calls(closure) -> dict:
    return {"sample_calls": closure.sample_calls}


def _measurements_problem(cfg: dict) -> str | None:
    return measurements_baseline_problem(cfg["measurements"], cfg["rollout"])


REGISTRY: dict[str, Closure] = {c.name: c for c in (
    Closure("none", _none, colour="tab:red"),
    Closure("true", _oracle, colour="tab:green", oracle=True),
    # The intrinsic spread: rollout.ensemble members of the exact physics, each with its own
    # noise; what no closure's ensemble can beat (G and H only).
    Closure("intrinsic", _intrinsic, colour="lightgreen", oracle=True, reads=("ensemble",),
            check=_intrinsic_problem),
    Closure("diffusion", _learned, colour="tab:blue", gpu=True, warmup=_resample_interval,
            attrs=_sample_calls, reads=("sampler", "resample_every", "hold", "hold_noise",
                                        "ensemble", "measurements", "bf16", "tau", "tau_per_shell",
                                        "inflation", "calibration")),
    Closure("diffusion_mean", _learned_mean, colour="navy", gpu=True,
            warmup=_resample_interval, attrs=_sample_calls,
            reads=("sampler", "resample_every", "measurements", "bf16", "mean_samples")),
    Closure("measurements", _measured, colour="tab:cyan",
            reads=("resample_every", "measurements"), check=_measurements_problem),
    Closure("smagorinsky", _classical, colour="tab:orange"),
    Closure("leith", _classical, colour="tab:purple"),
    Closure("dynamic_smagorinsky", _classical, colour="tab:brown"),
    # Perturbed-initial-condition ensembles of the classical closures: the standard
    # ensemble-forecast baseline for what a stochastic closure's spread is worth.
    *(Closure(f"{name}{PERTURBED}", _classical, colour=colour, reads=("ensemble", "perturbation"))
      for name, colour in (("smagorinsky", "moccasin"), ("leith", "plum"),
                           ("dynamic_smagorinsky", "rosybrown"))),
)}


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def lookup(name: str) -> Closure:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"--closure: unknown closure {name!r}; choose one of {', '.join(REGISTRY)}"
        ) from None


def members(name: str, ensemble: int) -> int:
    """Ensemble members a closure is run with: only a stochastic closure has more than one."""
    return int(ensemble) if lookup(name).stochastic else 1


def selective_settings() -> frozenset[str]:
    """The rollout settings that some closure reads and others do not (the union of reads)."""
    return frozenset(k for c in REGISTRY.values() for k in c.reads)


def learned() -> str:
    """The learned closure, the first that needs the trained model: the report animates it
    beside ``none``."""
    return next(c.name for c in REGISTRY.values() if c.needs_model)


def build(ctx: Context):
    """The closure object of ``ctx.name``."""
    return lookup(ctx.name).build(ctx)
