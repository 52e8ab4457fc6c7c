"""GFN2-xTB level (spektron.chemistry.xtb): optimisation, Hessian, field derivatives, IR/Raman."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from rdkit.Chem import rdForceFieldHelpers  # noqa: E402

from spektron.chemistry import simulate as sim  # noqa: E402
from spektron.chemistry import xtb  # noqa: E402
from spektron.chemistry.vibrations import atomic_masses, ir_intensity  # noqa: E402
from spektron.errors import ConfigError, MoleculeError, SimulationError  # noqa: E402

SET = xtb.XtbSettings()


def _start(smiles: str) -> tuple[np.ndarray, np.ndarray]:
    """Atomic numbers and an MMFF94 geometry (Å) of ``smiles`` (as the MMFF path starts)."""
    mol = sim.molecule_from_smiles(smiles, seed=42)
    rdForceFieldHelpers.MMFFOptimizeMolecule(mol, maxIters=2000)
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    return z, mol.GetConformer().GetPositions()


def _tblite_dipole(z: np.ndarray, x: np.ndarray, charge: int = 0) -> np.ndarray:
    """SCF dipole (e·bohr) straight from tblite, no field."""
    from tblite.interface import Calculator

    calc = Calculator("GFN2-xTB", z, x / xtb.BOHR_ANGSTROM, charge=float(charge), uhf=0)
    calc.set("verbosity", 0)
    calc.set("accuracy", SET.accuracy)
    return np.asarray(calc.singlepoint().get("dipole"))


@pytest.fixture(scope="module")
def water():
    z, x = _start("O")
    return z, xtb.xtb_vibrations(z, x)


@pytest.fixture(scope="module")
def methanol():
    z, x = _start("CO")
    return z, xtb.xtb_vibrations(z, x)


def _modes(z, vib, linear=False):
    return sim.normal_modes(vib.hessian, atomic_masses(z), vib.coords, linear=linear)


# ----------------------------------------------------------------------------- geometry, modes


@pytest.mark.parametrize("name", ["water", "methanol"])
def test_optimised_minimum_has_real_modes(name, request):
    z, vib = request.getfixturevalue(name)
    n = len(z)
    assert vib.coords.shape == (n, 3) and vib.hessian.shape == (3 * n, 3 * n)
    assert vib.opt_iterations > 0 and vib.n_singlepoints > 6 * n + 19
    assert np.isfinite(vib.energy) and vib.energy < 0
    # Converged: the xTB gradient at the returned geometry is below the target.
    x2, e2, it2 = xtb.xtb_optimise(z, vib.coords)
    assert it2 <= 2 and abs(e2 - vib.energy) < 1e-7
    assert np.abs(x2 - vib.coords).max() < 2e-3
    np.testing.assert_allclose(vib.hessian, vib.hessian.T, atol=1e-12)
    modes = _modes(z, vib)
    assert modes.freqs.shape == (3 * n - 6,)
    assert modes.freqs.min() > -10.0


def test_characteristic_frequencies(water, methanol):
    zw, vw = water
    fw = _modes(zw, vw).freqs
    assert 1400 < fw[0] < 1700  # H–O–H bend
    assert np.all((fw[1:] > 3400) & (fw[1:] < 3900))  # O–H stretches
    zm, vm = methanol
    modes = _modes(zm, vm)
    o, h_o = 1, 5  # SMILES "CO": C 0, O 1, H 2-4 on C, H 5 on O
    assert zm[o] == 8 and zm[h_o] == 1
    e = vm.coords[h_o] - vm.coords[o]
    e /= np.linalg.norm(e)
    cart = modes.cart.reshape(len(zm), 3, -1)
    k = int(np.argmax(np.abs(np.einsum("c,ck->k", e, cart[h_o] - cart[o]))))
    assert 3400 < modes.freqs[k] < 3800  # O–H stretch (GFN2: ~3558)


# ----------------------------------------------------------------------------- field derivatives


@pytest.mark.parametrize("name", ["water", "methanol"])
def test_acoustic_sum_rules(name, request):
    z, vib = request.getfixturevalue(name)
    n = len(z)
    apt = vib.dipole_derivatives.reshape(n, 3, 3)  # (atom, displacement axis, μ component)
    np.testing.assert_allclose(apt.sum(0), 0.0, atol=1e-3)
    da = vib.polarizability_derivatives.reshape(n, 3, 3, 3)
    assert np.abs(da.sum(0)).max() < 1e-3 * np.abs(da).max()
    assert np.abs(da).max() > 0.1  # Å²: not trivially zero


def test_sum_rule_of_a_charged_molecule():
    z, x = _start("[NH4+]")
    apt, _, dalpha = xtb.xtb_field_derivatives(z, x, charge=1)
    np.testing.assert_allclose(apt.reshape(-1, 3, 3).sum(0), np.eye(3), atol=1e-3)
    assert np.abs(dalpha.reshape(-1, 3, 3, 3).sum(0)).max() < 1e-3 * np.abs(dalpha).max()


def test_apt_matches_dipole_finite_differences(methanol):
    """Sign and unit check: −∂g/∂F equals ∂μ/∂x from displaced SCF dipoles."""
    z, vib = methanol
    h = 1e-3  # Å
    for atom in (1, 5):  # O and the hydroxyl H
        for d in range(3):
            xp, xm = vib.coords.copy(), vib.coords.copy()
            xp[atom, d] += h
            xm[atom, d] -= h
            # e·bohr per Å → e·Å per Å = e
            fd = (_tblite_dipole(z, xp) - _tblite_dipole(z, xm)) * xtb.BOHR_ANGSTROM / (2 * h)
            np.testing.assert_allclose(vib.dipole_derivatives[3 * atom + d], fd, atol=1e-3)


def test_polarizability_derivative_matches_finite_differences(methanol):
    z, vib = methanol
    h = 2e-3  # Å
    for atom, d in ((0, 0), (1, 2)):
        xp, xm = vib.coords.copy(), vib.coords.copy()
        xp[atom, d] += h
        xm[atom, d] -= h
        fd = (xtb.xtb_field_derivatives(z, xp)[1] - xtb.xtb_field_derivatives(z, xm)[1]) / (2 * h)
        an = vib.polarizability_derivatives[3 * atom + d]
        assert np.abs(fd - an).max() < 0.02 * np.abs(an).max()


def test_polarizability_is_symmetric_positive_definite(water, methanol):
    for _, vib in (water, methanol):
        a = vib.polarizability
        np.testing.assert_allclose(a, a.T, atol=1e-12)
        assert np.linalg.eigvalsh(a).min() > 0
        np.testing.assert_allclose(
            vib.polarizability_derivatives, vib.polarizability_derivatives.transpose(0, 2, 1)
        )
    # Methanol: a few Å³ (GFN2's minimal basis: 2–4× below experiment's 3.3 Å³ mean).
    mean = np.trace(methanol[1].polarizability) / 3
    assert 0.5 < mean < 4.0
    # Planar water: the out-of-plane component almost vanishes in a minimal basis.
    assert np.linalg.eigvalsh(water[1].polarizability).max() < 1.5


def test_polarizability_matches_energy_second_derivative(methanol):
    """α from dipoles (∂μ/∂F) equals −∂²E/∂F² (sign convention E = E₀ − μ·F − ½ F·α·F)."""
    from tblite.interface import Calculator

    z, vib = methanol
    f = 5e-3

    def energy(field):
        calc = Calculator("GFN2-xTB", z, vib.coords / xtb.BOHR_ANGSTROM, charge=0.0, uhf=0)
        calc.set("verbosity", 0)
        calc.set("accuracy", 1e-4)
        if field is not None:
            calc.add("electric-field", [float(v) for v in field])
        return calc.singlepoint().get("energy")

    e0 = energy(None)
    for a in range(3):
        step = np.zeros(3)
        step[a] = f
        second = (energy(step) - 2 * e0 + energy(-step)) / f**2
        alpha_aa = -second * xtb.POLARIZABILITY_AU_TO_A3
        assert alpha_aa == pytest.approx(vib.polarizability[a, a], rel=0.02)


# ----------------------------------------------------------------------------- intensities


def test_ir_raman_units_and_helper(methanol):
    z, vib = methanol
    modes = _modes(z, vib)
    ir, raman = xtb.xtb_ir_raman(vib, modes)
    assert ir.shape == raman.shape == modes.freqs.shape
    assert np.all(np.isfinite(ir)) and np.all(np.isfinite(raman))
    assert np.all(ir >= 0) and np.all(raman >= 0) and ir.max() > 10 and raman.max() > 10
    # Same numbers as the explicit conversions of the MMFF path.
    ir_ref = ir_intensity((modes.cart.T @ vib.dipole_derivatives) * sim.E_ANGSTROM_TO_DEBYE)
    np.testing.assert_allclose(ir, ir_ref)
    np.testing.assert_allclose(raman, sim.raman_activities(vib.polarizability_derivatives, modes))
    with pytest.raises(SimulationError, match="do not match"):
        xtb.xtb_ir_raman(vib, sim.normal_modes(*_water_like_modes_args()))


def _water_like_modes_args():
    z, x = np.array([8, 1, 1]), np.array([[0, 0, 0.12], [0, 0.76, -0.47], [0, -0.76, -0.47]])
    return np.eye(9), atomic_masses(z), x, False


@pytest.mark.parametrize(
    ("smiles", "linear", "n_ir", "n_raman"),
    # Ethylene (D2h): 5 u modes IR-allowed, 6 g modes Raman-allowed (some weak), au silent.
    # CO2 (D∞h): bend (2) and antisymmetric stretch in IR, symmetric stretch in Raman.
    [("C=C", False, 3, 3), ("O=C=O", True, 3, 1)],
)
def test_mutual_exclusion_of_centrosymmetric_molecules(smiles, linear, n_ir, n_raman):
    z, x = _start(smiles)
    vib = xtb.xtb_vibrations(z, x)
    symbols = [sim._PT.GetElementSymbol(int(a)) for a in z]
    assert sim.inversion_permutation(symbols, vib.coords, 0.05) is not None
    modes = _modes(z, vib, linear=linear)
    assert modes.freqs.min() > -10.0
    ir, raman = xtb.xtb_ir_raman(vib, modes)
    ir_on, ra_on = ir > 1.0, raman > 0.01 * raman.max()
    assert not np.any(ir_on & ra_on)
    assert ir_on.sum() >= n_ir and ra_on.sum() >= n_raman
    assert np.all(raman[ir_on] < 0.01 * raman.max())
    assert np.all(ir[ra_on] < 1.0)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("numbers", "coords", "exc", "match"),
    [
        ([8, 1], np.zeros((3, 3)), MoleculeError, "shape"),
        ([8, 1, 1], np.zeros(9), MoleculeError, "shape"),
        ([8, 1, 1], [[0, 0, 0], [0, 0.9, np.nan], [0, -0.9, 0]], MoleculeError, "non-finite"),
        ([8, 1, 1], [[0, 0, 0], [0, 0.1, 0], [0, -0.9, 0]], MoleculeError, "closer"),
        ([], np.zeros((0, 3)), MoleculeError, "non-empty"),
        ([0, 1], [[0, 0, 0], [0, 0, 1.0]], MoleculeError, ">= 1"),
        ([8.5, 1], [[0, 0, 0], [0, 0, 1.0]], MoleculeError, "integers"),
        (["O", "H"], [[0, 0, 0], [0, 0, 1.0]], MoleculeError, "integers"),
        ([87, 1], [[0, 0, 0], [0, 0, 2.0]], SimulationError, "no parameters"),
    ],
)
def test_bad_inputs(numbers, coords, exc, match):
    with pytest.raises(exc, match=match):
        xtb.xtb_vibrations(numbers, coords)


def test_bad_charge():
    z, x = np.array([8, 1, 1]), np.array([[0, 0, 0.12], [0, 0.76, -0.47], [0, -0.76, -0.47]])
    with pytest.raises(MoleculeError, match="charge"):
        xtb.xtb_hessian(z, x, charge=0.5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "GFN3"}, "method"),
        ({"accuracy": 0.0}, "accuracy"),
        ({"accuracy": float("nan")}, "accuracy"),
        ({"field_step": 0.1}, "field_step"),
        ({"field_step": -1e-3}, "field_step"),
        ({"hessian_step": 0.0}, "hessian_step"),
        ({"opt_gtol": 0.0}, "opt_gtol"),
        ({"opt_max_iter": 0}, "opt_max_iter"),
        ({"opt_max_iter": 2.5}, "opt_max_iter"),
    ],
)
def test_settings_validation(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        xtb.XtbSettings(**kwargs)


def test_optimisation_failure_is_reported():
    z, x = _start("CO")
    x = x + np.random.default_rng(0).normal(scale=0.1, size=x.shape)
    with pytest.raises(SimulationError, match="did not converge"):
        xtb.xtb_optimise(z, x, settings=xtb.XtbSettings(opt_max_iter=2))


def test_tblite_failures_are_wrapped_with_the_stage(monkeypatch):
    class Broken:
        def __init__(self, *args, **kwargs):
            pass

        def set(self, *args):
            pass

        def add(self, *args):
            pass

        def update(self, *args):
            pass

        def singlepoint(self, *args, **kwargs):
            raise RuntimeError("SCF not converged in 250 cycles")

    monkeypatch.setattr(xtb, "_calculator_class", lambda: Broken)
    z, x = np.array([8, 1, 1]), np.array([[0, 0, 0.12], [0, 0.76, -0.47], [0, -0.76, -0.47]])
    with pytest.raises(SimulationError, match="xtb optimisation: single point failed.*SCF"):
        xtb.xtb_optimise(z, x)
    with pytest.raises(SimulationError, match="xtb hessian"):
        xtb.xtb_hessian(z, x)
    with pytest.raises(SimulationError, match="xtb field derivatives"):
        xtb.xtb_field_derivatives(z, x)


def test_missing_tblite_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tblite.interface", None)  # import raises ImportError
    with pytest.raises(ConfigError, match=r"pip install tblite==0\.8\.0"):
        xtb.xtb_hessian([8, 1, 1], [[0, 0, 0.12], [0, 0.76, -0.47], [0, -0.76, -0.47]])


def test_import_is_lazy():
    code = "import sys, spektron.chemistry.xtb; print('tblite' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
