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

Backends. The block is ``mambapy``'s (its parameters, initialisation and operations; import
``mambapy.mamba`` only: ``mambapy.lm`` imports ``mamba_ssm`` unconditionally). Without the
fused kernel our subclass computes the same operations in the (B, L, E) layout (mambapy
transposes the conv output and Δ, which sent the element-wise ops and their backwards down
PyTorch's strided path), the causal depthwise conv as shifted products, the gate y ⊙ SiLU(z),
and the softplus of Δ (differentiated from its output, so its input is not kept) with
hand-written backwards (tested equal to mambapy's block). The scan itself: on the CPU,
compiled forward/backward kernels (``scan="compiled"``, :mod:`.selective_scan`; the same
recurrence, equal to mambapy's loop to float32 rounding); mambapy's Blelloch parallel scan
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
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

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
    # Activation checkpointing per residual layer when gradients are on: keep only each layer's
    # input and recompute the layer in the backward (same outputs and gradients). Measured at
    # B 16, L 2048, ~1M parameters, 2-core CPU: live peak 3.3 -> 1.2 GB, peak RSS with glibc
    # keeping freed memory (every spektron entry point) 3.8 -> 2.7 GB, 1.26x the step time.
    # Off by default.
    checkpoint: bool = False

    SIZE_KNOBS: ClassVar[dict[str, tuple[int, ...]]] = {
        "n_layers": (1, 2, 3, 4, 5, 6, 8, 10, 12),
        "expand": (1, 2, 3, 4),
        "d_state": (4, 8, 16, 32),
    }
    # Tuning: state size and expansion (the sizer then sets the depth; at ~150K parameters and
    # d_model 64, 5 of these 9 pairs meet the budget, e.g. not d_state 16).
    TUNE_KNOBS: ClassVar[dict[str, tuple[Any, ...]]] = {"d_state": (8, 32, 64), "expand": (1, 2, 4)}

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


class _CausalDepthwiseConv(torch.autograd.Function):
    """mambapy's ``conv1d(x.transpose(1, 2))[:, :, :L]`` (depthwise, K taps, padded by K − 1
    on the left, so causal) in the (B, L, E) layout:

        y_t = b + Σ_k w_k ⊙ x_{t−K+1+k},   ∂ℓ/∂x_s = Σ_k w_k ⊙ g_{s+K−1−k},
        ∂ℓ/∂w_k = Σ_{b,t} g_t ⊙ x_{t−K+1+k},   ∂ℓ/∂b = Σ_{b,t} g_t

    (terms outside [0, L) are zero). K shifted multiply-adds into one buffer, saving only x
    (a view of the in-projection, held anyway): PyTorch's depthwise conv and its backward on
    this layout cost ~1.8 ms a layer at the quick size, and autograd over the shifted
    products kept a padded copy of x per layer."""

    @staticmethod
    def forward(ctx, x, w, bias):
        # x: (B, L, E); w: (E, K); bias: (E,) or None
        K = w.shape[1]
        L = x.shape[1]
        y = x * w[:, K - 1]  # (B, L, E): tap K − 1 is the current step
        for k in range(K - 1):
            lag = K - 1 - k
            if lag < L:
                y[:, lag:].addcmul_(x[:, : L - lag], w[:, k])
        if bias is not None:
            y += bias
        ctx.save_for_backward(x, w)
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        K = w.shape[1]
        L = x.shape[1]
        g = g.contiguous()  # (B, L, E)
        dx = g * w[:, K - 1]  # (B, L, E)
        dw = torch.empty_like(w)  # (E, K)
        dw[:, K - 1] = (g * x).sum((0, 1))
        for k in range(K - 1):
            lag = K - 1 - k
            if lag < L:
                dx[:, : L - lag].addcmul_(g[:, lag:], w[:, k])
                dw[:, k] = (g[:, lag:] * x[:, : L - lag]).sum((0, 1))
            else:
                dw[:, k] = 0
        return dx, dw, g.sum((0, 1)) if ctx.has_bias else None


class _SiLUGate(torch.autograd.Function):
    """y ⊙ SiLU(z) with σ(z) recomputed in the backward (saves y and z only):
    ∂/∂y = g z σ(z),  ∂/∂z = g y σ(z)(1 + z(1 − σ(z)))."""

    @staticmethod
    def forward(ctx, y, z):
        ctx.save_for_backward(y, z)
        return y * F.silu(z)  # (B, L, E)

    @staticmethod
    def backward(ctx, g):
        y, z = ctx.saved_tensors
        s = torch.sigmoid(z)
        gs = g * s
        dy = gs * z
        dz = gs * y * (1 + z * (1 - s))
        return dy, dz


class _Softplus(torch.autograd.Function):
    """Δ = softplus(x) saving Δ only (F.softplus keeps its input: one more (B, L, E) tensor
    per layer): ∂Δ/∂x = σ(x) = 1 − e^{−Δ} (Δ = x above F.softplus's threshold 20, where
    1 − e^{−Δ} rounds to 1 as its derivative does)."""

    @staticmethod
    def forward(ctx, x):
        out = F.softplus(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g * -torch.expm1(-out)


@functools.lru_cache(maxsize=1)
def _mambapy():
    """``mambapy.mamba`` (imported on first use; never ``mambapy.lm``, which imports mamba_ssm)
    and its Mamba block with the selective scan forced to float32 under autocast."""
    try:
        from mambapy import mamba
    except ImportError as e:
        raise ImportError("the 'mamba' backbone needs mambapy: pip install mambapy") from e

    class FP32MambaBlock(mamba.MambaBlock):
        """mambapy's block, with the same parameters and operations; on the path without the
        fused kernel its activations are kept in the (B, L, ·) layout: mambapy computes Δ and
        the conv output as (B, ED, L) and transposes them, and the element-wise ops and their
        backwards on those transposed views ran on PyTorch's strided path (SiLU's and
        softplus's backwards ~0.5 ms a call at the quick size, against ~0.1 contiguous)."""

        # Set by the stack: use the compiled CPU scan where mambapy would run its parallel one.
        compiled_scan = False

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.config.use_cuda:
                return super().forward(x)  # (B, L, D): z's gate fused into the CUDA scan
            xz = self.in_proj(x)  # (B, L, 2·ED)
            x, z = xz.chunk(2, dim=-1)  # (B, L, ED) each
            conv = self.conv1d
            x = F.silu(_CausalDepthwiseConv.apply(x, conv.weight[:, 0], conv.bias))  # (B, L, ED)
            y = self.ssm(x, z)  # (B, L, ED)
            return self.out_proj(_SiLUGate.apply(y, z))  # (B, L, D)

        def selective_scan(self, x, delta, A, B, C, D):
            if self.compiled_scan:
                return compiled.selective_scan(x, delta, A, B, C, D)  # (B, L, ED)
            return super().selective_scan(x, delta, A, B, C, D)  # (B, L, ED)

        def ssm(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
            if torch.is_autocast_enabled(x.device.type):
                with torch.autocast(device_type=x.device.type, enabled=False):
                    return self.ssm(x.float(), z.float())  # (B, L, ED)
            if self.config.use_cuda:
                return super().ssm(x, z)  # (B, L, ED)
            A = -torch.exp(self.A_log.float())  # (ED, N)
            D = self.D.float()  # (ED,)
            deltaBC = self.x_proj(x)  # (B, L, dt_rank + 2N)
            sizes = [self.config.dt_rank, self.config.d_state, self.config.d_state]
            delta, B, C = self._apply_layernorms(*torch.split(deltaBC, sizes, dim=-1))
            # softplus(W_Δ δ + b_Δ), as mambapy, computed in (B, L, ED) directly
            delta = _Softplus.apply(F.linear(delta, self.dt_proj.weight, self.dt_proj.bias))
            if self.config.pscan:
                return self.selective_scan(x, delta, A, B, C, D)  # (B, L, ED)
            return self.selective_scan_seq(x, delta, A, B, C, D)  # (B, L, ED)

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
        self.checkpoint = cfg.checkpoint
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
            if self.checkpoint and torch.is_grad_enabled():
                x = checkpoint(layer, x, use_reentrant=False)  # (B, L_pad, D)
            else:
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
