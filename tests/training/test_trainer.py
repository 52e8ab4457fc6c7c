"""Trainer: bit-exact resume after a real kill, DDP = single process, non-finite stop, early
stopping, optimizer groups and schedule."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from spektron.chemistry.spectra import make_grid
from spektron.errors import CheckpointError, TrainingError
from spektron.models.spektron import Spektron, SpektronConfig
from spektron.training.checkpoint import load_train_checkpoint
from spektron.training.config import MSRPConfig, TrainConfig
from spektron.training.optim import build_optimizer, lr_factor, parameter_groups
from spektron.training.tasks import MaskedReconstruction
from spektron.training.trainer import Trainer, read_history
from tests.training.train_worker import L, pooled_run, synthetic

WORKER = Path(__file__).with_name("train_worker.py")
REPO = Path(__file__).resolve().parents[2]


def _run_worker(out: Path, *args: str, torchrun: int = 0) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    if torchrun:
        with socket.socket() as s:  # a free port for the rendezvous
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={torchrun}"]
        cmd += [f"--master_port={port}", str(WORKER), str(out), *args]
    else:
        cmd = [sys.executable, str(WORKER), str(out), *args]
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=300)


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_train_checkpoint(out / "checkpoint.pt")["model"]["state_dict"]


def test_killed_run_resumes_bit_identical(tmp_path):
    # Arrange: an uninterrupted reference run (dropout on, so the RNG state matters).
    ref = tmp_path / "ref"
    _run_worker(ref)
    # Act: the same run, slowed down, killed with SIGKILL part-way, then resumed.
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(run), "--step-sleep", "0.2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        lines = [r for r in read_history(run / "history.jsonl") if r["kind"] == "train"]
        if len(lines) >= 6:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_train_checkpoint(run / "checkpoint.pt")["step"]
    assert 0 < killed_at < 12 and not (run / "summary.json").exists()
    _run_worker(run)
    # Assert: identical weights, optimizer state and history steps.
    a, b = _weights(ref), _weights(run)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    oa = load_train_checkpoint(ref / "checkpoint.pt")["optimizer"]["state"]
    ob = load_train_checkpoint(run / "checkpoint.pt")["optimizer"]["state"]
    assert all(torch.equal(oa[i]["exp_avg_sq"], ob[i]["exp_avg_sq"]) for i in oa)
    steps = [r["step"] for r in read_history(run / "history.jsonl") if r["kind"] == "train"]
    assert steps == list(range(1, 13))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_from"] == killed_at
    assert summary["samples_per_s"] > 0  # cumulative over both sessions


def test_two_process_ddp_equals_single_process(tmp_path):
    # Same effective batch (16) and sample order: 1 process × 16, vs 2 processes × 4 per rank ×
    # 2 accumulation micro-steps (global counts across ranks and micro-steps). The CNN backbone
    # keeps the check about the trainer's reductions: Adam magnifies last-bit differences of
    # batch-shape-dependent kernels, and D-LinOSS's log-depth scan differs by ~1e-4 (relative,
    # gradients) between batch shapes, against ~1e-6 for the CNN.
    common = ("--dropout", "0", "--steps", "6", "--backbone", "cnn")
    _run_worker(tmp_path / "one", *common, "--batch", "16")
    _run_worker(tmp_path / "two", *common, "--batch", "8", "--accum", "2", torchrun=2)
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    init = torch.load(tmp_path / "one" / "init.pt", weights_only=True)["state_dict"]
    moved = max(float((a[k] - init[k]).abs().max()) for k in a)
    assert moved > 1e-3  # training changed the weights
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6)


def test_reused_pool_worker_gives_the_fresh_result(tmp_path):
    # run_specs reuses its worker processes: a run after other runs in the same worker (here
    # D-LinOSS after Mamba or D-LinOSS) ends with the weights of the same run done first, and
    # measures its own memory (the live-heap peak, not the worker's earlier resident peak).
    from spektron.experiments.runner import run_specs
    from spektron.training import distributed as D
    from spektron.utils import heap_in_use_mb

    specs = [
        {"backbone": b, "seed": 3, "run_dir": str(tmp_path / name)}
        for b, name in (("mamba", "m"), ("dlinoss", "first"), ("dlinoss", "again"), ("cnn", "c"))
    ]
    res = run_specs(specs, 2, D.DistInfo(device=torch.device("cpu")), False, "t", pooled_run)
    first, again = res[str(tmp_path / "first")], res[str(tmp_path / "again")]
    assert first["state"].keys() == again["state"].keys()
    assert all(torch.equal(first["state"][k], again["state"][k]) for k in first["state"])
    if heap_in_use_mb() is not None:
        assert again["summary"]["memory_kind"].startswith("peak of the live heap")
        assert again["summary"]["peak_memory_mb"] > 0


def _small(backbone: str = "cnn", dropout: float = 0.0) -> Spektron:
    torch.manual_seed(0)
    return Spektron(
        SpektronConfig.from_json_dict(
            {"d_model": 16, "backbone": backbone, "backbone_config": {"n_layers": 1}}
        )
    )


def _trainer(tmp_path, task=None, **cfg) -> Trainer:
    base = dict(steps=6, batch_size=8, lr=1e-3, warmup_steps=1, eval_every=2, checkpoint_every=1)
    task = task or MaskedReconstruction(MSRPConfig(), make_grid(L))
    return Trainer(
        _small(),
        task,
        synthetic(32, 1),
        synthetic(8, 2),
        TrainConfig(**{**base, **cfg}),
        tmp_path,
        progress=False,
    )


def test_accumulation_equals_one_big_batch(tmp_path):
    torch.set_num_threads(1)
    a = _trainer(tmp_path / "a", steps=3, batch_size=8, accumulation=1)
    a.fit()
    b = _trainer(tmp_path / "b", steps=3, batch_size=4, accumulation=2)
    b.fit()
    for (k, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        torch.testing.assert_close(y, x, rtol=1e-5, atol=1e-6, msg=k)


class _NaNAt:
    """Wraps a task; its loss sums become NaN from the n-th training call on."""

    def __init__(self, task, n: int) -> None:
        self.task, self.n, self.calls = task, n, 0
        self.terms = task.terms

    def __getattr__(self, name):
        return getattr(self.task, name)

    def sums(self, model, batch):
        s = self.task.sums(model, batch)
        if model.training:
            self.calls += 1
            if self.calls >= self.n:
                return s * float("nan")
        return s


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    task = _NaNAt(MaskedReconstruction(MSRPConfig(), make_grid(L)), n=4)
    tr = _trainer(tmp_path, task=task)
    with pytest.raises(TrainingError, match="non-finite loss at step 4"):
        tr.fit()
    state = load_train_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == 3
    assert all(torch.isfinite(v).all() for v in state["model"]["state_dict"].values())
    assert read_history(tmp_path / "history.jsonl")[-1]["kind"] == "error"


def test_early_stopping_stops_after_patience(tmp_path, monkeypatch):
    tr = _trainer(tmp_path, steps=40, eval_every=1, early_stopping_patience=3)
    values = iter([1.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0] + [2.0] * 40)
    monkeypatch.setattr(tr, "evaluate", lambda data=None: {"recon": next(values)})
    out = tr.fit()
    assert out["stopped_early"] and out["steps"] == 5
    assert out["best_val"] == 0.5 and out["best_step"] == 2
    assert load_train_checkpoint(tmp_path / "checkpoint.pt")["early_stopping"]["stopped"]


def test_resume_refuses_a_different_recipe_and_corrupt_files(tmp_path):
    _trainer(tmp_path, steps=2).fit()
    with pytest.raises(TrainingError, match="different training config"):
        _trainer(tmp_path, steps=2, lr=5e-3).fit()
    # A checkpoint written before a field existed resumes when the field is at its default.
    path = tmp_path / "checkpoint.pt"
    state = torch.load(path, weights_only=False)
    del state["train_config"]["eval_batch_size"]
    torch.save(state, path)
    assert _trainer(tmp_path, steps=2).fit()["steps"] == 2
    with pytest.raises(TrainingError, match=r"\['eval_batch_size'\]"):
        _trainer(tmp_path, steps=2, eval_batch_size=7).fit()
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        _trainer(tmp_path, steps=2).fit()


def test_parameter_groups_follow_the_model_hints():
    cfg = TrainConfig(lr=1e-3, weight_decay=0.05)
    model = _small("dlinoss")
    groups = parameter_groups(model, cfg)
    by_name = {n: g for g in groups for n in g["names"]}
    dyn = [n for n in by_name if n.endswith(("dt_raw", "g_raw", "a_raw"))]
    assert dyn
    scale = model.backbone.cfg.ssm_lr_scale
    for n in dyn:
        assert by_name[n]["weight_decay"] == 0.0 and by_name[n]["lr_scale"] == scale
    weights = [n for n, p in model.named_parameters() if p.ndim >= 2 and n not in dyn]
    assert all(by_name[n]["weight_decay"] == 0.05 for n in weights)
    biases = [n for n, p in model.named_parameters() if p.ndim == 1 and n not in dyn]
    assert all(by_name[n]["weight_decay"] == 0.0 for n in biases)
    opt = build_optimizer(model, cfg)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def test_mamba_no_weight_decay_hint_is_honoured():
    model = _small("mamba")
    by_name = {n: g for g in parameter_groups(model, TrainConfig()) for n in g["names"]}
    marked = [n for n, p in model.named_parameters() if getattr(p, "_no_weight_decay", False)]
    assert marked and all(by_name[n]["weight_decay"] == 0.0 for n in marked)


def test_warmup_cosine_schedule_known_values():
    total, warm, r = 101, 10, 0.1
    assert lr_factor(0, total, warm, r) == pytest.approx(0.1)
    assert lr_factor(9, total, warm, r) == pytest.approx(1.0)
    assert lr_factor(10, total, warm, r) == pytest.approx(1.0)
    mid = 10 + (total - 1 - 10) / 2
    assert lr_factor(int(mid), total, warm, r) == pytest.approx(r + (1 - r) * 0.5, abs=1e-3)
    assert lr_factor(total - 1, total, warm, r) == pytest.approx(r)
    f = [lr_factor(k, total, warm, r) for k in range(warm, total)]
    assert all(a >= b for a, b in zip(f, f[1:], strict=False))
    assert not math.isnan(lr_factor(0, 1, 0, r))


def test_eval_masks_are_fixed_and_training_masks_change_with_epoch():
    task = MaskedReconstruction(MSRPConfig(), make_grid(L))
    data = synthetic(6, 0)
    items = data.take(np.arange(6))
    idx = np.arange(6)
    e1 = task.masks(items["x"], task.sample_seeds(items, False, 0, 0, idx), False)
    e2 = task.masks(items["x"], task.sample_seeds(items, False, 99, 5, idx), False)
    assert torch.equal(e1, e2)  # independent of run seed and epoch
    t0 = task.masks(items["x"], task.sample_seeds(items, True, 0, 0, idx), True)
    t1 = task.masks(items["x"], task.sample_seeds(items, True, 0, 1, idx), True)
    assert not torch.equal(t0, t1)


def test_bf16_autocast_trains_with_fp32_weights(tmp_path):
    tr = _trainer(tmp_path, steps=2, amp="bf16")
    out = tr.fit()
    assert out["amp"] == "bf16" and math.isfinite(out["best_val"])
    assert all(p.dtype == torch.float32 for p in tr.model.parameters())
