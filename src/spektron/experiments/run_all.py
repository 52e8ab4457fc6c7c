"""``spektron run-all``: the study's main job. Today: the data stage, E1, E2 (which starts
its pretrained arms from this run's E1 checkpoints), E3 (which analyses this run's E1
D-LinOSS models) and E4 (calibration transfer on the real NIR data; its pretrained deep arms
start from this run's E1 checkpoints). Each stage writes into its own folder under ``out``;
the wall time estimated before the start (:mod:`spektron.experiments.plan`) and measured per
stage goes to ``timing.json``. On the CPU, E2, E3 and E4 (which need only E1's outputs) run side
by side, in threads of this process, each with its own worker pool: alone, none of them keeps
every core busy (baselines, analyses and reports run in one process; pools have tails). Results
do not depend on it: every run sets its own seeds and threads."""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from spektron.config import RunConfig
from spektron.errors import ConfigError
from spektron.experiments.data_overview import run_data_overview
from spektron.experiments.plan import SIDE_BY_SIDE
from spektron.utils import write_json_atomic

log = logging.getLogger(__name__)

STAGES = ("data", "e1", "e2", "e3", "e4")


def side_by_side(cfg: RunConfig) -> bool:
    """Whether E2-E4 run side by side: on the CPU with process pools of more than one worker
    (on CUDA and under torchrun each experiment has the device to itself)."""
    from spektron.training.distributed import resolve_device

    if resolve_device(cfg.device).type != "cpu" or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return False
    cores = os.cpu_count() or 1
    return cores > 1 and all((getattr(cfg, e).jobs or cores) > 1 for e in ("e2", "e3", "e4"))


def _timed(fn: Any, cfg: RunConfig, progress: bool) -> tuple[Any, float]:
    t0 = time.perf_counter()
    res = fn(cfg, progress)
    return res, time.perf_counter() - t0


def check_stages(stages: tuple[str, ...] | list[str], out: Path) -> tuple[str, ...]:
    """``stages`` in run order, checked: known names, and E1's results present in ``out/e1``
    when a later stage needs them and E1 is not among ``stages`` (a staged run: E1 in one
    call, E2 in another, into the same ``out``)."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise ConfigError(
            f"--stages: {', '.join(unknown) or 'none given'}; choose among {', '.join(STAGES)}"
        )
    chosen = tuple(s for s in STAGES if s in stages)
    needs_e1 = [s for s in chosen if s in ("e2", "e3", "e4")]
    if needs_e1 and "e1" not in chosen and not (Path(out) / "e1" / "summary.json").is_file():
        raise ConfigError(
            f"--stages {','.join(chosen)}: {', '.join(needs_e1)} start from E1's results, and "
            f"{Path(out) / 'e1'} has none; add e1 to --stages"
        )
    return chosen


def run_all(
    cfg: RunConfig,
    out: Path,
    progress: bool = True,
    announce: Any = None,
    stages: tuple[str, ...] = STAGES,
) -> dict[str, Any]:
    """Run the chosen ``stages`` (default: every stage), in order, each into its own folder
    under ``out``; E2-E4 start from ``out/e1`` whether E1 ran in this call or an earlier one.
    ``timing.json`` records this call's estimate and measurement, and keeps the records of
    earlier calls into the same ``out`` under ``earlier_calls``."""
    from spektron.data.generate import default_dataset_path
    from spektron.experiments.e1.run import run_e1
    from spektron.experiments.e2.run import run_e2
    from spektron.experiments.e3.run import run_e3
    from spektron.experiments.e4.run import run_e4
    from spektron.experiments.plan import estimate_run_all, format_comparison, format_plan
    from spektron.training.distributed import resolve_device

    stages = check_stages(stages, out)
    after_e1 = [s for s in stages if s in SIDE_BY_SIDE]
    parallel = side_by_side(cfg) and len(after_e1) > 1
    est = None
    if resolve_device(cfg.device).type == "cpu":  # the estimate times models on the CPU
        cached = default_dataset_path(cfg.data).is_file()
        est = estimate_run_all(cfg, data_cached=cached, side_by_side=parallel, include=stages)
        log.info("%s", format_plan(est))
        if announce is not None:
            announce({"experiment": "run-all", "estimate": format_plan(est)})
    measured: dict[str, float] = {}
    results: dict[str, Any] = {}
    t_all = t0 = time.perf_counter()
    if "data" in stages:
        results["data"] = run_data_overview(cfg, out / "data", progress=progress)
        measured["data"] = time.perf_counter() - t0
    if "e1" in stages:
        t0 = time.perf_counter()
        results["e1"] = run_e1(cfg, out / "e1", progress=progress, announce=announce)
        measured["e1"] = time.perf_counter() - t0
    if cfg.e2.pretrained_from is None:
        cfg = replace(cfg, e2=replace(cfg.e2, pretrained_from=str(out / "e1")))
    after: dict[str, Any] = {
        "e2": lambda c, p: run_e2(c, out / "e2", progress=p, announce=announce)
    }
    if "dlinoss" in cfg.e1.backbones:
        if cfg.e3.trained_from is None:
            cfg = replace(cfg, e3=replace(cfg.e3, trained_from=str(out / "e1")))
        after["e3"] = lambda c, p: run_e3(c, out / "e3", progress=p, announce=announce)
    else:
        log.warning("E3 skipped: e1.backbones has no dlinoss arm to analyse")
    if cfg.e4.pretrained_from is None:
        # Deep arms need this run's E1 checkpoints: only backbones that E1 trained.
        keep = {
            name: tuple(b for b in getattr(cfg.e4, name) if b in cfg.e1.backbones)
            for name in ("backbones", "finetune_backbones")
        }
        for name, kept in keep.items():
            if kept != getattr(cfg.e4, name):
                log.warning("E4 %s limited to E1's backbones: %s", name, list(kept))
        cfg = replace(cfg, e4=replace(cfg.e4, pretrained_from=str(out / "e1"), **keep))
    after["e4"] = lambda c, p: run_e4(c, out / "e4", progress=p, announce=announce)
    after = {k: fn for k, fn in after.items() if k in stages}
    if parallel:
        # E2, E3 and E4 need only E1's outputs: run side by side, their process pools and
        # their single-process parts (baselines, analyses, reports) share the cores, which
        # none of them keeps busy alone. Progress bars: E2's only (several would interleave).
        log.info("E2, E3 and E4 run side by side (CPU); their log lines interleave")
        t0 = time.perf_counter()
        with cf.ThreadPoolExecutor(len(after), thread_name_prefix="spektron") as ex:
            futs = {
                k: ex.submit(_timed, fn, cfg, progress and k == "e2") for k, fn in after.items()
            }
            for k, fut in futs.items():
                results[k], measured[k] = fut.result()
        measured["+".join(after)] = time.perf_counter() - t0
    else:
        for k, fn in after.items():
            results[k], measured[k] = _timed(fn, cfg, progress)
    total = time.perf_counter() - t_all
    earlier: list[Any] = []
    if (out / "timing.json").is_file():
        try:
            prev = json.loads((out / "timing.json").read_text())
            earlier = [*prev.pop("earlier_calls", []), prev]
        except (OSError, json.JSONDecodeError):
            log.warning("%s unreadable: earlier calls' timings not kept", out / "timing.json")
    results["timing"] = {
        "stages": list(stages),
        "estimate_s": est and est["stages_s"],
        "estimate_side_by_side_s": est and est.get("side_by_side_s"),
        "estimate_total_s": est and est["total_s"],
        "measured_s": measured,
        "measured_total_s": total,
        "comparison": format_comparison(est, measured, total)
        if est
        else "no estimate (not on the CPU)",
        "earlier_calls": earlier,
    }
    write_json_atomic(out / "timing.json", results["timing"])
    return results
