"""The training loop: AdamW groups, warmup + cosine, clipping, accumulation, AMP, DDP,
atomic resume checkpoints, best-validation weights, early stopping and ``history.jsonl``.

One optimizer step k consumes ``accumulation`` global micro-batches of ``batch_size`` spectra.
Micro-batch j = k·accumulation + a is the slice ``[o·B, (o+1)·B)`` (o = j mod n_batches) of the
permutation of epoch e = j div n_batches, drawn from ``default_rng([seed, e])`` (a trailing
partial batch is dropped), so the sampler position is a pure function of the step, and rank r
of W takes the r-th of W equal parts of every micro-batch. The loss of a step is

    L = Σ_terms  (Σ_{ranks, micro-steps} S_t) / (Σ_{ranks, micro-steps} n_t),

with the counts all-reduced before any backward pass; each rank back-propagates
W · Σ_t S_t^(rank, micro) / n_t^(global), and DDP's gradient average (÷ W) then yields exactly
∇L. With per-position norms (no BatchNorm) and dropout 0 a W-process run therefore equals a
single-process run with the same effective batch up to float rounding.

Determinism: model init is seeded by the caller; dropout draws from torch's global RNG, whose
state (per rank) is in every checkpoint; masks draw from generators seeded per sample. A CPU
run killed at any moment and resumed from its last checkpoint finishes bit-identical to an
uninterrupted run with the same thread count.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from spektron.errors import ConfigError, DataError, TrainingError
from spektron.training import distributed as D
from spektron.training.checkpoint import (
    TRAIN_CHECKPOINT_FORMAT,
    TRAIN_CHECKPOINT_VERSION,
    load_train_checkpoint,
    rng_state,
    set_rng_state,
)
from spektron.training.config import TrainConfig
from spektron.training.data import ArrayData
from spektron.training.optim import build_optimizer, build_scheduler
from spektron.utils import heap_in_use_mb, rss_mb, torch_save_atomic, tune_cpu_process

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
BEST_NAME = "best.pt"
INIT_NAME = "init.pt"
HISTORY_NAME = "history.jsonl"

MEMORY_KIND = {
    "cuda": "CUDA allocator peak (max_memory_allocated) during training",
    "cpu": "peak of the live heap (glibc mallinfo2 in-use bytes) sampled after every forward "
    "pass, above its size at the start of training",
    "cpu-rss": "peak resident memory sampled after every forward pass, above the RSS at the "
    "start of training (this process)",
}


def _cpu_memory() -> tuple[float, str]:
    """(MiB, kind): the live heap where glibc reports it, else the resident size. The live
    heap measures this run's own allocations also in a worker process that ran others before
    (the resident size keeps the earlier peak: :func:`spektron.utils.keep_freed_memory`)."""
    heap = heap_in_use_mb()
    return (heap, "cpu") if heap is not None else (rss_mb(), "cpu-rss")


def read_history(path: Path, max_step: int | None = None) -> list[dict[str, Any]]:
    """Complete JSON lines of ``history.jsonl`` (a torn last line is skipped)."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if max_step is None or rec.get("step", 0) <= max_step:
            out.append(rec)
    return out


class Trainer:
    """Train ``model`` on ``task`` over ``train`` for ``cfg.steps`` optimizer steps.

    Parameters
    ----------
    model : the (unwrapped) :class:`~spektron.models.spektron.Spektron`, already initialised.
    task : an objective with ``sample_seeds``, ``prepare``, ``counts``, ``sums``, ``terms``
        (e.g. :class:`~spektron.training.tasks.MaskedReconstruction`).
    train, val : preloaded data (``val`` may be None: then no validation, no best weights).
    cfg : the recipe.
    out : run folder (checkpoint.pt, best.pt, init.pt, history.jsonl).
    dist : process-group info (single process by default).
    """

    def __init__(
        self,
        model: nn.Module,
        task: Any,
        train: ArrayData,
        val: ArrayData | None,
        cfg: TrainConfig,
        out: str | os.PathLike,
        dist: D.DistInfo | None = None,
        progress: bool = True,
        model_checkpoint_extra: dict[str, Any] | None = None,
    ) -> None:
        self.dist = dist or D.DistInfo()
        self.cfg, self.task, self.train, self.val = cfg, task, train, val
        self.out = Path(out)
        self.progress = progress
        self.extra = model_checkpoint_extra or {}
        if cfg.batch_size % self.dist.world_size:
            raise ConfigError(
                f"train.batch_size={cfg.batch_size} must be a multiple of the number of "
                f"processes ({self.dist.world_size})"
            )
        self.n_batches = len(train) // cfg.batch_size
        if self.n_batches < 1:
            raise DataError(
                f"the training split has {len(train)} samples, fewer than one batch "
                f"(train.batch_size={cfg.batch_size})"
            )
        self.device = self.dist.device
        self.model = model.to(self.device)
        self.optimizer = build_optimizer(self.model, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg)
        amp = cfg.amp == "bf16" or (cfg.amp == "auto" and self.device.type == "cuda")
        self.amp = amp
        self.step = 0
        self.best: dict[str, Any] = {"value": math.inf, "step": -1}
        self.early: dict[str, Any] = {"bad_evals": 0, "stopped": False}
        # Cumulative over resumed sessions, so a resumed run still reports its throughput.
        self.timing: dict[str, float] = {"train_time_s": 0.0, "samples": 0.0}
        self._perm_cache: tuple[int, np.ndarray] | None = None
        self.net: nn.Module = self.model
        if self.dist.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    # ------------------------------------------------------------------ data order

    def _perm(self, epoch: int) -> np.ndarray:
        if self._perm_cache is None or self._perm_cache[0] != epoch:
            rng = np.random.default_rng([self.cfg.seed, epoch])
            self._perm_cache = (epoch, rng.permutation(len(self.train)))
        return self._perm_cache[1]

    def micro_batch(self, j: int) -> tuple[int, np.ndarray]:
        """(epoch, this rank's sample indices) of global micro-batch j."""
        epoch, o = divmod(j, self.n_batches)
        B, W, r = self.cfg.batch_size, self.dist.world_size, self.dist.rank
        idx = self._perm(epoch)[o * B : (o + 1) * B]
        b = B // W
        return epoch, idx[r * b : (r + 1) * b]

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.device.type == "cuda":
            return {k: v.pin_memory().to(self.device, non_blocking=True) for k, v in batch.items()}
        return batch

    def _autocast(self):
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    # ------------------------------------------------------------------ checkpoints

    @property
    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT_NAME

    def _save_checkpoint(self) -> None:
        rngs = D.all_gather_objects(rng_state(), self.dist)
        if not self.dist.is_main:
            return
        epoch, offset = divmod(self.step * self.cfg.accumulation, self.n_batches)
        state = {
            "format": TRAIN_CHECKPOINT_FORMAT,
            "format_version": TRAIN_CHECKPOINT_VERSION,
            "model": self.model.checkpoint_state(self.extra),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "sampler": {"seed": self.cfg.seed, "epoch": epoch, "offset": offset},
            "best": dict(self.best),
            "early_stopping": dict(self.early),
            "timing": dict(self.timing),
            "rng": rngs,
            "world_size": self.dist.world_size,
            "train_config": asdict(self.cfg),
        }
        torch_save_atomic(state, self.checkpoint_path)

    def _resume(self) -> bool:
        """Load the run folder's checkpoint when there is one; True if resumed."""
        if not self.checkpoint_path.is_file():
            return False
        state = load_train_checkpoint(self.checkpoint_path, map_location=self.device)
        # A field the checkpoint predates compares as its default (the behaviour before it).
        saved_cfg = {**asdict(TrainConfig()), **state["train_config"]}
        now = asdict(self.cfg)
        if saved_cfg != now:
            diff = sorted(k for k in now if saved_cfg.get(k) != now[k])
            raise TrainingError(
                f"{self.checkpoint_path}: written with a different training config "
                f"(fields {diff}); use a new --out folder or the same settings"
            )
        try:
            self.model.load_state_dict(state["model"]["state_dict"], strict=True)
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (RuntimeError, KeyError, ValueError) as e:
            raise TrainingError(f"{self.checkpoint_path}: does not match this model: {e}") from e
        self.step = int(state["step"])
        self.best = dict(state["best"])
        self.early = dict(state["early_stopping"])
        self.timing = dict(state.get("timing", self.timing))
        rngs = state["rng"]
        if len(rngs) == self.dist.world_size:
            set_rng_state(rngs[self.dist.rank])
        else:
            log.warning(
                "checkpoint has RNG states of %d processes, this run has %d: dropout streams "
                "are reseeded, so the resumed run is not bit-identical",
                len(rngs),
                self.dist.world_size,
            )
            torch.manual_seed(self.cfg.seed + 7919 * self.step + self.dist.rank)
        if self.dist.is_main:
            keep = read_history(self.out / HISTORY_NAME, max_step=self.step)
            text = "".join(json.dumps(r) + "\n" for r in keep)
            tmp = self.out / (HISTORY_NAME + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, self.out / HISTORY_NAME)
        log.info("resumed %s at step %d", self.out, self.step)
        return True

    def _save_model(self, name: str, **extra: Any) -> None:
        if self.dist.is_main:
            self.model.save_checkpoint(self.out / name, {**self.extra, **extra})

    def _log(self, rec: dict[str, Any]) -> None:
        if self.dist.is_main:
            with open(self.out / HISTORY_NAME, "a") as f:
                f.write(json.dumps(rec) + "\n")
                f.flush()

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def evaluate(self, data: ArrayData | None = None) -> dict[str, float]:
        """Mean of every loss term over ``data`` (default: validation), fixed eval masks."""
        data = self.val if data is None else data
        self.net.eval()
        sums = torch.zeros(len(self.task.terms), dtype=torch.float64)
        counts = torch.zeros_like(sums)
        mine = np.arange(len(data))[self.dist.rank :: self.dist.world_size]
        for s in range(0, len(mine), self.cfg.eval_batch_size):
            idx = mine[s : s + self.cfg.eval_batch_size]
            items = data.take(idx)
            seeds = self.task.sample_seeds(items, False, self.cfg.seed, 0, idx)
            batch = self._to_device(self.task.prepare(items, seeds, train=False))
            with self._autocast():
                sums += self.task.sums(self.model, batch).double().cpu()
            counts += self.task.counts(batch).cpu()
        tot = D.all_reduce_sum(torch.cat([sums, counts]).to(self.device), self.dist).cpu()
        n = len(sums)
        self.net.train()
        return {
            t: float(tot[i] / tot[n + i]) if tot[n + i] > 0 else math.nan
            for i, t in enumerate(self.task.terms)
        }

    # ------------------------------------------------------------------ the loop

    def _train_step(self) -> dict[str, Any]:
        cfg, W = self.cfg, self.dist.world_size
        batches, epoch = [], 0
        for a in range(cfg.accumulation):
            j = self.step * cfg.accumulation + a
            epoch, idx = self.micro_batch(j)
            items = self.train.take(idx)
            seeds = self.task.sample_seeds(items, True, cfg.seed, epoch, idx)
            batches.append(self._to_device(self.task.prepare(items, seeds, train=True)))
        counts = torch.stack([self.task.counts(b) for b in batches]).sum(0)  # (T,)
        counts = D.all_reduce_sum(counts.to(self.device), self.dist)
        denom = counts.clamp(min=1.0).float()
        sums = torch.zeros(len(self.task.terms), dtype=torch.float64, device=self.device)
        for a, batch in enumerate(batches):
            last = a == len(batches) - 1
            sync = contextlib.nullcontext()
            if self.dist.distributed and not last:
                sync = self.net.no_sync()
            with sync:
                with self._autocast():
                    s = self.task.sums(self.net, batch)  # (T,)
                if self.device.type == "cpu":
                    self._peak_mem = max(self._peak_mem, _cpu_memory()[0])
                loss = (s.float() / denom).sum() * W
                loss.backward()
            sums += s.detach().double()
        sums = D.all_reduce_sum(sums, self.dist)
        per = sums / counts.clamp(min=1.0)
        terms = {t: float(per[i]) for i, t in enumerate(self.task.terms)}
        total = float(sum(terms.values()))
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        gnorm = float(nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))
        if not (math.isfinite(total) and math.isfinite(gnorm)):
            self._log({"kind": "error", "step": self.step + 1, "loss": terms, "grad_norm": gnorm})
            last = self.checkpoint_path if self.checkpoint_path.is_file() else None
            raise TrainingError(
                f"non-finite {'loss' if not math.isfinite(total) else 'gradient norm'} at step "
                f"{self.step + 1} (loss terms {terms}, grad norm {gnorm}); stopped without "
                f"updating. Last good checkpoint: {last or 'none written yet'}"
            )
        lr = self.optimizer.param_groups[0]["lr"] / self.optimizer.param_groups[0]["lr_scale"]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return {"epoch": epoch, "loss": terms, "total": total, "grad_norm": gnorm, "lr": lr}

    def fit(self, resume: bool = True) -> dict[str, Any]:
        """Run (or resume) to ``cfg.steps``; returns the run's training summary.

        Sets this process up for CPU speed (:func:`~spektron.utils.tune_cpu_process`: subnormals
        flushed to zero, freed memory kept for reuse).
        """
        cfg = self.cfg
        tune_cpu_process()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.out.mkdir(parents=True, exist_ok=True)
        resumed = resume and self._resume()
        if not resumed:
            if self.dist.is_main:
                (self.out / HISTORY_NAME).write_text("")
            self._save_model(INIT_NAME, step=0)
        D.barrier(self.dist)
        start = self.step
        eff = cfg.batch_size * cfg.accumulation
        mem0, mem_kind = _cpu_memory() if self.device.type == "cpu" else (0.0, "cuda")
        self._peak_mem = mem0
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        t_start = time.perf_counter()
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            desc=f"train {self.out.name}",
            disable=not (self.progress and self.dist.is_main),
            leave=False,
        )
        self.net.train()
        while self.step < cfg.steps and not self.early["stopped"]:
            t0 = time.perf_counter()
            rec = self._train_step()
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            dt = time.perf_counter() - t0
            self.timing["train_time_s"] += dt
            self.timing["samples"] += eff
            bar.update(1)
            bar.set_postfix(loss=f"{rec['total']:.4g}")
            s = self.step
            final = s == cfg.steps
            if s == 1 or s % cfg.log_every == 0 or final:
                self._log(
                    {"kind": "train", "step": s, **rec, "samples_per_s": eff / dt, "step_s": dt}
                )
            if self.val is not None and (s % cfg.eval_every == 0 or final):
                self._validate()
            if s % cfg.checkpoint_every == 0 or final or self.early["stopped"]:
                self._save_checkpoint()
        bar.close()
        D.barrier(self.dist)
        wall = time.perf_counter() - t_start
        steps_run = self.step - start
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            peak = self._peak_mem - mem0
        return {
            "steps": self.step,
            "steps_this_session": steps_run,
            "resumed_from": start if resumed else None,
            "effective_batch": eff,
            "world_size": self.dist.world_size,
            # Training time and throughput over all sessions of this run (resumes included);
            # wall time and peak memory of this session.
            "train_time_s": self.timing["train_time_s"],
            "samples_per_s": (
                self.timing["samples"] / self.timing["train_time_s"]
                if self.timing["train_time_s"] > 0
                else math.nan
            ),
            "session_wall_time_s": wall,
            "peak_memory_mb": peak,
            "memory_kind": MEMORY_KIND[mem_kind],
            "best_val": self.best["value"],
            "best_step": self.best["step"],
            "stopped_early": bool(self.early["stopped"]),
            "amp": "bf16" if self.amp else "off",
        }

    def _validate(self) -> None:
        val = self.evaluate()
        main = val[self.task.terms[0]]
        improved = main < self.best["value"] - self.cfg.early_stopping_min_delta
        if main < self.best["value"]:
            self.best = {"value": main, "step": self.step}
            self._save_model(BEST_NAME, step=self.step, val=val)
        if self.cfg.early_stopping_patience:
            self.early["bad_evals"] = 0 if improved else self.early["bad_evals"] + 1
            if self.early["bad_evals"] >= self.cfg.early_stopping_patience:
                self.early["stopped"] = True
                log.info("early stop at step %d (best %.4g at %d)", self.step, *self.best.values())
        self._log({"kind": "eval", "step": self.step, "val": val, "best": self.best})
