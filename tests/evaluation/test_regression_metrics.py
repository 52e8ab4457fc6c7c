"""Regression metrics of E4: hand-computed values, bootstrap intervals, paired tests."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spektron.errors import ConfigError, DataError
from spektron.evaluation import regression_metrics as rm
from spektron.evaluation.metrics import paired_bootstrap

Y = np.array([1.0, 2.0, 3.0, 4.0])
P = np.array([1.5, 2.0, 2.5, 5.0])  # errors e = (0.5, 0, −0.5, 1)


def test_hand_computed_values():
    assert rm.rmsep(Y, P) == pytest.approx(math.sqrt(1.5 / 4))  # Σe² = 1.5
    assert rm.bias(Y, P) == pytest.approx(0.25)
    # Σ(e − ē)² = 0.0625 + 0.0625 + 0.5625 + 0.5625 = 1.25, over n − 1 = 3
    assert rm.sep(Y, P) == pytest.approx(math.sqrt(1.25 / 3))
    assert rm.r2(Y, P) == pytest.approx(1 - 1.5 / 5)  # Σ(y − ȳ)² = 5
    assert rm.rpd(Y, P) == pytest.approx(2.0)  # √(5/3) / √(1.25/3) = √4


def test_rmsep_decomposes_into_bias_and_sep():
    rng = np.random.default_rng(0)
    y = rng.normal(size=25)
    p = y + 0.3 + 0.2 * rng.normal(size=25)
    n = y.size
    lhs = rm.rmsep(y, p) ** 2
    assert lhs == pytest.approx(rm.bias(y, p) ** 2 + (n - 1) / n * rm.sep(y, p) ** 2)


def test_undefined_cases():
    assert math.isnan(rm.sep([1.0], [2.0]))
    assert math.isnan(rm.rpd([1.0], [2.0]))
    assert math.isnan(rm.r2([2.0, 2.0], [1.0, 3.0]))  # constant reference
    assert rm.rpd(Y, Y + 0.5) == math.inf  # a pure offset: SEP = 0
    with pytest.raises(DataError):
        rm.rmsep(Y, P[:3])
    with pytest.raises(DataError):
        rm.rmsep(Y, np.where(P > 2, np.nan, P))


def test_report_intervals_bracket_the_values_and_match_metrics_bootstrap():
    rng = np.random.default_rng(1)
    y = rng.normal(3, 1, size=20)
    p = y + rng.normal(0.1, 0.3, size=20)
    rep = rm.regression_report(y, p, n_boot=500, seed=3)
    for k in rm.METRICS:
        assert rep[k]["lo"] <= rep[k]["value"] <= rep[k]["hi"], k
        assert rep[k]["n_valid"] == 500
    assert rep["n"] == 20 and rep["sd_y"] == pytest.approx(np.std(y, ddof=1))
    # Same draws as metrics.bootstrap_ci: the RMSEP interval is √ of its MSE interval (up to
    # the interpolation between neighbouring order statistics).
    via_mse = rm.rmsep_ci_from_mse(y, p, n_boot=500, seed=3)
    got = (rep["rmsep"]["lo"], rep["rmsep"]["hi"])
    assert got == pytest.approx((via_mse["lo"], via_mse["hi"]), rel=1e-3)
    assert rm.regression_report(y, p, n_boot=500, seed=3) == rep  # reproducible


def test_report_of_constant_errors_is_degenerate():
    rep = rm.regression_report(Y, Y + 0.2, n_boot=100)
    assert rep["bias"]["lo"] == pytest.approx(0.2) and rep["bias"]["hi"] == pytest.approx(0.2)
    assert rep["rmsep"]["lo"] == pytest.approx(0.2) and rep["rmsep"]["hi"] == pytest.approx(0.2)
    with pytest.raises(ConfigError):
        rm.regression_report(Y, P, n_boot=0)


def test_sign_flip_test_exact_by_hand():
    # d = (1, 2): sums over sign patterns are ±3, ±1 → |T*| ≥ 3 in 2 of 4.
    assert rm.sign_flip_test([1.0, 2.0])["p_value"] == pytest.approx(0.5)
    # d = (1, 1, 1): |T*| = 3 only for all-plus and all-minus → 2 of 8.
    out = rm.sign_flip_test([1.0, 1.0, 1.0])
    assert out["p_value"] == pytest.approx(0.25) and out["exact"]
    assert rm.sign_flip_test(np.zeros(5))["p_value"] == 1.0


def test_sign_flip_monte_carlo_agrees_with_exact():
    d = np.random.default_rng(2).normal(0.3, 1.0, size=18)
    exact = rm.sign_flip_test(d, exact_max=20)["p_value"]
    mc = rm.sign_flip_test(d, exact_max=10, n_perm=20000, seed=1)
    assert not mc["exact"] and mc["p_value"] == pytest.approx(exact, abs=0.015)


def test_paired_comparison():
    rng = np.random.default_rng(4)
    y = rng.normal(size=20)
    a = y + 0.1 * rng.normal(size=20)
    b = y + 0.5 * rng.normal(size=20)
    out = rm.paired_comparison(y, a, b, n_boot=1000, seed=0)
    assert out["rmsep_diff"] == pytest.approx(rm.rmsep(y, a) - rm.rmsep(y, b))
    assert out["lo"] <= out["rmsep_diff"] <= out["hi"] < 0  # a clearly better
    assert out["p_randomisation"] < 0.01 and out["randomisation_exact"]
    ref = paired_bootstrap((a - y) ** 2, (b - y) ** 2, n_boot=1000, seed=0)
    assert out["mse_diff"] == pytest.approx(ref["mean_diff"])
    assert out["p_bootstrap"] == ref["p_value"]
    same = rm.paired_comparison(y, a, a, n_boot=200)
    assert same["rmsep_diff"] == 0 and same["lo"] == same["hi"] == 0
    assert same["p_randomisation"] == 1.0 and same["n_a_better"] == 0
