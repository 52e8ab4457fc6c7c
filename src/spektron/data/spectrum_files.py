"""Readers for users' own spectra: delimited text (CSV/TSV) and JCAMP-DX.

Every reader returns :class:`UserSpectrum` objects on an ascending wavenumber axis (cm⁻¹) and
records each conversion it applied in ``notes``. Unit conversions:

    wavenumber ν̃ [cm⁻¹] = 10⁴ / λ[µm] = 10⁷ / λ[nm]      (IR given against wavelength)
    absorbance A = −log₁₀ T,   T = %T / 100               (IR given as transmittance)

Raman spectra must be given against Raman shift (cm⁻¹): an absolute scattered wavelength cannot
be turned into a shift without the laser line, so it is refused.

Delimited text comes in two layouts, told apart by the header (see :func:`read_spectrum_file`).
JCAMP-DX (McDonald & Wilks, Appl. Spectrosc. 42 (1988) 151; version 4.24) is parsed by the
``jcamp`` package block by block: it decodes AFFN and the compressed ASDF forms (SQZ, DIF, DUP),
applies XFACTOR/YFACTOR itself (in ``(X++(Y..Y))`` tables the abscissa comes from FIRSTX/LASTX,
which the standard gives in real units) and *prints* failed X/Y checks instead of raising; we
capture that output and turn failed Y checks and length mismatches into :class:`DataError`.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spektron.errors import DataError

# Fewer points than this cannot describe a vibrational spectrum.
MIN_POINTS = 10
JCAMP_SUFFIXES = (".jdx", ".dx", ".jcamp")
# Transmittance is clipped to this floor before −log10 (A ≤ 4): FT-IR photometric range ends
# near A = 3–4, so lower T values are noise and would otherwise give A = ∞.
TRANSMITTANCE_FLOOR = 1e-4
# Transmittance whose maximum exceeds this is taken to be in percent (fractions stay ≤ ~1).
PERCENT_T_THRESHOLD = 1.5
# Data types of other techniques, refused by name (checked before "INFRARED" so that an
# "INFRARED INTERFEROGRAM" is refused too).
FOREIGN_DATA_TYPES = (
    "NMR",
    "MASS",
    "UV",
    "VIS",
    "ESR",
    "EPR",
    "FID",
    "INTERFEROGRAM",
    "CHROMATOGRAM",
    "FLUORESCENCE",
    "ULTRAVIOLET",
)


@dataclass
class UserSpectrum:
    """One spectrum read from a user's file.

    ``wavenumber`` (N,) is ascending float64 in cm⁻¹ (Raman: shift), ``values`` (N,) float64;
    ``kind_hint`` is "ir"/"raman" when the file states its data type, else None; ``notes`` lists
    the conversions applied (unit changes, sorting, clipping).
    """

    name: str
    wavenumber: np.ndarray
    values: np.ndarray
    kind_hint: str | None
    source: Path
    notes: list[str] = field(default_factory=list)


def read_spectrum_file(path: str | Path) -> list[UserSpectrum]:
    """All spectra in ``path`` (JCAMP-DX by suffix or a leading ``##``, else delimited text).

    Delimited text (comma, semicolon, tab or whitespace; ``#`` lines are comments):

    - *columns*: first column wavenumber, each further column one spectrum (two columns: one
      spectrum); an optional header line names the columns;
    - *wide*: one spectrum per row under a header row holding the wavenumber grid; the first
      column may hold names, with a non-numeric header cell.

    A header whose cells (after an optional name cell) are at least :data:`MIN_POINTS` numbers
    means *wide*. Without a text header, more columns than rows means *wide*.

    Raises :class:`DataError` naming the file (and line/column where possible) for a missing
    file, non-numeric or missing cells, ragged rows, non-finite or duplicate wavenumbers,
    non-finite values, fewer than :data:`MIN_POINTS` points, or a JCAMP-DX file this reader
    cannot interpret.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    raw = path.read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 with its byte-order mark
        try:
            text = raw.decode("utf-16")
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not valid UTF-16 text ({e.reason})") from None
    else:
        _refuse_binary(path, raw)
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")  # old instrument exports; every byte decodes
    if path.suffix.lower() in JCAMP_SUFFIXES or text.lstrip().startswith("##"):
        return _read_jcamp(path, text)
    return _read_table(path, text)


# Leading bytes of binary formats users may pick by mistake.
_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"%PDF": "a PDF document",
    b"PK\x03\x04": "a ZIP archive (an .xlsx or .opj too): export the sheet as CSV",
    b"\x89HDF": "an HDF5 file (a Spektron store? use `spektron data info`)",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
}


def _refuse_binary(path: Path, raw: bytes) -> None:
    """A DataError for binary content (a NUL byte, or over 5 % control bytes in the first
    4 KiB, tab / CR / LF / FF aside), naming the format when its leading bytes say it."""
    head = raw[:4096]
    control = sum(b < 32 and b not in (9, 10, 12, 13) for b in head)
    if b"\x00" not in head and control <= 0.05 * max(len(head), 1):
        return
    what = next((name for magic, name in _MAGIC.items() if raw.startswith(magic)), None)
    raise DataError(
        f"{path}: not a text spectrum file ({what or 'binary content'}); expected delimited "
        "text (CSV, TSV, two or more columns) or JCAMP-DX"
    )


# --------------------------------------------------------------------------- shared checks


def _finish(
    path: Path,
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    kind_hint: str | None,
    notes: list[str],
    where_x: Callable[[int], str],
    where_y: Callable[[int], str],
) -> UserSpectrum:
    """Validate (finite, enough points, no duplicate X) in file order, then sort ascending."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    label = f"{path}: spectrum {name!r}"
    if x.shape != y.shape:
        raise DataError(f"{label}: {x.size} wavenumbers but {y.size} values")
    if x.size < MIN_POINTS:
        raise DataError(f"{label}: only {x.size} points (need at least {MIN_POINTS})")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise DataError(f"{label}: non-finite wavenumber {x[bad[0]]} at {where_x(int(bad[0]))}")
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise DataError(f"{label}: non-finite value {y[bad[0]]} at {where_y(int(bad[0]))}")
    d = np.diff(x)
    if np.all(d < 0):
        order = np.arange(x.size)[::-1]
        notes.append("wavenumbers were descending; sorted ascending")
    elif np.all(d > 0):
        order = np.arange(x.size)
    else:
        order = np.argsort(x, kind="stable")
        dup = np.flatnonzero(np.diff(x[order]) == 0)
        if dup.size:
            i, j = order[dup[0]], order[dup[0] + 1]
            raise DataError(
                f"{label}: duplicate wavenumber {x[i]:g} at {where_x(int(i))} and {where_x(int(j))}"
            )
        notes.append("wavenumbers were not in order; sorted ascending")
    return UserSpectrum(name, x[order], y[order], kind_hint, path, notes)


def _unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


# --------------------------------------------------------------------------- delimited text


def _number(cell: str, decimal_comma: bool) -> float | None:
    try:
        return float(cell)
    except ValueError:
        pass
    if decimal_comma and "," in cell:
        try:
            return float(cell.replace(",", "."))
        except ValueError:
            return None
    return None


def _delimiter(lines: list[str]) -> str | None:
    """First of tab, semicolon, comma present in every one of the first lines; None = spaces."""
    head = lines[:5]
    for d in ("\t", ";", ","):
        if all(d in s for s in head):
            return d
    return None


def _read_table(path: Path, text: str) -> list[UserSpectrum]:
    rows: list[tuple[int, str]] = [
        (no, s.strip())
        for no, s in enumerate(text.splitlines(), 1)
        if s.strip() and not s.lstrip().startswith("#")
    ]
    if not rows:
        raise DataError(f"{path}: no data lines")
    delim = _delimiter([s for _, s in rows])
    dname = {"\t": "tab", ";": "semicolon", ",": "comma", None: "whitespace"}[delim]
    cells = [
        [c.strip().strip("\"'") for c in (s.split() if delim is None else s.split(delim))]
        for _, s in rows
    ]
    if all(c and c[-1] == "" for c in cells):  # a trailing delimiter on every line
        cells = [c[:-1] for c in cells]
    ncols = len(cells[0])
    for (no, _), c in zip(rows, cells, strict=True):
        if len(c) != ncols:
            raise DataError(
                f"{path}: line {no} has {len(c)} cells, the first line {ncols} ({dname}-delimited)"
            )
    if ncols < 2:
        raise DataError(f"{path}: one column only; need wavenumber and intensity ({dname})")
    decimal_comma = delim != ","
    nums = [[_number(v, decimal_comma) for v in c] for c in cells]
    used_comma = decimal_comma and any(
        "," in v and n is not None
        for c, nc in zip(cells, nums, strict=True)
        for v, n in zip(c, nc, strict=True)
    )
    notes = [f"{dname}-delimited text"] + (["decimal commas read as points"] if used_comma else [])

    has_header = any(n is None for n in nums[0])
    if has_header:
        id_col = nums[0][0] is None
        grid_cells = nums[0][1:] if id_col else nums[0]
        wide = len(grid_cells) >= MIN_POINTS and all(n is not None for n in grid_cells)
    else:
        id_col = False
        wide = ncols > 2 and ncols > len(rows)
        notes.append(
            "no header; read as one spectrum per row under a wavenumber row (more columns than "
            "rows)"
            if wide
            else "no header; first column read as wavenumber"
        )
    body = (
        list(zip(rows[1:], cells[1:], nums[1:], strict=True))
        if (has_header or wide)
        else (list(zip(rows, cells, nums, strict=True)))
    )
    if not body:
        raise DataError(f"{path}: a header line but no data lines")

    def cell_error(no: int, col: int, text_: str) -> DataError:
        what = "empty cell" if text_ == "" else f"non-numeric cell {text_!r}"
        return DataError(f"{path}: {what} at line {no}, column {col + 1}")

    first = 1 if id_col else 0
    for (no, _), c, n in body:
        for j in range(first, ncols):
            if n[j] is None:
                raise cell_error(no, j, c[j])
    header_no = rows[0][0]
    if wide:
        x = np.array(nums[0][first:], dtype=np.float64)
        spectra = []
        names = _unique_names(
            [(c[0] if id_col else "") or f"row {k + 1}" for k, (_, c, _) in enumerate(body)]
        )
        for name, ((no, _), _, n) in zip(names, body, strict=True):
            spectra.append(
                _finish(
                    path,
                    name,
                    x,
                    np.array(n[first:], dtype=np.float64),
                    None,
                    [*notes, "wide layout (one spectrum per row)"],
                    lambda i: f"line {header_no}, column {i + first + 1}",
                    lambda i, no=no: f"line {no}, column {i + first + 1}",
                )
            )
        return spectra
    line_of = [no for (no, _), _, _ in body]
    x = np.array([n[0] for _, _, n in body], dtype=np.float64)
    names = _unique_names(
        [(cells[0][j] if has_header else "") or f"col{j + 1}" for j in range(1, ncols)]
    )
    return [
        _finish(
            path,
            name,
            x,
            np.array([n[j] for _, _, n in body], dtype=np.float64),
            None,
            list(notes),
            lambda i: f"line {line_of[i]}, column 1",
            lambda i, j=j: f"line {line_of[i]}, column {j + 1}",
        )
        for j, name in zip(range(1, ncols), names, strict=True)
    ]


# --------------------------------------------------------------------------- JCAMP-DX


def _label(line: str) -> tuple[str, str] | None:
    """(normalised label, value) of a ``##LABEL=value`` line: the standard ignores case,
    spaces, dashes, slashes and underscores in labels."""
    if not line.startswith("##") or "=" not in line:
        return None
    lhs, rhs = line[2:].split("=", 1)
    return re.sub(r"[\s\-/_]", "", lhs).upper(), rhs.strip()


@dataclass
class _Block:
    lines: list[str] = field(default_factory=list)
    line_numbers: list[int] = field(default_factory=list)  # in the file, 1-based
    header: dict[str, str] = field(default_factory=dict)
    closed: bool = False


def _jcamp_blocks(path: Path, text: str) -> list[_Block]:
    """Innermost ``##TITLE= … ##END=`` blocks that hold data (compound LINK files nest them)."""
    stack: list[_Block] = []
    leaves: list[_Block] = []
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.split("$$", 1)[0].rstrip()  # "$$" starts a comment anywhere on a line
        if not line.strip():
            continue
        lab = _label(line.lstrip())
        if lab and lab[0] == "TITLE":
            stack.append(_Block())
        if not stack:
            continue  # text before the first block
        block = stack[-1]
        block.lines.append(line.lstrip() if lab else line)
        block.line_numbers.append(no)
        if lab:
            block.header.setdefault(lab[0], lab[1])
        if lab and lab[0] == "END":
            block.closed = True
            done = stack.pop()
            if _has_data(done):
                leaves.append(done)
    leaves.extend(b for b in stack if _has_data(b))  # unterminated (checked by length later)
    if not leaves:
        raise DataError(f"{path}: no JCAMP-DX data block (##TITLE= … ##XYDATA= … ##END=)")
    return leaves


def _check_pairs(where: str, b: _Block) -> None:
    """(XY..XY) tables: jcamp silently skips a line with a non-numeric token (e.g. the
    missing-value mark "?"), so every data line is checked here first."""
    in_table = False
    for no, line in zip(b.line_numbers, b.lines, strict=True):
        lab = _label(line)
        if lab:
            in_table = lab[0] in ("XYDATA", "XYPOINTS")
            continue
        if not in_table:
            continue
        tokens = [t for t in re.split(r"[,;\s]+", line.strip()) if t]
        bad = [t for t in tokens if _number(t, decimal_comma=False) is None]
        if bad or len(tokens) % 2:
            what = f"non-numeric {bad[0]!r}" if bad else "an odd number of values"
            raise DataError(f"{where}: line {no} holds {what} in an (XY..XY) table")


def _has_data(b: _Block) -> bool:
    return any(k in b.header for k in ("XYDATA", "XYPOINTS", "PEAKTABLE", "NTUPLES"))


def _canonical_table_line(line: str) -> str:
    lab = _label(line)
    if lab and lab[0] in ("XYDATA", "XYPOINTS"):
        return f"##{lab[0]}=" + re.sub(r"\s", "", lab[1]).upper()
    return line


def _kind_from_data_type(path: Path, title: str, data_type: str, xunits: str) -> str | None:
    dt = data_type.upper()
    words = set(re.split(r"[^A-Z]+", dt))
    foreign = [w for w in FOREIGN_DATA_TYPES if w in words or (len(w) > 3 and w in dt)]
    if foreign:
        raise DataError(
            f"{path}: block {title!r} has data type {data_type!r} (##XUNITS={xunits or '?'}); "
            "only IR and Raman spectra are supported"
        )
    if "RAMAN" in dt:
        return "raman"
    if "INFRARED" in dt or {"IR", "FTIR", "NIR", "MIR"} & words:
        return "ir"
    return None


def _to_wavenumber(
    path: Path, title: str, x: np.ndarray, xunits: str, kind: str | None, notes: list[str]
) -> np.ndarray:
    u = re.sub(r"\s", "", xunits.upper())
    if not u:
        notes.append("no ##XUNITS; wavenumbers assumed in cm⁻¹")
        return x
    if ("CM" in u and ("1/" in u or "-1" in u)) or "WAVENUMBER" in u or "RAMANSHIFT" in u:
        return x
    per_cm = {"MICROMETERS": 1e4, "MICROMETER": 1e4, "MICRONS": 1e4, "MICRON": 1e4, "UM": 1e4}
    per_cm |= {"µM": 1e4, "μM": 1e4, "NANOMETERS": 1e7, "NANOMETER": 1e7, "NM": 1e7}
    if u not in per_cm:
        raise DataError(
            f"{path}: block {title!r} has ##XUNITS={xunits}; supported are 1/CM, MICROMETERS "
            "and NANOMETERS"
        )
    if kind == "raman":
        raise DataError(
            f"{path}: block {title!r} is a Raman spectrum against wavelength ({xunits}); give "
            "it against Raman shift in cm⁻¹ (the shift needs the laser line)"
        )
    bad = np.flatnonzero(~(x > 0))
    if bad.size:
        raise DataError(
            f"{path}: block {title!r}: non-positive wavelength {x[bad[0]]:g} {xunits} at "
            f"point {bad[0] + 1}"
        )
    notes.append(f"X converted from {xunits} to cm⁻¹ ({per_cm[u]:g} / λ)")
    return per_cm[u] / x


def _to_absorbance(
    path: Path, title: str, y: np.ndarray, yunits: str, kind: str | None, notes: list[str]
) -> np.ndarray:
    u = yunits.upper()
    if "REFLECT" in u:
        raise DataError(
            f"{path}: block {title!r} has ##YUNITS={yunits}; convert reflectance to an "
            "absorbance-like scale (e.g. Kubelka-Munk) first"
        )
    if "TRANSMIT" in u or re.sub(r"\s", "", u) in ("%T", "T"):
        if not np.all(np.isfinite(y)):
            return y  # reported with its position by _finish
        percent = "%" in u or "PERCENT" in u or float(np.max(y)) > PERCENT_T_THRESHOLD
        t = y / 100.0 if percent else y
        low = int(np.sum(t < TRANSMITTANCE_FLOOR))
        notes.append(
            f"Y converted from transmittance{' in %' if percent else ''} to absorbance "
            "A = -log10(T)"
        )
        if low:
            notes.append(
                f"{low} points with T < {TRANSMITTANCE_FLOOR:g} clipped to it "
                f"(A <= {-math.log10(TRANSMITTANCE_FLOOR):g})"
            )
        return -np.log10(np.maximum(t, TRANSMITTANCE_FLOOR))
    if not u.strip():
        notes.append("no ##YUNITS; values used as given")
    elif kind == "ir" and "ABSORB" not in u:
        notes.append(f"##YUNITS={yunits} used as given (taken as proportional to absorbance)")
    return y


def _read_jcamp(path: Path, text: str) -> list[UserSpectrum]:
    try:
        import jcamp
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise DataError(f"{path}: reading JCAMP-DX needs the 'jcamp' package ({e})") from e

    blocks = _jcamp_blocks(path, text)
    titles = _unique_names(
        [b.header.get("TITLE") or f"block {k + 1}" for k, b in enumerate(blocks)]
    )
    out = []
    for title, b in zip(titles, blocks, strict=True):
        h = b.header
        where = f"{path}: block {title!r}"
        if "NTUPLES" in h:
            raise DataError(f"{where}: NTUPLES (multi-page) data are not supported")
        if "PEAKTABLE" in h:
            raise DataError(f"{where}: a peak table (stick list), not a continuous spectrum")
        form = re.sub(r"\s", "", h.get("XYDATA") or h.get("XYPOINTS", "")).upper()
        if form not in ("(X++(Y..Y))", "(XY..XY)"):
            raise DataError(f"{where}: data table form {form or '(none)'} is not supported")
        if form == "(XY..XY)":
            _check_pairs(where, b)
        else:
            missing = [k for k in ("FIRSTX", "LASTX", "NPOINTS") if k not in h]
            if missing:
                raise DataError(f"{where}: lacks ##{', ##'.join(missing)} (needed for XYDATA)")
        kind = _kind_from_data_type(path, title, h.get("DATATYPE", ""), h.get("XUNITS", ""))
        notes: list[str] = [] if b.closed else ["block has no ##END=; read to the end of file"]
        # jcamp matches the table label and form literally; give it the canonical spelling.
        lines = [_canonical_table_line(s) for s in b.lines]
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                d = jcamp.read(lines)
            x = np.asarray(d["x"], dtype=np.float64)
            y = np.asarray(d["y"], dtype=np.float64)
        except Exception as e:  # the parser raises bare Exception, KeyError, ValueError, ...
            msg = (str(e).splitlines() or [""])[0]
            raise DataError(f"{where}: cannot parse ({type(e).__name__}: {msg})") from e
        report = printed.getvalue()
        if "Y-Check failed" in report:
            first = next(s for s in report.splitlines() if "Y-Check" in s)
            raise DataError(f"{where}: corrupt compressed data ({first.strip()})")
        if "X-Check failed" in report:
            notes.append("JCAMP-DX X check failed on some lines (abscissa from FIRSTX/LASTX)")
        npoints = h.get("NPOINTS")
        if x.size != y.size or (npoints and npoints.isdigit() and int(npoints) != y.size):
            raise DataError(
                f"{where}: declares NPOINTS={npoints} but holds {y.size} values "
                f"({x.size} abscissae); the file is truncated or corrupt"
            )
        x = _to_wavenumber(path, title, x, h.get("XUNITS", ""), kind, notes)
        y = _to_absorbance(path, title, y, h.get("YUNITS", ""), kind, notes)
        out.append(
            _finish(
                path,
                title,
                x,
                y,
                kind,
                notes,
                lambda i: f"point {i + 1}",
                lambda i: f"point {i + 1}",
            )
        )
    return out


__all__ = ["MIN_POINTS", "UserSpectrum", "read_spectrum_file"]
