"""Shared fixtures (helpers shared by several modules are in tests/helpers.py). Every test gets
its own cache folder (SPEKTRON_CACHE) unless it opts out."""

from __future__ import annotations

import numpy as np
import pytest

from spektron.chemistry.spectra import make_grid


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SPEKTRON_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def small_grid() -> np.ndarray:
    return make_grid(64)
