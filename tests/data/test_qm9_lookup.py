"""A user SMILES that QM9 holds is simulated from its QM9 row (data/molecules.py lookup_qm9)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from spektron.chemistry import simulate as sim
from spektron.chemistry.spectra import make_grid
from spektron.config import DatasetConfig, GridConfig, PhysicsConfig
from spektron.data import molecules as M
from spektron.data.generate import generate_dataset
from spektron.data.store import open_store
from spektron.errors import ConfigError
from tests.helpers import qm9_csv_path

GRID = make_grid(256)
# QM9 Index 1..30, methane ... 1-butyne: propyne 9, ethanol 14, acetone 18 (2-butyne, 29, is a
# rejected row)
N_ROWS = 30


@pytest.fixture(scope="module")
def qm9_head(tmp_path_factory) -> Path:
    """A QM9 data folder holding the first ``N_ROWS`` real rows of qm9pack (the other parts
    empty), so a lookup parses 30 rows, not 130,000."""
    src = qm9_csv_path()
    folder = tmp_path_factory.mktemp("qm9head")
    with open(src, newline="", encoding="utf-8") as f:
        lines = [next(f) for _ in range(N_ROWS + 1)]  # header + rows (one row per line)
    (folder / M.QM9_FILES[0]).write_text("".join(lines), encoding="utf-8")
    for name in M.QM9_FILES[1:]:
        (folder / name).write_text(lines[0], encoding="utf-8")
    csv.field_size_limit(1 << 30)
    return folder


@pytest.mark.parametrize(
    ("smiles", "expected"),
    [
        ("CCO", True),
        ("c1ccccc1", True),
        ("CCCCCCCCCC", False),  # 10 heavy atoms
        ("CS", False),  # sulfur
        ("[NH4+]", False),  # charged
        ("[Na+].[Cl-]", False),  # several fragments, charged ions
        ("C.C", False),  # two fragments
        ("C1CC", False),  # unparsable
    ],
)
def test_could_be_in_qm9(smiles, expected):
    assert M.could_be_in_qm9(smiles) is expected


def test_lookup_replaces_qm9_molecules_by_their_rows(qm9_head, tmp_path):
    inputs = M.read_smiles_list("OCC,CC(=O)C,c1ccccc1,[H]C([H])([H])[H],CCCCCCCCCCC")
    inputs[1].name = "acetone"
    out, rep = M.lookup_qm9(inputs, cache_dir=tmp_path, data_dir=qm9_head)
    assert rep.found == {0: 14, 1: 18, 3: 1}
    assert rep.n_inputs == 5 and rep.n_candidates == 4  # undecane is never looked up
    rows, _ = M.load_qm9(indices=[14, 18, 1], cache_dir=tmp_path, data_dir=qm9_head)
    for pos, row in zip((0, 1, 3), rows, strict=True):
        got = out[pos]
        assert got.source == f"qm9:{row.source_index}" and got.source_index == pos
        assert got.smiles == row.smiles and got.inchi == row.inchi
        assert got.elements == row.elements
        np.testing.assert_array_equal(got.coords, row.coords)
        np.testing.assert_array_equal(got.charges, row.charges)
        np.testing.assert_array_equal(got.dft_freqs, row.dft_freqs)
    assert out[1].name == "acetone"
    for pos in (2, 4):  # benzene is not among the 30 rows; undecane is outside QM9
        assert out[pos] is inputs[pos] and out[pos].source == "smiles" and out[pos].coords is None
    assert "3 of 5 molecules found in QM9" in rep.summary()


def test_lookup_does_not_load_qm9_when_no_molecule_can_be_in_it(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the QM9 index was loaded")

    monkeypatch.setattr(M, "_qm9_index", refuse)
    inputs = M.read_smiles_list("CCCCCCCCCCCC,CS,[NH4+],[Na+].[Cl-]")
    out, rep = M.lookup_qm9(inputs)
    assert out == inputs and rep.n_candidates == 0 and rep.found == {}


def test_stereo_and_tautomer_layers_must_match(qm9_head, tmp_path):
    # QM9 14 is ethanol; dimethyl ether (15) has the same formula but another constitution.
    out, rep = M.lookup_qm9(M.read_smiles_list("COC,OCC"), cache_dir=tmp_path, data_dir=qm9_head)
    assert rep.found == {0: 15, 1: 14}


@pytest.mark.parametrize("level", ["mmff", "mmff-hybrid", "fast-hybrid"])
def test_a_looked_up_smiles_simulates_as_its_qm9_row(qm9_head, tmp_path, level):
    (acetone,), _ = M.lookup_qm9(M.read_smiles_list("CC(C)=O"), tmp_path, qm9_head)
    (row,), _ = M.load_qm9(indices=[18], cache_dir=tmp_path, data_dir=qm9_head)
    physics = PhysicsConfig(level=level)
    a = sim.simulate_molecule(acetone, physics, GRID)
    b = sim.simulate_molecule(row, physics, GRID)
    assert a.source == b.source == "qm9:18" and a.source_index == 0
    assert a.charge_model == b.charge_model
    if level == "mmff":
        assert a.charge_model == "mulliken-dft"
    else:  # the DFT frequencies, scaled
        np.testing.assert_allclose(np.sort(a.stick_freq), np.sort(row.dft_freqs) * 0.965)
    for k in ("stick_freq", "stick_ir", "stick_raman", "ir", "raman"):
        np.testing.assert_allclose(getattr(a, k), getattr(b, k), rtol=1e-12, atol=1e-12)


def test_a_dataset_of_smiles_records_where_each_structure_came_from(qm9_head, monkeypatch):
    monkeypatch.setattr(M, "qm9_data_dir", lambda: qm9_head)  # the default QM9 folder
    cfg = DatasetConfig(
        source="smiles",
        smiles="CC(C)=O,c1ccccc1,C#CC",
        grid=GridConfig(n_points=256),
        physics=PhysicsConfig(level="mmff-hybrid"),
    )
    out = qm9_head.parent / "lookup.h5"
    rep = generate_dataset(cfg, out, workers=1, progress=False)
    # benzene is not a QM9 row here: refused at a level that needs DFT frequencies
    assert rep.n_ok == 2 and rep.n_failed == 1
    assert "not a QM9 molecule" in rep.failures[0]["message"]
    assert rep.qm9_lookup["n_found"] == 2 and rep.qm9_lookup["found"] == {"0": 18, "2": 9}
    with open_store(out) as s:
        assert list(s.column("source")) == ["qm9:18", "qm9:9"]
        assert list(s.column("source_index")) == [0, 2]
        assert "2 of 3 from their QM9 rows" in s.attrs["label"]
        assert s.summary()["structure_sources"] == {"qm9": 2}
    # switched off, every molecule is embedded from its SMILES
    off = dict(source="smiles", smiles="CC(C)=O", grid=GridConfig(n_points=256), qm9_lookup=False)
    with pytest.raises(ConfigError, match="none of the 1 molecules is a QM9 row"):
        generate_dataset(DatasetConfig(**off), qm9_head.parent / "x.h5", progress=False)
    assert not (qm9_head.parent / "x.h5").exists()
    cfg_off = DatasetConfig(**off, physics=PhysicsConfig(level="mmff"))
    rep_off = generate_dataset(cfg_off, qm9_head.parent / "off.h5", workers=1, progress=False)
    assert rep_off.qm9_lookup == {}
    with open_store(qm9_head.parent / "off.h5") as s:
        assert list(s.column("source")) == ["smiles"]
        assert s.record(0).charge_model.startswith("gasteiger")


def test_the_lookup_timing_does_not_change_the_store_attributes():
    # the attributes key a killed run's parts folder: a rerun must find it again
    from spektron.data.generate import dataset_attrs

    cfg = DatasetConfig(source="smiles", smiles="CCO")
    found = {"n_inputs": 1, "n_candidates": 1, "n_found": 1, "found": {"0": 14}}
    a = dataset_attrs(cfg, {**found, "seconds": 0.5})
    b = dataset_attrs(cfg, {**found, "seconds": 2.0})
    assert a == b and "seconds" not in a["qm9_lookup"]
