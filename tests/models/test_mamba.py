"""Mamba backbone: parallel scan vs sequential and step-by-step references, padding to powers of
two, causality of each direction, config validation."""

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


def _pair(**kw) -> tuple[MambaBackbone, MambaBackbone]:
    """The same weights, once with the parallel scan and once with the sequential reference."""
    torch.manual_seed(0)
    fast = MambaBackbone(MambaBackboneConfig(d_model=D, n_layers=2, d_state=4, **kw))
    slow = MambaBackbone(
        MambaBackboneConfig(d_model=D, n_layers=2, d_state=4, scan="sequential", **kw)
    )
    slow.load_state_dict(fast.state_dict())
    return fast, slow


@pytest.mark.parametrize("L", [1, 5, 8, 13, 16, 37])
@pytest.mark.parametrize("combine", ["sum", "concat"])
def test_parallel_scan_matches_sequential_reference(L, combine):
    fast, slow = _pair(combine=combine)
    x = torch.randn(2, L, D, requires_grad=True)
    y_fast = fast(x)
    (g_fast,) = torch.autograd.grad(y_fast.square().sum(), x)
    y_slow = slow(x)
    (g_slow,) = torch.autograd.grad(y_slow.square().sum(), x)
    assert y_fast.shape == (2, L, D)
    torch.testing.assert_close(y_fast, y_slow, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g_fast, g_slow, rtol=1e-4, atol=1e-5)


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
