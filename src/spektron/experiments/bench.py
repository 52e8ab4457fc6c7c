"""Benchmarks: ``spektron bench backbones`` and ``spektron bench dlinoss-modes``.

``backbones``: throughput, peak memory and FLOPs of every backbone.

Each backbone is sized to the same parameter budget (d_model fixed, ``models.sizing``) and timed
at batch B and length L: forward (no grad, eval mode) and forward + backward (train mode, mean
of squared outputs as loss), after warm-up, as the median of ``repeats`` runs. Every backbone
runs in a fresh spawned process so that peak memory is its own:

- CUDA: ``torch.cuda.max_memory_allocated`` (tensors only), reset before the measured runs;
- CPU: the process's peak resident set size (``ru_maxrss``) minus the resident size measured
  in the same process after building the model and the input (so it is the working memory of
  the forward + backward passes, not the Python/torch runtime).

FLOPs per sample (one forward pass, B = 1) come from ``models.flops.count_flops``, counted on
CPU through each backbone's pure-PyTorch path, matmul-only and total.

``dlinoss-modes``: the compute modes of the D-LinOSS core (recurrent | scan | fft | chunk) side by
side at several lengths, forward and forward + backward, ratios to fft measured in one run, with
memory measured the same way. The recurrent mode is a Python loop over L (the reference, not a
production path): it gets ``recurrent_repeats`` runs and no warm-up.
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
from spektron.training.distributed import resolve_device
from spektron.utils import rss_mb, tune_cpu_process

log = logging.getLogger(__name__)


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return platform.processor() or platform.machine()


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _times(fn, dev: torch.device, repeats: int, warmup: int) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(dev)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        times.append(time.perf_counter() - t0)
    return times


def _passes(model: torch.nn.Module, x: torch.Tensor):
    """The two timed closures: forward without grad; forward + backward of mean(y²)."""

    def fwd() -> None:
        with torch.no_grad():
            model(x)

    def fwd_bwd() -> None:
        model.zero_grad(set_to_none=True)
        model(x).float().square().mean().backward()

    return fwd, fwd_bwd


def _memory_baseline(dev: torch.device) -> float:
    """Start of a peak-memory measurement (MiB); see the module docstring."""
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        return torch.cuda.memory_allocated(dev) / 2**20
    return rss_mb()


def _peak_mb(dev: torch.device, baseline: float) -> float:
    """Peak memory since :func:`_memory_baseline` returned ``baseline`` (MiB)."""
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20 - baseline
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - baseline  # KiB on Linux


MEMORY_KIND = {
    "cuda": "cuda max_memory_allocated above the allocation before the runs",
    "cpu": "CPU peak RSS above the RSS after model + input were built (own process)",
}


def _in_child(fn, args: dict[str, Any]) -> dict[str, Any]:
    """Run ``fn(args)`` in a fresh spawned process (its own peak RSS)."""
    with mp.get_context("spawn").Pool(1, initializer=tune_cpu_process) as pool:
        return pool.apply(fn, (args,))


def _sized_backbone(name: str, args: dict[str, Any], dev: torch.device):
    """(model on ``dev``, its config, its parameter count), sized to ``args["budget"]`` at
    ``args["d_model"]`` and initialised from seed 0."""
    from spektron.models.sizing import size_backbone

    cfg, n_params = size_backbone(name, budget=args["budget"], d_model=args["d_model"])
    torch.manual_seed(0)
    return build_backbone(name, cfg).to(dev), cfg, n_params


def _bench_one(args: dict[str, Any]) -> dict[str, Any]:
    """Child process: size, build, time and measure one backbone."""
    from spektron.models.flops import count_flops

    if args["threads"]:
        torch.set_num_threads(args["threads"])
    dev = torch.device(args["device"])
    name, B, L, D = args["name"], args["batch"], args["length"], args["d_model"]
    model, cfg, n_params = _sized_backbone(name, args, dev)
    x = torch.randn(B, L, D, device=dev)
    res: dict[str, Any] = {"backbone": name, "params": n_params, "config": cfg.__dict__.copy()}

    flop_model = build_backbone(name, cfg)  # CPU copy: FLOPs counted through the PyTorch path
    fl = count_flops(flop_model.eval(), torch.randn(1, L, D))
    res["flops_per_sample"] = {"matmul": fl["matmul"], "total": fl["total"]}
    del flop_model

    base = _memory_baseline(dev)

    fwd, fwd_bwd = _passes(model, x)
    model.eval()
    t_f = statistics.median(_times(fwd, dev, args["repeats"], args["warmup"]))
    model.train()
    t_fb = statistics.median(_times(fwd_bwd, dev, args["repeats"], args["warmup"]))
    res["forward_samples_per_s"] = B / t_f
    res["forward_backward_samples_per_s"] = B / t_fb
    res["forward_s_per_batch"] = t_f
    res["forward_backward_s_per_batch"] = t_fb
    res["peak_memory_mb"] = _peak_mb(dev, base)
    res["memory_kind"] = MEMORY_KIND[dev.type]
    return res


def _bench_interleaved(args: dict[str, Any]) -> dict[str, float]:
    """Child process: forward + backward of every backbone in one process, one step each in
    turn for ``repeats`` rounds (the order rotated every round), so that all arms see the same
    machine state; returns the median samples/s per backbone."""
    if args["threads"]:
        torch.set_num_threads(args["threads"])
    dev = torch.device(args["device"])
    B, L, D = args["batch"], args["length"], args["d_model"]
    x = torch.randn(B, L, D, device=dev)
    steps = {}
    for name in args["names"]:
        model = _sized_backbone(name, args, dev)[0].train()
        steps[name] = _passes(model, x)[1]
    times: dict[str, list[float]] = {name: [] for name in steps}
    for step in steps.values():
        _times(step, dev, 0, max(args["warmup"], 1))
    order = list(steps)
    for r in range(args["repeats"]):
        for name in order[r % len(order) :] + order[: r % len(order)]:
            times[name] += _times(steps[name], dev, 1, 0)
    return {name: B / statistics.median(t) for name, t in times.items()}


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
    rows = []
    for name in names:
        log.info("bench %s: B=%d L=%d on %s", name, batch, length, dev)
        rows.append(_in_child(_bench_one, {"name": name, **common}))
    # Throughput as a ratio to the CNN's, measured in the same run (the machines are noisy):
    # from the separate processes above, and side by side (alternated in one process).
    log.info("bench side by side: %s", ", ".join(names))
    side = _in_child(_bench_interleaved, {"names": names, **common})
    cnn = next((r for r in rows if r["backbone"] == "cnn"), None)
    for r in rows:
        r["interleaved_forward_backward_samples_per_s"] = side[r["backbone"]]
        r["forward_backward_vs_cnn"] = (
            r["forward_backward_samples_per_s"] / cnn["forward_backward_samples_per_s"]
            if cnn
            else None
        )
        r["interleaved_vs_cnn"] = side[r["backbone"]] / side["cnn"] if cnn else None
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
        f"{'backbone':<12}{'params':>10}{'fwd/s':>10}{'fwd+bwd/s':>11}{'x cnn':>7}"
        f"{'alt/s':>9}{'x cnn':>7}{'peak MB':>10}{'GFLOP mm':>10}{'GFLOP all':>11}",
    ]
    nan = float("nan")
    for r in report["results"]:
        fl = r["flops_per_sample"]
        ratio, alt_ratio = r.get("forward_backward_vs_cnn"), r.get("interleaved_vs_cnn")
        lines.append(
            f"{r['backbone']:<12}{r['params']:>10,}{r['forward_samples_per_s']:>10.1f}"
            f"{r['forward_backward_samples_per_s']:>11.1f}"
            f"{nan if ratio is None else ratio:>7.2f}"
            f"{r.get('interleaved_forward_backward_samples_per_s', nan):>9.1f}"
            f"{nan if alt_ratio is None else alt_ratio:>7.2f}{r['peak_memory_mb']:>10.0f}"
            f"{fl['matmul'] / 1e9:>10.2f}{fl['total'] / 1e9:>11.2f}"
        )
    lines.append(
        "fwd+bwd/s: each backbone in its own process, one after another; alt/s: all in one "
        "process, one step each in turn (the side-by-side ratio)"
    )
    return "\n".join(lines)


DLINOSS_MODES = ("recurrent", "scan", "fft", "chunk")


def _measure_mode(args: dict[str, Any]) -> dict[str, Any]:
    """Child process: one (mode, length) measurement of the D-LinOSS backbone."""
    from spektron.models.backbones.dlinoss import DLinOSSBackbone, DLinOSSConfig
    from spektron.models.registry import count_parameters

    dev = torch.device(args["device"])
    if args["threads"]:
        torch.set_num_threads(args["threads"])
    torch.manual_seed(0)
    model = DLinOSSBackbone(DLinOSSConfig(d_model=args["d_model"], mode=args["mode"])).to(dev)
    x = torch.randn(args["batch"], args["length"], args["d_model"], device=dev)  # (B, L, H)
    recurrent = args["mode"] == "recurrent"
    repeats = args["recurrent_repeats"] if recurrent else args["repeats"]
    warmup = 0 if recurrent else 1

    fwd, fwd_bwd = _passes(model, x)
    base = _memory_baseline(dev)
    t_fwd = _times(fwd, dev, repeats, warmup)
    mem_fwd = _peak_mb(dev, base)
    t_bwd = _times(fwd_bwd, dev, repeats, warmup)
    return {
        "mode": args["mode"],
        "length": args["length"],
        "repeats": repeats,
        "fwd_s_best": min(t_fwd),
        "fwd_s_median": statistics.median(t_fwd),
        "fwdbwd_s_best": min(t_bwd),
        "fwdbwd_s_median": statistics.median(t_bwd),
        "peak_mem_fwd_mb": mem_fwd,
        "peak_mem_fwdbwd_mb": _peak_mb(dev, base),
        "n_params": count_parameters(model),
    }


def bench_dlinoss_modes(
    lengths: tuple[int, ...] = (256, 1024, 2048, 4096),
    modes: tuple[str, ...] = DLINOSS_MODES,
    *,
    batch: int = 16,
    d_model: int = 128,
    device: str | None = "auto",
    repeats: int = 3,
    recurrent_repeats: int = 1,
    recurrent_max_len: int = 4096,
    threads: int = 0,
) -> dict[str, Any]:
    """D-LinOSS compute modes side by side (default backbone config); JSON-ready dict."""
    bad = [m for m in modes if m not in DLINOSS_MODES]
    if bad:
        raise ConfigError(f"unknown D-LinOSS mode(s) {bad}; choose from {DLINOSS_MODES}")
    if not lengths or min(lengths) < 1 or batch < 1 or repeats < 1 or recurrent_repeats < 1:
        raise ConfigError("lengths, batch and repeats must be >= 1")
    dev = resolve_device(device)
    rows = []
    for length in lengths:
        for mode in modes:
            if mode == "recurrent" and length > recurrent_max_len:
                log.info("L=%d recurrent skipped (> recurrent_max_len)", length)
                continue
            args = dict(
                device=str(dev),
                threads=threads,
                mode=mode,
                length=length,
                batch=batch,
                d_model=d_model,
                repeats=repeats,
                recurrent_repeats=recurrent_repeats,
            )
            rows.append(
                _in_child(_measure_mode, args) if dev.type == "cpu" else _measure_mode(args)
            )
            log.info(
                "L=%d %s fwd %.3f s, fwd+bwd %.3f s",
                length,
                mode,
                rows[-1]["fwd_s_best"],
                rows[-1]["fwdbwd_s_best"],
            )
    fft = {r["length"]: r for r in rows if r["mode"] == "fft"}
    for r in rows:
        ref = fft.get(r["length"])
        r["fwd_ratio_vs_fft"] = r["fwd_s_best"] / ref["fwd_s_best"] if ref else None
        r["fwdbwd_ratio_vs_fft"] = r["fwdbwd_s_best"] / ref["fwdbwd_s_best"] if ref else None
    return {
        "schema_version": 1,
        "benchmark": "dlinoss_modes",
        "spektron_version": __version__,
        "torch_version": torch.__version__,
        "device": str(dev),
        "device_name": _device_name(dev),
        "threads": threads or torch.get_num_threads(),
        "settings": {
            "batch": batch,
            "d_model": d_model,
            "repeats": repeats,
            "recurrent_repeats": recurrent_repeats,
        },
        "memory_kind": MEMORY_KIND[dev.type],
        "timing": "seconds per batch, best and median of repeats after one warm-up "
        "(recurrent: no warm-up)",
        "results": rows,
    }


def format_modes_table(report: dict[str, Any]) -> str:
    """Plain-text table of a :func:`bench_dlinoss_modes` report."""
    s, rows = report["settings"], report["results"]
    n_params = rows[0]["n_params"] if rows else 0
    lines = [
        f"D-LinOSS modes on {report['device']} ({report['device_name']}), B={s['batch']}, "
        f"d_model={s['d_model']}, {n_params:,} params; time = best of repeats; "
        f"memory = {report['memory_kind']}",
        f"{'L':>5} {'mode':9} {'fwd s':>8} {'x fft':>6} {'f+b s':>8} {'x fft':>6} "
        f"{'mem fwd MB':>10} {'mem f+b MB':>10}",
    ]
    nan = float("nan")
    for r in rows:
        rf, rb = r["fwd_ratio_vs_fft"], r["fwdbwd_ratio_vs_fft"]
        lines.append(
            f"{r['length']:5d} {r['mode']:9} {r['fwd_s_best']:8.3f} "
            f"{nan if rf is None else rf:6.2f} {r['fwdbwd_s_best']:8.3f} "
            f"{nan if rb is None else rb:6.2f} "
            f"{r['peak_mem_fwd_mb']:10.0f} {r['peak_mem_fwdbwd_mb']:10.0f}"
        )
    return "\n".join(lines)
