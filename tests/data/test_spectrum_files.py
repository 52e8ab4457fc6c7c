"""Users' spectrum files: CSV layouts, JCAMP-DX forms and unit conversions, checked by value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spektron.data.spectrum_files import MIN_POINTS, read_spectrum_file
from spektron.errors import DataError


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text.strip("\n") + "\n")
    return p


def _jdx(header: str, data: str, title: str = "sample") -> str:
    return f"##TITLE={title}\n##JCAMP-DX=4.24\n{header.strip()}\n{data.strip()}\n##END=\n"


# ------------------------------------------------------------------------------ CSV


def test_two_column_csv_with_header_is_read_by_value(tmp_path):
    x = np.arange(1000.0, 1120.0, 10.0)
    y = np.linspace(0.0, 1.1, x.size)
    body = "\n".join(f"{a},{b}" for a, b in zip(x, y, strict=True))
    (s,) = read_spectrum_file(_write(tmp_path, "a.csv", f"wavenumber,absorbance\n{body}"))
    assert s.name == "absorbance" and s.kind_hint is None and s.source.name == "a.csv"
    assert s.wavenumber.dtype == np.float64
    np.testing.assert_array_equal(s.wavenumber, x)
    np.testing.assert_allclose(s.values, y)


@pytest.mark.parametrize("sep", ["\t", " ", ";"])
def test_delimiters_and_descending_x(tmp_path, sep):
    x = np.arange(1110.0, 995.0, -10.0)  # descending, as many instruments write
    y = np.arange(x.size, dtype=float)
    body = "\n".join(f"{a}{sep}{b}" for a, b in zip(x, y, strict=True))
    (s,) = read_spectrum_file(_write(tmp_path, "a.txt", body))
    np.testing.assert_array_equal(s.wavenumber, x[::-1])
    np.testing.assert_array_equal(s.values, y[::-1])
    assert any("descending" in n for n in s.notes)


def test_semicolon_with_decimal_commas(tmp_path):
    body = "\n".join(f"{1000 + 10 * i},5;0,{i}" for i in range(MIN_POINTS))
    (s,) = read_spectrum_file(_write(tmp_path, "eu.csv", "cm-1;int\n" + body))
    assert s.wavenumber[0] == 1000.5 and s.values[3] == pytest.approx(0.3)
    assert any("decimal commas" in n for n in s.notes)


def test_wide_layout_with_name_column(tmp_path):
    x = np.arange(500.0, 620.0, 10.0)
    rows = [("benzene", np.arange(x.size) * 1.0), ("toluene", np.arange(x.size) * 2.0)]
    text = "id," + ",".join(f"{v:g}" for v in x) + "\n"
    text += "\n".join(n + "," + ",".join(f"{v:g}" for v in y) for n, y in rows)
    spectra = read_spectrum_file(_write(tmp_path, "wide.csv", text))
    assert [s.name for s in spectra] == ["benzene", "toluene"]
    for s, (_, y) in zip(spectra, rows, strict=True):
        np.testing.assert_array_equal(s.wavenumber, x)
        np.testing.assert_array_equal(s.values, y)


def test_wide_layout_without_name_column_and_columns_layout(tmp_path):
    x = np.arange(500.0, 620.0, 10.0)
    wide = ",".join(f"{v:g}" for v in x) + "\n" + ",".join("1" for _ in x)
    (s,) = read_spectrum_file(_write(tmp_path, "w.csv", wide))
    assert s.name == "row 1" and s.wavenumber.size == x.size and np.all(s.values == 1)
    cols = "x,s1,s2\n" + "\n".join(f"{v:g},{i},{-i}" for i, v in enumerate(x))
    a, b = read_spectrum_file(_write(tmp_path, "c.csv", cols))
    assert (a.name, b.name) == ("s1", "s2")
    np.testing.assert_array_equal(b.values, -np.arange(x.size))


def _ten(rows: dict[int, str] | None = None) -> str:
    lines = [f"{1000 + 10 * i},{0.1 * i}" for i in range(MIN_POINTS)]
    for i, text in (rows or {}).items():
        lines[i] = text
    return "wavenumber,intensity\n" + "\n".join(lines)


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        (_ten({4: "1040,nan"}), r"non-finite value nan at line 6, column 2"),
        (_ten({4: "1040,inf"}), r"non-finite value inf at line 6, column 2"),
        (_ten({4: "1040,abc"}), r"non-numeric cell 'abc' at line 6, column 2"),
        (_ten({4: "1040,"}), r"empty cell at line 6, column 2"),
        (_ten({4: "1040,1,2"}), r"line 6 has 3 cells"),
        (_ten({4: "1030,0.4"}), r"duplicate wavenumber 1030 at line 5, column 1 and line 6"),
        (_ten({4: "nan,0.4"}), r"non-finite wavenumber nan at line 6, column 1"),
        ("x,y\n1,2\n2,3\n3,4", r"only 3 points \(need at least 10\)"),
        ("x,y", r"a header line but no data"),
        ("# only a comment", r"no data lines"),
    ],
)
def test_bad_csv_raises_data_error_naming_file_and_place(tmp_path, text, expect):
    path = _write(tmp_path, "bad.csv", text)
    with pytest.raises(DataError, match=expect) as e:
        read_spectrum_file(path)
    assert str(path) in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_spectrum_file(tmp_path / "nope.csv")


# ------------------------------------------------------------------------------ JCAMP-DX


def test_affn_xydata_applies_xfactor_and_yfactor_once(tmp_path):
    # Line abscissae are raw (× XFACTOR = 2); FIRSTX/LASTX are real units per the standard.
    text = _jdx(
        """
##DATA TYPE=INFRARED SPECTRUM
##XUNITS=1/CM
##YUNITS=ABSORBANCE
##XFACTOR=2
##YFACTOR=0.001
##FIRSTX=1000
##LASTX=1110
##DELTAX=10
##NPOINTS=12
##XYDATA=(X++(Y..Y))""",
        "500 100 200 300 400\n520 500 600 700 800\n540 900 1000 1100 1200",
    )
    (s,) = read_spectrum_file(_write(tmp_path, "affn.jdx", text))
    assert s.kind_hint == "ir" and s.name == "sample" and s.notes == []
    np.testing.assert_allclose(s.wavenumber, np.arange(1000.0, 1111.0, 10.0))
    np.testing.assert_allclose(s.values, np.arange(1, 13) * 0.1)


def test_xypoints_pairs_apply_xfactor_and_yfactor_once(tmp_path):
    pairs = "\n".join(f"{2000 + 20 * i}, {i}" for i in range(12))  # raw x, raw y
    text = _jdx(
        "##DATA TYPE=RAMAN SPECTRUM\n##XUNITS=1/CM\n##YUNITS=COUNTS\n##XFACTOR=0.5\n"
        "##YFACTOR=2\n##NPOINTS=12\n##XYPOINTS=(XY..XY)",
        pairs,
    )
    (s,) = read_spectrum_file(_write(tmp_path, "pairs.dx", text))
    assert s.kind_hint == "raman"
    np.testing.assert_allclose(s.wavenumber, 1000.0 + 10.0 * np.arange(12))
    np.testing.assert_allclose(s.values, 2.0 * np.arange(12))


# 20 Y values hand-encoded in DIFDUP form (JCAMP-DX 4.24 §5.9). SQZ: @=0, A-I=1-9, a-i=−1…−9
# start a value; DIF: %=0, J-R=1-9, j-r=−1…−9 start a difference; DUP: S-Z,s=1-9 repeat count
# including the original. Each line after the first starts with the X of, and a Y check equal
# to, the previous line's last value; the last line holds only that check.
COMPRESSED_Y = [50, 52, 52, 52, 60, 75, 75, 40, 10, 9, 8, 8, 8, 8, -5, -12, 0, 3, 100, 100]
COMPRESSED_LINES = [
    "1000E0K%TQJ5%l5l0j",  # E0=50, K:+2, %T: +0 twice, Q:+8, J5:+15, %, l5:−35, l0:−30, j:−1
    "1090Ij%Uj3pJ2LR7%",  # check I=9; j:−1, %U: +0 three times, j3:−13, p:−7, J2, L, R7:+97, %
    "1190A00",  # check A00=100
]


def _compressed(lines: list[str]) -> str:
    return _jdx(
        "##DATA TYPE=INFRARED SPECTRUM\n##XUNITS=1/CM\n##YUNITS=ABSORBANCE\n##XFACTOR=1\n"
        "##YFACTOR=0.01\n##FIRSTX=1000\n##LASTX=1190\n##DELTAX=10\n##NPOINTS=20\n"
        "##XYDATA=(X++(Y..Y))",
        "\n".join(lines),
    )


def test_compressed_sqz_dif_dup_decodes_to_the_known_series(tmp_path):
    (s,) = read_spectrum_file(_write(tmp_path, "asdf.jdx", _compressed(COMPRESSED_LINES)))
    np.testing.assert_allclose(s.wavenumber, 1000.0 + 10.0 * np.arange(20))
    np.testing.assert_allclose(s.values, 0.01 * np.array(COMPRESSED_Y))


def test_failed_y_check_is_corrupt_data(tmp_path):
    lines = [COMPRESSED_LINES[0], "1090H" + COMPRESSED_LINES[1][5:], COMPRESSED_LINES[2]]
    path = _write(tmp_path, "corrupt.jdx", _compressed(lines))
    with pytest.raises(DataError, match=r"corrupt compressed data \(Y-Check failed"):
        read_spectrum_file(path)


def test_descending_x_is_sorted(tmp_path):
    text = _jdx(
        "##DATA TYPE=INFRARED SPECTRUM\n##XUNITS=1/CM\n##YUNITS=ABSORBANCE\n##FIRSTX=1110\n"
        "##LASTX=1000\n##DELTAX=-10\n##NPOINTS=12\n##XYDATA=(X++(Y..Y))",
        "1110 0 1 2 3 4 5\n1050 6 7 8 9 10 11",
    )
    (s,) = read_spectrum_file(_write(tmp_path, "desc.jdx", text))
    np.testing.assert_allclose(s.wavenumber, np.arange(1000.0, 1111.0, 10.0))
    np.testing.assert_allclose(s.values, np.arange(11.0, -1.0, -1.0))
    assert any("descending" in n for n in s.notes)


def test_micrometre_x_becomes_wavenumber(tmp_path):
    um = 2.5 + 0.5 * np.arange(12)  # 2.5 … 8 µm = 4000 … 1250 cm⁻¹
    pairs = "\n".join(f"{a:g} {i}" for i, a in enumerate(um))
    text = _jdx(
        "##DATA TYPE=INFRARED SPECTRUM\n##XUNITS=MICROMETERS\n##YUNITS=ABSORBANCE\n"
        "##XYDATA=(XY..XY)",
        pairs,
    )
    (s,) = read_spectrum_file(_write(tmp_path, "um.jdx", text))
    np.testing.assert_allclose(s.wavenumber, np.sort(1e4 / um))
    assert s.wavenumber[-1] == pytest.approx(4000.0) and s.values[-1] == 0.0  # 2.5 µm, y=0
    assert s.wavenumber[0] == pytest.approx(1250.0) and s.values[0] == 11.0
    assert any("MICROMETERS to cm⁻¹" in n for n in s.notes)


def test_nanometre_x_and_percent_transmittance(tmp_path):
    nm = 2500.0 + 100.0 * np.arange(12)  # 4000 … 2127.7 cm⁻¹
    t = [100, 10, 1, 0, 50, 50, 50, 50, 50, 50, 50, 50]  # % T
    pairs = "\n".join(f"{a:g} {b}" for a, b in zip(nm, t, strict=True))
    text = _jdx(
        "##DATA TYPE=INFRARED SPECTRUM\n##XUNITS=NANOMETERS\n##YUNITS=TRANSMITTANCE\n"
        "##XYDATA=(XY..XY)",
        pairs,
    )
    (s,) = read_spectrum_file(_write(tmp_path, "t.jdx", text))
    a = dict(zip(np.round(s.wavenumber, 6), s.values, strict=True))
    # ν̃ = 1e7 / λ; A = −log10(%T / 100); T = 0 is clipped to 1e-4 (A = 4).
    for lam, expect in ((2500.0, 0.0), (2600.0, 1.0), (2700.0, 2.0), (2800.0, 4.0)):
        assert a[round(1e7 / lam, 6)] == pytest.approx(expect)
    assert any("transmittance in %" in n for n in s.notes)
    assert any("1 points with T < 0.0001 clipped" in n for n in s.notes)


def test_fractional_transmittance(tmp_path):
    pairs = "\n".join(f"{1000 + 10 * i} {0.1 if i == 3 else 1.0}" for i in range(12))
    text = _jdx("##XUNITS=1/CM\n##YUNITS=TRANSMITTANCE\n##XYDATA=(XY..XY)", pairs)
    (s,) = read_spectrum_file(_write(tmp_path, "tf.jdx", text))
    assert s.values[3] == pytest.approx(1.0) and s.values[0] == pytest.approx(0.0)
    assert not any("in %" in n for n in s.notes)


def test_compound_link_file_gives_every_block(tmp_path):
    child = "##XUNITS=1/CM\n##YUNITS=ABSORBANCE\n##DATA TYPE=INFRARED SPECTRUM\n##XYDATA=(XY..XY)"
    blocks = [
        _jdx(child, "\n".join(f"{1000 + 10 * i} {k * i}" for i in range(12)), f"run {k}")
        for k in (1, 2)
    ]
    text = "##TITLE=both\n##JCAMP-DX=5.01\n##DATA TYPE=LINK\n##BLOCKS=2\n" + "".join(blocks)
    text += "##END=\n"
    a, b = read_spectrum_file(_write(tmp_path, "link.jdx", text))
    assert (a.name, b.name) == ("run 1", "run 2")
    np.testing.assert_allclose(b.values, 2.0 * np.arange(12))


PAIRS = "\n".join(f"{1000 + 10 * i} {i}" for i in range(12))


@pytest.mark.parametrize(
    ("header", "data", "expect"),
    [
        ("##DATA TYPE=NMR SPECTRUM\n##XUNITS=HZ\n##XYDATA=(XY..XY)", PAIRS, r"NMR.*HZ"),
        ("##DATA TYPE=INFRARED SPECTRUM\n##XUNITS=HZ\n##XYDATA=(XY..XY)", PAIRS, r"XUNITS=HZ"),
        (
            "##DATA TYPE=RAMAN SPECTRUM\n##XUNITS=NANOMETERS\n##XYDATA=(XY..XY)",
            PAIRS,
            r"Raman spectrum against wavelength",
        ),
        ("##XUNITS=1/CM\n##PEAK TABLE=(XY..XY)", PAIRS, r"peak table"),
        ("##XUNITS=1/CM\n##XYDATA=(XY..XY)", PAIRS + "\n1200 ?", r"line 17 holds non-numeric '\?'"),
        ("##XUNITS=1/CM\n##YUNITS=REFLECTANCE\n##XYDATA=(XY..XY)", PAIRS, r"reflectance"),
        (
            "##XUNITS=1/CM\n##FIRSTX=1000\n##LASTX=1110\n##NPOINTS=12\n##XYDATA=(X++(Y..Y))",
            "1000 1 2 ?? 4 5 6\n1060 7 8 9 10 11 12",
            r"cannot parse \(Exception: Unknown character",
        ),
        (
            "##XUNITS=1/CM\n##FIRSTX=1000\n##LASTX=1110\n##NPOINTS=12\n##XYDATA=(X++(Y..Y))",
            "1000 1 2 3 4 5 6",
            r"NPOINTS=12 but holds 6 values",
        ),
        ("##XUNITS=1/CM\n##LASTX=1110\n##XYDATA=(X++(Y..Y))", "1000 1 2", r"lacks ##FIRSTX"),
    ],
)
def test_unusable_jcamp_raises_data_error_naming_file(tmp_path, header, data, expect):
    path = _write(tmp_path, "bad.jdx", _jdx(header, data))
    with pytest.raises(DataError, match=expect) as e:
        read_spectrum_file(path)
    assert str(path) in str(e.value)


def test_garbage_with_jcamp_suffix(tmp_path):
    path = _write(tmp_path, "junk.jdx", "not a jcamp file\n1 2 3")
    with pytest.raises(DataError, match="no JCAMP-DX data block"):
        read_spectrum_file(path)


@pytest.mark.parametrize(
    ("head", "named"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "a PNG image"),
        (b"PK\x03\x04\x14\x00\x06\x00", "a ZIP archive"),
        (b"\x89HDF\r\n\x1a\n\x00\x00", "an HDF5 file"),
        (b"\x01\x02\x03\x04\x05\x06\x07\x08" * 8, "binary content"),
    ],
)
def test_a_binary_file_is_named_as_not_a_text_spectrum_file(tmp_path, head, named):
    path = tmp_path / "picked_by_mistake.csv"
    path.write_bytes(head + bytes(range(256)) * 4)
    with pytest.raises(DataError, match="not a text spectrum file") as e:
        read_spectrum_file(path)
    assert named in str(e.value) and "cells" not in str(e.value)


def test_a_utf16_export_with_its_byte_order_mark_is_read(tmp_path):
    x = np.linspace(400.0, 4000.0, MIN_POINTS + 10)
    text = "wavenumber\tsample\n" + "".join(f"{a}\t{np.sin(a / 300):.6f}\n" for a in x)
    path = tmp_path / "excel_unicode.txt"
    path.write_bytes(text.encode("utf-16"))  # BOM + UTF-16 LE, as spreadsheet "Unicode text"
    (s,) = read_spectrum_file(path)
    np.testing.assert_allclose(s.wavenumber, x)
    np.testing.assert_allclose(s.values, np.round(np.sin(x / 300), 6))
