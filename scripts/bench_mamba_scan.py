"""Mamba's selective scan on the CPU: the compiled kernels against mambapy's parallel scan,
forward + backward, alternated call by call in one process (a noisy machine then slows both
alike); prints the medians and their ratio.

    python scripts/bench_mamba_scan.py --threads 1 --batch 8 --length 256 --channels 64
    python scripts/bench_mamba_scan.py --threads 2 --batch 8 --length 2048 --channels 384

Channels E = expand × d_model and states N as the sizer gives them (quick: 64 × 8; ~1M
parameters at d_model 128: 384 × 8).
"""

from __future__ import annotations

import argparse
import statistics
import time
import types

import torch
from mambapy import mamba

from spektron.models.backbones.selective_scan import selective_scan


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--length", type=int, default=256)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--states", type=int, default=8)
    p.add_argument("--repeats", type=int, default=15)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    B, L, E, N = a.batch, a.length, a.channels, a.states
    x = torch.randn(B, L, E, requires_grad=True)
    delta = (0.05 * torch.nn.functional.softplus(torch.randn(B, L, E))).requires_grad_()
    A = (-3 * torch.rand(E, N)).requires_grad_()
    Bm = torch.randn(B, L, N, requires_grad=True)
    Cm = torch.randn(B, L, N, requires_grad=True)
    D = torch.randn(E, requires_grad=True)
    args = (x, delta, A, Bm, Cm, D)
    block = types.SimpleNamespace(config=types.SimpleNamespace(d_inner=E, d_state=N))
    arms = {
        "compiled": selective_scan,
        "mambapy_parallel": lambda *t: mamba.MambaBlock.selective_scan(block, *t),
    }
    times: dict[str, list[float]] = {k: [] for k in arms}
    for i in range(a.repeats + 1):  # the first round warms up (and compiles)
        for name, fn in arms.items():
            t0 = time.perf_counter()
            fn(*args).square().sum().backward()
            if i:
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"B={B} L={L} E={E} N={N} threads={a.threads}, forward+backward, median of {a.repeats}: "
        + ", ".join(f"{k} {1e3 * v:.1f} ms" for k, v in med.items())
        + f"; mambapy / compiled = {med['mambapy_parallel'] / med['compiled']:.1f}x"
    )


if __name__ == "__main__":
    main()
