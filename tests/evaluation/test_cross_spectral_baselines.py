"""Cross-spectral (E2) baselines: known answers, exact linear recovery, retrieval vs brute force."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cross_decomposition import PLSRegression
from sklearn.exceptions import NotFittedError

from spektron.errors import ConfigError, DataError
from spektron.evaluation.baselines import (
    IdentityBaseline,
    MeanTargetBaseline,
    NearestNeighbourBaseline,
    PLSBaseline,
    _argmax_scores,
    available_baselines,
    build_baseline,
    fit_pls_by_validation,
    select_pls_components,
)

E2 = "cross_spectral"
NAMES = ["identity", "mean", "nearest_neighbour", "pls"]


def _paired(rng: np.random.Generator, n: int, a: np.ndarray, b: np.ndarray, noise: float = 0.0):
    """n pairs (z a, z b) (+ noise) from shared latents z (n, r), scales 3 → 1: rank-r inputs."""
    r, length = a.shape
    z = rng.normal(size=(n, r)) * np.linspace(3.0, 1.0, r)  # (n, r)
    x = z @ a + noise * rng.normal(size=(n, length))  # (n, L)
    y = z @ b + noise * rng.normal(size=(n, length))  # (n, L)
    return x, y


def _brute_force_nearest(queries: np.ndarray, train: np.ndarray, metric: str) -> np.ndarray:
    """Slow reference: the full (B, N) distance matrix, argmin."""
    if metric == "cosine":
        q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        t = train / np.linalg.norm(train, axis=1, keepdims=True)
        dist = 1.0 - q @ t.T  # (B, N)
    else:
        dist = ((queries[:, None, :] - train[None, :, :]) ** 2).sum(axis=-1)  # (B, N)
    return dist.argmin(axis=1)


def _one_nan(values: np.ndarray) -> np.ndarray:
    """A copy with one NaN."""
    out = values.copy()
    out[0, 3] = np.nan
    return out


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_identity_returns_the_input(rng):
    x_tr, y_tr, query = rng.random((10, 32)), rng.random((10, 32)), rng.random((3, 32))

    out = build_baseline(E2, "identity").fit(x_tr, y_tr).predict(query)

    assert np.array_equal(out, query)
    assert out is not query


def test_mean_returns_the_mean_target(rng):
    x_tr, y_tr, query = rng.random((10, 32)), rng.random((10, 32)), rng.random((4, 32))

    out = build_baseline(E2, "mean").fit(x_tr, y_tr).predict(query)

    assert np.allclose(out, np.tile(y_tr.mean(axis=0), (4, 1)))


def test_pls_recovers_an_exactly_linear_map(rng):
    # Inputs spanning r = 5 dimensions and Y = X W with W of rank 3: r components exhaust X,
    # so PLS equals least squares and recovers X W exactly, also for new inputs in the span.
    a = rng.normal(size=(5, 48))  # (r, L)
    w = rng.normal(size=(48, 3)) @ rng.normal(size=(3, 48)) / 10.0  # (L, L), rank 3
    x_tr = rng.normal(size=(60, 5)) @ a  # (N, L)
    x_te = rng.normal(size=(7, 5)) @ a

    model = build_baseline(E2, "pls", n_components=5).fit(x_tr, x_tr @ w)

    assert np.allclose(model.predict(x_te), x_te @ w, atol=1e-8 * np.abs(x_te @ w).max())
    too_few = PLSBaseline(n_components=2).fit(x_tr, x_tr @ w).predict(x_te)
    assert np.mean((too_few - x_te @ w) ** 2) > 1e-2 * np.mean((x_te @ w) ** 2)


def test_select_pls_components_picks_the_true_rank(rng):
    a, b = rng.normal(size=(4, 64)), rng.normal(size=(4, 64))  # rank-4 shared latents
    x_tr, y_tr = _paired(rng, 200, a, b, noise=0.1)
    x_val, y_val = _paired(rng, 100, a, b, noise=0.1)

    assert select_pls_components(x_tr, y_tr, x_val, y_val) == 4
    assert select_pls_components(x_tr, y_tr, x_val, y_val, candidates=(1, 2, 3, 4, 5, 6)) == 4


def test_select_pls_nested_predictions_equal_separate_fits(rng):
    # The selection scores k from the first k components of one k_max fit (fast path); it must
    # predict what a separate k-component fit predicts (slow reference).
    a, b = rng.normal(size=(6, 40)), rng.normal(size=(6, 40))
    x_tr, y_tr = _paired(rng, 80, a, b, noise=0.2)
    x_val = _paired(rng, 10, a, b, noise=0.2)[0]
    model = PLSBaseline(n_components=8).fit(x_tr, y_tr)

    nested = model.predict_nested(x_val, (1, 3, 8))
    for k, pred in zip((1, 3, 8), nested, strict=True):
        separate = PLSBaseline(n_components=k).fit(x_tr, y_tr).predict(x_val)
        assert np.allclose(pred, separate, rtol=1e-9, atol=1e-9)
        truncated = model.truncated(k)
        assert truncated.n_components == k and truncated.x_rotations_.shape == (40, k)
        assert np.allclose(truncated.predict(x_val), separate, rtol=1e-9, atol=1e-9)
    with pytest.raises(ConfigError, match="fitted components"):
        model.predict_nested(x_val, (9,))
    with pytest.raises(ConfigError, match="fitted components"):
        model.truncated(9)
    chosen, k = fit_pls_by_validation(x_tr, y_tr, *_paired(rng, 50, a, b, noise=0.2), (2, 6, 8))
    assert k == 6 and chosen.n_components == 6


def test_pls_selection_walks_up_and_stops_past_the_best(rng, monkeypatch):
    # Rank 4: the walk scores 1, 2, 4, then 8 (worse) and stops there; 16 and 32 are never
    # fitted, and the model is the 4-component fit.
    from spektron.evaluation import baselines as B

    a, b = rng.normal(size=(4, 64)), rng.normal(size=(4, 64))
    x_tr, y_tr = _paired(rng, 200, a, b, noise=0.1)
    x_val, y_val = _paired(rng, 100, a, b, noise=0.1)
    grown: list[int] = []
    extend = B._KernelPLS.extend
    monkeypatch.setattr(B._KernelPLS, "extend", lambda self, k: (grown.append(k), extend(self, k)))

    model, k = fit_pls_by_validation(x_tr, y_tr, x_val, y_val, (1, 2, 4, 8, 16, 32))

    assert k == 4 and grown == [1, 2, 4, 8]
    separate = PLSBaseline(n_components=4).fit(x_tr, y_tr)
    assert np.allclose(model.predict(x_val), separate.predict(x_val), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("n", "length"), [(80, 40), (300, 300)])  # dense SVD / Lanczos path
def test_kernel_pls_equals_scikit_learn_nipals(rng, n, length):
    # The kernel algorithm must give NIPALS PLS2's fit (scikit-learn, converged tightly): same
    # predictions for every k, and the same scores up to the sign of each component.
    a, b = rng.normal(size=(6, length)), rng.normal(size=(6, length))
    x_tr, y_tr = _paired(rng, n, a, b, noise=0.2)
    x_val = _paired(rng, 10, a, b, noise=0.2)[0]
    for k in (1, 3, 12):
        ours = PLSBaseline(n_components=k).fit(x_tr, y_tr)
        ref = PLSRegression(n_components=k, scale=False, tol=1e-24, max_iter=100_000)
        ref.fit(x_tr, y_tr)
        scale = np.abs(ref.predict(x_val)).max()
        assert np.abs(ours.predict(x_val) - ref.predict(x_val)).max() < 1e-9 * scale
        t_ours, t_ref = ours.transform(x_val), ref.transform(x_val)
        sign = np.sign((t_ours * t_ref).sum(axis=0))
        assert np.allclose(t_ours * sign, t_ref, rtol=1e-7, atol=1e-9 * np.abs(t_ref).max())


def test_pls_beyond_the_rank_stops_with_zero_components(rng):
    # 6 samples: centred X has rank 5, so components 6.. are empty and change nothing.
    x, y = rng.normal(size=(6, 30)), rng.normal(size=(6, 30))
    model = PLSBaseline(n_components=6).fit(x, y)
    queries = rng.normal(size=(4, 30))

    assert model.n_effective_ == 5
    assert np.allclose(model.predict(x), y, atol=1e-8)  # 5 components fit 6 points exactly
    assert np.allclose(model.predict(queries), model.predict_nested(queries, (5,))[0])


def test_select_pls_components_validates(rng):
    x, y = rng.random((10, 20)), rng.random((10, 20))

    with pytest.raises(ConfigError, match="n_components"):
        select_pls_components(x, y, x[:3], y[:3], candidates=(4, 16))
    with pytest.raises(DataError, match="L = 20"):
        select_pls_components(x, y, rng.random((3, 21)), rng.random((3, 21)), candidates=(2,))
    a, b = rng.normal(size=(5, 20)), rng.normal(size=(5, 20))
    with pytest.warns(UserWarning, match="largest candidate"):  # rank 5 > every candidate
        select_pls_components(*_paired(rng, 30, a, b), *_paired(rng, 5, a, b), (1, 2))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_nearest_neighbour_returns_the_partner_of_a_training_input(rng, metric):
    x_tr, y_tr = rng.random((50, 32)), rng.random((50, 32))
    rows = np.array([7, 0, 49, 7])

    model = build_baseline(E2, "nearest_neighbour", metric=metric).fit(x_tr, y_tr)

    assert np.array_equal(model.retrieve(x_tr[rows]), rows)
    assert np.array_equal(model.predict(x_tr[rows]), y_tr[rows])


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_nearest_neighbour_agrees_with_brute_force(rng, metric):
    x_tr, y_tr = rng.normal(size=(300, 24)), rng.normal(size=(300, 24))
    queries = rng.normal(size=(40, 24))
    model = NearestNeighbourBaseline(metric=metric).fit(x_tr, y_tr)
    expected = _brute_force_nearest(queries, x_tr, metric)

    blocked = _argmax_scores(queries, model.keys_, model.bias_, query_block=7, train_block=32)

    assert np.array_equal(model.retrieve(queries), expected)
    assert np.array_equal(blocked, expected)  # many blocks on both axes
    assert np.array_equal(model.predict(queries), y_tr[expected])


def test_nearest_neighbour_ties_go_to_the_lowest_index_across_blocks(rng):
    row = rng.random(16)
    x_tr = np.stack([rng.random(16), row, rng.random(16), row, row])  # copies at 1, 3 and 4
    keys, bias = x_tr, -0.5 * (x_tr**2).sum(axis=1)

    for train_block in (1, 2, 3, 8):
        assert _argmax_scores(row[None], keys, bias, train_block=train_block).tolist() == [1]


def test_cosine_nearest_neighbour_is_invariant_to_scaling_the_query(rng):
    x_tr, y_tr = rng.normal(size=(200, 24)), rng.normal(size=(200, 24))
    queries = rng.normal(size=(30, 24))
    model = NearestNeighbourBaseline().fit(x_tr, y_tr)

    base = model.retrieve(queries)

    for scale in (1e-3, 0.7, 5.0, 1e4):
        assert np.array_equal(model.retrieve(scale * queries), base)
    assert not np.array_equal(
        NearestNeighbourBaseline(metric="euclidean").fit(x_tr, y_tr).retrieve(5.0 * queries),
        NearestNeighbourBaseline(metric="euclidean").fit(x_tr, y_tr).retrieve(queries),
    )  # Euclidean is not: the check above has teeth


@pytest.mark.parametrize("name", NAMES)
def test_input_validation(rng, name):
    model = build_baseline(E2, name, **({"n_components": 2} if name == "pls" else {}))
    x, y = rng.random((6, 10)), rng.random((6, 10))

    with pytest.raises(NotFittedError):
        model.predict(x)
    with pytest.raises(DataError, match="input spectra have 1 non-finite"):
        model.fit(_one_nan(x), y)
    with pytest.raises(DataError, match="target spectra have 1 non-finite"):
        model.fit(x, _one_nan(y))
    with pytest.raises(DataError, match=r"\(N, L\)"):
        model.fit(x[0], y[0])
    with pytest.raises(DataError, match="same grid"):
        model.fit(x, y[:, :9])

    model.fit(x, y)
    with pytest.raises(DataError, match="L = 10"):
        model.predict(rng.random((2, 11)))
    with pytest.raises(DataError, match="non-finite"):
        model.predict(_one_nan(x[:2]))
    with pytest.raises(DataError, match=r"\(N, L\)"):
        model.predict(x[0])


def test_parameter_validation(rng):
    x, y = rng.random((5, 10)), rng.random((5, 10))

    with pytest.raises(ConfigError, match="n_components"):
        PLSBaseline(n_components=6).fit(x, y)
    with pytest.raises(ConfigError, match="n_components"):
        PLSBaseline(n_components=2.5).fit(x, y)
    with pytest.raises(ConfigError, match="metric"):
        NearestNeighbourBaseline(metric="manhattan").fit(x, y)


def test_registry_lists_builds_and_rejects():
    assert available_baselines(E2) == NAMES
    assert isinstance(build_baseline(E2, "identity"), IdentityBaseline)
    assert isinstance(build_baseline(E2, "mean"), MeanTargetBaseline)
    assert build_baseline(E2, "pls").get_params() == {"n_components": 16}
    assert build_baseline(E2, "nearest_neighbour").get_params() == {"metric": "cosine"}

    with pytest.raises(ConfigError, match=r"choose one of \['identity', 'mean', "):
        build_baseline(E2, "knn")
    with pytest.raises(ConfigError, match="bad parameters"):
        build_baseline(E2, "identity", metric="cosine")
