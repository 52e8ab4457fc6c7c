"""Converters for the real QM9S files into the spectral store.

QM9S (Zou et al., "A deep learning model for predicting selected organic molecular spectra",
Nat. Comput. Sci. 2023; data: figshare, doi:10.6084/m9.figshare.24235333) recomputed ~130k QM9
molecules at B3LYP/def-TZVP. It ships the same molecules in three forms; each is a route here,
chosen by :func:`convert_qm9s` from the files it is given.

``ir_boraden.csv``, ``raman_boraden.csv`` (sic) — wide CSVs, ~8.3 GB each
    Header: an id-column label (empty in the release; any name is accepted) and the wavenumbers
    500…4000 cm⁻¹ (3501 columns). Rows: row id 0…N−1, then the broadened spectrum. The files
    are streamed in chunks of rows (never loaded whole) and, when both are given, read in
    lock-step with the row ids checked to agree row by row. The header grid must be numeric,
    strictly increasing and cover the model grid; each row must have the header's width and
    finite numbers; row ids must be non-negative integers in increasing order. Every spectrum
    is resampled onto the model grid by linear interpolation. The absolute scale of these
    spectra is undocumented: they are stored as given and normalised downstream.
``qm9s.pt`` — a pickled list of torch_geometric ``Data`` objects
    Keys used: ``smile``, ``z`` (n,), ``pos`` (n, 3) Å, ``Hi`` (n, 3, 3) and ``Hij`` (E, 3, 3)
    Hessian blocks in eV/Å² over ``edge_index`` (2, E), ``dedipole`` (n, 3, 3) D/Å and
    ``depolar`` (n, 3, 6) Bohr³/Å with components xx, xy, yy, xz, yz, zz. CSV row i is list
    position i (the ``number`` field is not used). The file can only be read by full
    unpickling (code execution), so it is loaded only with ``trust_pickle=True``; torch_geometric
    is not needed (its classes are replaced by a stand-in that keeps the attribute dict). It
    serves (a) as the molecular identity of the wide-CSV rows and (b), alone, as a source of
    stick spectra recomputed from its Hessian and derivatives.
``qm9s_csv.zip`` — one CSV per molecule (``000001.csv`` …); layout in :func:`parse_molecule_csv`
    Geometry, dμ/dR (D/Å), dα/dR (Bohr³/Å) and the 3N×3N Hessian (eV/Å²): stick spectra are
    recomputed and broadened with our own Lorentzians. An unzipped folder of these CSVs works too.

Hessian blocks of ``qm9s.pt`` follow DetaNet's own assembly (``hessfreq`` in DetaNet's
``spectra_simulator.py``): for edge e = (i, j) = edge_index[:, e], block ``Hij[e]`` is placed at
rows of atom j and columns of atom i, ``Hi[a]`` on the diagonal, and the result is symmetrised.
The derivative tensors are indexed [atom, displaced coordinate, component] (DetaNet's
``chain_rule_ir``), i.e. row 3a + c of the (3N, 3) / (3N, 6) matrices used here.

Physics of the recomputed sticks (zip and pt routes), Wilson et al. / Gaussian conventions::

    H̃ = M^-1/2 H M^-1/2, projected onto the complement of the 6 (linear: 5) translations and
    rotations, diagonalised: H̃ l_k = λ_k l_k;  L_k = M^-1/2 l_k (cartesian displacement)
    ν_k = s · 521.47 · sign(λ_k) √|λ_k|                cm⁻¹ (λ in eV/Å²/amu; s = 0.965)
    I_k = 42.2561 · |Σ_i (∂μ/∂R_i) L_ik|²               km/mol  ((D/Å)²/amu → km/mol)
    S_k = 0.021958718449 · (45 a′² + 7 γ′²)            Å⁴/amu  (Bohr⁶/Å²/amu → Å⁴/amu)
    a′ = (α′xx + α′yy + α′zz)/3,
    γ′² = ½[(α′xx−α′yy)² + (α′yy−α′zz)² + (α′zz−α′xx)²] + 3(α′xy² + α′xz² + α′yz²)

with α′ = Σ_i (∂α/∂R_i) L_ik. Spectra: height-normalised Lorentzians (FWHM 15 cm⁻¹ IR, 10 cm⁻¹
Raman, as the QM9S paper) on the model grid via
:func:`spektron.chemistry.spectra.lorentzian_broaden`; imaginary modes (ν < 0) are kept as
negative sticks but not broadened.

Without ``qm9s.pt`` the wide CSVs carry no molecular identity. What still works: everything
that only needs spectra — E1 (masked reconstruction and backbone benchmarks), cross-spectral
IR ↔ Raman prediction on rows that have both, pretraining. Splits then hash the row id instead of
the InChIKey, so duplicate molecules are not grouped and the scaffold split is not meaningful.
What does not work: anything per molecule — symmetry (centrosymmetric flag, point group, the E2
held-out symmetric set), functional-group analysis, SMILES-based splits and mapping to QM9. Give
``qm9s.pt`` (identity by position, checked against recomputed spectra) or use the zip.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import pickle
import types
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import rdDetermineBonds
from tqdm.auto import tqdm

from spektron.chemistry.functional_groups import FUNCTIONAL_GROUP_NAMES, functional_group_flags
from spektron.chemistry.spectra import SpectrumRecord, lorentzian_broaden, make_grid
from spektron.chemistry.symmetry import has_inversion_centre, point_group
from spektron.chemistry.vibrations import (
    IR_TO_KM_MOL,
    atomic_masses,
    harmonic_modes,
    ir_intensity,
    raman_activity,
)
from spektron.config import GridConfig
from spektron.data.store import StoreWriter
from spektron.errors import ConfigError, DataError
from spektron.utils import single_threaded_blas

logger = logging.getLogger(__name__)

QM9S_REFERENCE = (
    "Zou et al., Nat. Comput. Sci. 2023 (QM9S); data: figshare doi:10.6084/m9.figshare.24235333"
)
QM9S_LEVEL_OF_THEORY = "B3LYP/def-TZVP"

# CODATA 2018 (exact SI values where defined).
_EV_J = 1.602176634e-19
_AMU_KG = 1.66053906660e-27
_C_CM_S = 2.99792458e10
#: √(eV/Å²/amu) → cm⁻¹ (= 521.47).
HESSIAN_TO_CM = math.sqrt(_EV_J / (1e-20 * _AMU_KG)) / (2.0 * math.pi * _C_CM_S)
#: Raman activity, Bohr⁶/Å²/amu → Å⁴/amu (= a₀⁶ in Å⁶, with the a₀ = 0.529177249 Å of QM9S/DetaNet).
RAMAN_BOHR6_TO_A4 = 0.021958718449

_PT_SPECTRA_FIELDS = ("z", "pos", "Hi", "Hij", "edge_index", "dedipole", "depolar")


@dataclass
class Qm9sConfig:
    """Settings of the QM9S converters (recorded in the store's ``config`` attribute)."""

    # Harmonic frequency scale factor (QM9S: 0.965 for B3LYP/def-TZVP).
    freq_scale: float = 0.965
    # Lorentzian FWHM (cm⁻¹) for recomputed spectra, as the QM9S paper.
    ir_fwhm: float = 15.0
    raman_fwhm: float = 10.0
    # Atomic masses for the normal modes: "isotopic" (most abundant isotope, as Gaussian) or
    # "average" (standard atomic weights, as DetaNet's simulator); < 0.1 % apart in frequency.
    masses: str = "isotopic"
    # A molecule is treated as linear (5 rotations/translations) when its smallest principal
    # moment of inertia is below this fraction of the largest.
    linear_tol: float = 1e-4
    # Compute the centre of inversion and point group on the DFT geometry (tolerance in Å).
    symmetry: bool = True
    symmetry_tol: float = 0.05
    # QM9S numbers in the zip (line 0, column 0; file 000001.csv) start at this value; the stored
    # source_index is number − base, i.e. the row id of the wide CSVs and the qm9s.pt position.
    zip_index_base: int = 1
    # Derive SMILES from the geometry (RDKit rdDetermineBonds) when the source has none.
    smiles_from_geometry: bool = True
    # Check that qm9s.pt lines up with the wide CSVs: every ``verify_every``-th row's spectrum,
    # recomputed from qm9s.pt, must match the CSV row (cosine ≥ verify_min_cosine, best of the
    # scaled and unscaled frequencies) for most checked rows.
    verify_alignment: bool = True
    verify_every: int = 1000
    verify_min_cosine: float = 0.8

    def __post_init__(self) -> None:
        def check(cond: bool, msg: str) -> None:
            if not cond:
                raise ConfigError(msg)

        check(0 < self.freq_scale <= 2, f"qm9s.freq_scale must be in (0, 2], got {self.freq_scale}")
        check(self.ir_fwhm > 0 and self.raman_fwhm > 0, "qm9s FWHMs must be > 0")
        check(
            self.masses in ("isotopic", "average"),
            f"qm9s.masses must be isotopic|average, got {self.masses!r}",
        )
        check(
            0 < self.linear_tol < 0.1, f"qm9s.linear_tol must be in (0, 0.1), got {self.linear_tol}"
        )
        check(self.symmetry_tol > 0, "qm9s.symmetry_tol must be > 0")
        check(self.verify_every >= 1, "qm9s.verify_every must be >= 1")
        check(0 < self.verify_min_cosine <= 1, "qm9s.verify_min_cosine must be in (0, 1]")


# ============================================================================ normal modes


def normal_modes_from_hessian(
    hessian_ev_A2: np.ndarray,
    masses_amu: np.ndarray,
    coords: np.ndarray,
    *,
    linear_tol: float = 1e-4,
) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic frequencies and cartesian normal modes from a cartesian Hessian.

    The Hessian is symmetrised, mass-weighted, projected onto the complement of the rigid
    translations and rotations (5 for a linear molecule, 3 for an atom) and diagonalised in that
    subspace, so exactly 3N − 6 (3N − 5) vibrations come out.

    Parameters
    ----------
    hessian_ev_A2 : (3N, 3N) Hessian in eV/Å², coordinate 3a + c = atom a, axis c.
    masses_amu : (N,) atomic masses in amu.
    coords : (N, 3) positions in Å (they define the rotations).
    linear_tol : smallest/largest principal moment of inertia below which a rotation is dropped.

    Returns
    -------
    freqs_cm : (K,) unscaled frequencies in cm⁻¹, ascending; negative = imaginary.
    modes : (3N, K) cartesian displacements L_k = M^-1/2 l_k per unit mass-weighted normal
        coordinate (Å per amu^½·Å), with l_k orthonormal.
    """
    h = np.asarray(hessian_ev_A2, dtype=np.float64)
    m = np.asarray(masses_amu, dtype=np.float64).reshape(-1)
    x = np.asarray(coords, dtype=np.float64)
    n = len(m)
    if h.shape != (3 * n, 3 * n) or x.shape != (n, 3):
        raise ValueError(
            f"hessian {h.shape}, masses ({n},) and coords {x.shape} do not describe {n} atoms"
        )
    if np.any(m <= 0):
        raise ValueError("masses must be > 0")
    r = x - (m[:, None] * x).sum(0) / m.sum()
    inertia = np.einsum("i,ij,ik->jk", m, r, r)
    moments = np.linalg.eigvalsh(np.trace(inertia) * np.eye(3) - inertia)  # ascending
    # A rotation about a principal axis with (near-)zero moment moves no atom: linear molecule.
    linear = bool(moments[0] <= linear_tol * max(moments[-1], 1e-12))
    freqs, _, cart = harmonic_modes(h, m, x, linear, HESSIAN_TO_CM)
    return freqs, cart


def ir_intensities(dipole_deriv: np.ndarray, modes: np.ndarray) -> np.ndarray:
    """IR intensities (km/mol) from dμ/dR (3N, 3) in D/Å and cartesian modes (3N, K)."""
    return ir_intensity(modes.T @ np.asarray(dipole_deriv, dtype=np.float64))  # dμ/dQ (K, 3)


def raman_activities(polar_deriv: np.ndarray, modes: np.ndarray) -> np.ndarray:
    """Raman activities (Å⁴/amu) from dα/dR (3N, 6: xx, xy, yy, xz, yz, zz) in Bohr³/Å."""
    da = modes.T @ np.asarray(polar_deriv, dtype=np.float64)  # (K, 6) Bohr³/(Å·amu^½)
    return RAMAN_BOHR6_TO_A4 * raman_activity(*da.T)


def sticks_from_hessian(
    hessian_ev_A2: np.ndarray,
    masses_amu: np.ndarray,
    coords: np.ndarray,
    dipole_deriv: np.ndarray,
    polar_deriv: np.ndarray,
    *,
    freq_scale: float = 0.965,
    linear_tol: float = 1e-4,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hessian + dμ/dR + dα/dR → stick spectrum (see the module docstring for the equations).

    Parameters
    ----------
    hessian_ev_A2 : (3N, 3N) eV/Å².
    masses_amu : (N,) amu.
    coords : (N, 3) Å.
    dipole_deriv : (3N, 3) D/Å, row 3a + c = derivative along axis c of atom a.
    polar_deriv : (3N, 6) Bohr³/Å, columns xx, xy, yy, xz, yz, zz.
    freq_scale : factor applied to the frequencies (not to the modes).

    Returns
    -------
    freq : (K,) scaled frequencies in cm⁻¹ (negative = imaginary).
    ir : (K,) IR intensities in km/mol.
    raman : (K,) Raman activities in Å⁴/amu.
    """
    n3 = 3 * len(np.asarray(masses_amu).reshape(-1))
    dd = np.asarray(dipole_deriv, dtype=np.float64)
    dp = np.asarray(polar_deriv, dtype=np.float64)
    if dd.shape != (n3, 3) or dp.shape != (n3, 6):
        raise ValueError(f"dipole_deriv {dd.shape} / polar_deriv {dp.shape}: expected ({n3}, 3/6)")
    freqs, modes = normal_modes_from_hessian(
        hessian_ev_A2, masses_amu, coords, linear_tol=linear_tol
    )
    return freqs * freq_scale, ir_intensities(dd, modes), raman_activities(dp, modes)


# ============================================================================ molecules


@dataclass
class Qm9sMolecule:
    """One QM9S molecule with what is needed to recompute its vibrational spectra.

    ``source`` names where it came from (``zip:member`` or ``qm9s.pt[i]``) for messages;
    ``qm9s_index`` is the QM9S number from the zip (1-based) or the pt list position.
    """

    source: str
    qm9s_index: int
    qm9_index: int | None
    smiles: str
    atomic_numbers: np.ndarray  # (N,)
    coords: np.ndarray  # (N, 3) Å
    dipole_deriv: np.ndarray  # (3N, 3) D/Å
    polar_deriv: np.ndarray  # (3N, 6) Bohr³/Å, xx xy yy xz yz zz
    hessian: np.ndarray  # (3N, 3N) eV/Å²
    hessian_complete: bool = True  # False: some atom pairs had no Hij block (pt route)


def _trim(row: list[str]) -> list[str]:
    """Strip cells and drop trailing empty ones (pandas pads short rows with empty cells)."""
    cells = [c.strip() for c in row]
    while cells and cells[-1] == "":
        cells.pop()
    return cells


def _atomic_number(value: float) -> int | None:
    """An atom-type cell: an atomic number, or else a standard atomic weight (±0.01 amu)."""
    if abs(value - round(value)) < 1e-6 and 1 <= round(value) <= 118:
        return int(round(value))
    table = Chem.GetPeriodicTable()
    for z in range(1, 55):
        if abs(table.GetAtomicWeight(z) - value) < 0.01:
            return z
    return None


def parse_molecule_csv(text: str, name: str) -> Qm9sMolecule:
    """Parse one per-molecule CSV of ``qm9s_csv.zip``. All layout-specific code lives here.

    Layout, from the README of the QM9S figshare record (lines 0-based; N atoms)::

        line 0          QM9S number, QM9 number, SMILES, N
        lines 1-9       energy (eV), NPA charges, dipole, quadrupole, octupole, polarizability,
                        first hyperpolarizability, 10 excitation energies, 10 transition dipoles
                        (not used here; only their presence is checked)
        lines 10..      N lines: atom type, x, y, z (Å)
        next N lines    dμ/dR (D/Å): 9 values per atom, the (3, 3) block
                        [displaced axis c][dipole component] flattened row by row
        next N lines    dα/dR (Bohr³/Å): 18 values per atom, the (3, 6) block
                        [displaced axis c][xx, xy, yy, xz, yz, zz] flattened row by row
        next 3N lines   Hessian (eV/Å²): 3N values each, coordinate 3a + c

    so a file has 10 + 6N lines. The files are pandas ``to_csv`` output (as public readers of
    the release show: ``pd.read_csv(header=None)`` then SMILES at ``[1, 3]``, atoms from row 11
    with the atomic number in column 1): a header row of column labels ``,0,1,…`` and a leading
    row-index column are recognised and removed (each also when alone), and short rows are
    padded with empty cells. The atom type is the atomic number (a standard atomic weight is
    also recognised). Any deviation raises :class:`DataError` naming ``name``, the line and the
    section. This function is the only place to change if the real files differ.
    """
    rows = list(csv.reader(io.StringIO(text)))
    line_nos = list(range(1, len(rows) + 1))  # 1-based file line numbers
    while rows and not _trim(rows[-1]):
        rows.pop()
        line_nos.pop()
    # pandas to_csv frame: a header of column labels 0…W−1 (preceded by an empty cell when an
    # index column follows) and/or an index column 0, 1, 2, … Line 0 starts with the QM9S
    # number (≥ 1), so a bare file is not mistaken for an indexed one.
    head = [c.strip() for c in rows[0]] if rows else []
    labels = [str(k) for k in range(len(head))]
    if len(head) > 4 and head[0] == "" and head[1:] == labels[:-1]:
        rows, line_nos, indexed = rows[1:], line_nos[1:], True
    elif len(head) > 4 and head == labels:
        rows, line_nos, indexed = rows[1:], line_nos[1:], False
    else:
        indexed = len(rows) > 1 and all(
            row and row[0].strip() in (str(k), f"{k}.0") for k, row in enumerate(rows)
        )
    if indexed:
        for k, row in enumerate(rows):
            if not row or row[0].strip() not in (str(k), f"{k}.0"):
                raise DataError(
                    f"{name}, line {line_nos[k]}: expected the row index {k} in column 0 "
                    "(pandas layout: header row, then an index column)"
                )
        rows = [row[1:] for row in rows]
    if not rows:
        raise DataError(f"{name}: empty file")

    first = _trim(rows[0])
    if len(first) < 4:
        raise DataError(
            f"{name}, line {line_nos[0]} (identity): expected QM9S number, QM9 number, SMILES, "
            f"number of atoms; got {first!r}"
        )
    try:
        numbers = [float(first[0]), float(first[1]), float(first[3])]
    except ValueError:
        raise DataError(
            f"{name}, line {line_nos[0]} (identity): QM9S number, QM9 number and number of atoms "
            f"must be numbers; got {first[:4]!r}"
        ) from None
    if any(v != round(v) for v in numbers) or numbers[2] < 1:
        raise DataError(f"{name}, line {line_nos[0]} (identity): non-integer counts {first[:4]!r}")
    qm9s_number, qm9_number, n = (int(v) for v in numbers)
    smiles = "" if first[2].lower() in ("", "nan", "none") else first[2]
    expected = 10 + 6 * n
    if len(rows) != expected:
        raise DataError(
            f"{name}: {len(rows)} data lines, expected 10 + 6·{n} = {expected} for the {n} atoms "
            "declared on line 0 (identity, 9 property lines, coordinates, dμ/dR, dα/dR, Hessian)"
        )

    def block(start: int, count: int, width: int, section: str) -> np.ndarray:
        out = np.empty((count, width))
        for k in range(count):
            cells = _trim(rows[start + k])
            where = f"{name}, line {line_nos[start + k]} ({section})"
            if len(cells) != width:
                raise DataError(f"{where}: {len(cells)} values, expected {width}")
            try:
                out[k] = [float(c) for c in cells]
            except ValueError:
                bad = next(c for c in cells if not _is_float(c))
                raise DataError(f"{where}: {bad!r} is not a number") from None
            if not np.all(np.isfinite(out[k])):
                raise DataError(f"{where}: NaN/Inf value")
        return out

    atoms = block(10, n, 4, "coordinates: atom type, x, y, z")
    z = np.empty(n, dtype=np.int64)
    for a in range(n):
        za = _atomic_number(atoms[a, 0])
        if za is None:
            raise DataError(
                f"{name}, line {line_nos[10 + a]} (coordinates): atom type {atoms[a, 0]:g} is "
                "neither an atomic number nor a standard atomic weight"
            )
        z[a] = za
    dd = block(10 + n, n, 9, "dipole derivatives, D/Å").reshape(3 * n, 3)
    dp = block(10 + 2 * n, n, 18, "polarizability derivatives, Bohr³/Å").reshape(3 * n, 6)
    hess = block(10 + 3 * n, 3 * n, 3 * n, "Hessian, eV/Å²")
    return Qm9sMolecule(
        source=name,
        qm9s_index=qm9s_number,
        qm9_index=qm9_number,
        smiles=smiles,
        atomic_numbers=z,
        coords=atoms[:, 1:4].copy(),
        dipole_deriv=dd,
        polar_deriv=dp,
        hessian=hess,
    )


def _is_float(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _zip_members(path: Path) -> list[str]:
    """Per-molecule CSV names of a zip (or files of an unzipped folder), sorted by name."""
    if path.is_dir():
        return sorted(p.name for p in path.iterdir() if p.suffix.lower() == ".csv")
    try:
        with zipfile.ZipFile(path) as zf:
            names = [
                i.filename
                for i in zf.infolist()
                if not i.is_dir()
                and i.filename.lower().endswith(".csv")
                and "__MACOSX" not in i.filename
                and not Path(i.filename).name.startswith("._")
            ]
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"{path}: not a readable zip file ({e})") from None
    return sorted(names)


def iter_zip_molecules(path: str | Path, limit: int | None = None) -> Iterator[Qm9sMolecule]:
    """Parse the molecules of ``qm9s_csv.zip`` (or of an unzipped folder), in file-name order."""
    path = Path(path)
    names = _zip_members(path)
    if not names:
        raise DataError(f"{path}: contains no per-molecule .csv files")
    names = names[:limit] if limit is not None else names
    zf = None if path.is_dir() else zipfile.ZipFile(path)
    try:
        for member in names:
            try:
                raw = (path / member).read_bytes() if zf is None else zf.read(member)
                text = raw.decode("utf-8-sig")
            except (UnicodeDecodeError, zipfile.BadZipFile, OSError) as e:
                raise DataError(f"{path}:{member}: unreadable ({e})") from None
            yield parse_molecule_csv(text, f"{path}:{member}")
    finally:
        if zf is not None:
            zf.close()


# ============================================================================ qm9s.pt


class _PygStandIn:
    """Stand-in for every torch_geometric class met while unpickling: keeps the state dict.

    torch_geometric ≥ 2 pickles ``Data`` as {"_store": GlobalStorage, "_edge_attr_cls": …} with
    the attributes in ``GlobalStorage._mapping``; torch_geometric 1.x keeps them in ``__dict__``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Reached only if a pickle rebuilds an object by calling its class (REDUCE); keep any
        # attribute mapping passed that way.
        for arg in args:
            if isinstance(arg, dict):
                self.__dict__.update(arg)
        self.__dict__.update(kwargs)

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            for part in state:
                if isinstance(part, dict):
                    self.__dict__.update(part)
        elif isinstance(state, dict):
            self.__dict__.update(state)

    def attributes(self) -> dict[str, Any]:
        store = self.__dict__.get("_store")
        mapping = getattr(store, "__dict__", {}).get("_mapping") if store is not None else None
        if isinstance(mapping, dict):
            return dict(mapping)
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


class _Qm9sUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "torch_geometric" or module.startswith("torch_geometric."):
            return _PygStandIn
        return super().find_class(module, name)


def _load(file: Any, **kwargs: Any) -> Any:
    return _Qm9sUnpickler(file, **kwargs).load()


# A "pickle module" for torch.load(pickle_module=...): torch subclasses its Unpickler.
_PICKLE_MODULE = types.ModuleType("spektron_qm9s_pickle")
_PICKLE_MODULE.Unpickler = _Qm9sUnpickler  # type: ignore[attr-defined]
_PICKLE_MODULE.load = _load  # type: ignore[attr-defined]
_PICKLE_MODULE.Pickler = pickle.Pickler  # type: ignore[attr-defined]
_PICKLE_MODULE.dump = pickle.dump  # type: ignore[attr-defined]


def _to_numpy(value: Any) -> Any:
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        return value.detach().cpu().numpy()
    return value


def load_qm9s_pt(
    path: str | Path, *, trust_pickle: bool = False, limit: int | None = None
) -> list[dict[str, Any]]:
    """Read ``qm9s.pt`` into a list of attribute dicts (tensors as NumPy arrays).

    The whole list is unpickled at once (~2.7 GB on disk): pickle cannot be streamed.

    Raises
    ------
    ConfigError : without ``trust_pickle=True`` (unpickling can execute code from the file).
    DataError : the file is missing or is not a list of ``Data`` objects.
    """
    path = Path(path)
    if not trust_pickle:
        raise ConfigError(
            f"{path}: qm9s.pt is a Python pickle; reading it needs "
            "torch.load(weights_only=False), which can run arbitrary code stored in the file. "
            "Pass trust_pickle=True only for a file from the QM9S figshare record "
            "(doi:10.6084/m9.figshare.24235333) or another source you trust."
        )
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    import torch  # heavy; only needed here

    try:
        obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_PICKLE_MODULE)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means an unusable file
        raise DataError(f"{path}: cannot be unpickled ({type(e).__name__}: {e})") from None
    if not isinstance(obj, (list, tuple)):
        raise DataError(f"{path}: expected a list of torch_geometric Data objects, got {type(obj)}")
    items = obj[:limit] if limit is not None else obj
    entries = []
    for i, item in enumerate(items):
        if not isinstance(item, _PygStandIn):
            raise DataError(f"{path}: entry {i} is a {type(item).__name__}, not a Data object")
        entries.append({k: _to_numpy(v) for k, v in item.attributes().items()})
    return entries


def assemble_hessian(hi: np.ndarray, hij: np.ndarray, edge_index: np.ndarray) -> np.ndarray:
    """Full (3N, 3N) Hessian from qm9s.pt's atomic (``Hi``) and pair (``Hij``) blocks.

    As DetaNet's ``hessfreq``: edge e = (i, j) puts ``hij[e]`` at rows of atom j and columns of
    atom i; ``hi[a]`` fills the diagonal blocks; the result is symmetrised. Pairs without an
    edge stay zero.
    """
    hi = np.asarray(hi, dtype=np.float64)
    hij = np.asarray(hij, dtype=np.float64)
    ei = np.asarray(edge_index, dtype=np.int64)
    n = len(hi)
    h = np.zeros((n, 3, n, 3))
    src, dst = ei
    h[dst, :, src, :] = hij  # (E, 3, 3)
    diag = np.arange(n)
    h[diag, :, diag, :] = hi
    h = h.reshape(3 * n, 3 * n)
    return 0.5 * (h + h.T)


def _entry_smiles(entry: dict[str, Any]) -> str:
    s = entry.get("smile", entry.get("smiles", ""))
    if isinstance(s, (list, tuple)) and len(s) == 1:
        s = s[0]
    return s if isinstance(s, str) else ""


def _entry_geometry(entry: dict[str, Any], where: str) -> tuple[np.ndarray, np.ndarray] | None:
    if "z" not in entry or "pos" not in entry:
        return None
    z = np.asarray(entry["z"]).reshape(-1).astype(np.int64)
    pos = np.asarray(entry["pos"], dtype=np.float64)
    if pos.shape != (len(z), 3):
        raise DataError(f"{where}: pos has shape {pos.shape}, expected ({len(z)}, 3)")
    return z, pos


def molecule_from_pt_entry(entry: dict[str, Any], position: int) -> Qm9sMolecule:
    """A :class:`Qm9sMolecule` from one ``qm9s.pt`` entry (Hessian assembled from Hi/Hij)."""
    where = f"qm9s.pt[{position}]"
    missing = [k for k in _PT_SPECTRA_FIELDS if k not in entry]
    if missing:
        raise DataError(f"{where}: missing field(s) {missing}; cannot recompute its spectra")
    z, pos = _entry_geometry(entry, where)  # type: ignore[misc]
    n = len(z)
    shapes = {
        "Hi": (n, 3, 3),
        "dedipole": (n, 3, 3),
        "depolar": (n, 3, 6),
    }
    arrays = {
        k: np.asarray(entry[k], dtype=np.float64) for k in ("Hi", "Hij", "dedipole", "depolar")
    }
    for k, shape in shapes.items():
        if arrays[k].shape != shape:
            raise DataError(f"{where}: {k} has shape {arrays[k].shape}, expected {shape}")
    ei = np.asarray(entry["edge_index"]).astype(np.int64)
    e = arrays["Hij"].shape[0]
    if arrays["Hij"].shape != (e, 3, 3) or ei.shape != (2, e):
        raise DataError(
            f"{where}: Hij {arrays['Hij'].shape} and edge_index {ei.shape} do not match (E, 3, 3) "
            "and (2, E)"
        )
    if e and (ei.min() < 0 or ei.max() >= n):
        raise DataError(f"{where}: edge_index refers to atoms outside 0..{n - 1}")
    pairs = {(int(a), int(b)) for a, b in ei.T if a != b}
    return Qm9sMolecule(
        source=where,
        qm9s_index=position,
        qm9_index=None,
        smiles=_entry_smiles(entry),
        atomic_numbers=z,
        coords=pos,
        dipole_deriv=arrays["dedipole"].reshape(3 * n, 3),
        polar_deriv=arrays["depolar"].reshape(3 * n, 6),
        hessian=assemble_hessian(arrays["Hi"], arrays["Hij"], ei),
        hessian_complete=len(pairs) == n * (n - 1),
    )


# ============================================================================ identity


def identity_from_smiles(smiles: str) -> tuple[str, np.ndarray]:
    """InChIKey and functional-group flags of a SMILES (("", empty) when RDKit cannot parse it).

    The flags follow ``spektron.chemistry.functional_groups.FUNCTIONAL_GROUP_NAMES``.
    """
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles) if smiles else None
        key = Chem.MolToInchiKey(mol) if mol is not None else ""
    if not key:
        return "", np.zeros(0, dtype=bool)
    return key, functional_group_flags(Chem.AddHs(mol))


def smiles_from_geometry(atomic_numbers: np.ndarray, coords: np.ndarray, charge: int = 0) -> str:
    """SMILES of a neutral geometry via RDKit's rdDetermineBonds ("" when it fails)."""
    table = Chem.GetPeriodicTable()
    lines = [str(len(atomic_numbers)), ""]
    lines += [
        f"{table.GetElementSymbol(int(a))} {x:.8f} {y:.8f} {zc:.8f}"
        for a, (x, y, zc) in zip(atomic_numbers, coords, strict=True)
    ]
    with rdBase.BlockLogs():
        mol = Chem.MolFromXYZBlock("\n".join(lines) + "\n")
        if mol is None:
            return ""
        try:
            rdDetermineBonds.DetermineBonds(mol, charge=charge)
        except (ValueError, RuntimeError):
            return ""
        return Chem.MolToSmiles(Chem.RemoveHs(mol))


class _IdentityStats:
    """Counts where SMILES came from and a few examples of failures (stored in attrs)."""

    def __init__(self) -> None:
        self.counts = {"from_source": 0, "from_geometry": 0, "missing": 0}
        self.failures: list[str] = []

    def resolve(
        self, smiles: str, z: np.ndarray | None, pos: np.ndarray | None, cfg: Qm9sConfig, where: str
    ) -> tuple[str, str, np.ndarray]:
        """(SMILES, InChIKey, functional-group flags); ("", "", empty) when unknown."""
        key, fg = identity_from_smiles(smiles)
        if key:
            self.counts["from_source"] += 1
            return smiles, key, fg
        reason = f"SMILES {smiles!r} does not parse" if smiles else "no SMILES in the source"
        if cfg.smiles_from_geometry and z is not None and pos is not None:
            geo = smiles_from_geometry(z, pos)
            key, fg = identity_from_smiles(geo)
            if key:
                self.counts["from_geometry"] += 1
                return geo, key, fg
            reason += "; bonds could not be determined from the geometry"
        self.counts["missing"] += 1
        if len(self.failures) < 20:
            self.failures.append(f"{where}: {reason}")
        return "", "", fg

    def as_attrs(self) -> dict[str, Any]:
        return {"smiles_sources": self.counts, "identity_failures": self.failures}


def _symmetry(z: np.ndarray, pos: np.ndarray, cfg: Qm9sConfig) -> tuple[int, str]:
    if not cfg.symmetry:
        return -1, ""
    pg = point_group(z, pos, cfg.symmetry_tol)
    return int(has_inversion_centre(z, pos, cfg.symmetry_tol)), ("" if pg == "unknown" else pg)


# ============================================================================ records


class _StickStats:
    def __init__(self) -> None:
        self.n_imaginary_modes = 0
        self.n_molecules_with_imaginary = 0
        self.n_incomplete_hessian = 0

    def as_attrs(self) -> dict[str, int]:
        return dict(vars(self))


def _molecule_record(
    mol: Qm9sMolecule,
    source_index: int,
    grid: np.ndarray,
    cfg: Qm9sConfig,
    ident: _IdentityStats,
    sticks: _StickStats,
) -> SpectrumRecord:
    masses = atomic_masses(mol.atomic_numbers, cfg.masses)
    freq, ir, raman = sticks_from_hessian(
        mol.hessian,
        masses,
        mol.coords,
        mol.dipole_deriv,
        mol.polar_deriv,
        freq_scale=cfg.freq_scale,
        linear_tol=cfg.linear_tol,
    )
    real = freq > 0  # imaginary modes are stored, not broadened
    n_imag = int((~real).sum())
    sticks.n_imaginary_modes += n_imag
    sticks.n_molecules_with_imaginary += int(n_imag > 0)
    sticks.n_incomplete_hessian += int(not mol.hessian_complete)
    smiles, key, fg = ident.resolve(mol.smiles, mol.atomic_numbers, mol.coords, cfg, mol.source)
    centro, pg = _symmetry(mol.atomic_numbers, mol.coords, cfg)
    return SpectrumRecord(
        smiles=smiles,
        inchikey=key,
        source_index=source_index,
        ir=lorentzian_broaden(freq[real], ir[real], grid, cfg.ir_fwhm),
        raman=lorentzian_broaden(freq[real], raman[real], grid, cfg.raman_fwhm),
        centrosymmetric=centro,
        point_group=pg,
        fg_flags=fg,
        stick_freq=freq,
        stick_ir=ir,
        stick_raman=raman,
        n_atoms=len(mol.atomic_numbers),
        charge_model="dft-derivatives",
        source="qm9s",
    )


# ============================================================================ wide CSVs


@dataclass
class WideChunk:
    """A block of rows of a wide CSV: ids, 1-based file line numbers, spectra on the model grid."""

    row_ids: np.ndarray  # (n,) int64
    line_numbers: np.ndarray  # (n,) int64
    spectra: np.ndarray  # (n, L) float64


class WideCsvReader:
    """Streaming reader of one QM9S wide CSV (``ir_boraden.csv`` / ``raman_boraden.csv``).

    Opening validates the header; :meth:`chunks` yields :class:`WideChunk` s of ``chunk_rows``
    rows resampled onto ``grid``. ``bytes_read`` tracks progress.
    """

    def __init__(self, path: str | Path, grid: np.ndarray) -> None:
        self.path = Path(path)
        self.grid = np.asarray(grid, dtype=np.float64)
        if not self.path.is_file():
            raise DataError(f"{self.path}: file not found")
        self.size = self.path.stat().st_size
        self.bytes_read = 0
        self.n_rows = 0
        with open(self.path, "rb") as fh:
            first = fh.readline()
        self.id_label, self.file_grid = self._parse_header(first)
        self.n_cols = 1 + len(self.file_grid)
        src, dst = self.file_grid, self.grid
        tol = 1e-6 * max(1.0, float(np.abs(dst).max()))
        if src[0] > dst[0] + tol or src[-1] < dst[-1] - tol:
            raise DataError(
                f"{self.path}: header grid {src[0]:g}–{src[-1]:g} cm⁻¹ does not cover the "
                f"requested grid {dst[0]:g}–{dst[-1]:g} cm⁻¹"
            )
        x = np.clip(dst, src[0], src[-1])
        self._j = np.clip(np.searchsorted(src, x, side="right") - 1, 0, len(src) - 2)
        self._w = (x - src[self._j]) / (src[self._j + 1] - src[self._j])  # (L,)

    def _parse_header(self, raw: bytes) -> tuple[str, np.ndarray]:
        try:
            text = raw.decode("utf-8-sig").rstrip("\r\n")
        except UnicodeDecodeError:
            raise DataError(f"{self.path}: header line is not UTF-8 text") from None
        cells = next(csv.reader([text]), [])
        if len(cells) < 3:
            raise DataError(
                f"{self.path}: header has {len(cells)} field(s); expected an id-column label "
                "followed by the wavenumbers (QM9S: 3501 columns, 500…4000 cm⁻¹)"
            )
        values = []
        for col, cell in enumerate(cells[1:], start=2):
            try:
                values.append(float(cell))
            except ValueError:
                raise DataError(
                    f"{self.path}: header column {col} is {cell!r}, not a wavenumber"
                ) from None
        grid = np.array(values)
        if not np.all(np.isfinite(grid)):
            raise DataError(f"{self.path}: header wavenumbers contain NaN/Inf")
        step = np.diff(grid)
        if np.any(step <= 0):
            k = int(np.flatnonzero(step <= 0)[0])
            raise DataError(
                f"{self.path}: header wavenumbers are not strictly increasing "
                f"(column {k + 2}: {grid[k]:g}, column {k + 3}: {grid[k + 1]:g})"
            )
        return cells[0].strip(), grid

    def _diagnose(self, lines: list[str], line_nos: list[int], fallback: str) -> DataError:
        for text, no in zip(lines, line_nos, strict=True):
            cells = text.split(",")
            if len(cells) != self.n_cols:
                hint = (
                    " (truncated row?)"
                    if len(cells) < self.n_cols
                    else " (does the header lack the id-column label?)"
                    if len(cells) == self.n_cols + 1
                    else ""
                )
                return DataError(
                    f"{self.path}, line {no}: {len(cells)} fields, but the header has "
                    f"{self.n_cols}{hint}"
                )
            for col, cell in enumerate(cells, start=1):
                if not _is_float(cell.strip().strip('"')):
                    return DataError(
                        f"{self.path}, line {no}, column {col}: {cell!r} is not a number"
                    )
        return DataError(f"{self.path}, lines {line_nos[0]}–{line_nos[-1]}: {fallback}")

    def _parse(self, lines: list[str], line_nos: list[int], prev_id: int) -> WideChunk:
        try:
            arr = np.loadtxt(
                lines, delimiter=",", dtype=np.float64, ndmin=2, comments=None, quotechar='"'
            )  # (n, 1 + M)
        except ValueError as e:
            raise self._diagnose(lines, line_nos, str(e)) from None
        if arr.shape[1] != self.n_cols:
            raise self._diagnose(lines, line_nos, f"{arr.shape[1]} columns")
        bad = ~np.isfinite(arr)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            what = "the row id" if c == 0 else f"{self.file_grid[c - 1]:g} cm⁻¹"
            raise DataError(
                f"{self.path}, line {line_nos[r]}, column {c + 1} ({what}): {arr[r, c]} (NaN/Inf)"
            )
        ids = arr[:, 0]
        not_int = (ids != np.round(ids)) | (ids < 0)
        if not_int.any():
            r = int(np.flatnonzero(not_int)[0])
            raise DataError(
                f"{self.path}, line {line_nos[r]}: row id {ids[r]:g} is not a non-negative integer"
            )
        ids = ids.astype(np.int64)
        seq = np.concatenate([[prev_id], ids])
        down = np.flatnonzero(np.diff(seq) <= 0)
        if down.size:
            r = int(down[0])
            raise DataError(
                f"{self.path}, line {line_nos[r]}: row id {ids[r]} after {seq[r]}; row ids must "
                "increase"
            )
        values = arr[:, 1:]  # (n, M)
        spectra = values[:, self._j] * (1.0 - self._w) + values[:, self._j + 1] * self._w  # (n, L)
        return WideChunk(ids, np.asarray(line_nos, dtype=np.int64), spectra)

    def chunks(self, chunk_rows: int = 256) -> Iterator[WideChunk]:
        """Yield the data rows in blocks of ``chunk_rows`` (the last block may be shorter)."""
        prev_id = -1
        lines: list[str] = []
        line_nos: list[int] = []
        with open(self.path, "rb") as fh:
            self.bytes_read = len(fh.readline())
            for no, raw in enumerate(fh, start=2):
                self.bytes_read += len(raw)
                try:
                    text = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError:
                    raise DataError(f"{self.path}, line {no}: not UTF-8 text") from None
                if not text.strip():
                    continue
                lines.append(text)
                line_nos.append(no)
                if len(lines) == chunk_rows:
                    chunk = self._parse(lines, line_nos, prev_id)
                    prev_id = int(chunk.row_ids[-1])
                    self.n_rows += len(lines)
                    lines, line_nos = [], []
                    yield chunk
            if lines:
                chunk = self._parse(lines, line_nos, prev_id)
                self.n_rows += len(lines)
                yield chunk


def iter_wide_csv(
    path: str | Path, grid: np.ndarray | None = None, chunk_rows: int = 256
) -> Iterator[WideChunk]:
    """Stream one wide CSV as :class:`WideChunk` s on ``grid`` (default: the model grid)."""
    yield from WideCsvReader(path, make_grid() if grid is None else grid).chunks(chunk_rows)


def _lockstep(readers: list[WideCsvReader], chunk_rows: int) -> Iterator[list[WideChunk]]:
    """Chunks of several wide CSVs side by side, with their row ids checked to agree."""
    its = [r.chunks(chunk_rows) for r in readers]
    while True:
        chunks = [next(it, None) for it in its]
        if all(c is None for c in chunks):
            return
        sizes = [0 if c is None else len(c.row_ids) for c in chunks]
        if len(set(sizes)) > 1:
            short = readers[int(np.argmin(sizes))]
            long = readers[int(np.argmax(sizes))]
            raise DataError(
                f"{short.path} ends after {short.n_rows} data rows but {long.path} has more; "
                "the IR and Raman files must list the same rows"
            )
        ref = chunks[0]
        for reader, c in zip(readers[1:], chunks[1:], strict=True):
            diff = np.flatnonzero(c.row_ids != ref.row_ids)
            if diff.size:
                k = int(diff[0])
                raise DataError(
                    f"row ids differ: {readers[0].path} line {ref.line_numbers[k]} has row id "
                    f"{ref.row_ids[k]}, {reader.path} line {c.line_numbers[k]} has row id "
                    f"{c.row_ids[k]}; the files must list the same molecules in the same order"
                )
        yield chunks  # type: ignore[misc]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(a @ b) / (na * nb) if na > 0 and nb > 0 else 0.0


class _PtIdentity:
    """Attach qm9s.pt identity to wide-CSV rows by position and check that the two line up."""

    def __init__(
        self, entries: list[dict[str, Any]], pt_path: Path, grid: np.ndarray, cfg: Qm9sConfig
    ) -> None:
        self.entries, self.pt_path, self.grid, self.cfg = entries, pt_path, grid, cfg
        self.ident = _IdentityStats()
        self.can_verify = bool(entries) and all(k in entries[0] for k in _PT_SPECTRA_FIELDS)
        self.checks: list[tuple[int, float, float]] = []  # (row id, cosine, best scale)
        self.skipped = 0

    def annotate(self, rec: SpectrumRecord, row_id: int, csv_path: Path, line: int) -> None:
        if row_id >= len(self.entries):
            raise DataError(
                f"{csv_path}, line {line}: row id {row_id} has no entry in {self.pt_path} "
                f"({len(self.entries)} entries); CSV row i must be list position i"
            )
        entry = self.entries[row_id]
        where = f"{self.pt_path.name}[{row_id}]"
        geo = _entry_geometry(entry, where)
        z, pos = geo if geo is not None else (None, None)
        rec.smiles, rec.inchikey, rec.fg_flags = self.ident.resolve(
            _entry_smiles(entry), z, pos, self.cfg, where
        )
        if z is not None:
            rec.n_atoms = len(z)
            rec.centrosymmetric, rec.point_group = _symmetry(z, pos, self.cfg)
        if self.cfg.verify_alignment and self.can_verify and row_id % self.cfg.verify_every == 0:
            self._verify(rec, row_id, entry, csv_path)

    def _verify(self, rec: SpectrumRecord, row_id: int, entry: dict, csv_path: Path) -> None:
        kind, fwhm = (
            ("ir", self.cfg.ir_fwhm) if rec.ir is not None else ("raman", self.cfg.raman_fwhm)
        )
        try:
            mol = molecule_from_pt_entry(entry, row_id)
            masses = atomic_masses(mol.atomic_numbers, self.cfg.masses)
            freq, ir, raman = sticks_from_hessian(
                mol.hessian,
                masses,
                mol.coords,
                mol.dipole_deriv,
                mol.polar_deriv,
                freq_scale=1.0,
                linear_tol=self.cfg.linear_tol,
            )
        except (DataError, ValueError, np.linalg.LinAlgError):
            self.skipped += 1
            return
        strength = ir if kind == "ir" else raman
        target = getattr(rec, kind)
        best = (-1.0, 1.0)
        # The release does not say whether its broadened spectra used scaled frequencies.
        for scale in (self.cfg.freq_scale, 1.0):
            f = freq * scale
            ours = lorentzian_broaden(f[f > 0], strength[f > 0], self.grid, fwhm)
            best = max(best, (_cosine(ours, target), scale))
        self.checks.append((row_id, *best))
        n = len(self.checks)
        if n >= 5:
            self._judge(csv_path)

    def _judge(self, csv_path: Path) -> None:
        thr = self.cfg.verify_min_cosine
        failed = [(r, c) for r, c, _ in self.checks if c < thr]
        if self.checks and len(failed) > len(self.checks) / 2:
            examples = ", ".join(f"row {r}: {c:.2f}" for r, c in failed[:5])
            raise DataError(
                f"{self.pt_path} does not line up with {csv_path}: for {len(failed)} of "
                f"{len(self.checks)} checked rows the spectrum recomputed from the qm9s.pt entry "
                f"at that position differs from the CSV row (cosine < {thr}; {examples}). "
                "CSV row i must be list position i; the files may come from different releases. "
                "Set Qm9sConfig.verify_alignment=False to attach the identities anyway."
            )

    def finish(self, csv_path: Path) -> dict[str, Any]:
        self._judge(csv_path)
        cos = [c for _, c, _ in self.checks]
        scales = [s for _, _, s in self.checks]
        check = {
            "enabled": bool(self.cfg.verify_alignment and self.can_verify),
            "checked": len(self.checks),
            "skipped": self.skipped,
            "failed": sum(c < self.cfg.verify_min_cosine for c in cos),
            "median_cosine": float(np.median(cos)) if cos else None,
            "best_scale_counts": {str(s): scales.count(s) for s in sorted(set(scales))},
        }
        if not self.can_verify:
            check["note"] = f"qm9s.pt lacks {list(_PT_SPECTRA_FIELDS)}: alignment not checked"
        return {**self.ident.as_attrs(), "alignment_check": check}


# ============================================================================ conversion


def _resolve_grid(grid: np.ndarray | GridConfig | None) -> np.ndarray:
    if grid is None:
        return make_grid()
    if isinstance(grid, GridConfig):
        return make_grid(grid.n_points, grid.lo, grid.hi)
    g = np.asarray(grid, dtype=np.float64)
    if g.ndim != 1 or len(g) < 2 or not np.all(np.isfinite(g)) or np.any(np.diff(g) <= 0):
        raise ConfigError("grid must be a finite, strictly increasing 1-D array of ≥ 2 points")
    return g


def _input_info(path: Path) -> dict[str, Any]:
    if path.is_dir():
        files = [p for p in path.iterdir() if p.suffix.lower() == ".csv"]
        return {
            "name": path.name,
            "n_files": len(files),
            "size_bytes": sum(p.stat().st_size for p in files),
        }
    return {"name": path.name, "size_bytes": path.stat().st_size}


def convert_qm9s(
    out: str | Path,
    *,
    ir_csv: str | Path | None = None,
    raman_csv: str | Path | None = None,
    zip_path: str | Path | None = None,
    pt_path: str | Path | None = None,
    trust_pickle: bool = False,
    grid: np.ndarray | GridConfig | None = None,
    chunk_rows: int = 256,
    limit: int | None = None,
    progress: bool = True,
    config: Qm9sConfig | None = None,
) -> Path:
    """Convert real QM9S files into one spectral store at ``out``; returns ``out``.

    Routes, picked from what is given:

    - ``ir_csv`` and/or ``raman_csv`` (+ optional ``pt_path``): broadened spectra as
      distributed, resampled onto ``grid``; identity (SMILES, InChIKey, symmetry) from
      ``qm9s.pt`` by list position when given (checked against recomputed spectra), else empty.
    - ``zip_path``: spectra and sticks recomputed from each molecule's Hessian and derivatives.
    - ``pt_path`` alone: the same, from the Hessian blocks and derivatives in ``qm9s.pt``.

    ``limit`` converts only the first rows / molecules; ``chunk_rows`` is the streaming block
    size of the wide CSVs. The store is written atomically: on any error nothing is left at
    ``out``.
    """
    cfg = config or Qm9sConfig()
    g = _resolve_grid(grid)
    out = Path(out)
    if chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be >= 1, got {chunk_rows}")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be >= 1 (or None), got {limit}")
    paths = {
        k: Path(v)
        for k, v in {
            "ir_csv": ir_csv,
            "raman_csv": raman_csv,
            "zip": zip_path,
            "pt": pt_path,
        }.items()
        if v is not None
    }
    wide = "ir_csv" in paths or "raman_csv" in paths
    if wide and "zip" in paths:
        raise ConfigError("give either the wide CSVs or qm9s_csv.zip, not both (one store each)")
    if "zip" in paths and "pt" in paths:
        raise ConfigError(
            "qm9s_csv.zip already carries identity, geometry, Hessian and derivatives; convert "
            "it without qm9s.pt (or convert qm9s.pt on its own)"
        )
    if not paths:
        raise ConfigError("nothing to convert: give ir_csv/raman_csv, zip_path or pt_path")
    for p in paths.values():
        if not p.exists():
            raise DataError(f"{p}: file not found")
    route = "csv" if wide else "zip" if "zip" in paths else "pt"
    if "pt" in paths and not trust_pickle:
        load_qm9s_pt(paths["pt"], trust_pickle=False)  # raises, explaining why

    inputs = {k: _input_info(p) for k, p in paths.items()}
    settings = {
        "converter": "spektron.data.qm9s.convert_qm9s",
        "route": route,
        **asdict(cfg),
        "grid": {"n_points": len(g), "lo": float(g[0]), "hi": float(g[-1])},
        "inputs": inputs,
        "limit": limit,
    }
    attrs: dict[str, Any] = {
        "source": f"qm9s-{route}",
        "simulated": False,
        "data_kind": f"DFT-computed ({QM9S_LEVEL_OF_THEORY}, QM9S), not measured",
        "reference": QM9S_REFERENCE,
        "converter": settings["converter"],
        "config": settings,
    }
    logger.info("converting QM9S (%s route) from %s into %s", route, inputs, out)
    with single_threaded_blas():
        return _convert(out, route, paths, trust_pickle, g, cfg, chunk_rows, limit, progress, attrs)


def _convert(
    out: Path,
    route: str,
    paths: dict[str, Path],
    trust_pickle: bool,
    g: np.ndarray,
    cfg: Qm9sConfig,
    chunk_rows: int,
    limit: int | None,
    progress: bool,
    attrs: dict[str, Any],
) -> Path:
    if route == "csv":
        attrs["spectra"] = (
            "QM9S broadened spectra as distributed (absolute scale undocumented: stored as given, "
            "normalise per spectrum downstream), linearly resampled from the file grid"
        )
        attrs["identity"] = "qm9s.pt by list position" if "pt" in paths else "none"
        return _convert_wide(out, paths, trust_pickle, g, cfg, chunk_rows, limit, progress, attrs)
    attrs["spectra"] = (
        f"recomputed from the Hessian and dipole/polarizability derivatives; frequencies × "
        f"{cfg.freq_scale}; height-normalised Lorentzians, FWHM {cfg.ir_fwhm} (IR) / "
        f"{cfg.raman_fwhm} (Raman) cm⁻¹; IR km/mol, Raman activity Å⁴/amu"
    )
    if route == "zip":
        source = iter_zip_molecules(paths["zip"], limit)
        total = len(_zip_members(paths["zip"]))
        offset = cfg.zip_index_base  # QM9S numbers → row ids of the wide CSVs
    else:
        items = load_qm9s_pt(paths["pt"], trust_pickle=trust_pickle, limit=limit)
        source = (molecule_from_pt_entry(e, i) for i, e in enumerate(items))
        total = len(items)
        offset = 0
    total = min(total, limit) if limit is not None else total
    ident, sticks = _IdentityStats(), _StickStats()
    n = 0
    with StoreWriter(out, g, attrs=attrs, fg_names=FUNCTIONAL_GROUP_NAMES) as w:
        for mol in tqdm(source, total=total, disable=not progress, desc=f"qm9s {route}"):
            w.append(_molecule_record(mol, mol.qm9s_index - offset, g, cfg, ident, sticks))
            n += 1
        w.attrs.update({**ident.as_attrs(), **sticks.as_attrs(), "n_molecules": n})
    return out


def _convert_wide(
    out: Path,
    paths: dict[str, Path],
    trust_pickle: bool,
    grid: np.ndarray,
    cfg: Qm9sConfig,
    chunk_rows: int,
    limit: int | None,
    progress: bool,
    attrs: dict[str, Any],
) -> Path:
    kinds = [k for k in ("ir_csv", "raman_csv") if k in paths]
    readers = [WideCsvReader(paths[k], grid) for k in kinds]  # headers checked before the pt
    ident = None
    if "pt" in paths:
        entries = load_qm9s_pt(paths["pt"], trust_pickle=trust_pickle)
        ident = _PtIdentity(entries, paths["pt"], grid, cfg)
    n = 0
    with (
        StoreWriter(out, grid, attrs=attrs, fg_names=FUNCTIONAL_GROUP_NAMES) as w,
        tqdm(
            total=readers[0].size, disable=not progress, unit="B", unit_scale=True, desc="qm9s csv"
        ) as bar,
    ):
        for chunks in _lockstep(readers, chunk_rows):
            ref = chunks[0]
            take = len(ref.row_ids) if limit is None else min(len(ref.row_ids), limit - n)
            for r in range(take):
                spectra = {k: c.spectra[r] for k, c in zip(kinds, chunks, strict=True)}
                row_id = int(ref.row_ids[r])
                rec = SpectrumRecord(
                    smiles="",
                    inchikey="",
                    source_index=row_id,
                    ir=spectra.get("ir_csv"),
                    raman=spectra.get("raman_csv"),
                    source="qm9s",
                )
                if ident is not None:
                    ident.annotate(rec, row_id, readers[0].path, int(ref.line_numbers[r]))
                w.append(rec)
            n += take
            bar.update(readers[0].bytes_read - bar.n)
            if limit is not None and n >= limit:
                break
        if n == 0:
            raise DataError(f"{readers[0].path}: no data rows after the header")
        w.attrs["n_rows"] = n
        w.attrs["file_grids"] = {
            k: {
                "n_points": len(r.file_grid),
                "lo": float(r.file_grid[0]),
                "hi": float(r.file_grid[-1]),
            }
            for k, r in zip(kinds, readers, strict=True)
        }
        if ident is not None:
            w.attrs.update(ident.finish(readers[0].path))
            if n < len(ident.entries) and limit is None:
                w.attrs["pt_entries_without_row"] = len(ident.entries) - n
    return out


__all__ = [
    "HESSIAN_TO_CM",
    "IR_TO_KM_MOL",
    "RAMAN_BOHR6_TO_A4",
    "Qm9sConfig",
    "Qm9sMolecule",
    "WideChunk",
    "WideCsvReader",
    "assemble_hessian",
    "atomic_masses",
    "convert_qm9s",
    "identity_from_smiles",
    "ir_intensities",
    "iter_wide_csv",
    "iter_zip_molecules",
    "load_qm9s_pt",
    "molecule_from_pt_entry",
    "normal_modes_from_hessian",
    "parse_molecule_csv",
    "raman_activities",
    "smiles_from_geometry",
    "sticks_from_hessian",
]
