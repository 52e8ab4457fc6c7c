"""seed_everything, cache folder and atomic JSON writes."""

from __future__ import annotations

import json
import platform
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from spektron.utils import cache_dir, seed_everything, write_json_atomic


def draw():
    return random.random(), np.random.rand(), torch.rand(1).item()  # noqa: NPY002


def test_seed_everything_reproduces_all_generators():
    seed_everything(7)
    a = draw()
    seed_everything(7)
    assert draw() == a
    seed_everything(8)
    assert draw() != a


def test_cache_dir_honours_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SPEKTRON_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()


def test_write_json_atomic(tmp_path):
    p = write_json_atomic(tmp_path / "sub" / "x.json", {"a": np.float64(1.5)})
    assert json.loads(p.read_text()) == {"a": 1.5}
    assert [q.name for q in p.parent.iterdir()] == ["x.json"]


def _regrowth_mb(keep: bool) -> float:
    """Resident growth (MiB) of re-allocating and touching a 32 MiB block just freed."""
    code = (
        "import numpy as np\n"
        "from spektron.utils import keep_freed_memory, rss_mb\n"
        f"assert keep_freed_memory() if {keep} else True\n"
        "a = np.ones(2**23, np.float32); del a\n"
        "base = rss_mb()\n"
        "b = np.ones(2**23, np.float32)\n"
        "print(rss_mb() - base)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc mallopt only")
def test_keep_freed_memory_reuses_large_blocks():
    """glibc unmaps a freed 32 MiB block, so the next one is faulted in anew (the resident set
    grows by its size); after keep_freed_memory the freed block is reused as it is."""
    assert _regrowth_mb(keep=False) > 24.0
    assert _regrowth_mb(keep=True) < 4.0


def test_tune_cpu_process_keeps_glibcs_allocator_when_told(monkeypatch):
    import spektron.utils as U
    from spektron.errors import ConfigError

    calls = []
    monkeypatch.setattr(U, "keep_freed_memory", lambda: calls.append(1) or True)
    monkeypatch.delenv(U.KEEP_FREED_MEMORY_ENV, raising=False)
    U.tune_cpu_process()
    assert calls == [1]  # by default
    monkeypatch.setenv(U.KEEP_FREED_MEMORY_ENV, "0")
    U.tune_cpu_process()
    assert calls == [1]  # left as glibc has it
    monkeypatch.setenv(U.KEEP_FREED_MEMORY_ENV, "maybe")
    with pytest.raises(ConfigError, match="SPEKTRON_KEEP_FREED_MEMORY must be 0 or 1, got 'maybe'"):
        U.tune_cpu_process()
