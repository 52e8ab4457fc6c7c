"""The data stage of run-all: summary, figure and the validation against the DFT reference."""

from __future__ import annotations

import json

from spektron.config import preset_config
from spektron.data import validate as val
from spektron.experiments.data_overview import _figure_title, run_data_overview
from tests.helpers import qm9_inputs


def test_data_stage_writes_summary_figure_and_validation(tmp_path, monkeypatch):
    monkeypatch.setattr(val, "load_qm9_inputs", qm9_inputs)
    cfg = preset_config(
        "smoke",
        [
            "data.source=smiles",
            "data.smiles=CCO,C#C,CC(=O)O,c1ccccc1,CN",
            "data.physics.level=mmff",
            "data.qm9_lookup=false",  # no QM9 parse in a unit test
            "validate_only=[3]",
        ],
        workers=1,
    )
    summary = run_data_overview(cfg, tmp_path / "data", progress=False)
    assert summary["n_records"] == 5
    assert (
        summary["label"].startswith("SIMULATED") and "user-supplied molecules" in summary["label"]
    )
    assert (tmp_path / "data" / "figures" / "ir_raman_pairs.png").stat().st_size > 0
    v = summary["validation"]
    assert v["dataset_level"] == "mmff" and v["n_reference_molecules"] == 1
    assert set(v["means"]) == {"mmff", "mmff-hybrid"}
    assert 0 <= v["means"]["mmff"]["ir_intensity_overlap"] <= 1
    rep = json.loads((tmp_path / "data" / "validation.json").read_text())
    assert rep["levels"]["mmff-hybrid"]["n_ok"] == 1
    assert (tmp_path / "data" / "validation.md").read_text().startswith("Validation against")
    assert (tmp_path / "data" / "figures" / "validation.png").stat().st_size > 0
    on_disk = json.loads((tmp_path / "data" / "data_summary.json").read_text())
    assert on_disk["validation"]["means"] == v["means"]


def test_figure_title_names_the_level_physics():
    from spektron.data.generate import LEVEL_LABELS

    title = _figure_title(LEVEL_LABELS["xtb"])
    assert title.startswith("SIMULATED IR / Raman pairs (GFN2-xTB normal modes")
    assert "\nof real QM9 molecules" in title
