"""``spektron run-all``: the study's main job. Today: the data stage, E1, E2 (which starts
its pretrained arms from this run's E1 checkpoints), E3 (which analyses this run's E1
D-LinOSS models) and E4 (calibration transfer on the real NIR data; its pretrained deep arms
start from this run's E1 checkpoints). Each stage writes into its own folder under ``out``;
the wall time estimated before the start (:mod:`spektron.experiments.plan`) and measured per
stage goes to ``timing.json``."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from spektron.config import RunConfig
from spektron.experiments.data_overview import run_data_overview
from spektron.utils import write_json_atomic

log = logging.getLogger(__name__)

STAGES = ("data", "e1", "e2", "e3", "e4")


def run_all(
    cfg: RunConfig, out: Path, progress: bool = True, announce: Any = None
) -> dict[str, Any]:
    """Run every stage that exists, in order, each into its own folder under ``out``."""
    from spektron.data.generate import default_dataset_path
    from spektron.experiments.e1 import run_e1
    from spektron.experiments.e2 import run_e2
    from spektron.experiments.e3 import run_e3
    from spektron.experiments.e4 import run_e4
    from spektron.experiments.plan import estimate_run_all, format_comparison, format_plan
    from spektron.training.distributed import resolve_device

    est = None
    if resolve_device(cfg.device).type == "cpu":  # the estimate times models on the CPU
        est = estimate_run_all(cfg, data_cached=default_dataset_path(cfg.data).is_file())
        log.info("%s", format_plan(est))
        if announce is not None:
            announce({"experiment": "run-all", "estimate": format_plan(est)})
    measured: dict[str, float] = {}
    results: dict[str, Any] = {}
    t0 = time.perf_counter()
    results["data"] = run_data_overview(cfg, out / "data", progress=progress)
    measured["data"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    results["e1"] = run_e1(cfg, out / "e1", progress=progress, announce=announce)
    measured["e1"] = time.perf_counter() - t0
    if cfg.e2.pretrained_from is None:
        cfg = replace(cfg, e2=replace(cfg.e2, pretrained_from=str(out / "e1")))
    t0 = time.perf_counter()
    results["e2"] = run_e2(cfg, out / "e2", progress=progress, announce=announce)
    measured["e2"] = time.perf_counter() - t0
    if "dlinoss" in cfg.e1.backbones:
        if cfg.e3.trained_from is None:
            cfg = replace(cfg, e3=replace(cfg.e3, trained_from=str(out / "e1")))
        t0 = time.perf_counter()
        results["e3"] = run_e3(cfg, out / "e3", progress=progress, announce=announce)
        measured["e3"] = time.perf_counter() - t0
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
    t0 = time.perf_counter()
    results["e4"] = run_e4(cfg, out / "e4", progress=progress, announce=announce)
    measured["e4"] = time.perf_counter() - t0
    results["timing"] = {
        "estimate_s": est and est["stages_s"],
        "estimate_total_s": est and est["total_s"],
        "measured_s": measured,
        "measured_total_s": sum(measured.values()),
        "comparison": format_comparison(est, measured) if est else "no estimate (not on the CPU)",
    }
    write_json_atomic(out / "timing.json", results["timing"])
    return results
