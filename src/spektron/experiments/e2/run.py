"""E2: cross-spectral prediction — Raman from IR and IR from Raman (docs/DESIGN.md §4).

Arms differ **only** in the backbone and its initialisation: every arm has E1's embedding, model
shape (``e1.d_model``, ``e1.stride``) and parameter-matched backbone (so an E1 / ``pretrain``
checkpoint loads), the cross-spectral head (per position, zero-initialised last layer), the
squared-error objective over every grid point and the same optimiser recipe and step budget.
Each (backbone, direction, init) is trained from scratch and from the E1 checkpoint of the same
backbone (embedding + backbone weights copied; the head starts fresh); the LR is chosen on
validation on the first seed, then the other seeds run at that LR. Models are scored with their
best-validation weights.

**Data.** Molecules with both spectra, the InChIKey-hash splits of E1 (so pretraining never saw
E2's validation or test molecules). With ``hold_out_centrosymmetric`` the centrosymmetric
molecules (``centrosymmetric == 1``) leave train, validation and test and form a held-out
*symmetric set*, together with simulated centrosymmetric molecules from outside QM9
(``external_centrosymmetric``). Spectra are normalised by ``e2.normalization``; the metrics
apply the same rule to truth, model and baseline predictions
(:func:`~spektron.evaluation.cross_spectral.cross_spectral_metrics`). Primary metric, fixed
before any run: :data:`~spektron.evaluation.cross_spectral.PRIMARY_METRIC` (full-range cosine),
reported as skill over the identity copy and the mean spectrum, next to peak F1 and the rest.

**Baselines** (fitted on the training pairs; settings chosen on validation): identity copy,
mean target spectrum, PLS2, nearest-neighbour retrieval.

Layout under ``out``: ``baselines/<direction>/`` (per-molecule CSVs, predictions for figures),
``runs/<direction>/<init>/<backbone>/lr<lr>_seed<seed>/`` (config.json, run_spec.json,
metrics.json, per_molecule.csv, symmetric_per_molecule.csv, history.jsonl, checkpoints),
``summary.json``, ``table.md`` and ``figures/`` (rebuilt by ``spektron report``). All data here
are SIMULATED (:data:`spektron.data.generate.SIMULATED_LABEL`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spektron.chemistry.spectra import make_grid, normalize_spectra
from spektron.config import E2Config, RunConfig, config_hash, to_dict
from spektron.data.generate import data_label, ensure_dataset
from spektron.data.store import open_store
from spektron.errors import ConfigError, DataError
from spektron.evaluation.baselines import build_baseline, fit_pls_by_validation
from spektron.evaluation.cross_spectral import (
    PRIMARY_METRIC,
    cross_spectral_metrics,
)
from spektron.evaluation.metrics import bootstrap_ci
from spektron.experiments.e2.results import HEADLINE, write_per_molecule
from spektron.experiments.runner import (
    arm_flops,
    check_run_folders,
    claim_run_dir,
    device_description,
    file_sha256,
    find_checkpoints,
    git_commit,
    load_pretrained,
    measured_step_seconds,
    package_versions,
    reuse_line,
    run_record,
    run_specs,
    seeded_model,
    size_arms,
    sweep_then_seeds,
    threads_for,
    wall_times,
    with_e1_tuning,
)
from spektron.experiments.runner import model_config as shared_model_config
from spektron.plotting import FIGURE_LOCK
from spektron.training import distributed as D
from spektron.training.data import ArrayData, batch_tensor
from spektron.training.tasks import CrossSpectralPrediction
from spektron.utils import write_json_atomic

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
KINDS = {"ir_to_raman": ("ir", "raman"), "raman_to_ir": ("raman", "ir")}


# ----------------------------------------------------------------------------- data


def _decode(values: np.ndarray) -> np.ndarray:
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values])


def load_molecules(
    store_path: Path, rows: np.ndarray, normalization: str, sticks: bool = False
) -> dict[str, Any]:
    """IR, Raman (normalised, float32) and metadata of the given store rows (sorted); with
    ``sticks`` also each molecule's (freq, IR, Raman) stick modes."""
    store = open_store(store_path)
    try:
        rows = np.sort(np.asarray(rows, dtype=np.int64))
        ir = np.asarray(store.spectra("ir", rows), np.float64)
        raman = np.asarray(store.spectra("raman", rows), np.float64)
        out = {
            "row": rows,
            "ir": normalize_spectra(ir, normalization).astype(np.float32),
            "raman": normalize_spectra(raman, normalization).astype(np.float32),
            "smiles": _decode(store.column("smiles")[rows]),
            "centrosymmetric": store.column("centrosymmetric")[rows].astype(np.int64),
            "point_group": _decode(store.column("point_group")[rows]),
            "fg_flags": np.asarray(store.h5["fg_flags"][()], dtype=bool)[rows],
            "fg_names": list(json.loads(store.h5["fg_flags"].attrs["names"])),
            "n_atoms": store.column("n_atoms")[rows].astype(np.int64),
            "sticks": [store.sticks(int(i)) for i in rows] if sticks else None,
        }
    finally:
        store.close()
    for kind in ("ir", "raman"):
        if not np.isfinite(out[kind]).all():
            raise DataError(f"{store_path}: non-finite {kind} values after normalisation")
    return out


# Molecules loaded in this process, for reuse: a pool worker trains many runs on the same rows.
_LOADED: dict[tuple[Any, ...], dict[str, Any]] = {}
_LOADED_MAX = 8


def load_molecules_cached(
    store_path: Path, rows: np.ndarray, normalization: str, sticks: bool = False
) -> dict[str, Any]:
    """:func:`load_molecules`, kept for the process's later calls with the same store file
    (path, size and modification time), rows and settings. Its arrays are read-only: every run
    that gets them shares them."""
    st = Path(store_path).stat()
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    key = (
        str(Path(store_path).resolve()),
        st.st_mtime_ns,
        st.st_size,
        hashlib.sha1(rows.tobytes()).hexdigest(),
        normalization,
        sticks,
    )
    if key not in _LOADED:
        out = load_molecules(store_path, rows, normalization, sticks)
        for v in out.values():
            if isinstance(v, np.ndarray):
                v.flags.writeable = False
        if len(_LOADED) >= _LOADED_MAX:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = out
    return _LOADED[key]


def split_rows(store_path: Path, e2: E2Config, seed: int) -> dict[str, np.ndarray]:
    """Store rows of train / val / test (molecules with both spectra) and of QM9's
    centrosymmetric molecules (held out of all three when ``e2.hold_out_centrosymmetric``)."""
    store = open_store(store_path)
    try:
        both = store.column("has_ir") & store.column("has_raman")
        centro = store.column("centrosymmetric") == 1
        out = {}
        for s in ("train", "val", "test"):
            rows = store.split_indices(s)
            keep = both[rows] & ~(centro[rows] if e2.hold_out_centrosymmetric else False)
            out[s] = np.sort(rows[keep])
        out["symmetric"] = (
            np.flatnonzero(both & centro) if e2.hold_out_centrosymmetric else np.zeros(0, np.int64)
        )
        out["n_molecules"] = np.array(len(store))
        out["n_centrosymmetric"] = np.array(int(centro.sum()))
    finally:
        store.close()
    cap = e2.max_train_molecules
    if cap is not None and len(out["train"]) > cap:
        pick = np.random.default_rng(seed).choice(len(out["train"]), cap, replace=False)
        out["train"] = np.sort(out["train"][pick])
    for s in ("train", "val", "test"):
        if len(out[s]) == 0:
            raise DataError(f"{store_path}: E2 has no {s} molecules with both IR and Raman")
    return out


def pairs(mol: dict[str, Any], direction_name: str) -> ArrayData:
    """Input/target pairs of one direction: ``x`` = source spectra, ``y`` = target spectra."""
    src, tgt = KINDS[direction_name]
    return ArrayData({"x": mol[src], "y": mol[tgt], "row": mol["row"]})


# ----------------------------------------------------------------------------- scoring


def score(
    pred: np.ndarray, truth: np.ndarray, wn: np.ndarray, e2: E2Config
) -> dict[str, np.ndarray]:
    """Per-molecule metrics of every region (:func:`cross_spectral_metrics` with E2's settings)."""
    return cross_spectral_metrics(
        pred,
        truth,
        wn,
        normalization=e2.normalization,
        tolerances=e2.peak_tolerances_cm,
        prominence=e2.peak_prominence,
        sid_eps=e2.sid_eps,
    )


def symmetric_scores(
    pred: np.ndarray, sym: dict[str, Any], direction_name: str, wn: np.ndarray, e2: E2Config
) -> dict[str, np.ndarray]:
    """Metrics on the symmetric set plus the mutual-exclusion leak of the prediction (and, for
    reference, of the truth and of the input spectrum)."""
    from spektron.evaluation.cross_spectral_analysis import mutual_exclusion_leak

    src, tgt = KINDS[direction_name]
    out = score(pred, sym[tgt], wn, e2)
    col = {"ir": 1, "raman": 2}
    freq = [s[0] for s in sym["sticks"]]
    src_int = [s[col[src]] for s in sym["sticks"]]
    tgt_int = [s[col[tgt]] for s in sym["sticks"]]
    leak = mutual_exclusion_leak(pred, wn, freq, src_int, tgt_int, true=sym[tgt], source=sym[src])
    out["leak"] = leak["pred"]
    out["leak_truth"] = leak["true"]
    out["leak_copy"] = leak["source"]
    return out


def summarise_run(per: dict[str, np.ndarray], e2: E2Config) -> dict[str, Any]:
    """Mean and bootstrap CI of the headline metrics (over molecules)."""
    return {k: bootstrap_ci(per[k], n_boot=e2.n_bootstrap) for k in HEADLINE if k in per}


def example_picks(primary: np.ndarray) -> dict[str, int]:
    """Indices of the best, median and worst molecule by the primary metric (higher = better)."""
    ok = np.flatnonzero(np.isfinite(primary))
    if len(ok) == 0:
        return {}
    order = ok[np.argsort(primary[ok], kind="stable")]
    return {"best": int(order[-1]), "median": int(order[len(order) // 2]), "worst": int(order[0])}


# ----------------------------------------------------------------------------- baselines


def run_baselines(
    data: dict[str, dict[str, Any]],
    sym: dict[str, Any] | None,
    direction_name: str,
    wn: np.ndarray,
    e2: E2Config,
    out: Path,
    seed: int,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Fit every baseline on the training pairs, choose its settings on validation, score it on
    test (and the symmetric set). Writes per-molecule CSVs and ``baselines.json`` into ``out``;
    returns the summary and the test predictions (N, L) of every baseline."""
    out.mkdir(parents=True, exist_ok=True)
    tr, va, te = (pairs(data[s], direction_name) for s in ("train", "val", "test"))
    X, Y = tr.arrays["x"].astype(np.float64), tr.arrays["y"].astype(np.float64)
    Xv, Yv = va.arrays["x"].astype(np.float64), va.arrays["y"].astype(np.float64)
    Xt, Yt = te.arrays["x"].astype(np.float64), te.arrays["y"].astype(np.float64)
    src, tgt = KINDS[direction_name]
    summary: dict[str, Any] = {}
    preds: dict[str, np.ndarray] = {}
    for name in e2.baselines:
        t0 = time.perf_counter()
        params: dict[str, Any] = {}
        if name == "pls":
            Xf, Yf = X, Y
            if e2.pls_max_train is not None and len(X) > e2.pls_max_train:
                pick = np.sort(
                    np.random.default_rng(seed).choice(len(X), e2.pls_max_train, replace=False)
                )
                Xf, Yf = X[pick], Y[pick]
                params["fit_subsample"] = int(e2.pls_max_train)
            cands = tuple(k for k in e2.pls_candidates if k <= min(Xf.shape))
            if not cands:
                raise ConfigError(f"e2.pls_candidates {e2.pls_candidates} exceed the data size")
            # One fit at the largest k; the chosen k is its first k components.
            model, params["n_components"] = fit_pls_by_validation(Xf, Yf, Xv, Yv, cands)
            # The largest k tried won: a larger one might do better (the report says so).
            params["at_grid_max"] = bool(len(cands) > 1 and params["n_components"] == cands[-1])
        else:
            if name == "nearest_neighbour":
                params["metric"] = e2.nn_metric
            model = build_baseline("cross_spectral", name, **params).fit(X, Y)
        val = score(model.predict(Xv), Yv, wn, e2)
        pred = model.predict(Xt)
        preds[name] = pred
        per = score(pred, Yt, wn, e2)
        write_per_molecule(
            out / f"{name}_per_molecule.csv", te.arrays["row"], data["test"]["smiles"], per
        )
        entry = {
            "params": params,
            "val_primary": float(np.nanmean(val[PRIMARY_METRIC])),
            "val_mse": float(np.nanmean(val["full/mse"])),
            "test": summarise_run(per, e2),
            "fit_predict_s": time.perf_counter() - t0,
        }
        if sym is not None:
            sp = model.predict(sym[src].astype(np.float64))
            ss = symmetric_scores(sp, sym, direction_name, wn, e2)
            write_per_molecule(out / f"{name}_symmetric.csv", sym["row"], sym["smiles"], ss)
            entry["symmetric"] = _symmetric_summary(ss, sym, e2)
        summary[name] = entry
        log.info(
            "E2 %s baseline %s: test %s %.4f",
            direction_name,
            name,
            PRIMARY_METRIC,
            entry["test"][PRIMARY_METRIC]["mean"],
        )
    write_json_atomic(out / "baselines.json", summary)
    return summary, preds


def _symmetric_summary(ss: dict[str, np.ndarray], sym: dict[str, Any], e2: E2Config) -> dict:
    res: dict[str, Any] = {"n": len(sym["row"])}
    for origin in ("all", "qm9", "external"):
        sel = np.ones(len(sym["row"]), bool) if origin == "all" else sym["origin"] == origin
        if not sel.any():
            continue
        res[origin] = {
            k: bootstrap_ci(ss[k][sel], n_boot=e2.n_bootstrap)
            for k in (PRIMARY_METRIC, "full/peak_f1@10", "leak", "leak_truth", "leak_copy")
        }
        res[origin]["n"] = int(sel.sum())
    return res


# ----------------------------------------------------------------------------- one run


def model_config(cfg: RunConfig, backbone: str, backbone_config: dict[str, Any]) -> dict:
    """E1's model shape with the cross-spectral head."""
    head_config = {"nonnegative": cfg.e2.nonnegative}
    return shared_model_config(cfg.e1, backbone, backbone_config, "cross_spectral", head_config)


@torch.no_grad()
def predict(
    model: torch.nn.Module, x: np.ndarray, wn: np.ndarray, device: torch.device, batch: int = 64
) -> np.ndarray:
    """Predicted target spectra (N, L), float64 on the CPU (model in eval mode)."""
    model.eval()
    w = torch.as_tensor(wn, dtype=torch.float32, device=device)
    out = []
    for s in range(0, len(x), batch):
        xb = batch_tensor(x[s : s + batch]).float().to(device)
        out.append(model(xb, w, None)["pred"].double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(wn)))


def train_one(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one (direction, init, backbone, lr, seed) arm into ``spec["run_dir"]`` and score
    it on test and on the symmetric set. Reuses a finished run; resumes an interrupted one."""
    from spektron.config import from_dict
    from spektron.models.spektron import Spektron
    from spektron.training.config import TrainConfig
    from spektron.training.trainer import BEST_NAME, Trainer

    run_dir = Path(spec["run_dir"])
    dist = spec.get("dist") or D.DistInfo(device=torch.device(spec["device"]))
    cfg = from_dict(RunConfig, spec["config"], "config")
    e2 = cfg.e2
    metrics_path = run_dir / "metrics.json"
    public = {k: v for k, v in spec.items() if k not in ("dist", "wavenumber", "rows")}
    done = claim_run_dir(run_dir, spec["run_hash"], _hashed(spec), public, dist)
    if done is not None:
        return done
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    wn = np.asarray(spec["wavenumber"])
    store = Path(spec["store"])
    rows = {k: np.asarray(v, dtype=np.int64) for k, v in spec["rows"].items()}
    data = {
        s: load_molecules_cached(store, rows[s], e2.normalization) for s in ("train", "val", "test")
    }
    dname = spec["direction"]
    # The run's own recipe: E2's, or the budget check's longer one (e2.convergence_check).
    recipe = from_dict(TrainConfig, spec["e2_train"], "e2_train")
    model, train_cfg = seeded_model(spec, recipe)
    mcfg = model.cfg
    init_info: dict[str, Any] = {"init": spec["init"]}
    if spec["init"] == "pretrained":
        init_info.update(load_pretrained(model, spec["pretrained_checkpoint"]))
    src, tgt = KINDS[dname]
    extra = {
        "task": "cross_spectral",
        "source_kind": src,
        "target_kind": tgt,
        "normalization": e2.normalization,
        "grid": to_dict(cfg.data.grid),
        "data_label": data_label(cfg.data),
        "init": spec["init"],
        "pretrained_checkpoint": spec.get("pretrained_checkpoint") or "",
        # The scale it was trained at: predict warns about a smoke-preset model.
        "preset": cfg.preset,
        "train_steps": recipe.steps,
    }
    if dist.is_main:
        write_json_atomic(
            run_dir / "config.json",
            {"model": mcfg.to_json_dict(), "train": to_dict(train_cfg), "e2": to_dict(e2)},
        )
    trainer = Trainer(
        model,
        CrossSpectralPrediction(wn),
        pairs(data["train"], dname),
        pairs(data["val"], dname),
        train_cfg,
        run_dir,
        dist,
        progress=spec.get("progress", False),
        model_checkpoint_extra=extra,
    )
    fit = trainer.fit()
    if not dist.is_main:
        D.barrier(dist)
        return {}
    best = Spektron.from_checkpoint(run_dir / BEST_NAME, map_location=dist.device)
    test = data["test"]
    t0 = time.perf_counter()
    pred = predict(best, test[src], wn, dist.device)
    infer_s = time.perf_counter() - t0
    per = score(pred, test[tgt], wn, e2)
    write_per_molecule(run_dir / "per_molecule.csv", test["row"], test["smiles"], per)
    picks = example_picks(per[PRIMARY_METRIC])
    metrics: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "experiment": "e2",
        "data_label": data_label(cfg.data),
        "direction": dname,
        "init": init_info,
        **run_record(spec, dist.device, best, fit),
        "best_val_mse": fit["best_val"],
        "best_step": fit["best_step"],
        "test_inference_s": infer_s,
        "n_test": len(test["row"]),
        "primary_metric": PRIMARY_METRIC,
        "test": summarise_run(per, e2),
        "examples": {
            k: {"index": i, "pred": pred[i].astype(float).tolist()} for k, i in picks.items()
        },
    }
    sym = spec.get("symmetric")
    if sym is not None:
        sym_data = _load_symmetric_for_run(sym, e2.normalization)
        sp = predict(best, sym_data[src], wn, dist.device)
        ss = symmetric_scores(sp, sym_data, dname, wn, e2)
        write_per_molecule(
            run_dir / "symmetric_per_molecule.csv", sym_data["row"], sym_data["smiles"], ss
        )
        metrics["symmetric"] = _symmetric_summary(ss, sym_data, e2)
    write_json_atomic(metrics_path, metrics)
    D.barrier(dist)
    return metrics


def _load_symmetric_for_run(sym: dict[str, Any], normalization: str) -> dict[str, Any]:
    """The symmetric set from its stores (QM9 rows of the main store, external store)."""
    parts = []
    for path, rows, origin in sym["parts"]:
        m = dict(load_molecules_cached(Path(path), np.asarray(rows, np.int64), normalization, True))
        m["origin"] = np.array([origin] * len(m["row"]))
        parts.append(m)
    out: dict[str, Any] = {}
    for k in parts[0]:
        if k == "fg_names":
            out[k] = parts[0][k]
        elif k == "sticks":
            out[k] = [s for p in parts for s in p[k]]
        else:
            out[k] = np.concatenate([p[k] for p in parts])
    return out


# ----------------------------------------------------------------------------- orchestration


def resolve_pretrained(e2: E2Config, backbones: tuple[str, ...]) -> dict[str, list[str]]:
    """Checkpoint paths per backbone for E2's pretrained arms (see :func:`find_checkpoints`)."""
    if "pretrained" not in e2.inits:
        return {}
    return find_checkpoints(e2.pretrained_from, backbones, "e2")


HASHED_KEYS = (
    "direction",
    "init",
    "backbone",
    "lr",
    "seed",
    "model",
    "e2_train",
    "dataset",
    "pretrained_sha256",
    "e2_eval",
)


def _hashed(spec: dict[str, Any]) -> dict[str, Any]:
    """What identifies a run: a finished run is reused only when all of it is unchanged."""
    return json.loads(json.dumps({k: spec.get(k) for k in HASHED_KEYS}))


def _run_hash(spec: dict[str, Any]) -> str:
    return config_hash(_hashed(spec), n=16)


def run_e2(
    cfg: RunConfig, out: Path, progress: bool = True, announce: Any = None
) -> dict[str, Any]:
    """Run E2 end to end: data, baselines, every (direction, init, backbone) × LR sweep ×
    seeds, aggregation, error analysis and the report."""
    t_start = time.perf_counter()
    e2 = cfg.e2
    out = Path(out)
    dist = D.setup(cfg.device)
    if dist.is_main:
        store_path, _ = ensure_dataset(cfg.data, workers=cfg.workers, progress=progress)
    D.barrier(dist)
    if not dist.is_main:
        store_path, _ = ensure_dataset(cfg.data, workers=cfg.workers, progress=False)
    pretrained = resolve_pretrained(e2, e2.backbones)
    g = cfg.data.grid
    wn = make_grid(g.n_points, g.lo, g.hi)
    rows = split_rows(store_path, e2, cfg.seed)
    if len(rows["train"]) < e2.train.batch_size:
        raise DataError(
            f"E2 needs at least one training batch ({e2.train.batch_size} molecules); the train "
            f"split has {len(rows['train'])}"
        )
    sym_parts = None
    if e2.hold_out_centrosymmetric:
        sym_parts = {"parts": [[str(store_path), rows["symmetric"].tolist(), "qm9"]]}
        if e2.external_centrosymmetric:
            from spektron.data.centrosymmetric import ensure_centrosymmetric_store

            # One process simulates (or finds cached) the external set; the others wait.
            ext = None
            if dist.is_main:
                ext = ensure_centrosymmetric_store(
                    cfg.data.physics, cfg.data.grid, workers=cfg.workers, progress=progress
                )
            ext = D.broadcast_object(ext, dist)
            with open_store(ext) as st:
                ext_rows = np.flatnonzero(st.column("has_ir") & st.column("has_raman"))
            sym_parts["parts"].append([str(ext), ext_rows.tolist(), "external"])
        sym_parts["parts"] = [p for p in sym_parts["parts"] if len(p[1])]
        if not sym_parts["parts"]:
            sym_parts = None
    sym = _load_symmetric_for_run(sym_parts, e2.normalization) if sym_parts else None
    dataset = {
        "path": str(store_path),
        "sha256": file_sha256(store_path),
        "config_hash": config_hash(cfg.data),
        "label": data_label(cfg.data),
        "n_molecules": {s: int(len(rows[s])) for s in ("train", "val", "test")},
        "n_symmetric": {p[2]: len(p[1]) for p in (sym_parts or {}).get("parts", [])},
        "n_store_molecules": int(rows["n_molecules"]),
        "n_centrosymmetric_in_store": int(rows["n_centrosymmetric"]),
    }
    if dist.distributed or dist.device.type == "cuda":
        jobs = 1
    else:
        jobs = e2.jobs or (os.cpu_count() or 1)
    # E1's tuned knobs, when its folder has them: the arms of the checkpoints E2 starts from.
    arms = size_arms(replace(with_e1_tuning(cfg.e1, e2.pretrained_from), backbones=e2.backbones))
    for name, arm in arms.items():
        arm["model"] = model_config(cfg, name, arm["backbone_config"])
        arm["flops"] = arm_flops(arm["model"], len(wn))
    common = {
        "store": str(store_path),
        "wavenumber": wn.tolist(),
        "rows": {s: rows[s].tolist() for s in ("train", "val", "test")},
        "config": to_dict(cfg),
        "e2_train": to_dict(e2.train),
        "e2_eval": [
            e2.normalization,
            e2.peak_tolerances_cm,
            e2.peak_prominence,
            e2.sid_eps,
            e2.hold_out_centrosymmetric,
            e2.external_centrosymmetric,
        ],
        "dataset": dataset,
        "git_commit": git_commit(),
        "package_versions": package_versions(),
        "symmetric": sym_parts,
    }
    seeds = [cfg.seed + i for i in range(e2.n_seeds)]
    sha_cache: dict[str, str] = {}

    def spec_for(dname: str, init: str, name: str, lr: float, seed: int) -> dict[str, Any]:
        run_dir = out / "runs" / dname / init / name / f"lr{lr:g}_seed{seed}"
        spec = {
            **common,
            "direction": dname,
            "init": init,
            "backbone": name,
            "lr": lr,
            "seed": seed,
            "model": arms[name]["model"],
            "flops": arms[name]["flops"],
            "device": str(dist.device),
            "threads": threads_for(jobs) if dist.device.type == "cpu" else 0,
            "progress": progress and jobs == 1,
            "run_dir": str(run_dir),
            "steps": e2.train.steps,  # the job order's cost (not hashed)
        }
        if init == "pretrained":
            ckpts = pretrained[name]
            path = ckpts[seeds.index(seed) % len(ckpts)]
            spec["pretrained_checkpoint"] = path
            if path not in sha_cache:
                sha_cache[path] = file_sha256(Path(path))
            spec["pretrained_sha256"] = sha_cache[path]
        spec["run_hash"] = _run_hash(spec)
        return spec

    def check_for(c: tuple[str, str, str], lr: float) -> dict[str, Any]:
        """The budget check's run of arm ``c``: its first seed for ``convergence_check`` × the
        steps (the cosine over the longer budget)."""
        steps = e2.convergence_check * e2.train.steps
        spec = spec_for(*c, lr, seeds[0])
        spec["run_dir"] = f"{spec['run_dir']}_steps{steps}"
        spec["e2_train"] = to_dict(replace(e2.train, steps=steps))
        spec["steps"] = steps  # the job order's cost (not hashed)
        spec["run_hash"] = _run_hash(spec)
        return spec

    combos = [(d, i, b) for d in e2.directions for i in e2.inits for b in e2.backbones]
    # A folder of runs with other settings is refused here, before the baselines run.
    reuse = check_run_folders(combos, e2.lr_sweep, seeds, spec_for, _hashed)
    if announce is not None and dist.is_main:
        announce(
            {
                "experiment": "e2",
                "directions": list(e2.directions),
                "inits": list(e2.inits),
                "backbones": {n: a["n_params"] for n, a in arms.items()},
                "baselines": list(e2.baselines),
                "seeds": seeds,
                "lr_sweep": list(e2.lr_sweep),
                "n_training_runs": len(combos) * (len(e2.lr_sweep) + e2.n_seeds - 1),
                **(
                    {"lr_extension_runs": f"up to {len(combos) * e2.lr_extensions}"}
                    if e2.lr_extensions and len(e2.lr_sweep) > 1
                    else {}
                ),
                "reuse": reuse_line(reuse, out),
                "steps_per_run": e2.train.steps,
                **(
                    {
                        "budget_check": f"the first seed of every arm also for "
                        f"{e2.convergence_check * e2.train.steps:,} steps (the convergence rule)"
                    }
                    if e2.convergence_check
                    else {}
                ),
                "effective_batch": e2.train.batch_size * e2.train.accumulation,
                "molecules": dataset["n_molecules"],
                "parallel_runs": jobs,
                "device": device_description(dist.device),
            }
        )
    base: dict[str, Any] = {}
    base_preds: dict[str, dict[str, np.ndarray]] = {}
    if dist.is_main:
        data = {
            s: load_molecules_cached(store_path, rows[s], e2.normalization)
            for s in ("train", "val", "test")
        }
        for dname in e2.directions:
            base[dname], base_preds[dname] = run_baselines(
                data, sym, dname, wn, e2, out / "baselines" / dname, cfg.seed
            )
    step_s = measured_step_seconds(e2.pretrained_from)  # E1's, for the job order

    def run(specs: list[dict[str, Any]], what: str) -> dict[str, dict[str, Any]]:
        return run_specs(specs, jobs, dist, progress, f"E2 {what}", fn=train_one, step_s=step_s)

    results, best_lr, lr_vals = sweep_then_seeds(
        combos, e2.lr_sweep, seeds, spec_for, run, "best_val_mse", e2.lr_extensions
    )
    checks: dict[tuple[str, str, str], str] = {}
    if e2.convergence_check:
        check_specs = {c: check_for(c, best_lr[c]) for c in combos}
        results.update(run(list(check_specs.values()), "budget check"))
        checks = {c: sp["run_dir"] for c, sp in check_specs.items()}
    if not dist.is_main:
        return {}
    from spektron.experiments.e2.analysis import aggregate

    summary = aggregate(
        cfg,
        out,
        arms,
        combos,
        best_lr,
        lr_vals,
        seeds,
        results,
        spec_for,
        base,
        data,
        sym,
        dataset,
        wn,
        checks,
    )
    summary["device"] = device_description(dist.device)
    summary.update(wall_times(out, time.perf_counter() - t_start))
    write_json_atomic(out / "summary.json", summary)
    from spektron.experiments.e2.report import build_e2_report

    with FIGURE_LOCK:
        write_examples(out, summary, data["test"], base_preds, wn)
        summary["report"] = build_e2_report(out)
    return summary


def write_examples(
    out: Path,
    summary: dict[str, Any],
    test: dict[str, Any],
    base_preds: dict[str, dict[str, np.ndarray]],
    wn: np.ndarray,
) -> None:
    """examples.json: per direction, the best, median and worst test molecule (by the primary
    metric) of the error-analysis arm's first seed, with input, truth, that model's prediction
    and every baseline's prediction for the same molecule."""
    out_dirs: dict[str, Any] = {}
    for dname, ana in summary["error_analysis"].items():
        src, tgt = KINDS[dname]
        entry = summary["models"][ana["arm"]]
        run = json.loads((out / entry["runs"][0] / "metrics.json").read_text())
        items = []
        for which, ex in run["examples"].items():
            i = int(ex["index"])
            preds = {ana["arm"]: ex["pred"]}
            preds.update(
                {
                    f"baseline:{b}": p[i].astype(float).tolist()
                    for b, p in base_preds[dname].items()
                    if b != "identity"
                }
            )
            items.append(
                {
                    "which": which,
                    "row": int(test["row"][i]),
                    "smiles": str(test["smiles"][i]),
                    "point_group": str(test["point_group"][i]),
                    "input": test[src][i].astype(float).tolist(),
                    "truth": test[tgt][i].astype(float).tolist(),
                    "pred": preds,
                }
            )
        out_dirs[dname] = {"source": src, "target": tgt, "arm": ana["arm"], "examples": items}
    write_json_atomic(
        out / "examples.json",
        {"data_label": summary["data_label"], "wavenumber": wn.tolist(), "directions": out_dirs},
    )
