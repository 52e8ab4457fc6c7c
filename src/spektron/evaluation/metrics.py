"""Metrics for masked spectral reconstruction (E1), reused by cross-spectral prediction (E2).

NumPy in, NumPy out (float64). Spectra are compared as given: normalisation is the caller's.
Per molecule n, with prediction ŷ, truth y, mask m (True = masked, as in
:mod:`spektron.data.masking`) and L points:

- masked MSE = Σ_i m_i (ŷ_i − y_i)² / Σ_i m_i (NaN for a row with nothing masked);
- full MSE = (1/L) Σ_i (ŷ_i − y_i)²;
- cosine = ŷ·y / (‖ŷ‖ ‖y‖) (0 when either spectrum is all zero);
- peak precision / recall / F1: peaks are picked *by the same rule* in ŷ and y
  (:func:`pick_peaks`: prominence ≥ p · max(spectrum)), then matched one-to-one within a
  tolerance τ in cm⁻¹ (:func:`match_peaks`, Hungarian algorithm). With T matched pairs,
  P = T / n_pred, R = T / n_true, F1 = 2T / (n_pred + n_true) (= 2PR / (P + R) when both are
  defined). Conventions (:func:`peak_scores`): P = 0 when nothing is predicted but the truth has
  peaks; R is NaN when the truth has no peaks; F1 = 0 whenever T = 0 and some peak exists; when
  neither spectrum has a peak, P, R and F1 are NaN (undefined: the molecule drops out of the
  means, which ignore NaN, see :func:`bootstrap_ci`);
- intensity-weighted F1 (E2): P_w = Σ_matched h̃_pred / Σ_all h̃_pred,
  R_w = Σ_matched h̃_true / Σ_all h̃_true with peak heights h̃ = max(h, 0), F1_w their harmonic
  mean; and the Pearson correlation of matched peak heights (NaN with fewer than 3 matches).

Uncertainty: percentile bootstrap over molecules (Efron & Tibshirani, "An Introduction to the
Bootstrap", 1993, ch. 13): resample the N per-molecule values with replacement B times, take
the mean of each resample, and report the (1 − level)/2 and (1 + level)/2 quantiles of those B
means. Comparisons of two models on the *same* molecules resample pairs
(:func:`paired_bootstrap`), with the two-sided p-value of the bootstrap test of a zero mean
difference (ibid. §16.4): p = (1 + #{b : |d̄*_b − d̄| ≥ |d̄|}) / (B + 1), which lies in
[1/(B + 1), 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.signal import find_peaks

from spektron.errors import ConfigError, DataError

# Which way is better, for tables and comparisons.
METRIC_DIRECTIONS: dict[str, str] = {
    "masked_mse": "lower",
    "full_mse": "lower",
    "cosine": "higher",
    "peak_precision": "higher",
    "peak_recall": "higher",
    "peak_f1": "higher",
    "peak_f1_weighted": "higher",
    "peak_intensity_corr": "higher",
}

# Bootstrap resamples are drawn in blocks of at most this many indices (int64 + float64 copy:
# ~64 MB), so N = 13,000 molecules × B = 2,000 resamples never materialises at once.
_BOOTSTRAP_BLOCK = 2**22


# --------------------------------------------------------------------------- validation


def _check_spectrum_pair(
    pred: np.ndarray, true: np.ndarray, wavenumber: np.ndarray, ndim: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 copies of pred, true (shape (L,) or (N, L)) and wavenumber (L,), checked."""
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    wavenumber = np.asarray(wavenumber, dtype=np.float64)
    shape = "(L,)" if ndim == 1 else "(N, L)"
    if pred.ndim != ndim or pred.shape != true.shape:
        raise DataError(f"pred and true must both be {shape}, got {pred.shape} and {true.shape}")
    _check_grid(wavenumber, pred.shape[-1])
    for name, x in (("pred", pred), ("true", true)):
        bad = ~np.isfinite(x)
        if bad.any():
            first = np.argwhere(bad)[0].tolist()
            raise DataError(f"{name} has {int(bad.sum())} non-finite values (first at {first})")
    return pred, true, wavenumber


def _check_grid(wavenumber: np.ndarray, length: int) -> None:
    if wavenumber.shape != (length,):
        raise DataError(f"wavenumber must be ({length},), got {wavenumber.shape}")
    if not np.all(np.isfinite(wavenumber)):
        raise DataError("wavenumber has non-finite values")
    steps = np.diff(wavenumber)
    if length > 1 and not (np.all(steps > 0) or np.all(steps < 0)):
        raise DataError("wavenumber must be strictly monotonic")


def _check_peak_params(tolerance: float, prominence: float) -> None:
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise ConfigError(f"peak tolerance must be a finite number >= 0 cm⁻¹, got {tolerance}")
    if not (math.isfinite(prominence) and prominence >= 0):
        raise ConfigError(f"relative peak prominence must be finite and >= 0, got {prominence}")


def _check_bootstrap_params(n_boot: int, level: float) -> None:
    if int(n_boot) != n_boot or n_boot < 1:
        raise ConfigError(f"n_boot must be a positive integer, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ConfigError(f"confidence level must lie in (0, 1), got {level}")


def _finite_or_nan_1d(values: np.ndarray, name: str) -> np.ndarray:
    """float64 1-D copy; NaN allowed (missing), ±inf refused."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise DataError(f"{name} must be 1-D (one value per molecule), got shape {values.shape}")
    if np.isinf(values).any():
        raise DataError(f"{name} has {int(np.isinf(values).sum())} infinite values")
    return values


# --------------------------------------------------------------------------- peaks


def pick_peaks(
    spectrum: np.ndarray,
    wavenumber: np.ndarray,
    prominence: float = 0.05,
    min_distance_cm: float = 0.0,
) -> np.ndarray:
    """Indices of the peaks of one spectrum.

    The same rule is applied to truth and prediction, so a metric never favours one side:
    :func:`scipy.signal.find_peaks` with an absolute prominence threshold
    ``prominence × max(spectrum)`` (relative prominence) and, if ``min_distance_cm > 0``, a
    minimum peak separation of ⌈min_distance_cm / Δν⌉ samples, Δν the median grid spacing.
    A spectrum with max ≤ 0, or a flat one, has no peaks; the two end points are never peaks
    (find_peaks needs a neighbour on each side).

    Parameters
    ----------
    spectrum : np.ndarray
        (L,) intensities.
    wavenumber : np.ndarray
        (L,) strictly monotonic grid in cm⁻¹.
    prominence : float
        Relative prominence p ≥ 0 (fraction of the spectrum's maximum).
    min_distance_cm : float
        Minimum distance between two peaks in cm⁻¹ (0 = no constraint).

    Returns
    -------
    np.ndarray
        (n_peaks,) int64 indices, increasing.
    """
    spectrum = np.asarray(spectrum, dtype=np.float64)
    wavenumber = np.asarray(wavenumber, dtype=np.float64)
    if spectrum.ndim != 1:
        raise DataError(f"spectrum must be (L,), got shape {spectrum.shape}")
    _check_grid(wavenumber, spectrum.shape[0])
    if not np.all(np.isfinite(spectrum)):
        raise DataError("spectrum has non-finite values")
    _check_peak_params(0.0, prominence)
    if not (math.isfinite(min_distance_cm) and min_distance_cm >= 0):
        raise ConfigError(f"min_distance_cm must be finite and >= 0, got {min_distance_cm}")
    top = spectrum.max(initial=0.0)
    if top <= 0:
        return np.zeros(0, dtype=np.int64)
    distance = None
    if min_distance_cm > 0 and spectrum.shape[0] > 1:
        spacing = float(np.median(np.abs(np.diff(wavenumber))))
        distance = max(1, math.ceil(min_distance_cm / spacing))
    peaks, _ = find_peaks(spectrum, prominence=prominence * top, distance=distance)
    return peaks.astype(np.int64)


def match_peaks(
    pred_pos: np.ndarray, true_pos: np.ndarray, tolerance: float
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of predicted to true peak positions within a tolerance.

    Hungarian algorithm (:func:`scipy.optimize.linear_sum_assignment`) on the cost
    c_ij = |ν_i − ν_j| if |ν_i − ν_j| ≤ τ, else C = τ · min(m, n) + 1 (forbidden). An
    assignment pairs r = min(m, n) peaks; with k allowed pairs its cost lies in
    [(r − k) C, (r − k) C + k τ], and k τ < C, so every assignment with more allowed pairs is
    cheaper: the optimum *maximises the number of matches*, and among those minimises the
    total distance. Forbidden pairs are dropped afterwards.

    Parameters
    ----------
    pred_pos, true_pos : np.ndarray
        (m,) and (n,) peak positions in cm⁻¹.
    tolerance : float
        τ ≥ 0 in cm⁻¹ (pairs with |Δν| ≤ τ may match).

    Returns
    -------
    tuple[np.ndarray, np.ndarray]
        (T,) int64 indices into ``pred_pos`` and the (T,) matching indices into ``true_pos``.
    """
    pred_pos = np.asarray(pred_pos, dtype=np.float64).reshape(-1)
    true_pos = np.asarray(true_pos, dtype=np.float64).reshape(-1)
    _check_peak_params(tolerance, 0.0)
    empty = np.zeros(0, dtype=np.int64)
    if pred_pos.size == 0 or true_pos.size == 0:
        return empty, empty.copy()
    dist = np.abs(pred_pos[:, None] - true_pos[None, :])  # (m, n)
    allowed = dist <= tolerance
    if not allowed.any():
        return empty, empty.copy()
    forbidden_cost = tolerance * min(dist.shape) + 1.0
    rows, cols = linear_sum_assignment(np.where(allowed, dist, forbidden_cost))
    keep = allowed[rows, cols]
    return rows[keep].astype(np.int64), cols[keep].astype(np.int64)


def _weighted_share(matched: np.ndarray, heights: np.ndarray) -> float:
    """Σ_matched h̃ / Σ_all h̃ with h̃ = max(h, 0); the unweighted share if all h̃ are 0."""
    w = np.clip(heights, 0.0, None)
    total = w.sum()
    if total > 0:
        return float(w[matched].sum() / total)
    return matched.size / heights.size


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r; NaN with fewer than 3 pairs or a constant side."""
    if x.size < 3:
        return math.nan
    xc, yc = x - x.mean(), y - y.mean()
    denom = math.sqrt(float(xc @ xc) * float(yc @ yc))
    return float(xc @ yc / denom) if denom > 0 else math.nan


def peak_scores(
    pred: np.ndarray,
    true: np.ndarray,
    wavenumber: np.ndarray,
    tolerance: float = 10.0,
    prominence: float = 0.05,
) -> dict[str, float]:
    """Peak-level agreement of one predicted spectrum with the truth.

    Peaks are picked in both by :func:`pick_peaks` (the same relative ``prominence``) and
    matched by :func:`match_peaks` within ``tolerance``; see the module docstring for the
    formulas and the NaN/0 conventions.

    Parameters
    ----------
    pred, true : np.ndarray
        (L,) spectra.
    wavenumber : np.ndarray
        (L,) grid in cm⁻¹.
    tolerance : float
        Matching tolerance τ in cm⁻¹.
    prominence : float
        Relative prominence p.

    Returns
    -------
    dict[str, float]
        ``precision``, ``recall``, ``f1``, ``f1_weighted``, ``intensity_corr`` (floats, NaN where
        undefined) and ``n_pred``, ``n_true``, ``n_matched`` (ints).
    """
    pred, true, wavenumber = _check_spectrum_pair(pred, true, wavenumber, ndim=1)
    _check_peak_params(tolerance, prominence)
    return _peak_scores_unchecked(pred, true, wavenumber, tolerance, prominence)


def _peak_scores_unchecked(
    pred: np.ndarray, true: np.ndarray, wavenumber: np.ndarray, tolerance: float, prominence: float
) -> dict[str, float]:
    p_idx = pick_peaks(pred, wavenumber, prominence)
    t_idx = pick_peaks(true, wavenumber, prominence)
    return _matched_peak_scores(pred, true, wavenumber, p_idx, t_idx, tolerance)


def _matched_peak_scores(
    pred: np.ndarray,
    true: np.ndarray,
    wavenumber: np.ndarray,
    p_idx: np.ndarray,
    t_idx: np.ndarray,
    tolerance: float,
) -> dict[str, float]:
    """:func:`peak_scores` from the picked peak indices of both sides."""
    n_pred, n_true = p_idx.size, t_idx.size
    i_pred, i_true = match_peaks(wavenumber[p_idx], wavenumber[t_idx], tolerance)
    n_matched = i_pred.size
    nan = math.nan
    precision = n_matched / n_pred if n_pred else (0.0 if n_true else nan)
    recall = n_matched / n_true if n_true else nan
    f1 = 2.0 * n_matched / (n_pred + n_true) if n_pred + n_true else nan
    if n_matched:
        p_w = _weighted_share(i_pred, pred[p_idx])
        r_w = _weighted_share(i_true, true[t_idx])
        f1_w = 2.0 * p_w * r_w / (p_w + r_w) if p_w + r_w > 0 else 0.0
    else:
        f1_w = f1  # 0, or NaN when neither side has a peak
    corr = _pearson(pred[p_idx][i_pred], true[t_idx][i_true])
    return {
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "f1_weighted": float(f1_w),
        "intensity_corr": corr,
        "n_pred": int(n_pred),
        "n_true": int(n_true),
        "n_matched": int(n_matched),
    }


def batch_peak_scores(
    pred: np.ndarray,
    true: np.ndarray,
    wavenumber: np.ndarray,
    tolerance: float = 10.0,
    prominence: float = 0.05,
) -> dict[str, np.ndarray]:
    """:func:`peak_scores` for each row of (N, L) ``pred`` and ``true``.

    Returns
    -------
    dict[str, np.ndarray]
        The keys of :func:`peak_scores`, each an (N,) array (float64; int64 for the counts).
    """
    return batch_peak_scores_at(pred, true, wavenumber, (tolerance,), prominence)[0]


def batch_peak_scores_at(
    pred: np.ndarray,
    true: np.ndarray,
    wavenumber: np.ndarray,
    tolerances: Sequence[float],
    prominence: float = 0.05,
) -> list[dict[str, np.ndarray]]:
    """:func:`batch_peak_scores` at each tolerance in ``tolerances`` (one dict each, in that
    order), the peaks of every row picked once."""
    pred, true, wavenumber = _check_spectrum_pair(pred, true, wavenumber, ndim=2)
    for tol in tolerances:
        _check_peak_params(tol, prominence)
    rows: list[list[dict[str, float]]] = [[] for _ in tolerances]
    for p, t in zip(pred, true, strict=True):
        p_idx = pick_peaks(p, wavenumber, prominence)
        t_idx = pick_peaks(t, wavenumber, prominence)
        for j, tol in enumerate(tolerances):
            rows[j].append(_matched_peak_scores(p, t, wavenumber, p_idx, t_idx, tol))
    keys = ("precision", "recall", "f1", "f1_weighted", "intensity_corr")
    result = []
    for at_tol in rows:
        out = {k: np.array([r[k] for r in at_tol], dtype=np.float64) for k in keys}
        for k in ("n_pred", "n_true", "n_matched"):
            out[k] = np.array([r[k] for r in at_tol], dtype=np.int64)
        result.append(out)
    return result


# --------------------------------------------------------------------------- per molecule


def reconstruction_metrics(
    pred: np.ndarray,
    true: np.ndarray,
    mask: np.ndarray,
    wavenumber: np.ndarray,
    tolerance: float = 10.0,
    prominence: float = 0.05,
) -> dict[str, np.ndarray]:
    """Per-molecule E1 metrics of reconstructed spectra (formulas in the module docstring).

    Parameters
    ----------
    pred, true : np.ndarray
        (N, L) predicted and true spectra, finite.
    mask : np.ndarray
        (N, L) bool, True = masked (the positions ``masked_mse`` scores).
    wavenumber : np.ndarray
        (L,) grid in cm⁻¹.
    tolerance : float
        Peak-matching tolerance τ in cm⁻¹.
    prominence : float
        Relative peak prominence p.

    Returns
    -------
    dict[str, np.ndarray]
        (N,) float64 arrays ``masked_mse`` (NaN for a row with nothing masked), ``full_mse``,
        ``cosine`` (0 if either row is all zero), ``peak_precision``, ``peak_recall``,
        ``peak_f1`` (peaks of the whole spectra; NaN where undefined).
    """
    pred, true, wavenumber = _check_spectrum_pair(pred, true, wavenumber, ndim=2)
    mask = np.asarray(mask)
    if mask.shape != pred.shape:
        raise DataError(f"mask must have the spectra's shape {pred.shape}, got {mask.shape}")
    if mask.dtype != np.bool_:
        raise DataError(f"mask must be bool (True = masked), got dtype {mask.dtype}")
    _check_peak_params(tolerance, prominence)

    sq = (pred - true) ** 2  # (N, L)
    n_masked = mask.sum(axis=1)  # (N,)
    with np.errstate(invalid="ignore", divide="ignore"):
        masked_mse = np.where(n_masked > 0, (sq * mask).sum(axis=1) / n_masked, np.nan)
    norms = np.linalg.norm(pred, axis=1) * np.linalg.norm(true, axis=1)  # (N,)
    dots = np.einsum("nl,nl->n", pred, true)  # (N,)
    cosine = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
    peaks = batch_peak_scores(pred, true, wavenumber, tolerance, prominence)
    return {
        "masked_mse": masked_mse,
        "full_mse": sq.mean(axis=1),
        "cosine": cosine,
        "peak_precision": peaks["precision"],
        "peak_recall": peaks["recall"],
        "peak_f1": peaks["f1"],
    }


# --------------------------------------------------------------------------- bootstrap


def _bootstrap_means(x: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot,) means of resamples with replacement of the (n,) values x, drawn in blocks."""
    n = x.size
    rng = np.random.default_rng(seed)
    block = max(1, _BOOTSTRAP_BLOCK // n)
    means = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, block):
        stop = min(start + block, n_boot)
        idx = rng.integers(0, n, size=(stop - start, n))  # (b, n)
        means[start:stop] = x[idx].mean(axis=1)
    return means


def _quantiles(means: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.quantile(means, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(lo), float(hi)


def bootstrap_ci(
    values: np.ndarray, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """Percentile bootstrap confidence interval of the mean over molecules, NaN ignored.

    Parameters
    ----------
    values : np.ndarray
        (N,) per-molecule values; NaN = undefined for that molecule (dropped), ±inf refused.
    n_boot : int
        Number of resamples B.
    level : float
        Confidence level in (0, 1).
    seed : int
        Seed of the resampling (the same seed gives the same resamples for the same n).

    Returns
    -------
    dict[str, float]
        ``mean`` (sample mean of the non-NaN values), ``lo``, ``hi`` and ``n`` (int, number of
        non-NaN values). All NaN when n = 0; lo = hi = mean when the values are constant.
    """
    values = _finite_or_nan_1d(values, "values")
    _check_bootstrap_params(n_boot, level)
    x = values[~np.isnan(values)]
    if x.size == 0:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "n": 0}
    # Shift by one sample: a constant vector gives exact zeros, hence a degenerate interval
    # exactly at the constant (and better rounding when the values sit far from 0).
    shift = x[0]
    centred = x - shift
    lo, hi = _quantiles(_bootstrap_means(centred, int(n_boot), seed), level)
    return {
        "mean": float(shift + centred.mean()),
        "lo": float(shift + lo),
        "hi": float(shift + hi),
        "n": int(x.size),
    }


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """Paired bootstrap of the mean difference a − b over the same molecules.

    Pairs with NaN on either side are dropped; the n differences d_i = a_i − b_i are resampled
    (pairs stay together, so the molecule-to-molecule variation shared by a and b cancels).
    The interval is the percentile interval of the resampled means d̄*_b; the two-sided
    p-value of H0: E[d] = 0 centres the bootstrap distribution on the null,
    p = (1 + #{b : |d̄*_b − d̄| ≥ |d̄|}) / (B + 1) ∈ [1/(B + 1), 1] (Efron & Tibshirani 1993,
    §16.4; the +1 keeps p > 0). Like any bootstrap it is unreliable for very small n.

    Parameters
    ----------
    a, b : np.ndarray
        (N,) per-molecule values of two models on the same molecules, in the same order.
    n_boot, level, seed
        As in :func:`bootstrap_ci`.

    Returns
    -------
    dict[str, float]
        ``mean_diff`` (mean of a − b), ``lo``, ``hi``, ``p_value`` and ``n`` (int, pairs
        used). All NaN when no pair is complete.
    """
    a = _finite_or_nan_1d(a, "a")
    b = _finite_or_nan_1d(b, "b")
    if a.shape != b.shape:
        raise DataError(f"a and b must pair the same molecules, got shapes {a.shape}, {b.shape}")
    _check_bootstrap_params(n_boot, level)
    d = (a - b)[~(np.isnan(a) | np.isnan(b))]
    if d.size == 0:
        nan = math.nan
        return {"mean_diff": nan, "lo": nan, "hi": nan, "p_value": nan, "n": 0}
    shift = d[0]
    centred = d - shift
    centred_mean = centred.mean()
    means = _bootstrap_means(centred, int(n_boot), seed)  # (B,) resampled means − shift
    mean_diff = shift + centred_mean
    extreme = np.abs(means - centred_mean) >= abs(mean_diff)
    lo, hi = _quantiles(means, level)
    return {
        "mean_diff": float(mean_diff),
        "lo": float(shift + lo),
        "hi": float(shift + hi),
        "p_value": float((1 + extreme.sum()) / (n_boot + 1)),
        "n": int(d.size),
    }


def summarise(per_molecule: dict[str, np.ndarray], **bootstrap_kwargs) -> dict[str, dict]:
    """:func:`bootstrap_ci` of every per-molecule metric (keyword arguments passed through).

    Every metric uses the same seed, so metrics defined on the same molecules share resamples.
    See :data:`METRIC_DIRECTIONS` for which way is better.
    """
    return {name: bootstrap_ci(v, **bootstrap_kwargs) for name, v in per_molecule.items()}


def holm(pvalues: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the order given (Holm, Scand. J. Stat. 6 (1979)
    65): the k-th smallest of m is multiplied by m − k + 1, capped at 1, made non-decreasing."""
    m = len(pvalues)
    order = np.argsort(pvalues)
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adj[i] = running
    return adj.tolist()
