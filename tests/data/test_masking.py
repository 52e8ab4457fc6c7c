"""Mask generators: exact/approximate fractions, span structure, seeds, peak preference."""

from __future__ import annotations

import pytest
import torch

from spektron.data.masking import MaskConfig, make_mask
from spektron.errors import ConfigError


def _runs(row: torch.Tensor) -> list[int]:
    """Lengths of the maximal runs of True in a 1-D bool tensor."""
    lengths, current = [], 0
    for v in row.tolist() + [False]:
        if v:
            current += 1
        elif current:
            lengths.append(current)
            current = 0
    return lengths


def _peaky(batch: int, length: int) -> torch.Tensor:
    """A flat baseline with three narrow Lorentzian peaks (the same in every row)."""
    i = torch.arange(length, dtype=torch.float32)
    x = torch.full((length,), 0.01)
    for c, h in [(60, 1.0), (250, 0.7), (400, 0.9)]:
        x = x + h / (1.0 + ((i - c) / 3.0) ** 2)
    return x.expand(batch, length).clone()


def test_random_mask_exact_count():
    cfg = MaskConfig(kind="random", fraction=0.3)
    mask = make_mask(cfg, torch.zeros(8, 101), torch.Generator().manual_seed(0), train=False)
    assert mask.dtype == torch.bool and mask.shape == (8, 101)
    assert torch.all(mask.sum(dim=1) == round(0.3 * 101))


def test_span_mask_fraction_contiguous_lengths_in_range():
    cfg = MaskConfig(kind="span", fraction=0.2, min_span=5, max_span=12)
    mask = make_mask(cfg, torch.zeros(32, 400), torch.Generator().manual_seed(1), train=False)
    target = round(0.2 * 400)
    for row in mask:
        runs = _runs(row)
        assert all(5 <= r <= 12 for r in runs)  # each run is one span: spans never touch
        assert target <= sum(runs) < target + 12


def test_masks_reproducible_with_seed():
    x = _peaky(4, 300)
    for kind in ("span", "random", "peak"):
        cfg = MaskConfig(kind=kind, fraction=0.15, min_span=4, max_span=10)
        a = make_mask(cfg, x, torch.Generator().manual_seed(7), train=True)
        b = make_mask(cfg, x, torch.Generator().manual_seed(7), train=True)
        c = make_mask(cfg, x, torch.Generator().manual_seed(8), train=True)
        assert torch.equal(a, b)
        assert not torch.equal(a, c)


def test_peak_mask_hits_peaks_more_than_span_mask():
    x = _peaky(64, 500)
    on_peak = x[0] > 0.3  # the few points near the three maxima
    fraction, lo, hi = 0.1, 4, 8

    def hit_rate(kind: str) -> float:
        cfg = MaskConfig(kind=kind, fraction=fraction, min_span=lo, max_span=hi, peak_power=2.0)
        mask = make_mask(cfg, x, torch.Generator().manual_seed(11), train=True)
        assert torch.all(mask.sum(dim=1) >= round(fraction * 500))
        assert torch.all(mask.sum(dim=1) < round(fraction * 500) + hi)
        return mask[:, on_peak].float().mean().item()

    span_rate, peak_rate = hit_rate("span"), hit_rate("peak")
    assert span_rate < 0.2  # about the masked fraction
    assert peak_rate > 3 * span_rate


def test_peak_mask_refused_outside_training():
    cfg = MaskConfig(kind="peak")
    with pytest.raises(ConfigError, match="training only"):
        make_mask(cfg, _peaky(2, 200), torch.Generator().manual_seed(0), train=False)


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "block"},
        {"fraction": 0.0},
        {"fraction": 1.0},
        {"min_span": 0},
        {"min_span": 9, "max_span": 8},
        {"peak_power": -1.0},
        {"peak_floor": 0.0},
    ],
)
def test_mask_config_validation(fields):
    with pytest.raises(ConfigError):
        MaskConfig(**fields)


def test_span_longer_than_spectrum_or_unfittable_raises():
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ConfigError):
        make_mask(MaskConfig(min_span=4, max_span=64), torch.zeros(1, 32), g, train=True)
    with pytest.raises(ConfigError):
        make_mask(
            MaskConfig(fraction=0.95, min_span=2, max_span=2), torch.zeros(1, 40), g, train=True
        )


def test_log_uniform_spans_weigh_every_octave_alike_and_uniform_is_unchanged():
    cfg = MaskConfig(kind="span", fraction=0.3, min_span=8, max_span=255, span_dist="log_uniform")
    mask = make_mask(cfg, torch.zeros(400, 2048), torch.Generator().manual_seed(0), train=True)
    runs = [n for row in mask for n in _runs(row)]
    assert min(runs) >= 8 and max(runs) <= 255
    # Octaves [8, 16), [16, 32), [32, 64), [64, 128), [128, 256): equal shares of the spans.
    shares = torch.histc(torch.tensor(runs, dtype=torch.float64).log2(), bins=5, min=3, max=8)
    shares = shares / shares.sum()
    assert (shares - 0.2).abs().max() < 0.03, shares
    uniform = [
        n
        for row in make_mask(
            MaskConfig(kind="span", fraction=0.3, min_span=8, max_span=255),
            torch.zeros(400, 2048),
            torch.Generator().manual_seed(0),
            train=True,
        )
        for n in _runs(row)
    ]
    assert sum(n < 16 for n in uniform) / len(uniform) < 0.06  # uniform: 8/248 of the spans
    with pytest.raises(ConfigError, match="span_dist must be one of"):
        MaskConfig(span_dist="normal")
