"""Physics of the simulated spectra: modes, selection rules, intensities, Raman model, records."""

from __future__ import annotations

import re

import numpy as np
import pytest
from rdkit import Chem

from spektron.chemistry import simulate as sim
from spektron.chemistry.functional_groups import FUNCTIONAL_GROUP_NAMES
from spektron.chemistry.molecule import MoleculeInput
from spektron.chemistry.spectra import lorentzian_broaden, make_grid
from spektron.chemistry.symmetry import point_group
from spektron.config import PhysicsConfig
from spektron.errors import ConfigError, MoleculeError, SimulationError
from tests.helpers import ACTIVE_FRACTION, both_active, qm9_inputs

PHYS = PhysicsConfig()
GRID = make_grid()


# A mode "carries" IR (Raman) when its intensity exceeds this fraction of the molecule's largest.
# After symmetry adaptation the leakage into forbidden modes is ≤ 1e-12 of the largest (rounding
# of the finite differences); the unadapted g/u mixture of 2-butyne reaches 1.4e-3. 1e-5 sits
# between the two by orders of magnitude on both sides.
def _run(smiles: str, physics: PhysicsConfig = PHYS):
    return sim.simulate_molecule(MoleculeInput(0, smiles), physics, GRID)


def _modes(smiles: str, correct: bool = True):
    """Optimised molecule, normal modes and Raman activities (lower-level API)."""
    mol = sim.molecule_from_smiles(smiles, PHYS.embed_seed)
    ff, x = sim.mmff_optimise(mol, PHYS)
    hess = sim.hessian_fd(ff, x, PHYS.fd_step)
    modes = sim.normal_modes(hess, sim.atomic_masses(mol), x, sim.is_linear(x, PHYS.symmetry_tol))
    raman = sim.raman_activities(
        sim.polarizability_gradient(
            sim.bond_table(mol, sim.RAMAN_BOND_FACTOR if correct else None), x
        ),
        modes,
    )
    return mol, x, modes, raman


def _stretch_mode(x: np.ndarray, modes: sim.NormalModes, i: int, j: int) -> int:
    """Mode that changes the i–j bond length most per unit normal coordinate."""
    e = (x[j] - x[i]) / np.linalg.norm(x[j] - x[i])
    cart = modes.cart.reshape(len(x), 3, -1)
    return int(np.argmax(np.abs(np.einsum("c,ck->k", e, cart[j] - cart[i]))))


def _staggered_2_butyne() -> MoleculeInput:
    """2-butyne in its centrosymmetric D3d conformer (a stationary point by symmetry).

    ETKDG + MMFF94 land on the eclipsed D3h conformer (MMFF's minimum, 3e-5 kcal/mol below
    D3d), so one methyl group is turned by 60° about the C≡C axis; the input then goes through
    the XYZ path (atom order kept).
    """
    mol = sim.molecule_from_smiles("CC#CC", PHYS.embed_seed)
    _, x = sim.mmff_optimise(mol, PHYS)
    h3 = [a.GetIdx() for a in mol.GetAtomWithIdx(3).GetNeighbors() if a.GetSymbol() == "H"]
    ax = (x[3] - x[0]) / np.linalg.norm(x[3] - x[0])
    k = np.array([[0, -ax[2], ax[1]], [ax[2], 0, -ax[0]], [-ax[1], ax[0], 0]])
    rot = np.eye(3) + np.sin(np.pi / 3) * k + (1 - np.cos(np.pi / 3)) * k @ k
    x[h3] = (x[h3] - x[3]) @ rot.T + x[3]
    return MoleculeInput(0, "CC#CC", elements=[a.GetSymbol() for a in mol.GetAtoms()], coords=x)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("bad", ["C1CC", "xyz(", "C(C)(C)(C)(C)C", ""])
def test_bad_smiles_raises_molecule_error_naming_it(bad):
    with pytest.raises(MoleculeError, match=re.escape(repr(bad))):
        _run(bad)


@pytest.mark.parametrize(
    ("coords", "match"),
    [(np.full((3, 3), np.nan), "non-finite"), (np.zeros((3, 3)), "closer than"),
     (np.zeros((2, 3)), "shape"), (3 * np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]),
     "mismatch")],
)  # fmt: skip
def test_malformed_geometry_raises_molecule_error(coords, match):
    inp = MoleculeInput(0, "O", elements=["O", "H", "H"], coords=coords)
    with pytest.raises(MoleculeError, match=match):
        sim.simulate_molecule(inp, PHYS, GRID)


def test_disconnected_smiles_is_rejected_naming_its_fragments():
    with pytest.raises(MoleculeError, match=r"several fragments: 'CCO.O' is 2 .*\(CCO, O\)"):
        _run("CCO.O")
    with pytest.raises(
        MoleculeError, match=r"is 2 separate molecules or ions \(\[Na\+\], \[Cl-\]\)"
    ):
        _run("[Na+].[Cl-]")


@pytest.mark.parametrize(
    ("smiles", "element"), [("C[Se]C", "Se"), ("B(F)(F)F", "B"), ("C[Te]C", "Te")]
)
def test_an_element_mmff94_has_no_parameters_for_is_named(smiles, element):
    with pytest.raises(MoleculeError, match=rf"unsupported element {element}: MMFF94.*'xtb'"):
        _run(smiles)


def test_an_element_beyond_gfn2_is_named_at_xtb():
    mol = sim.parse_smiles("[Fr]C")
    with pytest.raises(MoleculeError, match=r"unsupported element Fr: GFN2-xTB \(parameterised"):
        sim.check_elements(mol, "xtb")
    sim.check_elements(sim.parse_smiles("C[Se]C"), "xtb")  # Se is covered by GFN2-xTB


def test_an_ion_is_simulated_with_a_note_in_its_record():
    details: dict = {}
    rec = sim.simulate_molecule(MoleculeInput(0, "[NH4+]"), PHYS, GRID, details=details)
    assert details["net_charge"] == 1
    assert rec.charge_model.endswith(
        "; ion, net charge +1: simulated isolated (no counter-ion, no solvent)"
    )
    assert "ion" not in _run("CCO").charge_model


def test_imaginary_frequency_beyond_tolerance_is_rejected():
    # Staggered 2-butyne's methyl torsion comes out at about −2 cm⁻¹ (a flat, numerically
    # noisy rotor): accepted with the default tolerance (10 cm⁻¹), rejected with 0.5 cm⁻¹ when
    # no saddle escape is allowed.
    inp = _staggered_2_butyne()
    rec = sim.simulate_molecule(inp, PHYS, GRID)
    assert -PHYS.imag_tol_cm < rec.stick_freq.min() < -0.5
    strict = PhysicsConfig(imag_tol_cm=0.5, saddle_escapes=0)
    with pytest.raises(SimulationError, match="imaginary frequency"):
        sim.simulate_molecule(inp, strict, GRID)


def test_saddle_point_is_escaped_along_the_imaginary_mode():
    # QM9 20584: MMFF94 started from the B3LYP geometry stops on a symmetric saddle (−33 cm⁻¹,
    # methyl rotation); one push along that mode reaches the minimum.
    (inp,) = qm9_inputs([20584])
    with pytest.raises(SimulationError, match="imaginary frequency"):
        sim.simulate_molecule(inp, PhysicsConfig(saddle_escapes=0), GRID)
    rec = sim.simulate_molecule(inp, PHYS, GRID)
    assert rec.stick_freq.min() > 0


# ----------------------------------------------------------------------------- modes


def test_conversion_constant():
    assert sim.HESSIAN_TO_CM == pytest.approx(108.59, abs=0.005)


@pytest.mark.parametrize(
    ("smiles", "n_modes"),
    [("O", 3), ("O=C=O", 4), ("C#C", 7), ("C#N", 4), ("CC", 18), ("c1ccccc1", 30), ("CCO", 21)],
)
def test_mode_count_and_no_imaginary_frequencies(smiles, n_modes):
    rec = _run(smiles)
    assert rec.stick_freq.shape == rec.stick_ir.shape == rec.stick_raman.shape == (n_modes,)
    assert rec.stick_freq.min() > -PHYS.imag_tol_cm
    assert np.all(np.diff(rec.stick_freq) >= 0)


def test_gradient_is_right_after_energy_call():
    # The CalcEnergy-before-CalcGrad gotcha: _grad must match central differences of energies.
    mol = sim.molecule_from_smiles("CC(=O)N", 1)
    ff, x = sim.mmff_optimise(mol, PHYS)
    y = (x + np.random.default_rng(0).normal(scale=0.05, size=x.shape)).reshape(-1)
    g = sim._grad(ff, y)
    h = 1e-5
    num = np.empty_like(y)
    for k in range(y.size):
        d = np.zeros_like(y)
        d[k] = h
        num[k] = (ff.CalcEnergy((y + d).tolist()) - ff.CalcEnergy((y - d).tolist())) / (2 * h)
    np.testing.assert_allclose(g, num, atol=1e-4 * np.abs(num).max())


def test_gradient_hessian_matches_energy_hessian():
    mol = sim.molecule_from_smiles("OC=O", 0)
    ff, x = sim.mmff_optimise(mol, PHYS)
    fast = sim.hessian_fd(ff, x, 1e-3)
    slow = sim.hessian_fd_energy(ff, x, 5e-3)
    assert np.abs(fast - fast.T).max() == 0.0
    np.testing.assert_allclose(fast, slow, atol=2e-3 * np.abs(fast).max())
    m = sim.atomic_masses(mol)
    f_fast = sim.normal_modes(fast, m, x, False).freqs
    f_slow = sim.normal_modes(slow, m, x, False).freqs
    np.testing.assert_allclose(f_fast, f_slow, atol=1.0)


def test_modes_are_orthonormal_and_free_of_rigid_motion():
    mol, x, modes, _ = _modes("CC(O)C#N")
    k = modes.l_mw.shape[1]
    np.testing.assert_allclose(modes.l_mw.T @ modes.l_mw, np.eye(k), atol=1e-10)
    m = sim.atomic_masses(mol)
    cart = modes.cart.reshape(len(x), 3, -1)
    # No net momentum (Σ m_i L_i = 0) and no angular momentum (Σ m_i x_i × L_i = 0).
    np.testing.assert_allclose(np.einsum("i,ick->kc", m, cart), 0, atol=1e-10)
    com = (m[:, None] * x).sum(0) / m.sum()
    ang = np.einsum("i,ick->kc", m, np.cross((x - com)[:, :, None], cart, axisa=1, axisb=1))
    np.testing.assert_allclose(ang, 0, atol=1e-9)


# ----------------------------------------------------------------------------- selection rules


@pytest.mark.parametrize("smiles", ["O=C=O", "C=C", "c1ccccc1", "F/C=C/F"])
def test_mutual_exclusion_for_centrosymmetric_molecules(smiles):
    rec = _run(smiles)
    assert rec.centrosymmetric == 1
    assert not both_active(rec).any()
    assert (rec.stick_ir > ACTIVE_FRACTION * rec.stick_ir.max()).sum() >= 1
    assert (rec.stick_raman > ACTIVE_FRACTION * rec.stick_raman.max()).sum() >= 1


def test_mutual_exclusion_for_2_butyne_degenerate_g_u_pairs():
    rec = sim.simulate_molecule(_staggered_2_butyne(), PHYS, GRID)
    assert rec.centrosymmetric == 1 and rec.point_group == "D3d"
    assert not both_active(rec).any()


def test_symmetry_adaptation_unmixes_a_g_u_pair():
    inp = _staggered_2_butyne()
    mol = sim.build_molecule(inp, PHYS)
    ff, x = sim.mmff_optimise(mol, PHYS)
    hess = sim.hessian_fd(ff, x, PHYS.fd_step)
    m = sim.atomic_masses(mol)
    labels = [a.GetSymbol() for a in mol.GetAtoms()]
    perm = sim.inversion_permutation(labels, x, PHYS.symmetry_tol)
    clean = sim.symmetry_adapt(sim.normal_modes(hess, m, x, False), hess, m, perm, 1.0)
    # Mix the nearly degenerate pair at ~1406 cm⁻¹ (one g, one u) by 45°, as finite
    # differences do, then adapt again.
    k = int(np.argmin(np.abs(clean.freqs - 1406.3)))
    pair = [k, k + 1] if abs(clean.freqs[k + 1] - clean.freqs[k]) < 1 else [k - 1, k]
    c = np.sqrt(0.5)
    mixed_l = clean.l_mw.copy()
    mixed_l[:, pair] = clean.l_mw[:, pair] @ np.array([[c, -c], [c, c]])
    mixed = sim.NormalModes(
        clean.freqs, mixed_l, mixed_l / np.sqrt(np.repeat(m, 3))[:, None], False
    )
    q, _ = sim.atomic_charges(mol, inp, PHYS)
    dadx = sim.polarizability_gradient(sim.bond_table(mol, sim.RAMAN_BOND_FACTOR), x)

    def violations(modes):
        ir, ra = sim.ir_intensities(q, modes), sim.raman_activities(dadx, modes)
        return ((ir > ACTIVE_FRACTION * ir.max()) & (ra > ACTIVE_FRACTION * ra.max())).sum()

    assert violations(clean) == 0
    assert violations(mixed) == 2
    fixed = sim.symmetry_adapt(mixed, hess, m, perm, 1.0)
    assert violations(fixed) == 0
    np.testing.assert_allclose(fixed.freqs, clean.freqs, atol=0.01)


def test_water_modes_are_active_in_both():
    rec = _run("O")
    assert rec.centrosymmetric == 0
    assert np.all(rec.stick_ir > 1e-3 * rec.stick_ir.max())
    assert np.all(rec.stick_raman > 1e-3 * rec.stick_raman.max())


# ----------------------------------------------------------------------------- IR


def test_alkane_ch_stretches_are_ir_active_with_mulliken_charges():
    methane, ethane = qm9_inputs([1, 7])
    for inp in (methane, ethane):
        dft = sim.simulate_molecule(inp, PHYS, GRID)
        gas = sim.simulate_molecule(inp, PhysicsConfig(charges="gasteiger"), GRID)
        mmff = sim.simulate_molecule(inp, PhysicsConfig(charges="mmff"), GRID)
        assert dft.charge_model == "mulliken-dft"
        assert gas.charge_model.startswith("gasteiger")
        ch = dft.stick_freq > 2700
        # Mulliken (q_H ≈ 0.13 e): the asymmetric C–H stretches are strong bands (CH4: 34.9
        # km/mol per component); Gasteiger (q_H ≈ 0.02 e) gives ~50× less (CH4: 0.73 km/mol);
        # MMFF94's bond-charge increments make them silent.
        assert dft.stick_ir[ch].max() > 20.0
        assert gas.stick_ir[ch].max() < 2.0
        assert dft.stick_ir[ch].max() > 20 * gas.stick_ir[ch].max()
        assert mmff.stick_ir[ch].max() < 1e-6


def test_mulliken_charges_are_checked():
    (inp,) = qm9_inputs([3])  # water
    bad = MoleculeInput(inp.source_index, inp.smiles, inp.inchi, inp.elements, inp.coords)
    bad.charges = inp.charges + 0.01
    with pytest.raises(MoleculeError, match="Mulliken"):
        sim.simulate_molecule(bad, PHYS, GRID)
    bad.charges = inp.charges[:2]
    with pytest.raises(MoleculeError, match="Mulliken"):
        sim.simulate_molecule(bad, PHYS, GRID)


def test_ir_intensity_is_independent_of_position_and_orientation():
    mol, x, modes, _ = _modes("CC(=O)N")
    q, _ = sim.atomic_charges(mol, MoleculeInput(0, "CC(=O)N"), PHYS)
    q_rot, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))
    n = len(x)
    cart = (modes.cart.reshape(n, 3, -1).transpose(0, 2, 1) @ q_rot.T).transpose(0, 2, 1)
    rotated = sim.NormalModes(modes.freqs, modes.l_mw, cart.reshape(3 * n, -1), False)
    np.testing.assert_allclose(
        sim.ir_intensities(q, rotated), sim.ir_intensities(q, modes), rtol=1e-10, atol=1e-12
    )
    assert abs(q.sum()) < 1e-12


# ----------------------------------------------------------------------------- Raman


def test_polarizability_gradient_matches_finite_differences():
    mol, x, _, _ = _modes("CC(=O)C#N")
    bonds = sim.bond_table(mol, sim.RAMAN_BOND_FACTOR)
    y = x + np.random.default_rng(2).normal(scale=0.05, size=x.shape)
    analytic = sim.polarizability_gradient(bonds, y)
    h = 1e-6
    num = np.empty_like(analytic)
    flat = y.reshape(-1)
    for k in range(flat.size):
        d = np.zeros_like(flat)
        d[k] = h
        num[k] = (
            sim.bond_polarizability(bonds, (flat + d).reshape(-1, 3))
            - sim.bond_polarizability(bonds, (flat - d).reshape(-1, 3))
        ) / (2 * h)
    np.testing.assert_allclose(analytic, num, atol=1e-7)


def test_raman_activity_is_rotation_invariant():
    mol, x, modes, raman = _modes("OCC#N")
    q_rot, _ = np.linalg.qr(np.random.default_rng(4).normal(size=(3, 3)))
    n = len(x)
    cart = (modes.cart.reshape(n, 3, -1).transpose(0, 2, 1) @ q_rot.T).transpose(0, 2, 1)
    rotated = sim.NormalModes(modes.freqs, modes.l_mw, cart.reshape(3 * n, -1), False)
    dadx = sim.polarizability_gradient(sim.bond_table(mol, sim.RAMAN_BOND_FACTOR), x @ q_rot.T)
    np.testing.assert_allclose(sim.raman_activities(dadx, rotated), raman, rtol=1e-9, atol=1e-12)


def _cc_stretch_activity(smiles: str, correct: bool) -> float:
    _, x, modes, raman = _modes(smiles, correct)
    return float(raman[_stretch_mode(x, modes, 0, 1)])


def test_raman_stretch_activity_orders_triple_double_single():
    # The C–C stretch of ethane, C=C of ethylene and C≡C of acetylene: the same bond, three
    # orders, each mode an almost pure stretch of it.
    single, double, triple = (_cc_stretch_activity(s, True) for s in ("CC", "C=C", "C#C"))
    assert triple > double > single
    # ... and equal the B3LYP/aug-cc-pVDZ activities along the same modes that calibrated
    # RAMAN_BOND_FACTOR (see its comment): 13.2, 39.7, 112.3 Å⁴/amu.
    assert [single, double, triple] == pytest.approx([13.2, 39.7, 112.3], rel=0.01)
    # The uncorrected Lippincott–Stuttman model has the reverse order (docs/DESIGN.md §2.1:
    # 46.6/31.1/27.6).
    raw = [_cc_stretch_activity(s, False) for s in ("CC", "C=C", "C#C")]
    assert raw[0] > raw[1] > raw[2]
    assert raw == pytest.approx([46.6, 31.1, 27.6], abs=0.2)


def test_raman_triple_bond_stretch_strong_next_to_single_bond():
    # In propyne the C≡C stretch shortens the adjacent C–C bond; the raw model lets the two
    # cancel (activity ~0.1 Å⁴/amu), the corrected one makes it a strong band as observed.
    mol, x, modes, raman = _modes("CC#C")
    k = _stretch_mode(x, modes, 1, 2)
    assert 1900 < modes.freqs[k] < 2300
    assert raman[k] > 0.2 * raman.max()


# ----------------------------------------------------------------------------- QM9 path


def test_qm9_rows_keep_xyz_atom_order():
    for inp in qm9_inputs(list(range(1, 8))):
        mol = sim.build_molecule(inp, PHYS)
        assert [a.GetSymbol() for a in mol.GetAtoms()] == inp.elements
        np.testing.assert_allclose(mol.GetConformer().GetPositions(), inp.coords)
        assert Chem.MolToInchi(mol) == inp.inchi


def test_xyz_must_carry_the_smiles_constitution():
    ethanol = sim.molecule_from_smiles("CCO", 0)
    coords = ethanol.GetConformer().GetPositions()
    elements = [a.GetSymbol() for a in ethanol.GetAtoms()]
    assert sim.molecule_from_xyz(elements, coords, "OCC").GetNumBonds() == 8
    with pytest.raises(MoleculeError, match="mismatch"):
        sim.molecule_from_xyz(elements, coords, "COC")  # dimethyl ether: same formula
    with pytest.raises(MoleculeError, match="mismatch"):
        sim.molecule_from_xyz(elements, coords, "CCN")


def test_strained_cage_with_close_contacts_is_matched():
    # Bicyclo[1.1.1]pentane: the bridgeheads are 1.87 Å apart, closer than the bond cutoff.
    mol = sim.molecule_from_smiles("C1C2CC1C2", 0)
    x = mol.GetConformer().GetPositions()
    built = sim.molecule_from_xyz([a.GetSymbol() for a in mol.GetAtoms()], x, "C1C2CC1C2")
    assert built.GetNumBonds() == mol.GetNumBonds()
    assert Chem.MolToInchiKey(built) == Chem.MolToInchiKey(mol)


# ----------------------------------------------------------------------------- record


def test_record_contents():
    (inp,) = qm9_inputs([6])  # formaldehyde
    rec = sim.simulate_molecule(inp, PHYS, GRID)
    assert rec.ir.dtype == rec.raman.dtype == np.float32
    assert rec.ir.shape == rec.raman.shape == GRID.shape
    assert np.all(np.isfinite(rec.ir)) and np.all(rec.ir >= 0) and np.all(rec.raman >= 0)
    assert rec.n_atoms == 4 and rec.source_index == 6
    assert rec.inchikey == Chem.InchiToInchiKey(inp.inchi)
    assert rec.point_group == "C2v" and rec.centrosymmetric == 0
    assert rec.fg_flags.shape == (len(FUNCTIONAL_GROUP_NAMES),)
    names = {n for n, f in zip(FUNCTIONAL_GROUP_NAMES, rec.fg_flags, strict=True) if f}
    assert {"aldehyde", "carbonyl"} <= names
    pos = rec.stick_freq > 0
    expect = lorentzian_broaden(rec.stick_freq[pos], rec.stick_ir[pos], GRID, PHYS.ir_fwhm)
    np.testing.assert_allclose(rec.ir, expect, rtol=1e-6)
    # MMFF94 vs the row's B3LYP frequencies (scaled 0.965): same ballpark.
    assert np.abs(np.sort(rec.stick_freq) - 0.965 * np.sort(inp.dft_freqs)).mean() < 120


def test_user_smiles_record_has_its_inchikey_and_is_deterministic():
    a, b = _run("OCC(=O)N"), _run("OCC(=O)N")
    assert a.inchikey == Chem.MolToInchiKey(Chem.MolFromSmiles("OCC(=O)N"))
    assert a.charge_model == "gasteiger (C-H weak)"
    np.testing.assert_array_equal(a.ir, b.ir)
    np.testing.assert_array_equal(a.raman, b.raman)


def test_timings_are_reported():
    timings: dict[str, float] = {}
    sim.simulate_molecule(MoleculeInput(0, "CCO"), PHYS, GRID, timings=timings)
    assert {"optimise", "hessian", "modes", "ir", "raman", "broaden"} <= set(timings)
    assert all(v >= 0 for v in timings.values())


# ----------------------------------------------------------------------------- conformers


def _dihedral(mol: Chem.Mol, idx: list[int]) -> float:
    from rdkit.Chem import rdMolTransforms

    return abs(rdMolTransforms.GetDihedralDeg(mol.GetConformer(), *idx))


def test_cyclohexane_lands_on_the_d3d_chair_with_mutual_exclusion():
    rec = _run("C1CCCCC1")
    assert rec.point_group == "D3d" and rec.centrosymmetric == 1
    assert not both_active(rec).any()
    # One embedding reaches the twist-boat (D2, no inversion centre): the search matters.
    one = sim.simulate_molecule(MoleculeInput(0, "C1CCCCC1"), PhysicsConfig(n_conformers=1), GRID)
    assert one.point_group == "D2" and one.centrosymmetric == 0


@pytest.mark.parametrize("smiles", ["CCCC", "ClCCCl", "BrCCBr"])
def test_butane_like_chains_land_on_the_anti_conformer(smiles):
    mol = sim.molecule_from_smiles(smiles, PHYS.embed_seed, PHYS.n_conformers)
    sim.mmff_optimise(mol, PHYS)
    heavy = [a.GetIdx() for a in mol.GetAtoms() if a.GetSymbol() != "H"]
    assert _dihedral(mol, heavy) == pytest.approx(180.0, abs=1.0)
    symbols = [a.GetSymbol() for a in mol.GetAtoms()]
    assert point_group(symbols, mol.GetConformer().GetPositions(), PHYS.symmetry_tol) == "C2h"


def test_conformer_search_keeps_the_lowest_energy_and_is_deterministic():
    def energy(n: int) -> tuple[float, np.ndarray]:
        mol = sim.molecule_from_smiles("CCCCO", 7, n)
        ff, x = sim.mmff_optimise(mol, PHYS)
        assert mol.GetNumConformers() == 1
        return ff.CalcEnergy(x.ravel().tolist()), x

    e1, _ = energy(1)
    e10, x10 = energy(10)
    assert e10 <= e1 + 1e-6
    assert np.array_equal(energy(10)[1], x10)


def test_n_conformers_is_validated():
    with pytest.raises(ConfigError, match="n_conformers"):
        PhysicsConfig(n_conformers=0)
    with pytest.raises(ConfigError, match="n_conformers"):
        sim.molecule_from_smiles("CC", 0, 0)


def test_molecules_without_fixed_charges_get_a_clear_reason_and_run_at_xtb():
    with pytest.raises(SimulationError, match="no fixed-charge model.*xtb level"):
        _run("[C-]#[O+]")
    rec = _run("[C-]#[O+]", PhysicsConfig(level="xtb"))
    assert rec.stick_freq.shape == (1,) and 1900 < rec.stick_freq[0] < 2400
    assert rec.stick_ir[0] > 0


def test_gasteiger_gap_falls_back_to_mmff94_charges(monkeypatch):
    def undefined(m):
        for a in m.GetAtoms():
            a.SetDoubleProp("_GasteigerCharge", float("nan"))

    monkeypatch.setattr(sim.rdPartialCharges, "ComputeGasteigerCharges", undefined)
    mol = sim.molecule_from_smiles("CCO", 0)
    q, label = sim.atomic_charges(mol, MoleculeInput(0, "CCO"), PHYS)
    assert label.startswith("mmff94") and abs(q.sum()) < 1e-12
    with pytest.raises(SimulationError, match="Gasteiger undefined"):
        sim.atomic_charges(mol, MoleculeInput(0, "CCO"), PhysicsConfig(charges="gasteiger"))
