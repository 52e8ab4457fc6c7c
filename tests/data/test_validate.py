"""Validation of the simulation levels against the DFT reference set (spektron.data.validate)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from spektron.chemistry.spectra import make_grid
from spektron.cli import main
from spektron.data import validate as val
from spektron.errors import ConfigError, DataError
from spektron.experiments.validation_report import plot_validation
from tests.helpers import qm9_inputs

GRID = make_grid()
# Reference molecules of the fast subset: CH4, NH3, H2O (QM9 1, 2, 3), HCN (5).
FAST = [1, 3, 5]


@pytest.fixture
def fast_qm9(monkeypatch):
    """QM9 rows read directly from qm9pack's first CSV (the full QM9 index takes a minute)."""
    monkeypatch.setattr(val, "load_qm9_inputs", qm9_inputs)


def _ref(index: int) -> val.ReferenceMolecule:
    return val.read_reference_molecule(val.REFERENCE_DIR / f"qm9_{index}.json")


def _as_level(ref: val.ReferenceMolecule) -> val.LevelResult:
    return val.LevelResult(
        freqs=ref.freqs.copy(),
        l_mw=ref.l_mw.copy(),
        coords=ref.coords.copy(),
        ir=ref.ir.copy(),
        raman=ref.raman.copy(),
    )


def _compare(ref, lvl, scale=1.0):
    return val.compare(ref, lvl, GRID, 15.0, 10.0, scale)


# ----------------------------------------------------------------------------- metrics


def test_identical_inputs_score_one():
    ref = _ref(8)  # methanol, 12 modes
    m = _compare(ref, _as_level(ref))
    for key in (
        "ir_cosine",
        "raman_cosine",
        "ir_intensity_overlap",
        "ir_intensity_sorted",
        "raman_intensity_overlap",
        "raman_intensity_sorted",
        "ir_window_cosine",
        "raman_window_cosine",
        "ir_cosine_freq_ceiling",
        "mean_sq_overlap",
    ):
        assert m[key] == pytest.approx(1.0, abs=1e-9), key
    assert m["freq_mae_overlap"] == pytest.approx(0.0, abs=1e-9)
    assert m["freq_mae_sorted"] == pytest.approx(0.0, abs=1e-9)


def test_one_mode_swap_lowers_the_intensity_score():
    ref = _ref(8)
    lvl = _as_level(ref)
    # swap the IR intensities of the strongest mode and a weak mode far from it
    k_hi = int(np.argmax(ref.ir))
    k_lo = int(np.argmin(ref.ir + 1e6 * (np.abs(ref.freqs - ref.freqs[k_hi]) < 200)))
    lvl.ir[[k_hi, k_lo]] = lvl.ir[[k_lo, k_hi]]
    m = _compare(ref, lvl)
    assert m["ir_intensity_overlap"] < 0.9 and m["ir_intensity_sorted"] < 0.9
    assert m["ir_cosine"] < 0.9
    # Raman untouched, frequencies untouched
    assert m["raman_intensity_overlap"] == pytest.approx(1.0)
    assert m["freq_mae_overlap"] == pytest.approx(0.0, abs=1e-9)


def test_overlap_matching_sees_through_rotation_and_mode_order():
    ref = _ref(8)
    rot = Rotation.from_euler("xyz", [0.3, -1.1, 2.0]).as_matrix()
    perm = np.random.default_rng(0).permutation(len(ref.freqs))
    lvl = val.LevelResult(
        freqs=ref.freqs[perm],
        l_mw=val.rotate_modes(ref.l_mw, rot)[:, perm] * np.where(perm % 2, -1.0, 1.0),
        coords=ref.coords @ rot.T + np.array([1.0, -2.0, 0.5]),
        ir=ref.ir[perm],
        raman=ref.raman[perm],
    )
    m = _compare(ref, lvl)
    assert m["mean_sq_overlap"] == pytest.approx(1.0, abs=1e-9)
    assert m["freq_mae_overlap"] == pytest.approx(0.0, abs=1e-6)
    assert m["ir_intensity_overlap"] == pytest.approx(1.0, abs=1e-9)
    # A frequency error on the level side lowers the full cosine, not the intensity-only score.
    lvl.freqs = lvl.freqs + 40.0
    m = _compare(ref, lvl)
    assert m["ir_cosine"] < 0.5
    assert m["freq_mae_overlap"] == pytest.approx(40.0)
    assert m["ir_intensity_overlap"] == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("index", [1, 2, 4, 25])  # CH4 (T2, E), NH3 (E), C2H2, C2N2 (Π)
def test_overlap_pairing_ignores_the_basis_of_degenerate_modes(index):
    ref = _ref(index)
    lvl = _as_level(ref)
    rng = np.random.default_rng(index)
    blocks = val.degenerate_blocks(ref.freqs)
    assert len(set(blocks.tolist())) < len(ref.freqs)  # the molecule has degenerate modes
    for b in set(blocks.tolist()):
        idx = np.flatnonzero(blocks == b)
        q, _ = np.linalg.qr(rng.normal(size=(len(idx), len(idx))))
        lvl.l_mw[:, idx] = lvl.l_mw[:, idx] @ q
        # a rotated degenerate block splits its intensity differently, with the same total
        lvl.ir[idx] = ref.ir[idx].mean()
        lvl.raman[idx] = ref.raman[idx].mean()
    m = _compare(ref, lvl)
    assert m["mean_sq_overlap"] == pytest.approx(1.0, abs=1e-9)
    # partners of a block may pair crosswise: they differ by < 0.05 cm-1 in the reference
    assert m["freq_mae_overlap"] == pytest.approx(0.0, abs=0.05)
    assert m["ir_intensity_overlap"] == pytest.approx(1.0, abs=1e-9)
    assert m["raman_intensity_overlap"] == pytest.approx(1.0, abs=1e-9)


def test_reference_scale_is_applied_to_the_reference_only():
    ref = _ref(3)
    lvl = _as_level(ref)
    lvl.freqs = ref.freqs * 0.965
    assert _compare(ref, lvl, scale=0.965)["freq_mae_sorted"] == pytest.approx(0.0, abs=1e-9)
    assert _compare(ref, lvl, scale=1.0)["freq_mae_sorted"] > 50


def test_kabsch_recovers_a_rotation():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 3))
    masses = rng.uniform(1, 16, 6)
    rot = Rotation.from_rotvec([0.4, 0.2, -0.9]).as_matrix()
    r = val.kabsch_rotation(x, x @ rot.T + 3.0, masses)
    assert np.allclose(r, rot, atol=1e-10)
    assert np.linalg.det(r) == pytest.approx(1.0)
    # a mirror image cannot be reached by a rotation: still a proper rotation comes back
    mirror = x * np.array([1.0, 1.0, -1.0])
    r = val.kabsch_rotation(x, mirror, masses)
    assert np.linalg.det(r) == pytest.approx(1.0) and np.allclose(r @ r.T, np.eye(3))


def test_window_integrals_and_exclusion_overlap():
    f = np.array([499.0, 500.0, 999.9, 1000.0, 4000.0, 4001.0])
    s = np.ones(6)
    assert val.window_integrals(f, s).tolist() == [2.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert val.exclusion_overlap(np.array([1.0, 0, 2]), np.array([0, 3.0, 0])) == 0.0
    assert val.exclusion_overlap(np.array([1.0, 2.0]), np.array([2.0, 4.0])) == pytest.approx(1.0)
    assert np.isnan(val.cosine(np.zeros(3), np.ones(3)))


# ----------------------------------------------------------------------------- reference files


def test_packaged_reference_set_loads_and_is_checked():
    refs, meta = val.load_reference()
    assert len(refs) >= 30 and "B3LYP" in meta["level"]  # the set's size, flagged ones left out
    for r in refs:
        assert r.l_mw.shape == (3 * len(r.elements), len(r.freqs))
        assert np.all(np.diff(r.freqs) >= 0) and r.freqs[0] > 0
        assert np.all(r.ir >= 0) and np.all(r.raman >= 0)


def _copy_reference(tmp_path, indices=(3, 5)):
    dst = tmp_path / "ref"
    dst.mkdir()
    index = json.loads((val.REFERENCE_DIR / "index.json").read_text())
    index["molecules"] = [m for m in index["molecules"] if m["qm9_index"] in indices]
    (dst / "index.json").write_text(json.dumps(index))
    for i in indices:
        shutil.copy(val.REFERENCE_DIR / f"qm9_{i}.json", dst / f"qm9_{i}.json")
    return dst


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("frequencies_cm"), "missing keys"),
        (lambda d: d["ir_intensities_km_mol"].__setitem__(0, float("nan")), "NaN or Inf"),
        (lambda d: d["raman_activities_A4_amu"].pop(), "has shape"),
        (lambda d: d.__setitem__("format_version", 99), "format_version"),
        (lambda d: d["normal_modes_mass_weighted"][0][0].__setitem__(0, 5.0), "orthonormal"),
        (lambda d: d.__setitem__("frequencies_cm", "abc"), "could not convert"),
        (lambda d: d.__setitem__("qm9_index", 3.7), "not an integer"),
        (lambda d: d.__setitem__("qm9_index", 4), "holds QM9 index 4"),
        (lambda d: d["masses_amu"].__setitem__(0, 0.0), "must be > 0"),
    ],
)
def test_corrupt_reference_files_are_named(tmp_path, edit, message):
    folder = _copy_reference(tmp_path)
    d = json.loads((folder / "qm9_3.json").read_text())
    edit(d)
    (folder / "qm9_3.json").write_text(json.dumps(d))
    with pytest.raises(DataError, match=message) as e:
        val.load_reference(folder)
    assert "qm9_3.json" in str(e.value)


def test_missing_reference_pieces(tmp_path):
    folder = _copy_reference(tmp_path)
    (folder / "qm9_5.json").write_text("{not json")
    with pytest.raises(DataError, match="qm9_5.json: not a readable JSON"):
        val.load_reference(folder)
    with pytest.raises(ConfigError, match=r"QM9 indices \[77\] are not in the reference set"):
        val.load_reference(folder, only=[77])
    with pytest.raises(DataError, match="no reference index .*nowhere"):
        val.load_reference(tmp_path / "nowhere")
    (folder / "qm9_3.json").unlink()
    with pytest.raises(DataError, match="reference file not found"):
        val.load_reference(folder, only=[3])


def test_reference_index_entries_are_checked(tmp_path):
    folder = _copy_reference(tmp_path)
    index = json.loads((folder / "index.json").read_text())
    index["molecules"] = [{"file": "qm9_3.json"}]
    (folder / "index.json").write_text(json.dumps(index))
    with pytest.raises(DataError, match="must list entries with a qm9_index"):
        val.load_reference(folder)


def test_reference_atoms_must_match_the_qm9_row(tmp_path, fast_qm9):
    folder = _copy_reference(tmp_path)
    d = json.loads((folder / "qm9_3.json").read_text())
    d["elements"] = ["S", "H", "H"]
    (folder / "qm9_3.json").write_text(json.dumps(d))
    with pytest.raises(DataError, match=r"atoms \['S', 'H', 'H'\] differ from the QM9 row"):
        val.validate(levels="mmff", reference=folder, only=[3])


def test_nothing_common_skips_the_figure(fast_qm9, tmp_path):
    rep = val.validate(levels=["mmff", "mmff-hybrid"], only=[25])  # QM9 lists 6 of 7 modes
    assert rep["levels"]["mmff-hybrid"]["n_failed"] == 1 and rep["common"]["qm9_indices"] == []
    assert plot_validation(rep, tmp_path / "v") == []


def test_flagged_references_are_left_out(tmp_path, fast_qm9):
    folder = _copy_reference(tmp_path)
    d = json.loads((folder / "qm9_5.json").read_text())
    d["flagged"] = True
    (folder / "qm9_5.json").write_text(json.dumps(d))
    rep = val.validate(levels="mmff", reference=folder)
    assert rep["reference"]["skipped_flagged"] == [5] and rep["reference"]["n_molecules"] == 1
    with pytest.raises(DataError, match="no unflagged reference molecule"):
        val.validate(levels="mmff", reference=folder, only=[5])


def test_bad_levels_and_scale():
    with pytest.raises(ConfigError, match="levels must be among"):
        val.parse_levels("mmff,dft")
    with pytest.raises(ConfigError, match="ref_freq_scale"):
        val.validate(levels="mmff", ref_freq_scale=3.0)


# ----------------------------------------------------------------------------- end to end


def test_validate_fast_subset_every_level(fast_qm9, tmp_path):
    levels = ["mmff", "mmff-hybrid", "xtb", "hybrid"]
    rep = val.validate(levels=levels, only=FAST)
    assert rep["conventions"]["ref_freq_scale"] == 0.965
    for level in levels:
        lv = rep["levels"][level]
        assert lv["n_ok"] == len(FAST) and lv["n_failed"] == 0
        s = lv["summary"]
        for key in ("ir_cosine", "ir_intensity_sorted", "raman_intensity_overlap"):
            assert 0.0 <= s[key]["mean"] <= 1.0
        assert s["seconds_wall"]["mean"] > 0
        assert len(lv["window_ratio_level_over_ref"]["ir"]) == len(val.WINDOWS)
    # The hybrid levels carry QM9's B3LYP frequencies, much closer to the B3LYP reference.
    mae = {lv: rep["levels"][lv]["summary"]["freq_mae_sorted"]["mean"] for lv in levels}
    assert mae["mmff-hybrid"] < 0.6 * mae["mmff"]
    # mmff-hybrid keeps mmff's modes and intensities; the overlap pairing ignores frequencies
    for key in ("ir_intensity_overlap", "raman_intensity_overlap"):
        a = rep["levels"]["mmff"]["summary"][key]["mean"]
        b = rep["levels"]["mmff-hybrid"]["summary"][key]["mean"]
        assert a == pytest.approx(b, abs=1e-12)
    assert "| mmff-hybrid | 3 |" in val.format_report(rep)
    sticks = rep["levels"]["xtb"]["molecules"][0]["sticks"]
    assert len(sticks["freq_cm"]) == len(sticks["ir_km_mol"]) == 9  # CH4
    figs = plot_validation(rep, tmp_path / "fig" / "validation")
    assert [f.suffix for f in figs] == [".png", ".pdf"] and all(f.stat().st_size for f in figs)


def test_mutual_exclusion_is_checked_on_centrosymmetric_references(fast_qm9):
    rep = val.validate(levels="mmff", only=[4, 8])  # acetylene (D∞h), methanol
    me = rep["levels"]["mmff"]["mutual_exclusion"]
    assert me["molecules"] == [4] and me["holds"] is True


def test_cli_validate(tmp_path, fast_qm9, capsys):
    out = tmp_path / "v" / "validation.json"
    rc = main(["-q", "data", "validate", "--level", "mmff", "--only", "3", "--out", str(out)])
    assert rc == 0
    rep = json.loads(out.read_text())
    assert rep["levels"]["mmff"]["n_ok"] == 1
    assert out.with_suffix(".md").read_text().startswith("Validation against")
    assert out.with_suffix(".png").stat().st_size > 0
    assert "| mmff | 1 |" in capsys.readouterr().out


def test_cli_validate_bad_input(tmp_path, capsys):
    assert main(["-q", "data", "validate", "--out", str(tmp_path / "v.md")]) == 2
    assert "--out must name a .json file" in capsys.readouterr().err
    out = tmp_path / "validation.json"
    assert main(["-q", "data", "validate", "--level", "b3lyp", "--out", str(out)]) == 2
    assert "levels must be among" in capsys.readouterr().err
    bad = tmp_path / "ref"
    bad.mkdir()
    (bad / "index.json").write_text("[]")
    assert main(["-q", "data", "validate", "--reference", str(bad), "--out", str(out)]) == 2
    assert "not a spektron-dft-reference-index file" in capsys.readouterr().err
    assert not out.exists()


def test_mutual_exclusion_check_on_qm9_molecules(fast_qm9):
    levels = ["mmff", "mmff-hybrid", "xtb", "hybrid"]
    rep = val.check_mutual_exclusion(levels=levels, indices=[4, 7])  # acetylene, ethane
    for level in levels:
        r = rep["levels"][level]
        assert r["holds"] is True and r["n_centrosymmetric"] == 2, level
        assert not r["violations"] and not r["failed"]
    assert "- hybrid: holds on 2" in val.format_exclusion(rep)
