"""Spectral store: round trip, splits, merging, and refusal of bad files."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from spektron.chemistry.spectra import make_grid
from spektron.data.store import REQUIRED_KEYS, StoreWriter, merge_stores, open_store
from spektron.errors import StoreError
from tests.helpers import fake_record


def write(path, grid, n=50, seed=0, start=0, attrs=None):
    rng = np.random.default_rng(seed)
    recs = [fake_record(start + i, grid, rng) for i in range(n)]
    attrs = {"source": "test", "config": {"n": n}, **(attrs or {})}
    with StoreWriter(path, grid, attrs=attrs, fg_names=["a", "b"], flush_rows=7) as w:
        w.extend(recs)
    return recs


def test_round_trip_preserves_every_field(tmp_path, small_grid):
    recs = write(tmp_path / "s.h5", small_grid)
    with open_store(tmp_path / "s.h5", expected_grid=small_grid) as s:
        assert s.n == len(recs)
        for i, r in enumerate(recs):
            got = s.record(i)
            np.testing.assert_allclose(got.ir, r.ir.astype(np.float32))
            if r.raman is None:
                assert got.raman is None
            else:
                np.testing.assert_allclose(got.raman, r.raman.astype(np.float32))
            assert (got.smiles, got.inchikey, got.source_index) == (r.smiles, r.inchikey, i)
            assert got.source == r.source
            assert (got.centrosymmetric, got.point_group, got.n_atoms) == (
                r.centrosymmetric,
                r.point_group,
                r.n_atoms,
            )
            np.testing.assert_array_equal(got.fg_flags, r.fg_flags)
            np.testing.assert_allclose(got.stick_freq, r.stick_freq)
            np.testing.assert_allclose(got.stick_raman, r.stick_raman)
        assert s.fg_names == ["a", "b"]
        assert s.summary()["has_raman"] == sum(r.raman is not None for r in recs)


def test_a_schema_1_store_without_sources_reads_them_as_unknown(tmp_path, small_grid):
    recs = write(tmp_path / "s.h5", small_grid)
    with h5py.File(tmp_path / "s.h5", "a") as h:
        del h["source"]
        h.attrs["schema_version"] = 1
    with open_store(tmp_path / "s.h5") as s:
        assert list(s.column("source")) == [""] * len(recs)
        assert s.record(3).source == ""
        assert s.summary()["structure_sources"] == {"unknown": len(recs)}


def test_splits_disjoint_cover_and_proportions(tmp_path):
    grid = make_grid(8)
    write(tmp_path / "big.h5", grid, n=4000)
    with open_store(tmp_path / "big.h5") as s:
        parts = {k: set(s.split_indices(k)) for k in ("train", "val", "test")}
        assert not (
            parts["train"] & parts["val"]
            or parts["train"] & parts["test"]
            or parts["val"] & parts["test"]
        )
        assert sum(map(len, parts.values())) == s.n
        frac = {k: len(v) / s.n for k, v in parts.items()}
        # Binomial sd at n=4000: ~0.0056 (train), ~0.0033 (val), ~0.0047 (test); 4 sd bounds.
        assert abs(frac["train"] - 0.855) < 0.023
        assert abs(frac["val"] - 0.045) < 0.014
        assert abs(frac["test"] - 0.10) < 0.019


def test_splits_stable_when_dataset_grows_and_duplicates_grouped(tmp_path, small_grid):
    write(tmp_path / "small.h5", small_grid, n=60)
    write(tmp_path / "large.h5", small_grid, n=300)
    with open_store(tmp_path / "small.h5") as a, open_store(tmp_path / "large.h5") as b:
        sa = dict(zip(a.column("inchikey"), a.column("split"), strict=True))
        sb = dict(zip(b.column("inchikey"), b.column("split"), strict=True))
        assert all(sb[k] == v for k, v in sa.items())
    # duplicates (same InChIKey) share a split even with different rows/sources
    rng = np.random.default_rng(1)
    recs = [fake_record(i, small_grid, rng) for i in range(200)]
    for r in recs:
        r.inchikey = f"DUP-{r.source_index % 20}"
    with StoreWriter(tmp_path / "dup.h5", small_grid, fg_names=["a", "b"]) as w:
        w.extend(recs)
    with open_store(tmp_path / "dup.h5") as s:
        keys, split = s.column("inchikey"), s.column("split")
        for k in set(keys):
            assert len(set(split[keys == k])) == 1


def test_scaffold_split_groups_ring_systems(tmp_path, small_grid):
    rng = np.random.default_rng(2)
    smiles = ["c1ccccc1C", "c1ccccc1O", "c1ccccc1N", "C1CC1C", "C1CC1O", "CCO", "CCCO"]
    recs = []
    for i in range(70):
        r = fake_record(i, small_grid, rng)
        r.smiles = smiles[i % len(smiles)]
        recs.append(r)
    with StoreWriter(tmp_path / "sc.h5", small_grid, fg_names=["a", "b"]) as w:
        w.extend(recs)
    with open_store(tmp_path / "sc.h5") as s:
        sm, sp = s.column("smiles"), s.column("split_scaffold")
        benz = sp[np.isin(sm, smiles[:3])]
        cprop = sp[np.isin(sm, smiles[3:5])]
        assert len(set(benz)) == 1 and len(set(cprop)) == 1


def test_merge_equals_single_write(tmp_path, small_grid):
    write(tmp_path / "a.h5", small_grid, n=30, seed=0, start=0)
    write(tmp_path / "b.h5", small_grid, n=30, seed=1, start=30)
    merge_stores([tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "a.h5"], tmp_path / "m.h5")
    with open_store(tmp_path / "m.h5") as m, open_store(tmp_path / "a.h5") as a:
        assert m.n == 60  # the repeated shard is dropped
        np.testing.assert_array_equal(m.spectra("ir", slice(0, 30)), a.spectra("ir", slice(0, 30)))
        np.testing.assert_array_equal(m.column("split")[:30], a.column("split"))


def _sim(level, fwhm=15.0):
    return {
        "source": "qm9s-sim",
        "level": level,
        "label": f"SIMULATED ({level})",
        "config": {"physics": {"level": level, "ir_fwhm": fwhm}},
    }


@pytest.mark.parametrize(
    ("second", "match"),
    [
        (
            _sim("xtb"),
            r"differs from .*a\.h5 in source, level, physics, label \(source: qm9s-sim vs test\)",
        ),
        ({**_sim("mmff"), "source": "test"}, r"in level, physics, label \(level: mmff vs \)"),
    ],
)
def test_merge_refuses_stores_of_other_provenance(tmp_path, small_grid, second, match):
    write(tmp_path / "a.h5", small_grid, n=5)
    write(tmp_path / "b.h5", small_grid, n=5, start=5, attrs=second)
    with pytest.raises(StoreError, match=match + r".*--allow-mixed"):
        merge_stores([tmp_path / "a.h5", tmp_path / "b.h5"], tmp_path / "m.h5")
    assert not (tmp_path / "m.h5").exists()


def test_merge_names_the_physics_that_differ_and_allow_mixed_labels_the_store(tmp_path, small_grid):
    write(tmp_path / "a.h5", small_grid, n=5, attrs=_sim("mmff"))
    write(tmp_path / "b.h5", small_grid, n=5, start=5, attrs=_sim("mmff", fwhm=12.0))
    write(tmp_path / "c.h5", small_grid, n=5, start=10, attrs=_sim("mmff"))
    with pytest.raises(StoreError, match=r"in physics \(physics: ir_fwhm=12\.0 vs ir_fwhm=15\.0\)"):
        merge_stores([tmp_path / "a.h5", tmp_path / "b.h5"], tmp_path / "m.h5")
    merge_stores([tmp_path / "a.h5", tmp_path / "c.h5"], tmp_path / "same.h5")  # shards of one run
    write(tmp_path / "x.h5", small_grid, n=5, start=15, attrs=_sim("xtb"))
    merge_stores([tmp_path / "a.h5", tmp_path / "x.h5"], tmp_path / "m.h5", allow_mixed=True)
    with open_store(tmp_path / "m.h5") as m:
        assert m.n == 10 and m.attrs["level"] == "mmff+xtb"
        assert m.attrs["label"] == "MIXED store: SIMULATED (mmff) | SIMULATED (xtb)"
        assert "config" not in m.attrs and len(json.loads(m.attrs["mixed_provenance"])) == 2


def test_failed_write_leaves_nothing(tmp_path, small_grid):
    rng = np.random.default_rng(0)
    with (
        pytest.raises(RuntimeError),
        StoreWriter(tmp_path / "x.h5", small_grid, fg_names=["a", "b"]) as w,
    ):
        w.append(fake_record(0, small_grid, rng))
        raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", ["nan", "inf", "shape"])
def test_writer_rejects_bad_spectra(tmp_path, small_grid, bad):
    rng = np.random.default_rng(0)
    r = fake_record(0, small_grid, rng)
    if bad == "shape":
        r.ir = r.ir[:-1]
    else:
        r.ir[3] = np.nan if bad == "nan" else np.inf
    with (
        pytest.raises(StoreError, match="NaN/Inf|shape"),
        StoreWriter(tmp_path / "x.h5", small_grid, fg_names=["a", "b"]) as w,
    ):
        w.append(r)
    assert not (tmp_path / "x.h5").exists()


def test_reader_refuses_bad_files(tmp_path, small_grid):
    p = tmp_path / "s.h5"
    write(p, small_grid, n=20)
    raw = p.read_bytes()

    with pytest.raises(StoreError, match="does not exist"):
        open_store(tmp_path / "missing.h5")
    (tmp_path / "trunc.h5").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(StoreError, match=r"trunc\.h5.*(corrupt|truncated|unreadable)"):
        open_store(tmp_path / "trunc.h5")
    (tmp_path / "junk.h5").write_bytes(b"this is not hdf5" * 100)
    with pytest.raises(StoreError, match="junk.h5.*not a readable HDF5"):
        open_store(tmp_path / "junk.h5")
    with pytest.raises(StoreError, match="grid mismatch"):
        open_store(p, expected_grid=make_grid(128))
    with pytest.raises(StoreError, match="grid mismatch"):
        open_store(p, expected_grid=make_grid(64, 400, 4000))

    for key in ("raman", "split", "sticks/offsets"):
        q = tmp_path / f"nokey_{key.replace('/', '_')}.h5"
        q.write_bytes(raw)
        with h5py.File(q, "a") as h:
            del h[key]
        with pytest.raises(StoreError, match=f"missing key.*{key}"):
            open_store(q)

    q = tmp_path / "nan.h5"
    q.write_bytes(raw)
    with h5py.File(q, "a") as h:
        h["raman"][5, 10] = np.nan
    with pytest.raises(StoreError, match="raman contains NaN/Inf .first at row 5"):
        open_store(q)

    q = tmp_path / "incomplete.h5"
    q.write_bytes(raw)
    with h5py.File(q, "a") as h:
        h.attrs["complete"] = False
    with pytest.raises(StoreError, match="incomplete"):
        open_store(q)

    q = tmp_path / "shape.h5"
    q.write_bytes(raw)
    with h5py.File(q, "a") as h:
        del h["has_ir"]
        h["has_ir"] = np.ones(7, dtype=bool)
    with pytest.raises(StoreError, match="has_ir has 7 rows, expected 20"):
        open_store(q)


def test_required_keys_written(tmp_path, small_grid):
    write(tmp_path / "s.h5", small_grid, n=5)
    with h5py.File(tmp_path / "s.h5") as h:
        assert all(k in h for k in REQUIRED_KEYS)
        assert h["ir"].compression == "gzip" and h["ir"].chunks is not None


def test_unknown_molecules_without_flags(tmp_path, small_grid):
    rng = np.random.default_rng(0)
    recs = [fake_record(i, small_grid, rng) for i in range(4)]
    recs[1].fg_flags = np.zeros(0, dtype=bool)  # molecule unknown: flags unknown, not "absent"
    with StoreWriter(tmp_path / "a.h5", small_grid, fg_names=["a", "b"]) as w:
        w.extend(recs)
    with StoreWriter(tmp_path / "b.h5", small_grid, fg_names=()) as w:  # no flags at all
        w.extend(fake_record(i, small_grid, rng, n_fg=0) for i in range(3))
    with open_store(tmp_path / "a.h5") as a, open_store(tmp_path / "b.h5") as b:
        assert a.record(1).fg_flags.size == 0 and a.record(0).fg_flags.size == 2
        assert a.summary()["functional_groups_known"] == 3
        assert b.fg_names == [] and b.record(0).fg_flags.size == 0


def test_fancy_reads_with_repeats_and_any_order(tmp_path, small_grid):
    recs = write(tmp_path / "s.h5", small_grid, n=20)
    idx = np.array([7, 2, 7, 19, 0, 2])
    with open_store(tmp_path / "s.h5") as s:
        got = s.spectra("ir", idx)
    np.testing.assert_array_equal(got, np.stack([recs[i].ir for i in idx]).astype(np.float32))
