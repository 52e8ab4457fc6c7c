"""E2 metrics: known answers, trivial predictions scoring low, regions, normalisation, skill."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from spektron.chemistry.spectra import lorentzian_broaden, make_grid, normalize_spectra
from spektron.errors import ConfigError, DataError
from spektron.evaluation.cross_spectral import (
    CROSS_SPECTRAL_DIRECTIONS,
    PRIMARY_METRIC,
    REGIONS,
    cross_spectral_metrics,
    direction,
    skill,
    summarise_cross_spectral,
)

GRID = make_grid(2048)  # 500–4000 cm⁻¹, Δν ≈ 1.71 cm⁻¹
TOLERANCES = (5.0, 10.0, 20.0)
# A realistic truth: eleven bands ≥ 60 cm⁻¹ apart, seven in the fingerprint region, one between
# the regions (a C≡N-like stretch), three X–H stretches; none within 40 cm⁻¹ of a region bound.
CENTRES = np.array(
    [620.0, 780.0, 950.0, 1100.0, 1260.0, 1450.0, 1650.0, 2250.0, 2950.0, 3060.0, 3350.0]
)
HEIGHTS = np.array([0.35, 1.0, 0.2, 0.6, 0.45, 0.8, 0.3, 0.25, 0.9, 0.4, 0.5])
FWHMS = np.array([10.0, 12.0, 15.0, 11.0, 13.0, 14.0, 10.0, 12.0, 15.0, 13.0, 11.0])


def _bands(centres, heights, fwhms) -> np.ndarray:
    """Sum of Lorentzians of individual widths on GRID, (L,)."""
    return sum(
        lorentzian_broaden(np.array([c]), np.array([h]), GRID, w)
        for c, h, w in zip(centres, heights, fwhms, strict=True)
    )


def _truth(shift: float = 0.0) -> np.ndarray:
    return _bands(CENTRES + shift, HEIGHTS, FWHMS)


def _gaussian(centre: float, sigma: float = 2.0, height: float = 1.0) -> np.ndarray:
    return height * np.exp(-0.5 * ((GRID - centre) / sigma) ** 2)


def _metrics(pred, true=None, **kwargs) -> dict[str, np.ndarray]:
    pred = np.atleast_2d(pred)
    true = np.broadcast_to(_truth() if true is None else true, pred.shape)
    return cross_spectral_metrics(pred, true, GRID, **kwargs)


def _assert_same(a: dict, b: dict, keys=None, **tol) -> None:
    for key in keys or a:
        np.testing.assert_allclose(a[key], b[key], equal_nan=True, err_msg=key, **tol)


@pytest.fixture(scope="module")
def identity() -> dict[str, np.ndarray]:
    return _metrics(_truth())


# --------------------------------------------------------------------------- known answers


def test_identity_is_perfect_on_every_metric_and_region(identity):
    assert set(identity) == {
        f"{r}/{m}" for r in REGIONS for m in ("mse", "cosine", "sid", "wasserstein")
    } | {
        f"{r}/{m}@{t:g}"
        for r in REGIONS
        for t in TOLERANCES
        for m in ("peak_precision", "peak_recall", "peak_f1", "peak_f1_weighted")
        + ("peak_intensity_corr",)
    }
    for key, value in identity.items():
        assert value.shape == (1,) and value.dtype == np.float64
        best = 1.0 if direction(key) == "higher" else 0.0
        assert value[0] == pytest.approx(best, abs=1e-12), key


def test_flat_prediction_scores_zero_on_peak_metrics():
    m = _metrics(np.full_like(GRID, 0.5))

    for region in REGIONS:
        for t in TOLERANCES:
            for name in ("peak_precision", "peak_f1", "peak_f1_weighted"):
                assert m[f"{region}/{name}@{t:g}"][0] == 0.0


def test_other_molecules_spectra_score_low_on_peak_f1():
    rng = np.random.default_rng(0)
    others = np.stack(
        [
            _bands(rng.uniform(550, 3950, 10), rng.uniform(0.1, 1.0, 10), rng.uniform(10, 15, 10))
            for _ in range(6)
        ]
    )  # (6, L)

    m = _metrics(others)

    for t in TOLERANCES:
        assert np.mean(m[f"full/peak_f1@{t:g}"]) < 0.25, t
        assert np.mean(m[f"full/peak_f1_weighted@{t:g}"]) < 0.3, t
    assert np.mean(m["full/cosine"]) < 0.2


@pytest.mark.parametrize("tol", TOLERANCES)
def test_a_comb_every_two_tolerances_finds_every_peak_but_scores_low(tol):
    # The comb's best case: every true band lies within τ/2 of a tooth, so recall is high and
    # only counting the predicted peaks too (precision) exposes the comb.
    teeth = np.arange(500.0 + tol / 2.0, 4000.0, 2.0 * tol)
    comb = lorentzian_broaden(teeth, np.ones_like(teeth), GRID, fwhm=tol / 2.0)

    m = _metrics(comb, tolerances=(tol,))

    key, n_true = f"@{tol:g}", CENTRES.size
    assert m[f"full/peak_recall{key}"][0] == 1.0
    assert m[f"full/peak_precision{key}"][0] == pytest.approx(n_true / teeth.size)
    assert m[f"full/peak_f1{key}"][0] == pytest.approx(2 * n_true / (n_true + teeth.size))
    assert m[f"full/peak_f1{key}"][0] < 0.25
    assert m[f"full/peak_f1_weighted{key}"][0] < 0.25


def test_shift_is_scored_by_the_tolerance():
    m = _metrics(np.stack([_truth(shift=3.0), _truth(shift=15.0)]))

    # 3 cm⁻¹ (plus at most one grid step of picking error) is within every tolerance.
    assert [m[f"full/peak_f1@{t:g}"][0] for t in TOLERANCES] == [1.0, 1.0, 1.0]
    assert [m[f"full/peak_f1@{t:g}"][1] for t in TOLERANCES] == [0.0, 0.0, 1.0]
    assert 0.0 < m["full/mse"][0] < m["full/mse"][1]  # the pointwise metrics see the shift
    assert m["full/wasserstein"][0] == pytest.approx(3.0, abs=0.5)
    assert m["full/wasserstein"][1] == pytest.approx(15.0, abs=1.5)


def test_wasserstein_of_two_narrow_peaks_is_their_distance():
    m = _metrics(_gaussian(1000.0), _gaussian(1300.0), regions={"full": (None, None)})

    assert m["full/wasserstein"][0] == pytest.approx(300.0, abs=1.0)


def test_wasserstein_matches_scipy_on_clipped_spectra():
    rng = np.random.default_rng(1)
    pred = rng.normal(0.2, 1.0, size=(3, GRID.size))  # signed: the clip matters
    true = rng.uniform(0.0, 1.0, size=(3, GRID.size))
    lo, hi = REGIONS["fingerprint"]
    sl = (GRID >= lo) & (GRID <= hi)

    m = cross_spectral_metrics(pred, true, GRID)

    for region, idx in (("full", slice(None)), ("fingerprint", sl)):
        ref = [
            wasserstein_distance(GRID[idx], GRID[idx], np.clip(p[idx], 0, None), t[idx])
            for p, t in zip(pred, true, strict=True)
        ]
        np.testing.assert_allclose(m[f"{region}/wasserstein"], ref, rtol=1e-9)


def test_wasserstein_is_nan_without_positive_mass():
    m = _metrics(-_truth())

    assert np.isnan(m["full/wasserstein"][0])
    assert np.isfinite(m["full/sid"][0])


def test_sid_follows_its_formula_and_stays_finite_with_zeros():
    grid = np.array([500.0, 501.0, 502.0, 503.0])
    x = np.array([[0.0, 1.0, 0.0, -2.0]])  # zeros and a negative value (clipped to 0)
    y = np.array([[0.0, 0.0, 1.0, 1.0]])
    eps = 1e-3
    p = (np.clip(x, 0, None) + eps) / (np.clip(x, 0, None) + eps).sum()
    q = (y + eps) / (y + eps).sum()
    expected = (p * np.log(p / q)).sum() + (q * np.log(q / p)).sum()

    m = cross_spectral_metrics(
        x, y, grid, normalization="none", sid_eps=eps, regions={"full": (None, None)}
    )

    assert m["full/sid"][0] == pytest.approx(expected, rel=1e-12)
    smaller_eps = cross_spectral_metrics(
        x, y, grid, normalization="none", regions={"full": (None, None)}
    )["full/sid"][0]
    assert np.isfinite(smaller_eps) and smaller_eps > expected  # ε = 1e-8 by default


# --------------------------------------------------------------------------- regions


def test_a_change_outside_the_fingerprint_leaves_its_metrics_unchanged(identity):
    # A Gaussian bump at 3150 cm⁻¹ underflows to exactly 0 below 1800 cm⁻¹ and is lower
    # than the maximum, so even the max-normalised fingerprint is untouched.
    m = _metrics(_truth() + _gaussian(3150.0, sigma=5.0, height=0.4))

    fingerprint = [k for k in m if k.startswith("fingerprint/")]
    _assert_same(m, identity, fingerprint, rtol=0, atol=0)
    assert m["xh_stretch/mse"][0] > 0
    assert m["xh_stretch/peak_precision@10"][0] == pytest.approx(3 / 4)
    assert m["full/peak_precision@10"][0] == pytest.approx(11 / 12)


def test_region_metrics_equal_full_metrics_on_the_slice():
    rng = np.random.default_rng(2)
    pred = _truth(shift=4.0) + rng.normal(0, 0.02, GRID.size)
    lo, hi = REGIONS["xh_stretch"]
    sl = (GRID >= lo) & (GRID <= hi)

    region = cross_spectral_metrics(
        pred[None], _truth()[None], GRID, "none", regions={"xh": (lo, hi)}
    )
    full = cross_spectral_metrics(
        pred[None, sl], _truth()[None, sl], GRID[sl], "none", regions={"all": (None, None)}
    )

    for key, value in full.items():
        np.testing.assert_array_equal(region[key.replace("all/", "xh/")], value, err_msg=key)


def test_metrics_do_not_depend_on_the_grid_orientation():
    pred = np.stack([_truth(shift=6.0), _gaussian(1200.0) + 0.5 * _truth()])
    forward = cross_spectral_metrics(pred, np.stack([_truth()] * 2), GRID)

    backward = cross_spectral_metrics(pred[:, ::-1], np.stack([_truth()[::-1]] * 2), GRID[::-1])

    _assert_same(forward, backward, rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize("rule", ["max", "area", "l2"])
def test_normalisation_is_applied_to_both_sides(rule):
    pred = np.stack([_truth(shift=4.0), _gaussian(1450.0, sigma=6.0) + 0.3 * _truth()])
    true = np.stack([_truth()] * 2)
    base = cross_spectral_metrics(pred, true, GRID, normalization=rule)

    _assert_same(base, cross_spectral_metrics(7.0 * pred, true, GRID, rule), rtol=1e-9, atol=1e-9)
    _assert_same(base, cross_spectral_metrics(pred, 7.0 * true, GRID, rule), rtol=1e-9, atol=1e-9)
    expected_mse = ((normalize_spectra(pred, rule) - normalize_spectra(true, rule)) ** 2).mean(1)
    np.testing.assert_allclose(base["full/mse"], expected_mse, rtol=1e-12)


def test_without_normalisation_the_scale_shows_in_mse_only():
    pred = _truth(shift=4.0)
    plain = _metrics(pred, normalization="none")
    scaled = _metrics(7.0 * pred, normalization="none")

    assert scaled["full/mse"][0] > 10 * plain["full/mse"][0]
    _assert_same(plain, scaled, ["full/cosine", "full/wasserstein", "full/peak_f1@10"], rtol=1e-9)


# --------------------------------------------------------------------------- keys, summaries


def test_every_key_has_a_direction_and_the_primary_metric_is_reported(identity):
    assert PRIMARY_METRIC in identity and direction(PRIMARY_METRIC) == "higher"
    assert {direction(k) for k in identity} == {"lower", "higher"}
    assert direction("fingerprint/peak_f1@10") == "higher"
    assert direction("xh_stretch/wasserstein") == "lower"
    assert direction("sid") == CROSS_SPECTRAL_DIRECTIONS["sid"] == "lower"
    with pytest.raises(ConfigError):
        direction("full/accuracy")


def test_summarise_gives_the_mean_and_an_interval_per_key():
    per = {"full/mse": np.array([1.0, 2.0, np.nan, 3.0]), "full/cosine": np.full(4, 0.5)}

    out = summarise_cross_spectral(per, n_boot=200, seed=1)

    assert out["full/mse"]["mean"] == pytest.approx(2.0) and out["full/mse"]["n"] == 3
    assert out["full/mse"]["lo"] <= 2.0 <= out["full/mse"]["hi"]
    assert out["full/cosine"]["lo"] == out["full/cosine"]["hi"] == 0.5
    with pytest.raises(ConfigError):
        summarise_cross_spectral({"full/accuracy": np.ones(3)})


# --------------------------------------------------------------------------- skill


def test_skill_of_the_reference_against_itself_is_zero():
    ref = np.random.default_rng(3).uniform(0.2, 0.8, 50)

    for way in ("lower", "higher"):
        out = skill(ref, ref, way, n_boot=200)
        assert out["skill"] == out["skill_lo"] == out["skill_hi"] == 0.0
        assert out["mean_diff"] == 0.0 and out["p_value"] == 1.0 and out["n"] == 50


def test_skill_of_a_perfect_model_is_one():
    ref = np.random.default_rng(4).uniform(0.2, 0.8, 50)

    lower = skill(np.zeros(50), ref, "lower", n_boot=200)
    higher = skill(np.ones(50), ref, "higher", n_boot=200)

    for out in (lower, higher):
        assert out["skill"] == out["skill_lo"] == out["skill_hi"] == 1.0
        assert out["p_value"] < 0.01


def test_skill_known_values_and_paired_interval():
    rng = np.random.default_rng(5)
    ref = rng.uniform(0.4, 0.8, 200)
    model = ref + 0.1 + rng.normal(0, 0.05, 200)  # better, for a "higher" metric
    model[0] = np.nan  # the pair drops out

    out = skill(model, ref, "higher", n_boot=500)

    m_bar, r_bar = np.nanmean(model), ref[1:].mean()
    assert out["n"] == 199 and out["mean_reference"] == pytest.approx(r_bar)
    assert out["skill"] == pytest.approx((m_bar - r_bar) / (1.0 - r_bar))
    assert out["skill_lo"] < out["skill"] < out["skill_hi"]
    assert out["diff_lo"] < out["mean_diff"] < out["diff_hi"] and out["diff_lo"] > 0
    assert skill(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.0]), "lower")[
        "skill"
    ] == pytest.approx(0.5)
    assert math.isnan(skill(np.zeros(3), np.zeros(3), "lower")["skill"])  # perfect reference


def test_skill_refuses_bad_input():
    with pytest.raises(ConfigError):
        skill(np.ones(3), np.ones(3), "better")
    with pytest.raises(DataError):
        skill(np.ones(3), np.ones(4), "lower")


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("pred", "true", "grid"),
    [
        (np.zeros((1, 2048)), np.zeros((1, 2047)), GRID),  # shapes differ
        (np.zeros(2048), np.zeros(2048), GRID),  # not (N, L)
        (np.full((1, 2048), np.nan), np.zeros((1, 2048)), GRID),  # non-finite
        (np.zeros((1, 2048)), np.zeros((1, 2048)), np.r_[GRID[:-1], 0.0]),  # not monotonic
        (np.zeros((1, 2048)), np.zeros((1, 2048)), GRID[:-1]),  # grid length
    ],
)
def test_bad_data_raise_data_error(pred, true, grid):
    with pytest.raises(DataError):
        cross_spectral_metrics(pred, true, grid)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"normalization": "softmax"},
        {"tolerances": ()},
        {"tolerances": (-1.0,)},
        {"tolerances": (10, 10.0)},
        {"prominence": -0.1},
        {"sid_eps": 0.0},
        {"regions": {}},
        {"regions": {"a/b": (500.0, 900.0)}},
        {"regions": {"empty": (4100.0, 4500.0)}},
        {"regions": {"reversed": (1800.0, 500.0)}},
    ],
)
def test_bad_parameters_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        _metrics(_truth(), **kwargs)
