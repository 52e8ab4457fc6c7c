"""Heads on top of the backbone features h (B, L', d_model).

Every head is built as ``Head(cfg, d_model, stride)`` from its config dataclass, is registered
in :data:`HEADS`, and is called as ``head(h, mask=m', length=L)`` (m' (B, L') is the mask at the
backbone's resolution, 1 = masked/unknown; L the input length). It returns a dict whose main
output is ``"pred"``.

- ``reconstruction``: masked-spectrum reconstruction, per position → the spectrum value.
- ``cross_spectral``: sequence → sequence, per position → the value of another spectrum (Raman
  from IR and back), optionally non-negative through softplus.
  With embedding stride s > 1, both per-position heads predict s values per position (position
  i covers inputs i·s … i·s + s − 1) and are cut back to L (sub-pixel upsampling).
- ``regression``: masked-aware mean pool p = Σ_i w_i h_i / Σ_i w_i (w = 1 − m') → MLP →
  n_targets (fine-tuning).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from spektron.config import from_dict
from spektron.errors import ConfigError


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass
class ReconstructionHeadConfig:
    hidden: int = 0  # 0: one linear map per position; > 0: Linear → GELU → Linear
    dropout: float = 0.0
    # Start the last layer at zero, so an untrained model predicts 0 everywhere instead of
    # unit-scale noise (max-normalised spectra are mostly near 0); as ReZero-style inits do.
    zero_init: bool = True

    def __post_init__(self) -> None:
        _check(self.hidden >= 0, f"head.hidden must be >= 0, got {self.hidden}")
        _check(0.0 <= self.dropout < 1.0, f"head.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class CrossSpectralHeadConfig(ReconstructionHeadConfig):
    nonnegative: bool = False  # softplus on the output


@dataclass
class RegressionHeadConfig:
    n_targets: int = 1
    hidden: int = 128  # 0: linear read-out of the pooled features
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _check(self.n_targets >= 1, f"head.n_targets must be >= 1, got {self.n_targets}")
        _check(self.hidden >= 0, f"head.hidden must be >= 0, got {self.hidden}")
        _check(0.0 <= self.dropout < 1.0, f"head.dropout must be in [0, 1), got {self.dropout}")


def masked_mean_pool(h: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of h (B, L', D) over unmasked positions (mask 1 = excluded) → (B, D).

    A sequence with every position masked pools to zeros.
    """
    if mask is None:
        return h.mean(dim=1)  # (B, D)
    w = 1.0 - mask.to(h.dtype)  # (B, L')
    total = (h * w.unsqueeze(-1)).sum(dim=1)  # (B, D)
    return total / w.sum(dim=1, keepdim=True).clamp_min(1.0)  # (B, D)


def _mlp(d_in: int, hidden: int, d_out: int, dropout: float) -> nn.Module:
    if hidden == 0:
        return nn.Linear(d_in, d_out)
    return nn.Sequential(
        nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d_out)
    )


class ReconstructionHead(nn.Module):
    """Per position → ``stride`` values, cut back to L: (B, L', D) → pred (B, L)."""

    def __init__(self, cfg: ReconstructionHeadConfig, d_model: int, stride: int = 1) -> None:
        super().__init__()
        self.cfg = cfg
        self.stride = stride
        self.norm = nn.LayerNorm(d_model)
        self.mlp = _mlp(d_model, cfg.hidden, stride, cfg.dropout)
        if cfg.zero_init:
            last = self.mlp if isinstance(self.mlp, nn.Linear) else self.mlp[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def per_position(self, h: torch.Tensor, length: int) -> torch.Tensor:
        y = self.mlp(self.norm(h))  # (B, L', s)
        return y.flatten(1)[:, :length]  # (B, L)

    def forward(
        self, h: torch.Tensor, mask: torch.Tensor | None = None, length: int | None = None
    ) -> dict[str, torch.Tensor]:
        length = h.shape[1] * self.stride if length is None else length
        return {"pred": self.per_position(h, length)}  # (B, L)


class CrossSpectralHead(ReconstructionHead):
    """Sequence → sequence: per position → the target spectrum's value, (B, L', D) → (B, L)."""

    def forward(
        self, h: torch.Tensor, mask: torch.Tensor | None = None, length: int | None = None
    ) -> dict[str, torch.Tensor]:
        length = h.shape[1] * self.stride if length is None else length
        y = self.per_position(h, length)  # (B, L)
        return {"pred": F.softplus(y) if self.cfg.nonnegative else y}


class RegressionHead(nn.Module):
    """Masked mean pool → MLP → (B, n_targets)."""

    def __init__(self, cfg: RegressionHeadConfig, d_model: int, stride: int = 1) -> None:
        super().__init__()
        self.cfg = cfg
        self.norm = nn.LayerNorm(d_model)
        self.mlp = _mlp(d_model, cfg.hidden, cfg.n_targets, cfg.dropout)

    def forward(
        self, h: torch.Tensor, mask: torch.Tensor | None = None, length: int | None = None
    ) -> dict[str, torch.Tensor]:
        pooled = masked_mean_pool(self.norm(h), mask)  # (B, D)
        return {"pred": self.mlp(pooled)}  # (B, n_targets)


# name → (config class, module class).
HEADS: dict[str, tuple[type, type[nn.Module]]] = {
    "reconstruction": (ReconstructionHeadConfig, ReconstructionHead),
    "cross_spectral": (CrossSpectralHeadConfig, CrossSpectralHead),
    "regression": (RegressionHeadConfig, RegressionHead),
}


def make_head_config(name: str, fields: dict[str, Any] | None = None) -> Any:
    """Config of head ``name`` from a dict (type-checked, unknown keys rejected)."""
    if name not in HEADS:
        raise ConfigError(f"unknown head {name!r}; choose one of {sorted(HEADS)}")
    return from_dict(HEADS[name][0], fields or {}, where=f"head.{name}")


def build_head(name: str, fields: dict[str, Any] | None, d_model: int, stride: int) -> nn.Module:
    return HEADS[name][1](make_head_config(name, fields), d_model, stride)
