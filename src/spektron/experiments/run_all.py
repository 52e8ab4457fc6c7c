"""``spektron run-all``: the study's main job. Today: the data stage; E1–E4 join as they land."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from spektron.config import RunConfig
from spektron.experiments.data_overview import run_data_overview

log = logging.getLogger(__name__)

STAGES = ("data",)


def run_all(cfg: RunConfig, out: Path, progress: bool = True) -> dict[str, Any]:
    """Run every stage that exists, in order, each into its own folder under ``out``."""
    results: dict[str, Any] = {}
    results["data"] = run_data_overview(cfg, out / "data", progress=progress)
    return results
