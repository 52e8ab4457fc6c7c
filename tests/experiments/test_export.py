"""``spektron export``: a run's results without checkpoints, with provenance, from which
``spektron report`` rebuilds every table byte for byte; bad input refused in one line."""

from __future__ import annotations

import hashlib
import json
import shutil
import time

import pytest
import torch

from spektron.config import config_hash, preset_config
from spektron.errors import DataError
from spektron.experiments import export as export_mod
from spektron.experiments.data_overview import run_data_overview
from spektron.experiments.e1.run import run_e1
from spektron.experiments.e2.run import run_e2
from spektron.experiments.e3.run import run_e3
from spektron.experiments.e4.run import run_e4
from spektron.experiments.export import PROVENANCE, export_run
from spektron.utils import write_json_atomic
from tests.helpers import bands_store, run_cli

STAGES = ("data", "e1", "e2", "e3", "e4")
# The smallest run with every stage and the kinds of file a study run has: D-LinOSS only (E3
# needs it), one E2 arm (one direction, from scratch), E3 without shuffled controls, E4's
# classical part on corn.
COMMON = [
    "data.grid.n_points=256",
    "validate_levels=[]",
    "e1.jobs=1",
    "e2.jobs=1",
    "e3.jobs=1",
    "e4.jobs=1",
    'e1.backbones=["dlinoss"]',
    'e2.backbones=["dlinoss"]',
    'e2.directions=["ir_to_raman"]',
    'e2.inits=["scratch"]',
    "e2.external_centrosymmetric=false",
    "e3.n_shuffled=0",
    "e4.backbones=[]",
    "e4.finetune_backbones=[]",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run-all folder at a tiny scale (each stage called as run-all calls it)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SPEKTRON_CACHE", str(tmp_path_factory.mktemp("cache")))
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("run")
    e1 = json.dumps(str(root / "e1"))
    cfg = preset_config("smoke", [*COMMON, f"e2.pretrained_from={e1}", f"e3.trained_from={e1}"])
    bands_store(cfg)
    measured = {}
    for stage, fn in zip(STAGES, (run_data_overview, run_e1, run_e2, run_e3, run_e4), strict=True):
        t0 = time.perf_counter()
        fn(cfg, root / stage, progress=False)
        measured[stage] = time.perf_counter() - t0
    # As run-all writes it for a run in two calls (`--stages data,e1`, then the rest).
    first = {"stages": ["data", "e1"], "measured_s": {s: measured[s] for s in STAGES[:2]}}
    first["measured_total_s"] = sum(first["measured_s"].values())
    later = {"stages": list(STAGES[2:]), "measured_s": {s: measured[s] for s in STAGES[2:]}}
    later["measured_total_s"] = sum(later["measured_s"].values())
    write_json_atomic(root / "timing.json", {**later, "earlier_calls": [first]})
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    to = tmp_path_factory.mktemp("results") / "study"
    return to, export_run(run, to)


def _files(folder):
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_export_keeps_results_and_leaves_checkpoints_out(run, exported):
    to, record = exported
    files = _files(to)
    assert not [f for f in files if f.endswith((".pt", ".pdf", ".npz", ".jsonl"))]
    assert not [f for f in files if "/runs/" in f or "/models/" in f or "/baselines/" in f]
    for name in ("e1", "e2", "e3", "e4"):
        assert {f"{name}/summary.json", f"{name}/table.md"} <= files
        assert any(f.startswith(f"{name}/figures/") and f.endswith(".png") for f in files)
    derived = {"e2/figure_data.json", "e3/figure_data.json"}
    assert {"e1/examples.json", "e2/examples.json", *derived} <= files
    assert {"data/config.json", "data/data_summary.json", "timing.json", PROVENANCE} <= files
    assert any(f.startswith("e4/tables/") for f in files)
    # Copies are the run's own bytes.
    for rel in ("e1/summary.json", "e2/table.md", "data/config.json"):
        assert (to / rel).read_bytes() == (run / rel).read_bytes()
    size = sum((to / f).stat().st_size for f in files)
    assert size < 0.5 * sum(p.stat().st_size for p in run.rglob("*") if p.is_file())
    assert record["left_out"]["checkpoints"]["files"] >= 4  # E1's and E2's init/best/checkpoint
    assert not [p.name for p in to.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_provenance_records_commit_config_dataset_machine_and_times(run, exported):
    to, record = exported
    prov = json.loads((to / PROVENANCE).read_text())
    assert prov == {k: v for k, v in record.items() if k != "path"}
    metrics = json.loads(next((run / "e1").rglob("metrics.json")).read_text())
    assert prov["git_commits"] == [metrics["git_commit"]] and metrics["git_commit"]
    assert prov["config"]["hash"] == config_hash(json.loads((run / "data/config.json").read_text()))
    e1 = json.loads((run / "e1/summary.json").read_text())
    (dataset,) = prov["datasets"]
    assert dataset["sha256"] == e1["dataset"]["sha256"] and dataset["experiments"] == ["e1", "e2"]
    assert prov["machine"]["devices"] == [e1["device"]]
    assert prov["machine"]["package_versions"][0]["torch"] == torch.__version__
    timing = json.loads((run / "timing.json").read_text())
    per_stage = {**timing["earlier_calls"][0]["measured_s"], **timing["measured_s"]}
    assert prov["wall_time_s"]["measured"] == pytest.approx(per_stage)
    assert set(per_stage) == set(STAGES)
    assert prov["wall_time_s"]["measured_total"] == pytest.approx(sum(per_stage.values()))
    assert prov["wall_time_s"]["run_all_calls"] == [["data", "e1"], ["e2", "e3", "e4"]]
    assert prov["wall_time_s"]["in_summaries"]["e1"] == e1["wall_time_s"]
    assert set(prov["experiments"]) == {"e1", "e2", "e3", "e4"}
    assert prov["exported_with"]["spektron"] and prov["exported_at"]
    # The manifest lists every file but itself, with its size and hash.
    assert set(prov["files"]) == _files(to) - {PROVENANCE}
    for rel, entry in prov["files"].items():
        data = (to / rel).read_bytes()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert prov["total_bytes"] == sum(e["bytes"] for e in prov["files"].values())


def test_report_on_the_export_rebuilds_every_table_and_figure(run, exported, tmp_path, capsys):
    to, _ = exported
    copy = tmp_path / "copy"
    shutil.copytree(to, copy)
    code, out, err = run_cli(capsys, "-q", "report", "--out", str(copy))
    assert code == 0, err
    rebuilt = [f for f in _files(copy) if f.endswith(("table.md", ".csv", ".png"))]
    assert {"e1/table.md", "e2/table.md", "e3/table.md", "e4/table.md"} <= set(rebuilt)
    for rel in rebuilt:
        if not rel.startswith("data/"):
            assert (copy / rel).read_bytes() == (run / rel).read_bytes(), rel


def test_e3_report_reads_the_analyses_not_the_checkpoints(run, tmp_path, capsys):
    e3 = tmp_path / "e3"
    shutil.copytree(run / "e3", e3, ignore=shutil.ignore_patterns("*.pdf"))
    summary = json.loads((e3 / "summary.json").read_text())
    for models in summary["groups"].values():
        for m in models:  # the E1 run's checkpoints: gone as far as this copy knows
            m["checkpoint"] = str(tmp_path / "gone.pt")
    write_json_atomic(e3 / "summary.json", summary)
    code, _, err = run_cli(capsys, "-q", "report", "--out", str(e3))
    assert code == 0, err
    for rel in ["table.md", *(f"figures/{p.name}" for p in (run / "e3/figures").glob("*.png"))]:
        assert (e3 / rel).read_bytes() == (run / "e3" / rel).read_bytes(), rel


def test_force_replaces_and_check_reports(run, exported, tmp_path, capsys):
    to = tmp_path / "out"
    to.mkdir()
    (to / "old.txt").write_text("an earlier export")
    code, _, err = run_cli(capsys, "-q", "export", "--run", str(run), "--to", str(to))
    assert code == 2 and err.count("\n") == 1 and "--force" in err
    assert _files(to) == {"old.txt"}
    # --check on E1 alone (a folder with only its results): every table and figure identical.
    small = tmp_path / "small"
    shutil.copytree(run / "e1", small / "e1", ignore=shutil.ignore_patterns("runs", "*.pdf"))
    argv = ["-q", "export", "--run", str(small), "--to", str(to), "--force", "--check"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert "old.txt" not in _files(to) and (to / "e1/table.md").is_file()
    assert "byte for byte the same: tables 1 of 1, figures 3 of 3" in out
    prov = json.loads((to / PROVENANCE).read_text())
    assert prov["check"]["tables"] == {"identical": ["e1/table.md"], "different": []}
    # A table made by other code than today's report is refused under --check, nothing changed.
    table = small / "e1" / "table.md"
    table.write_text(table.read_text().replace("E1", "E 1", 1))
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and err.count("\n") == 1 and "e1/table.md" in err
    assert json.loads((to / PROVENANCE).read_text()) == prov
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_failed_export_leaves_nothing(run, tmp_path, monkeypatch):
    def broken(_folder):
        raise DataError("figure data could not be read")

    monkeypatch.setitem(export_mod.FIGURE_DATA, "e2", ("figure_data.json", broken))
    with pytest.raises(DataError, match="figure data"):
        export_run(run, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "case, pattern",
    [
        ("missing_run", "no such folder"),
        ("run_without_results", "no experiment results"),
        ("destination_not_empty", "exists and is not empty: pass --force"),
        ("destination_under_a_file", "cannot be created"),
        ("destination_in_proc", "cannot be written"),
        ("destination_is_the_run", "is the run folder or holds it"),
    ],
)
def test_bad_input_is_one_line_exit_2(run, tmp_path, capsys, case, pattern):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("keep")
    empty_run = tmp_path / "empty_run"
    (empty_run / "e1").mkdir(parents=True)
    src, to = {
        "missing_run": (tmp_path / "nope", tmp_path / "out"),
        "run_without_results": (empty_run, tmp_path / "out"),
        "destination_not_empty": (run, full),
        "destination_under_a_file": (run, blocker / "out"),
        "destination_in_proc": (run, "/proc/spektron-test/out"),
        "destination_is_the_run": (run, run.parent),
    }[case]
    before = _files(tmp_path)
    code, _, err = run_cli(capsys, "-q", "export", "--run", str(src), "--to", str(to))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("spektron: error: ") and pattern in err
    assert "Traceback" not in err
    assert _files(tmp_path) == before and not (tmp_path / "out").exists()
