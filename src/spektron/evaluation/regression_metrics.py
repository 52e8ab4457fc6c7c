"""Regression metrics of calibration transfer (E4), with bootstrap intervals and paired tests.

NumPy in, NumPy out (float64). With reference values y_i, predictions ŷ_i and prediction
errors e_i = ŷ_i − y_i over the n test samples (the sign convention: a positive bias means the
method over-predicts):

- RMSEP = √((1/n) Σ e_i²), root mean squared error of prediction;
- bias = ē = (1/n) Σ e_i;
- SEP = √(Σ (e_i − ē)² / (n − 1)), the bias-corrected standard error of prediction, so that
  RMSEP² = ē² + ((n − 1)/n) SEP²;
- R² = 1 − Σ e_i² / Σ (y_i − ȳ)², the coefficient of determination of the predictions (the
  reference's own mean as the null model; negative when a method is worse than predicting ȳ);
- RPD = SD(y) / SEP, SD(y) = √(Σ (y_i − ȳ)² / (n − 1)), the ratio of performance to
  deviation (Williams): how many times smaller the bias-corrected error is than the spread of
  the reference values.

SEP and RPD need n ≥ 2 (NaN otherwise); R² and RPD are NaN when every y_i is the same.

Uncertainty (:func:`regression_report`): percentile bootstrap over test samples (Efron &
Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 13). The n pairs (y_i, ŷ_i) are
resampled with replacement B times, every metric is recomputed on each resample, and the
(1 − level)/2 and (1 + level)/2 quantiles of the B values are reported. Resamples on which a
metric is undefined (all y equal: R², RPD; a single distinct sample: SEP) are left out of its
quantiles. The index draws are those of :func:`spektron.evaluation.metrics.bootstrap_ci` with
the same seed, so the RMSEP interval is √ of that function's interval of the mean squared error
(the percentile interval respects monotone transformations), up to the linear interpolation
between neighbouring order statistics that both quantiles use.

Comparisons of two methods on the same test samples (:func:`paired_comparison`) resample the
samples jointly (paired bootstrap of RMSEP_a − RMSEP_b) and run a sign-flip randomisation test
on the per-sample differences of squared errors d_i = e_{a,i}² − e_{b,i}²: under H0 (the two
methods are exchangeable on every sample) each d_i is as likely to be −d_i, so the two-sided
p-value is the share of the 2ⁿ sign patterns s with |Σ s_i d_i| ≥ |Σ d_i|. It is enumerated
exactly for n ≤ ``exact_max`` (corn has 20 test samples: 2²⁰ patterns, by meet-in-the-middle
sums of the two halves) and by Monte Carlo above, p = (1 + #{|T*| ≥ |T|}) / (1 + draws).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from spektron.errors import ConfigError, DataError
from spektron.evaluation.metrics import _BOOTSTRAP_BLOCK, bootstrap_ci, paired_bootstrap

METRICS: tuple[str, ...] = ("rmsep", "bias", "sep", "r2", "rpd")
# Which way is better for each metric (+1: larger, −1: smaller, 0: closer to zero).
METRIC_DIRECTIONS: dict[str, int] = {"rmsep": -1, "bias": 0, "sep": -1, "r2": 1, "rpd": 1}
# Ties of the randomisation statistic: |T*| ≥ |T| − tol, tol relative to Σ|d_i| (a float sum
# of n terms can differ in the last bits when the same signs are added in another order).
_TIE_RTOL = 1e-12


def _pair(y_true: Any, y_pred: Any, what: str = "y_pred") -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.ndim != 1 or y_true.size == 0:
        raise DataError(f"y_true must be a non-empty 1-D array, got shape {y_true.shape}")
    if y_pred.shape != y_true.shape:
        raise DataError(f"{what} must have y_true's shape {y_true.shape}, got {y_pred.shape}")
    for name, v in (("y_true", y_true), (what, y_pred)):
        if not np.all(np.isfinite(v)):
            raise DataError(f"{name} has {int((~np.isfinite(v)).sum())} non-finite values")
    return y_true, y_pred


# --------------------------------------------------------------------------- point metrics
# The batch forms below take (B, n) arrays and return (B,), one value per row (a resample).


def _rmsep(e: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean(e**2, axis=-1))


def _sep(e: np.ndarray) -> np.ndarray:
    n = e.shape[-1]
    if n < 2:
        return np.full(e.shape[:-1], np.nan)
    return np.std(e, axis=-1, ddof=1)


def _r2(y: np.ndarray, e: np.ndarray) -> np.ndarray:
    ss_tot = np.sum((y - y.mean(axis=-1, keepdims=True)) ** 2, axis=-1)
    ss_res = np.sum(e**2, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), np.nan)


def _rpd(y: np.ndarray, e: np.ndarray) -> np.ndarray:
    n = y.shape[-1]
    if n < 2:
        return np.full(y.shape[:-1], np.nan)
    sd = np.std(y, axis=-1, ddof=1)
    sep = np.std(e, axis=-1, ddof=1)
    ok = (sd > 0) & (sep > 0)
    return np.where(ok, sd / np.where(ok, sep, 1.0), np.where(sd > 0, np.inf, np.nan))


def _all_metrics(y: np.ndarray, e: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "rmsep": _rmsep(e),
        "bias": e.mean(axis=-1),
        "sep": _sep(e),
        "r2": _r2(y, e),
        "rpd": _rpd(y, e),
    }


def rmsep(y_true: Any, y_pred: Any) -> float:
    """Root mean squared error of prediction √((1/n) Σ (ŷ_i − y_i)²)."""
    y, p = _pair(y_true, y_pred)
    return float(_rmsep(p - y))


def bias(y_true: Any, y_pred: Any) -> float:
    """Mean prediction error (1/n) Σ (ŷ_i − y_i); positive = over-prediction."""
    y, p = _pair(y_true, y_pred)
    return float(np.mean(p - y))


def sep(y_true: Any, y_pred: Any) -> float:
    """Bias-corrected standard error of prediction √(Σ (e_i − ē)² / (n − 1)); NaN for n = 1."""
    y, p = _pair(y_true, y_pred)
    return float(_sep(p - y))


def r2(y_true: Any, y_pred: Any) -> float:
    """1 − Σ e_i² / Σ (y_i − ȳ)² (NaN when all y_i are equal; may be negative)."""
    y, p = _pair(y_true, y_pred)
    return float(_r2(y, p - y))


def rpd(y_true: Any, y_pred: Any) -> float:
    """SD(y) / SEP with n − 1 in both (NaN for n = 1 or constant y; inf when SEP = 0)."""
    y, p = _pair(y_true, y_pred)
    return float(_rpd(y, p - y))


# --------------------------------------------------------------------------- bootstrap


def _check_boot(n_boot: int, level: float) -> None:
    if int(n_boot) != n_boot or n_boot < 1:
        raise ConfigError(f"n_boot must be a positive integer, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ConfigError(f"confidence level must lie in (0, 1), got {level}")


def _resample_index(n: int, n_boot: int, seed: int):
    """(b, n) index blocks, the same draws as :func:`metrics.bootstrap_ci` for this seed."""
    rng = np.random.default_rng(seed)
    block = max(1, _BOOTSTRAP_BLOCK // n)
    for start in range(0, n_boot, block):
        stop = min(start + block, n_boot)
        yield rng.integers(0, n, size=(stop - start, n))  # (b, n)


def _interval(values: np.ndarray, level: float) -> tuple[float, float, int]:
    """Percentile interval of the finite values, and how many were finite."""
    ok = values[np.isfinite(values)]
    if ok.size == 0:
        return math.nan, math.nan, 0
    lo, hi = np.quantile(ok, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(lo), float(hi), int(ok.size)


def regression_report(
    y_true: Any, y_pred: Any, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> dict[str, Any]:
    """Every metric of the module docstring with its percentile bootstrap interval.

    Parameters
    ----------
    y_true, y_pred : array-like
        (n,) reference values and predictions of the same test samples, finite.
    n_boot : int
        Number of bootstrap resamples B.
    seed : int
        Seed of the resampling (the same seed gives the same resamples for the same n).
    level : float
        Confidence level in (0, 1).

    Returns
    -------
    dict
        For each of ``rmsep``, ``bias``, ``sep``, ``r2``, ``rpd`` a dict ``value``, ``lo``,
        ``hi``, ``n_valid`` (resamples on which the metric was defined), plus ``n`` (samples),
        ``n_boot``, ``level`` and ``sd_y`` (SD of the reference values, n − 1).
    """
    y, p = _pair(y_true, y_pred)
    _check_boot(n_boot, level)
    e = p - y
    point = _all_metrics(y, e)
    draws: dict[str, list[np.ndarray]] = {k: [] for k in METRICS}
    for idx in _resample_index(y.size, int(n_boot), seed):
        for k, v in _all_metrics(y[idx], e[idx]).items():
            draws[k].append(v)
    out: dict[str, Any] = {}
    for k in METRICS:
        lo, hi, n_valid = _interval(np.concatenate(draws[k]), level)
        out[k] = {"value": float(point[k]), "lo": lo, "hi": hi, "n_valid": n_valid}
    out["n"] = int(y.size)
    out["n_boot"] = int(n_boot)
    out["level"] = float(level)
    out["sd_y"] = float(np.std(y, ddof=1)) if y.size > 1 else math.nan
    return out


def rmsep_ci_from_mse(
    y_true: Any, y_pred: Any, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> dict[str, float]:
    """RMSEP interval as √ of :func:`metrics.bootstrap_ci` of the squared errors.

    The RMSEP entry of :func:`regression_report` with the same seed agrees (tested): both use
    the same index draws and the percentile interval commutes with the monotone √, except for
    the interpolation between the two order statistics next to each quantile.
    """
    y, p = _pair(y_true, y_pred)
    ci = bootstrap_ci((p - y) ** 2, n_boot=n_boot, level=level, seed=seed)
    return {"value": math.sqrt(ci["mean"]), "lo": math.sqrt(ci["lo"]), "hi": math.sqrt(ci["hi"])}


# --------------------------------------------------------------------------- paired tests


def _sign_sums(d: np.ndarray) -> np.ndarray:
    """(2^m,) all sums Σ s_i d_i over sign patterns s ∈ {−1, 1}^m."""
    sums = np.zeros(1)
    for v in d:
        sums = np.concatenate([sums + v, sums - v])
    return sums


def sign_flip_test(
    d: Any, exact_max: int = 20, n_perm: int = 20000, seed: int = 0
) -> dict[str, Any]:
    """Two-sided sign-flip randomisation test of H0: d is symmetric about 0.

    Statistic T = Σ d_i (equivalently the mean). Exact over all 2ⁿ sign patterns when
    n ≤ ``exact_max`` (p = #{|T*| ≥ |T|} / 2ⁿ, the identity pattern included, so p ≥ 2⁻ⁿ),
    otherwise Monte Carlo with ``n_perm`` random patterns, p = (1 + #{|T*| ≥ |T|}) /
    (1 + n_perm).

    Returns
    -------
    dict
        ``p_value``, ``statistic`` (mean of d), ``n``, ``exact`` (bool).
    """
    d = np.asarray(d, dtype=np.float64).reshape(-1)
    if d.size == 0 or not np.all(np.isfinite(d)):
        raise DataError("sign-flip test needs a non-empty, finite vector of differences")
    if int(exact_max) != exact_max or exact_max < 1 or exact_max > 26:
        raise ConfigError(f"exact_max must be an integer in [1, 26], got {exact_max}")
    if int(n_perm) != n_perm or n_perm < 1:
        raise ConfigError(f"n_perm must be a positive integer, got {n_perm}")
    t_obs = abs(float(d.sum()))
    tol = _TIE_RTOL * float(np.abs(d).sum())
    n = d.size
    if n <= exact_max:
        half = n // 2
        a, b = _sign_sums(d[:half]), _sign_sums(d[half:])  # (2^h,), (2^(n−h),)
        count = 0
        for start in range(0, a.size, 1024):  # ≤ 1024 × 2^(n−h) sums at a time
            total = a[start : start + 1024, None] + b[None, :]
            count += int((np.abs(total) >= t_obs - tol).sum())
        p = count / float(2**n)
        exact = True
    else:
        rng = np.random.default_rng(seed)
        count = 0
        for start in range(0, int(n_perm), 4096):
            m = min(4096, int(n_perm) - start)
            signs = rng.choice(np.array([-1.0, 1.0]), size=(m, n))
            count += int((np.abs(signs @ d) >= t_obs - tol).sum())
        p = (1 + count) / (1 + int(n_perm))
        exact = False
    return {"p_value": float(p), "statistic": float(d.mean()), "n": int(n), "exact": exact}


def paired_comparison(
    y_true: Any,
    pred_a: Any,
    pred_b: Any,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    exact_max: int = 20,
    n_perm: int = 20000,
) -> dict[str, Any]:
    """Compare methods a and b on the same test samples (module docstring).

    Parameters
    ----------
    y_true, pred_a, pred_b : array-like
        (n,) reference values and the two methods' predictions, same samples, same order.
    n_boot, level, seed
        Paired bootstrap settings (as :func:`regression_report`).
    exact_max, n_perm
        Sign-flip test settings (:func:`sign_flip_test`).

    Returns
    -------
    dict
        ``rmsep_a``, ``rmsep_b``, ``rmsep_diff`` (a − b; negative: a is better) with ``lo``,
        ``hi`` (paired percentile bootstrap), ``mse_diff`` with ``p_bootstrap``
        (:func:`metrics.paired_bootstrap` of the squared errors: H0 equal mean squared error),
        ``p_randomisation`` (sign-flip test on e_a² − e_b²), ``randomisation_exact``,
        ``n_a_better`` (samples with |e_a| < |e_b|) and ``n``.
    """
    y, a = _pair(y_true, pred_a, "pred_a")
    _, b = _pair(y_true, pred_b, "pred_b")
    _check_boot(n_boot, level)
    sq_a, sq_b = (a - y) ** 2, (b - y) ** 2
    diffs = [
        np.sqrt(sq_a[idx].mean(axis=1)) - np.sqrt(sq_b[idx].mean(axis=1))
        for idx in _resample_index(y.size, int(n_boot), seed)
    ]
    lo, hi, _ = _interval(np.concatenate(diffs), level)
    boot = paired_bootstrap(sq_a, sq_b, n_boot=n_boot, level=level, seed=seed)
    flip = sign_flip_test(sq_a - sq_b, exact_max=exact_max, n_perm=n_perm, seed=seed)
    rmsep_a, rmsep_b = math.sqrt(sq_a.mean()), math.sqrt(sq_b.mean())
    return {
        "rmsep_a": rmsep_a,
        "rmsep_b": rmsep_b,
        "rmsep_diff": rmsep_a - rmsep_b,
        "lo": lo,
        "hi": hi,
        "mse_diff": boot["mean_diff"],
        "p_bootstrap": boot["p_value"],
        "p_randomisation": flip["p_value"],
        "randomisation_exact": flip["exact"],
        "n_a_better": int((np.abs(a - y) < np.abs(b - y)).sum()),
        "n": int(y.size),
        "n_boot": int(n_boot),
        "level": float(level),
    }
