"""Parameter matching of backbones (docs/DESIGN.md §3.1, §3.3).

Comparisons between backbones are parameter-matched: :func:`size_backbone` keeps ``d_model``
fixed — so the shared embedding and the heads are identical in every arm — and meets a budget
of backbone parameters through depth and inner widths only (oscillators, state size, expand
factor, FFN width, channels).

Each backbone config declares the candidate values of its size fields as a class variable,
``SIZE_KNOBS: ClassVar[dict[str, tuple[int, ...]]]`` (e.g. ``{"n_layers": (2, 4, 6),
"d_state": (32, 64)}``); the field giving the depth is ``DEPTH_KNOB`` (default
``"n_layers"``). The search visits the whole product of the knobs (fields fixed in ``base``
are not searched), skips combinations that the config rejects, and counts trainable parameters
of each candidate built on the CPU (restoring the caller's RNG state afterwards). The meta
device would allocate nothing, but dispatching every initialisation op through its Python mode
made the search 5× slower (32 s against 6.7 s for the seven E1 arms at the quick size), and a
candidate holds a few MB at most.

Selection rule: the candidate whose count is closest to the budget, where distances are
compared in steps of ``tie_tol · budget`` (default 1 %: 0.4 % and 0.8 % off count as a tie,
since such differences do not matter for matching, while the shape of the network does); ties
go to the depth closest to the config's default depth, then to fewer layers, then to the
smaller distance, then to the earlier combination in knob order. ``tie_tol=0`` gives the
plain "closest count wins" rule. A ConfigError naming the best achievable count is raised when
no candidate lies within ``budget · (1 ± tol)``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import threading
from typing import Any

import torch

from spektron.errors import ConfigError
from spektron.models.registry import (
    BackboneConfig,
    BackboneSpec,
    backbone_spec,
    count_parameters,
    make_backbone_config,
)

log = logging.getLogger(__name__)


# Counts by (module class, config): a search builds ~100 candidates per backbone, and run-all
# sizes the same arms for its plan, E1, E2 and E4.
_COUNTS: dict[tuple[type, str], int] = {}
_COUNTS_LOCK = threading.Lock()


def count_backbone_parameters(spec: BackboneSpec, cfg: BackboneConfig) -> int:
    """Trainable parameters of ``spec`` built from ``cfg`` (remembered per module class and
    config for the life of the process)."""
    key = (spec.module_cls, json.dumps(dataclasses.asdict(cfg), sort_keys=True, default=repr))
    with _COUNTS_LOCK:
        if key in _COUNTS:
            return _COUNTS[key]
    n = _count(spec, cfg)
    with _COUNTS_LOCK:
        _COUNTS[key] = n
    return n


def _count(spec: BackboneSpec, cfg: BackboneConfig) -> int:
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG stream untouched
        return count_parameters(spec.module_cls(cfg))


def _default(cls: type[BackboneConfig], field_name: str) -> Any:
    for f in dataclasses.fields(cls):
        if f.name == field_name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
    return None


def size_backbone(
    name: str,
    budget: int = 1_000_000,
    d_model: int = 128,
    tol: float = 0.05,
    base: dict[str, Any] | None = None,
    tie_tol: float = 0.01,
) -> tuple[BackboneConfig, int]:
    """Config of backbone ``name`` with about ``budget`` trainable parameters at ``d_model``.

    Parameters
    ----------
    name : registered backbone name (see ``registry.available_backbones()``).
    budget : target number of trainable backbone parameters.
    d_model : model width, kept fixed.
    tol : accepted relative deviation from the budget.
    base : other config fields, kept fixed (a size knob given here is not searched).
    tie_tol : distances to the budget are compared in steps of ``tie_tol · budget``.

    Returns
    -------
    (config, n_parameters) of the selected candidate (rule in the module docstring).

    Raises
    ------
    ConfigError
        If no candidate lies within ``budget · (1 ± tol)`` (the message names the best count),
        or the arguments are invalid.
    """
    if budget < 1:
        raise ConfigError(f"parameter budget must be >= 1, got {budget}")
    if not 0.0 <= tol < 1.0:
        raise ConfigError(f"sizing tolerance must be in [0, 1), got {tol}")
    if tie_tol < 0:
        raise ConfigError(f"sizing tie tolerance must be >= 0, got {tie_tol}")
    spec = backbone_spec(name)
    cls = spec.config_cls
    fixed = dict(base or {})
    if fixed.get("d_model", d_model) != d_model:
        raise ConfigError(f"base sets d_model={fixed['d_model']} but d_model={d_model} was asked")
    fixed["d_model"] = d_model
    unknown = set(fixed) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ConfigError(f"size_backbone({name!r}): unknown config field(s) {sorted(unknown)}")

    knobs = {k: tuple(v) for k, v in getattr(cls, "SIZE_KNOBS", {}).items() if k not in fixed}
    depth_knob = getattr(cls, "DEPTH_KNOB", "n_layers")
    default_depth = _default(cls, depth_knob)

    best: tuple[tuple[Any, ...], BackboneConfig, int] | None = None
    n_valid = 0
    last_error: ConfigError | None = None
    for i, combo in enumerate(itertools.product(*knobs.values())):
        fields = {**fixed, **dict(zip(knobs, combo, strict=True))}
        try:
            cfg = make_backbone_config(name, **fields)
        except ConfigError as exc:
            last_error = exc
            continue  # a combination the config rejects (e.g. heads not dividing d_model)
        n_valid += 1
        n = count_backbone_parameters(spec, cfg)
        depth = getattr(cfg, depth_knob, None)
        if isinstance(depth, int) and isinstance(default_depth, int):
            depth_key: tuple[int, int] = (abs(depth - default_depth), depth)
        else:
            depth_key = (0, 0)
        dist = abs(n - budget)
        step = int(dist // (tie_tol * budget)) if tie_tol > 0 else dist
        key = (step, *depth_key, dist, i)
        if best is None or key < best[0]:
            best = (key, cfg, n)

    if best is None:
        raise ConfigError(
            f"size_backbone({name!r}): no valid configuration among the size knobs "
            f"(last error: {last_error})"
        )
    _, cfg, n = best
    if abs(n - budget) > tol * budget:
        raise ConfigError(
            f"size_backbone({name!r}): no configuration within ±{tol:.0%} of {budget:,} "
            f"parameters at d_model={d_model}; closest is {n:,} "
            f"({(n - budget) / budget:+.1%}) with {dataclasses.asdict(cfg)}"
        )
    log.debug("sized %s to %d parameters (%d candidates): %s", name, n, n_valid, cfg)
    return cfg, n
