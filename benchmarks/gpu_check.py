"""One GPU check: everything worth knowing about the GPU path in one command and one table.

    python benchmarks/gpu_check.py [--budget-s 420] [--threads 1] [--quick]

Rows, each with a status (ran / skipped (reason) / failed (error)):

- tests: the suite's CUDA and device tests (tests that mention CUDA, selected with
  ``-k "cuda or gpu or device"``; slow and SLURM tests excluded), run by pytest in a subprocess
  with a timeout: pass/fail counts;
- solver: one full DNS step at 256^2 (rollout.coupled.dns_cost, batch 1, float64), pyfftw
  against the torch backend on the CPU and on the GPU, ms per step;
- training: samples/s of a DSM training step and of the forward pass (benchmarks/training.py)
  at the paper's model size and 64^2, batch 200, on the GPU in fp32 and bf16; on the CPU the
  default config's model at 32^2, batch 8;
- sampler: latency per network evaluation of DPM-Solver++(2M) 4 steps through the rollout's
  ClosureSampler, batch 1 and 64 (paper network at 64^2 on the GPU, the default model at 32^2 on
  the CPU);
- break-even: benchmarks/breakeven.py on the GPU with one repeat per row.

Without a CUDA device the GPU rows are skipped with that reason and the CPU rows run. The whole
check keeps within --budget-s seconds (default 420, under the 8 minutes it is allowed): a section
whose estimated cost exceeds what is left is skipped with reason "budget". --quick shrinks every
size (a smoke run for the tests).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import training  # noqa: E402
from breakeven import (  # noqa: E402
    TINY_MODEL,
    Settings,
    label,
    learned_sampler,
    realistic_state,
    run,
)

from diffclosure import config as cfgmod  # noqa: E402
from diffclosure.rollout.coupled import dns_cost  # noqa: E402
from diffclosure.sampling.samplers import make_sampler  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NO_CUDA = "no CUDA device"


class Check:
    """The table and the clock: each section asks for its estimated seconds before it runs."""

    def __init__(self, budget_s: float):
        self.start, self.budget, self.rows = time.perf_counter(), budget_s, []

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.start)

    def add(self, section: str, what: str, result: str, status: str = "ran") -> None:
        self.rows.append((section, what, result, status))

    def section(self, section: str, items: list[str], estimate_s: float, needs_cuda: bool, fn):
        """Run fn() -> [(what, result)], or record every item as skipped / failed."""
        reason = None
        if needs_cuda and not torch.cuda.is_available():
            reason = NO_CUDA
        elif self.left() < estimate_s:
            reason = "budget"
        if reason:
            for what in items:
                self.add(section, what, "", f"skipped ({reason})")
            return
        try:
            for what, result in fn():
                self.add(section, what, result)
        except Exception as exc:  # a broken section must not hide the rest of the table
            msg = f"{type(exc).__name__}: {exc}".splitlines()[0][:90]
            for what in items:
                self.add(section, what, "", f"failed ({msg})")

    def table(self) -> str:
        head = ("section", "what", "result", "status")
        widths = [max(len(r[i]) for r in [head, *self.rows]) for i in range(4)]
        lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                 for r in [head, *self.rows]]
        lines.insert(1, "-+-".join("-" * w for w in widths))
        return "\n".join(lines)

    @property
    def failed(self) -> bool:
        return any(r[3].startswith("failed") for r in self.rows)


# ----------------------------------------------------------------------------- sections
def test_files(quick: bool) -> list[str]:
    """Test modules that mention CUDA (the device tests alone in quick mode)."""
    if quick:
        return ["tests/package/test_devices.py"]
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")
                  if re.search("cuda", p.read_text(), re.IGNORECASE))


def pytest_counts(output: str) -> dict[str, int]:
    """{'passed': 3, 'failed': 1, ...} from pytest's summary line."""
    return {k: int(v) for v, k in re.findall(
        r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected)", output)}


def run_tests(quick: bool, timeout_s: float):
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           "-m", "not slow and not slurm", "-k", "cuda or gpu or device", *test_files(quick)]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"pytest did not finish within {timeout_s:.0f} s") from None
    counts = pytest_counts(proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "")
    if not counts:
        raise RuntimeError(f"pytest exited {proc.returncode} without a summary")
    where = "on the GPU" if torch.cuda.is_available() else "CUDA faked absent/present"
    result = (f"{counts.get('passed', 0)} passed, {counts.get('failed', 0)} failed, "
              f"{counts.get('error', 0) + counts.get('errors', 0)} errors ({where})")
    if proc.returncode not in (0, 5):
        raise RuntimeError(result)
    return [("CUDA / device tests", result)]


def solver_ms(backend: str, device, n: int, threads: int) -> float:
    """ms per full DNS step at n^2, batch 1."""
    dns = cfgmod.load({"dns": {"n": n, "backend": backend, "threads": threads}},
                      sections=["dns"])["dns"]
    w = realistic_state(dns, n)
    best = min(dns_cost(dns, w, steps=10, threads=threads, device=device) for _ in range(3))
    return 1e3 * best * dns["dt"]


def solver_rows(n: int, threads: int, backends):
    base = solver_ms("pyfftw", None, n, threads)
    out = []
    for backend, device in backends:
        ms = base if backend == "pyfftw" else solver_ms(backend, device, n, threads)
        note = "" if backend == "pyfftw" else f" ({base / ms:.2f}x pyfftw's speed)"
        out.append((f"DNS step {n}^2, {backend} on {device or 'cpu'}", f"{ms:.3f} ms{note}"))
    return out


def training_rows(model, n, batch, device, precisions, steps):
    out = []
    for bf16 in precisions:
        params, (train, fwd) = training.measure(model, n, batch, torch.device(device), bf16,
                                                steps)
        out.append((f"train {params:,} params {n}^2 b{batch} {device} "
                    f"{'bf16' if bf16 else 'fp32'}",
                    f"{train:.1f} train samples/s, {fwd:.1f} forward samples/s"))
    return out


def sampler_rows(model, n, device, batches):
    obj = learned_sampler(Settings(model=model, device=device, target="H"),
                          {"kind": "ve", "s": 26.0})
    sampler = make_sampler({"name": "dpm2m", "steps": 4, "schedule": "karras", "t_max": 0.1})
    out = []
    for b in batches:
        w = torch.randn(b, n, n, generator=torch.Generator().manual_seed(0))
        times = []
        for _ in range(3):  # the first is warm-up
            tic = time.perf_counter()
            _, nfe = obj.sample(sampler, w, measurements=w, return_nfe=True)
            if obj.device.type == "cuda":
                torch.cuda.synchronize(obj.device)
            times.append(time.perf_counter() - tic)
        ms = 1e3 * min(times[1:]) / nfe
        out.append((f"sampler DPM++(2M) 4 steps, {n}^2, batch {b}, {device}",
                    f"{ms:.2f} ms per NFE ({ms / b:.3f} ms per sample)"))
    return out


def breakeven_rows(quick: bool):
    s = Settings(device="cuda", repeats=1, **({"sizes": (64, 128), "coarse": 32,
                                                "model": TINY_MODEL, "dns_steps": 2,
                                                "coupled_steps": 5} if quick else {}))
    dns, rows = run(s)
    out = [(f"DNS {r['n']}^2 (dt {r['dt']:.3g})", f"{r['s_per_time']:.4g} s/time unit")
           for r in dns]
    largest = max(r["n"] for r in dns)
    for r in rows:
        be = f"{r['break_even']}^2" if r["break_even"] else f"> {largest}^2"
        out.append((f"coupled {s.coarse}^2 {label(r)}, M={r['members']}",
                    f"{r['s_per_time']:.4g} s/time unit, breaks even with DNS {be}"))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budget-s", type=float, default=420.0,
                   help="wall-clock budget of the whole check (default 420 s)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (FFT and torch)")
    p.add_argument("--quick", action="store_true", help="smallest sizes: a smoke run")
    args = p.parse_args(argv)
    if not args.budget_s > 0:
        p.error(f"--budget-s: must be > 0, got {args.budget_s}")
    if args.threads < 1:
        p.error(f"--threads: must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    q = args.quick
    n_solver, n_small = (64, 16) if q else (256, 32)
    small = TINY_MODEL if q else dict(cfgmod.load(ROOT / "config.yaml")["model"])
    check = Check(args.budget_s)

    check.section("tests", ["CUDA / device tests"], 20 if q else 60, False,
                  lambda: run_tests(q, max(10.0, min(180.0, check.left() - 30))))
    check.section("solver", [f"DNS step {n_solver}^2, pyfftw/torch on cpu"], 5, False,
                  lambda: solver_rows(n_solver, args.threads, [("pyfftw", None), ("torch", "cpu")]))
    check.section("solver", [f"DNS step {n_solver}^2, torch on cuda"], 5, True,
                  lambda: solver_rows(n_solver, args.threads,
                                      [("pyfftw", None), ("torch", "cuda")])[1:])
    check.section("training", [f"train small {n_small}^2 cpu fp32"], 10 if q else 30, False,
                  lambda: training_rows(small, n_small, 4 if q else 8, "cpu", [False],
                                        1 if q else 3))
    check.section("training", ["train paper 64^2 cuda fp32", "train paper 64^2 cuda bf16"],
                  60, True, lambda: training_rows(training.PAPER, 64, 200, "cuda",
                                                  [False, True], 5))
    check.section("sampler", [f"sampler {n_small}^2 cpu, batch 1 and 64"], 10 if q else 60,
                  False, lambda: sampler_rows(small, n_small, "cpu", [1, 64]))
    check.section("sampler", ["sampler paper 64^2 cuda, batch 1 and 64"], 30, True,
                  lambda: sampler_rows(None, 64, "cuda", [1, 64]))
    check.section("break-even", ["break-even table on the GPU"], 30 if q else 150, True,
                  lambda: breakeven_rows(q))

    gpu = torch.cuda.get_device_name(0) if cuda else NO_CUDA
    print(f"gpu_check: torch {torch.__version__}, {gpu}, {args.threads} CPU thread(s), "
          f"{time.perf_counter() - check.start:.0f} s of a {args.budget_s:.0f} s budget")
    print(check.table())
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
