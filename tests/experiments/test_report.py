"""E1 report from JSON alone: table content and order, figure files, typed errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from spektron.errors import DataError
from spektron.experiments.e1.report import build_e1_report, format_e1_table, mask_runs
from spektron.experiments.report import build_report
from tests.helpers import BACKBONE_MSE, BASELINE_MSE, E1_LABEL, fake_summary


def fake_examples(n_points: int = 64, n_examples: int = 2) -> dict[str, Any]:
    wn = np.linspace(500.0, 4000.0, n_points)
    rng = np.random.default_rng(0)
    items = []
    for k in range(n_examples):
        truth = rng.random(n_points)
        mask = np.zeros(n_points, dtype=int)
        mask[5:12] = 1
        mask[40 + k] = 1  # a one-point span must still be shaded
        arms = [*BACKBONE_MSE, "interpolation", "pca"]
        pred = {a: (truth + 0.1 * rng.standard_normal(n_points)).tolist() for a in arms}
        items.append(
            {
                "kind": "ir" if k == 0 else "raman",
                "smiles": "CCO",
                "truth": truth.tolist(),
                "mask": mask.tolist(),
                "pred": pred,
            }
        )
    return {"data_label": E1_LABEL, "wavenumber": wn.tolist(), "examples": items}


def write_e1(e1_dir: Path, summary: Any = None, examples: Any = None) -> Path:
    e1_dir.mkdir(parents=True, exist_ok=True)
    (e1_dir / "summary.json").write_text(json.dumps(summary or fake_summary()))
    (e1_dir / "examples.json").write_text(json.dumps(examples or fake_examples()))
    return e1_dir


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    """One full report build shared by the tests that only read its outputs (figures are slow)."""
    out = tmp_path_factory.mktemp("run")
    write_e1(out / "e1")
    return out, build_report(out)


def _row_index(table: str, name: str) -> int:
    lines = table.splitlines()
    return next(i for i, line in enumerate(lines) if line.startswith(f"| {name} "))


def test_build_report_writes_table_and_figures(built):
    out, results = built
    res = results["e1"]
    assert set(results) == {"e1"}
    assert res["table"] == str(out / "e1" / "table.md") and Path(res["table"]).is_file()
    figures = [Path(p) for p in res["figures"]]
    names = sorted(p.name for p in figures)
    assert names == [
        f"{s}.{e}" for s in ("metric_vs_cost", "reconstructions") for e in ("pdf", "png")
    ]
    for p in figures:
        head = p.read_bytes()[:8]
        assert head.startswith(b"%PDF") if p.suffix == ".pdf" else head == b"\x89PNG\r\n\x1a\n"
        assert p.stat().st_size > 1000


def test_table_lists_every_arm_sorted_and_labelled(built):
    out, _ = built
    table = (out / "e1" / "table.md").read_text()
    assert "SIMULATED" in table and "quick" in table and "tiny test" in table
    rows = {n: _row_index(table, n) for n in [*BACKBONE_MSE, *BASELINE_MSE]}
    by_mse = sorted(BACKBONE_MSE, key=BACKBONE_MSE.get)
    assert [rows[n] for n in by_mse] == sorted(rows[n] for n in by_mse)
    separator = _row_index(table, "**baselines**")
    assert max(rows[n] for n in BACKBONE_MSE) < separator < min(rows[n] for n in BASELINE_MSE)
    base_by_mse = sorted(BASELINE_MSE, key=BASELINE_MSE.get)
    assert [rows[n] for n in base_by_mse] == sorted(rows[n] for n in base_by_mse)
    assert "pca (n_components=16)" in table


def test_table_cells_nan_ci_gate_and_paired():
    table = format_e1_table(fake_summary())
    lines = table.splitlines()
    cells = {
        n: [c.strip() for c in lines[_row_index(table, n)][1:-1].split("|")] for n in BACKBONE_MSE
    }
    # Columns: arm, params, masked MSE, full MSE, cosine, peak F1, LR, samples/s, ...
    assert cells["cnn"][5] == "n/a" and cells["dlinoss"][5] != "n/a"
    assert cells["s4d"][7] == "n/a"
    assert cells["dlinoss"][2] == "0.01 ± 0.00082 [0.008, 0.012]"
    assert cells["dlinoss"][1] == "150,001" and cells["dlinoss"][10] == "2.4 G"
    assert "by spectrum kind" not in table  # no test_by_kind in the fake: section left out
    assert "**FAILED**" in table and "cnn 0.03 FAIL" in table and "dlinoss 0.01 pass" in table
    assert (
        "| dlinoss vs s4d | masked_mse | -0.01 | [-0.012, -0.008] | 0.001 | 0.002 | 50 |" in table
    )
    assert "**0.003: 0.01**" in table  # the chosen LR of the sweep


def test_mask_runs_are_half_open_contiguous_ranges():
    assert mask_runs(np.array([0, 1, 1, 0, 1])) == [(1, 3), (4, 5)]
    assert mask_runs(np.array([1, 1, 1])) == [(0, 3)]
    assert mask_runs(np.zeros(4)) == []


@pytest.mark.parametrize("missing", ["summary.json", "examples.json"])
def test_missing_file_raises_data_error(tmp_path, missing):
    e1 = write_e1(tmp_path / "e1")
    (e1 / missing).unlink()
    with pytest.raises(DataError, match=f"{missing}: file not found"):
        build_e1_report(e1)


def test_corrupt_json_raises_data_error(tmp_path):
    e1 = write_e1(tmp_path / "e1")
    (e1 / "summary.json").write_text('{"backbones": {')
    with pytest.raises(DataError, match="summary.json: not valid JSON"):
        build_e1_report(e1)


def test_inconsistent_content_raises_data_error(tmp_path):
    summary = fake_summary()
    del summary["data_label"]
    with pytest.raises(DataError, match="summary.json: missing key 'data_label'"):
        build_e1_report(write_e1(tmp_path / "a", summary=summary))
    examples = fake_examples()
    examples["examples"][1]["pred"]["pca"] = [0.0] * 3
    with pytest.raises(DataError, match=r"examples.json: example 1 pred\['pca'\] has length 3"):
        build_e1_report(write_e1(tmp_path / "b", examples=examples))


def test_build_report_without_results_raises(tmp_path):
    (tmp_path / "e1").mkdir()  # a folder without summary.json is not a result
    with pytest.raises(DataError, match="no experiment results under"):
        build_report(tmp_path)


def test_by_kind_section_and_ci_unit_follow_the_summary():
    summary = fake_summary()
    summary["ci_unit"] = "test molecules"
    summary["backbones"]["dlinoss"]["test_by_kind"] = {
        "ir": {"masked_mse": {"mean": 0.012, "std": 0.001}},
        "raman": {"masked_mse": {"mean": 0.008, "std": None}},
    }
    summary["baselines"]["pca"]["test_by_kind"] = {"ir": {"masked_mse": {"mean": 0.05}}}
    table = format_e1_table(summary)
    assert "over test molecules" in table
    assert "| arm | ir | raman |" in table
    assert "| dlinoss | 0.012 ± 0.001 | 0.008 |" in table
    assert "| pca | 0.05 | n/a |" in table
