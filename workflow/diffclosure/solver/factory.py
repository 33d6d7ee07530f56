"""Every solver of the package from a validated ``dns`` config section, and its device.

    solver_for(dns, n=None, physics=navier_stokes, *, noise=True, forcing=None,
               threads=None, backend=None, device="auto")

builds the ``physics`` equation (a constructor of :mod:`diffclosure.solver.equation`) with the
section's nu, drag, forcing (dns.forcing evaluated on the n-grid, or the `forcing` field given,
e.g. a filtered one) and noise (dns.noise; none when `noise` is False), stepped by dns.scheme
on dns.backend (or `backend`) with dns.planner, dns.cfl_max and dns.check_every, on an n-grid
(default dns.n) of side dns.length, with `threads` FFT threads (default dns.threads).

Device policy (:func:`solver_device`), one for every stage: the pyfftw and numpy backends keep
their arrays on the host whatever `device` says; the torch backend runs on the config's
`device` resolved by :func:`diffclosure.devices.resolve_device` (auto = CUDA when torch sees a
GPU, else the CPU; cpu is honoured even with a GPU present; cuda without one is a ConfigError
naming `device`). The rollouts pass the config's top-level `device`; the DNS stage, whose
rule hands it the dns section only (the device is not a part of the science), runs with auto.
"""

from __future__ import annotations

from collections.abc import Callable

from diffclosure.solver.equation import navier_stokes
from diffclosure.solver.forcing import make_forcing
from diffclosure.solver.grid import Grid
from diffclosure.solver.navier_stokes import Solver
from diffclosure.solver.noise import NoiseSpec


def solver_device(backend: str, device="auto"):
    """The device of a solver on `backend` (module docstring): None (host arrays) for pyfftw
    and numpy, a torch.device for torch; `device` is a config value, a torch.device, or None
    (auto)."""
    if backend != "torch":
        return None
    from diffclosure.devices import resolve_device  # imports torch: only when needed

    return resolve_device("auto" if device is None else str(device))


def dns_forcing(dns: dict, grid: Grid):
    """dns.forcing evaluated on `grid` (None for kind none)."""
    f = dns["forcing"]
    return make_forcing(f["kind"], grid, f["amplitude"], f["wavenumber"], f["symmetric"])


def solver_for(dns: dict, n: int | None = None, physics: Callable = navier_stokes, *,
               noise: bool = True, forcing=None, threads: int | None = None,
               backend: str | None = None, device="auto") -> Solver:
    """The solver of a validated dns section (module docstring)."""
    n = dns["n"] if n is None else int(n)
    backend = backend or dns["backend"]
    nz = dns["noise"]
    return Solver(
        n, dns["length"], dns["nu"], dns["dt"], drag=dns["drag"],
        forcing=dns_forcing(dns, Grid(n, dns["length"])) if forcing is None else forcing,
        noise=NoiseSpec(nz["sigma"], nz["alpha"], nz["kappa"]) if noise else None,
        physics=physics, scheme=dns["scheme"], backend=backend,
        threads=threads or dns["threads"], planner=dns["planner"],
        device=solver_device(backend, device),
        cfl_max=dns["cfl_max"], check_every=dns["check_every"],
    )
