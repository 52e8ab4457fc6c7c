"""The spectral store: one HDF5 schema for simulated and real IR/Raman data (docs/DESIGN.md §2.3).

Layout (N molecules, L grid points, F functional-group flags, K stick modes in all)::

    wavenumber      (L,)   float64  cm⁻¹
    ir, raman       (N, L) float32  broadened spectra (zeros where absent), chunked + gzip
    has_ir, has_raman (N,) bool
    smiles, inchikey  (N,) str      ("" where unknown)
    source_index    (N,)   int64    row in the source (QM9 index, CSV row id, list position)
    split           (N,)   uint8    0 train / 1 val / 2 test, from a hash of the InChIKey
    split_scaffold  (N,)   uint8    same codes, from a hash of the Bemis–Murcko scaffold
    centrosymmetric (N,)   int8     1 / 0, −1 unknown
    point_group     (N,)   str      "" unknown
    fg_flags        (N, F) bool     attrs["names"] lists the F groups
    fg_known        (N,)   bool     False where the molecule is unknown (flags then all False)
    n_atoms         (N,)   int16    0 unknown
    charge_model    (N,)   str      charges used for IR intensities ("" when not simulated)
    source          (N,)   str      where the structure came from: "qm9:<Index>" (a QM9 row,
                                    also a user SMILES found in QM9), "smiles" (embedded from
                                    SMILES), "qm9s" (converted QM9S data), "" unknown
    sticks/offsets  (N+1,) int64    molecule i owns sticks offsets[i]:offsets[i+1]
    sticks/freq, sticks/ir, sticks/raman  (K,) float64  cm⁻¹, km/mol, Å⁴/amu

File attributes: ``schema_version``, ``spektron_version``, ``config`` (JSON of the generator or
converter settings), ``config_hash``, ``source``, ``created``, ``n_records`` and ``complete``.
Schema 2 added ``source``; schema-1 stores (without it) read as ``source`` "" everywhere.
A store is written to a temporary file and renamed into place only when complete, so a file at
the requested path is never half-written; readers also refuse files without ``complete``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from spektron import __version__
from spektron.chemistry.spectra import SpectrumRecord
from spektron.config import config_hash
from spektron.data.splits import DEFAULT_FRACTIONS, SPLIT_NAMES, hash_splits, scaffold_splits
from spektron.errors import StoreError

SCHEMA_VERSION = 2
REQUIRED_KEYS = (
    "wavenumber",
    "ir",
    "raman",
    "has_ir",
    "has_raman",
    "smiles",
    "inchikey",
    "source_index",
    "split",
    "split_scaffold",
    "centrosymmetric",
    "point_group",
    "fg_flags",
    "fg_known",
    "n_atoms",
    "charge_model",
    "sticks/offsets",
    "sticks/freq",
    "sticks/ir",
    "sticks/raman",
)
PER_ROW_KEYS = tuple(
    k for k in REQUIRED_KEYS if k not in ("wavenumber", "sticks/freq", "sticks/ir", "sticks/raman")
)
# Per-row keys added after schema 1: read as their default ("") from stores that lack them.
OPTIONAL_ROW_KEYS = ("source",)
_STR = h5py.string_dtype()


class StoreWriter:
    """Append :class:`SpectrumRecord` s to a new store; finalise atomically.

    Use as a context manager: leaving the block normally assigns the splits, marks the file
    complete and renames it to ``path``; an exception deletes the temporary file instead.

    Parameters
    ----------
    path : destination file (must not be a directory; an existing file is replaced on success).
    wavenumber : (L,) grid of every spectrum appended.
    attrs : JSON-serialisable metadata (``source`` and ``config`` are recommended keys).
    fg_names : names of the functional-group flags (length F of ``record.fg_flags``).
    split_fractions : train/val/test fractions.
    flush_rows : rows buffered in memory between writes.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        wavenumber: np.ndarray,
        attrs: dict[str, Any] | None = None,
        fg_names: Sequence[str] = (),
        split_fractions: Sequence[float] = DEFAULT_FRACTIONS,
        flush_rows: int = 256,
    ) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise StoreError(f"{self.path}: is a directory, expected a file path for the store")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.wavenumber = np.asarray(wavenumber, dtype=np.float64)
        if self.wavenumber.ndim != 1 or not np.all(np.isfinite(self.wavenumber)):
            raise StoreError(f"{self.path}: wavenumber grid must be a finite 1-D array")
        self.attrs = dict(attrs or {})
        self.fg_names = list(fg_names)
        self.split_fractions = tuple(split_fractions)
        self.flush_rows = flush_rows
        self._tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self._buf: list[SpectrumRecord] = []
        self._n = 0
        self._k = 0
        self._h5: h5py.File | None = None

    # -- context manager -------------------------------------------------------------------
    def __enter__(self) -> StoreWriter:
        self._open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finalize()
        else:
            self.abort()

    def _open(self) -> None:
        L, F = len(self.wavenumber), len(self.fg_names)
        h = self._h5 = h5py.File(self._tmp, "w")
        h.create_dataset("wavenumber", data=self.wavenumber)
        chunk = (min(16, max(1, self.flush_rows)), L)
        for name in ("ir", "raman"):
            h.create_dataset(
                name,
                shape=(0, L),
                maxshape=(None, L),
                dtype=np.float32,
                chunks=chunk,
                compression="gzip",
                compression_opts=4,
                shuffle=True,
            )
        for name, dt in (
            ("has_ir", bool),
            ("has_raman", bool),
            ("fg_known", bool),
            ("source_index", np.int64),
            ("centrosymmetric", np.int8),
            ("n_atoms", np.int16),
            ("smiles", _STR),
            ("inchikey", _STR),
            ("point_group", _STR),
            ("charge_model", _STR),
            ("source", _STR),
        ):
            h.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dt, chunks=(4096,))
        fg = h.create_dataset(
            "fg_flags",
            shape=(0, F),
            maxshape=(None, max(F, 1)),
            dtype=bool,
            chunks=(4096, max(F, 1)),
        )
        fg.attrs["names"] = json.dumps(self.fg_names)
        g = h.create_group("sticks")
        g.create_dataset(
            "offsets", data=np.zeros(1, dtype=np.int64), maxshape=(None,), chunks=(4096,)
        )
        for name in ("freq", "ir", "raman"):
            g.create_dataset(name, shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(16384,))

    # -- writing ---------------------------------------------------------------------------
    def append(self, rec: SpectrumRecord) -> None:
        """Queue one record (validated: shapes, finiteness, flags)."""
        if self._h5 is None:
            raise StoreError(f"{self.path}: writer is not open (use it as a context manager)")
        L = len(self.wavenumber)
        if rec.ir is None and rec.raman is None:
            raise StoreError(f"{self.path}: record {rec.source_index} has neither IR nor Raman")
        for name in ("ir", "raman"):
            arr = getattr(rec, name)
            if arr is None:
                continue
            arr = np.asarray(arr)
            if arr.shape != (L,):
                raise StoreError(
                    f"{self.path}: record {rec.source_index} {name} has shape {arr.shape}, "
                    f"grid has {L} points"
                )
            if not np.all(np.isfinite(arr)):
                raise StoreError(f"{self.path}: record {rec.source_index} {name} has NaN/Inf")
        if len(rec.fg_flags) not in (0, len(self.fg_names)):
            raise StoreError(
                f"{self.path}: record {rec.source_index} has {len(rec.fg_flags)} functional-group "
                f"flags, store expects {len(self.fg_names)}"
            )
        n_st = len(rec.stick_freq)
        if not (len(rec.stick_ir) == len(rec.stick_raman) == n_st):
            raise StoreError(
                f"{self.path}: record {rec.source_index} stick arrays differ in length"
            )
        self._buf.append(rec)
        if len(self._buf) >= self.flush_rows:
            self._flush()

    def extend(self, recs: Iterable[SpectrumRecord]) -> None:
        for r in recs:
            self.append(r)

    def _flush(self) -> None:
        if not self._buf:
            return
        h, b, n0 = self._h5, self._buf, self._n
        n1 = n0 + len(b)
        L, F = len(self.wavenumber), len(self.fg_names)

        def grow(name: str, values: np.ndarray) -> None:
            ds = h[name]
            ds.resize(n1, axis=0)
            ds[n0:n1] = values

        zeros = np.zeros(L, dtype=np.float32)
        grow("ir", np.stack([zeros if r.ir is None else np.asarray(r.ir, np.float32) for r in b]))
        grow(
            "raman",
            np.stack([zeros if r.raman is None else np.asarray(r.raman, np.float32) for r in b]),
        )
        grow("has_ir", np.array([r.ir is not None for r in b]))
        grow("has_raman", np.array([r.raman is not None for r in b]))
        grow("source_index", np.array([r.source_index for r in b], dtype=np.int64))
        grow("centrosymmetric", np.array([r.centrosymmetric for r in b], dtype=np.int8))
        grow("n_atoms", np.array([r.n_atoms for r in b], dtype=np.int16))
        for name in ("smiles", "inchikey", "point_group", "charge_model", "source"):
            grow(name, np.array([getattr(r, name) for r in b], dtype=object))
        fg = np.zeros((len(b), F), dtype=bool)
        for i, r in enumerate(b):
            if len(r.fg_flags):
                fg[i] = r.fg_flags
        grow("fg_flags", fg)
        grow("fg_known", np.array([len(r.fg_flags) > 0 for r in b]))
        counts = np.array([len(r.stick_freq) for r in b], dtype=np.int64)
        k1 = self._k + int(counts.sum())
        off = h["sticks/offsets"]
        off.resize(n1 + 1, axis=0)
        off[n0 + 1 : n1 + 1] = self._k + np.cumsum(counts)
        for name, attr in (("freq", "stick_freq"), ("ir", "stick_ir"), ("raman", "stick_raman")):
            ds = h[f"sticks/{name}"]
            ds.resize(k1, axis=0)
            if k1 > self._k:
                ds[self._k : k1] = np.concatenate(
                    [np.asarray(getattr(r, attr), np.float64) for r in b]
                )
        self._n, self._k = n1, k1
        self._buf = []

    def finalize(self) -> Path:
        """Flush, assign splits, write attributes, close and rename into place."""
        try:
            self._flush()
            h = self._h5
            if self._n == 0:
                raise StoreError(f"{self.path}: no records were written; refusing an empty store")
            inchikeys = [s.decode() if isinstance(s, bytes) else s for s in h["inchikey"][:]]
            smiles = [s.decode() if isinstance(s, bytes) else s for s in h["smiles"][:]]
            src = h["source_index"][:]
            keys = [k if k else f"row:{i}" for k, i in zip(inchikeys, src, strict=True)]
            h.create_dataset("split", data=hash_splits(keys, self.split_fractions))
            h.create_dataset(
                "split_scaffold", data=scaffold_splits(smiles, keys, self.split_fractions)
            )
            h["split"].attrs["names"] = json.dumps(SPLIT_NAMES)
            h["split"].attrs["rule"] = (
                "sha256 hash of the InChIKey ('row:<source_index>' when unknown), "
                f"fractions {list(self.split_fractions)}"
            )
            h["split_scaffold"].attrs["names"] = json.dumps(SPLIT_NAMES)
            cfg = self.attrs.get("config", {})
            h.attrs["schema_version"] = SCHEMA_VERSION
            h.attrs["spektron_version"] = __version__
            h.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            h.attrs["n_records"] = self._n
            for k, v in self.attrs.items():
                if isinstance(v, np.generic):  # attributes read back from another store
                    v = v.item()
                h.attrs[k] = v if isinstance(v, (str, int, float, bool)) else json.dumps(v)
            h.attrs["config_hash"] = self.attrs.get("config_hash", config_hash(cfg))
            h.attrs["complete"] = True
            h.close()
            self._h5 = None
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file; nothing is left at ``path``."""
        if self._h5 is not None:
            try:
                self._h5.close()
            except Exception:  # noqa: BLE001 - closing a broken file must not mask the cause
                pass
            self._h5 = None
        self._tmp.unlink(missing_ok=True)


def _dec(a: np.ndarray) -> list[str]:
    return [s.decode() if isinstance(s, bytes) else str(s) for s in a]


class SpectralStore:
    """Validated, lazy reader of a store. Arrays are read on access, never loaded whole.

    The HDF5 handle is opened per process (so torch DataLoader workers each get their own).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        expected_grid: np.ndarray | None = None,
        check_finite: bool = True,
        grid_atol: float = 1e-6,
    ) -> None:
        self.path = Path(path)
        self._h5: h5py.File | None = None
        self._pid = -1
        self._validate(expected_grid, check_finite, grid_atol)

    # -- validation ------------------------------------------------------------------------
    def _fail(self, problem: str) -> StoreError:
        return StoreError(f"{self.path}: {problem}")

    def _validate(self, expected_grid, check_finite: bool, grid_atol: float) -> None:
        if not self.path.exists():
            raise self._fail("file does not exist")
        if self.path.is_dir():
            raise self._fail("is a directory, not a spectral store file")
        try:
            h = h5py.File(self.path, "r")
        except OSError as e:
            raise self._fail(f"not a readable HDF5 file (corrupt or truncated?): {e}") from None
        with h:
            if not h.attrs.get("complete", False):
                raise self._fail("store is incomplete (not marked complete by its writer)")
            missing = [k for k in REQUIRED_KEYS if k not in h]
            if missing:
                raise self._fail(f"missing key(s) {missing}")
            try:
                wn = h["wavenumber"][:]
                n = h["ir"].shape[0]
                if wn.ndim != 1:
                    raise self._fail(f"wavenumber has shape {wn.shape}, expected 1-D")
                L = wn.shape[0]
                for k in ("ir", "raman"):
                    if h[k].shape != (n, L):
                        raise self._fail(f"{k} has shape {h[k].shape}, expected ({n}, {L})")
                for k in PER_ROW_KEYS + tuple(k for k in OPTIONAL_ROW_KEYS if k in h):
                    want = n + 1 if k == "sticks/offsets" else n
                    if h[k].shape[0] != want:
                        raise self._fail(f"{k} has {h[k].shape[0]} rows, expected {want}")
                off = h["sticks/offsets"][:]
                for k in ("sticks/freq", "sticks/ir", "sticks/raman"):
                    if h[k].shape[0] != off[-1]:
                        raise self._fail(f"{k} has {h[k].shape[0]} values, offsets say {off[-1]}")
                if np.any(np.diff(off) < 0):
                    raise self._fail("sticks/offsets is not non-decreasing")
                if not np.all(np.isfinite(wn)) or np.any(np.diff(wn) <= 0):
                    raise self._fail("wavenumber grid is not finite and strictly increasing")
                if expected_grid is not None:
                    eg = np.asarray(expected_grid, dtype=np.float64)
                    if eg.shape != wn.shape or not np.allclose(wn, eg, rtol=0, atol=grid_atol):
                        raise self._fail(
                            f"grid mismatch: store has {L} points {wn[0]:.2f}–{wn[-1]:.2f} cm⁻¹, "
                            f"requested {eg.size} points {eg[0]:.2f}–{eg[-1]:.2f} cm⁻¹"
                        )
                if check_finite:
                    step = max(1, 2**22 // max(L, 1))
                    for k in ("ir", "raman"):
                        for s in range(0, n, step):
                            block = h[k][s : s + step]
                            if not np.all(np.isfinite(block)):
                                bad = s + int(np.where(~np.isfinite(block).all(axis=1))[0][0])
                                raise self._fail(f"{k} contains NaN/Inf (first at row {bad})")
                split = h["split"][:]
                if split.size and split.max() > 2:
                    raise self._fail("split contains codes other than 0/1/2")
            except StoreError:
                raise
            except (OSError, KeyError, ValueError) as e:
                raise self._fail(f"unreadable content (corrupt?): {e}") from None
            self.wavenumber = wn
            self.n = n
            self.attrs = {
                k: (v.decode() if isinstance(v, bytes) else v) for k, v in h.attrs.items()
            }
            self.fg_names: list[str] = json.loads(h["fg_flags"].attrs.get("names", "[]"))

    # -- access ----------------------------------------------------------------------------
    @property
    def h5(self) -> h5py.File:
        if self._h5 is None or self._pid != os.getpid():
            self._h5 = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._h5

    def close(self) -> None:
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5 = None

    def __enter__(self) -> SpectralStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self.n

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_h5"] = None
        return state

    def column(self, key: str) -> np.ndarray:
        """A whole per-molecule column (strings decoded; an optional column that an older store
        lacks reads as "" everywhere)."""
        if key in OPTIONAL_ROW_KEYS and key not in self.h5:
            return np.array([""] * self.n, dtype=object)
        a = self.h5[key][:]
        return np.array(_dec(a), dtype=object) if a.dtype.kind in "OS" else a

    def spectra(self, kind: str, idx: int | slice | np.ndarray) -> np.ndarray:
        """Rows of ``ir`` or ``raman`` (float32). Fancy indices (repeats allowed) are read once
        each, in sorted order, as HDF5 requires."""
        if kind not in ("ir", "raman"):
            raise ValueError(f"kind must be 'ir' or 'raman', got {kind!r}")
        ds = self.h5[kind]
        if isinstance(idx, (int, np.integer, slice)):
            return ds[idx]
        rows, inverse = np.unique(np.asarray(idx), return_inverse=True)
        return ds[rows][inverse.reshape(-1)]

    def split_indices(self, split: str, scheme: str = "inchikey") -> np.ndarray:
        """Row indices of ``split`` (train/val/test) under ``scheme`` (inchikey|scaffold)."""
        if split not in SPLIT_NAMES:
            raise ValueError(f"split must be one of {SPLIT_NAMES}, got {split!r}")
        key = {"inchikey": "split", "scaffold": "split_scaffold"}.get(scheme)
        if key is None:
            raise ValueError(f"split scheme must be 'inchikey' or 'scaffold', got {scheme!r}")
        return np.flatnonzero(self.h5[key][:] == SPLIT_NAMES.index(split))

    def records(self, start: int = 0, stop: int | None = None) -> list[SpectrumRecord]:
        """Rows ``start:stop`` as :class:`SpectrumRecord` s, read as one block per column."""
        h = self.h5
        stop = self.n if stop is None else min(stop, self.n)
        if not 0 <= start <= stop:
            raise IndexError(f"rows {start}:{stop} out of range for {self.n} records")
        cols = {k: h[k][start:stop] for k in PER_ROW_KEYS if k not in ("split", "split_scaffold")}
        off = h["sticks/offsets"][start : stop + 1]
        st = {k: h[f"sticks/{k}"][off[0] : off[-1]] for k in ("freq", "ir", "raman")}
        ir, raman = h["ir"][start:stop], h["raman"][start:stop]
        strs = {k: _dec(cols[k]) for k in ("smiles", "inchikey", "point_group", "charge_model")}
        strs["source"] = _dec(h["source"][start:stop]) if "source" in h else [""] * (stop - start)
        out = []
        for j in range(stop - start):
            a, b = off[j] - off[0], off[j + 1] - off[0]
            out.append(
                SpectrumRecord(
                    smiles=strs["smiles"][j],
                    inchikey=strs["inchikey"][j],
                    source_index=int(cols["source_index"][j]),
                    ir=ir[j] if cols["has_ir"][j] else None,
                    raman=raman[j] if cols["has_raman"][j] else None,
                    centrosymmetric=int(cols["centrosymmetric"][j]),
                    point_group=strs["point_group"][j],
                    fg_flags=cols["fg_flags"][j] if cols["fg_known"][j] else np.zeros(0, bool),
                    stick_freq=st["freq"][a:b],
                    stick_ir=st["ir"][a:b],
                    stick_raman=st["raman"][a:b],
                    n_atoms=int(cols["n_atoms"][j]),
                    charge_model=strs["charge_model"][j],
                    source=strs["source"][j],
                )
            )
        return out

    def record(self, i: int) -> SpectrumRecord:
        """Row ``i`` as a :class:`SpectrumRecord`."""
        return self.records(i, i + 1)[0]

    def sticks(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(freq cm⁻¹, IR km/mol, Raman activity Å⁴/amu) of molecule ``i``."""
        a, b = self.h5["sticks/offsets"][i : i + 2]
        return tuple(self.h5[f"sticks/{k}"][a:b] for k in ("freq", "ir", "raman"))  # type: ignore[return-value]

    def config(self) -> dict[str, Any]:
        raw = self.attrs.get("config", "{}")
        return json.loads(raw) if isinstance(raw, str) else dict(raw)

    def summary(self) -> dict[str, Any]:
        """Counts and annotations for ``spektron data info``."""
        h = self.h5
        split = h["split"][:]
        cs = h["centrosymmetric"][:]
        fg = h["fg_flags"][:]
        pg = _dec(h["point_group"][:])
        pg_counts: dict[str, int] = {}
        for p in pg:
            pg_counts[p or "unknown"] = pg_counts.get(p or "unknown", 0) + 1
        src_counts: dict[str, int] = {}
        for src in self.column("source"):
            kind = str(src).split(":", 1)[0] or "unknown"
            src_counts[kind] = src_counts.get(kind, 0) + 1
        return {
            "file": str(self.path),
            "source": self.attrs.get("source", ""),
            "simulated": bool(self.attrs.get("simulated", False)),
            "n_records": int(self.n),
            "grid": {
                "n_points": int(len(self.wavenumber)),
                "lo": float(self.wavenumber[0]),
                "hi": float(self.wavenumber[-1]),
            },
            "has_ir": int(h["has_ir"][:].sum()),
            "has_raman": int(h["has_raman"][:].sum()),
            "splits": {name: int((split == i).sum()) for i, name in enumerate(SPLIT_NAMES)},
            "centrosymmetric": {
                "yes": int((cs == 1).sum()),
                "no": int((cs == 0).sum()),
                "unknown": int((cs < 0).sum()),
            },
            "point_groups": dict(sorted(pg_counts.items(), key=lambda kv: -kv[1])),
            # where the structures came from: qm9 (QM9 rows), smiles (embedded), qm9s, unknown
            "structure_sources": dict(sorted(src_counts.items(), key=lambda kv: -kv[1])),
            "functional_groups_known": int(h["fg_known"][:].sum()),
            "functional_groups": {n: int(fg[:, j].sum()) for j, n in enumerate(self.fg_names)},
            "n_sticks": int(h["sticks/offsets"][-1]),
            "config_hash": self.attrs.get("config_hash", ""),
            "spektron_version": self.attrs.get("spektron_version", ""),
        }


def open_store(
    path: str | os.PathLike, expected_grid: np.ndarray | None = None, check_finite: bool = True
) -> SpectralStore:
    """Open and validate a store (see :class:`SpectralStore`)."""
    return SpectralStore(path, expected_grid=expected_grid, check_finite=check_finite)


def _provenance(store: SpectralStore) -> dict[str, Any]:
    """What a store's rows are: source, level, label and the physics that made them (the
    fields two stores must share to be one dataset; shards of one run share them)."""
    physics = store.config().get("physics")
    return {
        "source": str(store.attrs.get("source", "")),
        "level": str(store.attrs.get("level", "")),
        "label": str(store.attrs.get("label", "")),
        "physics": json.dumps(physics, sort_keys=True) if physics is not None else "",
    }


def merge_stores(
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    attrs: dict[str, Any] | None = None,
    block_rows: int = 1024,
    allow_mixed: bool = False,
) -> Path:
    """Merge stores with the same grid (e.g. shards) into one; duplicate source rows dropped.

    Rows keep the order of ``inputs``; a (source, source_index) seen twice is written once.
    Splits are reassigned from the same hash, so they equal those of an unsharded run.

    Stores of different sources, levels, labels or physics settings are refused: the merged
    store would carry the first one's label for every row. ``allow_mixed`` merges them anyway,
    labelled as mixed: ``source``, ``level`` and ``label`` list every input's, ``config`` is
    dropped and ``mixed_provenance`` holds each input's.
    """
    if not inputs:
        raise StoreError("merge: no input stores given")
    stores = [open_store(p) for p in inputs]
    wn = stores[0].wavenumber
    for s in stores[1:]:
        if s.wavenumber.shape != wn.shape or not np.allclose(s.wavenumber, wn, rtol=0, atol=1e-6):
            raise StoreError(f"{s.path}: grid differs from {stores[0].path}; cannot merge")
        if s.fg_names != stores[0].fg_names:
            raise StoreError(f"{s.path}: functional-group flags differ from {stores[0].path}")
    prov = [_provenance(s) for s in stores]
    mixed = [k for k in ("source", "level", "physics", "label") if len({p[k] for p in prov}) > 1]
    if mixed and not allow_mixed:
        other = next(i for i, p in enumerate(prov) if any(p[k] != prov[0][k] for k in mixed))
        what = mixed[0]
        a, b = prov[0][what], prov[other][what]
        if what == "physics":
            d0, d1 = json.loads(a or "{}"), json.loads(b or "{}")
            keys = sorted(k for k in set(d0) | set(d1) if d0.get(k) != d1.get(k))
            a = ", ".join(f"{k}={d0.get(k)!r}" for k in keys)
            b = ", ".join(f"{k}={d1.get(k)!r}" for k in keys)
        for st in stores:
            st.close()
        raise StoreError(
            f"merge: {stores[other].path} differs from {stores[0].path} in {', '.join(mixed)} "
            f"({what}: {b} vs {a}); the merged store would label every row as the first "
            "store's. Pass --allow-mixed to merge them as a store labelled mixed"
        )
    merged_attrs = {
        k: v
        for k, v in stores[0].attrs.items()
        if k not in ("complete", "n_records", "created", "schema_version")
    }
    if mixed:
        merged_attrs.pop("config", None)
        merged_attrs["config_hash"] = config_hash({"mixed": prov})
        merged_attrs["mixed_provenance"] = json.dumps(
            [{"path": str(s.path), **p} for s, p in zip(stores, prov, strict=True)]
        )
        for k in ("source", "level"):
            merged_attrs[k] = "+".join(dict.fromkeys(p[k] for p in prov))
        merged_attrs["label"] = "MIXED store: " + " | ".join(
            dict.fromkeys(p["label"] for p in prov)
        )
    merged_attrs.update(attrs or {})
    merged_attrs["merged_from"] = json.dumps([str(s.path) for s in stores])
    seen: set[tuple[str, int]] = set()
    with StoreWriter(out, wn, attrs=merged_attrs, fg_names=stores[0].fg_names) as w:
        for s in stores:
            source = str(s.attrs.get("source", ""))
            for block in range(0, s.n, block_rows):
                for r in s.records(block, block + block_rows):
                    if (source, r.source_index) in seen:
                        continue
                    seen.add((source, r.source_index))
                    w.append(r)
            s.close()
    return Path(out)
