"""Benchmark ``spektron.chemistry.simulate.simulate_molecule`` on seeded-random real QM9 molecules.

Reports the wall time per molecule on one core (one process, BLAS limited to one thread), the
share of each stage, the failures by reason, and a frequency sanity check: the mean absolute
error between the sorted MMFF94 frequencies and the sorted B3LYP/6-31G(2df,p) harmonic
frequencies of the QM9 row scaled by 0.965 (rows whose list length is not 3N−6 are skipped;
QM9 carries ~334 duplicated lists). Writes everything as JSON (``--out``).

    python scripts/bench_simulate.py --n 200 --seed 0 --out bench_simulate.json
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core: set before NumPy loads its BLAS

import argparse  # noqa: E402
import ast  # noqa: E402
import csv  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from spektron.chemistry.molecule import MoleculeInput  # noqa: E402
from spektron.chemistry.simulate import simulate_molecule  # noqa: E402
from spektron.chemistry.spectra import make_grid  # noqa: E402
from spektron.config import PhysicsConfig, to_dict  # noqa: E402

DFT_SCALE = 0.965  # QM9S convention for B3LYP harmonic frequencies
_NUM = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:(?:[eE]|\*\^)[+-]?\d+)?")


def _floats(text: str) -> np.ndarray:
    """Numbers of a Mathematica-style list ("0.", "1.2*^-5")."""
    return np.array([float(t.replace("*^", "e")) for t in _NUM.findall(text)])


def qm9_folder() -> Path:
    spec = importlib.util.find_spec("qm9pack")  # does not execute qm9pack/__init__.py
    if spec is None or not spec.submodule_search_locations:
        sys.exit("qm9pack is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def sample_rows(n: int, seed: int) -> list[dict[str, str]]:
    """Seeded reservoir sample of ``n`` rows over the three qm9pack CSVs."""
    csv.field_size_limit(1 << 30)
    rng = np.random.default_rng(seed)
    keep: list[dict[str, str]] = []
    seen = 0
    for name in ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv"):
        with open(qm9_folder() / name, newline="") as fh:
            for row in csv.DictReader(fh):
                if len(keep) < n:
                    keep.append(row)
                else:
                    j = int(rng.integers(0, seen + 1))
                    if j < n:
                        keep[j] = row
                seen += 1
    return keep


def to_input(row: dict[str, str]) -> MoleculeInput:
    elements = ast.literal_eval(row["Elements"])
    return MoleculeInput(
        source_index=int(row["Index"]),
        smiles=row["SMILES"],
        inchi=row["InChi"],
        elements=list(elements),
        coords=_floats(row["XYZ_Ang"]).reshape(-1, 3),
        charges=_floats(row["Mulliken_pop"]),
        dft_freqs=_floats(row["Harmonic_Freq_cmi"]),
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200, help="molecules (default 200)")
    ap.add_argument("--seed", type=int, default=0, help="selection seed (default 0)")
    ap.add_argument("--out", type=Path, default=Path("bench_simulate.json"), help="JSON output")
    a = ap.parse_args(argv)

    t0 = time.perf_counter()
    rows = sample_rows(a.n, a.seed)
    t_read = time.perf_counter() - t0
    physics = PhysicsConfig()
    grid = make_grid()

    stages: dict[str, float] = {}
    per_mol, n_atoms, maes, fails = [], [], [], Counter()
    n_mae_skipped = 0
    charge_models, centro = Counter(), 0
    simulate_molecule(to_input(rows[0]), physics, grid)  # warm-up (imports, caches)
    cpu0 = time.process_time()
    for row in rows:
        inp = to_input(row)
        t = time.perf_counter()
        try:
            rec = simulate_molecule(inp, physics, grid, timings=stages)
        except Exception as e:  # noqa: BLE001 - counted by reason
            fails[f"{type(e).__name__}: {str(e).split(':')[0]}"] += 1
            continue
        per_mol.append(time.perf_counter() - t)
        n_atoms.append(rec.n_atoms)
        charge_models[rec.charge_model] += 1
        centro += rec.centrosymmetric == 1
        ref = np.sort(inp.dft_freqs)
        if len(ref) != 3 * rec.n_atoms - 6:
            n_mae_skipped += 1
            continue
        maes.append(float(np.mean(np.abs(np.sort(rec.stick_freq) - DFT_SCALE * ref))))
    cpu = time.process_time() - cpu0

    per_mol_ms = 1e3 * np.array(per_mol)
    total = sum(stages.values())
    result = {
        "n_requested": a.n,
        "seed": a.seed,
        "n_ok": len(per_mol),
        "failures": dict(fails),
        "ms_per_molecule_mean": float(per_mol_ms.mean()),
        "ms_per_molecule_median": float(np.median(per_mol_ms)),
        "ms_per_molecule_p95": float(np.percentile(per_mol_ms, 95)),
        "cpu_ms_per_molecule": 1e3 * cpu / max(len(per_mol) + sum(fails.values()), 1),
        "atoms_mean": float(np.mean(n_atoms)),
        "stage_ms_per_molecule": {k: 1e3 * v / len(per_mol) for k, v in stages.items()},
        "stage_share": {k: v / total for k, v in stages.items()},
        "freq_mae_cm": {
            "vs": f"B3LYP harmonic x {DFT_SCALE}",
            "n": len(maes),
            "skipped_bad_list_length": n_mae_skipped,
            "mean": float(np.mean(maes)) if maes else None,
            "median": float(np.median(maes)) if maes else None,
        },
        "charge_models": dict(charge_models),
        "centrosymmetric": centro,
        "csv_read_s": t_read,
        "physics": to_dict(physics),
        "machine": {"python": platform.python_version(), "cpu": platform.processor()},
    }
    a.out.write_text(json.dumps(result, indent=2))
    print(f"{result['n_ok']}/{a.n} molecules simulated (mean {result['atoms_mean']:.1f} atoms)")
    print(
        f"time per molecule, one core: mean {result['ms_per_molecule_mean']:.1f} ms, "
        f"median {result['ms_per_molecule_median']:.1f} ms, "
        f"p95 {result['ms_per_molecule_p95']:.1f} ms"
    )
    for k, v in sorted(result["stage_ms_per_molecule"].items(), key=lambda kv: -kv[1]):
        print(f"  {k:10s} {v:7.2f} ms  ({100 * result['stage_share'][k]:4.1f} %)")
    mae = result["freq_mae_cm"]
    if mae["n"]:
        print(
            f"frequency MAE vs B3LYP x {DFT_SCALE}: mean {mae['mean']:.1f} cm-1, "
            f"median {mae['median']:.1f} cm-1 over {mae['n']} molecules "
            f"({n_mae_skipped} skipped: list length != 3N-6)"
        )
    if fails:
        print("failures:", dict(fails))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
