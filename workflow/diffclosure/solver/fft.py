"""Real 2-D FFT backends behind one tiny interface: ``pyfftw`` (default), ``numpy``, ``torch``.

Every backend transforms the last two axes of a batch of real fields (..., n, n) indexed
[y, x] into the real-FFT layout (..., n, n//2 + 1), with NumPy's conventions
(forward unnormalised: ``w_hat = sum_j w_j exp(-i k.x_j)``). Two ways to use one:

* ``rfft2(x)`` / ``irfft2(X, n)``: allocating, numpy-compatible (``irfft2`` divides by n^2).
  For occasional use (records, diagnostics, closures).
* ``plan_rfft2(batch, n)`` / ``plan_irfft2(batch, n)``: an :class:`FFTPlan` owning aligned
  ``input`` and ``output`` buffers; ``execute()`` transforms ``input`` into ``output`` with no
  normalisation at all (the inverse returns n^2 times numpy's ``irfft2``), so a caller can fold
  the 1/n^2 into spectral multipliers it applies anyway. The inverse may destroy ``input``.
  This is the hot path of the solver: no allocation, no copy.

Array helpers (``empty``, ``zeros``, ``asarray``, ``to_numpy``, ``max_abs``, ``all_finite``)
hide whether arrays are NumPy arrays or torch tensors; ``xp`` is the array module (numpy or
torch) whose ``multiply/add/subtract(a, b, out=c)`` the solver uses for fused in-place work.

Reproducibility: the pyfftw backend executes one 2-D plan per trajectory (the leading batch
axis is looped over, each item with the same plan), so a trajectory gets the same bits
whatever batch it sits in. FFTW_MEASURE/PATIENT choose plans by timing; the chosen plans are
stored as FFTW "wisdom" in a cache file (default ``~/.cache/diffclosure/fftw-wisdom.pickle``,
overridden by the environment variable ``DIFFCLOSURE_FFTW_WISDOM``), loaded before planning,
so planning is paid once per machine and later runs reuse the same plans (hence the same bits).
Runs on different machines, or a first run racing another on a fresh machine, may pick other
plans and differ at round-off level; ``planner="FFTW_ESTIMATE"`` or the numpy backend avoids
timing-based choices altogether.
"""

from __future__ import annotations

import logging
import os
import pickle
import threading
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

WISDOM_ENV = "DIFFCLOSURE_FFTW_WISDOM"
PLANNERS = ("FFTW_ESTIMATE", "FFTW_MEASURE", "FFTW_PATIENT", "FFTW_EXHAUSTIVE")
BACKENDS = ("pyfftw", "numpy", "torch")


def wisdom_path() -> Path:
    """Where FFTW wisdom is cached: $DIFFCLOSURE_FFTW_WISDOM or ~/.cache/diffclosure/."""
    env = os.environ.get(WISDOM_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "diffclosure" / "fftw-wisdom.pickle"


def _spectral_shape(batch: tuple[int, ...], n: int) -> tuple[int, ...]:
    return (*batch, n, n // 2 + 1)


class FFTPlan:
    """A planned, unnormalised transform between two preallocated buffers.

    ``input`` and ``output`` are backend arrays; write into ``input`` (e.g. with ``out=``),
    call ``execute()``, read ``output``. The inverse direction may overwrite ``input``.
    """

    def __init__(self, input, output, run):
        self.input = input
        self.output = output
        self._run = run

    def execute(self):
        self._run()
        return self.output


class Backend:
    """Common interface; subclasses provide the arrays and the transforms."""

    name = "base"
    xp = np
    is_torch = False
    device = None

    # -- arrays -----------------------------------------------------------------------
    def empty(self, shape, complex_: bool = False):
        return np.empty(shape, dtype=np.complex128 if complex_ else np.float64)

    def zeros(self, shape, complex_: bool = False):
        out = self.empty(shape, complex_)
        out[...] = 0
        return out

    def asarray(self, a, complex_: bool = False):
        """A backend array (float64 or complex128) holding a copy of `a`."""
        dtype = np.complex128 if complex_ else np.float64
        if _is_tensor(a):
            a = a.detach().cpu().numpy()
        return np.array(a, dtype=dtype, copy=True)

    def to_numpy(self, a) -> np.ndarray:
        return np.asarray(a)

    def max_abs(self, a) -> float:
        return float(np.max(np.abs(a)))

    def all_finite(self, a) -> bool:
        return bool(np.isfinite(a).all())

    # -- transforms -------------------------------------------------------------------
    def plan_rfft2(self, batch: tuple[int, ...], n: int) -> FFTPlan:
        raise NotImplementedError

    def plan_irfft2(self, batch: tuple[int, ...], n: int) -> FFTPlan:
        raise NotImplementedError

    def rfft2(self, x):
        """Forward real FFT over the last two axes (numpy convention, unnormalised)."""
        raise NotImplementedError

    def irfft2(self, X, n: int):
        """Inverse real FFT over the last two axes, normalised like numpy.fft.irfft2."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def _is_tensor(a) -> bool:
    return type(a).__module__.startswith("torch")


class NumpyBackend(Backend):
    """numpy.fft (pocketfft): always available, no planning, one thread."""

    name = "numpy"

    def plan_rfft2(self, batch, n):
        inp = self.empty((*batch, n, n))
        out = self.empty(_spectral_shape(batch, n), complex_=True)
        return FFTPlan(inp, out, lambda: np.fft.rfft2(inp, axes=(-2, -1), out=out))

    def plan_irfft2(self, batch, n):
        inp = self.empty(_spectral_shape(batch, n), complex_=True)
        out = self.empty((*batch, n, n))
        def run():
            # Two 1-D passes, in place on the (destroyable) input: numpy's irfft2 ignores
            # `out` (numpy 2.4 returns a new array). norm="forward" = no 1/n on the inverse.
            np.fft.ifft(inp, axis=-2, norm="forward", out=inp)
            np.fft.irfft(inp, n=n, axis=-1, norm="forward", out=out)

        return FFTPlan(inp, out, run)

    def rfft2(self, x):
        return np.fft.rfft2(np.asarray(x, dtype=np.float64), axes=(-2, -1))

    def irfft2(self, X, n):
        return np.fft.irfft2(X, s=(n, n), axes=(-2, -1))


class PyFFTWBackend(NumpyBackend):
    """FFTW through pyfftw: planned real transforms on SIMD-aligned buffers, wisdom cached.

    One FFTW plan per 2-D transform, executed item by item over the batch (see the module
    docstring, "Reproducibility"); the per-call overhead is a few microseconds.
    """

    name = "pyfftw"
    _wisdom_lock = threading.Lock()
    _wisdom_loaded = False
    _wisdom_saved: tuple | None = None

    def __init__(self, threads: int = 1, planner: str = "FFTW_MEASURE"):
        import pyfftw  # imported here so the other backends work without it

        if planner not in PLANNERS:
            raise ValueError(f"FFTW planner must be one of {', '.join(PLANNERS)}, got {planner!r}")
        if int(threads) < 1:
            raise ValueError(f"FFT threads must be >= 1, got {threads}")
        self._pyfftw = pyfftw
        self.threads = int(threads)
        self.planner = planner
        self._flags = (planner, "FFTW_DESTROY_INPUT")
        self._generic: dict = {}
        self._load_wisdom()

    # -- wisdom -----------------------------------------------------------------------
    @classmethod
    def _load_wisdom(cls):
        import pyfftw

        with cls._wisdom_lock:
            if cls._wisdom_loaded:
                return
            cls._wisdom_loaded = True
            path = wisdom_path()
            if not path.exists():
                return
            try:
                with open(path, "rb") as fh:
                    wisdom = pickle.load(fh)
                pyfftw.import_wisdom(wisdom)
                cls._wisdom_saved = tuple(wisdom)
                log.debug("loaded FFTW wisdom from %s", path)
            except Exception as exc:  # a stale or corrupt cache only costs planning time
                log.warning("ignoring unreadable FFTW wisdom file %s (%s); it will be rewritten",
                            path, exc)

    @classmethod
    def _save_wisdom(cls):
        """Write the wisdom file if planning learnt something new (atomic rename)."""
        import pyfftw

        from diffclosure.atomic import atomic_path

        with cls._wisdom_lock:
            wisdom = tuple(pyfftw.export_wisdom())
            if wisdom == cls._wisdom_saved:
                return
            path = wisdom_path()
            try:
                with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                    pickle.dump(wisdom, fh)
                cls._wisdom_saved = wisdom
                log.debug("saved FFTW wisdom to %s", path)
            except OSError as exc:
                log.warning("could not write FFTW wisdom to %s (%s); set %s to a writable path",
                            path, exc, WISDOM_ENV)

    # -- arrays -----------------------------------------------------------------------
    def empty(self, shape, complex_: bool = False):
        return self._pyfftw.empty_aligned(shape, dtype=np.complex128 if complex_ else np.float64)

    def asarray(self, a, complex_: bool = False):
        out = self.empty(np.shape(a), complex_)
        if _is_tensor(a):
            a = a.detach().cpu().numpy()
        out[...] = a
        return out

    # -- transforms -------------------------------------------------------------------
    def _plan(self, inp, out, direction):
        """One FFTW object per item of the leading batch axes, all sharing one plan."""
        items_in = inp.reshape(-1, *inp.shape[-2:])
        items_out = out.reshape(-1, *out.shape[-2:])
        if not (np.shares_memory(items_in, inp) and np.shares_memory(items_out, out)):
            raise RuntimeError("FFT buffers must be views over one allocation")
        objs = [
            self._pyfftw.FFTW(
                a, b, axes=(-2, -1), direction=direction, flags=self._flags, threads=self.threads
            )
            for a, b in zip(items_in, items_out, strict=True)
        ]
        if self.planner != "FFTW_ESTIMATE":
            self._save_wisdom()
        execs = [o.execute for o in objs]

        def run():
            for e in execs:
                e()

        return run

    def _batched(self, batch, shape, complex_):
        """A (*batch, *shape) array whose items each start on a 64-byte boundary.

        Items are padded apart when their size is not a multiple of the alignment, so every
        item has the same alignment and hence the same FFTW plan (same bits for every slot).
        """
        dtype = np.dtype(np.complex128 if complex_ else np.float64)
        align = max(64, self._pyfftw.simd_alignment)
        count = int(np.prod(batch, dtype=np.int64))
        per = int(np.prod(shape))
        per_pad = -(-per * dtype.itemsize // align) * align // dtype.itemsize
        flat = self._pyfftw.empty_aligned(max(count, 1) * per_pad, dtype=dtype, n=align)
        inner = np.empty(shape, dtype=dtype).strides
        items = np.lib.stride_tricks.as_strided(
            flat, shape=(count, *shape), strides=(per_pad * dtype.itemsize, *inner)
        )
        return items.reshape(*batch, *shape)

    def plan_rfft2(self, batch, n):
        # Planning with MEASURE scribbles on the buffers; they are blank scratch here.
        inp, out = self._batched(batch, (n, n), False), self._batched(batch, (n, n // 2 + 1), True)
        return FFTPlan(inp, out, self._plan(inp, out, "FFTW_FORWARD"))

    def plan_irfft2(self, batch, n):
        inp, out = self._batched(batch, (n, n // 2 + 1), True), self._batched(batch, (n, n), False)
        return FFTPlan(inp, out, self._plan(inp, out, "FFTW_BACKWARD"))

    def _generic_plan(self, kind, batch, n):
        key = (kind, batch, n)
        plan = self._generic.get(key)
        if plan is None:
            plan = (self.plan_rfft2 if kind == "r2c" else self.plan_irfft2)(batch, n)
            self._generic[key] = plan
        return plan

    def rfft2(self, x):
        x = np.asarray(x)
        n = x.shape[-1]
        plan = self._generic_plan("r2c", x.shape[:-2], n)
        plan.input[...] = x
        return plan.execute().copy()

    def irfft2(self, X, n):
        X = np.asarray(X)
        plan = self._generic_plan("c2r", X.shape[:-2], n)
        plan.input[...] = X
        out = plan.execute()
        return out * (1.0 / (n * n))


class TorchBackend(Backend):
    """torch.fft on CPU or CUDA, float64/complex128 tensors on `device`."""

    name = "torch"
    is_torch = True

    def __init__(self, device=None, threads: int | None = None):
        import torch

        self._torch = torch
        self.xp = torch
        self.device = torch.device(device if device is not None else "cpu")
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"torch device {self.device} requested but CUDA is not available")
        self.threads = threads

    def empty(self, shape, complex_: bool = False):
        t = self._torch
        return t.empty(shape, dtype=t.complex128 if complex_ else t.float64, device=self.device)

    def asarray(self, a, complex_: bool = False):
        t = self._torch
        dtype = t.complex128 if complex_ else t.float64
        if _is_tensor(a):
            return a.to(device=self.device, dtype=dtype).clone()
        return t.as_tensor(np.asarray(a), device=self.device).to(dtype).clone()

    def to_numpy(self, a) -> np.ndarray:
        if _is_tensor(a):
            return a.detach().cpu().numpy()
        return np.asarray(a)

    def max_abs(self, a) -> float:
        return float(a.abs().max().item())

    def all_finite(self, a) -> bool:
        return bool(self._torch.isfinite(a).all().item())

    def plan_rfft2(self, batch, n):
        t = self._torch
        inp = self.empty((*batch, n, n))
        out = self.empty(_spectral_shape(batch, n), complex_=True)
        return FFTPlan(inp, out, lambda: t.fft.rfft2(inp, dim=(-2, -1), out=out))

    def plan_irfft2(self, batch, n):
        t = self._torch
        inp = self.empty(_spectral_shape(batch, n), complex_=True)
        out = self.empty((*batch, n, n))
        return FFTPlan(
            inp, out, lambda: t.fft.irfft2(inp, s=(n, n), dim=(-2, -1), norm="forward", out=out)
        )

    def rfft2(self, x):
        return self._torch.fft.rfft2(self.asarray(x) if not _is_tensor(x) else x, dim=(-2, -1))

    def irfft2(self, X, n):
        X = X if _is_tensor(X) else self.asarray(X, complex_=True)
        return self._torch.fft.irfft2(X, s=(n, n), dim=(-2, -1))


def get_backend(
    name: str = "pyfftw", *, threads: int = 1, planner: str = "FFTW_MEASURE", device=None
) -> Backend:
    """Build a backend by name: "pyfftw" (threads, planner), "numpy", "torch" (device)."""
    if name == "pyfftw":
        return PyFFTWBackend(threads=threads, planner=planner)
    if name == "numpy":
        return NumpyBackend()
    if name == "torch":
        return TorchBackend(device=device, threads=threads)
    raise ValueError(f"unknown FFT backend {name!r}; choose one of {', '.join(BACKENDS)}")
