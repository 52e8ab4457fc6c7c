"""The validation of the simulation levels against the DFT reference, as files: the figure
(every level over the reference for the largest molecules), the Markdown table and the JSON
report of :func:`spektron.data.validate.validate`. Used by ``spektron data validate`` and the
data stage of ``run-all``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from spektron.chemistry.spectra import make_grid
from spektron.data.validate import REFERENCE_DIR, broaden_sticks, format_report, load_reference
from spektron.plotting import pyplot, save_figure
from spektron.utils import write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

VALIDATION_FIG_DPI = 120


def plot_validation(
    rep: dict[str, Any],
    path: str | Path,
    reference: str | Path = REFERENCE_DIR,
    n_molecules: int = 4,
) -> list[Path]:
    """IR and Raman of the reference (black, frequencies scaled as in the report) and of every
    level, for the ``n_molecules`` largest molecules that every level simulated; max-normalised.
    Writes ``path`` as PNG and PDF and returns their paths ([] when no molecule qualifies)."""
    plt = pyplot()
    conv = rep["conventions"]
    gc = conv["grid"]
    g = make_grid(gc["n_points"], gc["lo"], gc["hi"])
    common = rep["common"]["qm9_indices"]
    rows = {
        lv: {r["qm9_index"]: r for r in v["molecules"] if "sticks" in r}
        for lv, v in rep["levels"].items()
    }
    refs, _ = load_reference(reference, common) if common else ([], {})
    refs = sorted(refs, key=lambda r: (-len(r.elements), r.qm9_index))[:n_molecules]
    if not refs:
        log.warning("validation figure skipped: no molecule was simulated at every level")
        return []
    fig, axes = plt.subplots(len(refs), 2, figsize=(12, 2.0 * len(refs) + 0.8), squeeze=False)
    palette = {"mmff": "tab:orange", "mmff-hybrid": "tab:purple", "xtb": "tab:green"}
    colors = {lv: palette.get(lv, "tab:blue") for lv in rep["levels"]}
    scale = conv["ref_freq_scale"]

    def norm(y: np.ndarray) -> np.ndarray:
        return y / max(float(np.abs(y).max()), 1e-30)

    for (ax_ir, ax_ra), ref in zip(axes, refs, strict=True):
        for ax, kind, fwhm, r_int, key in (
            (ax_ir, "IR", conv["ir_fwhm_cm"], ref.ir, "ir_km_mol"),
            (ax_ra, "Raman", conv["raman_fwhm_cm"], ref.raman, "raman_A4_amu"),
        ):
            ax.fill_between(
                g, 0, norm(broaden_sticks(ref.freqs * scale, r_int, g, fwhm)), color="0.75"
            )
            for lv, by_idx in rows.items():
                st = by_idx[ref.qm9_index]["sticks"]
                y = norm(broaden_sticks(np.array(st["freq_cm"]), np.array(st[key]), g, fwhm))
                ax.plot(g, y, lw=0.9, color=colors.get(lv), label=lv)
            ax.set_title(f"QM9 {ref.qm9_index} {ref.smiles} — {kind}", fontsize=9, loc="left")
            ax.set_xlim(g[0], g[-1])
            ax.set_yticks([])
    axes[0, 0].legend(fontsize=7, ncol=2, loc="upper left")
    for ax in axes[-1]:
        ax.set_xlabel("wavenumber (cm$^{-1}$)")
    fig.suptitle(
        f"SIMULATED levels (lines) vs the {rep['reference'].get('level')} reference (grey, "
        f"frequencies x {scale:g}); max-normalised",
        fontsize=10,
    )
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, Path(path), dpi=VALIDATION_FIG_DPI)


def write_validation(
    rep: dict[str, Any],
    json_path: str | Path,
    figure_path: str | Path,
    reference: str | Path = REFERENCE_DIR,
) -> list[Path]:
    """Write the figure (``figure_path`` .png/.pdf), the Markdown table (``json_path`` with
    suffix .md) and the report JSON, the JSON last; returns every path written."""
    json_path = Path(json_path)
    md = json_path.with_suffix(".md")
    figs = plot_validation(rep, figure_path, reference=reference)
    write_text_atomic(md, format_report(rep) + "\n")
    write_json_atomic(json_path, rep)
    return [json_path, md, *figs]
