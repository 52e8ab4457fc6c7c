"""A small, fully seeded training run, executed as a subprocess by the trainer tests (plain
``python train_worker.py OUT ...`` or under ``torchrun``). Prints nothing; results go to OUT."""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from spektron.chemistry.spectra import make_grid
from spektron.models.spektron import Spektron, SpektronConfig
from spektron.training import distributed as D
from spektron.training.config import MSRPConfig, TrainConfig
from spektron.training.data import ArrayData
from spektron.training.tasks import MaskedReconstruction
from spektron.training.trainer import Trainer

L = 128


def synthetic(n: int, seed: int) -> ArrayData:
    """Sums of Gaussian bands at random centres, max-normalised: (n, L)."""
    wn = make_grid(L)
    rng = np.random.default_rng(seed)
    c = rng.uniform(600, 3900, (n, 4))
    x = np.exp(-(((wn[None, None, :] - c[..., None]) / 40.0) ** 2)).sum(1)
    x /= x.max(1, keepdims=True)
    return ArrayData(
        {"x": x.astype(np.float32), "row": np.arange(n), "kind": np.zeros(n, dtype=np.int64)}
    )


def pooled_run(spec: dict) -> dict:
    """One small seeded run for a pool worker (``run_specs``): ``spec`` names the backbone,
    seed and folder; returns the final weights and the trainer's summary."""
    torch.set_num_threads(1)
    torch.manual_seed(spec["seed"])
    model = Spektron(
        SpektronConfig.from_json_dict(
            {
                "d_model": 16,
                "backbone": spec["backbone"],
                "backbone_config": {"n_layers": 1, "dropout": 0.1},
                "embedding": {"dropout": 0.1},
            }
        )
    )
    cfg = TrainConfig(
        steps=4, batch_size=8, lr=3e-3, warmup_steps=1, eval_every=2, seed=spec["seed"]
    )
    task = MaskedReconstruction(MSRPConfig(), make_grid(L))
    data = synthetic(32, 1), synthetic(8, 2)
    trainer = Trainer(model, task, *data, cfg, spec["run_dir"], progress=False)
    summary = trainer.fit()
    return {"state": {k: v.clone() for k, v in model.state_dict().items()}, "summary": summary}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--accum", type=int, default=1)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--backbone", default="dlinoss")
    ap.add_argument("--step-sleep", type=float, default=0.0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    dist = D.setup("cpu")
    torch.manual_seed(0)
    model = Spektron(
        SpektronConfig.from_json_dict(
            {
                "d_model": 16,
                "backbone": a.backbone,
                "backbone_config": {"n_layers": 2, "dropout": a.dropout},
                "embedding": {"dropout": a.dropout},
            }
        )
    )
    task = MaskedReconstruction(MSRPConfig(), make_grid(L))
    cfg = TrainConfig(
        steps=a.steps,
        batch_size=a.batch,
        accumulation=a.accum,
        lr=3e-3,
        warmup_steps=3,
        eval_every=4,
        checkpoint_every=1,
        log_every=1,
        eval_batch_size=16,
    )
    trainer = Trainer(model, task, synthetic(48, 1), synthetic(16, 2), cfg, a.out, dist, False)
    if a.step_sleep:
        step = trainer._train_step

        def slow_step():
            import time

            time.sleep(a.step_sleep)
            return step()

        trainer._train_step = slow_step
    summary = trainer.fit()
    if dist.is_main:
        with open(f"{a.out}/summary.json", "w") as f:
            json.dump(summary, f)
    D.teardown()


if __name__ == "__main__":
    main()
