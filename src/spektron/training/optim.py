"""AdamW parameter groups from the model's own hints, and the warmup + cosine schedule.

Hints (as ``state-spaces/s4`` and ``mambapy``): a parameter may carry
``p._optim = {"lr_scale": s, "weight_decay": w}`` (SSM dynamics: own LR, no decay) or
``p._no_weight_decay = True`` (Mamba's ``A_log``/``D``). Without a hint, matrices (ndim ≥ 2)
decay and vectors (biases, norm gains, per-channel scales) do not, as in nanoGPT.

Schedule (per optimizer step k, 0-based, K steps, warmup W):
    f(k) = (k + 1)/W                                          for k < W
    f(k) = r + (1 − r)·½(1 + cos(π·(k − W)/max(K − 1 − W, 1)))   otherwise,
so the LR rises linearly to its peak and ends at r·peak on the last step (r = min_lr_ratio).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from spektron.training.config import TrainConfig


def _hint(p: nn.Parameter, cfg: TrainConfig, matrix: bool) -> tuple[float, float]:
    """(lr_scale, weight_decay) of one parameter."""
    optim = getattr(p, "_optim", None) or {}
    lr_scale = float(optim.get("lr_scale", 1.0))
    if "weight_decay" in optim:
        wd = float(optim["weight_decay"])
    elif getattr(p, "_no_weight_decay", False) or not matrix:
        wd = 0.0
    else:
        wd = cfg.weight_decay
    return lr_scale, wd


def parameter_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """One AdamW group per distinct (lr_scale, weight_decay), in first-seen order.

    Each group carries ``lr_scale`` (its LR = schedule × base LR × lr_scale) and ``names``.
    """
    groups: dict[tuple[float, float], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        key = _hint(p, cfg, matrix=p.ndim >= 2)
        g = groups.setdefault(
            key,
            {
                "params": [],
                "names": [],
                "lr_scale": key[0],
                "weight_decay": key[1],
                "lr": cfg.lr * key[0],
            },
        )
        g["params"].append(p)
        g["names"].append(name)
    return list(groups.values())


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    groups = parameter_groups(model, cfg)
    return torch.optim.AdamW(
        groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay
    )


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Schedule factor f(step) of the module docstring."""
    if step < warmup:
        return (step + 1) / warmup
    span = max(total - 1 - warmup, 1)
    progress = min((step - warmup) / span, 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosine:
    """Picklable LR lambda (its fields go into the scheduler's state dict)."""

    def __init__(self, total: int, warmup: int, min_ratio: float) -> None:
        self.total, self.warmup, self.min_ratio = total, warmup, min_ratio

    def __call__(self, step: int) -> float:
        return lr_factor(step, self.total, self.warmup, self.min_ratio)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR whose factor multiplies every group's initial LR (base × lr_scale)."""
    fn = WarmupCosine(cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, [fn] * len(optimizer.param_groups))


def grad_norm(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """Global L2 norm of the gradients (0 when none), fp32."""
    grads = [p.grad.detach().float().norm() for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.stack(grads).norm()
