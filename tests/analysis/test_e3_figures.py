"""E3 figures: each writes its PNG and PDF from tiny random models; the band table is sane."""

from __future__ import annotations

import json

import pytest

from spektron.analysis.e3_figures import (
    BAND_REFERENCE,
    SIMULATED_FWHM,
    plot_filter_banks,
    plot_layer_summary,
    plot_periods_vs_bands,
    plot_pole_zero,
)
from spektron.analysis.transfer_function import (
    analyse_model,
    from_json,
    sample_spacing_cm,
    to_json,
)
from tests.analysis.test_transfer_function import tiny_model


@pytest.fixture(scope="module")
def analyses():
    spacing = sample_spacing_cm(None, 4)
    return [analyse_model(tiny_model(seed), spacing, n_freq=32) for seed in range(3)]


def written(paths, stem) -> bool:
    return sorted(p.name for p in paths) == [f"{stem}.pdf", f"{stem}.png"] and all(
        p.stat().st_size > 0 for p in paths
    )


def test_every_figure_writes_png_and_pdf(analyses, tmp_path):
    trained, init = analyses[0], analyses[1]
    groups = {"trained": analyses[:2], "init": analyses[2:], "shuffled": analyses[1:]}
    out = tmp_path / "figures"
    assert written(
        plot_filter_banks(trained, out / "filter_banks", label="SIMULATED"), "filter_banks"
    )
    assert written(plot_pole_zero(trained, init, out / "pole_zero"), "pole_zero")
    assert written(plot_pole_zero(trained, None, out / "poles_only"), "poles_only")
    assert written(plot_periods_vs_bands(groups, out / "periods"), "periods")
    assert written(plot_periods_vs_bands(analyses, out / "periods_list"), "periods_list")
    assert written(plot_layer_summary(groups, out / "layers"), "layers")


def test_figures_rebuild_from_json_alone(analyses, tmp_path):
    # docs/DESIGN.md §4: figures are built from the JSON files (responses from the coefficients).
    loaded = [from_json(json.loads(json.dumps(to_json(an)))) for an in analyses]
    assert written(plot_filter_banks(loaded[0], tmp_path / "fb"), "fb")
    assert written(plot_pole_zero(loaded[0], loaded[1], tmp_path / "pz"), "pz")


def test_band_reference_is_consistent():
    assert SIMULATED_FWHM == {"IR": 15.0, "Raman": 10.0}  # docs/DESIGN.md §2.1
    for band in BAND_REFERENCE:
        lo, hi = band["region"]
        assert 400 <= lo < hi <= 4000
        assert 0 < band["fwhm"][0] < band["fwhm"][1]
        assert band["spacing"] is None or 0 < band["spacing"][0] < band["spacing"][1]
