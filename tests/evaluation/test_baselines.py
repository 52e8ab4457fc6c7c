"""Reconstruction baselines: known answers, exact recovery, masked inputs never read, registry."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from spektron.errors import ConfigError, DataError
from spektron.evaluation import baselines
from spektron.evaluation.baselines import (
    InterpolationBaseline,
    MeanSpectrumBaseline,
    PCAImputationBaseline,
    available_baselines,
    build_baseline,
    register_baseline,
    select_pca_components,
)

RECON = "reconstruction"


def _low_rank(rng: np.random.Generator, n: int, basis: np.ndarray, noise: float = 0.0):
    """n spectra 0.5 + c·basis (+ noise), basis (k, L), coefficient scales 3 → 1."""
    k, length = basis.shape
    coefs = rng.normal(size=(n, k)) * np.linspace(3.0, 1.0, k)  # (n, k)
    return 0.5 + coefs @ basis + noise * rng.normal(size=(n, length))  # (n, L)


def _hide(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Masked entries replaced by NaN: a baseline that reads them returns NaN."""
    return np.where(mask, np.nan, values)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_mean_baseline_returns_the_training_mean(rng):
    train = rng.random((20, 30))
    values = rng.random((4, 30))
    mask = rng.random((4, 30)) < 0.3

    out = build_baseline(RECON, "mean").fit(train).predict(_hide(values, mask), mask)

    assert np.allclose(out, train.mean(axis=0)[None, :].repeat(4, axis=0))


def test_interpolation_is_exact_on_a_linear_spectrum_and_keeps_observed_values(rng):
    line = 2.0 - 0.01 * np.arange(100.0)  # (L,)
    values = np.stack([line, 3.0 * line])  # (2, L)
    mask = np.zeros_like(values, dtype=bool)
    mask[0, 10:40] = True
    mask[1, 1:99] = rng.random(98) < 0.5  # ends observed

    out = InterpolationBaseline().fit(rng.random((5, 100))).predict(_hide(values, mask), mask)

    assert np.allclose(out, values, atol=1e-12)
    assert np.array_equal(out[~mask], values[~mask])


def test_interpolation_flat_at_the_ends_and_mean_without_observations(rng):
    train = rng.random((5, 10))
    values = np.arange(10.0)[None, :].repeat(2, axis=0)  # (2, 10)
    mask = np.zeros((2, 10), bool)
    mask[0, :3] = mask[0, 7:] = True
    mask[1] = True

    out = InterpolationBaseline().fit(train).predict(_hide(values, mask), mask)

    assert out[0].tolist() == [3, 3, 3, 3, 4, 5, 6, 6, 6, 6]
    assert np.allclose(out[1], train.mean(axis=0))


def test_pca_recovers_a_spectrum_in_the_span_from_partial_observations(rng):
    basis = rng.normal(size=(6, 200))  # (k, L)
    train = _low_rank(rng, 100, basis)  # rank-6 (affine) data
    test = _low_rank(rng, 8, basis)  # (8, L) in the same affine span
    mask = rng.random(test.shape) < 0.4

    exact = PCAImputationBaseline(n_components=6, alpha=0.0).fit(train)
    ridge = build_baseline(RECON, "pca", n_components=6).fit(train)  # default α = 1e-6

    assert np.allclose(exact.predict(_hide(test, mask), mask), test, atol=1e-8)
    out = ridge.predict(_hide(test, mask), mask)
    assert np.allclose(out, test, atol=1e-4 * np.abs(test).max())
    assert np.array_equal(out[~mask], test[~mask])  # observed values returned unchanged


def test_pca_with_too_few_components_cannot_recover(rng):
    basis = rng.normal(size=(6, 200))
    train, test = _low_rank(rng, 100, basis), _low_rank(rng, 8, basis)
    mask = rng.random(test.shape) < 0.4

    out = PCAImputationBaseline(n_components=3).fit(train).predict(_hide(test, mask), mask)

    assert np.mean((out - test)[mask] ** 2) > 0.1


@pytest.mark.parametrize("name", ["mean", "interpolation", "pca"])
def test_nan_in_masked_positions_never_leaks(rng, name):
    train = rng.random((40, 64))
    values = rng.random((6, 64))
    mask = np.zeros((6, 64), bool)
    mask[0, :8] = mask[1, -8:] = mask[2, 20:40] = mask[3] = True  # ends, middle, everything
    mask[5] = rng.random(64) < 0.5
    model = build_baseline(RECON, name, **({"n_components": 8} if name == "pca" else {}))

    out = model.fit(train).predict(_hide(values, mask), mask)
    garbage = model.predict(np.where(mask, 1e300, values), mask)

    assert out.shape == (6, 64) and np.all(np.isfinite(out))
    assert np.array_equal(out, garbage)


def test_select_pca_components_finds_the_true_rank(rng):
    basis = rng.normal(size=(5, 256))
    train = _low_rank(rng, 300, basis, noise=0.05)
    val = _low_rank(rng, 100, basis, noise=0.05)
    mask = rng.random(val.shape) < 0.3

    k = select_pca_components(train, val, mask, candidates=(2, 3, 5, 8, 12))

    assert k == 5


def test_select_pca_components_validates(rng):
    train, val = rng.random((10, 20)), rng.random((3, 20))
    mask = rng.random((3, 20)) < 0.5

    with pytest.raises(ConfigError, match="n_components"):
        select_pca_components(train, val, mask, candidates=(4, 16))
    with pytest.raises(DataError, match="hides no point"):
        select_pca_components(train, val, np.zeros((3, 20), bool), candidates=(2,))
    basis = rng.normal(size=(5, 20))
    with pytest.warns(UserWarning, match="largest candidate"):  # rank 5 > every candidate
        select_pca_components(_low_rank(rng, 30, basis), _low_rank(rng, 3, basis), mask, (1, 2))


def test_predict_validation():
    model = MeanSpectrumBaseline()
    with pytest.raises(NotFittedError):
        model.predict(np.zeros((1, 5)), np.zeros((1, 5), bool))
    with pytest.raises(DataError, match="non-finite"):
        model.fit(np.array([[0.0, np.nan]]))
    with pytest.raises(DataError, match=r"\(N, L\)"):
        model.fit(np.zeros(5))

    model.fit(np.zeros((3, 5)))
    with pytest.raises(DataError, match=r"\(B, 5\)"):
        model.predict(np.zeros((1, 6)), np.zeros((1, 6), bool))
    with pytest.raises(DataError, match="mask"):
        model.predict(np.zeros((2, 5)), np.zeros((1, 5), bool))
    with pytest.raises(DataError, match="bool"):
        model.predict(np.zeros((1, 5)), np.zeros((1, 5), int))
    with pytest.raises(DataError, match="observed"):
        model.predict(np.full((1, 5), np.nan), np.zeros((1, 5), bool))


def test_pca_parameter_validation():
    with pytest.raises(ConfigError, match="n_components"):
        PCAImputationBaseline(n_components=6).fit(np.zeros((5, 10)))
    with pytest.raises(ConfigError, match="alpha"):
        PCAImputationBaseline(n_components=2, alpha=-1.0).fit(
            np.random.default_rng(0).random((5, 10))
        )


def test_registry_lists_builds_and_rejects():
    assert available_baselines(RECON) == ["interpolation", "mean", "pca"]
    model = build_baseline(RECON, "pca", n_components=4, alpha=1e-3)
    assert isinstance(model, PCAImputationBaseline)
    assert model.get_params() == {"n_components": 4, "alpha": 1e-3}

    with pytest.raises(ConfigError, match=r"\['interpolation', 'mean', 'pca'\]"):
        build_baseline(RECON, "median")
    with pytest.raises(ConfigError, match="tasks are"):
        available_baselines("reconstructoin")
    with pytest.raises(ConfigError, match="bad parameters"):
        build_baseline(RECON, "mean", n_components=3)


def test_registry_is_generic_over_tasks(monkeypatch):
    monkeypatch.setattr(baselines, "_REGISTRY", dict(baselines._REGISTRY))

    @register_baseline("demo_task", "identity")
    class Identity:
        def __init__(self, scale: float = 1.0) -> None:
            self.scale = scale

    assert available_baselines("demo_task") == ["identity"]
    assert build_baseline("demo_task", "identity", scale=2.0).scale == 2.0
    assert available_baselines(RECON) == ["interpolation", "mean", "pca"]
    with pytest.raises(ConfigError, match="registered twice"):
        register_baseline("demo_task", "identity")(type("Other", (), {}))
