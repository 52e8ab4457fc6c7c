"""Transformer and CNN1D backbones: attention maths, position handling, receptive field."""

from __future__ import annotations

import math

import pytest
import torch

from spektron.errors import ConfigError
from spektron.models.backbones.cnn import CNN1D, CNNConfig
from spektron.models.backbones.transformer import SelfAttention, Transformer, TransformerConfig
from spektron.models.registry import build_backbone


def test_attention_matches_explicit_softmax():
    torch.manual_seed(0)
    cfg = TransformerConfig(d_model=16, n_heads=4)
    attn = SelfAttention(cfg).double()
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    q, k, v = attn.qkv(x).split(16, dim=-1)
    heads = [t.view(2, 9, 4, 4).transpose(1, 2) for t in (q, k, v)]  # (B, nh, L, dh)
    w = torch.softmax(heads[0] @ heads[1].transpose(-1, -2) / math.sqrt(4), dim=-1)
    expected = attn.proj((w @ heads[2]).transpose(1, 2).reshape(2, 9, 16))
    torch.testing.assert_close(attn(x), expected)


def test_transformer_has_no_positional_embedding_of_its_own():
    # Positions come from the wavenumber encoding of the shared embedding, so the bare
    # backbone is permutation-equivariant along L — and bidirectional (sees the future).
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(d_model=16, n_heads=2, n_layers=2)).eval()
    x = torch.randn(1, 12, 16)
    perm = torch.randperm(12)
    with torch.no_grad():
        y = model(x)
        torch.testing.assert_close(model(x[:, perm]), y[:, perm])
        x2 = x.clone()
        x2[0, -1] += torch.randn(16)  # not a constant shift: LayerNorm would remove it
        assert not torch.allclose(model(x2)[0, 0], y[0, 0])


def test_transformer_config():
    assert TransformerConfig(d_model=32).ffn_width == 128
    assert TransformerConfig(d_model=32, d_ff=48).ffn_width == 48
    with pytest.raises(ConfigError, match="divide"):
        TransformerConfig(d_model=30, n_heads=4)
    with pytest.raises(ConfigError):
        TransformerConfig(n_layers=0)
    model = build_backbone("transformer", {"d_model": 16, "n_heads": 2, "d_ff": 24})
    assert model.layers[0].ff1.out_features == 24


@pytest.mark.parametrize("kernel_size", [3, 4, 5])
@pytest.mark.parametrize("L", [1, 2, 5, 301])
def test_cnn_preserves_length_for_any_kernel_and_dilation(kernel_size, L):
    cfg = CNNConfig(d_model=8, hidden=8, n_layers=4, kernel_size=kernel_size)
    assert CNN1D(cfg)(torch.randn(2, L, 8)).shape == (2, L, 8)


def test_cnn_dilations_cycle():
    model = CNN1D(CNNConfig(d_model=8, hidden=8, n_layers=6, dilation_cycle=(1, 3)))
    assert [b.conv1.dilation[0] for b in model.blocks] == [1, 3, 1, 3, 1, 3]
    assert [b.conv2.dilation[0] for b in model.blocks] == [1, 3, 1, 3, 1, 3]


def test_cnn_receptive_field_is_exact():
    # An impulse at the centre reaches exactly (rf − 1)/2 positions to each side.
    torch.manual_seed(0)
    cfg = CNNConfig(d_model=8, hidden=8, n_layers=3, kernel_size=3, dilation_cycle=(1, 2, 4))
    model = CNN1D(cfg).double().eval()
    half = (cfg.receptive_field() - 1) // 2
    assert half == 2 * (1 + 2 + 4)
    L, c = 2 * half + 21, half + 10
    x = torch.randn(1, L, 8, dtype=torch.float64)
    x2 = x.clone()
    x2[0, c] += torch.randn(8, dtype=torch.float64)  # not a constant: LN removes shifts
    with torch.no_grad():
        diff = (model(x2) - model(x))[0].abs().amax(-1)  # (L,)
    reached = (diff > 1e-12).nonzero().squeeze(-1)
    assert reached.min() == c - half and reached.max() == c + half


def test_cnn_config_validation():
    with pytest.raises(ConfigError, match="dilation_cycle"):
        CNNConfig(dilation_cycle=())
    with pytest.raises(ConfigError, match="dilation_cycle"):
        CNNConfig(dilation_cycle=(1, 0))
    with pytest.raises(ConfigError):
        CNNConfig(kernel_size=0)
    cfg = build_backbone("cnn", {"d_model": 8, "dilation_cycle": [1, 2]}).cfg
    assert cfg.dilation_cycle == (1, 2)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize(("kernel_size", "dilation"), [(4, 1), (4, 3), (5, 2), (2, 8)])
def test_cnn_padding_equals_torch_same(kernel_size, dilation):
    torch.manual_seed(0)
    cfg = CNNConfig(
        d_model=4, hidden=4, n_layers=1, kernel_size=kernel_size, dilation_cycle=(dilation,)
    )
    block = CNN1D(cfg).blocks[0]
    h = torch.randn(2, 4, 11)  # (B, H, L)
    ours = block.conv1(torch.nn.functional.pad(h, block.pad))
    ref = torch.nn.functional.conv1d(
        h, block.conv1.weight, block.conv1.bias, dilation=dilation, padding="same"
    )
    torch.testing.assert_close(ours, ref)
