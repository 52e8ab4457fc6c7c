"""The assembled model: embedding → backbone → head, and its checkpoint format.

    h₀ = Embedding(values, ν, mask)        (B, L', d_model)   (``embedding``)
    h  = Backbone(h₀)                      (B, L', d_model)   (any registered backbone)
    out = Head(h, mask', L)                dict, main output ``"pred"``   (``heads``)

``forward`` also returns ``"features"`` (h) and ``"wavenumber"`` (the grid the backbone sees,
ν pooled by the embedding stride). A checkpoint holds the model config as a plain JSON-able
dict (so any script can rebuild the model) and the state dict; it is written atomically
(temp file + ``os.replace``) and read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spektron.config import from_dict, to_dict
from spektron.errors import CheckpointError, ConfigError
from spektron.models.embedding import EmbeddingConfig, SpectrumEmbedding
from spektron.models.heads import HEADS, build_head, make_head_config
from spektron.models.registry import (
    BackboneConfig,
    build_backbone,
    count_parameters,
    make_backbone_config,
)
from spektron.utils import torch_save_atomic

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "spektron-model"
CHECKPOINT_VERSION = 1


@dataclass
class SpektronConfig:
    """Model config. ``d_model`` is shared by embedding, backbone and head; ``backbone_config``
    holds the backbone's own fields (its ``d_model`` is filled in from here)."""

    d_model: int = 128
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    backbone: str = "dlinoss"
    backbone_config: dict[str, Any] = field(default_factory=dict)
    head: str = "reconstruction"
    head_config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.d_model < 1:
            raise ConfigError(f"model.d_model must be >= 1, got {self.d_model}")
        for name in ("backbone_config", "head_config"):
            if not isinstance(getattr(self, name), dict):
                raise ConfigError(f"model.{name} must be a mapping, got {getattr(self, name)!r}")
        d = self.backbone_config.get("d_model", self.d_model)
        if d != self.d_model:
            raise ConfigError(
                f"model.backbone_config.d_model = {d} differs from model.d_model = {self.d_model}"
            )
        if self.head not in HEADS:
            raise ConfigError(f"unknown head {self.head!r}; choose one of {sorted(HEADS)}")
        self.backbone_cfg()  # validates the backbone fields (imports that backbone's module)
        make_head_config(self.head, self.head_config)

    def backbone_cfg(self) -> BackboneConfig:
        fields = {**self.backbone_config, "d_model": self.d_model}
        try:
            return make_backbone_config(self.backbone, **fields)
        except ImportError as e:
            raise ConfigError(f"backbone {self.backbone!r} is not available: {e}") from e

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON types only (tuples become lists)."""
        return json.loads(json.dumps(to_dict(self)))

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> SpektronConfig:
        return from_dict(cls, data, where="model")


class Spektron(nn.Module):
    """Embedding → backbone → head. ``forward(values, wavenumber, mask=None) -> dict``."""

    def __init__(self, cfg: SpektronConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embedding = SpectrumEmbedding(cfg.embedding, cfg.d_model)
        self.backbone = build_backbone(cfg.backbone, cfg.backbone_cfg())
        self.head = build_head(cfg.head, cfg.head_config, cfg.d_model, cfg.embedding.stride)

    def forward(
        self, values: torch.Tensor, wavenumber: torch.Tensor, mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """values (B, L), wavenumber (L,) or (B, L) in cm⁻¹, mask (B, L) with 1 = masked."""
        h = self.embedding(values, wavenumber, mask)  # (B, L', D)
        h = self.backbone(h)  # (B, L', D)
        m = None if mask is None else self.embedding.output_mask(mask)  # (B, L')
        out = self.head(h, mask=m, length=values.shape[1])
        out["features"] = h  # (B, L', D)
        out["wavenumber"] = self.embedding.output_grid(wavenumber)  # (L',) or (B, L')
        return out

    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters of each part (the backbone count is the budgeted one)."""
        parts = {
            "embedding": count_parameters(self.embedding),
            "backbone": count_parameters(self.backbone),
            "head": count_parameters(self.head),
        }
        return {**parts, "total": sum(parts.values())}

    # ------------------------------------------------------------------ checkpoints

    def checkpoint_state(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """What a checkpoint holds; a trainer can nest it in its own checkpoint.

        ``extra`` must hold only types that ``torch.load(weights_only=True)`` accepts (plain
        Python containers and scalars, tensors).
        """
        from spektron import __version__

        return {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "package_version": __version__,
            "config": self.cfg.to_json_dict(),
            "state_dict": self.state_dict(),
            "extra": extra or {},
        }

    def save_checkpoint(self, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
        """Write the checkpoint atomically: temp file in the same folder, then ``os.replace``."""
        return torch_save_atomic(self.checkpoint_state(extra), path)

    @classmethod
    def from_checkpoint_state(cls, state: dict[str, Any], source: str = "checkpoint") -> Spektron:
        """Rebuild from :meth:`checkpoint_state` output (``source`` names it in errors)."""
        _check_payload(state, source)
        try:
            cfg = SpektronConfig.from_json_dict(state["config"])
        except ConfigError as e:
            raise CheckpointError(f"{source}: invalid model config: {e}") from e
        model = cls(cfg)
        try:
            model.load_state_dict(state["state_dict"], strict=True)
        except (RuntimeError, KeyError, TypeError) as e:
            raise CheckpointError(f"{source}: weights do not match the stored config: {e}") from e
        return model.eval()

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike, map_location: str | torch.device = "cpu"
    ) -> Spektron:
        """Load a model saved by :meth:`save_checkpoint` (returned in eval mode)."""
        state = read_checkpoint(path, map_location)
        return cls.from_checkpoint_state(state, source=str(path)).to(map_location)


def read_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """The checkpoint payload (config, state dict, extra), validated; never unpickles code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for truncated / foreign / unsafe files
        text = str(e)
        if "Unsupported global" in text:
            # torch's advice (load with weights_only=False) would run the file's code.
            raise CheckpointError(
                f"{path}: not a Spektron model checkpoint: it holds Python objects beyond "
                "tensors and plain data, which Spektron checkpoints never do, so it is not loaded"
            ) from None
        if text.startswith("Weights only load failed"):
            raise CheckpointError(
                f"{path}: cannot read checkpoint (not a file torch.save wrote, or damaged)"
            ) from None
        first = (text.splitlines() or [""])[0]
        raise CheckpointError(
            f"{path}: cannot read checkpoint ({type(e).__name__}: {first})"
        ) from e
    inner = state.get("model") if isinstance(state, dict) else None
    if isinstance(inner, dict) and inner.get("format") == CHECKPOINT_FORMAT:
        # A training checkpoint (the trainer's resume state) wraps the model of its last step.
        log.warning(
            "%s: a training checkpoint (step %s); using the model it holds. best.pt beside it "
            "holds the best-validation weights",
            path,
            state.get("step"),
        )
        state = inner
    _check_payload(state, str(path))
    return state


def _check_payload(state: Any, source: str) -> None:
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{source}: not a Spektron model checkpoint")
    version = state.get("format_version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{source}: checkpoint format version {version!r} is not supported "
            f"(this package reads up to {CHECKPOINT_VERSION})"
        )
    missing = [k for k in ("config", "state_dict") if not isinstance(state.get(k), dict)]
    if missing:
        raise CheckpointError(f"{source}: checkpoint lacks {missing}")


__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "Spektron",
    "SpektronConfig",
    "read_checkpoint",
]
