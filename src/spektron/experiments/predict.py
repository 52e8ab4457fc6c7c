"""``spektron predict``: a trained cross-spectral model (IR → Raman or Raman → IR) applied to
users' own spectra.

For each input spectrum: read it (:mod:`spektron.data.spectrum_files`), resample it onto the
model grid by linear interpolation (0 outside the input's range, with a warning), normalise it
with the checkpoint's rule, predict in eval mode, and rescale the prediction to max |y| = 1.

Raman activity → intensity. The models predict Raman *activity* spectra S(ν) (as the simulated
training data hold). For a laser at λ₀ (ν₀ = 10⁷/λ₀ cm⁻¹, λ₀ in nm) and temperature T, the
Stokes intensity of a band at shift ν is (Long, "The Raman Effect", Wiley 2002; Polavarapu,
J. Phys. Chem. 94 (1990) 8106)

    I(ν) ∝ (ν₀ − ν)⁴ / ν · 1 / (1 − exp(−h c ν / k T)) · S(ν),

the formula used for QM9S-style simulated Raman spectra. Here it is applied pointwise to the
*broadened* predicted activity spectrum, which is exact for sticks and an approximation for a
broadened spectrum: good while bands are narrower than the scale on which the factor varies
(it changes by a few % over a 20 cm⁻¹ band above ~500 cm⁻¹, much faster near ν → 0).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import re
import tempfile
import textwrap
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spektron.chemistry.spectra import (
    NORMALIZATIONS,
    make_grid,
    normalize_spectra,
    raman_activity_to_intensity,
)
from spektron.data.spectrum_files import UserSpectrum, read_spectrum_file
from spektron.errors import CheckpointError, ConfigError, DataError
from spektron.utils import write_json_atomic

log = logging.getLogger(__name__)

KINDS = ("ir", "raman")
# An input covering less of the model grid than this is refused: the model would mostly see
# the zeros filled in outside the input's range.
MIN_COVERAGE = 0.10
# Input spacing this many times coarser (or finer) than the grid gets a note.
SPACING_NOTE_FACTOR = 4.0
# A gap this many times the median input spacing is a hole (bridged by a straight line).
GAP_FACTOR = 10.0
# Input values below −this × max|value| get a note (the training spectra are non-negative).
NEGATIVE_INPUT_NOTE = 0.05
BATCH = 64
FIG_DPI = 120
PREDICTIONS_CSV = "predictions.csv"
INTENSITY_CSV = "predictions_intensity.csv"
REPORT_JSON = "predict.json"
OUTPUT_SCALING = "each predicted spectrum divided by its max |value| (arbitrary units)"


class CoverageWarning(UserWarning):
    """An input spectrum does not cover the whole model grid (zeros were filled in)."""


@dataclass
class Coverage:
    """How an input spectrum maps onto the model grid (ranges in cm⁻¹)."""

    fraction: float  # of grid points inside the input's range
    input_range: tuple[float, float]
    uncovered: list[tuple[float, float]]  # grid ranges filled with 0
    input_spacing: float  # median
    grid_spacing: float
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# A refused input's x axis read as a wavelength must cover this much of the grid for the hint
# (a NIR file in cm⁻¹, 5000–9000, read as nm would cover a quarter: no hint there).
WAVELENGTH_HINT_COVERAGE = 0.5
# x-axis units a spectrum file may be in instead of cm⁻¹: (unit, ν̃·λ in cm⁻¹·unit, as text).
WAVELENGTH_UNITS = (("µm", 1e4, "10⁴"), ("nm", 1e7, "10⁷"))


def _unit_hint(x: np.ndarray, grid: np.ndarray) -> str:
    """'; the x values look like …' when ``x`` read as a wavelength in µm or nm would cover
    the model grid (ν̃ = 10⁴/λ[µm] = 10⁷/λ[nm]), else ''."""
    if x[0] <= 0:
        return ""
    for unit, factor, text in WAVELENGTH_UNITS:
        lo, hi = factor / x[-1], factor / x[0]
        overlap = max(0.0, min(hi, grid[-1]) - max(lo, grid[0])) / (grid[-1] - grid[0])
        if overlap >= WAVELENGTH_HINT_COVERAGE:
            return (
                f"; the x values look like wavelengths in {unit} ({x[0]:.4g}–{x[-1]:.4g} {unit} "
                f"= {lo:.0f}–{hi:.0f} cm⁻¹): give the x axis in cm⁻¹, ν̃ = {text} / λ[{unit}]"
            )
    return ""


def resample_to_grid(user: UserSpectrum, grid: np.ndarray) -> tuple[np.ndarray, Coverage]:
    """Linear interpolation of ``user`` onto ``grid`` (L,), 0 outside the input's range.

    Returns (values (L,) float64, coverage). Warns (:class:`CoverageWarning`) when part of the
    grid is not covered; raises :class:`DataError` when less than :data:`MIN_COVERAGE` is.
    """
    x, y = user.wavenumber, user.values
    name = f"{user.source}: spectrum {user.name!r}"
    inside = (grid >= x[0]) & (grid <= x[-1])  # (L,)
    frac = float(inside.mean())
    span = f"input {x[0]:.1f}–{x[-1]:.1f} cm⁻¹, model grid {grid[0]:.1f}–{grid[-1]:.1f} cm⁻¹"
    if frac < MIN_COVERAGE:
        raise DataError(
            f"{name} covers {100 * frac:.1f} % of the model grid ({span}); at least "
            f"{100 * MIN_COVERAGE:.0f} % is needed{_unit_hint(x, grid)}"
        )
    values = np.where(inside, np.interp(grid, x, y), 0.0)  # (L,)
    uncovered = []
    if not inside[0]:
        uncovered.append((float(grid[0]), float(grid[np.argmax(inside) - 1])))
    if not inside[-1]:
        last = len(grid) - 1 - int(np.argmax(inside[::-1]))
        uncovered.append((float(grid[last + 1]), float(grid[-1])))
    dx = np.diff(x)
    cov = Coverage(
        fraction=frac,
        input_range=(float(x[0]), float(x[-1])),
        uncovered=uncovered,
        input_spacing=float(np.median(dx)),
        grid_spacing=float(grid[1] - grid[0]),
    )
    if uncovered:
        ranges = ", ".join(f"{lo:.1f}–{hi:.1f}" for lo, hi in uncovered)
        msg = (
            f"{name} covers {100 * frac:.1f} % of the model grid ({span}); "
            f"set to 0 in {ranges} cm⁻¹"
        )
        cov.warnings.append(msg)
        warnings.warn(msg, CoverageWarning, stacklevel=2)
    ratio = cov.input_spacing / cov.grid_spacing
    if ratio > SPACING_NOTE_FACTOR:
        cov.notes.append(
            f"input sampled every {cov.input_spacing:.3g} cm⁻¹, {ratio:.1f}× coarser than the "
            f"grid ({cov.grid_spacing:.3g} cm⁻¹): interpolation cannot restore narrower bands"
        )
    elif ratio < 1 / SPACING_NOTE_FACTOR:
        cov.notes.append(
            f"input sampled every {cov.input_spacing:.3g} cm⁻¹, {1 / ratio:.1f}× finer than the "
            f"grid: point-sampled by interpolation (no averaging)"
        )
    gaps = np.flatnonzero(dx > GAP_FACTOR * cov.input_spacing)
    for i in gaps:
        cov.notes.append(f"gap in the input at {x[i]:.1f}–{x[i + 1]:.1f} cm⁻¹ bridged linearly")
    return values, cov


def check_laser(
    laser_nm: float | None, temperature_k: float | None, max_shift: float
) -> tuple[float, float] | None:
    """Validated (λ₀ nm, T K), or None when neither is given; both or neither are required."""
    if laser_nm is None and temperature_k is None:
        return None
    if laser_nm is None or temperature_k is None:
        given, missing = (
            ("--laser-nm", "--temperature")
            if temperature_k is None
            else ("--temperature", "--laser-nm")
        )
        raise ConfigError(
            f"--laser-nm and --temperature go together (Raman intensity needs both); {given} "
            f"was given without {missing}"
        )
    if not (np.isfinite(laser_nm) and laser_nm > 0):
        raise ConfigError(f"--laser-nm must be a positive wavelength in nm, got {laser_nm}")
    if not (np.isfinite(temperature_k) and temperature_k > 0):
        raise ConfigError(f"--temperature must be > 0 K, got {temperature_k}")
    nu0 = 1e7 / laser_nm
    if nu0 <= max_shift:
        raise ConfigError(
            f"a {laser_nm:g} nm laser (ν₀ = {nu0:.0f} cm⁻¹) cannot produce Stokes shifts up to "
            f"{max_shift:.0f} cm⁻¹ (the model grid's end); use a shorter wavelength"
        )
    return float(laser_nm), float(temperature_k)


def activity_to_intensity(
    shift: np.ndarray, activity: np.ndarray, laser_nm: float, temperature_k: float
) -> np.ndarray:
    """Raman activity spectrum (..., L) on ``shift`` (L,) cm⁻¹ → intensity, max 1 per spectrum.

    Negative activity is clipped to 0 first (the factor is positive; a negative intensity has no
    meaning). Pointwise application to a broadened spectrum is an approximation (module
    docstring). Shifts ≤ 0 or ≥ ν₀ get 0.
    """
    check_laser(laser_nm, temperature_k, float(np.max(shift)))
    act = np.clip(np.asarray(activity, dtype=np.float64), 0.0, None)
    out = raman_activity_to_intensity(
        np.broadcast_to(shift, act.shape), act, 1e7 / laser_nm, temperature_k
    )
    return normalize_spectra(out, "max")


def read_contract(state: dict[str, Any], checkpoint: Path, source: str, target: str) -> dict:
    """The cross-spectral contract in the checkpoint's ``extra`` (written by the E2 trainer),
    checked against the requested direction; returns it with ``grid`` as an array."""
    extra = state.get("extra")
    extra = extra if isinstance(extra, dict) else {}
    task = extra.get("task")
    if task != "cross_spectral" or state["config"].get("head") != "cross_spectral":
        raise CheckpointError(
            f"{checkpoint}: task {task!r} with head {state['config'].get('head')!r}; predict "
            "needs a cross-spectral model (task 'cross_spectral', from E2)"
        )
    have = (extra.get("source_kind"), extra.get("target_kind"))
    if have != (source, target):
        raise CheckpointError(
            f"{checkpoint}: the model predicts {have[0]} → {have[1]}, but --from {source} "
            f"--to {target} was asked"
        )
    rule = extra.get("normalization")
    if rule not in NORMALIZATIONS:
        raise CheckpointError(
            f"{checkpoint}: extra['normalization'] = {rule!r} is not one of {NORMALIZATIONS}"
        )
    g = extra.get("grid")
    try:
        grid = make_grid(int(g["n_points"]), float(g["lo"]), float(g["hi"]))
    except (TypeError, KeyError, ValueError, ConfigError) as e:
        raise CheckpointError(f"{checkpoint}: extra['grid'] = {g!r} is invalid ({e})") from e
    label = extra.get("data_label") or "training data not labelled in the checkpoint"
    scale = []
    if extra.get("preset") == "smoke":
        scale.append(
            f"{checkpoint}: a smoke-preset model ({extra.get('train_steps', '?')} training "
            "steps, a test of the pipeline): its predictions are not meaningful; use a quick "
            "or paper run's checkpoint"
        )
    return {
        "normalization": rule,
        "grid": grid,
        "grid_spec": dict(g),
        "data_label": str(label),
        "preset": extra.get("preset"),
        "warnings": scale,
    }


def select_checkpoint(
    run: str | os.PathLike, source: str, target: str, arm: str | None = None
) -> dict[str, Any]:
    """The checkpoint of a finished E2 output folder for ``source`` → ``target``: of the
    direction's arms (or those matching ``arm``: a backbone, ``init/backbone`` or the full key)
    the one with the lowest mean validation MSE over seeds, and of its seeds the one with the
    lowest validation MSE (test data enter no choice). Returns {"checkpoint": Path, "arm",
    "val_mse", "n_candidates", "selected_by"}."""
    from spektron.experiments.e2.results import SEED_SELECTED_BY, SELECTED_BY, arm_ranking

    run = Path(run)
    path = run / "summary.json"
    if not path.is_file():
        raise DataError(
            f"{run}: no summary.json (not a finished E2 output folder; run `spektron e2 --out "
            f"{run}` first, or give --checkpoint)"
        )
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: unreadable ({e})") from e
    models = summary.get("models") if isinstance(summary, dict) else None
    if summary.get("experiment") != "e2" or not isinstance(models, dict):
        raise DataError(f"{path}: not an E2 summary (no 'models' of experiment 'e2')")
    dname = f"{source}_to_{target}"
    ranked = arm_ranking(models, dname)
    if not ranked:
        have = sorted({str(m.get("direction")) for m in models.values()})
        raise DataError(f"{run}: no {dname} arm in this E2 run (it has {', '.join(have)})")
    if arm is not None:
        want = arm.strip("/")
        matches = [k for k in ranked if k == f"{dname}/{want}" or k.endswith(f"/{want}")]
        if not matches:
            opts = ", ".join(k.split("/", 1)[1] for k in ranked)
            raise ConfigError(f"--arm {arm!r} matches no {dname} arm of {run}; choose from {opts}")
        ranked = matches
    key = ranked[0]
    entry = models[key]
    rel = entry.get("best_checkpoint")
    if not isinstance(rel, str):
        raise DataError(
            f"{path}: arm {key} names no checkpoint (a summary from an older version); rerun "
            f"`spektron e2 --out {run}` (finished runs are reused) or give --checkpoint"
        )
    ckpt = run / rel
    if not ckpt.is_file():
        raise DataError(f"{run}: the checkpoint of arm {key}, {rel}, is missing")
    return {
        "checkpoint": ckpt,
        "arm": key,
        "val_mse": entry["val_mse"]["mean"],
        "n_candidates": len(ranked),
        "selected_by": f"{SELECTED_BY}; {SEED_SELECTED_BY}",
    }


def _safe_name(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._") or "spectrum"


def _unique(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for s in labels:
        seen[s] = seen.get(s, 0) + 1
        out.append(s if seen[s] == 1 else f"{s}#{seen[s]}")
    return out


def _write_csv_atomic(path: Path, header: list[str], columns: np.ndarray) -> Path:
    """``columns`` (L, 1 + N): wavenumber then one column per spectrum; temp file + rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            for row in columns:
                w.writerow([f"{row[0]:.6f}", *(f"{v:.8g}" for v in row[1:])])
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _plot(
    path: Path,
    title: str,
    grid: np.ndarray,
    model_input: np.ndarray,
    cov: Coverage,
    pred: np.ndarray,
    intensity: np.ndarray | None,
    source: str,
    target: str,
    laser: tuple[float, float] | None,
) -> Path:
    """Input (what the model saw) above, prediction below; written atomically as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, 5.5), layout="constrained")
    FigureCanvasAgg(fig)  # Agg without touching pyplot's global backend
    ax_in, ax_out = fig.subplots(2, 1, sharex=True)
    ax_in.plot(grid, model_input, color="k", lw=0.9, label=f"input {source.upper()} (model input)")
    for k, (lo, hi) in enumerate(cov.uncovered):
        label = "not covered (set to 0)" if k == 0 else None
        ax_in.axvspan(lo, hi, color="0.85", lw=0, zorder=0, label=label)
    ax_in.set_ylabel("normalised")
    ax_in.legend(fontsize=7, loc="best", frameon=False)
    what = "activity-like" if target == "raman" else "absorbance-like"
    ax_out.plot(grid, pred, color="C0", lw=0.9, label=f"predicted {target.upper()} ({what})")
    if intensity is not None and laser is not None:
        ax_out.plot(
            grid,
            intensity,
            color="C3",
            lw=0.9,
            ls="--",
            label=f"predicted intensity ({laser[0]:g} nm, {laser[1]:g} K)",
        )
    ax_out.axhline(0.0, color="0.6", lw=0.5)
    ax_out.set_ylabel("max-scaled")
    ax_out.set_xlabel("wavenumber (IR) or Raman shift / cm$^{-1}$")
    ax_out.set_xlim(float(grid[0]), float(grid[-1]))
    ax_out.legend(fontsize=7, loc="upper right", frameon=False)
    fig.suptitle(title, fontsize=8)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=FIG_DPI)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def run_predict(
    checkpoint: str | os.PathLike,
    inputs: list[Path],
    source: str,
    target: str,
    out: str | os.PathLike,
    laser_nm: float | None = None,
    temperature: float | None = None,
    device: str = "cpu",
    plot: bool = True,
) -> dict[str, Any]:
    """Predict the ``target`` spectrum of every spectrum in ``inputs`` with a cross-spectral
    checkpoint; write ``predictions.csv`` (wide: wavenumber, one column per spectrum),
    ``predictions_intensity.csv`` (Raman target with laser and temperature), ``predict.json``
    and ``figures/<label>.png`` under ``out``. Returns the JSON report.

    Everything is read, checked and predicted before the first file is written, so a bad input
    leaves no output behind. Predictions are not clipped: the fraction of negative points is
    reported instead (only the intensity conversion clips negative activity, and says so).
    """
    import torch

    from spektron import __version__
    from spektron.models.spektron import Spektron, read_checkpoint
    from spektron.training.distributed import resolve_device

    for flag, kind in (("--from", source), ("--to", target)):
        if kind not in KINDS:
            raise ConfigError(f"{flag} must be one of {KINDS}, got {kind!r}")
    if source == target:
        raise ConfigError(f"--from and --to are both {source!r}; predict maps IR ↔ Raman")
    if target != "raman" and (laser_nm is not None or temperature is not None):
        raise ConfigError("--laser-nm/--temperature apply to Raman targets only (--to raman)")
    if not inputs:
        raise ConfigError("no input files given")
    checkpoint, out = Path(checkpoint), Path(out)
    state = read_checkpoint(checkpoint, map_location="cpu")
    contract = read_contract(state, checkpoint, source, target)
    grid = contract["grid"]  # (L,)
    laser = check_laser(laser_nm, temperature, float(grid[-1]))
    dev = resolve_device(device)

    # Read and resample everything first: any bad file stops the run before output exists.
    spectra: list[UserSpectrum] = []
    for path in inputs:
        for s in read_spectrum_file(path):
            if s.kind_hint is not None and s.kind_hint != source:
                raise DataError(
                    f"{s.source}: spectrum {s.name!r} is marked {s.kind_hint.upper()} in the "
                    f"file, but --from {source} was given"
                )
            spectra.append(s)
    resampled, coverages = [], []
    for s in spectra:
        v, cov = resample_to_grid(s, grid)
        peak = float(np.max(np.abs(v)))
        where = f"{s.source}: spectrum {s.name!r}"
        if peak == 0:
            cov.warnings.append(
                f"{where} is zero everywhere on the model grid: its prediction is the model's "
                "answer to an empty input and says nothing about the sample"
            )
        elif float(np.max(v)) <= 0:
            cov.warnings.append(
                f"{where} has no positive value (min {np.min(v):.3g}): the model was trained on "
                "non-negative spectra; an inverted or transmittance-style spectrum needs "
                "converting (absorbance, baseline-corrected) first"
            )
        elif float(np.min(v)) < -NEGATIVE_INPUT_NOTE * peak:
            cov.notes.append(
                f"input has negative values (down to {np.min(v) / peak:.2f} × max); the model "
                "was trained on non-negative spectra: baseline-correct first"
            )
        resampled.append(v)
        coverages.append(cov)
    x = normalize_spectra(np.stack(resampled), contract["normalization"])  # (N, L)

    model = Spektron.from_checkpoint_state(state, source=str(checkpoint)).to(dev).eval()
    wn = torch.as_tensor(grid, dtype=torch.float32, device=dev)  # (L,)
    preds = []
    with torch.no_grad():
        for i in range(0, len(x), BATCH):
            xb = torch.as_tensor(x[i : i + BATCH], dtype=torch.float32, device=dev)  # (B, L)
            preds.append(model(xb, wn, mask=None)["pred"].double().cpu().numpy())  # (B, L)
    pred = np.concatenate(preds)  # (N, L)
    bad = [s for s, p in zip(spectra, pred, strict=True) if not np.all(np.isfinite(p))]
    if bad:
        raise CheckpointError(
            f"{checkpoint}: the model gave non-finite values for {bad[0].source} "
            f"spectrum {bad[0].name!r}"
        )
    pred = normalize_spectra(pred, "max")  # (N, L)
    intensity = None if laser is None else activity_to_intensity(grid, pred, *laser)  # (N, L)

    labels = _unique([f"{s.source.stem}:{s.name}" for s in spectra])
    figures = _unique([_safe_name(lab) for lab in labels])
    label = contract["data_label"]
    records = []
    for k, (s, cov, p) in enumerate(zip(spectra, coverages, pred, strict=True)):
        neg = p < 0
        records.append(
            {
                "file": str(s.source),
                "name": s.name,
                "column": labels[k],
                "kind_hint": s.kind_hint,
                "notes": [*s.notes, *cov.notes],
                "warnings": list(cov.warnings),
                "coverage": cov.to_dict(),
                "n_points_read": int(s.wavenumber.size),
                "negative_fraction": float(neg.mean()),
                "negative_min": float(p.min()) if neg.any() else 0.0,
                "figure": f"figures/{figures[k]}.png" if plot else None,
            }
        )
    report = {
        "checkpoint": str(checkpoint.resolve()),
        "data_label": label,
        "source": source,
        "target": target,
        "normalization": contract["normalization"],
        "preset": contract["preset"],
        "warnings": contract["warnings"],
        "grid": contract["grid_spec"],
        "output_scaling": OUTPUT_SCALING,
        "laser_nm": None if laser is None else laser[0],
        "temperature_k": None if laser is None else laser[1],
        "intensity": None
        if laser is None
        else (
            "I ∝ (ν0 − ν)^4 / ν / (1 − exp(−hcν/kT)) · activity, applied pointwise to the "
            "broadened prediction (negative activity clipped to 0 first), max-normalised"
        ),
        "files": {
            "predictions": PREDICTIONS_CSV,
            "intensity": None if laser is None else INTENSITY_CSV,
            "figures": [r["figure"] for r in records] if plot else [],
        },
        "spectra": records,
        "device": str(dev),
        "spektron_version": __version__,
    }

    # Write: figures, then the CSVs, then the JSON report last (each file atomically).
    out.mkdir(parents=True, exist_ok=True)
    if plot:
        (out / "figures").mkdir(exist_ok=True)
        wrapped = textwrap.fill(f"model trained on {label}", 110)
        for k in range(len(spectra)):
            _plot(
                out / "figures" / f"{figures[k]}.png",
                f"{labels[k]}: {source.upper()} → {target.upper()} prediction\n{wrapped}",
                grid,
                x[k],
                coverages[k],
                pred[k],
                None if intensity is None else intensity[k],
                source,
                target,
                laser,
            )
    header = ["wavenumber_cm-1", *labels]
    if intensity is not None:
        _write_csv_atomic(out / INTENSITY_CSV, header, np.column_stack([grid, intensity.T]))
    else:
        # A stale intensity file from an earlier run would not match these predictions.
        (out / INTENSITY_CSV).unlink(missing_ok=True)
    _write_csv_atomic(out / PREDICTIONS_CSV, header, np.column_stack([grid, pred.T]))
    write_json_atomic(out / REPORT_JSON, report)
    log.info("predicted %d spectra into %s", len(spectra), out)
    return report


# --------------------------------------------------------------------------- command line


def add_predict_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``predict`` to the ``spektron`` subcommands."""
    p = sub.add_parser(
        "predict",
        help="predict Raman from IR (or IR from Raman) for your own spectra (CSV or JCAMP-DX)",
        description="Predict the Raman spectrum of IR spectra (or IR of Raman) with a trained "
        "cross-spectral checkpoint; writes predictions.csv, predict.json and figures.",
    )
    p.add_argument("--from", dest="source", choices=KINDS, required=True, help="input kind")
    p.add_argument("--to", dest="target", choices=KINDS, required=True, help="predicted kind")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", type=Path, help="cross-spectral model file (E2's best.pt)")
    which.add_argument(
        "--run",
        type=Path,
        help="a finished E2 output folder (e.g. runs/e2): use its arm with the lowest "
        "validation MSE for the direction asked",
    )
    p.add_argument(
        "--arm",
        default=None,
        help="with --run: restrict the choice to one backbone (e.g. mamba), init/backbone "
        "(pretrained/cnn)",
    )
    p.add_argument(
        "--laser-nm", type=float, default=None, help="laser wavelength (nm) for Raman intensity"
    )
    p.add_argument(
        "--temperature", type=float, default=None, help="temperature (K) for Raman intensity"
    )
    p.add_argument(
        "--out", type=Path, default=Path("predictions"), help="output folder (default predictions/)"
    )
    p.add_argument("--force", action="store_true", help="replace an earlier prediction in --out")
    p.add_argument("--device", default="cpu", help="cpu | cuda[:i] | auto (default cpu)")
    p.add_argument("--no-plot", action="store_true", help="skip the per-spectrum figures")
    p.add_argument("inputs", nargs="+", type=Path, help="CSV / JCAMP-DX files")
    return p


def cmd_predict(args: argparse.Namespace) -> int:
    """Run :func:`run_predict` from parsed arguments and print where everything went."""
    if args.arm is not None and args.run is None:
        raise ConfigError("--arm chooses among the arms of --run; give --run DIR with it")
    earlier = Path(args.out) / REPORT_JSON
    if earlier.is_file() and not args.force:
        raise ConfigError(
            f"{args.out} holds an earlier prediction ({earlier}): pass --force to replace it, "
            "or choose another --out"
        )
    checkpoint = args.checkpoint
    if args.run is not None:
        chosen = select_checkpoint(args.run, args.source, args.target, args.arm)
        checkpoint = chosen["checkpoint"]
        print(
            f"spektron predict: using arm {chosen['arm']} (validation MSE "
            f"{chosen['val_mse']:.4g}, best of {chosen['n_candidates']} by "
            f"{chosen['selected_by']}): {checkpoint}"
        )
    with warnings.catch_warnings():
        # Coverage warnings are printed below from the report (once, with the summary).
        warnings.simplefilter("ignore", CoverageWarning)
        rep = run_predict(
            checkpoint,
            list(args.inputs),
            args.source,
            args.target,
            args.out,
            laser_nm=args.laser_nm,
            temperature=args.temperature,
            device=args.device,
            plot=not args.no_plot,
        )
    out = Path(args.out)
    n = len(rep["spectra"])
    print(
        f"spektron predict: {n} spectr{'um' if n == 1 else 'a'} from {len(args.inputs)} "
        f"file(s), {args.source.upper()} → {args.target.upper()}; model trained on "
        f"{rep['data_label']}"
    )
    print(f"predictions: {out / PREDICTIONS_CSV}")
    if rep["files"]["intensity"]:
        print(
            f"Raman intensity ({rep['laser_nm']:g} nm, {rep['temperature_k']:g} K): "
            f"{out / INTENSITY_CSV}"
        )
    if rep["files"]["figures"]:
        print(f"figures: {out / 'figures'}/ ({len(rep['files']['figures'])})")
    print(f"report: {out / REPORT_JSON}")
    for w in rep["warnings"]:
        print(f"warning: {w}")
    for r in rep["spectra"]:
        for w in r["warnings"]:
            print(f"warning: {w}")
        if r["negative_fraction"] > 0:
            print(
                f"note: {r['column']}: {100 * r['negative_fraction']:.1f} % of the prediction "
                f"is negative (min {r['negative_min']:.3g}); kept as predicted"
            )
    return 0


__all__ = [
    "Coverage",
    "CoverageWarning",
    "activity_to_intensity",
    "add_predict_parser",
    "check_laser",
    "cmd_predict",
    "read_contract",
    "resample_to_grid",
    "run_predict",
    "select_checkpoint",
]
