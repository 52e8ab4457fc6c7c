"""Spectral grid, Lorentzian broadening, Raman activity → intensity, and the per-molecule record.

Broadening follows the QM9S convention: each stick (frequency ν_k, strength s_k) becomes a
height-normalised Lorentzian

    S(ν) = Σ_k s_k · (γ/2)² / ((ν − ν_k)² + (γ/2)²),      γ = FWHM,

so a stick of strength s has peak height s. It is evaluated directly on the model grid; sticks
just outside the grid still contribute their tails.

Raman *activity* S_k (Å⁴/amu) is not a measured intensity. For laser wavenumber ν₀ and
temperature T the scattered intensity is proportional to

    I_k ∝ (ν₀ − ν_k)⁴ / (ν_k · (1 − exp(−h c ν_k / k T))) · S_k.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spektron.errors import ConfigError

# h·c/k in cm·K (second radiation constant).
HC_OVER_K_CM_K = 1.438776877


def make_grid(n_points: int = 2048, lo: float = 500.0, hi: float = 4000.0) -> np.ndarray:
    """Uniform wavenumber grid (cm⁻¹), float64, endpoints included."""
    if n_points < 2:
        raise ConfigError(f"grid needs at least 2 points, got n_points={n_points}")
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ConfigError(f"grid range must satisfy lo < hi, got lo={lo}, hi={hi}")
    return np.linspace(lo, hi, n_points, dtype=np.float64)


def lorentzian_broaden(
    freqs: np.ndarray, strengths: np.ndarray, grid: np.ndarray, fwhm: float
) -> np.ndarray:
    """Height-normalised Lorentzian broadening of stick spectra onto ``grid``.

    Parameters
    ----------
    freqs : (K,) stick positions in cm⁻¹.
    strengths : (K,) stick strengths (IR km/mol, Raman activity or intensity).
    grid : (L,) wavenumbers in cm⁻¹.
    fwhm : full width at half maximum in cm⁻¹.

    Returns
    -------
    (L,) float64 spectrum.
    """
    if fwhm <= 0:
        raise ConfigError(f"fwhm must be > 0, got {fwhm}")
    freqs = np.asarray(freqs, dtype=np.float64)
    strengths = np.asarray(strengths, dtype=np.float64)
    if freqs.shape != strengths.shape:
        raise ValueError(f"freqs {freqs.shape} and strengths {strengths.shape} differ in shape")
    if freqs.size == 0:
        return np.zeros_like(grid, dtype=np.float64)
    hw2 = (0.5 * fwhm) ** 2
    d = grid[:, None] - freqs[None, :]  # (L, K)
    return (hw2 / (d * d + hw2)) @ strengths  # (L,)


def raman_activity_to_intensity(
    freqs: np.ndarray,
    activity: np.ndarray,
    laser_cm: float = 1.0e7 / 785.0,
    temperature_k: float = 298.15,
) -> np.ndarray:
    """Convert Raman activities to relative scattered intensities (see module docstring).

    Modes at ν ≤ 0 or ν ≥ ν₀ carry no Stokes intensity and get 0.
    """
    if laser_cm <= 0 or temperature_k <= 0:
        raise ConfigError(
            f"laser_cm and temperature_k must be > 0, got {laser_cm}, {temperature_k}"
        )
    nu = np.asarray(freqs, dtype=np.float64)
    act = np.asarray(activity, dtype=np.float64)
    out = np.zeros_like(act)
    ok = (nu > 0) & (nu < laser_cm)
    boltz = 1.0 - np.exp(-HC_OVER_K_CM_K * nu[ok] / temperature_k)
    out[ok] = (laser_cm - nu[ok]) ** 4 / (nu[ok] * boltz) * act[ok]
    return out


@dataclass
class SpectrumRecord:
    """One molecule's spectra and annotations, as written to the spectral store.

    ``ir``/``raman`` are broadened spectra on the store grid (None when absent). Stick arrays
    (``stick_freq`` cm⁻¹, ``stick_ir`` km/mol, ``stick_raman`` Å⁴/amu) are empty when the source
    has none (e.g. the QM9S wide CSVs). ``centrosymmetric`` is -1 when unknown, else 0/1;
    ``point_group`` is "" when unknown. ``fg_flags`` follows
    ``spektron.chemistry.functional_groups.FUNCTIONAL_GROUP_NAMES`` (empty when unknown).
    ``source`` is where the structure came from (``"qm9:<Index>"``, ``"smiles"``, ``"qm9s"``;
    ``""`` unknown).
    """

    smiles: str
    inchikey: str
    source_index: int
    ir: np.ndarray | None
    raman: np.ndarray | None
    centrosymmetric: int = -1
    point_group: str = ""
    fg_flags: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    stick_freq: np.ndarray = field(default_factory=lambda: np.zeros(0))
    stick_ir: np.ndarray = field(default_factory=lambda: np.zeros(0))
    stick_raman: np.ndarray = field(default_factory=lambda: np.zeros(0))
    n_atoms: int = 0
    charge_model: str = ""
    source: str = ""


NORMALIZATIONS: tuple[str, ...] = ("max", "area", "l2", "none")


def normalize_spectra(x: np.ndarray, rule: str, eps: float = 1e-12) -> np.ndarray:
    """Per-spectrum normalisation along the last axis, one named rule used everywhere.

    ``max``: divide by the maximum (peak height 1); ``area``: divide by the sum of values (unit
    area in grid units); ``l2``: divide by the Euclidean norm; ``none``: unchanged. All-zero
    spectra stay zero (the divisor is floored at ``eps``).
    """
    x = np.asarray(x)
    if rule == "none":
        return x
    if rule == "max":
        d = np.max(np.abs(x), axis=-1, keepdims=True)
    elif rule == "area":
        d = np.sum(np.abs(x), axis=-1, keepdims=True)
    elif rule == "l2":
        d = np.linalg.norm(x, axis=-1, keepdims=True)
    else:
        raise ConfigError(f"normalisation must be one of {NORMALIZATIONS}, got {rule!r}")
    return x / np.maximum(d, eps)
