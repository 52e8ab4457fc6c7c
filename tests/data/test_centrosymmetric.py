"""Centrosymmetric set from outside QM9: the list, the filter, mutual exclusion, the cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rdkit import Chem

from spektron.chemistry.spectra import make_grid
from spektron.config import GridConfig, PhysicsConfig
from spektron.data import centrosymmetric as cs
from spektron.data.centrosymmetric import (
    CENTROSYMMETRIC_MOLECULES,
    build_centrosymmetric_store,
    centrosymmetric_inputs,
    ensure_centrosymmetric_store,
    exclusion_leak,
    outside_qm9_by_construction,
    subset_store,
)
from spektron.data.molecules import inchikey_of
from spektron.data.store import StoreWriter, open_store
from spektron.errors import MoleculeError, StoreError
from tests.helpers import fake_record

GRID = GridConfig(n_points=256)
NAPHTHALENE = ("naphthalene", "c1ccc2ccccc2c1")
C6F6 = ("hexafluorobenzene", "Fc1c(F)c(F)c(F)c(F)c1F")  # D6h: degenerate g/u pairs
BIPHENYL = ("biphenyl", "c1ccc(cc1)-c1ccccc1")  # MMFF94 twists it to D2: no inversion centre
TETRAFLUOROBENZENE = ("1,2,4,5-tetrafluorobenzene", "Fc1cc(F)c(F)cc1F")
ETHANE = ("ethane", "CC")  # D3d, but within QM9's scope
# Mutual exclusion, as the module checks it: no mode above 1 % of the strongest band in both
# spectra. Symmetry-adapted g/u modes give ~1e-10; a broken symmetry gives ≥ 0.02.
REL = 0.01


def test_the_list_parses_and_lies_outside_qm9():
    inputs = centrosymmetric_inputs()
    assert len(inputs) == len(CENTROSYMMETRIC_MOLECULES) >= 30
    assert [m.source_index for m in inputs] == list(range(len(inputs)))
    assert len({m.name for m in inputs}) == len(inputs)
    assert len({inchikey_of(m) for m in inputs}) == len(inputs)  # no molecule twice
    for m in inputs:
        mol = Chem.MolFromSmiles(m.smiles)
        assert {a.GetSymbol() for a in mol.GetAtoms()} <= {"C", "N", "O", "F"}
        assert mol.GetNumHeavyAtoms() >= 10 and outside_qm9_by_construction(m.smiles)
    assert not outside_qm9_by_construction("OC=O")
    with pytest.raises(MoleculeError):
        centrosymmetric_inputs([NAPHTHALENE, ("bad", "c1ccc")])


def test_exclusion_leak():
    assert exclusion_leak(np.array([5.0, 0.0, 1e-12]), np.array([0.0, 3.0, 1.0])) < 1e-12
    assert exclusion_leak(np.array([5.0, 1.0]), np.array([1.0, 2.0])) == pytest.approx(0.5)
    assert exclusion_leak(np.zeros(3), np.ones(3)) == 0.0


def test_build_keeps_centrosymmetric_molecules_and_says_why_others_go(tmp_path):
    out = tmp_path / "centro.h5"
    molecules = [NAPHTHALENE, BIPHENYL, C6F6, ETHANE, TETRAFLUOROBENZENE, NAPHTHALENE]
    qm9 = {Chem.MolToInchiKey(Chem.MolFromSmiles(TETRAFLUOROBENZENE[1]))}  # pretend it is QM9's
    rep = build_centrosymmetric_store(out, PhysicsConfig(), GRID, molecules=molecules, qm9_keys=qm9)

    assert [k["name"] for k in rep.kept] == ["naphthalene", "hexafluorobenzene"]
    why = {d["name"]: d["reason"] for d in rep.dropped}
    assert why == {
        "biphenyl": "no inversion centre",
        "ethane": "within QM9 scope",
        "1,2,4,5-tetrafluorobenzene": "in QM9",
        "naphthalene": "duplicate",
    }
    assert rep.n_candidates == 6 and rep.max_exclusion_leak < 1e-6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["centro.h5", "centro.report.json"]
    on_disk = json.loads((tmp_path / "centro.report.json").read_text())
    assert on_disk["n_kept"] == 2 and on_disk["dropped_by_reason"]["duplicate"] == 1

    with open_store(out, expected_grid=make_grid(256)) as s:
        assert s.n == 2 and s.attrs["simulated"] and "SIMULATED" in s.attrs["label"]
        assert s.attrs["source"] == "centrosym-sim"
        assert json.loads(s.attrs["centrosymmetric_report"])["n_kept"] == 2
        assert s.column("centrosymmetric").tolist() == [1, 1]
        assert s.column("point_group").tolist() == ["D2h", "D6h"]
        assert s.column("source_index").tolist() == [0, 2]  # positions in the list
        for row in range(s.n):
            freq, ir, raman = s.sticks(row)
            ir_active = ir > REL * ir.max()
            raman_active = raman > REL * raman.max()
            assert ir_active.any() and raman_active.any()
            assert not (ir_active & raman_active).any()  # mutual exclusion
            assert len(freq) == 3 * s.column("n_atoms")[row] - 6


def test_build_refuses_an_empty_result(tmp_path):
    with pytest.raises(StoreError):
        build_centrosymmetric_store(
            tmp_path / "none.h5", PhysicsConfig(), GRID, molecules=[BIPHENYL], qm9_keys=set()
        )
    assert list(tmp_path.iterdir()) == []


def test_ensure_caches_by_list_physics_and_grid(tmp_path, monkeypatch):
    monkeypatch.setattr(cs, "qm9_inchikeys", lambda: frozenset())  # no QM9 parse in a unit test
    physics = PhysicsConfig()
    path = ensure_centrosymmetric_store(physics, GRID, molecules=[NAPHTHALENE], progress=False)
    assert path.is_file() and path.with_name(path.stem + ".report.json").is_file()

    def fail(*a, **k):
        raise AssertionError("rebuilt a cached store")

    monkeypatch.setattr(cs, "build_centrosymmetric_store", fail)
    again = ensure_centrosymmetric_store(physics, GRID, molecules=[NAPHTHALENE], progress=False)
    assert again == path
    for other in (
        cs.default_centrosymmetric_path(physics, GridConfig(n_points=128), [NAPHTHALENE]),
        cs.default_centrosymmetric_path(PhysicsConfig(raman_fwhm=8.0), GRID, [NAPHTHALENE]),
        cs.default_centrosymmetric_path(physics, GRID, [NAPHTHALENE, C6F6]),
    ):
        assert other != path


def test_subset_store_copies_rows_in_order(tmp_path, small_grid):
    rng = np.random.default_rng(0)
    recs = [fake_record(i, small_grid, rng) for i in range(6)]
    with StoreWriter(tmp_path / "a.h5", small_grid, {"source": "t"}, ["a", "b"]) as w:
        w.extend(recs)
    subset_store(tmp_path / "a.h5", [4, 1], tmp_path / "b.h5", {"note": "x"})
    with open_store(tmp_path / "a.h5") as a, open_store(tmp_path / "b.h5") as b:
        assert b.n == 2 and b.attrs["source"] == "t" and b.attrs["note"] == "x"
        for j, i in enumerate([4, 1]):
            ra, rb = a.record(i), b.record(j)
            assert (ra.smiles, ra.source_index) == (rb.smiles, rb.source_index)
            np.testing.assert_array_equal(ra.stick_freq, rb.stick_freq)
            np.testing.assert_array_equal(a.spectra("ir", i), b.spectra("ir", j))
    with pytest.raises(StoreError):
        subset_store(tmp_path / "a.h5", [], tmp_path / "c.h5")


def test_hybrid_levels_fall_back_to_their_intensity_level_outside_qm9():
    from spektron.data.centrosymmetric import centrosymmetric_attrs, external_physics

    assert external_physics(PhysicsConfig(level="hybrid")).level == "xtb"
    assert external_physics(PhysicsConfig(level="mmff-hybrid")).level == "mmff"
    fast = external_physics(PhysicsConfig(level="fast-hybrid"))  # GFN2 IR, bond Raman
    assert (fast.level, fast.xtb_raman) == ("xtb", "bond")
    assert "bond-polarizability Raman" in centrosymmetric_attrs(fast, GridConfig())["label"]
    phys = PhysicsConfig(level="xtb", ir_fwhm=12.0)
    assert external_physics(phys) is phys
    attrs = centrosymmetric_attrs(phys, GridConfig())
    assert attrs["level"] == "xtb" and "GFN2-xTB" in attrs["label"]
    assert "SIMULATED" in attrs["label"]
    assert "MMFF94" in centrosymmetric_attrs(PhysicsConfig(), GridConfig())["label"]
