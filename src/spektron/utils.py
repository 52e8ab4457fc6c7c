"""Small shared helpers: logging set-up, seeding, cache folder, atomic JSON writes."""

from __future__ import annotations

import ctypes
import functools
import json
import logging
import os
import random
import resource
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(verbosity: int = 0) -> None:
    """Configure the root logger once: WARNING (−1), INFO (0) or DEBUG (≥ 1)."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt="%H:%M:%S", force=True)
    # Warnings reach the console as one log line ("WARNING py.warnings: Category: text"),
    # without the source line Python's default format prints under them.
    warnings.formatwarning = _one_line_warning
    logging.captureWarnings(True)
    # RDKit logs through its own channel; keep its per-molecule warnings out of the console.
    try:
        from rdkit import RDLogger

        RDLogger.DisableLog("rdApp.*")
    except ImportError:  # pragma: no cover - rdkit is a hard dependency
        pass


def _one_line_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ARG001
    return f"{category.__name__}: {message}"


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy's legacy global RNG and torch (CPU and CUDA, when imported).

    Prefer explicit ``np.random.default_rng(seed)`` generators in library code; this covers the
    global state that third-party code may use.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the global state is what we seed here
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def cache_dir() -> Path:
    """Cache folder for generated data: ``$SPEKTRON_CACHE`` or ``~/.cache/spektron``."""
    root = os.environ.get("SPEKTRON_CACHE") or os.path.join(Path.home(), ".cache", "spektron")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write text to a temp file in the same folder, then rename (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write JSON to a temp file in the same folder, then rename (never a half-written file)."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def single_threaded_blas() -> threadpool_limits:
    """Context manager limiting BLAS to one thread.

    Per-molecule matrices are tiny (3N ≤ 87) and threaded LAPACK calls on them are several
    times slower (measured 7× on a busy 2-core machine); parallelism comes from processes.
    """
    return threadpool_limits(limits=1, user_api="blas")


def flush_denormals() -> None:
    """Treat subnormal floats as zero in this process's CPU arithmetic (FTZ/DAZ; no effect
    on CUDA, whose kernels are unaffected by subnormal operands).

    Subnormals (|x| < 1.2e-38 in float32) arise in training from GELU of strongly negative
    inputs and from products of small gradients; each one sends BLAS and the vectorised
    elementwise kernels into a microcode slow path. Measured on a 2-core x86 CPU, backbone
    forward + backward at B=8: D-LinOSS at ~1M parameters, L=2048, 1.5 → 3.9 samples/s; at
    the quick size (L=256) 55 → 81, the CNN 149 → 186. Flushing changes only values below the
    float32 normal range, far under any quantity the models resolve. Part of
    :func:`tune_cpu_process`.
    """
    import torch

    torch.set_flush_denormal(True)


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Let glibc serve large blocks from its heap and keep freed memory for reuse (Linux).

    By default glibc maps every block above its mmap threshold (at most 32 MiB) straight from
    the kernel and unmaps it on free, so each new activation tensor of that size is
    page-faulted in and zeroed by the kernel again on every step: the CPU allocator
    caches nothing. ``mallopt(M_MMAP_MAX, 0)`` serves every block from the heap (glibc still
    maps when the heap cannot grow), and a 2 GiB trim threshold keeps freed heap memory
    mapped. The effect is that of the jemalloc/tcmalloc preload often advised for CPU
    training, without a preload. Measured on a 2-core x86 CPU: a fresh 32 MiB tensor copy
    10.3 → 1.5 ms, the same matmul into a fresh (512, 16384) output 29 → 13 ms. Costs: the
    process's resident memory stays near its peak. Returns whether the settings were applied
    (False off glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
        )
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False


# Set to 0 to leave glibc's allocator as it is (see :func:`tune_cpu_process`).
KEEP_FREED_MEMORY_ENV = "SPEKTRON_KEEP_FREED_MEMORY"


def tune_cpu_process() -> None:
    """Process set-up for CPU speed: :func:`flush_denormals` and :func:`keep_freed_memory`.

    Called at every process entry point of the package (the CLI, pool workers,
    :meth:`Trainer.fit`). With ``SPEKTRON_KEEP_FREED_MEMORY=0`` in the environment the
    allocator keeps glibc's defaults: slower steps, but a resident set that follows the live
    memory, for large models on machines short of memory (with Mamba's ``checkpoint: true``
    at B 16, L 2048, ~1M parameters: peak RSS 1.4 GB against 3.5 GB, at 1.6x that setting's
    step time; README, "Measured speed"). Any other value than 0 or 1 is a
    :class:`~spektron.errors.ConfigError`.
    """
    flush_denormals()
    keep = os.environ.get(KEEP_FREED_MEMORY_ENV, "1").strip()
    if keep not in ("0", "1"):
        from spektron.errors import ConfigError

        raise ConfigError(f"{KEEP_FREED_MEMORY_ENV} must be 0 or 1, got {keep!r}")
    if keep == "1":
        keep_freed_memory()


class _MallInfo2(ctypes.Structure):
    # glibc's struct mallinfo2 (malloc.h, glibc >= 2.33): ten size_t fields.
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
        ).split()
    ]


@functools.lru_cache(maxsize=1)
def _mallinfo2() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):  # not glibc, or glibc < 2.33
        return None
    fn.restype = _MallInfo2
    return fn


def heap_in_use_mb() -> float | None:
    """Bytes this process holds in live malloc allocations (MiB): glibc's ``mallinfo2``
    in-use heap (``uordblks``) plus mapped blocks (``hblkhd``), over all arenas; None off
    glibc ≥ 2.33.

    Unlike the resident size it falls when memory is freed, also when the allocator keeps the
    freed pages (:func:`keep_freed_memory`), so a peak of it measures one run's own
    allocations in a process that ran others before. Costs ~0.1–0.6 ms a call (it walks the
    free lists)."""
    fn = _mallinfo2()
    if fn is None:
        return None
    info = fn()
    return (info.uordblks + info.hblkhd) / 2**20


def check_writable(path: str | os.PathLike, kind: str, what: str = "--out") -> None:
    """Raise :class:`~spektron.errors.ConfigError` (one line, naming ``what`` and the reason)
    unless ``path`` can be written as a ``kind`` ("file" or "folder"), without creating it: the
    nearest existing ancestor must be a folder in which a temporary folder can be made, and an
    existing ``path`` must be of that kind."""
    from spektron.errors import ConfigError

    path = Path(path)
    if kind not in ("file", "folder"):
        raise ValueError(f"kind must be 'file' or 'folder', got {kind!r}")
    if path.exists():
        if kind == "folder" and not path.is_dir():
            raise ConfigError(f"{what} {path} exists and is not a folder")
        if kind == "file" and path.is_dir():
            raise ConfigError(f"{what} {path} is a folder; give a file name")
    base = path if kind == "folder" else path.parent
    ancestor = base
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"{what} {path} cannot be created: {ancestor} is not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".spektron-write-test-", dir=ancestor))
    except OSError as e:
        raise ConfigError(
            f"{what} {path} cannot be written: {e.strerror or e} in {ancestor}"
        ) from None


def rss_mb() -> float:
    """This process's current resident memory (MiB), from /proc/self/statm (Linux)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def torch_save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temp file in the same folder, fsync, then rename over ``path``: a
    kill at any moment leaves the old file or the new one, never a torn one."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def lazy_exports(package: str, names: dict[str, str], namespace: dict[str, Any]) -> tuple[Any, Any]:
    """``(__getattr__, __dir__)`` for a package that re-exports ``names`` (public name → the
    module defining it, relative to ``package``, or absolute when it starts with ``spektron.``)
    and imports each module only on first use,
    so ``import spektron.data.store`` does not import the whole of ``spektron.data``.
    ``namespace`` is the package's ``globals()``: a name once imported is kept there, and
    ``dir()`` lists it beside the package's own attributes."""
    import importlib

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        path = module if module.startswith("spektron.") else f"{package}.{module}"
        value = getattr(importlib.import_module(path), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
