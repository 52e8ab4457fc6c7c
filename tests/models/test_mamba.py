"""Mamba backbone: the compiled CPU scan and mambapy's parallel scan vs the sequential and
step-by-step references (outputs and every gradient), padding to powers of two, causality of
each direction, config validation."""

from __future__ import annotations

import types
import warnings

import pytest
import torch

from spektron.errors import ConfigError
from spektron.models.backbones import mamba as mamba_mod
from spektron.models.backbones.mamba import MambaBackbone, MambaBackboneConfig
from spektron.models.registry import build_backbone, count_parameters

D = 16


def _pair(scan: str = "parallel", **kw) -> tuple[MambaBackbone, MambaBackbone]:
    """The same weights, once with a fast scan and once with the sequential reference."""
    torch.manual_seed(0)
    fast = MambaBackbone(MambaBackboneConfig(d_model=D, n_layers=2, d_state=4, scan=scan, **kw))
    slow = MambaBackbone(
        MambaBackboneConfig(d_model=D, n_layers=2, d_state=4, scan="sequential", **kw)
    )
    slow.load_state_dict(fast.state_dict())
    return fast, slow


@pytest.mark.parametrize("L", [1, 5, 8, 13, 16, 37])
@pytest.mark.parametrize("combine", ["sum", "concat"])
@pytest.mark.parametrize("scan", ["parallel", "compiled"])
def test_fast_scans_match_sequential_reference(L, combine, scan):
    fast, slow = _pair(scan, combine=combine)
    x = torch.randn(2, L, D, requires_grad=True)
    y_fast = fast(x)
    (g_fast,) = torch.autograd.grad(y_fast.square().sum(), x)
    y_slow = slow(x)
    (g_slow,) = torch.autograd.grad(y_slow.square().sum(), x)
    assert y_fast.shape == (2, L, D)
    torch.testing.assert_close(y_fast, y_slow, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g_fast, g_slow, rtol=1e-4, atol=1e-5)


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    """The kernels on one thread and on two."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize("L", [1, 31, 32, 33, 100, 257])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("Bt,E", [(3, 5), (1, 40)], ids=["narrow", "channel-blocks"])
def test_compiled_scan_matches_loop_in_every_gradient(L, dtype, Bt, E, threads):
    # The bare scan against mambapy's loop, with inputs chosen so that every term matters:
    # chunk boundaries of the backward's recomputation at L = 31..33, 100, 257; one batch row
    # with 40 channels splits them into blocks on two threads (a vector loop and its tail).
    from mambapy import mamba

    from spektron.models.backbones.selective_scan import CHECKPOINT, selective_scan

    assert CHECKPOINT == 32
    torch.manual_seed(L)
    N = 4
    x = torch.randn(Bt, L, E, dtype=dtype)
    delta = torch.nn.functional.softplus(torch.randn(Bt, L, E, dtype=dtype))
    A = -torch.rand(E, N, dtype=dtype) * 3 - 0.01
    B, C = torch.randn(Bt, L, N, dtype=dtype), torch.randn(Bt, L, N, dtype=dtype)
    Dv = torch.randn(E, dtype=dtype)
    ins = [t.requires_grad_() for t in (x, delta, A, B, C, Dv)]
    gy = torch.randn(Bt, L, E, dtype=dtype)
    block = types.SimpleNamespace(config=types.SimpleNamespace(d_inner=E, d_state=N))
    ref = mamba.MambaBlock.selective_scan_seq(block, *ins)
    got = selective_scan(*ins)
    assert got.dtype == dtype and got.shape == (Bt, L, E)
    g_ref = torch.autograd.grad(ref, ins, gy)
    g_got = torch.autograd.grad(got, ins, gy)
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 2e-5, "atol": 2e-5}
    torch.testing.assert_close(got, ref, **tol)
    for name, a, b in zip(["x", "delta", "A", "B", "C", "D"], g_got, g_ref, strict=True):
        torch.testing.assert_close(a, b, **tol, msg=lambda m, name=name: f"d{name}: {m}")


@pytest.mark.parametrize("L", [1, 3, 4, 5, 37])
@pytest.mark.parametrize("scan", ["sequential", "compiled"])
def test_block_equals_mambapys_block(L, scan):
    # Our block keeps its activations in (B, L, E) (conv as shifted products, Δ's projection
    # and the gate computed there): the same model as mambapy's block, outputs and every
    # parameter and input gradient, in float64. L around the conv's 4 taps.
    from mambapy import mamba

    torch.manual_seed(L)
    ours = MambaBackbone(MambaBackboneConfig(d_model=D, n_layers=1, d_state=4, scan=scan))
    block = ours.fwd.layers[0].mixer.double()
    block.compiled_scan = scan == "compiled"
    ref = mamba.MambaBlock(block.config).double()
    ref.load_state_dict(block.state_dict())
    x = torch.randn(2, L, D, dtype=torch.float64, requires_grad=True)
    gy = torch.randn(2, L, D, dtype=torch.float64)
    outs = []
    for m in (block, ref):
        y = m(x)
        outs.append((y, torch.autograd.grad(y, [x, *m.parameters()], gy)))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=1e-12, atol=1e-12)
    names = ["x", *(n for n, _ in block.named_parameters())]
    for name, a, b in zip(names, outs[0][1], outs[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=lambda m, n=name: f"d{n}: {m}")


def test_block_helpers_pass_gradcheck():
    from spektron.models.backbones.mamba import _CausalDepthwiseConv, _SiLUGate, _Softplus

    torch.manual_seed(0)
    for L in (1, 2, 3, 4, 9):
        x = torch.randn(2, L, 3, dtype=torch.float64, requires_grad=True)
        w = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
        b = torch.randn(3, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(_CausalDepthwiseConv.apply, (x, w, b))
        assert torch.autograd.gradcheck(_CausalDepthwiseConv.apply, (x, w, None))
    y, z = (torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True) for _ in range(2))
    assert torch.autograd.gradcheck(_SiLUGate.apply, (y, z))
    # softplus from its output, across F.softplus's threshold (20) and far below 0
    x = torch.tensor([-30.0, -3.0, 0.0, 0.5, 19.0, 21.0, 40.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(_Softplus.apply, (x.requires_grad_(),))


def test_checkpointing_gives_the_same_model_and_keeps_only_layer_inputs():
    # Arrange: the same weights with and without per-layer activation checkpointing
    torch.manual_seed(0)
    cfg = MambaBackboneConfig(d_model=D, n_layers=2, d_state=4)
    plain = MambaBackbone(cfg).double()
    ckpt = MambaBackbone(MambaBackboneConfig(**{**cfg.__dict__, "checkpoint": True})).double()
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 37, D, dtype=torch.float64, requires_grad=True)
    gy = torch.randn(2, 37, D, dtype=torch.float64)
    saved = {}
    results = []
    for name, m in (("plain", plain), ("ckpt", ckpt)):
        sizes = []
        with torch.autograd.graph.saved_tensors_hooks(
            lambda t, sizes=sizes: sizes.append(t.numel()) or t, lambda t: t
        ):
            y = m(x)
        saved[name] = sum(sizes)
        results.append((y, torch.autograd.grad(y, [x, *m.parameters()], gy)))
    # Assert: identical outputs and gradients; far fewer numbers kept for the backward
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=0)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert saved["ckpt"] < saved["plain"] / 4


def test_compiled_scan_refuses_other_devices_and_dtypes():
    from spektron.models.backbones.selective_scan import selective_scan

    x = torch.zeros(1, 4, 2, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="float32 or float64"):
        selective_scan(x, x, torch.zeros(2, 3), torch.zeros(1, 4, 3), torch.zeros(1, 4, 3), x[0, 0])


def _step_reference(model: MambaBackbone, x: torch.Tensor) -> torch.Tensor:
    """Token-by-token recurrence through mambapy's ``step`` (conv cache + SSM state)."""
    stack = model.fwd
    B = x.shape[0]
    caches = [
        (None, torch.zeros(B, stack.mcfg.d_inner, stack.mcfg.d_conv - 1)) for _ in stack.layers
    ]
    outs = []
    for t in range(x.shape[1]):
        u = x[:, t]  # (B, D)
        for i, layer in enumerate(stack.layers):
            y, caches[i] = layer.mixer.step(layer.norm(u), caches[i])
            u = u + y
        outs.append(stack.norm_f(u))
    return torch.stack(outs, dim=1)  # (B, L, D)


@pytest.mark.parametrize("L", [6, 16])
def test_unidirectional_matches_step_by_step_recurrence(L):
    torch.manual_seed(1)
    model = MambaBackbone(
        MambaBackboneConfig(d_model=D, n_layers=2, d_state=4, bidirectional=False)
    )
    x = torch.randn(2, L, D)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _step_reference(model, x), rtol=1e-5, atol=1e-5)


def test_right_padding_does_not_leak_into_real_positions():
    # L = 13 is padded to 16 inside; whatever follows position 12 must not matter, in either
    # direction (the backward stack sees the flipped, also right-padded, sequence).
    fast, slow = _pair()
    x = torch.randn(1, 13, D)
    longer = torch.cat([x, 100 * torch.randn(1, 3, D)], dim=1)  # L = 16: no padding
    with torch.no_grad():
        torch.testing.assert_close(fast(x), slow(x), rtol=1e-5, atol=1e-5)
        uni = MambaBackbone(MambaBackboneConfig(d_model=D, n_layers=2, bidirectional=False))
        torch.testing.assert_close(uni(x), uni(longer)[:, :13], rtol=1e-5, atol=1e-6)


def _influence(model: torch.nn.Module, L: int, j: int) -> torch.Tensor:
    """Per-position change of the output when input position j is perturbed: (L,)."""
    x = torch.randn(1, L, D)
    x2 = x.clone()
    x2[:, j] += 1.0
    with torch.no_grad():
        return (model(x2) - model(x)).abs().amax(dim=(0, 2))


def test_unidirectional_is_causal_and_bidirectional_sees_both_sides():
    torch.manual_seed(2)
    uni = MambaBackbone(MambaBackboneConfig(d_model=D, n_layers=2, bidirectional=False))
    bi = MambaBackbone(MambaBackboneConfig(d_model=D, n_layers=2, bidirectional=True))
    assert uni.cfg.scan == "auto"  # the compiled scan on the CPU
    L, j = 20, 9
    d_uni, d_bi = _influence(uni, L, j), _influence(bi, L, j)
    assert torch.all(d_uni[:j] == 0)
    assert torch.all(d_uni[j:] > 0)
    assert torch.all(d_bi > 0)


def test_registry_build_and_concat_projection_counted_in_params():
    summed = build_backbone("mamba", {"d_model": D, "n_layers": 1, "combine": "sum"})
    concat = build_backbone("mamba", {"d_model": D, "n_layers": 1, "combine": "concat"})
    uni = build_backbone("mamba", {"d_model": D, "n_layers": 1, "bidirectional": False})
    assert isinstance(summed, MambaBackbone)
    assert count_parameters(concat) - count_parameters(summed) == 2 * D * D + D
    assert 2 * count_parameters(uni) == count_parameters(summed)
    assert set(MambaBackboneConfig.SIZE_KNOBS) == {"n_layers", "expand", "d_state"}


@pytest.mark.parametrize(
    "bad",
    [{"n_layers": 0}, {"combine": "max"}, {"backend": "cuda"}, {"scan": "fast"}, {"dt_rank": 0}],
)
def test_config_rejects_bad_values(bad):
    with pytest.raises(ConfigError):
        MambaBackboneConfig(**bad)


def test_cuda_without_mamba_ssm_warns_once(monkeypatch):
    model = MambaBackbone(MambaBackboneConfig(d_model=D, n_layers=1))
    monkeypatch.setattr(mamba_mod, "fused_scan", lambda: None)
    monkeypatch.setattr(mamba_mod, "_warned_fallback", False)
    fake_cuda = types.SimpleNamespace(is_cuda=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert model._use_fused(fake_cuda) is False
        assert model._use_fused(fake_cuda) is False
    assert len([w for w in caught if "mamba_ssm" in str(w.message)]) == 1


def test_bf16_autocast_keeps_scan_in_float32():
    torch.manual_seed(3)
    model = MambaBackbone(MambaBackboneConfig(d_model=D, n_layers=1))
    x = torch.randn(2, 12, D)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    assert torch.isfinite(low).all()
    torch.testing.assert_close(low.float(), ref, rtol=0.1, atol=0.1)
