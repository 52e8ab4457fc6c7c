"""S4D / S4D-Real: the FFT-kernel path against the sequential recurrence, inits, precision."""

from __future__ import annotations

import math

import pytest
import torch

from spektron.errors import ConfigError
from spektron.models.backbones.s4d import (
    S4D,
    S4DConfig,
    S4DLayer,
    S4DRealConfig,
    _ComplexVandermonde,
    _FFTConv,
)
from spektron.models.registry import build_backbone, count_parameters

H = 6


def _layer(real: bool, bidirectional: bool = True, init: str = "lin", **kw) -> S4DLayer:
    torch.manual_seed(0)
    if real:
        cfg = S4DRealConfig(d_model=H, d_state=8, bidirectional=bidirectional, **kw)
    else:
        cfg = S4DConfig(d_model=H, d_state=8, bidirectional=bidirectional, init=init, **kw)
    return S4DLayer(cfg).double()


VARIANTS = [
    pytest.param(False, True, "lin", id="lin-bidir"),
    pytest.param(False, False, "lin", id="lin-causal"),
    pytest.param(False, True, "inv", id="inv-bidir"),
    pytest.param(True, True, "lin", id="real-bidir"),
    pytest.param(True, False, "lin", id="real-causal"),
]


@pytest.mark.parametrize(("real", "bidir", "init"), VARIANTS)
@pytest.mark.parametrize("L", [1, 2, 7, 40, 64, 100, 257])
def test_fft_kernel_path_equals_sequential_recurrence(real, bidir, init, L):
    # Arrange: a float64 layer with larger steps so that the kernel stays long-lived
    layer = _layer(real, bidir, init, dt_min=0.01, dt_max=0.5)
    u = torch.randn(2, L, H, dtype=torch.float64, requires_grad=True)
    # Act
    y_fft = layer(u)
    y_rec = layer.forward_recurrent(u)
    w = torch.randn_like(y_fft)
    g_fft = torch.autograd.grad((y_fft * w).sum(), [u, *layer.parameters()])
    g_rec = torch.autograd.grad((y_rec * w).sum(), [u, *layer.parameters()])
    # Assert: outputs and gradients (input and every parameter) agree
    torch.testing.assert_close(y_fft, y_rec, rtol=1e-10, atol=1e-10)
    for a, b in zip(g_fft, g_rec, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("L", [1, 5, 16])
def test_fft_convolution_backward_passes_gradcheck(L):
    """The hand-written backward of the FFT convolution, against finite differences."""
    gen = torch.Generator().manual_seed(L)
    u = torch.randn(2, 3, L, dtype=torch.float64, generator=gen, requires_grad=True)
    k = torch.randn(3, 2 * L, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(_FFTConv.apply, (u, k))


def test_no_wraparound_and_direction():
    # A causal layer never sees the future; a bidirectional one does, through K' only.
    causal, bidir = _layer(False, False), _layer(False, True)
    L, t0 = 32, 20
    u = torch.zeros(1, L, H, dtype=torch.float64)
    u[0, t0] = 1.0
    with torch.no_grad():
        yc, yb = causal(u), bidir(u)
    scale = yc.abs().max()
    # zero up to FFT round-off: the 2L padding removes circular wrap-around
    assert yc[0, :t0].abs().max() < 1e-12 * scale
    assert (yb[0, :t0].abs().amax(0) > 1e-6 * scale).all()


def test_impulse_response_is_the_kernel():
    layer = _layer(False, False)
    L = 16
    u = torch.zeros(1, L, H, dtype=torch.float64)
    u[0, 0] = 1.0
    with torch.no_grad():
        y = layer(u)[0]  # (L, H)
        expected = layer.kernel(L)[0].T.clone()  # (L, H)
        expected[0] += layer.D  # the skip term acts at lag 0 only
    torch.testing.assert_close(y, expected, rtol=1e-10, atol=1e-12)


def test_initialisations_follow_the_paper():
    N = 8
    lin = S4DLayer(S4DConfig(d_model=H, d_state=N, init="lin")).kernel
    inv = S4DLayer(S4DConfig(d_model=H, d_state=N, init="inv")).kernel
    real = S4DLayer(S4DRealConfig(d_model=H, d_state=N)).kernel
    n = torch.arange(N // 2, dtype=torch.float32)
    # S4D-Lin: −1/2 + iπn; S4D-Inv: −1/2 + i(N/π)(N/(2n+1) − 1); S4D-Real: −(n+1), N poles.
    torch.testing.assert_close(-torch.exp(lin.log_A_real), torch.full((2, H, N // 2), -0.5))
    torch.testing.assert_close(lin.A_imag, (math.pi * n).expand(2, H, -1))
    torch.testing.assert_close(inv.A_imag, (N / math.pi * (N / (2 * n + 1) - 1)).expand(2, H, -1))
    expected = -(torch.arange(N, dtype=torch.float32) + 1)
    torch.testing.assert_close(-torch.exp(real.log_A_real), expected.expand(2, H, -1))
    assert not hasattr(real, "A_imag") and real.C.shape == (2, H, N)
    # log Δ ~ U[log 1e-3, log 1e-1]
    dt = torch.exp(lin.log_dt)
    assert dt.min() >= 1e-3 * (1 - 1e-6) and dt.max() <= 1e-1 * (1 + 1e-6)
    # ZOH poles inside the unit circle; real ones on the positive real axis (no oscillation)
    for k in (lin, inv, real):
        _, Abar, _, _, _ = k._discrete()
        assert (Abar.abs() < 1).all()
    _, Abar_real, _, _, _ = real._discrete()
    assert not Abar_real.is_complex() and (Abar_real > 0).all()


def test_real_and_complex_arms_are_parameter_matched():
    a = build_backbone("s4d", {"d_model": 32, "d_state": 16, "n_layers": 2})
    b = build_backbone("s4d_real", {"d_model": 32, "d_state": 16, "n_layers": 2})
    assert type(a) is type(b) is S4D
    assert count_parameters(a) == count_parameters(b)


def test_ssm_parameters_carry_optimizer_hints():
    model = build_backbone("s4d", {"d_model": 8, "d_state": 4, "n_layers": 1, "ssm_lr_scale": 0.2})
    hinted = {n for n, p in model.named_parameters() if hasattr(p, "_optim")}
    assert hinted == {
        "blocks.0.ssm.kernel.log_dt",
        "blocks.0.ssm.kernel.log_A_real",
        "blocks.0.ssm.kernel.A_imag",
    }
    for n, p in model.named_parameters():
        if n in hinted:
            assert p._optim == {"lr_scale": 0.2, "weight_decay": 0.0}


def test_core_is_fp32_under_autocast():
    torch.manual_seed(0)
    layer = S4DLayer(S4DConfig(d_model=H, d_state=8))
    u = torch.randn(2, 50, H)
    with torch.no_grad():
        ref = layer(u)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = layer(u)
    assert y.dtype == torch.float32
    assert torch.equal(y, ref)  # autocast is off inside: bit-identical


@pytest.mark.parametrize("init", ["lin", "inv"])
def test_fp32_kernel_is_accurate_at_full_length(init):
    # The complex64 Vandermonde kernel against float64 at the paper's L = 2048.
    torch.manual_seed(0)
    layer = S4DLayer(S4DConfig(d_model=4, d_state=64, init=init))
    with torch.no_grad():
        k32 = layer.kernel(2048)
        k64 = layer.double().kernel(2048)
    err = (k32.double() - k64).abs().amax(-1) / k64.abs().amax(-1)
    assert err.max() < 1e-4


def test_config_validation():
    with pytest.raises(ConfigError, match="even"):
        S4DConfig(d_state=7)
    S4DRealConfig(d_state=7)  # real poles need no conjugate pairs
    with pytest.raises(ConfigError, match="init"):
        S4DConfig(init="hippo")
    with pytest.raises(ConfigError, match="dt_min"):
        S4DConfig(dt_min=0.1, dt_max=0.01)
    with pytest.raises(ConfigError, match="output"):
        S4DConfig(output="mlp")
    with pytest.raises(ConfigError):
        build_backbone("s4d", S4DRealConfig())  # the two arms do not mix configs
    with pytest.raises(ConfigError, match="unknown"):
        build_backbone("s4d_real", {"init": "lin"})


def test_linear_output_variant():
    model = build_backbone("s4d", {"d_model": 8, "d_state": 4, "n_layers": 2, "output": "linear"})
    x = torch.randn(2, 9, 8)
    assert model(x).shape == (2, 9, 8)


@pytest.mark.parametrize("L", [1, 5, 17])
def test_complex_vandermonde_backward_passes_gradcheck(L):
    """The hand-written backward of the blocked complex Vandermonde kernel, against finite
    differences (poles with Re < 0, as the layer's)."""
    gen = torch.Generator().manual_seed(L)
    args = [torch.randn(2, 3, 4, dtype=torch.float64, generator=gen) for _ in range(4)]
    args[2] = -args[2].abs() * 0.3  # Re(ΔA) < 0
    args = [a.requires_grad_() for a in args]
    assert torch.autograd.gradcheck(lambda *a: _ComplexVandermonde.apply(*a, L), args)
