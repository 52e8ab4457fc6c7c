"""Benchmark the three compute modes of the D-LinOSS backbone side by side.

For each sequence length and mode (recurrent | scan | fft) it builds the default backbone
(d_model=128, 6 bidirectional layers, P=128 oscillators per direction: ~0.99M parameters),
then times one batch (default B=16) forward (``torch.no_grad``) and forward+backward, and
reports the best and the median of the repeats, the ratio to fft (best of repeats), and the
peak memory:

- CPU: each (mode, length) runs in a fresh child process; peak memory is the increase of the
  child's ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (peak resident set size) over its
  value after the model and input were built. tracemalloc does not see torch's allocations.
  The forward figure is taken first, so the forward+backward figure is the peak of both.
- CUDA: ``torch.cuda.max_memory_allocated`` above what was allocated before the call.

    python scripts/bench_dlinoss_modes.py --device cpu --out bench_dlinoss_modes.json

The recurrent mode is a Python loop over L (a reference, not a production path): it gets
``--recurrent-repeats`` (default 1) repeats and no warm-up, and is skipped above
``--recurrent-max-len`` (default 4096: all default lengths run).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import statistics
import sys
import time
from typing import Any

import torch

from spektron.models.backbones.dlinoss import DLinOSSBackbone, DLinOSSConfig
from spektron.models.registry import count_parameters

MODES = ("recurrent", "scan", "fft")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return maxrss / (2**20 if sys.platform == "darwin" else 2**10)


def _timed(fn, device: torch.device, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def measure(args: dict[str, Any]) -> dict[str, Any]:
    """One (mode, length) measurement; runs in a child process on CPU."""
    device = torch.device(args["device"])
    if args["threads"]:
        torch.set_num_threads(args["threads"])
    torch.manual_seed(0)
    cfg = DLinOSSConfig(d_model=args["d_model"], mode=args["mode"], **args["cfg"])
    model = DLinOSSBackbone(cfg).to(device)
    x = torch.randn(args["batch"], args["length"], args["d_model"], device=device)
    recurrent = args["mode"] == "recurrent"
    repeats = args["recurrent_repeats"] if recurrent else args["repeats"]
    warmup = 0 if recurrent else 1

    def fwd() -> None:
        with torch.no_grad():
            model(x)

    def fwd_bwd() -> None:
        model.zero_grad(set_to_none=True)
        model(x).square().mean().backward()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device) / 2**20
    else:
        base = _peak_mb(device)
    t_fwd = _timed(fwd, device, repeats, warmup)
    mem_fwd = _peak_mb(device) - base
    t_bwd = _timed(fwd_bwd, device, repeats, warmup)
    mem_bwd = _peak_mb(device) - base
    return {
        "mode": args["mode"],
        "length": args["length"],
        "repeats": repeats,
        "fwd_s_best": min(t_fwd),
        "fwd_s_median": statistics.median(t_fwd),
        "fwdbwd_s_best": min(t_bwd),
        "fwdbwd_s_median": statistics.median(t_bwd),
        "peak_mem_fwd_mb": mem_fwd,
        "peak_mem_fwdbwd_mb": mem_bwd,
        "n_params": count_parameters(model),
    }


def _run_isolated(args: dict[str, Any]) -> dict[str, Any]:
    if args["device"] != "cpu":
        return measure(args)
    with mp.get_context("spawn").Pool(1) as pool:  # fresh process: a clean ru_maxrss
        return pool.apply(measure, (args,))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 2048, 4096])
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--n-layers", type=int, default=DLinOSSConfig.n_layers)
    ap.add_argument("--n-oscillators", type=int, default=DLinOSSConfig.n_oscillators)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--recurrent-repeats", type=int, default=1)
    ap.add_argument("--recurrent-max-len", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--out", default="bench_dlinoss_modes.json")
    a = ap.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device available")

    cfg = {"n_layers": a.n_layers, "n_oscillators": a.n_oscillators}
    rows = []
    for length in a.lengths:
        for mode in a.modes:
            if mode == "recurrent" and length > a.recurrent_max_len:
                print(f"L={length:5d} {mode:9s} skipped (> --recurrent-max-len)", flush=True)
                continue
            row = _run_isolated(
                {
                    "device": a.device,
                    "threads": a.threads,
                    "mode": mode,
                    "length": length,
                    "batch": a.batch,
                    "d_model": a.d_model,
                    "cfg": cfg,
                    "repeats": a.repeats,
                    "recurrent_repeats": a.recurrent_repeats,
                }
            )
            rows.append(row)
            print(
                f"L={length:5d} {mode:9s} fwd {row['fwd_s_best']:8.3f}s  "
                f"fwd+bwd {row['fwdbwd_s_best']:8.3f}s",
                flush=True,
            )

    best = {(r["length"], r["mode"]): r for r in rows}
    for r in rows:
        ref = best.get((r["length"], "fft"))
        r["fwd_ratio_vs_fft"] = r["fwd_s_best"] / ref["fwd_s_best"] if ref else None
        r["fwdbwd_ratio_vs_fft"] = r["fwdbwd_s_best"] / ref["fwdbwd_s_best"] if ref else None

    mem = "cuda max_memory_allocated" if a.device == "cuda" else "ru_maxrss increase (child)"
    print(
        f"\nD-LinOSS modes, B={a.batch}, d_model={a.d_model}, {rows[0]['n_params']:,} params, "
        f"device={a.device}, threads={torch.get_num_threads() if not a.threads else a.threads}; "
        f"time = best of repeats, memory = {mem}"
    )
    head = (
        f"{'L':>5} {'mode':9} {'fwd s':>8} {'x fft':>6} {'f+b s':>8} {'x fft':>6} "
        f"{'mem fwd MB':>10} {'mem f+b MB':>10}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        rf = r["fwd_ratio_vs_fft"]
        rb = r["fwdbwd_ratio_vs_fft"]
        print(
            f"{r['length']:5d} {r['mode']:9} {r['fwd_s_best']:8.3f} "
            f"{rf if rf is not None else float('nan'):6.2f} {r['fwdbwd_s_best']:8.3f} "
            f"{rb if rb is not None else float('nan'):6.2f} "
            f"{r['peak_mem_fwd_mb']:10.0f} {r['peak_mem_fwdbwd_mb']:10.0f}"
        )

    out = {
        "benchmark": "dlinoss_modes",
        "device": a.device,
        "device_name": torch.cuda.get_device_name() if a.device == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": a.threads or torch.get_num_threads(),
        "batch": a.batch,
        "d_model": a.d_model,
        "config": cfg,
        "memory_method": mem,
        "timing": "seconds per batch; best and median of repeats after one warm-up "
        "(recurrent: no warm-up)",
        "results": rows,
    }
    with open(a.out, "w") as f:
        json.dump(out, f, indent=2)
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
