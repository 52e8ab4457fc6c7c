"""Shared fixtures. Every test gets its own cache folder (SPEKTRON_CACHE) unless it opts out."""

from __future__ import annotations

import numpy as np
import pytest

from spektron.data.spectra import SpectrumRecord, make_grid


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SPEKTRON_CACHE", str(tmp_path_factory.mktemp("cache")))


def fake_record(
    i: int, grid: np.ndarray, rng: np.random.Generator, n_fg: int = 2
) -> SpectrumRecord:
    """A synthetic record with random spectra (for store mechanics, not physics)."""
    k = int(rng.integers(0, 5))
    return SpectrumRecord(
        smiles=["C", "CC", "CCO", "c1ccccc1", "C#N"][i % 5],
        inchikey=f"KEY-{i:05d}",
        source_index=i,
        ir=rng.random(len(grid)),
        raman=None if i % 7 == 3 else rng.random(len(grid)),
        centrosymmetric=i % 2,
        point_group=["C1", "Cs", "C2v"][i % 3],
        fg_flags=rng.random(n_fg) > 0.5,
        stick_freq=rng.uniform(500, 4000, k),
        stick_ir=rng.random(k),
        stick_raman=rng.random(k),
        n_atoms=3 + i % 10,
        charge_model="test",
        source=["qm9:1", "smiles", ""][i % 3],
    )


@pytest.fixture
def small_grid() -> np.ndarray:
    return make_grid(64)
