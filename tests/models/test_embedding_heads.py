"""Embedding (wavelet bank, wavenumber encoding, mask channel) and heads (reconstruction,
cross-spectral, variational bottleneck, regression)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import pywt
import torch

from spektron.errors import ConfigError, DataError
from spektron.models.embedding import (
    EmbeddingConfig,
    SpectrumEmbedding,
    dwt_equivalent_filters,
    filter_bank,
)
from spektron.models.heads import (
    CrossSpectralHead,
    CrossSpectralHeadConfig,
    ReconstructionHead,
    ReconstructionHeadConfig,
    RegressionHead,
    RegressionHeadConfig,
    make_head_config,
    masked_mean_pool,
)

D = 16
GRID = torch.linspace(500.0, 4000.0, 64)


def _embedding(seed: int = 0, **kw) -> SpectrumEmbedding:
    torch.manual_seed(seed)
    return SpectrumEmbedding(EmbeddingConfig(**kw), D).eval()


# ----------------------------------------------------------------------------- filter bank


def test_dwt_equivalent_filters_level_one_are_pywt_filters():
    a, d = dwt_equivalent_filters("db4", 1)
    w = pywt.Wavelet("db4")
    np.testing.assert_allclose(a, w.dec_lo)
    np.testing.assert_allclose(d, w.dec_hi)
    a2, d2 = dwt_equivalent_filters("db4", 2)
    assert len(a2) == len(d2) == 8 + 2 * 7
    # Orthonormal wavelets: the detail filter has zero mean at every level.
    assert abs(d2.sum()) < 1e-10


def test_filter_bank_kernels_are_unit_norm_and_odd():
    names, bank = filter_bank(EmbeddingConfig())
    assert names[0] == "impulse" and "mexh_s2" in names and "coif2_d3" in names
    assert bank.shape[1] % 2 == 1
    np.testing.assert_allclose(np.linalg.norm(bank, axis=1), 1.0)


@pytest.mark.parametrize("name", ["impulse", "db4_d1", "sym4_a2", "mexh_s2"])
def test_bank_channel_is_a_true_convolution_with_the_wavelet_filter(name):
    # Arrange: the filter as PyWavelets defines it (unit norm), and a random spectrum.
    cfg = EmbeddingConfig()
    emb = _embedding()
    names, bank = filter_bank(cfg)
    k = names.index(name)
    K = bank.shape[1]
    f = bank[k][::-1]  # undo the flip: f is the filter, centred in K taps
    x = torch.rand(1, 200, dtype=torch.float32)
    # Act: the bank's output for this channel (no mask).
    inp = torch.stack([torch.nn.functional.pad(x, (K // 2, K // 2)), torch.zeros(1, 200 + K - 1)])
    out = emb.conv(inp.transpose(0, 1))[0, k].detach().numpy()  # (L,)
    # Assert: equals numpy's full convolution x ∗ f, shifted by the centring.
    ref = np.convolve(x[0].double().numpy(), f)[K // 2 : K // 2 + 200]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_filters_are_trainable_unless_frozen():
    v = torch.rand(2, 40)
    for trainable in (True, False):
        emb = SpectrumEmbedding(EmbeddingConfig(trainable_filters=trainable), D)
        emb(v, GRID[:40]).sum().backward()
        assert (emb.conv.weight.grad is not None) == trainable


# ----------------------------------------------------------------------------- wavenumbers


def test_same_grid_same_encoding_shifted_grid_different():
    emb = _embedding()
    v = torch.rand(3, 64)
    with torch.no_grad():
        a, b = emb(v, GRID), emb(v, GRID.clone())
        shifted = emb(v, GRID + 5.0)
    assert torch.equal(a, b)
    assert (a - shifted).abs().amax() > 1e-3


def test_encoding_is_a_function_of_the_wavenumber_value_not_the_index():
    emb = _embedding()
    enc_full = emb.encode_wavenumber(GRID)  # (64, 2K)
    enc_tail = emb.encode_wavenumber(GRID[10:])  # (54, 2K)
    torch.testing.assert_close(enc_full[10:], enc_tail)
    # Periods span period_min .. period_max: feature 0 repeats after 3 cm⁻¹, the slowest
    # (index K − 1) after 8000 cm⁻¹.
    K = emb.cfg.n_frequencies
    e = emb.encode_wavenumber(torch.tensor([1000.0, 1003.0, 9000.0]))
    for k, j in ((0, 1), (K, 1), (K - 1, 2), (2 * K - 1, 2)):
        assert math.isclose(float(e[0, k]), float(e[j, k]), abs_tol=1e-5)
    assert not math.isclose(float(e[0, 1]), float(e[1, 1]), abs_tol=1e-3)


def test_per_sample_grids_are_encoded_per_sample():
    emb = _embedding()
    v = torch.rand(1, 64).expand(2, -1)
    grids = torch.stack([GRID, GRID + 7.0])  # (B, L)
    with torch.no_grad():
        out = emb(v, grids)
        torch.testing.assert_close(out[0], emb(v[:1], GRID)[0])
        torch.testing.assert_close(out[1], emb(v[:1], GRID + 7.0)[0])


# ----------------------------------------------------------------------------- mask channel


def test_masked_values_are_ignored_and_masked_zero_differs_from_true_zero():
    emb = _embedding()
    v = torch.rand(1, 64)
    mask = torch.zeros(1, 64, dtype=torch.bool)
    mask[0, 20:30] = True
    with torch.no_grad():
        ref = emb(v, GRID, mask)
        v2 = v.clone()
        v2[0, 20:30] = float("nan")
        assert torch.equal(emb(v2, GRID, mask), ref)  # value under the mask never matters
        v0 = v.clone()
        v0[0, 20:30] = 0.0
        unmasked_zero = emb(v0, GRID)  # the same zeros, but as observed values
    assert (ref[0, 20:30] - unmasked_zero[0, 20:30]).abs().amax(dim=-1).min() > 1e-4
    with torch.no_grad():
        assert torch.equal(emb(v, GRID), emb(v, GRID, torch.zeros(1, 64)))


def test_stride_pools_grid_and_length():
    emb = _embedding(stride=4)
    v = torch.rand(2, 101)
    grid = torch.linspace(500.0, 4000.0, 101)
    with torch.no_grad():
        out = emb(v, grid)
    assert out.shape == (2, emb.output_length(101), D) == (2, 26, D)
    seen = emb.output_grid(grid)
    assert seen.shape == (26,)
    torch.testing.assert_close(seen[1] - seen[0], 4 * (grid[1] - grid[0]))


def test_bad_shapes_and_configs_raise():
    emb = _embedding()
    with pytest.raises(DataError):
        emb(torch.rand(2, 64), GRID[:10])
    with pytest.raises(DataError):
        emb(torch.rand(2, 64), GRID, torch.zeros(2, 10))
    with pytest.raises(DataError):
        emb(torch.rand(64), GRID)
    for bad in ({"wavelets": ("nope",)}, {"stride": 0}, {"period_min": 0.0}, {"levels": (0,)}):
        with pytest.raises(ConfigError):
            EmbeddingConfig(**bad)


# ----------------------------------------------------------------------------- heads


@pytest.mark.parametrize("stride,L", [(1, 10), (3, 10), (4, 16)])
def test_reconstruction_head_upsamples_back_to_length(stride, L):
    head = ReconstructionHead(ReconstructionHeadConfig(hidden=8, zero_init=False), D, stride)
    Lp = (L - 1) // stride + 1
    h = torch.randn(2, Lp, D)
    assert head(h, length=L)["pred"].shape == (2, L)
    # Position i of the output comes from backbone position i // stride only.
    h2 = h.clone()
    h2[:, 1] += torch.randn(D)
    diff = (head(h2, length=L)["pred"] - head(h, length=L)["pred"]).abs()[0]
    changed = torch.nonzero(diff > 0).flatten().tolist()
    assert changed == list(range(stride, min(2 * stride, L)))


@pytest.mark.parametrize("hidden", [0, 8])
def test_reconstruction_head_starts_at_zero_but_learns(hidden):
    head = ReconstructionHead(ReconstructionHeadConfig(hidden=hidden), D, 2)
    h = torch.randn(2, 5, D)
    pred = head(h, length=10)["pred"]
    assert torch.equal(pred, torch.zeros(2, 10))
    pred.sub(1.0).square().sum().backward()
    last = head.mlp if hidden == 0 else head.mlp[-1]
    assert last.weight.grad.abs().sum() > 0  # the zero layer still gets a gradient


def test_cross_spectral_head_nonnegative_option():
    h = torch.randn(3, 12, D) * 10
    cfg = {"zero_init": False}
    pos = CrossSpectralHead(CrossSpectralHeadConfig(nonnegative=True, **cfg), D)(h, length=12)
    raw = CrossSpectralHead(CrossSpectralHeadConfig(nonnegative=False, **cfg), D)(h, length=12)
    pos, raw = pos["pred"], raw["pred"]
    assert pos.shape == raw.shape == (3, 12)
    assert (pos >= 0).all() and (raw < 0).any()


def test_masked_mean_pool():
    h = torch.randn(2, 5, 3)
    mask = torch.tensor([[0, 1, 0, 1, 1], [1, 1, 1, 1, 1]])
    pooled = masked_mean_pool(h, mask)
    torch.testing.assert_close(pooled[0], (h[0, 0] + h[0, 2]) / 2)
    assert torch.equal(pooled[1], torch.zeros(3))
    torch.testing.assert_close(masked_mean_pool(h), h.mean(1))


def test_regression_head_pools_only_unmasked_positions():
    head = RegressionHead(RegressionHeadConfig(n_targets=3, hidden=8), D).eval()
    h = torch.randn(2, 8, D)
    mask = torch.zeros(2, 8)
    mask[:, 5:] = 1
    h2 = h.clone()
    h2[:, 5:] = 1e3
    torch.testing.assert_close(head(h, mask)["pred"], head(h2, mask)["pred"])


def test_regression_head():
    head = RegressionHead(RegressionHeadConfig(n_targets=3, hidden=8), D)
    out = head(torch.randn(5, 7, D))
    assert out["pred"].shape == (5, 3) and set(out) == {"pred"}


def test_head_config_validation():
    with pytest.raises(ConfigError):
        make_head_config("nope")
    with pytest.raises(ConfigError):
        make_head_config("regression", {"n_targets": 0})
    with pytest.raises(ConfigError):
        make_head_config("reconstruction", {"unknown": 1})
    assert make_head_config("cross_spectral", {"nonnegative": True}).nonnegative
