"""Metrics for cross-spectral prediction (E2: IR → Raman and Raman → IR).

NumPy in, NumPy out (float64), one value per molecule. The peak metrics and the bootstrap are
those of E1 (:mod:`spektron.evaluation.metrics`); this module adds the normalisation, the
distribution metrics, the spectral regions and the skill score.

**Normalisation.** :func:`cross_spectral_metrics` applies one named rule
(:func:`spektron.chemistry.spectra.normalize_spectra`: ``max``, ``area``, ``l2`` or ``none``) to the
prediction *and* to the truth itself, over the whole grid, before any metric; a baseline goes
through the same function, hence the same rule. Predictions are not clipped. Cosine, SID (up to
ε), Wasserstein and every peak metric are invariant to a positive scale of either spectrum; MSE
is the one metric the choice of rule changes.

**Per-spectrum metrics**, for a normalised prediction x and truth y on the points i of a region
(x⁺ = max(x, 0)):

- MSE = (1/L) Σ_i (x_i − y_i)²;
- cosine = x·y / (‖x‖ ‖y‖), 0 when either side is all zero;
- spectral information divergence (Chang, IEEE Trans. Inf. Theory 46, 2000; used for IR spectra
  by McGill et al., JCIM 61, 2021): with p_i = (x⁺_i + ε) / Σ_j (x⁺_j + ε) and q_i likewise from
  y⁺, SID = Σ_i p_i log(p_i / q_i) + Σ_i q_i log(q_i / p_i) ≥ 0, 0 iff p = q. ε (``sid_eps``,
  default 1e-8, added to the *normalised* spectra) keeps it finite where a spectrum is zero;
- 1-D Wasserstein distance W1 in cm⁻¹ (Villani 2009) between a = x⁺/Σx⁺ and b = y⁺/Σy⁺ as
  unit masses on the grid points: with the cumulative sums A_k = Σ_{i≤k} a_i, B_k likewise,
  W1 = Σ_k |A_k − B_k| |ν_{k+1} − ν_k| (exact for point masses; equals
  :func:`scipy.stats.wasserstein_distance` with these weights). NaN if Σx⁺ = 0 or Σy⁺ = 0;
- peak metrics (:func:`spektron.evaluation.metrics.batch_peak_scores`): the same picking rule
  on both sides (prominence ≥ p · max of the spectrum), one-to-one Hungarian matching within
  each tolerance τ, precision (0 when nothing is predicted), recall, F1, intensity-weighted F1
  and the Pearson correlation of matched peak heights, each at every τ (default 5, 10, 20
  cm⁻¹), keyed ``peak_f1@10`` etc.

SID and Wasserstein need non-negative masses, hence x⁺; MSE, cosine and the peak metrics see the
signed prediction, so negative lobes are penalised there.

**Regions.** Every metric is reported over the whole grid (``full``), the fingerprint region
(500–1800 cm⁻¹) and the X–H stretch region (2700–3800 cm⁻¹), bounds inclusive, keyed
``"{region}/{metric}"``. A region's metrics use only the grid points inside it, *after* the
global normalisation (spectra are not renormalised per region, so regional MSE stays comparable
with the full one; the rest of the grid enters only through the normalising constant). Within a
region, SID and Wasserstein compare the regional shapes (each slice is made unit mass), peaks
are picked on the slice (prominence relative to the slice's maximum, the slice's end points
never peaks).

**Primary metric:** ``full/cosine`` (:data:`PRIMARY_METRIC`). IR and Raman of a molecule share
its mode positions (every mode of a non-centrosymmetric molecule is active in both), so copying
the input spectrum already scores a sizeable position-only peak F1: a primary metric must reward
the relative intensities, which is where IR and Raman differ (dipole versus polarisability
derivatives). Cosine is 1 only when the relative intensities agree at every point; the
intensity-weighted F1 merely weights *which* peaks are found by their heights and does not
penalise a matched peak of the wrong height. Cosine is also invariant to the normalisation
rule, defined for every molecule (no NaN drop-outs, unlike peak F1 when neither side has a
peak), free of tuning knobs (prominence, tolerance) and bounded with best value 1, so its skill
score is well defined. Measured on 300 molecules of the simulated QM9 store (n3000, MMFF,
IR → Raman, defaults): the identity copy scores peak F1@10 = 0.43 (0.64 at prominence 0.01)
but cosine 0.49, close to a random other molecule's Raman spectrum (0.45). Cosine's blind spot
is hedging: the mean training spectrum scores 0.66, *above* the copy. Hence E2 reports skill
against the mean-spectrum baseline (the strongest trivial one on this metric) as well as the
copy, and reports peak F1 / weighted F1 next to cosine, which a blurred prediction does not
win (mean spectrum: F1@10 = 0.32, weighted 0.41, against the copy's 0.43 and 0.48).

**Skill** relative to a baseline (Murphy, Mon. Wea. Rev. 116, 1988): with the means m̄ (model)
and r̄ (reference) over the molecules where both are defined and the metric's best value s*,
S = (m̄ − r̄) / (s* − r̄): 1 − m̄/r̄ for "lower" metrics (s* = 0), (m̄ − r̄) / (1 − r̄) for
"higher" ones (s* = 1; every "higher" metric here is at most 1). S = 0: no better than the
reference, S = 1: perfect, S < 0: worse. Uncertainty: the paired bootstrap of the per-molecule
differences (:func:`spektron.evaluation.metrics.paired_bootstrap`; its p-value tests S = 0,
since S has the sign of m̄ − r̄) and a percentile interval of S itself from the same paired
resamples.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from spektron.chemistry.spectra import NORMALIZATIONS, normalize_spectra
from spektron.errors import ConfigError
from spektron.evaluation.metrics import (
    _bootstrap_means,
    _check_peak_params,
    _check_spectrum_pair,
    batch_peak_scores_at,
    paired_bootstrap,
    summarise,
)

# Bounds in cm⁻¹, inclusive; None = open end.
REGIONS: dict[str, tuple[float | None, float | None]] = {
    "full": (None, None),
    "fingerprint": (500.0, 1800.0),
    "xh_stretch": (2700.0, 3800.0),
}

# Which way is better, per base metric (the part of a key after "/" and before "@").
CROSS_SPECTRAL_DIRECTIONS: dict[str, str] = {
    "mse": "lower",
    "cosine": "higher",
    "sid": "lower",
    "wasserstein": "lower",
    "peak_precision": "higher",
    "peak_recall": "higher",
    "peak_f1": "higher",
    "peak_f1_weighted": "higher",
    "peak_intensity_corr": "higher",
}

# The E2 headline metric; why it is this one is in the module docstring.
PRIMARY_METRIC = "full/cosine"

# Best attainable value of every metric above, by direction (used by :func:`skill`).
_BEST = {"lower": 0.0, "higher": 1.0}

# batch_peak_scores key → our base metric name.
_PEAK_KEYS = {
    "precision": "peak_precision",
    "recall": "peak_recall",
    "f1": "peak_f1",
    "f1_weighted": "peak_f1_weighted",
    "intensity_corr": "peak_intensity_corr",
}


# --------------------------------------------------------------------------- keys


def direction(key: str) -> str:
    """``"lower"`` or ``"higher"`` for a metric key, e.g. ``"fingerprint/peak_f1@10"``.

    The region prefix and the tolerance suffix are ignored, so a bare name (``"sid"``) works too.
    """
    base = key.rsplit("/", 1)[-1].split("@", 1)[0]
    if base not in CROSS_SPECTRAL_DIRECTIONS:
        raise ConfigError(
            f"unknown cross-spectral metric {key!r}; "
            f"base names: {sorted(CROSS_SPECTRAL_DIRECTIONS)}"
        )
    return CROSS_SPECTRAL_DIRECTIONS[base]


def _tolerance_label(tolerance: float) -> str:
    return f"{tolerance:g}"  # 10.0 → "10", 2.5 → "2.5"


# --------------------------------------------------------------------------- validation


def _check_params(
    normalization: str, tolerances: Sequence[float], prominence: float, sid_eps: float
) -> tuple[float, ...]:
    if normalization not in NORMALIZATIONS:
        raise ConfigError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    tolerances = tuple(float(t) for t in tolerances)
    if not tolerances:
        raise ConfigError("tolerances must name at least one peak-matching tolerance")
    for t in tolerances:
        _check_peak_params(t, prominence)
    labels = [_tolerance_label(t) for t in tolerances]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"tolerances must be distinct (they name the keys), got {tolerances}")
    if not (math.isfinite(sid_eps) and sid_eps > 0):
        raise ConfigError(f"sid_eps must be finite and > 0, got {sid_eps}")
    return tolerances


def _region_slices(
    regions: Mapping[str, tuple[float | None, float | None]], wavenumber: np.ndarray
) -> dict[str, slice]:
    """Contiguous index range of each region on the (monotonic) grid, bounds inclusive."""
    if not regions:
        raise ConfigError("regions must name at least one region")
    out = {}
    for name, bounds in regions.items():
        if not isinstance(name, str) or not name or "/" in name:
            raise ConfigError(f"region names must be non-empty strings without '/', got {name!r}")
        if len(bounds) != 2:
            raise ConfigError(f"region {name!r} must be (lo, hi), got {bounds!r}")
        lo = -math.inf if bounds[0] is None else float(bounds[0])
        hi = math.inf if bounds[1] is None else float(bounds[1])
        if math.isnan(lo) or math.isnan(hi) or not lo < hi:
            raise ConfigError(f"region {name!r} needs lo < hi, got {bounds!r}")
        inside = np.flatnonzero((wavenumber >= lo) & (wavenumber <= hi))
        # Three points: the fewest on which a peak (a point with two lower neighbours) can exist.
        if inside.size < 3:
            raise ConfigError(
                f"region {name!r} {bounds!r} covers {inside.size} grid points, need at least 3"
            )
        out[name] = slice(int(inside[0]), int(inside[-1]) + 1)
    return out


# --------------------------------------------------------------------------- metrics


def _cosine(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise cosine of (N, L) arrays, 0 where either row is all zero."""
    norms = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)  # (N,)
    dots = np.einsum("nl,nl->n", x, y)  # (N,)
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def _sid(x: np.ndarray, y: np.ndarray, eps: float) -> np.ndarray:
    """Row-wise spectral information divergence of x⁺ + ε and y⁺ + ε, (N, L) → (N,)."""
    p = np.clip(x, 0.0, None) + eps  # (N, L)
    q = np.clip(y, 0.0, None) + eps  # (N, L)
    p /= p.sum(axis=1, keepdims=True)
    q /= q.sum(axis=1, keepdims=True)
    log_ratio = np.log(p) - np.log(q)  # (N, L)
    # Σ p log(p/q) + Σ q log(q/p) = Σ (p − q) log(p/q): one pass, every term ≥ 0.
    return np.einsum("nl,nl->n", p - q, log_ratio)


def _wasserstein(x: np.ndarray, y: np.ndarray, wavenumber: np.ndarray) -> np.ndarray:
    """Row-wise W1 in cm⁻¹ between x⁺ and y⁺ as unit masses on the grid, NaN if one is empty."""
    a = np.clip(x, 0.0, None)  # (N, L)
    b = np.clip(y, 0.0, None)  # (N, L)
    mass_a, mass_b = a.sum(axis=1), b.sum(axis=1)  # (N,)
    ok = (mass_a > 0) & (mass_b > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cdf_gap = np.cumsum(a / mass_a[:, None] - b / mass_b[:, None], axis=1)  # (N, L)
    # |A_k − B_k| is the mass that must cross the gap between points k and k + 1; on a
    # decreasing grid the cumulative sums run the other way but the crossing mass is the same.
    w = np.abs(cdf_gap[:, :-1]) @ np.abs(np.diff(wavenumber))  # (N,)
    return np.where(ok, w, np.nan)


def cross_spectral_metrics(
    pred: np.ndarray,
    true: np.ndarray,
    wavenumber: np.ndarray,
    normalization: str = "max",
    tolerances: Sequence[float] = (5.0, 10.0, 20.0),
    prominence: float = 0.05,
    sid_eps: float = 1e-8,
    regions: Mapping[str, tuple[float | None, float | None]] = REGIONS,
) -> dict[str, np.ndarray]:
    """Per-molecule E2 metrics of predicted spectra, per region (see the module docstring).

    Parameters
    ----------
    pred, true : np.ndarray
        (N, L) predicted and true spectra, finite, on the same grid, *not* yet normalised (or
        normalised by any positive scale: the rule below is applied to both here).
    wavenumber : np.ndarray
        (L,) strictly monotonic grid in cm⁻¹.
    normalization : str
        Rule of :func:`spektron.chemistry.spectra.normalize_spectra` applied to every row of
        ``pred`` and of ``true`` over the whole grid: ``max``, ``area``, ``l2`` or ``none``.
    tolerances : Sequence[float]
        Peak-matching tolerances τ in cm⁻¹, distinct, each giving its own ``@τ`` keys.
    prominence : float
        Relative peak prominence p, the same for prediction and truth.
    sid_eps : float
        ε > 0 added to every point of the normalised, clipped spectra before SID.
    regions : Mapping[str, tuple[float | None, float | None]]
        Region name → inclusive bounds in cm⁻¹ (None = open end); each must cover ≥ 3 points.

    Returns
    -------
    dict[str, np.ndarray]
        (N,) float64 arrays keyed ``"{region}/{metric}"`` with metric ``mse``, ``cosine``,
        ``sid``, ``wasserstein`` and, for every τ, ``peak_precision@τ``, ``peak_recall@τ``,
        ``peak_f1@τ``, ``peak_f1_weighted@τ``, ``peak_intensity_corr@τ`` (τ written with
        ``:g``, e.g. ``@10``). NaN marks an undefined value (Wasserstein without positive mass,
        peak scores without peaks, see :func:`spektron.evaluation.metrics.peak_scores`).
    """
    pred, true, wavenumber = _check_spectrum_pair(pred, true, wavenumber, ndim=2)
    tolerances = _check_params(normalization, tolerances, prominence, sid_eps)
    slices = _region_slices(regions, wavenumber)

    pred = normalize_spectra(pred, normalization)  # (N, L)
    true = normalize_spectra(true, normalization)  # (N, L)
    out: dict[str, np.ndarray] = {}
    for name, sl in slices.items():
        x, y, nu = pred[:, sl], true[:, sl], wavenumber[sl]  # (N, l), (N, l), (l,)
        out[f"{name}/mse"] = ((x - y) ** 2).mean(axis=1)
        out[f"{name}/cosine"] = _cosine(x, y)
        out[f"{name}/sid"] = _sid(x, y, sid_eps)
        out[f"{name}/wasserstein"] = _wasserstein(x, y, nu)
        for tol, peaks in zip(
            tolerances, batch_peak_scores_at(x, y, nu, tolerances, prominence), strict=True
        ):
            for src, base in _PEAK_KEYS.items():
                out[f"{name}/{base}@{_tolerance_label(tol)}"] = peaks[src]
    return out


# --------------------------------------------------------------------------- summaries


def summarise_cross_spectral(
    per_spectrum: Mapping[str, np.ndarray], n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> dict[str, dict]:
    """Mean and percentile-bootstrap CI of every per-molecule metric, NaN ignored.

    :func:`spektron.evaluation.metrics.bootstrap_ci` per key, all with the same seed (metrics of
    the same molecules share resamples). Use :func:`direction` for which way is better.
    """
    for key in per_spectrum:
        direction(key)  # refuse keys whose direction a report could not state
    return summarise(dict(per_spectrum), n_boot=n_boot, level=level, seed=seed)


def skill(
    model_values: np.ndarray,
    reference_values: np.ndarray,
    direction: str,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Skill score of a model relative to a reference (baseline) on the same molecules.

    S = (m̄ − r̄) / (s* − r̄) with s* = 0 for ``"lower"`` metrics (S = 1 − m̄/r̄) and s* = 1 for
    ``"higher"`` ones (S = (m̄ − r̄)/(1 − r̄)), the means over the molecules where both values are
    defined (non-NaN). S = 0: as good as the reference, 1: perfect, < 0: worse.

    Parameters
    ----------
    model_values, reference_values : np.ndarray
        (N,) per-molecule values of one metric, same molecules in the same order.
    direction : str
        ``"lower"`` or ``"higher"`` (see :func:`direction` / :data:`CROSS_SPECTRAL_DIRECTIONS`).
    n_boot, level, seed
        As in :func:`spektron.evaluation.metrics.paired_bootstrap`.

    Returns
    -------
    dict[str, float]
        ``skill``, its percentile interval ``skill_lo``/``skill_hi`` (pairs resampled together;
        resamples where r̄* = s* are dropped), ``mean_model``, ``mean_reference``, the paired
        bootstrap of the differences model − reference (``mean_diff``, ``diff_lo``,
        ``diff_hi``, ``p_value``: two-sided test of S = 0) and ``n`` (int, pairs used). Skill
        values are NaN when r̄ = s* (a perfect reference leaves nothing to improve) or n = 0.
    """
    if direction not in _BEST:
        raise ConfigError(f"direction must be 'lower' or 'higher', got {direction!r}")
    # paired_bootstrap validates the pair (1-D, same shape, no ±inf) and the bootstrap settings.
    paired = paired_bootstrap(model_values, reference_values, n_boot=n_boot, level=level, seed=seed)
    diff = {
        "mean_diff": paired["mean_diff"],
        "diff_lo": paired["lo"],
        "diff_hi": paired["hi"],
        "p_value": paired["p_value"],
        "n": paired["n"],
    }
    model = np.asarray(model_values, dtype=np.float64)
    ref = np.asarray(reference_values, dtype=np.float64)
    keep = ~(np.isnan(model) | np.isnan(ref))
    m, r = model[keep], ref[keep]
    nan = math.nan
    if m.size == 0:
        undefined = ("skill", "skill_lo", "skill_hi", "mean_model", "mean_reference")
        return dict.fromkeys(undefined, nan) | diff
    best = _BEST[direction]
    m_bar, r_bar = float(m.mean()), float(r.mean())
    score = (m_bar - r_bar) / (best - r_bar) if r_bar != best else nan
    # The same seed and n draw the same indices, so m* and r* come from the same resampled pairs.
    m_star = _bootstrap_means(m, int(n_boot), seed)  # (B,)
    r_star = _bootstrap_means(r, int(n_boot), seed)  # (B,)
    gap = best - r_star  # (B,)
    with np.errstate(invalid="ignore", divide="ignore"):
        s_star = np.where(gap != 0, (m_star - r_star) / gap, np.nan)  # (B,)
    if math.isnan(score) or np.isnan(s_star).all():
        lo = hi = nan
    else:
        lo, hi = np.nanquantile(s_star, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return {
        "skill": float(score),
        "skill_lo": float(lo),
        "skill_hi": float(hi),
        "mean_model": m_bar,
        "mean_reference": r_bar,
    } | diff
