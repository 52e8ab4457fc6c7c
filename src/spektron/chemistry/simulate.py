"""Per-molecule IR and Raman physics: MMFF94 normal modes, fixed-charge IR, bond-polarizability
Raman.

Pipeline (docs/DESIGN.md §2.1), each step a public function below:

1. Molecule. QM9 rows: atoms in the XYZ order of the B3LYP geometry (so DFT Mulliken charges map
   by index); the SMILES bond graph is matched onto the geometry's distance graph and supplies
   bond orders and formal charges. User SMILES: explicit hydrogens, ETKDG embedding (fixed seed).
2. MMFF94 (Halgren, J. Comput. Chem. 17 (1996) 490) optimisation to an RMS gradient below
   ``physics.opt_grad_tol`` kcal/mol/Å.
3. Hessian by central differences of the analytic gradient, H_{:,j} = (g(x + h e_j) −
   g(x − h e_j)) / 2h, symmetrised. RDKit's ``ForceField.CalcGrad(pos)`` is only right when
   ``CalcEnergy(pos)`` was called on the same positions just before (it reuses state of the
   energy evaluation), so every gradient call is preceded by one.
4. Normal modes: mass-weighted Hessian H_ij/√(m_i m_j), with the 6 (linear: 5) translations and
   rotations removed by restricting it to the orthogonal complement of their span (Wilson,
   Decius & Cross, *Molecular Vibrations*, 1955, §2); eigenvalues λ_k give
   ν_k = 108.59 · sign(λ_k)·√|λ_k| cm⁻¹ (λ in kcal/mol/Å²/amu), eigenvectors l_k (orthonormal,
   mass-weighted) give Cartesian displacements L_{ik} = l_{ik}/√m_i (Å per Å·√amu). A frequency
   below −``physics.imag_tol_cm`` marks a saddle point: the geometry is pushed along that mode
   and re-optimised (``physics.saddle_escapes`` times at most), then the molecule is rejected.
5. Centrosymmetric molecules: inside blocks of modes closer than ``physics.degeneracy_tol_cm``
   the inversion operator is diagonalised, so every mode is g or u and the mutual-exclusion rule
   holds (finite differences otherwise mix accidentally degenerate g/u pairs, e.g. 2-butyne).
   At the GFN2-xTB levels the geometry, Hessian, dipole and polarizability derivatives are first
   symmetrised under the inversion (``symmetrize_inversion``): their SCF and finite-difference
   noise otherwise leaks up to 9 % of the intensity across the rule (measured on QM9's 85
   centrosymmetric molecules).
6. IR: fixed atomic charges q_i, dμ/dQ_k = Σ_i q_i L_ik, intensity
   A_k = 42.2561 · (4.80320 · |dμ/dQ_k|)² km/mol (1 e·Å = 4.80320 D;
   (D/Å)²/amu × 42.2561 = km/mol; Wilson, Decius & Cross; Neugebauer et al., J. Comput. Chem.
   23 (2002) 895). Charges: DFT Mulliken for QM9 rows, else Gasteiger (Gasteiger & Marsili,
   Tetrahedron 36 (1980) 3219) or MMFF94 bond-charge-increment charges. Fixed charges carry no
   charge flux, so the intensities are qualitative; MMFF/Gasteiger leave C–H stretches (almost)
   silent.
7. Raman: bond-polarizability model in the simplified Lippincott–Stuttman form of ASE
   (``ase/calculators/bond_polarizability.py``; Lippincott & Stuttman, J. Phys. Chem. 68 (1964)
   2926; Marinov & Zotov, Phys. Rev. B 55 (1997) 2938). Per bond of length L between atoms 1, 2:

       α∥ = f_b · σ · L⁴ / (4⁴ α₁ α₂)^(1/6),   σ = exp(−(x₁ − x₂)²/4),
       α⊥ = (x₁² α₁ + x₂² α₂) / (x₁² + x₂²),
       α_mol = Σ_bonds α⊥ I + (α∥ − α⊥) ê êᵀ,

   with atomic polarizabilities α (Å³), reduced electronegativities x and a bond-type factor f_b
   (``RAMAN_BOND_FACTOR``, calibrated on B3LYP polarizability derivatives, see the table).
   The derivative ∂α_mol/∂x_i is analytic (∂α∥/∂L = 4α∥/L; α⊥ does not depend on L),
   α'_k = Σ_i ∂α/∂x_i L_ik, and the activity is S_k = 45 a'_k² + 7 γ'_k² (Å⁴/amu) with
   a' = tr(α')/3 and γ'² = ½[(α'xx−α'yy)² + (α'yy−α'zz)² + (α'zz−α'xx)²] + 3(α'xy² + α'yz² + α'zx²).
8. Spectra: height-normalised Lorentzians (``spektron.chemistry.spectra.lorentzian_broaden``) of the
   positive-frequency sticks, FWHM ``physics.ir_fwhm`` / ``physics.raman_fwhm``, on the grid.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import rdDistGeom, rdForceFieldHelpers, rdPartialCharges

from spektron.chemistry.functional_groups import functional_group_flags
from spektron.chemistry.molecule import MoleculeInput
from spektron.chemistry.spectra import SpectrumRecord, lorentzian_broaden
from spektron.chemistry.symmetry import inversion_permutation, is_linear, point_group
from spektron.chemistry.vibrations import (
    E_ANGSTROM_TO_DEBYE,
    harmonic_modes,
    ir_intensity,
    kabsch_rotation,
    raman_activity,
)
from spektron.chemistry.vibrations import atomic_masses as vib_atomic_masses
from spektron.config import PhysicsConfig
from spektron.errors import ConfigError, MoleculeError, SimulationError, SpektronError

# ----------------------------------------------------------------------------- constants

# ν̃ = √(λ) / (2π c) for λ in kcal/mol/Å²/amu: √(4184 J / N_A / (1e-20 m² · 1 amu)) / (2π c).
_N_A = 6.02214076e23
_AMU_KG = 1.66053906660e-27
_C_CM_S = 2.99792458e10
HESSIAN_TO_CM = float(np.sqrt(4184.0 / _N_A / (1e-20 * _AMU_KG)) / (2 * np.pi * _C_CM_S))  # 108.59

# Lippincott–Stuttman parameters as in ASE's LippincottStuttman model: atomic polarizabilities
# (Å³) and reduced electronegativities of Lippincott & Stuttman (1964), Table I, for H, C, N, O
# (ase/calculators/bond_polarizability.py). Fluorine (0.490 Å³, 1.056) is not in upstream ASE:
# it comes from the extended table of the ASE fork github.com/pultar/ase (same file, commit
# 2f8b56c9712c0de9a535ca17eaf70ff0ac824743), not checked against the paper.
LS_ATOMIC_POLARIZABILITY = {"H": 0.592, "C": 0.978, "N": 0.743, "O": 0.592, "F": 0.490}
LS_REDUCED_ELECTRONEGATIVITY = {"H": 1.0, "C": 0.846, "N": 0.927, "O": 1.0, "F": 1.056}

# Bond-type (order and covalency) factor f_b on α∥ and hence on ∂α∥/∂L, keyed by ``bond_key``.
# The raw model gives multiple bonds *less* stretch activity than single ones (α∥ ∝ L⁴, so a
# shorter bond has a smaller ∂α∥/∂L): C–C 46.7 > C=C 31.1 > C≡C 27.6 Å⁴/amu for the C–C
# stretches of ethane, ethylene and acetylene, and the C≡C stretch of propyne comes out at
# 0.1 Å⁴/amu (its C≡C and C–C terms cancel). Calibration (done once, offline): for one
# characteristic stretch per bond type, the Raman activity was computed from B3LYP/aug-cc-pVDZ
# polarizabilities (PySCF 2.14, finite field ±1e-3 au, density fitting) displaced ±0.01 Å along
# the *MMFF94 normal mode of this module* (so only the polarizability model is calibrated, not
# the force field), and f_b solved so the model reproduces it (the activity is quadratic in each
# f_b; Gauss–Seidel over types). Reference stretch: DFT / raw model activity (Å⁴/amu) → f_b:
#   C–H methane ν1 216.6/100.6 → 1.467   N–H ammonia ν1 165.2/62.6 → 1.625
#   O–H water ν1 101.7/43.3 → 1.533      C–C ethane ν3 13.2/46.7 → 0.510
#   C=C ethylene ν2 39.7/31.1 → 1.296    C≡C acetylene ν2 112.3/27.6 → 2.285
#   C–O methanol 7.9/40.0 → 0.449        C=O formaldehyde 12.7/19.7 → 0.836
#   C–N methylamine 6.2/35.9 → 0.416     C=N methanimine 34.5/23.2 → 1.194
#   C≡N HCN 58.3/18.8 → 1.845            C–F fluoromethane 5.6/29.2 → 0.429
#   C:C benzene ring breathing 87.1/62.7 → 1.166
# Held-out checks (DFT / raw / corrected): propane C–C 11.2/36.7/11.3, ethane C–H sym
# 338/169/375, propene C=C 42.2/24.3/32.9, propyne C≡C 159/0.1/56, acetonitrile C≡N
# 70.8/0.9/17.4 — triple bonds conjugated with a single bond stay 3–4× too weak, but are strong
# bands again. Bonds between heavy atoms without an entry use the C–C factor of their order.
RAMAN_BOND_FACTOR: dict[str, float] = {
    "C-H": 1.467,
    "H-N": 1.625,
    "H-O": 1.533,
    "C-C": 0.510,
    "C=C": 1.296,
    "C#C": 2.285,
    "C:C": 1.166,
    "C-O": 0.449,
    "C=O": 0.836,
    "C-N": 0.416,
    "C=N": 1.194,
    "C#N": 1.845,
    "C-F": 0.429,
}
_ORDER_FALLBACK = {"-": "C-C", ":": "C:C", "=": "C=C", "#": "C#C"}
_BOND_SYMBOL = {1.0: "-", 1.5: ":", 2.0: "=", 3.0: "#"}

# Geometry → bond graph: two atoms are bonded when closer than this factor times the sum of
# their covalent radii (RDKit's rdDetermineBonds uses the same rule and factor).
BOND_LENGTH_FACTOR = 1.3
# Atoms closer than this (Å) make a geometry invalid (the shortest QM9 bond, O–H, is 0.96 Å).
MIN_ATOM_DISTANCE = 0.5
# RDKit BFGS (forceTol, energyTol) settings, used in turn until the RMS gradient is below
# physics.opt_grad_tol. Measured on 400 QM9 molecules + QM9 53453 (a flat polyyne chain): the
# first setting reaches RMS ≤ 4e-5 kcal/mol/Å everywhere (median 3e-6); the tighter one alone
# goes further for most (median 1e-6) but stalls at 1.7e-4 on 53453.
_MINIMIZER_TOLS = ((1e-6, 1e-12), (1e-8, 1e-14))
# Sticks at or below this frequency (cm⁻¹) are left out of the broadened spectra.
MIN_BROADENED_FREQ = 0.0

_PT = Chem.GetPeriodicTable()
# Conformer search of user SMILES (molecule_from_smiles): MMFF94 iterations per embedding
# (the kept one is optimised tightly afterwards) and the energy difference (kcal/mol) below
# which two conformers tie.
_CONFORMER_MAX_ITERS = 2000
_CONFORMER_ENERGY_TIE = 1e-3


# ----------------------------------------------------------------------------- timing hook


@contextmanager
def _timed(timings: dict[str, float] | None, key: str):
    t0 = time.perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0


# ----------------------------------------------------------------------------- molecules


def parse_smiles(smiles: str) -> Chem.Mol:
    """Sanitised RDKit molecule (implicit hydrogens) or ``MoleculeError`` naming the SMILES."""
    if not isinstance(smiles, str) or not smiles.strip():
        raise MoleculeError(f"invalid SMILES: {smiles!r} is empty")
    with rdBase.BlockLogs():  # the reason goes into the exception, not to stderr
        mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise MoleculeError(f"invalid SMILES: RDKit cannot parse {smiles!r}")
    if mol.GetNumAtoms() == 0:
        raise MoleculeError(f"invalid SMILES: {smiles!r} has no atoms")
    frags = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=False)
    if len(frags) > 1:
        parts = ", ".join(Chem.MolToSmiles(f) for f in frags)
        raise MoleculeError(
            f"several fragments: {smiles!r} is {len(frags)} separate molecules or ions ({parts}); "
            "a SMILES must be one connected molecule (a salt or mixture: each component on its "
            "own line)"
        )
    return mol


# Elements MMFF94 has atom types for (Halgren, J. Comput. Chem. 17 (1996) 490: the organic
# elements and a few ions); GFN2-xTB is parameterised for H to Rn (Z <= 86).
MMFF94_ELEMENTS = frozenset("H C N O F Si P S Cl Br I Li Na K Mg Ca Fe Zn Cu".split())
GFN2_MAX_Z = 86


def check_elements(mol: Chem.Mol, level: str) -> None:
    """``MoleculeError`` naming the elements of ``mol`` that ``level``'s model has no
    parameters for: MMFF94's elements at the force-field levels, H to Rn at xtb."""
    symbols = sorted({a.GetSymbol() for a in mol.GetAtoms()}, key=_PT.GetAtomicNumber)
    if level in XTB_LEVELS:
        bad = [e for e in symbols if _PT.GetAtomicNumber(e) > GFN2_MAX_Z]
        model = "GFN2-xTB (parameterised for H to Rn)"
    else:
        bad = [e for e in symbols if e not in MMFF94_ELEMENTS]
        model = f"MMFF94, the force field of level {level!r},"
    if bad:
        smiles = Chem.MolToSmiles(Chem.RemoveHs(mol, sanitize=False))
        hint = "; level 'xtb' (GFN2-xTB) covers H to Rn" if level not in XTB_LEVELS else ""
        raise MoleculeError(
            f"unsupported element {', '.join(bad)}: {model} has no parameters for "
            f"{'it' if len(bad) == 1 else 'them'} ({smiles}){hint}"
        )


def molecule_from_smiles(smiles: str, seed: int = 42, n_conformers: int = 1) -> Chem.Mol:
    """Molecule with explicit hydrogens and one conformer: the lowest-MMFF94-energy one of
    ``n_conformers`` seeded ETKDGv3 embeddings (Riniker & Landrum 2015), each MMFF94-optimised.

    One embedding lands wherever the distance geometry puts it (cyclohexane: a twist-boat,
    n-butane: often gauche); several, optimised and ranked by energy, find the global minimum
    of small flexible molecules (chair, anti). Energies within ``_CONFORMER_ENERGY_TIE``
    kcal/mol count as equal and the lowest embedding index wins, so the choice is
    deterministic. Without MMFF94 parameters (the xtb level takes any element) the first
    embedding is kept.
    """
    if n_conformers < 1:
        raise ConfigError(f"n_conformers must be >= 1, got {n_conformers}")
    mol = Chem.AddHs(parse_smiles(smiles))
    params = rdDistGeom.ETKDGv3()
    params.randomSeed = int(seed)
    ids = list(rdDistGeom.EmbedMultipleConfs(mol, n_conformers, params))
    if not ids:
        params.useRandomCoords = True  # RDKit's documented fallback for hard cases
        ids = list(rdDistGeom.EmbedMultipleConfs(mol, n_conformers, params))
        if not ids:
            raise SimulationError(f"embedding failed: ETKDG found no conformer for {smiles!r}")
    if len(ids) > 1:
        best = ids[0]
        if rdForceFieldHelpers.MMFFHasAllMoleculeParams(mol):
            # Ranked on a copy: the kept conformer is the embedding itself, so that the tight
            # optimisation (mmff_optimise) starts from where a single embedding would.
            trial = Chem.Mol(mol)
            with rdBase.BlockLogs():
                res = rdForceFieldHelpers.MMFFOptimizeMoleculeConfs(
                    trial, maxIters=_CONFORMER_MAX_ITERS, mmffVariant="MMFF94"
                )
            energies = np.array([e if np.isfinite(e) else np.inf for _, e in res])
            if np.isfinite(energies).any():
                tied = np.flatnonzero(energies <= energies.min() + _CONFORMER_ENERGY_TIE)
                best = ids[int(tied[0])]
        keep = Chem.Conformer(mol.GetConformer(best))
        mol.RemoveAllConformers()
        keep.SetId(0)
        mol.AddConformer(keep, assignId=False)
    return mol


def molecule_from_xyz(elements: Sequence[str], coords: np.ndarray, smiles: str) -> Chem.Mol:
    """Molecule whose atoms follow the XYZ order, with bond orders and charges from ``smiles``.

    The heavy-atom graph of the SMILES is matched (as a subgraph, so that close contacts in
    strained cages such as bicyclo[1.1.1]pentane do no harm) onto the geometry's distance graph
    (d < 1.3 × sum of covalent radii). Every hydrogen goes to its nearest heavy atom and the
    hydrogen counts must agree with the SMILES. Of several matches, the one with the shortest
    longest bond (relative to covalent radii) wins. Raises ``MoleculeError`` when the geometry
    does not carry the SMILES's constitution.
    """
    tmpl = Chem.RemoveHs(parse_smiles(smiles))
    x = np.asarray(coords, dtype=np.float64)
    els = [str(e) for e in elements]
    n = len(els)
    if x.shape != (n, 3):
        raise MoleculeError(f"bad geometry: coords shape {x.shape} for {n} atoms ({smiles})")
    if not np.all(np.isfinite(x)):
        raise MoleculeError(f"bad geometry: non-finite coordinates ({smiles})")
    heavy = [k for k, e in enumerate(els) if e != "H"]
    hyd = [k for k, e in enumerate(els) if e == "H"]
    t_heavy = sorted(a.GetSymbol() for a in tmpl.GetAtoms())
    n_h = sum(a.GetTotalNumHs() for a in tmpl.GetAtoms())
    if sorted(els[k] for k in heavy) != t_heavy or len(hyd) != n_h:
        raise MoleculeError(f"XYZ/SMILES mismatch: XYZ atoms differ from the formula of {smiles}")

    rcov = np.array([_PT.GetRcovalent(e) for e in els])
    dist = np.linalg.norm(x[:, None] - x[None], axis=-1)  # (N, N)
    off_diag = dist[~np.eye(n, dtype=bool)]
    if off_diag.size and off_diag.min() < MIN_ATOM_DISTANCE:
        raise MoleculeError(f"bad geometry: atoms closer than {MIN_ATOM_DISTANCE} Å ({smiles})")
    ratio = dist / (rcov[:, None] + rcov[None, :])
    # Hydrogens: nearest heavy atom.
    h_parent = np.array([heavy[int(np.argmin(ratio[h, heavy]))] for h in hyd], dtype=int)
    if len(hyd) and ratio[hyd, h_parent].max() > BOND_LENGTH_FACTOR:
        raise MoleculeError(f"XYZ/SMILES mismatch: a hydrogen has no bonded partner in {smiles}")
    h_count = np.bincount(h_parent, minlength=n)

    # Geometry graph of the heavy atoms, as an unsanitised RDKit molecule (single bonds only).
    geo = Chem.RWMol()
    for k in heavy:
        a = Chem.Atom(els[k])
        a.SetNoImplicit(True)
        geo.AddAtom(a)
    for p, i in enumerate(heavy):
        for q in range(p + 1, len(heavy)):
            if ratio[i, heavy[q]] < BOND_LENGTH_FACTOR:
                geo.AddBond(p, q, Chem.BondType.SINGLE)
    query = Chem.RWMol()
    for a in tmpl.GetAtoms():
        b = Chem.Atom(a.GetAtomicNum())
        b.SetNoImplicit(True)
        query.AddAtom(b)
    for b in tmpl.GetBonds():
        query.AddBond(b.GetBeginAtomIdx(), b.GetEndAtomIdx(), Chem.BondType.SINGLE)
    geo_m, query_m = geo.GetMol(), query.GetMol()
    for m in (geo_m, query_m):
        m.UpdatePropertyCache(strict=False)
        Chem.FastFindRings(m)
    matches = geo_m.GetSubstructMatches(query_m, uniquify=False, maxMatches=5000)
    best, best_score = None, np.inf
    t_h = np.array([a.GetTotalNumHs() for a in tmpl.GetAtoms()])
    bonds_t = np.array([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in tmpl.GetBonds()])
    for mt in matches:
        idx = np.array([heavy[p] for p in mt])  # template atom → XYZ index
        if not np.array_equal(h_count[idx], t_h):
            continue
        score = ratio[idx[bonds_t[:, 0]], idx[bonds_t[:, 1]]].max() if len(bonds_t) else 0.0
        if score < best_score:
            best, best_score = idx, score
    if best is None:
        raise MoleculeError(f"XYZ/SMILES mismatch: geometry does not carry the bonds of {smiles}")

    rw = Chem.RWMol()
    for e in els:
        a = Chem.Atom(e)
        a.SetNoImplicit(True)
        rw.AddAtom(a)
    for ta in tmpl.GetAtoms():
        a = rw.GetAtomWithIdx(int(best[ta.GetIdx()]))
        a.SetFormalCharge(ta.GetFormalCharge())
        a.SetNumRadicalElectrons(ta.GetNumRadicalElectrons())
        a.SetIsAromatic(ta.GetIsAromatic())
    for tb in tmpl.GetBonds():
        i, j = int(best[tb.GetBeginAtomIdx()]), int(best[tb.GetEndAtomIdx()])
        rw.AddBond(i, j, tb.GetBondType())
        rw.GetBondBetweenAtoms(i, j).SetIsAromatic(tb.GetIsAromatic())
    for h, p in zip(hyd, h_parent, strict=True):
        rw.AddBond(int(h), int(p), Chem.BondType.SINGLE)
    mol = rw.GetMol()
    try:
        Chem.SanitizeMol(mol)
    except Exception as e:  # noqa: BLE001 - RDKit raises several types here
        raise MoleculeError(f"XYZ/SMILES mismatch: cannot sanitise {smiles} ({e})") from None
    conf = Chem.Conformer(n)
    for k in range(n):
        conf.SetAtomPosition(k, x[k].tolist())
    mol.AddConformer(conf, assignId=True)
    Chem.AssignStereochemistryFrom3D(mol)
    return mol


def build_molecule(inp: MoleculeInput, physics: PhysicsConfig) -> Chem.Mol:
    """RDKit molecule with explicit hydrogens and a starting geometry for ``inp``."""
    if inp.elements is not None and inp.coords is not None:
        return molecule_from_xyz(inp.elements, inp.coords, inp.smiles)
    return molecule_from_smiles(inp.smiles, physics.embed_seed, physics.n_conformers)


# ----------------------------------------------------------------------------- force field


def mmff_optimise(
    mol: Chem.Mol, physics: PhysicsConfig
) -> tuple[rdForceFieldHelpers.ForceField, np.ndarray]:
    """MMFF94 force field of ``mol`` and its tightly optimised geometry (N, 3) Å.

    The optimiser is restarted (alternating two tolerance settings, see ``_MINIMIZER_TOLS``)
    until the RMS gradient is below ``physics.opt_grad_tol`` or ``physics.opt_max_iters``
    iterations are spent; the conformer is updated in place.
    """
    with rdBase.BlockLogs():
        props = rdForceFieldHelpers.MMFFGetMoleculeProperties(mol, mmffVariant="MMFF94")
    if props is None:
        raise SimulationError(
            f"MMFF94 atom types missing: {Chem.MolToSmiles(Chem.RemoveHs(mol))} (level 'xtb' "
            "needs no force field)"
        )
    ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(
        mol, props, ignoreInterfragInteractions=False
    )
    if ff is None:
        raise SimulationError(f"MMFF94 setup failed: {Chem.MolToSmiles(mol)}")
    ff.Initialize()
    spent, rms, attempt = 0, np.inf, 0
    while spent < physics.opt_max_iters:
        its = min(1000, physics.opt_max_iters - spent)
        force_tol, energy_tol = _MINIMIZER_TOLS[attempt % len(_MINIMIZER_TOLS)]
        ff.Minimize(maxIts=its, forceTol=force_tol, energyTol=energy_tol)
        spent += its
        attempt += 1
        x = np.array(ff.Positions())
        ff.CalcEnergy(x.tolist())
        rms = float(np.sqrt(np.mean(np.square(ff.CalcGrad(x.tolist())))))
        if rms < physics.opt_grad_tol or not np.isfinite(rms):
            break
    if not rms < physics.opt_grad_tol:
        raise SimulationError(
            f"MMFF94 optimisation did not converge: RMS gradient {rms:.2e} kcal/mol/Å "
            f"within {spent} iterations"
        )
    xyz = np.array(ff.Positions()).reshape(-1, 3)
    conf = mol.GetConformer()
    for k, p in enumerate(xyz):
        conf.SetAtomPosition(k, p.tolist())
    return ff, xyz


def _grad(ff: rdForceFieldHelpers.ForceField, x: np.ndarray) -> np.ndarray:
    pos = x.tolist()
    ff.CalcEnergy(pos)  # CalcGrad(pos) is only right after CalcEnergy on the same positions
    return np.asarray(ff.CalcGrad(pos))


def hessian_fd(ff: rdForceFieldHelpers.ForceField, x: np.ndarray, step: float) -> np.ndarray:
    """(3N, 3N) Hessian (kcal/mol/Å²) by central differences of the analytic gradient (6N calls)."""
    x0 = np.asarray(x, dtype=np.float64).reshape(-1)
    h = np.empty((x0.size, x0.size))
    for j in range(x0.size):
        xp, xm = x0.copy(), x0.copy()
        xp[j] += step
        xm[j] -= step
        h[:, j] = (_grad(ff, xp) - _grad(ff, xm)) / (2.0 * step)
    return 0.5 * (h + h.T)


def hessian_fd_energy(ff: rdForceFieldHelpers.ForceField, x: np.ndarray, step: float) -> np.ndarray:
    """Slow reference: (3N, 3N) Hessian from energies only (central second differences)."""
    x0 = np.asarray(x, dtype=np.float64).reshape(-1)
    m = x0.size

    def e(dx: dict[int, float]) -> float:
        y = x0.copy()
        for k, v in dx.items():
            y[k] += v
        return ff.CalcEnergy(y.tolist())

    e0 = e({})
    h = np.empty((m, m))
    for i in range(m):
        h[i, i] = (e({i: step}) - 2 * e0 + e({i: -step})) / step**2
        for j in range(i):
            h[i, j] = h[j, i] = (
                e({i: step, j: step})
                - e({i: step, j: -step})
                - e({i: -step, j: step})
                + e({i: -step, j: -step})
            ) / (4 * step**2)
    return h


def atomic_masses(mol: Chem.Mol) -> np.ndarray:
    """(N,) masses (amu) of the most common isotopes, as in the harmonic analyses of QM9."""
    return vib_atomic_masses([a.GetAtomicNum() for a in mol.GetAtoms()])


# ----------------------------------------------------------------------------- normal modes


@dataclass
class NormalModes:
    """Harmonic normal modes.

    ``freqs`` (K,) cm⁻¹ ascending (negative = imaginary); ``l_mw`` (3N, K) orthonormal
    mass-weighted eigenvectors; ``cart`` (3N, K) Cartesian displacements L = l/√m (Å per
    Å·√amu, i.e. per unit mass-weighted normal coordinate); ``linear`` whether 3N−5 modes.
    """

    freqs: np.ndarray
    l_mw: np.ndarray
    cart: np.ndarray
    linear: bool


def normal_modes(
    hessian: np.ndarray, masses: np.ndarray, coords: np.ndarray, linear: bool
) -> NormalModes:
    """Vibrational modes of a Cartesian Hessian (kcal/mol/Å²), rigid motions projected out."""
    freqs, l_mw, cart = harmonic_modes(hessian, masses, coords, linear, HESSIAN_TO_CM)
    return NormalModes(freqs=freqs, l_mw=l_mw, cart=cart, linear=linear)


def symmetry_adapt(
    modes: NormalModes,
    hessian: np.ndarray,
    masses: np.ndarray,
    perm: np.ndarray,
    degeneracy_tol_cm: float,
) -> NormalModes:
    """Make every mode of a centrosymmetric molecule g or u (docs/DESIGN.md §2.1, degenerate modes).

    ``perm`` is the inversion permutation of the atoms. Inside each block of modes whose
    neighbouring frequencies differ by less than ``degeneracy_tol_cm``, the inversion operator
    P (P v)_{perm(i)} = −v_i (mass-weighted; equal atoms have equal masses) is diagonalised and
    the block rotated onto its eigenvectors; frequencies become the Rayleigh quotients.
    """
    n = len(perm)
    p = np.zeros((3 * n, 3 * n))
    for i, j in enumerate(perm):
        p[3 * j : 3 * j + 3, 3 * i : 3 * i + 3] = -np.eye(3)
    f = modes.freqs
    l_mw = modes.l_mw.copy()
    edges = np.flatnonzero(np.diff(f) >= degeneracy_tol_cm) + 1
    inv_sm = 1.0 / np.sqrt(np.repeat(masses, 3))
    h_mw = hessian * inv_sm[:, None] * inv_sm[None, :]
    lam = np.sign(f) * (f / HESSIAN_TO_CM) ** 2
    for block in np.split(np.arange(len(f)), edges):
        if len(block) < 2:
            continue
        lb = l_mw[:, block]
        s = lb.T @ p @ lb
        _, u = np.linalg.eigh(0.5 * (s + s.T))
        lb = lb @ u
        l_mw[:, block] = lb
        lam[block] = np.einsum("ik,ij,jk->k", lb, h_mw, lb)
    order = np.argsort(lam, kind="stable")
    l_mw, lam = l_mw[:, order], lam[order]
    freqs = np.sign(lam) * np.sqrt(np.abs(lam)) * HESSIAN_TO_CM
    return NormalModes(freqs=freqs, l_mw=l_mw, cart=l_mw * inv_sm[:, None], linear=modes.linear)


def symmetrize_inversion(
    perm: np.ndarray,
    coords: np.ndarray,
    hessian: np.ndarray,
    apt: np.ndarray | None = None,
    dalpha: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Impose the inversion symmetry that numerical noise breaks (GFN2-xTB path).

    ``perm`` is the inversion permutation (an involution). With c the centroid and P the
    inversion (P v)_{perm(i)} = −v_i: coordinates x_i → (x_i + 2c − x_perm(i))/2; Hessian
    H → (H + P H Pᵀ)/2; dipole derivatives (3N, 3), a g quantity per atom pair,
    ∂μ/∂x_i → (∂μ/∂x_i + ∂μ/∂x_perm(i))/2; polarizability derivatives (3N, 3, 3),
    ∂α/∂x_i → (∂α/∂x_i − ∂α/∂x_perm(i))/2 (α is invariant under inversion, so a central atom
    gets 0). On the symmetrised quantities every mode is g or u and the mutual exclusion of IR
    and Raman activity is exact, instead of holding only up to the SCF/finite-difference noise.
    """
    perm = np.asarray(perm)
    n = len(perm)
    if not np.array_equal(perm[perm], np.arange(n)):
        raise ValueError("the inversion permutation must be its own inverse")
    x = np.asarray(coords, dtype=np.float64)
    c = x.mean(axis=0)
    x_sym = 0.5 * (x + 2.0 * c - x[perm])
    idx = (3 * perm[:, None] + np.arange(3)[None, :]).reshape(-1)  # coordinate of perm(atom)
    h = np.asarray(hessian, dtype=np.float64)
    h_sym = 0.5 * (h + h[np.ix_(idx, idx)])  # P H Pᵀ: the signs cancel in pairs
    apt_sym = dalpha_sym = None
    if apt is not None:
        a = np.asarray(apt, dtype=np.float64).reshape(n, 3, 3)
        apt_sym = (0.5 * (a + a[perm])).reshape(3 * n, 3)
    if dalpha is not None:
        d = np.asarray(dalpha, dtype=np.float64).reshape(n, 3, 3, 3)
        dalpha_sym = (0.5 * (d - d[perm])).reshape(3 * n, 3, 3)
    return x_sym, h_sym, apt_sym, dalpha_sym


def optimise_to_minimum(
    mol: Chem.Mol, physics: PhysicsConfig, timings: dict[str, float] | None = None
) -> tuple[rdForceFieldHelpers.ForceField, np.ndarray, np.ndarray, NormalModes]:
    """MMFF94 minimum of ``mol``: force field, geometry (N, 3), Hessian and normal modes.

    A stationary point with a frequency below −``physics.imag_tol_cm`` is a saddle (typically a
    symmetric one inherited from the starting geometry, e.g. an eclipsed methyl group): the
    geometry is displaced along the most imaginary mode (largest atom step
    ``physics.saddle_step`` Å) and re-optimised, up to ``physics.saddle_escapes`` times, before
    the molecule is rejected with ``SimulationError``.
    """
    masses = atomic_masses(mol)
    for attempt in range(physics.saddle_escapes + 1):
        with _timed(timings, "optimise"):
            ff, x = mmff_optimise(mol, physics)
        with _timed(timings, "hessian"):
            hess = hessian_fd(ff, x, physics.fd_step)
        with _timed(timings, "modes"):
            modes = normal_modes(hess, masses, x, is_linear(x, physics.symmetry_tol))
        if modes.freqs.size == 0 or modes.freqs[0] >= -physics.imag_tol_cm:
            return ff, x, hess, modes
        if attempt < physics.saddle_escapes:
            step = modes.cart[:, 0].reshape(-1, 3)
            step *= physics.saddle_step / np.linalg.norm(step, axis=1).max()
            conf = mol.GetConformer()
            for k, p in enumerate(x + step):
                conf.SetAtomPosition(k, p.tolist())
    raise SimulationError(
        f"imaginary frequency: {modes.freqs[0]:.1f} cm-1 at the MMFF94 stationary point "
        f"after {physics.saddle_escapes} saddle escapes"
    )


# ----------------------------------------------------------------------------- IR


def _mmff_charges(mol: Chem.Mol) -> np.ndarray | None:
    """MMFF94 bond-charge-increment charges (N,) e, or None where MMFF94 cannot type ``mol``."""
    with rdBase.BlockLogs():
        props = rdForceFieldHelpers.MMFFGetMoleculeProperties(mol, mmffVariant="MMFF94")
    if props is None:
        return None
    return np.array([props.GetMMFFPartialCharge(i) for i in range(mol.GetNumAtoms())])


def atomic_charges(
    mol: Chem.Mol, inp: MoleculeInput, physics: PhysicsConfig
) -> tuple[np.ndarray, str]:
    """(N,) charges (e) for IR intensities and the label recorded in the store.

    ``physics.charges == "auto"``: the DFT Mulliken charges of the QM9 row when given (checked to
    sum to the molecular charge within ``physics.mulliken_sum_tol``), else Gasteiger. The tiny
    remainder of the sum is spread evenly so the dipole does not depend on the origin.
    """
    n = mol.GetNumAtoms()
    total = sum(a.GetFormalCharge() for a in mol.GetAtoms())
    if physics.charges == "auto" and inp.charges is not None:
        q = np.asarray(inp.charges, dtype=np.float64).reshape(-1)
        if q.shape != (n,):
            raise MoleculeError(f"Mulliken charges: {q.size} values for {n} atoms ({inp.smiles})")
        if not np.all(np.isfinite(q)) or abs(q.sum() - total) > physics.mulliken_sum_tol:
            raise MoleculeError(
                f"Mulliken charges: sum {q.sum():.4f} e, molecular charge {total} ({inp.smiles})"
            )
        label = "mulliken-dft"
    elif physics.charges == "mmff":
        q = _mmff_charges(mol)
        if q is None:
            raise SimulationError(f"MMFF94 atom types missing: {inp.smiles}")
        label = "mmff94 (C-H silent)"
    else:
        m = Chem.Mol(mol)
        rdPartialCharges.ComputeGasteigerCharges(m)
        q = np.array([a.GetDoubleProp("_GasteigerCharge") for a in m.GetAtoms()])
        label = "gasteiger (C-H weak)"
        if not np.all(np.isfinite(q)):
            # Gasteiger has no parameters for some atom types (e.g. the carbanion of C≡O):
            # MMFF94's bond-charge-increment charges where MMFF94 types the molecule.
            q = _mmff_charges(mol) if physics.charges == "auto" else None
            if q is None:
                why = "Gasteiger undefined" + (
                    ", no MMFF94 types" if physics.charges == "auto" else ""
                )
                raise SimulationError(
                    f"no fixed-charge model for {inp.smiles} ({why}; the xtb level computes its "
                    "own dipole derivatives)"
                )
            label = "mmff94 (Gasteiger undefined; C-H silent)"
    return q - (q.sum() - total) / n, label


def dipole_derivatives(charges: np.ndarray, modes: NormalModes) -> np.ndarray:
    """(K, 3) dμ/dQ_k = Σ_i q_i L_ik in e/√amu (fixed charges, no charge flux)."""
    n = len(charges)
    return np.einsum("i,ick->kc", charges, modes.cart.reshape(n, 3, -1))


def ir_intensities(charges: np.ndarray, modes: NormalModes) -> np.ndarray:
    """(K,) IR intensities in km/mol."""
    return ir_intensity(dipole_derivatives(charges, modes) * E_ANGSTROM_TO_DEBYE)


# ----------------------------------------------------------------------------- Raman


@dataclass
class BondTable:
    """Bonds of a molecule for the polarizability model (arrays of length B)."""

    i: np.ndarray  # atom indices
    j: np.ndarray
    order: np.ndarray  # RDKit bond order: 1, 1.5 (aromatic), 2, 3
    alpha_i: np.ndarray  # atomic polarizabilities (Å³)
    alpha_j: np.ndarray
    x_i: np.ndarray  # reduced electronegativities
    x_j: np.ndarray
    factor: np.ndarray  # bond factor f_b on α∥ (1 = raw Lippincott–Stuttman)


def bond_key(el1: str, el2: str, order: float) -> str:
    """Key of ``RAMAN_BOND_FACTOR``: elements in alphabetical order and the bond symbol."""
    a, b = sorted((el1, el2))
    return f"{a}{_BOND_SYMBOL.get(float(order), '?')}{b}"


def _factor(factors: Mapping[str, float], e1: str, e2: str, order: float) -> float:
    key = bond_key(e1, e2, order)
    if key in factors:
        return factors[key]
    if "H" in (e1, e2):
        return 1.0
    fallback = _ORDER_FALLBACK.get(_BOND_SYMBOL.get(float(order), "?"))
    return factors.get(fallback, 1.0) if fallback else 1.0


def bond_table(mol: Chem.Mol, factors: Mapping[str, float] | None = None) -> BondTable:
    """Bonds of ``mol`` with their Lippincott–Stuttman parameters and bond factors.

    ``factors`` maps ``bond_key`` strings to f_b; a bond between heavy atoms without an entry
    takes the C–C entry of its order, other missing ones 1. None gives the raw model.
    ``simulate_molecule`` passes ``RAMAN_BOND_FACTOR``.
    """
    rows = []
    for b in mol.GetBonds():
        a1, a2 = b.GetBeginAtom(), b.GetEndAtom()
        for a in (a1, a2):
            if a.GetSymbol() not in LS_ATOMIC_POLARIZABILITY:
                raise SimulationError(f"no bond polarizability parameters for {a.GetSymbol()}")
        e1, e2, order = a1.GetSymbol(), a2.GetSymbol(), b.GetBondTypeAsDouble()
        f = 1.0 if factors is None else _factor(factors, e1, e2, order)
        rows.append((a1.GetIdx(), a2.GetIdx(), order, e1, e2, f))
    if not rows:
        raise SimulationError("no bonds: nothing to polarise")
    i, j, order, e1, e2, f = zip(*rows, strict=True)
    return BondTable(
        i=np.array(i),
        j=np.array(j),
        order=np.array(order, dtype=np.float64),
        alpha_i=np.array([LS_ATOMIC_POLARIZABILITY[e] for e in e1]),
        alpha_j=np.array([LS_ATOMIC_POLARIZABILITY[e] for e in e2]),
        x_i=np.array([LS_REDUCED_ELECTRONEGATIVITY[e] for e in e1]),
        x_j=np.array([LS_REDUCED_ELECTRONEGATIVITY[e] for e in e2]),
        factor=np.array(f, dtype=np.float64),
    )


def _bond_terms(
    bonds: BondTable, coords: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(coords, dtype=np.float64).reshape(-1, 3)
    r = x[bonds.j] - x[bonds.i]  # (B, 3)
    length = np.linalg.norm(r, axis=1)  # (B,)
    e = r / length[:, None]
    sigma = np.exp(-((bonds.x_i - bonds.x_j) ** 2) / 4.0)
    a_par = (
        bonds.factor * sigma * length**4 / (4.0**4 * bonds.alpha_i * bonds.alpha_j) ** (1.0 / 6.0)
    )
    xi2, xj2 = bonds.x_i**2, bonds.x_j**2
    a_perp = (xi2 * bonds.alpha_i + xj2 * bonds.alpha_j) / (xi2 + xj2)
    return e, length, a_par, a_perp


def bond_polarizability(bonds: BondTable, coords: np.ndarray) -> np.ndarray:
    """(3, 3) molecular polarizability (Å³) of the bond model at ``coords`` (N, 3)."""
    e, _, a_par, a_perp = _bond_terms(bonds, coords)
    return a_perp.sum() * np.eye(3) + np.einsum("b,bi,bj->ij", a_par - a_perp, e, e)


def polarizability_gradient(bonds: BondTable, coords: np.ndarray) -> np.ndarray:
    """(3N, 3, 3) analytic ∂α_ab/∂x_ic of ``bond_polarizability`` (Å²).

    For r = x_j − x_i, L = |r|, ê = r/L: ∂α_ab/∂r_c = (∂α∥/∂L) ê_c ê_a ê_b
    + (α∥ − α⊥)/L (δ_ac ê_b + ê_a δ_bc − 2 ê_a ê_b ê_c), with ∂α∥/∂L = 4 α∥/L.
    """
    n = len(np.asarray(coords).reshape(-1, 3))
    e, length, a_par, a_perp = _bond_terms(bonds, coords)
    c1 = (4.0 * a_par - 2.0 * (a_par - a_perp)) / length  # (B,)
    c2 = (a_par - a_perp) / length  # (B,)
    eye = np.eye(3)
    t = c1[:, None, None, None] * np.einsum("bc,ba,bd->bcad", e, e, e)  # (B, c, a, b)
    t += c2[:, None, None, None] * (
        np.einsum("ca,bd->bcad", eye, e) + np.einsum("ba,cd->bcad", e, eye)
    )
    inc = np.zeros((n, len(length)))  # (N, B) incidence: +1 at j, −1 at i
    inc[bonds.j, np.arange(len(length))] = 1.0
    inc[bonds.i, np.arange(len(length))] = -1.0
    return np.einsum("nb,bcad->ncad", inc, t).reshape(3 * n, 3, 3)


def raman_activities(dalpha_dx: np.ndarray, modes: NormalModes) -> np.ndarray:
    """(K,) Raman activities 45 a'² + 7 γ'² (Å⁴/amu) from ∂α/∂x (3N, 3, 3)."""
    da = np.einsum("mab,mk->kab", dalpha_dx, modes.cart)  # (K, 3, 3) Å²/√amu
    return raman_activity(
        da[:, 0, 0], da[:, 0, 1], da[:, 1, 1], da[:, 0, 2], da[:, 1, 2], da[:, 2, 2]
    )


# ----------------------------------------------------------------------------- driver


def _inchikey(inp: MoleculeInput, mol: Chem.Mol) -> str:
    key = Chem.InchiToInchiKey(inp.inchi) if inp.inchi else None
    if not key:
        key = Chem.MolToInchiKey(Chem.RemoveHs(mol))
    if not key:
        raise MoleculeError(f"no InChIKey: {inp.smiles}")
    return key


def ion_note(net_charge: int) -> str:
    """How a charged species is simulated, for its record and the generation report."""
    return f"ion, net charge {net_charge:+d}: simulated isolated (no counter-ion, no solvent)"


HYBRID_LEVELS = ("hybrid", "mmff-hybrid", "fast-hybrid")
XTB_LEVELS = ("xtb", "hybrid")
LEVEL_CHARGE_MODEL = {"xtb": "GFN2-xTB dipole derivatives", "hybrid": "GFN2-xTB dipole derivatives"}


def _mmff_level(
    mol: Chem.Mol, inp: MoleculeInput, physics: PhysicsConfig, timings: dict[str, float] | None
) -> tuple[np.ndarray, np.ndarray, NormalModes, Any, str]:
    """MMFF94 geometry, Hessian and modes; fixed-charge IR and bond-polarizability Raman."""
    # Charges and bond parameters do not depend on the geometry: fail early on them.
    with _timed(timings, "ir"):
        q, charge_model = atomic_charges(mol, inp, physics)
    with _timed(timings, "raman"):
        bonds = bond_table(mol, RAMAN_BOND_FACTOR if physics.raman_bond_correction else None)
    _, x, hess, modes = optimise_to_minimum(mol, physics, timings)

    def intensities(m: NormalModes, perm: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        # MMFF's analytic minimum keeps the inversion symmetry exactly: nothing to impose.
        with _timed(timings, "ir"):
            ir = ir_intensities(q, m)
        with _timed(timings, "raman"):
            raman = raman_activities(polarizability_gradient(bonds, x), m)
        return ir, raman

    return x, hess, modes, intensities, charge_model


def _xtb_level(
    mol: Chem.Mol, inp: MoleculeInput, physics: PhysicsConfig, timings: dict[str, float] | None
) -> tuple[np.ndarray, np.ndarray, NormalModes, Any, str]:
    """GFN2-xTB (tblite) geometry, Hessian and modes, IR from dipole derivatives and Raman from
    polarizability derivatives (both by electric-field derivatives of the gradient).

    The start geometry is QM9's DFT geometry, or for user SMILES the MMFF94 minimum."""
    from spektron.chemistry.xtb import XtbSettings, xtb_ir_raman, xtb_vibrations

    x0 = mol.GetConformer().GetPositions()  # (N, 3) Å
    if inp.coords is None and rdForceFieldHelpers.MMFFHasAllMoleculeParams(mol):
        with _timed(timings, "optimise"):
            _, x0 = mmff_optimise(mol, physics)
    # (Without MMFF94 types, e.g. C≡O or selenides, xTB optimises from the ETKDG embedding.)
    settings = XtbSettings(
        accuracy=physics.xtb_accuracy,
        field_step=physics.xtb_field_step,
        hessian_step=physics.xtb_hessian_step,
    )
    numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
    charge = Chem.GetFormalCharge(mol)
    masses = atomic_masses(mol)
    # As for MMFF: a stationary point with an imaginary mode (a rotor left on a saddle) is left
    # along that mode and re-optimised, up to physics.saddle_escapes times.
    for attempt in range(physics.saddle_escapes + 1):
        with _timed(timings, "hessian"):
            vib = xtb_vibrations(numbers, x0, charge=charge, settings=settings)
        x = vib.coords
        with _timed(timings, "modes"):
            modes = normal_modes(vib.hessian, masses, x, is_linear(x, physics.symmetry_tol))
        if modes.freqs.size == 0 or modes.freqs[0] >= -physics.imag_tol_cm:
            break
        if attempt == physics.saddle_escapes:
            raise SimulationError(
                f"imaginary frequency: {modes.freqs[0]:.1f} cm-1 at the GFN2-xTB stationary "
                f"point after {physics.saddle_escapes} saddle escapes"
            )
        step = modes.cart[:, 0].reshape(-1, 3)
        x0 = x + step * (physics.saddle_step / np.linalg.norm(step, axis=1).max())

    bonds = None
    if physics.xtb_raman == "bond":
        with _timed(timings, "raman"):
            bonds = bond_table(mol, RAMAN_BOND_FACTOR if physics.raman_bond_correction else None)

    def intensities(m: NormalModes, perm: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        v, xr = vib, vib.coords
        if perm is not None:
            xr, _, apt, dalpha = symmetrize_inversion(
                perm,
                vib.coords,
                vib.hessian,
                vib.dipole_derivatives,
                vib.polarizability_derivatives,
            )
            v = replace(vib, dipole_derivatives=apt, polarizability_derivatives=dalpha)
        with _timed(timings, "ir"):
            ir, raman = xtb_ir_raman(v, m)
        if bonds is not None:  # bond-polarizability Raman on the xtb geometry and modes
            with _timed(timings, "raman"):
                raman = raman_activities(polarizability_gradient(bonds, xr), m)
        return ir, raman

    return x, vib.hessian, modes, intensities, LEVEL_CHARGE_MODEL["xtb"]


def _fast_hybrid_level(
    mol: Chem.Mol, inp: MoleculeInput, physics: PhysicsConfig, timings: dict[str, float] | None
) -> tuple[np.ndarray, np.ndarray, NormalModes, Any, str]:
    """MMFF94 geometry and modes (frequencies replaced by QM9's DFT ones later), IR from
    GFN2-xTB atomic polar tensors at QM9's DFT geometry, bond-polarizability Raman.

    The APTs take 6 field single points at one geometry: no xTB optimisation (~54 single points
    on QM9-sized molecules) and no xTB Hessian (6N). They are rotated into the frame of the
    MMFF94 minimum (mass-weighted Kabsch alignment of the DFT geometry onto it) before they
    meet its modes.
    """
    from spektron.chemistry.xtb import XtbSettings, xtb_dipole_derivatives

    x, hess, modes, mmff_intensities, _ = _mmff_level(mol, inp, physics, timings)
    numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
    x_dft = np.asarray(inp.coords, dtype=np.float64)
    settings = XtbSettings(accuracy=physics.xtb_accuracy, field_step=physics.xtb_field_step)
    with _timed(timings, "ir"):
        apt, _ = xtb_dipole_derivatives(numbers, x_dft, Chem.GetFormalCharge(mol), settings)
        rot = kabsch_rotation(x_dft, x, atomic_masses(mol))  # DFT frame → MMFF frame
        # ∂μ/∂x transforms as a tensor: both the dipole and the displacement axes rotate.
        apt = np.einsum("ij,ajk,lk->ail", rot, apt.reshape(-1, 3, 3), rot).reshape(-1, 3)

    def intensities(m: NormalModes, perm: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        _, raman = mmff_intensities(m, perm)
        a = apt if perm is None else symmetrize_inversion(perm, x, hess, apt)[2]
        with _timed(timings, "ir"):
            ir = ir_intensity((m.cart.T @ a) * E_ANGSTROM_TO_DEBYE)
        return ir, raman

    return x, hess, modes, intensities, "GFN2-xTB APTs at the DFT geometry"


def _with_dft_frequencies(
    modes: NormalModes, inp: MoleculeInput, physics: PhysicsConfig
) -> NormalModes:
    """The level's modes with QM9's DFT harmonic frequencies × ``dft_freq_scale``, matched in
    sorted order (mode k keeps its intensities and gets the k-th lowest DFT frequency)."""
    dft = np.sort(np.asarray(inp.dft_freqs, dtype=np.float64)) * physics.dft_freq_scale
    if len(dft) != len(modes.freqs):
        raise SimulationError(
            f"{inp.smiles!r}: {len(dft)} DFT frequencies for {len(modes.freqs)} modes"
        )
    order = np.argsort(modes.freqs, kind="stable")
    freqs = np.empty_like(modes.freqs)
    freqs[order] = dft
    return NormalModes(freqs=freqs, l_mw=modes.l_mw, cart=modes.cart, linear=modes.linear)


def simulate_molecule(
    inp: MoleculeInput,
    physics: PhysicsConfig,
    grid: np.ndarray,
    timings: dict[str, float] | None = None,
    details: dict[str, Any] | None = None,
) -> SpectrumRecord:
    """Simulate one molecule's IR and Raman spectra (see the module docstring).

    Parameters
    ----------
    inp : the molecule (QM9 row with geometry and charges, or a user SMILES).
    physics : physics settings.
    grid : (L,) wavenumbers (cm⁻¹) of the broadened spectra.
    timings : when given, seconds per stage are added to it (keys ``build``, ``optimise``,
        ``hessian``, ``modes``, ``symmetry``, ``ir``, ``raman``, ``broaden``, ``annotate``).
    details : when given, filled with what the record leaves out: ``coords`` (N, 3) Å, the
        level's final geometry; ``masses`` (N,) amu; ``modes`` (``NormalModes``, in the order of
        the record's sticks, with the level's final frequencies); ``net_charge`` (int, the
        formal charge, noted in the record's ``charge_model`` when not 0). Used by the
        validation against DFT (``spektron.data.validate``), which matches modes by
        eigenvector overlap, and by the generation report (ions).

    Raises
    ------
    MoleculeError : invalid SMILES or a QM9 row whose geometry/charges do not fit it.
    SimulationError : embedding/optimisation failure, imaginary modes, missing parameters,
        non-finite results, or any unexpected error of the libraries underneath (chained).
    """
    try:
        return _simulate(inp, physics, grid, timings, details)
    except SpektronError:
        raise
    except Exception as e:  # noqa: BLE001 - a batch run needs typed, countable failures
        raise SimulationError(f"unexpected {type(e).__name__}: {e}") from e


def _simulate(
    inp: MoleculeInput,
    physics: PhysicsConfig,
    grid: np.ndarray,
    timings: dict[str, float] | None,
    details: dict[str, Any] | None = None,
) -> SpectrumRecord:
    level = physics.level
    if level in HYBRID_LEVELS and inp.dft_freqs is None:
        raise SimulationError(
            f"level {level!r} needs QM9's DFT frequencies; {inp.smiles!r} is not a QM9 molecule "
            "(no QM9 row has its InChIKey, or data.qm9_lookup is off): use level 'mmff' or 'xtb'"
        )
    with _timed(timings, "build"):
        mol = build_molecule(inp, physics)
    n = mol.GetNumAtoms()
    if n < 2:
        raise SimulationError(f"no vibrations: {inp.smiles!r} has a single atom")
    check_elements(mol, level)
    symbols = [a.GetSymbol() for a in mol.GetAtoms()]
    masses = atomic_masses(mol)
    if level in XTB_LEVELS:
        x, hess, modes, intensities, charge_model = _xtb_level(mol, inp, physics, timings)
    elif level == "fast-hybrid":
        x, hess, modes, intensities, charge_model = _fast_hybrid_level(mol, inp, physics, timings)
    else:
        x, hess, modes, intensities, charge_model = _mmff_level(mol, inp, physics, timings)
    with _timed(timings, "symmetry"):
        perm = inversion_permutation(symbols, x, physics.symmetry_tol)
        pg = point_group(symbols, x, physics.symmetry_tol)
        if perm is not None:
            if level in XTB_LEVELS:  # noisy SCF/finite-difference quantities: symmetrise
                x, hess, _, _ = symmetrize_inversion(perm, x, hess)
                modes = normal_modes(hess, masses, x, modes.linear)
            modes = symmetry_adapt(modes, hess, masses, perm, physics.degeneracy_tol_cm)
    ir, raman = intensities(modes, perm)
    if level in HYBRID_LEVELS:
        modes = _with_dft_frequencies(modes, inp, physics)
    with _timed(timings, "broaden"):
        keep = modes.freqs > MIN_BROADENED_FREQ
        ir_spec = lorentzian_broaden(modes.freqs[keep], ir[keep], grid, physics.ir_fwhm)
        ra_spec = lorentzian_broaden(modes.freqs[keep], raman[keep], grid, physics.raman_fwhm)
    with _timed(timings, "annotate"):
        fg = functional_group_flags(mol)
        key = _inchikey(inp, mol)
    arrays = (modes.freqs, ir, raman, ir_spec, ra_spec)
    if not all(np.all(np.isfinite(a)) for a in arrays):
        raise SimulationError(f"non-finite result: spectra of {inp.smiles!r}")
    net_charge = Chem.GetFormalCharge(mol)
    if net_charge:
        charge_model += f"; {ion_note(net_charge)}"
    if details is not None:
        details.update(coords=x, masses=masses, modes=modes, net_charge=net_charge)
    return SpectrumRecord(
        smiles=inp.smiles,
        inchikey=key,
        source_index=inp.source_index,
        ir=ir_spec.astype(np.float32),
        raman=ra_spec.astype(np.float32),
        centrosymmetric=int(perm is not None),
        point_group=pg,
        fg_flags=fg,
        stick_freq=modes.freqs.copy(),
        stick_ir=ir,
        stick_raman=raman,
        n_atoms=n,
        charge_model=charge_model,
        source=inp.source,
    )
