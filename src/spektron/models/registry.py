"""One registry of sequence backbones (docs/DESIGN.md §3.1).

Contract: a backbone is an ``nn.Module`` built as ``Backbone(cfg)`` from its own config
dataclass (a subclass of :class:`BackboneConfig`), mapping ``(B, L, d_model) → (B, L, d_model)``.
Backbone modules register themselves with :func:`register_backbone`; the registry knows only
their module paths, so a backbone with a heavy optional dependency (Mamba) is imported only
when it is chosen.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from spektron.config import from_dict
from spektron.errors import ConfigError

# name → module that registers it on import.
BACKBONE_MODULES: dict[str, str] = {
    "dlinoss": "spektron.models.backbones.dlinoss",
    "dlinoss_sigmoid": "spektron.models.backbones.dlinoss",
    "s4d": "spektron.models.backbones.s4d",
    "s4d_real": "spektron.models.backbones.s4d",
    "mamba": "spektron.models.backbones.mamba",
    "transformer": "spektron.models.backbones.transformer",
    "cnn": "spektron.models.backbones.cnn",
}


@dataclass
class BackboneConfig:
    """Fields every backbone config has. Subclasses add their own (depth, widths, ...)."""

    d_model: int = 128
    dropout: float = 0.0

    # The arm's own knobs for the tuning protocol (field → candidate values, ordered where
    # numeric): one or two per backbone; the sizer still meets the parameter budget.
    TUNE_KNOBS: ClassVar[dict[str, tuple[Any, ...]]] = {}

    def __post_init__(self) -> None:
        if self.d_model < 1:
            raise ConfigError(f"d_model must be >= 1, got {self.d_model}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    config_cls: type[BackboneConfig]
    module_cls: type[nn.Module]


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(
    name: str, config_cls: type[BackboneConfig]
) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: ``@register_backbone("cnn", CNNConfig)``."""

    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _REGISTRY and _REGISTRY[name].module_cls is not cls:
            raise ConfigError(f"backbone {name!r} registered twice")
        _REGISTRY[name] = BackboneSpec(name, config_cls, cls)
        return cls

    return deco


def available_backbones() -> list[str]:
    return sorted(BACKBONE_MODULES)


def backbone_spec(name: str) -> BackboneSpec:
    """Spec of a registered backbone, importing its module on first use."""
    if name not in BACKBONE_MODULES:
        raise ConfigError(f"unknown backbone {name!r}; choose one of {available_backbones()}")
    if name not in _REGISTRY:
        importlib.import_module(BACKBONE_MODULES[name])
    if name not in _REGISTRY:
        raise ConfigError(f"module {BACKBONE_MODULES[name]} did not register backbone {name!r}")
    return _REGISTRY[name]


def make_backbone_config(name: str, **fields: Any) -> BackboneConfig:
    """Config of backbone ``name`` from keyword fields (type-checked, unknown keys rejected)."""
    return from_dict(backbone_spec(name).config_cls, fields, where=f"backbone.{name}")


def build_backbone(name: str, cfg: BackboneConfig | dict[str, Any] | None = None) -> nn.Module:
    """Instantiate backbone ``name`` from its config (or a dict of its fields)."""
    spec = backbone_spec(name)
    if cfg is None:
        cfg = spec.config_cls()
    elif isinstance(cfg, dict):
        cfg = make_backbone_config(name, **cfg)
    elif not isinstance(cfg, spec.config_cls):
        raise ConfigError(f"backbone {name!r} needs a {spec.config_cls.__name__}, got {type(cfg)}")
    return spec.module_cls(cfg)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
