"""CNN1D backbone: residual blocks of dilated 1-D convolutions (docs/DESIGN.md §3.3).

A non-causal temporal convolutional network in the style of Bai, Kolter & Koltun (2018), "An
empirical evaluation of generic convolutional and recurrent networks for sequence modeling",
with pre-norm residual blocks. Block i uses dilation d_i = dilation_cycle[i mod len(cycle)]
(default 1, 2, 4, 8, 1, 2, ...) and inner width ``hidden``:

    h = Dropout(GELU(Conv_{k, d_i}(LN(x))))           Conv: H → hidden channels
    x ← x + Dropout(Conv_{k, d_i}(h))                  Conv: hidden → H channels
    out = LN(x)                                        (final norm after the stack)

Each convolution is a bank of learned FIR filters along the spectral axis; "same" zero
padding, d·(k − 1) positions split as ⌊·/2⌋ left and the rest right (as PyTorch's
``padding="same"``, asymmetric for even k), keeps the length L for any L ≥ 1. One block widens the
receptive field by 2·d_i·(k − 1) positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from spektron.errors import ConfigError
from spektron.models.registry import BackboneConfig, register_backbone


@dataclass
class CNNConfig(BackboneConfig):
    SIZE_KNOBS: ClassVar[dict[str, tuple[int, ...]]] = {
        "n_layers": (2, 3, 4, 5, 6, 7, 8, 10, 12, 16),
        "hidden": (32, 48, 64, 80, 96, 112, 128, 144, 160, 192, 224, 256, 320, 384, 448, 512),
    }
    # Tuning: kernel width and the dilation pattern (no dilation, or the cycle 1, 2, 4, 8).
    TUNE_KNOBS: ClassVar[dict[str, tuple[Any, ...]]] = {
        "kernel_size": (3, 5, 9),
        "dilation_cycle": ((1,), (1, 2, 4, 8)),
    }

    n_layers: int = 8
    kernel_size: int = 5
    # Inner channels of each block (first conv H → hidden, second hidden → H).
    hidden: int = 128
    dilation_cycle: tuple[int, ...] = (1, 2, 4, 8)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_layers < 1:
            raise ConfigError(f"CNNConfig.n_layers must be >= 1, got {self.n_layers}")
        if self.kernel_size < 1:
            raise ConfigError(f"CNNConfig.kernel_size must be >= 1, got {self.kernel_size}")
        if self.hidden < 1:
            raise ConfigError(f"CNNConfig.hidden must be >= 1, got {self.hidden}")
        self.dilation_cycle = tuple(self.dilation_cycle)
        if not self.dilation_cycle or any(
            not isinstance(d, int) or d < 1 for d in self.dilation_cycle
        ):
            raise ConfigError(
                f"CNNConfig.dilation_cycle must be positive integers, got {self.dilation_cycle}"
            )

    def receptive_field(self) -> int:
        """Positions of input that one output position sees (both sides together)."""
        d = [self.dilation_cycle[i % len(self.dilation_cycle)] for i in range(self.n_layers)]
        return 1 + 2 * (self.kernel_size - 1) * sum(d)


class ConvBlock(nn.Module):
    def __init__(self, cfg: CNNConfig, dilation: int) -> None:
        super().__init__()
        k = cfg.kernel_size
        self.norm = nn.LayerNorm(cfg.d_model)
        self.conv1 = nn.Conv1d(cfg.d_model, cfg.hidden, k, dilation=dilation)
        self.conv2 = nn.Conv1d(cfg.hidden, cfg.d_model, k, dilation=dilation)
        total = dilation * (k - 1)
        # Explicit "same" padding (PyTorch's own copies the input for even k with odd dilation).
        self.pad = (total // 2, total - total // 2)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x).transpose(1, 2)  # (B, H, L): channels first for Conv1d
        h = self.dropout(F.gelu(self.conv1(F.pad(h, self.pad))))  # (B, hidden, L)
        h = self.conv2(F.pad(h, self.pad)).transpose(1, 2)  # (B, L, H)
        return x + self.dropout(h)  # (B, L, H)


@register_backbone("cnn", CNNConfig)
class CNN1D(nn.Module):
    """Residual dilated 1-D CNN: (B, L, d_model) → (B, L, d_model)."""

    def __init__(self, cfg: CNNConfig) -> None:
        super().__init__()
        self.cfg = cfg
        cycle = cfg.dilation_cycle
        self.blocks = nn.ModuleList(
            ConvBlock(cfg, cycle[i % len(cycle)]) for i in range(cfg.n_layers)
        )
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)  # (B, L, H)
        return self.norm(x)  # (B, L, H)
