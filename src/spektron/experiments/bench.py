"""``spektron bench backbones``: throughput, peak memory and FLOPs of every backbone.

Each backbone is sized to the same parameter budget (d_model fixed, ``models.sizing``) and timed
at batch B and length L: forward (no grad, eval mode) and forward + backward (train mode, sum
of outputs as loss), after warm-up, as the median of ``repeats`` runs. Every backbone runs in a
fresh spawned process so that peak memory is its own:

- CUDA: ``torch.cuda.max_memory_allocated`` (tensors only), reset before the measured runs;
- CPU: the process's peak resident set size (``ru_maxrss``) minus the resident size measured
  in the same process after building the model and the input (so it is the working memory of
  the forward + backward passes, not the Python/torch runtime).

FLOPs per sample (one forward pass, B = 1) come from ``models.flops.count_flops``, counted on
CPU through each backbone's pure-PyTorch path, matmul-only and total.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import platform
import resource
import statistics
import time
from typing import Any

import torch

from spektron import __version__
from spektron.errors import ConfigError
from spektron.models.registry import available_backbones, build_backbone

log = logging.getLogger(__name__)


def resolve_device(device: str | None) -> torch.device:
    """'auto' → CUDA when available, else CPU; validates explicit choices."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {device!r}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    return dev


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _time(fn, dev: torch.device, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    _sync(dev)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _bench_one(args: dict[str, Any]) -> dict[str, Any]:
    """Child process: size, build, time and measure one backbone."""
    from spektron.models.flops import count_flops
    from spektron.models.sizing import size_backbone

    if args["threads"]:
        torch.set_num_threads(args["threads"])
    dev = torch.device(args["device"])
    name, B, L, D = args["name"], args["batch"], args["length"], args["d_model"]
    cfg, n_params = size_backbone(name, budget=args["budget"], d_model=D)
    torch.manual_seed(0)
    model = build_backbone(name, cfg).to(dev)
    x = torch.randn(B, L, D, device=dev)
    res: dict[str, Any] = {"backbone": name, "params": n_params, "config": cfg.__dict__.copy()}

    flop_model = build_backbone(name, cfg)  # CPU copy: FLOPs counted through the PyTorch path
    fl = count_flops(flop_model.eval(), torch.randn(1, L, D))
    res["flops_per_sample"] = {"matmul": fl["matmul"], "total": fl["total"]}
    del flop_model

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    rss0 = _rss_mb()

    def fwd() -> None:
        with torch.no_grad():
            model(x)

    def fwd_bwd() -> None:
        model.zero_grad(set_to_none=True)
        model(x).float().sum().backward()

    model.eval()
    t_f = _time(fwd, dev, args["repeats"], args["warmup"])
    model.train()
    t_fb = _time(fwd_bwd, dev, args["repeats"], args["warmup"])
    res["forward_samples_per_s"] = B / t_f
    res["forward_backward_samples_per_s"] = B / t_fb
    res["forward_s_per_batch"] = t_f
    res["forward_backward_s_per_batch"] = t_fb
    if dev.type == "cuda":
        res["peak_memory_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
        res["memory_kind"] = "cuda max_memory_allocated"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB → MiB on Linux
        res["peak_memory_mb"] = peak - rss0
        res["memory_kind"] = "CPU peak RSS above the RSS after model + input were built"
    return res


def bench_backbones(
    names: list[str] | None = None,
    *,
    batch: int = 16,
    length: int = 2048,
    d_model: int = 128,
    budget: int = 1_000_000,
    device: str | None = "auto",
    repeats: int = 3,
    warmup: int = 1,
    threads: int = 0,
) -> dict[str, Any]:
    """Benchmark backbones, each in its own process; returns a JSON-ready dict."""
    names = names or available_backbones()
    unknown = [n for n in names if n not in available_backbones()]
    if unknown:
        raise ConfigError(f"unknown backbone(s) {unknown}; choose from {available_backbones()}")
    if batch < 1 or length < 1 or repeats < 1 or warmup < 0:
        raise ConfigError("batch, length and repeats must be >= 1 and warmup >= 0")
    dev = resolve_device(device)
    common = dict(
        batch=batch,
        length=length,
        d_model=d_model,
        budget=budget,
        device=str(dev),
        repeats=repeats,
        warmup=warmup,
        threads=threads,
    )
    ctx = mp.get_context("spawn")
    rows = []
    for name in names:
        log.info("bench %s: B=%d L=%d on %s", name, batch, length, dev)
        with ctx.Pool(1) as pool:
            rows.append(pool.apply(_bench_one, ({"name": name, **common},)))
    return {
        "schema_version": 1,
        "spektron_version": __version__,
        "torch_version": torch.__version__,
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": threads or torch.get_num_threads(),
        "settings": common,
        "results": rows,
    }


def format_table(report: dict[str, Any]) -> str:
    """Plain-text table of a :func:`bench_backbones` report."""
    s = report["settings"]
    head = (
        f"device {report['device']} ({report['device_name']}), B={s['batch']}, L={s['length']}, "
        f"d_model={s['d_model']}, budget {s['budget']:,}, median of {s['repeats']}"
    )
    lines = [
        head,
        f"{'backbone':<12}{'params':>10}{'fwd/s':>10}{'fwd+bwd/s':>11}"
        f"{'peak MB':>10}{'GFLOP mm':>10}{'GFLOP all':>11}",
    ]
    for r in report["results"]:
        fl = r["flops_per_sample"]
        lines.append(
            f"{r['backbone']:<12}{r['params']:>10,}{r['forward_samples_per_s']:>10.1f}"
            f"{r['forward_backward_samples_per_s']:>11.1f}{r['peak_memory_mb']:>10.0f}"
            f"{fl['matmul'] / 1e9:>10.2f}{fl['total'] / 1e9:>11.2f}"
        )
    return "\n".join(lines)
