"""E3 statistics: the model is the unit (bootstrap and permutations over models), exact
permutation counts, minimum attainable p, Holm and the conclusive flag."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from spektron.analysis.e3_stats import (
    POOLED,
    _Resampler,
    bootstrap_models,
    compare_changes,
    compare_groups,
    group_summary,
    label_assignments,
    model_features,
    oscillator_changes,
    permutation_test,
)
from spektron.errors import ConfigError, DataError

FIELDS = ("theta", "r", "zeta", "coupling_norm", "f_res", "bandwidth", "peak_gain_db")


def fake_analysis(rng: np.random.Generator, shift: float = 0.0, n_layers: int = 2, p: int = 16):
    """The part of an analyse_model() result that the statistics read."""
    layers = []
    for i in range(n_layers):
        dirs = {d: {f: rng.normal(shift, 1.0, p) for f in FIELDS} for d in ("forward", "backward")}
        layers.append({"index": i, "directions": dirs})
    return {"layers": layers}


def test_exact_permutation_enumerates_all_twenty_assignments_of_3_vs_3():
    member, exact = label_assignments(3, 3, 20_000, 99, np.random.default_rng(0))
    assert exact and member.shape == (20, 6) == (math.comb(6, 3), 6)
    assert (member.sum(axis=1) == 3).all()
    assert len({tuple(m) for m in member}) == 20
    np.testing.assert_array_equal(member[0], [1, 1, 1, 0, 0, 0])  # the observed labels first
    member, exact = label_assignments(3, 3, 10, 99, np.random.default_rng(0))
    assert not exact and member.shape == (100, 6)


def test_shifted_groups_of_three_reach_only_the_minimum_attainable_p():
    rng = np.random.default_rng(0)
    groups = {
        "init": [fake_analysis(rng) for _ in range(3)],
        "trained": [fake_analysis(rng, shift=5.0) for _ in range(3)],
    }
    rows = compare_groups(groups, "init", features=("theta",), per_layer=False, n_boot=50)
    assert [(r["statistic"], r["scope"]) for r in rows] == [
        ("wasserstein", POOLED),
        ("median_diff", POOLED),
    ]
    for r in rows:
        assert r["n_assignments"] == 20 and r["exact"]
        assert r["min_attainable_p"] == pytest.approx(0.1)  # the observed labels and their swap
        assert r["p_value"] == pytest.approx(0.1)
        assert r["min_attainable_p_holm"] == pytest.approx(0.2)
        assert not r["conclusive"] and not r["significant"]
        assert "inconclusive" in r["note"] and "0.1" in r["note"]
    assert rows[1]["estimate"] == pytest.approx(5.0, abs=0.5)


def test_clear_shift_with_five_models_per_group_is_significant():
    rng = np.random.default_rng(1)
    groups = {
        "init": [fake_analysis(rng) for _ in range(5)],
        "trained": [fake_analysis(rng, shift=3.0) for _ in range(5)],
    }
    rows = compare_groups(groups, "init", features=("zeta",), per_layer=False, n_boot=200)
    for r in rows:
        assert r["min_attainable_p"] == pytest.approx(2 / 252)
        assert r["p_value"] == pytest.approx(2 / 252)
        assert r["conclusive"] and r["significant"] and "differs" in r["note"]
        assert r["ci_lo"] <= r["estimate"] <= r["ci_hi"]


def test_groups_from_the_same_distribution_give_no_significant_result():
    rng = np.random.default_rng(2)
    groups = {name: [fake_analysis(rng) for _ in range(6)] for name in ("init", "trained")}
    rows = compare_groups(groups, "init", features=("theta", "r"), n_boot=100)
    assert len(rows) == 2 * 3 * 2  # features × scopes (all, layer0, layer1) × statistics
    assert all(r["conclusive"] for r in rows)  # 924 assignments: 12 · 2/924 ≤ 0.05
    assert not any(r["significant"] for r in rows)
    assert all(r["p_holm"] >= r["p_value"] for r in rows)
    assert all("no evidence" in r["note"] for r in rows)


def test_bootstrap_resamples_models_not_oscillators():
    # Constant within each model: only the between-model spread can widen the interval.
    a = [np.full(200, float(c)) for c in (0, 1, 2)]
    b = [np.zeros(200), np.zeros(200)]
    lo, hi = bootstrap_models(a, b, "median_diff", n_boot=500, seed=0)
    assert lo < 0.6 and hi > 1.4  # resampling 200·3 oscillators would give ≈ [0.9, 1.1]
    # A group of one model: no between-model variation to resample.
    assert all(math.isnan(x) for x in bootstrap_models(a[:1], b, "wasserstein", n_boot=50))
    rng = np.random.default_rng(3)
    groups = {"init": [fake_analysis(rng)], "trained": [fake_analysis(rng) for _ in range(3)]}
    rows = compare_groups(groups, "init", features=("r",), per_layer=False, n_boot=50)
    assert all(math.isnan(r["ci_lo"]) and math.isnan(r["ci_hi"]) for r in rows)
    assert all(r["n_assignments"] == 4 and not r["conclusive"] for r in rows)


def test_vectorised_wasserstein_equals_scipy_on_resampled_models():
    rng = np.random.default_rng(4)
    models = [rng.normal(i, 1 + i, 10 + 3 * i) for i in range(4)]
    cx, cy = np.array([[2.0, 1, 0, 0], [1, 0, 1, 0]]), np.array([[0.0, 0, 1, 1], [0, 1, 0, 2]])
    got = _Resampler(models)("wasserstein", cx, cy)
    for k in range(2):

        def pooled(c):
            vals = np.concatenate([models[m] for m in range(4) if c[m]])
            w = np.concatenate(
                [np.full(len(models[m]), c[m] / len(models[m])) for m in range(4) if c[m]]
            )
            return vals, w

        (u, wu), (v, wv) = pooled(cx[k]), pooled(cy[k])
        assert got[k] == pytest.approx(wasserstein_distance(u, v, wu, wv), rel=1e-12)
    med = _Resampler(models)("median_diff", cx, cy)
    meds = np.array([np.median(m) for m in models])
    assert med[0] == pytest.approx((2 * meds[0] + meds[1]) / 3 - (meds[2] + meds[3]) / 2)
    assert permutation_test(models[:2], models[2:], "wasserstein")["n_assignments"] == 6


def test_model_features_pool_directions_and_drop_nan():
    an = fake_analysis(np.random.default_rng(5), p=4)
    an["layers"][1]["directions"]["forward"]["bandwidth"][:] = np.nan
    feats = model_features(an, ("bandwidth", "theta"))
    assert set(feats["theta"]) == {"layer0", "layer1", POOLED}
    assert len(feats["theta"]["layer0"]) == 8 and len(feats["theta"][POOLED]) == 16
    assert len(feats["bandwidth"]["layer1"]) == 4 and len(feats["bandwidth"][POOLED]) == 12
    with pytest.raises(ConfigError):
        model_features(an, ("frequency_of_c_h",))


def test_group_summary_reports_per_model_medians():
    rng = np.random.default_rng(7)
    groups = {"trained": [fake_analysis(rng, shift=s) for s in (0.0, 1.0, 2.0)]}
    rows = group_summary(groups, ("zeta",))
    assert [(r["feature"], r["scope"]) for r in rows] == [
        ("zeta", "layer0"),
        ("zeta", "layer1"),
        ("zeta", POOLED),
    ]
    pooled = rows[-1]
    assert len(pooled["model_medians"]) == 3 and pooled["n_models"] == 3
    assert pooled["mean_of_medians"] == pytest.approx(1.0, abs=0.4)
    assert pooled["sd_of_medians"] == pytest.approx(1.0, abs=0.4)
    assert pooled["q25"] < pooled["median"] < pooled["q75"]


def test_compare_groups_validates_groups():
    rng = np.random.default_rng(6)
    with pytest.raises(ConfigError):
        compare_groups({"a": [fake_analysis(rng)], "b": [fake_analysis(rng)]}, "c")
    with pytest.raises(DataError):
        compare_groups({"a": [fake_analysis(rng)], "b": []}, "a")


def test_own_init_change_is_per_oscillator_and_six_models_reach_p_below_001():
    rng = np.random.default_rng(0)
    start = fake_analysis(rng)
    end = fake_analysis(rng)
    for layer in start["layers"]:
        for d in layer["directions"].values():
            d["coupling_norm"] = np.abs(d["coupling_norm"]) + 0.5
    ch = oscillator_changes(end, start)
    l0 = (end["layers"][0]["directions"]["forward"], start["layers"][0]["directions"]["forward"])
    np.testing.assert_allclose(ch["abs_dtheta"][:16], np.abs(l0[0]["theta"] - l0[1]["theta"]))
    np.testing.assert_allclose(
        ch["rel_dcoupling"][:16],
        np.abs(l0[0]["coupling_norm"] - l0[1]["coupling_norm"]) / l0[1]["coupling_norm"],
    )
    assert len(ch["abs_dr"]) == 2 * 2 * 16

    def moved(scale: float) -> dict:
        a = fake_analysis(rng)
        for lay in a["layers"]:
            for d in lay["directions"].values():
                d["coupling_norm"] = np.abs(d["coupling_norm"]) + 1.0
        b = {
            "layers": [
                {
                    "index": lay["index"],
                    "directions": {
                        k: {f: v + scale * rng.normal(0, 1, v.shape) for f, v in d.items()}
                        for k, d in lay["directions"].items()
                    },
                }
                for lay in a["layers"]
            ]
        }
        return oscillator_changes(b, a)

    per = {"trained": [moved(1.0) for _ in range(6)], "shuffled": [moved(0.1) for _ in range(6)]}
    rows = compare_changes(per, reference="shuffled", n_boot=300)
    assert {r["feature"] for r in rows} == {"abs_dtheta", "abs_dr", "rel_dcoupling"}
    for r in rows:
        assert r["exact"] and r["n_assignments"] == 924  # C(12, 6)
        assert r["min_attainable_p"] < 0.01 and r["p_value"] < 0.01 and r["significant"]
        assert r["estimate"] > 0
    with pytest.raises(DataError, match="numbers of layers"):
        oscillator_changes(fake_analysis(rng, n_layers=1), start)
