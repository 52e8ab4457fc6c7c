"""Shared spectrum embedding: wavelet filter bank + wavenumber encoding + mask indicator.

Input: spectrum values s (B, L), the wavenumbers ν (L,) or (B, L) in cm⁻¹ at which they were
sampled, and a mask indicator m (B, L) (1 = masked / unknown). Output: (B, L', d_model).

1. Mask: masked values are set to 0 *and* flagged, x = [s ⊙ (1 − m), m] (2 channels), so a
   masked position is never confused with a true zero (NaN in masked positions is harmless).
   Beyond the ends of the spectrum the input is padded as masked (value 0, flag 1).
2. Filter bank: a Conv1d over both channels whose value-channel kernels start as real wavelet
   filters (PyWavelets): the equivalent filters of the undecimated discrete wavelet transform
   (Mallat 1989) at levels j,

       a_j = h ∗ h↑2 ∗ … ∗ h↑2^{j−1},   d_j = h ∗ … ∗ h↑2^{j−2} ∗ g↑2^{j−1}

   (h = dec_lo, g = dec_hi, ↑k inserts k−1 zeros), for each family (db, sym, coif, ...), plus
   the Mexican hat ψ(t/σ) sampled at a few scales σ (samples) from
   ``pywt.ContinuousWavelet("mexh").wavefun`` and a unit impulse (the raw value). Every kernel
   has unit L2 norm, is flipped (Conv1d is a cross-correlation) and centred; the mask-channel
   kernels start at zero. The bank is trainable (``trainable_filters``). With stride s > 1,
   output position i is centred on input position i·s, and the wavenumber grid and the mask
   are pooled the same way (ν'_i = ν_{i·s}): :meth:`SpectrumEmbedding.output_grid` gives the
   grid the backbone actually sees.
3. Wavenumber encoding of the actual values (not of the index), so spectra on different grids
   are encoded honestly: with log-spaced periods P_k from ``period_min`` to ``period_max``
   (cm⁻¹),  e(ν) = [sin(2πν/P_k), cos(2πν/P_k)]_k, computed in float64.
4. Output: Linear([filter bank (F), m' (1), e(ν') (2K)] → d_model), then dropout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spektron.errors import ConfigError, DataError

# Mexican hat kernels are cut at |t| = 5σ, where |ψ| < 2e-4 · max|ψ|.
MEXH_HALF_SUPPORT = 5.0
# Resolution of pywt's sampled Mexican hat (2^level points over [-8, 8]) before interpolation.
MEXH_WAVEFUN_LEVEL = 12


@dataclass
class EmbeddingConfig:
    """Spectrum embedding (the shared ``d_model`` lives in the model config)."""

    # Discrete wavelet families (PyWavelets names) and DWT levels of the filter bank.
    wavelets: tuple[str, ...] = ("db4", "sym4", "coif2")
    levels: tuple[int, ...] = (1, 2, 3)
    # Mexican-hat scales σ in samples (empty: none).
    mexh_scales: tuple[float, ...] = (1.0, 2.0, 4.0)
    # Include a unit impulse, so the raw value passes through the bank unchanged at init.
    identity_filter: bool = True
    trainable_filters: bool = True
    stride: int = 1
    # Wavenumber encoding: n_frequencies log-spaced periods in [period_min, period_max] cm⁻¹.
    n_frequencies: int = 16
    period_min: float = 3.0
    period_max: float = 8000.0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        import pywt

        self.wavelets = tuple(self.wavelets)
        self.levels = tuple(self.levels)
        self.mexh_scales = tuple(self.mexh_scales)
        known = set(pywt.wavelist(kind="discrete"))
        bad = [w for w in self.wavelets if w not in known]
        if bad:
            raise ConfigError(f"embedding.wavelets: unknown discrete wavelet(s) {bad}")
        if any(j < 1 for j in self.levels):
            raise ConfigError(f"embedding.levels must be >= 1, got {self.levels}")
        if self.wavelets and not self.levels:
            raise ConfigError("embedding.levels is empty but embedding.wavelets is not")
        if any(s <= 0 for s in self.mexh_scales):
            raise ConfigError(f"embedding.mexh_scales must be > 0, got {self.mexh_scales}")
        if not (self.wavelets or self.mexh_scales or self.identity_filter):
            raise ConfigError("embedding: the filter bank is empty")
        if self.stride < 1:
            raise ConfigError(f"embedding.stride must be >= 1, got {self.stride}")
        if self.n_frequencies < 1:
            raise ConfigError(f"embedding.n_frequencies must be >= 1, got {self.n_frequencies}")
        if not 0 < self.period_min < self.period_max:
            raise ConfigError(
                f"embedding needs 0 < period_min < period_max, got "
                f"{self.period_min}, {self.period_max}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"embedding.dropout must be in [0, 1), got {self.dropout}")


def _upsample(f: np.ndarray, k: int) -> np.ndarray:
    """Insert k − 1 zeros between taps (the à-trous filter f↑k)."""
    out = np.zeros((len(f) - 1) * k + 1)
    out[::k] = f
    return out


def dwt_equivalent_filters(name: str, level: int) -> tuple[np.ndarray, np.ndarray]:
    """Approximation and detail filters (a_j, d_j) of the undecimated DWT at ``level``."""
    import pywt

    w = pywt.Wavelet(name)
    lo, hi = np.asarray(w.dec_lo), np.asarray(w.dec_hi)
    approx = np.array([1.0])
    for j in range(level - 1):
        approx = np.convolve(approx, _upsample(lo, 2**j))
    detail = np.convolve(approx, _upsample(hi, 2 ** (level - 1)))
    approx = np.convolve(approx, _upsample(lo, 2 ** (level - 1)))
    return approx, detail


def mexican_hat_filter(scale: float) -> np.ndarray:
    """ψ(t/σ) at integer t, |t| ≤ 5σ, interpolated from PyWavelets' sampled Mexican hat."""
    import pywt

    psi, x = pywt.ContinuousWavelet("mexh").wavefun(level=MEXH_WAVEFUN_LEVEL)
    half = math.ceil(MEXH_HALF_SUPPORT * scale)
    t = np.arange(-half, half + 1) / scale
    return np.interp(t, x, psi)


def filter_bank(cfg: EmbeddingConfig) -> tuple[list[str], np.ndarray]:
    """Names and kernels (n_filters, K), K odd: each unit-norm, flipped and centred."""
    named: list[tuple[str, np.ndarray]] = []
    if cfg.identity_filter:
        named.append(("impulse", np.array([1.0])))
    for w in cfg.wavelets:
        for j in cfg.levels:
            a, d = dwt_equivalent_filters(w, j)
            named += [(f"{w}_a{j}", a), (f"{w}_d{j}", d)]
    for s in cfg.mexh_scales:
        named.append((f"mexh_s{s:g}", mexican_hat_filter(s)))
    K = max(len(f) for _, f in named)
    K += 1 - K % 2  # odd, so that a kernel has a centre tap
    bank = np.zeros((len(named), K))
    for i, (_, f) in enumerate(named):
        f = f[::-1] / np.linalg.norm(f)
        start = (K - len(f)) // 2
        bank[i, start : start + len(f)] = f
    return [n for n, _ in named], bank


def wavenumber_periods(cfg: EmbeddingConfig) -> torch.Tensor:
    """Log-spaced periods (cm⁻¹) of the wavenumber encoding: (n_frequencies,) float64."""
    return torch.logspace(
        math.log10(cfg.period_min), math.log10(cfg.period_max), cfg.n_frequencies,
        dtype=torch.float64,
    )  # fmt: skip


class SpectrumEmbedding(nn.Module):
    """(values (B, L), wavenumber (L,) | (B, L), mask (B, L) | None) → (B, L', d_model)."""

    def __init__(self, cfg: EmbeddingConfig, d_model: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.stride = cfg.stride
        self.filter_names, bank = filter_bank(cfg)
        n_filters, K = bank.shape
        self.kernel_size = K
        self.conv = nn.Conv1d(2, n_filters, K, stride=cfg.stride, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[:, 0] = torch.as_tensor(bank, dtype=torch.float32)
        self.conv.weight.requires_grad_(cfg.trainable_filters)
        self.proj = nn.Linear(n_filters + 1 + 2 * cfg.n_frequencies, d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def output_length(self, L: int) -> int:
        return (L - 1) // self.stride + 1

    def output_grid(self, wavenumber: torch.Tensor) -> torch.Tensor:
        """Wavenumbers (cm⁻¹) of the positions the backbone sees: (..., L')."""
        return wavenumber[..., :: self.stride]

    def output_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """Mask indicator at the positions the backbone sees: (B, L')."""
        return mask[..., :: self.stride]

    def encode_wavenumber(self, wavenumber: torch.Tensor) -> torch.Tensor:
        """Sinusoidal features of the wavenumber values: (..., L) → (..., L, 2K) float32."""
        # Periods are rebuilt here rather than kept as a buffer: module.to(dtype) would cast a
        # buffer to half precision, and the phases need float64 (ν/P reaches ~5000 turns).
        periods = wavenumber_periods(self.cfg).to(wavenumber.device)  # (K,)
        phase = 2 * math.pi * wavenumber.double().unsqueeze(-1) / periods  # (..., L, K)
        return torch.cat([phase.sin(), phase.cos()], dim=-1).float()  # (..., L, 2K)

    def forward(
        self, values: torch.Tensor, wavenumber: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        B, L = _check_inputs(values, wavenumber, mask)
        if mask is None:
            mask = torch.zeros_like(values, dtype=torch.bool)  # (B, L)
        m = mask.to(torch.bool)
        x = torch.where(m, torch.zeros_like(values), values)  # (B, L), masked → 0
        pad = self.kernel_size // 2
        x = F.pad(x, (pad, pad), value=0.0)  # (B, L + 2p): outside the spectrum is unknown
        mf = F.pad(m.to(x.dtype), (pad, pad), value=1.0)  # (B, L + 2p)
        feats = self.conv(torch.stack([x, mf], dim=1))  # (B, F, L')
        m_out = self.output_mask(m).to(feats.dtype)  # (B, L')
        nu = self.output_grid(wavenumber).expand(B, -1)  # (B, L')
        enc = self.encode_wavenumber(nu).to(feats.dtype)  # (B, L', 2K)
        h = torch.cat([feats.transpose(1, 2), m_out.unsqueeze(-1), enc], dim=-1)  # (B, L', C)
        return self.drop(self.proj(h))  # (B, L', d_model)


def _check_inputs(
    values: torch.Tensor, wavenumber: torch.Tensor, mask: torch.Tensor | None
) -> tuple[int, int]:
    if values.dim() != 2:
        raise DataError(f"spectrum values must be (B, L), got shape {tuple(values.shape)}")
    B, L = values.shape
    if wavenumber.shape not in ((L,), (B, L)):
        raise DataError(
            f"wavenumber must be (L,) or (B, L) = ({L},) or ({B}, {L}), "
            f"got {tuple(wavenumber.shape)}"
        )
    if mask is not None and mask.shape != (B, L):
        raise DataError(f"mask must be (B, L) = ({B}, {L}), got {tuple(mask.shape)}")
    return B, L
