"""The data stage of ``run-all``: build (or reuse) the default dataset, summarise it, plot pairs.

Everything here is on SIMULATED spectra (see ``spektron.data.generate.SIMULATED_LABEL``), and
the figure and summary say so.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from spektron.chemistry.spectra import make_grid, normalize_spectra
from spektron.config import RunConfig, to_dict
from spektron.data.generate import data_label, ensure_dataset
from spektron.data.store import SpectralStore, open_store
from spektron.plotting import figure_title, pyplot, save_figure
from spektron.utils import write_json_atomic

log = logging.getLogger(__name__)


def pick_pairs(store: SpectralStore, n: int, seed: int = 0) -> list[int]:
    """Rows with both spectra: a centrosymmetric one first when present, then a seeded sample."""
    both = np.flatnonzero(store.column("has_ir") & store.column("has_raman"))
    if len(both) == 0:
        return []
    cs = both[store.column("centrosymmetric")[both] == 1]
    rng = np.random.default_rng(seed)
    chosen = [int(cs[0])] if len(cs) else []
    rest = [int(i) for i in rng.permutation(both) if int(i) not in chosen]
    return (chosen + rest)[:n]


def plot_pairs(store: SpectralStore, rows: list[int], path_stem: Path, title: str) -> list[Path]:
    """IR above, Raman below (each max-normalised) for each row; writes PNG and PDF."""
    plt = pyplot()
    wn = store.wavenumber
    fig, axes = plt.subplots(
        len(rows), 1, figsize=(9, 2.1 * len(rows) + 0.6), sharex=True, squeeze=False
    )
    for ax, i in zip(axes[:, 0], rows, strict=True):
        rec = store.record(i)
        ir = normalize_spectra(rec.ir, "max")
        ra = normalize_spectra(rec.raman, "max")
        ax.fill_between(wn, 0, ir, color="tab:red", alpha=0.75, lw=0, label="IR")
        ax.fill_between(wn, 0, -ra, color="tab:blue", alpha=0.75, lw=0, label="Raman (activity)")
        ax.axhline(0, color="k", lw=0.5)
        cs = {1: "centrosymmetric", 0: "", -1: "symmetry unknown"}[rec.centrosymmetric]
        label = f"{rec.smiles}   {rec.point_group or ''} {cs}".strip()
        ax.set_title(label, fontsize=9, loc="left")
        ax.set_ylim(-1.1, 1.1)
        ax.set_yticks([-1, 0, 1], ["1", "0", "1"])
    # One legend below the panels (inside the first it could cover a band).
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="lower center", fontsize=8, ncol=2)
    axes[-1, 0].set_xlabel("wavenumber (cm$^{-1}$)")
    axes[-1, 0].set_xlim(wn[0], wn[-1])
    fig.supylabel("max-normalised intensity (IR up, Raman activity down)", fontsize=9)
    figure_title(fig, title, fontsize=10)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return save_figure(fig, path_stem)


def _figure_title(label: str) -> str:
    """The dataset label as a figure title ('SIMULATED spectra (...) of ...; not ...')."""
    return label.replace("SIMULATED spectra", "SIMULATED IR / Raman pairs", 1).replace(
        " of ", "\nof ", 1
    )


def run_validation(cfg: RunConfig, out: Path, progress: bool = True) -> dict[str, Any]:
    """Score ``cfg.validate_levels`` against the DFT reference set; writes ``validation.json``
    and ``validation.md`` under ``out`` and returns the per-level means."""
    from spektron.data.validate import validate
    from spektron.experiments.validation_report import write_validation

    rep = validate(
        levels=cfg.validate_levels,
        only=cfg.validate_only,
        physics=cfg.data.physics,
        grid=cfg.data.grid,
        progress=progress,
    )
    paths = write_validation(rep, out / "validation.json", out / "figures" / "validation")
    return {
        "dataset_level": cfg.data.physics.level,
        "reference": rep["reference"]["level"],
        "n_reference_molecules": rep["reference"]["n_molecules"],
        "ref_freq_scale": rep["conventions"]["ref_freq_scale"],
        "means": {
            lv: {k: (v["mean"] if v else None) for k, v in r["summary"].items()}
            for lv, r in rep["levels"].items()
        },
        "files": [str(p) for p in paths],
    }


def run_data_overview(cfg: RunConfig, out: Path, progress: bool = True) -> dict[str, Any]:
    """Ensure the dataset, write its summary (JSON) and a pairs figure under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    path, report = ensure_dataset(cfg.data, workers=cfg.workers, progress=progress)
    grid = make_grid(cfg.data.grid.n_points, cfg.data.grid.lo, cfg.data.grid.hi)
    with open_store(path, expected_grid=grid) as store:
        summary = store.summary()
        summary["label"] = data_label(cfg.data)
        if report is not None:
            summary["generation"] = report.to_dict(max_failures=20)
        rows = pick_pairs(store, cfg.n_figure_pairs, cfg.seed)
        fig_dir = out / "figures"
        fig_dir.mkdir(exist_ok=True)
        figs = plot_pairs(
            store,
            rows,
            fig_dir / "ir_raman_pairs",
            _figure_title(summary["label"]),
        )
    summary["figures"] = [str(p) for p in figs]
    if cfg.validate_levels:
        summary["validation"] = run_validation(cfg, out, progress=progress)
    write_json_atomic(out / "data_summary.json", summary)
    write_json_atomic(out / "config.json", to_dict(cfg))
    return summary
