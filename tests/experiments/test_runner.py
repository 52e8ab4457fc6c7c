"""The shared runner's sweep-then-seeds schedule."""

from __future__ import annotations

import dataclasses

import pytest

from spektron.config import preset_config
from spektron.errors import ConfigError
from spektron.experiments.runner import lr_edge, size_arms, sweep_then_seeds

VAL = {("a", 1e-3): 0.5, ("a", 3e-3): 0.2, ("b", 1e-3): 0.1, ("b", 3e-3): 0.1}


def _spec(name, lr, seed):
    return {"run_dir": f"{name}/lr{lr:g}_seed{seed}", "name": name, "lr": lr}


def _runner(calls):
    def run(specs, what):
        calls.append((what, [s["run_dir"] for s in specs]))
        return {s["run_dir"]: {"val": VAL[(s["name"], s["lr"])]} for s in specs}

    return run


def test_sweep_on_the_first_seed_then_other_seeds_at_the_chosen_lr():
    calls: list = []
    results, best, vals = sweep_then_seeds(
        ["a", "b"], (1e-3, 3e-3), [0, 1, 2], _spec, _runner(calls), "val"
    )
    assert [c[0] for c in calls] == ["LR sweep", "seeds"]
    assert sorted(calls[0][1]) == sorted(
        ["a/lr0.001_seed0", "a/lr0.003_seed0", "b/lr0.001_seed0", "b/lr0.003_seed0"]
    )
    assert best == {"a": 3e-3, "b": 1e-3}  # a tie goes to the smaller LR
    assert sorted(calls[1][1]) == sorted(
        ["a/lr0.003_seed1", "a/lr0.003_seed2", "b/lr0.001_seed1", "b/lr0.001_seed2"]
    )
    assert vals["a"] == {"0.001": 0.5, "0.003": 0.2}
    assert len(results) == 8


def test_an_lr_chosen_at_an_end_is_extended_beyond_it_then_flagged_when_still_there():
    # a: validation keeps falling with the LR (upper end every time); b: best at the lower end,
    # which is interior once the LR below it is tried (and is worse); c: interior from the start.
    def val(name, lr):
        return {"a": -lr, "b": abs(lr - 7e-4), "c": abs(lr - 3e-3)}[name]

    calls: list = []

    def run(specs, what):
        calls.append((what, sorted(s["run_dir"] for s in specs)))
        return {s["run_dir"]: {"val": val(s["name"], s["lr"])} for s in specs}

    results, best, vals = sweep_then_seeds(
        ["a", "b", "c"], (1e-3, 3e-3, 1e-2), [0, 1], _spec, run, "val", extensions=2
    )
    assert [c[0] for c in calls] == [
        "LR sweep",
        "LR sweep extension 1",
        "LR sweep extension 2",
        "seeds",
    ]
    # One more LR beyond the chosen end, the grid's ratio at that end (1e-2²/3e-3, 1e-3²/3e-3).
    assert calls[1][1] == ["a/lr0.0333333_seed0", "b/lr0.000333333_seed0"]
    assert calls[2][1] == ["a/lr0.111111_seed0"]  # b is interior now: not extended again
    assert best["a"] == pytest.approx(1e-2**3 / 3e-3**2)
    assert best["b"] == 1e-3 and best["c"] == 3e-3
    assert list(vals["b"]) == ["0.000333333", "0.001", "0.003", "0.01"]  # ascending
    assert lr_edge(best["a"], vals["a"]) == "upper"
    assert lr_edge(best["b"], vals["b"]) is None and lr_edge(best["c"], vals["c"]) is None
    assert lr_edge(1e-3, {"0.001": 1.0, "0.003": 2.0}) == "lower"
    assert lr_edge(3e-3, {"0.003": 1.0}) is None  # one LR: nothing was chosen
    assert len(results) == 9 + 3 + 3


def test_no_extension_without_a_grid_or_when_none_is_asked_for():
    calls: list = []
    sweep_then_seeds(["a"], (1e-3, 3e-3), [0, 1], _spec, _runner(calls), "val")
    assert [c[0] for c in calls] == ["LR sweep", "seeds"]  # a chose the upper end; default 0
    calls.clear()
    sweep_then_seeds(["a"], (3e-3,), [0, 1], _spec, _runner(calls), "val", extensions=3)
    assert [c[0] for c in calls] == ["runs"]


def test_one_lr_is_one_call_with_every_seed_and_tuple_arms():
    calls: list = []

    def spec(direction, name, lr, seed):
        return _spec(name, lr, seed) | {"run_dir": f"{direction}/{name}/lr{lr:g}_seed{seed}"}

    results, best, _ = sweep_then_seeds(
        [("x", "a"), ("x", "b")], (3e-3,), [0, 1], spec, _runner(calls), "val"
    )
    assert len(calls) == 1 and len(calls[0][1]) == 4
    assert best == {("x", "a"): 3e-3, ("x", "b"): 3e-3}
    assert len(results) == 4


def test_one_seed_is_written_as_one_seed_not_plus_minus_zero():
    from spektron.experiments.reporting import fmt_mean_std
    from spektron.experiments.runner import mean_std

    one, three = mean_std([0.25]), mean_std([1.0, 2.0, float("nan"), 3.0])
    assert one == {"mean": 0.25, "std": 0.0, "n": 1}
    assert three["n"] == 3 and three["std"] == 1.0
    assert fmt_mean_std(one) == "0.25 (1 seed)"
    assert fmt_mean_std(three) == "2 ± 1"
    assert fmt_mean_std({"mean": 2.0, "std": 1.0}) == "2 ± 1"  # summaries from before "n"


def test_arm_overrides_are_fixed_for_the_sizer_and_checked_against_the_backbone():
    base = preset_config("quick").e1
    e1 = dataclasses.replace(
        base,
        backbones=("dlinoss", "cnn"),
        arm_overrides={"dlinoss": {"theta_min": 0.2, "n_layers": 2}},
    )
    arms = size_arms(e1)
    bc = arms["dlinoss"]["backbone_config"]
    assert bc["theta_min"] == 0.2 and bc["n_layers"] == 2  # the depth is not searched
    assert arms["dlinoss"]["overrides"] == {"theta_min": 0.2, "n_layers": 2}
    assert abs(arms["dlinoss"]["n_params"] - e1.budget) <= e1.budget_tol * e1.budget
    plain = size_arms(dataclasses.replace(base, backbones=("dlinoss", "cnn")))
    assert plain["cnn"] == arms["cnn"] and "overrides" not in plain["dlinoss"]
    assert plain["dlinoss"]["backbone_config"]["n_layers"] != 2
    bad = {
        "dlinos": r"no backbone 'dlinos'; choose among",
        "dlinoss.foo": r"foo is not a field of the dlinoss config; its fields: bidirectional",
        "dlinoss.theta_min": r"dlinoss: dlinoss\.theta_min must be in",
    }
    values = {
        "dlinos": {"r_min": 0.8},
        "dlinoss.foo": {"foo": 1},
        "dlinoss.theta_min": {"theta_min": 2.0},
    }
    for key, pattern in bad.items():
        arm = key.split(".")[0]
        cfg = dataclasses.replace(e1, arm_overrides={arm: values[key]})
        with pytest.raises(ConfigError, match=pattern):
            size_arms(cfg)
    # A fixed shape that misses the budget names the override.
    tight = dataclasses.replace(e1, arm_overrides={"dlinoss": {"n_layers": 3}})
    with pytest.raises(ConfigError, match=r"e1\.arm_overrides\.dlinoss .*no configuration within"):
        size_arms(tight)


def test_e2_and_e4_arms_take_the_knobs_a_tuned_e1_chose(tmp_path):
    import json

    from spektron.experiments.runner import with_e1_tuning

    e1 = dataclasses.replace(
        preset_config("quick").e1, arm_overrides={"dlinoss": {"theta_min": 0.1}}
    )
    summary = {
        "backbones": {
            "dlinoss": {"tuned": {"lr": 0.003, "shape": {"r_min": 0.8}}},
            "cnn": {"tuned": {"lr": 0.001, "shape": {"kernel_size": 9}}},
            "mamba": {"lr": 0.003},  # an untuned arm
        }
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    tuned = with_e1_tuning(e1, tmp_path)
    assert tuned.arm_overrides == {
        "dlinoss": {"theta_min": 0.1, "r_min": 0.8},
        "cnn": {"kernel_size": 9},
    }
    arms = size_arms(dataclasses.replace(tuned, backbones=("dlinoss", "cnn")))
    assert arms["cnn"]["backbone_config"]["kernel_size"] == 9
    assert arms["dlinoss"]["backbone_config"]["r_min"] == 0.8
    assert with_e1_tuning(e1, None) is e1 and with_e1_tuning(e1, tmp_path / "none") is e1
    (tmp_path / "summary.json").write_text("{")
    with pytest.raises(ConfigError, match="unreadable E1 summary"):
        with_e1_tuning(e1, tmp_path)


def test_load_pretrained_fills_fields_a_checkpoint_predates_and_refuses_other_shapes(tmp_path):
    # A checkpoint written before the Mamba config gained its `checkpoint` field loads into a
    # model of the same shape (the field compares as its default); another depth is refused.
    import torch

    from spektron.errors import CheckpointError
    from spektron.experiments.runner import load_pretrained
    from spektron.models.spektron import Spektron, SpektronConfig

    def model(n_layers: int, head: str) -> Spektron:
        torch.manual_seed(0)
        cfg = dict(d_model=8, backbone="mamba", head=head)
        return Spektron(SpektronConfig(**cfg, backbone_config={"n_layers": n_layers}))

    state = model(1, "reconstruction").checkpoint_state()
    assert state["config"]["backbone_config"] == {"n_layers": 1}
    # written out in full, as E1 does, but without `checkpoint`
    state["config"]["backbone_config"] = {"n_layers": 1, "d_state": 16}
    torch.save(state, tmp_path / "old.pt")
    target = model(1, "cross_spectral")
    info = load_pretrained(target, str(tmp_path / "old.pt"))
    assert info["copied_tensors"] > 0
    with pytest.raises(CheckpointError, match="pretrained backbone_config"):
        load_pretrained(model(2, "cross_spectral"), str(tmp_path / "old.pt"))


def test_complete_model_config_fills_only_the_fields_a_run_predates():
    from spektron.experiments.runner import complete_model_config

    full = {
        "d_model": 8,
        "backbone": "mamba",
        "backbone_config": {"n_layers": 1, "d_state": 16, "checkpoint": False},
    }
    done = complete_model_config(full)
    assert done["backbone_config"]["checkpoint"] is False and done["backbone_config"]["expand"]
    old = {**full, "backbone_config": {k: v for k, v in done["backbone_config"].items()}}
    del old["backbone_config"]["checkpoint"]
    assert complete_model_config(old) == done  # written before the field existed
    assert complete_model_config(done) == done  # today's complete configs are kept as they are
    other = {**old, "backbone_config": {**old["backbone_config"], "d_state": 4}}
    assert complete_model_config(other) != done  # a field it has is never overwritten
    assert complete_model_config({"backbone": "no-such"}) == {"backbone": "no-such"}
