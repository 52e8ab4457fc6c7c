"""Mask generators for masked spectral reconstruction.

A mask is a (B, L) bool tensor with ``True`` = masked (hidden from the model, scored by the
loss), the convention of the heads and the embedding's mask-indicator channel. Every generator
draws from an explicit ``torch.Generator`` so a mask is a pure function of (config, seed).

- ``random``: exactly k = round(f·L) distinct points per row, uniformly at random.
Span lengths ℓ are drawn from ``span_dist``: ``uniform`` (ℓ ~ U{min_span, …, max_span}) or
``log_uniform`` (log ℓ uniform: ℓ = ⌊exp(U(log min_span, log(max_span + 1)))⌋, equal weight per
octave, so one distribution covers short and long gaps alike).

- ``span``: n non-overlapping contiguous spans with lengths ℓ_j from ``span_dist``,
  drawn until Σ ℓ_j ≥ round(f·L) (so the masked fraction is f to f + max_span/L), placed
  uniformly among all layouts with at least one unmasked point between two spans (so every
  maximal run of masked points is one span).
- ``peak`` (training only): spans centred preferentially on peaks, as in peak-aware masking
  (PRISM; not new). With x̃ = max(x, 0) / max_i max(x_i, 0), a centre c is drawn with
  P(c = i) ∝ (x̃_i^power + floor)·[i unmasked], a span of length ℓ (from ``span_dist``) around
  c (shifted to stay inside the row) is masked, until ≥ round(f·L) points are masked.
  Spans may merge here. Validation/test masks must not use it: a mask placed by the peaks
  reveals where the peaks are, so :func:`make_mask` refuses it unless ``train=True``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from spektron.errors import ConfigError

MASK_KINDS = ("span", "random", "peak")
SPAN_DISTS = ("uniform", "log_uniform")


@dataclass
class MaskConfig:
    """Masking scheme: kind, target masked fraction and span lengths (points, inclusive)."""

    kind: str = "span"
    fraction: float = 0.15
    min_span: int = 8
    max_span: int = 32
    peak_power: float = 1.0  # sharpness of the preference for peaks (0 = uniform centres)
    peak_floor: float = 0.05  # keeps baseline centres possible: weight = x̃^power + floor
    span_dist: str = "uniform"  # uniform | log_uniform (span lengths; module docstring)

    def __post_init__(self) -> None:
        if self.span_dist not in SPAN_DISTS:
            raise ConfigError(f"mask span_dist must be one of {SPAN_DISTS}, got {self.span_dist!r}")
        if self.kind not in MASK_KINDS:
            raise ConfigError(f"mask kind must be one of {MASK_KINDS}, got {self.kind!r}")
        if not 0.0 < self.fraction < 1.0:
            raise ConfigError(f"mask fraction must lie in (0, 1), got {self.fraction}")
        if not 1 <= self.min_span <= self.max_span:
            raise ConfigError(
                f"need 1 <= min_span <= max_span, got min_span={self.min_span}, "
                f"max_span={self.max_span}"
            )
        if self.peak_power < 0:
            raise ConfigError(f"peak_power must be >= 0, got {self.peak_power}")
        if self.peak_floor <= 0:
            raise ConfigError(f"peak_floor must be > 0, got {self.peak_floor}")


def random_mask(
    batch: int, length: int, fraction: float, generator: torch.Generator
) -> torch.Tensor:
    """Exactly round(fraction·L) masked points per row, uniformly at random: (B, L) bool."""
    k = round(fraction * length)
    order = torch.rand(batch, length, generator=generator).argsort(dim=1)  # (B, L)
    mask = torch.zeros(batch, length, dtype=torch.bool)
    mask.scatter_(1, order[:, :k], True)  # (B, L)
    return mask


def _span_length(cfg: MaskConfig, generator: torch.Generator) -> int:
    """One span length from ``cfg.span_dist`` over {min_span, …, max_span}."""
    if cfg.span_dist == "uniform":
        return int(torch.randint(cfg.min_span, cfg.max_span + 1, (1,), generator=generator))
    lo, hi = math.log(cfg.min_span), math.log(cfg.max_span + 1)
    u = float(torch.rand(1, generator=generator, dtype=torch.float64))
    return min(int(math.exp(lo + u * (hi - lo))), cfg.max_span)


def _span_lengths(target: int, cfg: MaskConfig, generator: torch.Generator) -> list[int]:
    lengths: list[int] = []
    while sum(lengths) < target:
        lengths.append(_span_length(cfg, generator))
    return lengths


def span_mask(batch: int, length: int, cfg: MaskConfig, generator: torch.Generator) -> torch.Tensor:
    """Non-overlapping contiguous spans, ≥ one unmasked point apart: (B, L) bool."""
    target = round(cfg.fraction * length)
    mask = torch.zeros(batch, length, dtype=torch.bool)
    for b in range(batch):
        lengths = _span_lengths(target, cfg, generator)
        n = len(lengths)
        # Gaps g_0, g_n >= 0 and g_1..g_{n-1} >= 1 summing to the unmasked count: remove the
        # n - 1 compulsory points, then draw a uniform composition of the rest into n + 1 parts
        # (stars and bars: n bar positions among free + n slots).
        free = length - sum(lengths) - (n - 1)
        if free < 0:
            raise ConfigError(
                f"cannot fit {n} separated spans masking {cfg.fraction:.0%} of L={length}; "
                "lower the fraction or the span lengths"
            )
        bars = torch.randperm(free + n, generator=generator)[:n].sort().values.tolist()
        pos, prev = 0, -1
        for j, (bar, ell) in enumerate(zip(bars, lengths, strict=True)):
            pos += bar - prev - 1 + (1 if j > 0 else 0)  # stars before this bar + compulsory gap
            mask[b, pos : pos + ell] = True
            pos += ell
            prev = bar
    return mask


def peak_mask(spectra: torch.Tensor, cfg: MaskConfig, generator: torch.Generator) -> torch.Tensor:
    """Spans centred preferentially on peaks of each row of ``spectra`` (B, L): (B, L) bool."""
    batch, length = spectra.shape
    target = round(cfg.fraction * length)
    x = spectra.detach().to("cpu", torch.float64).clamp(min=0.0)  # (B, L)
    x = x / x.amax(dim=1, keepdim=True).clamp(min=torch.finfo(torch.float64).tiny)  # (B, L)
    weights = x.pow(cfg.peak_power) + cfg.peak_floor  # (B, L)
    mask = torch.zeros(batch, length, dtype=torch.bool)
    for b in range(batch):
        while int(mask[b].sum()) < target:
            ell = _span_length(cfg, generator)
            # Centres only on unmasked points, so every span adds at least one point.
            w = weights[b].masked_fill(mask[b], 0.0)  # (L,)
            centre = int(torch.multinomial(w, 1, generator=generator))
            start = min(max(centre - ell // 2, 0), length - ell)
            mask[b, start : start + ell] = True
    return mask


def make_mask(
    cfg: MaskConfig, spectra: torch.Tensor, generator: torch.Generator, train: bool
) -> torch.Tensor:
    """Draw a mask for a batch of spectra.

    Parameters
    ----------
    cfg : MaskConfig
        Scheme and fraction.
    spectra : torch.Tensor
        (B, L) spectra; only ``peak`` reads their values, the others only the shape.
    generator : torch.Generator
        CPU generator; the mask is a pure function of its state.
    train : bool
        ``kind="peak"`` is refused unless True (its placement reveals the peaks).

    Returns
    -------
    torch.Tensor
        (B, L) bool on ``spectra.device``, True = masked.
    """
    if spectra.ndim != 2:
        raise ValueError(f"spectra must be (B, L), got shape {tuple(spectra.shape)}")
    batch, length = spectra.shape
    if cfg.kind != "random" and cfg.max_span > length:
        raise ConfigError(f"max_span={cfg.max_span} exceeds the spectrum length L={length}")
    if cfg.kind == "peak":
        if not train:
            raise ConfigError(
                "peak-aware masking is for training only: validation/test masks must not "
                "depend on where the peaks are (the mask would reveal them); use 'span'"
            )
        mask = peak_mask(spectra, cfg, generator)
    elif cfg.kind == "span":
        mask = span_mask(batch, length, cfg, generator)
    else:
        mask = random_mask(batch, length, cfg.fraction, generator)
    return mask.to(spectra.device)
