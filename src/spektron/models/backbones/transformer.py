"""Pre-norm Transformer encoder backbone (docs/DESIGN.md §3.3).

Vaswani et al. (2017), "Attention is all you need", in the pre-norm arrangement of Xiong et
al. (2020), "On layer normalization in the Transformer architecture". Per layer:

    x ← x + Dropout(W_o · MHA(LN(x)))          MHA_h = softmax(Q_h K_hᵀ / √d_head) V_h
    x ← x + Dropout(W_2 · Dropout(GELU(W_1 · LN(x))))
    out = LN(x)                                  (final norm after the stack)

Attention is bidirectional (no mask) and computed by
``torch.nn.functional.scaled_dot_product_attention`` (fused kernels where available).

No positional embedding of its own: the shared embedding encodes each position's actual
wavenumber value (docs/DESIGN.md §3.4), which is the positional information attention sees. Used on
inputs without that encoding, this backbone is permutation-equivariant along L.
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
class TransformerConfig(BackboneConfig):
    SIZE_KNOBS: ClassVar[dict[str, tuple[int, ...]]] = {
        "n_layers": (1, 2, 3, 4, 5, 6, 7, 8, 10, 12),
        "d_ff": tuple(range(128, 1025, 64)),
    }
    # Tuning: depth and heads (the sizer then sets the FFN width). At ~150K parameters and
    # d_model 64 at most 3 layers meet the budget on the FFN grid (attention alone is 4·H² per
    # layer), so the depths tried are 1-3.
    TUNE_KNOBS: ClassVar[dict[str, tuple[Any, ...]]] = {"n_layers": (1, 2, 3), "n_heads": (2, 4, 8)}

    n_layers: int = 4
    n_heads: int = 4
    # FFN inner width; None → ffn_mult · d_model.
    d_ff: int | None = None
    ffn_mult: int = 4
    # Dropout on the attention probabilities (``dropout`` acts on the residual branches).
    attn_dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_layers < 1:
            raise ConfigError(f"TransformerConfig.n_layers must be >= 1, got {self.n_layers}")
        if self.n_heads < 1 or self.d_model % self.n_heads:
            raise ConfigError(
                f"TransformerConfig.n_heads ({self.n_heads}) must divide d_model ({self.d_model})"
            )
        if self.ffn_mult < 1:
            raise ConfigError(f"TransformerConfig.ffn_mult must be >= 1, got {self.ffn_mult}")
        if self.d_ff is not None and self.d_ff < 1:
            raise ConfigError(f"TransformerConfig.d_ff must be >= 1 or null, got {self.d_ff}")
        if not 0.0 <= self.attn_dropout < 1.0:
            raise ConfigError(
                f"TransformerConfig.attn_dropout must be in [0, 1), got {self.attn_dropout}"
            )

    @property
    def ffn_width(self) -> int:
        return self.d_ff if self.d_ff is not None else self.ffn_mult * self.d_model


class SelfAttention(nn.Module):
    """Bidirectional multi-head self-attention, (B, L, H) → (B, L, H)."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.attn_dropout = cfg.attn_dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, H = x.shape
        q, k, v = self.qkv(x).split(H, dim=-1)  # 3 × (B, L, H)
        q, k, v = (t.view(B, L, self.n_heads, -1).transpose(1, 2) for t in (q, k, v))  # (B,nh,L,dh)
        p = self.attn_dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # (B, nh, L, dh)
        y = y.transpose(1, 2).reshape(B, L, H)  # (B, L, H)
        return self.proj(y)  # (B, L, H)


class TransformerLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.attn = SelfAttention(cfg)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.ff1 = nn.Linear(cfg.d_model, cfg.ffn_width)
        self.ff2 = nn.Linear(cfg.ffn_width, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.norm1(x)))  # (B, L, H)
        h = self.dropout(F.gelu(self.ff1(self.norm2(x))))  # (B, L, d_ff)
        return x + self.dropout(self.ff2(h))  # (B, L, H)


@register_backbone("transformer", TransformerConfig)
class Transformer(nn.Module):
    """Pre-norm Transformer encoder: (B, L, d_model) → (B, L, d_model)."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList(TransformerLayer(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)  # (B, L, H)
        return self.norm(x)  # (B, L, H)
