"""The tuning protocol on a known objective: same trials per arm, edge extension, rounds that
fill the workers, determinism."""

from __future__ import annotations

import dataclasses
import math

from spektron.config import TuneConfig, preset_config
from spektron.experiments.e1.tuning import tune_arms


def _e1(**tune):
    base = preset_config("smoke").e1
    knobs = {"cnn": {}, "dlinoss": {}}  # the LR only: the objective below ignores knobs
    return dataclasses.replace(base, tune=TuneConfig(knobs=knobs, **tune))


def test_edge_extension_rounds_and_determinism():
    e1 = _e1(n_trials=6, lr_min=1e-4, lr_max=1e-2, max_extensions=2, extension_trials=2)
    best = {"cnn": 3e-3, "dlinoss": 5e-2}  # dlinoss' optimum lies beyond lr_max
    batches = []

    def run(batch):
        batches.append([a for a, _ in batch])
        return [(math.log10(p["lr"]) - math.log10(best[a])) ** 2 for a, p in batch]

    out = tune_arms(["cnn", "dlinoss"], e1, seed=0, run_trials=run, jobs=2)
    cnn, dl = out["cnn"], out["dlinoss"]
    assert len(cnn["trials"]) == 6 + 2 * cnn["extensions"]
    assert dl["extensions"] >= 1 and dl["lr_range"][1] > 1e-2  # the range moved out
    assert any(t["lr"] > 1e-2 for t in dl["trials"])  # sampled in the extended range
    assert cnn["best"]["val"] == min(t["val"] for t in cnn["trials"])
    # Once cnn is done, dlinoss' extension trials fill both workers.
    tail = [b for b in batches if set(b) == {"dlinoss"}]
    assert tail and all(len(b) == 2 for b in tail)
    again = tune_arms(["cnn", "dlinoss"], e1, seed=0, run_trials=run, jobs=2)
    assert again == out
    vals = iter([math.nan, 1.0, 2.0])
    failed = tune_arms(["cnn"], _e1(n_trials=3), seed=0, run_trials=lambda b: [next(vals)])
    assert failed["cnn"]["trials"][0]["val"] is None and failed["cnn"]["best"]["val"] == 1.0
