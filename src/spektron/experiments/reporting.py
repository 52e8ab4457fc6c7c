"""Shared pieces of every experiment's report: reading result JSON, formatting numbers and
Markdown rows, the paired-comparison table. Figures are saved with :mod:`spektron.plotting`.

Every reader raises :class:`~spektron.errors.DataError` naming the file; every formatter turns
a missing or non-finite value into ``NA`` instead of failing, so a report of partial results
still renders.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from spektron.errors import DataError

NA = "n/a"  # a value that should exist but is missing or not finite
NOT_APPLICABLE = "–"  # a column that does not apply to the row (e.g. LR of a baseline)
ARM_MARKERS = "osD^vP*Xh<>p"  # one marker per arm in the figures, in the arms' order

# ----------------------------------------------------------------------------- reading


def load_json(path: Path) -> dict[str, Any]:
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


def require_key(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: Path) -> Any:
    if key not in obj:
        raise DataError(f"{where}: missing key {key!r}")
    if not isinstance(obj[key], kind):
        raise DataError(f"{where}: {key!r} has type {type(obj[key]).__name__}")
    return obj[key]


# ----------------------------------------------------------------------------- formatting


def finite(x: Any) -> float | None:
    """``x`` as a float, or None when it is missing, not a number, NaN or infinite."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def fmt_num(x: Any, sig: int = 4) -> str:
    """``sig`` significant digits; values with more integer digits get thousands separators."""
    v = finite(x)
    if v is None:
        return NA
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 10**sig:
        return f"{v:,.0f}"
    return f"{v:.{sig}g}"  # e-form only below 1e-4


def fmt_si(x: Any) -> str:
    """FLOP counts and the like: three significant digits with an SI prefix (1.50 G)."""
    v = finite(x)
    if v is None:
        return NA
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= factor:
            return f"{v / factor:.3g} {prefix}"
    return f"{v:.3g}"


def fmt_int(x: Any) -> str:
    v = finite(x)
    return NA if v is None else f"{round(v):,}"


def dig(d: Any, *keys: str) -> Any:
    """``d[k0][k1]...`` or None when any level is missing or not an object."""
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def fmt_mean_std(entry: Any) -> str:
    """``mean ± std``; ``mean (1 seed)`` for a single value (no spread to show)."""
    mean, std = dig(entry, "mean"), dig(entry, "std")
    if finite(mean) is None:
        return NA
    if dig(entry, "n") == 1:
        return f"{fmt_num(mean)} (1 seed)"
    return f"{fmt_num(mean)} ± {fmt_num(std, 2)}" if std is not None else fmt_num(mean)


def fmt_ci(entry: Any) -> str:
    lo, hi = dig(entry, "lo"), dig(entry, "hi")
    if lo is None and hi is None:
        return ""
    return f"[{fmt_num(lo)}, {fmt_num(hi)}]"


def md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def lr_sweep_lines(entries: dict[str, Any], metric: str) -> list[str]:
    """One line per arm with its validation value at each LR it was trained at (the chosen one
    in bold), and whether the chosen LR is an end of what was tried (``lr_edge``); arms without
    a sweep are left out. ``metric`` names the validation value."""
    parts = []
    for name, b in entries.items():
        sweep = b.get("lr_sweep")
        if not isinstance(sweep, dict) or not sweep:
            continue
        chosen = finite(b.get("lr"))
        items = []
        for lr, score in sweep.items():
            text = f"{lr}: {fmt_num(score)}"
            # Sweeps are keyed f"{lr:g}" (runner.sweep_then_seeds): the chosen LR by its key.
            items.append(f"**{text}**" if chosen is not None and lr == f"{chosen:g}" else text)
        edge = b.get("lr_edge")
        note = f" (chosen at the {edge} end of the LRs tried)" if edge else ""
        parts.append(f"- {name}: " + ", ".join(items) + note)
    if not parts:
        return []
    return [f"LR sweep ({metric} per learning rate; chosen in bold):", "", *parts]


def scale_text(scale: dict[str, Any]) -> str:
    def value(v: Any) -> str:
        return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)

    return ", ".join(f"{k}={value(v)}" for k, v in scale.items() if k != "note")


def paired_lines(paired: list[Any], unit: str = "test spectra") -> list[str]:
    if not paired:
        return ["Paired comparisons: none recorded."]
    lines = [
        f"Paired comparisons on the same {unit} (mean difference a − b, bootstrap 95% CI, "
        "p-value, Holm-adjusted p):",
        "",
        md_row(["a vs b", "metric", "mean diff", "95% CI", "p", "p (Holm)", "n"]),
        md_row(["---"] * 7),
    ]
    for p in paired:
        if not isinstance(p, dict):
            continue
        lines.append(
            md_row(
                [
                    f"{p.get('a', NA)} vs {p.get('b', NA)}",
                    str(p.get("metric", NA)),
                    fmt_num(p.get("mean_diff"), 3),
                    f"[{fmt_num(p.get('lo'), 3)}, {fmt_num(p.get('hi'), 3)}]",
                    fmt_num(p.get("p_value"), 3),
                    fmt_num(p.get("p_holm"), 3),
                    fmt_int(p.get("n")),
                ]
            )
        )
    return lines


# ----------------------------------------------------------------------------- convergence


def convergence_lines(
    rule: Any, rows: list[tuple[str, Any]], test_key: str, test_label: str, higher: bool = False
) -> list[str]:
    """The convergence section: the rule, then per arm (``rows``: label, its summary's
    ``convergence`` entry) the budget check when it ran (best validation value at both
    budgets, the gain, the first seed's test ``test_key`` at both) and the change over the
    window per seed; then whether the arms' first-seed test order held (``higher``: larger
    values are better)."""
    if not isinstance(rule, dict):
        return []
    lines = ["", "### Convergence", "", f"Rule: {rule.get('rule', NA)}.", ""]
    checked = bool(rule.get("check"))
    window = f"change over the last {finite(rule.get('window')) or 0:.0%} of the steps, per seed"
    head = ["arm", window, "converged"]
    if checked:
        head = ["arm", "best val (steps)", "best val (check)", "gain", "converged"]
        head += [f"{test_label}, first seed (steps → check)", window]
    lines += [md_row(head), md_row(["---"] * len(head))]
    order = []
    for name, conv in rows:
        if not isinstance(conv, dict):
            continue
        rel = [dig(c, "rel_change") for c in conv.get("per_seed", [])]
        cells = ", ".join(NA if finite(r) is None else f"{100 * r:.1f} %" for r in rel)
        verdict = "yes" if conv.get("converged") else "**no**"
        chk = conv.get("budget_check")
        if not (checked and isinstance(chk, dict)):
            lines.append(md_row([name, cells, verdict]))
            continue
        short, long = chk.get(f"test_{test_key}"), chk.get(f"check_test_{test_key}")
        lines.append(
            md_row(
                [
                    name,
                    f"{fmt_num(chk.get('val'))} ({fmt_int(chk.get('steps'))})",
                    f"{fmt_num(chk.get('check_val'))} ({fmt_int(chk.get('check_steps'))})",
                    f"{100 * (finite(chk.get('gain')) or 0):.1f} %",
                    verdict,
                    f"{fmt_num(short)} → {fmt_num(long)}",
                    cells,
                ]
            )
        )
        if finite(short) is not None and finite(long) is not None:
            order.append((name, short, long))
    if len(order) > 1:
        sign = -1 if higher else 1
        a = [n for n, _, _ in sorted(order, key=lambda r: sign * r[1])]
        b = [n for n, _, _ in sorted(order, key=lambda r: sign * r[2])]
        same = "the same order" if a == b else "a different order"
        lines += [
            "",
            f"First seed's test order, best first: {', '.join(a)} (steps); "
            f"{', '.join(b)} (check): {same}.",
        ]
    if not rule.get("all_converged"):
        lines += ["", "Not every arm meets the rule: its numbers are those of an unfinished run."]
    return lines


def draw_val_curves(ax: Any, arms: list[tuple[str, dict[str, Any]]], markers: str) -> None:
    """Validation value vs optimizer step on ``ax`` (log y): per arm (label, summary entry
    with ``val_curves`` and ``convergence``) every seed, the first marked, and the budget
    check's run dashed; else the start of the convergence window dotted."""
    s0, checked = None, False
    for i, (name, b) in enumerate(arms):
        for k, curve in enumerate(b.get("val_curves") or []):
            if not curve.get("step"):
                continue
            ax.plot(
                curve["step"],
                curve["val"],
                color=f"C{i % 10}",
                lw=1.2 if k == 0 else 0.7,
                alpha=1.0 if k == 0 else 0.6,
                marker=markers[i % len(markers)] if k == 0 else None,
                ms=3,
                label=name if k == 0 else None,
            )
        per_seed = dig(b, "convergence", "per_seed") or []
        if per_seed and finite(dig(per_seed[0], "s0")) is not None:
            s0 = per_seed[0]["s0"]
        check = dig(b, "convergence", "budget_check", "curve")
        if isinstance(check, dict) and check.get("step"):
            ax.plot(check["step"], check["val"], color=f"C{i % 10}", lw=1.0, ls="--")
            checked = True
    if checked:
        ax.plot([], [], color="0.3", lw=1.0, ls="--", label="budget check (first seed)")
    elif s0 is not None:
        ax.axvline(s0, color="0.5", ls=":", lw=1.0, label="convergence window starts")
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.grid(alpha=0.3, which="major")
    ax.legend(fontsize=7, frameon=False)
