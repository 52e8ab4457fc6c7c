"""Learning curves and the convergence rule every arm is held to.

The validation curve of a run is read from its ``history.jsonl`` (the trainer's ``eval``
lines: step and the main validation term). The rule is stated on the best-so-far curve
b(s) = min_{s' ≤ s} v(s'), which a noisy evaluation cannot move backwards:

    converged  ⇔  (b(s₀) − b(S)) / b(S) < tol,    s₀ = (1 − window)·S,

with S the run's last step and b(s₀) the best validation value at or before s₀ — "the best
validation loss improved by less than ``tol`` over the last ``window`` of the steps". A run
with no evaluation at or before s₀ cannot be judged (``converged`` is None).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def validation_curve(history: list[dict[str, Any]], term: str) -> dict[str, list]:
    """{"step": [...], "val": [...]} from the ``eval`` records of a history (step order; the
    later record wins where a resumed run logged a step twice)."""
    by_step: dict[int, float] = {}
    for rec in history:
        if rec.get("kind") == "eval" and isinstance(rec.get("val"), dict) and term in rec["val"]:
            by_step[int(rec["step"])] = float(rec["val"][term])
    steps = sorted(by_step)
    return {"step": steps, "val": [by_step[s] for s in steps]}


def convergence(curve: dict[str, list], tol: float = 0.02, window: float = 0.25) -> dict[str, Any]:
    """The rule of the module docstring on one validation curve.

    Returns {"rel_change": (b(s₀) − b(S))/b(S) or None, "converged": bool or None, "s0", "S",
    "tol", "window"}.
    """
    if not 0 < window < 1 or tol <= 0:
        raise ValueError(f"need 0 < window < 1 and tol > 0, got window={window}, tol={tol}")
    steps, vals = curve["step"], curve["val"]
    out: dict[str, Any] = {"tol": tol, "window": window, "rel_change": None, "converged": None}
    if not steps:
        return {**out, "s0": None, "S": None}
    last = steps[-1]
    s0 = (1.0 - window) * last
    before = [v for s, v in zip(steps, vals, strict=True) if s <= s0 and math.isfinite(v)]
    finite = [v for v in vals if math.isfinite(v)]
    out.update({"s0": s0, "S": last})
    if not before or not finite:
        return out
    b_s0, b_end = min(before), min(finite)
    rel = (b_s0 - b_end) / b_end if b_end > 0 else (0.0 if b_s0 == b_end else math.inf)
    return {**out, "rel_change": rel, "converged": bool(rel < tol)}


def run_convergence(
    run_dir: Path, term: str, tol: float = 0.02, window: float = 0.25
) -> dict[str, Any]:
    """Validation curve and rule of one run folder: {"curve": ..., **convergence(...)}."""
    from spektron.training.trainer import HISTORY_NAME, read_history

    curve = validation_curve(read_history(Path(run_dir) / HISTORY_NAME), term)
    return {"curve": curve, **convergence(curve, tol, window)}


def rule_text(tol: float, window: float, check: int, steps: int, metric: str) -> str:
    """The stated rule: the budget check's when ``check`` (a step multiple ≥ 2), else the
    window rule's (the last ``window`` of one run's steps)."""
    if not check:
        return (
            f"best {metric} improved by < {tol:.0%} (relative) over the last {window:.0%} of "
            "the steps"
        )
    more = "doubling" if check == 2 else f"{check}x"
    return (
        f"{more} the steps ({steps:,} → {check * steps:,}; first seed, same LR and settings, "
        f"the cosine over the longer budget) improves the best {metric} by < {tol:.0%} "
        "(relative)"
    )


def budget_check(val: float, check_val: float, steps: int, check: int, tol: float) -> dict:
    """The budget rule on one arm: the best validation value ``val`` of a run of ``steps``
    steps against ``check_val`` of the same run trained for ``check`` × the steps:

        gain = (val − check_val) / check_val,    converged ⇔ gain < tol.
    """
    gain = (val - check_val) / check_val if check_val > 0 else 0.0
    return {
        "steps": steps,
        "check_steps": check * steps,
        "val": val,
        "check_val": check_val,
        "gain": gain,
        "converged": bool(gain < tol),
    }
