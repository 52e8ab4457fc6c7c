"""E2 report: ``table.md`` and ``figures/`` from ``summary.json``, ``examples.json`` and the
per-molecule CSVs of the runs (all under the E2 folder), so ``spektron report`` can rebuild it;
where the CSVs were left out (``spektron export``), ``figure_data.json`` stands in for them.

Figures: example predictions (best, median and worst test molecule of the error-analysis arm,
truth and prediction with their matched peaks marked, baselines for comparison), per-molecule
distributions of the primary metric for every arm and baseline, and the primary metric by
functional group for the error-analysis arm against the identity copy and retrieval.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from spektron.errors import DataError
from spektron.evaluation.metrics import match_peaks, pick_peaks
from spektron.experiments.e2.results import arm_ranking
from spektron.experiments.reporting import (
    ARM_MARKERS,
    NA,
    NOT_APPLICABLE,
    convergence_lines,
    dig,
    draw_val_curves,
    fmt_int,
    fmt_mean_std,
    fmt_num,
    load_json,
    lr_sweep_lines,
    md_row,
    paired_lines,
    scale_text,
)
from spektron.plotting import figure_title, pyplot, save_figure

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# The files of an E2 folder the report reads besides the per-molecule CSVs of the runs and
# baselines, which FIGURE_DATA can stand in for (see distributions()).
REPORT_FILES = ("summary.json", "examples.json")
FIGURE_DATA = "figure_data.json"
TABLE_METRICS = (
    ("full/cosine", "cosine ↑"),
    ("full/mse", "MSE ↓"),
    ("full/sid", "SID ↓"),
    ("full/wasserstein", "W1 cm⁻¹ ↓"),
    ("full/peak_f1@10", "peak F1@10 ↑"),
    ("full/peak_f1_weighted@10", "wF1@10 ↑"),
    ("full/peak_intensity_corr@10", "int. corr@10 ↑"),
    ("fingerprint/cosine", "cos 500–1800 ↑"),
    ("xh_stretch/cosine", "cos 2700–3800 ↑"),
)
BASELINE_NAMES = {
    "identity": "identity copy",
    "mean": "mean target spectrum",
    "pls": "PLS2",
    "nearest_neighbour": "nearest-neighbour retrieval",
}


def _check(summary: dict[str, Any], where: Path) -> None:
    if summary.get("schema_version") != SCHEMA_VERSION or summary.get("experiment") != "e2":
        raise DataError(f"{where}: not an E2 summary of schema version {SCHEMA_VERSION}")
    for key in ("models", "baselines", "error_analysis"):
        if not isinstance(summary.get(key), dict):
            raise DataError(f"{where}: missing or malformed {key!r}")


def _skill(entry: Any) -> str:
    s = dig(entry, "skill")
    if s is None:
        return NA
    lo, hi = fmt_num(dig(entry, "skill_lo"), 2), fmt_num(dig(entry, "skill_hi"), 2)
    return f"{fmt_num(s, 3)} [{lo}, {hi}]"


def format_e2_table(summary: dict[str, Any]) -> str:
    """Markdown: one results table per direction (arms then baselines), the symmetric set, the
    error analysis and the paired comparisons."""
    scale = summary.get("scale", {})
    lines = [
        "# E2: cross-spectral prediction",
        "",
        f"Data: {summary.get('data_label', NA)}",
        "",
        f"Scale: {scale_text(scale)}. {scale.get('note', '')}",
        "",
        f"Primary metric (fixed before the runs): `{summary.get('primary_metric')}`; "
        "skill S = (m̄ − r̄)/(1 − r̄) against a reference baseline (0: as good, 1: perfect), "
        "bootstrap 95% CI over test molecules. Model values: mean ± std over seeds. "
        f"Metric settings: {summary.get('metric_settings')}.",
        "",
    ]
    levels = summary.get("simulation_levels", {})
    lines += [f"Simulation levels: {levels.get('used')} — {levels.get('note', '')}", ""]
    cf = summary.get("centrosymmetric_fraction", {})
    lines += [
        f"Centrosymmetric molecules in the store: {fmt_int(cf.get('n_store'))} of "
        f"{fmt_int(cf.get('n_store_molecules'))} ({fmt_num(100 * (cf.get('store') or 0), 3)} %). "
        f"{cf.get('note', '')}",
        "",
    ]
    models = summary["models"]
    for dname, base in summary["baselines"].items():
        lines += [f"## {dname.replace('_', ' ')}", ""]
        head = ["arm", "init", "LR"] + [t for _, t in TABLE_METRICS]
        head += ["skill vs copy", "skill vs mean", "beats retrieval", "beats PLS2", "train s"]
        lines += [md_row(head), md_row(["---"] * len(head))]
        arms = [(k, m) for k, m in models.items() if m["direction"] == dname]
        arms.sort(key=lambda km: -(dig(km[1], "test", "full/cosine", "mean") or -1e9))
        for _key, m in arms:
            edge = f" ({m['lr_edge']} end)" if m.get("lr_edge") else ""
            cells = [m["backbone"], m["init"], fmt_num(m.get("lr"), 2) + edge]
            cells += [fmt_mean_std(dig(m, "test", k)) for k, _ in TABLE_METRICS]
            cells += [
                _skill(dig(m, "skill", "identity")),
                _skill(dig(m, "skill", "mean")),
                {True: "yes", False: "no", None: NA}[m.get("beats_retrieval")],
                {True: "yes", False: "no", None: NA}[m.get("beats_pls")],
                fmt_num(dig(m, "train_time_s", "mean"), 3),
            ]
            lines.append(md_row(cells))
        for bname, b in base.items():
            shown = dict(b.get("params") or {})
            grid_max = shown.pop("at_grid_max", False)
            params = ", ".join([f"{k}={v}" for k, v in shown.items()] + ["grid max"] * grid_max)
            label = BASELINE_NAMES.get(bname, bname) + (f" ({params})" if params else "")
            cells = [label, "baseline", NOT_APPLICABLE]
            cells += [fmt_num(dig(b, "test", k, "mean")) for k, _ in TABLE_METRICS]
            cells += [NOT_APPLICABLE] * 4 + [fmt_num(b.get("fit_predict_s"), 3)]
            lines.append(md_row(cells))
        lines += [
            "",
            "'beats retrieval' / 'beats PLS2': the paired bootstrap 95% CI of (model − "
            "nearest-neighbour retrieval / PLS2) in the primary metric lies above 0. A model "
            "that does not beat retrieval has not shown that it learnt more than a lookup of "
            "similar molecules; one that does not beat PLS2, more than a linear map.",
            "",
        ]
        swept = {
            f"{m['backbone']} ({m['init']})": m for _, m in arms if len(m.get("lr_sweep") or {}) > 1
        }
        if swept:
            lines += [*lr_sweep_lines(swept, "validation MSE, first seed"), ""]
        rows = [(f"{m['backbone']} ({m['init']})", m.get("convergence")) for _, m in arms]
        lines += convergence_lines(
            summary.get("convergence"),
            rows,
            summary.get("primary_metric", ""),
            f"test {summary.get('primary_metric', '')}",
            higher=True,
        )
        lines += [""]
        lines += _checkpoint_lines(dname, models, summary.get("checkpoints", {}).get(dname))
        lines += _symmetric_lines(dname, arms, base)
        lines += _analysis_lines(summary["error_analysis"].get(dname))
    lines += paired_lines(summary.get("paired", []), unit="test molecules")
    return "\n".join(lines) + "\n"


def _checkpoint_lines(dname: str, models: dict[str, Any], chosen: Any) -> list[str]:
    """The checkpoint of every arm (its best-validation seed), best validation first, and the
    one ``spektron predict --run`` uses."""
    ranked = arm_ranking(models, dname)
    if not ranked or "best_checkpoint" not in models[ranked[0]]:
        return []
    src, tgt = dname.split("_to_")
    lines = ["### Checkpoints", ""]
    if isinstance(chosen, dict):
        lines += [
            f"`spektron predict --run <this folder> --from {src} --to {tgt} FILE...` uses "
            f"`{chosen.get('checkpoint')}` (arm {chosen.get('arm')}: "
            f"{chosen.get('selected_by')}); `--arm BACKBONE` picks another.",
            "",
        ]
    head = ["arm", "init", "validation MSE", "checkpoint (best-validation seed)"]
    lines += [md_row(head), md_row(["---"] * len(head))]
    for key in ranked:
        m = models[key]
        cells = [m["backbone"], m["init"], fmt_mean_std(m.get("val_mse"))]
        lines.append(md_row([*cells, f"`{m['best_checkpoint']}`"]))
    return [*lines, ""]


def _symmetric_lines(dname: str, arms: list, base: dict[str, Any]) -> list[str]:
    rows = []
    for _k, m in arms:
        s = dig(m, "symmetric", "all")
        if s:
            rows.append((f"{m['backbone']} ({m['init']})", s, True))
    for bname, b in base.items():
        s = dig(b, "symmetric", "all")
        if s:
            rows.append((BASELINE_NAMES.get(bname, bname), s, False))
    if not rows:
        return []
    lines = [
        "### Held-out centrosymmetric set (mutual exclusion)",
        "",
        "leak = share of the predicted (positive) intensity within the tolerance of modes that "
        "are active in the input kind but silent in the target kind (truth's own leak is the "
        "floor from band tails; the copy's is what ignoring the selection rule scores).",
        "",
        md_row(["predictor", "n", "cosine", "peak F1@10", "leak", "truth leak", "copy leak"]),
        md_row(["---"] * 7),
    ]
    for label, s, is_model in rows:

        def val(k: str, s: Any = s, is_model: bool = is_model) -> str:
            return fmt_mean_std(s.get(k)) if is_model else fmt_num(dig(s, k, "mean"))

        n = dig(base, next(iter(base)), "symmetric", "all", "n") if base else None
        lines.append(
            md_row(
                [
                    label,
                    fmt_int(n),
                    val("full/cosine"),
                    val("full/peak_f1@10"),
                    val("leak"),
                    val("leak_truth"),
                    val("leak_copy"),
                ]
            )
        )
    return [*lines, ""]


def _analysis_lines(ana: Any) -> list[str]:
    if not isinstance(ana, dict):
        return []
    lines = [
        f"### Error analysis ({ana.get('arm')}, {ana.get('selected_by')})",
        "",
    ]
    ext = ana.get("extremes") or {}
    for side in ("best", "worst"):
        d = ext.get(side)
        if not isinstance(d, dict):
            continue
        lines.append(f"- {side} {len(d.get('indices', []))}: " + _describe(d))
    lines.append("")
    prof = ana.get("profile") or {}
    if prof:
        keys = list(next(iter(prof.values())))
        lines += [
            "What the errors look like (means over each set; precision < recall: spurious "
            "peaks, recall < precision: missed peaks, intensity corr: heights of matched peaks):",
            "",
            md_row(["set", *keys]),
            md_row(["---"] * (len(keys) + 1)),
        ]
        lines += [md_row([side, *(fmt_num(v.get(k), 3) for k in keys)]) for side, v in prof.items()]
        lines.append("")
    for label, tables in (ana.get("tables") or {}).items():
        for gname, rows in tables.items():
            lines += [f"{label} — by {gname.replace('_', ' ')}:", ""]
            lines += [md_row(["group", "n", "cosine (95% CI)", "peak F1@10"]), md_row(["---"] * 4)]
            empty = [str(r.get("group")) for r in rows if not r.get("n")]
            for r in rows:
                if not r.get("n"):
                    continue
                c = r.get("metrics", {}).get("full/cosine", {})
                f1 = r.get("metrics", {}).get("full/peak_f1@10", {})
                lo, hi = fmt_num(c.get("lo"), 3), fmt_num(c.get("hi"), 3)
                ci = f"{fmt_num(c.get('mean'), 3)} [{lo}, {hi}]"
                if r.get("too_few"):
                    ci += " (too few)"
                lines.append(
                    md_row(
                        [str(r.get("group")), fmt_int(r.get("n")), ci, fmt_num(f1.get("mean"), 3)]
                    )
                )
            if empty:
                lines += ["", "No test molecule in: " + ", ".join(empty) + "."]
            lines.append("")
    return lines


def _describe(d: dict[str, Any]) -> str:
    parts = []
    for k, v in d.items():
        if k == "indices":
            continue
        if isinstance(v, float):
            parts.append(f"{k} {fmt_num(v, 3)}")
        elif isinstance(v, (int, str)):
            parts.append(f"{k} {v}")
        elif isinstance(v, dict) and len(v) <= 8:
            inner = ", ".join(
                f"{a}: {fmt_num(b, 3) if isinstance(b, float) else b}" for a, b in v.items()
            )
            parts.append(f"{k} {{{inner}}}")
    return "; ".join(parts)


# ----------------------------------------------------------------------------- figures


# The examples figure: the input drawn this far above the target and predictions; matched
# peaks within this distance joined (E2's middle peak tolerance).
INPUT_OFFSET = 1.1
MATCH_TOL_CM = 10.0


def plot_examples(examples: dict[str, Any], summary: dict[str, Any], fig_dir: Path) -> list[Path]:
    """Per direction: best / median / worst molecule; input on top, truth vs predictions below,
    matched peaks of the model (at 10 cm⁻¹) joined by vertical ticks."""
    plt = pyplot()
    wn = np.asarray(examples["wavenumber"])
    prom = summary.get("metric_settings", {}).get("peak_prominence", 0.05)
    files: list[Path] = []
    for dname, d in examples["directions"].items():
        items = d["examples"]
        if not items:
            continue
        fig, axes = plt.subplots(len(items), 1, figsize=(10, 3.2 * len(items) + 1.0), squeeze=False)
        for ax, ex in zip(axes[:, 0], items, strict=True):
            truth = np.asarray(ex["truth"])
            ax.plot(
                wn,
                np.asarray(ex["input"]) + INPUT_OFFSET,
                color="0.6",
                lw=0.8,
                label=f"input ({d['source'].upper()}), shifted up by {INPUT_OFFSET:g}",
            )
            ax.plot(wn, truth, color="k", lw=1.0, label=f"true {d['target'].upper()}")
            model_pred = np.asarray(ex["pred"][d["arm"]])
            ax.plot(wn, model_pred, color="C3", lw=1.0, label=f"model {d['arm']}")
            others = [(n, p) for n, p in ex["pred"].items() if n != d["arm"]]
            colours = ("C0", "C1", "C2", "C4", "C5", "C6")  # C3 is the model's
            for (name, p), colour in zip(others, colours, strict=False):
                ax.plot(wn, np.asarray(p), lw=0.7, alpha=0.6, color=colour, label=name)
            tp = pick_peaks(truth, wn, prom)
            pp = pick_peaks(model_pred, wn, prom)
            mi, mj = match_peaks(wn[pp], wn[tp], MATCH_TOL_CM)
            for k, (a, b) in enumerate(zip(mi, mj, strict=True)):
                ax.plot(
                    [wn[pp[a]]] * 2,
                    [model_pred[pp[a]], truth[tp[b]]],
                    color="m",
                    lw=0.8,
                    label=f"matched peak pair (within {MATCH_TOL_CM:g} cm⁻¹)" if k == 0 else None,
                )
            ax.plot(wn[tp], truth[tp], "kv", ms=3, label="true peaks")
            ax.plot(wn[pp], model_pred[pp], "^", color="C3", ms=3, label="model's peaks")
            ax.set_title(
                f"{ex['which']}: {ex['smiles']} ({ex.get('point_group') or '?'}); "
                f"{len(mi)} matched peaks",
                fontsize=9,
            )
            ax.set_xlabel("wavenumber / cm⁻¹")
            ax.set_ylabel("max-normalised intensity")
        # One legend for every panel, below them (it covered a peak inside the first).
        handles: dict[str, Any] = {}
        for ax in axes[:, 0]:
            for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                handles.setdefault(lab, h)
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="lower center",
            ncol=3,
            fontsize=7.5,
            frameon=False,
        )
        figure_title(
            fig,
            f"E2 {dname.replace('_', ' ')}: best, median and worst test molecule of the "
            f"chosen arm (by {summary.get('primary_metric', 'the primary metric')})\n"
            f"{summary.get('data_label', 'SIMULATED spectra')}",
        )
        fig.tight_layout(rect=(0, 0.9 / (3.2 * len(items) + 1.0) + 0.02, 1, 1))
        files += save_figure(fig, fig_dir / f"examples_{dname}")
    return files


def _per_molecule_files(out: Path, summary: dict[str, Any]) -> list[Path]:
    """The per-molecule CSVs the distribution figures read: every run of every arm, every
    baseline."""
    runs = [out / r / "per_molecule.csv" for m in summary["models"].values() for r in m["runs"]]
    return runs + [
        out / "baselines" / dname / f"{bname}_per_molecule.csv"
        for dname, base in summary["baselines"].items()
        for bname in base
    ]


def distributions(out: Path, summary: dict[str, Any]) -> dict[str, dict[str, list]]:
    """Per direction, what the distribution figure draws: ``labels`` and ``values`` (the finite
    per-molecule primary metric of every arm, mean over its seeds, then every baseline).

    Read from the per-molecule CSVs, or, where they were left out (``spektron export``), from
    :data:`FIGURE_DATA`.
    """
    from spektron.experiments.e2.analysis import seed_mean
    from spektron.experiments.e2.results import read_per_molecule

    key = summary["primary_metric"]
    missing = [p for p in _per_molecule_files(out, summary) if not p.is_file()]
    if missing:
        data_path = out / FIGURE_DATA
        if not data_path.is_file():
            raise DataError(f"{missing[0]}: file not found (and no {FIGURE_DATA} in {out})")
        data = load_json(data_path)
        if data.get("primary_metric") != key or set(data.get("distributions", ())) != set(
            summary["baselines"]
        ):
            raise DataError(f"{data_path}: does not match {out / 'summary.json'}")
        return {
            dname: {"labels": d["labels"], "values": [np.asarray(v, float) for v in d["values"]]}
            for dname, d in data["distributions"].items()
        }
    result = {}
    for dname in summary["baselines"]:
        labels, values = [], []
        for _k, m in sorted(summary["models"].items()):
            if m["direction"] == dname:
                labels.append(f"{m['backbone']}\n{m['init']}")
                per = [read_per_molecule(out / r / "per_molecule.csv")[1] for r in m["runs"]]
                values.append(seed_mean(per, key))
        for bname in summary["baselines"][dname]:
            path = out / "baselines" / dname / f"{bname}_per_molecule.csv"
            labels.append(BASELINE_NAMES.get(bname, bname).replace(" ", "\n", 1))
            values.append(read_per_molecule(path)[1][key])
        result[dname] = {"labels": labels, "values": [v[np.isfinite(v)] for v in values]}
    return result


def figure_data(e2_dir: Path) -> dict[str, Any]:
    """The content of :data:`FIGURE_DATA`: :func:`distributions` as JSON-able lists (a few
    values per test molecule and arm, in place of every run's per-molecule CSV)."""
    e2_dir = Path(e2_dir)
    summary_path = e2_dir / "summary.json"
    summary = load_json(summary_path)
    _check(summary, summary_path)
    return {
        "schema_version": SCHEMA_VERSION,
        "experiment": "e2",
        "note": "per test molecule, the primary metric of every arm (mean over its seeds) and "
        "baseline, finite values only: what the distribution figures draw; every metric is in "
        "the runs' per_molecule.csv",
        "primary_metric": summary["primary_metric"],
        "distributions": {
            dname: {"labels": d["labels"], "values": [v.tolist() for v in d["values"]]}
            for dname, d in distributions(e2_dir, summary).items()
        },
    }


def plot_distributions(out: Path, summary: dict[str, Any], fig_dir: Path) -> list[Path]:
    """Per direction: box plots of the per-molecule primary metric of every arm and baseline."""
    plt = pyplot()
    key = summary["primary_metric"]
    files: list[Path] = []
    for dname, d in distributions(out, summary).items():
        labels, data = d["labels"], d["values"]
        fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(labels)), 4))
        ax.boxplot(data, showfliers=False)
        ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=6, rotation=90)
        ax.set_ylabel(f"{key} per test molecule")
        ax.set_title(f"E2 {dname.replace('_', ' ')} (SIMULATED)", fontsize=10)
        fig.tight_layout()
        files += save_figure(fig, fig_dir / f"distribution_{dname}")
    return files


def plot_error_by_group(summary: dict[str, Any], fig_dir: Path) -> list[Path]:
    """Per direction: mean primary metric per functional group (groups with enough molecules)
    for the error-analysis arm, the identity copy and retrieval."""
    plt = pyplot()
    files: list[Path] = []
    for dname, ana in summary["error_analysis"].items():
        tables = ana.get("tables") or {}
        series = {}
        for label, t in tables.items():
            rows = [r for r in t.get("functional_group", []) if not r.get("too_few")]
            series[label] = {r["group"]: r["metrics"]["full/cosine"] for r in rows}
        if not series:
            continue
        groups = sorted(set.intersection(*(set(s) for s in series.values())))
        if not groups:
            continue
        fig, ax = plt.subplots(figsize=(7, 0.3 * len(groups) + 1.5))
        h = 0.8 / len(series)
        for j, (label, s) in enumerate(series.items()):
            y = np.arange(len(groups)) + j * h
            mean = np.array([s[g]["mean"] for g in groups], float)
            lo = np.array([s[g]["lo"] for g in groups], float)
            hi = np.array([s[g]["hi"] for g in groups], float)
            ax.barh(y, mean, height=h, xerr=[mean - lo, hi - mean], label=label, alpha=0.8)
        ax.set_yticks(np.arange(len(groups)) + 0.4 - h / 2, groups, fontsize=7)
        ax.set_xlabel(f"{summary['primary_metric']} (mean, 95% CI)")
        ax.legend(fontsize=7)
        ax.set_title(f"E2 {dname.replace('_', ' ')} by functional group (SIMULATED)", fontsize=10)
        fig.tight_layout()
        files += save_figure(fig, fig_dir / f"by_functional_group_{dname}")
    return files


def plot_val_curves(summary: dict[str, Any], fig_dir: Path) -> list[Path]:
    """Per direction: validation MSE vs optimizer step of every arm and seed, one panel per
    init (log y), with the budget check's runs dashed (when run); none for a summary written
    before the curves were recorded."""
    models = summary["models"]
    if not any(m.get("val_curves") for m in models.values()):
        return []
    plt = pyplot()
    files: list[Path] = []
    rule = dig(summary, "convergence", "rule") or ""
    for dname in summary["baselines"]:
        inits = list(dict.fromkeys(m["init"] for m in models.values() if m["direction"] == dname))
        fig, axes = plt.subplots(1, len(inits), figsize=(6 * len(inits), 4.4), squeeze=False)
        for ax, init in zip(axes[0], inits, strict=True):
            arms = sorted(
                (m["backbone"], m)
                for m in models.values()
                if m["direction"] == dname and m["init"] == init
            )
            draw_val_curves(ax, arms, ARM_MARKERS)
            ax.set_title(f"{init}", fontsize=9)
            ax.set_ylabel("validation MSE (every seed; first seed marked)")
        figure_title(
            fig,
            f"E2 {dname.replace('_', ' ')} validation curves, preset "
            f"{summary.get('preset', NA)}; rule: {rule}\n{summary['data_label']}",
        )
        fig.tight_layout()
        files += save_figure(fig, fig_dir / f"val_curves_{dname}")
    return files


def build_e2_report(e2_dir: Path) -> dict[str, Any]:
    """Write ``table.md`` and ``figures/`` of E2; returns their paths (as strings)."""
    e2_dir = Path(e2_dir)
    summary_path = e2_dir / "summary.json"
    summary = load_json(summary_path)
    _check(summary, summary_path)
    examples = load_json(e2_dir / "examples.json")
    if not isinstance(examples.get("directions"), dict) or "wavenumber" not in examples:
        raise DataError(f"{e2_dir / 'examples.json'}: malformed (needs wavenumber, directions)")
    table = e2_dir / "table.md"
    table.write_text(format_e2_table(summary), encoding="utf-8")
    fig_dir = e2_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    files = plot_examples(examples, summary, fig_dir)
    files += plot_distributions(e2_dir, summary, fig_dir)
    files += plot_error_by_group(summary, fig_dir)
    files += plot_val_curves(summary, fig_dir)
    log.info("E2 report: %s and %d figure files in %s", table, len(files), fig_dir)
    return {"table": str(table), "figures": [str(p) for p in files]}
