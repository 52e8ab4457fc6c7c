"""E4 deep part and orchestration: NIR inputs, the regression task, probe and fine-tuned arms,
``spektron e4`` on the real corn data at a tiny scale."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from spektron.config import GridConfig, preset_config, to_dict
from spektron.errors import ConfigError, DataError
from spektron.experiments.e4.deep import (
    VARIANTS,
    NIRInputs,
    aggregate_arms,
    finetune_hash,
    load_pair,
    master_dir,
    master_hash,
    run_finetune,
    run_hash,
    run_master,
    run_probe,
    transfer_inputs,
)
from spektron.experiments.e4.run import _model_config, run_e4
from spektron.experiments.runner import size_arms
from spektron.training.tasks import ScalarRegression
from tests.helpers import run_cli

PAIR = "corn:m5:mp5"


@pytest.fixture(scope="module")
def corn():
    return load_pair(PAIR)


def _cfg(*overrides: str):
    return preset_config(
        "smoke",
        [
            'e4.inits=["scratch"]',
            'e4.backbones=["cnn"]',
            'e4.finetune_backbones=["cnn"]',
            *overrides,
        ],
    )


def _spec(cfg, head: str, tmp_path, mode: str = "wavenumber", seed: int = 0) -> dict:
    arms = size_arms(replace(cfg.e1, backbones=("cnn",)))
    spec = {
        "config": to_dict(cfg),
        "device": "cpu",
        "threads": 1,
        "pair": PAIR,
        "head": head,
        "backbone": "cnn",
        "init": "scratch",
        "input_mode": mode,
        "seed": seed,
        "model": _model_config(cfg, "cnn", arms["cnn"]["backbone_config"]),
        "transfers": {"ds": {"n_components": 5}, "pds": {"half_width": 2, "n_components": 1}},
        "run_dir": str(tmp_path / head / mode / f"seed{seed}"),
    }
    if head == "finetune":
        spec["hashed"] = finetune_hash(spec)
        spec["run_hash"] = run_hash(spec["hashed"])
    return spec


def test_inputs_modes_and_normalisations(corn):
    grid = GridConfig(n_points=512)
    wn = corn.wavenumber_cm
    w = NIRInputs(wn, "wavenumber", "center", grid).fit(corn.master.X_cal)
    x = w.transform(corn.master.X_cal)  # (30, 700)
    assert x.shape == (30, 700) and x.dtype == np.float32
    assert np.all(np.diff(w.grid) > 0) and w.grid[0] == pytest.approx(wn.min())
    # centred on the master calibration mean: its inputs average to zero, unit global scale
    assert np.abs(x.mean(axis=0)).max() < 1e-5 and x.std() == pytest.approx(1.0, rel=1e-4)
    # ascending order: the first input channel is the longest wavelength (lowest wavenumber)
    raw = corn.master.X_cal[:, np.argmin(wn)]
    assert np.allclose(x[:, 0] * w.scale_ + w.mean_[0], raw, atol=1e-5)
    i = NIRInputs(wn, "index", "minmax", grid).fit(corn.master.X_cal)
    xi = i.transform(corn.slave.X_test)
    assert xi.shape == (20, 512) and len(i.grid) == 512
    assert i.grid[0] == pytest.approx(500.0) and i.grid[-1] == pytest.approx(4000.0)
    assert np.allclose(xi.min(axis=1), 0) and np.allclose(xi.max(axis=1), 1)
    s = NIRInputs(wn, "index", "snv", grid).fit(corn.master.X_cal).transform(corn.slave.X_test)
    assert np.allclose(s.mean(axis=1), 0, atol=1e-5) and np.allclose(s.std(axis=1), 1, atol=1e-4)
    with pytest.raises(DataError, match="before fit"):
        NIRInputs(wn, "wavenumber", "center", grid).transform(corn.master.X_cal)
    with pytest.raises(DataError, match="do not vary"):
        NIRInputs(wn, "wavenumber", "center", grid).fit(np.ones((5, len(wn))))
    bad = corn.master.X_cal.copy()
    bad[0, 3] = np.nan
    with pytest.raises(DataError, match="non-finite"):
        w.transform(bad)


def test_transfer_inputs_refit_the_classical_transforms(corn):
    X = transfer_inputs(corn, {"ds": {"n_components": 5}})
    assert set(X) == {"master", "direct", "standards", "cal", "trans_slave", "ds"}
    assert X["ds"].shape == corn.slave.X_test.shape
    # DS moves the slave test spectra towards the master's
    err_raw = np.abs(corn.slave.X_test - corn.master.X_test).mean()
    assert np.abs(X["ds"] - corn.master.X_test).mean() < 0.5 * err_raw


def test_scalar_regression_task_sums_squared_errors():
    task = ScalarRegression(np.linspace(500, 4000, 8))

    class Const(torch.nn.Module):
        def forward(self, x, wn, mask):
            return {"pred": torch.full((len(x), 1), 2.0)}

    items = {"x": torch.zeros(3, 8), "y": torch.tensor([[1.0], [2.0], [4.0]])}
    batch = task.prepare(items, task.sample_seeds(items, True, 0, 0, np.arange(3)), True)
    assert task.sums(Const(), batch).item() == pytest.approx(1.0 + 0.0 + 4.0)
    assert task.counts(batch).item() == 3


def test_probe_and_finetune_arms(corn, tmp_path):
    cfg = _cfg()
    probe = run_probe(_spec(cfg, "probe", tmp_path, mode="index"))
    assert set(probe["variants"]) == set(VARIANTS)
    for v in probe["variants"].values():
        assert len(v["y_pred"]) == 20 and np.isfinite(v["rmsep"])
        assert v["rmsep"] == pytest.approx(
            np.sqrt(np.mean((np.array(v["y_pred"]) - corn.y_test) ** 2))
        )
    assert probe["hyperparameters"]["alpha"] in cfg.e4.probe_alphas
    # frozen seeded backbone: the probe is deterministic
    again = run_probe(_spec(cfg, "probe", tmp_path, mode="index"))
    assert again["variants"]["direct"]["y_pred"] == probe["variants"]["direct"]["y_pred"]

    spec = _spec(cfg, "finetune", tmp_path)
    ft = run_finetune(spec)
    run_dir = tmp_path / "finetune" / "wavenumber" / "seed0"
    assert (run_dir / "metrics.json").is_file() and (run_dir / "master" / "final.pt").is_file()
    assert (run_dir / "standards" / "final.pt").is_file()
    assert ft["train"]["steps"] == cfg.e4.train.steps
    assert ft["standards_train"]["steps"] == cfg.e4.standards_train.steps
    # the standards update changes the prediction; the other variants share one model
    assert ft["variants"]["standards"]["y_pred"] != ft["variants"]["direct"]["y_pred"]
    # a finished run is reused as it is; a changed recipe is refused in the same folder
    assert (
        run_finetune(spec)["variants"]
        == json.loads((run_dir / "metrics.json").read_text())["variants"]
    )
    changed = _spec(_cfg("e4.train.lr=0.01"), "finetune", tmp_path)
    with pytest.raises(ConfigError):
        run_finetune(changed)

    arms = aggregate_arms([probe, {**again, "seed": 1}, ft])
    assert len(arms) == 2
    p = next(a for a in arms if a["head"] == "probe")
    assert p["variants"]["direct"]["n_seeds"] == 2 and p["variants"]["direct"]["rmsep_sd"] == 0


def test_run_e4_cli_on_corn(tmp_path, capsys):
    out = tmp_path / "e4"
    code, stdout, _ = run_cli(
        capsys,
        "-q",
        "e4",
        "--preset",
        "smoke",
        "--out",
        str(out),
        "--set",
        'e4.inits=["scratch"]',
        "--set",
        'e4.backbones=["cnn"]',
        "--set",
        'e4.finetune_backbones=["cnn"]',
        "--set",
        "e4.jobs=1",
    )
    assert code == 0, stdout
    assert "corn_m5_mp5" in stdout and "no_transfer" in stdout and "probe" in stdout
    s = json.loads((out / "summary.json").read_text())
    pair = s["pairs"]["corn_m5_mp5"]
    assert "REAL NIR" in s["data_label"] and "SIMULATED" in s["data_label"]
    assert pair["classical"]["methods"]["no_transfer"]["metrics"]["rmsep"]["value"] > 0.2
    assert {(a["head"], a["input_mode"]) for a in pair["deep"]["arms"]} == {
        ("probe", "wavenumber"),
        ("probe", "index"),
        ("finetune", "wavenumber"),
    }
    assert (out / "table.md").is_file() and (out / "figures" / "corn_m5_mp5_rmsep.png").is_file()
    # the fine-tuned arm's master stage trained in the shared folder, its standards stage here
    assert (out / "masters" / "corn_m5" / "cnn" / "scratch" / "wavenumber" / "seed0").is_dir()
    # every arm leaves its results JSON in its own folder
    probe_json = (
        out / "corn_m5_mp5" / "probe" / "cnn" / "scratch" / "index" / "seed0" / "metrics.json"
    )
    assert json.loads(probe_json.read_text())["variants"]["direct"]["rmsep"] > 0
    # the classical result is reused by a second run with the same settings
    first = (out / "corn_m5_mp5" / "classical.json").stat().st_mtime_ns
    cfg = preset_config("smoke", ["e4.backbones=[]", "e4.finetune_backbones=[]", "e4.jobs=1"])
    plans: list = []
    again = run_e4(cfg, out, progress=False, announce=plans.append)
    assert again["pairs"]["corn_m5_mp5"]["deep"] is None
    assert (out / "corn_m5_mp5" / "classical.json").stat().st_mtime_ns == first
    assert plans[0]["reuse"].startswith("classical results of 1 of 1 pairs and 0 of 0 runs")
    # other classical settings in the same folder: refused before any work, nothing rewritten
    changed = preset_config(
        "smoke", ["e4.backbones=[]", "e4.finetune_backbones=[]", "e4.max_components=4"]
    )
    with pytest.raises(
        ConfigError,
        match=r"classical\.json holds classical results of other settings "
        r"\(max_components: 5 there, 4 now\)",
    ):
        run_e4(changed, out, progress=False, announce=plans.append)
    assert len(plans) == 1
    assert (out / "corn_m5_mp5" / "classical.json").stat().st_mtime_ns == first


def test_bad_e4_settings_are_refused(tmp_path, capsys):
    with pytest.raises(ConfigError, match="dataset:master:slave"):
        preset_config("smoke", ['e4.pairs=["corn:m5"]'])
    with pytest.raises(ConfigError, match="normalization"):
        preset_config("smoke", ["e4.normalization=zscore"])
    # pretrained arms without checkpoints: a clear error and exit 2, nothing written
    code, _, err = run_cli(capsys, "-q", "e4", "--preset", "smoke", "--out", str(tmp_path / "x"))
    assert code == 2 and "pretrained_from" in err
    assert not (tmp_path / "x" / "summary.json").exists()
    # an instrument the dataset does not have
    code, _, err = run_cli(
        capsys,
        "-q",
        "e4",
        "--preset",
        "smoke",
        "--out",
        str(tmp_path / "y"),
        "--set",
        'e4.pairs=["corn:m5:zz9"]',
        "--set",
        'e4.inits=["scratch"]',
    )
    assert code == 2 and "zz9" in err


def test_pairs_with_one_master_share_its_fine_tuning_stage(tmp_path):
    # corn m5 → mp5 and m5 → mp6: one master calibration set, so the master stage of a
    # fine-tuned arm is trained once for both; it equals a stand-alone arm's own master stage.
    cfg = _cfg()
    shared = tmp_path / "masters" / "corn_m5"
    specs = {}
    for pair in ("corn:m5:mp5", "corn:m5:mp6"):
        spec = {**_spec(cfg, "finetune", tmp_path / pair.replace(":", "_")), "pair": pair}
        spec["hashed"] = finetune_hash(spec)
        spec["run_hash"] = run_hash(spec["hashed"])
        spec["master_hashed"] = master_hash(spec)
        spec["master_dir"] = str(master_dir(tmp_path, spec))
        specs[pair] = spec
    assert specs["corn:m5:mp5"]["master_hashed"] == specs["corn:m5:mp6"]["master_hashed"]
    assert specs["corn:m5:mp5"]["master_dir"] == str(
        shared / "cnn" / "scratch" / "wavenumber" / "seed0"
    )
    run_master(specs["corn:m5:mp5"])
    final = shared / "cnn" / "scratch" / "wavenumber" / "seed0" / "final.pt"
    stamp = final.stat().st_mtime_ns
    res = {pair: run_finetune(spec) for pair, spec in specs.items()}
    assert final.stat().st_mtime_ns == stamp  # reused, not retrained
    a, b = res["corn:m5:mp5"], res["corn:m5:mp6"]
    assert a["train"] == b["train"]
    assert a["variants"]["master"] == b["variants"]["master"]
    assert a["variants"]["direct"] != b["variants"]["direct"]  # other slave instruments
    alone = run_finetune(_spec(cfg, "finetune", tmp_path / "alone"))
    for v in ("master", "direct", "standards"):
        assert alone["variants"][v]["y_pred"] == pytest.approx(a["variants"][v]["y_pred"], 1e-5)
