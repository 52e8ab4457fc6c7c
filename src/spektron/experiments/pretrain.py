"""``spektron pretrain``: train one backbone on masked spectral reconstruction and leave a
checkpoint that E2–E4 can start from.

The recipe is E1's (same embedding, head, objective, data, splits, step budget and optimiser
settings of the preset; ``--set e1.…`` overrides apply), for one backbone, one seed and one
learning rate (default: the first of the preset's sweep). Under ``torchrun`` it trains with
DistributedDataParallel on every process. Pretraining sees only the training split of the
InChIKey-hash splits, which E2 shares, so E2's validation/test molecules stay unseen.

Output under ``out``: the run folder (config.json, metrics.json, history.jsonl, checkpoint.pt,
``best.pt`` = the checkpoint for downstream use, init.pt) and ``pretrain.json`` pointing at it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from spektron.config import RunConfig
from spektron.errors import ConfigError
from spektron.experiments.e1.run import E1Context, train_one
from spektron.training import distributed as D
from spektron.training.trainer import BEST_NAME
from spektron.utils import write_json_atomic

log = logging.getLogger(__name__)


def run_pretrain(
    cfg: RunConfig,
    out: Path,
    backbone: str = "dlinoss",
    lr: float | None = None,
    progress: bool = True,
    announce: Any = None,
) -> dict[str, Any]:
    """Train ``backbone`` with E1's recipe; returns the run's metrics (with ``checkpoint``)."""
    from spektron.models.registry import available_backbones

    if backbone not in available_backbones():
        raise ConfigError(f"unknown backbone {backbone!r}; choose one of {available_backbones()}")
    lr = cfg.e1.lr_sweep[0] if lr is None else lr
    if lr <= 0:
        raise ConfigError(f"--lr must be > 0, got {lr}")
    t0 = time.perf_counter()
    out = Path(out)
    dist = D.setup(cfg.device)
    ctx = E1Context(cfg, dist, progress)
    ctx.jobs = 1
    ctx.add_arms((backbone,))
    if announce is not None and dist.is_main:
        est = ctx.estimate_seconds(1)
        announce(
            {
                "backbone": backbone,
                "backbone_params": ctx.arms[backbone]["n_params"],
                "lr": lr,
                "seed": cfg.seed,
                "steps": cfg.e1.train.steps,
                "effective_batch": cfg.e1.train.batch_size * cfg.e1.train.accumulation,
                "processes": dist.world_size,
                "n_spectra": ctx.dataset["n_spectra"],
                "expected_training_minutes": est["training_s"] / 60,
            }
        )
    run_dir = out / backbone / f"lr{lr:g}_seed{cfg.seed}"
    spec = ctx.spec(backbone, lr, cfg.seed, run_dir, progress)
    metrics = train_one({**spec, "dist": dist})
    if not dist.is_main:
        return {}
    result = {
        "backbone": backbone,
        "checkpoint": str(run_dir / BEST_NAME),
        "run_dir": str(run_dir),
        "metrics": str(run_dir / "metrics.json"),
        "best_val_masked_mse": metrics["best_val_masked_mse"],
        "test_masked_mse": metrics["test"]["masked_mse"],
        "wall_time_s": time.perf_counter() - t0,
    }
    write_json_atomic(out / "pretrain.json", result)
    return result
