"""The run-all wall-time estimate: the pool schedule, the run cost, the stages it adds up."""

from __future__ import annotations

import pytest

from spektron.config import PHYSICS_LEVELS, preset_config
from spektron.experiments import plan


def test_pool_schedule_takes_runs_in_order_to_the_first_free_worker(monkeypatch):
    monkeypatch.setattr(plan, "PROCESS_START_S", 0.0)
    assert plan._pool_seconds([], 2) == 0.0
    assert plan._pool_seconds([5, 3, 3, 2], 1) == 13
    # worker 1: 5, then 2 → 7; worker 2: 3, 3 → 6
    assert plan._pool_seconds([5, 3, 3, 2], 2) == 7
    assert plan._pool_seconds([1, 1, 1, 9], 2) == 10  # a long run last makes a long tail
    # a pool of workers starts them once, not once per run (workers are reused)
    monkeypatch.setattr(plan, "PROCESS_START_S", 4.0)
    assert plan._pool_seconds([5, 3, 3, 2], 2) == 11
    assert plan._pool_seconds([5, 3, 3, 2], 1) == 13  # in-process: no start


def test_estimate_counts_every_run_once_per_stage(monkeypatch):
    # Every model takes 1 s a step and 0.5 s an evaluation forward: the estimate is arithmetic.
    monkeypatch.setattr(plan, "_time_model", lambda *a, **k: (1.0, 0.5))
    monkeypatch.setattr(plan, "PROCESS_START_S", 0.0)
    monkeypatch.setattr(plan, "RUN_OVERHEAD_S", 0.25)
    monkeypatch.setattr(plan.os, "cpu_count", lambda: 1)  # one job: the runs add up
    over = [
        "e1.jobs=1",
        "e2.jobs=1",
        "e3.jobs=1",
        "e4.jobs=1",
        'e4.pairs=["corn:m5:mp5", "corn:m5:mp6"]',
        'e4.finetune_backbones=["cnn"]',
    ]
    cfg = preset_config("smoke", over)
    est = plan.estimate_run_all(cfg, data_cached=True)
    st = est["stages_s"]
    assert set(st) == {"data", "e1", "e2", "e3", "e4"}
    assert st["data"] == plan.DATA_CACHED_S
    assert est["total_s"] == pytest.approx(sum(st.values()))
    e1, e4 = cfg.e1, cfg.e4
    runs = len(e1.backbones) * (len(e1.lr_sweep) + e1.n_seeds - 1)
    assert st["e1"] > runs * e1.train.steps + plan.OVERHEAD_S["e1"]  # + evaluations
    # E4: one master stage for the two corn pairs, a standards stage for each
    k = len(e4.inits) * e4.n_seeds * len(e4.finetune_input_modes)
    std = e4.standards_train.steps + 5 * 0.5 + 0.25
    master = e4.train.steps + 0.25
    assert st["e4"] == pytest.approx(k * master + 2 * k * std + plan.OVERHEAD_S["e4"])
    # a dataset still to simulate: molecules × the level's CPU seconds over the workers
    cfg_x = preset_config("smoke", [*over, "data.physics.level=xtb"], workers=2)
    fresh = plan.estimate_run_all(cfg_x, data_cached=False)["stages_s"]["data"]
    sim = cfg_x.data.n_molecules * plan.LEVEL_CPU_S["xtb"] / 2
    assert fresh == pytest.approx(plan.OVERHEAD_S["data"] + sim)
    assert set(plan.LEVEL_CPU_S) == set(PHYSICS_LEVELS)
    assert "estimated wall time" in plan.format_plan(est)
    table = plan.format_comparison(est, {k: 2 * v for k, v in st.items()})
    assert table.splitlines()[-1].split()[-1] == "2.00"
    # side by side: E2-E4 count as their summed estimate × the factor, at least the longest
    side = plan.estimate_run_all(cfg, data_cached=True, side_by_side=True)
    parts = [side["stages_s"][k] for k in ("e2", "e3", "e4")]
    block = max(max(parts), plan.SIDE_BY_SIDE_FACTOR * sum(parts))
    assert side["side_by_side_s"] == pytest.approx(block)
    assert side["total_s"] == pytest.approx(st["data"] + st["e1"] + block)
    measured = {**{k: 2 * v for k, v in st.items()}, "e2+e3+e4": 2 * block}
    table = plan.format_comparison(side, measured, 2 * side["total_s"])
    assert "ran side by side" in table and "e2+e3+e4" in table
    assert table.splitlines()[-1].split()[-1] == "2.00"


def test_the_estimate_covers_the_stages_asked_for_and_e2_lr_extensions(monkeypatch):
    monkeypatch.setattr(plan, "_time_model", lambda *a, **k: (1.0, 0.5))
    monkeypatch.setattr(plan.os, "cpu_count", lambda: 1)
    over = ["e2.jobs=1", "e3.jobs=1", "e4.jobs=1", 'e4.finetune_backbones=["cnn"]']
    cfg = preset_config("smoke", over)
    full = plan.estimate_run_all(cfg, data_cached=True)["stages_s"]
    part = plan.estimate_run_all(cfg, data_cached=True, side_by_side=True, include=("e2", "e4"))
    assert set(part["stages_s"]) == {"e2", "e4"}
    assert part["stages_s"]["e2"] == pytest.approx(full["e2"])
    assert part["side_by_side_s"] == pytest.approx(
        max(full["e2"], full["e4"], plan.SIDE_BY_SIDE_FACTOR * (full["e2"] + full["e4"]))
    )
    assert "e2, e4 side by side" in plan.format_plan(part)
    # Each LR extension adds a run for half of the (direction, init, arm) combinations.
    grid = ["e2.lr_sweep=[1e-3, 3e-3]"]
    two = preset_config("smoke", [*over, *grid])
    ext = preset_config("smoke", [*over, *grid, "e2.lr_extensions=2"])
    e2_two = plan.estimate_run_all(two, data_cached=True, include=("e2",))["stages_s"]["e2"]
    e2_ext = plan.estimate_run_all(ext, data_cached=True, include=("e2",))["stages_s"]["e2"]
    combos = len(two.e2.directions) * len(two.e2.inits) * len(two.e2.backbones)
    one_run = (e2_two - plan.OVERHEAD_S["e2"]) / (combos * (2 + two.e2.n_seeds - 1))
    assert e2_ext - e2_two == pytest.approx(combos * one_run)


def test_the_budget_checks_add_one_longer_run_per_arm(monkeypatch):
    from dataclasses import replace

    monkeypatch.setattr(plan, "_time_model", lambda *a, **k: (1.0, 0.5))
    monkeypatch.setattr(plan, "PROCESS_START_S", 0.0)
    monkeypatch.setattr(plan.os, "cpu_count", lambda: 1)  # one job: the runs add up
    over = ["e1.jobs=1", "e2.jobs=1"]
    base = preset_config("smoke", over)
    chk = preset_config("smoke", [*over, "e1.convergence_check=3", "e2.convergence_check=2"])
    a = plan.estimate_run_all(base, data_cached=True, include=("e1", "e2"))["stages_s"]
    b = plan.estimate_run_all(chk, data_cached=True, include=("e1", "e2"))["stages_s"]
    n = base.data.n_molecules
    n_val, n_test = int(0.05 * n * 2), int(0.106 * n * 2)
    e1, e2 = base.e1, base.e2
    spans = 1 + len(e1.eval_spans)
    one1 = plan._run_seconds(
        1.0, 0.5, replace(e1.train, steps=3 * e1.train.steps), n_val, n_test * spans
    )
    assert b["e1"] - a["e1"] == pytest.approx(len(e1.backbones) * one1)
    one2 = plan._run_seconds(
        1.0, 0.5, replace(e2.train, steps=2 * e2.train.steps), n_val // 2, n_test // 2
    )
    combos = len(e2.directions) * len(e2.inits) * len(e2.backbones)
    assert b["e2"] - a["e2"] == pytest.approx(combos * one2)
