"""How long ``spektron run-all`` will take, estimated before it starts, and the comparison
with what it took.

Training dominates and is estimated from measurements on this machine: one optimizer step of
every arm's own model (E1's masked reconstruction, E2's cross-spectral model, E3's D-LinOSS,
E4's regression model at the NIR lengths), timed with the threads a run gets, and one
evaluation forward pass at the evaluation batch size. Each run costs

    steps × step time + (evaluations × batches per evaluation + test batches) × forward time

plus one process start per pool (its workers are reused from run to run), and the runs are
scheduled as the pools schedule them (slowest arm first, each run to the first free worker), so
the tail of a pool is counted. What is not training (the data stage, baselines, the classical
calibration-transfer methods, probes, aggregation, reports) is a per-stage constant in seconds,
measured on a 2-core x86-64 CPU at the quick preset (``OVERHEAD_S``); it does not scale with
the steps and may be off on other machines or presets, which the end-of-run comparison shows.
"""

from __future__ import annotations

import heapq
import json
import math
import os
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from spektron.config import RunConfig
from spektron.data.generate import LEVEL_CPU_S

# Seconds of each stage outside its training runs, from one `make run` (quick preset, 2-core
# x86-64 CPU, fresh cache, 2026-12-04, the stages one after another): "data" is the data stage
# without the simulation (QM9 parse, validation of every level, figures; the simulation is added
# from LEVEL_CPU_S, below); E1 its baselines and report; E2 the centrosymmetric set (simulated
# on a fresh cache), baselines (PLS2 walking k up to 256, retrieval), aggregation and report; E3
# the transfer-function analysis and report; E4 the classical methods, the 36 probe groups and
# the report. Each is the stage's measured time less its estimated training.
OVERHEAD_S = {"data": 50.0, "e1": 40.0, "e2": 180.0, "e3": 30.0, "e4": 280.0}
# Per training run, outside its steps: building the model, reading its data (once per pool
# worker in E2), scoring and writing its results (E2 quick, measured by profile: ~2 s).
RUN_OVERHEAD_S = 2.0
# A cached dataset skips the simulation: what remains of the data stage (validation, figures).
DATA_CACHED_S = 15.0
# Spawning a worker process and importing the package (once per pool: workers are reused).
PROCESS_START_S = 3.5
# E2, E3 and E4 side by side (run-all on the CPU): their wall time is their CPU work over the
# cores. Run one after another they kept 2 cores 1.8 busy on average (make run, 2-core CPU:
# 3,880 CPU s in 35.7 min, set-up included), so the sum of their separate estimates shrinks
# by 1.8 / 2; never below the longest of them.
SIDE_BY_SIDE_FACTOR = 0.9
SIDE_BY_SIDE = ("e2", "e3", "e4")


def _jobs(setting: int) -> int:
    return setting or (os.cpu_count() or 1)


def _time_model(
    model_json: dict[str, Any], batch: int, eval_batch: int, length: int, grid: np.ndarray
) -> tuple[float, float]:
    """(seconds per training step at ``batch``, seconds per no-grad forward at ``eval_batch``)
    of the model, on random inputs of ``length`` points, each the second of two timed calls."""
    from spektron.models.spektron import Spektron, SpektronConfig

    torch.manual_seed(0)
    model = Spektron(SpektronConfig.from_json_dict(model_json))
    wn = torch.as_tensor(grid, dtype=torch.float32)
    x = torch.rand(batch, length)
    step = []
    for _ in range(2):
        t0 = time.perf_counter()
        model(x, wn, None)["pred"].float().square().mean().backward()
        step.append(time.perf_counter() - t0)
    model.eval()
    fwd = []
    with torch.no_grad():  # at the training batch, scaled: forward time is linear in the batch
        for _ in range(2):
            t0 = time.perf_counter()
            model(x, wn, None)
            fwd.append(time.perf_counter() - t0)
    return step[-1], fwd[-1] * eval_batch / batch


def _pool_seconds(durations: list[float], jobs: int) -> float:
    """Wall time of a pool of ``jobs`` workers taking the runs in the given order (a pool of
    more than one worker starts its processes first)."""
    if not durations:
        return 0.0
    free = [PROCESS_START_S if jobs > 1 else 0.0] * max(1, jobs)
    for d in durations:
        heapq.heapreplace(free, free[0] + d)
    return max(free)


class _Timer:
    """Measured step / forward times, once per (model, batch, length)."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.cache: dict[str, tuple[float, float]] = {}

    def __call__(self, model_json, batch, eval_batch, length, grid) -> tuple[float, float]:
        key = json.dumps([model_json, batch, eval_batch, length], sort_keys=True)
        if key not in self.cache:
            before = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                self.cache[key] = _time_model(model_json, batch, eval_batch, length, grid)
            finally:
                torch.set_num_threads(before)
        return self.cache[key]


def _run_seconds(step_s, fwd_s, tc, n_eval: int, n_test: int) -> float:
    """One training run: its steps, its evaluations, its test scoring."""
    evals = tc.steps // tc.eval_every if tc.eval_every else 0
    per_eval = math.ceil(n_eval / tc.eval_batch_size)
    test = math.ceil(n_test / tc.eval_batch_size)
    steps = tc.steps * tc.accumulation * step_s
    return steps + (evals * per_eval + test) * fwd_s + RUN_OVERHEAD_S


def estimate_run_all(
    cfg: RunConfig,
    data_cached: bool,
    side_by_side: bool = False,
    include: tuple[str, ...] = ("data", "e1", "e2", "e3", "e4"),
) -> dict[str, Any]:
    """Estimated seconds of each run-all stage of ``include`` and in all (see the module
    docstring); with ``side_by_side``, those of E2-E4 as run-all runs them on the CPU
    (``SIDE_BY_SIDE_FACTOR``)."""
    from spektron.chemistry.spectra import make_grid
    from spektron.experiments.e2.run import model_config as e2_model_config
    from spektron.experiments.e4.deep import load_pair
    from spektron.experiments.e4.run import _model_config as e4_model_config
    from spektron.experiments.runner import SLOWEST_FIRST as order
    from spektron.experiments.runner import model_config as e1_model_config
    from spektron.experiments.runner import size_arms
    from spektron.experiments.runner import threads_for as _threads

    g = cfg.data.grid
    grid = make_grid(g.n_points, g.lo, g.hi)
    L = len(grid)
    e1, e2, e3, e4 = cfg.e1, cfg.e2, cfg.e3, cfg.e4
    n = cfg.data.n_molecules or 3000
    # Split sizes as E1 / E2 draw them (two spectra per molecule in E1): ~5 % val, ~10 % test.
    n_val, n_test = int(0.05 * n * len(e1.kinds)), int(0.106 * n * len(e1.kinds))
    stages: dict[str, float] = {}
    if data_cached:
        stages["data"] = DATA_CACHED_S
    else:  # molecules × CPU seconds per molecule at the level, over the simulation workers
        sim_s = n * LEVEL_CPU_S[cfg.data.physics.level] / _jobs(cfg.workers)
        stages["data"] = OVERHEAD_S["data"] + sim_s
    names = tuple(dict.fromkeys(e1.backbones + e2.backbones + e4.finetune_backbones))
    arms = size_arms(replace(e1, backbones=names))

    # E1: every arm × (LR sweep + other seeds).
    jobs = _jobs(e1.jobs)
    timer = _Timer(_threads(jobs))
    runs = []
    for b in sorted(e1.backbones, key=lambda b: order.get(b, -1)):
        m = e1_model_config(e1, b, arms[b]["backbone_config"])
        step, fwd = timer(m, e1.train.batch_size, e1.train.eval_batch_size, L, grid)
        # Test scoring once more per gap length of the gap-length axis.
        scored = n_test * (1 + len(e1.eval_spans))
        one = _run_seconds(step, fwd, e1.train, n_val, scored)
        if e1.tune.n_trials:  # the trials (short runs, validation only), then every seed
            trial = _run_seconds(step, fwd, replace(e1.train, steps=e1.tune.steps), n_val, 0)
            runs += [trial] * e1.tune.n_trials + [one] * e1.n_seeds
        else:
            runs += [one] * (len(e1.lr_sweep) + e1.n_seeds - 1)
        if e1.convergence_check:  # the budget check: the first seed for k × the steps
            longer = replace(e1.train, steps=e1.convergence_check * e1.train.steps)
            runs.append(_run_seconds(step, fwd, longer, n_val, scored))
    stages["e1"] = _pool_seconds(runs, jobs) + OVERHEAD_S["e1"]

    # E2: directions × inits × arms × (LR sweep + other seeds); molecules, not spectra.
    jobs = _jobs(e2.jobs)
    timer.threads = _threads(jobs)
    runs = []
    for b in sorted(e2.backbones, key=lambda b: order.get(b, -1)):
        m = e2_model_config(cfg, b, arms[b]["backbone_config"])
        step, fwd = timer(m, e2.train.batch_size, e2.train.eval_batch_size, L, grid)
        one = _run_seconds(step, fwd, e2.train, n_val // 2, n_test // 2)
        per_arm = len(e2.lr_sweep) + e2.n_seeds - 1
        if len(e2.lr_sweep) > 1:  # LR extensions: expected for half of the arms
            per_arm += 0.5 * e2.lr_extensions
        runs += [one] * round(len(e2.directions) * len(e2.inits) * per_arm)
        if e2.convergence_check:  # the budget check: each arm's first seed for k × the steps
            longer = replace(e2.train, steps=e2.convergence_check * e2.train.steps)
            check = _run_seconds(step, fwd, longer, n_val // 2, n_test // 2)
            runs += [check] * (len(e2.directions) * len(e2.inits))
    stages["e2"] = _pool_seconds(runs, jobs) + OVERHEAD_S["e2"]

    # E3: the shuffled-order D-LinOSS controls, E1's recipe.
    stages["e3"] = 0.0
    if "dlinoss" in e1.backbones:
        jobs = _jobs(e3.jobs)
        timer.threads = _threads(jobs)
        m = e1_model_config(e1, "dlinoss", arms["dlinoss"]["backbone_config"])
        step, fwd = timer(m, e1.train.batch_size, e1.train.eval_batch_size, L, grid)
        one = _run_seconds(step, fwd, e1.train, n_val, n_test)
        stages["e3"] = _pool_seconds([one] * e3.n_shuffled, jobs) + OVERHEAD_S["e3"]

    # E4: one master-calibration stage per (dataset, master) and arm, a standards stage per
    # pair and arm, at the pair's own length (wavenumber mode: its channels; index: the grid).
    jobs = _jobs(e4.jobs)
    timer.threads = _threads(jobs)
    masters, standards = [], []
    seen: set[tuple[str, str]] = set()
    for p in e4.pairs:
        name, master, _ = p.split(":")
        data = load_pair(p)
        first = (name, master) not in seen
        seen.add((name, master))
        for b in sorted(e4.finetune_backbones, key=lambda b: order.get(b, -1)):
            m = e4_model_config(cfg, b, arms[b]["backbone_config"])
            for mode in e4.finetune_input_modes:
                length = data.master.X_cal.shape[1] if mode == "wavenumber" else L
                n_cal, n_std = len(data.y_cal), len(data.y_trans)
                k = len(e4.inits) * e4.n_seeds
                tc, ts = e4.train, e4.standards_train
                w = np.linspace(g.lo, g.hi, length)  # any ascending grid of that length
                step, fwd = timer(m, min(tc.batch_size, n_cal), 64, length, w)
                if first:
                    masters += [_run_seconds(step, 0.0, tc, 0, 0)] * k
                step, fwd = timer(m, min(ts.batch_size, n_std), 64, length, w)
                std = _run_seconds(step, 0.0, ts, 0, 0) + 5 * fwd  # + the variants
                standards += [std] * k
    stages["e4"] = _pool_seconds(masters, jobs) + _pool_seconds(standards, jobs)
    stages["e4"] += OVERHEAD_S["e4"]
    stages = {k: v for k, v in stages.items() if k in include}
    total = sum(stages.values())
    est: dict[str, Any] = {"stages_s": stages, "total_s": total}
    if side_by_side:
        parts = [stages[k] for k in SIDE_BY_SIDE if stages.get(k)] or [0.0]
        block = max(max(parts), SIDE_BY_SIDE_FACTOR * sum(parts))
        est["side_by_side_s"] = block
        est["total_s"] = total - sum(parts) + block
    return est


def format_plan(est: dict[str, Any]) -> str:
    parts = ", ".join(f"{k} {v / 60:.1f}" for k, v in est["stages_s"].items())
    side = ""
    if "side_by_side_s" in est:
        names = ", ".join(k for k in SIDE_BY_SIDE if k in est["stages_s"])
        side = f"; {names} side by side: {est['side_by_side_s'] / 60:.1f} min"
    return f"estimated wall time: {est['total_s'] / 60:.1f} min ({parts} min{side})"


def format_comparison(
    est: dict[str, Any], measured: dict[str, float], total: float | None = None
) -> str:
    """Measured against estimated, per stage and in all (``total``: the measured wall time of
    the whole job; default the sum of the stages). Stages run side by side are estimated
    alone and measured sharing the cores: their own rows say so, the block's row compares."""
    rows = ["stage     estimated  measured  measured/estimated"]
    side = "side_by_side_s" in est
    for k, v in est["stages_s"].items():
        if k in measured:
            m = measured[k]
            note = "  (estimated alone, ran side by side)" if side and k in SIDE_BY_SIDE else ""
            rows.append(f"{k:<9} {v / 60:8.1f}m {m / 60:8.1f}m  {m / max(v, 1e-9):8.2f}{note}")
    block = "+".join(k for k in SIDE_BY_SIDE if k in est["stages_s"])
    if side and block in measured:
        v, m = est["side_by_side_s"], measured[block]
        rows.append(f"{block:<9} {v / 60:8.1f}m {m / 60:8.1f}m  {m / max(v, 1e-9):8.2f}")
    if total is None:
        total = sum(measured.values())
    rows.append(
        f"{'total':<9} {est['total_s'] / 60:8.1f}m {total / 60:8.1f}m  "
        f"{total / max(est['total_s'], 1e-9):8.2f}"
    )
    return "\n".join(rows)
