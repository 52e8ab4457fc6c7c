"""One tuning protocol for every arm: the same trials, the same steps, validation only.

Per arm, ``e1.tune.n_trials`` trials, each a training run of ``e1.tune.steps`` optimizer steps on
the first seed (the recipe's warmup and cosine schedule over those steps), scored by its best
validation masked MSE — never by a test value. Trials are proposed by Optuna's TPE sampler
(seeded; a random start of ``startup_trials``) over

- the learning rate, log-uniform in [lr_min, lr_max], rounded to 3 significant digits;
- the arm's own knobs: the field → values of ``e1.tune.knobs[arm]``, else the ``TUNE_KNOBS`` its
  backbone config declares (one or two per backbone), as one categorical "shape" over the
  combinations that meet the parameter budget (the sizer sets the remaining size fields).

Edge rule: when the best trial's LR lies in the outer ``edge`` of the log range, that end is moved
out by a factor ``extend`` and ``extension_trials`` more trials run, the first of them fixed at
√extend past the old end with the best knobs (TPE alone keeps sampling near the old end, where
its trials crowd); at most ``max_extensions``
times, after which a best LR still at the edge is flagged. A best knob value at the first or last
of its ordered values is flagged too (their lists are not extended).

Determinism: trials are asked and told in a fixed order from this process (ask/tell, in rounds
across arms; TPE's constant liar for the trials of a round that are not yet told), so a rerun
proposes the same trials and reuses their finished run folders. No pruner: the trials run in
worker processes and a pruner would need their intermediate values while they run, which would
make the choice depend on timing; every trial runs its full ``steps``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
from collections.abc import Callable
from typing import Any

from spektron.config import E1Config, TuneConfig
from spektron.errors import ConfigError

log = logging.getLogger(__name__)

# (arm, params) → best validation value; params = {"lr": float, "shape": {field: value}}.
TrialRunner = Callable[[list[tuple[str, dict[str, Any]]]], list[float]]


def knob_space(arm: str, tune: TuneConfig) -> dict[str, list[Any]]:
    """The arm's knobs: field → candidate values (``tune.knobs[arm]`` or its config's)."""
    from spektron.models.registry import backbone_spec

    if arm in tune.knobs:
        space = {k: list(v) for k, v in tune.knobs[arm].items()}
    else:
        declared = getattr(backbone_spec(arm).config_cls, "TUNE_KNOBS", {})
        space = {
            k: [list(x) if isinstance(x, tuple) else x for x in v] for k, v in declared.items()
        }
    fields = {f.name for f in dataclasses.fields(backbone_spec(arm).config_cls)}
    unknown = sorted(set(space) - fields)
    if unknown:
        raise ConfigError(f"e1.tune.knobs.{arm}: {', '.join(unknown)} not a field of its config")
    if "d_model" in space:
        raise ConfigError(f"e1.tune.knobs.{arm}.d_model: the model width is shared by every arm")
    return space


def feasible_shapes(
    e1: E1Config, arm: str, space: dict[str, list[Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The knob combinations that size within the budget (with the arm's overrides), and those
    that do not."""
    from spektron.experiments.runner import size_arms

    ok, bad = [], []
    for combo in itertools.product(*space.values()):
        shape = dict(zip(space, combo, strict=True))
        trial_e1 = with_shape(e1, arm, shape)
        try:
            size_arms(trial_e1)
        except ConfigError as exc:
            log.debug("tuning %s: %s does not size (%s)", arm, shape, exc)
            bad.append(shape)
            continue
        ok.append(shape)
    if not ok:
        raise ConfigError(
            f"e1.tune: no combination of {arm}'s knobs {space} meets the parameter budget "
            f"({e1.budget:,} ± {e1.budget_tol:.0%}); set e1.tune.knobs.{arm}"
        )
    return ok, bad


def with_shape(e1: E1Config, arm: str, shape: dict[str, Any]) -> E1Config:
    """``e1`` for one arm with ``shape`` fixed on top of its overrides."""
    over = {**e1.arm_overrides, arm: {**e1.arm_overrides.get(arm, {}), **shape}}
    return dataclasses.replace(e1, backbones=(arm,), arm_overrides=over)


def round_lr(lr: float) -> float:
    return float(f"{lr:.3g}")


def _position(lr: float, lo: float, hi: float) -> float:
    return (math.log(lr) - math.log(lo)) / (math.log(hi) - math.log(lo))


def _edge_values(shape: dict[str, Any], space: dict[str, list[Any]]) -> list[str]:
    """Knobs whose chosen value is the first or last of ordered numeric candidates."""
    out = []
    for k, vals in space.items():
        if len(vals) > 1 and all(isinstance(v, (int, float)) for v in vals):
            if shape[k] in (min(vals), max(vals)):
                out.append(k)
    return out


def tune_arms(
    arms: list[str], e1: E1Config, seed: int, run_trials: TrialRunner, jobs: int = 1
) -> dict[str, dict[str, Any]]:
    """Run the protocol for every arm; returns per arm {"best": {"lr", "shape", "val",
    "trial"}, "trials": [...], "lr_range", "extensions", "lr_at_edge", "knobs_at_edge",
    "space", "infeasible"}. ``run_trials`` trains a batch of trials (any order inside it);
    ``jobs``: the parallel runs it has, so each round asks every arm that still has trials
    to run for its share of them (the extension trials of one arm fill every worker)."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    tune = e1.tune
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    state: dict[str, dict[str, Any]] = {}
    for k, arm in enumerate(arms):
        space = knob_space(arm, tune)
        shapes, bad = feasible_shapes(e1, arm, space) if space else ([{}], [])
        sampler = optuna.samplers.TPESampler(
            seed=seed * 1009 + k, n_startup_trials=tune.startup_trials, constant_liar=True
        )
        state[arm] = {
            "study": optuna.create_study(direction="minimize", sampler=sampler),
            "space": space,
            "shapes": [json.dumps(s, sort_keys=True) for s in shapes],
            "infeasible": bad,
            "lo": tune.lr_min,
            "hi": tune.lr_max,
            "target": tune.n_trials,
            "extensions": 0,
            "trials": [],
        }
    while True:
        batch: list[tuple[str, Any, dict[str, Any]]] = []
        active = [a for a in arms if state[a]["target"] > len(state[a]["trials"])]
        per_round = max(1, -(-jobs // max(1, len(active))))
        for arm in active:
            st = state[arm]
            room = st["target"] - len(st["trials"])
            for _ in range(min(per_round, room)):
                if st.get("probe"):  # the first trial past a moved end: fixed, not sampled
                    st["study"].enqueue_trial(st.pop("probe"))
                dists = {
                    "lr": FloatDistribution(st["lo"], st["hi"], log=True),
                    "shape": CategoricalDistribution(st["shapes"]),
                }
                trial = st["study"].ask(dists)
                params = {
                    "lr": round_lr(trial.params["lr"]),
                    "shape": json.loads(trial.params["shape"]),
                }
                batch.append((arm, trial, params))
        if not batch:
            break
        values = run_trials([(arm, params) for arm, _, params in batch])
        for (arm, trial, params), val in zip(batch, values, strict=True):
            st = state[arm]
            ok = math.isfinite(val)
            st["study"].tell(trial, val if ok else None, state=None if ok else _failed())
            st["trials"].append(
                {
                    "number": len(st["trials"]),
                    "lr": params["lr"],
                    "shape": params["shape"],
                    "val": val if ok else None,
                    "lr_range": [st["lo"], st["hi"]],
                }
            )
        for arm in arms:  # the edge rule, once an arm's trials are all told
            st = state[arm]
            if len(st["trials"]) < st["target"] or st["extensions"] >= tune.max_extensions:
                continue
            best = _best(st["trials"])
            if best is None:
                continue
            pos = _position(best["lr"], st["lo"], st["hi"])
            step = math.sqrt(tune.extend)
            if pos > 1 - tune.edge:
                probe = st["hi"] * step
                st["hi"] *= tune.extend
            elif pos < tune.edge:
                probe = st["lo"] / step
                st["lo"] /= tune.extend
            else:
                continue
            # TPE, fitted to trials that crowd the old end, rarely samples past it: the first
            # extension trial probes the new part (half-way on the log scale, the best knobs).
            st["probe"] = {"lr": probe, "shape": json.dumps(best["shape"], sort_keys=True)}
            st["extensions"] += 1
            st["target"] += tune.extension_trials
            log.info(
                "tuning %s: best LR %.3g at the edge of its range; range now [%.3g, %.3g]",
                arm,
                best["lr"],
                st["lo"],
                st["hi"],
            )
    out = {}
    for arm in arms:
        st = state[arm]
        best = _best(st["trials"])
        if best is None:
            raise ConfigError(f"tuning {arm}: every trial failed (no finite validation value)")
        pos = _position(best["lr"], st["lo"], st["hi"])
        at_edge = pos > 1 - tune.edge or pos < tune.edge
        out[arm] = {
            "best": {
                "lr": best["lr"],
                "shape": best["shape"],
                "val": best["val"],
                "trial": best["number"],
            },
            "trials": st["trials"],
            "lr_range": [st["lo"], st["hi"]],
            "extensions": st["extensions"],
            "lr_at_edge": bool(at_edge),
            "knobs_at_edge": _edge_values(best["shape"], st["space"]),
            "space": st["space"],
            "infeasible": st["infeasible"],
        }
    return out


def _best(trials: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Lowest validation value; ties to the earlier trial."""
    done = [t for t in trials if t["val"] is not None]
    return min(done, key=lambda t: (t["val"], t["number"])) if done else None


def _failed() -> Any:
    import optuna

    return optuna.trial.TrialState.FAIL


def protocol(e1: E1Config) -> dict[str, Any]:
    """The protocol's settings as the summary states them."""
    t = e1.tune
    return {
        "sampler": f"Optuna TPE (seeded; {t.startup_trials} random start trials per arm)",
        "n_trials": t.n_trials,
        "steps_per_trial": t.steps,
        "lr_range": [t.lr_min, t.lr_max],
        "edge_rule": (
            f"best LR in the outer {t.edge:.0%} of the log range → that end × {t.extend:g} "
            f"outwards and {t.extension_trials} more trials, at most {t.max_extensions} times"
        ),
        "criterion": "best validation masked MSE of the trial (first seed); test never used",
        "pruner": "none (every trial runs its full steps)",
    }
