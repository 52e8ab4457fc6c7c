"""Training objectives.

- Masked reconstruction: mean squared error over masked positions only,
  MSE = Σ_{b,i} m_bi (ŷ_bi − y_bi)² / Σ_{b,i} m_bi. :func:`masked_mse_sum` returns numerator and
  count separately so DDP / gradient accumulation can divide by the global count.
- Contrastive IR/Raman pairing (InfoNCE, CLIP-style: Radford et al., "Learning Transferable
  Visual Models From Natural Language Supervision", ICML 2021; van den Oord et al. 2018).
- Physics penalty: non-negativity and smoothness of predicted spectra.
- 1-D Wasserstein (earth mover's) distance between spectra as distributions on the wavenumber
  grid: W1(p, q) = ∫ |F_p(ν) − F_q(ν)| dν (Villani 2009; closed form on the line).
- VIB KL: the analytic KL of the variational information bottleneck (Alemi et al. 2017),
  taken from :mod:`spektron.models.heads`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spektron.errors import ConfigError
from spektron.models.heads import VariationalBottleneck


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


def info_nce(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE over cosine similarities (CLIP loss).

    With unit vectors â_i = z_a,i / ‖z_a,i‖, b̂_j likewise, and logits s_ij = â_i·b̂_j / τ,

        L = ½ [ −(1/B) Σ_i log softmax_j(s_ij)|_{j=i} − (1/B) Σ_j log softmax_i(s_ij)|_{i=j} ],

    i.e. cross-entropy of matching row i of z_a (IR) to row i of z_b (Raman) and back.
    Perfectly aligned distinct pairs give L → 0 as τ → 0; B identical rows give L = log B.

    Parameters
    ----------
    z_a, z_b : torch.Tensor
        (B, D) paired embeddings.
    temperature : float
        τ > 0.

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    if z_a.ndim != 2 or z_a.shape != z_b.shape:
        raise ValueError(
            f"z_a and z_b must both be (B, D), got {tuple(z_a.shape)}, {tuple(z_b.shape)}"
        )
    a = F.normalize(z_a, dim=-1)  # (B, D)
    b = F.normalize(z_b, dim=-1)  # (B, D)
    logits = a @ b.T / temperature  # (B, B)
    labels = torch.arange(logits.shape[0], device=logits.device)  # (B,)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


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


def _cumtrapz(y: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Cumulative trapezoid from the first node: (B, L), (L − 1,) → (B, L), starting at 0."""
    steps = 0.5 * (y[..., 1:] + y[..., :-1]) * dx  # (B, L − 1)
    return torch.cat([torch.zeros_like(y[..., :1]), steps.cumsum(dim=-1)], dim=-1)  # (B, L)


def wasserstein_1d(
    p: torch.Tensor, q: torch.Tensor, wavenumber: torch.Tensor, eps: float = 1e-12
) -> torch.Tensor:
    """1-D Wasserstein-1 (earth mover's) distance between spectra on a wavenumber grid.

    Each spectrum is clipped to max(x, 0) (intensities are non-negative; a prediction's
    negative excursions carry no mass) and normalised to unit trapezoid area, giving densities
    p̄, q̄ on ν. Their CDFs at the nodes are cumulative trapezoids,
    F(ν_k) = Σ_{j<k} ½ (p̄_j + p̄_{j+1}) (ν_{j+1} − ν_j), and

        W1(p, q) = ∫ |F_p(ν) − F_q(ν)| dν   (trapezoid over the same, possibly non-uniform, grid).

    The result is a weighted L1 distance between node CDFs, hence a (pseudo)metric, invariant to
    positive scaling of p or q, in the units of ν (cm⁻¹). Two unit deltas at grid nodes ν₁, ν₂
    give |ν₁ − ν₂| (exactly on a uniform grid).

    Parameters
    ----------
    p, q : torch.Tensor
        (B, L) or (L,) spectra.
    wavenumber : torch.Tensor
        (L,) strictly increasing grid.
    eps : float
        Floor on the area; a spectrum with no positive mass has F ≡ 0 (no error is raised, to
        keep the loss free of host synchronisation).

    Returns
    -------
    torch.Tensor
        (B,) distances (a scalar for 1-D inputs); differentiable in p and q.
    """
    if p.shape != q.shape or p.shape[-1] != wavenumber.shape[-1] or wavenumber.ndim != 1:
        raise ValueError(
            f"p, q must be (B, L) on a (L,) grid, got {tuple(p.shape)}, {tuple(q.shape)}, "
            f"{tuple(wavenumber.shape)}"
        )
    nu = wavenumber.to(p)
    dx = nu[1:] - nu[:-1]  # (L − 1,)
    cdfs = []
    for x in (p, q):
        x = x.clamp(min=0.0)  # (B, L)
        area = _cumtrapz(x, dx)[..., -1:]  # (B, 1)
        cdfs.append(_cumtrapz(x / area.clamp(min=eps), dx))  # (B, L)
    diff = (cdfs[0] - cdfs[1]).abs()  # (B, L)
    return (0.5 * (diff[..., 1:] + diff[..., :-1]) * dx).sum(dim=-1)  # (B,)


def vib_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Analytic KL(N(μ, σ²) ‖ N(0, I)) = ½ Σ_k (μ_k² + σ_k² − log σ_k² − 1) per sample.

    Thin call of :meth:`spektron.models.heads.VariationalBottleneck.kl`: (B, k) → (B,).
    """
    return VariationalBottleneck.kl(mu, logvar)
