"""Training throughput of the FNO score network: samples per second of one DSM training step
(forward, backward, gradient clipping, Adam) and of the forward pass alone (what a sampler pays
per score evaluation), at the default model size of config.yaml and at the paper's size.

    python benchmarks/training.py [--threads 2] [--steps 5] [--batch 32]

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


def measure(model_cfg, n, batch, device, bf16, steps, n_conditions=2):
    torch.manual_seed(0)
    sde = make_sde({"kind": "ve", "s": 26.0})
    net = build_score_net(model_cfg, sde, n_conditions).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator(device=device).manual_seed(0)
    x0 = torch.randn(batch, 1, n, n, device=device, generator=gen)
    cond = torch.randn(batch, n_conditions, n, n, device=device, generator=gen)
    sampler = uniform_times(2e-5, 1.0)
    ctx = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def train_step():
        with ctx:
            loss = dsm_loss(net, x0, cond, sde, sampler, gen)
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
              f" {'train samples/s':>16} {'forward samples/s':>18}")
    print(f"torch {torch.__version__}, CPU threads {args.threads}")
    print(header)
    print("-" * len(header))
    for name, model_cfg, n in cases:
        for device, bf16, batch in devices:
            params, (train_rate, fwd_rate) = measure(model_cfg, n, batch, device, bf16, args.steps)
            print(f"{name:<22} {params:>10,d} {n:>4}^2 {device.type:>6} {str(bf16):>5} {batch:>6}"
                  f" {train_rate:>16.1f} {fwd_rate:>18.1f}")


if __name__ == "__main__":
    main()
