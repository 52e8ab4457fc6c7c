"""How close each simulation level comes to DFT: ``spektron data validate``.

The reference is the committed B3LYP/def2-SVP set (``reference/b3lyp_def2svp``, computed with
PySCF by ``scripts/dft_reference/compute_reference.py``): for the smallest QM9 molecules its
harmonic frequencies, mass-weighted normal modes, IR intensities (km/mol) and Raman activities
(Å⁴/amu), all from the same re-optimised geometry. Its basis differs from QM9's
6-31G(2df,p), so the ``hybrid`` levels, which carry QM9's own B3LYP frequencies, are not compared
with their own numbers.

Every level simulates each reference molecule from its QM9 row (same atoms, same order), and per
molecule and level we compute (IR and Raman alike):

- **full-spectrum cosine**: both stick spectra broadened identically (the simulator's Lorentzian
  widths, on the model grid) and compared by cosine. Frequency convention: the reference
  frequencies are multiplied by ``ref_freq_scale`` (default ``physics.dft_freq_scale`` = 0.965,
  the factor the hybrid levels apply to QM9's B3LYP frequencies, so that scaled B3LYP meets
  scaled B3LYP); the levels keep their own frequencies. The cosine with the unscaled reference
  is reported too.
- **mode matching**: the level's geometry is rotated onto the reference geometry (mass-weighted
  Kabsch, same atom order) with its mode vectors, and modes are paired one-to-one by the
  Hungarian assignment that maximises Σ |⟨l_ref, l_level⟩|² of mass-weighted eigenvectors
  ("overlap"; against a degenerate reference block its whole subspace counts, so neither side's
  choice of basis inside a degenerate pair matters, nor the undetermined rotation of a linear
  molecule about its axis). The other pairing is plain sorted order (k-th lowest with k-th
  lowest), which is what the hybrid levels do when they swap frequencies.
- **frequency ceiling**: the full-spectrum cosine the level would reach with the reference's
  intensities on its own frequencies (sorted pairs): how high its frequencies let it go.
- **frequency MAE** (cm⁻¹) over the pairs, against the scaled reference.
- **intensity-only cosine**: each level mode's intensity is placed at the (scaled) frequency of
  its paired reference mode, both stick sets broadened identically and compared by cosine;
  frequency errors are thereby removed and only the intensity pattern is scored. Degenerate
  partners sit at the same frequency, so how a degenerate block is split does not matter.
  Unpaired reference modes count with zero level intensity.
- **band-integrated intensity**: the stick intensity summed per spectral window (``WINDOWS``),
  each spectrum at its own frequencies; the cosine of the window vectors, and the pooled
  level/reference ratio per window (absolute intensity scale).
- **seconds per molecule**: wall and CPU time of the level's ``simulate_molecule`` call.
- **mutual exclusion**, on the molecules the level finds centrosymmetric:
  Σ_k min(IR_k/ΣIR, Raman_k/ΣRaman), 0 when no mode is both IR- and Raman-active; with
  ``check_mutual_exclusion`` also on every centrosymmetric molecule of QM9 (85).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from spektron.chemistry.spectra import lorentzian_broaden, make_grid
from spektron.chemistry.vibrations import kabsch_rotation
from spektron.config import PHYSICS_LEVELS, GridConfig, PhysicsConfig
from spektron.errors import ConfigError, DataError, SpektronError

log = logging.getLogger(__name__)

REFERENCE_DIR = Path(__file__).resolve().parent / "reference" / "b3lyp_def2svp"
REFERENCE_FORMAT = "spektron-dft-reference"
REFERENCE_INDEX_FORMAT = "spektron-dft-reference-index"
SUPPORTED_FORMAT_VERSIONS = (1,)
# Spectral windows (cm⁻¹) of the band-integrated comparison: skeletal/bending, fingerprint,
# double bonds and NH/OH bends, triple and cumulated bonds, C–H stretches, O–H/N–H stretches
# (upper edge inclusive).
WINDOWS: tuple[tuple[float, float], ...] = (
    (500.0, 1000.0),
    (1000.0, 1500.0),
    (1500.0, 1900.0),
    (1900.0, 2600.0),
    (2600.0, 3200.0),
    (3200.0, 4000.0),
)
# Mutual exclusion "holds" for a molecule when this little of the normalised IR and Raman
# intensity is shared by the same modes.
EXCLUSION_TOL = 1e-3
# Reference modes closer than this (cm⁻¹) form a degenerate block for the overlap pairing (the
# reference's degenerate partners agree to < 0.1 cm⁻¹; as physics.degeneracy_tol_cm).
DEGENERACY_TOL_CM = 1.0
# Inversion-centre tolerance (Å) on QM9's DFT geometries (as the reference-set selection).
CENTRO_TOL_ANG = 0.05
_REQUIRED = {
    "qm9_index": (),
    "elements": None,
    "masses_amu": None,
    "coords_angstrom": None,
    "frequencies_cm": None,
    "normal_modes_mass_weighted": None,
    "ir_intensities_km_mol": None,
    "raman_activities_A4_amu": None,
}
VALIDATION_FORMAT_VERSION = 1


@dataclass
class ReferenceMolecule:
    """One reference molecule (arrays in the simulator's conventions).

    ``l_mw`` is (3N, K), coordinate 3a + c = atom a, axis c, orthonormal columns."""

    qm9_index: int
    smiles: str
    elements: list[str]
    masses: np.ndarray  # (N,) amu
    coords: np.ndarray  # (N, 3) Å
    freqs: np.ndarray  # (K,) cm⁻¹ ascending
    l_mw: np.ndarray  # (3N, K)
    ir: np.ndarray  # (K,) km/mol
    raman: np.ndarray  # (K,) Å⁴/amu
    flagged: bool = False


# ----------------------------------------------------------------------------- reference set


def _array(d: dict, key: str, path: Path, shape: tuple[int, ...]) -> np.ndarray:
    try:
        a = np.asarray(d[key], dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: {key!r} is not numeric ({e})") from e
    if a.shape != shape:
        raise DataError(f"{path}: {key!r} has shape {a.shape}, expected {shape}")
    if not np.all(np.isfinite(a)):
        raise DataError(f"{path}: {key!r} has NaN or Inf values")
    return a


def _read_json(path: Path, fmt: str, missing: str) -> dict[str, Any]:
    """A JSON object of format ``fmt``; DataError (``missing`` + path when absent) otherwise."""
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise DataError(f"{missing}: {path}") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not a readable JSON file ({e})") from e
    if not isinstance(d, dict) or d.get("format") != fmt:
        raise DataError(f"{path}: not a {fmt} file")
    return d


def read_reference_molecule(path: str | Path) -> ReferenceMolecule:
    """Read and check one reference JSON (``qm9_<index>.json``).

    Raises ``DataError`` naming the file and the problem (missing key, wrong shape, NaN/Inf,
    unsupported format, modes that are not orthonormal)."""
    path = Path(path)
    d = _read_json(path, REFERENCE_FORMAT, "reference file not found")
    if d.get("format_version") not in SUPPORTED_FORMAT_VERSIONS:
        raise DataError(
            f"{path}: format_version {d.get('format_version')!r} is not supported "
            f"({SUPPORTED_FORMAT_VERSIONS})"
        )
    missing = [k for k in _REQUIRED if k not in d]
    if missing:
        raise DataError(f"{path}: missing keys {missing}")
    elements = d["elements"]
    if not isinstance(elements, list) or not all(isinstance(e, str) for e in elements):
        raise DataError(f"{path}: 'elements' must be a list of symbols")
    n = len(elements)
    try:
        k = np.asarray(d["frequencies_cm"], dtype=np.float64).size
        qm9_index = d["qm9_index"]
        if isinstance(qm9_index, bool) or int(qm9_index) != qm9_index:
            raise ValueError(f"qm9_index {qm9_index!r} is not an integer")
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: {e}") from e
    if n < 2 or k < 1 or k > 3 * n:
        raise DataError(f"{path}: {k} modes for {n} atoms")
    freqs = _array(d, "frequencies_cm", path, (k,))
    modes = _array(d, "normal_modes_mass_weighted", path, (k, n, 3))
    l_mw = modes.reshape(k, 3 * n).T
    masses = _array(d, "masses_amu", path, (n,))
    if np.any(masses <= 0):
        raise DataError(f"{path}: 'masses_amu' must be > 0")
    gram = l_mw.T @ l_mw
    if np.abs(gram - np.eye(k)).max() > 1e-4:
        raise DataError(f"{path}: 'normal_modes_mass_weighted' are not orthonormal")
    return ReferenceMolecule(
        qm9_index=int(qm9_index),
        smiles=str(d.get("smiles", "")),
        elements=list(elements),
        masses=masses,
        coords=_array(d, "coords_angstrom", path, (n, 3)),
        freqs=freqs,
        l_mw=l_mw,
        ir=_array(d, "ir_intensities_km_mol", path, (k,)),
        raman=_array(d, "raman_activities_A4_amu", path, (k,)),
        flagged=bool(d.get("flagged", False)),
    )


def load_reference(
    folder: str | Path = REFERENCE_DIR, only: Sequence[int] | None = None
) -> tuple[list[ReferenceMolecule], dict[str, Any]]:
    """The reference molecules of ``folder`` (all listed in its ``index.json``, or ``only``
    these QM9 indices) and the index's description (level, settings, versions)."""
    folder = Path(folder)
    ipath = folder / "index.json"
    index = _read_json(ipath, REFERENCE_INDEX_FORMAT, "no reference index (scripts/dft_reference)")
    done = index.get("molecules", [])
    try:
        available = sorted({int(m["qm9_index"]) for m in done})
    except (TypeError, ValueError, KeyError) as e:
        raise DataError(f"{ipath}: 'molecules' must list entries with a qm9_index ({e})") from e
    if only is not None:
        missing = sorted(set(only) - set(available))
        if missing:
            raise ConfigError(
                f"QM9 indices {missing} are not in the reference set {folder} "
                f"(available: {available})"
            )
        wanted = list(dict.fromkeys(int(i) for i in only))
    else:
        wanted = available
    if not wanted:
        raise DataError(f"{ipath}: the reference set lists no molecules")
    mols = [read_reference_molecule(folder / f"qm9_{i}.json") for i in wanted]
    for i, m in zip(wanted, mols, strict=True):
        if m.qm9_index != i:
            raise DataError(f"{folder / f'qm9_{i}.json'}: holds QM9 index {m.qm9_index}")
    meta = {k: index.get(k) for k in ("level", "format_version", "method_version", "settings")}
    return mols, meta


# ----------------------------------------------------------------------------- metrics


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors; NaN when either is all zero."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return float("nan")
    return float(a @ b / (na * nb))


def broaden_sticks(
    freqs: np.ndarray, strengths: np.ndarray, grid: np.ndarray, fwhm: float
) -> np.ndarray:
    """Sticks at positive frequency broadened as the simulator broadens them."""
    freqs = np.asarray(freqs, dtype=np.float64)
    keep = freqs > 0
    return lorentzian_broaden(freqs[keep], np.asarray(strengths)[keep], grid, fwhm)


def rotate_modes(l_mw: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """(3N, K) mode vectors rotated atom by atom: v_a → R v_a."""
    k = l_mw.shape[1]
    v = l_mw.T.reshape(k, -1, 3)  # (K, N, 3)
    return (v @ rot.T).reshape(k, -1).T


def degenerate_blocks(freqs: np.ndarray, tol: float = DEGENERACY_TOL_CM) -> np.ndarray:
    """(K,) block label per mode: sorted neighbours closer than ``tol`` cm⁻¹ share a block."""
    order = np.argsort(freqs, kind="stable")
    labels = np.empty(len(freqs), dtype=np.int64)
    labels[order] = np.concatenate([[0], np.cumsum(np.diff(freqs[order]) >= tol)])
    return labels


def match_by_overlap(
    l_ref: np.ndarray, l_lvl: np.ndarray, ref_freqs: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one pairs (ref index, level index) maximising the summed squared overlap
    (Hungarian); as many pairs as the smaller mode count. Returns the pairs and their scores.

    Degenerate reference modes (``ref_freqs`` given) are an arbitrary basis of their block, so a
    level mode is scored by its squared projection on the whole block, Σ_{r′∈B(r)} ⟨l_r′, l⟩²:
    the pairing and the score do not depend on how either side oriented a degenerate pair."""
    o2 = (l_ref.T @ l_lvl) ** 2  # (Kr, Kl)
    if ref_freqs is not None:
        blocks = degenerate_blocks(np.asarray(ref_freqs, dtype=np.float64))
        summed = np.zeros((blocks.max() + 1, o2.shape[1]))
        np.add.at(summed, blocks, o2)
        o2 = summed[blocks]
    r, c = linear_sum_assignment(o2, maximize=True)
    return np.stack([r, c], axis=1), o2[r, c]


def match_sorted(f_ref: np.ndarray, f_lvl: np.ndarray) -> np.ndarray:
    """Pairs of the k-th lowest reference and k-th lowest level mode (shorter list's length)."""
    n = min(len(f_ref), len(f_lvl))
    return np.stack(
        [np.argsort(f_ref, kind="stable")[:n], np.argsort(f_lvl, kind="stable")[:n]], axis=1
    )


def intensity_only_cosine(
    ref_freqs: np.ndarray,
    ref_int: np.ndarray,
    lvl_int: np.ndarray,
    pairs: np.ndarray,
    grid: np.ndarray,
    fwhm: float,
) -> float:
    """Cosine of the reference spectrum and the level's intensities placed at the frequencies of
    their paired reference modes, both broadened identically (unpaired reference modes get 0)."""
    moved = np.zeros_like(ref_int, dtype=np.float64)
    moved[pairs[:, 0]] = np.asarray(lvl_int, dtype=np.float64)[pairs[:, 1]]
    return cosine(
        broaden_sticks(ref_freqs, ref_int, grid, fwhm), broaden_sticks(ref_freqs, moved, grid, fwhm)
    )


def window_integrals(
    freqs: np.ndarray, strengths: np.ndarray, windows: Sequence[tuple[float, float]] = WINDOWS
) -> np.ndarray:
    """(W,) summed stick strength per window [lo, hi) (the last window includes hi)."""
    freqs = np.asarray(freqs, dtype=np.float64)
    strengths = np.asarray(strengths, dtype=np.float64)
    out = np.zeros(len(windows))
    for w, (lo, hi) in enumerate(windows):
        upper = freqs <= hi if w == len(windows) - 1 else freqs < hi
        out[w] = strengths[(freqs >= lo) & upper].sum()
    return out


def exclusion_overlap(ir: np.ndarray, raman: np.ndarray) -> float:
    """Σ_k min(IR_k/ΣIR, Raman_k/ΣRaman) ∈ [0, 1]: 0 when no mode is active in both."""
    ir = np.clip(np.asarray(ir, dtype=np.float64), 0, None)
    raman = np.clip(np.asarray(raman, dtype=np.float64), 0, None)
    if ir.sum() <= 0 or raman.sum() <= 0:
        return 0.0
    return float(np.minimum(ir / ir.sum(), raman / raman.sum()).sum())


@dataclass
class LevelResult:
    """A level's sticks and modes for one molecule (modes in the order of the sticks)."""

    freqs: np.ndarray  # (K,)
    l_mw: np.ndarray  # (3N, K)
    coords: np.ndarray  # (N, 3)
    ir: np.ndarray  # (K,)
    raman: np.ndarray  # (K,)
    centrosymmetric: bool = False


def compare(
    ref: ReferenceMolecule,
    lvl: LevelResult,
    grid: np.ndarray,
    ir_fwhm: float,
    raman_fwhm: float,
    ref_freq_scale: float,
) -> dict[str, Any]:
    """Every per-molecule metric of the module docstring (a flat dict of floats)."""
    if lvl.coords.shape != ref.coords.shape:
        raise ValueError(f"level has {len(lvl.coords)} atoms, the reference {len(ref.coords)}")
    f_ref = ref.freqs * ref_freq_scale
    rot = kabsch_rotation(lvl.coords, ref.coords, ref.masses)
    pairs_ov, o2 = match_by_overlap(ref.l_mw, rotate_modes(lvl.l_mw, rot), ref.freqs)
    pairs_so = match_sorted(f_ref, lvl.freqs)
    out: dict[str, Any] = {
        "n_modes_ref": int(len(ref.freqs)),
        "n_modes_level": int(len(lvl.freqs)),
        "mean_sq_overlap": float(o2.mean()),
        "freq_mae_overlap": float(np.abs(f_ref[pairs_ov[:, 0]] - lvl.freqs[pairs_ov[:, 1]]).mean()),
        "freq_mae_sorted": float(np.abs(f_ref[pairs_so[:, 0]] - lvl.freqs[pairs_so[:, 1]]).mean()),
    }
    for kind, fwhm, r_int, l_int in (
        ("ir", ir_fwhm, ref.ir, lvl.ir),
        ("raman", raman_fwhm, ref.raman, lvl.raman),
    ):
        lvl_spec = broaden_sticks(lvl.freqs, l_int, grid, fwhm)
        out[f"{kind}_cosine"] = cosine(broaden_sticks(f_ref, r_int, grid, fwhm), lvl_spec)
        out[f"{kind}_cosine_ref_unscaled"] = cosine(
            broaden_sticks(ref.freqs, r_int, grid, fwhm), lvl_spec
        )
        # What perfect intensities would score with the level's frequencies (sorted pairs).
        moved = np.zeros_like(lvl.freqs)
        moved[pairs_so[:, 1]] = r_int[pairs_so[:, 0]]
        out[f"{kind}_cosine_freq_ceiling"] = cosine(
            broaden_sticks(f_ref, r_int, grid, fwhm), broaden_sticks(lvl.freqs, moved, grid, fwhm)
        )
        for name, pairs in (("overlap", pairs_ov), ("sorted", pairs_so)):
            out[f"{kind}_intensity_{name}"] = intensity_only_cosine(
                f_ref, r_int, l_int, pairs, grid, fwhm
            )
        w_ref = window_integrals(f_ref, r_int)
        w_lvl = window_integrals(lvl.freqs, l_int)
        out[f"{kind}_window_cosine"] = cosine(w_ref, w_lvl)
        out[f"{kind}_window_ref"] = w_ref.tolist()
        out[f"{kind}_window_level"] = w_lvl.tolist()
    if lvl.centrosymmetric:
        out["exclusion_overlap"] = exclusion_overlap(lvl.ir, lvl.raman)
    return out


# ----------------------------------------------------------------------------- driver

# Per-molecule metrics summarised per level (mean, median, min, max over molecules).
SUMMARY_METRICS = (
    "ir_cosine",
    "raman_cosine",
    "ir_cosine_ref_unscaled",
    "raman_cosine_ref_unscaled",
    "ir_cosine_freq_ceiling",
    "raman_cosine_freq_ceiling",
    "freq_mae_overlap",
    "freq_mae_sorted",
    "mean_sq_overlap",
    "ir_intensity_overlap",
    "ir_intensity_sorted",
    "raman_intensity_overlap",
    "raman_intensity_sorted",
    "ir_window_cosine",
    "raman_window_cosine",
    "seconds_wall",
    "seconds_cpu",
)


def _stats(values: list[float]) -> dict[str, float] | None:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)])
    if v.size == 0:
        return None
    return {
        "mean": float(v.mean()),
        "median": float(np.median(v)),
        "min": float(v.min()),
        "max": float(v.max()),
        "n": int(v.size),
    }


def simulate_level(inp: Any, physics: PhysicsConfig, grid: np.ndarray) -> tuple[LevelResult, dict]:
    """Simulate one QM9 molecule at ``physics.level``; the result and its wall/CPU seconds."""
    from spektron.chemistry.simulate import simulate_molecule

    details: dict[str, Any] = {}
    t0, c0 = time.perf_counter(), time.process_time()
    rec = simulate_molecule(inp, physics, grid, details=details)
    timing = {"seconds_wall": time.perf_counter() - t0, "seconds_cpu": time.process_time() - c0}
    modes = details["modes"]
    res = LevelResult(
        freqs=np.asarray(rec.stick_freq, dtype=np.float64),
        l_mw=np.asarray(modes.l_mw, dtype=np.float64),
        coords=np.asarray(details["coords"], dtype=np.float64),
        ir=np.asarray(rec.stick_ir, dtype=np.float64),
        raman=np.asarray(rec.stick_raman, dtype=np.float64),
        centrosymmetric=bool(rec.centrosymmetric == 1),
    )
    return res, timing


def load_qm9_inputs(indices: list[int]) -> list[Any]:
    """The QM9 rows (``MoleculeInput``) of these indices, from the validated QM9 index."""
    from spektron.data.molecules import load_qm9

    return load_qm9(indices=indices)[0]


def parse_levels(text: str | Sequence[str] | None) -> list[str]:
    """Levels from 'a,b' or a list; None = every level. Unknown names are a ConfigError."""
    if text is None:
        return list(PHYSICS_LEVELS)
    items = text.split(",") if isinstance(text, str) else list(text)
    levels = list(dict.fromkeys(s.strip() for s in items if s.strip()))
    bad = [lv for lv in levels if lv not in PHYSICS_LEVELS]
    if bad or not levels:
        raise ConfigError(f"levels must be among {PHYSICS_LEVELS}, got {text!r}")
    return levels


def validate(
    levels: Sequence[str] | None = None,
    reference: str | Path = REFERENCE_DIR,
    only: Sequence[int] | None = None,
    physics: PhysicsConfig | None = None,
    grid: GridConfig | None = None,
    ref_freq_scale: float | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Validate simulation levels against the DFT reference set; the report as a dict.

    Parameters
    ----------
    levels : physics levels (default all of ``PHYSICS_LEVELS``).
    reference : folder of the reference set.
    only : QM9 indices to use (default every reference molecule).
    physics : settings other than ``level`` (default ``PhysicsConfig()``); its widths broaden
        both sides.
    grid : spectral grid (default the model grid, 2048 points 500–4000 cm⁻¹).
    ref_freq_scale : factor on the reference frequencies (default ``physics.dft_freq_scale``).
    """
    from dataclasses import replace

    from tqdm.auto import tqdm

    physics = physics or PhysicsConfig()
    grid_cfg = grid or GridConfig()
    scale = physics.dft_freq_scale if ref_freq_scale is None else float(ref_freq_scale)
    if not (0.5 < scale <= 1.1):
        raise ConfigError(f"ref_freq_scale must lie in (0.5, 1.1], got {scale}")
    levels = parse_levels(levels)
    refs, meta = load_reference(reference, only)
    # A reference the script flagged (unconverged optimisation, imaginary modes, failed checks)
    # is not a reference: left out, and listed.
    flagged = [r.qm9_index for r in refs if r.flagged]
    if flagged:
        log.warning("reference molecules flagged by their computation, left out: %s", flagged)
        refs = [r for r in refs if not r.flagged]
    if not refs:
        raise DataError(f"no unflagged reference molecule to validate against (flagged: {flagged})")
    g = make_grid(grid_cfg.n_points, grid_cfg.lo, grid_cfg.hi)
    inputs = load_qm9_inputs([r.qm9_index for r in refs])
    for r, inp in zip(refs, inputs, strict=True):
        if list(inp.elements or []) != r.elements:
            raise DataError(
                f"reference QM9 {r.qm9_index}: atoms {r.elements} differ from the QM9 row's "
                f"{inp.elements}"
            )
    per_level: dict[str, Any] = {}
    total = len(levels) * len(refs)
    bar = tqdm(total=total, desc="validate", disable=not progress, unit="mol")
    for level in levels:
        phys = replace(physics, level=level)
        rows = []
        for r, inp in zip(refs, inputs, strict=True):
            row: dict[str, Any] = {"qm9_index": r.qm9_index, "smiles": r.smiles}
            try:
                res, timing = simulate_level(inp, phys, g)
                metrics = compare(r, res, g, phys.ir_fwhm, phys.raman_fwhm, scale)
            except (SpektronError, ValueError, np.linalg.LinAlgError) as e:
                row["error"] = f"{type(e).__name__}: {e}"
                log.info("validate %s QM9 %d: %s", level, r.qm9_index, row["error"])
            else:
                row.update(timing)
                # an undefined cosine (an all-zero spectrum) is stored as null, not NaN
                row.update(
                    {
                        k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                        for k, v in metrics.items()
                    }
                )
                row["sticks"] = {
                    "freq_cm": res.freqs.tolist(),
                    "ir_km_mol": res.ir.tolist(),
                    "raman_A4_amu": res.raman.tolist(),
                }
            rows.append(row)
            bar.update(1)
        per_level[level] = _summarise(rows)
    bar.close()
    common = _common_summary(per_level)
    return {
        "format": "spektron-validation",
        "format_version": VALIDATION_FORMAT_VERSION,
        "reference": {
            "folder": str(reference),
            **meta,
            "n_molecules": len(refs),
            "skipped_flagged": flagged,
        },
        "conventions": {
            "ref_freq_scale": scale,
            "frequency_note": (
                f"reference B3LYP frequencies x {scale} (hybrid levels: QM9's B3LYP x "
                f"{physics.dft_freq_scale}); mmff and xtb keep their own frequencies"
            ),
            "ir_fwhm_cm": physics.ir_fwhm,
            "raman_fwhm_cm": physics.raman_fwhm,
            "grid": {"n_points": grid_cfg.n_points, "lo": grid_cfg.lo, "hi": grid_cfg.hi},
            "raman_quantity": "activity (A^4/amu), both sides",
            "windows_cm": [list(w) for w in WINDOWS],
            "exclusion_tol": EXCLUSION_TOL,
        },
        "levels": per_level,
        "common": common,
    }


def _summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rows if "error" not in r]
    summary = {m: _stats([r.get(m) for r in ok]) for m in SUMMARY_METRICS}
    ratio = {}
    for kind in ("ir", "raman"):
        w_ref = np.sum([r[f"{kind}_window_ref"] for r in ok], axis=0) if ok else None
        w_lvl = np.sum([r[f"{kind}_window_level"] for r in ok], axis=0) if ok else None
        ratio[kind] = (
            [float(a / b) if b > 0 else None for a, b in zip(w_lvl, w_ref, strict=True)]
            if ok
            else None
        )
    centro = [r for r in ok if "exclusion_overlap" in r]
    worst = max((r["exclusion_overlap"] for r in centro), default=None)
    return {
        "n_ok": len(ok),
        "n_failed": len(rows) - len(ok),
        "failures": {r["qm9_index"]: r["error"] for r in rows if "error" in r},
        "summary": summary,
        "window_ratio_level_over_ref": ratio,
        "mutual_exclusion": {
            "n_centrosymmetric": len(centro),
            "molecules": [r["qm9_index"] for r in centro],
            "max_overlap": worst,
            "holds": None if worst is None else bool(worst <= EXCLUSION_TOL),
        },
        "molecules": rows,
    }


def _common_summary(per_level: dict[str, Any]) -> dict[str, Any]:
    """Means over the molecules that every level simulated (levels compared like for like)."""
    ok_sets = [
        {r["qm9_index"] for r in lv["molecules"] if "error" not in r} for lv in per_level.values()
    ]
    common = set.intersection(*ok_sets) if ok_sets else set()
    out: dict[str, Any] = {"qm9_indices": sorted(common), "means": {}}
    for level, lv in per_level.items():
        rows = [r for r in lv["molecules"] if r["qm9_index"] in common]
        out["means"][level] = {
            m: (s["mean"] if (s := _stats([r.get(m) for r in rows])) else None)
            for m in SUMMARY_METRICS
        }
    return out


def centrosymmetric_qm9_indices(tol: float = CENTRO_TOL_ANG) -> list[int]:
    """QM9 indices whose DFT geometry has a centre of inversion (85 of QM9's 130,495 valid rows
    at 0.05 Å)."""
    from spektron.chemistry.symmetry import has_inversion_centre
    from spektron.data.molecules import load_qm9

    mols, _ = load_qm9()
    return [m.source_index for m in mols if has_inversion_centre(m.elements, m.coords, tol)]


def check_mutual_exclusion(
    levels: Sequence[str] | str | None = None,
    indices: Sequence[int] | None = None,
    physics: PhysicsConfig | None = None,
    grid: GridConfig | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Simulate QM9's centrosymmetric molecules (or ``indices``) at each level and measure the
    mutual exclusion of their stick spectra (``exclusion_overlap``).

    A level's optimised geometry may lose the inversion centre; such molecules are listed with
    their overlap, and the rule is judged on the molecules that keep it."""
    from dataclasses import replace

    from tqdm.auto import tqdm

    physics = physics or PhysicsConfig()
    grid_cfg = grid or GridConfig()
    levels = parse_levels(levels)
    idx = list(indices) if indices is not None else centrosymmetric_qm9_indices()
    if not idx:
        raise ConfigError("no molecules to check for mutual exclusion")
    inputs = load_qm9_inputs(idx)
    g = make_grid(grid_cfg.n_points, grid_cfg.lo, grid_cfg.hi)
    out: dict[str, Any] = {"qm9_indices": idx, "exclusion_tol": EXCLUSION_TOL, "levels": {}}
    bar = tqdm(total=len(levels) * len(idx), desc="exclusion", disable=not progress, unit="mol")
    for level in levels:
        phys = replace(physics, level=level)
        kept, lost, failed, secs = {}, {}, {}, []
        for inp in inputs:
            try:
                res, timing = simulate_level(inp, phys, g)
            except SpektronError as e:
                failed[inp.source_index] = f"{type(e).__name__}: {e}"
            else:
                secs.append(timing["seconds_wall"])
                ov = exclusion_overlap(res.ir, res.raman)
                (kept if res.centrosymmetric else lost)[inp.source_index] = ov
            bar.update(1)
        worst = max(kept.values(), default=None)
        out["levels"][level] = {
            "n_centrosymmetric": len(kept),
            "max_overlap": worst,
            "violations": {i: v for i, v in kept.items() if v > EXCLUSION_TOL},
            "holds": None if worst is None else bool(worst <= EXCLUSION_TOL),
            "lost_inversion_centre": lost,
            "failed": failed,
            "seconds_wall_mean": float(np.mean(secs)) if secs else None,
        }
    bar.close()
    return out


def format_exclusion(rep: dict[str, Any]) -> str:
    """One line per level of ``check_mutual_exclusion``."""
    lines = [
        f"Mutual exclusion on {len(rep['qm9_indices'])} centrosymmetric QM9 molecules "
        f"(holds: Σ_k min(IR_k/ΣIR, Raman_k/ΣRaman) ≤ {rep['exclusion_tol']:g}):"
    ]
    for level, r in rep["levels"].items():
        verdict = "–" if r["holds"] is None else ("holds" if r["holds"] else "BROKEN")
        worst = "–" if r["max_overlap"] is None else f"{r['max_overlap']:.1e}"
        lines.append(
            f"- {level}: {verdict} on {r['n_centrosymmetric']} (max {worst}); lost the centre "
            f"at this level: {len(r['lost_inversion_centre'])}; failed: {len(r['failed'])}"
        )
    return "\n".join(lines)


def format_report(rep: dict[str, Any]) -> str:
    """The validation table as Markdown (means over each level's simulated molecules)."""
    conv = rep["conventions"]
    ref = rep["reference"]
    cols = [
        ("IR cos", "ir_cosine"),
        ("IR ceil", "ir_cosine_freq_ceiling"),
        ("Raman cos", "raman_cosine"),
        ("Ra ceil", "raman_cosine_freq_ceiling"),
        ("ν MAE ovl", "freq_mae_overlap"),
        ("ν MAE sort", "freq_mae_sorted"),
        ("|⟨l,l⟩|²", "mean_sq_overlap"),
        ("IR int ovl", "ir_intensity_overlap"),
        ("IR int sort", "ir_intensity_sorted"),
        ("Ra int ovl", "raman_intensity_overlap"),
        ("Ra int sort", "raman_intensity_sorted"),
        ("IR win", "ir_window_cosine"),
        ("Ra win", "raman_window_cosine"),
        ("s/mol", "seconds_wall"),
    ]
    lines = [
        f"Validation against {ref.get('level')} ({ref['n_molecules']} QM9 molecules). "
        f"{conv['frequency_note']}; Lorentzian FWHM IR {conv['ir_fwhm_cm']:g} / Raman "
        f"{conv['raman_fwhm_cm']:g} cm⁻¹. Mean over the molecules each level simulated.",
        "",
        "| level | n | " + " | ".join(c for c, _ in cols) + " | mutual excl. |",
        "|---" * (len(cols) + 3) + "|",
    ]
    for level, lv in rep["levels"].items():
        cells = []
        for _, key in cols:
            s = lv["summary"].get(key)
            if s is None:
                cells.append("–")
            elif key.startswith("seconds"):
                cells.append(f"{s['mean']:.3g}")
            elif key.startswith("freq"):
                cells.append(f"{s['mean']:.1f}")
            else:
                cells.append(f"{s['mean']:.3f}")
        me = lv["mutual_exclusion"]
        excl = (
            "–"
            if me["holds"] is None
            else f"{'holds' if me['holds'] else 'BROKEN'} ({me['n_centrosymmetric']}, max "
            f"{me['max_overlap']:.1e})"
        )
        n = f"{lv['n_ok']}" + (f" (+{lv['n_failed']} failed)" if lv["n_failed"] else "")
        lines.append(f"| {level} | {n} | " + " | ".join(cells) + f" | {excl} |")
    common = rep["common"]
    lines += [
        "",
        f"Common set ({len(common['qm9_indices'])} molecules every level simulated), means: "
        + "; ".join(
            f"{lv} IR cos {_fmt(m['ir_cosine'])}, IR int sort {_fmt(m['ir_intensity_sorted'])}, "
            f"Ra int sort {_fmt(m['raman_intensity_sorted'])}"
            for lv, m in common["means"].items()
        ),
    ]
    fails = {lv: v["failures"] for lv, v in rep["levels"].items() if v["failures"]}
    if fails:
        lines.append(f"Failures: {fails}")
    if "mutual_exclusion_qm9" in rep:
        lines += ["", format_exclusion(rep["mutual_exclusion_qm9"])]
    return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"
