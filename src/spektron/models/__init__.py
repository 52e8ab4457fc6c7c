"""The model: embedding, backbones (registry, parameter-matched sizing) and heads.

Re-exported here: ``Spektron``, ``SpektronConfig``, ``read_checkpoint``, the backbone registry
(``build_backbone``, ``make_backbone_config``, ``available_backbones``, ``backbone_spec``,
``register_backbone``, ``BackboneConfig``, ``count_parameters``) and ``size_backbone``. Each
is imported from its module on first use.
"""

from typing import TYPE_CHECKING

from spektron.utils import lazy_exports

_EXPORTS = {
    "Spektron": "spektron",
    "SpektronConfig": "spektron",
    "read_checkpoint": "spektron",
    "BackboneConfig": "registry",
    "available_backbones": "registry",
    "backbone_spec": "registry",
    "build_backbone": "registry",
    "count_parameters": "registry",
    "make_backbone_config": "registry",
    "register_backbone": "registry",
    "size_backbone": "sizing",
}
__all__ = [
    "BackboneConfig",
    "Spektron",
    "SpektronConfig",
    "available_backbones",
    "backbone_spec",
    "build_backbone",
    "count_parameters",
    "make_backbone_config",
    "read_checkpoint",
    "register_backbone",
    "size_backbone",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

if TYPE_CHECKING:
    from spektron.models.registry import (
        BackboneConfig,
        available_backbones,
        backbone_spec,
        build_backbone,
        count_parameters,
        make_backbone_config,
        register_backbone,
    )
    from spektron.models.sizing import size_backbone
    from spektron.models.spektron import Spektron, SpektronConfig, read_checkpoint
