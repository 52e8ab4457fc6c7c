"""run-all in parts: the stages asked for, in order, into one folder; E2-E4 from its E1."""

from __future__ import annotations

import json

import pytest

from spektron.config import preset_config
from spektron.errors import ConfigError
from spektron.experiments import plan, run_all
from spektron.experiments.e1 import run as e1
from spektron.experiments.e2 import run as e2
from spektron.experiments.e3 import run as e3
from spektron.experiments.e4 import run as e4


@pytest.fixture
def stubbed(monkeypatch):
    """Every stage replaced by a stub that records its call and writes a summary."""
    calls: list[tuple[str, dict]] = []

    def stub(name):
        def run(cfg, out, progress=True, announce=None):
            calls.append((name, {"e2": cfg.e2.pretrained_from, "e3": cfg.e3.trained_from}))
            out.mkdir(parents=True, exist_ok=True)
            (out / "summary.json").write_text(json.dumps({"experiment": name}))
            return {"experiment": name}

        return run

    monkeypatch.setattr(run_all, "run_data_overview", stub("data"))
    monkeypatch.setattr(e1, "run_e1", stub("e1"))
    monkeypatch.setattr(e2, "run_e2", stub("e2"))
    monkeypatch.setattr(e3, "run_e3", stub("e3"))
    monkeypatch.setattr(e4, "run_e4", stub("e4"))
    est = {"stages_s": {}, "total_s": 1.0}
    monkeypatch.setattr(plan, "estimate_run_all", lambda *a, include=(), **k: est)
    return calls


def test_stages_run_in_order_into_one_folder_and_keep_earlier_timings(stubbed, tmp_path):
    cfg = preset_config("smoke", ["e2.jobs=1", "e3.jobs=1", "e4.jobs=1"])
    out = tmp_path / "study"
    run_all.run_all(cfg, out, progress=False, stages=("data", "e1", "e3", "e4"))
    assert [c[0] for c in stubbed] == ["data", "e1", "e3", "e4"]
    first = json.loads((out / "timing.json").read_text())
    assert first["stages"] == ["data", "e1", "e3", "e4"] and first["earlier_calls"] == []
    # Later, E2 alone: it starts from the E1 folder of the earlier call.
    stubbed.clear()
    run_all.run_all(cfg, out, progress=False, stages=("e2",))
    assert stubbed == [("e2", {"e2": str(out / "e1"), "e3": str(out / "e1")})]
    second = json.loads((out / "timing.json").read_text())
    assert second["stages"] == ["e2"] and set(second["measured_s"]) == {"e2"}
    assert [c["stages"] for c in second["earlier_calls"]] == [["data", "e1", "e3", "e4"]]


def test_stage_names_are_checked_and_later_stages_need_e1s_results(tmp_path):
    assert run_all.check_stages(["e4", "data", "e1"], tmp_path) == ("data", "e1", "e4")
    with pytest.raises(ConfigError, match="--stages: e5; choose among data, e1, e2, e3, e4"):
        run_all.check_stages(["e1", "e5"], tmp_path)
    with pytest.raises(ConfigError, match="e2, e3 start from E1's results.*add e1 to --stages"):
        run_all.check_stages(["e2", "e3"], tmp_path)
    (tmp_path / "e1").mkdir()
    (tmp_path / "e1" / "summary.json").write_text("{}")
    assert run_all.check_stages(["e2"], tmp_path) == ("e2",)
