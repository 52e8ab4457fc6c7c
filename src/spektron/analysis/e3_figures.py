"""E3 figures from :func:`spektron.analysis.transfer_function.analyse_model` results.

Every frequency here is a signal-processing frequency *along the spectral axis* (cycles per
cm⁻¹; period 1/f in cm⁻¹ between repetitions along the wavenumber axis), computed with the sample
spacing the backbone sees. None is a vibrational frequency (docs/DESIGN.md §6), and every
figure says so.

- :func:`plot_filter_banks`: per layer and direction, |H_p| of every oscillator (rows, sorted by
  resonance) over frequency, in dB relative to each oscillator's peak.
- :func:`plot_pole_zero`: the poles r·e^{±iθ} of each layer in the z-plane with the unit circle
  and the double zero of the z² numerator at z = 0, learned against initial; and a zoom on
  (θ, 1 − r) where poles crowd near the circle.
- :func:`plot_periods_vs_bands`: the periods the filters resonate at, beside the widths and
  spacings of typical mid-IR absorption bands (:data:`BAND_REFERENCE`) and of the simulated
  Lorentzians: a comparison of length scales, not a claim that a filter detects a group.
- :func:`plot_layer_summary`: resonance, damping ratio and coupling norm by depth, per group
  (trained vs controls), with every model's median shown (the model is the unit).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spektron.analysis.transfer_function import response_from_coefficients
from spektron.config import PhysicsConfig
from spektron.plotting import pyplot, save_figure

NOT_VIBRATIONAL = "spectral-axis frequency, not a vibrational frequency"
FREQ_LABEL = "frequency along the spectral axis (cycles per cm⁻¹)"
PERIOD_LABEL = "period along the spectral axis (cm⁻¹)"
FLOOR_DB = -40.0  # lower end of the filter-bank colour scale (dB re. each oscillator's peak)

# Typical mid-IR group bands: position range, FWHM and spacing of neighbouring bands (cm⁻¹).
# Positions follow G. Socrates, "Infrared and Raman Characteristic Group Frequencies", 3rd ed.,
# Wiley, 2001 (ch. 2–3, 6, 9). Socrates gives widths only qualitatively (sharp / broad); the
# FWHM ranges are indicative condensed-phase values, not precise data. Spacings are those of
# neighbouring bands of one group (CH₃/CH₂ asymmetric–symmetric pairs ~70–90 cm⁻¹, primary-amine
# N–H doublet ~70–100 cm⁻¹, C=O of different carbonyl types ~20–60 cm⁻¹, crowded fingerprint
# bands ~5–50 cm⁻¹); None where the band is usually isolated. The default E3 data are SIMULATED
# Lorentzians of one fixed width (PhysicsConfig: IR 15 cm⁻¹, Raman 10 cm⁻¹ FWHM,
# docs/DESIGN.md §2.1), so the widths real bands have do not occur in them; both are drawn.
BAND_REFERENCE: tuple[dict[str, Any], ...] = (
    {"name": "O–H stretch, free", "region": (3580, 3670), "fwhm": (10, 30), "spacing": None},
    {"name": "O–H stretch, H-bonded", "region": (3200, 3550), "fwhm": (100, 400), "spacing": None},
    {"name": "N–H stretch", "region": (3300, 3500), "fwhm": (20, 80), "spacing": (70, 100)},
    {
        "name": "C–H stretch, sp²/aromatic",
        "region": (3000, 3100),
        "fwhm": (5, 20),
        "spacing": (10, 50),
    },
    {"name": "C–H stretch, sp³", "region": (2850, 2970), "fwhm": (10, 30), "spacing": (30, 90)},
    {"name": "C≡N stretch", "region": (2210, 2260), "fwhm": (5, 15), "spacing": None},
    {"name": "C=O stretch", "region": (1650, 1780), "fwhm": (15, 40), "spacing": (20, 60)},
    {"name": "fingerprint region", "region": (500, 1500), "fwhm": (5, 20), "spacing": (5, 50)},
)
SIMULATED_FWHM: dict[str, float] = {"IR": PhysicsConfig.ir_fwhm, "Raman": PhysicsConfig.raman_fwhm}

_COLORS = ("tab:blue", "tab:grey", "tab:orange", "tab:green", "tab:red", "tab:purple")
_DIR_COLORS = {"forward": "tab:blue", "backward": "tab:orange"}


def _out(path_stem: str | Path) -> Path:
    path = Path(path_stem)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _title(text: str, label: str | None) -> str:
    return f"{text}\n({NOT_VIBRATIONAL}{'; ' + label if label else ''})"


def _directions(analysis: dict[str, Any]) -> list[str]:
    return list(analysis["layers"][0]["directions"])


def _pooled(analyses: Sequence[dict[str, Any]], field: str, layer: int | None = None) -> np.ndarray:
    """Values of one field over models, (selected) layers and directions."""
    vals = [
        np.asarray(d[field], float)
        for an in analyses
        for lay in an["layers"]
        if layer is None or lay["index"] == layer
        for d in lay["directions"].values()
    ]
    return np.concatenate(vals) if vals else np.empty(0)


def _period_axis(ax, nyquist: float) -> None:
    """A top axis marking periods (cm⁻¹) on a linear frequency axis [0, nyquist]."""
    top = ax.secondary_xaxis("top")
    ticks: list[float] = []
    for p in (2, 3, 5, 10, 15, 20, 30, 50, 100, 200, 500):  # from high f down, keep them apart
        f = 1.0 / p
        if f <= nyquist and all(abs(f - t) >= 0.08 * nyquist for t in ticks):
            ticks.append(f)
    top.set_xticks(ticks, [f"{1.0 / f:g}" for f in ticks])
    top.set_xlabel(PERIOD_LABEL, fontsize=7)
    top.tick_params(labelsize=7)


def plot_filter_banks(
    analysis: dict[str, Any], path_stem: str | Path, label: str | None = None
) -> list[Path]:
    """Heatmaps per layer (rows) and direction (columns): oscillators sorted by resonance ×
    frequency, colour |H_p| in dB relative to that oscillator's peak (clipped at FLOOR_DB)."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    layers, dirs = analysis["layers"], _directions(analysis)
    fig, axes = plt.subplots(
        len(layers), len(dirs), figsize=(4.6 * len(dirs), 2.6 * len(layers) + 1.0), squeeze=False
    )
    freq, nyq = np.asarray(analysis["frequency"], float), float(analysis["nyquist"])
    for i, lay in enumerate(layers):
        for j, name in enumerate(dirs):
            d, ax = lay["directions"][name], axes[i, j]
            order = np.argsort(np.asarray(d["f_res"], float), kind="stable")
            h = response_from_coefficients(d["numerator"], d["denominator"], analysis["omega"])
            with np.errstate(divide="ignore"):
                mag = 20.0 * np.log10(np.abs(h[order]))  # (P, F)
            rel = np.clip(mag - mag.max(axis=1, keepdims=True), FLOOR_DB, 0.0)
            im = ax.imshow(
                rel,
                aspect="auto",
                origin="lower",
                extent=(freq[0], freq[-1], -0.5, len(order) - 0.5),
                cmap="magma",
                vmin=FLOOR_DB,
                vmax=0.0,
                interpolation="nearest",
            )
            ax.set_title(f"layer {lay['index']}, {name}", fontsize=9)
            ax.set_ylabel("oscillator (sorted by resonance)", fontsize=8)
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            if i == len(layers) - 1:
                ax.set_xlabel(FREQ_LABEL, fontsize=8)
            if i == 0:
                _period_axis(ax, nyq)
            fig.colorbar(im, ax=ax, label="dB re. peak", fraction=0.05, pad=0.02)
    fig.suptitle(
        _title(
            f"D-LinOSS filter banks |H_p| (Δν̃ = {analysis['spacing_cm']:.3g} cm⁻¹ per sample)",
            label,
        ),
        fontsize=10,
    )
    fig.tight_layout()
    return save_figure(fig, _out(path_stem))


def plot_pole_zero(
    trained: dict[str, Any],
    init: dict[str, Any] | None,
    path_stem: str | Path,
    label: str | None = None,
) -> list[Path]:
    """Per layer: the z-plane (unit circle, poles λ and λ̄, the double zero at z = 0) and a
    zoom on (θ, 1 − r); learned poles coloured by direction, initial ones grey."""
    plt = pyplot()
    layers = trained["layers"]
    init_layers = {} if init is None else {lay["index"]: lay for lay in init["layers"]}
    markers = {"forward": "x", "backward": "+"}
    fig, axes = plt.subplots(len(layers), 2, figsize=(10, 4.2 * len(layers)), squeeze=False)
    circle = np.exp(1j * np.linspace(0, 2 * np.pi, 721))
    for i, lay in enumerate(layers):
        zax, pax = axes[i]
        zax.plot(circle.real, circle.imag, color="k", lw=0.8)
        zax.plot([0], [0], "o", mfc="none", mec="k", ms=7)
        zax.annotate("2", (0, 0), xytext=(5, 5), textcoords="offset points", fontsize=8)
        sets = []
        if lay["index"] in init_layers:
            sets += [
                ("initial", "lightgrey", "o", d)
                for d in init_layers[lay["index"]]["directions"].values()
            ]
        sets += [
            (f"learned, {name}", _DIR_COLORS.get(name, "tab:blue"), markers.get(name, "x"), d)
            for name, d in lay["directions"].items()
        ]
        seen = set()
        for name, color, marker, d in sets:
            r, th = np.asarray(d["r"]), np.asarray(d["theta"])
            lab = None if name in seen else name
            seen.add(name)
            ms = 3 if name == "initial" else 5
            for sign in (1, -1):  # λ and its conjugate
                zax.plot(
                    r * np.cos(th),
                    sign * r * np.sin(th),
                    marker,
                    color=color,
                    ms=ms,
                    ls="none",
                    label=lab if sign == 1 else None,
                )
            pax.plot(th, 1.0 - r, marker, color=color, ms=ms, ls="none", label=lab)
        zax.set_aspect("equal")
        zax.set_xlim(-1.15, 1.15)
        zax.set_ylim(-1.15, 1.15)
        zax.set_title(f"layer {lay['index']}: z-plane (○² = double zero at z = 0)", fontsize=9)
        zax.set_xlabel("Re z", fontsize=8)
        zax.set_ylabel("Im z", fontsize=8)
        pax.set_yscale("log")
        pax.set_xlim(0, math.pi)
        pax.set_xlabel("pole angle θ (rad/sample)", fontsize=8)
        pax.set_ylabel("1 − r (distance to the unit circle)", fontsize=8)
        pax.set_title(f"layer {lay['index']}: zoom near the unit circle", fontsize=9)
        top = pax.secondary_xaxis(
            "top",
            functions=(
                lambda t: t / (2 * math.pi * trained["spacing_cm"]),
                lambda f: f * 2 * math.pi * trained["spacing_cm"],
            ),
        )
        top.set_xlabel("θ/(2πΔν̃): " + FREQ_LABEL, fontsize=7)
        top.tick_params(labelsize=7)
        pax.legend(fontsize=7, loc="best")
    fig.suptitle(
        _title(
            "Poles of the per-oscillator transfer functions H_p(z), learned vs initial "
            "(each core in its own time; the backward core runs on the reversed axis)",
            label,
        ),
        fontsize=10,
    )
    fig.tight_layout()
    return save_figure(fig, _out(path_stem))


def _as_groups(analyses: Any) -> dict[str, list[dict[str, Any]]]:
    if isinstance(analyses, dict) and "layers" in analyses:
        return {"model": [analyses]}
    if isinstance(analyses, dict):
        return {k: list(v) for k, v in analyses.items()}
    return {"model": list(analyses)}


def plot_periods_vs_bands(
    analyses: dict[str, Sequence[dict[str, Any]]] | Sequence[dict[str, Any]],
    path_stem: str | Path,
    label: str | None = None,
) -> list[Path]:
    """Resonance periods (1/f_res, cm⁻¹ along the axis) per group, above the FWHMs, neighbour
    spacings and region extents of :data:`BAND_REFERENCE` and the simulated widths.

    ``analyses``: {group: [analysis, ...]} or a list of analyses (one group). Low-pass
    oscillators (peak at f = 0, infinite period) are counted in the legend, not drawn. Also
    marked: the smallest representable period 2Δν̃ (Nyquist) and π·FWHM of the simulated IR
    Lorentzian (its Fourier transform along the axis, e^{−π·FWHM·|f|}, falls by e there: shorter
    periods carry little of such a band's shape).
    """
    plt = pyplot()
    groups = _as_groups(analyses)
    first = next(iter(groups.values()))[0]
    spacing = first["spacing_cm"]
    fig, (hax, bax) = plt.subplots(
        2, 1, figsize=(10, 7.5), sharex=True, gridspec_kw={"height_ratios": [1, 1.3]}
    )
    smallest = min(min(b["fwhm"][0] for b in BAND_REFERENCE), *SIMULATED_FWHM.values())
    lo_p, hi_p = 0.8 * min(2.0 * spacing, smallest), 5000.0
    bins = np.geomspace(lo_p, hi_p, 60)
    for k, (name, ans) in enumerate(groups.items()):
        per = _pooled(ans, "period_res")
        fin = per[np.isfinite(per)]
        n_low = int(np.sum(~np.isfinite(per)))
        weights = np.full(len(fin), 1.0 / max(len(per), 1))
        hax.hist(
            fin,
            bins=bins,
            weights=weights,
            histtype="step",
            lw=1.5,
            color=_COLORS[k % len(_COLORS)],
            label=f"{name}: {len(ans)} model(s), {n_low} low-pass (f = 0) not drawn",
        )
    hax.set_xscale("log")
    hax.set_ylabel("fraction of oscillators")
    hax.set_title("learned resonance periods 1/f_res", fontsize=9)
    hax.legend(fontsize=7)

    y = np.arange(len(BAND_REFERENCE))
    first_spacing = next(i for i, b in enumerate(BAND_REFERENCE) if b["spacing"] is not None)
    for i, band in enumerate(BAND_REFERENCE):
        bax.plot(
            band["fwhm"],
            [i + 0.15] * 2,
            lw=5,
            color="tab:red",
            solid_capstyle="butt",
            label="typical FWHM" if i == 0 else None,
        )
        if band["spacing"] is not None:
            bax.plot(
                band["spacing"],
                [i - 0.15] * 2,
                lw=5,
                color="tab:green",
                solid_capstyle="butt",
                label="spacing of neighbouring bands" if i == first_spacing else None,
            )
        extent = band["region"][1] - band["region"][0]
        bax.plot([extent], [i], "k|", ms=12, label="extent of the region" if i == 0 else None)
    bax.set_yticks(y, [f"{b['name']} ({b['region'][0]}–{b['region'][1]})" for b in BAND_REFERENCE])
    bax.tick_params(axis="y", labelsize=7)
    bax.set_xlabel(PERIOD_LABEL + " / band width, spacing (cm⁻¹)")
    bax.set_title(
        "typical mid-IR bands (Socrates 2001; widths indicative): scales to set beside the "
        "periods, not a correspondence",
        fontsize=9,
    )
    for ax in (hax, bax):
        ax.axvline(2.0 * spacing, color="k", ls=":", lw=1)
        for fwhm in SIMULATED_FWHM.values():
            ax.axvline(fwhm, color="tab:purple", ls="--", lw=1)
        ax.axvline(math.pi * SIMULATED_FWHM["IR"], color="tab:purple", ls="-.", lw=1)
    # (position, text, colour, side of the line the text sits on)
    marks = [(2.0 * spacing, "2Δν̃ (Nyquist period)", "k", "right")]
    marks += [(SIMULATED_FWHM["Raman"], "simulated Raman FWHM", "tab:purple", "right")]
    marks += [(SIMULATED_FWHM["IR"], "simulated IR FWHM", "tab:purple", "left")]
    marks += [(math.pi * SIMULATED_FWHM["IR"], "π·FWHM (IR)", "tab:purple", "left")]
    for x, text, color, side in marks:
        hax.text(
            x,
            0.98,
            f" {text} ",
            transform=hax.get_xaxis_transform(),
            rotation=90,
            va="top",
            ha=side,
            fontsize=7,
            color=color,
        )
    bax.set_ylim(-0.7, len(BAND_REFERENCE) - 0.3)
    bax.legend(fontsize=7, loc="lower right")
    bax.set_xlim(lo_p, hi_p)
    fig.suptitle(
        _title("Resonance periods of the filters vs band widths and spacings", label), fontsize=10
    )
    fig.tight_layout()
    return save_figure(fig, _out(path_stem))


_SUMMARY_FIELDS = (
    ("f_res", "resonance f_res (cycles per cm⁻¹)", "linear"),
    ("zeta", "damping ratio ζ", "log"),
    ("coupling_norm", "coupling ‖W_p‖_F", "log"),
)


def plot_layer_summary(
    analyses_by_group: dict[str, Sequence[dict[str, Any]]],
    path_stem: str | Path,
    label: str | None = None,
) -> list[Path]:
    """By depth: pooled median and interquartile range of f_res, ζ and ‖W_p‖_F per group, and
    each model's median as a dot (the model is the unit of the statistics)."""
    plt = pyplot()
    groups = _as_groups(analyses_by_group)
    fig, axes = plt.subplots(1, len(_SUMMARY_FIELDS), figsize=(5 * len(_SUMMARY_FIELDS), 4.2))
    n_groups = len(groups)
    for ax, (field, ylab, scale) in zip(axes, _SUMMARY_FIELDS, strict=True):
        for k, (name, ans) in enumerate(groups.items()):
            color = _COLORS[k % len(_COLORS)]
            depth = sorted({lay["index"] for an in ans for lay in an["layers"]})
            off = (k - (n_groups - 1) / 2) * 0.8 / max(n_groups, 1)
            med, q1, q3 = [], [], []
            for i in depth:
                v = _pooled(ans, field, layer=i)
                v = v[np.isfinite(v)]
                q = np.quantile(v, [0.25, 0.5, 0.75]) if len(v) else [np.nan] * 3
                q1.append(q[0])
                med.append(q[1])
                q3.append(q[2])
                per_model = [np.nanmedian(_pooled([an], field, layer=i)) for an in ans]
                ax.plot([i + off] * len(per_model), per_model, ".", color=color, alpha=0.6, ms=5)
            x = np.asarray(depth) + off
            med, q1, q3 = map(np.asarray, (med, q1, q3))
            ax.errorbar(
                x,
                med,
                yerr=[med - q1, q3 - med],
                fmt="s-",
                color=color,
                ms=4,
                lw=1,
                capsize=2,
                label=f"{name} ({len(ans)} model(s))",
            )
        ax.set_yscale(scale)
        ax.set_xlabel("layer (depth)")
        ax.set_ylabel(ylab)
        ax.set_xticks(
            sorted({lay["index"] for ans in groups.values() for an in ans for lay in an["layers"]})
        )
    axes[0].legend(fontsize=7)
    fig.suptitle(
        _title(
            "Per-layer summary: pooled median ± IQR over oscillators (squares), "
            "each model's median (dots)",
            label,
        ),
        fontsize=10,
    )
    fig.tight_layout()
    return save_figure(fig, _out(path_stem))


__all__ = [
    "BAND_REFERENCE",
    "SIMULATED_FWHM",
    "plot_filter_banks",
    "plot_layer_summary",
    "plot_periods_vs_bands",
    "plot_pole_zero",
]
