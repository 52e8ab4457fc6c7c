"""Classical calibration transfer between NIR instruments (E4), as scikit-learn estimators.

A *master* instrument has a calibration (spectra + reference values); a *slave* instrument
measures new samples. A few *transfer standards* are measured on both. Notation: x (1, p) a
slave spectrum, X_s (n, p) / X_m (n, q) the slave / master spectra of the n standards, x̄_s, x̄_m
their means, X̃ = X − x̄ centred. Every estimator follows scikit-learn: ``__init__`` stores
parameters, ``fit`` sets attributes ending in ``_``, ``transform``/``predict`` start with
``check_is_fitted``. Spectral transfers take the paired standards as ``fit(X_slave, X_master)``
(master spectra in the target position; a 1-D target is read as one master channel) and map
slave spectra into the master's space with ``transform``. Hyperparameters are chosen by
cross-validation on calibration or transfer data only (:func:`select_transfer_params`,
:func:`select_dipls_params`, :class:`PLSCV`): no function here ever takes test data.

**PLS** (:class:`PLSCV`; Wold et al., Chemometr. Intell. Lab. 58 (2001) 109): PLS1 by NIPALS
on centred data, weights w_a ∝ X_aᵀy, scores t_a = X_a w_a, loadings p_a = X_aᵀt_a / t_aᵀt_a,
q_a = t_aᵀy / t_aᵀt_a, deflation X_{a+1} = X_a − t_a p_aᵀ; the regression vector of the first
k components is b_k = Σ_{a≤k} r_a q_a with r_a = w_a − Σ_{j<a} r_j (p_jᵀw_a) (= W(PᵀW)⁻¹), so
one fit gives every k. The component count minimises the cross-validated
RMSECV(k) = √(PRESS(k)/n) on the calibration set (``rmsecv_`` is the curve).

**Preprocessing.** SNV (Barnes, Dhanoa & Lister, Appl. Spectrosc. 43 (1989) 772): each spectrum
is centred and scaled by its own SD over channels, (x − x̄)/s with s² = Σ (x_j − x̄)² / (p − 1).
Savitzky–Golay (Anal. Chem. 36 (1964) 1627): least-squares polynomial of order ``polyorder``
in a sliding window, its ``deriv``-th derivative (:func:`scipy.signal.savgol_filter`).

**DS** (:class:`DirectStandardization`; Wang, Veltkamp & Kowalski, Anal. Chem. 63 (1991)
2750): one linear map F (p, q) with X̃_m ≈ X̃_s F, applied as x ↦ x̄_m + (x − x̄_s) F. With
n ≪ p the least-squares problem is rank-deficient; with the SVD X̃_s = U S Vᵀ,
F = V diag(f(s)) Uᵀ X̃_m with f(s_i) = 1/s_i for the r leading singular values (truncated SVD)
or f(s_i) = s_i / (s_i² + α s_1²) (ridge, α relative to the largest s_1²). F maps into the
span of the standards: between identical instruments (X_m = X_s) DS is x̄ + (x − x̄) V_r V_rᵀ, a
projection onto the span of the centred standards, not the identity.

**PDS** (:class:`PiecewiseDirectStandardization`; Wang et al. 1991): master channel j is
regressed on the slave channels of a window of half-width h around it,
x_m,j ≈ x̄_m,j + (x_s,[c_j−h, c_j+h] − x̄_s,[…]) b_j, with a local PLS or PCR of k components
(with intercept, i.e. centred), windows truncated at the ends of the spectrum. F is banded.

**CCA transfer** (:class:`CCATransfer`; Fan, Liang, Yuan & Wang, Anal. Chim. Acta 623 (2008)
22): canonical variates L_s = X̃_s W_s and L_m = X̃_m W_m of the standards, F₁ = L_s⁺ L_m
(canonical variates of slave → master), F₂ = L_m⁺ X̃_m (master variates → master spectra),
x ↦ x̄_m + (x − x̄_s) W_s F₁ F₂. With n < p every canonical correlation is 1 (the spaces of the
centred standards coincide), so each instrument is first compressed to its k leading PCA
scores; c ≤ k canonical pairs are kept. It is *global* (one map over the whole spectrum, not
windowed). With c = k it reduces to DS between the k-component PCA score spaces (tested).

**Slope/bias correction** (:class:`SlopeBiasCorrection`; Bouveresse et al. 1994; Osborne,
Fearn & Hindle, Practical NIR Spectroscopy, 1993): the master model f predicts the slave
spectra of the standards, and a straight line ŷ_ref ≈ bias + slope · f(x_s) is fitted by
least squares; new slave predictions become bias + slope · f(x). ``reference="y"`` (classical
SBC) uses the reference values of the standards; ``reference="master"`` uses the master model's
predictions of the same standards measured on the master, f(x_m), and needs no reference
analyses.

**di-PLS** (:class:`DomainInvariantPLS`; Nikzad-Langerodi, Zellinger, Lughofer &
Saminger-Platz, Anal. Chem. 90 (2018) 6693): PLS whose weights also keep the source (master
calibration, labelled) and target (slave transfer spectra, unlabelled) score variances alike:

    wᵀ = (yᵀX_s / yᵀy) (I + (λ / yᵀy) D)⁻¹,   then w ← w / ‖w‖,

with D the convex relaxation |(1/n_s) X̃_sᵀX̃_s − (1/n_t) X̃_tᵀX̃_t| (eigenvalues replaced by
their absolute values), recomputed after each deflation; X_s, X_t and y are deflated with
their own loadings. λ = 0 is PLS. Target-domain rows are passed as rows of X whose y is NaN.

**Samples** (:func:`kennard_stone`; Kennard & Stone, Technometrics 11 (1969) 137): start from the
two samples farthest apart, then repeatedly add the sample whose distance to its nearest
selected sample is largest (Euclidean).
"""

from __future__ import annotations

import copy
import itertools
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.signal import savgol_filter
from sklearn.base import BaseEstimator, RegressorMixin, TransformerMixin, clone
from sklearn.model_selection import KFold, LeaveOneOut
from sklearn.utils.validation import (
    check_array,
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from spektron.errors import ConfigError, DataError
from spektron.evaluation.baselines import register_baseline

# Numerical rank: singular values / PLS weight norms below this fraction of the largest count
# as zero (float64 round-off on a few hundred channels is ~1e-14 relative).
_RANK_RTOL = 1e-10
SPECTRAL_TRANSFER = "spectral_transfer"  # registry task of DS, PDS and CCA


# --------------------------------------------------------------------------- validation


def _check_int(value: Any, name: str, low: int = 1, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_nonneg(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a real number, got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"{name} must be finite and >= 0, got {value!r}")


def _paired_spectra(est: BaseEstimator, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validated slave (n, p) and master (n, q) spectra; a 1-D master is one channel."""
    X, Y = validate_data(est, X, y, multi_output=True, y_numeric=True, dtype=np.float64)
    return X, Y.reshape(X.shape[0], -1)


def _splits(cv: Any, n: int, random_state: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """Train/validation index pairs: None → leave-one-out, int → shuffled K-fold (K ≤ n),
    or any scikit-learn splitter."""
    if cv is None:
        return list(LeaveOneOut().split(np.zeros((n, 1))))
    if isinstance(cv, numbers.Integral) and not isinstance(cv, bool):
        if cv < 2:
            raise ConfigError(f"cv must be >= 2 folds, got {cv}")
        k = min(int(cv), n)
        return list(KFold(k, shuffle=True, random_state=random_state).split(np.zeros((n, 1))))
    if hasattr(cv, "split"):
        return list(cv.split(np.zeros((n, 1))))
    raise ConfigError(f"cv must be None (leave-one-out), an int or a splitter, got {cv!r}")


# --------------------------------------------------------------------------- PLS1 core


def _pls1_path(X: np.ndarray, y: np.ndarray, n_components: int) -> np.ndarray:
    """PLS1 (NIPALS) regression vectors of 1..k components, batched over leading axes.

    X (..., n, m) and y (..., n) must be centred. Returns (..., m, k): column a holds b_{a+1}
    (module docstring). Once X is exhausted (weight norm below ``_RANK_RTOL`` of the first),
    later columns repeat the last vector. Zero columns of X (padding) stay out of the model.
    """
    X = np.array(X, dtype=np.float64)  # deflated in place: a copy
    batch, m = X.shape[:-2], X.shape[-1]
    out = np.zeros((*batch, m, n_components))
    b = np.zeros((*batch, m))
    rs: list[np.ndarray] = []
    ps: list[np.ndarray] = []
    w0 = None
    for a in range(n_components):
        w = np.einsum("...nm,...n->...m", X, y)  # (..., m) ∝ X_aᵀ y
        norm = np.linalg.norm(w, axis=-1)  # (...,)
        if w0 is None:
            w0 = norm
        ok = norm > _RANK_RTOL * w0
        w = np.where(ok[..., None], w / np.where(ok, norm, 1.0)[..., None], 0.0)
        r = w.copy()
        for r_j, p_j in zip(rs, ps, strict=True):
            r -= r_j * np.einsum("...m,...m->...", p_j, w)[..., None]
        t = np.einsum("...nm,...m->...n", X, w)  # (..., n)
        tt = np.einsum("...n,...n->...", t, t)
        ok &= tt > 0
        inv = np.where(ok, 1.0 / np.where(ok, tt, 1.0), 0.0)
        p = np.einsum("...nm,...n->...m", X, t) * inv[..., None]  # (..., m)
        q = np.einsum("...n,...n->...", t, y) * inv  # (...,)
        X -= t[..., :, None] * p[..., None, :]
        b = b + r * q[..., None]
        rs.append(r)
        ps.append(p)
        out[..., a] = b
    return out


def _padded_path(X: np.ndarray, y: np.ndarray, n_components: int) -> np.ndarray:
    """(m, k) PLS1 path of centred X (n, m), y (n,), at most n − 1 real components; the
    remaining columns repeat the last vector (zeros when n = 1)."""
    k_real = min(n_components, X.shape[0] - 1, X.shape[1])
    out = np.zeros((X.shape[1], n_components))
    if k_real >= 1:
        path = _pls1_path(X, y, k_real)
        out[:, :k_real] = path
        out[:, k_real:] = path[:, -1:]
    return out


# --------------------------------------------------------------------------- PLS with CV


class PLSCV(RegressorMixin, BaseEstimator):
    """PLS1 regression with the number of components chosen by cross-validation.

    For each fold the PLS path (1..K components) is fitted on the training part and predicts
    the held-out part; RMSECV(k) = √(Σ_folds Σ_i (ŷ_i,k − y_i)² / n). The chosen count is the
    smallest k with the lowest RMSECV; the final model is refitted on all samples.

    Parameters
    ----------
    max_components : int
        K, the largest count tried (capped at n − 1 and p).
    cv : int, splitter or None
        Folds: ``None`` leave-one-out, an int K-fold (shuffled with ``random_state``; more
        folds than samples means leave-one-out) or a scikit-learn splitter.
    random_state : int or None
        Shuffling of the K folds.

    Attributes
    ----------
    n_components_ : int
        Chosen component count.
    components_grid_ : np.ndarray
        (K,) the counts 1..K tried.
    rmsecv_ : np.ndarray
        (K,) RMSECV per count.
    coef_path_ : np.ndarray
        (p, K) regression vectors of the model refitted on all samples, one per count.
    coef_ : np.ndarray
        (p,) regression vector of the chosen count; ``intercept_`` its offset.
    x_mean_, y_mean_ : centring of X (p,) and y.
    """

    def __init__(self, max_components: int = 15, cv: Any = 10, random_state: Any = 0) -> None:
        self.max_components = max_components
        self.cv = cv
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> PLSCV:
        """Fit on calibration spectra X (n, p) and reference values y (n,)."""
        _check_int(self.max_components, "max_components")
        X, y = validate_data(self, X, y, y_numeric=True, dtype=np.float64)
        n, p = X.shape
        if n < 2:
            raise ValueError(
                f"PLSCV needs at least 2 samples to cross-validate, got n_samples = {n}"
            )
        k = min(int(self.max_components), n - 1, p)
        press = np.zeros(k)
        for train, val in _splits(self.cv, n, self.random_state):
            xm, ym = X[train].mean(axis=0), y[train].mean()
            path = _padded_path(X[train] - xm, y[train] - ym, k)  # (p, k)
            pred = ym + (X[val] - xm) @ path  # (n_val, k)
            press += ((pred - y[val, None]) ** 2).sum(axis=0)
        self.components_grid_ = np.arange(1, k + 1)
        self.rmsecv_ = np.sqrt(press / n)
        self.n_components_ = int(np.argmin(self.rmsecv_)) + 1  # first minimum: smallest k
        self.x_mean_ = X.mean(axis=0)
        self.y_mean_ = float(y.mean())
        self.coef_path_ = _padded_path(X - self.x_mean_, y - self.y_mean_, k)
        self.coef_ = self.coef_path_[:, self.n_components_ - 1].copy()
        self.intercept_ = self.y_mean_ - float(self.x_mean_ @ self.coef_)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """(n,) predictions of the chosen component count for spectra X (n, p)."""
        check_is_fitted(self)
        return self._predict_arrays(validate_data(self, X, reset=False, dtype=np.float64))

    def _predict_arrays(self, X: np.ndarray) -> np.ndarray:
        """:meth:`predict` of an already validated float64 (n, p) array."""
        return X @ self.coef_ + self.intercept_

    def predict_path(self, X: Any) -> np.ndarray:
        """(n, K) predictions for every component count 1..K (column k − 1: k components)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self.y_mean_ + (X - self.x_mean_) @ self.coef_path_


# --------------------------------------------------------------------------- preprocessing


class _Stateless(TransformerMixin, BaseEstimator):
    """Row-wise transformer: ``fit`` only records the channel count."""

    def fit(self, X: Any, y: Any = None) -> _Stateless:
        self._check_params()
        validate_data(self, X, dtype=np.float64)
        return self

    def _check_params(self) -> None:
        """Parameter checks (default: none)."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags


class SNV(_Stateless):
    """Standard normal variate: each spectrum centred and divided by its SD over channels.

    x ↦ (x − x̄)/s, s² = Σ_j (x_j − x̄)² / (p − 1) (Barnes et al. 1989). A flat spectrum
    (s = 0, e.g. a single channel) maps to zeros.
    """

    def transform(self, X: Any) -> np.ndarray:
        """(n, p) SNV-transformed spectra."""
        X = validate_data(self, X, reset=False, dtype=np.float64)
        centred = X - X.mean(axis=1, keepdims=True)  # (n, p)
        sd = np.std(X, axis=1, ddof=1, keepdims=True) if X.shape[1] > 1 else np.zeros((len(X), 1))
        return np.divide(centred, sd, out=np.zeros_like(centred), where=sd > 0)


class SavitzkyGolay(_Stateless):
    """Savitzky–Golay smoothing or derivative along the channels (:func:`savgol_filter`).

    Parameters
    ----------
    window_length : int
        Points in the window (odd, > ``polyorder``; ≤ the channel count with ``mode="interp"``).
    polyorder : int
        Order of the local polynomial.
    deriv : int
        Derivative order (0 = smoothing), ≤ ``polyorder``; per channel (``delta`` = 1).
    mode : str
        Edge handling of :func:`scipy.signal.savgol_filter`; ``"interp"`` fits the polynomial
        to the first/last window (no padding), the usual choice for spectra.
    """

    def __init__(
        self, window_length: int = 15, polyorder: int = 2, deriv: int = 1, mode: str = "interp"
    ) -> None:
        self.window_length = window_length
        self.polyorder = polyorder
        self.deriv = deriv
        self.mode = mode

    def _check_params(self) -> None:
        _check_int(self.window_length, "window_length")
        _check_int(self.polyorder, "polyorder", low=0)
        _check_int(self.deriv, "deriv", low=0)
        if self.window_length % 2 == 0 or self.window_length <= self.polyorder:
            raise ConfigError(
                f"window_length must be odd and > polyorder = {self.polyorder}, "
                f"got {self.window_length}"
            )
        if self.deriv > self.polyorder:
            raise ConfigError(f"deriv = {self.deriv} exceeds polyorder = {self.polyorder}")
        if self.mode not in ("interp", "mirror", "nearest", "constant", "wrap"):
            raise ConfigError(f"unknown savgol mode {self.mode!r}")

    def fit(self, X: Any, y: Any = None) -> SavitzkyGolay:
        super().fit(X, y)
        self._check_length(self.n_features_in_)
        return self

    def _check_length(self, p: int) -> None:
        if self.mode == "interp" and self.window_length > p:
            raise ValueError(
                f"window_length = {self.window_length} exceeds the spectrum (n_features = {p}); "
                "use a shorter window or another mode"
            )

    def transform(self, X: Any) -> np.ndarray:
        """(n, p) filtered spectra."""
        self._check_params()
        X = validate_data(self, X, reset=False, dtype=np.float64)
        self._check_length(X.shape[1])
        return savgol_filter(
            X, self.window_length, self.polyorder, deriv=self.deriv, axis=1, mode=self.mode
        )


# --------------------------------------------------------------------------- spectral transfer


class _SpectralTransfer(TransformerMixin, BaseEstimator):
    """Shared interface: ``fit(X_slave (n, p), X_master (n, q))``, ``transform`` → (m, q).

    Subclasses set ``x_mean_`` (p,) and ``y_mean_`` (q,) through this class and implement
    ``_fit`` on the centred standards and ``_apply`` (centred slave spectra → centred master
    space), so x ↦ y_mean_ + _apply(x − x_mean_).
    """

    def fit(self, X: Any, y: Any) -> _SpectralTransfer:
        """Fit on paired standards: X slave spectra (n, p), y master spectra (n, q) or (n,)."""
        self._check_params()
        X, Y = _paired_spectra(self, X, y)
        return self._fit_arrays(X, Y)

    def _fit_arrays(self, X: np.ndarray, Y: np.ndarray) -> _SpectralTransfer:
        """:meth:`fit` on arrays already validated (float64 (n, p), (n, q)): the CV loops of
        :func:`select_transfer_params` fit thousands of times on slices of checked arrays."""
        self._check_params()
        self.n_features_in_ = X.shape[1]
        centre = self._centred()
        self.x_mean_ = X.mean(axis=0) if centre else np.zeros(X.shape[1])
        self.y_mean_ = Y.mean(axis=0) if centre else np.zeros(Y.shape[1])
        self._fit(X - self.x_mean_, Y - self.y_mean_)
        return self

    _path_param: str | None = None  # parameter whose values one fit can share (see _fit_path)

    def _centred(self) -> bool:
        return True

    def _fit_path(self, X: np.ndarray, Y: np.ndarray, values: Sequence[Any]) -> list:
        """Fitted copies for each value of ``_path_param`` (default: one fit per value)."""
        return [clone(self).set_params(**{self._path_param: v})._fit_arrays(X, Y) for v in values]

    def _check_params(self) -> None:
        raise NotImplementedError

    def _fit(self, Xc: np.ndarray, Yc: np.ndarray) -> None:
        raise NotImplementedError

    def _apply(self, Xc: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def transform(self, X: Any) -> np.ndarray:
        """Slave spectra (m, p) → master-like spectra (m, q)."""
        check_is_fitted(self)
        return self._transform_arrays(validate_data(self, X, reset=False, dtype=np.float64))

    def _transform_arrays(self, X: np.ndarray) -> np.ndarray:
        """:meth:`transform` of an already validated float64 (m, p) array."""
        return self.y_mean_ + self._apply(X - self.x_mean_)

    def transfer_matrix(self) -> np.ndarray:
        """The dense linear map F (p, q): transform(x) = y_mean_ + (x − x_mean_) F."""
        check_is_fitted(self)
        return self._apply(np.eye(self.n_features_in_))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.target_tags.multi_output = True
        return tags


class _FactoredTransfer(_SpectralTransfer):
    """A low-rank map F = ``x_basis_`` (p, r) @ ``coef_`` (r, q), stored as its factors."""

    def _apply(self, Xc: np.ndarray) -> np.ndarray:
        return (Xc @ self.x_basis_) @ self.coef_


@register_baseline(SPECTRAL_TRANSFER, "ds")
class DirectStandardization(_FactoredTransfer):
    """Direct standardisation with truncated-SVD or ridge regularisation (module docstring).

    Parameters
    ----------
    n_components : int or None
        Rank r of the truncated SVD of the centred slave standards (None: full numerical rank,
        singular values > max(n, p) · s_1 · eps as in ``numpy.linalg.pinv``).
    alpha : float
        Ridge α ≥ 0 relative to s_1² (0: none); combines with ``n_components``.
    center : bool
        Centre both instruments' standards (True: the map has an offset,
        x̄_m − x̄_s F). False regresses raw spectra through the origin, which is what chemotools'
        ``DirectStandardization`` does (its minimum-norm pseudo-inverse equals
        ``center=False, n_components=None, alpha=0`` here).

    Attributes
    ----------
    rank_ : int
        Singular values used. ``singular_values_`` (min(n, p),) of the centred slave standards.
    """

    def __init__(self, n_components: int | None = None, alpha: float = 0.0, center: bool = True):
        self.n_components = n_components
        self.alpha = alpha
        self.center = center

    def _check_params(self) -> None:
        _check_int(self.n_components, "n_components", allow_none=True)
        _check_nonneg(self.alpha, "alpha")
        if not isinstance(self.center, (bool, np.bool_)):
            raise ConfigError(f"center must be a bool, got {self.center!r}")

    def _centred(self) -> bool:
        return bool(self.center)

    def _fit(self, Xc: np.ndarray, Yc: np.ndarray) -> None:
        u, s, vt = np.linalg.svd(Xc, full_matrices=False)  # (n, k), (k,), (k, p)
        s1 = s[0] if s.size else 0.0
        keep = s > max(Xc.shape) * s1 * np.finfo(np.float64).eps
        if self.n_components is not None:
            keep &= np.arange(s.size) < self.n_components
        safe = np.where(keep, s, 1.0)
        f = np.where(keep, safe / (safe**2 + self.alpha * s1**2), 0.0)  # (k,)
        self.singular_values_ = s
        self.rank_ = int(keep.sum())
        self.x_basis_ = vt[keep].T  # (p, r)
        self.coef_ = f[keep, None] * (u[:, keep].T @ Yc)  # (r, q)


def _window_centres(p: int, q: int) -> np.ndarray:
    """Slave channel at the centre of each master channel's window, (q,).

    Both instruments are taken to span the same range: master channel j sits at relative
    position (j + ½)/q, the nearest slave channel is ⌊(j + ½) p / q⌋ (= j when q = p).
    """
    return np.floor((np.arange(q) + 0.5) * p / q).astype(np.int64)


@register_baseline(SPECTRAL_TRANSFER, "pds")
class PiecewiseDirectStandardization(_SpectralTransfer):
    """Piecewise direct standardisation with local PLS or PCR (module docstring).

    Master channel j is predicted from slave channels c_j − h … c_j + h (truncated at the
    ends), by a local regression with intercept of k components. With q = p, c_j = j; with a
    different master channel count (e.g. another resolution over the same range) c_j is the
    slave channel nearest to master channel j (:func:`_window_centres`).

    Parameters
    ----------
    half_width : int
        h ≥ 0; windows of 2h + 1 channels (chemotools calls this ``window_length``).
    n_components : int
        k, components of each local model (fewer where a window has fewer channels or the
        standards fewer degrees of freedom).
    local_model : str
        ``"pls"`` (PLS1, NIPALS) or ``"pcr"`` (regression on the k leading principal
        components of the window).

    Attributes
    ----------
    coef_band_ : np.ndarray
        (q, 2h + 1) local regression vectors; entry i of row j weights slave channel
        c_j − h + i (zero outside the spectrum). ``centres_`` (q,) the c_j.
    coef_path_ : np.ndarray
        (q, 2h + 1, k) the same with 1..k components (the last is ``coef_band_``).
    """

    _path_param = "n_components"

    def __init__(self, half_width: int = 5, n_components: int = 2, local_model: str = "pls"):
        self.half_width = half_width
        self.n_components = n_components
        self.local_model = local_model

    def _check_params(self) -> None:
        _check_int(self.half_width, "half_width", low=0)
        _check_int(self.n_components, "n_components")
        if self.local_model not in ("pls", "pcr"):
            raise ConfigError(f"local_model must be 'pls' or 'pcr', got {self.local_model!r}")

    def _windows(self, Xc: np.ndarray) -> np.ndarray:
        """(m, q, 2h + 1) centred slave windows, zero-padded past the ends."""
        h = int(self.half_width)
        padded = np.pad(Xc, ((0, 0), (h, h)))  # (m, p + 2h)
        view = np.lib.stride_tricks.sliding_window_view(padded, 2 * h + 1, axis=1)  # (m, p, w)
        return view[:, self.centres_]

    def _fit(self, Xc: np.ndarray, Yc: np.ndarray) -> None:
        self.centres_ = _window_centres(Xc.shape[1], Yc.shape[1])
        self.coef_path_ = self._coef_path(Xc, Yc, int(self.n_components))  # (q, w, k)
        self.coef_band_ = self.coef_path_[..., -1]  # (q, w)

    def _coef_path(self, Xc: np.ndarray, Yc: np.ndarray, k_max: int) -> np.ndarray:
        """(q, w, k_max) local regression vectors with 1..k_max components."""
        win = np.moveaxis(self._windows(Xc), 1, 0)  # (q, n, w)
        q, n, w = win.shape
        path = np.zeros((q, w, k_max))
        if self.local_model == "pls":
            k_real = min(k_max, n - 1)  # centred: at most n − 1 components
            if k_real >= 1:
                path[..., :k_real] = _pls1_path(win, Yc.T, k_real)
                path[..., k_real:] = path[..., k_real - 1 : k_real]
            return path
        u, s, vt = np.linalg.svd(win, full_matrices=False)  # (q, n, r), (q, r), (q, r, w)
        keep = s > _RANK_RTOL * s[:, :1]  # (q, r)
        inv = np.where(keep, 1.0 / np.where(keep, s, 1.0), 0.0)
        proj = np.einsum("qnr,qn->qr", u, Yc.T) * inv  # (q, r)
        cum = np.cumsum(vt * proj[..., None], axis=1)  # (q, r, w): first 1..r components
        idx = np.minimum(np.arange(k_max), cum.shape[1] - 1)
        return np.moveaxis(cum[:, idx], 1, 2)  # (q, w, k_max)

    def _fit_path(self, X: np.ndarray, Y: np.ndarray, values: Sequence[Any]) -> list:
        # One local fit with the largest k gives every smaller k (nested components).
        top = clone(self).set_params(n_components=max(values))._fit_arrays(X, Y)
        out = []
        for k in values:
            est = copy.copy(top)
            est.n_components = k
            est.coef_path_ = top.coef_path_[..., :k]
            est.coef_band_ = top.coef_path_[..., k - 1]
            out.append(est)
        return out

    def _apply(self, Xc: np.ndarray) -> np.ndarray:
        return np.einsum("mqw,qw->mq", self._windows(Xc), self.coef_band_)  # (m, q)


@register_baseline(SPECTRAL_TRANSFER, "cca")
class CCATransfer(_FactoredTransfer):
    """Global CCA transfer on PCA-compressed spectra (Fan et al. 2008; module docstring).

    Each instrument's centred standards are reduced to their k leading principal-component
    scores (orthonormal U_k, so the scores are already whitened); the canonical pairs are the
    SVD U_s,kᵀ U_m,k = A diag(ρ) Bᵀ, with canonical correlations ρ. The c leading pairs give
    L_s = U_s,k A_c, L_m = U_m,k B_c (both orthonormal), so F₁ = L_sᵀL_m = diag(ρ_c) and
    F₂ = L_mᵀ X̃_m; in slave channels W_s = V_s,k S_s,k⁻¹ A_c.

    Parameters
    ----------
    n_components : int
        k, PCA components per instrument (< n − 1, or every ρ is 1 again).
    n_canonical : int or None
        c canonical pairs kept (None: all); at most the number of pairs available,
        min(k_s, k_m) (fewer when a centred instrument has rank < k).

    Attributes
    ----------
    canonical_correlations_ : np.ndarray
        (c,) ρ of the kept pairs, decreasing.
    """

    _path_param = "n_canonical"

    def __init__(self, n_components: int = 5, n_canonical: int | None = None):
        self.n_components = n_components
        self.n_canonical = n_canonical

    def _check_params(self) -> None:
        _check_int(self.n_components, "n_components")
        _check_int(self.n_canonical, "n_canonical", allow_none=True)

    @staticmethod
    def _pca(Xc: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        u, s, vt = np.linalg.svd(Xc, full_matrices=False)
        keep = (s > _RANK_RTOL * (s[0] if s.size else 0.0)) & (np.arange(s.size) < k)
        return u[:, keep], s[keep], vt[keep]

    def _fit(self, Xc: np.ndarray, Yc: np.ndarray) -> None:
        k = int(self.n_components)
        u_s, s_s, vt_s = self._pca(Xc, k)
        u_m, _, _ = self._pca(Yc, k)
        a, rho, bt = np.linalg.svd(u_s.T @ u_m, full_matrices=False)  # (k_s, c), (c,), (c, k_m)
        c = rho.size if self.n_canonical is None else min(int(self.n_canonical), rho.size)
        l_m = u_m @ bt[:c].T  # (n, c) master canonical variates (orthonormal)
        self.canonical_correlations_ = rho[:c]
        self.x_basis_ = (vt_s.T / s_s) @ a[:, :c]  # (p, c) W_s
        self.coef_ = rho[:c, None] * (l_m.T @ Yc)  # (c, q) F₁ F₂

    def _fit_path(self, X: np.ndarray, Y: np.ndarray, values: Sequence[Any]) -> list:
        # Keeping fewer canonical pairs truncates the factors of the fit that keeps them all.
        top = clone(self).set_params(n_canonical=None)._fit_arrays(X, Y)
        out = []
        for c in values:
            est = copy.copy(top)
            est.n_canonical = c
            keep = top.coef_.shape[0] if c is None else min(int(c), top.coef_.shape[0])
            est.canonical_correlations_ = top.canonical_correlations_[:keep]
            est.x_basis_ = top.x_basis_[:, :keep]
            est.coef_ = top.coef_[:keep]
            out.append(est)
        return out


# --------------------------------------------------------------------------- prediction level


class SlopeBiasCorrection(RegressorMixin, BaseEstimator):
    """Slope/bias correction of a fitted master model's predictions on the slave.

    ``fit(X_slave, reference)`` with the transfer standards' slave spectra fits
    r ≈ bias + slope · f(x_s) by least squares, f the master model (``estimator``, already
    fitted and never refitted: wrap it in :class:`sklearn.frozen.FrozenEstimator` so that
    ``clone`` keeps it). What r is depends on ``reference``:

    - ``"y"``: classical SBC — ``reference`` is the (n,) reference values of the standards;
    - ``"master"``: master-prediction SBC — ``reference`` is the standards' master spectra
      (n, q) (1-D: one channel), and r = f(X_master); no reference analyses are needed.

    Parameters
    ----------
    estimator : fitted regressor
        The master model f.
    reference : str
        ``"y"`` or ``"master"`` (above).
    fit_slope : bool
        False fits the bias only (slope = 1).

    Attributes
    ----------
    slope_, bias_ : float
        The correction ŷ = bias_ + slope_ · f(x).
    """

    def __init__(self, estimator: Any = None, reference: str = "y", fit_slope: bool = True):
        self.estimator = estimator
        self.reference = reference
        self.fit_slope = fit_slope

    def fit(self, X: Any, y: Any) -> SlopeBiasCorrection:
        """Fit the line on slave spectra X (n, p) of the standards and their reference y."""
        if self.reference not in ("y", "master"):
            raise ConfigError(f"reference must be 'y' or 'master', got {self.reference!r}")
        if self.estimator is None or not hasattr(self.estimator, "predict"):
            raise ConfigError("estimator must be a fitted regressor (the master model)")
        check_is_fitted(self.estimator)
        if self.reference == "y":
            X, ref = validate_data(self, X, y, y_numeric=True, dtype=np.float64)
        else:
            X, Y = _paired_spectra(self, X, y)
            ref = np.asarray(self.estimator.predict(Y), dtype=np.float64).reshape(-1)
        pred = np.asarray(self.estimator.predict(X), dtype=np.float64).reshape(-1)
        n = len(pred)
        if self.fit_slope:
            var = float(np.var(pred))
            if n < 2 or var <= _RANK_RTOL * max(float(np.mean(pred**2)), 1e-300):
                raise ValueError(
                    "slope/bias correction needs at least 2 transfer samples with distinct "
                    f"predictions to fit a slope, got n_samples = {n} (use fit_slope=False)"
                )
            slope = float(np.mean((pred - pred.mean()) * (ref - ref.mean())) / var)
        else:
            slope = 1.0
        self.slope_ = slope
        self.bias_ = float(ref.mean() - slope * pred.mean())
        return self

    def predict(self, X: Any) -> np.ndarray:
        """(m,) corrected predictions bias_ + slope_ · f(X) for slave spectra X (m, p)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        pred = np.asarray(self.estimator.predict(X), dtype=np.float64).reshape(-1)
        return self.bias_ + self.slope_ * pred

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # The fit quality is the master model's, not this line's.
        tags.regressor_tags.poor_score = True
        tags.target_tags.multi_output = self.reference == "master"
        return tags


def _abs_sym_eig(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Convex relaxation |M| = V |Λ| Vᵀ of a symmetric matrix M = V Λ Vᵀ, as (|Λ|, V): the
    di-PLS weight solves (I + c|M|) w = w₀ as w = V (Vᵀw₀ / (1 + c|Λ|)) in that basis, with
    no r × r product or solve."""
    vals, vecs = np.linalg.eigh(M)
    return np.abs(vals), vecs


class DomainInvariantPLS(RegressorMixin, BaseEstimator):
    """Domain-invariant PLS (Nikzad-Langerodi et al. 2018; module docstring).

    ``fit(X, y)``: rows with a finite y are the labelled source domain (master calibration),
    rows whose y is NaN the unlabelled target domain (the slave transfer spectra — never the
    slave test spectra). Without target rows D = 0 and the model is PLS.

    Everything is computed in an orthonormal basis Q of the row space of the centred source
    and target data (rank ≤ n_s + n_t): the weights, D's range and every deflation stay in that
    space, so the r × r problem (r ≤ n_s + n_t) is exactly the p × p one of the paper.

    Parameters
    ----------
    n_components : int
        A, latent variables.
    lam : float
        λ ≥ 0 (the paper's units: it multiplies D / yᵀy; 0 is PLS).
    centering : str
        Offset used by ``predict``: ``"target"`` (default) predicts ȳ_s + (x − x̄_t) b, i.e.
        slave spectra are centred on the target-domain mean (diPLSlib's ``rescale="Target"``);
        ``"source"`` centres on the source mean, ȳ_s + (x − x̄_s) b. With λ = 0 the model equals
        PLS on the source exactly with ``"source"`` and PLS applied to x − x̄_t + x̄_s with
        ``"target"``. Without target rows both use x̄_s.

    Attributes
    ----------
    coef_path_ : np.ndarray
        (p, A) regression vectors b for 1..A latent variables; ``coef_`` = last column.
    x_mean_source_, x_mean_target_ : (p,) means; ``y_mean_`` source mean of y.
    discrepancy_ : np.ndarray
        (A,) wᵀDw per latent variable (the relaxed source/target score-variance gap).
    n_source_, n_target_ : int
    """

    def __init__(self, n_components: int = 5, lam: float = 0.0, centering: str = "target"):
        self.n_components = n_components
        self.lam = lam
        self.centering = centering

    def fit(self, X: Any, y: Any) -> DomainInvariantPLS:
        """Fit on X (n, p) and y (n,) with NaN marking target-domain rows."""
        return self.fit_lambdas(X, y, [self.lam])[0]

    def fit_lambdas(self, X: Any, y: Any, lams: Sequence[float]) -> list[DomainInvariantPLS]:
        """One fitted model per λ of ``lams``, the first being this one (refitted with
        ``lam = lams[0]``), the others copies of it: the same models as a ``fit`` per λ, with
        the row-space basis (an SVD of the stacked data) computed once for all of them."""
        _check_int(self.n_components, "n_components")
        if not lams:
            raise ConfigError("fit_lambdas needs at least one λ")
        for lam in lams:
            _check_nonneg(lam, "lam")
        if self.centering not in ("target", "source"):
            raise ConfigError(f"centering must be 'target' or 'source', got {self.centering!r}")
        # X finite; y may hold NaN (target rows) but not ±inf.
        X, y = validate_data(
            self,
            X,
            y,
            validate_separately=(
                {"dtype": np.float64},
                {"ensure_2d": False, "ensure_all_finite": "allow-nan", "dtype": np.float64},
            ),
        )
        y = column_or_1d(y, warn=True)
        check_consistent_length(X, y)
        labelled = ~np.isnan(y)
        if not labelled.any():
            raise ValueError("di-PLS needs labelled source samples: every y is NaN")
        Xs, ys, Xt = X[labelled], y[labelled], X[~labelled]
        self.n_source_, self.n_target_ = len(ys), len(Xt)
        self.x_mean_source_ = Xs.mean(axis=0)
        self.x_mean_target_ = Xt.mean(axis=0) if len(Xt) else self.x_mean_source_.copy()
        self.y_mean_ = float(ys.mean())
        Xs_c, Xt_c = Xs - self.x_mean_source_, Xt - self.x_mean_target_
        basis = _row_space(Xs_c, Xt_c)
        models = []
        for i, lam in enumerate(lams):
            model = self if i == 0 else copy.copy(self)
            model.lam = lam
            path, disc = _dipls_path(basis, ys - self.y_mean_, int(self.n_components), lam)
            model.coef_path_, model.discrepancy_ = path, disc
            model.coef_ = path[:, -1].copy()
            models.append(model)
        return models

    def _offset(self) -> np.ndarray:
        return self.x_mean_target_ if self.centering == "target" else self.x_mean_source_

    def predict(self, X: Any) -> np.ndarray:
        """(m,) predictions ȳ_s + (x − x̄) b (x̄ from ``centering``)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self.y_mean_ + (X - self._offset()) @ self.coef_

    def predict_path(self, X: Any) -> np.ndarray:
        """(m, A) predictions with 1..A latent variables."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self.y_mean_ + (X - self._offset()) @ self.coef_path_


def _row_space(Xs: np.ndarray, Xt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Q, Zs, Zt): an orthonormal basis Q (p, r) of the row space of the centred source Xs
    (n_s, p) and target Xt (n_t, p) stacked, and both in it, Zs = Xs Q, Zt = Xt Q."""
    _, s, vt = np.linalg.svd(np.vstack([Xs, Xt]), full_matrices=False)
    keep = s > _RANK_RTOL * (s[0] if s.size else 0.0)
    Q = vt[keep].T  # (p, r)
    return Q, Xs @ Q, Xt @ Q


def _dipls_path(
    basis: tuple[np.ndarray, np.ndarray, np.ndarray], y: np.ndarray, n_components: int, lam: float
) -> tuple[np.ndarray, np.ndarray]:
    """di-PLS regression vectors (p, A) and discrepancies (A,) from centred source and target
    data in their row space (:func:`_row_space`) and centred y (n_s,). Vectors beyond the
    exhausted rank repeat the last one."""
    Q, Zs, Zt = basis
    p = Q.shape[0]
    y = y.copy()
    r_dim = Q.shape[1]
    path = np.zeros((p, n_components))
    disc = np.zeros(n_components)
    b = np.zeros(r_dim)
    rs: list[np.ndarray] = []
    ps: list[np.ndarray] = []
    yy0 = float(y @ y)
    for a in range(n_components):
        yy = float(y @ y)
        if r_dim == 0 or yy <= _RANK_RTOL**2 * yy0 or yy == 0.0:
            path[:, a:] = (Q @ b)[:, None]
            break
        w = Zs.T @ y / yy  # (r,) ordinary PLS weight
        eig = None  # D = 0
        if len(Zt) and lam > 0:
            eig = _abs_sym_eig(Zs.T @ Zs / len(Zs) - Zt.T @ Zt / len(Zt))  # D = V |Λ| Vᵀ
            w = eig[1] @ ((eig[1].T @ w) / (1.0 + (lam / yy) * eig[0]))  # (I + λ/yy D)⁻¹ w
        norm = float(np.linalg.norm(w))
        t = Zs @ w
        if norm == 0.0 or float(t @ t) <= 0.0:
            path[:, a:] = (Q @ b)[:, None]
            break
        w /= norm
        t /= norm
        tt = float(t @ t)
        disc[a] = 0.0 if eig is None else float(eig[0] @ (eig[1].T @ w) ** 2)  # wᵀ D w
        p_s = Zs.T @ t / tt
        c = float(t @ y) / tt
        r = w.copy()
        for r_j, p_j in zip(rs, ps, strict=True):
            r -= r_j * float(p_j @ w)
        Zs = Zs - np.outer(t, p_s)
        if len(Zt):
            t_t = Zt @ w
            tt_t = float(t_t @ t_t)
            if tt_t > 0:
                Zt = Zt - np.outer(t_t, Zt.T @ t_t / tt_t)
        y = y - c * t
        b = b + c * r
        rs.append(r)
        ps.append(p_s)
        path[:, a] = Q @ b
    return path, disc


def dipls_lambda_scale(X: Any, y: Any) -> float:
    """Natural scale λ₀ = yᵀy / ‖D‖₂ of di-PLS's λ at the first latent variable.

    At λ = λ₀ the penalty (λ / yᵀy) D has spectral norm 1, the size of the identity it is added
    to; grids of λ are best given as multiples of λ₀. X, y as for :class:`DomainInvariantPLS`
    (NaN y = target rows). Returns 0 when D = 0 (no target rows or identical covariances).
    """
    X = check_array(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if y.shape[0] != X.shape[0]:
        raise DataError(f"y must have one value per row of X ({X.shape[0]}), got {y.shape}")
    lab = ~np.isnan(y)
    if not lab.any() or lab.all():
        return 0.0
    Xs = X[lab] - X[lab].mean(axis=0)
    Xt = X[~lab] - X[~lab].mean(axis=0)
    yc = y[lab] - y[lab].mean()
    # ‖|M|‖₂ = ‖M‖₂; in the sample space: M = Aᵀ S A, A = [Xs; Xt], S = diag(1/n_s, −1/n_t).
    A = np.vstack([Xs, Xt])
    sgn = np.concatenate([np.full(len(Xs), 1.0 / len(Xs)), np.full(len(Xt), -1.0 / len(Xt))])
    q, rmat = np.linalg.qr(A.T)  # A = rᵀ qᵀ, so M = q (r S rᵀ) qᵀ
    norm = float(np.max(np.abs(np.linalg.eigvalsh((rmat * sgn) @ rmat.T))))
    return float(yc @ yc) / norm if norm > 0 else 0.0


# --------------------------------------------------------------------------- model updating


def fit_model_update(
    X_cal: Any,
    y_cal: Any,
    X_transfer: Any,
    y_transfer: Any,
    max_components: int = 15,
    cv: Any = 10,
    random_state: Any = 0,
) -> PLSCV:
    """Model updating: recalibrate PLS on the master calibration plus the slave transfer
    standards (with their reference values), components by CV over the pooled set.

    Returns the fitted :class:`PLSCV` (it predicts slave spectra directly).
    """
    X = np.vstack([np.asarray(X_cal, np.float64), np.asarray(X_transfer, np.float64)])
    y = np.concatenate([np.asarray(y_cal, np.float64), np.asarray(y_transfer, np.float64)])
    return PLSCV(max_components=max_components, cv=cv, random_state=random_state).fit(X, y)


# --------------------------------------------------------------------------- sample selection


def kennard_stone(X: Any, n: int) -> np.ndarray:
    """Indices of n samples chosen by Kennard & Stone (1969), in the order chosen.

    The first two are the pair farthest apart (Euclidean); each next one maximises the
    distance to its nearest already-chosen sample. Ties go to the lowest index. n = 1 returns
    the first of the farthest pair.

    Parameters
    ----------
    X : array-like
        (N, p) samples (here: the master spectra of the transfer-standard pool).
    n : int
        1 ≤ n ≤ N.

    Returns
    -------
    np.ndarray
        (n,) int64 row indices.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or not np.all(np.isfinite(X)):
        raise DataError(f"Kennard-Stone needs a finite (N, p) array, got shape {X.shape}")
    N = X.shape[0]
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 1 <= n <= N:
        raise ConfigError(f"n must be an integer in [1, {N}], got {n!r}")
    sq = np.einsum("ij,ij->i", X, X)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * X @ X.T, 0.0))  # (N, N)
    np.fill_diagonal(dist, 0.0)
    i, j = divmod(int(np.argmax(dist)), N)  # row-major: the lowest (i, j) among ties
    chosen = [min(i, j), max(i, j)][:n] if N > 1 else [0]
    nearest = dist[chosen].min(axis=0)  # (N,) distance to the nearest chosen sample
    nearest[chosen] = -np.inf
    while len(chosen) < n:
        k = int(np.argmax(nearest))
        chosen.append(k)
        nearest = np.minimum(nearest, dist[k])
        nearest[chosen] = -np.inf
    return np.asarray(chosen, dtype=np.int64)


def random_subset(n_pool: int, n: int, seed: int) -> np.ndarray:
    """(n,) sorted indices drawn without replacement from range(n_pool) with ``seed``."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 1 <= n <= n_pool:
        raise ConfigError(f"n must be an integer in [1, {n_pool}], got {n!r}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_pool, size=int(n), replace=False)).astype(np.int64)


# --------------------------------------------------------------------------- selection by CV


def param_grid(**axes: Sequence[Any]) -> list[dict[str, Any]]:
    """Candidates of every combination, in the given order (earlier = preferred on ties)."""
    keys = list(axes)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*axes.values())]


def select_transfer_params(
    estimator: BaseEstimator,
    candidates: Sequence[Mapping[str, Any]],
    X_slave: Any,
    X_master: Any,
    model: Any,
    y: Any = None,
    cv: Any = None,
    random_state: Any = 0,
) -> dict[str, Any]:
    """Choose a spectral transfer's parameters by CV over the transfer standards only.

    For each candidate and fold, the transfer is fitted on the training standards and maps the
    held-out standards' slave spectra; the fixed master ``model`` predicts them. With ``y``
    (reference values of the standards) the score is RMSECV = √(Σ (ŷ − y)² / n); without, the
    reference is ``model``'s prediction of the held-out standards' master spectra (no reference
    analyses). The first candidate with the lowest RMSECV wins: order candidates from the
    simplest. Never pass test data here.

    Parameters
    ----------
    estimator : transformer
        A :class:`_SpectralTransfer` (DS, PDS, CCA); cloned per fit.
    candidates : sequence of dict
        Parameter settings (e.g. from :func:`param_grid`).
    X_slave, X_master : array-like
        (n, p), (n, q) the standards on both instruments.
    model : fitted regressor
        The master calibration model.
    y : array-like or None
        (n,) reference values of the standards.
    cv : None, int or splitter
        Folds over the standards (None: leave-one-out).

    Returns
    -------
    dict
        ``best`` (the winning parameters), ``rmsecv`` (one per candidate), ``candidates``,
        ``criterion`` ("y" or "master").
    """
    if not candidates:
        raise ConfigError("need at least one candidate parameter setting")
    X_slave = check_array(X_slave, dtype=np.float64)
    X_master = check_array(X_master, dtype=np.float64)
    n = X_slave.shape[0]
    if X_master.shape[0] != n:
        raise DataError(f"slave ({n}) and master ({X_master.shape[0]}) standards must pair up")
    if y is not None:
        y = column_or_1d(np.asarray(y, dtype=np.float64))
        if y.shape[0] != n or not np.all(np.isfinite(y)):
            raise DataError(f"y must hold {n} finite reference values, got shape {y.shape}")
    folds = _splits(cv, n, random_state)
    ref = y if y is not None else np.asarray(model.predict(X_master), dtype=np.float64)
    # Candidates that differ only in the estimator's path parameter share one fit per fold.
    path = getattr(estimator, "_path_param", None)
    groups: dict[tuple, list[int]] = {}
    for i, params in enumerate(candidates):
        if path is not None and path in params:
            key = tuple(sorted((k, v) for k, v in params.items() if k != path))
        else:
            key = ("__alone__", i)
        groups.setdefault(key, []).append(i)
    # The arrays are checked once above; inside the loops the transfers (and a PLSCV master
    # model) skip scikit-learn's per-call validation, which would otherwise take a third of
    # the time (thousands of small fits).
    fast = isinstance(estimator, _SpectralTransfer)
    if fast:
        fit = lambda est, tr: est._fit_arrays(X_slave[tr], X_master[tr])  # noqa: E731
        transform = lambda est, X: est._transform_arrays(X)  # noqa: E731
    else:
        fit = lambda est, tr: est.fit(X_slave[tr], X_master[tr])  # noqa: E731
        transform = lambda est, X: est.transform(X)  # noqa: E731
    predict = model.predict
    if fast and isinstance(model, PLSCV):
        check_is_fitted(model)
        if model.n_features_in_ != X_master.shape[1]:
            raise DataError(
                f"the master model takes {model.n_features_in_} channels, the master standards "
                f"have {X_master.shape[1]}"
            )
        predict = model._predict_arrays
    press = np.zeros(len(candidates))
    for train, val in folds:
        for key, members in groups.items():
            if key[0] == "__alone__":
                base = clone(estimator).set_params(**candidates[members[0]])
                fitted = [fit(base, train)]
            else:
                base = clone(estimator).set_params(**dict(key))
                values = [candidates[i][path] for i in members]
                fitted = base._fit_path(X_slave[train], X_master[train], values)
            for i, est in zip(members, fitted, strict=True):
                pred = predict(transform(est, X_slave[val]))
                press[i] += float(((pred - ref[val]) ** 2).sum())
    scores = [math.sqrt(v / n) for v in press]
    best = int(np.argmin(scores))
    return {
        "best": dict(candidates[best]),
        "rmsecv": scores,
        "candidates": [dict(c) for c in candidates],
        "criterion": "y" if y is not None else "master",
    }


def select_dipls_params(
    X_source: Any,
    y_source: Any,
    X_target: Any,
    y_target: Any,
    max_components: int = 15,
    lambda_factors: Sequence[float] = (0.0, 0.01, 0.1, 1.0, 10.0, 100.0),
    cv: Any = None,
    random_state: Any = 0,
    centering: str = "target",
) -> dict[str, Any]:
    """Choose di-PLS's λ and latent variables by CV over the transfer standards only.

    λ = factor · λ₀ with λ₀ = :func:`dipls_lambda_scale` of (source, all target standards). For
    each fold the model is fitted on the source (master calibration) plus the training
    standards' slave spectra as the unlabelled target domain, and predicts the held-out
    standards' slave spectra, scored against their reference values ``y_target``:
    RMSECV(λ, A) = √(Σ (ŷ − y)² / n_t). The lowest wins (ties: smaller λ, then fewer A).

    Returns
    -------
    dict
        ``lam`` and ``n_components`` chosen, ``lambda_scale`` (λ₀), ``factors``,
        ``rmsecv`` (len(factors), A) table, ``components`` (1..A).
    """
    Xs = check_array(X_source, dtype=np.float64)
    Xt = check_array(X_target, dtype=np.float64)
    ys = column_or_1d(np.asarray(y_source, dtype=np.float64))
    yt = column_or_1d(np.asarray(y_target, dtype=np.float64))
    if len(ys) != len(Xs) or len(yt) != len(Xt):
        raise DataError("every source and target spectrum needs one reference value")
    if not (np.all(np.isfinite(ys)) and np.all(np.isfinite(yt))):
        raise DataError("reference values must be finite")
    nan_t = np.full(len(Xt), np.nan)
    scale = dipls_lambda_scale(np.vstack([Xs, Xt]), np.concatenate([ys, nan_t]))
    folds = _splits(cv, len(Xt), random_state)
    press = np.zeros((len(lambda_factors), max_components))
    for train, val in folds:
        models = DomainInvariantPLS(max_components, centering=centering).fit_lambdas(
            np.vstack([Xs, Xt[train]]),
            np.concatenate([ys, nan_t[train]]),
            [factor * scale for factor in lambda_factors],
        )
        for i, model in enumerate(models):
            press[i] += ((model.predict_path(Xt[val]) - yt[val, None]) ** 2).sum(axis=0)
    table = np.sqrt(press / len(Xt))
    i_best, a_best = np.unravel_index(int(np.argmin(table)), table.shape)
    return {
        "lam": float(lambda_factors[i_best] * scale),
        "lambda_factor": float(lambda_factors[i_best]),
        "n_components": int(a_best) + 1,
        "lambda_scale": scale,
        "factors": [float(f) for f in lambda_factors],
        "components": list(range(1, max_components + 1)),
        "rmsecv": table.tolist(),
    }
