"""Figures a reader looks at: every mark in a legend, labelled axes, titles that fit, no
point labels to overlap; and tables that show no spread where there is none."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from spektron.data.store import StoreWriter, open_store
from spektron.experiments import data_overview
from spektron.experiments.e1 import report as report_e1
from spektron.experiments.e2 import report as report_e2
from spektron.experiments.e4.report import _learning_curve_lines, _mean_sd_n
from tests.helpers import BACKBONE_MSE, BASELINE_MSE, fake_record, fake_summary


@pytest.fixture
def captured(monkeypatch) -> list[Any]:
    """The figures the report functions save (kept open for inspection instead of written)."""
    figs: list[Any] = []

    def keep(fig: Any, path_stem: Path, dpi: int = 0) -> list[Path]:
        fig.canvas.draw()
        figs.append(fig)
        return [Path(path_stem).with_suffix(".png")]

    for mod in (report_e1, report_e2, data_overview):
        monkeypatch.setattr(mod, "save_figure", keep)
    yield figs
    import matplotlib.pyplot as plt

    for f in figs:
        plt.close(f)


def _legend_labels(fig: Any) -> list[str]:
    return [t.get_text() for lg in fig.legends for t in lg.get_texts()]


def _title_fits(fig: Any) -> None:
    renderer = fig.canvas.get_renderer()
    box = fig._suptitle.get_window_extent(renderer)
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width  # wrapped, not running off the edges


@pytest.mark.parametrize("n_seeds", [3, 1])
def test_metric_vs_cost_has_a_legend_for_every_mark_and_an_honest_y_label(captured, n_seeds):
    summary = fake_summary()
    summary["data_label"] = "SIMULATED " + "a very long data label " * 12
    for b in summary["backbones"].values():
        for m in b["test"].values():
            m["n"] = n_seeds
            if n_seeds == 1:
                m["std"] = 0.0
    report_e1.plot_metric_vs_cost(summary, Path("x"))
    (fig,) = captured
    labels = _legend_labels(fig)
    assert labels == [*BACKBONE_MSE, *(f"{n} (baseline)" for n in BASELINE_MSE)]
    for ax in fig.axes:
        assert not [t.get_text() for t in ax.texts if t.get_text() in BACKBONE_MSE]  # no labels
        assert ax.get_xlabel()
    want = "mean ± std over 3 seeds" if n_seeds == 3 else "1 seed: no error bar"
    assert fig.axes[0].get_ylabel() == f"test masked MSE ({want})"
    _title_fits(fig)


def test_cross_spectral_examples_explain_every_mark(captured, tmp_path):
    wn = np.linspace(500.0, 4000.0, 200)

    def band(c: float) -> list[float]:
        return np.exp(-0.5 * ((wn - c) / 15) ** 2).tolist()

    ex = {
        "which": "best",
        "smiles": "CCO",
        "point_group": "Cs",
        "input": band(1000),
        "truth": band(3000),
        "pred": {"ir_to_raman/scratch/cnn": band(3005), "baseline:mean": band(2900)},
    }
    examples = {
        "wavenumber": wn.tolist(),
        "directions": {
            "ir_to_raman": {
                "source": "ir",
                "target": "raman",
                "arm": "ir_to_raman/scratch/cnn",
                "examples": [ex, {**ex, "which": "worst"}],
            }
        },
    }
    summary = {"primary_metric": "full/cosine", "data_label": "SIMULATED spectra " * 10}
    report_e2.plot_examples(examples, summary, tmp_path)
    (fig,) = captured
    labels = _legend_labels(fig)
    for want in (
        "input (IR), shifted up by 1.1",
        "true RAMAN",
        "model ir_to_raman/scratch/cnn",
        "baseline:mean",
        "matched peak pair (within 10 cm⁻¹)",
        "true peaks",
        "model's peaks",
    ):
        assert want in labels
    assert all(ax.get_legend() is None for ax in fig.axes)  # no legend over a peak
    assert all(ax.get_ylabel() == "max-normalised intensity" for ax in fig.axes)
    _title_fits(fig)


def test_ir_raman_pairs_figure_has_a_y_label_and_a_legend_outside_the_panels(
    captured, tmp_path, small_grid
):
    rng = np.random.default_rng(0)
    with StoreWriter(tmp_path / "s.h5", small_grid, fg_names=["a", "b"]) as w:
        w.extend([fake_record(i, small_grid, rng) for i in range(6)])
    with open_store(tmp_path / "s.h5") as st:
        rows = [i for i in range(st.n) if st.record(i).raman is not None][:2]
        data_overview.plot_pairs(st, rows, tmp_path / "p", "SIMULATED " + "label " * 40)
    (fig,) = captured
    assert "max-normalised intensity" in fig._supylabel.get_text()
    assert _legend_labels(fig) == ["IR", "Raman (activity)"]
    assert all(ax.get_legend() is None for ax in fig.axes)
    _title_fits(fig)


def test_e4_tables_show_no_spread_where_there_is_none():
    assert _mean_sd_n({"rmsep_mean": 0.1, "rmsep_sd": 0.0, "n_seeds": 1}) == "0.1 (1)"
    assert _mean_sd_n({"rmsep_mean": 0.1, "rmsep_sd": 0.01, "n_seeds": 3}) == "0.1 ± 0.01 (3)"
    curve = {
        "n_standards": [5, 30],
        "methods": ["pds"],
        "seeds": [0, 1, 2],
        "kennard_stone": {"pds": {"rmsep": [0.2, 0.1]}},
        "random": {"pds": {"mean": [0.25, 0.1], "sd": [0.02, 1.7e-17]}},
    }
    row = next(ln for ln in _learning_curve_lines(curve_in(curve)) if ln.startswith("| pds"))
    assert "0.25 ± 0.02" in row and "0.1 (all subsets equal)" in row and "± 0 " not in row
    one = copy.deepcopy(curve)
    one["seeds"] = [0]
    row = next(ln for ln in _learning_curve_lines(curve_in(one)) if ln.startswith("| pds"))
    assert "±" not in row


def curve_in(curve: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps({"learning_curve": curve}))
