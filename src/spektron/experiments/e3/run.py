"""E3: what trained D-LinOSS layers learned, read from their exact transfer functions.

Every D-LinOSS oscillator is a second-order IIR filter along the spectral axis
(:mod:`spektron.analysis.transfer_function`). E3 analyses three groups of models of the same
architecture:

- ``trained``: the D-LinOSS runs of an E1 folder (best-validation checkpoints, one per seed);
- ``init``: the same runs at step 0 (``init.pt``), the untrained control;
- ``shuffled``: models trained with E1's recipe and chosen learning rate on spectra whose grid
  order is one fixed permutation (values and their wavenumber encoding alike), one per seed:
  whatever the trained filters share with these is not about the spectral axis.

The unit of analysis is the model (:mod:`spektron.analysis.e3_stats`): effect sizes with
bootstrap CIs over models, exact permutation tests over model labels, Holm correction. With
three models per group no two-sided test can reach p < 0.1, so a quick run produces the tables
and figures but cannot support conclusions, and says so.

``spektron e3 --checkpoint CKPT ...`` analyses given checkpoints instead (their ``init.pt``
siblings, where present, are the untrained control; no shuffled training).

Layout under ``out``: ``shuffled/seed<k>/`` (training runs), ``models/<group>_<i>.csv`` and
``.json`` (per-oscillator tables; the JSON holds the whole analysis without the responses),
``coupling_<group>_0.npz``, ``summary.json``, ``table.md``,
``figures/``. The data the models were trained on are SIMULATED.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spektron.chemistry.spectra import make_grid
from spektron.config import RunConfig, config_hash, to_dict
from spektron.data.generate import data_label, ensure_dataset
from spektron.errors import CheckpointError, ConfigError
from spektron.experiments.runner import (
    device_description,
    git_commit,
    load_splits,
    package_versions,
    reuse_line,
    run_folder_finished,
    run_specs,
    seeded_model,
    threads_for,
    wall_times,
)
from spektron.plotting import FIGURE_LOCK
from spektron.training import distributed as D
from spektron.training.data import ArrayData
from spektron.utils import write_json_atomic

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
GROUPS = ("trained", "init", "shuffled")
MEDIAN_FEATURES = ("f_res", "theta", "r", "zeta", "coupling_norm", "peak_gain_db")


def wavenumber_permutation(n_points: int, seed: int) -> np.ndarray:
    """The fixed permutation of the grid order used by the shuffled-order control."""
    return np.random.default_rng([seed, n_points]).permutation(n_points)


# ----------------------------------------------------------------------------- shuffled control

# A shuffled-order control's record: its settings (run_hash, hashed) and results, written last.
RESULT = "result.json"


def train_shuffled(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one shuffled-order control (module level, so a spawn pool can import it).

    The spectra's grid order is permuted once (``spec["permutation"]``) for values and the
    wavenumber encoding alike; masks, objective and recipe are E1's. Reuses a finished run.
    """
    from spektron.config import from_dict
    from spektron.training.tasks import MaskedReconstruction
    from spektron.training.trainer import BEST_NAME, Trainer

    run_dir = Path(spec["run_dir"])
    done = run_dir / RESULT
    if run_folder_finished(run_dir, spec["run_hash"], spec["hashed"], RESULT, RESULT):
        res = json.loads(done.read_text())
        return {**res, "checkpoint": str(run_dir / BEST_NAME)}  # the folder may have moved
    dist = spec.get("dist") or D.DistInfo(device=torch.device(spec["device"]))
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    cfg = from_dict(RunConfig, spec["config"], "config")
    perm = np.asarray(spec["permutation"], dtype=np.int64)
    wn = np.asarray(spec["wavenumber"])[perm]
    splits = load_splits(Path(spec["store"]), cfg.e1)

    def permuted(d: ArrayData) -> ArrayData:
        return ArrayData(
            {"x": d.arrays["x"][:, perm], "row": d.arrays["row"], "kind": d.arrays["kind"]}
        )

    model, train_cfg = seeded_model(spec, cfg.e1.train)
    fit = Trainer(
        model,
        MaskedReconstruction(cfg.e1.msrp, wn),
        permuted(splits["train"]),
        permuted(splits["val"]),
        train_cfg,
        run_dir,
        dist,
        progress=spec.get("progress", False),
        model_checkpoint_extra={
            "task": "msrp",
            "data_label": data_label(cfg.data),
            "grid": spec["grid"],
            "wavenumber_permutation_seed": spec["permutation_seed"],
            "note": "trained on spectra in a permuted grid order (E3 control); not for use on "
            "spectra in natural order",
        },
    ).fit()
    res = {
        "run_hash": spec["run_hash"],
        "hashed": spec["hashed"],
        "seed": spec["seed"],
        "lr": spec["lr"],
        "checkpoint": str(run_dir / BEST_NAME),
        "best_val_masked_mse": fit["best_val"],
        "train_time_s": fit["train_time_s"],
    }
    if dist.is_main:
        write_json_atomic(done, res)
    return res


# ----------------------------------------------------------------------------- inputs


def trained_runs(e1_dir: Path) -> dict[str, Any]:
    """The D-LinOSS runs of an E1 folder: best and init checkpoints per seed, and the LR."""
    path = e1_dir / "summary.json"
    if not path.is_file():
        raise ConfigError(
            f"e3.trained_from = {e1_dir}: no E1 summary.json there (run spektron e1 or run-all "
            "first, or pass --checkpoint)"
        )
    summ = json.loads(path.read_text())
    entry = summ.get("backbones", {}).get("dlinoss")
    if not entry:
        raise ConfigError(f"{path}: E1 has no dlinoss arm; E3 analyses D-LinOSS models")
    runs = [e1_dir / r for r in entry["runs"]]
    for r in runs:
        for name in ("best.pt", "init.pt"):
            if not (r / name).is_file():
                raise CheckpointError(f"{r / name}: missing (E1 run incomplete?)")
    return {
        "trained": [r / "best.pt" for r in runs],
        "init": [r / "init.pt" for r in runs],
        "lr": float(entry["lr"]),
        "seeds": entry.get("seeds", []),
    }


def _group_inputs(checkpoints: list[Path]) -> dict[str, list[Path]]:
    """Given checkpoints form the trained group; existing ``init.pt`` siblings the init group."""
    for c in checkpoints:
        if not Path(c).is_file():
            raise CheckpointError(f"{c}: no such checkpoint file")
    inits = [Path(c).parent / "init.pt" for c in checkpoints]
    groups = {"trained": [Path(c) for c in checkpoints]}
    if inits and all(p.is_file() and p != Path(c) for p, c in zip(inits, checkpoints, strict=True)):
        groups["init"] = inits
    return groups


# ----------------------------------------------------------------------------- main


def run_e3(
    cfg: RunConfig,
    out: Path,
    progress: bool = True,
    announce: Any = None,
    checkpoints: list[Path] | None = None,
) -> dict[str, Any]:
    """Run E3 end to end; see the module docstring. Returns the summary dict."""
    from spektron.analysis.e3_stats import compare_groups, model_features
    from spektron.analysis.transfer_function import analyse_model, sample_spacing_cm, to_json
    from spektron.models.spektron import Spektron, read_checkpoint

    t0 = time.perf_counter()
    e3 = cfg.e3
    out = Path(out)
    dist = D.setup(cfg.device)
    g = cfg.data.grid
    wn = make_grid(g.n_points, g.lo, g.hi)
    shuffled_runs: list[dict[str, Any]] = []
    if checkpoints:
        groups = _group_inputs(checkpoints)
        source = "checkpoints given on the command line"
    else:
        if not e3.trained_from:
            raise ConfigError(
                "E3 needs trained D-LinOSS models: set e3.trained_from to an E1 folder "
                "(run-all does) or pass --checkpoint"
            )
        runs = trained_runs(Path(e3.trained_from))
        groups = {"trained": runs["trained"], "init": runs["init"]}
        source = f"E1 folder {e3.trained_from}"
        if e3.n_shuffled > 0:
            shuffled_runs = _train_controls(cfg, out, runs, wn, dist, progress, announce)
            groups["shuffled"] = [Path(r["checkpoint"]) for r in shuffled_runs]
    if not dist.is_main:
        return {}

    analyses: dict[str, list[dict[str, Any]]] = {}
    models: dict[str, list[dict[str, Any]]] = {}
    (out / "models").mkdir(parents=True, exist_ok=True)
    for group, paths in groups.items():
        analyses[group], models[group] = [], []
        for i, path in enumerate(paths):
            state = read_checkpoint(path)
            model = Spektron.from_checkpoint_state(state, source=str(path))
            if model.cfg.backbone != "dlinoss":
                raise CheckpointError(
                    f"{path}: backbone {model.cfg.backbone!r}; E3 analyses D-LinOSS models"
                )
            grid = state.get("extra", {}).get("grid") or to_dict(cfg.data.grid)
            spacing = sample_spacing_cm(grid, model.cfg.embedding.stride)
            ana = analyse_model(model, spacing, n_freq=e3.n_freq)
            analyses[group].append(ana)
            csv_path = out / "models" / f"{group}_{i}.csv"
            _write_oscillator_csv(csv_path, ana)
            # The whole analysis without the (P, F) responses (rebuilt from the coefficients).
            write_json_atomic(out / "models" / f"{group}_{i}.json", to_json(ana))
            if i == 0:
                _write_coupling(out / f"coupling_{group}_0.npz", model)
            models[group].append(
                {
                    "checkpoint": str(path),
                    "oscillators_csv": str(csv_path.relative_to(out)),
                    "spacing_cm": spacing,
                    "grid": grid,
                    "extra": {
                        k: v
                        for k, v in state.get("extra", {}).items()
                        if isinstance(v, (str, int, float, bool))
                    },
                    "medians": {
                        f: float(np.median(v["all"])) if len(v["all"]) else float("nan")
                        for f, v in model_features(ana, MEDIAN_FEATURES).items()
                    },
                }
            )
    stats: list[dict[str, Any]] = []
    ref = "trained"
    if all(len(v) >= 2 for v in analyses.values()) and len(analyses) >= 2:
        # Confirmatory family: pooled over layers (Holm within it). Per-layer rows are
        # exploratory (their own Holm family, pooled rows dropped there).
        kw = {"reference": ref, "n_boot": e3.n_bootstrap, "seed": cfg.seed, "alpha": e3.alpha}
        stats = compare_groups(analyses, per_layer=False, **kw)
        for r in stats:
            r["family"] = "confirmatory (pooled over layers)"
        per_layer = [
            r for r in compare_groups(analyses, per_layer=True, **kw) if r["scope"] != "all"
        ]
        for r in per_layer:
            r["family"] = "exploratory (per layer; Holm over pooled and per-layer rows)"
        stats += per_layer
    changes = _own_init_changes(groups, analyses, cfg)
    n_per_group = {k: len(v) for k, v in analyses.items()}
    summary = {
        "schema_version": SCHEMA_VERSION,
        "experiment": "e3",
        "preset": cfg.preset,
        "data_label": data_label(cfg.data),
        "source": source,
        "groups": models,
        "n_models": n_per_group,
        "shuffled_runs": shuffled_runs,
        "permutation_seed": e3.permutation_seed if shuffled_runs else None,
        "n_freq": e3.n_freq,
        "statistics": stats,
        "own_init_changes": changes,
        "frequency_note": "frequencies are along the spectral axis, in cycles per cm⁻¹ of the "
        "grid the backbone sees (sample spacing × embedding stride); periods in cm⁻¹. They are "
        "not vibrational frequencies.",
        "conclusions_note": _conclusions_note(cfg, n_per_group, stats),
        "device": device_description(dist.device),
        "git_commit": git_commit(),
        "package_versions": package_versions(),
    }
    summary.update(wall_times(out, time.perf_counter() - t0))
    write_json_atomic(out / "summary.json", summary)
    from spektron.experiments.e3.report import build_e3_report

    with FIGURE_LOCK:
        summary["report"] = build_e3_report(out, analyses)
    return summary


def _own_init_changes(
    groups: dict[str, list[Path]], analyses: dict[str, list[dict[str, Any]]], cfg: RunConfig
) -> dict[str, Any] | None:
    """Per oscillator, how far each trained (and shuffled-order) model moved from its own
    step-0 weights (|Δθ|, |Δr|, relative |Δ‖W‖|); per-model medians, and trained against
    shuffled by exact permutation over models. None without step-0 checkpoints."""
    from spektron.analysis.e3_stats import CHANGE_FEATURES, compare_changes, oscillator_changes
    from spektron.analysis.transfer_function import analyse_checkpoint

    if "init" not in analyses:
        return None
    per: dict[str, list[dict[str, np.ndarray]]] = {
        "trained": [
            oscillator_changes(end, start)
            for end, start in zip(analyses["trained"], analyses["init"], strict=True)
        ]
    }
    starts = [Path(p).parent / "init.pt" for p in groups.get("shuffled", [])]
    if starts and all(p.is_file() for p in starts):
        per["shuffled"] = [
            oscillator_changes(end, analyse_checkpoint(p, n_freq=16))
            for end, p in zip(analyses["shuffled"], starts, strict=True)
        ]
    e3 = cfg.e3
    rows = []
    if len(per) == 2 and all(len(v) >= 2 for v in per.values()):
        rows = compare_changes(
            per,
            reference="shuffled",
            n_boot=e3.n_bootstrap,
            alpha=e3.alpha,
            seed=cfg.seed,
        )
    return {
        "features": {
            "abs_dtheta": "|θ − θ(step 0)|, rad/sample",
            "abs_dr": "|r − r(step 0)|",
            "rel_dcoupling": "|‖W_p‖ − ‖W_p‖(step 0)| / ‖W_p‖(step 0)",
        },
        "model_medians": {
            g: {
                f: [float(np.median(m[f])) if len(m[f]) else None for m in ms]
                for f in CHANGE_FEATURES
            }
            for g, ms in per.items()
        },
        "tests": rows,
    }


def _conclusions_note(cfg: RunConfig, n: dict[str, int], stats: list[dict[str, Any]]) -> str:
    if not stats:
        return (
            "no statistics: each group needs at least 2 models (E3 uses the model, not the "
            "oscillator, as the unit)"
        )
    if any(not s.get("conclusive", False) for s in stats):
        return (
            f"models per group {n}: the smallest attainable permutation p-value exceeds "
            "alpha for some comparisons, so those cannot be significant whatever the data; "
            + (
                "a quick run shows the tables and figures but cannot support conclusions"
                if cfg.preset not in ("paper", "study")
                else "more seeds are needed for conclusions"
            )
        )
    return f"models per group {n}"


def _train_controls(
    cfg: RunConfig,
    out: Path,
    runs: dict[str, Any],
    wn: np.ndarray,
    dist: D.DistInfo,
    progress: bool,
    announce: Any,
) -> list[dict[str, Any]]:
    """Train the shuffled-order controls (same architecture as the trained models)."""
    from spektron.models.spektron import read_checkpoint

    e3 = cfg.e3
    store_path = None
    if dist.is_main:
        store_path, _ = ensure_dataset(cfg.data, workers=cfg.workers, progress=progress)
    store_path = D.broadcast_object(store_path, dist)
    model_cfg = read_checkpoint(runs["trained"][0])["config"]
    perm = wavenumber_permutation(len(wn), e3.permutation_seed)
    if dist.distributed or dist.device.type == "cuda":
        jobs = 1
    else:
        jobs = e3.jobs or (os.cpu_count() or 1)
    seeds = [cfg.seed + 1000 + i for i in range(e3.n_shuffled)]
    specs = []
    for s in seeds:
        spec = {
            "store": str(store_path),
            "wavenumber": wn.tolist(),
            "grid": to_dict(cfg.data.grid),
            "permutation": perm.tolist(),
            "permutation_seed": e3.permutation_seed,
            "config": to_dict(cfg),
            "model": model_cfg,
            "lr": runs["lr"],
            "seed": s,
            "backbone": "dlinoss",
            "device": str(dist.device),
            "threads": threads_for(jobs) if dist.device.type == "cpu" else 0,
            "progress": progress and jobs == 1,
            "run_dir": str(out / "shuffled" / f"seed{s}"),
        }
        hashed = {k: spec[k] for k in ("permutation_seed", "model", "lr", "seed")}
        hashed["train"] = to_dict(cfg.e1.train)
        hashed["data"] = config_hash(cfg.data)
        spec["hashed"] = json.loads(json.dumps(hashed))
        spec["run_hash"] = config_hash(hashed, n=16)
        specs.append(spec)
    # A folder of controls with other settings is refused before anything trains.
    reused = sum(
        run_folder_finished(Path(sp["run_dir"]), sp["run_hash"], sp["hashed"], RESULT, RESULT)
        for sp in specs
    )
    if announce is not None and dist.is_main:
        announce(
            {
                "experiment": "e3",
                "trained_models": len(runs["trained"]),
                "shuffled_controls_to_train": len(specs) - reused,
                "reuse": reuse_line({"n_runs": len(specs), "n_reused": reused}, out),
                "steps_per_run": cfg.e1.train.steps,
                "lr": runs["lr"],
                "parallel_runs": jobs,
            }
        )
    results = run_specs(
        specs, jobs, dist, progress, "E3 shuffled-order controls", fn=train_shuffled
    )
    return [results[s["run_dir"]] for s in specs]


def _write_oscillator_csv(path: Path, analysis: dict[str, Any]) -> None:
    import csv

    from spektron.analysis.transfer_function import oscillator_table

    rows = oscillator_table(analysis)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def _write_coupling(path: Path, model: torch.nn.Module) -> None:
    from spektron.analysis.transfer_function import coupling_matrices

    mats = coupling_matrices(model)
    arrays = {f"layer{k[0]}_{k[1]}": np.asarray(v) for k, v in mats.items()}
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


__all__ = ["GROUPS", "run_e3", "train_shuffled", "trained_runs", "wavenumber_permutation"]
