"""E2 end to end on a small synthetic store: every arm and baseline scored on the same test
molecules, pretrained arms starting from E1 weights, centrosymmetric molecules held out, the
checkpoint contract of `spektron predict`, the report, reuse of finished runs, errors."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import torch

from spektron.chemistry.spectra import make_grid
from spektron.cli import main
from spektron.config import preset_config
from spektron.data.store import open_store
from spektron.errors import CheckpointError, ConfigError, DataError
from spektron.evaluation.cross_spectral import PRIMARY_METRIC
from spektron.experiments.e1.run import run_e1
from spektron.experiments.e2.results import read_per_molecule
from spektron.experiments.e2.run import run_e2
from spektron.experiments.runner import load_pretrained, lr_edge
from spektron.models.spektron import Spektron, SpektronConfig, read_checkpoint
from spektron.training.tasks import CrossSpectralPrediction
from tests.helpers import bands_store

N_POINTS = 256
BACKBONES = '["cnn", "dlinoss"]'
COMMON = [
    f"data.grid.n_points={N_POINTS}",
    "e1.jobs=1",
    "e2.jobs=1",
    f"e1.backbones={BACKBONES}",
    f"e2.backbones={BACKBONES}",
    "e2.external_centrosymmetric=false",
]


@pytest.fixture(scope="module")
def e2_run(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("SPEKTRON_CACHE", str(cache))
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    cfg1 = preset_config("smoke", COMMON)
    store = bands_store(cfg1)
    run_e1(cfg1, root / "e1", progress=False)
    cfg = preset_config("smoke", [*COMMON, f"e2.pretrained_from={json.dumps(str(root / 'e1'))}"])
    plans: list = []
    summary = run_e2(cfg, root / "e2", progress=False, announce=plans.append)
    yield cfg, root, summary, plans, store, cache
    mp.undo()


def test_e2_summary_covers_every_arm_and_baseline(e2_run):
    cfg, root, summary, plans, _, _ = e2_run
    assert "SIMULATED" in summary["data_label"]
    assert summary["primary_metric"] == PRIMARY_METRIC
    assert len(summary["models"]) == 2 * 2 * 2  # directions × inits × backbones
    for m in summary["models"].values():
        assert np.isfinite(m["test"][PRIMARY_METRIC]["mean"])
        assert set(m["skill"]) == {"identity", "mean", "nearest_neighbour", "pls"}
        assert isinstance(m["beats_retrieval"], bool) and isinstance(m["beats_pls"], bool)
        assert "leak" in m["symmetric"]["all"]
    for dname in ("ir_to_raman", "raman_to_ir"):
        assert set(summary["baselines"][dname]) == {"identity", "mean", "pls", "nearest_neighbour"}
        pls_params = summary["baselines"][dname]["pls"]["params"]
        assert pls_params["n_components"] in (2, 4)
        assert pls_params["at_grid_max"] == (pls_params["n_components"] == 4)
        assert summary["error_analysis"][dname]["arm"].startswith(dname)
    assert all(0 < r["p_holm"] <= 1 and r["p_holm"] >= r["p_value"] for r in summary["paired"])
    assert plans and plans[0]["experiment"] == "e2" and plans[0]["n_training_runs"] == 8


def test_e2_holds_centrosymmetric_molecules_out(e2_run):
    _, root, summary, _, store, _ = e2_run
    with open_store(store) as st:
        centro = set(np.flatnonzero(st.column("centrosymmetric") == 1).tolist())
    run = root / "e2" / next(iter(summary["models"].values()))["runs"][0]
    spec = json.loads((run / "run_spec.json").read_text())["spec"]
    # Rows are not in the public spec; the per-molecule files name them.
    test_rows, _ = read_per_molecule(run / "per_molecule.csv")
    sym_rows, sym = read_per_molecule(run / "symmetric_per_molecule.csv")
    assert centro and set(sym_rows.tolist()) == centro
    assert not centro & set(test_rows.tolist())
    assert spec["direction"] in ("ir_to_raman", "raman_to_ir")
    assert {"leak", "leak_truth", "leak_copy"} <= set(sym)


def test_identity_baseline_scores_the_input_itself(e2_run):
    _, root, summary, _, store, _ = e2_run
    rows, per = read_per_molecule(root / "e2/baselines/ir_to_raman/identity_per_molecule.csv")
    with open_store(store) as st:
        ir = st.spectra("ir", rows)
        ra = st.spectra("raman", rows)
    cos = (ir * ra).sum(1) / np.linalg.norm(ir, axis=1) / np.linalg.norm(ra, axis=1)
    np.testing.assert_allclose(per[PRIMARY_METRIC], cos, rtol=1e-5)


def test_pretrained_arms_start_from_the_e1_weights(e2_run):
    _, root, summary, _, _, _ = e2_run
    m = summary["models"]["ir_to_raman/pretrained/cnn"]
    run = root / "e2" / m["runs"][0]
    init = read_checkpoint(run / "init.pt")["state_dict"]
    e1_ckpt = read_checkpoint(
        root
        / "e1"
        / json.loads((root / "e1/summary.json").read_text())["backbones"]["cnn"]["runs"][0]
        / "best.pt"
    )["state_dict"]
    shared = [k for k in e1_ckpt if k.startswith(("embedding.", "backbone."))]
    assert shared and all(torch.equal(init[k], e1_ckpt[k]) for k in shared)
    scratch = read_checkpoint(
        root / "e2" / summary["models"]["ir_to_raman/scratch/cnn"]["runs"][0] / "init.pt"
    )["state_dict"]
    assert not all(torch.equal(scratch[k], e1_ckpt[k]) for k in shared)


def test_best_checkpoint_carries_the_predict_contract(e2_run):
    cfg, root, summary, _, _, _ = e2_run
    run = root / "e2" / summary["models"]["raman_to_ir/scratch/dlinoss"]["runs"][0]
    extra = read_checkpoint(run / "best.pt")["extra"]
    assert extra["task"] == "cross_spectral"
    assert (extra["source_kind"], extra["target_kind"]) == ("raman", "ir")
    assert extra["grid"]["n_points"] == N_POINTS and extra["normalization"] == "max"
    assert "SIMULATED" in extra["data_label"]
    assert extra["preset"] == cfg.preset and extra["train_steps"] == cfg.e2.train.steps


def test_summary_and_table_name_each_arms_checkpoint(e2_run):
    _, root, summary, _, _, _ = e2_run
    models = summary["models"]
    for m in models.values():
        assert len(m["checkpoints"]) == len(m["seeds"]) == len(m["val_mse_per_seed"])
        best = int(np.argmin(m["val_mse_per_seed"]))
        assert m["best_checkpoint"] == m["checkpoints"][best] == f"{m['runs'][best]}/best.pt"
        assert (root / "e2" / m["best_checkpoint"]).is_file()
    table = (root / "e2" / "table.md").read_text()
    for dname in ("ir_to_raman", "raman_to_ir"):
        chosen = summary["checkpoints"][dname]
        arms = [k for k in models if models[k]["direction"] == dname]
        lowest = min(arms, key=lambda k: models[k]["val_mse"]["mean"])
        assert chosen["arm"] == lowest == summary["error_analysis"][dname]["arm"]
        assert chosen["checkpoint"] == models[lowest]["best_checkpoint"]
        for k in arms:
            assert f"`{models[k]['best_checkpoint']}`" in table
    src, tgt = "ir", "raman"
    assert f"spektron predict --run <this folder> --from {src} --to {tgt}" in table


def test_predict_run_uses_the_best_validation_arm(e2_run, tmp_path, capsys):
    _, root, summary, _, _, _ = e2_run
    grid = np.linspace(400.0, 4100.0, 500)
    spec = tmp_path / "mine.csv"
    spec.write_text("\n".join(f"{x:g},{np.exp(-(((x - 1600) / 30) ** 2)):.6g}" for x in grid))
    out = tmp_path / "pred"
    argv = ["predict", "--run", str(root / "e2"), "--from", "raman", "--to", "ir"]
    assert main([*argv, "--out", str(out), "--no-plot", str(spec)]) == 0
    chosen = summary["checkpoints"]["raman_to_ir"]
    printed = capsys.readouterr().out
    assert f"using arm {chosen['arm']}" in printed
    assert "a smoke-preset model" in printed  # the test run is a smoke run
    rep = json.loads((out / "predict.json").read_text())
    assert rep["checkpoint"] == str((root / "e2" / chosen["checkpoint"]).resolve())
    # --arm restricts the choice; the pick stays the lowest validation MSE among the matches.
    assert main([*argv, "--arm", "cnn", "--out", str(out), "--no-plot", "--force", str(spec)]) == 0
    cnn = [k for k in summary["models"] if k.startswith("raman_to_ir/") and k.endswith("/cnn")]
    best_cnn = min(cnn, key=lambda k: summary["models"][k]["val_mse"]["mean"])
    assert f"using arm {best_cnn}" in capsys.readouterr().out
    rep = json.loads((out / "predict.json").read_text())
    want = root / "e2" / summary["models"][best_cnn]["best_checkpoint"]
    assert rep["checkpoint"] == str(want.resolve())


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--run", "{tmp}"], r"no summary\.json \(not a finished E2 output folder"),
        (["--run", "{e2}", "--arm", "mamba"], r"--arm 'mamba' matches no ir_to_raman arm"),
        (["--checkpoint", "{tmp}/x.pt", "--arm", "cnn"], r"--arm chooses among the arms of --run"),
    ],
)
def test_predict_run_errors_are_one_line(e2_run, tmp_path, capsys, argv, match):
    root = e2_run[1]
    spec = tmp_path / "mine.csv"
    spec.write_text("500,0\n4000,1\n")
    argv = [a.format(tmp=tmp_path, e2=root / "e2") for a in argv]
    full = ["predict", "--from", "ir", "--to", "raman", *argv, "--out", str(tmp_path / "p")]
    assert main([*full, str(spec)]) == 2
    err = capsys.readouterr().err
    assert re.search(match, err) and "Traceback" not in err
    assert not (tmp_path / "p").exists()


def test_predict_run_refuses_a_summary_without_checkpoint_names(e2_run, tmp_path):
    from spektron.experiments.predict import select_checkpoint

    root = e2_run[1]
    old = json.loads((root / "e2" / "summary.json").read_text())
    for m in old["models"].values():
        del m["best_checkpoint"]
    (tmp_path / "summary.json").write_text(json.dumps(old))
    with pytest.raises(DataError, match=r"names no checkpoint .* older version"):
        select_checkpoint(tmp_path, "ir", "raman")


def test_e2_report_files_and_rebuild(e2_run, capsys):
    _, root, _, _, _, _ = e2_run
    table = (root / "e2" / "table.md").read_text()
    for text in (
        "identity copy",
        "nearest-neighbour retrieval",
        "PLS2",
        "mean target spectrum",
        "SIMULATED",
        "Held-out centrosymmetric",
        "beats retrieval",
    ):
        assert text in table
    summary = json.loads((root / "e2" / "summary.json").read_text())
    pls_k = [summary["baselines"][d]["pls"]["params"]["n_components"] for d in summary["baselines"]]
    for k in pls_k:  # the largest candidate (4) is flagged in the table, a smaller one is not
        assert (f"n_components={k}, grid max" in table) == (k == 4)
    figs = {p.name for p in (root / "e2" / "figures").iterdir()}
    assert {"examples_ir_to_raman.png", "distribution_raman_to_ir.png"} <= figs
    assert main(["report", "--out", str(root)]) == 0
    assert "e2:" in capsys.readouterr().out


def test_e2_rerun_reuses_finished_runs_and_refuses_changed_settings(e2_run, monkeypatch):
    cfg, root, summary, _, _, cache = e2_run
    monkeypatch.setenv("SPEKTRON_CACHE", str(cache))
    run = root / "e2" / summary["models"]["ir_to_raman/scratch/cnn"]["runs"][0]
    before = (run / "best.pt").stat().st_mtime_ns
    plans = []
    again = run_e2(cfg, root / "e2", progress=False, announce=plans.append)
    assert (run / "best.pt").stat().st_mtime_ns == before
    n = plans[0]["n_training_runs"]
    assert (
        plans[0]["reuse"]
        == f"{n} of {n} runs already finished in {root / 'e2'} (reused), 0 to train"
    )
    key = "ir_to_raman/scratch/cnn"
    assert again["models"][key]["test"] == summary["models"][key]["test"]
    changed = preset_config(
        "smoke",
        [*COMMON, f"e2.pretrained_from={json.dumps(str(root / 'e1'))}", "e2.train.steps=4"],
    )
    files = {p: p.stat().st_mtime_ns for p in (root / "e2").rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match=r"other settings \(e2_train\.steps: 3 there, 4 now\)"):
        run_e2(changed, root / "e2", progress=False, announce=plans.append)
    assert len(plans) == 1  # refused before the plan and the baselines: nothing rewritten
    assert {p: p.stat().st_mtime_ns for p in (root / "e2").rglob("*") if p.is_file()} == files


def test_e2_errors_name_the_problem(e2_run, tmp_path, monkeypatch):
    cfg, root, _, _, _, cache = e2_run
    monkeypatch.setenv("SPEKTRON_CACHE", str(cache))
    bad = preset_config("smoke", COMMON)  # pretrained arms but no pretrained_from
    with pytest.raises(ConfigError, match="pretrained_from"):
        run_e2(bad, tmp_path / "e2", progress=False)
    other = Spektron(SpektronConfig(d_model=16, backbone="cnn", head="cross_spectral"))
    ckpt = json.loads((root / "e1/summary.json").read_text())["backbones"]["cnn"]["runs"][0]
    with pytest.raises(CheckpointError, match="d_model"):
        load_pretrained(other, str(root / "e1" / ckpt / "best.pt"))


def test_cli_e2_scratch_only_with_an_extended_lr_sweep_and_a_budget_check(
    e2_run, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("SPEKTRON_CACHE", str(e2_run[5]))
    args = ["-q", "e2", "--preset", "smoke", "--out", str(tmp_path / "e2")]
    for s in [
        *COMMON,
        'e2.inits=["scratch"]',
        'e2.backbones=["cnn"]',
        'e2.directions=["ir_to_raman"]',
        "e2.lr_sweep=[1e-3, 3e-3]",
        "e2.lr_extensions=1",
        "e2.convergence_check=2",
    ]:
        args += ["--set", s]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "beats retrieval" in out or "does not beat retrieval" in out
    # Two LRs: the chosen one is an end, so one more LR beyond it was tried on the first seed.
    summary = json.loads((tmp_path / "e2" / "summary.json").read_text())
    (m,) = summary["models"].values()
    assert len(m["lr_sweep"]) == 3
    assert m["lr_edge"] == lr_edge(m["lr"], m["lr_sweep"])
    table = (tmp_path / "e2" / "table.md").read_text()
    assert "LR sweep (validation MSE, first seed per learning rate" in table
    seed_dirs = sorted(p.name for p in (tmp_path / "e2" / "runs/ir_to_raman/scratch/cnn").iterdir())
    # the sweep, then the other seeds, and the budget check: the first seed for twice the steps
    assert len(seed_dirs) == 3 + len(m["seeds"]) - 1 + 1
    steps = summary["scale"]["steps"]
    chk = m["convergence"]["budget_check"]
    assert chk["run"].endswith(f"lr{m['lr']:g}_seed0_steps{2 * steps}")
    run = tmp_path / "e2" / chk["run"]
    assert json.loads((run / "config.json").read_text())["train"]["steps"] == 2 * steps
    assert chk["curve"]["step"][-1] == 2 * steps and chk["val"] == m["val_mse_per_seed"][0]
    assert chk["converged"] == (chk["gain"] < 0.02) == m["convergence"]["converged"]
    assert chk[f"test_{PRIMARY_METRIC}"] == m["test"][PRIMARY_METRIC]["per_seed"][0]
    assert "doubling the steps" in summary["convergence"]["rule"]
    assert len(m["val_curves"]) == len(m["seeds"]) and "### Convergence" in table
    assert (tmp_path / "e2" / "figures" / "val_curves_ir_to_raman.png").is_file()


def test_loaded_molecules_are_kept_read_only_and_reloaded_when_the_store_changes(e2_run):
    from spektron.experiments.e2.run import load_molecules, load_molecules_cached

    store = e2_run[4]
    rows = np.array([5, 1, 3])
    a = load_molecules_cached(store, rows, "max")
    assert load_molecules_cached(store, rows[::-1], "max") is a  # same rows, any order
    assert load_molecules_cached(store, rows, "area") is not a
    fresh = load_molecules(store, rows, "max")
    for k, v in fresh.items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(a[k], v)
            assert not a[k].flags.writeable
    with pytest.raises(ValueError):
        a["ir"][0, 0] = 1.0
    st = store.stat()
    os.utime(store, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert load_molecules_cached(store, rows, "max") is not a


def test_cross_spectral_task_loss_is_the_pointwise_mse():
    wn = make_grid(32)
    task = CrossSpectralPrediction(wn)
    torch.manual_seed(0)
    model = Spektron(
        SpektronConfig(
            d_model=8, backbone="cnn", head="cross_spectral", head_config={"zero_init": False}
        )
    )
    items = {"x": torch.rand(3, 32), "y": torch.rand(3, 32), "row": torch.arange(3)}
    batch = task.prepare(items, task.sample_seeds(items, True, 0, 0, np.arange(3)), True)
    pred = task.forward(model, batch)
    s = task.sums(model, batch)
    assert task.counts(batch).item() == 96
    torch.testing.assert_close(s[0] / 96, ((pred - items["y"]) ** 2).mean())
