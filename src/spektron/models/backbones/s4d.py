"""S4D and S4D-Real: diagonal state-space layers with an FFT-convolution core (docs/DESIGN.md §3.3).

Gu, Gupta, Goel & Ré (2022), "On the parameterization and initialization of diagonal state
space models" (NeurIPS); the block follows the ``s4d.py`` example of ``state-spaces/s4``.

Per channel h (H = d_model independent single-input single-output systems, N = ``d_state``):

    continuous:  x'(t) = A x(t) + B u(t),   y(t) = C x(t) + D u(t),   A = diag(A_1..A_N)
    ZOH:         Ā = exp(Δ A),   B̄ = (exp(Δ A) − 1) / A · B          (B ≡ 1, absorbed into C)
    recurrence:  x_k = Ā x_{k−1} + B̄ u_k,   y_k = c · Re(C x_k) + D u_k
    kernel:      y = K * u + D u,   K_l = c · Re(Σ_n C_n B̄_n Ā_n^l)    (a Vandermonde product)

* **S4D** (``"s4d"``): complex A with Re A < 0, stored as one pole of each conjugate pair, so N
  real state dimensions are N/2 complex modes and c = 2 (the conjugate adds the conjugate
  output). Inits: S4D-Lin A_n = −1/2 + iπn; S4D-Inv A_n = −1/2 + i(N/π)(N/(2n+1) − 1),
  n = 0..N/2−1. These poles are damped oscillators — the first-order complex-diagonal
  counterpart of D-LinOSS's second-order IMEX oscillators.
* **S4D-Real** (``"s4d_real"``): real A_n = −(n+1), n = 0..N−1 (the paper's S4D-Real init),
  real C, c = 1: purely decaying exponentials, the truly non-oscillatory ablation. Same class,
  same code path, switched by the config (``REAL``); the parameter count matches S4D at equal N.

Δ = exp(log_dt) with log_dt ~ U[log dt_min, log dt_max] per channel; Re A = −exp(log_A_real)
stays negative, so every pole has |Ā| < 1. A and Δ carry optimizer hints
``p._optim = {"lr_scale": ssm_lr_scale, "weight_decay": 0.0}`` (as ``state-spaces/s4`` does).

Bidirectional (default): a second, separately parameterised kernel K' runs on the reversed
sequence, y_t = Σ_{j≥0} K_j u_{t−j} + Σ_{j≥0} K'_j u_{t+j} + D u_t; both are folded into one
length-2L circular kernel and applied with one zero-padded FFT of length 2L (no wrap-around).

Block (pre-norm residual): x ← x + Dropout(Out(Dropout(GELU(SSM(LayerNorm(x)))))), Out = GLU
(Linear H → 2H, GLU) or Linear H → H; a final LayerNorm after the stack.

The SSM core runs in float32 (or the parameters' dtype, e.g. float64 in tests) with autocast
disabled: ``torch.fft`` rejects bf16 and bf16 is too coarse for long kernels. The kernel is the
Vandermonde product of the reference implementation, evaluated in √L blocks and, for complex
poles, in real arithmetic (:meth:`S4DKernel.forward`); the slow sequential recurrence
:meth:`S4DKernel.forward_recurrent` is kept to test the FFT path against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from spektron.errors import ConfigError
from spektron.models.registry import BackboneConfig, register_backbone


@dataclass
class S4DBaseConfig(BackboneConfig):
    """Fields shared by S4D and S4D-Real (not registered itself)."""

    SIZE_KNOBS: ClassVar[dict[str, tuple[int, ...]]] = {
        "n_layers": (2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16),
        "d_state": (16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256),
    }
    REAL: ClassVar[bool] = False
    # Tuning: the range of the initial step sizes Δ (log-uniform in [dt_min, dt_max]).
    TUNE_KNOBS: ClassVar[dict[str, tuple[Any, ...]]] = {
        "dt_min": (1e-4, 1e-3, 1e-2),
        "dt_max": (3e-2, 1e-1, 1.0),
    }

    n_layers: int = 6
    # N: real state dimensions per channel (complex S4D: N/2 conjugate-pair modes).
    d_state: int = 64
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    bidirectional: bool = True
    # Output map after the activation: "glu" (Linear H → 2H + GLU, as s4) or "linear" (H → H).
    output: str = "glu"
    # Learning-rate multiplier for A and Δ (s4's example: lr 1e-3 against a base of 1e-2).
    ssm_lr_scale: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        if self.n_layers < 1:
            raise ConfigError(f"{name}.n_layers must be >= 1, got {self.n_layers}")
        if self.d_state < 1 or (not self.REAL and self.d_state % 2):
            raise ConfigError(
                f"{name}.d_state must be a positive"
                f"{'' if self.REAL else ' even'} integer, got {self.d_state}"
            )
        if not 0.0 < self.dt_min <= self.dt_max:
            raise ConfigError(
                f"{name} needs 0 < dt_min <= dt_max, got {self.dt_min}, {self.dt_max}"
            )
        if self.output not in ("glu", "linear"):
            raise ConfigError(f"{name}.output must be 'glu' or 'linear', got {self.output!r}")
        if self.ssm_lr_scale <= 0:
            raise ConfigError(f"{name}.ssm_lr_scale must be > 0, got {self.ssm_lr_scale}")


@dataclass
class S4DConfig(S4DBaseConfig):
    """S4D with complex diagonal A."""

    # "lin": S4D-Lin (A_n = −1/2 + iπn); "inv": S4D-Inv (A_n = −1/2 + i(N/π)(N/(2n+1) − 1)).
    init: str = "lin"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.init not in ("lin", "inv"):
            raise ConfigError(f"S4DConfig.init must be 'lin' or 'inv', got {self.init!r}")


@dataclass
class S4DRealConfig(S4DBaseConfig):
    """S4D-Real: real negative poles A_n = −(n+1) (no oscillation)."""

    REAL: ClassVar[bool] = True


def _ssm_param(value: torch.Tensor, lr_scale: float) -> nn.Parameter:
    p = nn.Parameter(value)
    p._optim = {"lr_scale": lr_scale, "weight_decay": 0.0}  # read by the optimizer groups
    return p


def _vandermonde_blocks(length: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Offsets of the √L blocking l = qT + r (T = ⌈√L⌉, Q = ⌈L/T⌉): r = 0..T−1 (T,) and
    qT = 0, T, .., (Q−1)·T (Q,), in ``like``'s dtype and device."""
    T = math.isqrt(length - 1) + 1 if length > 1 else 1  # ⌈√L⌉
    Q = -(-length // T)  # ⌈L / T⌉
    pos = torch.arange(max(T, Q), device=like.device, dtype=like.dtype)
    return pos[:T], pos[:Q] * T  # (T,), (Q,)


class S4DKernel(nn.Module):
    """Diagonal SSM kernels of ``n_dir`` directions × H channels (ZOH, Vandermonde)."""

    def __init__(
        self,
        d_model: int,
        d_state: int,
        n_dir: int,
        init: str,
        dt_min: float,
        dt_max: float,
        lr_scale: float,
    ) -> None:
        super().__init__()
        H = d_model
        self.real = init == "real"
        # Modes per channel: N real poles, or N/2 complex poles (one of each conjugate pair).
        M = d_state if self.real else d_state // 2
        log_dt = torch.rand(n_dir, H) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        n = torch.arange(M, dtype=torch.float32).expand(n_dir, H, M)  # (n_dir, H, M)
        if self.real:
            a_real = n + 1.0  # S4D-Real: A_n = −(n+1)
            C = torch.randn(n_dir, H, M)  # (n_dir, H, M)
        else:
            a_real = torch.full((n_dir, H, M), 0.5)
            if init == "lin":
                a_imag = math.pi * n
            elif init == "inv":
                a_imag = d_state / math.pi * (d_state / (2 * n + 1) - 1)
            else:
                raise ConfigError(f"unknown S4D init {init!r}")
            self.A_imag = _ssm_param(a_imag, lr_scale)  # (n_dir, H, M)
            C = torch.view_as_real(torch.randn(n_dir, H, M, dtype=torch.cfloat))  # (n_dir,H,M,2)
        self.log_dt = _ssm_param(log_dt, lr_scale)  # (n_dir, H)
        self.log_A_real = _ssm_param(torch.log(a_real), lr_scale)  # (n_dir, H, M)
        self.C = nn.Parameter(C)

    def _discrete(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """Δ·A, Ā, B̄, C (each (n_dir, H, M), the parameters' precision) and the factor c."""
        dt = torch.exp(self.log_dt).unsqueeze(-1)  # (n_dir, H, 1)
        if self.real:
            A = -torch.exp(self.log_A_real)  # (n_dir, H, M)
            C = self.C  # (n_dir, H, M)
            c = 1.0
        else:
            A = torch.complex(-torch.exp(self.log_A_real), self.A_imag)  # (n_dir, H, M)
            C = torch.view_as_complex(self.C)  # (n_dir, H, M)
            c = 2.0
        dtA = A * dt  # (n_dir, H, M)
        Bbar = torch.expm1(dtA) / A  # (n_dir, H, M): ZOH with B = 1
        return dtA, torch.exp(dtA), Bbar, C, c

    def forward(self, L: int) -> torch.Tensor:
        """Kernels K (n_dir, H, L): K_l = c·Re(Σ_n C_n B̄_n exp(Δ A_n l)).

        The Vandermonde product is blocked: with l = qT + r (T ≈ √L),
        K_{qT+r} = Σ_n [C_n B̄_n exp(Δ A_n r)] · exp(Δ A_n qT), one batched matmul of a
        (T × N) by an (N × L/T) matrix per channel. Every power is still a direct exponential
        (no error build-up from repeated products), but only ~2√L of them per mode instead of L
        (the exponentials dominate the cost: ~10× faster on CPU at L = 2048, N = 128).

        Complex poles in real arithmetic: only Re K is needed, and with W = C·B̄,
        P_nr = W_n·e^{ΔA_n r}, Q_nq = e^{ΔA_n qT}, Re(P Q) = Re P·Re Q − Im P·Im Q, i.e. one
        real matmul of [Re P | −Im P] (T × 2N) by [Re Q; Im Q] (2N × L/T); the powers are
        e^{Re(ΔA)·l}·(cos, sin)(Im(ΔA)·l) of contiguous real tensors, with a hand-written
        backward (:class:`_ComplexVandermonde`). (Complex tensors and autograd through the
        powers made the kernel ~40 % of an S4D training step at the quick size.)
        """
        if self.real:
            r, qT = _vandermonde_blocks(L, self.log_dt)  # (T,), (Q,)
            dtA, _, Bbar, C, _ = self._discrete()
            inner = (C * Bbar).unsqueeze(-2) * torch.exp(dtA.unsqueeze(-2) * r[:, None])
            outer = torch.exp(dtA.unsqueeze(-1) * qT)  # (n_dir, H, N, Q)
            return (inner @ outer).transpose(-1, -2).flatten(-2)[..., :L]  # (n_dir, H, L)
        dt = torch.exp(self.log_dt).unsqueeze(-1)  # (n_dir, H, 1)
        a_re = -torch.exp(self.log_A_real)  # (n_dir, H, M)
        a_im = self.A_imag  # (n_dir, H, M)
        w = self._weights(dt, a_re, a_im)  # (n_dir, H, M, 2): Re, Im of C·B̄
        return _ComplexVandermonde.apply(w[..., 0], w[..., 1], a_re * dt, a_im * dt, L)

    def _weights(self, dt: torch.Tensor, a_re: torch.Tensor, a_im: torch.Tensor) -> torch.Tensor:
        """C·B̄ with B̄ = (exp(ΔA) − 1)/A for the complex poles, as (n_dir, H, M, 2) real
        (small: one number per mode; complex arithmetic here costs nothing)."""
        A = torch.complex(a_re, a_im)  # (n_dir, H, M)
        Bbar = torch.expm1(A * dt) / A  # (n_dir, H, M)
        return torch.view_as_real(torch.view_as_complex(self.C) * Bbar)  # (n_dir, H, M, 2)

    def forward_recurrent(self, u: torch.Tensor) -> torch.Tensor:
        """Slow reference: x_k = Ā x_{k−1} + B̄ u_k, y_k = c·Re(C x_k), per direction, summed.

        u: (B, L, H) → (B, L, H) without the D term; direction 1 runs on the reversed sequence.
        """
        _, Abar, Bbar, C, c = self._discrete()
        Bsz, L, H = u.shape
        out = torch.zeros_like(u)  # (B, L, H)
        for d in range(Abar.shape[0]):
            seq = u if d == 0 else u.flip(1)  # (B, L, H)
            x = torch.zeros(Bsz, *Abar.shape[1:], dtype=Abar.dtype, device=u.device)  # (B,H,M)
            ys = []
            for k in range(L):
                x = Abar[d] * x + Bbar[d] * seq[:, k, :, None]  # (B, H, M)
                y = (C[d] * x).sum(-1)  # (B, H)
                ys.append(y if self.real else c * y.real)
            y = torch.stack(ys, dim=1)  # (B, L, H)
            out = out + (y if d == 0 else y.flip(1))
        return out


class _ComplexVandermonde(torch.autograd.Function):
    """K_l = 2·Re(Σ_n W_n·e^{d_n·l}), l = 0..L−1, for complex W, d given as real and imaginary
    parts (..., M) each: → (..., L). Blocked by l = qT + r (see :meth:`S4DKernel.forward`).

    Backward without autograd through the powers (no trigonometric functions again): with
    E_nl = e^{d_n l}, S_n = Σ_l g_l E_nl and S′_n = Σ_l g_l·l·E_nl,

        ∂/∂Re W = 2 Re S,   ∂/∂Im W = −2 Im S,   ∂/∂Re d = 2 Re(W S′),   ∂/∂Im d = −2 Im(W S′),

    and S, S′ by the same blocking: X_rn = Σ_q g_{qT+r} E_n,qT and Y_rn = Σ_q g_{qT+r}·qT·E_n,qT
    in one real matmul, then S_n = Σ_r E_nr X_rn, S′_n = Σ_r E_nr (r·X_rn + Y_rn).
    """

    @staticmethod
    def forward(ctx, w_re, w_im, d_re, d_im, length):
        r, qT = (v[:, None] for v in _vandermonde_blocks(length, w_re))  # (T, 1), (Q, 1)
        d_re, d_im = d_re.unsqueeze(-2), d_im.unsqueeze(-2)  # (..., 1, M)
        mag, ang = torch.exp(d_re * r), d_im * r  # (..., T, M)
        in_re, in_im = mag * torch.cos(ang), mag * torch.sin(ang)  # E_nr
        mag, ang = torch.exp(d_re * qT), d_im * qT  # (..., Q, M)
        out = torch.cat((mag * torch.cos(ang), mag * torch.sin(ang)), -1)  # (..., Q, 2M)
        wr, wi = w_re.unsqueeze(-2), w_im.unsqueeze(-2)  # (..., 1, M)
        p = torch.cat((wr * in_re - wi * in_im, -(wr * in_im + wi * in_re)), -1)  # (..., T, 2M)
        k = out @ p.mT  # (..., Q, T): [q, r] = Re Σ_n P_nr E_n,qT
        ctx.save_for_backward(w_re, w_im, in_re, in_im, out)
        ctx.length = length
        return 2.0 * k.flatten(-2)[..., :length]  # (..., L): l = qT + r

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        w_re, w_im, in_re, in_im, out = ctx.saved_tensors
        r, q_t = (v[:, None] for v in _vandermonde_blocks(ctx.length, grad))  # (T, 1), (Q, 1)
        T, Q, m = len(r), len(q_t), w_re.shape[-1]
        g = F.pad(grad, (0, Q * T - ctx.length)).unflatten(-1, (Q, T))  # (..., Q, T)
        xy = g.mT @ torch.cat((out, q_t * out), -1)  # (..., T, 4M): X (Re, Im), Y (Re, Im)
        x_re, x_im, y_re, y_im = xy.split(m, -1)  # (..., T, M) each
        s_re = (in_re * x_re - in_im * x_im).sum(-2)  # (..., M)
        s_im = (in_re * x_im + in_im * x_re).sum(-2)
        z_re, z_im = r * x_re + y_re, r * x_im + y_im  # (..., T, M)
        t_re = (in_re * z_re - in_im * z_im).sum(-2)  # S′, (..., M)
        t_im = (in_re * z_im + in_im * z_re).sum(-2)
        return (
            2.0 * s_re,
            -2.0 * s_im,
            2.0 * (w_re * t_re - w_im * t_im),
            -2.0 * (w_re * t_im + w_im * t_re),
            None,
        )


class _FFTConv(torch.autograd.Function):
    """y = (k ⊛ u)[..., :L], the circular convolution of length n of zero-padded u with k.

    u (B, H, L), k (H, n) real → y (B, H, L). Forward: rfft, product, irfft. Backward by hand,
    in the same real transforms: ∂u = (g ⋆ k)[:L] = irfft(G·conj(K))[:L] and
    ∂k = Σ_b irfft(G·conj(U)) (⋆: circular cross-correlation; G, U, K the rFFTs). Autograd
    would take rfft's backward through a zero-padded complex FFT of twice the work.
    """

    @staticmethod
    def forward(ctx, u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        n, length = k.shape[-1], u.shape[-1]
        u_f = torch.fft.rfft(u, n=n, dim=-1)  # (B, H, n/2+1)
        k_f = torch.fft.rfft(k, n=n, dim=-1)  # (H, n/2+1)
        ctx.save_for_backward(u_f, k_f)
        ctx.length = length
        return torch.fft.irfft(u_f * k_f, n=n, dim=-1)[..., :length]  # (B, H, L)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        u_f, k_f = ctx.saved_tensors
        n = 2 * (k_f.shape[-1] - 1)
        g_f = torch.fft.rfft(grad, n=n, dim=-1)  # (B, H, n/2+1): g zero-padded to n
        grad_u = grad_k = None
        if ctx.needs_input_grad[0]:
            grad_u = torch.fft.irfft(g_f * k_f.conj(), n=n, dim=-1)[..., : ctx.length]
        if ctx.needs_input_grad[1]:
            grad_k = torch.fft.irfft((g_f * u_f.conj()).sum(0), n=n, dim=-1)  # (H, n)
        return grad_u, grad_k


class S4DLayer(nn.Module):
    """The SSM map u ↦ K * u + D u, (B, L, H) → (B, L, H), via a zero-padded FFT."""

    def __init__(self, cfg: S4DBaseConfig) -> None:
        super().__init__()
        self.n_dir = 2 if cfg.bidirectional else 1
        init = "real" if cfg.REAL else cfg.init
        self.kernel = S4DKernel(
            cfg.d_model, cfg.d_state, self.n_dir, init, cfg.dt_min, cfg.dt_max, cfg.ssm_lr_scale
        )
        self.D = nn.Parameter(torch.randn(cfg.d_model))  # (H,)

    def full_kernel(self, L: int) -> torch.Tensor:
        """Circular kernel (2L, H) whose lag j ≥ 0 sits at j and lag −j at 2L − j."""
        K = self.kernel(L)  # (n_dir, H, L)
        fwd = K[0]  # (H, L)
        zero = fwd.new_zeros(fwd.shape[0], 1)  # (H, 1)
        if self.n_dir == 1:
            return torch.cat([fwd, zero, fwd.new_zeros(fwd.shape[0], L - 1)], -1).T  # (2L, H)
        bwd = K[1]  # (H, L)
        # lag 0 of both directions adds; position L (lag ±L) is never reached by padded u.
        lag0 = fwd[:, :1] + bwd[:, :1]  # (H, 1)
        return torch.cat([lag0, fwd[:, 1:], zero, bwd[:, 1:].flip(-1)], -1).T  # (2L, H)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        L = u.shape[1]
        dtype = self.D.dtype
        with torch.autocast(device_type=u.device.type, enabled=False):
            u = u.to(dtype)  # (B, L, H) fp32 core
            # FFTs along the last dimension of (B, H, L) copies: along dim 1 of (B, L, H) PyTorch
            # transposes inside each FFT and its backward (measured ~2× slower per S4D step).
            k = self.full_kernel(L).T  # (H, 2L)
            y = _FFTConv.apply(u.transpose(1, 2).contiguous(), k).transpose(1, 2)  # (B, L, H)
            # u·D first: the sum takes its contiguous layout (a transposed one downstream sent
            # GELU's backward down PyTorch's slow strided path).
            return u * self.D + y  # (B, L, H), contiguous

    def forward_recurrent(self, u: torch.Tensor) -> torch.Tensor:
        """Slow reference of :meth:`forward` (sequential recurrence)."""
        u = u.to(self.D.dtype)
        return self.kernel.forward_recurrent(u) + u * self.D  # (B, L, H)


class S4DBlock(nn.Module):
    """Pre-norm residual block: x + Dropout(Out(Dropout(GELU(SSM(LayerNorm(x))))))."""

    def __init__(self, cfg: S4DBaseConfig) -> None:
        super().__init__()
        H = cfg.d_model
        self.norm = nn.LayerNorm(H)
        self.ssm = S4DLayer(cfg)
        self.dropout = nn.Dropout(cfg.dropout)
        self.glu = cfg.output == "glu"
        self.out = nn.Linear(H, 2 * H if self.glu else H)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dropout(F.gelu(self.ssm(self.norm(x))))  # (B, L, H)
        y = self.out(y)  # (B, L, 2H) or (B, L, H)
        if self.glu:
            y = F.glu(y, dim=-1)  # (B, L, H)
        return x + self.dropout(y)  # (B, L, H)


@register_backbone("s4d_real", S4DRealConfig)
@register_backbone("s4d", S4DConfig)
class S4D(nn.Module):
    """Stack of S4D (or S4D-Real, per the config) blocks: (B, L, d_model) → (B, L, d_model)."""

    def __init__(self, cfg: S4DBaseConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleList(S4DBlock(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)  # (B, L, H)
        return self.norm(x)  # (B, L, H)
