"""The convergence rule on learning curves: best-so-far change over the last window."""

from __future__ import annotations

import json

import pytest

from spektron.training.convergence import convergence, run_convergence, validation_curve


def _curve(steps, vals):
    return {"step": list(steps), "val": list(vals)}


def test_flat_end_converges_and_a_falling_end_does_not():
    steps = range(100, 1100, 100)
    flat = convergence(_curve(steps, [1.0, 0.5, 0.3, 0.2, 0.15, 0.12, 0.1, 0.1, 0.099, 0.0995]))
    # s0 = 750: best up to 700 is 0.1, best overall 0.099 → 1.0 % < 2 %.
    assert flat["s0"] == 750 and flat["S"] == 900 + 100
    assert flat["rel_change"] == pytest.approx(0.1 / 0.099 - 1) and flat["converged"] is True
    falling = convergence(_curve(steps, [1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1]))
    assert falling["rel_change"] == pytest.approx(0.25 / 0.1 - 1) and falling["converged"] is False
    # A noisy rise at the end does not count as progress (best-so-far), nor against it.
    noisy = convergence(_curve(steps, [1.0, 0.5, 0.3, 0.2, 0.15, 0.12, 0.1, 0.3, 0.4, 0.5]))
    assert noisy["rel_change"] == 0.0 and noisy["converged"] is True
    # Tighter rule, same curve.
    assert (
        convergence(flat_curve := _curve(steps, [1, 1, 1, 1, 1, 1, 1, 1, 0.995, 0.99]), 0.005)[
            "converged"
        ]
        is False
    )
    assert convergence(flat_curve, 0.02)["converged"] is True


def test_a_curve_too_short_to_judge_is_none_not_converged():
    assert convergence(_curve([], []))["converged"] is None
    one = convergence(_curve([500], [0.1]))  # nothing at or before s0 = 375
    assert one["converged"] is None and one["rel_change"] is None
    with pytest.raises(ValueError, match="window"):
        convergence(_curve([1], [1.0]), window=1.0)


def test_curve_from_history_file_keeps_the_later_of_a_repeated_step(tmp_path):
    lines = [
        {"kind": "train", "step": 1, "loss": {"recon": 2.0}},
        {"kind": "eval", "step": 100, "val": {"recon": 0.5}},
        {"kind": "eval", "step": 200, "val": {"recon": 0.4}},
        {"kind": "eval", "step": 200, "val": {"recon": 0.35}},  # resumed and re-evaluated
        {"kind": "eval", "step": 300, "val": {"recon": 0.34}},
        {"kind": "eval", "step": 400, "val": {"recon": 0.339}},
    ]
    (tmp_path / "history.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n{torn")
    res = run_convergence(tmp_path, "recon")
    assert res["curve"] == {"step": [100, 200, 300, 400], "val": [0.5, 0.35, 0.34, 0.339]}
    assert res["converged"] is True  # best up to 300: 0.34 → 0.339 (0.3 %)
    assert validation_curve(lines, "mse") == {"step": [], "val": []}
