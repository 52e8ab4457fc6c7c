"""The E1 report: its table and figures, rebuilt from its JSON results alone (no torch).

E1 (masked-spectrum reconstruction, one row per backbone at a matched parameter budget) writes
``summary.json`` (metrics over seeds with bootstrap CIs, baselines, paired tests, quality gate)
and ``examples.json`` (a few test spectra with every arm's prediction). From these two files
:func:`build_e1_report` writes

* ``table.md``: the results table, the quality gate and the paired comparisons;
* ``figures/reconstructions.{png,pdf}``: truth vs predictions with the masked spans shaded;
* ``figures/metric_vs_cost.{png,pdf}``: test masked MSE vs forward FLOPs and vs throughput;
* ``figures/val_curves.{png,pdf}``: validation curves of every arm and seed;
* ``figures/gap_length.{png,pdf}`` (when ``e1.eval_spans`` is set): masked MSE vs gap length.

The data are SIMULATED; the table header and every figure carry the data label from the JSON.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from spektron.errors import DataError
from spektron.experiments.reporting import (
    ARM_MARKERS,
    NA,
    NOT_APPLICABLE,
    convergence_lines,
    dig,
    draw_val_curves,
    finite,
    fmt_ci,
    fmt_int,
    fmt_mean_std,
    fmt_num,
    fmt_si,
    load_json,
    lr_sweep_lines,
    md_row,
    paired_lines,
    require_key,
    scale_text,
)
from spektron.plotting import figure_title, pyplot, save_figure

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# The files of an E1 folder the report reads.
REPORT_FILES = ("summary.json", "examples.json")
MAX_EXAMPLES = 4
ARROWS = {"lower": "↓", "higher": "↑"}
DEFAULT_DIRECTIONS = {
    "masked_mse": "lower",
    "full_mse": "lower",
    "cosine": "higher",
    "peak_f1": "higher",
}


def _check_summary(summary: dict[str, Any], where: Path) -> None:
    version = summary.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise DataError(f"{where}: schema_version {version!r}, this reader knows {SCHEMA_VERSION}")
    require_key(summary, "data_label", str, where)
    backbones = require_key(summary, "backbones", dict, where)
    if not backbones:
        raise DataError(f"{where}: 'backbones' is empty")
    for name, entry in backbones.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("test"), dict):
            raise DataError(f"{where}: backbone {name!r} has no 'test' metrics")
    for key in ("baselines", "scale", "quality_gate", "metric_directions", "peak_settings"):
        if not isinstance(summary.get(key, {}), dict):
            raise DataError(f"{where}: {key!r} is not an object")
    if not isinstance(summary.get("paired", []), list):
        raise DataError(f"{where}: 'paired' is not a list")


def _check_examples(examples: dict[str, Any], where: Path) -> None:
    wn = require_key(examples, "wavenumber", list, where)
    items = require_key(examples, "examples", list, where)
    if not items:
        raise DataError(f"{where}: 'examples' is empty")
    n = len(wn)
    for i, ex in enumerate(items):
        if not isinstance(ex, dict):
            raise DataError(f"{where}: example {i} is not an object")
        preds = ex.get("pred", {})
        if not isinstance(preds, dict):
            raise DataError(f"{where}: example {i} 'pred' is not an object")
        arrays = {"truth": ex.get("truth"), "mask": ex.get("mask")}
        arrays.update({f"pred[{k!r}]": v for k, v in preds.items()})
        for key, arr in arrays.items():
            if not isinstance(arr, list) or len(arr) != n:
                got = len(arr) if isinstance(arr, list) else type(arr).__name__
                raise DataError(
                    f"{where}: example {i} {key} has length {got}, wavenumber has {n} points"
                )


# ----------------------------------------------------------------------------- formatting


def _sort_key(name: str, test: Any) -> tuple[bool, float, str]:
    v = finite(dig(test, "masked_mse", "mean"))
    return (v is None, v if v is not None else 0.0, name)  # missing values last


def _params_text(params: Any) -> str:
    if not isinstance(params, dict) or not params:
        return ""
    return " (" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")"


def format_e1_table(summary: dict[str, Any]) -> str:
    """The Markdown report of an E1 ``summary.json``: header, results, gate, paired tests.

    Backbones are sorted by test masked MSE (missing values last), baselines follow below a
    separator row. Test metrics of backbones read ``mean ± std`` over seeds; the masked MSE adds
    the bootstrap 95% CI stored in the summary as ``[lo, hi]`` (unit: ``ci_unit``). Baselines are
    deterministic fits, so they show the mean and its CI only. Missing or non-finite numbers
    read ``n/a``; columns that do not apply to a row read ``–``.
    """
    directions = {**DEFAULT_DIRECTIONS, **summary.get("metric_directions", {})}

    def head(metric: str, label: str) -> str:
        return f"{label} {ARROWS.get(directions.get(metric, ''), '')}".strip()

    scale = summary.get("scale", {})
    peaks = summary.get("peak_settings", {})
    lines = [
        "# E1: masked-spectrum reconstruction",
        "",
        f"**Data: {summary['data_label']}**",
        "",
        f"Preset `{summary.get('preset', NA)}`; scale: {scale_text(scale) or NA}.",
    ]
    if scale.get("note"):
        lines.append(f"Note: {scale['note']}.")
    lines.append(
        f"Peak matching: tolerance ± {fmt_num(peaks.get('tolerance_cm'))} cm⁻¹, "
        f"prominence {fmt_num(peaks.get('prominence'))}."
    )
    unit = summary.get("ci_unit") or "test spectra"
    lines += [
        "Test metrics: mean ± std over seeds; masked MSE adds the bootstrap 95% CI [lo, hi] "
        f"of the seed-averaged metric over {unit}. FLOPs: forward, per spectrum (total).",
        "",
    ]

    cols = [
        "arm",
        "params",
        head("masked_mse", "test masked MSE"),
        head("full_mse", "full MSE"),
        head("cosine", "cosine"),
        head("peak_f1", "peak F1"),
        "LR",
        "samples/s",
        "train time (s)",
        "peak memory (MB)",
        "FLOPs",
    ]
    lines += [md_row(cols), md_row(["---"] * len(cols))]
    backbones = summary["backbones"]
    for name in sorted(backbones, key=lambda n: _sort_key(n, backbones[n].get("test"))):
        b = backbones[name]
        t = b["test"]
        mse = t.get("masked_mse")
        ci = fmt_ci(dig(mse, "ci"))
        lines.append(
            md_row(
                [
                    name,
                    fmt_int(b.get("n_params")),
                    f"{fmt_mean_std(mse)} {ci}".strip(),
                    fmt_mean_std(t.get("full_mse")),
                    fmt_mean_std(t.get("cosine")),
                    fmt_mean_std(t.get("peak_f1")),
                    f"{b['lr']:g}" if finite(b.get("lr")) is not None else NA,
                    fmt_mean_std(b.get("train_samples_per_s")),
                    fmt_mean_std(b.get("train_time_s")),
                    fmt_mean_std(b.get("peak_memory_mb")),
                    fmt_si(b.get("flops_total")),
                ]
            )
        )
    baselines = summary.get("baselines", {})
    if baselines:
        lines.append(md_row(["**baselines**"] + [""] * (len(cols) - 1)))
        for name in sorted(baselines, key=lambda n: _sort_key(n, baselines[n].get("test"))):
            t = baselines[name].get("test", {})
            mse = t.get("masked_mse")
            cells = [f"{fmt_num(dig(mse, 'mean'))} {fmt_ci(mse)}".strip()]
            cells += [fmt_num(dig(t, m, "mean")) for m in ("full_mse", "cosine", "peak_f1")]
            label = name + _params_text(baselines[name].get("params"))
            lines.append(md_row([label, NOT_APPLICABLE, *cells] + [NOT_APPLICABLE] * 5))
    lines += _clamp_lines(backbones)
    overrides = {n: b["overrides"] for n, b in backbones.items() if b.get("overrides")}
    if overrides:
        lines += [
            "",
            "Per-arm settings (`e1.arm_overrides`): "
            + "; ".join(
                f"{n}: " + ", ".join(f"{k}={v}" for k, v in sorted(o.items()))
                for n, o in sorted(overrides.items())
            )
            + ".",
        ]
    kinds = sorted({str(b["memory_kind"]) for b in backbones.values() if b.get("memory_kind")})
    if kinds:
        lines += ["", f"Peak memory: {'; '.join(kinds)}."]

    lines += ["", *_gate_lines(summary.get("quality_gate"))]
    lines += _by_kind_lines(backbones, baselines)
    unit = summary.get("ci_unit") or "test spectra"
    lines += ["", *paired_lines(summary.get("paired", []), unit)]
    lines += _gap_lines(summary.get("gap_length"), unit)
    lines += _convergence_lines(summary)
    lines += _tuning_lines(summary.get("tuning"))
    lines += ["", *lr_sweep_lines(backbones, "validation masked MSE")]
    footer = [
        f"wall time {fmt_num(summary['wall_time_s'])} s" if "wall_time_s" in summary else "",
        f"device {summary['device']}" if summary.get("device") else "",
    ]
    if any(footer):
        lines += ["", "Run: " + ", ".join(f for f in footer if f) + "."]
    return "\n".join(lines) + "\n"


def _gate_lines(gate: Any) -> list[str]:
    if not isinstance(gate, dict) or not gate:
        return ["Quality gate: not recorded."]
    refs = gate.get("references", {})
    ref_text = ", ".join(f"{k} {fmt_num(v)}" for k, v in refs.items()) or NA
    criterion = gate.get("criterion") or f"validation masked MSE must beat {ref_text}"
    verdict = "PASSED" if gate.get("passed") else "FAILED"
    per = [
        f"{name} {fmt_num(r.get('val_masked_mse'))} {'pass' if r.get('passed') else 'FAIL'}"
        for name, r in gate.get("per_backbone", {}).items()
        if isinstance(r, dict)
    ]
    return [
        f"Quality gate ({criterion}; references {ref_text}): **{verdict}**"
        + (f" — {'; '.join(per)}." if per else ".")
    ]


def _by_kind_lines(backbones: dict[str, Any], baselines: dict[str, Any]) -> list[str]:
    """Test masked MSE per spectrum kind (IR, Raman), when the summary has ``test_by_kind``."""
    arms = {**backbones, **baselines}
    by_kind = {
        n: a["test_by_kind"] for n, a in arms.items() if isinstance(a.get("test_by_kind"), dict)
    }
    kinds = sorted({k for bk in by_kind.values() for k in bk})
    if not kinds:
        return []
    lines = [
        "",
        "Test masked MSE by spectrum kind (backbones: mean ± std over seeds; baselines: mean):",
        "",
        md_row(["arm", *kinds]),
        md_row(["---"] * (len(kinds) + 1)),
    ]
    for name, bk in by_kind.items():
        entries = [dig(bk, k, "masked_mse") for k in kinds]
        lines.append(md_row([name, *(fmt_mean_std(e) for e in entries)]))
    return lines


# ----------------------------------------------------------------------------- figures


def mask_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open index ranges ``[start, stop)`` of the contiguous runs where ``mask`` is set."""
    m = np.asarray(mask, dtype=float) > 0.5
    edges = np.diff(np.concatenate([[0], m.astype(np.int8), [0]]))
    return list(
        zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True)
    )


def _arm_order(summary: dict[str, Any], preds: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Prediction names split into models (summary order) and baselines/others (after)."""
    backbones = [n for n in summary["backbones"] if n in preds]
    others = [n for n in preds if n not in backbones]
    return backbones, others


def plot_reconstructions(
    summary: dict[str, Any], examples: dict[str, Any], path_stem: Path
) -> list[Path]:
    """Up to :data:`MAX_EXAMPLES` stacked panels: truth, every arm's prediction, masked spans."""
    plt = pyplot()
    from matplotlib.patches import Patch

    wn = np.asarray(examples["wavenumber"], dtype=float)
    items = examples["examples"][:MAX_EXAMPLES]
    all_preds: dict[str, None] = {}
    for ex in items:
        all_preds.update(dict.fromkeys(ex.get("pred", {})))
    models, others = _arm_order(summary, all_preds)
    cmap = plt.get_cmap("tab10")
    style = {n: {"color": cmap(i % 10), "ls": "-"} for i, n in enumerate(models)}
    style.update(
        {n: {"color": cmap((len(models) + i) % 10), "ls": "--"} for i, n in enumerate(others)}
    )
    half = 0.5 * float(np.median(np.abs(np.diff(wn)))) if len(wn) > 1 else 0.5

    fig, axes = plt.subplots(
        len(items), 1, figsize=(11, 2.3 * len(items) + 0.9), sharex=True, squeeze=False
    )
    for ax, ex in zip(axes[:, 0], items, strict=True):
        for start, stop in mask_runs(np.asarray(ex["mask"])):
            lo, hi = wn[start], wn[stop - 1]
            ax.axvspan(min(lo, hi) - half, max(lo, hi) + half, color="0.85", lw=0, zorder=0)
        for name in models + others:
            if name in ex.get("pred", {}):
                y = np.asarray(ex["pred"][name], dtype=float)
                ax.plot(wn, y, lw=0.8, alpha=0.9, label=name, **style[name])
        ax.plot(wn, np.asarray(ex["truth"], dtype=float), color="k", lw=1.3, label="truth")
        kind = str(ex.get("kind", "?")).upper()
        ax.set_title(f"{kind}   {ex.get('smiles', '')}", fontsize=9, loc="left")
        ax.set_ylabel("intensity (norm.)", fontsize=8)
    axes[-1, 0].set_xlabel("wavenumber / cm$^{-1}$")
    axes[-1, 0].set_xlim(float(wn.min()), float(wn.max()))
    handles = [plt.Line2D([], [], color="k", lw=1.3, label="truth")]
    handles += [plt.Line2D([], [], lw=1.2, label=n, **style[n]) for n in models + others]
    handles.append(Patch(color="0.85", label="masked span"))
    fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
    figure_title(fig, f"E1 reconstructions of masked spans (test set)\n{summary['data_label']}")
    fig.tight_layout(rect=(0, 0, 0.85, 1))
    return save_figure(fig, path_stem)


def _n_seeds(backbones: dict[str, Any]) -> int | None:
    """The number of seeds behind every arm's test mean (None when they differ)."""
    ns = {dig(b, "test", "masked_mse", "n") for b in backbones.values()}
    return ns.pop() if len(ns) == 1 and isinstance(next(iter(ns)), int) else None


def _cost_axis(ax: Any, xs: list[float]) -> None:
    """Log x only when the values span more than a factor 5 (a narrower range gets crowded
    log-minor labels); engineering-notation ticks either way."""
    from matplotlib.ticker import EngFormatter, NullFormatter

    if xs and max(xs) / min(xs) > 5:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_formatter(EngFormatter(sep=" "))
    ax.margins(x=0.12)


BASELINE_STYLES = ("--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)))


def plot_metric_vs_cost(summary: dict[str, Any], path_stem: Path) -> list[Path]:
    """Test masked MSE (mean ± std over seeds) vs forward FLOPs and vs training throughput;
    one legend for the arms (colour and marker) and the baselines (line style)."""
    plt = pyplot()
    backbones = summary["backbones"]
    baselines = {
        n: finite(dig(b, "test", "masked_mse", "mean"))
        for n, b in summary.get("baselines", {}).items()
    }
    baselines = {n: v for n, v in baselines.items() if v is not None}
    ys = [finite(dig(b, "test", "masked_mse", "mean")) for b in backbones.values()]
    ys = [y for y in ys + list(baselines.values()) if y is not None and y > 0]
    # Log y only when the arms span more than a decade; a linear axis reads better otherwise.
    log_y = bool(ys) and max(ys) / min(ys) > 10
    n_seeds = _n_seeds(backbones)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharey=True)
    panels = (
        (
            axes[0],
            lambda b: (b.get("flops_total"), None),
            "forward FLOPs per spectrum (total, FLOP)",
        ),
        (
            axes[1],
            lambda b: (
                dig(b, "train_samples_per_s", "mean"),
                dig(b, "train_samples_per_s", "std"),
            ),
            "training throughput (samples/s; bar: std over seeds)",
        ),
    )
    handles: dict[str, Any] = {}
    for ax, x_of, xlabel in panels:
        xs = []
        for i, (name, b) in enumerate(backbones.items()):
            x, xerr = x_of(b)
            x, xerr = finite(x), finite(xerr)
            y = finite(dig(b, "test", "masked_mse", "mean"))
            yerr = finite(dig(b, "test", "masked_mse", "std"))
            if x is None or x <= 0 or y is None:
                continue
            h = ax.errorbar(
                x,
                y,
                xerr=xerr,
                yerr=yerr,
                fmt=ARM_MARKERS[i % len(ARM_MARKERS)],
                ms=6,
                capsize=3,
                color=f"C{i % 10}",
                label=name,
            )
            handles.setdefault(name, h)
            xs.append(x)
        if xs:
            _cost_axis(ax, xs)
        else:
            ax.text(0.5, 0.5, "not recorded", transform=ax.transAxes, ha="center", color="0.4")
        for k, (name, v) in enumerate(baselines.items()):
            style = BASELINE_STYLES[k % len(BASELINE_STYLES)]
            line = ax.axhline(v, color="0.35", ls=style, lw=1.0, label=f"{name} (baseline)")
            handles.setdefault(f"{name} (baseline)", line)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3, which="major")
    if log_y:
        axes[0].set_yscale("log")
    spread = (
        "1 seed: no error bar"
        if n_seeds == 1
        else f"mean ± std over {n_seeds} seeds"
        if n_seeds
        else "mean ± std over seeds"
    )
    axes[0].set_ylabel(f"test masked MSE ({spread})")
    fig.legend(
        list(handles.values()),
        list(handles),
        loc="center right",
        fontsize=8,
        frameon=False,
    )
    figure_title(
        fig,
        f"E1 accuracy vs cost, preset {summary.get('preset', NA)}\n{summary['data_label']}",
    )
    fig.tight_layout(rect=(0, 0, 0.83, 1))
    return save_figure(fig, path_stem)


def _gap_lines(gap: Any, unit: str) -> list[str]:
    """Masked MSE by gap length: mean over seeds with the bootstrap 95% CI, per arm and
    baseline, then the paired comparisons at each length."""
    if not isinstance(gap, dict) or not gap.get("spans"):
        return []
    spans = [str(n) for n in gap["spans"]]
    cm = finite(gap.get("cm_per_point"))
    heads = [f"{n} pts" + (f" (~{round(int(n) * cm)} cm⁻¹)" if cm else "") for n in spans]
    lines = [
        "",
        "### Masked MSE by gap length",
        "",
        f"Test masks: {gap.get('mask', NA)}; trained on {gap.get('train_mask', NA)}. "
        "Arms: mean over seeds, 95% CI over test molecules (seed-averaged); baselines: mean, CI.",
        "",
        md_row(["arm", *heads]),
        md_row(["---"] * (1 + len(spans))),
    ]
    for group, rows in (("", gap.get("backbones", {})), (" (baseline)", gap.get("baselines", {}))):
        for name in sorted(rows):
            cells = []
            for n in spans:
                e = rows[name].get(n, {})
                mean = dig(e, "mean")
                ci = dig(e, "ci") if "ci" in e else e
                cells.append(f"{fmt_num(mean)} {fmt_ci(ci)}".strip())
            lines.append(md_row([name + group, *cells]))
    if gap.get("paired"):
        lines += ["", *paired_lines(gap["paired"], unit)]
    return lines


def _tuning_lines(tuning: Any) -> list[str]:
    """Per arm: trials run, the final LR range, the choice (LR, knobs, validation value) and
    any choice at an edge, flagged. Every trial is in summary.json."""
    if not isinstance(tuning, dict) or not tuning.get("arms"):
        return []
    p = tuning.get("protocol", {})
    lines = [
        "",
        "### Tuning",
        "",
        f"Protocol: {p.get('sampler', NA)}; {p.get('n_trials', NA)} trials per arm of "
        f"{p.get('steps_per_trial', NA)} steps; LR range {p.get('lr_range', NA)}; "
        f"{p.get('edge_rule', NA)}; {p.get('criterion', NA)}; pruner: {p.get('pruner', NA)}.",
        "",
        md_row(
            ["arm", "trials", "LR range", "chosen LR", "chosen knobs", "val masked MSE", "edge"]
        ),
        md_row(["---"] * 7),
    ]
    for name, t in sorted(tuning["arms"].items()):
        best = t.get("best", {})
        flags = []
        if t.get("lr_at_edge"):
            flags.append("LR at the edge after all extensions")
        if t.get("knobs_at_edge"):
            flags.append("at the end of its values: " + ", ".join(t["knobs_at_edge"]))
        lo, hi = (t.get("lr_range") or [None, None])[:2]
        knobs = ", ".join(f"{k}={v}" for k, v in sorted((best.get("shape") or {}).items()))
        lines.append(
            md_row(
                [
                    name,
                    f"{len(t.get('trials', []))} ({t.get('extensions', 0)} extensions)",
                    f"[{fmt_num(lo, 3)}, {fmt_num(hi, 3)}]",
                    fmt_num(best.get("lr"), 3),
                    knobs or "LR only",
                    fmt_num(best.get("val")),
                    "; ".join(flags) or "interior",
                ]
            )
        )
    bad = {n: t["infeasible"] for n, t in sorted(tuning["arms"].items()) if t.get("infeasible")}
    if bad:
        lines += [
            "",
            "Knob combinations left out because no size meets the parameter budget: "
            + "; ".join(f"{n}: {len(v)} ({', '.join(map(str, v))})" for n, v in bad.items())
            + ".",
        ]
    return lines


def _convergence_lines(summary: dict[str, Any]) -> list[str]:
    """Per arm: the budget check (when run) and, per seed, the change over the window."""
    rows = [(name, b.get("convergence")) for name, b in sorted(summary["backbones"].items())]
    return convergence_lines(summary.get("convergence"), rows, "masked_mse", "test masked MSE")


def plot_val_curves(summary: dict[str, Any], path_stem: Path) -> list[Path]:
    """Validation masked MSE vs optimizer step for every arm and seed (log y), with the start
    of the convergence window or the budget check's runs."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    draw_val_curves(ax, sorted(summary["backbones"].items()), ARM_MARKERS)
    ax.set_ylabel("validation masked MSE (every seed; first seed marked)")
    rule = dig(summary, "convergence", "rule") or ""
    figure_title(
        fig,
        f"E1 validation curves, preset {summary.get('preset', NA)}; rule: {rule}\n"
        f"{summary['data_label']}",
    )
    fig.tight_layout()
    return save_figure(fig, path_stem)


def plot_gap_length(summary: dict[str, Any], path_stem: Path) -> list[Path]:
    """Test masked MSE vs gap length: every arm (mean over seeds, bar: bootstrap 95% CI over
    molecules) and every baseline (dashed), log-log."""
    plt = pyplot()
    gap = summary["gap_length"]
    spans = [int(n) for n in gap["spans"]]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for i, name in enumerate(sorted(gap.get("backbones", {}))):
        row = gap["backbones"][name]
        ys = [finite(dig(row, str(n), "mean")) for n in spans]
        lo = [finite(dig(row, str(n), "ci", "lo")) for n in spans]
        hi = [finite(dig(row, str(n), "ci", "hi")) for n in spans]
        ok = [k for k, y in enumerate(ys) if y is not None and lo[k] is not None]
        ax.errorbar(
            [spans[k] for k in ok],
            [ys[k] for k in ok],
            yerr=[[ys[k] - lo[k] for k in ok], [hi[k] - ys[k] for k in ok]],
            fmt="-" + ARM_MARKERS[i % len(ARM_MARKERS)],
            ms=5,
            capsize=3,
            color=f"C{i % 10}",
            label=name,
        )
    for k, name in enumerate(sorted(gap.get("baselines", {}))):
        row = gap["baselines"][name]
        ys = [finite(dig(row, str(n), "mean")) for n in spans]
        ok = [j for j, y in enumerate(ys) if y is not None]
        ax.plot(
            [spans[j] for j in ok],
            [ys[j] for j in ok],
            ls=BASELINE_STYLES[k % len(BASELINE_STYLES)],
            color="0.35",
            lw=1.2,
            label=f"{name} (baseline)",
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(spans, [str(n) for n in spans])
    cm = finite(gap.get("cm_per_point"))
    ax.set_xlabel("gap length (grid points" + (f"; 1 point = {cm:.2f} cm⁻¹)" if cm else ")"))
    ax.set_ylabel("test masked MSE (bar: 95% CI over molecules)")
    ax.grid(alpha=0.3, which="major")
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    figure_title(
        fig,
        f"E1 masked MSE vs gap length, preset {summary.get('preset', NA)}; trained on "
        f"{gap.get('train_mask', NA)}\n{summary['data_label']}",
    )
    fig.tight_layout()
    return save_figure(fig, path_stem)


# ----------------------------------------------------------------------------- builders


def build_e1_report(e1_dir: Path) -> dict[str, Any]:
    """Write ``table.md`` and ``figures/`` of E1 from ``summary.json`` and ``examples.json``.

    Returns ``{"table": str, "figures": [str, ...]}`` (paths as strings, so the result can go
    into a JSON summary). Raises :class:`DataError` when either
    file is missing, is not valid JSON or lacks what the report needs.
    """
    e1_dir = Path(e1_dir)
    summary_path, examples_path = e1_dir / "summary.json", e1_dir / "examples.json"
    summary = load_json(summary_path)
    _check_summary(summary, summary_path)
    examples = load_json(examples_path)
    _check_examples(examples, examples_path)

    table = e1_dir / "table.md"
    table.write_text(format_e1_table(summary), encoding="utf-8")
    fig_dir = e1_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    figures = plot_reconstructions(summary, examples, fig_dir / "reconstructions")
    figures += plot_metric_vs_cost(summary, fig_dir / "metric_vs_cost")
    if any(b.get("val_curves") for b in summary["backbones"].values()):
        figures += plot_val_curves(summary, fig_dir / "val_curves")
    if isinstance(summary.get("gap_length"), dict) and summary["gap_length"].get("spans"):
        figures += plot_gap_length(summary, fig_dir / "gap_length")
    log.info("E1 report: %s and %d figure files in %s", table, len(figures), fig_dir)
    return {"table": str(table), "figures": [str(p) for p in figures]}


def _clamp_lines(backbones: dict[str, Any]) -> list[str]:
    """D-LinOSS arms: oscillators whose a_raw sits outside the clamp interval (no gradient)."""
    lines = []
    for name in sorted(backbones):
        runs = backbones[name].get("clamped_oscillators") or []
        if not runs:
            continue

        parts = []
        for stage in ("init", "best", "end"):
            n = [r[stage]["below_lo"] + r[stage]["above_hi"] for r in runs]
            hi = [r[stage]["above_hi"] for r in runs]
            parts.append(f"{stage} {'/'.join(map(str, n))} (θ → π end: {'/'.join(map(str, hi))})")
        total = runs[0]["init"]["total"]
        lines.append(
            f"{name}: oscillators outside the clamp interval, of {total}, per seed — "
            + "; ".join(parts)
            + "."
        )
    return ["", *lines] if lines else []
