"""Resume checkpoints: everything needed to continue a run bit-exactly (docs/DESIGN.md §4).

A training checkpoint holds the model checkpoint (config + weights, as
:meth:`Spektron.checkpoint_state`), the optimizer and scheduler states, the step, the sampler
position, the early-stopping and best-validation state, cumulative training time, and every
rank's RNG states as plain dicts of tensors, ints and lists, so the file
loads with ``torch.load(weights_only=True)`` (NumPy's state is stored through
``bit_generator.state`` with the key array as a list, never as the legacy tuple with an
ndarray). It is written atomically (temp file in the same folder, fsync, ``os.replace``), so a
kill at any moment leaves either the previous checkpoint or the new one.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spektron.errors import CheckpointError

TRAIN_CHECKPOINT_FORMAT = "spektron-train"
TRAIN_CHECKPOINT_VERSION = 1


def rng_state() -> dict[str, Any]:
    """This process's RNG states (torch CPU, CUDA devices, NumPy global, Python), loadable."""
    np_state = np.random.get_state(legacy=False)  # noqa: NPY002 - saving the global state
    np_state = {
        "bit_generator": np_state["bit_generator"],
        "state": {"key": np_state["state"]["key"].tolist(), "pos": int(np_state["state"]["pos"])},
        "has_gauss": int(np_state["has_gauss"]),
        "gauss": float(np_state["gauss"]),
    }
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np_state,
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    s = state["numpy"]
    np.random.set_state(  # noqa: NPY002 - restoring the global state
        {
            "bit_generator": s["bit_generator"],
            "state": {
                "key": np.asarray(s["state"]["key"], dtype=np.uint32),
                "pos": s["state"]["pos"],
            },
            "has_gauss": s["has_gauss"],
            "gauss": s["gauss"],
        }
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def load_train_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read and validate a training checkpoint (``weights_only=True``: no code is unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated, foreign or unsafe files raise many types
        raise CheckpointError(
            f"{path}: cannot read checkpoint ({type(e).__name__}: {str(e).splitlines()[0]})"
        ) from e
    if not isinstance(state, dict) or state.get("format") != TRAIN_CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a Spektron training checkpoint")
    if state.get("format_version") != TRAIN_CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: training checkpoint version {state.get('format_version')!r} is not "
            f"supported (this package writes {TRAIN_CHECKPOINT_VERSION})"
        )
    need = ("model", "optimizer", "scheduler", "step", "sampler", "rng", "train_config")
    missing = [k for k in need if k not in state]
    if missing:
        raise CheckpointError(f"{path}: training checkpoint lacks {missing}")
    return state
