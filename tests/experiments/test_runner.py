"""The shared runner's sweep-then-seeds schedule."""

from __future__ import annotations

from spektron.experiments.runner import sweep_then_seeds

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
