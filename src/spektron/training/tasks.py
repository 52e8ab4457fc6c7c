"""Training objectives as tasks the trainer can run: each turns a batch into loss *sums* and the
counts that normalise them, so the trainer can divide by global counts (across DDP ranks and
accumulation micro-steps) and a multi-process run equals a single-process one.

Masked spectral reconstruction (MSRP): a mask m (1 = hidden) is drawn per spectrum; the model
sees x ⊙ (1 − m) and the mask indicator, never a masked value (masked positions are zeroed here,
before the embedding, which zeroes them again and flags them); the main term is the masked SSE
Σ m (x̂ − x)², normalised by Σ m. Training masks come from a generator seeded by
(seed, epoch, sample index); validation/test masks by (eval_mask_seed, store row, kind), so they
are the same for every run, seed and backbone. An optional physics term (non-negativity +
smoothness of x̂, :func:`spektron.losses.physics_penalty`) is normalised per spectrum and is
never part of the reported reconstruction metric.
"""

from __future__ import annotations

import numpy as np
import torch

from spektron.data.masking import make_mask
from spektron.losses import masked_mse_sum, physics_penalty
from spektron.training.config import MSRPConfig


def derive_seeds(*keys: int | np.ndarray) -> np.ndarray:
    """One 63-bit seed per element: SeedSequence over the (broadcast) integer keys."""
    cols = np.broadcast_arrays(*[np.asarray(k, dtype=np.int64) for k in keys])
    flat = [c.reshape(-1) for c in cols]
    out = np.empty(len(flat[0]), dtype=np.int64)
    for i in range(len(out)):
        ss = np.random.SeedSequence([int(c[i]) & 0xFFFFFFFFFFFFFFFF for c in flat])
        out[i] = int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
    return out


class MaskedReconstruction:
    """MSRP over :class:`~spektron.training.data.ArrayData` of ``x`` (N, L), ``row``, ``kind``."""

    def __init__(self, cfg: MSRPConfig, wavenumber: np.ndarray) -> None:
        self.cfg = cfg
        self.wavenumber = torch.as_tensor(np.asarray(wavenumber, dtype=np.float32))  # (L,)
        self.terms = ("recon", "physics") if self.use_physics else ("recon",)
        self._gen = torch.Generator()

    @property
    def use_physics(self) -> bool:
        return self.cfg.physics_nonneg > 0 or self.cfg.physics_smooth > 0

    def sample_seeds(
        self, items: dict[str, torch.Tensor], train: bool, seed: int, epoch: int, index: np.ndarray
    ) -> np.ndarray:
        if train:
            return derive_seeds(seed, epoch, index)
        return derive_seeds(self.cfg.eval_mask_seed, items["row"].numpy(), items["kind"].numpy())

    def masks(self, x: torch.Tensor, seeds: np.ndarray, train: bool) -> torch.Tensor:
        """(B, L) bool masks, one seeded generator draw per spectrum."""
        rows = []
        for i, s in enumerate(seeds):
            self._gen.manual_seed(int(s))
            rows.append(make_mask(self.cfg.mask, x[i : i + 1], self._gen, train))
        return torch.cat(rows)  # (B, L)

    def prepare(
        self, items: dict[str, torch.Tensor], seeds: np.ndarray, train: bool
    ) -> dict[str, torch.Tensor]:
        x = items["x"].float()  # (B, L)
        mask = self.masks(x, seeds, train)  # (B, L)
        return {"x": x, "mask": mask}

    def counts(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Normaliser of each term: masked points (recon), spectra (physics). float64 (T,)."""
        c = [batch["mask"].sum().double()]
        if self.use_physics:
            c.append(torch.tensor(float(len(batch["x"])), dtype=torch.float64))
        return torch.stack(c)

    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Reconstruction x̂ (B, L); the input carries no masked value."""
        x, mask = batch["x"], batch["mask"]
        visible = x.masked_fill(mask, 0.0)  # (B, L)
        wn = self.wavenumber.to(x.device)
        return model(visible, wn, mask)["pred"]  # (B, L)

    def sums(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Loss sums of each term, (T,) in float32 (differentiable)."""
        pred = self.forward(model, batch).float()  # (B, L)
        s, _ = masked_mse_sum(pred, batch["x"], batch["mask"])
        out = [s]
        if self.use_physics:
            p = physics_penalty(pred, self.cfg.physics_nonneg, self.cfg.physics_smooth)
            out.append(p * len(pred))
        return torch.stack(out)


class _WholeSpectrumTask:
    """Supervised objective on whole spectra: the model sees ``x`` (B, L) with no mask; the loss
    is the squared error summed over every element of the target ``y``, normalised by its
    element count. Nothing is random."""

    terms = ("mse",)

    def __init__(self, wavenumber: np.ndarray) -> None:
        self.wavenumber = torch.as_tensor(np.asarray(wavenumber, dtype=np.float32))  # (L,)

    def sample_seeds(
        self, items: dict[str, torch.Tensor], train: bool, seed: int, epoch: int, index: np.ndarray
    ) -> np.ndarray:
        return np.zeros(len(index), dtype=np.int64)  # nothing to draw

    def prepare(
        self, items: dict[str, torch.Tensor], seeds: np.ndarray, train: bool
    ) -> dict[str, torch.Tensor]:
        return {"x": items["x"].float(), "y": items["y"].float()}

    def counts(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.tensor([float(batch["y"].numel())], dtype=torch.float64)

    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model's main output for the batch (shaped like ``y``)."""
        wn = self.wavenumber.to(batch["x"].device)
        return model(batch["x"], wn, None)["pred"]

    def sums(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        pred = self.forward(model, batch).float()
        return ((pred - batch["y"]) ** 2).sum().reshape(1)


class CrossSpectralPrediction(_WholeSpectrumTask):
    """Sequence-to-sequence prediction of one spectrum kind from another (E2: Raman from IR and
    IR from Raman), over :class:`~spektron.training.data.ArrayData` of ``x`` (N, L) inputs,
    ``y`` (N, L) targets and ``row``.

    The model sees the whole input spectrum (no mask); the loss is the squared error over every
    grid point, Σ (ŷ − y)², normalised by the number of points B·L. Nothing is random, so the
    validation loss is the same for every run that sees the same data.
    """


class ScalarRegression(_WholeSpectrumTask):
    """Regression of scalar properties from whole spectra (E4: NIR calibration), over
    :class:`~spektron.training.data.ArrayData` of ``x`` (N, L) inputs and ``y`` (N, T) targets
    (standardised by the caller).

    The model sees the whole spectrum (no mask); the loss is the squared error summed over
    samples and targets, normalised by their number B·T. Nothing is random.
    """
