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
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import sklearn
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
    best = int(np.argmin(scores))  # first minimum: the smallest k among ties
    if best == len(candidates) - 1 and len(candidates) > 1:
        warnings.warn(
            f"the largest candidate n_components={candidates[-1]} was best; consider larger k",
            stacklevel=2,
        )
    return candidates[best]
