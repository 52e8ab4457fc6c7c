"""Figure helpers shared by every report: a headless pyplot and one way to save a figure.

Every figure is written as PNG (for reading) and PDF (for papers) at ``FIG_DPI``, and closed, so
long report runs do not keep figures alive.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

FIG_DPI = 130
# pyplot's figure registry is not thread-safe: experiments running side by side in one process
# (``run-all`` on the CPU) build their reports under this lock.
FIGURE_LOCK = threading.RLock()


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path_stem: Path, dpi: int = FIG_DPI) -> list[Path]:
    """Write ``fig`` to ``path_stem`` + ``.png`` and ``.pdf``, close it, return the two paths."""
    plt = pyplot()
    out = []
    for ext in ("png", "pdf"):
        p = path_stem.with_suffix(f".{ext}")
        fig.savefig(p, dpi=dpi)
        out.append(p)
    plt.close(fig)
    return out


def figure_title(fig: Any, text: str, fontsize: float = 9) -> Any:
    """``fig.suptitle`` with every line of ``text`` wrapped to the figure's width (a long data
    label would otherwise run off both edges)."""
    import textwrap

    # An average character of the default sans-serif font is ~0.55 em wide; 0.6 leaves a margin.
    width = max(20, int(fig.get_figwidth() * 72 / (0.6 * fontsize)))
    lines = [textwrap.fill(line, width) for line in text.splitlines()]
    return fig.suptitle("\n".join(lines), fontsize=fontsize)
