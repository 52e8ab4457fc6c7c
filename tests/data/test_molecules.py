"""QM9 parsing/validation/cache/selection, SMILES lists and InChIKeys (data/molecules.py)."""

from __future__ import annotations

import csv
import importlib.util
import itertools
import time
from pathlib import Path

import numpy as np
import pytest

from spektron.chemistry.molecule import MoleculeInput
from spektron.data import molecules as M
from spektron.errors import ConfigError, DataError, MoleculeError

HEADER = [
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
    "RotA_GHz",
]

# Real QM9 rows 1, 3, 5 (CH4, H2O, HCN), with a Mathematica-form number in the methane XYZ.
CH4 = dict(
    index=1,
    smiles="C",
    inchi="InChI=1S/CH4/h1H4",
    elements=["C", "H", "H", "H", "H"],
    xyz="[[-0.0126981359,1.0858041578,0.0080009958],[0.002150416,-0.0060313176,0.0019761204],"
    "[1.0117308433,1.4637511618,0.0002765748],[-0.540815069,1.4475266138,-0.8766437152],"
    "[-0.5238136345,1.4379326443,0.9063972942*^0]]",
    charges=[-0.535689, 0.133921, 0.133922, 0.133923, 0.133923],
    freqs=[1341.307, 1341.3284, 1341.365, 1562.6731, 1562.7453, 3038.3205, 3151.6034, 3151.6788]
    + [3151.7078],
)
H2O = dict(
    index=3,
    smiles="O",
    inchi="InChI=1S/H2O/h1H2",
    elements=["O", "H", "H"],
    xyz="[[-0.0343604951,0.9775395708,0.0076015923],[0.0647664923,0.0205721989,0.0015346341],"
    "[0.8717903737,1.3007924048,6.931336*^-4]]",
    charges=[-0.589706, 0.294853, 0.294853],
    freqs=[1671.4222, 3803.6305, 3907.698],
)
HCN = dict(
    index=5,
    smiles="C#N",
    inchi="InChI=1S/CHN/c1-2/h1H",
    elements=["C", "N", "H"],
    xyz="[[0.,0.,0.],[0.,0.,1.1516],[0.,0.,-1.0655]]",
    charges=[-0.049656, -0.188473, 0.238128],
    freqs=[799.0101, 799.0101, 2198.4393, 3490.3686],
)


def _row(index, smiles, inchi, elements, xyz, charges, freqs, n_atoms=None, stoich=None):
    counts = [elements.count(e) for e in ("H", "C", "N", "O", "F")]
    return [
        f"dsgdb9nsd_{index:06d}.xyz",
        str(index),
        smiles,
        inchi,
        str(len(elements) if n_atoms is None else n_atoms),
        str(stoich if stoich is not None else counts).replace(" ", ""),
        "[" + ",".join(f"'{e}'" for e in elements) + "]",
        xyz,
        "[" + ",".join(repr(q) for q in charges) + "]" if not isinstance(charges, str) else charges,
        "[" + ",".join(repr(f) for f in freqs) + "]" if not isinstance(freqs, str) else freqs,
        "0.",
    ]


def _variant(base, **kw):
    d = dict(base)
    d.update(kw)
    return _row(**d)


# (row, expected reject reason or None)
CASES = [
    (_row(**CH4), None),
    (_row(**H2O), None),
    (_row(**HCN), None),
    (
        _variant(H2O, index=10, freqs=H2O["freqs"] + [f + 0.001 for f in H2O["freqs"]]),
        "freqs_duplicated",
    ),
    (_variant(H2O, index=11, freqs=H2O["freqs"] + [100.0, 200.0, 300.0]), "freqs_count_mismatch"),
    (_variant(H2O, index=12, freqs=[1671.4, 3803.6]), "freqs_count_mismatch"),
    (_variant(HCN, index=13, freqs=HCN["freqs"][1:]), "freqs_count_mismatch"),
    (_variant(H2O, index=14, freqs=[-50.0, 3803.6, 3907.7]), "negative_freqs"),
    (_variant(H2O, index=15, charges=[-0.3, 0.4, 0.4]), "charge_not_neutral"),
    (_variant(H2O, index=16, n_atoms=4), "atom_count_mismatch"),
    (_variant(H2O, index=17, charges=[-0.5, 0.5]), "atom_count_mismatch"),
    (_variant(H2O, index=18, stoich=[2, 0, 0, 0, 1]), "stoichiometry_mismatch"),
    (_variant(H2O, index=19, elements=["S", "H", "H"]), "unknown_element"),
    (_variant(H2O, index=20, xyz="[[0.,0.,nan],[0.,0.,1.],[0.,1.,0.]]"), "malformed_row"),
    (_variant(H2O, index=21, xyz="[[0.,0.,1*^999],[0.,0.,1.],[0.,1.,0.]]"), "nonfinite_values"),
    (_variant(H2O, index=22, xyz="[[0.,0.,0.],[0.,0.,0.1],[0.,0.96,0.]]"), "geometry_implausible"),
    (_variant(H2O, index=23, xyz="[[0.,0.,0.],[0.,0.,0.96],[0.,2.5,-1.]]"), "geometry_implausible"),
    (_variant(H2O, index=24, inchi="garbage"), "inchi_invalid"),
    (_variant(H2O, index=25, smiles="O1CC"), "smiles_unparsable"),
    (_variant(CH4, index=26, smiles="N"), "smiles_mismatch"),
    (_variant(CH4, index=27, smiles="CC"), "smiles_mismatch"),
    (_variant(CH4, index=1), "duplicate_index"),
    (_row(**H2O)[:5] + ["x"], "malformed_row"),  # ragged row (missing fields)
]


@pytest.fixture
def qm9_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "qm9data"
    folder.mkdir()
    parts = [CASES[:10], CASES[10:], []]
    for name, rows in zip(M.QM9_FILES, parts, strict=True):
        with open(folder / name, "w", newline="") as f:
            w = csv.writer(f, quoting=csv.QUOTE_NONNUMERIC)
            w.writerow(HEADER)
            for row, _ in rows:
                w.writerow(row)
    return folder


def _expected_rejects():
    out: dict[str, int] = {}
    for _, reason in CASES:
        if reason:
            out[reason] = out.get(reason, 0) + 1
    return out


# ----------------------------------------------------------------------------- parsing


def test_mathematica_numbers():
    assert M.parse_mathematica_number("0.") == 0.0
    assert M.parse_mathematica_number("1.2*^-5") == pytest.approx(1.2e-5)
    assert M.parse_mathematica_number("-7.E-6") == pytest.approx(-7e-6)
    assert M.parse_mathematica_number(" 3 ") == 3.0
    for bad in ("nan", "inf", "1.2.3", "", "1*^", "0x10", "1_000"):
        with pytest.raises(MoleculeError):
            M.parse_mathematica_number(bad)
    np.testing.assert_allclose(M.parse_number_list("[0.,1.5*^2,-2E-1]"), [0.0, 150.0, -0.2])
    xyz = M.parse_xyz("[[0.,1.,2.],[3.*^0,4,5e-1]]")
    assert xyz.shape == (2, 3) and xyz[1, 2] == 0.5
    with pytest.raises(MoleculeError):
        M.parse_xyz("[[0.,1.],[3.,4.,5.]]")  # a pair is not a triple


def test_linearity_from_geometry():
    rng = np.random.default_rng(0)
    direction = rng.normal(size=3)
    line = np.outer(np.arange(5.0), direction / np.linalg.norm(direction)) + rng.normal(size=3)
    assert M.is_linear(line)
    bent = line.copy()
    bent[2] += (
        1e-3 * np.cross(direction, [0, 0, 1]) / np.linalg.norm(np.cross(direction, [0, 0, 1]))
    )
    assert not M.is_linear(bent)
    assert M.n_vibrational_modes(line) == 3 * 5 - 5
    assert M.n_vibrational_modes(bent) == 3 * 5 - 6


def test_parse_qm9_row_values():
    mol = M.parse_qm9_row(dict(zip(HEADER, _row(**CH4), strict=True)))
    assert mol.source_index == 1 and mol.name == "dsgdb9nsd_000001"
    assert mol.elements == ["C", "H", "H", "H", "H"]
    assert mol.coords.shape == (5, 3) and mol.coords[4, 2] == pytest.approx(0.9063972942)
    assert abs(mol.charges.sum()) < 1e-5
    assert len(mol.dft_freqs) == 9  # 3N - 6
    hcn = M.parse_qm9_row(dict(zip(HEADER, _row(**HCN), strict=True)))
    assert len(hcn.dft_freqs) == 4  # linear: 3N - 5


@pytest.mark.parametrize(
    ("row", "reason"), [c for c in CASES if c[1] and c[1] != "duplicate_index"]
)
def test_parse_qm9_row_rejects(row, reason):
    fields = dict(itertools.zip_longest(HEADER, row, fillvalue=None))
    fields = {k: v for k, v in fields.items() if k is not None and v is not None}
    with pytest.raises(M.QM9RowError) as e:
        M.parse_qm9_row(fields)
    assert e.value.reason == reason
    assert reason in str(e.value)


def test_parse_qm9_counts_rejects_by_reason(qm9_dir):
    mols, rep = M.parse_qm9(qm9_dir)
    assert [m.source_index for m in mols] == [1, 3, 5]
    assert rep.total_rows == len(CASES)
    assert rep.accepted + rep.n_rejected == rep.total_rows
    assert dict(rep.rejects) == _expected_rejects()
    assert rep.rejected_indices["negative_freqs"] == [14]
    assert rep.n_linear == 1


def test_parse_qm9_in_processes_equals_one_process(qm9_dir):
    """Rows shared between processes (each every n-th row) give the same molecules, rejects and
    reject order as one process, the duplicate Index included (its first row may sit in the
    other process's share)."""
    one_mols, one = M.parse_qm9(qm9_dir, workers=1)
    for n in (2, 3):
        mols, rep = M.parse_qm9(qm9_dir, workers=n)
        assert rep.to_dict() | {"seconds": 0} == one.to_dict() | {"seconds": 0}
        assert rep.rejected_indices == one.rejected_indices
        assert [(m.source_index, m.smiles, m.coords.tolist()) for m in mols] == [
            (m.source_index, m.smiles, m.coords.tolist()) for m in one_mols
        ]
    assert "duplicate_index" in one.rejects
    for bad in (-1, 1.5, True):
        with pytest.raises(ConfigError, match="workers"):
            M.parse_qm9(qm9_dir, workers=bad)


def test_qm9_folder_problems(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="qm9_part1.csv"):
        M.parse_qm9(tmp_path)
    for name in M.QM9_FILES:
        (tmp_path / name).write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="columns missing"):
        M.parse_qm9(tmp_path)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="qm9pack"):
        M.qm9_data_dir()


# ----------------------------------------------------------------------------- cache and selection


def test_load_qm9_builds_then_uses_cache(qm9_dir, tmp_path):
    cache = tmp_path / "cache"
    mols, rep = M.load_qm9(cache_dir=cache, data_dir=qm9_dir)
    assert not rep.from_cache and Path(rep.cache_path).is_file()
    assert dict(rep.rejects) == _expected_rejects()
    again, rep2 = M.load_qm9(cache_dir=cache, data_dir=qm9_dir)
    assert rep2.from_cache
    assert rep2.to_dict() | {"from_cache": 0, "seconds": 0} == rep.to_dict() | {
        "from_cache": 0,
        "seconds": 0,
    }
    for a, b in zip(mols, again, strict=True):
        assert (a.source_index, a.smiles, a.inchi, a.elements, a.name) == (
            b.source_index,
            b.smiles,
            b.inchi,
            b.elements,
            b.name,
        )
        np.testing.assert_array_equal(a.coords, b.coords)
        np.testing.assert_array_equal(a.charges, b.charges)
        np.testing.assert_array_equal(a.dft_freqs, b.dft_freqs)


def test_corrupt_cache_is_rebuilt(qm9_dir, tmp_path):
    cache = tmp_path / "cache"
    _, rep = M.load_qm9(cache_dir=cache, data_dir=qm9_dir)
    Path(rep.cache_path).write_bytes(b"not an npz")
    with pytest.warns(UserWarning, match="rebuilding"):
        mols, rep2 = M.load_qm9(cache_dir=cache, data_dir=qm9_dir)
    assert not rep2.from_cache and len(mols) == 3
    assert M.load_qm9(cache_dir=cache, data_dir=qm9_dir)[1].from_cache


def test_selection_by_n_is_seeded_and_nested(qm9_dir, tmp_path):
    kw = dict(cache_dir=tmp_path / "c", data_dir=qm9_dir)
    ids = {n: [m.source_index for m in M.load_qm9(n=n, seed=7, **kw)[0]] for n in (1, 2, 3)}
    assert ids[3][:2] == ids[2] and ids[2][:1] == ids[1]
    assert sorted(ids[3]) == [1, 3, 5]
    assert ids[3] == [m.source_index for m in M.load_qm9(n=3, seed=7, **kw)[0]]
    picked, rep = M.load_qm9(indices=[5, 1], **kw)
    assert [m.source_index for m in picked] == [5, 1] and rep.selected == 2
    with pytest.raises(MoleculeError, match=r"14 \(negative_freqs\)"):
        M.load_qm9(indices=[1, 14], **kw)
    with pytest.raises(MoleculeError, match="not in QM9"):
        M.load_qm9(indices=[999], **kw)
    for bad in (dict(n=4), dict(n=0), dict(n=1, indices=[1]), dict(indices=[1, 1]), dict(seed=-1)):
        with pytest.raises(ConfigError):
            M.load_qm9(**bad, **kw)


def test_seeded_order_properties():
    ids = np.arange(1, 5001) * 3
    a = M.seeded_order(ids, seed=0)
    assert sorted(a.tolist()) == list(range(len(ids)))
    np.testing.assert_array_equal(a, M.seeded_order(ids, seed=0))
    assert not np.array_equal(a, M.seeded_order(ids, seed=1))
    # Dropping molecules (e.g. a new reject) keeps the relative order of the others.
    keep = ids[ids % 7 != 0]
    order_full = ids[a]
    np.testing.assert_array_equal(keep[M.seeded_order(keep, 0)], order_full[order_full % 7 != 0])
    # Not the identity or a near-sort: roughly uniform ranks.
    assert abs(np.corrcoef(np.arange(len(ids)), a)[0, 1]) < 0.1


# ----------------------------------------------------------------------------- real qm9pack data


def test_real_qm9_first_rows():
    """The first rows hold linear (HCN, C2H2, ...), nearly linear (N#CC#N) and doubled rows."""
    path = M.qm9_data_dir() / M.QM9_FILES[0]
    with open(path, newline="") as f:
        rows = list(itertools.islice(csv.DictReader(f), 30))
    got, reasons = {}, {}
    for row in rows:
        try:
            got[int(row["Index"])] = M.parse_qm9_row(row)
        except M.QM9RowError as e:
            reasons[e.index] = e.reason
    assert reasons.get(29) == "freqs_duplicated"  # CC#CC: two frequency runs concatenated
    for idx in (4, 5, 23, 24):  # C#C, C#N, C#CC#C, C#CC#N: exactly linear
        m = got[idx]
        assert M.is_linear(m.coords) and len(m.dft_freqs) == 3 * len(m.elements) - 5
    ncn = got[25]  # N#CC#N: 4.5e-4 Å off axis, computed as bent
    assert ncn.smiles == "N#CC#N" and len(ncn.dft_freqs) == 3 * 4 - 6
    for m in got.values():
        assert abs(m.charges.sum()) < M.CHARGE_SUM_TOL
        assert (m.dft_freqs > 0).all()
    assert got[1].name == "dsgdb9nsd_000001" and got[1].elements[0] == "C"


@pytest.mark.slow
def test_real_qm9_full_parse_and_cache(tmp_path):
    t0 = time.perf_counter()
    mols, rep = M.load_qm9(cache_dir=tmp_path)
    t_build = time.perf_counter() - t0
    n_lines = 0
    for name in M.QM9_FILES:
        with open(M.qm9_data_dir() / name, newline="") as f:
            n_lines += sum(1 for _ in csv.reader(f)) - 1
    assert rep.total_rows == n_lines
    assert rep.accepted == len(mols) and rep.accepted + rep.n_rejected == rep.total_rows
    assert rep.rejects["freqs_duplicated"] > 0 and rep.rejects["negative_freqs"] > 0
    assert rep.n_linear > 0
    for m in mols:
        assert len(m.dft_freqs) == M.n_vibrational_modes(m.coords)
    t0 = time.perf_counter()
    sub, rep2 = M.load_qm9(n=1000, seed=3, cache_dir=tmp_path)
    t_cached = time.perf_counter() - t0
    assert rep2.from_cache and not rep.from_cache  # the second call read the index it wrote
    by_index = {m.source_index: m for m in mols}
    for m in sub:
        np.testing.assert_array_equal(m.coords, by_index[m.source_index].coords)
    print(f"\n{rep.summary()}\nbuild {t_build:.1f} s, cached n=1000 {t_cached:.2f} s")


# ----------------------------------------------------------------------------- SMILES lists


def test_smiles_list_from_text():
    mols = M.read_smiles_list("CCO, c1ccccc1 ,F/C=C/F,C#N")
    assert [m.smiles for m in mols] == ["CCO", "c1ccccc1", "F/C=C/F", "C#N"]
    assert [m.source_index for m in mols] == [0, 1, 2, 3]
    assert all(m.coords is None and m.name is None for m in mols)
    with pytest.raises(MoleculeError, match="C1CC"):
        M.read_smiles_list("CCO,C1CC")
    with pytest.raises(MoleculeError, match="no SMILES"):
        M.read_smiles_list(" , ")
    # A list longer than a file name may be (was: OSError "File name too long").
    long_list = ",".join(["c1ccc2ccccc2c1"] * 40)
    assert len(M.read_smiles_list(long_list)) == 40


def test_smiles_list_from_file(tmp_path):
    f = tmp_path / "mols.smi"
    f.write_text("# my molecules\n\nCCO ethanol\nC#N   hydrogen cyanide\n  O\nC=C # comment\n")
    mols = M.read_smiles_list(f)
    assert [(m.smiles, m.name) for m in mols] == [
        ("CCO", "ethanol"),
        ("C#N", "hydrogen cyanide"),
        ("O", None),
        ("C=C", None),
    ]
    assert [m.source_index for m in mols] == [0, 1, 2, 3]
    f.write_text("CCO\n# x\nC1CC bad\n")
    with pytest.raises(MoleculeError, match=r"mols\.smi:3.*C1CC"):
        M.read_smiles_list(str(f))
    with pytest.raises(DataError, match="not found"):
        M.read_smiles_list(tmp_path / "missing.smi")


def test_inchikey_from_inchi_or_smiles():
    methane_key = "VNWKTOKETHGBQD-UHFFFAOYSA-N"
    assert M.inchikey_of(MoleculeInput(0, "C", inchi="InChI=1S/CH4/h1H4")) == methane_key
    assert M.inchikey_of(MoleculeInput(0, "C")) == methane_key
    assert M.inchikey_of(MoleculeInput(0, "OCC")) == M.inchikey_of(MoleculeInput(1, "CCO"))
    with pytest.raises(MoleculeError):
        M.inchikey_of(MoleculeInput(0, "C", inchi="InChI=garbage"))
    with pytest.raises(MoleculeError):
        M.inchikey_of(MoleculeInput(0, "C1CC"))
