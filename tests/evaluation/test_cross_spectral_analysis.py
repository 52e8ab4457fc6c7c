"""E2 error analysis: mutual-exclusion leak, grouped tables, symmetry classes, extremes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spektron.chemistry.spectra import lorentzian_broaden, make_grid
from spektron.errors import ConfigError, DataError
from spektron.evaluation.cross_spectral_analysis import (
    SYMMETRY_CLASSES,
    describe_extremes,
    group_table,
    label_groups,
    mutual_exclusion_leak,
    point_group_has_inversion,
    symmetry_classes,
)
from spektron.evaluation.metrics import bootstrap_ci

GRID = make_grid(2048)  # 500–4000 cm⁻¹, Δν ≈ 1.71 cm⁻¹
TOL = 10.0
# A centrosymmetric toy molecule: u modes (IR only) at 800 and 1500 cm⁻¹, g modes (Raman only)
# at 1000 and 3000 cm⁻¹, and a u mode at 3005 cm⁻¹ within τ of a g mode (so not forbidden).
FREQ = np.array([800.0, 1000.0, 1500.0, 3000.0, 3005.0])
IR = np.array([50.0, 0.0, 80.0, 0.0, 30.0])
RAMAN = np.array([0.0, 20.0, 0.0, 60.0, 0.0])
TRUE_RAMAN = lorentzian_broaden(FREQ, RAMAN, GRID, 10.0)  # (L,)
INPUT_IR = lorentzian_broaden(FREQ, IR, GRID, 15.0)  # (L,)
WINDOW = (np.abs(GRID - 800.0) <= TOL) | (np.abs(GRID - 1500.0) <= TOL)  # (L,)


def _leak(x: np.ndarray) -> float:
    """Reference: the docstring formula with the window written out by hand."""
    pos = np.clip(x, 0.0, None)
    return float(pos[WINDOW].sum() / pos.sum())


def _one(pred: np.ndarray, **kw) -> dict:
    return mutual_exclusion_leak(
        pred, GRID, FREQ, IR, RAMAN, true=TRUE_RAMAN, source=INPUT_IR, tolerance_cm=TOL, **kw
    )


def test_leak_of_truth_input_and_copies():
    out = _one(TRUE_RAMAN.copy())
    assert out["n_forbidden"] == 2  # 800 and 1500; 3005 sits within τ of the g mode at 3000
    assert out["pred"] == out["true"] == pytest.approx(_leak(TRUE_RAMAN), rel=1e-12)
    assert 0.0 < out["true"] < 0.01  # only Lorentzian tails of the g modes
    copy = _one(INPUT_IR.copy())
    assert copy["pred"] == copy["source"] == pytest.approx(_leak(INPUT_IR), rel=1e-12)
    assert copy["source"] > 0.3  # the IR bands sit exactly on the forbidden positions


def test_all_mass_on_a_forbidden_mode_leaks_everything():
    pred = np.zeros_like(GRID)
    pred[np.argmin(np.abs(GRID - 1500.0))] = 3.0
    pred[np.argmin(np.abs(GRID - 2000.0))] = -5.0  # negative values carry no mass
    assert _one(pred)["pred"] == 1.0


def test_leak_is_scale_invariant_and_ignores_negative_lobes():
    pred = TRUE_RAMAN + 0.3 * INPUT_IR
    base = _one(pred)["pred"]
    assert _one(7.5 * pred)["pred"] == pytest.approx(base, rel=1e-12)
    lobe = pred.copy()
    lobe[np.abs(GRID - 2500.0) < 20] = -4.0  # a negative lobe counts as zero, not as −mass
    assert _one(lobe)["pred"] == pytest.approx(_one(np.clip(lobe, 0, None))["pred"], rel=1e-12)
    assert _one(lobe)["pred"] == pytest.approx(_leak(lobe), rel=1e-12)


def test_nan_without_forbidden_modes_or_without_positive_mass():
    # Every mode active in both kinds (a molecule without a centre of inversion).
    out = mutual_exclusion_leak(TRUE_RAMAN, GRID, FREQ, IR + 1.0, RAMAN + 1.0, tolerance_cm=TOL)
    assert out["n_forbidden"] == 0 and math.isnan(out["pred"])
    # Forbidden modes exist, but the prediction is all zero / negative.
    assert math.isnan(_one(np.zeros_like(GRID))["pred"])
    assert math.isnan(_one(-TRUE_RAMAN)["pred"])
    # A forbidden mode outside the grid (its window has no grid point) does not count.
    far = mutual_exclusion_leak(
        TRUE_RAMAN, GRID, np.array([100.0, 1000.0]), np.array([1.0, 0.0]), np.array([0.0, 1.0])
    )
    assert far["n_forbidden"] == 0 and math.isnan(far["pred"])


def test_relative_threshold_decides_activity():
    weak_raman = RAMAN.copy()
    weak_raman[0] = 0.02 * RAMAN.max()  # the 800 cm⁻¹ mode: 2 % of the strongest Raman mode
    strict = mutual_exclusion_leak(TRUE_RAMAN, GRID, FREQ, IR, weak_raman, rel_threshold=0.01)
    loose = mutual_exclusion_leak(TRUE_RAMAN, GRID, FREQ, IR, weak_raman, rel_threshold=0.05)
    assert strict["n_forbidden"] == 1 and loose["n_forbidden"] == 2


def test_batch_equals_single_molecules_with_ragged_sticks():
    freq2, ir2, ra2 = np.array([900.0, 1200.0]), np.array([1.0, 0.0]), np.array([0.0, 2.0])
    true2 = lorentzian_broaden(freq2, ra2, GRID, 10.0)
    preds = np.stack([TRUE_RAMAN + 0.1 * INPUT_IR, true2 + 0.05])  # (2, L)
    batch = mutual_exclusion_leak(
        preds, GRID, [FREQ, freq2], [IR, ir2], [RAMAN, ra2], true=np.stack([TRUE_RAMAN, true2])
    )
    assert batch["pred"].shape == (2,) and batch["n_forbidden"].tolist() == [2, 1]
    singles = [
        mutual_exclusion_leak(preds[0], GRID, FREQ, IR, RAMAN, true=TRUE_RAMAN),
        mutual_exclusion_leak(preds[1], GRID, freq2, ir2, ra2, true=true2),
    ]
    for i, s in enumerate(singles):
        assert batch["pred"][i] == pytest.approx(s["pred"], rel=1e-12)
        assert batch["true"][i] == pytest.approx(s["true"], rel=1e-12)
    assert "source" not in batch


def test_leak_rejects_bad_input():
    with pytest.raises(DataError):
        mutual_exclusion_leak(np.zeros((2, len(GRID))), GRID, [FREQ], [IR], [RAMAN])
    with pytest.raises(DataError):
        mutual_exclusion_leak(TRUE_RAMAN, GRID, FREQ, IR[:3], RAMAN)
    with pytest.raises(DataError):
        mutual_exclusion_leak(TRUE_RAMAN, GRID, FREQ, IR, RAMAN, true=TRUE_RAMAN[:-1])
    with pytest.raises(DataError):
        mutual_exclusion_leak(np.full_like(GRID, np.nan), GRID, FREQ, IR, RAMAN)
    with pytest.raises(ConfigError):
        mutual_exclusion_leak(TRUE_RAMAN, GRID, FREQ, IR, RAMAN, tolerance_cm=0.0)
    with pytest.raises(ConfigError):
        mutual_exclusion_leak(TRUE_RAMAN, GRID, FREQ, IR, RAMAN, rel_threshold=1.0)


# --------------------------------------------------------------------------- group_table


def test_group_table_on_a_hand_made_example():
    cos = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.9, np.nan, 0.7])
    mse = np.array([4.0, 4.0, 4.0, 4.0, 4.0, 1.0, 2.0, 3.0])
    groups = {
        "ring": np.array([1, 1, 1, 1, 1, 0, 0, 0]),  # 0/1 masks are accepted
        "rare": np.array([False, False, False, False, False, True, True, False]),
        "none": np.zeros(8, dtype=bool),
    }
    rows = group_table({"cos": cos, "mse": mse}, groups, ["cos", "mse"], n_boot=200, min_count=3)
    assert [r["group"] for r in rows] == ["ring", "rare", "none"]
    ring, rare, none = rows
    assert ring["n"] == 5 and not ring["too_few"]
    assert ring["metrics"]["cos"] == bootstrap_ci(cos[:5], n_boot=200, seed=0)
    assert ring["metrics"]["cos"]["mean"] == pytest.approx(0.3)
    assert ring["metrics"]["cos"]["lo"] < 0.3 < ring["metrics"]["cos"]["hi"]
    m = ring["metrics"]["mse"]  # constant values: a degenerate interval at the constant
    assert (m["mean"], m["lo"], m["hi"], m["n"]) == (4.0, 4.0, 4.0, 5)
    # Too few: kept with its n and plain mean, NaN molecules dropped, no interval.
    assert rare["n"] == 2 and rare["too_few"]
    assert rare["metrics"]["cos"]["mean"] == pytest.approx(0.9) and rare["metrics"]["cos"]["n"] == 1
    assert math.isnan(rare["metrics"]["cos"]["lo"]) and math.isnan(rare["metrics"]["cos"]["hi"])
    assert rare["metrics"]["mse"]["mean"] == pytest.approx(1.5)
    assert none["n"] == 0 and none["too_few"] and math.isnan(none["metrics"]["cos"]["mean"])


def test_group_table_rejects_bad_input():
    x = {"a": np.arange(4.0)}
    with pytest.raises(ConfigError):
        group_table(x, {"g": np.ones(4, bool)}, ["b"])
    with pytest.raises(DataError):
        group_table(x, {"g": np.ones(3, bool)})
    with pytest.raises(DataError):
        group_table(x, {"g": np.array([0, 1, 2, 1])})


# --------------------------------------------------------------------------- symmetry classes


def test_point_group_inversion_rule():
    with_i = ["Ci", "C2h", "C4h", "D2h", "D6h", "D3d", "D5d", "S6", "Th", "Oh", "Ih", "D∞h"]
    without = ["C1", "Cs", "C2", "C2v", "C3h", "D3h", "D2d", "D4d", "S4", "S8", "Td", "C∞v", ""]
    assert all(point_group_has_inversion(p) for p in with_i)
    assert not any(point_group_has_inversion(p) for p in without)


def test_symmetry_classes_mapping():
    pg = np.array(
        ["C1", "Cs", "C2", "C3v", "C∞v", "D2h", "Ci", "C2h", "D3", "Td", "", "unknown", "D∞h"],
        dtype=object,
    )
    cs = np.array([0, 0, 0, 0, 0, 1, -1, 0, 0, 0, -1, 1, 1])
    got = symmetry_classes(pg, cs).tolist()
    assert got == [
        "C1",
        "Cs",
        "Cn/Cnv (n≥2)",
        "Cn/Cnv (n≥2)",
        "Cn/Cnv (n≥2)",
        "centrosymmetric",
        "centrosymmetric",  # flag unknown, point group has i
        "other (higher)",  # flag 0 decides over the point group (modes were not made g/u)
        "other (higher)",
        "other (higher)",
        "unknown",
        "centrosymmetric",  # the flag alone suffices
        "centrosymmetric",
    ]
    assert set(got) <= set(SYMMETRY_CLASSES)
    masks = label_groups(np.array(got), order=SYMMETRY_CLASSES)
    assert list(masks) == list(SYMMETRY_CLASSES) and sum(m.sum() for m in masks.values()) == 13


# --------------------------------------------------------------------------- extremes


def _extremes(metric, direction="higher", n=2):
    m = len(metric)
    fg = np.zeros((m, 2), dtype=bool)
    fg[[i for i in (2, 4) if i < m], 0] = True  # "ring" only in molecules 2 and 4
    fg[:, 1] = True  # "ch" everywhere
    return describe_extremes(
        np.asarray(metric, dtype=float),
        direction,
        n,
        point_group=np.array(["C1", "C2v", "D2h", "Cs", "D2h", "C1"][:m]),
        centrosymmetric=np.array([0, 0, 1, 0, 1, 0][:m]),
        fg_flags=fg,
        fg_names=["ring", "ch"],
        n_atoms=np.array([10, 12, 20, 8, 30, 14][:m]),
    )


def test_extremes_pick_indices_with_ties_and_nan():
    metric = [0.5, np.nan, 0.9, 0.1, 0.9, 0.3]
    d = _extremes(metric)
    assert d["n_nan"] == 1 and d["n_valid"] == 5 and d["n"] == 2 and d["overlap"] == 0
    assert d["best"]["indices"] == [2, 4] and d["worst"]["indices"] == [3, 5]
    assert _extremes(metric, "lower")["best"]["indices"] == [3, 5]
    assert _extremes([1.0, 1.0, 1.0, 0.0], n=2)["best"]["indices"] == [0, 1]  # ties: lower index
    big = _extremes(metric, n=10)  # capped at the 5 defined values; the sets then overlap
    assert big["n"] == 5 and big["overlap"] == 5 and 1 not in big["best"]["indices"]


def test_extremes_describe_the_sets_against_all():
    d = _extremes([0.5, np.nan, 0.9, 0.1, 0.9, 0.3])
    best, worst, ref = d["best"], d["worst"], d["all"]
    assert best["point_groups"] == {"D2h": 2} and best["fraction_centrosymmetric"] == 1.0
    assert worst["point_groups"] == {"C1": 1, "Cs": 1} and worst["fraction_centrosymmetric"] == 0
    assert ref["n"] == 5 and "indices" not in ref  # molecule 1 (NaN) is not in the reference
    assert best["n_atoms_mean"] == 25.0 and best["n_atoms_mean_all"] == pytest.approx(16.4)
    assert best["n_atoms_median"] == 25.0 and best["n_atoms_median_all"] == 14.0
    ring = best["functional_groups"]["ring"]
    assert ring["frequency"] == 1.0 and ring["frequency_all"] == pytest.approx(0.4)
    assert ring["enrichment"] == pytest.approx(2.5)
    assert worst["functional_groups"]["ring"]["enrichment"] == 0.0
    assert best["most_enriched"] == {"ring": pytest.approx(2.5)} and best["most_depleted"] == {}
    assert worst["most_depleted"] == {"ring": 0.0}
    assert (best["metric_min"], best["metric_max"]) == (0.9, 0.9)


def test_extremes_reject_bad_input():
    with pytest.raises(ConfigError):
        _extremes([0.1, 0.2], direction="up")
    with pytest.raises(ConfigError):
        _extremes([0.1, 0.2], n=0)
    with pytest.raises(DataError):
        _extremes([0.1, np.inf])
