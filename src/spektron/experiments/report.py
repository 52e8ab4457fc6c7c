"""Rebuild every experiment's tables and figures from its JSON results alone (no training, no
torch): one dispatcher over the reports each experiment owns (``e1.report`` … ``e4.report``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from spektron.errors import DataError
from spektron.experiments.e1 import report as report_e1
from spektron.experiments.e1.report import build_e1_report
from spektron.experiments.e2 import report as report_e2
from spektron.experiments.e2.report import build_e2_report
from spektron.experiments.e3 import report as report_e3
from spektron.experiments.e3.report import build_e3_report
from spektron.experiments.e4 import report as report_e4
from spektron.experiments.e4.report import build_e4_report
from spektron.experiments.reporting import load_json

REPORT_BUILDERS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "e1": build_e1_report,
    "e2": build_e2_report,
    "e3": build_e3_report,
    "e4": build_e4_report,
}
# The files of each experiment's folder that its report reads. The E2 and E3 figures also read
# per-run files (per-molecule CSVs, per-model analyses); FIGURE_DATA names the small file that
# stands in for them where they are left out (`spektron export`) and the function building it.
REPORT_FILES: dict[str, tuple[str, ...]] = {
    "e1": report_e1.REPORT_FILES,
    "e2": report_e2.REPORT_FILES,
    "e3": report_e3.REPORT_FILES,
    "e4": report_e4.REPORT_FILES,
}
FIGURE_DATA: dict[str, tuple[str, Callable[[Path], dict[str, Any]]]] = {
    "e2": (report_e2.FIGURE_DATA, report_e2.figure_data),
    "e3": (report_e3.FIGURE_DATA, report_e3.figure_data),
}


def build_report(out: Path) -> dict[str, Any]:
    """Build the report of every experiment under ``out`` that has results (``summary.json``).

    ``out`` is a results root (``out/e1/summary.json``, ...) or one experiment's folder.
    """
    out = Path(out)
    own = out / "summary.json"
    if own.is_file():
        name = load_json(own).get("experiment")
        if name in REPORT_BUILDERS:
            return {name: REPORT_BUILDERS[name](out)}
    results = {
        name: builder(out / name)
        for name, builder in REPORT_BUILDERS.items()
        if (out / name / "summary.json").is_file()
    }
    if not results:
        raise DataError(f"no experiment results under {out}")
    return results
