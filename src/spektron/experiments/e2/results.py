"""E2's result files: the headline metrics of its tables, the per-molecule metric CSVs
(one row per molecule: store row, SMILES, every metric), written by the runs and read by the
aggregation and the report, and the choice of the checkpoint that ``spektron predict --run``
uses (the arm with the lowest mean validation MSE, its seed with the lowest validation MSE)."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np

# Metrics of the tables (the per-molecule CSVs hold every metric of every region).
HEADLINE = (
    "full/cosine",
    "full/mse",
    "full/sid",
    "full/wasserstein",
    "full/peak_f1@10",
    "full/peak_f1_weighted@10",
    "full/peak_intensity_corr@10",
    "fingerprint/cosine",
    "xh_stretch/cosine",
)


def write_per_molecule(path: Path, rows: np.ndarray, smiles: np.ndarray, per: dict) -> None:
    """One CSV row per molecule: store row, SMILES and every metric (``nan`` = undefined)."""
    keys = list(per)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row", "smiles", *keys])
        for i in range(len(rows)):
            w.writerow([int(rows[i]), smiles[i], *(f"{float(per[k][i]):.7g}" for k in keys)])
    os.replace(tmp, path)


def read_per_molecule(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(store rows, metric → per-molecule values) from :func:`write_per_molecule`'s CSV."""
    with open(path, newline="") as f:
        r = csv.reader(f)
        header = next(r)
        data = list(r)
    rows = np.array([int(d[0]) for d in data], dtype=np.int64)
    per = {k: np.array([float(d[j]) for d in data]) for j, k in enumerate(header) if j >= 2}
    return rows, per


SELECTED_BY = "lowest mean validation MSE over seeds"
SEED_SELECTED_BY = "the arm's seed with the lowest validation MSE"


def arm_ranking(models: dict[str, Any], direction: str) -> list[str]:
    """Arm keys of one direction, best first: lowest mean validation MSE, ties by key."""
    keys = [k for k, m in models.items() if m.get("direction") == direction]
    return sorted(keys, key=lambda k: (models[k]["val_mse"]["mean"], k))


def best_seed_checkpoint(checkpoints: list[str], val_mse: list[float]) -> str:
    """The checkpoint of the seed with the lowest validation MSE (the first on a tie)."""
    return checkpoints[int(np.argmin(np.asarray(val_mse, dtype=np.float64)))]
