"""E1/E2 metrics: known answers for peaks and errors, bootstrap properties, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spektron.chemistry.spectra import lorentzian_broaden, make_grid
from spektron.errors import ConfigError, DataError
from spektron.evaluation import metrics
from spektron.evaluation.metrics import (
    METRIC_DIRECTIONS,
    batch_peak_scores,
    batch_peak_scores_at,
    bootstrap_ci,
    match_peaks,
    paired_bootstrap,
    peak_scores,
    pick_peaks,
    reconstruction_metrics,
    summarise,
)

GRID = make_grid(2048)  # 500–4000 cm⁻¹, Δν ≈ 1.71 cm⁻¹
CENTRES = np.array([800.0, 1450.0, 2100.0, 2900.0, 3500.0])
HEIGHTS = np.array([1.0, 0.6, 0.8, 0.3, 0.5])


def _spectrum(shift: float = 0.0, fwhm: float = 15.0) -> np.ndarray:
    return lorentzian_broaden(CENTRES + shift, HEIGHTS, GRID, fwhm)


def _spikes(indices, heights=None) -> np.ndarray:
    """Single-sample peaks on the grid: exact positions, prominence = height."""
    x = np.zeros_like(GRID)
    x[np.asarray(indices)] = 1.0 if heights is None else np.asarray(heights)
    return x


# --------------------------------------------------------------------------- peaks


def test_pick_peaks_finds_the_lorentzian_centres_scale_invariantly():
    x = _spectrum()

    peaks = pick_peaks(x, GRID)

    assert np.allclose(GRID[peaks], CENTRES, atol=GRID[1] - GRID[0])
    assert np.array_equal(pick_peaks(100.0 * x, GRID), peaks)  # relative prominence


def test_pick_peaks_none_in_flat_or_nonpositive_spectra():
    assert pick_peaks(np.full_like(GRID, 0.3), GRID).size == 0
    assert pick_peaks(-_spectrum() - 0.1, GRID).size == 0  # max <= 0


def test_pick_peaks_min_distance_drops_the_smaller_of_two_close_peaks():
    x = _spikes([1000, 1005], [1.0, 0.5])  # 5 samples ≈ 8.6 cm⁻¹ apart

    assert pick_peaks(x, GRID).tolist() == [1000, 1005]
    assert pick_peaks(x, GRID, min_distance_cm=20.0).tolist() == [1000]


def test_match_peaks_is_one_to_one():
    i_pred, i_true = match_peaks(np.array([1000.0, 1004.0]), np.array([1002.0]), tolerance=10.0)

    assert i_pred.size == 1 and i_true.tolist() == [0]


def test_match_peaks_maximises_matches_before_distance():
    # Greedy nearest-first pairs 6↔5 (distance 1) and leaves 0 and 11 unmatched;
    # the optimum matches both: 0↔5 and 6↔11.
    i_pred, i_true = match_peaks(np.array([0.0, 6.0]), np.array([5.0, 11.0]), tolerance=6.0)

    assert list(zip(i_pred.tolist(), i_true.tolist(), strict=True)) == [(0, 0), (1, 1)]


def test_match_peaks_minimises_distance_among_maximal_matchings():
    i_pred, i_true = match_peaks(np.array([0.0, 10.0]), np.array([11.0, 1.0]), tolerance=20.0)

    assert dict(zip(i_pred.tolist(), i_true.tolist(), strict=True)) == {0: 1, 1: 0}


def test_match_peaks_respects_tolerance_and_empty_inputs():
    assert match_peaks(np.array([0.0]), np.array([10.5]), tolerance=10.0)[0].size == 0
    assert match_peaks(np.array([0.0]), np.array([10.0]), tolerance=10.0)[0].size == 1
    assert match_peaks(np.array([]), np.array([1.0]), tolerance=10.0)[0].size == 0


def test_identical_spectra_score_perfectly():
    s = peak_scores(_spectrum(), _spectrum(), GRID, tolerance=10.0, prominence=0.05)

    assert s["n_pred"] == s["n_true"] == s["n_matched"] == len(CENTRES)
    assert s["precision"] == s["recall"] == s["f1"] == s["f1_weighted"] == 1.0
    assert s["intensity_corr"] == pytest.approx(1.0)


def test_flat_prediction_scores_zero():
    s = peak_scores(np.full_like(GRID, 0.2), _spectrum(), GRID)

    assert s["n_pred"] == 0
    assert s["precision"] == s["recall"] == s["f1"] == s["f1_weighted"] == 0.0
    assert math.isnan(s["intensity_corr"])


@pytest.mark.parametrize(("shift", "f1"), [(6.0, 1.0), (-8.0, 1.0), (25.0, 0.0), (-40.0, 0.0)])
def test_shift_within_tolerance_matches_beyond_does_not(shift, f1):
    # |shift| + one grid step (each picked peak is off by ≤ Δν/2) stays inside τ = 10 cm⁻¹.
    s = peak_scores(_spectrum(shift), _spectrum(), GRID, tolerance=10.0)

    assert s["f1"] == f1


def test_comb_prediction_has_full_recall_but_low_precision():
    step = round(20.0 / (GRID[1] - GRID[0]))  # a peak every ≈ 2 × tolerance
    comb = _spikes(np.arange(50, len(GRID) - 1, step))
    truth = _spikes([50 + 20 * step + 2, 50 + 60 * step + 3, 50 + 100 * step - 2])

    s = peak_scores(comb, truth, GRID, tolerance=10.0)

    assert s["recall"] == 1.0
    assert s["precision"] == pytest.approx(3 / s["n_pred"]) and s["precision"] < 0.05
    assert s["f1"] < 0.1


def test_no_peaks_anywhere_is_undefined_and_spurious_peaks_are_penalised():
    flat = np.zeros_like(GRID)

    both = peak_scores(flat, flat, GRID)
    spurious = peak_scores(_spectrum(), flat, GRID)

    assert all(math.isnan(both[k]) for k in ("precision", "recall", "f1", "f1_weighted"))
    assert spurious["precision"] == 0.0 and spurious["f1"] == 0.0
    assert math.isnan(spurious["recall"])


def test_weighted_f1_and_intensity_correlation():
    truth = _spikes([100, 300, 500, 700], [1.0, 0.1, 0.5, 0.7])
    pred_big = _spikes([100], [0.8])  # finds only the largest true peak
    pred_scaled = 2.0 * truth + 0.01  # same peaks, proportional heights

    s = peak_scores(pred_big, truth, GRID)
    r_w = 1.0 / 2.3

    assert s["f1"] == pytest.approx(2 * 1 / (1 + 4))
    assert s["f1_weighted"] == pytest.approx(2 * r_w / (1 + r_w))
    assert math.isnan(s["intensity_corr"])  # fewer than 3 matches
    assert peak_scores(pred_scaled, truth, GRID)["intensity_corr"] == pytest.approx(1.0)


def test_batch_peak_scores_equals_rowwise():
    pred = np.stack([_spectrum(4.0), np.zeros_like(GRID), _spectrum(30.0)])
    true = np.stack([_spectrum(), _spectrum(), _spectrum()])

    batch = batch_peak_scores(pred, true, GRID)

    for row in range(3):
        single = peak_scores(pred[row], true[row], GRID)
        for key, value in single.items():
            assert batch[key][row] == pytest.approx(value, nan_ok=True)


def test_batch_peak_scores_at_several_tolerances_equals_one_call_each():
    pred = np.stack([_spectrum(4.0), np.zeros_like(GRID), _spectrum(30.0), _spectrum(9.0)])
    true = np.stack([_spectrum(), _spectrum(), _spectrum(), 0.3 * _spectrum(2.0)])
    tols = (2.0, 10.0, 40.0)

    at = batch_peak_scores_at(pred, true, GRID, tols)

    assert len(at) == len(tols)
    for tol, got in zip(tols, at, strict=True):
        want = batch_peak_scores(pred, true, GRID, tol)
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
    assert not np.array_equal(at[0]["n_matched"], at[2]["n_matched"])  # tolerances differ


# --------------------------------------------------------------------------- per molecule


def test_reconstruction_metrics_perfect_and_masked_only():
    true = np.stack([_spectrum(), 0.5 * _spectrum(3.0)])  # (2, L)
    mask = np.zeros_like(true, dtype=bool)
    mask[:, 600:700] = True
    pred = true.copy()
    pred[:, 1000:1010] += 0.3  # error only at unmasked points

    perfect = reconstruction_metrics(true, true, mask, GRID)
    off_mask = reconstruction_metrics(pred, true, mask, GRID)

    assert np.array_equal(perfect["masked_mse"], [0.0, 0.0])
    assert np.array_equal(perfect["full_mse"], [0.0, 0.0])
    assert np.allclose(perfect["cosine"], 1.0)
    assert np.array_equal(perfect["peak_f1"], [1.0, 1.0])
    assert np.array_equal(off_mask["masked_mse"], [0.0, 0.0])
    assert np.allclose(off_mask["full_mse"], 10 * 0.3**2 / len(GRID))


def test_reconstruction_metrics_edge_rows():
    true = np.stack([_spectrum(), _spectrum(), np.zeros_like(GRID)])
    pred = np.stack([_spectrum(), np.zeros_like(GRID), np.zeros_like(GRID)])
    mask = np.zeros_like(true, dtype=bool)
    mask[1, :10] = True

    m = reconstruction_metrics(pred, true, mask, GRID)

    assert math.isnan(m["masked_mse"][0])  # nothing masked
    assert m["masked_mse"][1] == pytest.approx(np.mean(_spectrum()[:10] ** 2))
    assert m["cosine"].tolist() == pytest.approx([1.0, 0.0, 0.0])  # all-zero rows → 0
    assert m["peak_precision"][1] == 0.0 and m["peak_f1"][1] == 0.0
    assert math.isnan(m["peak_f1"][2])  # no peaks on either side
    assert set(m) <= set(METRIC_DIRECTIONS)
    assert all(v.shape == (3,) and v.dtype == np.float64 for v in m.values())


@pytest.mark.parametrize(
    ("pred_shape", "mask_shape", "grid_len", "match"),
    [
        ((2, 50), (2, 50), 49, "wavenumber"),
        ((2, 50), (2, 49), 50, "mask"),
        ((50,), (50,), 50, r"\(N, L\)"),
    ],
)
def test_reconstruction_metrics_rejects_bad_shapes(pred_shape, mask_shape, grid_len, match):
    true = np.zeros((2, 50)) if len(pred_shape) == 2 else np.zeros(50)

    with pytest.raises(DataError, match=match):
        reconstruction_metrics(
            np.zeros(pred_shape), true, np.zeros(mask_shape, bool), make_grid(grid_len)
        )


def test_reconstruction_metrics_rejects_bad_values_and_params():
    grid = make_grid(50)
    ok = np.ones((2, 50))
    bad = ok.copy()
    bad[1, 3] = np.nan
    mask = np.zeros((2, 50), bool)

    with pytest.raises(DataError, match="pred has 1 non-finite"):
        reconstruction_metrics(bad, ok, mask, grid)
    with pytest.raises(DataError, match="bool"):
        reconstruction_metrics(ok, ok, mask.astype(int), grid)
    with pytest.raises(DataError, match="monotonic"):
        reconstruction_metrics(ok, ok, mask, np.r_[grid[:-1], grid[0]])
    with pytest.raises(ConfigError, match="tolerance"):
        reconstruction_metrics(ok, ok, mask, grid, tolerance=-1.0)


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_of_a_constant_is_degenerate():
    ci = bootstrap_ci(np.full(100, 0.1))

    assert ci == {"mean": 0.1, "lo": 0.1, "hi": 0.1, "n": 100}


def test_bootstrap_ci_covers_the_mean_and_narrows_with_n():
    rng = np.random.default_rng(1)
    small = bootstrap_ci(rng.normal(3.0, 1.0, 200))
    large = bootstrap_ci(rng.normal(3.0, 1.0, 3200))

    for ci in (small, large):
        assert ci["lo"] < ci["mean"] < ci["hi"]
        assert ci["lo"] < 3.0 < ci["hi"]
    ratio = (small["hi"] - small["lo"]) / (large["hi"] - large["lo"])
    assert 3.0 < ratio < 5.5  # ∝ 1/√N: √16 = 4
    # Normal theory: half-width ≈ 1.96 σ / √N.
    assert (large["hi"] - large["lo"]) / 2 == pytest.approx(1.96 / math.sqrt(3200), rel=0.15)


def test_bootstrap_ci_ignores_nan_and_is_seeded():
    x = np.random.default_rng(2).random(300)
    with_nan = np.r_[np.nan, x[:100], np.nan, x[100:]]

    assert bootstrap_ci(with_nan, seed=5) == bootstrap_ci(x, seed=5)
    assert bootstrap_ci(with_nan)["n"] == 300
    assert bootstrap_ci(x, seed=5) != bootstrap_ci(x, seed=6)
    assert bootstrap_ci(np.full(4, np.nan))["n"] == 0
    assert math.isnan(bootstrap_ci(np.full(4, np.nan))["mean"])


def test_bootstrap_blocks_do_not_change_the_answer_statistically(monkeypatch):
    x = np.random.default_rng(3).random(500)
    whole = bootstrap_ci(x, n_boot=4000)

    monkeypatch.setattr(metrics, "_BOOTSTRAP_BLOCK", 1000)  # blocks of 2 resamples
    blocked = bootstrap_ci(x, n_boot=4000)

    assert blocked["mean"] == whole["mean"]
    width = whole["hi"] - whole["lo"]
    assert blocked["lo"] == pytest.approx(whole["lo"], abs=0.05 * width)
    assert blocked["hi"] == pytest.approx(whole["hi"], abs=0.05 * width)


def test_bootstrap_rejects_bad_input():
    with pytest.raises(DataError, match="infinite"):
        bootstrap_ci(np.array([1.0, np.inf]))
    with pytest.raises(DataError, match="1-D"):
        bootstrap_ci(np.ones((2, 2)))
    with pytest.raises(ConfigError, match="level"):
        bootstrap_ci(np.ones(3), level=1.0)
    with pytest.raises(ConfigError, match="n_boot"):
        bootstrap_ci(np.ones(3), n_boot=0)


def test_paired_bootstrap_constant_shift():
    a = np.random.default_rng(4).random(200)

    res = paired_bootstrap(a, a + 0.1, n_boot=999)

    assert res["mean_diff"] == pytest.approx(-0.1)
    assert res["lo"] == pytest.approx(-0.1) and res["hi"] == pytest.approx(-0.1)
    assert res["p_value"] == pytest.approx(1 / 1000)  # the floor 1/(B + 1)
    assert res["n"] == 200


def test_paired_bootstrap_null_and_nan_pairs():
    rng = np.random.default_rng(5)
    a = rng.normal(0.0, 1.0, 400)
    b = a + rng.normal(0.0, 0.1, 400)
    b -= (b - a).mean()  # exactly zero mean difference (up to rounding)
    a[7], b[9] = np.nan, np.nan

    same = paired_bootstrap(a, a)
    null = paired_bootstrap(a, b)

    assert same["mean_diff"] == 0.0 and same["p_value"] == 1.0
    assert null["n"] == 398
    assert null["lo"] < 0.0 < null["hi"]
    assert 0.2 < null["p_value"] <= 1.0


def test_paired_bootstrap_detects_a_small_consistent_improvement():
    rng = np.random.default_rng(6)
    a = rng.normal(1.0, 1.0, 1000)
    b = a - 0.05 + rng.normal(0.0, 0.2, 1000)  # b is lower by 0.05 ± 0.2 per molecule

    res = paired_bootstrap(a, b)

    assert 0.0 < res["lo"] < 0.05 < res["hi"]
    assert 0.0 < res["p_value"] < 0.01


def test_paired_bootstrap_rejects_mismatched_pairs():
    with pytest.raises(DataError, match="same molecules"):
        paired_bootstrap(np.ones(3), np.ones(4))


def test_summarise_applies_bootstrap_to_every_metric():
    true = np.stack([_spectrum(s) for s in (0.0, 2.0, 4.0, 6.0)])
    pred = true + 0.01
    mask = np.zeros_like(true, dtype=bool)
    mask[:, 100:200] = True
    per_mol = reconstruction_metrics(pred, true, mask, GRID)

    summary = summarise(per_mol, n_boot=200, seed=1)

    assert set(summary) == set(per_mol)
    assert summary["masked_mse"]["mean"] == pytest.approx(1e-4)
    assert summary["peak_f1"] == bootstrap_ci(per_mol["peak_f1"], n_boot=200, seed=1)
    assert all(METRIC_DIRECTIONS[k] in ("lower", "higher") for k in summary)


def test_holm_adjusts_in_the_given_order_and_stays_monotone():
    from spektron.evaluation.metrics import holm

    # sorted: 0.01 × 3 = 0.03, 0.03 × 2 = 0.06, 0.04 × 1 = 0.04 → raised to 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1
    assert holm([]) == []
