"""Builders of small QM9S-format fixture files, written into tmp_path by the tests.

Formats follow ``spektron.data.qm9s`` (and docs/DESIGN.md §2.2): wide CSVs with a 3501-column
500…4000 cm⁻¹ header; per-molecule CSVs in pandas ``to_csv`` layout inside a zip; ``qm9s.pt`` as
``torch.save`` of torch_geometric ``Data`` objects, pickled under the real module and class names
from stand-in classes (torch_geometric itself is not installed).

Model molecules have vibrational properties known in closed form, computed here independently of
the code under test:

- CO₂ with a valence force field (two C=O stretches k, a linear bend k_b), fixed charges for dμ/dR
  and a bond-length-dependent polarizability for dα/dR.
- Molecules with a Hessian built from prescribed frequencies and mass-weighted mode vectors
  (orthogonal to translations and rotations), and derivatives giving prescribed dμ/dQ, dα/dQ.
"""

from __future__ import annotations

import math
import sys
import types
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

# CODATA 2018 values, used here independently of spektron's constants.
EV_J = 1.602176634e-19
AMU_KG = 1.66053906660e-27
C_M_S = 2.99792458e8
EPS0 = 8.8541878128e-12
N_A = 6.02214076e23
DEBYE_CM = 1e-21 / C_M_S  # 3.33564e-30 C·m
BOHR_A = 0.529177210903
E_A_TO_DEBYE = 1.602176634e-19 * 1e-10 / DEBYE_CM  # 4.80320 D per e·Å
# √(eV/Å²/amu) in cm⁻¹ and the IR/Raman unit factors, derived from the constants above.
HESS_CM = math.sqrt(EV_J / (1e-20 * AMU_KG)) / (2 * math.pi * C_M_S * 100)
IR_KM_MOL = N_A / (12 * EPS0 * C_M_S**2) * (DEBYE_CM / 1e-10) ** 2 / AMU_KG / 1e3
RAMAN_A4 = BOHR_A**6
# Most abundant isotope masses (amu).
ISOTOPIC_MASS = {1: 1.00782503207, 6: 12.0, 7: 14.0030740048, 8: 15.99491461956}

FILE_GRID = np.arange(500.0, 4001.0)  # (3501,) the QM9S wide-CSV header


# ----------------------------------------------------------------------------- wide CSVs


def analytic_spectrum(row_id: int, nu: np.ndarray, kind: str = "ir") -> np.ndarray:
    """A smooth function of ν (its linear interpolation on a 1 cm⁻¹ grid is exact to ~1e-5)."""
    phase = 0.7 * row_id + (0.0 if kind == "ir" else 1.3)
    return 1.0 + 0.1 * row_id + 0.5 * np.sin(nu / 97.0 + phase) + 0.3 * (nu / 1000.0) ** 2


def wide_csv_lines(
    ids, rows: np.ndarray, *, grid: np.ndarray = FILE_GRID, id_label: str = "", int_header=True
) -> list[str]:
    """Lines (without newline) of a wide CSV: header, then ``id,v1,…`` per row."""
    fmt = (lambda v: str(int(v))) if int_header else (lambda v: repr(float(v)))
    lines = [id_label + "," + ",".join(fmt(v) for v in grid)]
    for i, row in zip(ids, rows, strict=True):
        lines.append(f"{i}," + ",".join(repr(float(v)) for v in row))
    return lines


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def write_analytic_csv(path: Path, ids, kind: str = "ir", **kw) -> Path:
    rows = np.stack([analytic_spectrum(i, FILE_GRID, kind) for i in ids])
    return write_lines(path, wide_csv_lines(ids, rows, **kw))


# ----------------------------------------------------------------------------- model molecules


@dataclass
class ModelMolecule:
    """Geometry, Hessian (eV/Å²), dμ/dR (3N,3 D/Å), dα/dR (3N,6 Bohr³/Å) and known results."""

    smiles: str
    z: np.ndarray
    coords: np.ndarray
    hessian: np.ndarray
    dipole_deriv: np.ndarray
    polar_deriv: np.ndarray
    freqs: np.ndarray  # unscaled cm⁻¹, ascending
    ir: np.ndarray  # km/mol, same order
    raman: np.ndarray  # Å⁴/amu, same order
    extra: dict = field(default_factory=dict)


def raman_activity(tensors: np.ndarray) -> np.ndarray:
    """45 a′² + 7 γ′² (Å⁴/amu) of (K, 3, 3) polarizability derivatives in Bohr³/(Å·amu^½)."""
    a = np.trace(tensors, axis1=1, axis2=2) / 3.0
    dev = tensors - a[:, None, None] * np.eye(3)
    gamma2 = 1.5 * np.einsum("kij,kij->k", dev, dev)
    return RAMAN_A4 * (45 * a**2 + 7 * gamma2)


def six(t: np.ndarray) -> np.ndarray:
    """(…, 3, 3) symmetric tensors → (…, 6) in the order xx, xy, yy, xz, yz, zz."""
    return np.stack(
        [t[..., 0, 0], t[..., 0, 1], t[..., 1, 1], t[..., 0, 2], t[..., 1, 2], t[..., 2, 2]], -1
    )


def co2(
    k: float = 113.3, k_bend: float = 3.57, q_o: float = -0.3, a1: float = 5.0, beta: float = 3.0
):
    """O=C=O along x, stretch-only + linear-bend force field, fixed charges, bond polarizability.

    Internal coordinates b·x: s₊ = x_O2 − x_O1 (symmetric stretch), s₋ = x_O1 − 2x_C + x_O2
    (antisymmetric stretch), s_y/s_z = O1 − 2C + O2 along y/z (bends); each alone in its block,
    so ω² = F·G with G = Σ b_i²/m_i and dμ/dQ = Σ q_i b_i/m_i / √G.
    """
    z = np.array([8, 6, 8])
    x = np.array([[-1.16, 0, 0], [0.0, 0, 0], [1.16, 0, 0]])
    mo, mc = ISOTOPIC_MASS[8], ISOTOPIC_MASS[6]

    def vec(axis, b):
        v = np.zeros((3, 3))
        v[:, axis] = b
        return v.reshape(-1)

    r1, r2 = vec(0, [-1, 1, 0]), vec(0, [0, -1, 1])  # bond lengths C−O1, O2−C
    sy, sz = vec(1, [1, -2, 1]), vec(2, [1, -2, 1])
    h = k * (np.outer(r1, r1) + np.outer(r2, r2)) + k_bend * (np.outer(sy, sy) + np.outer(sz, sz))
    q = np.array([q_o, -2 * q_o, q_o])
    dd = np.kron(q[:, None], np.eye(3)) * E_A_TO_DEBYE  # (9, 3): dμ_c'/dR_{a,c} = q_a δ
    tensor = a1 * np.eye(3) + beta * np.diag([2 / 3, -1 / 3, -1 / 3])  # d α/d(r1 + r2)
    dp = np.outer(r1 + r2, six(tensor))  # (9, 6)
    g_s, g_as, g_b = 2 / mo, 2 / mo + 4 / mc, 2 / mo + 4 / mc
    w2 = {"bend": k_bend * g_b, "sym": k / mo, "asym": k * (1 / mo + 2 / mc)}
    ir_bend = IR_KM_MOL * (q_o * E_A_TO_DEBYE) ** 2 * g_b
    ir_as = IR_KM_MOL * (q_o * E_A_TO_DEBYE) ** 2 * g_as
    raman_s = RAMAN_A4 * g_s * (45 * a1**2 + 7 * beta**2)
    return ModelMolecule(
        smiles="O=C=O",
        z=z,
        coords=x,
        hessian=h,
        dipole_deriv=dd,
        polar_deriv=dp,
        freqs=HESS_CM * np.sqrt([w2["bend"], w2["bend"], w2["sym"], w2["asym"]]),
        ir=np.array([ir_bend, ir_bend, 0.0, ir_as]),
        raman=np.array([0.0, 0.0, raman_s, 0.0]),
    )


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def prescribed(smiles: str, z, coords, freqs, seed: int = 0) -> ModelMolecule:
    """Hessian with the given frequencies (cm⁻¹) and random dμ/dQ, dα/dQ (non-linear molecule).

    Mass-weighted vibrations w_k: a random orthonormal basis of the complement of the 3
    translations and 3 rotations (built here from the geometry); H = M^½ (Σ ω_k² w_k w_kᵀ) M^½;
    dμ/dR = M^½ Σ w_k p_kᵀ so that dμ/dQ_k = p_k; likewise dα/dR.
    """
    rng = np.random.default_rng(seed)
    z = np.asarray(z)
    x = np.asarray(coords, dtype=float) @ _rotation(rng).T + rng.normal(size=3)
    m = np.array([ISOTOPIC_MASS[int(a)] for a in z])
    n = len(z)
    com = (m[:, None] * x).sum(0) / m.sum()
    rigid = []
    for c in range(3):
        t = np.zeros((n, 3))
        t[:, c] = np.sqrt(m)
        rigid.append(t.reshape(-1))
        rigid.append((np.cross(np.eye(3)[c], x - com) * np.sqrt(m)[:, None]).reshape(-1))
    q, _ = np.linalg.qr(np.array(rigid).T, mode="complete")
    k = 3 * n - 6
    assert len(freqs) == k
    w = q[:, 6:] @ _rotation_nd(rng, k)  # (3N, K) random orthonormal vibrations
    omega2 = (np.asarray(freqs) / HESS_CM) ** 2
    sqm = np.repeat(np.sqrt(m), 3)
    h = sqm[:, None] * (w * omega2) @ w.T * sqm[None, :]
    p = rng.normal(size=(k, 3))  # dμ/dQ, D/(Å·amu^½)
    t = rng.normal(size=(k, 3, 3))
    t = 0.5 * (t + t.transpose(0, 2, 1))  # dα/dQ, Bohr³/(Å·amu^½)
    dd = sqm[:, None] * (w @ p)
    dp = sqm[:, None] * (w @ six(t))
    return ModelMolecule(
        smiles=smiles,
        z=z,
        coords=x,
        hessian=h,
        dipole_deriv=dd,
        polar_deriv=dp,
        freqs=np.asarray(freqs, dtype=float),
        ir=IR_KM_MOL * (p**2).sum(1),
        raman=raman_activity(t),
    )


def _rotation_nd(rng: np.random.Generator, k: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(k, k)))
    return q * np.sign(np.diag(r))


def water(seed: int = 1) -> ModelMolecule:
    a = math.radians(104.5) / 2
    x = [
        [0, 0, 0],
        [0.9572 * math.sin(a), 0.9572 * math.cos(a), 0],
        [-0.9572 * math.sin(a), 0.9572 * math.cos(a), 0],
    ]
    return prescribed("O", [8, 1, 1], x, [1595.0, 3657.0, 3756.0], seed)


def formaldehyde(seed: int = 2) -> ModelMolecule:
    x = [[0, 0, 0], [0, 0, 1.205], [0, 0.943, -0.587], [0, -0.943, -0.587]]
    return prescribed(
        "C=O", [6, 8, 1, 1], x, [1167.0, 1249.0, 1500.0, 1746.0, 2783.0, 2843.0], seed
    )


def model_molecules() -> list[ModelMolecule]:
    return [co2(), water(), formaldehyde()]


def broadened(mol: ModelMolecule, grid: np.ndarray, kind: str, scale: float = 0.965) -> np.ndarray:
    """Height-normalised Lorentzian spectrum of the known sticks (FWHM 15 IR / 10 Raman)."""
    fwhm, s = (15.0, mol.ir) if kind == "ir" else (10.0, mol.raman)
    f = mol.freqs * scale
    hw2 = (fwhm / 2) ** 2
    return (hw2 / ((grid[:, None] - f[None, :]) ** 2 + hw2)) @ s


# ----------------------------------------------------------------------------- qm9s_csv.zip


def molecule_csv_text(
    mol: ModelMolecule, number: int, *, header: bool = True, index: bool = True, smiles=None
) -> str:
    """One per-molecule CSV (layout of ``spektron.data.qm9s.parse_molecule_csv``).

    ``header``/``index``: as pandas ``to_csv`` writes them (the release has both); short rows
    are padded with empty cells whenever the frame is rectangular (header or index present).
    """
    n = len(mol.z)
    rng = np.random.default_rng(number)
    rows: list[list] = [[number, number + 7, mol.smiles if smiles is None else smiles, n]]
    for width in (1, n, 3, 6, 10, 6, 10, 10, 30):  # energy … transition dipoles (unused)
        rows.append(list(rng.normal(size=width)))
    rows += [[int(a), *xyz] for a, xyz in zip(mol.z, mol.coords, strict=True)]
    rows += [list(r) for r in mol.dipole_deriv.reshape(n, 9)]
    rows += [list(r) for r in mol.polar_deriv.reshape(n, 18)]
    rows += [list(r) for r in mol.hessian]

    def cell(v):
        if isinstance(v, str):
            return v
        return str(v) if isinstance(v, (int, np.integer)) else repr(float(v))

    width = max(len(r) for r in rows)
    pad = header or index
    lines = []
    if header:
        lines.append(("," if index else "") + ",".join(str(c) for c in range(width)))
    for i, r in enumerate(rows):
        cells = [cell(v) for v in r] + ([""] * (width - len(r)) if pad else [])
        lines.append((f"{i}," if index else "") + ",".join(cells))
    return "\n".join(lines) + "\n"


def write_zip(path: Path, texts: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("qm9s_csv/", "")
        for name, text in texts.items():
            zf.writestr(f"qm9s_csv/{name}", text)
    return path


def write_model_zip(
    path: Path, mols: list[ModelMolecule], smiles_override: dict | None = None
) -> Path:
    smiles_override = smiles_override or {}
    return write_zip(
        path,
        {
            f"{i + 1:06d}.csv": molecule_csv_text(m, i + 1, smiles=smiles_override.get(i))
            for i, m in enumerate(mols)
        },
    )


# ----------------------------------------------------------------------------- qm9s.pt

_PYG_MODULES = (
    "torch_geometric",
    "torch_geometric.data",
    "torch_geometric.data.data",
    "torch_geometric.data.storage",
)


@contextmanager
def fake_torch_geometric():
    """Install stand-in torch_geometric modules (real module/class names) for pickling only."""
    assert not any(m in sys.modules for m in _PYG_MODULES), "a real torch_geometric is loaded"
    mods = {name: types.ModuleType(name) for name in _PYG_MODULES}

    class DataEdgeAttr:
        pass

    class DataTensorAttr:
        pass

    class GlobalStorage:  # torch_geometric ≥ 2: attributes live in _mapping
        def __init__(self, parent, mapping):
            self.__dict__["_mapping"] = mapping
            self.__dict__["_parent"] = parent

    class Data:
        def __init__(self, style: str = "pyg2", **attrs):
            if style == "pyg2":
                self.__dict__["_store"] = GlobalStorage(self, attrs)
                self.__dict__["_edge_attr_cls"] = DataEdgeAttr
                self.__dict__["_tensor_attr_cls"] = DataTensorAttr
            else:  # torch_geometric 1.x: plain attributes
                self.__dict__.update(attrs)
                self.__dict__["__num_nodes__"] = None

    for cls, mod in (
        (Data, "torch_geometric.data.data"),
        (DataEdgeAttr, "torch_geometric.data.data"),
        (DataTensorAttr, "torch_geometric.data.data"),
        (GlobalStorage, "torch_geometric.data.storage"),
    ):
        cls.__module__ = mod
        cls.__qualname__ = cls.__name__
        setattr(mods[mod], cls.__name__, cls)
    sys.modules.update(mods)
    try:
        yield Data
    finally:
        for name in _PYG_MODULES:
            sys.modules.pop(name, None)


def pt_entry(mol: ModelMolecule, number: int) -> dict:
    """torch_geometric attributes as in qm9s.pt; Hessian split into Hi / Hij as DetaNet does."""
    n = len(mol.z)
    h4 = mol.hessian.reshape(n, 3, n, 3)
    src, dst = np.array([(i, j) for i in range(n) for j in range(n) if i != j]).T
    t = torch.tensor
    return {
        "edge_index": t(np.stack([src, dst])),
        "pos": t(mol.coords),
        "number": number,
        "smile": mol.smiles,
        "z": t(mol.z),
        "energy": t([[-1.0]]),
        "Hij": t(h4[dst, :, src, :]),  # block at rows of j, columns of i
        "Hi": t(h4[np.arange(n), :, np.arange(n), :]),
        "dedipole": t(mol.dipole_deriv.reshape(n, 3, 3)),
        "depolar": t(mol.polar_deriv.reshape(n, 3, 6)),
    }


def write_pt(path: Path, mols: list[ModelMolecule], *, style: str = "pyg2", numbers=None) -> Path:
    """``torch.save`` a list of Data objects (``number`` deliberately not position + 1)."""
    numbers = numbers or [1000 + 17 * i for i in range(len(mols))]
    with fake_torch_geometric() as data_cls:
        objs = [data_cls(style, **pt_entry(m, k)) for m, k in zip(mols, numbers, strict=True)]
        torch.save(objs, path)
    return path
