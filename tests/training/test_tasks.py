"""MSRP task: no masked value reaches any backbone; loss sums and counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spektron.chemistry.spectra import make_grid
from spektron.models.registry import available_backbones
from spektron.models.spektron import Spektron, SpektronConfig
from spektron.training.config import MSRPConfig
from spektron.training.tasks import MaskedReconstruction, derive_seeds
from tests.training.train_worker import L, synthetic


@pytest.mark.parametrize("backbone", available_backbones())
def test_masked_values_never_reach_the_model(backbone):
    torch.manual_seed(0)
    model = Spektron(
        SpektronConfig.from_json_dict(
            {"d_model": 16, "backbone": backbone, "backbone_config": {"n_layers": 1}}
        )
    ).eval()
    task = MaskedReconstruction(MSRPConfig(), make_grid(L))
    items = synthetic(3, 0).take(np.arange(3))
    batch = task.prepare(items, derive_seeds(1, 0, np.arange(3)), train=True)
    with torch.no_grad():
        ref = task.forward(model, batch)
        for fill in (float("nan"), 1e6, -3.0):
            poisoned = dict(batch, x=batch["x"].masked_fill(batch["mask"], fill))
            assert torch.equal(task.forward(model, poisoned), ref)


def test_sums_and_counts_give_the_masked_mse():
    torch.manual_seed(0)
    model = Spektron(SpektronConfig(d_model=16, backbone="cnn", backbone_config={"n_layers": 1}))
    task = MaskedReconstruction(MSRPConfig(physics_nonneg=1.0, physics_smooth=0.5), make_grid(L))
    items = synthetic(4, 0).take(np.arange(4))
    batch = task.prepare(items, derive_seeds(3, 0, np.arange(4)), train=False)
    with torch.no_grad():
        pred = task.forward(model, batch)
        sums, counts = task.sums(model, batch), task.counts(batch)
    m = batch["mask"]
    expected = ((pred - batch["x"])[m] ** 2).mean()
    assert task.terms == ("recon", "physics")
    assert counts[0] == m.sum() and counts[1] == 4
    torch.testing.assert_close(sums[0] / counts[0].float(), expected)


def test_derive_seeds_is_deterministic_and_distinct():
    a = derive_seeds(0, 1, np.arange(100))
    assert np.array_equal(a, derive_seeds(0, 1, np.arange(100)))
    assert len(set(a.tolist())) == 100 and (a >= 0).all()
    assert not np.array_equal(a, derive_seeds(0, 2, np.arange(100)))
