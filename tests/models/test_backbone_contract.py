"""The backbone contract (docs/DESIGN.md §3.1), checked on every registered backbone.

A backbone whose module does not exist yet is skipped (with the reason); one whose module
exists but fails to import fails the test.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from spektron.errors import ConfigError
from spektron.models.registry import (
    BACKBONE_MODULES,
    available_backbones,
    backbone_spec,
    build_backbone,
    make_backbone_config,
)
from spektron.models.sizing import size_backbone

D_MODEL = 16
LENGTHS = (1, 7, 64, 300)


def _spec(name: str):
    """The registered backbone's spec; its module must exist (a missing one fails the test)."""
    module = BACKBONE_MODULES[name]
    assert importlib.util.find_spec(module) is not None, f"backbone {name!r}: no module {module}"
    return backbone_spec(name)


def _small_config(name: str):
    """A small config: d_model=16 and the smallest value of each size knob (fast tests)."""
    spec = _spec(name)
    knobs = {k: min(v) for k, v in getattr(spec.config_cls, "SIZE_KNOBS", {}).items()}
    try:
        return make_backbone_config(name, d_model=D_MODEL, **knobs)
    except ConfigError:
        return make_backbone_config(name, d_model=D_MODEL)


def _build(name: str, seed: int = 0) -> torch.nn.Module:
    cfg = _small_config(name)
    torch.manual_seed(seed)
    return build_backbone(name, cfg).eval()


def _lengths(name: str) -> list[int]:
    spec = _spec(name)
    min_len = getattr(spec.module_cls, "MIN_LENGTH", 1)
    return [L for L in LENGTHS if L >= min_len] or [min_len]


@pytest.fixture(params=available_backbones())
def name(request) -> str:
    return request.param


def test_shape_contract(name):
    model = _build(name)
    for L in _lengths(name):
        x = torch.randn(2, L, D_MODEL)  # (B, L, d_model)
        with torch.no_grad():
            y = model(x)
        assert y.shape == (2, L, D_MODEL), (name, L)
        assert y.dtype == x.dtype
        assert torch.isfinite(y).all(), (name, L)


def test_backward_gives_finite_grads_on_every_parameter(name):
    model = _build(name).train()
    x = torch.randn(2, 64, D_MODEL, requires_grad=True)
    model(x).square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name}: no gradient for {pname}"
            assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient for {pname}"


def test_deterministic_under_seed(name):
    x = torch.randn(2, 64, D_MODEL)
    a, b = _build(name, seed=7), _build(name, seed=7)
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert na == nb and torch.equal(pa, pb), (name, na)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    c = _build(name, seed=8)
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters(), strict=True))


def test_budget_met_at_one_million(name):
    spec = _spec(name)
    cfg, n = size_backbone(name, budget=1_000_000, d_model=128, tol=0.05)
    assert isinstance(cfg, spec.config_cls)
    assert cfg.d_model == 128
    assert abs(n - 1_000_000) <= 50_000, (name, n)


def test_runs_under_bf16_autocast(name):
    model = _build(name)
    x = torch.randn(2, 64, D_MODEL)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
    assert y.shape == (2, 64, D_MODEL)
    assert torch.isfinite(y.float()).all()
