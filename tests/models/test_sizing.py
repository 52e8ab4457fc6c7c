"""Parameter matching: size_backbone keeps d_model fixed and meets the budget by depth/width."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from torch import nn

from spektron.errors import ConfigError
from spektron.models import registry
from spektron.models.registry import (
    BackboneConfig,
    backbone_spec,
    build_backbone,
    count_parameters,
    register_backbone,
)
from spektron.models.sizing import size_backbone

MINE = ["s4d", "s4d_real", "transformer", "cnn"]


@pytest.mark.parametrize("name", MINE)
def test_sized_count_equals_the_built_models_count(name):
    cfg, n = size_backbone(name, budget=200_000, d_model=64, tol=0.1)
    assert n == count_parameters(build_backbone(name, cfg))
    assert cfg.d_model == 64


@pytest.mark.parametrize("name", MINE)
def test_sized_configs_are_near_the_budget_and_keep_defaults(name):
    cfg, n = size_backbone(name, budget=500_000, d_model=96, tol=0.05)
    assert abs(n - 500_000) <= 25_000
    default = backbone_spec(name).config_cls()
    knobs = set(type(cfg).SIZE_KNOBS)
    for f in dataclasses.fields(cfg):  # only the size knobs (and d_model) move
        if f.name not in knobs | {"d_model"}:
            assert getattr(cfg, f.name) == getattr(default, f.name), f.name


def test_base_fields_are_kept_and_their_knobs_not_searched():
    cfg, n = size_backbone("cnn", base={"n_layers": 4, "kernel_size": 7, "dropout": 0.1})
    assert (cfg.n_layers, cfg.kernel_size, cfg.dropout) == (4, 7, 0.1)
    assert abs(n - 1_000_000) <= 50_000
    cfg, _ = size_backbone("s4d", base={"init": "inv"})
    assert cfg.init == "inv"


def test_impossible_budget_names_the_best_count():
    with pytest.raises(ConfigError, match=r"closest is [\d,]+"):
        size_backbone("cnn", budget=10**9)
    with pytest.raises(ConfigError, match="closest is"):
        size_backbone("transformer", budget=1_000_000, tol=0.0)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="unknown"):
        size_backbone("cnn", base={"n_layer": 3})
    with pytest.raises(ConfigError, match="d_model"):
        size_backbone("cnn", d_model=64, base={"d_model": 128})
    with pytest.raises(ConfigError, match="unknown backbone"):
        size_backbone("lstm")
    with pytest.raises(ConfigError, match="budget"):
        size_backbone("cnn", budget=0)


def test_sizing_leaves_the_rng_untouched():
    torch.manual_seed(3)
    state = torch.random.get_rng_state()
    size_backbone("s4d", budget=300_000)
    assert torch.equal(torch.random.get_rng_state(), state)


# A toy backbone with a known count, 1000·n_layers + 10·width, to pin the selection rule.
@dataclass
class _ToyConfig(BackboneConfig):
    SIZE_KNOBS: ClassVar[dict[str, tuple[int, ...]]] = {
        "n_layers": (1, 2, 3, 4, 5, 6),
        "width": tuple(range(0, 1001, 10)),
    }
    n_layers: int = 4
    width: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.width == 500:
            raise ConfigError("width 500 is rejected")


class _Toy(nn.Module):
    def __init__(self, cfg: _ToyConfig) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1000 * cfg.n_layers + 10 * cfg.width))


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(registry.BACKBONE_MODULES, "toy", __name__)
    monkeypatch.setitem(registry._REGISTRY, "toy", registry._REGISTRY.get("toy"))
    registry._REGISTRY.pop("toy")
    register_backbone("toy", _ToyConfig)(_Toy)
    return "toy"


def _brute_force(budget: int, tie_tol: float):
    rows = []
    for n_layers, width in itertools.product(*_ToyConfig.SIZE_KNOBS.values()):
        if width == 500:
            continue
        n = 1000 * n_layers + 10 * width
        step = abs(n - budget) // (tie_tol * budget) if tie_tol else abs(n - budget)
        rows.append(((step, abs(n_layers - 4), n_layers, abs(n - budget)), (n_layers, width)))
    return min(rows)[1]


@pytest.mark.parametrize("budget", [3_000, 5_000, 7_777, 9_050, 11_000])
@pytest.mark.parametrize("tie_tol", [0.0, 0.01, 0.05])
def test_selection_rule(toy, budget, tie_tol):
    cfg, n = size_backbone(toy, budget=budget, tol=0.5, tie_tol=tie_tol)
    assert (cfg.n_layers, cfg.width) == _brute_force(budget, tie_tol)
    assert n == 1000 * cfg.n_layers + 10 * cfg.width


def test_exact_ties_prefer_the_default_depth(toy):
    # 5000 = 4·1000 + 10·100 = 5·1000 + 0 = 3·1000 + 10·200: the default depth 4 wins.
    cfg, n = size_backbone(toy, budget=5_000, tol=0.0, tie_tol=0.0)
    assert (cfg.n_layers, n) == (4, 5_000)
    # With the depth fixed through base, the width alone meets the budget exactly.
    cfg, _ = size_backbone(toy, budget=12_000, tol=0.0, tie_tol=0.0, base={"n_layers": 3})
    assert (cfg.n_layers, cfg.width) == (3, 900)


def test_counts_are_remembered_per_config(monkeypatch):
    from spektron.models import sizing

    built = []
    real = sizing._count
    monkeypatch.setattr(sizing, "_count", lambda spec, cfg: built.append(cfg) or real(spec, cfg))
    monkeypatch.setattr(sizing, "_COUNTS", {})
    first = size_backbone("cnn", budget=150_000, d_model=64)
    n_built = len(built)
    assert n_built > 1
    again = size_backbone("cnn", budget=150_000, d_model=64)
    assert again == first and len(built) == n_built  # nothing rebuilt
    size_backbone("cnn", budget=150_000, d_model=32)  # another config: counted afresh
    assert len(built) > n_built
