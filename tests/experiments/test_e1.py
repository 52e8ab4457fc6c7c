"""E1 end to end on a small synthetic store (mechanics, fairness, provenance, caching), the
pretrain verb, and the CLI verbs e1 / pretrain / report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from spektron.chemistry.spectra import make_grid
from spektron.cli import main
from spektron.config import preset_config
from spektron.data.generate import default_dataset_path
from spektron.data.store import StoreWriter
from spektron.errors import ConfigError
from spektron.experiments.e1.run import run_e1
from spektron.experiments.pretrain import run_pretrain
from spektron.models.spektron import Spektron
from tests.helpers import fake_record

N_POINTS = 256
SMOKE = [f"data.grid.n_points={N_POINTS}", "e1.jobs=1"]


def _bands(grid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    c = rng.uniform(600, 3900, 5)
    h = rng.uniform(0.2, 1.0, 5)
    x = (h[:, None] / (1 + ((grid[None] - c[:, None]) / 12.0) ** 2)).sum(0)
    return x / x.max()


def _store_for(cfg) -> Path:
    """A synthetic store where the config's cached dataset would live (no simulation)."""
    path = default_dataset_path(cfg.data)
    grid = make_grid(cfg.data.grid.n_points, cfg.data.grid.lo, cfg.data.grid.hi)
    rng = np.random.default_rng(0)
    with StoreWriter(path, grid, fg_names=["a", "b"]) as w:
        for i in range(160):
            rec = fake_record(i, grid, rng)
            rec.ir = _bands(grid, rng)
            rec.raman = _bands(grid, rng)
            w.append(rec)
    return path


def _cfg(*extra: str):
    return preset_config("smoke", [*SMOKE, *extra])


@pytest.fixture(scope="module")
def e1_run(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("SPEKTRON_CACHE", str(cache))
    torch.set_num_threads(1)
    cfg = _cfg()
    _store_for(cfg)
    out = tmp_path_factory.mktemp("runs") / "e1"
    plans = []
    summary = run_e1(cfg, out, progress=False, announce=plans.append)
    yield cfg, out, summary, plans, cache
    mp.undo()


def test_e1_summary_covers_every_arm_and_baseline(e1_run):
    cfg, out, summary, plans, _ = e1_run
    assert set(summary["backbones"]) == set(cfg.e1.backbones)
    assert set(summary["baselines"]) == {"mean", "interpolation", "pca"}
    assert "SIMULATED" in summary["data_label"]
    assert summary["scale"]["backbone_length"] == N_POINTS // cfg.e1.stride
    for b in summary["backbones"].values():
        assert np.isfinite(b["test"]["masked_mse"]["mean"])
        assert b["flops_total"] >= b["flops_matmul"] > 0
        assert abs(b["n_params"] - cfg.e1.budget) <= cfg.e1.budget_tol * cfg.e1.budget
    gate = summary["quality_gate"]
    assert set(gate["references"]) == {"interpolation", "pca"}
    # The plan was announced before training, with a measured time estimate.
    assert plans and plans[0]["n_training_runs"] == len(cfg.e1.backbones)
    assert all(v > 0 for v in plans[0]["measured_step_s"].values())
    paired = summary["paired"]
    assert all(0 < r["p_holm"] <= 1 and r["p_holm"] >= r["p_value"] for r in paired)


def test_e1_runs_differ_only_in_the_backbone(e1_run):
    cfg, out, summary, _, _ = e1_run
    configs = [
        json.loads((out / r / "config.json").read_text())
        for b in summary["backbones"].values()
        for r in b["runs"]
    ]
    shared = [
        {**c["model"], "backbone": None, "backbone_config": None, "train": c["train"]}
        for c in configs
    ]
    assert all(s == shared[0] for s in shared)


def test_e1_run_folders_hold_provenance_and_loadable_checkpoints(e1_run):
    _, out, summary, _, _ = e1_run
    run = out / summary["backbones"]["dlinoss"]["runs"][0]
    m = json.loads((run / "metrics.json").read_text())
    for key in ("git_commit", "device", "package_versions", "dataset", "parameters", "train"):
        assert key in m
    assert m["schema_version"] == 1 and m["dataset"]["sha256"]
    assert m["metric_directions"]["masked_mse"] == "lower"
    assert m["train"]["peak_memory_mb"] >= 0 and m["train"]["samples_per_s"] > 0
    # The summary's FLOPs are those of the code that trained the run, as its metrics record.
    assert summary["backbones"]["dlinoss"]["flops_total"] == m["flops_per_spectrum"]["total"]
    model = Spektron.from_checkpoint(run / "best.pt")
    assert model.cfg.backbone == "dlinoss"
    init = torch.load(run / "init.pt", weights_only=True)
    assert init["extra"]["step"] == 0
    lines = (run / "history.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["step"] == 1
    # D-LinOSS: oscillators outside the clamp interval at init, best and end, per seed.
    clamped = m["clamped_oscillators"]
    n_osc = len(model.backbone.cores()) * model.backbone.cfg.n_oscillators
    assert set(clamped) == {"init", "best", "end"}
    assert all(
        c["total"] == n_osc and c["below_lo"] + c["above_hi"] <= n_osc for c in clamped.values()
    )
    assert summary["backbones"]["dlinoss"]["clamped_oscillators"] == [clamped]
    assert "clamped_oscillators" not in summary["backbones"]["cnn"]
    assert "outside the clamp interval" in (out / "table.md").read_text()


def test_e1_report_files_and_rebuild(e1_run, capsys):
    _, out, _, _, _ = e1_run
    table = (out / "table.md").read_text()
    assert "SIMULATED" in table and "dlinoss" in table
    examples = json.loads((out / "examples.json").read_text())
    assert examples["examples"] and set(examples["examples"][0]["mask"]) <= {0, 1}
    (out / "table.md").unlink()
    assert main(["report", "--out", str(out.parent)]) == 0  # the results root
    assert (out / "table.md").read_text() == table
    assert main(["report", "--out", str(out)]) == 0  # or the experiment folder itself


def test_e1_rerun_reuses_finished_runs_and_refuses_changed_settings(e1_run, monkeypatch):
    cfg, out, summary, _, cache = e1_run
    monkeypatch.setenv("SPEKTRON_CACHE", str(cache))
    plans = []
    again = run_e1(cfg, out, progress=False, announce=plans.append)
    for name, b in summary["backbones"].items():
        assert again["backbones"][name]["test"] == b["test"]
    # The first call's wall time is kept beside this one's.
    assert again["earlier_wall_times_s"] == [summary["wall_time_s"]]
    n = len(cfg.e1.backbones) * cfg.e1.n_seeds
    assert plans[0]["reuse"] == f"{n} of {n} runs already finished in {out} (reused), 0 to train"
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    changed = _cfg("e1.msrp.mask.fraction=0.3")
    with pytest.raises(
        ConfigError, match=r"other settings \(e1\.msrp\.mask\.fraction: 0\.15 there, 0\.3 now\)"
    ):
        run_e1(changed, out, progress=False, announce=plans.append)
    assert len(plans) == 1  # refused before the plan, the baselines or any write
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_e1_settings_that_train_nothing_do_not_retrain_finished_runs(e1_run, tmp_path, monkeypatch):
    """More seeds, fewer arms or another bootstrap reuse the finished runs, and so does a folder
    whose run_spec.json recorded such settings in its identity (written by an older version)."""
    import shutil

    cfg, out, summary, _, cache = e1_run
    monkeypatch.setenv("SPEKTRON_CACHE", str(cache))
    copy = tmp_path / "e1"
    shutil.copytree(out, copy)
    old_spec = next((copy / "runs" / "cnn").glob("*/run_spec.json"))
    stored = json.loads(old_spec.read_text())
    stored["hashed"]["e1"].update(n_seeds=6, n_bootstrap=9999, backbones=["x"])
    bb = stored["hashed"]["model"]["backbone_config"]
    assert bb["dilation_cycle"] == [1, 2, 4, 8]  # the default: a run from before the field
    del bb["dilation_cycle"]
    stored["run_hash"] = "recorded-by-an-older-version"
    old_spec.write_text(json.dumps(stored))
    plans = []
    fewer = _cfg('e1.backbones=["cnn"]', "e1.n_bootstrap=300", "e1.jobs=2")
    again = run_e1(fewer, copy, progress=False, announce=plans.append)
    assert plans[0]["reuse"] == f"1 of 1 runs already finished in {copy} (reused), 0 to train"
    assert (
        again["backbones"]["cnn"]["test"]["masked_mse"]["per_seed"]
        == (summary["backbones"]["cnn"]["test"]["masked_mse"]["per_seed"])
    )
    stored["hashed"]["e1"]["stride"] = 99  # a setting that does change the run: still refused
    old_spec.write_text(json.dumps(stored))
    with pytest.raises(ConfigError, match=r"e1\.stride: 99 there"):
        run_e1(fewer, copy, progress=False)


def test_e1_budget_check_trains_the_first_seed_longer_and_decides_convergence(
    e1_run, tmp_path, monkeypatch
):
    """e1.convergence_check = 2: one more run per arm (first seed, twice the steps) beside the
    seeds; its best validation value against the first seed's decides convergence, and a rerun
    reuses it."""
    import shutil

    cfg, out, summary, _, cache = e1_run
    monkeypatch.setenv("SPEKTRON_CACHE", str(cache))
    copy = tmp_path / "e1"
    shutil.copytree(out, copy)
    checked = _cfg('e1.backbones=["cnn", "dlinoss"]', "e1.convergence_check=2")
    plans = []
    res = run_e1(checked, copy, progress=False, announce=plans.append)
    steps = cfg.e1.train.steps
    assert plans[0]["n_training_runs"] == 2 * 2 and "6" in plans[0]["budget_check"]
    conv = res["convergence"]
    assert conv["check"] == 2 and "doubling the steps" in conv["rule"]
    for name in ("cnn", "dlinoss"):
        chk = res["backbones"][name]["convergence"]["budget_check"]
        run = copy / chk["run"]
        assert run.name.endswith(f"_steps{2 * steps}") and (run / "metrics.json").is_file()
        assert json.loads((run / "config.json").read_text())["train"]["steps"] == 2 * steps
        assert chk["curve"]["step"][-1] == 2 * steps and chk["steps"] == steps
        assert chk["val"] == res["backbones"][name]["val_masked_mse"]["mean"]  # one seed
        assert chk["gain"] == pytest.approx((chk["val"] - chk["check_val"]) / chk["check_val"])
        assert chk["converged"] == (chk["gain"] < checked.e1.convergence_tol)
        assert res["backbones"][name]["convergence"]["converged"] == chk["converged"]
        # The first seed's run is the one the seeds' table reports (reused, not retrained).
        assert chk["test_masked_mse"] == summary["backbones"][name]["test"]["masked_mse"]["mean"]
    assert conv["all_converged"] == all(
        res["backbones"][n]["convergence"]["converged"] for n in ("cnn", "dlinoss")
    )
    table = (copy / "table.md").read_text()
    assert "best val (check)" in table and "First seed's test order" in table
    assert plans[0]["reuse"] == f"2 of 4 runs already finished in {copy} (reused), 2 to train"
    done = {p: p.stat().st_mtime_ns for p in copy.glob("runs/*/*_steps*/metrics.json")}
    again = []
    run_e1(checked, copy, progress=False, announce=again.append)
    assert again[0]["reuse"] == f"4 of 4 runs already finished in {copy} (reused), 0 to train"
    assert len(done) == 2
    assert {p: p.stat().st_mtime_ns for p in done} == done


def test_pretrain_leaves_a_checkpoint_for_downstream_use(e1_run, tmp_path, monkeypatch):
    cfg, _, _, _, cache = e1_run
    monkeypatch.setenv("SPEKTRON_CACHE", str(cache))
    res = run_pretrain(cfg, tmp_path, backbone="cnn", progress=False)
    model = Spektron.from_checkpoint(res["checkpoint"])
    assert model.cfg.backbone == "cnn" and model.cfg.head == "reconstruction"
    assert json.loads((tmp_path / "pretrain.json").read_text())["backbone"] == "cnn"
    with pytest.raises(ConfigError, match="unknown backbone"):
        run_pretrain(cfg, tmp_path, backbone="nope", progress=False)


def test_cli_e1_and_pretrain(e1_run, tmp_path, monkeypatch, capsys):
    _, _, _, _, cache = e1_run
    monkeypatch.setenv("SPEKTRON_CACHE", str(cache))
    args = ["--preset", "smoke", *sum([["--set", s] for s in SMOKE], [])]
    rc = main(["-q", "e1", *args, "--set", 'e1.backbones=["cnn"]', "--out", str(tmp_path / "e")])
    out = capsys.readouterr().out
    assert rc == 0 and "E1 will run" in out and "quality gate" in out and "SIMULATED" in out
    rc = main(["-q", "pretrain", *args, "--backbone", "cnn", "--out", str(tmp_path / "p")])
    assert rc == 0 and "checkpoint:" in capsys.readouterr().out
    assert main(["report", "--out", str(tmp_path / "empty")]) == 2
    rc = main(["-q", "e1", "--preset", "smoke", "--set", 'e1.backbones=["nope"]'])
    assert rc == 2


def test_pretrain_under_torchrun_two_processes(e1_run, tmp_path):
    """The CLI's DDP path: torchrun + gloo, 2 processes, one checkpoint written by rank 0."""
    import os
    import socket
    import subprocess
    import sys

    _, _, _, _, cache = e1_run
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    cmd += [f"--master_port={port}", "-m", "spektron.cli", "-q", "pretrain", "--preset", "smoke"]
    cmd += [*sum([["--set", s] for s in SMOKE], []), "--backbone", "cnn"]
    cmd += ["--device", "cpu", "--out", str(tmp_path)]
    env = {**os.environ, "SPEKTRON_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("checkpoint:") == 1  # only rank 0 reports
    res = json.loads((tmp_path / "pretrain.json").read_text())
    m = json.loads((Path(res["run_dir"]) / "metrics.json").read_text())
    assert m["train"]["world_size"] == 2
    Spektron.from_checkpoint(res["checkpoint"])


def test_e1_gap_length_axis_scores_every_arm_and_baseline_per_span(e1_run, tmp_path, monkeypatch):
    """Trained on log-uniform spans, scored at every ℓ of e1.eval_spans; interpolation (a
    model-free check of the masks) gets worse as the gaps grow."""
    _, _, _, _, cache = e1_run
    monkeypatch.setenv("SPEKTRON_CACHE", str(cache))
    cfg = _cfg(
        'e1.backbones=["dlinoss_sigmoid","cnn"]',
        "e1.eval_spans=[2,8,32]",
        "e1.msrp.mask.span_dist=log_uniform",
        "e1.msrp.mask.min_span=2",
        "e1.msrp.mask.max_span=32",
    )
    out = tmp_path / "e1"
    summary = run_e1(cfg, out, progress=False)
    gap = summary["gap_length"]
    assert gap["spans"] == [2, 8, 32] and "log-uniform" in gap["train_mask"]
    assert set(gap["backbones"]) == {"dlinoss_sigmoid", "cnn"}
    assert set(gap["baselines"]) == {"mean", "interpolation", "pca"}
    for row in gap["backbones"].values():
        for n in ("2", "8", "32"):
            e = row[n]
            assert e["ci"]["lo"] <= e["ci"]["mean"] <= e["ci"]["hi"] and len(e["per_seed"]) == 1
    interp = [gap["baselines"]["interpolation"][n]["mean"] for n in ("2", "8", "32")]
    assert interp[0] < interp[1] < interp[2], interp
    # Each run's per-molecule values give the summary's mean (one seed).
    run = out / summary["backbones"]["cnn"]["runs"][0]
    pm = json.loads((run / "per_molecule.json").read_text())["gap_length"]
    assert np.mean(pm["8"]) == pytest.approx(gap["backbones"]["cnn"]["8"]["mean"])
    spans = {r["span"] for r in gap["paired"]}
    assert spans == {2, 8, 32} and all(0 < r["p_holm"] <= 1 for r in gap["paired"])
    assert (out / "figures" / "gap_length.png").is_file()
    table = (out / "table.md").read_text()
    assert "### Masked MSE by gap length" in table and "32 pts" in table
    # The variant has no zero-gradient region: nothing outside the interval.
    clamped = summary["backbones"]["dlinoss_sigmoid"]["clamped_oscillators"][0]
    assert clamped["end"]["below_lo"] == clamped["end"]["above_hi"] == 0
    # Learning curves and the convergence rule, for every arm.
    assert "improved by < 2%" in summary["convergence"]["rule"]
    for b in summary["backbones"].values():
        (curve,) = b["val_curves"]
        assert curve["step"][-1] == cfg.e1.train.steps and len(curve["val"]) == len(curve["step"])
        assert b["convergence"]["per_seed"][0]["S"] == cfg.e1.train.steps
    assert (out / "figures" / "val_curves.png").is_file() and "### Convergence" in table


def test_e1_tuning_protocol_same_trials_for_every_arm_on_validation(e1_run, tmp_path, monkeypatch):
    _, _, _, _, cache = e1_run
    monkeypatch.setenv("SPEKTRON_CACHE", str(cache))
    extra = [
        'e1.backbones=["dlinoss","cnn"]',
        "e1.tune.n_trials=3",
        "e1.tune.steps=2",
        "e1.tune.startup_trials=2",
        "e1.tune.max_extensions=1",
        "e1.tune.extension_trials=1",
        'e1.tune.knobs.cnn={"kernel_size": [3, 5]}',
    ]
    cfg = _cfg(*extra)
    out = tmp_path / "e1"
    plans = []
    summary = run_e1(cfg, out, progress=False, announce=plans.append)
    assert plans[0]["tuning"]["n_trials"] == 3 and plans[0]["lr_sweep"] == []
    tuning = summary["tuning"]
    assert "test never used" in tuning["protocol"]["criterion"]
    for name in ("dlinoss", "cnn"):
        t = tuning["arms"][name]
        # Every arm: the same trials (3, plus 1 per extension), all recorded, best on validation.
        assert len(t["trials"]) == 3 + t["extensions"] and t["extensions"] <= 1
        vals = [x["val"] for x in t["trials"]]
        assert t["best"]["val"] == min(vals)
        best = t["trials"][t["best"]["trial"]]
        b = summary["backbones"][name]
        assert b["lr"] == best["lr"] and b["tuned"]["shape"] == best["shape"]
        for k, v in best["shape"].items():  # the final runs use the chosen knobs
            assert b["backbone_config"][k] == v
        lo, hi = t["lr_range"]
        assert lo <= b["lr"] <= hi
        # Trial folders: validation only (no test scoring), under tune/<arm>/.
        m = json.loads((out / "tune" / name).glob("trial_*/metrics.json").__next__().read_text())
        assert m["experiment"] == "e1-tuning-trial" and "test" not in m
    assert set(tuning["arms"]["cnn"]["space"]) == {"kernel_size"}
    assert set(tuning["arms"]["dlinoss"]["space"]) == {"r_min", "theta_min"}
    table = (out / "table.md").read_text()
    assert "### Tuning" in table
    # A rerun proposes the same trials and reuses every folder: same choice, same numbers.
    again = run_e1(cfg, out, progress=False)
    assert again["tuning"]["arms"] == tuning["arms"]
    assert again["backbones"]["cnn"]["test"] == summary["backbones"]["cnn"]["test"]
