"""D-LinOSS: damped linear oscillatory state-space layers, bidirectional (docs/DESIGN.md §3.2).

References
----------
- J. Boyer, T. K. Rusch, D. Rus. "Learning to Dissipate Energy in Oscillatory State-Space
  Models" (D-LinOSS), 2025. arXiv:2505.12171. Official code: github.com/jaredbmit/damped-linoss.
- T. K. Rusch, D. Rus. "Oscillatory State-Space Models" (LinOSS), ICLR 2025. arXiv:2410.03943.

Model
-----
P independent damped oscillators driven by the H input channels,

    x''(t) = −A x(t) − G x'(t) + B u(t),      y(t) = Re(C x(t)) + D ⊙ u(t),

A = diag(a) ≥ 0, G = diag(g) ≥ 0, B ∈ ℂ^{P×H}, C ∈ ℂ^{H×P}, D ∈ ℝ^H. With z = x' and the
implicit-explicit (IMEX) step of D-LinOSS (per oscillator; a, g, dt scalars; S = 1 + dt·g):

    z_k = (z_{k−1} − dt·a·x_{k−1} + dt·(Bu)_k) / S,      x_k = x_{k−1} + dt·z_k,

i.e. w_k = M w_{k−1} + F (Bu)_k with w = [z; x],

    M = [[1/S, −dt·a/S], [dt/S, 1 − dt²·a/S]],      F = [dt/S, dt²/S].

Eigenvalues λ₁,₂ = [1 + dt·g/2 − dt²·a/2 ± (dt/2)·√((g − dt·a)² − 4a)] / S: complex iff
(g − dt·a)² < 4a, i.e. a ∈ (lo, hi) with lo = (√S − 1)²/dt², hi = (√S + 1)²/dt²; then
λ₁,₂ = r·e^{±iθ}, r = |λ| = 1/√S. g = 0 is LinOSS-IMEX (|λ| = 1); g = dt·a is LinOSS-IM.

Parameterisation (with the boundary fixes of docs/DESIGN.md §3.2; ``relaxed=True`` restores the
official, unfixed one, for tests):

    dt = dt_min + (dt_max − dt_min)·sigmoid(dt_raw)              (official: sigmoid(dt_raw))
    g  = min(g_min + softplus(g_raw), (ε⁻² − 1)/dt)              (official: ReLU(g_raw))
    a  = clamp(a_raw, lo·(1 + ε), hi·(1 − ε))                    (official: clamp to [lo, hi])

so |λ|² = 1/S ≤ 1/(1 + dt_min·g_min) < 1 and the eigenvalues are complex and distinct for
every raw value. The cap on g keeps |λ| ≥ ε: without it the clamp interval is empty once
√S ≥ 2/ε. (Inside the clamp's flat parts a_raw gets no gradient, as in the official code.)

The registered variant ``dlinoss_sigmoid`` (:class:`DLinOSSSigmoidConfig`) differs only in a,
which it places inside the same interval by a sigmoid, so no raw value is without gradient:

    a  = lo·(1 + ε) + (hi·(1 − ε) − lo·(1 + ε))·sigmoid(a_raw)

(a fraction sin²(θ/2) of the way from lo to hi puts the eigenvalue at angle θ when ε → 0; the
ring initialisation sets a_raw to the logit of the fraction its (r, θ) give). ``dlinoss``
itself stays the official clamp parameterisation; :meth:`DLinOSSBackbone.clamp_counts` counts
its oscillators whose a_raw lies outside the interval (no gradient to a_raw there).
"Ring" initialisation samples r ∈ [r_min, r_max] (uniform in area), θ ∈ [θ_min, π − θ_min]
and maps back: g = (1 − r²)/(dt·r²), a = (1 − 2r·cosθ + r²)/(dt²·r²).

Three interchangeable compute modes of the linear core (config ``mode``):

- ``recurrent``: the update above as a Python loop over L (reference; slow).
- ``scan``: a log-depth parallel associative scan over L (odd-even / Blelloch-style, O(L)
  work). Elements (M, F·(Bu)_k); combine(earlier i, later j) = (M_j M_i, M_j f_i + f_j); M is
  time-invariant, so a segment of 2^k steps carries the precomputed power M^(2^k).
- ``fft``: LTI ⇒ x = h ∗ (Bu) with the closed-form impulse response
      h[n] = (dt²/S)·(λ₁^{n+1} − λ₂^{n+1})/(λ₁ − λ₂) = (dt²/S)·rⁿ·U_n(cos θ),
  U_n(cos θ) = sin((n+1)θ)/sin θ (Chebyshev, 2nd kind), built in float64 (P×L) with an exact,
  stable backward (see :class:`_DampedChebyshev`) and applied by a zero-padded rFFT of length
  ≥ 2L − 1 (no wrap-around). Most accurate in float32, since S is formed in float64.

Transfer function of one oscillator (x from (Bu)):
    H(z) = dt²·z² / (S·z² − (2 + dt·g − dt²·a)·z + 1)    (z² numerator: x_k depends on (Bu)_k).
From u to y the layer is Σ_p W_p H_p(z) + diag(D) with the real H×H matrices
W_p = Re(C_{:,p} B_{p,:}) (rank ≤ 2): see :meth:`DLinOSSCore.transfer_function`.

The core always computes in float32 (float64 if given float64), autocast disabled: bf16's
8-bit significand is too coarse for a 2048-step recurrence with |λ| ≈ 1, and ``torch.fft``
rejects bf16/fp16.

Block: LayerNorm (or RMSNorm) → bidirectional SSM → GELU → dropout → GLU → dropout → residual.
The official code uses BatchNorm; a per-position norm makes multi-process (DDP) training equal
single-process training (no cross-batch statistics) and train/eval behave the same.

Optimizer hints: the dynamics parameters (dt_raw, g_raw, a_raw) carry
``p._optim = {"lr_scale": cfg.ssm_lr_scale, "weight_decay": 0.0}`` (as state-spaces/s4 does
with ``_optim``): the trainer's parameter groups scale the base LR by ``lr_scale`` and never
decay them (weight decay would pull a, g towards 0, i.e. towards |λ| = 1).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from spektron.errors import ConfigError
from spektron.models.registry import BackboneConfig, register_backbone

MODES = ("recurrent", "scan", "fft", "chunk", "auto")
COMBINES = ("sum", "concat")
NORMS = ("layer", "rms")

# Mode used by mode="auto", per device type (unlisted types: fft). Measured on this project's
# 2-core x86 CPU (noisy shared VM), torch 2.13, backbone forward + backward, samples/s, each
# mode alternated with the CNN step by step in one process (medians; ranges are across runs):
#   quick size (d_model 64, 6 layers x 32 oscillators, B=8, L=256, 1 thread):
#       chunk (T=16) 98-140, scan 55, fft 55, CNN 230-360 -> chunk 0.40-0.44 of the CNN
#   ~1M size (d_model 128, 6 x 128, B=8, L=2048, 2 threads):
#       chunk (T=64) 5.6, chunk (T=32) 4.4, fft 3.3, scan 3.6, CNN 12.8 -> chunk 0.44
# Since then (subnormals flushed, glibc keeping freed memory, end states read from the Toeplitz
# product; `spektron bench backbones`, same machine): quick size chunk 0.59-0.61 of the CNN,
# ~1M 0.50-0.61 (T=64 and T=32 equal there, T=16 0.50, T=8 at the quick size 0.48).
# Then (2026-12-07) the layer's output kept u's contiguous layout (u·D + y) and the input map
# returned u's gradient contiguous, so GELU, the GLU and the LayerNorm backward stopped running
# on (or copying back from) transposed tensors: one run of `spektron bench backbones` per
# scale, side by side with the CNN, quick size chunk 0.65 (separately 0.78), ~1M 0.61 (0.64).
# At ~1M the chunked mode is bound by memory passes over the (4P, B·L) activations (a 32 MiB
# pass costs ~5-9 ms here), about 20 per layer and step; at the quick size by the in/out
# projections' FLOPs (D-LinOSS does 1.3x the CNN's matmul FLOPs at equal parameters). Accuracy
# in float32 is that of a float64-built kernel applied by float32 matmuls. An earlier
# measurement (B=16) had the scan at 0.76-0.83x the fft's time on CPU at 1.4x its memory; the
# Python loop (recurrent) is the reference only. CUDA was not measured here (no GPU lent): it
# keeps fft, a few cuFFT calls per layer instead of ~15 elementwise kernels per level of the
# scan.
AUTO_MODE: dict[str, str] = {"cpu": "chunk", "cuda": "fft"}

# dt_min·g_min bounds the per-step damping 1 − |λ| ≈ dt·g/2 from below. In float32, S = 1 + dt·g
# carries an absolute rounding error of ~6e-8, so the recurrent and scan modes get the damping
# wrong by 6e-8/(dt·g) relative (0.6 % at 1e-5; |λ| rounds to 1 below ~1e-7). 1e-5 still allows
# memories of ~2e5 steps, far beyond L = 2048.
_MIN_DT_G = 1e-5
# clamp_eps must be far above float32 rounding so that clamped values stay strictly inside.
_MIN_CLAMP_EPS = 1e-5


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass
class DLinOSSConfig(BackboneConfig):
    """Configuration of the D-LinOSS backbone (defaults: ~0.99M parameters at d_model=128)."""

    n_layers: int = 6
    n_oscillators: int = 128  # P, per direction
    mode: str = "auto"  # recurrent | scan | fft | chunk | auto (per device: see AUTO_MODE)
    chunk: int = 0  # chunk length T of the chunked mode; 0: by sequence length (chunk_size)
    bidirectional: bool = True
    # "sum": y = y_fwd + y_bwd (no extra parameters; the layer stays one LTI filter per
    # direction, H_total(ω) = H_fwd(ω) + conj(H_bwd(ω))). "concat": Linear(2H → H) on
    # [y_fwd, y_bwd] (+2H²+H parameters per layer; the projection can be folded into C, so it
    # adds only a dense H×H feed-through and a bias).
    combine: str = "sum"
    norm: str = "layer"  # layer | rms (per position, so DDP == single process)
    glu: bool = True  # GLU (Linear H→2H, gated) after the SSM; False: Linear H→H
    final_norm: bool = True  # norm on the backbone output (pre-norm residual stream)
    # Parameterisation bounds (docs/DESIGN.md §3.2).
    dt_min: float = 1e-2
    dt_max: float = 1.0
    g_min: float = 1e-3
    clamp_eps: float = 1e-3
    # Ring initialisation of the eigenvalues; dt_raw ~ N(0, dt_init_std) as the official code.
    r_min: float = 0.9
    r_max: float = 0.999
    theta_min: float = 0.0
    dt_init_std: float = 0.5
    ssm_lr_scale: float = 1.0  # LR multiplier of dt_raw, g_raw, a_raw (official factor 1.0)
    # Official, unfixed parameterisation (g = ReLU, clamp onto [lo, hi], no g cap): tests only.
    relaxed: bool = False

    # Candidate values for the parameter-budget sizer (d_model stays fixed).
    SIZE_KNOBS: ClassVar[dict[str, tuple[int, ...]]] = {
        "n_layers": (1, 2, 3, 4, 5, 6, 8, 10, 12, 16),
        "n_oscillators": (16, 32, 48, 64, 96, 128, 160, 192, 256, 384, 512),
    }
    # Tuning: the ring of initial eigenvalues (inner radius, distance of θ from 0 and π).
    TUNE_KNOBS: ClassVar[dict[str, tuple[Any, ...]]] = {
        "r_min": (0.5, 0.8, 0.9, 0.95),
        "theta_min": (0.0, 0.1, 0.3),
    }

    # How a is kept in the complex region: "clamp" (official) or "sigmoid" (the variant's
    # config class sets it; not a field, so ``dlinoss`` is always the official form).
    A_PARAM: ClassVar[str] = "clamp"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(
            not (self.relaxed and self.A_PARAM != "clamp"),
            "dlinoss: relaxed=True is the official clamp parameterisation; the sigmoid variant "
            "has no relaxed form",
        )
        _check(self.n_layers >= 1, f"dlinoss.n_layers must be >= 1, got {self.n_layers}")
        _check(
            self.n_oscillators >= 1, f"dlinoss.n_oscillators must be >= 1, got {self.n_oscillators}"
        )
        _check(self.mode in MODES, f"dlinoss.mode must be one of {MODES}, got {self.mode!r}")
        _check(self.chunk >= 0, f"dlinoss.chunk must be >= 0 (0: auto), got {self.chunk}")
        _check(
            self.combine in COMBINES,
            f"dlinoss.combine must be one of {COMBINES}, got {self.combine!r}",
        )
        _check(self.norm in NORMS, f"dlinoss.norm must be one of {NORMS}, got {self.norm!r}")
        _check(
            self.norm != "rms" or hasattr(nn, "RMSNorm"), "dlinoss.norm='rms' needs torch >= 2.4"
        )
        _check(
            0 < self.dt_min < self.dt_max,
            f"dlinoss needs 0 < dt_min < dt_max, got {self.dt_min}, {self.dt_max}",
        )
        _check(self.g_min > 0, f"dlinoss.g_min must be > 0, got {self.g_min}")
        _check(
            self.dt_min * self.g_min >= _MIN_DT_G,
            f"dlinoss needs dt_min·g_min >= {_MIN_DT_G} (float32 must resolve the damping "
            f"S − 1 = dt·g), got {self.dt_min * self.g_min:.3g}",
        )
        _check(
            _MIN_CLAMP_EPS <= self.clamp_eps <= 0.1,
            f"dlinoss.clamp_eps must be in [{_MIN_CLAMP_EPS}, 0.1], got {self.clamp_eps}",
        )
        _check(
            self.clamp_eps < self.r_min <= self.r_max < 1,
            f"dlinoss needs clamp_eps < r_min <= r_max < 1, got {self.r_min}, {self.r_max}",
        )
        g_ring = (1 - self.r_max**2) / (self.dt_max * self.r_max**2)
        _check(
            g_ring > self.g_min,
            f"dlinoss: r_max={self.r_max} needs g = {g_ring:.3g} at dt_max, below g_min="
            f"{self.g_min}; lower r_max or g_min",
        )
        _check(
            0 <= self.theta_min < math.pi / 2,
            f"dlinoss.theta_min must be in [0, π/2), got {self.theta_min}",
        )
        _check(self.dt_init_std >= 0, f"dlinoss.dt_init_std must be >= 0, got {self.dt_init_std}")
        _check(self.ssm_lr_scale > 0, f"dlinoss.ssm_lr_scale must be > 0, got {self.ssm_lr_scale}")


@dataclass
class DLinOSSSigmoidConfig(DLinOSSConfig):
    """D-LinOSS with a = lo' + (hi' − lo')·sigmoid(a_raw) inside the clamp interval [lo', hi']
    (see the module docstring): the same model and fields, no zero-gradient region."""

    A_PARAM: ClassVar[str] = "sigmoid"


# ----------------------------------------------------------------------------- linear SSM core
# Functions on real channels: v (B, L, ..., N) is the input (Bu) and dt, g, a are (N,), one
# oscillator per last-axis entry (broadcast over the axes between L and N).


def _transition(dt: Tensor, g: Tensor, a: Tensor) -> tuple[Tensor, ...]:
    """Entries of M and F, each (N,)."""
    inv_s = 1.0 / (1.0 + dt * g)
    return (
        inv_s,
        -dt * a * inv_s,
        dt * inv_s,
        1.0 - dt * dt * a * inv_s,
        dt * inv_s,
        dt * dt * inv_s,
    )


def ssm_recurrent(v: Tensor, dt: Tensor, g: Tensor, a: Tensor) -> Tensor:
    """Reference: the IMEX update as a sequential loop. v (B, L, ..., N) → x (B, L, ..., N)."""
    inv_s, dt_a, dt_v = 1.0 / (1.0 + dt * g), dt * a, dt * v  # (N,), (N,), (B, L, ..., N)
    z = v.new_zeros(v.shape[:1] + v.shape[2:])  # (B, ..., N)
    x = v.new_zeros(v.shape[:1] + v.shape[2:])  # (B, ..., N)
    xs = []
    # unbind, not dt_v[:, k]: each indexing op's backward would scatter into a full-size
    # zero tensor, making the backward O(L²).
    for dv in dt_v.unbind(1):
        z = (z - dt_a * x + dv) * inv_s  # (B, ..., N)
        x = x + dt * z  # (B, ..., N)
        xs.append(x)
    return torch.stack(xs, dim=1)  # (B, L, ..., N)


def _matrix_powers(dt: Tensor, g: Tensor, a: Tensor, n: int) -> list[tuple[Tensor, ...]]:
    """M^(2^k), k = 0..n−1, as (m11, m12, m21, m22) each (N,); squared in float64."""
    m11, m12, m21, m22, _, _ = _transition(dt.double(), g.double(), a.double())
    out = []
    for _ in range(n):
        out.append((m11, m12, m21, m22))
        tr = m11 + m22
        m11, m12, m21, m22 = m11 * m11 + m12 * m21, m12 * tr, m21 * tr, m22 * m22 + m12 * m21
    return [tuple(m.to(dt.dtype) for m in p) for p in out]


def _shift_right(t: Tensor) -> Tensor:
    """t[:, i−1] at position i, zeros at 0 (dim 1)."""
    return torch.cat((torch.zeros_like(t[:, :1]), t[:, :-1]), dim=1)


def _odd_even_scan(
    z: Tensor, x: Tensor, powers: list[tuple[Tensor, ...]], level: int
) -> tuple[Tensor, Tensor]:
    """Inclusive scan of elements f = (z, x), each (B, L, ..., N), spanning 2^level steps each."""
    length = z.shape[1]
    if length == 1:
        return z, x
    if length % 2:  # a trailing zero element changes no earlier prefix
        z = torch.cat((z, torch.zeros_like(z[:, :1])), dim=1)
        x = torch.cat((x, torch.zeros_like(x[:, :1])), dim=1)
    m11, m12, m21, m22 = powers[level]
    ze, zo, xe, xo = z[:, 0::2], z[:, 1::2], x[:, 0::2], x[:, 1::2]  # (B, L/2, ..., N)
    # Pairs (earlier 2i, later 2i+1): M_later·f_earlier + f_later.
    gz, gx = _odd_even_scan(m11 * ze + m12 * xe + zo, m21 * ze + m22 * xe + xo, powers, level + 1)
    # Even positions: prefix up to 2i−1 (the pair scan shifted by one) carried one span on.
    pz, px = _shift_right(gz), _shift_right(gx)  # (B, L/2, ..., N)
    ez, ex = m11 * pz + m12 * px + ze, m21 * pz + m22 * px + xe  # (B, L/2, ..., N)
    z = torch.stack((ez, gz), dim=2).flatten(1, 2)[:, :length]  # (B, L, ..., N)
    x = torch.stack((ex, gx), dim=2).flatten(1, 2)[:, :length]  # (B, L, ..., N)
    return z, x


def ssm_scan(v: Tensor, dt: Tensor, g: Tensor, a: Tensor) -> Tensor:
    """Parallel associative scan (log depth, O(L) work). v (B, L, ..., N) → x (B, L, ..., N)."""
    length = v.shape[1]
    *_, f1, f2 = _transition(dt, g, a)
    powers = _matrix_powers(dt, g, a, max(1, (length - 1).bit_length()))
    _, x = _odd_even_scan(f1 * v, f2 * v, powers, 0)
    return x


def _fft_len(length: int) -> int:
    """A power of two ≥ 2·length − 1: linear (not circular) convolution of two length-L signals."""
    return 1 << (2 * length - 1).bit_length()


def _rho_sign_power(log_rho: Tensor, sign: Tensor, n: Tensor) -> Tensor:
    """ρⁿ·σⁿ for integer-valued float n (K,) or (N, K): (N, K). σⁿ without pow (slow for
    float exponents): −1 where σ < 0 and n is odd."""
    odd = torch.remainder(n, 2.0) == 1.0
    sign_n = torch.where((sign[:, None] < 0) & odd, -1.0, 1.0)  # (N, K)
    return torch.exp(n * log_rho[:, None]) * sign_n  # (N, K)


def _chebyshev_values(log_rho: Tensor, phi: Tensor, sign: Tensor, n: Tensor) -> Tensor:
    """ρⁿ·σⁿ·sin((n+1)φ)/sin φ (limit σⁿ·(n+1) at φ = 0): (N,) parameters, n (K,) or (N, K)."""
    sin_phi = torch.sin(phi)[:, None]  # (N, 1)
    ratio = torch.where(sin_phi > 0, torch.sin((n + 1.0) * phi[:, None]) / sin_phi, n + 1.0)
    return _rho_sign_power(log_rho, sign, n) * ratio  # (N, K)


_SERIES_BELOW = 0.2  # below it, x − sin x and sin x − x·cos x by their Taylor series


def _x_minus_sin(x: Tensor) -> Tensor:
    """x − sin x without cancellation (x ≥ 0)."""
    x2 = x * x
    series = x * x2 / 6.0 * (1.0 - x2 / 20.0 * (1.0 - x2 / 42.0 * (1.0 - x2 / 72.0)))
    return torch.where(x < _SERIES_BELOW, series, x - torch.sin(x))


def _sin_minus_x_cos(x: Tensor) -> Tensor:
    """sin x − x·cos x without cancellation (x ≥ 0): Σ_k (−1)^{k+1}·2k·x^{2k+1}/(2k+1)!."""
    x2 = x * x
    terms = (1.0 / 3, -1.0 / 30, 1.0 / 840, -1.0 / 45360, 1.0 / 3991680, -1.0 / 518918400)
    series = torch.zeros_like(x)
    for coef in reversed(terms):  # Horner in x²
        series = series * x2 + coef
    return torch.where(x < _SERIES_BELOW, x * x2 * series, torch.sin(x) - x * torch.cos(x))


def _chebyshev_self_convolution(log_rho: Tensor, phi: Tensor, sign: Tensor, m: Tensor) -> Tensor:
    """(q ∗ q)[m] = Σ_{j≤m} q_j q_{m−j} = ρᵐσᵐ·W_m(φ) for m ≥ 0, (N,) parameters, m (K,) or
    (N, K) → (N, K), without forming q or an FFT.

    With U_j(cos φ) = sin((j+1)φ)/sin φ, product-to-sum gives
    W_m = Σ_j U_j U_{m−j} = [U_m − (m+1)·cos((m+2)φ)] / (2 sin²φ), which cancels badly as
    φ → 0. Rearranged with x = (m+1)φ, s = sin φ into terms without cancellation,

        W_m = (sin x − x cos x)/(2s³) + (m+1)·[(φ − s)·cos x/(2s³) + cos x·(1 − cos φ)/(2s²)
              + sin x/(2s)],

    with the two differences by series near 0 and 1 − cos φ = 2 sin²(φ/2); at φ = 0 the limit
    (m+1)(m+2)(m+3)/6.
    """
    ph = phi[:, None]  # (N, 1)
    s = torch.sin(ph)
    x = (m + 1.0) * ph  # (N, K)
    cos_x = torch.cos(x)
    safe = torch.where(s > 0, s, 1.0)  # the φ = 0 rows take the limit below
    one_minus_cos = 2.0 * torch.sin(0.5 * ph) ** 2
    w = _sin_minus_x_cos(x) / (2.0 * safe**3) + (m + 1.0) * (
        _x_minus_sin(ph) * cos_x / (2.0 * safe**3)
        + cos_x * one_minus_cos / (2.0 * safe**2)
        + torch.sin(x) / (2.0 * safe)
    )
    w = torch.where(s > 0, w, (m + 1.0) * (m + 2.0) * (m + 3.0) / 6.0)
    return _rho_sign_power(log_rho, sign, m) * w  # (N, K)


class _DampedChebyshev(torch.autograd.Function):
    """q_n = ρⁿ·U_n(c), U_n the Chebyshev polynomials of the 2nd kind, float64, at the integer
    exponents n ≥ −2 given as an index grid (K,) or (N, K) (per-oscillator grids): → (N, K).

    Forward: U_n(cos θ) = sin((n+1)θ)/sin θ, evaluated as σⁿ·sin((n+1)φ)/sin φ with
    φ = min(θ, π − θ) and σ = sign(cos θ), so that it is accurate near θ = 0 and θ = π alike;
    at φ = 0 (repeated root, reachable only with relaxed=True) the limit σⁿ·(n + 1). The same
    formula gives U_{−1} = 0 and U_{−2} = −1.
    Backward: autograd through θ = arccos(c) is inaccurate near the ends (dθ/dc → ∞ times a
    cancelling dU/dθ: relative error ~eps/φ², and the clamp allows φ ~ 1e-8). Exact identities
    instead: ∂q_n/∂log ρ = n·q_n and, from the generating function Σ U_n tⁿ = 1/(1 − 2ct + t²),
    ∂U_n/∂c = 2·Σ_{j<n} U_j U_{n−1−j}, i.e. ∂q_n/∂c = 2ρ·(q ∗ q)[n − 1] (0 for n ≤ 0), the
    convolution in closed form (:func:`_chebyshev_self_convolution`), only where needed.
    """

    @staticmethod
    def forward(ctx, log_rho: Tensor, c: Tensor, phi: Tensor, sign: Tensor, n: Tensor) -> Tensor:
        nf = n.to(torch.float64)
        q = _chebyshev_values(log_rho, phi, sign, nf)  # (N, K)
        ctx.save_for_backward(log_rho, phi, sign, nf, q)
        return q

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        log_rho, phi, sign, n, q = ctx.saved_tensors
        grad_log_rho = (grad * q * n).sum(-1)  # (N,)
        m = (n - 1.0).clamp_min(0.0)  # (q ∗ q)[n − 1] is needed for n ≥ 1
        conv = _chebyshev_self_convolution(log_rho, phi, sign, m)  # (N, K)
        conv = torch.where(n >= 1.0, conv, 0.0)
        grad_c = 2.0 * torch.exp(log_rho) * (grad * conv).sum(-1)  # (N,)
        return grad_log_rho, grad_c, None, None, None


def _damped_chebyshev(dt: Tensor, g: Tensor, a: Tensor, n: Tensor) -> Tensor:
    """q_n = ρⁿ·U_n(cos θ) at integer exponents n ≥ −2, (K,) or (N, K) → (N, K) float64,
    ρ = 1/√S; exact backward. dt, g, a: (N,) float64 with a inside [lo, hi] (strictly, unless
    relaxed).
    """
    s = 1.0 + dt * g  # (N,)
    sq = torch.sqrt(s)
    tr = 2.0 + dt * g - dt * dt * a  # 2√S·cos θ
    with torch.no_grad():  # φ only evaluates U_n; gradients flow through c (_DampedChebyshev)
        lo = (g / (sq + 1.0)) ** 2  # = (√S − 1)²/dt², without cancellation
        hi = ((sq + 1.0) / dt) ** 2
        # 2√S·sin θ = dt²·√((a − lo)(hi − a)): accurate near both ends, unlike 1 − cos²θ.
        sin_part = dt * dt * torch.sqrt(((a - lo) * (hi - a)).clamp_min(0.0))
        phi = torch.atan2(sin_part, tr.abs())  # min(θ, π − θ)
        sign = torch.where(tr < 0, -1.0, 1.0).to(tr)  # sign(cos θ)
    return _DampedChebyshev.apply(-0.5 * torch.log1p(dt * g), tr / (2.0 * sq), phi, sign, n)


def dlinoss_kernel(dt: Tensor, g: Tensor, a: Tensor, length: int) -> Tensor:
    """Impulse response of x to (Bu), h[n] = (dt²/S)·(λ₁^{n+1} − λ₂^{n+1})/(λ₁ − λ₂), float64.

    = (dt²/S)·rⁿ·sin((n+1)θ)/sin θ with r = 1/√S, cos θ = (2 + dt·g − dt²·a)/(2√S).
    dt, g, a: (N,) with a inside [lo, hi] (strictly, unless relaxed). Returns (N, length).
    """
    dt, g, a = dt.double(), g.double(), a.double()
    q = _damped_chebyshev(dt, g, a, torch.arange(length, device=dt.device))  # (N, L)
    return (dt * dt / (1.0 + dt * g))[:, None] * q  # (N, L)


# Chunk length T of the chunked mode by sequence length L (config ``chunk = 0``). The cost per
# oscillator channel is ≈ 2L·(T + 4) multiply-adds in four batched matmuls plus (2L/T)² for the
# chunk-to-chunk carry; measured with ``spektron bench dlinoss-modes`` (see AUTO_MODE).
def chunk_size(length: int) -> int:
    """Default chunk length for a sequence of ``length`` steps (a power of two, ≤ 64)."""
    t = 1 << max(0, round(math.log2(math.sqrt(2.0 * length))))
    return max(1, min(t, 64, 1 << (length - 1).bit_length()))


@functools.lru_cache(maxsize=64)
def _chunk_exponents(chunk: int, n_chunks: int, device: str) -> Tensor:
    """Exponents n of the q_n that :func:`chunk_operators` needs (cached, read-only): −1..T
    (intra and emit), then (d−1)·T and (d−1)·T − 1 for chunk distances d = 1..C−1 (carry).
    """
    d = torch.arange(1, n_chunks)
    carry = torch.stack(((d - 1) * chunk, (d - 1) * chunk - 1))  # (2, C−1)
    return torch.cat((torch.arange(-1, chunk + 1), carry.flatten())).to(device)


def _toeplitz(by_lag: Tensor) -> Tensor:
    """(..., 2n−1) values by lag −(n−1)..n−1 → (..., n, n) Toeplitz, [j, i] = value at i − j.

    The vector tiled n times, read with row stride 2n − 2: element [j, i] sits at
    n − 1 + j·(2n − 2) + i ≡ n − 1 + i − j (mod 2n − 1). The result is a strided view that BLAS
    takes as it is (leading dimension 2n − 2 ≥ n); backward: a strided copy and a sum over the
    tiles (a gather would need a scatter-add, a flip of the window view is slow).
    """
    n = (by_lag.shape[-1] + 1) // 2
    if n == 1:
        return by_lag.unsqueeze(-1)  # (..., 1, 1)
    tiled = by_lag.repeat(*[1] * (by_lag.ndim - 1), n)  # (..., n·(2n−1))
    rows = tiled[..., n - 1 : n - 1 + n * (2 * n - 2)].unflatten(-1, (n, 2 * n - 2))
    return rows[..., :n]  # (..., n, n)


def chunk_operators(
    dt: Tensor,
    g: Tensor,
    a: Tensor,
    chunk: int,
    n_chunks: int,
    reverse: bool | Tensor = False,
    dtype: torch.dtype = torch.float64,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Operators of the chunked mode for N oscillators (row-vector convention), in ``dtype``
    (the exponent grid is evaluated in float64 and cast before the matrices are formed).

    x obeys the second-order recurrence S·x_n − (2 + dt·g − dt²·a)·x_{n−1} + x_{n−2} = dt²·v_n
    (the IMEX update with z eliminated), so x_n = 2ρ·cos θ·x_{n−1} − ρ²·x_{n−2} + (dt²/S)·v_n with
    ρ² = 1/S, and the last two values of x carry a chunk's whole state. With T = ``chunk``,
    C = ``n_chunks``, v split into chunks v_c (T,), and x⁰_c = v_c·intra chunk c's response to
    its own input, its end state is (X1, X2) = (x⁰_c[T−1], x⁰_c[T−2]). With no further input,
    m steps after position T−1 of chunk c′ its state has become q_m·X1 − ρ²·q_{m−1}·X2
    (q_n = ρⁿ·U_n(cos θ), q_0 = 1, q_{−1} = 0). At position i of chunk c, m = D + i + 1 with
    D = (c − c′ − 1)·T, and the addition formula q_{D+k} = q_D·q_k − ρ²·q_{D−1}·q_{k−1} splits
    every term into a factor of the chunk distance times a factor of i:

        x_c[i] = x⁰_c[i] + q_{i+1}·A1_c − ρ²·q_i·A2_c − q_i·B1_c + ρ²·q_{i−1}·B2_c,
        A·_c = Σ_{c′<c} q_D·X·_{c′},   B·_c = Σ_{c′<c} ρ²·q_{D−1}·X·_{c′},

    i.e. two scalar Toeplitz matrices over chunks applied to the end states, then a rank-4
    emission. Returned, each (N, …):

    - ``intra`` (N, T, T): intra[j, i] = h[i − j] for i ≥ j, h[n] = (dt²/S)·q_n;
    - ``carry`` (N, C, 2C): [A | Bm], A[c′, c] = q_D, Bm[c′, c] = ρ²·q_{D−1} (zero for c′ ≥ c);
    - ``emit`` (N, 4, T): rows [q_{i+1}, −ρ²·q_i, −q_i, ρ²·q_{i−1}], multiplied by
      [A1, A2, B1, B2] per chunk;
    - ``ends`` (N, 2) int64: the columns of x⁰ holding (X1, X2) (T−1, T−2; 0, 1 reversed).

    All entries come from one :class:`_DampedChebyshev` evaluation at T + 2C exponents
    (exact backward), spread into Toeplitz matrices by :func:`_toeplitz`. ``reverse`` (a bool,
    or a bool tensor (N,) per oscillator) gives the operators of the same oscillators run on
    the reversed sequence (the backward direction) in the original order: intra and carry
    transposed, emit flipped along T, the end state at the chunk's start.
    """
    dt, g, a = dt.double(), g.double(), a.double()
    t, c = chunk, n_chunks
    n = dt.shape[0]
    q = _damped_chebyshev(dt, g, a, _chunk_exponents(t, c, str(dt.device)))  # (N, K)
    qn, cq = q[:, : t + 2], q[:, t + 2 :].view(n, 2, c - 1)  # qn[k] = q_{k−1}
    inv_s = (1.0 / (1.0 + dt * g))[:, None]  # ρ², (N, 1)
    f2 = (dt * dt)[:, None] * inv_s  # dt²/S, (N, 1)
    # Forward order; the reversed direction is each vector flipped (lags and distances negated).
    h_by_lag = torch.cat((qn.new_zeros(n, t - 1), f2 * qn[:, 1 : t + 1]), dim=1)  # lags ±(T−1)
    q_i = qn[:, 1 : t + 1]  # q_i, i = 0..T−1
    emit = torch.stack((qn[:, 2:], -inv_s * q_i, -q_i, inv_s * qn[:, :t]), dim=1)  # (N, 4, T)
    cq = torch.stack((cq[:, 0], inv_s * cq[:, 1]), dim=1)  # (N, A|Bm, C−1): d = 1..C−1
    c_by_dist = torch.cat((cq.new_zeros(n, 2, c), cq), dim=2)  # distances −(C−1)..C−1
    # Columns of (X1, X2); at T = 1 only X1 exists (X2 = 0, see _end_states).
    fwd_ends = torch.tensor([t - 1, max(t - 2, 0)], device=dt.device)
    rev_ends = torch.tensor([0, min(1, t - 1)], device=dt.device)
    if isinstance(reverse, Tensor):
        rev = reverse.to(dt.device)
        flip = lambda x, dim: torch.where(rev.view(-1, *[1] * (x.ndim - 1)), x.flip(dim), x)  # noqa: E731
        ends = torch.where(rev[:, None], rev_ends, fwd_ends)  # (N, 2)
    else:
        flip = lambda x, dim: x.flip(dim) if reverse else x  # noqa: E731
        ends = (rev_ends if reverse else fwd_ends).expand(n, 2)  # (N, 2)
    intra = _toeplitz(flip(h_by_lag, 1).to(dtype))  # (N, T, T)
    emit = flip(emit, 2).to(dtype)
    carry = _toeplitz(flip(c_by_dist, 2).to(dtype))  # (N, A|Bm, C′, C)
    carry = carry.permute(0, 2, 1, 3).reshape(n, c, 2 * c)  # (N, C′, 2C): [A | Bm]
    return intra, carry, emit, ends.contiguous()


def _end_states(x0: Tensor, ends: Tensor) -> Tensor:
    """(X1, X2) of every chunk: x⁰ (N, R·C, T), ends (N, 2) → (N, R·C, 2) (X2 = 0 when T = 1)."""
    if x0.shape[-1] == 1:
        return F.pad(x0, (0, 1))  # a one-step chunk leaves x_{−1} = 0 behind
    return x0.gather(-1, ends[:, None, :].expand(-1, x0.shape[1], -1))  # (N, R·C, 2)


class _ChunkedConv(torch.autograd.Function):
    """x = chunked causal convolution of v (see :func:`chunked_conv`), with a hand-written
    backward: the end states' gradient lands in two columns of one copy of x's gradient, where
    autograd would build a full-size zero tensor for the column slice and add it to x's.

    The entering states' coefficients are kept as (N, 4, R·C) ([A1 A2 B1 B2] by (row, chunk)):
    their permutation from the carry product then moves runs of C numbers, not of 2 (a
    permuted copy with an innermost size of 2 ran at ~4 ns a number here).
    """

    @staticmethod
    def forward(ctx, v: Tensor, intra: Tensor, carry: Tensor, emit: Tensor, ends: Tensor):
        n, rows, length = v.shape
        t = intra.shape[-1]
        c = length // t
        vc = v.reshape(n, rows * c, t)  # (N, R·C, T)
        x = torch.bmm(vc, intra)  # (N, R·C, T): every chunk's response to its own input
        s = ab = None
        if c > 1:
            s = _end_states(x, ends).view(n, rows, c, 2).transpose(2, 3).reshape(n, rows * 2, c)
            ab = torch.bmm(s, carry).view(n, rows, 2, 2, c)  # (N, R, X1|X2, A|Bm, C)
            ab = ab.permute(0, 3, 2, 1, 4).reshape(n, 4, rows * c)  # (N, [A1 A2 B1 B2], R·C)
            x.baddbmm_(ab.mT, emit)  # (N, R·C, T): plus the entering states' response
        ctx.save_for_backward(vc, intra, carry, emit, ends, s, ab)
        ctx.shape = (n, rows, c)
        return x.view(n, rows, length)  # (N, R, C·T)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        vc, intra, carry, emit, ends, s, ab = ctx.saved_tensors
        n, rows, c = ctx.shape
        t = intra.shape[-1]
        # Contiguous: for strided operands bmm falls back to a kernel ~20x slower than BLAS.
        gx = grad.contiguous().view(n, rows * c, t)  # (N, R·C, T)
        g_carry = g_emit = None
        if c > 1:
            g_emit = torch.bmm(ab, gx)  # (N, 4, T)
            g_ab = torch.bmm(gx, emit.mT).view(n, rows, c, 2, 2)  # (N, R, C, A|Bm, X1|X2)
            g_ab = g_ab.permute(0, 1, 4, 3, 2).reshape(n, rows * 2, 2 * c)  # (N, R·2, 2C)
            g_carry = torch.bmm(s.mT, g_ab)  # (N, C, 2C)
            g_s = torch.bmm(g_ab, carry.mT).view(n, rows, 2, c).transpose(2, 3)  # (N, R, C, 2)
            g_s = g_s.reshape(n, rows * c, 2)  # (N, R·C, X1|X2)
            # One copy with the end states' gradient added: a full-size pass, as each of the
            # rank-2 corrections of the two products below would be.
            gx = gx.clone()  # the incoming gradient is not ours to change
            if t == 1:
                gx += g_s[..., :1]
            else:
                gx.scatter_add_(-1, ends[:, None, :].expand(-1, rows * c, -1), g_s)
        g_v = torch.bmm(gx, intra.mT).view(n, rows, c * t)  # (N, R, C·T)
        g_intra = torch.bmm(vc.mT, gx)  # (N, T, T)
        return g_v, g_intra, g_carry, g_emit, None


def chunked_conv(v: Tensor, ops: tuple[Tensor, Tensor, Tensor, Tensor]) -> Tensor:
    """Causal convolution by chunks: v (N, R, C·T) → x (N, R, C·T), ops of N oscillators.

    R rows share each oscillator's operators (real and imaginary parts, batch). Three batched
    matmuls (see :func:`chunk_operators`): the intra-chunk Toeplitz, the carry of the chunks'
    end states (two columns of its output) to later chunks, and the entering states' response.
    """
    return _ChunkedConv.apply(v, *ops)


def ssm_chunk(v: Tensor, dt: Tensor, g: Tensor, a: Tensor, chunk: int = 0) -> Tensor:
    """Chunked Toeplitz + carried state (:func:`chunked_conv`). v (B, L, ..., N) → x (same).

    (The same signature as the other modes; :class:`DLinOSSLayer` calls :func:`chunked_conv`
    on both directions at once.)
    """
    length = v.shape[1]
    t = chunk or chunk_size(length)
    c = -(-length // t)
    perm = (v.ndim - 1, 0, *range(2, v.ndim - 1), 1)  # (N, B, ..., L)
    vt = v.permute(perm)
    shape = vt.shape
    vt = F.pad(vt.reshape(shape[0], -1, length), (0, c * t - length))  # (N, R, C·T)
    ops = chunk_operators(dt, g, a, t, c, dtype=v.dtype)
    x = chunked_conv(vt, ops)[..., :length].reshape(shape)  # (N, B, ..., L)
    inv = sorted(range(v.ndim), key=lambda i: perm[i])
    return x.permute(inv)  # (B, L, ..., N)


def fft_causal_conv(v: Tensor, h: Tensor) -> Tensor:
    """Causal convolution along the last axis: v (..., N, L), h (N, L) → (..., N, L).

    Zero-padded to a power of two ≥ 2L − 1, so the circular convolution of the rFFT is the
    linear one. Channels-first, so every transform runs over contiguous memory.
    """
    length = v.shape[-1]
    n = _fft_len(length)
    vf = torch.fft.rfft(v, n=n)  # (..., N, n/2+1)
    hf = torch.fft.rfft(h, n=n)  # (N, n/2+1)
    return torch.fft.irfft(vf * hf, n=n)[..., :length]  # (..., N, L)


def ssm_fft(v: Tensor, dt: Tensor, g: Tensor, a: Tensor) -> Tensor:
    """Convolution with the closed-form kernel by rFFT. v (B, L, ..., N) → x (B, L, ..., N).

    (The same signature as the other modes; :class:`DLinOSSCore` calls
    :func:`fft_causal_conv` on a channels-first layout directly, saving two transposes.)
    """
    h = dlinoss_kernel(dt, g, a, v.shape[1]).to(v.dtype)  # (N, L)
    return fft_causal_conv(v.movedim(1, -1), h).movedim(-1, 1)  # (B, L, ..., N)


_SSM_MODES = {"recurrent": ssm_recurrent, "scan": ssm_scan, "fft": ssm_fft, "chunk": ssm_chunk}


def resolve_mode(mode: str, device: torch.device) -> str:
    """Concrete compute mode: ``auto`` → AUTO_MODE[device type] (fft where unmeasured)."""
    if mode == "auto":
        return AUTO_MODE.get(device.type, "fft")
    if mode not in _SSM_MODES:
        raise ConfigError(f"unknown D-LinOSS mode {mode!r}; choose one of {MODES}")
    return mode


def effective_dynamics(
    cfg: DLinOSSConfig, dt_raw: Tensor, g_raw: Tensor, a_raw: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Effective (dt, g, a) from raw parameters (any shape), per the parameterisation above."""
    dt = cfg.dt_min + (cfg.dt_max - cfg.dt_min) * torch.sigmoid(dt_raw)
    if cfg.relaxed:
        g = F.relu(g_raw)
    else:
        g_cap = (cfg.clamp_eps**-2 - 1.0) / dt  # keeps S ≤ ε⁻², i.e. |λ| ≥ ε
        g = torch.minimum(cfg.g_min + F.softplus(g_raw), g_cap)
    sq = torch.sqrt(1.0 + dt * g)
    lo = (g / (sq + 1.0)) ** 2  # (√S − 1)²/dt²
    hi = ((sq + 1.0) / dt) ** 2  # (√S + 1)²/dt²
    if not cfg.relaxed:
        lo, hi = lo * (1.0 + cfg.clamp_eps), hi * (1.0 - cfg.clamp_eps)
    if cfg.A_PARAM == "sigmoid":
        return dt, g, lo + (hi - lo) * torch.sigmoid(a_raw)
    a = torch.minimum(torch.maximum(a_raw, lo), hi)
    return dt, g, a


def clamp_interval(cfg: DLinOSSConfig, dt_raw: Tensor, g_raw: Tensor) -> tuple[Tensor, Tensor]:
    """The interval [lo', hi'] that a is clamped to (or mapped into), from raw dt and g."""
    dt, g, _ = effective_dynamics(cfg, dt_raw, g_raw, torch.zeros_like(dt_raw))
    sq = torch.sqrt(1.0 + dt * g)
    lo, hi = (g / (sq + 1.0)) ** 2, ((sq + 1.0) / dt) ** 2
    if not cfg.relaxed:
        lo, hi = lo * (1.0 + cfg.clamp_eps), hi * (1.0 - cfg.clamp_eps)
    return lo, hi


def _softplus_inv(y: Tensor) -> Tensor:
    """x with softplus(x) = y > 0 (stable for small and large y)."""
    return y + torch.log(-torch.expm1(-y))


class DLinOSSCore(nn.Module):
    """One direction of the linear D-LinOSS SSM: u (B, L, H) → y (B, L, H), causal.

    Parameters: ``dt_raw``, ``g_raw``, ``a_raw`` (P,) (dynamics, marked with ``_optim``),
    ``B`` (P, H, 2) and ``C`` (H, P, 2) (real/imaginary parts), ``D`` (H,).
    """

    def __init__(self, d_model: int, cfg: DLinOSSConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.mode = cfg.mode
        h, p = d_model, cfg.n_oscillators
        # Ring initialisation, in float64.
        dt_raw = torch.randn(p, dtype=torch.float64) * cfg.dt_init_std
        dt = cfg.dt_min + (cfg.dt_max - cfg.dt_min) * torch.sigmoid(dt_raw)
        u1, u2 = torch.rand(p, dtype=torch.float64), torch.rand(p, dtype=torch.float64)
        r = torch.sqrt(u1 * (cfg.r_max**2 - cfg.r_min**2) + cfg.r_min**2)
        theta = cfg.theta_min + u2 * (math.pi - 2 * cfg.theta_min)
        g = (1 - r**2) / (dt * r**2)
        a = (1 - 2 * r * torch.cos(theta) + r**2) / (dt**2 * r**2)
        g_raw = g if cfg.relaxed else _softplus_inv(g - cfg.g_min)
        if cfg.A_PARAM == "sigmoid":  # a_raw = logit of a's place in [lo', hi']
            lo, hi = clamp_interval(cfg, dt_raw, g_raw)
            frac = ((a - lo) / (hi - lo)).clamp(1e-6, 1.0 - 1e-6)
            a = torch.logit(frac)
        self.dt_raw = nn.Parameter(dt_raw.float())
        self.g_raw = nn.Parameter(g_raw.float())
        self.a_raw = nn.Parameter(a.float())
        for prm in (self.dt_raw, self.g_raw, self.a_raw):
            prm._optim = {"lr_scale": cfg.ssm_lr_scale, "weight_decay": 0.0}
        # B, C, D as the official code: uniform with std 1/√H (B), 1/√P (C); D ~ N(0, 1).
        self.B = nn.Parameter(torch.empty(p, h, 2).uniform_(-1, 1) * math.sqrt(3.0 / h))
        self.C = nn.Parameter(torch.empty(h, p, 2).uniform_(-1, 1) * math.sqrt(3.0 / p))
        self.D = nn.Parameter(torch.randn(h))

    # -- parameterisation ------------------------------------------------------------------
    def dynamics(self) -> tuple[Tensor, Tensor, Tensor]:
        """Effective (dt, g, a), each (P,), in the parameters' dtype."""
        return effective_dynamics(self.cfg, self.dt_raw, self.g_raw, self.a_raw)

    def eigenvalues(self) -> Tensor:
        """λ = r·e^{+iθ} per oscillator (P,) complex128 (the other one is its conjugate)."""
        dt, g, a = (t.double() for t in self.dynamics())
        s = 1.0 + dt * g
        sq = torch.sqrt(s)
        lo, hi = (g / (sq + 1.0)) ** 2, ((sq + 1.0) / dt) ** 2
        re = (2.0 + dt * g - dt * dt * a) / (2.0 * s)
        # 4a − (g − dt·a)² = dt²·(a − lo)(hi − a) > 0 inside the complex region.
        im = dt * dt * torch.sqrt(((a - lo) * (hi - a)).clamp_min(0.0)) / (2.0 * s)
        return torch.complex(re, im)

    def effective_parameters(self) -> dict[str, Tensor]:
        """Effective (clamped) parameters of this direction, in the model's autograd graph.

        dt, g, a: (P,); eigenvalues: (P,) complex128 (upper half plane); B: (P, H) and
        C: (H, P) complex; D: (H,).
        """
        dt, g, a = self.dynamics()
        return {
            "dt": dt,
            "g": g,
            "a": a,
            "eigenvalues": self.eigenvalues(),
            "B": torch.view_as_complex(self.B.contiguous()),
            "C": torch.view_as_complex(self.C.contiguous()),
            "D": self.D,
        }

    # -- analysis ---------------------------------------------------------------------------
    def oscillator_response(self, omega: Tensor) -> Tensor:
        """Per-oscillator H_p(e^{iω}) (x_p from (Bu)_p): omega (F,) rad/sample → (F, P) complex."""
        dt, g, a = (t.double() for t in self.dynamics())
        z = torch.exp(1j * omega.to(torch.float64))[:, None]  # (F, 1)
        s, tr = 1.0 + dt * g, 2.0 + dt * g - dt * dt * a  # (P,)
        return dt * dt * z * z / (s * z * z - tr * z + 1.0)  # (F, P)

    def coupling_matrices(self) -> Tensor:
        """W_p = Re(C_{:,p} B_{p,:}), the real rank-≤2 input→output map of oscillator p.

        Returns (P, H_out, H_in) float64.
        """
        b, c = self.B.double(), self.C.double()  # (P, H, 2), (H, P, 2)
        return torch.einsum("ip,pj->pij", c[..., 0], b[..., 0]) - torch.einsum(
            "ip,pj->pij", c[..., 1], b[..., 1]
        )  # (P, H, H)

    def transfer_function(self, omega: Tensor) -> Tensor:
        """Response from u to y, Σ_p W_p H_p(e^{iω}) + diag(D), W_p = Re(C_{:,p} B_{p,:}).

        omega: (F,) angular frequencies (rad/sample). Returns (F, H_out, H_in) complex128.
        """
        hp = self.oscillator_response(omega)  # (F, P)
        w = self.coupling_matrices()  # (P, H, H)
        resp = (hp @ w.flatten(1).to(hp.dtype)).unflatten(1, w.shape[1:])  # (F, H, H)
        return resp + torch.diag(self.D.double()).to(hp.dtype)  # (F, H, H)

    def frequency_response(self, n_freq: int) -> tuple[Tensor, Tensor]:
        """(ω, response) on ω = linspace(0, π, n_freq) (the rFFT bins of length 2(n_freq − 1))."""
        omega = torch.linspace(0.0, math.pi, n_freq, dtype=torch.float64, device=self.D.device)
        return omega, self.transfer_function(omega)

    def kernel(self, length: int) -> Tensor:
        """Closed-form impulse response of each oscillator's x to (Bu): (P, length) float64."""
        return dlinoss_kernel(*self.dynamics(), length)

    # -- forward ----------------------------------------------------------------------------
    def forward(self, u: Tensor, mode: str | None = None) -> Tensor:
        """u (B, L, H) → y (B, L, H) in float32 (float64 for float64 input)."""
        mode = resolve_mode(mode or self.mode, u.device)
        with torch.autocast(device_type=u.device.type, enabled=False):
            dtype = torch.promote_types(u.dtype, torch.float32)
            u = u.to(dtype)  # (B, L, H)
            if mode == "chunk":  # builds its own maps and operators (chunk_plans)
                (plan,) = chunk_plans([[(self, False)]], u.shape[1], dtype)
                x = chunk_forward(u, plan)  # (2P, B·L)
                y = (plan.w_out[0] @ x).T.view(u.shape)  # (B, L, H)
                return self.D.to(dtype) * u + y  # (B, L, H), contiguous (see _forward_chunk)
            dt, g, a = (t.to(dtype) for t in self.dynamics())  # (P,)
            p = dt.shape[0]
            w_in = self.B.to(dtype).permute(2, 0, 1).reshape(2 * p, -1)  # (2P, H): [Re B; Im B]
            c = self.C.to(dtype)  # (H, P, 2)
            w_out = torch.cat((c[..., 0], -c[..., 1]), dim=1)  # (H, 2P): Re(C x)
            # M is real: real and imaginary parts of Bu evolve independently, same (dt, g, a).
            if mode == "fft":
                v = (w_in @ u.mT).unflatten(1, (2, p))  # (B, 2, P, L): [Re Bu; Im Bu]
                h = dlinoss_kernel(dt, g, a, u.shape[1]).to(dtype)  # (P, L)
                x = fft_causal_conv(v, h).flatten(1, 2)  # (B, 2P, L)
                y = (w_out @ x).mT  # (B, L, H)
            else:
                v = (u @ w_in.T).unflatten(-1, (2, p))  # (B, L, 2, P): [Re Bu, Im Bu]
                x = _SSM_MODES[mode](v, dt, g, a).flatten(-2)  # (B, L, 2P)
                y = x @ w_out.T  # (B, L, H)
            return y + self.D.to(dtype) * u  # (B, L, H)


@dataclass
class ChunkPlan:
    """What the chunked mode needs of a group of cores (one layer), for one length and dtype.

    ``w_in`` (R, H): input maps, rows (core, oscillator, Re/Im), R = Σ 2P; ``w_out``: per core
    its output map (H, 2P), columns in the same order (core k's Re(C x) is x_kᵀ·w_kᵀ);
    ``ops``: the :func:`chunk_operators` of all the group's oscillators (Σ P of them).
    """

    w_in: Tensor
    w_out: list[Tensor]
    ops: tuple[Tensor, Tensor, Tensor, Tensor]
    chunk: int


def chunk_plans(
    groups: list[list[tuple[DLinOSSCore, bool]]], length: int, dtype: torch.dtype
) -> list[ChunkPlan]:
    """:class:`ChunkPlan` per group of (core, reverse) pairs, built for all groups at once.

    reverse=True marks a core that runs on the reversed sequence. Every core must share the
    group's config values (they do within a backbone). One batched construction for all the
    backbone's layers: the operators are a few dozen small ops however many cores there are.
    """
    entries = [e for grp in groups for e in grp]
    cores = [core for core, _ in entries]
    cfg = cores[0].cfg
    t = cfg.chunk or chunk_size(length)
    n_chunks = -(-length // t)
    cat = lambda name, dim=0: torch.cat([getattr(c, name) for c in cores], dim=dim)  # noqa: E731
    dt, g, a = effective_dynamics(cfg, cat("dt_raw"), cat("g_raw"), cat("a_raw"))  # (N,)
    rev = torch.cat([torch.full((c.dt_raw.shape[0],), r) for c, r in entries])  # (N,)
    reverse = rev if rev.any() else False
    ops = chunk_operators(dt, g, a, t, n_chunks, reverse, dtype)
    h = cores[0].B.shape[1]
    w_in = cat("B").to(dtype).permute(0, 2, 1).reshape(-1, h)  # (R, H): rows (core, p, Re/Im)
    c = cat("C", dim=1).to(dtype)  # (H, N, 2)
    w_out = torch.stack((c[..., 0], -c[..., 1]), dim=-1).reshape(h, -1)  # (H, R): Re(C x)
    # One split per tensor: slicing per layer would give each slice's backward a full-size
    # zero gradient to fill.
    counts = [sum(core.dt_raw.shape[0] for core, _ in grp) for grp in groups]
    w_ins = w_in.split([2 * k for k in counts], dim=0)
    w_outs = w_out.split([2 * core.dt_raw.shape[0] for core in cores], dim=1)
    ops_by_group = list(zip(*(o.split(counts, dim=0) for o in ops), strict=True))
    plans, k = [], 0
    for grp, w_in_g, ops_g in zip(groups, w_ins, ops_by_group, strict=True):
        plans.append(
            ChunkPlan(w_in=w_in_g, w_out=list(w_outs[k : k + len(grp)]), ops=ops_g, chunk=t)
        )
        k += len(grp)
    return plans


class _InputMap(torch.autograd.Function):
    """v = W·uᵀ: W (R, H), u (B·L, H) → v (R, B·L), with u's gradient returned contiguous as
    (B·L, H) (= vgᵀ·W). Autograd's matmul backward returns it as a transposed view, and
    the LayerNorm before the layer copied it back (~6 % of a step at the quick size)."""

    @staticmethod
    def forward(ctx, w: Tensor, u: Tensor) -> Tensor:
        ctx.save_for_backward(w, u)
        return w @ u.T  # (R, B·L)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        w, u = ctx.saved_tensors
        g_w = grad @ u if ctx.needs_input_grad[0] else None  # (R, H)
        g_u = grad.T @ w if ctx.needs_input_grad[1] else None  # (B·L, H)
        return g_w, g_u


def chunk_forward(u: Tensor, plan: ChunkPlan) -> Tensor:
    """The chunked mode of a group of cores on one input: u (B, L, H) → x (R, B·L).

    Rows of x as ``plan.w_in``; the output maps and the D feed-through are left to the caller.
    """
    bsz, length, h = u.shape
    t = plan.chunk
    n_chunks = -(-length // t)
    v = _InputMap.apply(plan.w_in, u.reshape(bsz * length, h))  # (R, B·L)
    n_osc = v.shape[0] // 2
    v = v.view(n_osc, 2 * bsz, length)  # (N, 2B, L): rows (Re/Im, batch) per oscillator
    pad = n_chunks * t - length
    if pad:
        v = F.pad(v, (0, pad))  # (N, 2B, C·T): zeros add nothing in either direction
    x = chunked_conv(v, plan.ops)  # (N, 2B, C·T)
    if pad:
        x = x[..., :length]  # (N, 2B, L)
    return x.reshape(2 * n_osc, bsz * length)  # (R, B·L)


class DLinOSSLayer(nn.Module):
    """Bidirectional D-LinOSS: a causal core on u and another on the reversed u, combined."""

    def __init__(self, d_model: int, cfg: DLinOSSConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.fwd = DLinOSSCore(d_model, cfg)
        self.bwd = DLinOSSCore(d_model, cfg) if cfg.bidirectional else None
        concat = cfg.bidirectional and cfg.combine == "concat"
        self.proj = nn.Linear(2 * d_model, d_model) if concat else None

    def cores(self) -> dict[str, DLinOSSCore]:
        """{"forward": core[, "backward": core]}; the backward core runs on the reversed input."""
        return {"forward": self.fwd} | ({} if self.bwd is None else {"backward": self.bwd})

    def chunk_group(self) -> list[tuple[DLinOSSCore, bool]]:
        """(core, reverse) pairs for :func:`chunk_plans`."""
        return [(self.fwd, False)] + ([] if self.bwd is None else [(self.bwd, True)])

    def forward(self, u: Tensor, mode: str | None = None, plan: ChunkPlan | None = None) -> Tensor:
        """u (B, L, H) → (B, L, H). ``plan``: precomputed chunk plan (chunked mode only)."""
        if plan is not None or resolve_mode(mode or self.fwd.mode, u.device) == "chunk":
            return self._forward_chunk(u, plan)
        y = self.fwd(u, mode)  # (B, L, H)
        if self.bwd is None:
            return y
        yb = self.bwd(u.flip(1), mode).flip(1)  # (B, L, H), anti-causal
        if self.proj is None:
            return y + yb
        return self.proj(torch.cat((y, yb), dim=-1))  # (B, L, H)

    def _forward_chunk(self, u: Tensor, plan: ChunkPlan | None) -> Tensor:
        """Both directions in one chunked convolution (the backward one by reversed operators,
        so the input is never flipped), and for ``combine="sum"`` one output matmul."""
        with torch.autocast(device_type=u.device.type, enabled=False):
            dtype = torch.promote_types(u.dtype, torch.float32)
            u = u.to(dtype)  # (B, L, H)
            if plan is None:
                (plan,) = chunk_plans([self.chunk_group()], u.shape[1], dtype)
            x = chunk_forward(u, plan)  # (R, B·L)
            d = [core.D.to(dtype) for core, _ in self.chunk_group()]  # (H,) each
            # y = (W x)ᵀ: a transposed view, so that x's gradient comes back contiguous.
            if self.proj is None:  # one direction, or the sum of both
                y = (torch.cat(plan.w_out, dim=1) @ x).T.view(u.shape)  # (B, L, H)
                # u·D first: the sum takes its contiguous layout, and so do GELU, the GLU
                # and their backwards (after y + u·D they all ran on the transposed layout,
                # and the block's LayerNorm copied its gradient back).
                return sum(d) * u + y  # (B, L, H)
            x_f, x_b = x.chunk(2, dim=0)  # (2P, B·L) each
            y_f = d[0] * u + (plan.w_out[0] @ x_f).T.view(u.shape)  # (B, L, H)
            y_b = d[1] * u + (plan.w_out[1] @ x_b).T.view(u.shape)  # (B, L, H)
        return self.proj(torch.cat((y_f, y_b), dim=-1))  # (B, L, H)

    def effective_parameters(self) -> dict[str, dict[str, Tensor]]:
        """Per direction ("forward", "backward"): see :meth:`DLinOSSCore.effective_parameters`.

        With ``combine="concat"``, "combine" holds the projection's weight (H, 2H) and bias.
        """
        out = {k: core.effective_parameters() for k, core in self.cores().items()}
        if self.proj is not None:
            out["combine"] = {"weight": self.proj.weight, "bias": self.proj.bias}
        return out

    def transfer_function(self, omega: Tensor) -> dict[str, Tensor]:
        """Responses (F, H_out, H_in) complex128 per direction and of the whole layer ("total").

        "backward" is the backward core's response in its own (reversed) time; in the original
        axis it acts as its complex conjugate (anti-causal filter). "total" is the linear layer
        in the original axis; a concat projection's bias is an offset, not part of it.
        """
        out = {k: core.transfer_function(omega) for k, core in self.cores().items()}
        if "backward" not in out:
            out["total"] = out["forward"]
            return out
        fwd, bwd = out["forward"], out["backward"].conj()
        if self.proj is None:
            out["total"] = fwd + bwd
        else:
            w = self.proj.weight.double().to(fwd.dtype)  # (H, 2H)
            h = fwd.shape[-1]
            out["total"] = w[:, :h] @ fwd + w[:, h:] @ bwd
        return out

    def frequency_response(self, n_freq: int) -> tuple[Tensor, dict[str, Tensor]]:
        """(ω, responses) on ω = linspace(0, π, n_freq); see :meth:`transfer_function`."""
        device = self.fwd.D.device
        omega = torch.linspace(0.0, math.pi, n_freq, dtype=torch.float64, device=device)
        return omega, self.transfer_function(omega)


def _norm(kind: str, d_model: int) -> nn.Module:
    return nn.LayerNorm(d_model) if kind == "layer" else nn.RMSNorm(d_model)


class DLinOSSBlock(nn.Module):
    """norm → SSM → GELU → dropout → GLU → dropout → residual. (B, L, H) → (B, L, H)."""

    def __init__(self, d_model: int, cfg: DLinOSSConfig) -> None:
        super().__init__()
        self.norm = _norm(cfg.norm, d_model)
        self.ssm = DLinOSSLayer(d_model, cfg)
        self.mix = nn.Linear(d_model, 2 * d_model if cfg.glu else d_model)
        self.glu = cfg.glu
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, plan: ChunkPlan | None = None) -> Tensor:
        y = self.drop(F.gelu(self.ssm(self.norm(x), plan=plan)))  # (B, L, H)
        y = self.mix(y)  # (B, L, 2H) or (B, L, H)
        if self.glu:
            y = F.glu(y, dim=-1)  # (B, L, H)
        return x + self.drop(y)  # (B, L, H)


@register_backbone("dlinoss", DLinOSSConfig)
class DLinOSSBackbone(nn.Module):
    """Stack of bidirectional D-LinOSS blocks: (B, L, d_model) → (B, L, d_model).

    Normalisation is per position (LayerNorm or RMSNorm), never BatchNorm, so DDP training
    equals single-process training. The SSM cores run in float32 under autocast.
    """

    def __init__(self, cfg: DLinOSSConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleList(DLinOSSBlock(cfg.d_model, cfg) for _ in range(cfg.n_layers))
        self.norm = _norm(cfg.norm, cfg.d_model) if cfg.final_norm else nn.Identity()

    def set_mode(self, mode: str) -> None:
        """Switch every core's compute mode (recurrent | scan | fft | auto)."""
        _check(mode in MODES, f"dlinoss mode must be one of {MODES}, got {mode!r}")
        for layer in self.layers():
            for core in layer.cores().values():
                core.mode = mode

    def layers(self) -> list[DLinOSSLayer]:
        """The SSM layers, in depth order (for transfer-function analysis)."""
        return [block.ssm for block in self.blocks]

    def forward(self, x: Tensor) -> Tensor:
        plans: list[ChunkPlan | None] = [None] * len(self.blocks)
        modes = {resolve_mode(core.mode, x.device) for core in self.cores()}
        if modes == {"chunk"}:  # every layer's operators in one batched construction
            dtype = torch.promote_types(x.dtype, torch.float32)
            groups = [layer.chunk_group() for layer in self.layers()]
            with torch.autocast(device_type=x.device.type, enabled=False):
                plans = chunk_plans(groups, x.shape[1], dtype)
        for block, plan in zip(self.blocks, plans, strict=True):
            x = block(x, plan)  # (B, L, H)
        return self.norm(x)  # (B, L, H)

    def cores(self) -> list[DLinOSSCore]:
        """Every SSM core, in depth order (forward before backward)."""
        return [core for layer in self.layers() for core in layer.cores().values()]

    @torch.no_grad()
    def clamp_counts(self) -> dict[str, int]:
        """Oscillators whose a_raw lies outside the clamp interval (there a_raw gets no
        gradient), by the end they sit at: {"below_lo", "above_hi", "total"} (0 and 0 for the
        sigmoid variant, whose a never leaves the interval's inside)."""
        below = above = total = 0
        for core in self.cores():
            total += core.a_raw.numel()
            if self.cfg.A_PARAM != "clamp":
                continue
            lo, hi = clamp_interval(self.cfg, core.dt_raw, core.g_raw)
            below += int((core.a_raw < lo).sum())
            above += int((core.a_raw > hi).sum())
        return {"below_lo": below, "above_hi": above, "total": total}


@register_backbone("dlinoss_sigmoid", DLinOSSSigmoidConfig)
class DLinOSSSigmoidBackbone(DLinOSSBackbone):
    """D-LinOSS with the sigmoid placement of a (:class:`DLinOSSSigmoidConfig`); otherwise
    :class:`DLinOSSBackbone`."""
