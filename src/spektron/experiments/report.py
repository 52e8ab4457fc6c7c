"""Rebuild an experiment's table and figures from its JSON results alone (no training, no torch).

E1 (masked-spectrum reconstruction, one row per backbone at a matched parameter budget) writes
``summary.json`` (metrics over seeds with bootstrap CIs, baselines, paired tests, quality gate)
and ``examples.json`` (a few test spectra with every arm's prediction). From these two files
:func:`build_e1_report` writes

* ``table.md``: the results table, the quality gate and the paired comparisons;
* ``figures/reconstructions.{png,pdf}``: truth vs predictions with the masked spans shaded;
* ``figures/metric_vs_cost.{png,pdf}``: test masked MSE vs forward FLOPs and vs throughput.

The data are SIMULATED; the table header and every figure carry the data label from the JSON.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from spektron.errors import DataError
from spektron.plotting import pyplot, save_figure

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MAX_EXAMPLES = 4
NA = "n/a"  # a value that should exist but is missing or not finite
NOT_APPLICABLE = "–"  # a column that does not apply to the row (e.g. LR of a baseline)
ARROWS = {"lower": "↓", "higher": "↑"}
DEFAULT_DIRECTIONS = {
    "masked_mse": "lower",
    "full_mse": "lower",
    "cosine": "higher",
    "peak_f1": "higher",
}


# ----------------------------------------------------------------------------- reading


def _load_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; any problem becomes a :class:`DataError` naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from e
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _require(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: Path) -> Any:
    if key not in obj:
        raise DataError(f"{where}: missing key {key!r}")
    if not isinstance(obj[key], kind):
        raise DataError(f"{where}: {key!r} has type {type(obj[key]).__name__}")
    return obj[key]


def _check_summary(summary: dict[str, Any], where: Path) -> None:
    version = summary.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise DataError(f"{where}: schema_version {version!r}, this reader knows {SCHEMA_VERSION}")
    _require(summary, "data_label", str, where)
    backbones = _require(summary, "backbones", dict, where)
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
    wn = _require(examples, "wavenumber", list, where)
    items = _require(examples, "examples", list, where)
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


def _finite(x: Any) -> float | None:
    """``x`` as a float, or None when it is missing, not a number, NaN or infinite."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def _num(x: Any, sig: int = 4) -> str:
    """``sig`` significant digits; values with more integer digits get thousands separators."""
    v = _finite(x)
    if v is None:
        return NA
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 10**sig:
        return f"{v:,.0f}"
    return f"{v:.{sig}g}"  # e-form only below 1e-4


def _si(x: Any) -> str:
    """FLOP counts and the like: three significant digits with an SI prefix (1.50 G)."""
    v = _finite(x)
    if v is None:
        return NA
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= factor:
            return f"{v / factor:.3g} {prefix}"
    return f"{v:.3g}"


def _int(x: Any) -> str:
    v = _finite(x)
    return NA if v is None else f"{round(v):,}"


def _get(d: Any, *keys: str) -> Any:
    """``d[k0][k1]...`` or None when any level is missing or not an object."""
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _mean_std(entry: Any) -> str:
    mean, std = _get(entry, "mean"), _get(entry, "std")
    if _finite(mean) is None:
        return NA
    return f"{_num(mean)} ± {_num(std, 2)}" if std is not None else _num(mean)


def _ci(entry: Any) -> str:
    lo, hi = _get(entry, "lo"), _get(entry, "hi")
    if lo is None and hi is None:
        return ""
    return f"[{_num(lo)}, {_num(hi)}]"


def _sort_key(name: str, test: Any) -> tuple[bool, float, str]:
    v = _finite(_get(test, "masked_mse", "mean"))
    return (v is None, v if v is not None else 0.0, name)  # missing values last


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _scale_text(scale: dict[str, Any]) -> str:
    def value(v: Any) -> str:
        return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)

    return ", ".join(f"{k}={value(v)}" for k, v in scale.items() if k != "note")


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
        f"Preset `{summary.get('preset', NA)}`; scale: {_scale_text(scale) or NA}.",
    ]
    if scale.get("note"):
        lines.append(f"Note: {scale['note']}.")
    lines.append(
        f"Peak matching: tolerance ± {_num(peaks.get('tolerance_cm'))} cm⁻¹, "
        f"prominence {_num(peaks.get('prominence'))}."
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
    lines += [_row(cols), _row(["---"] * len(cols))]
    backbones = summary["backbones"]
    for name in sorted(backbones, key=lambda n: _sort_key(n, backbones[n].get("test"))):
        b = backbones[name]
        t = b["test"]
        mse = t.get("masked_mse")
        ci = _ci(_get(mse, "ci"))
        lines.append(
            _row(
                [
                    name,
                    _int(b.get("n_params")),
                    f"{_mean_std(mse)} {ci}".strip(),
                    _mean_std(t.get("full_mse")),
                    _mean_std(t.get("cosine")),
                    _mean_std(t.get("peak_f1")),
                    f"{b['lr']:g}" if _finite(b.get("lr")) is not None else NA,
                    _mean_std(b.get("train_samples_per_s")),
                    _mean_std(b.get("train_time_s")),
                    _mean_std(b.get("peak_memory_mb")),
                    _si(b.get("flops_total")),
                ]
            )
        )
    baselines = summary.get("baselines", {})
    if baselines:
        lines.append(_row(["**baselines**"] + [""] * (len(cols) - 1)))
        for name in sorted(baselines, key=lambda n: _sort_key(n, baselines[n].get("test"))):
            t = baselines[name].get("test", {})
            mse = t.get("masked_mse")
            cells = [f"{_num(_get(mse, 'mean'))} {_ci(mse)}".strip()]
            cells += [_num(_get(t, m, "mean")) for m in ("full_mse", "cosine", "peak_f1")]
            label = name + _params_text(baselines[name].get("params"))
            lines.append(_row([label, NOT_APPLICABLE, *cells] + [NOT_APPLICABLE] * 5))
    kinds = sorted({str(b["memory_kind"]) for b in backbones.values() if b.get("memory_kind")})
    if kinds:
        lines += ["", f"Peak memory: {'; '.join(kinds)}."]

    lines += ["", *_gate_lines(summary.get("quality_gate"))]
    lines += _by_kind_lines(backbones, baselines)
    unit = summary.get("ci_unit") or "test spectra"
    lines += ["", *_paired_lines(summary.get("paired", []), unit)]
    lines += ["", *_sweep_lines(backbones)]
    footer = [
        f"wall time {_num(summary['wall_time_s'])} s" if "wall_time_s" in summary else "",
        f"device {summary['device']}" if summary.get("device") else "",
    ]
    if any(footer):
        lines += ["", "Run: " + ", ".join(f for f in footer if f) + "."]
    return "\n".join(lines) + "\n"


def _gate_lines(gate: Any) -> list[str]:
    if not isinstance(gate, dict) or not gate:
        return ["Quality gate: not recorded."]
    refs = gate.get("references", {})
    ref_text = ", ".join(f"{k} {_num(v)}" for k, v in refs.items()) or NA
    criterion = gate.get("criterion") or f"validation masked MSE must beat {ref_text}"
    verdict = "PASSED" if gate.get("passed") else "FAILED"
    per = [
        f"{name} {_num(r.get('val_masked_mse'))} {'pass' if r.get('passed') else 'FAIL'}"
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
        _row(["arm", *kinds]),
        _row(["---"] * (len(kinds) + 1)),
    ]
    for name, bk in by_kind.items():
        entries = [_get(bk, k, "masked_mse") for k in kinds]
        lines.append(_row([name, *(_mean_std(e) for e in entries)]))
    return lines


def _paired_lines(paired: list[Any], unit: str = "test spectra") -> list[str]:
    if not paired:
        return ["Paired comparisons: none recorded."]
    lines = [
        f"Paired comparisons on the same {unit} (mean difference a − b, bootstrap 95% CI, "
        "p-value, Holm-adjusted p):",
        "",
        _row(["a vs b", "metric", "mean diff", "95% CI", "p", "p (Holm)", "n"]),
        _row(["---"] * 7),
    ]
    for p in paired:
        if not isinstance(p, dict):
            continue
        lines.append(
            _row(
                [
                    f"{p.get('a', NA)} vs {p.get('b', NA)}",
                    str(p.get("metric", NA)),
                    _num(p.get("mean_diff"), 3),
                    f"[{_num(p.get('lo'), 3)}, {_num(p.get('hi'), 3)}]",
                    _num(p.get("p_value"), 3),
                    _num(p.get("p_holm"), 3),
                    _int(p.get("n")),
                ]
            )
        )
    return lines


def _sweep_lines(backbones: dict[str, Any]) -> list[str]:
    parts = []
    for name, b in backbones.items():
        sweep = b.get("lr_sweep")
        if not isinstance(sweep, dict) or not sweep:
            continue
        chosen = _finite(b.get("lr"))
        items = []
        for lr, score in sweep.items():
            text = f"{lr}: {_num(score)}"
            try:
                is_chosen = chosen is not None and math.isclose(float(lr), chosen)
            except ValueError:
                is_chosen = False
            items.append(f"**{text}**" if is_chosen else text)
        parts.append(f"- {name}: " + ", ".join(items))
    if not parts:
        return []
    return ["LR sweep (validation masked MSE per learning rate; chosen in bold):", "", *parts]


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
    fig.suptitle(
        f"E1 reconstructions of masked spans (test set)\n{summary['data_label']}", fontsize=9
    )
    fig.tight_layout(rect=(0, 0, 0.85, 1))
    return save_figure(fig, path_stem)


def plot_metric_vs_cost(summary: dict[str, Any], path_stem: Path) -> list[Path]:
    """Test masked MSE (mean ± std over seeds) vs forward FLOPs and vs training throughput."""
    plt = pyplot()
    backbones = summary["backbones"]
    baselines = {
        n: _finite(_get(b, "test", "masked_mse", "mean"))
        for n, b in summary.get("baselines", {}).items()
    }
    baselines = {n: v for n, v in baselines.items() if v is not None}
    ys = [_finite(_get(b, "test", "masked_mse", "mean")) for b in backbones.values()]
    ys = [y for y in ys + list(baselines.values()) if y is not None and y > 0]
    # Log y only when the arms span more than a decade; a linear axis reads better otherwise.
    log_y = bool(ys) and max(ys) / min(ys) > 10

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    panels = (
        (axes[0], lambda b: (b.get("flops_total"), None), "forward FLOPs per spectrum (total)"),
        (
            axes[1],
            lambda b: (
                _get(b, "train_samples_per_s", "mean"),
                _get(b, "train_samples_per_s", "std"),
            ),
            "training throughput (samples/s)",
        ),
    )
    for ax, x_of, xlabel in panels:
        plotted = 0
        for i, (name, b) in enumerate(backbones.items()):
            x, xerr = x_of(b)
            x, xerr = _finite(x), _finite(xerr)
            y = _finite(_get(b, "test", "masked_mse", "mean"))
            yerr = _finite(_get(b, "test", "masked_mse", "std"))
            if x is None or x <= 0 or y is None:
                continue
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", ms=5, capsize=3, color=f"C{i % 10}")
            ax.annotate(name, (x, y), xytext=(5, 4), textcoords="offset points", fontsize=8)
            plotted += 1
        if plotted:
            ax.set_xscale("log")
            ax.margins(x=0.15)
        else:
            ax.text(0.5, 0.5, "not recorded", transform=ax.transAxes, ha="center", color="0.4")
        for name, v in baselines.items():
            ax.axhline(v, color="0.4", ls="--", lw=0.9)
            ax.annotate(
                name,
                (1, v),
                xycoords=("axes fraction", "data"),
                xytext=(-3, 2),
                textcoords="offset points",
                ha="right",
                va="bottom",
                fontsize=7,
                color="0.3",
            )
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3, which="both")
    if log_y:
        axes[0].set_yscale("log")
    axes[0].set_ylabel("test masked MSE (mean ± std over seeds)")
    fig.suptitle(
        f"E1 accuracy vs cost, preset {summary.get('preset', NA)}; dashed: baselines\n"
        f"{summary['data_label']}",
        fontsize=9,
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
    summary = _load_json(summary_path)
    _check_summary(summary, summary_path)
    examples = _load_json(examples_path)
    _check_examples(examples, examples_path)

    table = e1_dir / "table.md"
    table.write_text(format_e1_table(summary), encoding="utf-8")
    fig_dir = e1_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    figures = plot_reconstructions(summary, examples, fig_dir / "reconstructions")
    figures += plot_metric_vs_cost(summary, fig_dir / "metric_vs_cost")
    log.info("E1 report: %s and %d figure files in %s", table, len(figures), fig_dir)
    return {"table": str(table), "figures": [str(p) for p in figures]}


def _build_e2_report(e2_dir: Path) -> dict[str, Any]:
    from spektron.experiments.report_e2 import build_e2_report  # imports this module

    return build_e2_report(e2_dir)


def _build_e3_report(e3_dir: Path) -> dict[str, Any]:
    from spektron.experiments.report_e3 import build_e3_report  # imports this module

    return build_e3_report(e3_dir)


def _build_e4_report(e4_dir: Path) -> dict[str, Any]:
    from spektron.experiments.report_e4 import build_e4_report  # imports this module

    return build_e4_report(e4_dir)


REPORT_BUILDERS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "e1": build_e1_report,
    "e2": _build_e2_report,
    "e3": _build_e3_report,
    "e4": _build_e4_report,
}


def build_report(out: Path) -> dict[str, Any]:
    """Build the report of every experiment under ``out`` that has results (``summary.json``).

    ``out`` is a results root (``out/e1/summary.json``, ...) or one experiment's folder.
    """
    out = Path(out)
    own = out / "summary.json"
    if own.is_file():
        name = _load_json(own).get("experiment")
        if name in REPORT_BUILDERS:
            return {name: REPORT_BUILDERS[name](out)}
    results = {
        name: builder(out / name)
        for name, builder in REPORT_BUILDERS.items()
        if (out / name / "summary.json").is_file()
    }
    if not results:
        raise DataError(f"no experiment results under {out}")
    return results
