"""E2 aggregation: mean ± std over seeds, skill scores, paired comparisons and the error
analysis (best / worst molecules, error by functional group, symmetry class and size, and the
mutual-exclusion leak on the held-out centrosymmetric set). Writes nothing itself; returns the
``summary.json`` dict of :func:`spektron.experiments.e2.run.run_e2`.

Per-molecule values of a model are averaged over its seeds before any bootstrap, so intervals
and paired tests resample test molecules (the independent unit) and compare models on the same
molecules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from spektron.config import PHYSICS_LEVELS, RunConfig
from spektron.data.generate import data_label
from spektron.errors import DataError
from spektron.evaluation.cross_spectral import PRIMARY_METRIC, direction, skill
from spektron.evaluation.cross_spectral_analysis import (
    describe_extremes,
    group_table,
    symmetry_classes,
)
from spektron.evaluation.metrics import bootstrap_ci, holm, paired_bootstrap
from spektron.experiments.e2.results import (
    HEADLINE,
    SEED_SELECTED_BY,
    SELECTED_BY,
    arm_ranking,
    best_seed_checkpoint,
    read_per_molecule,
)
from spektron.experiments.runner import arm_convergence, lr_edge, mean_std, scale_note
from spektron.training.convergence import rule_text
from spektron.training.trainer import BEST_NAME

SCHEMA_VERSION = 1
GROUP_METRICS = (PRIMARY_METRIC, "full/peak_f1@10")
PROFILE_METRICS = (
    PRIMARY_METRIC,
    "fingerprint/cosine",
    "xh_stretch/cosine",
    "full/peak_precision@10",
    "full/peak_recall@10",
    "full/peak_intensity_corr@10",
    "full/wasserstein",
)
SIZE_BINS = (
    (0, 10, "≤ 10 atoms"),
    (11, 14, "11–14 atoms"),
    (15, 18, "15–18 atoms"),
    (19, 10**6, "≥ 19 atoms"),
)


def _nanmean(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else float("nan")


def arm_key(dname: str, init: str, backbone: str) -> str:
    return f"{dname}/{init}/{backbone}"


def seed_mean(per_runs: list[dict[str, np.ndarray]], key: str) -> np.ndarray:
    vals = np.stack([p[key] for p in per_runs])  # (S, N)
    n = np.isfinite(vals).sum(axis=0)
    total = np.where(np.isfinite(vals), vals, 0.0).sum(axis=0)
    return np.where(n > 0, total / np.maximum(n, 1), np.nan)  # NaN where no seed defines it


def _paired(a: str, b: str, va: np.ndarray, vb: np.ndarray, n_boot: int) -> dict[str, Any]:
    r = paired_bootstrap(va, vb, n_boot=n_boot)
    return {"a": a, "b": b, "metric": PRIMARY_METRIC, "direction": direction(PRIMARY_METRIC), **r}


def aggregate(
    cfg: RunConfig,
    out: Path,
    arms: dict[str, Any],
    combos: list[tuple[str, str, str]],
    best_lr: dict[tuple[str, str, str], float],
    lr_vals: dict[tuple[str, str, str], dict[str, float]],
    seeds: list[int],
    results: dict[str, dict[str, Any]],
    spec_for: Any,
    base: dict[str, dict[str, Any]],
    data: dict[str, dict[str, Any]],
    sym: dict[str, Any] | None,
    dataset: dict[str, Any],
    wn: np.ndarray,
    checks: dict[tuple[str, str, str], str] | None = None,
) -> dict[str, Any]:
    """summary.json of E2 (``checks``: each arm's budget-check run folder, by arm)."""
    e2 = cfg.e2
    nb = e2.n_bootstrap
    test = data["test"]
    rows = test["row"]
    models: dict[str, Any] = {}
    per_mol: dict[str, dict[str, np.ndarray]] = {}
    base_pm: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for dname in e2.directions:
        base_pm[dname] = {}
        for bname in e2.baselines:
            r, pm = read_per_molecule(out / "baselines" / dname / f"{bname}_per_molecule.csv")
            if not np.array_equal(r, rows):
                raise DataError(f"baseline {bname} ({dname}) was scored on other test molecules")
            base_pm[dname][bname] = pm
    for c in combos:
        dname, init, bb = c
        dirs = [Path(spec_for(*c, best_lr[c], s)["run_dir"]) for s in seeds]
        runs = [results[str(d)] for d in dirs]
        pms = []
        for d in dirs:
            r, pm = read_per_molecule(d / "per_molecule.csv")
            if not np.array_equal(r, rows):
                raise DataError(f"{d}: scored on other test molecules than the rest of E2")
            pms.append(pm)
        key = arm_key(*c)
        per_mol[key] = {k: seed_mean(pms, k) for k in pms[0]}
        test_stats = {
            m: {
                **mean_std([r["test"][m]["mean"] for r in runs]),
                "per_seed": [r["test"][m]["mean"] for r in runs],
                "ci": bootstrap_ci(per_mol[key][m], n_boot=nb),
            }
            for m in HEADLINE
        }
        entry: dict[str, Any] = {
            "direction": dname,
            "init": init,
            "backbone": bb,
            "n_params": arms[bb]["n_params"],
            # The FLOPs of the code that trained the runs (their timings are that code's too).
            "flops_total": runs[0].get("flops_per_spectrum", arms[bb]["flops"])["total"],
            "lr": best_lr[c],
            "lr_sweep": lr_vals[c],
            "lr_edge": lr_edge(best_lr[c], lr_vals[c]),
            "seeds": seeds,
            "runs": [str(d.relative_to(out)) for d in dirs],
            "checkpoints": [str((d / BEST_NAME).relative_to(out)) for d in dirs],
            "val_mse_per_seed": [r["best_val_mse"] for r in runs],
            "test": test_stats,
            "val_mse": mean_std([r["best_val_mse"] for r in runs]),
            "train_time_s": mean_std([r["train"]["train_time_s"] for r in runs]),
            "train_samples_per_s": mean_std([r["train"]["samples_per_s"] for r in runs]),
            "peak_memory_mb": mean_std([r["train"]["peak_memory_mb"] for r in runs]),
            "test_inference_s": mean_std([r["test_inference_s"] for r in runs]),
        }
        entry["best_checkpoint"] = best_seed_checkpoint(
            entry["checkpoints"], entry["val_mse_per_seed"]
        )
        check_dir = (checks or {}).get(c)
        entry.update(
            arm_convergence(
                e2,
                out,
                dirs,
                runs,
                "mse",
                "best_val_mse",
                PRIMARY_METRIC,
                check_dir,
                results.get(check_dir) if check_dir else None,
            )
        )
        bp = base_pm[dname]
        entry["skill"] = {
            ref: skill(
                per_mol[key][PRIMARY_METRIC],
                bp[ref][PRIMARY_METRIC],
                direction(PRIMARY_METRIC),
                n_boot=nb,
            )
            for ref in ("identity", "mean", "nearest_neighbour", "pls")
            if ref in bp
        }
        # "Beats" a baseline: the paired bootstrap CI of (model − baseline) lies above 0.
        for bname, flag in (("nearest_neighbour", "beats_retrieval"), ("pls", "beats_pls")):
            if bname in bp:
                r = paired_bootstrap(
                    per_mol[key][PRIMARY_METRIC], bp[bname][PRIMARY_METRIC], n_boot=nb
                )
                entry[flag] = bool(r["lo"] > 0)
        if runs[0].get("symmetric"):
            entry["symmetric"] = {
                part: {
                    k: mean_std(
                        [r["symmetric"][part][k]["mean"] for r in runs if part in r["symmetric"]]
                    )
                    for k in (PRIMARY_METRIC, "full/peak_f1@10", "leak", "leak_truth", "leak_copy")
                }
                for part in ("all", "qm9", "external")
                if part in runs[0]["symmetric"]
            }
        models[key] = entry

    paired = []
    for dname in e2.directions:
        bp = base_pm[dname]
        for init in e2.inits:
            ref = "dlinoss" if "dlinoss" in e2.backbones else e2.backbones[0]
            for bb in e2.backbones:
                if bb != ref:
                    a, b = arm_key(dname, init, ref), arm_key(dname, init, bb)
                    paired.append(
                        _paired(a, b, per_mol[a][PRIMARY_METRIC], per_mol[b][PRIMARY_METRIC], nb)
                    )
            for bb in e2.backbones:
                a = arm_key(dname, init, bb)
                for bname in ("nearest_neighbour", "identity"):
                    if bname in bp:
                        paired.append(
                            _paired(
                                a,
                                f"{dname}/baseline/{bname}",
                                per_mol[a][PRIMARY_METRIC],
                                bp[bname][PRIMARY_METRIC],
                                nb,
                            )
                        )
        if set(e2.inits) == {"scratch", "pretrained"}:
            for bb in e2.backbones:
                a, b = arm_key(dname, "pretrained", bb), arm_key(dname, "scratch", bb)
                paired.append(
                    _paired(a, b, per_mol[a][PRIMARY_METRIC], per_mol[b][PRIMARY_METRIC], nb)
                )
    for r, p in zip(paired, holm([r["p_value"] for r in paired]), strict=True):
        r["p_holm"] = p

    analysis = {
        dname: error_analysis(cfg, dname, models, per_mol, base_pm[dname], test)
        for dname in e2.directions
    }
    n_store = dataset["n_store_molecules"]
    baselines_out = {
        dname: {
            name: {k: v for k, v in entry.items() if k != "examples"}
            for name, entry in base[dname].items()
        }
        for dname in base
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "experiment": "e2",
        "preset": cfg.preset,
        "data_label": data_label(cfg.data),
        "dataset": dataset,
        "simulation_levels": {
            "used": [cfg.data.physics.level],
            "note": "one level per run; repeat E2 on another with --set "
            "data.physics.level=<level>, one of "
            + ", ".join(lv for lv in PHYSICS_LEVELS if lv != cfg.data.physics.level)
            + " (`spektron data validate` compares the levels with DFT)",
        },
        "scale": {
            "grid_points": len(wn),
            "stride": cfg.e1.stride,
            "d_model": cfg.e1.d_model,
            "budget": cfg.e1.budget,
            "steps": e2.train.steps,
            "effective_batch": e2.train.batch_size * e2.train.accumulation,
            "normalization": e2.normalization,
            "note": scale_note(cfg.preset),
        },
        "primary_metric": PRIMARY_METRIC,
        "headline_metrics": list(HEADLINE),
        "metric_settings": {
            "normalization": e2.normalization,
            "peak_tolerances_cm": list(e2.peak_tolerances_cm),
            "peak_prominence": e2.peak_prominence,
            "sid_eps": e2.sid_eps,
        },
        "ci_unit": "test molecules (per-molecule values averaged over seeds first)",
        "centrosymmetric_fraction": {
            "store": dataset["n_centrosymmetric_in_store"] / max(n_store, 1),
            "n_store": dataset["n_centrosymmetric_in_store"],
            "n_store_molecules": n_store,
            "note": "QM9 as a whole: about 0.07 % (85 of its 130,495 valid rows have an "
            "inversion centre on their DFT geometry); the store's fraction is of the simulated "
            "sample, by our own point-group finder on the simulated geometry",
        },
        "models": models,
        "convergence": {
            "rule": rule_text(
                e2.convergence_tol,
                e2.convergence_window,
                e2.convergence_check,
                e2.train.steps,
                "validation MSE",
            ),
            "tol": e2.convergence_tol,
            "window": e2.convergence_window,
            "check": e2.convergence_check,
            "all_converged": all(m["convergence"]["converged"] for m in models.values()),
        },
        "checkpoints": {
            dname: {
                "arm": (best := arm_ranking(models, dname)[0]),
                "checkpoint": models[best]["best_checkpoint"],
                "selected_by": f"{SELECTED_BY}; {SEED_SELECTED_BY}",
            }
            for dname in e2.directions
        },
        "baselines": baselines_out,
        "paired": paired,
        "error_analysis": analysis,
    }


def error_analysis(
    cfg: RunConfig,
    dname: str,
    models: dict[str, Any],
    per_mol: dict[str, dict[str, np.ndarray]],
    base_pm: dict[str, dict[str, np.ndarray]],
    test: dict[str, Any],
) -> dict[str, Any]:
    """Best / worst molecules of the direction's best arm (lowest mean validation MSE) and the
    error by functional group, symmetry class and size for that arm and the reference
    baselines."""
    e2 = cfg.e2
    best = arm_ranking(models, dname)[0]
    primary = per_mol[best][PRIMARY_METRIC]
    extremes = describe_extremes(
        primary,
        direction(PRIMARY_METRIC),
        n=min(e2.n_extremes, max(1, len(primary) // 2)),
        point_group=test["point_group"],
        centrosymmetric=test["centrosymmetric"],
        fg_flags=test["fg_flags"],
        fg_names=test["fg_names"],
        n_atoms=test["n_atoms"],
    )
    # What the errors look like: region and peak metrics of the best and worst sets (missing
    # peaks show as low recall, spurious ones as low precision, wrong heights as a low
    # intensity correlation of the matched peaks).
    profile = {}
    for side in ("best", "worst", "all"):
        idx = np.asarray(extremes.get(side, {}).get("indices", []), dtype=np.int64)
        if side == "all":
            idx = np.flatnonzero(np.isfinite(primary))
        profile[side] = {
            k: _nanmean(per_mol[best][k][idx]) for k in PROFILE_METRICS if k in per_mol[best]
        }
    fg = {name: test["fg_flags"][:, j] for j, name in enumerate(test["fg_names"])}
    classes = symmetry_classes(test["point_group"], test["centrosymmetric"])
    sym_groups = {c: classes == c for c in np.unique(classes)}
    size_groups = {
        label: (test["n_atoms"] >= lo) & (test["n_atoms"] <= hi) for lo, hi, label in SIZE_BINS
    }
    who = {f"model:{best}": per_mol[best]}
    who.update(
        {f"baseline:{b}": base_pm[b] for b in ("identity", "nearest_neighbour") if b in base_pm}
    )
    tables = {}
    for label, pm in who.items():
        tables[label] = {
            gname: group_table(
                pm,
                groups,
                list(GROUP_METRICS),
                n_boot=min(e2.n_bootstrap, 1000),
                min_count=e2.min_group_size,
            )
            for gname, groups in (
                ("functional_group", fg),
                ("symmetry", sym_groups),
                ("size", size_groups),
            )
        }
    return {
        "arm": best,
        "selected_by": SELECTED_BY,
        "metric": PRIMARY_METRIC,
        "extremes": extremes,
        "profile": profile,
        "tables": tables,
    }
