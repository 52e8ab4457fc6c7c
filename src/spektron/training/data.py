"""In-memory training data: a split of a spectral store read once, then served as arrays.

Reading the split once (one HDF5 handle, one block read per modality) and keeping it in memory
is what keeps an accelerator fed: all of QM9 at L = 2048 is ~1.1 GB per modality in float32;
batches are gathered by index from pinned memory and copied asynchronously. (For stores larger
than memory, :class:`spektron.data.datasets.SpectraDataset` reads lazily with one handle per
DataLoader worker.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from spektron.chemistry.spectra import normalize_spectra
from spektron.data.store import SpectralStore
from spektron.errors import DataError

log = logging.getLogger(__name__)

KIND_CODES = {"ir": 0, "raman": 1}


def batch_tensor(a: np.ndarray) -> torch.Tensor:
    """A CPU tensor of ``a`` (contiguous), copied when ``a`` is read-only: torch shares the
    array's memory and would otherwise warn that writes through it are undefined."""
    a = np.ascontiguousarray(a)
    return torch.from_numpy(a if a.flags.writeable else a.copy())


@dataclass
class ArrayData:
    """Named arrays sharing their first axis N (e.g. ``x`` (N, L), ``row`` (N,), ``kind`` (N,))."""

    arrays: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        lengths = {k: len(v) for k, v in self.arrays.items()}
        if len(set(lengths.values())) != 1:
            raise DataError(f"arrays disagree in length: {lengths}")
        if next(iter(lengths.values())) == 0:
            raise DataError("no samples")

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def take(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        """Rows ``idx`` of every array as CPU tensors (copies; read-only arrays are welcome)."""
        return {k: batch_tensor(v[idx]) for k, v in self.arrays.items()}

    def subset(self, idx: np.ndarray) -> ArrayData:
        return ArrayData({k: v[idx] for k, v in self.arrays.items()})


def load_spectra_split(
    store: SpectralStore,
    split: str,
    kinds: tuple[str, ...] = ("ir", "raman"),
    normalization: str = "max",
    split_scheme: str = "inchikey",
    limit: int | None = None,
) -> ArrayData:
    """Every spectrum of the given kinds in one split, normalised, as ``x`` (N, L) float32.

    Each spectrum is one sample, with ``row`` (its store row) and ``kind`` (0 = IR, 1 = Raman).
    ``limit`` keeps the first ``limit`` molecules of the split (in store order) per kind.
    """
    rows_all = store.split_indices(split, split_scheme)
    xs, rows, codes = [], [], []
    for kind in kinds:
        if kind not in KIND_CODES:
            raise DataError(f"unknown spectrum kind {kind!r}; choose from {sorted(KIND_CODES)}")
        rows_k = rows_all[store.column(f"has_{kind}")[rows_all]]
        if limit is not None:
            rows_k = rows_k[:limit]
        if len(rows_k) == 0:
            continue
        x = normalize_spectra(np.asarray(store.spectra(kind, rows_k), np.float64), normalization)
        xs.append(x.astype(np.float32))
        rows.append(rows_k.astype(np.int64))
        codes.append(np.full(len(rows_k), KIND_CODES[kind], dtype=np.int64))
    if not xs:
        raise DataError(f"{store.path}: no {'/'.join(kinds)} spectra in split {split!r}")
    x = np.concatenate(xs)
    if not np.isfinite(x).all():
        raise DataError(f"{store.path}: non-finite values in split {split!r} after normalisation")
    log.debug("loaded %s: %d spectra (%.1f MB)", split, len(x), x.nbytes / 2**20)
    return ArrayData({"x": x, "row": np.concatenate(rows), "kind": np.concatenate(codes)})
