"""E3 statistics: do trained D-LinOSS filters differ from their controls? Unit: the model.

Each analysed model (:func:`spektron.analysis.transfer_function.analyse_model`) gives, per
layer and pooled over layers ("all"), the distribution over its oscillators (both directions)
of a feature: pole angle θ, pole radius r, damping ratio ζ, coupling norm ‖W_p‖_F (or f_res,
bandwidth, ...). A *group* is a list of models (e.g. trained seeds; the same runs' step-0
``init.pt``; models trained on spectra with one fixed permutation of the wavenumber order).
Oscillators of one model are not independent samples, so every test and interval treats the
model as the unit:

- ``wasserstein``: the 1-D Wasserstein distance between the two groups' pooled distributions,
  each model weighted equally (weight 1/n_oscillators per value; scipy.stats.
  wasserstein_distance). It is ≥ 0 and biased upwards in small samples: judge it against its
  permutation distribution, not against 0.
- ``median_diff``: mean over the group's models of each model's median minus the same for the
  reference group.

Intervals: percentile bootstrap resampling *models* with replacement within each group (Efron &
Tibshirani 1993, ch. 13); NaN when a group has fewer than 2 models (one model gives a zero-width
interval that would look like certainty). Tests: permutation of the group labels over the
models, exact over all C(n₁ + n₂, n₁) assignments when there are at most ``max_exact`` (else
Monte Carlo, p = (1 + #{≥})/(1 + n_perm)), p = #{assignments with statistic ≥ observed}/#all
for |median_diff| and for the (non-negative) Wasserstein distance. With few models the test is
coarse: with 3 vs 3 there are only 20 assignments and both statistics are unchanged by swapping
the two groups, so the smallest attainable p is 2/20 = 0.1. That minimum is computed from the
permutation distribution itself (share of assignments that reach its maximum) and reported,
with its Holm-adjusted counterpart. Holm's step-down correction runs over every row returned
(:func:`spektron.evaluation.metrics.holm`). A row is ``conclusive`` only if its test could reach
significance at all: minimum attainable p ≤ α and m × (smallest minimum attainable p in the
family) ≤ α (Holm's first step); otherwise its numbers are descriptive only. Every per-layer
scope adds rows to the family: with few models, ``per_layer=False`` keeps the confirmatory
family small (per-layer rows can then be run separately as exploratory).
:func:`group_summary` gives the descriptive table (each model's median, mean ± sd over models).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.stats import wasserstein_distance

from spektron.errors import ConfigError, DataError
from spektron.evaluation.metrics import holm

# Feature name → per-direction field of the analysis (transfer_function.SCALAR_FIELDS).
FEATURES: dict[str, str] = {
    "theta": "theta",
    "f_res": "f_res",
    "r": "r",
    "zeta": "zeta",
    "coupling_norm": "coupling_norm",
    "bandwidth": "bandwidth",
    "peak_gain_db": "peak_gain_db",
}
DEFAULT_FEATURES: tuple[str, ...] = ("theta", "r", "zeta", "coupling_norm")
STATISTICS: tuple[str, ...] = ("wasserstein", "median_diff")
POOLED = "all"
# Relative tolerance for "≥ observed" in the permutation count: assignments that give the same
# statistic up to rounding (e.g. the two groups swapped) must count as ties.
_TIE_RTOL = 1e-9


def model_features(
    analysis: dict[str, Any], features: Sequence[str] = DEFAULT_FEATURES
) -> dict[str, dict[str, np.ndarray]]:
    """{feature: {scope: values}} of one model; scope ``"layer<i>"`` or ``"all"`` (pooled).

    Values are the oscillators of both directions, non-finite ones dropped (e.g. the NaN
    bandwidth of a low-pass oscillator), float64 1-D arrays.
    """
    _check_features(features)
    out: dict[str, dict[str, np.ndarray]] = {}
    for feat in features:
        field = FEATURES[feat]
        scopes = {}
        for layer in analysis["layers"]:
            v = np.concatenate([np.asarray(d[field], float) for d in layer["directions"].values()])
            scopes[f"layer{layer['index']}"] = v[np.isfinite(v)]
        scopes[POOLED] = np.concatenate(list(scopes.values()))
        out[feat] = scopes
    return out


def _check_features(features: Sequence[str]) -> None:
    if not features:
        raise ConfigError("no E3 features given")
    bad = [f for f in features if f not in FEATURES]
    if bad:
        raise ConfigError(f"unknown E3 feature(s) {bad}; choose from {sorted(FEATURES)}")


def _pooled_wasserstein(xs: list[np.ndarray], ys: list[np.ndarray]) -> float:
    """W₁ between two groups' pooled values, each model weighted equally (scipy)."""
    if any(len(v) == 0 for v in (*xs, *ys)):
        return math.nan
    wx = np.concatenate([np.full(len(v), 1.0 / len(v)) for v in xs])
    wy = np.concatenate([np.full(len(v), 1.0 / len(v)) for v in ys])
    return float(wasserstein_distance(np.concatenate(xs), np.concatenate(ys), wx, wy))


def _median_diff(xs: list[np.ndarray], ys: list[np.ndarray]) -> float:
    if any(len(v) == 0 for v in (*xs, *ys)):
        return math.nan
    return float(np.mean([np.median(v) for v in xs]) - np.mean([np.median(v) for v in ys]))


_STAT_FUNCS: dict[str, Callable[[list[np.ndarray], list[np.ndarray]], float]] = {
    "wasserstein": _pooled_wasserstein,
    "median_diff": _median_diff,
}


class _Resampler:
    """The statistics for many reweightings of the same M models at once.

    A resample (bootstrap) or relabelling (permutation) is a pair of multiplicity vectors
    (cx, cy) over the M models: group X holds model m cx[m] times. Pooled weights put
    cx[m]/(Σcx·n_m) on each of model m's n_m values, so W₁ = Σ_k |F_X − F_Y|(v_k)·(v_{k+1} − v_k)
    over the sorted union of values (the formula of scipy.stats.wasserstein_distance), and the
    median difference is a weighted mean of per-model medians.
    """

    _CHUNK = 256  # rows per batch: (256, N) float64 work arrays

    def __init__(self, models: list[np.ndarray]) -> None:
        values = np.concatenate(models)
        ids = np.concatenate([np.full(len(v), m) for m, v in enumerate(models)])
        base = np.concatenate([np.full(len(v), 1.0 / len(v)) for v in models])
        order = np.argsort(values, kind="stable")
        self.ids, self.base = ids[order], base[order]  # (N,)
        self.gaps = np.diff(values[order])  # (N − 1,)
        self.medians = np.array([np.median(v) for v in models])  # (M,)

    def __call__(self, statistic: str, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
        """cx, cy (K, M) multiplicities → (K,) statistic values."""
        px = cx / cx.sum(axis=1, keepdims=True)  # (K, M)
        py = cy / cy.sum(axis=1, keepdims=True)
        if statistic == "median_diff":
            return (px - py) @ self.medians
        out = np.empty(len(cx))
        for s in range(0, len(cx), self._CHUNK):
            d = (px[s : s + self._CHUNK] - py[s : s + self._CHUNK])[:, self.ids] * self.base
            cdf = np.cumsum(d, axis=1)[:, :-1]  # (k, N − 1): F_X − F_Y between values
            out[s : s + self._CHUNK] = np.abs(cdf) @ self.gaps
        return out


def label_assignments(
    n_a: int, n_b: int, max_exact: int, n_perm: int, rng: np.random.Generator
) -> tuple[np.ndarray, bool]:
    """Group-a memberships over the n_a + n_b pooled models (a first): all C(n_a + n_b, n_a)
    assignments when that is ≤ max_exact (exact), else the observed one + n_perm random ones.
    Returns ((n_assignments, n_a + n_b) 0/1 array, observed assignment first; exact)."""
    n = n_a + n_b
    if math.comb(n, n_a) <= max_exact:
        combos = [c for c in itertools.combinations(range(n), n_a) if c != tuple(range(n_a))]
        idx = np.array([tuple(range(n_a)), *combos], dtype=np.int64).reshape(-1, n_a)
        exact = True
    else:
        draws = np.argsort(rng.random((n_perm, n)), axis=1)[:, :n_a]
        idx = np.concatenate((np.arange(n_a)[None], draws))
        exact = False
    member = np.zeros((len(idx), n))
    np.put_along_axis(member, idx, 1.0, axis=1)
    return member, exact


def permutation_test(
    a: list[np.ndarray],
    b: list[np.ndarray],
    statistic: str,
    max_exact: int = 20_000,
    n_perm: int = 9_999,
    seed: int = 0,
) -> dict[str, Any]:
    """Model-level permutation test of ``statistic`` between groups a and b (lists of models'
    values). Large |statistic| is evidence of a difference (two-sided for median_diff).

    Returns ``p_value``, ``min_attainable_p``, ``n_assignments`` and ``exact``; NaN p values
    when a model has no values.
    """
    member, exact = label_assignments(
        len(a), len(b), max_exact, n_perm, np.random.default_rng(seed)
    )
    out: dict[str, Any] = {"n_assignments": len(member), "exact": exact}
    if any(len(v) == 0 for v in (*a, *b)):
        return {"p_value": math.nan, "min_attainable_p": math.nan, **out}
    stats = np.abs(_Resampler([*a, *b])(statistic, member, 1.0 - member))  # (n_assignments,)
    tol = _TIE_RTOL * max(float(stats.max()), 1e-300)
    n_ge = int((stats >= stats[0] - tol).sum())  # stats[0]: the observed labels
    if exact:
        p_min = int((stats >= stats.max() - tol).sum()) / len(stats)
    else:  # the observed assignment is one of the n_perm + 1
        p_min = 1.0 / len(stats)
    return {"p_value": n_ge / len(stats), "min_attainable_p": p_min, **out}


def bootstrap_models(
    a: list[np.ndarray],
    b: list[np.ndarray],
    statistic: str,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile interval of ``statistic`` resampling models with replacement within each
    group; (NaN, NaN) when a group has fewer than 2 models or a model has no values."""
    if len(a) < 2 or len(b) < 2 or any(len(v) == 0 for v in (*a, *b)):
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    na, nb = len(a), len(b)
    cx = np.zeros((n_boot, na + nb))
    cy = np.zeros((n_boot, na + nb))
    rows = np.arange(n_boot)[:, None]
    np.add.at(cx, (rows, rng.integers(0, na, (n_boot, na))), 1.0)
    np.add.at(cy, (rows, na + rng.integers(0, nb, (n_boot, nb))), 1.0)
    vals = _Resampler([*a, *b])(statistic, cx, cy)
    lo, hi = np.quantile(vals, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(lo), float(hi)


def group_summary(
    groups: dict[str, list[dict[str, Any]]], features: Sequence[str] = DEFAULT_FEATURES
) -> list[dict[str, Any]]:
    """Descriptive table: one row per (group, feature, scope) with each model's median
    (``model_medians``), their mean and standard deviation over models (ddof = 1; NaN for one
    model), and the quartiles of the pooled oscillators (``q25``, ``median``, ``q75``)."""
    rows = []
    for name, models in groups.items():
        feats = [model_features(an, features) for an in models]
        for feat in features:
            for scope in feats[0][feat] if feats else []:
                per = [f[feat].get(scope, np.empty(0)) for f in feats]
                meds = np.array([np.median(v) if len(v) else math.nan for v in per])
                pooled = np.concatenate(per)
                q = np.quantile(pooled, [0.25, 0.5, 0.75]) if len(pooled) else [math.nan] * 3
                rows.append(
                    {
                        "group": name,
                        "feature": feat,
                        "scope": scope,
                        "n_models": len(models),
                        "model_medians": meds.tolist(),
                        "mean_of_medians": float(np.mean(meds)) if len(meds) else math.nan,
                        "sd_of_medians": float(np.std(meds, ddof=1)) if len(meds) > 1 else math.nan,
                        "q25": float(q[0]),
                        "median": float(q[1]),
                        "q75": float(q[2]),
                    }
                )
    return rows


def compare_groups(
    groups: dict[str, list[dict[str, Any]]],
    reference: str,
    features: Sequence[str] = DEFAULT_FEATURES,
    per_layer: bool = True,
    n_boot: int = 2000,
    level: float = 0.95,
    alpha: float = 0.05,
    seed: int = 0,
    max_exact: int = 20_000,
    n_perm: int = 9_999,
) -> list[dict[str, Any]]:
    """Compare every group with ``reference``, per feature, scope and statistic.

    Parameters
    ----------
    groups : dict[str, list[dict]]
        Group name → analyses (one per model), e.g. {"trained": [...], "init": [...],
        "shuffled": [...]}; every group needs at least one model.
    reference : str
        The group the others are compared with (a key of ``groups``).
    features : sequence of str
        Keys of :data:`FEATURES`.
    per_layer : bool
        Also compare layer by layer (layers present in every model), besides pooled ("all").
    n_boot, level : int, float
        Bootstrap resamples (over models) and interval level.
    alpha : float
        Family-wise level for Holm's correction and the ``conclusive`` flag.
    seed : int
        Seed of the bootstrap and of Monte Carlo permutations.
    max_exact, n_perm : int
        Exact permutation up to ``max_exact`` assignments, else ``n_perm`` random ones.

    Returns
    -------
    list[dict]
        One row per (group, feature, scope, statistic): ``group``, ``reference``, ``feature``,
        ``scope``, ``statistic``, ``estimate``, ``ci_lo``, ``ci_hi``, ``level``, ``p_value``,
        ``p_holm`` (over all rows), ``min_attainable_p``, ``min_attainable_p_holm``,
        ``n_assignments``, ``exact``, ``n_models`` ({group: n, reference: n}), ``n_values``
        (pooled oscillator values per side), ``alpha``, ``significant`` (p_holm ≤ α),
        ``conclusive`` and a plain-language ``note``.
    """
    _check_features(features)
    if reference not in groups:
        raise ConfigError(f"reference group {reference!r} is not one of {sorted(groups)}")
    if len(groups) < 2:
        raise ConfigError("compare_groups needs the reference and at least one other group")
    empty = [name for name, models in groups.items() if not models]
    if empty:
        raise DataError(f"E3 groups without any model: {empty}")
    if not (0 < alpha < 1 and 0 < level < 1 and n_boot >= 1):
        raise ConfigError(
            f"need 0 < alpha, level < 1 and n_boot >= 1, got {alpha}, {level}, {n_boot}"
        )

    feats = {
        name: [model_features(an, features) for an in models] for name, models in groups.items()
    }
    scopes = [POOLED]
    if per_layer:
        common = set.intersection(*(set(f[features[0]]) for fs in feats.values() for f in fs))
        scopes += sorted(common - {POOLED}, key=lambda s: int(s.removeprefix("layer")))

    rows: list[dict[str, Any]] = []
    for name in groups:
        if name == reference:
            continue
        for feat in features:
            for scope in scopes:
                a = [f[feat][scope] for f in feats[name]]
                b = [f[feat][scope] for f in feats[reference]]
                for stat in STATISTICS:
                    test = permutation_test(a, b, stat, max_exact, n_perm, seed)
                    lo, hi = bootstrap_models(a, b, stat, n_boot, level, seed)
                    rows.append(
                        {
                            "group": name,
                            "reference": reference,
                            "feature": feat,
                            "scope": scope,
                            "statistic": stat,
                            "estimate": _STAT_FUNCS[stat](a, b),
                            "ci_lo": lo,
                            "ci_hi": hi,
                            "level": level,
                            **test,
                            "n_models": {name: len(a), reference: len(b)},
                            "n_values": {
                                name: int(sum(map(len, a))),
                                reference: int(sum(map(len, b))),
                            },
                            "alpha": alpha,
                        }
                    )
    _add_holm(rows, alpha)
    return rows


def _add_holm(rows: list[dict[str, Any]], alpha: float) -> None:
    """Holm-adjusted p over the rows with a defined p; conclusive flags and notes."""
    m = sum(1 for r in rows if np.isfinite(r["p_value"]))
    finite = [r for r in rows if np.isfinite(r["p_value"])]
    adjusted = holm([r["p_value"] for r in finite]) if finite else []
    floor = min((r["min_attainable_p"] for r in finite), default=math.nan)
    for r in rows:
        r["p_holm"] = math.nan
    for r, p in zip(finite, adjusted, strict=True):
        r["p_holm"] = p
    for r in rows:
        p_min = r["min_attainable_p"]
        r["min_attainable_p_holm"] = min(1.0, m * floor) if np.isfinite(p_min) else math.nan
        r["conclusive"] = bool(
            np.isfinite(p_min) and p_min <= alpha and r["min_attainable_p_holm"] <= alpha
        )
        r["significant"] = bool(r["conclusive"] and r["p_holm"] <= alpha)
        r["note"] = _note(r, m)


def _note(r: dict[str, Any], m: int) -> str:
    text = _verdict(r, m)
    if r["statistic"] == "wasserstein" and np.isfinite(r["p_value"]):
        text += (
            " (W ≥ 0 is biased upwards with few models: its interval lies above 0 even without "
            "any difference; judge it by p.)"
        )
    return text


def _verdict(r: dict[str, Any], m: int) -> str:
    na, nb = r["n_models"][r["group"]], r["n_models"][r["reference"]]
    what = f"{r['statistic']} of {r['feature']} ({r['scope']}), {r['group']} vs {r['reference']}"
    sizes = f"{na} vs {nb} models"
    if not np.isfinite(r["p_value"]):
        return f"{what}: undefined (a model has no finite values)."
    if not r["conclusive"]:
        why = (
            f"with {sizes} the smallest attainable p is {r['min_attainable_p']:.3g}"
            f" ({r['min_attainable_p_holm']:.3g} after Holm over {m} comparisons) > α = "
            f"{r['alpha']:g}"
        )
        return f"{what}: inconclusive by design ({why}); descriptive only, supports no conclusion."
    ci = (
        ""
        if not np.isfinite(r["ci_lo"])
        else f", {r['level']:.0%} CI [{r['ci_lo']:.3g}, {r['ci_hi']:.3g}]"
    )
    est = f"estimate {r['estimate']:.3g}{ci}, p = {r['p_value']:.3g}, Holm p = {r['p_holm']:.3g}"
    if r["significant"]:
        return f"{what}: differs at family-wise α = {r['alpha']:g} ({est}; {sizes})."
    return (
        f"{what}: no evidence of a difference ({est}; {sizes}); a null result, not evidence "
        "that the distributions are equal."
    )


# ----------------------------------------------------------------------------- own-init change

CHANGE_FEATURES: tuple[str, ...] = ("abs_dtheta", "abs_dr", "rel_dcoupling")


def oscillator_changes(end: dict[str, Any], start: dict[str, Any]) -> dict[str, np.ndarray]:
    """How far each oscillator moved from the same model's step-0 weights: |Δθ| (rad/sample),
    |Δr| and |Δ‖W_p‖_F| / ‖W_p‖_F(step 0), oscillator by oscillator (layers, directions and
    indices matched), pooled into 1-D arrays. ``end``/``start``: analyses of one run's final
    (or best) and step-0 checkpoints."""
    if len(end["layers"]) != len(start["layers"]):
        raise DataError("own-init change: the two analyses have different numbers of layers")
    cols: dict[str, list[np.ndarray]] = {f: [] for f in CHANGE_FEATURES}
    for le, ls in zip(end["layers"], start["layers"], strict=True):
        if set(le["directions"]) != set(ls["directions"]):
            raise DataError("own-init change: the two analyses have different directions")
        for name, de in le["directions"].items():
            ds = ls["directions"][name]
            if len(de["r"]) != len(ds["r"]):
                raise DataError("own-init change: different numbers of oscillators")
            cols["abs_dtheta"].append(np.abs(np.asarray(de["theta"]) - ds["theta"]))
            cols["abs_dr"].append(np.abs(np.asarray(de["r"]) - ds["r"]))
            w0 = np.asarray(ds["coupling_norm"], float)
            with np.errstate(divide="ignore", invalid="ignore"):
                cols["rel_dcoupling"].append(np.abs(np.asarray(de["coupling_norm"]) - w0) / w0)
    out = {}
    for f, parts in cols.items():
        v = np.concatenate(parts)
        out[f] = v[np.isfinite(v)]
    return out


def compare_changes(
    changes: dict[str, list[dict[str, np.ndarray]]],
    reference: str,
    n_boot: int = 2000,
    level: float = 0.95,
    alpha: float = 0.05,
    seed: int = 0,
    max_exact: int = 20_000,
    n_perm: int = 9_999,
) -> list[dict[str, Any]]:
    """Every group's own-init changes (:func:`oscillator_changes`, one dict per model) against
    ``reference``'s: difference of the mean of per-model medians, bootstrap interval over models,
    exact permutation test over model labels, Holm over the rows (the same conventions and
    verdicts as :func:`compare_groups`)."""
    rows = []
    ref = changes[reference]
    for group, models in changes.items():
        if group == reference:
            continue
        for feat in CHANGE_FEATURES:
            a = [m[feat] for m in models]
            b = [m[feat] for m in ref]
            test = permutation_test(a, b, "median_diff", max_exact, n_perm, seed)
            lo, hi = bootstrap_models(a, b, "median_diff", n_boot, level, seed)
            rows.append(
                {
                    "group": group,
                    "reference": reference,
                    "feature": feat,
                    "scope": POOLED,
                    "statistic": "median_diff",
                    "estimate": _median_diff(a, b),
                    "ci_lo": lo,
                    "ci_hi": hi,
                    "level": level,
                    "n_models": {group: len(a), reference: len(b)},
                    "n_values": [int(sum(len(v) for v in a)), int(sum(len(v) for v in b))],
                    "alpha": alpha,
                    "model_medians": {
                        group: [float(np.median(v)) if len(v) else math.nan for v in a],
                        reference: [float(np.median(v)) if len(v) else math.nan for v in b],
                    },
                    **test,
                }
            )
    _add_holm(rows, alpha)
    return rows


__all__ = [
    "CHANGE_FEATURES",
    "DEFAULT_FEATURES",
    "FEATURES",
    "POOLED",
    "STATISTICS",
    "bootstrap_models",
    "compare_changes",
    "compare_groups",
    "group_summary",
    "label_assignments",
    "model_features",
    "oscillator_changes",
    "permutation_test",
]
