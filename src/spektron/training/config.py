"""Training recipe: one dataclass, validated in ``__post_init__`` (docs/DESIGN.md §4)."""

from __future__ import annotations

from dataclasses import dataclass, field

from spektron.data.masking import MaskConfig
from spektron.errors import ConfigError

AMP_MODES = ("auto", "bf16", "off")


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass
class TrainConfig:
    """Optimiser, schedule and loop settings of one training run.

    ``batch_size`` is the global micro-batch (split evenly across DDP ranks); one optimizer step
    accumulates ``accumulation`` micro-batches, so the effective batch is
    ``batch_size × accumulation`` whatever the number of processes.
    """

    steps: int = 1000  # optimizer steps (benchmarks run a fixed number)
    batch_size: int = 16
    accumulation: int = 1
    lr: float = 1e-3
    # Linear warmup over warmup_steps, then cosine decay to min_lr_ratio·lr at the last step.
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global gradient norm; 0 = no clipping (the norm is still logged)
    # "auto": bf16 autocast on CUDA, off on CPU; "bf16": also on CPU; "off". SSM cores stay fp32.
    amp: str = "auto"
    seed: int = 0  # model init, data order and training masks (the split seed is separate)
    eval_every: int = 100  # steps between validations (and the last step)
    checkpoint_every: int = 100  # steps between resume checkpoints (and the last step)
    log_every: int = 10  # steps between history.jsonl lines (and the first and last step)
    # Early stopping on the validation loss, in evaluations; 0 = off (benchmarks keep it off).
    early_stopping_patience: int = 0
    early_stopping_min_delta: float = 0.0
    threads: int = 0  # torch intra-op threads; 0 = leave torch's default
    eval_batch_size: int = 64

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "accumulation", "eval_every", "checkpoint_every"):
            value = getattr(self, name)
            _check(value >= 1, f"train.{name} must be >= 1, got {value}")
        _check(self.log_every >= 1, f"train.log_every must be >= 1, got {self.log_every}")
        _check(self.eval_batch_size >= 1, "train.eval_batch_size must be >= 1")
        _check(self.lr > 0, f"train.lr must be > 0, got {self.lr}")
        _check(self.warmup_steps >= 0, "train.warmup_steps must be >= 0")
        _check(0.0 <= self.min_lr_ratio <= 1.0, "train.min_lr_ratio must lie in [0, 1]")
        _check(self.weight_decay >= 0, "train.weight_decay must be >= 0")
        _check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "train.beta1/beta2 must lie in [0, 1)")
        _check(self.eps > 0, "train.eps must be > 0")
        _check(self.grad_clip >= 0, "train.grad_clip must be >= 0 (0 = off)")
        _check(self.amp in AMP_MODES, f"train.amp must be one of {AMP_MODES}, got {self.amp!r}")
        _check(self.early_stopping_patience >= 0, "train.early_stopping_patience must be >= 0")
        _check(self.early_stopping_min_delta >= 0, "train.early_stopping_min_delta must be >= 0")
        _check(self.threads >= 0, "train.threads must be >= 0")


@dataclass
class MSRPConfig:
    """Masked spectral reconstruction objective (:mod:`spektron.training.tasks`)."""

    mask: MaskConfig = field(default_factory=MaskConfig)
    eval_mask_seed: int = 20251125  # fixed: val/test masks are identical across runs
    physics_nonneg: float = 0.0
    physics_smooth: float = 0.0

    def __post_init__(self) -> None:
        if self.physics_nonneg < 0 or self.physics_smooth < 0:
            raise ConfigError("msrp physics weights must be >= 0")
