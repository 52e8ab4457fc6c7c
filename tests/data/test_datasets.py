"""Torch dataset over a store: split/modality selection, normalisation, worker processes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from spektron.data.datasets import SpectraDataset
from spektron.data.store import StoreWriter, open_store
from spektron.errors import ConfigError, StoreError
from tests.helpers import fake_record


@pytest.fixture
def store_path(tmp_path, small_grid):
    rng = np.random.default_rng(0)
    with StoreWriter(tmp_path / "s.h5", small_grid, fg_names=["a", "b"]) as w:
        w.extend(fake_record(i, small_grid, rng) for i in range(70))
    return tmp_path / "s.h5"


def test_selection_and_normalisation(store_path):
    store = open_store(store_path)
    ds = SpectraDataset(store, split="all", modality="both", normalization="max")
    assert len(ds) == int((store.column("has_ir") & store.column("has_raman")).sum())
    item = ds[0]
    assert item["ir"].shape == (64,) and item["ir"].dtype == torch.float32
    assert item["ir"].max().item() == pytest.approx(1.0)
    raw = store.spectra("raman", int(item["index"]))
    np.testing.assert_allclose(item["raman"].numpy(), raw / raw.max(), rtol=1e-6)
    ir_only = SpectraDataset(store, split="all", modality="ir", normalization="l2")
    assert len(ir_only) == store.n
    assert torch.linalg.norm(ir_only[3]["ir"]).item() == pytest.approx(1.0, rel=1e-5)
    parts = [SpectraDataset(store, split=s, modality="ir").rows for s in ("train", "val", "test")]
    assert sum(map(len, parts)) == store.n


def test_loader_with_worker_processes(store_path):
    ds = SpectraDataset(store_path, split="all", modality="ir", normalization="none")
    rows = []
    for batch in DataLoader(ds, batch_size=8, num_workers=2):
        assert batch["ir"].shape[1:] == (64,)
        rows.extend(batch["index"].tolist())
        np.testing.assert_allclose(
            batch["ir"][0].numpy(), ds.store.spectra("ir", rows[-len(batch["index"])])
        )
    assert sorted(rows) == list(range(70))


def test_bad_options(store_path, small_grid):
    with pytest.raises(ConfigError):
        SpectraDataset(store_path, modality="uv")
    with pytest.raises(ConfigError):
        SpectraDataset(store_path, normalization="peak")
    with pytest.raises(StoreError, match="grid mismatch"):
        SpectraDataset(store_path, expected_grid=small_grid[:-1])
