"""E1: masked spectral reconstruction benchmark of the registered backbones (docs/DESIGN.md §4).

Arms differ **only** in the backbone: the same embedding, reconstruction head, MSRP objective,
data, step budget and optimiser recipe (AdamW groups, warmup + cosine; the SSM dynamics LR scale
is each family's own hint), parameter-matched backbones (:func:`size_backbone`). Every arm gets
the same learning-rate sweep on validation (first seed); the best LR then runs the remaining
seeds. Each run trains a fixed number of optimizer steps and is evaluated with its
best-validation weights on the test split, under the fixed (seeded) evaluation masks that the
baselines (mean spectrum, interpolation, PCA imputation) see too. The reported reconstruction
metric is the masked-position MSE alone (no auxiliary terms).

Test metrics are per spectrum (IR and Raman scored separately, ``by_kind``) and, pooled, per
molecule (the mean over a molecule's IR and Raman spectra), so bootstrap CIs and paired
comparisons resample molecules, the independent unit.

Layout under ``out``: ``baselines.json``, ``runs/<backbone>/lr<lr>_seed<seed>/`` (config.json,
run_spec.json, metrics.json, per_molecule.json, history.jsonl, checkpoint.pt, best.pt, init.pt),
``summary.json``, ``examples.json``, ``table.md``, ``figures/`` (rebuilt by ``spektron report``).
All data here are SIMULATED (:data:`spektron.data.generate.SIMULATED_LABEL`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spektron.config import E1Config, RunConfig, config_hash, to_dict
from spektron.data.generate import data_label, ensure_dataset
from spektron.errors import ConfigError, DataError
from spektron.evaluation.baselines import build_baseline, select_pca_components
from spektron.evaluation.metrics import (
    METRIC_DIRECTIONS,
    bootstrap_ci,
    holm,
    paired_bootstrap,
    reconstruction_metrics,
)
from spektron.experiments.e1.tuning import (
    feasible_shapes,
    knob_space,
    protocol,
    tune_arms,
    with_shape,
)
from spektron.experiments.runner import (
    arm_convergence,
    arm_flops,
    check_run_folders,
    claim_run_dir,
    complete_model_config,
    device_description,
    file_sha256,
    git_commit,
    load_splits,
    mean_std,
    model_config,
    package_versions,
    reuse_line,
    run_folder_finished,
    run_record,
    run_specs,
    scale_note,
    seeded_model,
    size_arms,
    sweep_then_seeds,
    threads_for,
    wall_times,
)
from spektron.training import distributed as D
from spektron.training.convergence import rule_text
from spektron.training.data import KIND_CODES, ArrayData
from spektron.training.tasks import MaskedReconstruction
from spektron.utils import write_json_atomic

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
E1_METRICS = ("masked_mse", "full_mse", "cosine", "peak_precision", "peak_recall", "peak_f1")
KIND_NAMES = {v: k for k, v in KIND_CODES.items()}


# ----------------------------------------------------------------------------- provenance


# ----------------------------------------------------------------------------- data


def eval_batch(task: MaskedReconstruction, data: ArrayData) -> tuple[np.ndarray, np.ndarray]:
    """Truth (N, L) and the fixed evaluation masks (N, L) of ``data``."""
    items = {k: torch.from_numpy(data.arrays[k]) for k in ("x", "row", "kind")}
    seeds = task.sample_seeds(items, False, 0, 0, np.arange(len(data)))
    mask = task.masks(items["x"], seeds, train=False).numpy()
    return data.arrays["x"].astype(np.float64), mask


def gap_evals(
    e1: E1Config, wn: np.ndarray, data: ArrayData
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Truth and fixed masks of ``data`` under spans of exactly ℓ points (at the training mask
    fraction, seeded like every evaluation mask), for each ℓ of ``e1.eval_spans``."""
    out = {}
    for ell in e1.eval_spans:
        if ell > len(wn):
            raise ConfigError(f"e1.eval_spans: {ell} points exceed the grid's {len(wn)}")
        mask = dataclasses.replace(
            e1.msrp.mask, kind="span", min_span=ell, max_span=ell, span_dist="uniform"
        )
        task = MaskedReconstruction(dataclasses.replace(e1.msrp, mask=mask), wn)
        out[ell] = eval_batch(task, data)
    return out


def masked_mse_by_molecule(
    pred: np.ndarray, truth: np.ndarray, mask: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """Per-molecule mean of the per-spectrum masked MSE (molecules in ``np.unique`` order)."""
    se = (((pred - truth) ** 2) * mask).sum(1) / np.maximum(mask.sum(1), 1)
    _, inv = np.unique(rows, return_inverse=True)
    return np.bincount(inv, se) / np.bincount(inv)


def pooled_masked_mse(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """Σ m (x̂ − x)² / Σ m: the trainer's validation criterion."""
    return float(((pred - truth) ** 2)[mask].sum() / max(mask.sum(), 1))


def score(
    pred: np.ndarray,
    data: ArrayData,
    truth: np.ndarray,
    mask: np.ndarray,
    wn: np.ndarray,
    e1: E1Config,
) -> dict[str, Any]:
    """Per-spectrum metrics, per kind, and per molecule (mean over a molecule's spectra)."""
    per = reconstruction_metrics(
        pred, truth, mask, wn, tolerance=e1.peak_tolerance_cm, prominence=e1.peak_prominence
    )
    rows, kinds = data.arrays["row"], data.arrays["kind"]
    uniq, inv = np.unique(rows, return_inverse=True)
    per_mol: dict[str, np.ndarray] = {}
    for k, v in per.items():
        s = np.zeros(len(uniq))
        n = np.zeros(len(uniq))
        ok = np.isfinite(v)
        np.add.at(s, inv[ok], v[ok])
        np.add.at(n, inv[ok], 1)
        per_mol[k] = np.where(n > 0, s / np.maximum(n, 1), np.nan)
    return {
        "per_spectrum": per,
        "rows": rows,
        "kinds": kinds,
        "molecule_rows": uniq,
        "per_molecule": per_mol,
    }


def summarise_scores(scored: dict[str, Any], e1: E1Config) -> dict[str, Any]:
    """Bootstrap CIs (over molecules; within a kind over spectra) of every metric."""
    kw = {"n_boot": e1.n_bootstrap}
    out = {"test": {m: bootstrap_ci(scored["per_molecule"][m], **kw) for m in E1_METRICS}}
    out["test_by_kind"] = {
        KIND_NAMES[int(c)]: {
            m: bootstrap_ci(scored["per_spectrum"][m][scored["kinds"] == c], **kw)
            for m in E1_METRICS
        }
        for c in np.unique(scored["kinds"])
    }
    return out


def _jsonable(a: np.ndarray) -> list:
    return [None if not math.isfinite(float(v)) else float(v) for v in a]


def per_molecule_json(scored: dict[str, Any]) -> dict[str, Any]:
    return {
        "molecule_rows": scored["molecule_rows"].tolist(),
        "per_molecule": {k: _jsonable(v) for k, v in scored["per_molecule"].items()},
        "spectrum_rows": scored["rows"].tolist(),
        "spectrum_kinds": [KIND_NAMES[int(c)] for c in scored["kinds"]],
        "per_spectrum": {k: _jsonable(v) for k, v in scored["per_spectrum"].items()},
    }


def example_indices(data: ArrayData, n: int) -> np.ndarray:
    """Fixed test spectra for figures: kinds in turn, evenly spread within each kind."""
    kinds = data.arrays["kind"]
    pools = [np.flatnonzero(kinds == c) for c in np.unique(kinds)]
    per_kind = -(-n // len(pools)) if pools else 0
    picks: list[int] = []
    for j in range(n):
        pool, k = pools[j % len(pools)], j // len(pools)
        i = int(pool[(k * len(pool)) // per_kind])
        if i not in picks:
            picks.append(i)
    return np.asarray(picks, dtype=np.int64)


# ----------------------------------------------------------------------------- baselines


def run_baselines(
    splits: dict[str, ArrayData],
    evals: dict[str, tuple[np.ndarray, np.ndarray]],
    wn: np.ndarray,
    e1: E1Config,
    gaps: dict[int, tuple[np.ndarray, np.ndarray]] | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
    """Fit every baseline on train, pick its settings on validation, score on test.

    ``evals`` holds (truth, fixed mask) of "val" and "test" (:func:`eval_batch`), ``gaps`` the
    test's per gap length (:func:`gap_evals`). Returns (summary per baseline, test predictions
    (N, L) per baseline, scores per baseline).
    """
    train = splits["train"].arrays["x"].astype(np.float64)
    val_truth, val_mask = evals["val"]
    test_truth, test_mask = evals["test"]
    summary: dict[str, Any] = {}
    scores: dict[str, Any] = {}
    preds: dict[str, np.ndarray] = {}
    for name in e1.baselines:
        t0 = time.perf_counter()
        params: dict[str, Any] = {}
        if name == "pca":
            cands = tuple(k for k in e1.pca_candidates if k <= min(train.shape))
            if not cands:
                raise ConfigError(f"e1.pca_candidates {e1.pca_candidates} exceed the data size")
            params["n_components"] = select_pca_components(train, val_truth, val_mask, cands)
        model = build_baseline("reconstruction", name, **params).fit(train)
        val_pred = model.predict(val_truth, val_mask)
        test_pred = model.predict(test_truth, test_mask)
        sc = score(test_pred, splits["test"], test_truth, test_mask, wn, e1)
        scores[name] = sc
        preds[name] = test_pred
        summary[name] = {
            "params": params,
            "val_masked_mse": pooled_masked_mse(val_pred, val_truth, val_mask),
            **summarise_scores(sc, e1),
            "fit_predict_s": time.perf_counter() - t0,
        }
        if gaps:
            rows = splits["test"].arrays["row"]
            sc["gap_length"] = {
                ell: masked_mse_by_molecule(model.predict(t, m), t, m, rows)
                for ell, (t, m) in gaps.items()
            }
            summary[name]["gap_length"] = {
                str(ell): bootstrap_ci(v, n_boot=e1.n_bootstrap)
                for ell, v in sc["gap_length"].items()
            }
        log.info("baseline %s: val masked MSE %.4g", name, summary[name]["val_masked_mse"])
    return summary, preds, scores


# ----------------------------------------------------------------------------- one run


@torch.no_grad()
def predict_split(
    model: torch.nn.Module,
    task: MaskedReconstruction,
    truth: np.ndarray,
    mask: np.ndarray,
    device: torch.device,
    batch: int = 64,
) -> np.ndarray:
    """Reconstructions (N, L) under the given masks, float64 on the CPU."""
    model.eval()
    out = []
    for s in range(0, len(truth), batch):
        b = {
            "x": torch.from_numpy(truth[s : s + batch]).float().to(device),
            "mask": torch.from_numpy(mask[s : s + batch]).to(device),
        }
        out.append(task.forward(model, b).double().cpu().numpy())
    return np.concatenate(out)


def train_one(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one (backbone, lr, seed) arm into ``spec["run_dir"]`` and score it on test.

    Runs in a worker process on CPU (``spec["threads"]`` torch threads), or in-process on every
    rank under torchrun. Re-running with the same spec reuses a finished run and resumes an
    interrupted one from its checkpoint.
    """
    from spektron.config import from_dict
    from spektron.models.spektron import Spektron
    from spektron.training.trainer import BEST_NAME, INIT_NAME, Trainer

    run_dir = Path(spec["run_dir"])
    dist = spec.get("dist") or D.DistInfo(device=torch.device(spec["device"]))
    e1 = from_dict(E1Config, spec["e1"], "e1")
    metrics_path = run_dir / "metrics.json"
    done = claim_run_dir(
        run_dir, spec["run_hash"], _hashed(spec), _public_spec(spec), dist, _identity
    )
    if done is not None:
        return done
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    splits = load_splits(Path(spec["store"]), e1)
    wn = np.asarray(spec["wavenumber"])
    task = MaskedReconstruction(e1.msrp, wn)
    model, train_cfg = seeded_model(spec, e1.train)
    mcfg = model.cfg
    if dist.is_main:
        write_json_atomic(
            run_dir / "config.json",
            {"model": mcfg.to_json_dict(), "train": to_dict(train_cfg), "e1": spec["e1"]},
        )
    trainer = Trainer(
        model,
        task,
        ArrayData({k: splits["train"].arrays[k] for k in ("x", "row", "kind")}),
        ArrayData({k: splits["val"].arrays[k] for k in ("x", "row", "kind")}),
        train_cfg,
        run_dir,
        dist,
        progress=spec.get("progress", False),
        model_checkpoint_extra={
            "task": "msrp",
            "data_label": spec["dataset"]["label"],
            "grid": spec["grid"],
        },
    )
    fit = trainer.fit()
    if not dist.is_main:
        D.barrier(dist)
        return {}
    if spec.get("score_test") is False:  # a tuning trial: validation only, test untouched
        metrics = {
            "schema_version": SCHEMA_VERSION,
            "experiment": "e1-tuning-trial",
            "backbone": spec["backbone"],
            "lr": spec["lr"],
            "seed": spec["seed"],
            "backbone_config": mcfg.backbone_config,
            "train": fit,
            "best_val_masked_mse": fit["best_val"],
            "best_step": fit["best_step"],
        }
        write_json_atomic(metrics_path, metrics)
        D.barrier(dist)
        return metrics
    best = Spektron.from_checkpoint(run_dir / BEST_NAME, map_location=dist.device)
    truth, mask = eval_batch(task, splits["test"])
    t0 = time.perf_counter()
    pred = predict_split(best, task, truth, mask, dist.device)
    infer_s = time.perf_counter() - t0
    sc = score(pred, splits["test"], truth, mask, wn, e1)
    pm = per_molecule_json(sc)
    gap_mean: dict[str, float] = {}
    if e1.eval_spans:  # the same model under spans of exactly ℓ points, per ℓ
        pm["gap_length"] = {}
        for ell, (g_truth, g_mask) in gap_evals(e1, wn, splits["test"]).items():
            g_pred = predict_split(best, task, g_truth, g_mask, dist.device)
            per_mol = masked_mse_by_molecule(g_pred, g_truth, g_mask, splits["test"].arrays["row"])
            pm["gap_length"][str(ell)] = _jsonable(per_mol)
            gap_mean[str(ell)] = float(np.mean(per_mol))
    write_json_atomic(run_dir / "per_molecule.json", pm)
    clamped = None
    if hasattr(best.backbone, "clamp_counts"):  # D-LinOSS: oscillators without a_raw gradient
        init = Spektron.from_checkpoint(run_dir / INIT_NAME)
        clamped = {
            "init": init.backbone.clamp_counts(),
            "best": best.backbone.clamp_counts(),
            "end": model.backbone.clamp_counts(),
        }
    ex = np.asarray(spec["example_idx"], dtype=np.int64)
    metrics = {
        "schema_version": SCHEMA_VERSION,
        "experiment": "e1",
        "data_label": spec["dataset"]["label"],
        **run_record(spec, dist.device, best, fit),
        "best_val_masked_mse": fit["best_val"],
        "best_step": fit["best_step"],
        "test_inference_s": infer_s,
        "clamped_oscillators": clamped,
        "gap_length_masked_mse": gap_mean,
        "metric_directions": {m: METRIC_DIRECTIONS[m] for m in E1_METRICS},
        **summarise_scores(sc, e1),
        "examples": {"index": ex.tolist(), "pred": [pred[i].tolist() for i in ex]},
    }
    write_json_atomic(metrics_path, metrics)
    D.barrier(dist)
    return metrics


def _public_spec(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in ("dist", "example_idx", "wavenumber")}


# E1 settings that never change what one run trains or scores: read when the runs are chosen
# or their results gathered (the arms, the seeds, the LR sweep, the tuning protocol, the
# baselines, the bootstrap, the convergence rule, the process count). Changing them re-judges
# or adds runs; it does not retrain a finished one (e.g. 6 → 10 seeds reuses the first 6).
NOT_HASHED = (
    "backbones",
    "n_seeds",
    "lr_sweep",
    "tune",
    "baselines",
    "pca_candidates",
    "n_bootstrap",
    "jobs",
    "convergence_tol",
    "convergence_window",
    "convergence_check",
)


def _identity(hashed: dict[str, Any]) -> dict[str, Any]:
    """A run's recorded settings without :data:`NOT_HASHED` and with its model's backbone
    config complete: also maps the settings a run folder recorded before a key joined that
    list, or before its backbone config gained a field, onto today's form, so that folder is
    still reused."""
    out = json.loads(json.dumps(hashed))
    if isinstance(out.get("model"), dict):
        out["model"] = complete_model_config(out["model"])
    if isinstance(out.get("e1"), dict):
        for k in NOT_HASHED:
            out["e1"].pop(k, None)
    return out


def _hashed(spec: dict[str, Any]) -> dict[str, Any]:
    """What identifies an E1 run (a finished run is reused only when all of it is unchanged)."""
    keys = ("backbone", "lr", "seed", "model", "e1", "dataset")
    out = {k: spec[k] for k in keys}
    if spec.get("score_test") is False:
        out["score_test"] = False
    return _identity(out)


def _run_hash(spec: dict[str, Any]) -> str:
    return config_hash(_hashed(spec), n=16)


# ----------------------------------------------------------------------------- orchestration


class E1Context:
    """What every E1/pretrain run shares: data, grid, task, sized arms, provenance."""

    def __init__(self, cfg: RunConfig, dist: D.DistInfo, progress: bool = True) -> None:
        from spektron.chemistry.spectra import make_grid

        self.cfg, self.e1, self.dist = cfg, cfg.e1, dist
        # One process simulates the data; the others wait and then read the cached store.
        if dist.is_main:
            store_path, _ = ensure_dataset(cfg.data, workers=cfg.workers, progress=progress)
        D.barrier(dist)
        if not dist.is_main:
            store_path, _ = ensure_dataset(cfg.data, workers=cfg.workers, progress=False)
        self.store_path = store_path
        g = cfg.data.grid
        self.wn = make_grid(g.n_points, g.lo, g.hi)
        self.splits = load_splits(store_path, self.e1)
        self.task = MaskedReconstruction(self.e1.msrp, self.wn)
        if len(self.splits["train"]) < self.e1.train.batch_size:
            raise DataError(
                f"E1 needs at least one training batch ({self.e1.train.batch_size} spectra); "
                f"the train split has {len(self.splits['train'])}"
            )
        self.dataset = {
            "path": str(store_path),
            "sha256": file_sha256(store_path),
            "config_hash": config_hash(cfg.data),
            "label": data_label(cfg.data),
            "n_spectra": {s: len(d) for s, d in self.splits.items()},
        }
        self.common = {
            "store": str(store_path),
            "grid": to_dict(cfg.data.grid),
            "wavenumber": self.wn.tolist(),
            "e1": to_dict(self.e1),
            "dataset": self.dataset,
            "git_commit": git_commit(),
            "package_versions": package_versions(),
        }
        self.ex_idx = example_indices(self.splits["test"], self.e1.n_examples)
        self.arms: dict[str, dict[str, Any]] = {}
        if dist.distributed or dist.device.type == "cuda":
            self.jobs = 1
        else:
            self.jobs = self.e1.jobs or (os.cpu_count() or 1)

    def add_arms(self, names: tuple[str, ...], e1: E1Config | None = None) -> None:
        """Size each backbone to the budget; build its model config; count its FLOPs."""
        e1 = dataclasses.replace(e1 or self.e1, backbones=tuple(names))
        for name, arm in size_arms(e1).items():
            self.arms[name] = self._complete(name, arm, e1)

    def sized_arm(self, name: str, e1: E1Config) -> dict[str, Any]:
        """One arm sized under ``e1`` (e.g. with a tuning trial's knobs fixed), not stored."""
        (arm,) = size_arms(dataclasses.replace(e1, backbones=(name,))).values()
        return self._complete(name, arm, e1)

    def _complete(self, name: str, arm: dict[str, Any], e1: E1Config) -> dict[str, Any]:
        arm["model"] = model_config(e1, name, arm["backbone_config"])
        arm["flops"] = arm_flops(arm["model"], len(self.wn))
        return arm

    def spec(
        self,
        name: str,
        lr: float,
        seed: int,
        run_dir: Path,
        progress: bool = False,
        arm: dict[str, Any] | None = None,
        e1: E1Config | None = None,
        score_test: bool = True,
    ) -> dict[str, Any]:
        """A run's spec; ``arm``/``e1`` replace the stored arm and E1 settings (tuning trials,
        which are scored on validation only: ``score_test=False``)."""
        arm = arm or self.arms[name]
        cpu = self.dist.device.type == "cpu"
        spec = {
            **self.common,
            "backbone": name,
            "lr": lr,
            "seed": seed,
            "model": arm["model"],
            "flops": arm["flops"],
            "device": str(self.dist.device),
            "threads": threads_for(self.jobs) if cpu else 0,
            "example_idx": self.ex_idx.tolist(),
            "progress": progress and self.jobs == 1,
            "run_dir": str(run_dir),
            "steps": (e1 or self.e1).train.steps,  # the job order's cost (not hashed)
        }
        if e1 is not None:
            spec["e1"] = to_dict(e1)
        if not score_test:
            spec["score_test"] = False
        spec["run_hash"] = _run_hash(spec)
        return spec

    def estimate_seconds(self, runs_per_arm: int) -> dict[str, float]:
        """Measured seconds per optimizer step of each arm (one timed step after a warm-up
        step, with the threads a run will get), and the implied total for the training runs."""
        from spektron.models.spektron import Spektron, SpektronConfig

        e1 = self.e1
        B = e1.train.batch_size // self.dist.world_size
        x = torch.from_numpy(self.splits["train"].arrays["x"][:B]).float().to(self.dist.device)
        mask = torch.zeros_like(x, dtype=torch.bool)
        mask[:, 100:130] = True
        wn = torch.as_tensor(self.wn, dtype=torch.float32, device=self.dist.device)
        threads = torch.get_num_threads()
        if self.dist.device.type == "cpu":
            torch.set_num_threads(threads_for(self.jobs))
        per_step: dict[str, float] = {}
        try:
            for name, arm in self.arms.items():
                torch.manual_seed(0)
                model = Spektron(SpektronConfig.from_json_dict(arm["model"])).to(self.dist.device)
                times = []
                for _ in range(2):
                    t0 = time.perf_counter()
                    out = model(x.masked_fill(mask, 0.0), wn, mask)["pred"]
                    ((out - x)[mask] ** 2).mean().backward()
                    if self.dist.device.type == "cuda":
                        torch.cuda.synchronize(self.dist.device)
                    times.append(time.perf_counter() - t0)
                per_step[name] = times[-1] * e1.train.accumulation
        finally:
            torch.set_num_threads(threads)
        train_s = sum(per_step.values()) * e1.train.steps * runs_per_arm / self.jobs
        return {"per_step_s": per_step, "training_s": train_s}


def describe_plan(
    cfg: RunConfig, ctx: E1Context, runs_per_arm: int, est: dict[str, Any]
) -> dict[str, Any]:
    """What E1 will run and how long it expects to take (printed before running); ``est``:
    :meth:`E1Context.estimate_seconds`."""
    e1 = cfg.e1
    L = len(ctx.wn)
    return {
        "backbones": list(ctx.arms),
        "backbone_params": {n: a["n_params"] for n, a in ctx.arms.items()},
        "baselines": list(e1.baselines),
        "seeds": [cfg.seed + i for i in range(e1.n_seeds)],
        "lr_sweep": [] if e1.tune.n_trials else list(e1.lr_sweep),
        "tuning": protocol(e1) if e1.tune.n_trials else None,
        "n_training_runs": runs_per_arm * len(ctx.arms),
        "steps_per_run": e1.train.steps,
        "budget_check": (
            f"the first seed of every arm also for {e1.convergence_check * e1.train.steps:,} "
            "steps (the convergence rule)"
            if e1.convergence_check
            else None
        ),
        "effective_batch": e1.train.batch_size * e1.train.accumulation,
        "grid_points": L,
        "backbone_length": -(-L // e1.stride),
        "d_model": e1.d_model,
        "budget": e1.budget,
        "n_spectra": ctx.dataset["n_spectra"],
        "parallel_runs": ctx.jobs,
        "device": device_description(ctx.dist.device),
        "measured_step_s": est["per_step_s"],
        "expected_training_minutes": est["training_s"] / 60,
        "estimate_note": (
            "one timed optimizer step per arm × steps × runs / parallel runs; excludes "
            "validation, test scoring and data preparation"
        ),
    }


def run_e1(
    cfg: RunConfig, out: Path, progress: bool = True, announce: Any = None
) -> dict[str, Any]:
    """Run E1 end to end (data, baselines, every arm × LR sweep × seeds, aggregation).

    ``announce(plan)`` is called with :func:`describe_plan`'s dict before anything trains.
    """
    t_start = time.perf_counter()
    e1 = cfg.e1
    out = Path(out)
    dist = D.setup(cfg.device)
    ctx = E1Context(cfg, dist, progress)
    ctx.add_arms(e1.backbones)
    arms, splits, task, wn, ex_idx = ctx.arms, ctx.splits, ctx.task, ctx.wn, ctx.ex_idx
    tuned = e1.tune.n_trials > 0
    runs_per_arm = e1.tune.n_trials + e1.n_seeds if tuned else len(e1.lr_sweep) + e1.n_seeds - 1
    runs_per_arm += 1 if e1.convergence_check else 0
    seeds = [cfg.seed + i for i in range(e1.n_seeds)]
    jobs = ctx.jobs
    dataset = ctx.dataset

    def spec_for(name: str, lr: float, seed: int) -> dict[str, Any]:
        run_dir = out / "runs" / name / f"lr{lr:g}_seed{seed}"
        return ctx.spec(name, lr, seed, run_dir, progress)

    def check_for(name: str, lr: float) -> dict[str, Any]:
        """The budget check's run: the first seed for ``convergence_check`` × the steps."""
        steps = e1.convergence_check * e1.train.steps
        longer = dataclasses.replace(e1, train=dataclasses.replace(e1.train, steps=steps))
        run_dir = out / "runs" / name / f"lr{lr:g}_seed{seeds[0]}_steps{steps}"
        return ctx.spec(name, lr, seeds[0], run_dir, progress, e1=longer)

    # A folder of runs with other settings is refused here, before anything is written (with
    # tuning, the final runs' settings are known after it: their folders are checked then).
    if tuned:
        reuse = {"n_runs": 0, "n_reused": 0}
        for name in e1.backbones:  # every arm's knobs meet the budget, before any trial
            feasible_shapes(e1, name, knob_space(name, e1.tune))
    else:
        reuse = check_run_folders(
            list(e1.backbones), e1.lr_sweep, seeds, spec_for, _hashed, _identity
        )
        if e1.convergence_check:  # its LR is known after the sweep: counted at the sweep's
            for name in e1.backbones:
                reuse["n_runs"] += 1
                reuse["n_reused"] += any(
                    run_folder_finished(
                        Path(sp["run_dir"]), sp["run_hash"], _hashed(sp), project=_identity
                    )
                    for sp in (check_for(name, lr) for lr in e1.lr_sweep)
                )
    # The plan's estimate (trials in units of full runs) and the job order.
    n_check = e1.convergence_check  # the budget check's run, in units of a run
    est = ctx.estimate_seconds(
        e1.n_seeds + e1.tune.n_trials * e1.tune.steps / e1.train.steps + n_check
        if tuned
        else len(e1.lr_sweep) + e1.n_seeds - 1 + n_check
    )
    if announce is not None and dist.is_main:
        plan = describe_plan(cfg, ctx, runs_per_arm, est)
        reuse_text = "tuning trials and final runs are reused where finished"
        announce({**plan, "reuse": reuse_text if tuned else reuse_line(reuse, out)})

    base_summary: dict[str, Any] = {}
    base_preds: dict[str, np.ndarray] = {}
    base_scores: dict[str, Any] = {}
    if dist.is_main:
        evals = {s: eval_batch(task, splits[s]) for s in ("val", "test")}
        gaps = gap_evals(e1, wn, splits["test"])
        base_summary, base_preds, base_scores = run_baselines(splits, evals, wn, e1, gaps)
        write_json_atomic(out / "baselines.json", base_summary)

    step_s = est["per_step_s"]

    def run(specs: list[dict[str, Any]], what: str) -> dict[str, dict[str, Any]]:
        return run_specs(specs, jobs, dist, progress, f"E1 {what}", train_one, step_s=step_s)

    tuning = None
    check_specs: dict[str, dict[str, Any]] = {}  # the budget check's runs, by arm
    if tuned:
        tuning = tune_e1(ctx, out, seeds[0], run)
        best_lr = {n: tuning[n]["best"]["lr"] for n in e1.backbones}
        for name in e1.backbones:  # the chosen knobs fixed for the sizer, as in the trial
            arms[name] = ctx.sized_arm(name, with_shape(e1, name, tuning[name]["best"]["shape"]))
            arms[name]["lr_sweep"] = {}
        final = [spec_for(n, best_lr[n], s) for n in e1.backbones for s in seeds]
        if e1.convergence_check:
            check_specs = {n: check_for(n, best_lr[n]) for n in e1.backbones}
            final += list(check_specs.values())
        for sp in final:  # refused before training when a folder holds other settings
            run_folder_finished(Path(sp["run_dir"]), sp["run_hash"], _hashed(sp), project=_identity)
        results = run(final, "seeds (tuned)")
    else:
        results, best_lr, lr_vals = sweep_then_seeds(
            list(e1.backbones), e1.lr_sweep, seeds, spec_for, run, "best_val_masked_mse"
        )
        for name in e1.backbones:
            arms[name]["lr_sweep"] = lr_vals[name]
        if e1.convergence_check:
            check_specs = {n: check_for(n, best_lr[n]) for n in e1.backbones}
            results.update(run(list(check_specs.values()), "budget check"))
    if not dist.is_main:
        return {}

    checks = {n: sp["run_dir"] for n, sp in check_specs.items()}
    summary = aggregate(
        cfg,
        out,
        arms,
        best_lr,
        seeds,
        results,
        spec_for,
        base_summary,
        base_scores,
        dataset,
        checks,
    )
    if tuning is not None:
        summary["tuning"] = {"protocol": protocol(e1), "arms": tuning}
        for name in e1.backbones:
            summary["backbones"][name]["tuned"] = tuning[name]["best"]
    summary["device"] = device_description(dist.device)
    summary["measured_step_s"] = step_s
    summary.update(wall_times(out, time.perf_counter() - t_start))
    write_json_atomic(out / "summary.json", summary)
    test_mask = evals["test"][1]
    model_preds = {
        n: results[spec_for(n, best_lr[n], seeds[0])["run_dir"]]["examples"]["pred"]
        for n in e1.backbones
    }
    write_examples(
        out, splits["test"], ex_idx, test_mask, wn, model_preds, base_preds, data_label(cfg.data)
    )
    from spektron.experiments.e1.report import build_e1_report

    summary["report"] = build_e1_report(out)
    return summary


def tune_e1(ctx: E1Context, out: Path, seed: int, run: Any) -> dict[str, dict[str, Any]]:
    """The tuning protocol (:mod:`spektron.experiments.e1.tuning`) for every E1 arm: each trial a
    run of ``e1.tune.steps`` steps on ``seed`` under ``out/tune/<arm>/trial_<hash>``, scored on
    validation only."""
    e1 = ctx.e1
    trial_train = dataclasses.replace(e1, train=dataclasses.replace(e1.train, steps=e1.tune.steps))

    def run_trials(batch: list[tuple[str, dict[str, Any]]]) -> list[float]:
        specs: dict[str, dict[str, Any]] = {}
        dirs = []
        for name, params in batch:
            arm = ctx.sized_arm(name, with_shape(trial_train, name, params["shape"]))
            key = config_hash({"lr": params["lr"], "model": arm["model"]}, n=10)
            run_dir = out / "tune" / name / f"trial_{key}"
            dirs.append(str(run_dir))
            specs[str(run_dir)] = ctx.spec(
                name, params["lr"], seed, run_dir, arm=arm, e1=trial_train, score_test=False
            )
        res = run(list(specs.values()), "tuning")  # a repeated trial runs once
        return [float(res[d]["best_val_masked_mse"]) for d in dirs]

    return tune_arms(list(e1.backbones), e1, seed, run_trials, jobs=ctx.jobs)


def aggregate(
    cfg: RunConfig,
    out: Path,
    arms: dict[str, Any],
    best_lr: dict[str, float],
    seeds: list[int],
    results: dict[str, dict[str, Any]],
    spec_for: Any,
    base_summary: dict[str, Any],
    base_scores: dict[str, Any],
    dataset: dict[str, Any],
    checks: dict[str, str] | None = None,
) -> dict[str, Any]:
    """summary.json: mean ± std over seeds, bootstrap CIs, paired comparisons, quality gate;
    ``checks``: each arm's budget-check run folder (``e1.convergence_check``), by arm."""
    e1 = cfg.e1
    backbones: dict[str, Any] = {}
    per_mol_mean: dict[str, dict[str, np.ndarray]] = {}
    gap_arms: dict[str, dict[str, Any]] = {}
    gap_avg: dict[str, dict[str, np.ndarray]] = {}
    mol_rows = None
    for name in e1.backbones:
        runs = [results[spec_for(name, best_lr[name], s)["run_dir"]] for s in seeds]
        dirs = [spec_for(name, best_lr[name], s)["run_dir"] for s in seeds]
        test = {}
        pm_runs = [json.loads((Path(d) / "per_molecule.json").read_text()) for d in dirs]
        mol_rows = pm_runs[0]["molecule_rows"]
        per_mol_mean[name] = {}
        for m in E1_METRICS:
            vals = np.array(
                [[np.nan if v is None else v for v in pm["per_molecule"][m]] for pm in pm_runs]
            )
            with np.errstate(all="ignore"):
                avg = np.nanmean(vals, axis=0) if np.isfinite(vals).any() else vals[0]
            per_mol_mean[name][m] = avg
            per_seed = [r["test"][m]["mean"] for r in runs]
            test[m] = {
                **mean_std(per_seed),
                "per_seed": per_seed,
                "ci": bootstrap_ci(avg, n_boot=e1.n_bootstrap),
            }
        by_kind = {
            kind: {
                m: mean_std([r["test_by_kind"][kind][m]["mean"] for r in runs]) for m in E1_METRICS
            }
            for kind in runs[0]["test_by_kind"]
        }
        backbones[name] = {
            "n_params": arms[name]["n_params"],
            "parameters": runs[0]["parameters"],
            "backbone_config": arms[name]["backbone_config"],
            "overrides": arms[name].get("overrides", {}),
            # The FLOPs of the code that trained the runs (their samples/s are that code's too).
            "flops_matmul": runs[0].get("flops_per_spectrum", arms[name]["flops"])["matmul"],
            "flops_total": runs[0].get("flops_per_spectrum", arms[name]["flops"])["total"],
            "lr": best_lr[name],
            "lr_sweep": arms[name]["lr_sweep"],
            "seeds": seeds,
            "runs": [str(Path(d).relative_to(out)) for d in dirs],
            "test": test,
            "test_by_kind": by_kind,
            "val_masked_mse": mean_std([r["best_val_masked_mse"] for r in runs]),
            "train_samples_per_s": mean_std([r["train"]["samples_per_s"] for r in runs]),
            "train_time_s": mean_std([r["train"]["train_time_s"] for r in runs]),
            "peak_memory_mb": mean_std([r["train"]["peak_memory_mb"] for r in runs]),
            "memory_kind": runs[0]["train"]["memory_kind"],
        }
        if e1.eval_spans:
            gap_avg[name] = {}
            for ell in map(str, e1.eval_spans):
                vals = np.array(
                    [[np.nan if v is None else v for v in pm["gap_length"][ell]] for pm in pm_runs]
                )
                gap_avg[name][ell] = vals.mean(axis=0)
                per_seed = [float(np.nanmean(v)) for v in vals]
                gap_arms.setdefault(name, {})[ell] = {
                    **mean_std(per_seed),
                    "per_seed": per_seed,
                    "ci": bootstrap_ci(gap_avg[name][ell], n_boot=e1.n_bootstrap),
                }
        check_dir = (checks or {}).get(name)
        backbones[name].update(
            arm_convergence(
                e1,
                out,
                [Path(d) for d in dirs],
                runs,
                "recon",
                "best_val_masked_mse",
                "masked_mse",
                check_dir,
                results.get(check_dir) if check_dir else None,
            )
        )
        if runs[0].get("clamped_oscillators"):  # per seed: init, best and final weights
            backbones[name]["clamped_oscillators"] = [r["clamped_oscillators"] for r in runs]
    # Paired comparisons on the same test molecules (seed-averaged per-molecule masked MSE):
    # D-LinOSS against every other arm, and every arm against the best baseline; Holm-corrected.
    paired = []
    ref = "dlinoss" if "dlinoss" in backbones else e1.backbones[0]
    best_base = None
    for name in e1.backbones:
        if name != ref:
            paired.append((ref, name, per_mol_mean[ref], per_mol_mean[name]))
    if base_summary:
        best_base = min(base_summary, key=lambda b: base_summary[b]["val_masked_mse"])
        for name in e1.backbones:
            paired.append(
                (name, best_base, per_mol_mean[name], base_scores[best_base]["per_molecule"])
            )
    rows = []
    for a, b, va, vb in paired:
        r = paired_bootstrap(va["masked_mse"], vb["masked_mse"], n_boot=e1.n_bootstrap)
        rows.append({"a": a, "b": b, "metric": "masked_mse", **r})
    for r, p in zip(rows, holm([r["p_value"] for r in rows]), strict=True):
        r["p_holm"] = p
    refs = {
        b: base_summary[b]["val_masked_mse"] for b in ("interpolation", "pca") if b in base_summary
    }
    gate = {
        name: {
            "val_masked_mse": backbones[name]["val_masked_mse"]["mean"],
            "passed": all(backbones[name]["val_masked_mse"]["mean"] < v for v in refs.values()),
        }
        for name in e1.backbones
    }
    L = cfg.data.grid.n_points
    gap_length = None
    if e1.eval_spans:
        g = cfg.data.grid
        gap_length = {
            "spans": list(e1.eval_spans),
            "cm_per_point": (g.hi - g.lo) / (g.n_points - 1),
            "mask": f"spans of exactly ℓ points, {e1.msrp.mask.fraction:.0%} of the grid (test)",
            "train_mask": _mask_text(e1),
            "backbones": gap_arms,
            "baselines": {b: s["gap_length"] for b, s in base_summary.items() if "gap_length" in s},
            "paired": _gap_paired(e1, gap_avg, base_scores, ref, best_base),
        }
    return {
        "schema_version": SCHEMA_VERSION,
        "experiment": "e1",
        "preset": cfg.preset,
        "data_label": data_label(cfg.data),
        "dataset": dataset,
        "scale": {
            "grid_points": L,
            "stride": e1.stride,
            "backbone_length": -(-L // e1.stride),
            "d_model": e1.d_model,
            "budget": e1.budget,
            "steps": e1.train.steps,
            "effective_batch": e1.train.batch_size * e1.train.accumulation,
            "n_train": dataset["n_spectra"]["train"],
            "n_val": dataset["n_spectra"]["val"],
            "n_test": dataset["n_spectra"]["test"],
            "n_test_molecules": len(mol_rows or []),
            "mask": _mask_text(e1),
            "normalization": e1.normalization,
            "note": scale_note(cfg.preset),
        },
        "metric_directions": {m: METRIC_DIRECTIONS[m] for m in E1_METRICS},
        "peak_settings": {"tolerance_cm": e1.peak_tolerance_cm, "prominence": e1.peak_prominence},
        "ci_unit": "test molecules (metric averaged over a molecule's IR and Raman spectra)",
        "backbones": backbones,
        "baselines": base_summary,
        "paired": rows,
        "gap_length": gap_length,
        "convergence": {
            "rule": _convergence_rule(e1),
            "tol": e1.convergence_tol,
            "window": e1.convergence_window,
            "check": e1.convergence_check,
            "all_converged": all(b["convergence"]["converged"] for b in backbones.values()),
        },
        "quality_gate": {
            "passed": all(g["passed"] for g in gate.values()),
            "references": refs,
            "per_backbone": gate,
            "criterion": "best validation masked MSE (mean over seeds) below interpolation and PCA",
        },
    }


def _convergence_rule(e1: E1Config) -> str:
    return rule_text(
        e1.convergence_tol,
        e1.convergence_window,
        e1.convergence_check,
        e1.train.steps,
        "validation masked MSE",
    )


def _mask_text(e1: E1Config) -> str:
    m = e1.msrp.mask
    dist = "" if m.span_dist == "uniform" else f", {m.span_dist.replace('_', '-')}"
    return f"{m.kind} {m.fraction:.0%} ({m.min_span}-{m.max_span} points{dist})"


def _gap_paired(
    e1: E1Config,
    gap_avg: dict[str, dict[str, np.ndarray]],
    base_scores: dict[str, Any],
    ref: str,
    best_base: str | None,
) -> list[dict[str, Any]]:
    """At every gap length: ``ref`` (D-LinOSS) against every other arm and every arm against
    ``best_base`` (the baseline chosen on validation for the main comparison), paired over
    molecules, Holm-corrected within each length."""
    out = []
    for ell in map(str, e1.eval_spans):
        pairs = [(ref, n, gap_avg[ref][ell], gap_avg[n][ell]) for n in gap_avg if n != ref]
        if best_base is not None:
            base = base_scores[best_base]["gap_length"][int(ell)]
            pairs += [(n, best_base, gap_avg[n][ell], base) for n in gap_avg]
        rows = [
            {
                "span": int(ell),
                "a": a,
                "b": b,
                "metric": f"masked_mse, {ell}-point gaps",
                **paired_bootstrap(va, vb, n_boot=e1.n_bootstrap),
            }
            for a, b, va, vb in pairs
        ]
        for r, p in zip(rows, holm([r["p_value"] for r in rows]), strict=True):
            r["p_holm"] = p
        out += rows
    return out


def write_examples(
    out: Path,
    test: ArrayData,
    ex_idx: np.ndarray,
    test_mask: np.ndarray,
    wn: np.ndarray,
    model_preds: dict[str, list[list[float]]],
    base_preds: dict[str, np.ndarray],
    label: str,
) -> None:
    """examples.json: fixed test spectra, their masks, and every arm's reconstruction (first
    seed at the chosen LR) and every baseline's, for the figures."""
    examples = []
    for j, i in enumerate(ex_idx):
        pred = {name: p[j] for name, p in model_preds.items()}
        pred.update({name: p[i].astype(float).tolist() for name, p in base_preds.items()})
        examples.append(
            {
                "kind": KIND_NAMES[int(test.arrays["kind"][i])],
                "smiles": str(test.arrays["smiles"][i]),
                "truth": test.arrays["x"][i].astype(float).tolist(),
                "mask": test_mask[i].astype(int).tolist(),
                "pred": pred,
            }
        )
    write_json_atomic(
        out / "examples.json",
        {"data_label": label, "wavenumber": wn.tolist(), "examples": examples},
    )
