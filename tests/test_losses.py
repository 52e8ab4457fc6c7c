"""Training objectives against hand-computed answers and metric properties."""

from __future__ import annotations

import math

import pytest
import torch

from spektron.errors import ConfigError
from spektron.losses import (
    info_nce,
    masked_mse,
    masked_mse_sum,
    physics_penalty,
    vib_kl,
    wasserstein_1d,
)
from spektron.models.heads import VariationalBottleneck


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


def test_info_nce_aligned_distinct_is_near_zero_identical_rows_is_log_b():
    z = torch.eye(4, 8)  # distinct, orthogonal rows
    assert info_nce(z, z.clone(), temperature=0.01).item() < 1e-6
    same = torch.ones(5, 3)
    assert info_nce(same, same, temperature=0.1).item() == pytest.approx(math.log(5), rel=1e-6)


def test_info_nce_gradient_and_validation():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(6, 4, generator=g, requires_grad=True)
    b = torch.randn(6, 4, generator=g)
    loss = info_nce(a, b, temperature=0.07)
    loss.backward()
    assert loss.item() > 0 and torch.isfinite(a.grad).all()
    with pytest.raises(ConfigError):
        info_nce(a, b, temperature=0.0)


def test_physics_penalty_known_values():
    line = torch.linspace(0.0, 3.0, 7).expand(2, 7)
    assert physics_penalty(line, 1.0, 1.0).item() == pytest.approx(0.0, abs=1e-12)
    neg = torch.full((1, 4), -2.0)  # flat: only the non-negativity term, mean of 4 = 4
    assert physics_penalty(neg, 1.0, 1.0).item() == pytest.approx(4.0)
    zig = torch.tensor([[0.0, 1.0, 0.0, 1.0]])  # second differences: -2, 2 → mean square 4
    assert physics_penalty(zig, 1.0, 0.5).item() == pytest.approx(2.0)
    mixed = torch.tensor([[1.0, -1.0, 1.0]])  # relu(-x)² mean 1/3; d2 = 4 → 16
    assert physics_penalty(mixed, 3.0, 0.25).item() == pytest.approx(1.0 + 4.0)


def _delta(length: int, index: int) -> torch.Tensor:
    x = torch.zeros(length, dtype=torch.float64)
    x[index] = 1.0
    return x


def test_wasserstein_unit_deltas_uniform_grid_exact():
    nu = torch.linspace(500.0, 4000.0, 351, dtype=torch.float64)  # 10 cm⁻¹ step
    for i, j in [(10, 40), (100, 101), (300, 5)]:
        w = wasserstein_1d(_delta(351, i), _delta(351, j), nu)
        assert w.item() == pytest.approx(abs(nu[i] - nu[j]).item(), rel=1e-9)


def test_wasserstein_unit_deltas_nonuniform_grid_to_resolution():
    g = torch.Generator().manual_seed(2)
    nu = torch.cat([torch.zeros(1), torch.rand(299, generator=g) * 2.0 + 0.5]).cumsum(0)
    nu = nu.double()
    step = (nu[1:] - nu[:-1]).max().item()
    for i, j in [(20, 200), (150, 30), (60, 61)]:
        w = wasserstein_1d(_delta(300, i), _delta(300, j), nu)
        assert w.item() == pytest.approx(abs(nu[i] - nu[j]).item(), abs=step)


def test_wasserstein_metric_properties():
    g = torch.Generator().manual_seed(3)
    nu = torch.linspace(0.0, 1.0, 64, dtype=torch.float64) ** 1.5  # non-uniform
    p, q, r = (torch.rand(20, 64, generator=g, dtype=torch.float64) for _ in range(3))

    assert torch.allclose(wasserstein_1d(p, p, nu), torch.zeros(20, dtype=torch.float64))
    assert torch.allclose(wasserstein_1d(p, q, nu), wasserstein_1d(q, p, nu))
    assert torch.all(
        wasserstein_1d(p, r, nu) <= wasserstein_1d(p, q, nu) + wasserstein_1d(q, r, nu) + 1e-12
    )
    assert torch.allclose(wasserstein_1d(37.0 * p, q, nu), wasserstein_1d(p, q, nu))
    assert torch.all(wasserstein_1d(p, q, nu) > 0)


def test_wasserstein_clips_negatives_and_gradient_flows():
    g = torch.Generator().manual_seed(4)
    nu = torch.linspace(500.0, 4000.0, 128)
    p = torch.randn(3, 128, generator=g).requires_grad_(True)
    q = torch.rand(3, 128, generator=g)
    w = wasserstein_1d(p, q, nu)
    assert w.shape == (3,)
    assert torch.allclose(w, wasserstein_1d(p.detach().clamp(min=0), q, nu))
    w.sum().backward()
    assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_vib_kl_is_the_heads_kl_with_known_value():
    mu = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    logvar = torch.tensor([[0.0, 0.0], [0.0, math.log(2.0)]])
    kl = vib_kl(mu, logvar)
    # second row: ½ (1 + 1 − 0 − 1) + ½ (4 + 2 − log 2 − 1)
    expected = torch.tensor([0.0, 0.5 + 0.5 * (5.0 - math.log(2.0))])
    assert torch.allclose(kl, expected)
    assert torch.equal(kl, VariationalBottleneck.kl(mu, logvar))
