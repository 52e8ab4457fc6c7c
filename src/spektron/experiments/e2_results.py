"""E2's result files: the headline metrics of its tables and the per-molecule metric CSVs
(one row per molecule: store row, SMILES, every metric), written by the runs and read by the
aggregation and the report."""

from __future__ import annotations

import csv
import os
from pathlib import Path

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
