"""Non-neural baselines, one registry keyed by (task, name). Baselines are not backbones.

A baseline is a scikit-learn style estimator: ``__init__`` only stores parameters, ``fit`` sets
attributes ending in ``_``, prediction starts with ``check_is_fitted``. Each task fixes the
interface; tasks register their baselines with :func:`register_baseline`.

Task ``"reconstruction"`` (E1), interface ``fit(train (N, L)) → self`` and
``predict(values (B, L), mask (B, L) bool) → (B, L)``, mask True = masked as in
:mod:`spektron.data.masking`. Values at masked positions are never read (they may be NaN or
garbage). ``predict`` returns a full spectrum: ``mean`` returns its estimate everywhere, the
others return the observed values at observed positions. With o_i = ¬m_i the observed set:

- ``mean``: ŷ = μ, the mean training spectrum.
- ``interpolation``: ŷ_i = piecewise-linear interpolation of the observed (i, x_i) at every
  index i (along the sample index, i.e. along ν on a uniform grid); before the first and after
  the last observed point the nearest observed value (flat). A row with nothing observed gets μ.
- ``pca`` (PCA imputation, e.g. Ilin & Raiko, JMLR 11, 2010): with the k leading principal
  axes W (k, L) and mean μ of the training spectra, the coefficients of a row solve the ridge
  least-squares problem on its observed points only,

      ĉ = argmin_c Σ_{i∈o} (x_i − μ_i − (Wᵀc)_i)² + λ‖c‖²,
      (W_o W_oᵀ + λ I) ĉ = W_o (x_o − μ_o),   λ = α · tr(W_o W_oᵀ) / k,

  (λ relative to the mean diagonal of the Gram matrix, so α is scale-free; it keeps the k × k
  system well posed when few points are observed), and ŷ = μ + Wᵀĉ at masked points. A spectrum
  in the span of the k axes is recovered exactly (up to λ) from any observed set on which W_o
  has rank k. k is chosen on validation data by :func:`select_pca_components`.

Task ``"cross_spectral"`` (E2: IR → Raman or Raman → IR), interface
``fit(X_in (N, L), Y_out (N, L)) → self`` and ``predict(X_in (B, L)) → (B, L)``: paired input
and target spectra of the same molecules on one grid, normalised by the caller (the metrics of
:mod:`spektron.evaluation.cross_spectral` normalise prediction and truth again, by one rule).

- ``identity``: ŷ = x, the input copied (IR and Raman share mode positions).
- ``mean``: ŷ = ȳ, the mean training target spectrum.
- ``pls``: PLS2 regression, ŷ = ȳ + (x − x̄) B with B (L, L) of rank k (:class:`PLSBaseline`);
  k is chosen on validation data by :func:`select_pls_components`.
- ``nearest_neighbour``: ŷ = y_{n*}, the target of the training molecule whose input is the
  nearest by cosine or Euclidean distance (retrieval).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import sklearn
from scipy.sparse.linalg import LinearOperator, eigsh
from sklearn.base import BaseEstimator
from sklearn.decomposition import PCA
from sklearn.utils.validation import check_is_fitted

from spektron.errors import ConfigError, DataError

_REGISTRY: dict[tuple[str, str], type] = {}

# PCA solver: "covariance_eigh" (scikit-learn >= 1.5; eigh of the L × L covariance, O(N L² + L³))
# is exact and ~5× faster than the SVD "full" (O(N² L) for N < L, O(N L²) otherwise) when
# N ≥ L, e.g. 13,000 × 2,048 training spectra; for N < L the SVD is the cheaper one.
_HAS_COVARIANCE_EIGH = tuple(int(p) for p in sklearn.__version__.split(".")[:2]) >= (1, 5)


# --------------------------------------------------------------------------- registry


def register_baseline(task: str, name: str) -> Callable[[type], type]:
    """Class decorator: ``@register_baseline("reconstruction", "mean")``."""

    def deco(cls: type) -> type:
        key = (task, name)
        if key in _REGISTRY and _REGISTRY[key] is not cls:
            raise ConfigError(f"baseline {name!r} registered twice for task {task!r}")
        _REGISTRY[key] = cls
        return cls

    return deco


def available_tasks() -> list[str]:
    return sorted({task for task, _ in _REGISTRY})


def available_baselines(task: str) -> list[str]:
    """Names of the baselines registered for ``task`` (ConfigError for an unknown task)."""
    names = sorted(name for t, name in _REGISTRY if t == task)
    if not names:
        raise ConfigError(f"no baselines for task {task!r}; tasks are {available_tasks()}")
    return names


def build_baseline(task: str, name: str, **params: Any) -> Any:
    """Instantiate baseline ``name`` of ``task`` with keyword parameters (unknown ones refused)."""
    choices = available_baselines(task)
    if name not in choices:
        raise ConfigError(f"unknown {task} baseline {name!r}; choose one of {choices}")
    cls = _REGISTRY[(task, name)]
    try:
        inspect.signature(cls).bind(**params)
    except TypeError as err:
        raise ConfigError(f"bad parameters for {task} baseline {name!r}: {err}") from err
    return cls(**params)


# --------------------------------------------------------------------------- validation


def _check_train(train: np.ndarray) -> np.ndarray:
    train = np.asarray(train, dtype=np.float64)
    if train.ndim != 2 or train.shape[0] < 1 or train.shape[1] < 1:
        raise DataError(f"training spectra must be a non-empty (N, L) array, got {train.shape}")
    if not np.all(np.isfinite(train)):
        raise DataError(
            f"training spectra have {int((~np.isfinite(train)).sum())} non-finite values"
        )
    return train


def _check_masked_input(
    values: np.ndarray, mask: np.ndarray, length: int
) -> tuple[np.ndarray, np.ndarray]:
    """(values with masked positions set to 0, mask): the masked inputs are never read again."""
    values = np.asarray(values, dtype=np.float64)
    mask = np.asarray(mask)
    if values.ndim != 2 or values.shape[1] != length:
        raise DataError(
            f"values must be (B, {length}) like the training spectra, got {values.shape}"
        )
    if mask.shape != values.shape:
        raise DataError(f"mask must have the values' shape {values.shape}, got {mask.shape}")
    if mask.dtype != np.bool_:
        raise DataError(f"mask must be bool (True = masked), got dtype {mask.dtype}")
    clean = np.where(mask, 0.0, values)  # (B, L)
    if not np.all(np.isfinite(clean)):
        raise DataError("values have non-finite entries at observed (unmasked) positions")
    return clean, mask


class ReconstructionBaseline(BaseEstimator):
    """Shared validation of the ``"reconstruction"`` interface; subclasses define ``_predict``."""

    def fit(self, train: np.ndarray) -> ReconstructionBaseline:
        """Fit on (N, L) finite training spectra; sets ``mean_`` (L,) and ``n_features_in_``."""
        train = _check_train(train)
        self._fit(train)  # first: a bad parameter must not leave a half-fitted estimator
        self.mean_ = train.mean(axis=0)  # (L,)
        self.n_features_in_ = train.shape[1]
        return self

    def _fit(self, train: np.ndarray) -> None:
        """Extra fitting beyond the mean (default: none)."""

    def predict(self, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Reconstruct (B, L) spectra from their observed points.

        Parameters
        ----------
        values : np.ndarray
            (B, L) spectra; entries at masked positions are ignored (may be NaN).
        mask : np.ndarray
            (B, L) bool, True = masked (to reconstruct).

        Returns
        -------
        np.ndarray
            (B, L) float64 reconstruction of the whole spectrum.
        """
        check_is_fitted(self)
        clean, mask = _check_masked_input(values, mask, self.n_features_in_)
        return self._predict(clean, mask)

    def _predict(self, clean: np.ndarray, mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@register_baseline("reconstruction", "mean")
class MeanSpectrumBaseline(ReconstructionBaseline):
    """The mean training spectrum everywhere (observed points included)."""

    def _predict(self, clean: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.mean_, clean.shape).copy()  # (B, L)


@register_baseline("reconstruction", "interpolation")
class InterpolationBaseline(ReconstructionBaseline):
    """Linear interpolation across masked points, flat beyond the ends; mean if none observed."""

    def _predict(self, clean: np.ndarray, mask: np.ndarray) -> np.ndarray:
        index = np.arange(clean.shape[1], dtype=np.float64)  # (L,)
        out = clean.copy()  # (B, L)
        for row, (x, m) in enumerate(zip(clean, mask, strict=True)):
            if not m.any():
                continue
            obs = ~m
            if not obs.any():
                out[row] = self.mean_
                continue
            # np.interp holds the end values flat outside the observed range.
            out[row, m] = np.interp(index[m], index[obs], x[obs])
        return out


def _pca_impute(
    clean: np.ndarray, mask: np.ndarray, mean: np.ndarray, axes: np.ndarray, alpha: float
) -> np.ndarray:
    """Ridge PCA imputation (module docstring): (B, L), (B, L), (L,), (k, L) → (B, L)."""
    k = axes.shape[0]
    coefs = np.zeros((clean.shape[0], k))  # (B, k)
    for row, (x, m) in enumerate(zip(clean, mask, strict=True)):
        obs = ~m
        if not obs.any() or not m.any():
            continue  # nothing to fit (→ μ) or nothing to fill (observed values returned)
        w = axes[:, obs]  # (k, n_obs)
        gram = w @ w.T  # (k, k)
        rhs = w @ (x[obs] - mean[obs])  # (k,)
        gram[np.diag_indices(k)] += alpha * np.trace(gram) / k
        try:
            coefs[row] = np.linalg.solve(gram, rhs)
        except np.linalg.LinAlgError:  # only with alpha = 0 and fewer useful points than k
            coefs[row] = np.linalg.lstsq(gram, rhs, rcond=None)[0]
    recon = mean + coefs @ axes  # (B, L)
    return np.where(mask, recon, clean)


@register_baseline("reconstruction", "pca")
class PCAImputationBaseline(ReconstructionBaseline):
    """PCA imputation with k components and relative ridge α (module docstring).

    Parameters
    ----------
    n_components : int
        k ≤ min(N, L) of the training data.
    alpha : float
        Relative ridge α ≥ 0 (λ = α · tr(W_o W_oᵀ) / k).
    """

    def __init__(self, n_components: int = 32, alpha: float = 1e-6) -> None:
        self.n_components = n_components
        self.alpha = alpha

    def _fit(self, train: np.ndarray) -> None:
        k, alpha = self.n_components, self.alpha
        if int(k) != k or not 1 <= k <= min(train.shape):
            raise ConfigError(
                f"n_components must be an integer in [1, min(N, L) = {min(train.shape)}], got {k}"
            )
        if not (np.isfinite(alpha) and alpha >= 0):
            raise ConfigError(f"ridge alpha must be finite and >= 0, got {alpha}")
        n, length = train.shape
        solver = "covariance_eigh" if _HAS_COVARIANCE_EIGH and n >= length else "full"
        pca = PCA(n_components=int(k), svd_solver=solver).fit(train)
        self.components_ = pca.components_  # (k, L), orthonormal rows
        self.explained_variance_ratio_ = pca.explained_variance_ratio_  # (k,)

    def _predict(self, clean: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return _pca_impute(clean, mask, self.mean_, self.components_, self.alpha)


def _smallest_best(candidates: Sequence[int], scores: Sequence[float]) -> int:
    """The candidate with the lowest validation score (the smallest k among ties); warns when
    the largest candidate wins, since a larger k might do better still."""
    best = int(np.argmin(scores))  # first minimum: the smallest k among ties
    if best == len(candidates) - 1 and len(candidates) > 1:
        warnings.warn(
            f"the largest candidate n_components={candidates[-1]} was best; consider larger k",
            stacklevel=3,
        )
    return candidates[best]


def select_pca_components(
    train: np.ndarray,
    val_values: np.ndarray,
    val_mask: np.ndarray,
    candidates: Sequence[int] = (4, 8, 16, 32, 64),
    alpha: float = 1e-6,
) -> int:
    """Choose k for :class:`PCAImputationBaseline` by masked MSE on validation data.

    One PCA with k_max = max(candidates) is fitted on ``train`` (the leading axes are nested,
    so each k uses the first k of them); each k imputes the masked points of ``val_values``
    and is scored by the pooled masked MSE Σ m (ŷ − y)² / Σ m. Ties go to the smaller k.
    Never pass test data here.

    Parameters
    ----------
    train : np.ndarray
        (N, L) training spectra.
    val_values : np.ndarray
        (V, L) complete validation spectra (the truth at masked points, hidden from the
        imputation).
    val_mask : np.ndarray
        (V, L) bool, True = masked; at least one point masked.
    candidates : Sequence[int]
        Values of k to try, each in [1, min(N, L)].
    alpha : float
        Relative ridge, as in :class:`PCAImputationBaseline`.

    Returns
    -------
    int
        The k with the lowest validation masked MSE.
    """
    candidates = sorted({int(k) for k in candidates})
    if not candidates:
        raise ConfigError("need at least one candidate n_components")
    train = _check_train(train)
    truth = np.asarray(val_values, dtype=np.float64)
    clean, mask = _check_masked_input(truth, val_mask, train.shape[1])
    if not np.all(np.isfinite(truth)):
        raise DataError("validation spectra must be finite everywhere (they are the truth)")
    if not mask.any():
        raise DataError("validation mask hides no point: nothing to score")
    model = PCAImputationBaseline(n_components=candidates[-1], alpha=alpha).fit(train)
    scores = []
    for k in candidates:
        recon = _pca_impute(clean, mask, model.mean_, model.components_[:k], alpha)
        scores.append(float(((recon - truth)[mask] ** 2).mean()))
    return _smallest_best(candidates, scores)


# --------------------------------------------------------------------------- cross_spectral (E2)

# Nearest-neighbour blocks: at most QUERY × TRAIN scores (8 × 1024 × 8192 B = 64 MiB in float64)
# exist at once, whatever N_train and N_query are (100k × 13k would be 10 GiB in one piece).
_NN_QUERY_BLOCK = 1024
_NN_TRAIN_BLOCK = 8192
_NN_METRICS = ("cosine", "euclidean")
# Relative tie tolerance of nearest-neighbour scores: far above the rounding of a float64 dot
# product of length L (≤ L · 1.1e-16 relative, 2.3e-13 for L = 2048), far below real gaps.
_NN_TIE_RTOL = 1e-10


def _check_spectra(values: Any, what: str, length: int | None = None) -> np.ndarray:
    """``values`` as a finite, non-empty float64 (N, L) array, L = ``length`` when given."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] < 1 or values.shape[1] < 1:
        raise DataError(f"{what} must be a non-empty (N, L) array, got shape {values.shape}")
    if length is not None and values.shape[1] != length:
        raise DataError(
            f"{what} must have L = {length} points like the training spectra, "
            f"got shape {values.shape}"
        )
    if not np.all(np.isfinite(values)):
        raise DataError(f"{what} have {int((~np.isfinite(values)).sum())} non-finite values")
    return values


def _check_pairs(X_in: Any, Y_out: Any) -> tuple[np.ndarray, np.ndarray]:
    """Paired (N, L) input and target spectra on one grid: same shape, finite."""
    X_in = _check_spectra(X_in, "input spectra")
    Y_out = _check_spectra(Y_out, "target spectra")
    if Y_out.shape != X_in.shape:
        raise DataError(
            f"target spectra must pair with the input spectra on the same grid, shape "
            f"{X_in.shape}, got {Y_out.shape}"
        )
    return X_in, Y_out


class CrossSpectralBaseline(BaseEstimator):
    """Shared validation of the ``"cross_spectral"`` interface; subclasses define ``_predict``."""

    def fit(self, X_in: np.ndarray, Y_out: np.ndarray) -> CrossSpectralBaseline:
        """Fit on paired spectra: X_in (N, L) inputs (e.g. IR), Y_out (N, L) targets (Raman).

        Sets ``n_features_in_`` = L and whatever the subclass learns.
        """
        X_in, Y_out = _check_pairs(X_in, Y_out)
        self._fit(X_in, Y_out)  # first: a bad parameter must not leave a half-fitted estimator
        self.n_features_in_ = X_in.shape[1]
        return self

    def _fit(self, X_in: np.ndarray, Y_out: np.ndarray) -> None:
        """Learning beyond the grid length (default: none)."""

    def predict(self, X_in: np.ndarray) -> np.ndarray:
        """Predict the other spectrum of each molecule.

        Parameters
        ----------
        X_in : np.ndarray
            (B, L) input spectra, finite, on the training grid.

        Returns
        -------
        np.ndarray
            (B, L) float64 predicted target spectra (not normalised, not clipped).
        """
        check_is_fitted(self)
        X_in = _check_spectra(X_in, "input spectra", self.n_features_in_)
        return self._predict(X_in)

    def _predict(self, X_in: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@register_baseline("cross_spectral", "identity")
class IdentityBaseline(CrossSpectralBaseline):
    """The input spectrum itself: ŷ = x (fit only records L).

    Why it matters: without an inversion centre there is no mutual exclusion, and a mode may be
    both IR and Raman active (in a molecule with no symmetry at all, C1, as many of QM9, every
    mode is). The copy then puts its peaks at the right positions and already scores well on
    position-only metrics (peak F1); it is wrong in the relative intensities (dipole versus
    polarisability derivatives). A model must beat it on the intensity-sensitive metrics
    (:mod:`spektron.evaluation.cross_spectral`) to show it learnt the other selection rule.
    """

    def _predict(self, X_in: np.ndarray) -> np.ndarray:
        return X_in.copy()  # (B, L)


@register_baseline("cross_spectral", "mean")
class MeanTargetBaseline(CrossSpectralBaseline):
    """The mean training target spectrum for every input: ŷ = (1/N) Σ_n y_n.

    It ignores the input; by hedging over every band it scores a high cosine, which is why E2
    reports skill against it.
    """

    def _fit(self, X_in: np.ndarray, Y_out: np.ndarray) -> None:
        self.mean_ = Y_out.mean(axis=0)  # (L,)

    def _predict(self, X_in: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.mean_, X_in.shape).copy()  # (B, L)


@register_baseline("cross_spectral", "pls")
class PLSBaseline(CrossSpectralBaseline):
    """PLS2 regression from input to target spectra (Wold et al., Chemometr. Intell. Lab. 58, 2001).

    With centred X (N, L) and Y (N, M), PLS extracts k score directions t = X_a r that maximise
    the covariance with Y, deflating after each; the fit is linear, ŷ = ȳ + (x − x̄) R Qᵀ with
    the rotation R = W (PᵀW)⁻¹ (L, k) and the Y-loadings Q (M, k). Spectra are not scaled per
    point: the caller's normalisation already puts them on one scale, and unit-variance scaling
    would inflate the noise of near-empty points.

    Algorithm: the modified kernel algorithm #2 of Dayal & MacGregor (J. Chemometrics 11, 73,
    1997), which gives NIPALS PLS2's components (scikit-learn's ``PLSRegression(scale=False)``,
    to which the tests compare it) from the cross-products XᵀX and XᵀY alone. For a = 1..k:
    w = the dominant left singular vector of the deflated XᵀY; r = w − Σ_{j<a} (p_jᵀ w) r_j;
    τ = rᵀXᵀXr; p = XᵀXr / τ; q = (XᵀY)ᵀr / τ; XᵀY ← XᵀY − τ p qᵀ. Components are nested: the
    first k columns of a k_max fit are the k-component fit, which
    :func:`select_pls_components` uses to score every k from one fit.

    Why not scikit-learn's NIPALS: it finds each w by power iterations over the N samples
    (up to 500 O(N L) passes per component) and took 240 s for k = 128 at N = 2,400,
    L = 2,048, which capped the E2 grid at k = 128, where validation still chose the largest k.
    Here the data are read once (XᵀX and XᵀY: O(N L²), then O(L²) per component: a Lanczos
    singular vector through ARPACK and a deflation); memory 2 L² float64 (64 MB at L = 2,048)
    on top of a centred copy of X and Y. Measured in E2 at the quick scale (N = 2,532,
    L = 2,048, 2-core CPU): 69–75 s per fit to k = 512, cross-products included; the selection,
    which stops at k = 256 there (k = 128 chosen), 36 s.

    If the deflated XᵀY or the score variance τ vanishes before k components (k above the rank
    of the data), the remaining components are zero and ``n_effective_`` says how many are
    real; their predictions equal the n_effective_-component fit.

    Predictions may be negative (a linear map has no positivity constraint); they are returned
    as they are: the E2 metrics (:mod:`spektron.evaluation.cross_spectral`) handle signed
    predictions.

    Parameters
    ----------
    n_components : int
        k in [1, min(N, L)]; chosen on validation data by :func:`select_pls_components`.
    """

    def __init__(self, n_components: int = 16) -> None:
        self.n_components = n_components

    def _fit(self, X_in: np.ndarray, Y_out: np.ndarray) -> None:
        k = _check_n_components(self.n_components, X_in.shape)
        self.x_mean_ = X_in.mean(axis=0)  # (L,)
        self.y_mean_ = Y_out.mean(axis=0)  # (M,)
        fit = _KernelPLS(X_in - self.x_mean_, Y_out - self.y_mean_, k)
        fit.extend(k)
        self._take(fit, k)

    def _take(self, fit: _KernelPLS, k: int) -> None:
        """The first k components of ``fit`` as this model's (copied: the fit may be larger)."""
        self.x_rotations_ = fit.R[:, :k].copy()
        self.y_loadings_ = fit.Q[:, :k].copy()
        self.n_effective_ = min(fit.n_effective, k)

    def transform(self, X_in: np.ndarray) -> np.ndarray:
        """(B, L) input spectra → (B, k) PLS scores (X centred with the training mean)."""
        check_is_fitted(self)
        return self._scores(_check_spectra(X_in, "input spectra", self.n_features_in_))

    def predict_nested(self, X_in: np.ndarray, ks: Sequence[int]) -> list[np.ndarray]:
        """Predictions of the first-k-component fits, one (B, M) array per k in ``ks``."""
        scores = self.transform(X_in)  # (B, k_max)
        ks = [self._fitted_k(k) for k in ks]
        return [self.y_mean_ + scores[:, :k] @ self.y_loadings_[:, :k].T for k in ks]

    def truncated(self, k: int) -> PLSBaseline:
        """The fitted k-component model: the first k components of this one (they are nested)."""
        check_is_fitted(self)
        k = self._fitted_k(k)
        out = PLSBaseline(n_components=k)
        out.x_mean_, out.y_mean_ = self.x_mean_, self.y_mean_
        out.x_rotations_ = self.x_rotations_[:, :k].copy()
        out.y_loadings_ = self.y_loadings_[:, :k].copy()
        out.n_effective_ = min(self.n_effective_, k)
        out.n_features_in_ = self.n_features_in_
        return out

    def _fitted_k(self, k: Any) -> int:
        """k as an int in [1, fitted components], or a ConfigError."""
        if int(k) != k or not 1 <= k <= self.x_rotations_.shape[1]:
            raise ConfigError(
                f"k must be in [1, {self.x_rotations_.shape[1]}] (the fitted components), got {k}"
            )
        return int(k)

    def _scores(self, X_in: np.ndarray) -> np.ndarray:
        return (X_in - self.x_mean_) @ self.x_rotations_  # (B, k)

    def _predict(self, X_in: np.ndarray) -> np.ndarray:
        return self.y_mean_ + self._scores(X_in) @ self.y_loadings_.T


def _dominant_left_singular_vector(S: np.ndarray, seed: int) -> np.ndarray:
    """Unit (L,) dominant left singular vector of S (L, M), sign fixed so that its largest-
    magnitude entry is positive. Dense SVD for small S, else Lanczos (ARPACK, seeded start)."""
    if S.shape[1] == 1:
        w = S[:, 0].copy()
    elif min(S.shape) <= 256:
        w = np.linalg.svd(S, full_matrices=False)[0][:, 0]
    else:
        v0 = np.random.default_rng(seed).standard_normal(S.shape[0])
        op = LinearOperator((S.shape[0],) * 2, matvec=lambda v: S @ (S.T @ v), dtype=S.dtype)
        # tol: relative accuracy of the eigenvalue; 1e-10 moves predictions by ~1e-10 relative to
        # tol=0 (machine precision) at three quarters of the cost.
        w = eigsh(op, k=1, which="LA", v0=v0, tol=1e-10)[1][:, 0]
    w = w / np.linalg.norm(w)
    return w if w[np.argmax(np.abs(w))] >= 0 else -w


class _KernelPLS:
    """Modified kernel PLS #2 (Dayal & MacGregor 1997) on centred Xc (N, L), Yc (N, M), grown
    one component at a time up to ``k_max``: :meth:`extend` adds components to the ones already
    there, so a fit to k and then to k' > k equals one fit to k'.

    ``R`` (L, k_max) rotations, ``Q`` (M, k_max) Y-loadings (columns past ``n`` zero); ``n`` the
    components extracted, ``n_effective`` the non-zero ones (fewer once the data's rank is
    exhausted, after which ``exhausted`` is set and no component is added).
    """

    def __init__(self, Xc: np.ndarray, Yc: np.ndarray, k_max: int) -> None:
        self.xtx = Xc.T @ Xc  # (L, L)
        self.xty = Xc.T @ Yc  # (L, M)
        L, M = self.xty.shape
        self.R = np.zeros((L, k_max))
        self.P = np.zeros((L, k_max))
        self.Q = np.zeros((M, k_max))
        self.scale_xty = np.abs(self.xty).max()
        self.scale_xtx = np.abs(self.xtx).max()
        self.n = 0
        self.n_effective = 0
        self.exhausted = False

    def extend(self, k: int) -> None:
        """Extract components up to k (≤ k_max)."""
        R, P, Q, xtx, xty = self.R, self.P, self.Q, self.xtx, self.xty
        L, M = xty.shape
        eps = np.finfo(np.float64).eps
        for a in range(self.n, k):
            if self.exhausted:
                self.n = k
                return
            # Stop once the covariance left to explain is rounding noise (k above the data's
            # rank); the remaining components stay zero.
            if np.abs(xty).max() <= 1e3 * eps * max(self.scale_xty, 1e-300) * max(L, M):
                self.exhausted, self.n = True, k
                return
            w = _dominant_left_singular_vector(xty, seed=a)  # (L,)
            r = w - R[:, :a] @ (P[:, :a].T @ w)
            xr = xtx @ r  # (L,)
            tau = float(r @ xr)  # ‖X_a w‖², the score's sum of squares
            if tau <= 1e3 * eps * max(self.scale_xtx, 1e-300) * L:
                self.exhausted, self.n = True, k
                return
            p, q = xr / tau, (xty.T @ r) / tau
            xty -= tau * np.outer(p, q)
            R[:, a], P[:, a], Q[:, a] = r, p, q
            self.n = self.n_effective = a + 1


def _kernel_pls(Xc: np.ndarray, Yc: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, int]:
    """:class:`_KernelPLS` to k components: rotations R (L, k), Y-loadings Q (M, k) and the
    number of non-zero components."""
    fit = _KernelPLS(Xc, Yc, k)
    fit.extend(k)
    return fit.R, fit.Q, fit.n_effective


def _check_n_components(k: Any, shape: tuple[int, int]) -> int:
    """k as an int in [1, min(N, L)] of (N, L) training data, or a ConfigError."""
    if int(k) != k or not 1 <= k <= min(shape):
        raise ConfigError(
            f"n_components must be an integer in [1, min(N, L) = {min(shape)}], got {k}"
        )
    return int(k)


def select_pls_components(
    X_tr: np.ndarray,
    Y_tr: np.ndarray,
    X_val: np.ndarray,
    Y_val: np.ndarray,
    candidates: Sequence[int] = (2, 4, 8, 16, 32),
) -> int:
    """Choose k for :class:`PLSBaseline` by mean squared error on validation pairs.

    One PLS fit on the training pairs grows through the candidates in increasing order; its
    components are nested, so each k predicts ŷ = ȳ + T_{:k} Q_{:k}ᵀ from the first k validation
    scores T, and is scored by the MSE over every validation point. The walk stops at the first
    candidate scoring worse than the best so far (:func:`fit_pls_by_validation`). Ties go to the
    smaller k; a warning says when the largest candidate wins. Never pass test data here.

    Parameters
    ----------
    X_tr, Y_tr : np.ndarray
        (N, L) training input and target spectra.
    X_val, Y_val : np.ndarray
        (V, L) validation input and target spectra.
    candidates : Sequence[int]
        Values of k to try, each in [1, min(N, L)].

    Returns
    -------
    int
        The k with the lowest validation MSE (:func:`fit_pls_by_validation` also returns the
        fitted model).
    """
    return fit_pls_by_validation(X_tr, Y_tr, X_val, Y_val, candidates)[1]


def fit_pls_by_validation(
    X_tr: np.ndarray,
    Y_tr: np.ndarray,
    X_val: np.ndarray,
    Y_val: np.ndarray,
    candidates: Sequence[int] = (2, 4, 8, 16, 32),
) -> tuple[PLSBaseline, int]:
    """:func:`select_pls_components`, returning the fitted k-component model with the chosen k.

    The candidates are walked upwards on one growing fit (components are nested, so nothing is
    fitted twice): each k is scored by the validation MSE of its first k components, and the walk
    stops at the first candidate scoring worse than the best so far — the chosen k then has a
    worse candidate above it. The components past that candidate are never computed (at the
    quick E2 scale, where k = 128 is chosen, that halves the fit against a grid up to 512)."""
    candidates = sorted({int(k) for k in candidates})
    if not candidates:
        raise ConfigError("need at least one candidate n_components")
    X_tr, Y_tr = _check_pairs(X_tr, Y_tr)
    for k in (candidates[0], candidates[-1]):
        _check_n_components(k, X_tr.shape)
    k_max = candidates[-1]
    X_val, Y_val = _check_pairs(X_val, Y_val)
    if X_val.shape[1] != X_tr.shape[1]:
        raise DataError(
            f"validation spectra must have L = {X_tr.shape[1]} points like the training "
            f"spectra, got shape {X_val.shape}"
        )
    x_mean, y_mean = X_tr.mean(axis=0), Y_tr.mean(axis=0)
    fit = _KernelPLS(X_tr - x_mean, Y_tr - y_mean, k_max)
    mse: list[float] = []
    for k in candidates:
        fit.extend(k)
        scores = (X_val - x_mean) @ fit.R[:, :k]  # (V, k)
        mse.append(float(((y_mean + scores @ fit.Q[:, :k].T - Y_val) ** 2).mean()))
        if len(mse) > 1 and mse[-1] > min(mse[:-1]):
            break
    best = _smallest_best(candidates[: len(mse)], mse)
    model = PLSBaseline(n_components=best)
    model.n_features_in_ = X_tr.shape[1]
    model.x_mean_, model.y_mean_ = x_mean, y_mean
    model._take(fit, best)
    return model, best


def _argmax_scores(
    queries: np.ndarray,
    keys: np.ndarray,
    bias: np.ndarray,
    query_block: int = _NN_QUERY_BLOCK,
    train_block: int = _NN_TRAIN_BLOCK,
) -> np.ndarray:
    """Index of the best score q · k_j + b_j of each query, lowest j among ties.

    (B, L) queries, (N, L) keys, (N,) bias → (B,) int. Blocked over queries and keys so at most
    query_block × train_block scores exist at once. Scores within ``_NN_TIE_RTOL`` · (‖q‖ max‖k‖
    + max|b|) of the best count as ties: the matrix product of two identical keys can differ in
    the last bits (BLAS sums edge rows in another order), and duplicates must go to the lowest
    index. Within a block the first score that close to the block's best wins; a later block
    replaces the running choice only when better by more than that.
    """
    key_norm = np.sqrt(np.einsum("nl,nl->n", keys, keys).max())
    best_index = np.zeros(queries.shape[0], dtype=np.int64)  # (B,)
    for q0 in range(0, queries.shape[0], query_block):
        q = queries[q0 : q0 + query_block]  # (b, L)
        tol = _NN_TIE_RTOL * (np.linalg.norm(q, axis=1) * key_norm + np.abs(bias).max())  # (b,)
        best = np.full(q.shape[0], -np.inf)  # (b,)
        index = np.zeros(q.shape[0], dtype=np.int64)  # (b,)
        for k0 in range(0, keys.shape[0], train_block):
            scores = q @ keys[k0 : k0 + train_block].T + bias[k0 : k0 + train_block]  # (b, n)
            near_top = scores >= scores.max(axis=1, keepdims=True) - tol[:, None]  # (b, n)
            arg = near_top.argmax(axis=1)  # (b,) the first near-best
            top = scores[np.arange(q.shape[0]), arg]  # (b,)
            better = top > best + tol
            best[better] = top[better]
            index[better] = arg[better] + k0
        best_index[q0 : q0 + query_block] = index
    return best_index


@register_baseline("cross_spectral", "nearest_neighbour")
class NearestNeighbourBaseline(CrossSpectralBaseline):
    """Retrieval: the target spectrum of the training molecule whose input spectrum is closest.

    ŷ(x) = y_{n*}, n* = argmax_n cos(x, x_n) (``metric="cosine"``) or argmin_n ‖x − x_n‖
    (``"euclidean"``), the lowest n among ties (scores equal up to rounding). It knows nothing
    but the training pairs: a model that cannot beat retrieval is matching spectra, not learning
    the chemistry that maps one selection rule onto the other.

    Both metrics reduce to one matrix product, argmax_n (x · k_n + b_n): cosine with unit-norm
    keys k_n = x_n/‖x_n‖ and b_n = 0 (the query's own norm does not change the argmax, so the
    result is invariant to scaling the query; an all-zero spectrum has cosine 0 with everything),
    Euclidean with k_n = x_n and b_n = −‖x_n‖²/2 (‖x − x_n‖² = ‖x‖² − 2 (x · x_n − ‖x_n‖²/2)).
    Cost: O(N_train · B · L) time in blocks of 1024 queries × 8192 training spectra (64 MiB of
    scores); the fitted estimator keeps the (N, L) keys and targets in float64. Measured on one
    CPU core, L = 2,048: one such block, 1,024 queries against 8,192 training spectra, 0.7–1 s.

    Parameters
    ----------
    metric : str
        ``"cosine"`` or ``"euclidean"``, on the input spectra.
    """

    def __init__(self, metric: str = "cosine") -> None:
        self.metric = metric

    def _fit(self, X_in: np.ndarray, Y_out: np.ndarray) -> None:
        if self.metric not in _NN_METRICS:
            raise ConfigError(f"metric must be one of {_NN_METRICS}, got {self.metric!r}")
        if self.metric == "cosine":
            norms = np.linalg.norm(X_in, axis=1, keepdims=True)  # (N, 1)
            self.keys_ = X_in / np.where(norms > 0, norms, 1.0)  # (N, L), zero rows stay zero
            self.bias_ = np.zeros(X_in.shape[0])  # (N,)
        else:
            self.keys_ = X_in.copy()  # (N, L)
            self.bias_ = -0.5 * np.einsum("nl,nl->n", X_in, X_in)  # (N,)
        self.targets_ = Y_out.copy()  # (N, L)

    def retrieve(self, X_in: np.ndarray) -> np.ndarray:
        """(B,) int index of the nearest training molecule of each (B, L) input spectrum."""
        check_is_fitted(self)
        X_in = _check_spectra(X_in, "input spectra", self.n_features_in_)
        return _argmax_scores(X_in, self.keys_, self.bias_)

    def _predict(self, X_in: np.ndarray) -> np.ndarray:
        return self.targets_[_argmax_scores(X_in, self.keys_, self.bias_)]  # (B, L)
