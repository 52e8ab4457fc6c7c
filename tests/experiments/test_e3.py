"""E3 end to end on a small synthetic store: trained / init / shuffled-order groups of D-LinOSS
models, model-level statistics, the report, explicit checkpoints and errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spektron.cli import main
from spektron.config import preset_config
from spektron.errors import CheckpointError, ConfigError
from spektron.experiments.e1.run import run_e1
from spektron.experiments.e3.run import run_e3, wavenumber_permutation
from spektron.models.spektron import read_checkpoint
from tests.helpers import bands_store

COMMON = [
    "data.grid.n_points=256",
    "e1.jobs=1",
    "e3.jobs=1",
    'e1.backbones=["dlinoss"]',
    "e1.n_seeds=2",
    "e3.n_shuffled=2",
]


@pytest.fixture(scope="module")
def e3_run(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("SPEKTRON_CACHE", str(cache))
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    cfg = preset_config("smoke", COMMON)
    bands_store(cfg)
    run_e1(cfg, root / "e1", progress=False)
    cfg = preset_config("smoke", [*COMMON, f"e3.trained_from={json.dumps(str(root / 'e1'))}"])
    plans: list = []
    summary = run_e3(cfg, root / "e3", progress=False, announce=plans.append)
    yield cfg, root, summary, plans, cache
    mp.undo()


def test_e3_groups_statistics_and_honest_notes(e3_run):
    cfg, root, summary, plans, _ = e3_run
    assert summary["n_models"] == {"trained": 2, "init": 2, "shuffled": 2}
    assert "SIMULATED" in summary["data_label"]
    assert "not vibrational frequencies" in summary["frequency_note"]
    stats = summary["statistics"]
    assert {r["group"] for r in stats} == {"init", "shuffled"}
    assert all(r["reference"] == "trained" for r in stats)
    # 2 vs 2 models: 6 label assignments, so nothing can be significant, and it is said.
    assert all(not r["conclusive"] and not r["significant"] for r in stats)
    assert "cannot support conclusions" in summary["conclusions_note"]
    assert plans and plans[0]["experiment"] == "e3" and plans[0]["shuffled_controls_to_train"] == 2
    # Per oscillator, each model against its own step-0 weights; trained vs shuffled.
    ch = summary["own_init_changes"]
    assert set(ch["model_medians"]) == {"trained", "shuffled"}
    assert all(len(v) == 2 for v in ch["model_medians"]["trained"].values())
    assert {r["feature"] for r in ch["tests"]} == {"abs_dtheta", "abs_dr", "rel_dcoupling"}
    assert all(r["group"] == "trained" and r["reference"] == "shuffled" for r in ch["tests"])
    assert "own step-0 weights" in (root / "e3" / "table.md").read_text()
    for models in summary["groups"].values():
        for m in models:
            assert (root / "e3" / m["oscillators_csv"]).is_file()
            js = json.loads((root / "e3" / m["oscillators_csv"]).with_suffix(".json").read_text())
            assert js["layers"] and "theta" in js["layers"][0]["directions"]["forward"]
            assert set(m["medians"]) >= {"f_res", "zeta", "coupling_norm"}
            # 256-point grid, stride 8: Δν̃ = 8 · 3500 / 255.
            assert m["spacing_cm"] == pytest.approx(8 * 3500 / 255)


def test_shuffled_controls_are_marked_and_share_the_architecture(e3_run):
    _, root, summary, _, _ = e3_run
    trained = read_checkpoint(summary["groups"]["trained"][0]["checkpoint"])
    for m in summary["groups"]["shuffled"]:
        state = read_checkpoint(m["checkpoint"])
        assert state["config"] == trained["config"]
        assert state["extra"]["wavenumber_permutation_seed"] == 1
    perm = wavenumber_permutation(256, 1)
    assert sorted(perm.tolist()) == list(range(256)) and not np.array_equal(perm, np.arange(256))


def test_e3_report_and_rebuild(e3_run, capsys):
    _, root, _, _, _ = e3_run
    table = (root / "e3" / "table.md").read_text()
    assert "Group comparisons" in table and "min. attainable p" in table
    figs = {p.name for p in (root / "e3" / "figures").iterdir()}
    assert {
        "filter_bank_trained_0.png",
        "pole_zero_trained_0.png",
        "periods_vs_bands.png",
        "layer_summary.png",
    } <= figs
    assert main(["report", "--out", str(root / "e3")]) == 0
    assert "e3:" in capsys.readouterr().out


def test_e3_rerun_reuses_shuffled_runs(e3_run, monkeypatch):
    cfg, root, summary, _, cache = e3_run
    monkeypatch.setenv("SPEKTRON_CACHE", str(cache))
    ckpt = root / "e3" / "shuffled" / "seed1000" / "best.pt"
    before = ckpt.stat().st_mtime_ns
    plans: list = []
    again = run_e3(cfg, root / "e3", progress=False, announce=plans.append)
    assert ckpt.stat().st_mtime_ns == before
    assert again["groups"]["shuffled"][0]["medians"] == summary["groups"]["shuffled"][0]["medians"]
    assert (
        plans[0]["reuse"] == f"2 of 2 runs already finished in {root / 'e3'} (reused), 0 to train"
    )
    assert plans[0]["shuffled_controls_to_train"] == 0
    changed = preset_config(
        "smoke", [*COMMON, f"e3.trained_from={json.dumps(str(root / 'e1'))}", "e1.train.steps=4"]
    )
    with pytest.raises(
        ConfigError,
        match=r"seed1000 holds a run with other settings \(train\.steps: 3 there, 4 now\)",
    ):
        run_e3(changed, root / "e3", progress=False, announce=plans.append)
    assert len(plans) == 1 and ckpt.stat().st_mtime_ns == before


def test_e3_on_given_checkpoints_and_errors(e3_run, tmp_path, capsys, monkeypatch):
    cfg, root, summary, _, cache = e3_run
    monkeypatch.setenv("SPEKTRON_CACHE", str(cache))
    ckpt = summary["groups"]["trained"][0]["checkpoint"]
    args = ["-q", "e3", "--preset", "smoke", "--out", str(tmp_path / "e3"), "--checkpoint", ckpt]
    for s in COMMON:
        args += ["--set", s]
    assert main(args) == 0
    out = json.loads((tmp_path / "e3" / "summary.json").read_text())
    assert out["n_models"] == {"trained": 1, "init": 1} and out["statistics"] == []
    assert "no statistics" in out["conclusions_note"]
    with pytest.raises(ConfigError, match="trained_from"):
        run_e3(preset_config("smoke", COMMON), tmp_path / "none", progress=False)
    e1_cnn = tmp_path / "cnn.pt"
    from spektron.models.spektron import Spektron, SpektronConfig

    Spektron(SpektronConfig(d_model=16, backbone="cnn")).save_checkpoint(e1_cnn)
    with pytest.raises(CheckpointError, match="D-LinOSS"):
        run_e3(cfg, tmp_path / "bad", progress=False, checkpoints=[e1_cnn])
    missing = ["-q", "e3", "--preset", "smoke", "--out", str(tmp_path / "m")]
    assert main([*missing, "--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
