"""Bidirectional Mamba backbone (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with
Selective State Spaces", arXiv:2312.00752), wrapped around the pure-PyTorch ``mambapy``.

Selective SSM per channel c and state n (A diagonal, negative real; Δ, B, C depend on the input):

    Δ_t = softplus(W_Δ u_t + b_Δ),   Ā_t = exp(Δ_t A),   B̄_t = Δ_t B_t      (simplified ZOH)
    h_t = Ā_t ⊙ h_{t−1} + B̄_t u_t,    y_t = C_t · h_t + D ⊙ u_t

inside the Mamba block: in_proj → (x, z); x → causal depthwise conv → SiLU → selective SSM;
y ⊙ SiLU(z) → out_proj. Each residual layer here is ``u + dropout(block(RMSNorm(u)))``.

Bidirectional by flipping: a forward stack reads the sequence left to right, a backward stack
(its own parameters) reads the flipped sequence; each stack ends with an RMSNorm and the two
outputs are combined by a sum or by concatenation + a linear projection (``combine``; the
projection counts in the parameter budget).

Backends. Everything but the scan is ``mambapy``'s block (import ``mambapy.mamba`` only:
``mambapy.lm`` imports ``mamba_ssm`` unconditionally). The scan itself: on the CPU, compiled
forward/backward kernels (``scan="compiled"``, :mod:`.selective_scan`; the same recurrence,
equal to mambapy's loop to float32 rounding); mambapy's Blelloch parallel scan
(``scan="parallel"``) or its plain loop (``scan="sequential"``, the slow reference). ``auto``
is the compiled kernel for CPU inputs and the parallel scan otherwise. For inputs on CUDA with
``mamba_ssm`` installed, the fused ``selective_scan_fn`` runs with the same weights (mambapy's
``use_cuda`` path). mambapy would ``print`` when that import fails; we never ask it to import
and instead warn once through :mod:`warnings`.

Lengths. mambapy's parallel scan works on powers of two. When it runs, the wrapper pads the
input on the right to the next power of two and cuts the output back. Every operation of a
stack is causal (depthwise conv padded on the left, the scan, and position-wise maps), so
positions ≥ L never reach positions < L; the backward stack runs on the flipped sequence,
which is padded on the right as well, so the same holds for it.

The selective scan runs in float32 even under autocast (the recurrence over 2048 steps is too
coarse in bf16 and the fused kernel rejects half precision).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from spektron.errors import ConfigError
from spektron.models.backbones import selective_scan as compiled
from spektron.models.registry import BackboneConfig, register_backbone

COMBINES = ("sum", "concat")
BACKENDS = ("auto", "torch")
SCANS = ("auto", "compiled", "parallel", "sequential")


@dataclass
class MambaBackboneConfig(BackboneConfig):
    """Bidirectional Mamba stack.

    ``backend``: "auto" uses ``mamba_ssm``'s fused kernel for CUDA inputs when installed, else
    the scan below; "torch" never uses the fused kernel. ``scan`` (when the fused kernel does not
    run): "compiled" is the CPU kernel, "parallel" mambapy's parallel scan, "sequential" its
    loop (the reference); "auto" is "compiled" for CPU inputs and "parallel" otherwise.
    """

    n_layers: int = 4
    d_state: int = 16
    expand: int = 2
    d_conv: int = 4
    dt_rank: int | None = None  # None: ceil(d_model / 16), as Mamba
    bidirectional: bool = True
    combine: str = "sum"
    backend: str = "auto"
    scan: str = "auto"
    # Δ initialisation range (log-uniform), as Mamba.
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    norm_eps: float = 1e-5

    SIZE_KNOBS: ClassVar[dict[str, tuple[int, ...]]] = {
        "n_layers": (1, 2, 3, 4, 5, 6, 8, 10, 12),
        "expand": (1, 2, 3, 4),
        "d_state": (4, 8, 16, 32),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("n_layers", "d_state", "expand", "d_conv"):
            if getattr(self, name) < 1:
                raise ConfigError(f"mamba.{name} must be >= 1, got {getattr(self, name)}")
        if self.dt_rank is not None and self.dt_rank < 1:
            raise ConfigError(f"mamba.dt_rank must be >= 1 or null (auto), got {self.dt_rank}")
        if self.combine not in COMBINES:
            raise ConfigError(f"mamba.combine must be one of {COMBINES}, got {self.combine!r}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"mamba.backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.scan not in SCANS:
            raise ConfigError(f"mamba.scan must be one of {SCANS}, got {self.scan!r}")
        if not 0 < self.dt_min < self.dt_max:
            raise ConfigError(f"mamba needs 0 < dt_min < dt_max, got {self.dt_min}, {self.dt_max}")
        if self.norm_eps <= 0:
            raise ConfigError(f"mamba.norm_eps must be > 0, got {self.norm_eps}")


@functools.lru_cache(maxsize=1)
def fused_scan() -> Callable | None:
    """``mamba_ssm``'s fused ``selective_scan_fn``, or None when it cannot be imported."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except (ImportError, OSError, RuntimeError):  # missing, or built against another torch/CUDA
        return None
    return selective_scan_fn


_warned_fallback = False


def _warn_fallback_once() -> None:
    global _warned_fallback
    if not _warned_fallback:
        _warned_fallback = True
        warnings.warn(
            "mamba_ssm is not installed (or failed to import): Mamba runs mambapy's pure-PyTorch "
            "scan on CUDA, which is much slower than the fused kernel",
            RuntimeWarning,
            stacklevel=3,
        )


def _next_pow2(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(n)))


@functools.lru_cache(maxsize=1)
def _mambapy():
    """``mambapy.mamba`` (imported on first use; never ``mambapy.lm``, which imports mamba_ssm)
    and its Mamba block with the selective scan forced to float32 under autocast."""
    try:
        from mambapy import mamba
    except ImportError as e:
        raise ImportError("the 'mamba' backbone needs mambapy: pip install mambapy") from e

    class FP32MambaBlock(mamba.MambaBlock):
        # Set by the stack: use the compiled CPU scan where mambapy would run its parallel one.
        compiled_scan = False

        def selective_scan(self, x, delta, A, B, C, D):
            if self.compiled_scan:
                return compiled.selective_scan(x, delta, A, B, C, D)  # (B, L, ED)
            return super().selective_scan(x, delta, A, B, C, D)  # (B, L, ED)

        def ssm(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
            if not torch.is_autocast_enabled(x.device.type):
                return super().ssm(x, z)  # (B, L, ED)
            with torch.autocast(device_type=x.device.type, enabled=False):
                return super().ssm(x.float(), z.float())  # (B, L, ED)

    return mamba, FP32MambaBlock


class _Layer(nn.Module):
    """Pre-norm residual layer: u + dropout(MambaBlock(RMSNorm(u)))."""

    def __init__(self, mcfg, dropout: float, eps: float) -> None:
        super().__init__()
        mp, block_cls = _mambapy()
        self.norm = mp.RMSNorm(mcfg.d_model, eps)
        self.mixer = block_cls(mcfg)
        self.drop = nn.Dropout(dropout)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return u + self.drop(self.mixer(self.norm(u)))  # (B, L, D)


class _Stack(nn.Module):
    """One direction: n_layers residual Mamba layers + final RMSNorm."""

    def __init__(self, cfg: MambaBackboneConfig) -> None:
        super().__init__()
        mp, _ = _mambapy()
        # One mambapy config per stack, shared by its blocks. ``use_cuda`` is set per call in
        # ``forward`` (the input's device decides); it is False at construction, where mambapy
        # would import mamba_ssm itself and print on failure.
        self.mcfg = mp.MambaConfig(
            d_model=cfg.d_model,
            n_layers=cfg.n_layers,
            dt_rank=cfg.dt_rank if cfg.dt_rank is not None else "auto",
            d_state=cfg.d_state,
            expand_factor=cfg.expand,
            d_conv=cfg.d_conv,
            dt_min=cfg.dt_min,
            dt_max=cfg.dt_max,
            rms_norm_eps=cfg.norm_eps,
            pscan=cfg.scan != "sequential",
            use_cuda=False,
        )
        self.layers = nn.ModuleList(
            _Layer(self.mcfg, cfg.dropout, cfg.norm_eps) for _ in range(cfg.n_layers)
        )
        self.norm_f = mp.RMSNorm(cfg.d_model, cfg.norm_eps)
        self.scan = cfg.scan
        kernel = fused_scan()
        for layer in self.layers:
            layer.mixer.selective_scan_cuda = kernel  # what mambapy sets when use_cuda=True

    def _resolved_scan(self, x: torch.Tensor, fused: bool) -> str:
        """The scan that runs on this input: "fused", "compiled" (CPU inputs only),
        "parallel" or "sequential"."""
        if fused:
            return "fused"
        if self.scan in ("auto", "compiled") and x.device.type == "cpu" and compiled.enabled():
            return "compiled"
        return "sequential" if self.scan == "sequential" else "parallel"

    def forward(self, x: torch.Tensor, fused: bool) -> torch.Tensor:
        # x: (B, L, D)
        self.mcfg.use_cuda = fused
        scan = self._resolved_scan(x, fused)
        for layer in self.layers:
            layer.mixer.compiled_scan = scan == "compiled"
        L = x.shape[1]
        if scan == "parallel" and L != _next_pow2(L):  # mambapy's scan: powers of two only
            x = F.pad(x, (0, 0, 0, _next_pow2(L) - L))  # (B, L_pad, D), zeros on the right
        for layer in self.layers:
            x = layer(x)  # (B, L_pad, D)
        return self.norm_f(x[:, :L])  # (B, L, D)


@register_backbone("mamba", MambaBackboneConfig)
class MambaBackbone(nn.Module):
    """(B, L, d_model) → (B, L, d_model); bidirectional unless ``cfg.bidirectional`` is False
    (then strictly causal: output t depends on inputs ≤ t only)."""

    def __init__(self, cfg: MambaBackboneConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.fwd = _Stack(cfg)
        self.bwd = _Stack(cfg) if cfg.bidirectional else None
        self.proj = (
            nn.Linear(2 * cfg.d_model, cfg.d_model)
            if cfg.bidirectional and cfg.combine == "concat"
            else None
        )

    def _use_fused(self, x: torch.Tensor) -> bool:
        if not x.is_cuda or self.cfg.backend == "torch":
            return False
        if fused_scan() is None:
            _warn_fallback_once()
            return False
        return True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, L, D)
        fused = self._use_fused(x)
        y = self.fwd(x, fused)  # (B, L, D)
        if self.bwd is None:
            return y
        yb = self.bwd(x.flip(1), fused).flip(1)  # (B, L, D), position t sees inputs ≥ t
        if self.proj is None:
            return y + yb  # (B, L, D)
        return self.proj(torch.cat([y, yb], dim=-1))  # (B, L, D)
