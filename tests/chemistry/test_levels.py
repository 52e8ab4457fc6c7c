"""Levels of theory of the simulator: mmff, xtb, hybrid (DFT frequencies + xtb intensities) and
mmff-hybrid (DFT frequencies + mmff intensities)."""

from __future__ import annotations

import numpy as np
import pytest

from spektron.chemistry import simulate as sim
from spektron.chemistry.molecule import MoleculeInput
from spektron.chemistry.spectra import make_grid
from spektron.config import DatasetConfig, PhysicsConfig
from spektron.data.generate import LEVEL_LABELS, dataset_attrs
from spektron.errors import ConfigError, SimulationError
from tests.helpers import ACTIVE_FRACTION, both_active, qm9_inputs

GRID = make_grid()
# QM9 rows 4 (acetylene, D∞h) and 7 (ethane, staggered D3d): centrosymmetric; 8: methanol.
CENTRO = [4, 7]


def test_level_settings_are_validated():
    with pytest.raises(ConfigError, match="physics.level"):
        PhysicsConfig(level="dft")
    with pytest.raises(ConfigError, match="dft_freq_scale"):
        PhysicsConfig(dft_freq_scale=2.0)
    with pytest.raises(ConfigError, match="xtb_field_step"):
        PhysicsConfig(xtb_field_step=0.5)


def test_store_attributes_name_the_level():
    for level in ("mmff", "mmff-hybrid", "fast-hybrid"):
        attrs = dataset_attrs(DatasetConfig(physics=PhysicsConfig(level=level)))
        assert attrs["level"] == level and attrs["label"] == LEVEL_LABELS[level]
        assert "SIMULATED" in attrs["label"]


def test_labels_name_the_bond_raman_of_the_xtb_levels():
    for level in ("xtb", "hybrid"):
        gfn2 = dataset_attrs(DatasetConfig(physics=PhysicsConfig(level=level)))["label"]
        bond = PhysicsConfig(level=level, xtb_raman="bond")
        label = dataset_attrs(DatasetConfig(physics=bond))["label"]
        assert "bond-polarizability Raman" in label and label != gfn2
        assert "bond-polarizability" not in gfn2


@pytest.mark.parametrize("level", ["hybrid", "mmff-hybrid", "fast-hybrid"])
def test_hybrid_levels_need_dft_frequencies(level):
    with pytest.raises(SimulationError, match=f"level '{level}' needs QM9's DFT frequencies"):
        sim.simulate_molecule(MoleculeInput(0, "CCO"), PhysicsConfig(level=level), GRID)


def test_mmff_hybrid_takes_dft_frequencies_and_keeps_mmff_intensities():
    inputs = qm9_inputs([8, *CENTRO])
    for inp in inputs:
        mmff = sim.simulate_molecule(inp, PhysicsConfig(), GRID)
        hyb = sim.simulate_molecule(inp, PhysicsConfig(level="mmff-hybrid"), GRID)
        dft = np.sort(inp.dft_freqs) * 0.965
        assert np.allclose(np.sort(hyb.stick_freq), dft)
        # mode k of the MMFF analysis gets the k-th lowest DFT frequency
        order = np.argsort(mmff.stick_freq, kind="stable")
        assert np.allclose(hyb.stick_freq[order], dft)
        assert np.allclose(hyb.stick_ir, mmff.stick_ir) and np.allclose(
            hyb.stick_raman, mmff.stick_raman
        )
        assert hyb.centrosymmetric == mmff.centrosymmetric
    for inp in inputs[1:]:
        hyb = sim.simulate_molecule(inp, PhysicsConfig(level="mmff-hybrid"), GRID)
        assert hyb.centrosymmetric == 1 and not both_active(hyb).any()


def test_dft_frequency_count_must_match_the_modes():
    inp = qm9_inputs([8])[0]
    bad = MoleculeInput(
        inp.source_index, inp.smiles, inp.inchi, inp.elements, inp.coords, inp.charges,
        dft_freqs=inp.dft_freqs[:-1],
    )  # fmt: skip
    with pytest.raises(SimulationError, match="DFT frequencies for"):
        sim.simulate_molecule(bad, PhysicsConfig(level="mmff-hybrid"), GRID)


def test_xtb_and_hybrid_levels_on_qm9_rows():
    inputs = qm9_inputs([8, *CENTRO])
    for inp in inputs:
        rec = sim.simulate_molecule(inp, PhysicsConfig(level="xtb"), GRID)
        assert rec.charge_model.startswith("GFN2-xTB")
        assert len(rec.stick_freq) == len(inp.dft_freqs) and rec.stick_freq.min() > 0
        assert np.all(rec.stick_ir >= 0) and np.all(rec.stick_raman >= 0)
        assert rec.stick_ir.max() > 0 and rec.stick_raman.max() > 0
        hyb = sim.simulate_molecule(inp, PhysicsConfig(level="hybrid"), GRID)
        assert np.allclose(np.sort(hyb.stick_freq), np.sort(inp.dft_freqs) * 0.965)
        order = np.argsort(rec.stick_freq, kind="stable")
        assert np.allclose(hyb.stick_ir[order], rec.stick_ir[order], rtol=1e-6, atol=1e-9)
        if inp.source_index in CENTRO:
            for r in (rec, hyb):
                assert r.centrosymmetric == 1 and not both_active(r).any()
                assert (r.stick_ir > ACTIVE_FRACTION * r.stick_ir.max()).sum() >= 1
    # methanol: the O-H stretch is the highest xtb mode, between 3400 and 3800 cm-1
    meth = sim.simulate_molecule(inputs[0], PhysicsConfig(level="xtb"), GRID)
    assert 3400 < meth.stick_freq.max() < 3800


def test_xtb_level_on_user_smiles_keeps_mutual_exclusion():
    rec = sim.simulate_molecule(MoleculeInput(0, "F/C=C/F"), PhysicsConfig(level="xtb"), GRID)
    assert rec.centrosymmetric == 1 and not both_active(rec).any()


def test_symmetrize_inversion_imposes_the_symmetry_and_keeps_symmetric_input():
    rng = np.random.default_rng(3)
    half = rng.normal(size=(3, 3))
    x = np.vstack([half, -half, [[0.0, 0.0, 0.0]]]) + 1.5  # atoms 0-2 / 3-5 paired, 6 central
    perm = np.array([3, 4, 5, 0, 1, 2, 6])
    noisy = x + 1e-3 * rng.normal(size=x.shape)
    h = rng.normal(size=(21, 21))
    h = h + h.T
    apt, dalpha = rng.normal(size=(21, 3)), rng.normal(size=(21, 3, 3))
    xs, hs, a, d = sim.symmetrize_inversion(perm, noisy, h, apt, dalpha)
    c = xs.mean(0)
    assert np.allclose(xs[perm], 2 * c - xs)
    p = np.zeros((21, 21))
    for i, j in enumerate(perm):
        p[3 * j : 3 * j + 3, 3 * i : 3 * i + 3] = -np.eye(3)
    assert np.allclose(p @ hs @ p.T, hs)
    a3, d3 = a.reshape(7, 3, 3), d.reshape(7, 3, 3, 3)
    assert np.allclose(a3[perm], a3) and np.allclose(d3[perm], -d3)
    assert np.allclose(d3[6], 0.0)  # the central atom cannot change α to first order
    # already symmetric quantities are unchanged
    xs2, hs2, a2, d2 = sim.symmetrize_inversion(perm, xs, hs, a, d)
    assert np.allclose(xs2, xs) and np.allclose(hs2, hs) and np.allclose(a2, a)
    assert np.allclose(d2, d)


def test_xtb_mutual_exclusion_is_exact_where_noise_broke_it():
    # QM9 502, succinaldehyde (C2h): before the inversion was imposed at the xtb level, 1.9 % of
    # the normalised IR and Raman intensity sat on the same modes.
    from spektron.data.validate import exclusion_overlap

    (inp,) = qm9_inputs([502])
    for level in ("xtb", "hybrid"):
        rec = sim.simulate_molecule(inp, PhysicsConfig(level=level), GRID)
        assert rec.centrosymmetric == 1
        assert exclusion_overlap(rec.stick_ir, rec.stick_raman) < 1e-9
        assert not both_active(rec).any()


def test_xtb_levels_with_bond_polarizability_raman():
    for inp in qm9_inputs([8, *CENTRO]):
        xtb = sim.simulate_molecule(inp, PhysicsConfig(level="xtb"), GRID)
        bond = sim.simulate_molecule(inp, PhysicsConfig(level="xtb", xtb_raman="bond"), GRID)
        assert np.allclose(bond.stick_freq, xtb.stick_freq)
        assert np.allclose(bond.stick_ir, xtb.stick_ir)
        assert not np.allclose(bond.stick_raman, xtb.stick_raman, rtol=0.05)
        assert bond.stick_raman.max() > 0
        if inp.source_index in CENTRO:
            assert bond.centrosymmetric == 1 and not both_active(bond).any()
    with pytest.raises(ConfigError, match="xtb_raman"):
        PhysicsConfig(xtb_raman="dft")


def test_symmetrize_inversion_leaves_physical_tensors_of_a_symmetric_geometry_unchanged():
    # Tensors from models that respect the inversion (bond polarizability, fixed charges) at an
    # exactly centrosymmetric geometry are fixed points: the rules have the physical signs.
    mol = sim.molecule_from_smiles("F/C=C/F")
    _, x = sim.mmff_optimise(mol, PhysicsConfig())
    symbols = [a.GetSymbol() for a in mol.GetAtoms()]
    perm = sim.inversion_permutation(symbols, x, 0.05)
    assert perm is not None
    xs, _, _, _ = sim.symmetrize_inversion(perm, x, np.zeros((3 * len(x),) * 2))
    dalpha = sim.polarizability_gradient(sim.bond_table(mol), xs)  # (3N, 3, 3)
    from rdkit.Chem import rdPartialCharges

    rdPartialCharges.ComputeGasteigerCharges(mol)
    charges = np.array([a.GetDoubleProp("_GasteigerCharge") for a in mol.GetAtoms()])
    apt = np.kron(charges[:, None], np.eye(3))  # ∂μ_c/∂x_{3a+b} = q_a δ_bc
    assert np.abs(dalpha).max() > 0.1 and np.abs(apt).max() > 0.1
    _, _, apt_s, dalpha_s = sim.symmetrize_inversion(
        perm, xs, np.zeros((3 * len(x),) * 2), apt, dalpha
    )
    assert np.allclose(apt_s, apt, atol=1e-12) and np.allclose(dalpha_s, dalpha, atol=1e-10)
    with pytest.raises(ValueError, match="its own inverse"):
        sim.symmetrize_inversion(np.array([1, 2, 0]), xs[:3], np.zeros((9, 9)))


def test_fast_hybrid_is_mmff_modes_with_xtb_apt_ir_and_bond_raman():
    from spektron.chemistry import xtb
    from spektron.data.validate import kabsch_rotation

    inputs = qm9_inputs([8, *CENTRO])
    for inp in inputs:
        mmff_h = sim.simulate_molecule(inp, PhysicsConfig(level="mmff-hybrid"), GRID)
        details: dict = {}
        fast = sim.simulate_molecule(inp, PhysicsConfig(level="fast-hybrid"), GRID, details=details)
        # Same modes, DFT frequencies and Raman as mmff-hybrid; only the IR source differs.
        assert np.allclose(fast.stick_freq, mmff_h.stick_freq)
        assert np.allclose(fast.stick_raman, mmff_h.stick_raman)
        assert fast.charge_model.startswith("GFN2-xTB APTs")
        # IR from the APTs at the DFT geometry, rotated into the MMFF frame, on the modes.
        z = [sim.Chem.GetPeriodicTable().GetAtomicNumber(e) for e in inp.elements]
        apt, n_sp = xtb.xtb_dipole_derivatives(z, inp.coords)
        assert n_sp == 6
        rot = kabsch_rotation(inp.coords, details["coords"], details["masses"])
        a = np.einsum("ij,ajk,lk->ail", rot, apt.reshape(-1, 3, 3), rot).reshape(-1, 3)
        dmu = details["modes"].cart.T @ a * sim.E_ANGSTROM_TO_DEBYE
        expect = np.sum(dmu**2, axis=1) * 42.2561
        scale = fast.stick_ir.max()
        if fast.centrosymmetric:  # the APTs are symmetrised there: g modes exactly dark
            assert not both_active(fast).any()
            u = fast.stick_ir > ACTIVE_FRACTION * scale
            assert np.allclose(fast.stick_ir[u], expect[u], rtol=1e-3, atol=1e-6 * scale)
        else:
            assert np.allclose(fast.stick_ir, expect, rtol=1e-6, atol=1e-9 * scale)


def test_dipole_derivatives_equal_the_first_field_derivatives():
    from spektron.chemistry import xtb

    inp = qm9_inputs([8])[0]
    z = [sim.Chem.GetPeriodicTable().GetAtomicNumber(e) for e in inp.elements]
    apt, _ = xtb.xtb_dipole_derivatives(z, inp.coords)
    apt19 = xtb.xtb_field_derivatives(z, inp.coords)[0]
    assert np.allclose(apt, apt19, atol=1e-10)
    # The acoustic sum rule: a rigid translation carries the (neutral) dipole along unchanged.
    assert np.abs(apt.reshape(-1, 3, 3).sum(0)).max() < 1e-3
