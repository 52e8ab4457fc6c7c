"""QM9S converters: wide CSVs, per-molecule zip, qm9s.pt; normal-mode physics and unit constants."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from spektron.chemistry.spectra import make_grid
from spektron.config import GridConfig
from spektron.data import qm9s
from spektron.data.qm9s import (
    Qm9sConfig,
    convert_qm9s,
    load_qm9s_pt,
    normal_modes_from_hessian,
    parse_molecule_csv,
    sticks_from_hessian,
)
from spektron.data.store import open_store
from spektron.errors import ConfigError, DataError
from tests.data import qm9s_fixtures as fx

GRID = make_grid()  # the default model grid, 2048 points 500–4000


def masses(z):
    return np.array([fx.ISOTOPIC_MASS[int(a)] for a in z])


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or p.suffix == ".h5")


# ----------------------------------------------------------------------------- constants


def test_unit_constants_match_their_codata_derivations():
    assert qm9s.HESSIAN_TO_CM == pytest.approx(521.47, abs=0.005)
    assert qm9s.HESSIAN_TO_CM == pytest.approx(fx.HESS_CM, rel=1e-12)
    assert qm9s.IR_TO_KM_MOL == pytest.approx(fx.IR_KM_MOL, rel=2e-5)
    # QM9S/DetaNet's value of a₀⁶ is 4e-7 off CODATA 2018 (an older a₀)
    assert qm9s.RAMAN_BOHR6_TO_A4 == pytest.approx(fx.RAMAN_A4, rel=1e-6)
    assert fx.E_A_TO_DEBYE == pytest.approx(4.80320, rel=1e-5)


# ----------------------------------------------------------------------------- physics


@pytest.mark.parametrize("build", [fx.water, fx.formaldehyde])
def test_normal_modes_recover_prescribed_frequencies(build):
    mol = build()
    m = masses(mol.z)
    freqs, modes = normal_modes_from_hessian(mol.hessian, m, mol.coords)
    assert freqs.shape == (3 * len(m) - 6,)
    np.testing.assert_allclose(freqs, mol.freqs, rtol=1e-9)
    # cartesian modes are mass-orthonormal: Lᵀ M L = I
    gram = modes.T @ (np.repeat(m, 3)[:, None] * modes)
    np.testing.assert_allclose(gram, np.eye(len(freqs)), atol=1e-10)


@pytest.mark.parametrize("build", [fx.water, fx.formaldehyde])
def test_prescribed_dipole_and_polarizability_derivatives_give_known_intensities(build):
    mol = build()
    freq, ir, raman = sticks_from_hessian(
        mol.hessian, masses(mol.z), mol.coords, mol.dipole_deriv, mol.polar_deriv, freq_scale=0.965
    )
    np.testing.assert_allclose(freq, 0.965 * mol.freqs, rtol=1e-9)
    np.testing.assert_allclose(ir, mol.ir, rtol=1e-6)  # 42.2561 vs CODATA: 2e-6
    np.testing.assert_allclose(raman, mol.raman, rtol=1e-6)


def test_co2_force_field_frequencies_intensities_and_mutual_exclusion():
    mol = fx.co2()
    freq, ir, raman = sticks_from_hessian(
        mol.hessian, masses(mol.z), mol.coords, mol.dipole_deriv, mol.polar_deriv, freq_scale=1.0
    )
    assert freq.shape == (4,)  # linear: 3N − 5
    np.testing.assert_allclose(freq, mol.freqs, rtol=1e-9)
    np.testing.assert_allclose(ir, mol.ir, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(raman, mol.raman, rtol=1e-6, atol=1e-9)
    active_ir, active_raman = ir > 1e-6, raman > 1e-6
    assert not np.any(active_ir & active_raman)  # centrosymmetric: no mode in both


def test_normal_modes_are_invariant_to_rigid_motion_and_ignore_rigid_components():
    mol = fx.water()
    m = masses(mol.z)
    rot = fx._rotation(np.random.default_rng(5))
    x2 = mol.coords @ rot.T + 3.0
    big = np.kron(np.eye(3), rot)
    f1, _ = normal_modes_from_hessian(mol.hessian, m, mol.coords)
    f2, _ = normal_modes_from_hessian(big @ mol.hessian @ big.T, m, x2)
    np.testing.assert_allclose(f1, f2, rtol=1e-9)


# ----------------------------------------------------------------------------- wide CSVs


def test_wide_csvs_stream_into_a_store_equal_to_the_interpolated_rows(tmp_path):
    ids = [0, 1, 2, 3, 4]
    ir = fx.write_analytic_csv(tmp_path / "ir_boraden.csv", ids, "ir")
    raman = fx.write_analytic_csv(tmp_path / "raman_boraden.csv", ids, "raman", id_label="id")
    out = convert_qm9s(tmp_path / "s.h5", ir_csv=ir, raman_csv=raman, chunk_rows=2, progress=False)
    with open_store(out, expected_grid=GRID) as s:
        assert s.n == 5
        np.testing.assert_array_equal(s.column("source_index"), ids)
        assert s.column("has_ir").all() and s.column("has_raman").all()
        for i in ids:
            for kind in ("ir", "raman"):
                got = s.spectra(kind, i)
                exact = fx.analytic_spectrum(i, GRID, kind)
                np.testing.assert_allclose(got, exact, rtol=2e-5)  # interpolation + float32
                file_row = fx.analytic_spectrum(i, fx.FILE_GRID, kind)
                np.testing.assert_allclose(got, np.interp(GRID, fx.FILE_GRID, file_row), rtol=1e-6)
        rec = s.record(3)
        assert (rec.smiles, rec.inchikey, rec.centrosymmetric, rec.point_group) == ("", "", -1, "")
        assert len(rec.stick_freq) == 0
        cfg = s.config()
        assert s.attrs["source"] == "qm9s-csv" and s.attrs["identity"] == "none"
        assert "stored as given" in s.attrs["spectra"]
        assert cfg["inputs"]["ir_csv"] == {
            "name": "ir_boraden.csv",
            "size_bytes": ir.stat().st_size,
        }
        assert cfg["route"] == "csv" and cfg["grid"]["n_points"] == len(GRID)


def test_header_label_and_number_formats_do_not_matter_and_files_may_come_alone(tmp_path):
    grid = make_grid(300, 700.0, 3100.0)
    a = fx.write_analytic_csv(tmp_path / "a.csv", [0, 1, 2], "raman", id_label="")
    b = fx.write_analytic_csv(
        tmp_path / "b.csv", [0, 1, 2], "raman", id_label="Unnamed: 0", int_header=False
    )
    sa = convert_qm9s(tmp_path / "a.h5", raman_csv=a, grid=grid, progress=False)
    sb = convert_qm9s(
        tmp_path / "b.h5", raman_csv=b, grid=GridConfig(300, 700.0, 3100.0), progress=False
    )
    with open_store(sa, expected_grid=grid) as x, open_store(sb, expected_grid=grid) as y:
        np.testing.assert_array_equal(
            x.spectra("raman", slice(None)), y.spectra("raman", slice(None))
        )
        assert not x.column("has_ir").any()


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            lambda h: h.replace(",1234,", ",x1234,"),
            r"header column 736 is 'x1234', not a wavenumber",
        ),
        (
            lambda h: h.replace(",1234,", ",1232,"),
            r"not strictly increasing \(column 735: 1233, column 736: 1232\)",
        ),
        (
            lambda h: ",".join(h.split(",")[:1] + h.split(",")[101:]),
            r"600–4000 cm⁻¹ does not cover",
        ),
        (lambda h: "id", r"header has 1 field"),
    ],
)
def test_bad_headers_are_refused_naming_file_and_problem(tmp_path, edit, match):
    lines = fx.wide_csv_lines([0], fx.analytic_spectrum(0, fx.FILE_GRID)[None])
    lines[0] = edit(lines[0])
    path = fx.write_lines(tmp_path / "ir_boraden.csv", lines)
    with pytest.raises(DataError, match=match) as e:
        convert_qm9s(tmp_path / "s.h5", ir_csv=path, progress=False)
    assert str(path) in str(e.value)
    assert leftovers(tmp_path) == []


def test_a_header_without_rows_is_refused(tmp_path):
    lines = fx.wide_csv_lines([], np.zeros((0, len(fx.FILE_GRID)))) + ["", ""]
    path = fx.write_lines(tmp_path / "ir_boraden.csv", lines)
    with pytest.raises(DataError, match=r"ir_boraden.csv: no data rows after the header"):
        convert_qm9s(tmp_path / "s.h5", ir_csv=path, progress=False)
    assert leftovers(tmp_path) == []


def _corrupt(line: str, how: str) -> str:
    cells = line.split(",")
    if how == "truncated":
        return ",".join(cells[:2000])
    if how == "nan":
        cells[1500] = "nan"
    elif how == "text":
        cells[1500] = "0.1.2"
    elif how == "id":
        cells[0] = "3.5"
    elif how == "order":
        cells[0] = "1"
    return ",".join(cells)


@pytest.mark.parametrize(
    ("how", "match"),
    [
        ("truncated", r"line 5: 2000 fields, but the header has 3502 \(truncated row\?\)"),
        ("nan", r"line 5, column 1501 \(1999 cm⁻¹\): nan \(NaN/Inf\)"),
        ("text", r"line 5, column 1501: '0.1.2' is not a number"),
        ("id", r"line 5: row id 3.5 is not a non-negative integer"),
        ("order", r"line 5: row id 1 after 2; row ids must increase"),
    ],
)
def test_bad_rows_fail_mid_stream_leaving_no_store(tmp_path, how, match):
    ids = list(range(6))
    rows = np.stack([fx.analytic_spectrum(i, fx.FILE_GRID) for i in ids])
    lines = fx.wide_csv_lines(ids, rows)
    lines[4] = _corrupt(lines[4], how)  # data row 3 = file line 5
    path = fx.write_lines(tmp_path / "ir_boraden.csv", lines)
    out = tmp_path / "s.h5"
    with pytest.raises(DataError, match=match) as e:
        convert_qm9s(out, ir_csv=path, chunk_rows=1, progress=False)  # rows 0-2 were appended
    assert str(path) in str(e.value)
    assert not out.exists() and leftovers(tmp_path) == []


def test_ir_and_raman_must_agree_row_by_row(tmp_path):
    ir = fx.write_analytic_csv(tmp_path / "ir_boraden.csv", [0, 1, 2, 3])
    raman = fx.write_analytic_csv(tmp_path / "raman_boraden.csv", [0, 1, 2, 5], "raman")
    with pytest.raises(
        DataError, match=r"line 5 has row id 3, .*raman_boraden.csv line 5 has row id 5"
    ):
        convert_qm9s(tmp_path / "s.h5", ir_csv=ir, raman_csv=raman, chunk_rows=3, progress=False)
    short = fx.write_analytic_csv(tmp_path / "short.csv", [0, 1, 2], "raman")
    with pytest.raises(DataError, match=r"short.csv ends after 3 data rows but .*ir_boraden.csv"):
        convert_qm9s(tmp_path / "s.h5", ir_csv=ir, raman_csv=short, chunk_rows=3, progress=False)
    assert leftovers(tmp_path) == []


def test_limit_stops_early(tmp_path):
    ir = fx.write_analytic_csv(tmp_path / "ir_boraden.csv", list(range(7)))
    with open_store(convert_qm9s(tmp_path / "s.h5", ir_csv=ir, limit=3, progress=False)) as s:
        np.testing.assert_array_equal(s.column("source_index"), [0, 1, 2])


# ----------------------------------------------------------------------------- zip


def test_zip_route_recomputes_known_sticks_and_identity(tmp_path):
    mols = fx.model_molecules()  # CO2, water, formaldehyde
    z = fx.write_model_zip(tmp_path / "qm9s_csv.zip", mols, smiles_override={1: ""})
    out = convert_qm9s(tmp_path / "s.h5", zip_path=z, progress=False)
    with open_store(out, expected_grid=GRID) as s:
        assert s.n == 3
        np.testing.assert_array_equal(s.column("source_index"), [0, 1, 2])  # QM9S number − 1
        for i, mol in enumerate(mols):
            freq, ir, raman = s.sticks(i)
            np.testing.assert_allclose(freq, 0.965 * mol.freqs, rtol=1e-9)
            np.testing.assert_allclose(ir, mol.ir, rtol=1e-6, atol=1e-9)
            np.testing.assert_allclose(raman, mol.raman, rtol=1e-6, atol=1e-9)
            for kind in ("ir", "raman"):
                np.testing.assert_allclose(
                    s.spectra(kind, i), fx.broadened(mol, GRID, kind), rtol=1e-5, atol=1e-6
                )
        assert list(s.column("smiles")) == ["O=C=O", "O", "C=O"]  # water's from the geometry
        assert s.column("inchikey")[1] == "XLYOFNOQVPJJNP-UHFFFAOYSA-N"
        assert list(s.column("centrosymmetric")) == [1, 0, 0]
        assert list(s.column("point_group")) == ["D∞h", "C2v", "C2v"]
        assert list(s.column("n_atoms")) == [3, 3, 4]
        groups = [set(np.array(s.fg_names)[row]) for row in s.column("fg_flags")]
        assert {"aldehyde", "carbonyl"} <= groups[2] and "hydroxyl" not in groups[1]
        assert s.attrs["source"] == "qm9s-zip"
        assert '"from_geometry": 1' in s.attrs["smiles_sources"]


@pytest.mark.parametrize(
    ("header", "index"), [(True, True), (False, False), (True, False), (False, True)]
)
def test_molecule_csv_parses_with_or_without_the_pandas_header_and_index(header, index):
    mol = fx.formaldehyde()
    m = parse_molecule_csv(fx.molecule_csv_text(mol, 12, header=header, index=index), "a.csv")
    assert (m.qm9s_index, m.qm9_index, m.smiles) == (12, 19, "C=O")
    np.testing.assert_array_equal(m.atomic_numbers, mol.z)
    np.testing.assert_allclose(m.coords, mol.coords)
    np.testing.assert_allclose(m.hessian, mol.hessian)
    np.testing.assert_allclose(m.dipole_deriv, mol.dipole_deriv)
    np.testing.assert_allclose(m.polar_deriv, mol.polar_deriv)


def _edit_cell(text: str, line: int, col: int, value: str) -> str:
    """Set cell ``col`` of text line ``line`` (0-based; -1: the last non-empty cell)."""
    lines = text.split("\n")
    cells = lines[line].split(",")
    if col < 0:
        col = max(k for k, c in enumerate(cells) if c)
    cells[col] = value
    lines[line] = ",".join(cells)
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda t: t.rsplit("\n", 2)[0] + "\n", r"27 data lines, expected 10 \+ 6·3 = 28"),
        (
            lambda t: _edit_cell(t, 14, 3, "abc"),
            r"000002.csv, line 15 \(dipole derivatives, D/Å\): 'abc' is not a number",
        ),
        (
            lambda t: _edit_cell(t, 27, -1, ""),
            r"000002.csv, line 28 \(Hessian, eV/Å²\): 8 values, expected 9",
        ),
        (
            lambda t: _edit_cell(t, 12, 1, "11.5"),
            r"000002.csv, line 13 \(coordinates\): atom type 11.5 is neither",
        ),
    ],
)
def test_bad_molecule_files_name_the_zip_member_line_and_section(tmp_path, edit, match):
    mols = [fx.co2(), fx.water()]
    texts = {f"{i + 1:06d}.csv": fx.molecule_csv_text(m, i + 1) for i, m in enumerate(mols)}
    texts["000002.csv"] = edit(texts["000002.csv"])
    z = fx.write_zip(tmp_path / "qm9s_csv.zip", texts)
    with pytest.raises(DataError, match=match) as e:
        convert_qm9s(tmp_path / "s.h5", zip_path=z, progress=False)
    assert "qm9s_csv.zip:qm9s_csv/000002.csv" in str(e.value)
    assert leftovers(tmp_path) == []


def test_unzipped_folder_converts_like_the_zip(tmp_path):
    folder = tmp_path / "qm9s_csv"
    folder.mkdir()
    (folder / "000005.csv").write_text(fx.molecule_csv_text(fx.water(), 5))
    with open_store(convert_qm9s(tmp_path / "s.h5", zip_path=folder, progress=False)) as s:
        assert list(s.column("source_index")) == [4] and list(s.column("smiles")) == ["O"]


# ----------------------------------------------------------------------------- qm9s.pt


def test_pt_is_refused_without_the_trust_flag(tmp_path):
    pt = fx.write_pt(tmp_path / "qm9s.pt", [fx.water()])
    ir = fx.write_analytic_csv(tmp_path / "ir_boraden.csv", [0])
    with pytest.raises(
        ConfigError, match=r"trust_pickle=True.*arbitrary code|arbitrary code.*trust_pickle=True"
    ):
        load_qm9s_pt(pt)
    with pytest.raises(ConfigError, match="trust_pickle"):
        convert_qm9s(tmp_path / "s.h5", ir_csv=ir, pt_path=pt, progress=False)
    assert not (tmp_path / "s.h5").exists()


@pytest.mark.parametrize("style", ["pyg2", "pyg1"])
def test_pt_loads_without_torch_geometric(tmp_path, style):
    pt = fx.write_pt(tmp_path / "qm9s.pt", [fx.co2(), fx.water()], style=style)
    assert "torch_geometric" not in sys.modules
    entries = load_qm9s_pt(pt, trust_pickle=True)
    assert [e["smile"] for e in entries] == ["O=C=O", "O"]
    assert entries[1]["Hi"].shape == (3, 3, 3) and entries[1]["depolar"].shape == (3, 3, 6)
    assert "_store" not in entries[0] and "__num_nodes__" not in entries[0]
    assert "torch_geometric" not in sys.modules


def _csv_from_molecules(tmp_path, mols):
    """Wide CSVs whose rows are the known spectra of ``mols`` (independent of the code)."""
    ids = list(range(len(mols)))
    paths = {}
    for kind in ("ir", "raman"):
        rows = np.stack([fx.broadened(m, fx.FILE_GRID, kind) for m in mols])
        paths[kind] = fx.write_lines(tmp_path / f"{kind}_boraden.csv", fx.wide_csv_lines(ids, rows))
    return paths


def test_pt_identity_attaches_to_csv_rows_by_position(tmp_path):
    mols = fx.model_molecules()
    paths = _csv_from_molecules(tmp_path, mols)
    pt = fx.write_pt(tmp_path / "qm9s.pt", mols)  # `number` fields are 1000, 1017, 1034
    out = convert_qm9s(
        tmp_path / "s.h5",
        ir_csv=paths["ir"],
        raman_csv=paths["raman"],
        pt_path=pt,
        trust_pickle=True,
        config=Qm9sConfig(verify_every=1),
        progress=False,
    )
    with open_store(out) as s:
        assert list(s.column("smiles")) == ["O=C=O", "O", "C=O"]
        assert list(s.column("inchikey")) == [
            "CURLTUGMZLYLDI-UHFFFAOYSA-N",
            "XLYOFNOQVPJJNP-UHFFFAOYSA-N",
            "WSFSSNUMVMOOMR-UHFFFAOYSA-N",
        ]
        assert list(s.column("source_index")) == [0, 1, 2]
        assert list(s.column("centrosymmetric")) == [1, 0, 0]
        assert s.attrs["identity"] == "qm9s.pt by list position"
        check = s.attrs["alignment_check"]
        assert '"checked": 3' in check and '"failed": 0' in check


def test_misaligned_pt_is_detected(tmp_path):
    mols = fx.model_molecules()
    paths = _csv_from_molecules(tmp_path, mols)
    pt = fx.write_pt(tmp_path / "qm9s.pt", [fx.formaldehyde(seed=9), *mols])  # shifted by one
    out = tmp_path / "s.h5"
    with pytest.raises(DataError, match=r"does not line up .* 3 of 3 checked rows"):
        convert_qm9s(
            out,
            ir_csv=paths["ir"],
            pt_path=pt,
            trust_pickle=True,
            config=Qm9sConfig(verify_every=1),
            progress=False,
        )
    assert not out.exists()
    # Opting out attaches the (wrong) identities, as asked.
    convert_qm9s(
        out,
        ir_csv=paths["ir"],
        pt_path=pt,
        trust_pickle=True,
        config=Qm9sConfig(verify_alignment=False),
        progress=False,
    )
    with open_store(out) as s:
        assert list(s.column("smiles")) == ["C=O", "O=C=O", "O"]


def test_pt_alone_recomputes_the_same_spectra_as_the_zip(tmp_path):
    mols = fx.model_molecules()
    pt = fx.write_pt(tmp_path / "qm9s.pt", mols)
    z = fx.write_model_zip(tmp_path / "qm9s_csv.zip", mols)
    a = convert_qm9s(tmp_path / "pt.h5", pt_path=pt, trust_pickle=True, progress=False)
    b = convert_qm9s(tmp_path / "zip.h5", zip_path=z, progress=False)
    with open_store(a) as sa, open_store(b) as sb:
        assert sa.attrs["source"] == "qm9s-pt"
        for i in range(3):
            for x, y in zip(sa.sticks(i), sb.sticks(i), strict=True):
                np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(sa.spectra("ir", slice(None)), sb.spectra("ir", slice(None)))
        assert list(sa.column("smiles")) == list(sb.column("smiles"))
        assert list(sa.column("source_index")) == list(sb.column("source_index"))


def test_assemble_hessian_places_hij_at_rows_of_the_target_atom():
    rng = np.random.default_rng(0)
    h = rng.normal(size=(9, 9))
    h = h + h.T
    entry = {
        k: v.numpy() if hasattr(v, "numpy") else v for k, v in fx.pt_entry(fx.water(), 1).items()
    }
    # Replace the water Hessian blocks by a generic symmetric matrix split the DetaNet way.
    h4 = h.reshape(3, 3, 3, 3)
    src, dst = entry["edge_index"]
    got = qm9s.assemble_hessian(
        h4[np.arange(3), :, np.arange(3), :], h4[dst, :, src, :], entry["edge_index"]
    )
    np.testing.assert_allclose(got, h)


# ----------------------------------------------------------------------------- arguments


def test_argument_combinations_are_checked(tmp_path):
    ir = fx.write_analytic_csv(tmp_path / "ir_boraden.csv", [0])
    z = fx.write_model_zip(tmp_path / "qm9s_csv.zip", [fx.water()])
    with pytest.raises(ConfigError, match="nothing to convert"):
        convert_qm9s(tmp_path / "s.h5")
    with pytest.raises(ConfigError, match="not both"):
        convert_qm9s(tmp_path / "s.h5", ir_csv=ir, zip_path=z)
    with pytest.raises(DataError, match="missing.csv: file not found"):
        convert_qm9s(tmp_path / "s.h5", ir_csv=tmp_path / "missing.csv")
    with pytest.raises(ConfigError, match="masses"):
        Qm9sConfig(masses="heavy")
