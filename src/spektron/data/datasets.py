"""PyTorch datasets over a spectral store, read lazily (one HDF5 handle per worker process)."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from spektron.chemistry.spectra import NORMALIZATIONS, normalize_spectra
from spektron.data.store import SpectralStore, open_store
from spektron.errors import ConfigError, DataError

MODALITIES = ("ir", "raman", "both")


class SpectraDataset(Dataset):
    """Spectra of one split of a store.

    Parameters
    ----------
    store : a :class:`SpectralStore` or a path to one.
    split : "train" | "val" | "test" | "all".
    modality : "ir", "raman" (molecules that have it) or "both" (molecules with both).
    normalization : per-spectrum rule (see :func:`normalize_spectra`), applied on read.
    split_scheme : "inchikey" (default) or "scaffold".
    expected_grid : when given, the store's grid must match it.

    Items are dicts of float32 tensors ``ir``/``raman`` of shape (L,) (as the modality
    requires) and the integer ``index`` of the row in the store.
    """

    def __init__(
        self,
        store: SpectralStore | str | os.PathLike,
        split: str = "train",
        modality: str = "ir",
        normalization: str = "max",
        split_scheme: str = "inchikey",
        expected_grid: np.ndarray | None = None,
    ) -> None:
        if modality not in MODALITIES:
            raise ConfigError(f"modality must be one of {MODALITIES}, got {modality!r}")
        if normalization not in NORMALIZATIONS:
            raise ConfigError(
                f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}"
            )
        self.store = store if isinstance(store, SpectralStore) else open_store(store, expected_grid)
        self.modality = modality
        self.normalization = normalization
        rows = (
            np.arange(self.store.n)
            if split == "all"
            else self.store.split_indices(split, split_scheme)
        )
        has_ir = self.store.column("has_ir")[rows]
        has_raman = self.store.column("has_raman")[rows]
        keep = {"ir": has_ir, "raman": has_raman, "both": has_ir & has_raman}[modality]
        self.rows = rows[keep]
        if len(self.rows) == 0:
            raise DataError(f"{self.store.path}: no {modality} spectra in split {split!r}")
        self.kinds = ("ir", "raman") if modality == "both" else (modality,)

    @property
    def wavenumber(self) -> np.ndarray:
        return self.store.wavenumber

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        row = int(self.rows[i])
        item: dict[str, torch.Tensor] = {"index": torch.tensor(row)}
        for k in self.kinds:
            x = normalize_spectra(self.store.spectra(k, row), self.normalization)
            item[k] = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))  # (L,)
        return item
