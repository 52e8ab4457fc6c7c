"""Calibration-transfer estimators: scikit-learn compliance, chemotools cross-checks, the
degenerate cases their definitions fix, slow references, Kennard–Stone and CV selection."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.cross_decomposition import PLSRegression
from sklearn.decomposition import PCA
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import LeaveOneOut
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from spektron.errors import ConfigError, DataError
from spektron.evaluation.baselines import available_baselines, build_baseline
from spektron.evaluation.calibration_transfer import (
    PLSCV,
    SNV,
    CCATransfer,
    DirectStandardization,
    DomainInvariantPLS,
    PiecewiseDirectStandardization,
    SavitzkyGolay,
    SlopeBiasCorrection,
    dipls_lambda_scale,
    fit_model_update,
    kennard_stone,
    param_grid,
    random_subset,
    select_dipls_params,
    select_transfer_params,
)
from spektron.utils import single_threaded_blas


@pytest.fixture(autouse=True)
def _one_blas_thread():
    # Tiny matrices: threaded BLAS is orders of magnitude slower on a busy machine.
    with single_threaded_blas():
        yield


class _RowMean(RegressorMixin, BaseEstimator):
    """Stateless stand-in master model (any channel count) for SBC's compliance checks."""

    def fit(self, X, y=None):
        return self

    def predict(self, X):
        return np.asarray(X, dtype=np.float64).mean(axis=1)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags


# ----------------------------------------------------------------------------- compliance

ESTIMATORS = [
    PLSCV(max_components=5),
    SNV(),
    SavitzkyGolay(mode="nearest"),
    SavitzkyGolay(window_length=3, polyorder=1),
    DirectStandardization(),
    DirectStandardization(n_components=2, alpha=1e-3, center=False),
    PiecewiseDirectStandardization(half_width=2),
    PiecewiseDirectStandardization(local_model="pcr"),
    CCATransfer(n_components=3, n_canonical=2),
    SlopeBiasCorrection(_RowMean()),
    SlopeBiasCorrection(_RowMean(), reference="master"),
    DomainInvariantPLS(n_components=3, lam=1.0),
]

# Checks that cannot apply, with the reason (everything else must pass):
_SG_SHORT = (
    "mode='interp' fits the polynomial to the first/last whole window, so it needs at least "
    "window_length channels; these checks use 2-channel data (spectra have hundreds)"
)
EXPECTED_FAILURES = {
    "SavitzkyGolay(polyorder=1, window_length=3)": {
        name: _SG_SHORT
        for name in (
            "check_estimators_overwrite_params",
            "check_estimators_fit_returns_self",
            "check_readonly_memmap_input",
            "check_fit_idempotent",
            "check_fit_check_is_fitted",
            "check_n_features_in",
        )
    },
    "SlopeBiasCorrection(estimator=_RowMean(), reference='master')": {
        "check_regressor_multioutput": (
            "a 2-D y is the standards' master spectra (one column per channel), not several "
            "targets: the prediction is one property, so its shape is (n,), not y's"
        )
    },
}


def _expected(estimator) -> dict[str, str]:
    return EXPECTED_FAILURES.get(repr(estimator), {})


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected)
def test_sklearn_compliance(estimator, check):
    check(estimator)


def test_spectral_transfers_registered():
    assert available_baselines("spectral_transfer") == ["cca", "ds", "pds"]
    assert isinstance(
        build_baseline("spectral_transfer", "ds", n_components=3), DirectStandardization
    )


# ----------------------------------------------------------------------------- data


def _pair(n=12, p=24, rank=4, seed=0):
    """Synthetic standards: a low-rank slave signal, a master = smooth linear response of it."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(0, 1, p)
    bands = np.stack([np.exp(-((grid - c) ** 2) / 0.01) for c in np.linspace(0.1, 0.9, rank)])
    conc = rng.uniform(0.5, 1.5, size=(n, rank))
    slave = conc @ bands + 0.01 * rng.standard_normal((n, p)) + 0.2
    master = 1.1 * np.roll(slave, 1, axis=1) + 0.05 + 0.01 * rng.standard_normal((n, p))
    y = conc[:, 0] + 0.01 * rng.standard_normal(n)
    return slave, master, y


@pytest.fixture(scope="module")
def corn():
    from spektron.data.nir import load_corn

    return load_corn("m5", "mp5")


# ----------------------------------------------------------------------------- PLS


def test_plscv_path_equals_sklearn_pls_and_cv_is_by_hand():
    X, _, y = _pair(n=15, p=30)
    model = PLSCV(max_components=6, cv=None).fit(X, y)
    for k in range(1, 7):
        ref = PLSRegression(n_components=k, scale=False).fit(X, y)
        np.testing.assert_allclose(
            model.predict_path(X)[:, k - 1], ref.predict(X).ravel(), atol=1e-10
        )
    press = np.zeros(6)
    for train, val in LeaveOneOut().split(X):
        for k in range(1, 7):
            pls = PLSRegression(n_components=k, scale=False).fit(X[train], y[train])
            press[k - 1] += float(((pls.predict(X[val]).ravel() - y[val]) ** 2).sum())
    np.testing.assert_allclose(model.rmsecv_, np.sqrt(press / len(y)), rtol=1e-9)
    assert model.n_components_ == int(np.argmin(model.rmsecv_)) + 1
    np.testing.assert_allclose(model.predict(X), model.predict_path(X)[:, model.n_components_ - 1])


def test_plscv_caps_components_and_refuses_one_sample():
    X, _, y = _pair(n=5, p=30)
    assert PLSCV(max_components=15, cv=None).fit(X, y).rmsecv_.shape == (4,)  # n − 1
    with pytest.raises(ValueError, match="n_samples = 1"):
        PLSCV().fit(X[:1], y[:1])
    with pytest.raises(ConfigError):
        PLSCV(max_components=0).fit(X, y)


def test_plscv_reproduces_design_reference_on_corn(corn):
    # docs/DESIGN.md §2.4: leave-one-out on the 30 calibration samples picks 11 components; the
    # master model on raw slave test spectra (no transfer) has RMSEP 0.276.
    model = PLSCV(max_components=15, cv=None).fit(corn.X("master", "cal"), corn.y("cal"))
    assert model.n_components_ == 11
    rmsep = np.sqrt(np.mean((model.predict(corn.X("slave", "test")) - corn.y("test")) ** 2))
    assert rmsep == pytest.approx(0.276, abs=5e-4)


def test_model_update_is_pls_on_the_pooled_data():
    X, _, y = _pair(n=16, p=20)
    upd = fit_model_update(X[:10], y[:10], X[10:], y[10:], max_components=4, cv=None)
    ref = PLSCV(max_components=4, cv=None).fit(X, y)
    np.testing.assert_allclose(upd.coef_path_, ref.coef_path_)


# ----------------------------------------------------------------------------- preprocessing


def test_snv_rows_have_zero_mean_unit_sd_and_ignore_affine_row_changes():
    X, _, _ = _pair()
    Z = SNV().fit_transform(X)
    np.testing.assert_allclose(Z.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(Z.std(axis=1, ddof=1), 1)
    gain, offset = np.arange(1, 13)[:, None], np.arange(12)[:, None]
    np.testing.assert_allclose(SNV().fit_transform(gain * X + offset), Z, atol=1e-12)
    np.testing.assert_array_equal(SNV().fit_transform(np.ones((2, 5))), 0)  # flat spectra


def test_savgol_derivative_of_a_quadratic_is_exact():
    x = np.arange(40.0)
    X = np.stack([0.5 * x**2 - 3 * x, 2 * x + 1])
    D = SavitzkyGolay(window_length=7, polyorder=2, deriv=1).fit_transform(X)
    np.testing.assert_allclose(D[0], x - 3, atol=1e-9)  # also at the ends ("interp")
    np.testing.assert_allclose(D[1], 2, atol=1e-9)
    with pytest.raises(ConfigError):
        SavitzkyGolay(window_length=4).fit(X)
    with pytest.raises(ConfigError):
        SavitzkyGolay(polyorder=1, deriv=2).fit(X)


# ----------------------------------------------------------------------------- DS


def test_ds_between_identical_instruments_is_a_projection_not_identity():
    X, _, _ = _pair()
    ds = DirectStandardization().fit(X, X)
    F = ds.transfer_matrix()
    np.testing.assert_allclose(ds.transform(X), X, atol=1e-10)  # the standards themselves
    np.testing.assert_allclose(F @ F, F, atol=1e-10)  # idempotent
    np.testing.assert_allclose(F, F.T, atol=1e-10)  # orthogonal projection
    assert np.trace(F) == pytest.approx(ds.rank_) and ds.rank_ == len(X) - 1 < X.shape[1]
    # A direction outside the span of the centred standards maps to the mean.
    basis = np.linalg.svd(X - X.mean(axis=0))[2]
    outside = basis[-1]
    np.testing.assert_allclose(
        ds.transform((X.mean(axis=0) + outside)[None]), X.mean(axis=0)[None], atol=1e-10
    )


def test_ds_truncation_and_ridge_follow_the_svd_formula():
    Xs, Xm, _ = _pair()
    Xc, Yc = Xs - Xs.mean(axis=0), Xm - Xm.mean(axis=0)
    u, s, vt = np.linalg.svd(Xc, full_matrices=False)
    F3 = vt[:3].T @ np.diag(1 / s[:3]) @ u[:, :3].T @ Yc
    np.testing.assert_allclose(
        DirectStandardization(n_components=3).fit(Xs, Xm).transfer_matrix(), F3, atol=1e-10
    )
    a = 1e-3
    f = s / (s**2 + a * s[0] ** 2)
    F_ridge = vt.T @ np.diag(f) @ u.T @ Yc
    np.testing.assert_allclose(
        DirectStandardization(alpha=a).fit(Xs, Xm).transfer_matrix(), F_ridge, atol=1e-10
    )
    ds = DirectStandardization(n_components=3).fit(Xs, Xm)
    np.testing.assert_allclose(ds.transform(Xs), ds.y_mean_ + (Xs - ds.x_mean_) @ F3, atol=1e-10)


def test_ds_matches_chemotools_without_centring_only(corn):
    from chemotools.adaptation import DirectStandardization as ChemoDS

    Xs, Xm, Xt = corn.X("slave", "trans"), corn.X("master", "trans"), corn.X("slave", "test")
    chemo = ChemoDS().fit(Xs, X_source=Xm).transform(Xt)
    # chemotools regresses raw spectra through the origin (minimum-norm pseudo-inverse):
    ours = DirectStandardization(center=False).fit(Xs, Xm).transform(Xt)
    np.testing.assert_allclose(ours, chemo, atol=1e-10)
    # ... which is not Wang et al.'s centred DS (ours by default).
    centred = DirectStandardization().fit(Xs, Xm).transform(Xt)
    assert np.abs(centred - chemo).max() > 1e-4


# ----------------------------------------------------------------------------- PDS


def _pds_reference(Xs, Xm, h, k, model):
    """Slow PDS: one scikit-learn regression per master channel on its truncated window."""
    p = Xs.shape[1]
    out = []
    for j in range(p):
        lo, hi = max(0, j - h), min(p, j + h + 1)
        if model == "pls":
            reg = PLSRegression(n_components=min(k, hi - lo), scale=False)
        else:
            reg = make_pipeline(PCA(n_components=min(k, hi - lo)), LinearRegression())
        out.append(reg.fit(Xs[:, lo:hi], Xm[:, j]))

    def predict(X):
        cols = [r.predict(X[:, max(0, j - h) : min(p, j + h + 1)]) for j, r in enumerate(out)]
        return np.stack([c.ravel() for c in cols], axis=1)

    return predict


@pytest.mark.parametrize("model", ["pls", "pcr"])
@pytest.mark.parametrize(("h", "k"), [(0, 1), (2, 2), (3, 3)])
def test_pds_matches_a_slow_window_by_window_reference(model, h, k):
    Xs, Xm, _ = _pair()
    pds = PiecewiseDirectStandardization(half_width=h, n_components=k, local_model=model).fit(
        Xs, Xm
    )
    ref = _pds_reference(Xs, Xm, h, k, model)
    X_new = Xs + 0.05
    np.testing.assert_allclose(pds.transform(X_new), ref(X_new), atol=1e-8)
    F = pds.transfer_matrix()
    assert np.all(F[np.abs(np.subtract.outer(np.arange(24), np.arange(24))) > h] == 0)  # banded
    np.testing.assert_allclose(
        pds.transform(X_new), pds.y_mean_ + (X_new - pds.x_mean_) @ F, atol=1e-10
    )


@pytest.mark.parametrize(("h", "k"), [(2, 1), (5, 2), (7, 3)])
def test_pds_matches_chemotools_with_unscaled_local_pls(corn, h, k):
    from chemotools.adaptation import PiecewiseDirectStandardization as ChemoPDS

    Xs, Xm, Xt = corn.X("slave", "trans"), corn.X("master", "trans"), corn.X("slave", "test")
    # Same definition when chemotools' local PLS does not scale (its default scale=True does);
    # chemotools' window_length is our half_width.
    chemo = ChemoPDS(window_length=h, n_components=k, scale=False).fit(Xs, X_source=Xm)
    ours = PiecewiseDirectStandardization(half_width=h, n_components=k).fit(Xs, Xm)
    np.testing.assert_allclose(ours.transform(Xt), chemo.transform(Xt), atol=1e-9)


def test_pds_window_centres_for_another_channel_count():
    Xs, Xm, _ = _pair(p=24)
    pds = PiecewiseDirectStandardization(half_width=1, n_components=1).fit(Xs, Xm[:, ::2])
    np.testing.assert_array_equal(pds.centres_, np.arange(12) * 2 + 1)  # ⌊(j + ½)·24/12⌋
    assert pds.transform(Xs).shape == (12, 12)


@pytest.mark.parametrize(
    "estimator",
    [
        PiecewiseDirectStandardization(half_width=2, local_model="pcr"),
        PiecewiseDirectStandardization(half_width=2),
        CCATransfer(n_components=5),
    ],
)
def test_fit_path_equals_separate_fits(estimator):
    Xs, Xm, _ = _pair()
    param = estimator._path_param
    values = [1, 2, 3]
    for est, v in zip(estimator._fit_path(Xs, Xm, values), values, strict=True):
        direct = estimator.set_params(**{param: v}).fit(Xs, Xm)
        np.testing.assert_allclose(est.transform(Xs), direct.transform(Xs), atol=1e-10)


# ----------------------------------------------------------------------------- CCA


def test_cca_needs_compression_because_every_correlation_is_one_when_n_below_p():
    Xs, Xm, _ = _pair(n=10, p=24)
    full = CCATransfer(n_components=9).fit(Xs, Xm)  # centred rank n − 1 = 9: no compression
    np.testing.assert_allclose(full.canonical_correlations_, 1.0, atol=1e-8)
    compressed = CCATransfer(n_components=3).fit(Xs, Xm)
    assert compressed.canonical_correlations_.max() < 1.0 - 1e-6


def test_cca_with_all_pairs_is_ds_between_pca_spaces():
    # When the master spectra have rank ≤ k, CCA keeping every pair equals rank-k DS.
    Xs, _, _ = _pair(n=12, p=24, rank=3)
    rng = np.random.default_rng(1)
    Xm = 0.3 + (Xs - Xs.mean(axis=0)) @ np.linalg.svd(Xs - Xs.mean(axis=0))[2][
        :4
    ].T @ rng.standard_normal((4, 24))
    cca = CCATransfer(n_components=4).fit(Xs, Xm)
    ds = DirectStandardization(n_components=4).fit(Xs, Xm)
    np.testing.assert_allclose(cca.transform(Xs + 0.1), ds.transform(Xs + 0.1), atol=1e-8)
    assert CCATransfer(n_components=4, n_canonical=2).fit(Xs, Xm).canonical_correlations_.shape == (
        2,
    )


# ----------------------------------------------------------------------------- SBC


@pytest.fixture
def master_model():
    X, _, y = _pair(n=20, p=24)
    return PLSCV(max_components=4, cv=None).fit(X, y)


def test_sbc_with_slope_one_and_bias_zero_returns_the_model_predictions(master_model):
    Xs, Xm, _ = _pair(seed=3)
    sbc = SlopeBiasCorrection(FrozenEstimator(master_model)).fit(Xs, master_model.predict(Xs))
    assert sbc.slope_ == pytest.approx(1.0) and sbc.bias_ == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(sbc.predict(Xm), master_model.predict(Xm), atol=1e-12)
    # Master-prediction variant between identical instruments: nothing to correct either.
    same = SlopeBiasCorrection(FrozenEstimator(master_model), reference="master").fit(Xs, Xs)
    assert same.slope_ == pytest.approx(1.0) and same.bias_ == pytest.approx(0.0, abs=1e-12)


def test_sbc_recovers_a_known_line_and_the_variants_differ_in_reference_only(master_model):
    Xs, Xm, _ = _pair(seed=3)
    f_s, f_m = master_model.predict(Xs), master_model.predict(Xm)
    classical = SlopeBiasCorrection(FrozenEstimator(master_model)).fit(Xs, 2.0 + 0.5 * f_s)
    assert (classical.slope_, classical.bias_) == pytest.approx((0.5, 2.0))
    by_master = SlopeBiasCorrection(FrozenEstimator(master_model), reference="master").fit(Xs, Xm)
    by_values = SlopeBiasCorrection(FrozenEstimator(master_model)).fit(Xs, f_m)
    assert (by_master.slope_, by_master.bias_) == pytest.approx((by_values.slope_, by_values.bias_))
    bias_only = SlopeBiasCorrection(FrozenEstimator(master_model), fit_slope=False).fit(Xs, f_m)
    assert bias_only.slope_ == 1.0 and bias_only.bias_ == pytest.approx(np.mean(f_m - f_s))


def test_sbc_refuses_an_unfitted_model_and_a_single_standard(master_model):
    Xs, _, y = _pair()
    with pytest.raises(ConfigError):
        SlopeBiasCorrection().fit(Xs, y)
    with pytest.raises(ValueError, match="n_samples = 1"):
        SlopeBiasCorrection(FrozenEstimator(master_model)).fit(Xs[:1], y[:1])


# ----------------------------------------------------------------------------- di-PLS


def _dipls_reference(Xs, y, Xt, A, lam):
    """di-PLS in the full p × p space, equation by equation (Nikzad-Langerodi et al. 2018)."""
    xs, xt, y = Xs - Xs.mean(axis=0), Xt - Xt.mean(axis=0), y - y.mean()
    p = xs.shape[1]
    W, P, C = [], [], []
    for _ in range(A):
        yy = y @ y
        vals, vecs = np.linalg.eigh(xs.T @ xs / len(xs) - xt.T @ xt / len(xt))
        D = vecs @ np.diag(np.abs(vals)) @ vecs.T
        w = np.linalg.solve(np.eye(p) + lam / yy * D, xs.T @ y / yy)
        w /= np.linalg.norm(w)
        t, t_t = xs @ w, xt @ w
        c, p_s, p_t = t @ y / (t @ t), xs.T @ t / (t @ t), xt.T @ t_t / (t_t @ t_t)
        xs, xt, y = xs - np.outer(t, p_s), xt - np.outer(t_t, p_t), y - c * t
        W.append(w)
        P.append(p_s)
        C.append(c)
    W, P = np.array(W).T, np.array(P).T
    return W @ np.linalg.solve(P.T @ W, np.array(C))


def _domains(seed=0):
    Xs, Xm, y = _pair(n=14, p=30, seed=seed)
    Xt = Xm[:6] * 1.05 + 0.02  # a shifted, scaled "slave" target domain
    return Xs, y, Xt


@pytest.mark.parametrize("lam", [0.0, 0.5, 50.0])
def test_dipls_matches_the_full_space_equations(lam):
    Xs, y, Xt = _domains()
    X, Y = np.vstack([Xs, Xt]), np.concatenate([y, np.full(len(Xt), np.nan)])
    model = DomainInvariantPLS(n_components=3, lam=lam, centering="source").fit(X, Y)
    np.testing.assert_allclose(model.coef_, _dipls_reference(Xs, y, Xt, 3, lam), atol=1e-8)


def test_dipls_with_lambda_zero_is_pls_up_to_its_centring():
    Xs, y, Xt = _domains()
    X, Y = np.vstack([Xs, Xt]), np.concatenate([y, np.full(len(Xt), np.nan)])
    pls = PLSRegression(n_components=3, scale=False).fit(Xs, y)
    source = DomainInvariantPLS(3, lam=0.0, centering="source").fit(X, Y)
    np.testing.assert_allclose(source.predict(Xt), pls.predict(Xt).ravel(), atol=1e-10)
    # Default: slave spectra centred on the target mean, i.e. PLS on x − x̄_t + x̄_s.
    target = DomainInvariantPLS(3, lam=0.0).fit(X, Y)
    shifted = Xt - Xt.mean(axis=0) + Xs.mean(axis=0)
    np.testing.assert_allclose(target.predict(Xt), pls.predict(shifted).ravel(), atol=1e-10)
    no_target = DomainInvariantPLS(3, lam=5.0).fit(Xs, y)  # no NaN rows: D = 0
    np.testing.assert_allclose(no_target.predict(Xt), pls.predict(Xt).ravel(), atol=1e-10)


def test_dipls_lambda_shrinks_the_domain_discrepancy():
    Xs, y, Xt = _domains()
    X, Y = np.vstack([Xs, Xt]), np.concatenate([y, np.full(len(Xt), np.nan)])
    lam0 = dipls_lambda_scale(X, Y)
    gaps = [DomainInvariantPLS(1, lam=f * lam0).fit(X, Y).discrepancy_[0] for f in (1e-3, 1, 1e3)]
    assert gaps[0] > gaps[1] > gaps[2]


def test_dipls_lambda_scale_and_nan_rules():
    Xs, y, Xt = _domains()
    X, Y = np.vstack([Xs, Xt]), np.concatenate([y, np.full(len(Xt), np.nan)])
    xs, xt = Xs - Xs.mean(axis=0), Xt - Xt.mean(axis=0)
    M = xs.T @ xs / len(xs) - xt.T @ xt / len(xt)
    yc = y - y.mean()
    assert dipls_lambda_scale(X, Y) == pytest.approx(yc @ yc / np.abs(np.linalg.eigvalsh(M)).max())
    with pytest.raises(ValueError, match="every y is NaN"):
        DomainInvariantPLS().fit(Xt, np.full(len(Xt), np.nan))
    with pytest.raises(ValueError):
        DomainInvariantPLS().fit(Xs, np.where(np.arange(len(y)) == 0, np.inf, y))


# ----------------------------------------------------------------------------- samples


def test_kennard_stone_hand_example():
    X = np.array([[0.0], [1.0], [3.0], [7.0], [10.0]])
    # Farthest pair (0, 10); then 3 and 7 tie at distance 3 (lowest index first); then 1.
    np.testing.assert_array_equal(kennard_stone(X, 5), [0, 4, 2, 3, 1])
    np.testing.assert_array_equal(kennard_stone(X, 3), [0, 4, 2])
    square = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.5]])
    np.testing.assert_array_equal(kennard_stone(square, 3), [0, 3, 1])
    with pytest.raises(ConfigError):
        kennard_stone(X, 6)


def test_kennard_stone_is_nested_and_random_subsets_reproducible():
    X, _, _ = _pair(n=20)
    full = kennard_stone(X, 20)
    assert sorted(full) == list(range(20))
    for n in (2, 5, 11):
        np.testing.assert_array_equal(kennard_stone(X, n), full[:n])
    a = random_subset(30, 10, seed=4)
    np.testing.assert_array_equal(a, random_subset(30, 10, seed=4))
    assert len(set(a)) == 10 and np.all(np.diff(a) > 0) and a.max() < 30


# ----------------------------------------------------------------------------- selection


def test_select_transfer_params_is_leave_one_out_over_the_standards(master_model):
    Xs, Xm, y = _pair(n=10, seed=5)
    candidates = [{"n_components": r} for r in (1, 2, 3)] + [{"alpha": 1e-2}]
    sel = select_transfer_params(DirectStandardization(), candidates, Xs, Xm, master_model, y=y)
    by_hand = []
    for params in candidates:
        press = 0.0
        for train, val in LeaveOneOut().split(Xs):
            ds = DirectStandardization(**params).fit(Xs[train], Xm[train])
            press += float(((master_model.predict(ds.transform(Xs[val])) - y[val]) ** 2).sum())
        by_hand.append(np.sqrt(press / len(y)))
    np.testing.assert_allclose(sel["rmsecv"], by_hand)
    assert sel["best"] == candidates[int(np.argmin(by_hand))] and sel["criterion"] == "y"
    unsupervised = select_transfer_params(DirectStandardization(), candidates, Xs, Xm, master_model)
    assert unsupervised["criterion"] == "master"


def test_grouped_path_selection_scores_like_separate_fits(master_model):
    Xs, Xm, y = _pair(n=9, seed=6)
    grid = param_grid(half_width=[1, 3], n_components=[1, 2, 3])
    sel = select_transfer_params(
        PiecewiseDirectStandardization(), grid, Xs, Xm, master_model, y=y, cv=3
    )
    # A candidate list without the path parameter goes through one fit per candidate.
    singles = [
        select_transfer_params(
            PiecewiseDirectStandardization(**c), [{}], Xs, Xm, master_model, y=y, cv=3
        )["rmsecv"][0]
        for c in grid
    ]
    np.testing.assert_allclose(sel["rmsecv"], singles, rtol=1e-10)


def test_fast_selection_path_scores_like_the_validated_one(master_model):
    # With a PLSCV master model the CV loops skip scikit-learn's per-call validation; wrapped
    # in FrozenEstimator (not a PLSCV) the model goes through predict with validation: the
    # same RMSECV to the last bit, for a grouped path (PDS, CCA) and one fit per candidate (DS).
    Xs, Xm, y = _pair(n=9, seed=8)
    frozen = FrozenEstimator(master_model)
    for est, grid in (
        (PiecewiseDirectStandardization(), param_grid(half_width=[1, 2], n_components=[1, 2])),
        (CCATransfer(), [{"n_components": 2, "n_canonical": c} for c in (1, 2)]),
        (DirectStandardization(), [{"n_components": 1}, {"alpha": 0.1}]),
    ):
        fast = select_transfer_params(est, grid, Xs, Xm, master_model, y=y, cv=3)
        slow = select_transfer_params(est, grid, Xs, Xm, frozen, y=y, cv=3)
        assert fast["rmsecv"] == slow["rmsecv"] and fast["best"] == slow["best"]
    with pytest.raises(DataError, match="master model takes 24 channels, the master standards"):
        select_transfer_params(DirectStandardization(), [{}], Xs, Xm[:, :20], master_model, y=y)


def test_selection_sees_only_what_it_is_given(master_model):
    # No selection helper takes test data; NaN test arrays elsewhere cannot reach them, and the
    # helpers refuse non-finite input outright.
    Xs, Xm, y = _pair(n=8, seed=7)
    with pytest.raises(ValueError):
        select_transfer_params(
            DirectStandardization(), [{}], np.full_like(Xs, np.nan), Xm, master_model, y=y
        )
    with pytest.raises(DataError):
        select_dipls_params(Xs, y, Xm, np.full(len(Xm), np.nan), max_components=2)


def test_select_dipls_params_returns_a_cv_table():
    Xs, y, Xt = _domains()
    yt = y[:6] + 0.01
    sel = select_dipls_params(Xs, y, Xt, yt, max_components=3, lambda_factors=(0.0, 1.0), cv=3)
    table = np.array(sel["rmsecv"])
    assert table.shape == (2, 3)
    i, a = np.unravel_index(np.argmin(table), table.shape)
    assert sel["n_components"] == a + 1 and sel["lambda_factor"] == (0.0, 1.0)[i]
    assert sel["lam"] == pytest.approx(sel["lambda_factor"] * sel["lambda_scale"])
