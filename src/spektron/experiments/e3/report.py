"""E3 report: ``table.md`` from ``summary.json``; ``figures/`` from the transfer-function
analyses, read (when they are not passed in) from the files the run wrote, so ``spektron
report`` rebuilds both without re-analysing a checkpoint:

* ``models/<group>_<i>.json``: each model's whole analysis (without the responses, which the
  figures rebuild from the coefficients);
* or, where those were left out (``spektron export``), ``figure_data.json``: the part of every
  analysis the figures draw (:func:`figure_data`);
* or, for a run older than both, the checkpoints ``summary.json`` names, analysed again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from spektron.errors import DataError
from spektron.experiments.reporting import NA, fmt_num, load_json, md_row

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# The files of an E3 folder the report reads besides the analyses (see the module docstring).
REPORT_FILES = ("summary.json",)
FIGURE_DATA = "figure_data.json"
# What the figures (spektron.analysis.e3_figures) read of each analysis: these per-oscillator
# fields of every model; the frequency axis and the H(z) coefficients only of each group's first
# model, the one whose filter bank and pole-zero plot are drawn.
FIGURE_FIELDS = ("f_res", "period_res", "r", "theta", "zeta", "coupling_norm")
FIRST_MODEL_FIELDS = ("numerator", "denominator")
FIRST_MODEL_AXES = ("omega", "frequency", "nyquist")


def _check(summary: dict[str, Any], where: Path) -> None:
    if summary.get("schema_version") != SCHEMA_VERSION or summary.get("experiment") != "e3":
        raise DataError(f"{where}: not an E3 summary of schema version {SCHEMA_VERSION}")
    if not isinstance(summary.get("groups"), dict) or not summary["groups"].get("trained"):
        raise DataError(f"{where}: no trained models listed under 'groups'")


def _stat_rows(rows: list[dict[str, Any]]) -> list[str]:
    head = [
        "group vs reference",
        "feature",
        "scope",
        "statistic",
        "estimate",
        "95% CI",
        "p",
        "p (Holm)",
        "min. attainable p",
        "conclusive",
    ]
    lines = [md_row(head), md_row(["---"] * len(head))]
    for r in rows:
        lines.append(
            md_row(
                [
                    f"{r.get('group')} vs {r.get('reference')}",
                    str(r.get("feature")),
                    str(r.get("scope")),
                    str(r.get("statistic")),
                    fmt_num(r.get("estimate"), 3),
                    f"[{fmt_num(r.get('ci_lo'), 3)}, {fmt_num(r.get('ci_hi'), 3)}]",
                    fmt_num(r.get("p_value"), 3),
                    fmt_num(r.get("p_holm"), 3),
                    fmt_num(r.get("min_attainable_p"), 3),
                    "yes" if r.get("conclusive") else "no",
                ]
            )
        )
    return lines


def _change_lines(changes: Any) -> list[str]:
    """How far oscillators moved from their own model's step-0 weights: per-model medians and
    trained against shuffled-order models."""
    if not isinstance(changes, dict):
        return []
    feats = changes.get("features", {})
    lines = [
        "## Change from each model's own step-0 weights (per oscillator)",
        "",
        "Features: " + "; ".join(f"{k} = {v}" for k, v in feats.items()) + ".",
        "",
        md_row(["group", "model", *feats]),
        md_row(["---"] * (len(feats) + 2)),
    ]
    for group, meds in changes.get("model_medians", {}).items():
        n = max((len(v) for v in meds.values()), default=0)
        for i in range(n):
            lines.append(md_row([group, str(i), *(fmt_num(meds.get(f, [])[i], 3) for f in feats)]))
    lines.append("")
    if changes.get("tests"):
        lines += [
            "Trained vs shuffled-order models (difference of per-model medians; exact "
            "permutation over model labels; Holm over these rows):",
            "",
            *_stat_rows(changes["tests"]),
            "",
        ]
    return lines


def format_e3_table(summary: dict[str, Any]) -> str:
    lines = [
        "# E3: transfer functions of trained D-LinOSS",
        "",
        f"Models trained on: {summary.get('data_label', NA)}",
        "",
        f"Source: {summary.get('source')}. Models per group: {summary.get('n_models')}.",
        "",
        summary.get("frequency_note", ""),
        "",
        f"**{summary.get('conclusions_note', '')}**",
        "",
        "## Per-model medians over oscillators (both directions, all layers)",
        "",
    ]
    feats: list[str] = []
    for models in summary["groups"].values():
        for m in models:
            feats = feats or list(m.get("medians", {}))
    lines += [md_row(["group", "model", *feats]), md_row(["---"] * (len(feats) + 2))]
    for group, models in summary["groups"].items():
        for i, m in enumerate(models):
            med = m.get("medians", {})
            lines.append(md_row([group, str(i), *(fmt_num(med.get(f), 4) for f in feats)]))
    lines.append("")
    stats = summary.get("statistics") or []
    pooled = [r for r in stats if r.get("scope") == "all"]
    if stats:
        lines += [
            "## Group comparisons (unit: the model; pooled over layers)",
            "",
            "Effect sizes: Wasserstein distance between the groups' oscillator distributions "
            "(each model weighted equally; ≥ 0 and biased upwards with few models, judge it by "
            "p) and the difference of per-model medians; bootstrap CIs resample models; exact "
            "permutation tests over model labels; Holm over every row (pooled and per layer).",
            "",
            *_stat_rows(pooled),
            "",
            "## Per layer",
            "",
            *_stat_rows([r for r in stats if r.get("scope") != "all"]),
            "",
        ]
    else:
        lines += ["No group comparisons (too few models per group).", ""]
    lines += _change_lines(summary.get("own_init_changes"))
    shuffled = summary.get("shuffled_runs") or []
    if shuffled:
        lines += [
            f"Shuffled-order controls (permutation seed {summary.get('permutation_seed')}): "
            + ", ".join(
                f"seed {r['seed']}: best val masked MSE {fmt_num(r['best_val_masked_mse'], 4)}"
                for r in shuffled
            ),
            "",
        ]
    return "\n".join(lines) + "\n"


def build_e3_report(e3_dir: Path, analyses: dict[str, list[dict[str, Any]]] | None = None) -> dict:
    """Write ``table.md`` and ``figures/``; when ``analyses`` is None they are read as the
    module docstring says (:func:`load_analyses`). Returns the paths (as strings)."""
    from spektron.analysis.e3_figures import (
        plot_filter_banks,
        plot_layer_summary,
        plot_periods_vs_bands,
        plot_pole_zero,
    )

    e3_dir = Path(e3_dir)
    summary_path = e3_dir / "summary.json"
    if analyses is None:
        summary = load_json(summary_path)
        _check(summary, summary_path)
        analyses = load_analyses(e3_dir, summary)
    else:
        summary = load_json(summary_path) if summary_path.is_file() else None
    table = e3_dir / "table.md"
    if summary is not None:
        table.write_text(format_e3_table(summary), encoding="utf-8")
    fig_dir = e3_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    label = "D-LinOSS trained on SIMULATED spectra"
    files = []
    for group, ans in analyses.items():
        files += plot_filter_banks(ans[0], fig_dir / f"filter_bank_{group}_0", label=f"{group} 0")
    init = analyses.get("init", [None])[0]
    files += plot_pole_zero(
        analyses["trained"][0], init, fig_dir / "pole_zero_trained_0", label=label
    )
    files += plot_periods_vs_bands(analyses, fig_dir / "periods_vs_bands", label=label)
    files += plot_layer_summary(analyses, fig_dir / "layer_summary", label=label)
    log.info("E3 report: %s and %d figure files in %s", table, len(files), fig_dir)
    return {"table": str(table), "figures": [str(p) for p in files]}


def _analysis_file(e3_dir: Path, group: str, i: int, model: dict[str, Any]) -> Path:
    """``models/<group>_<i>.json``: the run names its CSV sibling in ``oscillators_csv``."""
    csv_path = model.get("oscillators_csv") or f"models/{group}_{i}.csv"
    return e3_dir / Path(csv_path).with_suffix(".json")


def load_analyses(e3_dir: Path, summary: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Every model's analysis, by group: from ``models/*.json`` when all are there, else from
    :data:`FIGURE_DATA`, else by analysing the checkpoints that ``summary`` names again."""
    from spektron.analysis.transfer_function import from_json

    e3_dir = Path(e3_dir)
    files = {
        group: [_analysis_file(e3_dir, group, i, m) for i, m in enumerate(models)]
        for group, models in summary["groups"].items()
    }
    if all(p.is_file() for paths in files.values() for p in paths):
        return {g: [from_json(load_json(p)) for p in paths] for g, paths in files.items()}
    data_path = e3_dir / FIGURE_DATA
    if data_path.is_file():
        data = load_json(data_path)
        groups = data.get("analyses")
        if not isinstance(groups, dict) or set(groups) != set(files):
            raise DataError(f"{data_path}: its groups do not match {e3_dir / 'summary.json'}")
        return {g: [from_json(a) for a in groups[g]] for g in files}
    return _reanalyse(summary)


def _figure_part(analysis: dict[str, Any], first: bool) -> dict[str, Any]:
    """The part of one analysis (as :func:`~spektron.analysis.transfer_function.to_json` writes
    it) that the figures draw; ``first``: the group's first model (see :data:`FIGURE_FIELDS`)."""
    fields = FIGURE_FIELDS + (FIRST_MODEL_FIELDS if first else ())
    part = {"spacing_cm": analysis["spacing_cm"]}
    if first:
        part.update({k: analysis[k] for k in FIRST_MODEL_AXES})
    part["layers"] = [
        {
            "index": lay["index"],
            "directions": {
                name: {f: d[f] for f in fields} for name, d in lay["directions"].items()
            },
        }
        for lay in analysis["layers"]
    ]
    return part


def figure_data(e3_dir: Path) -> dict[str, Any]:
    """What the E3 figures draw of every model's analysis (a small fraction of
    ``models/*.json``), as JSON-able lists: the content of :data:`FIGURE_DATA`."""
    from spektron.analysis.transfer_function import to_json

    e3_dir = Path(e3_dir)
    summary_path = e3_dir / "summary.json"
    summary = load_json(summary_path)
    _check(summary, summary_path)
    analyses = load_analyses(e3_dir, summary)
    return {
        "schema_version": SCHEMA_VERSION,
        "experiment": "e3",
        "note": "the part of each model's transfer-function analysis that the E3 figures draw "
        f"(per oscillator: {', '.join(FIGURE_FIELDS)}; the frequency axis and "
        f"{', '.join(FIRST_MODEL_FIELDS)} of each group's first model); the whole analyses are "
        "models/<group>_<i>.json of the run",
        "analyses": {
            g: [_figure_part(to_json(a), first=i == 0) for i, a in enumerate(ans)]
            for g, ans in analyses.items()
        },
    }


def _reanalyse(summary: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    from spektron.analysis.transfer_function import analyse_model
    from spektron.models.spektron import Spektron

    out: dict[str, list[dict[str, Any]]] = {}
    for group, models in summary["groups"].items():
        out[group] = []
        for m in models:
            path = Path(m["checkpoint"])
            if not path.is_file():
                raise DataError(
                    f"E3 report: no analyses (models/*.json or {FIGURE_DATA}) and checkpoint "
                    f"{path} ({group}) no longer exists"
                )
            model = Spektron.from_checkpoint(path)
            out[group].append(analyse_model(model, m["spacing_cm"], summary.get("n_freq", 512)))
    return out
