"""Hash splits and the spectral helpers (grid, broadening, normalisation, Raman intensity)."""

from __future__ import annotations

import numpy as np
import pytest

from spektron.chemistry.spectra import (
    lorentzian_broaden,
    make_grid,
    normalize_spectra,
    raman_activity_to_intensity,
)
from spektron.data.splits import hash_splits, key_to_unit, scaffold_key
from spektron.errors import ConfigError


def test_hash_splits_pure_function_of_key():
    keys = [f"K{i}" for i in range(1000)]
    a = hash_splits(keys)
    b = hash_splits(list(reversed(keys)))[::-1]
    np.testing.assert_array_equal(a, b)
    assert 0 <= key_to_unit("x") < 1
    with pytest.raises(ConfigError):
        hash_splits(keys, (0.5, 0.5, 0.5))


def test_scaffold_keys():
    assert scaffold_key("c1ccccc1CCO") == scaffold_key("c1ccccc1N")
    assert scaffold_key("CCCO") == scaffold_key("CCCN")  # same acyclic skeleton
    assert scaffold_key("CCCO") != scaffold_key("CCO")
    assert scaffold_key("not a smiles") == ""


def test_lorentzian_height_width_and_tails():
    grid = make_grid(3501)  # 1 cm⁻¹ spacing
    y = lorentzian_broaden(np.array([1000.0]), np.array([2.0]), grid, fwhm=10.0)
    assert y.max() == pytest.approx(2.0)
    assert grid[np.argmax(y)] == pytest.approx(1000.0)
    assert y[grid == 1005.0][0] == pytest.approx(1.0)  # half height at ±FWHM/2
    # a stick outside the grid still contributes its tail
    t = lorentzian_broaden(np.array([490.0]), np.array([1.0]), grid, fwhm=10.0)
    assert t[0] == pytest.approx(25 / (100 + 25))


def test_normalisations():
    x = np.array([[0.0, 1.0, 3.0], [0.0, 0.0, 0.0]])
    assert normalize_spectra(x, "max")[0].max() == 1.0
    assert normalize_spectra(x, "area")[0].sum() == pytest.approx(1.0)
    assert np.linalg.norm(normalize_spectra(x, "l2")[0]) == pytest.approx(1.0)
    assert np.all(normalize_spectra(x, "max")[1] == 0)
    with pytest.raises(ConfigError):
        normalize_spectra(x, "peak")


def test_raman_intensity_factor_ratio():
    # docs/DESIGN.md §2.1: at 785 nm and 298 K the factor changes the 3000 : 500 cm⁻¹ ratio ~16×.
    nu = np.array([500.0, 3000.0])
    f = raman_activity_to_intensity(nu, np.ones(2), laser_cm=1e7 / 785, temperature_k=298.0)
    assert 12 < f[0] / f[1] < 20
