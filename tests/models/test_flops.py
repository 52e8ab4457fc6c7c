"""FLOP counting: exact matmul counts, FFT and scan costs that FlopCounterMode misses, scaling."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from spektron.models.backbones.mamba import MambaBackbone, MambaBackboneConfig
from spektron.models.flops import count_flops


def test_linear_counts_exact_matmul_flops():
    B, d_in, d_out = 4, 32, 8
    res = count_flops(nn.Linear(d_in, d_out), torch.randn(B, d_in))
    assert res["matmul"] == 2 * B * d_in * d_out
    assert res["total"] == res["matmul"] + B * d_out  # + the bias add


def test_matmul_part_equals_torch_flop_counter():
    model = nn.Sequential(
        nn.Conv1d(2, 8, 5, padding=2), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 30, 3)
    )
    x = torch.randn(3, 2, 30)
    with FlopCounterMode(display=False) as ref:
        model(x)
    res = count_flops(model, x)
    assert res["matmul"] == ref.get_total_flops()
    assert res["total"] > res["matmul"]  # ReLU and biases


def _fft_conv(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    n = 2 * x.shape[-1]
    y = torch.fft.irfft(torch.fft.rfft(x, n=n) * torch.fft.rfft(k, n=n), n=n)  # (B, 2N)
    return y[..., : x.shape[-1]]  # (B, N)


def test_fft_convolution_counts_n_log_n():
    one = count_flops(torch.fft.rfft, torch.randn(1024))
    assert one["by_op"]["_fft_r2c"] == 2.5 * 1024 * 10
    assert one["matmul"] == 0
    small = count_flops(_fft_conv, torch.randn(2, 512), torch.randn(512))
    big = count_flops(_fft_conv, torch.randn(2, 1024), torch.randn(1024))
    fft_ratio = big["by_op"]["_fft_r2c"] / small["by_op"]["_fft_r2c"]
    assert fft_ratio == pytest.approx(2 * 11 / 10)  # transforms of length 2048 vs 1024
    assert big["by_op"]["_fft_c2r"] > 0
    assert big["by_op"]["mul"] == 6 * 2 * 1025  # complex product of the spectra (B = 2)
    assert 2.0 < big["total"] / small["total"] < 2.2


def _cumsum_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """h_t = a_t h_{t−1} + b_t (a > 0) through prefix products and sums."""
    P = torch.cumprod(a, dim=-1)  # (B, N)
    return P * torch.cumsum(b / P, dim=-1)  # (B, N)


def _loop_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    h = torch.zeros_like(b[:, 0])
    hs = []
    for t in range(b.shape[1]):
        h = a[:, t] * h + b[:, t]  # (B,)
        hs.append(h)
    return torch.stack(hs, dim=1)  # (B, N)


@pytest.mark.parametrize("scan", [_cumsum_scan, _loop_scan])
def test_scans_count_linear_in_length(scan):
    B = 3
    a, b = torch.rand(B, 128) + 0.5, torch.randn(B, 128)
    torch.testing.assert_close(_cumsum_scan(a, b), _loop_scan(a, b), rtol=1e-4, atol=1e-4)
    n1 = count_flops(scan, a[:, :64], b[:, :64])
    n2 = count_flops(scan, a, b)
    assert n1["total"] > 0 and n1["matmul"] == 0
    assert n2["total"] == 2 * n1["total"]
    if scan is _loop_scan:
        assert n2["total"] == 2 * B * 128  # one multiply and one add per step


def test_elementwise_and_reduction_rules():
    x = torch.randn(4, 10, 16)
    n = x.numel()
    assert count_flops(F.gelu, x)["total"] == n
    assert count_flops(lambda t: F.layer_norm(t, (16,)), x)["total"] == 5 * n
    assert count_flops(lambda t: t.softmax(-1), x)["total"] == 5 * n
    assert count_flops(lambda t: t.sum(-1), x)["total"] == n  # per input element
    assert count_flops(lambda t: t.transpose(1, 2).contiguous().flip(0), x)["total"] == 0
    fb = count_flops(lambda t: torch.sort(t, dim=-1), x)
    assert fb["fallback_ops"] == ["sort"] and fb["total"] == n


def test_attention_counts_scores_and_softmax():
    B, H, L, E = 2, 2, 16, 8
    q = torch.randn(B, H, L, E)
    res = count_flops(F.scaled_dot_product_attention, q, q, q)
    assert res["matmul"] == 2 * (2 * B * H * L * L * E)  # QKᵀ and PV
    assert res["total"] == res["matmul"] + 6 * B * H * L * L


def test_mamba_scan_is_counted_and_mode_restored():
    model = MambaBackbone(MambaBackboneConfig(d_model=16, n_layers=1, d_state=4)).train()
    r64 = count_flops(model, torch.randn(1, 64, 16))
    r128 = count_flops(model, torch.randn(1, 128, 16))
    assert model.training
    assert r64["fallback_ops"] == []
    assert r64["total"] - r64["matmul"] > 0.1 * r64["total"]  # the scan is not free
    assert 1.9 < r128["total"] / r64["total"] < 2.1
    assert math.isclose(r128["matmul"] / r64["matmul"], 2.0, rel_tol=0.02)
