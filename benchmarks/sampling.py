"""Cost of every sampler and step budget: NFE and wall time per sample, relative to the paper's
1000-step Euler-Maruyama baseline.

    python benchmarks/sampling.py [--n 32] [--batch 64] [--threads 1] [--score net|analytic]
                                  [--model results/default/model/score.pt]

--score net (default) uses a random-weight stand-in of the FNO score network at the default
config's size (three FNO branches of width 16, 8 modes, 4 layers, head 32-32), so the time
per score call is realistic; --score analytic uses the closed-form score of a Gaussian (the
sampler's own overhead); --model uses a trained score.pt through model.checkpoint.load_model.
Prints a table; no assertion (speed is measured here, not tested).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from diffclosure.model.sde import VESDE
from diffclosure.sampling.denoiser import Denoiser
from diffclosure.sampling.samplers import make_sampler

CASES = [
    {"name": "em", "steps": 1000, "schedule": "uniform", "t_max": 1.0},
    {"name": "em", "steps": 10, "schedule": "karras", "t_max": 0.1},
    {"name": "pc", "steps": 10, "schedule": "karras", "t_max": 0.1},
    {"name": "ode_euler", "steps": 10, "schedule": "karras", "t_max": 0.1},
    {"name": "ode_heun", "steps": 5, "schedule": "karras", "t_max": 0.1},
    {"name": "dpm2m", "steps": 4, "schedule": "karras", "t_max": 0.1},
    {"name": "dpm2m", "steps": 10, "schedule": "karras", "t_max": 0.1},
]


class _Spectral(nn.Module):
    def __init__(self, width, modes):
        super().__init__()
        self.modes = modes
        scale = 1.0 / width
        self.w = nn.Parameter(scale * torch.randn(2, width, width, modes, modes, 2))
        self.lin = nn.Conv2d(width, width, 1)

    def forward(self, h):
        n, m = h.shape[-1], self.modes
        hf = torch.fft.rfft2(h)
        out = torch.zeros_like(hf)
        w = torch.view_as_complex(self.w)
        out[..., :m, :m] = torch.einsum("bixy,ioxy->boxy", hf[..., :m, :m], w[0])
        out[..., -m:, :m] = torch.einsum("bixy,ioxy->boxy", hf[..., -m:, :m], w[1])
        return nn.functional.gelu(torch.fft.irfft2(out, s=(n, n)) + self.lin(h))


class StandIn(nn.Module):
    """A random FNO of the default config's shape: cost, not accuracy."""

    def __init__(self, width=16, modes=8, layers=4, conditions=2, head=(32, 32)):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(1, width, 1), *[_Spectral(width, modes) for _ in range(layers)])
            for _ in range(1 + conditions)
        )
        self.temb = nn.Linear(1, width)
        sizes = [width * (1 + conditions), *head, 1]
        mods = []
        for a, b in zip(sizes, sizes[1:], strict=False):
            mods += [nn.Conv2d(a, b, 1), nn.GELU()]
        self.head = nn.Sequential(*mods[:-1])

    def forward(self, x, t, cond):
        hs = [self.branches[0](x) + self.temb(t[:, None])[:, :, None, None]]
        hs += [b(cond[:, i : i + 1]) for i, b in enumerate(self.branches[1:])]
        return self.head(torch.cat(hs, dim=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--batch", type=int, default=64, help="samples drawn together")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--score", choices=["net", "analytic"], default="net")
    p.add_argument("--model", default=None, help="trained score.pt instead of a stand-in")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    sde = VESDE(26.0)
    n, b = args.n, args.batch

    if args.model:
        from diffclosure.model.checkpoint import load_model

        net, settings = load_model(args.model, "cpu")
        sde = VESDE(settings["sde"].get("s", 26.0))
        cond = torch.randn(b, len(settings["conditions"]), n, n)
        score = net
    elif args.score == "net":
        score, cond = StandIn().eval(), torch.randn(b, 2, n, n)
    else:
        def score(x, t, c):
            return -(x - c) / (1.0 + sde.std(t)[:, None, None, None] ** 2)
        cond = torch.randn(b, 1, n, n)

    rows = []
    for case in CASES:
        s = make_sampler(case)
        times = []
        for _ in range(args.repeats if s.steps < 1000 else 1):
            gen = torch.Generator().manual_seed(0)
            t0 = time.perf_counter()
            res = s(Denoiser(score, sde, cond), (b, 1, n, n), gen)
            times.append(time.perf_counter() - t0)
        rows.append((s.label, res.nfe, statistics.median(times) / b))
    base = rows[0][2]
    print(f"n={n}, batch={b}, threads={args.threads}, score={args.model or args.score}")
    print(f"{'sampler':<28}{'NFE':>6}{'s/sample':>12}{'ms/NFE/sample':>15}{'speed-up':>10}")
    for label, nfe, sec in rows:
        print(f"{label:<28}{nfe:>6d}{sec:>12.3e}{1e3 * sec / nfe:>15.4f}{base / sec:>10.1f}")


if __name__ == "__main__":
    main()
