"""E4 classical transfer on the real corn data, with reduced settings (a few seconds)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from spektron.errors import ConfigError
from spektron.experiments.e4.classical import (
    METHODS,
    TRANSFER_METHODS,
    ClassicalTransferConfig,
    TrainingData,
    fit_classical_methods,
    run_classical_transfer,
)

# Small grids; max_components 12 so the master model can reach docs/DESIGN.md §2.4's 11 components.
FAST = ClassicalTransferConfig(
    max_components=12,
    pds_half_widths=(1, 3),
    pds_components=(1, 2),
    pds_local_models=("pls",),
    cca_max_components=4,
    dipls_lambda_factors=(0.0, 100.0),
    sg_windows=(11,),
    n_boot=200,
)


@pytest.fixture(scope="module")
def corn():
    from spektron.data.nir import load_corn

    return load_corn("m5", "mp5")


@pytest.fixture(scope="module")
def result(corn):
    return run_classical_transfer(corn, "oil", n_standards=(5, 30), seeds=(0,), config=FAST)


def _hyper(fitted):
    return {name: (m.pls_components, m.hyperparameters) for name, m in fitted.items()}


def test_every_method_reports_rmsep_with_ci_and_components(result):
    assert set(result["methods"]) == set(METHODS)
    for name, r in result["methods"].items():
        rmsep = r["metrics"]["rmsep"]
        assert rmsep["lo"] <= rmsep["value"] <= rmsep["hi"], name
        assert isinstance(r["pls_components"], int) and r["pls_components"] >= 1
        curve = r["rmsep_vs_components"]
        assert len(curve["rmsep"]) == len(curve["components"]) >= r["pls_components"]
        assert len(r["y_pred"]) == 20
    json.dumps(result)  # JSON-ready


def test_matches_design_reference_and_transfer_helps(result):
    # docs/DESIGN.md §2.4: 11 components by leave-one-out; no transfer 0.276, master on master
    # 0.060.
    assert result["master_model"]["n_components"] == 11
    methods = result["methods"]
    assert methods["no_transfer"]["metrics"]["rmsep"]["value"] == pytest.approx(0.276, abs=1e-3)
    assert methods["master_on_master"]["metrics"]["rmsep"]["value"] == pytest.approx(
        0.060, abs=1e-3
    )
    assert methods["master_on_master"]["test_input"] == "master"
    for name in ("ds", "pds", "sbc_y", "model_update"):
        assert methods[name]["metrics"]["rmsep"]["value"] < 0.15, name
    comp = result["comparisons"]["no_transfer"]["ds"]
    assert comp["rmsep_diff"] < 0 and comp["p_randomisation"] < 0.05


def test_learning_curve_reuses_the_full_pool_and_refits_subsets(result):
    curve = result["learning_curve"]
    assert curve["n_standards"] == [5, 30] and curve["methods"] == list(TRANSFER_METHODS)
    for name in TRANSFER_METHODS:
        ks = curve["kennard_stone"][name]["rmsep"]
        assert ks[1] == pytest.approx(result["methods"][name]["metrics"]["rmsep"]["value"])
        assert len(curve["random"][name]["rmsep"][0]) == 1  # one seed
    assert len(curve["subsets"]["kennard_stone"][0]) == 5


def test_test_data_never_reach_the_fits(corn, result):
    # Same fits from a dataset whose test spectra and values are all NaN.
    nan = dataclasses.replace(
        corn,
        master=dataclasses.replace(corn.master, X_test=np.full_like(corn.master.X_test, np.nan)),
        slave=dataclasses.replace(corn.slave, X_test=np.full_like(corn.slave.X_test, np.nan)),
        y_test=np.full_like(corn.y_test, np.nan),
    )
    assert {f.name for f in dataclasses.fields(TrainingData)}.isdisjoint({"X_test", "y_test"})
    pool = np.arange(len(corn.y_trans))
    clean = fit_classical_methods(TrainingData.from_dataset(corn, pool), FAST)
    blind = fit_classical_methods(TrainingData.from_dataset(nan, pool), FAST)
    assert _hyper(blind) == _hyper(clean)
    for name in METHODS:
        assert result["methods"][name]["pls_components"] == clean[name].pls_components


def test_bad_requests_are_refused(corn):
    with pytest.raises(ConfigError, match="oil"):
        run_classical_transfer(corn, "protein", n_standards=(), config=FAST)
    with pytest.raises(ConfigError, match="n_standards"):
        run_classical_transfer(corn, "oil", n_standards=(31,), config=FAST)
    with pytest.raises(ConfigError):
        ClassicalTransferConfig(compare_to=("nonsense",))


def test_settings_on_grid_edges_are_flagged():
    from spektron.experiments.e4.classical import (
        ClassicalTransferConfig,
        FittedMethod,
        settings_at_grid_edge,
    )

    cfg = ClassicalTransferConfig()

    def fitted(selection, hyper=None):
        return FittedMethod(
            lambda X: X, lambda X: X, 3, selection=selection, hyperparameters=hyper or {}
        )

    cands = [{"half_width": h, "n_components": k} for h in (1, 2, 3) for k in (1, 2)]
    pds = fitted(
        {"transfer_cv": {"best": {"half_width": 2, "n_components": 2}, "candidates": cands}}
    )
    assert settings_at_grid_edge(pds, cfg) == ["n_components=2 (grid max)"]
    low = fitted(
        {"transfer_cv": {"best": {"half_width": 1, "n_components": 1}, "candidates": cands}}
    )
    assert settings_at_grid_edge(low, cfg) == [
        "half_width=1 (grid min)",
        "n_components=1 (grid min)",
    ]
    dipls = fitted(
        {
            "lambda_factor": 10.0,
            "factors": [0.0, 1.0, 10.0, 100.0],
            "n_components": 4,
            "components": [1, 2, 3, 4, 5],
        }
    )
    assert settings_at_grid_edge(dipls, cfg) == []
    sg = fitted({}, {"window_length": cfg.sg_windows[-1], "polyorder": 2})
    assert settings_at_grid_edge(sg, cfg) == [f"window_length={cfg.sg_windows[-1]} (grid max)"]
