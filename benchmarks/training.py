"""Training throughput of the FNO score network: samples per second of one DSM training step
(forward, backward, gradient clipping, Adam) and of the forward pass alone (what a sampler pays
per score evaluation), at the default model size of config.yaml and at the paper's size.

    python benchmarks/training.py [--threads 2] [--steps 5] [--batch 32] [--draws 1 4]

--draws lists train.draws values: noise draws per sample in one step, the condition branches run
once per sample (fit._train_epoch). The "step cost" column is the time of one step relative to
one draw per sample: what an epoch of train.draws costs against the paper's one draw.

Runs on the CPU, and on the GPU too when one is present (bf16 autocast off and on). Prints a
table; times are medians over --steps steps after two warm-up steps.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from diffclosure import config
from diffclosure.model.loss import dsm_loss, uniform_times
from diffclosure.model.score_net import build_score_net, count_parameters
from diffclosure.model.sde import make_sde

ROOT = Path(__file__).resolve().parents[1]

PAPER = {"width": 20, "modes": 8, "layers": 4, "embedding_features": 256,
         "embedding_scale": 30.0, "head": [40, 20, 20, 128], "coords": True}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(model_cfg, n, batch, device, bf16, steps, draws=1, n_conditions=2):
    torch.manual_seed(0)
    sde = make_sde({"kind": "ve", "s": 26.0})
    net = build_score_net(model_cfg, sde, n_conditions).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator(device=device).manual_seed(0)
    x0 = torch.randn(batch, 1, n, n, device=device, generator=gen)
    x0_draws = x0.repeat_interleave(draws, dim=0)
    cond = torch.randn(batch, n_conditions, n, n, device=device, generator=gen)
    sampler = uniform_times(2e-5, 1.0)
    ctx = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def train_step():
        with ctx:
            loss = dsm_loss(net, x0_draws, cond, sde, sampler, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()

    def forward():
        with torch.no_grad(), ctx:
            net(x0, torch.full((batch,), 0.1, device=device), cond)

    rates = []
    for fn in (train_step, forward):
        times = []
        for i in range(steps + 2):
            _sync(device)
            tic = time.perf_counter()
            fn()
            _sync(device)
            if i >= 2:
                times.append(time.perf_counter() - tic)
        rates.append(batch / statistics.median(times))
    return count_parameters(net), rates


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch", type=int, default=32, help="CPU batch (the GPU uses 200)")
    p.add_argument("--draws", type=int, nargs="+", default=[1],
                   help="train.draws values to time (noise draws per sample and step)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = config.load(ROOT / "config.yaml")
    default = dict(cfg["model"])
    cases = [("default (config.yaml)", default, cfg["coarse"]["n"]),
             ("default (config.yaml)", default, 64),
             ("paper", PAPER, 64)]
    devices = [(torch.device("cpu"), False, args.batch)]
    if torch.cuda.is_available():
        devices += [(torch.device("cuda"), False, 200), (torch.device("cuda"), True, 200)]
    header = (f"{'model':<22} {'params':>10} {'grid':>6} {'device':>6} {'bf16':>5} {'batch':>6}"
              f" {'draws':>6} {'train samples/s':>16} {'step cost':>10} {'forward samples/s':>18}")
    print(f"torch {torch.__version__}, CPU threads {args.threads}")
    print(header)
    print("-" * len(header))
    for name, model_cfg, n in cases:
        for device, bf16, batch in devices:
            one_draw = None
            for draws in args.draws:
                params, (train_rate, fwd_rate) = measure(model_cfg, n, batch, device, bf16,
                                                         args.steps, draws)
                one_draw = one_draw or (train_rate if draws == 1 else None)
                cost = f"{one_draw / train_rate:.2f}x" if one_draw else "-"
                print(f"{name:<22} {params:>10,d} {n:>4}^2 {device.type:>6} {str(bf16):>5}"
                      f" {batch:>6} {draws:>6} {train_rate:>16.1f} {cost:>10} {fwd_rate:>18.1f}")


if __name__ == "__main__":
    main()
