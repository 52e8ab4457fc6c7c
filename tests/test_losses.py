"""Training objectives against hand-computed answers and metric properties."""

from __future__ import annotations

import pytest
import torch

from spektron.losses import masked_mse, masked_mse_sum, physics_penalty


def test_masked_mse_hand_computation_and_ignores_unmasked():
    pred = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 5.0]])
    target = torch.tensor([[0.0, 2.0, 1.0], [1.0, 9.0, 9.0]])
    mask = torch.tensor([[True, False, True], [False, False, True]])

    total, n = masked_mse_sum(pred, target, mask)

    assert total.item() == pytest.approx(1.0 + 4.0 + 16.0)
    assert n.item() == 3
    assert masked_mse(pred, target, mask).item() == pytest.approx(21.0 / 3)
    changed = pred.clone()
    changed[~mask] = torch.tensor([100.0, float("nan"), -7.0])
    assert masked_mse(changed, target, mask).item() == pytest.approx(21.0 / 3)


def test_masked_mse_nothing_masked_is_zero_and_gradient_only_on_masked():
    pred = torch.randn(2, 5, requires_grad=True)
    target = torch.randn(2, 5)
    assert masked_mse(pred, target, torch.zeros(2, 5, dtype=torch.bool)).item() == 0.0
    mask = torch.rand(2, 5, generator=torch.Generator().manual_seed(0)) < 0.5
    masked_mse(pred, target, mask).backward()
    assert torch.all(pred.grad[~mask] == 0)
    assert torch.isfinite(pred.grad).all()


def test_physics_penalty_known_values():
    line = torch.linspace(0.0, 3.0, 7).expand(2, 7)
    assert physics_penalty(line, 1.0, 1.0).item() == pytest.approx(0.0, abs=1e-12)
    neg = torch.full((1, 4), -2.0)  # flat: only the non-negativity term, mean of 4 = 4
    assert physics_penalty(neg, 1.0, 1.0).item() == pytest.approx(4.0)
    zig = torch.tensor([[0.0, 1.0, 0.0, 1.0]])  # second differences: -2, 2 → mean square 4
    assert physics_penalty(zig, 1.0, 0.5).item() == pytest.approx(2.0)
    mixed = torch.tensor([[1.0, -1.0, 1.0]])  # relu(-x)² mean 1/3; d2 = 4 → 16
    assert physics_penalty(mixed, 3.0, 0.25).item() == pytest.approx(1.0 + 4.0)
