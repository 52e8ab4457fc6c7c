"""Training objectives.

- Masked reconstruction: mean squared error over masked positions only,
  MSE = Σ_{b,i} m_bi (ŷ_bi − y_bi)² / Σ_{b,i} m_bi. :func:`masked_mse_sum` returns numerator and
  count separately so DDP / gradient accumulation can divide by the global count.
- Physics penalty: non-negativity and smoothness of predicted spectra.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spektron.errors import ConfigError


def masked_mse_sum(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of squared errors over masked positions and their count.

    S = Σ_{b,i} m_bi (ŷ_bi − y_bi)²,  n = Σ_{b,i} m_bi.

    Parameters
    ----------
    pred, target : torch.Tensor
        (B, L) prediction and truth.
    mask : torch.Tensor
        (B, L) bool, True = masked (scored). Unmasked positions do not enter S, not even as NaN.

    Returns
    -------
    tuple[torch.Tensor, torch.Tensor]
        S (scalar, differentiable) and n (scalar, pred's dtype), to be reduced across ranks and
        micro-steps before dividing.
    """
    if pred.shape != target.shape or pred.shape != mask.shape:
        raise ValueError(
            f"pred, target and mask must share a shape, got {tuple(pred.shape)}, "
            f"{tuple(target.shape)}, {tuple(mask.shape)}"
        )
    m = mask.bool()
    # where() rather than multiplying by m: a NaN/inf at an unmasked position must not leak.
    sq = torch.where(m, (pred - target).square(), torch.zeros_like(pred))  # (B, L)
    return sq.sum(), m.sum().to(pred.dtype)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over masked positions: S / max(n, 1) (0 when nothing is masked).

    See :func:`masked_mse_sum` for S and n; (B, L) inputs → scalar.
    """
    total, count = masked_mse_sum(pred, target, mask)
    return total / count.clamp(min=1.0)


def physics_penalty(pred: torch.Tensor, nonneg_weight: float, smooth_weight: float) -> torch.Tensor:
    """Non-negativity + smoothness penalty on predicted spectra.

    P = w_+ · mean_{b,i} relu(−ŷ_bi)² + w_s · mean_{b,i} (ŷ_b,i+1 − 2ŷ_b,i + ŷ_b,i−1)²,

    the second difference taken along L (index, not wavenumber: it penalises zig-zag between
    neighbouring points whatever the grid spacing).

    Parameters
    ----------
    pred : torch.Tensor
        (B, L) spectra, L ≥ 3.
    nonneg_weight, smooth_weight : float
        w_+ and w_s (≥ 0).

    Returns
    -------
    torch.Tensor
        Scalar penalty; 0 for any non-negative straight line.
    """
    if nonneg_weight < 0 or smooth_weight < 0:
        raise ConfigError(
            f"penalty weights must be >= 0, got nonneg={nonneg_weight}, smooth={smooth_weight}"
        )
    if pred.shape[-1] < 3:
        raise ValueError(f"need at least 3 points for a second difference, got {pred.shape[-1]}")
    nonneg = F.relu(-pred).square().mean()
    d2 = pred[..., 2:] - 2.0 * pred[..., 1:-1] + pred[..., :-2]  # (B, L − 2)
    return nonneg_weight * nonneg + smooth_weight * d2.square().mean()
