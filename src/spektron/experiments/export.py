"""``spektron export``: a finished run's results as a small folder to commit, check and rebuild.

A ``run-all`` folder holds gigabytes at the study scale, nearly all of it checkpoints. The export
keeps, in the run's layout, what a reader needs to see the results, to know what made them and
to rebuild every table and figure with ``spektron report --out EXPORT``:

* ``provenance.json``: the run it came from, the git commits, devices and package versions the
  run recorded, its resolved config and its hash, the datasets (sha256 and config hash), the
  measured wall time per experiment, what was left out, and every exported file with its size
  and sha256 (:func:`export_run`);
* ``timing.json``: ``run-all``'s estimated and measured wall time per stage;
* ``data/``: the dataset summary, the run's resolved config (``config.json``), the validation
  of the simulation levels against the DFT reference, and their PNG figures;
* ``e1/`` … ``e4/``: per experiment, the files its report reads
  (:data:`~spektron.experiments.report.REPORT_FILES`), ``table.md``, the PNG figures and (E4)
  ``tables/*.csv``.

Left out: every checkpoint (``*.pt``), the PDF twins of the figures, per-run folders (training
histories, run specs, per-run metrics with their example predictions) and the per-molecule and
per-oscillator files. The E2 and E3 figures read some of those per-run files (every run's
per-molecule CSV; every model's transfer-function analysis); in their place the export writes
``figure_data.json``, which holds exactly what those figures draw and which the reports read
when the per-run files are absent. Every copied file is byte for byte the run's own.

The export is written into a hidden temporary folder next to the destination and renamed into
place only when complete, so a folder under the destination's name is never a partial export.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from spektron.errors import ConfigError, DataError
from spektron.experiments.report import FIGURE_DATA, REPORT_BUILDERS, REPORT_FILES, build_report
from spektron.experiments.reporting import load_json
from spektron.utils import check_writable

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
PROVENANCE = "provenance.json"
# Besides its report's inputs, what each experiment folder keeps: the report's outputs (E4 also
# writes its tables as CSV), PNG figures only.
REPORT_OUTPUTS = ("table.md", "figures/*.png", "tables/*.csv")
# The data stage's results (run-all writes them; no report rebuilds them).
DATA_FILES = (
    "data_summary.json",
    "config.json",
    "validation.json",
    "validation.md",
    "figures/*.png",
)
TOP_FILES = ("timing.json",)
# Files whose JSON records how a result was made (git commit, device, package versions).
RECORD_NAMES = ("summary.json", "metrics.json", "result.json", "data_summary.json")
RECORD_KEYS = ("git_commit", "device", "package_versions")


# ----------------------------------------------------------------------------- selection


def _matches(folder: Path, patterns: tuple[str, ...]) -> list[Path]:
    """Files of ``folder`` matching any of ``patterns`` (relative globs), sorted, no repeats."""
    found: dict[Path, None] = {}
    for pattern in patterns:
        for p in sorted(folder.glob(pattern)):
            if p.is_file() and not p.is_symlink():
                found[p] = None
    return list(found)


def experiments_in(run: Path) -> list[str]:
    """The experiments with results (``summary.json``) under ``run``, in study order."""
    return [name for name in REPORT_BUILDERS if (run / name / "summary.json").is_file()]


def select_files(run: Path) -> dict[str, Path]:
    """What the export copies: its path in the export → the file in ``run``.

    Raises :class:`DataError` when ``run`` has no experiment results or when a file that an
    experiment's report reads is missing (a report on the export would fail).
    """
    run = Path(run)
    names = experiments_in(run)
    if not names:
        wanted = ", ".join(f"{n}/summary.json" for n in REPORT_BUILDERS)
        raise DataError(
            f"{run}: no experiment results (none of {wanted}); --run takes the folder that "
            "`spektron run-all --out` wrote"
        )
    chosen: dict[str, Path] = {}
    for p in _matches(run, TOP_FILES):
        chosen[p.name] = p
    if (run / "data").is_dir():
        for p in _matches(run / "data", DATA_FILES):
            chosen[p.relative_to(run).as_posix()] = p
    for name in names:
        folder = run / name
        for file in REPORT_FILES[name]:
            if not (folder / file).is_file():
                raise DataError(f"{folder / file}: file not found; the {name} report reads it")
        for p in _matches(folder, REPORT_FILES[name] + REPORT_OUTPUTS):
            chosen[p.relative_to(run).as_posix()] = p
    return chosen


# ----------------------------------------------------------------------------- provenance


def _values(obj: Any, key: str) -> Iterator[Any]:
    """Every value stored under ``key`` at any depth of a JSON object."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key:
                yield v
            else:
                yield from _values(v, key)
    elif isinstance(obj, list):
        for v in obj:
            yield from _values(v, key)


def _unique(values: list[Any]) -> list[Any]:
    """Distinct values in first-seen order (dicts compared by content)."""
    seen: dict[str, Any] = {}
    for v in values:
        seen.setdefault(json.dumps(v, sort_keys=True), v)
    return list(seen.values())


def _records(folder: Path) -> tuple[dict[str, list[Any]], int]:
    """What the JSON records under ``folder`` say made them (the distinct values of each of
    :data:`RECORD_KEYS`), and how many per-run records (``metrics.json``, ``result.json``) there
    are."""
    found: dict[str, list[Any]] = {k: [] for k in RECORD_KEYS}
    n_runs = 0
    for path in sorted(folder.rglob("*.json")):
        if path.name not in RECORD_NAMES:
            continue
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("export: %s is not readable JSON; its provenance is not counted", path)
            continue
        n_runs += path.name in ("metrics.json", "result.json")
        for key in RECORD_KEYS:
            found[key] += [v for v in _values(obj, key) if v is not None]
    return {k: _unique(v) for k, v in found.items()}, n_runs


def _datasets(summaries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The datasets the experiments name (``dataset`` with a ``sha256``), once each, with the
    experiments that used them."""
    out: dict[str, dict[str, Any]] = {}
    for name, summary in summaries.items():
        d = summary.get("dataset")
        if not isinstance(d, dict) or not d.get("sha256"):
            continue
        entry = out.setdefault(
            d["sha256"],
            {
                "sha256": d["sha256"],
                "config_hash": d.get("config_hash"),
                "file": Path(str(d.get("path", ""))).name or None,
                "label": d.get("label"),
                "experiments": [],
            },
        )
        entry["experiments"].append(name)
    return list(out.values())


def _left_out(run: Path, chosen: dict[str, Path]) -> dict[str, Any]:
    """Counts and sizes of what the export leaves out of the stages it exports."""
    kept = {p.resolve() for p in chosen.values()}
    pt, other = [0, 0], [0, 0]
    kinds: dict[str, int] = {}
    for stage in ("data", *REPORT_BUILDERS):
        if not (run / stage).is_dir():
            continue
        for p in (run / stage).rglob("*"):
            if not p.is_file() or p.resolve() in kept:
                continue
            size = p.stat().st_size
            bucket = pt if p.suffix == ".pt" else other
            bucket[0] += 1
            bucket[1] += size
            if p.suffix != ".pt":
                kinds[p.suffix or p.name] = kinds.get(p.suffix or p.name, 0) + 1
    return {
        "checkpoints": {"files": pt[0], "bytes": pt[1]},
        "other": {"files": other[0], "bytes": other[1], "by_suffix": dict(sorted(kinds.items()))},
        "note": "checkpoints (*.pt), PDF figures, per-run folders (histories, run specs, per-run "
        "metrics with example predictions), per-molecule CSVs and per-oscillator files stay in "
        "the run; figure_data.json holds what the E2 and E3 figures draw of them",
    }


def _run_all_times(timing: dict[str, Any]) -> dict[str, Any]:
    """Measured wall time per stage, summed over the ``run-all`` calls that wrote into the run
    (a study can run in parts: ``timing.json`` keeps the earlier calls' records)."""
    calls = [*timing.get("earlier_calls", []), timing] if timing else []
    per_stage: dict[str, float] = {}
    for call in calls:
        for stage, seconds in (call.get("measured_s") or {}).items():
            per_stage[stage] = per_stage.get(stage, 0.0) + seconds
    return {
        "measured": per_stage,
        "measured_total": sum(call.get("measured_total_s") or 0.0 for call in calls),
        "run_all_calls": [call.get("stages") for call in calls],
    }


def provenance(
    run: Path, files: dict[str, Path], derived: dict[str, str], export_dir: Path
) -> dict[str, Any]:
    """The content of ``provenance.json`` for an export of ``run`` written to ``export_dir``
    (``files``: the copied files, export path → run file; ``derived``: files the export wrote
    itself, export path → what they hold)."""
    from spektron import __version__
    from spektron.config import config_hash
    from spektron.experiments.runner import file_sha256, git_commit

    run = Path(run)
    names = experiments_in(run)
    summaries = {n: load_json(run / n / "summary.json") for n in names}
    timing = load_json(run / "timing.json") if (run / "timing.json").is_file() else {}
    config = None
    if (run / "data" / "config.json").is_file():
        cfg = load_json(run / "data" / "config.json")
        config = {"file": "data/config.json", "hash": config_hash(cfg), "preset": cfg.get("preset")}
    experiments: dict[str, Any] = {}
    commits: list[Any] = []
    devices: list[Any] = []
    versions: list[Any] = []
    for stage in ("data", *names):
        if not (run / stage).is_dir():
            continue
        rec, n_runs = _records(run / stage)
        commits += rec["git_commit"]
        devices += rec["device"]
        versions += rec["package_versions"]
        if stage == "data":
            continue
        s = summaries[stage]
        experiments[stage] = {
            "preset": s.get("preset"),
            "git_commits": rec["git_commit"],
            "devices": rec["device"],
            "run_records": n_runs,
        }
    manifest = {
        rel: {"bytes": (export_dir / rel).stat().st_size, "sha256": file_sha256(export_dir / rel)}
        for rel in sorted([*files, *derived])
    }
    data_summary = (
        load_json(run / "data" / "data_summary.json")
        if (run / "data" / "data_summary.json").is_file()
        else {}
    )
    return {
        "schema_version": SCHEMA_VERSION,
        "what": "the results of a spektron run, exported by `spektron export`: each "
        "experiment's summary, table, PNG figures and the files its report reads; no "
        "checkpoints. `spektron report --out <this folder>` rebuilds every table and figure "
        "from it.",
        "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "exported_with": {"spektron": __version__, "git_commit": git_commit()},
        "source": {"run": str(run.resolve()), "experiments": names},
        "git_commits": _unique(commits),
        "config": config,
        "datasets": _datasets(summaries),
        "data_store": {
            k: data_summary.get(k) for k in ("source", "n_records", "config_hash", "label")
        }
        if data_summary
        else None,
        "machine": {"devices": _unique(devices), "package_versions": _unique(versions)},
        "wall_time_s": {
            **_run_all_times(timing),
            "in_summaries": {
                n: s.get("wall_time_s", s.get("runtime_s")) for n, s in summaries.items()
            },
            # Per experiment, every call that wrote its summary (earlier calls first).
            "in_summaries_all_calls": {
                n: [*s.get("earlier_wall_times_s", []), s.get("wall_time_s", s.get("runtime_s"))]
                for n, s in summaries.items()
            },
        },
        "experiments": experiments,
        "derived": derived,
        "left_out": _left_out(run, files),
        "files": manifest,
        "total_bytes": sum(m["bytes"] for m in manifest.values()),
    }


# ----------------------------------------------------------------------------- check


def check_export(export_dir: Path) -> dict[str, Any]:
    """Rebuild every report from a copy of ``export_dir`` and compare with the export's own
    tables (``table.md``, ``tables/*.csv``) and PNG figures, byte for byte.

    Returns ``{"tables": {"identical": [...], "different": [...]}, "figures": {...}}`` (export
    paths); nothing in ``export_dir`` is changed.
    """
    export_dir = Path(export_dir)
    scratch = Path(tempfile.mkdtemp(prefix="spektron-export-check-"))
    try:
        copy = scratch / "export"
        shutil.copytree(export_dir, copy)
        build_report(copy)
        result: dict[str, Any] = {}
        for kind, patterns in (
            ("tables", ("*/table.md", "*/tables/*.csv")),
            ("figures", ("*/figures/*.png",)),
        ):
            same, different = [], []
            for pattern in patterns:
                for p in sorted(export_dir.glob(pattern)):
                    rel = p.relative_to(export_dir).as_posix()
                    if rel.startswith("data/"):
                        continue  # no report rebuilds the data stage
                    (same if p.read_bytes() == (copy / rel).read_bytes() else different).append(rel)
            result[kind] = {"identical": same, "different": different}
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ----------------------------------------------------------------------------- export


def _check_destination(run: Path, to: Path, force: bool) -> None:
    """Refuse, before any work, a destination that cannot be written, that would replace the
    run (or a folder holding it), or that holds anything while ``force`` is off."""
    check_writable(to, "folder", "--to")
    run_abs, to_abs = run.resolve(), to.resolve()
    if to_abs == run_abs or to_abs in run_abs.parents:
        raise ConfigError(f"--to {to} is the run folder or holds it; choose another folder")
    if to.is_dir() and any(to.iterdir()) and not force:
        raise ConfigError(
            f"--to {to} exists and is not empty: pass --force to replace it, or choose another "
            "folder"
        )


def _write(run: Path, tmp: Path, chosen: dict[str, Path]) -> dict[str, str]:
    """Copy ``chosen`` into ``tmp`` and write each experiment's figure data; returns the derived
    files (export path → what they hold)."""
    for rel, src in chosen.items():
        dst = tmp / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    # `spektron report` on the export writes every figure as PDF too: keep them out of git.
    (tmp / ".gitignore").write_text("*.pdf\n", encoding="utf-8")
    derived = {".gitignore": "*.pdf: the PDF figures that `spektron report` adds"}
    for name in experiments_in(run):
        if name not in FIGURE_DATA:
            continue
        file, build = FIGURE_DATA[name]
        data = build(run / name)
        (tmp / name / file).write_text(json.dumps(data) + "\n", encoding="utf-8")
        derived[f"{name}/{file}"] = data.get("note", "")
    return derived


def _sibling(to: Path, what: str) -> Path:
    """A hidden, unused name next to ``to`` (same file system, so renames are atomic)."""
    return to.parent / f".{to.name}.{what}-{uuid.uuid4().hex[:12]}"


def _swap(tmp: Path, to: Path) -> None:
    """Rename the finished export ``tmp`` to ``to``, replacing what is there."""
    old = None
    if to.exists():
        old = _sibling(to, "old")
        os.replace(to, old)
    try:
        os.replace(tmp, to)
    except OSError:
        if old is not None:
            os.replace(old, to)  # put the earlier export back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_run(run: Path, to: Path, force: bool = False, check: bool = False) -> dict[str, Any]:
    """Export the results of ``run`` (a ``run-all`` folder) to ``to``; see the module docstring.

    Parameters
    ----------
    run : Path
        The run's folder (``run-all --out``); it is only read.
    to : Path
        The export's folder. An existing non-empty one is refused unless ``force``; it is
        replaced only once the new export is complete.
    force : bool
        Replace an existing ``to``.
    check : bool
        Before the export takes ``to``'s name, rebuild every report from a copy of it and
        refuse it unless every table comes out byte for byte the same (:func:`check_export`;
        the result goes into ``provenance.json``).

    Returns
    -------
    dict
        The provenance record (``provenance.json``) and ``path``, the export's folder.

    Raises
    ------
    DataError
        ``run`` is not a folder, has no experiment results, lacks a file a report reads, or
        (``check``) a rebuilt table differs from the run's.
    ConfigError
        ``to`` cannot be written, is or holds ``run``, or is not empty and ``force`` is off.
    """
    run, to = Path(run), Path(to)
    if not run.is_dir():
        raise DataError(f"--run {run}: no such folder")
    chosen = select_files(run)
    _check_destination(run, to, force)
    to.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(to, "partial")
    tmp.mkdir()
    try:
        derived = _write(run, tmp, chosen)
        checked = None
        if check:
            checked = check_export(tmp)
            bad = checked["tables"]["different"]
            if bad:
                raise DataError(
                    f"`spektron report` on the export does not reproduce {', '.join(bad)} of "
                    f"{run} (were the tables made by other code?); nothing written to {to}"
                )
        record = provenance(run, chosen, derived, tmp)
        record["check"] = checked
        (tmp / PROVENANCE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        _swap(tmp, to)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info(
        "exported %d files (%d bytes) of %s to %s",
        len(record["files"]),
        record["total_bytes"],
        run,
        to,
    )
    return {**record, "path": str(to)}


__all__ = ["check_export", "export_run", "provenance", "select_files"]
