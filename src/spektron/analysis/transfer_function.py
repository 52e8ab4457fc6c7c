"""E3: the exact transfer functions of a trained D-LinOSS backbone (docs/DESIGN.md §3.2, §6).

D-LinOSS (Boyer, Rusch & Rus 2025, arXiv:2505.12171) is linear time-invariant inside each
layer, so every oscillator p of every direction is an exact second-order IIR filter from its
input (Bu)_p to its state x_p. With S = 1 + dt·g and T = 2 + dt·g − dt²·a,

    H_p(z) = dt²·z² / (S·z² − T·z + 1) = (dt²/S) / (1 − (T/S)·z⁻¹ + (1/S)·z⁻²),

i.e. numerator [dt²/S, 0, 0] and denominator [1, −T/S, 1/S] in powers of z⁻¹ (divide both by
S·z²; the z² numerator is a double zero at z = 0). The poles λ, λ̄ = r·e^{±iθ} have r = 1/√S and
cos θ = T/(2√S). The core's response from u to y is Σ_p W_p·H_p(z) + diag(D) with the real,
rank-≤2 coupling matrices W_p = Re(C_{:,p} B_{p,:}); a bidirectional layer adds the backward
core's response conjugated (it runs on the reversed axis), and a "concat" layer maps both
through its projection. Everything here is computed in float64 from the model's own
:class:`~spektron.models.backbones.dlinoss.DLinOSSCore` parameters.

Per oscillator (ω in rad/sample on [0, π], f = ω/(2π·Δν̃) in cycles per cm⁻¹):

- resonance ω_res: the maximum of |H_p(e^{iω})| on [0, π], in closed form. With x = cos ω,
  |1 − (T/S)e^{−iω} + (1/S)e^{−2iω}|² = (1 − r²)²·sin²θ + 4r²·(x − x*)²,
  x* = cos θ·(1 + r²)/(2r), so ω_res = arccos(x*) when |x*| < 1, else the edge 0 (x* ≥ 1,
  low-pass) or π (x* ≤ −1, high-pass). The pole-angle frequency θ/(2π·Δν̃) is reported too
  (they differ for heavily damped oscillators).
- −3 dB bandwidth: the two half-power points solve (x − x*)² = (1 − r²)²·sin²θ/(4r²), so
  x± = x* ± (1 − r²)·sin θ/(2r) and the bandwidth is arccos(x*−δ) − arccos(x*+δ), converted to
  cycles per cm⁻¹. NaN when the peak is at an edge or a half-power point falls outside [0, π]
  (the response never drops by 3 dB on that side).
- damping ratio of the equivalent continuous second-order system with poles s = ln λ per
  sample: ζ = −ln r / √(ln²r + θ²) (ln r = −½·log1p(dt·g), exact for small damping).
- peak gain |H_p(e^{iω_res})| in dB (x_p per unit (Bu)_p; DC gain is 1/a).
- coupling: ‖W_p‖_F and the two singular values of W_p = U_p V_pᵀ, U_p = [Re C_{:,p}, −Im C_{:,p}],
  V_p = [Re B_{p,:}, Im B_{p,:}] (H×2 each): those of the 2×2 matrix R_U R_Vᵀ from the QR
  factors (no H×H SVD, which took seconds per layer). Rank ≤ 2 is checked on the core's own W_p:
  the share of ‖W_p‖_F outside span(U_p) × span(V_p) (≈ 1e-16).

The whole layer's magnitude is summarised per frequency by the RMS gain ‖H(e^{iω})‖_F/√H (the
root-mean-square output norm over unit-norm inputs), computed from the Gram matrix of the
coupling matrices (O(F·P²), no F×H×H tensor). The backward core's quantities are in its own
(reversed) time: its magnitudes equal those on the original axis; its phases are conjugated.

Frequencies here are signal-processing frequencies along the spectral axis: f cycles per cm⁻¹,
period 1/f in cm⁻¹, with Δν̃ the sample spacing the backbone sees (the grid spacing times the
embedding stride). They are **not** vibrational frequencies (docs/DESIGN.md §6).
"""

from __future__ import annotations

import copy
import math
import os
from typing import Any

import numpy as np
import torch

from spektron.config import GridConfig
from spektron.errors import CheckpointError, ConfigError
from spektron.models.backbones.dlinoss import DLinOSSCore, DLinOSSLayer
from spektron.models.spektron import Spektron, read_checkpoint

# The default model grid (2048 points over 500–4000 cm⁻¹), for checkpoints that store none.
DEFAULT_GRID: dict[str, float] = {
    "n_points": GridConfig.n_points,
    "lo": GridConfig.lo,
    "hi": GridConfig.hi,
}

# Per-oscillator scalar fields, (P,) float64 each, with their units (for table headers).
FIELD_UNITS: dict[str, str] = {
    "dt": "integration step (dimensionless)",
    "g": "damping g",
    "a": "stiffness a",
    "S": "1 + dt·g",
    "r": "pole radius",
    "theta": "pole angle (rad/sample)",
    "f_pole": "cycles per cm⁻¹ (pole angle θ/(2πΔν̃))",
    "period_pole": "cm⁻¹ along the spectral axis",
    "omega_res": "rad/sample (peak of |H|)",
    "f_res": "cycles per cm⁻¹ (peak of |H|)",
    "period_res": "cm⁻¹ along the spectral axis",
    "bandwidth": "cycles per cm⁻¹ (−3 dB)",
    "q_factor": "f_res / bandwidth",
    "zeta": "damping ratio",
    "peak_gain_db": "dB (x per unit Bu)",
    "coupling_norm": "‖W_p‖_F",
    "coupling_sv1": "largest singular value of W_p",
    "coupling_sv2": "second singular value of W_p",
    "coupling_rank_residual": "‖W_p − P_U W_p P_V‖_F/‖W_p‖_F (0 = rank ≤ 2)",
}
SCALAR_FIELDS: tuple[str, ...] = tuple(FIELD_UNITS)


def sample_spacing_cm(grid: dict[str, Any] | None, stride: int) -> float:
    """Δν̃ seen by the backbone: (hi − lo)/(n_points − 1) × stride, in cm⁻¹.

    Parameters
    ----------
    grid : dict or None
        ``n_points``, ``lo``, ``hi`` of the uniform model grid (cm⁻¹); None means the default
        grid :data:`DEFAULT_GRID` (2048 points, 500–4000 cm⁻¹: 3500/2047 ≈ 1.71 cm⁻¹).
    stride : int
        The embedding stride (the backbone sees every stride-th grid point).
    """
    g = DEFAULT_GRID if grid is None else grid
    try:
        n, lo, hi = int(g["n_points"]), float(g["lo"]), float(g["hi"])
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"grid must hold n_points, lo, hi; got {grid!r}") from e
    if n < 2 or not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ConfigError(f"grid needs n_points >= 2 and lo < hi, got {grid!r}")
    if int(stride) != stride or stride < 1:
        raise ConfigError(f"stride must be an integer >= 1, got {stride!r}")
    return (hi - lo) / (n - 1) * int(stride)


def dlinoss_layers(model: Spektron) -> list[DLinOSSLayer]:
    """The backbone's D-LinOSS layers in depth order (module registration order)."""
    layers = [m for m in model.backbone.modules() if isinstance(m, DLinOSSLayer)]
    if not layers:
        raise ConfigError(
            f"the model's backbone ({model.cfg.backbone!r}) has no D-LinOSS layers to analyse"
        )
    return layers


def _gram_rms_gain_db(resp: np.ndarray, mats: np.ndarray) -> np.ndarray:
    """20·log10(‖Σ_k resp[:, k]·mats[k]‖_F / √H_in) per frequency.

    resp (F, K) complex, mats (K, H_out, H_in) real. Uses ‖Σ_k R_k M_k‖² = R G Rᴴ with the Gram
    matrix G_kl = ⟨M_k, M_l⟩_F, so no (F, H, H) tensor is formed.
    """
    flat = mats.reshape(mats.shape[0], -1)  # (K, H·H)
    gram = flat @ flat.T  # (K, K)
    power = np.real(np.sum((resp @ gram) * resp.conj(), axis=1)).clip(min=0.0)  # (F,)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(power / mats.shape[-1])  # (F,)


def _oscillators(
    core: DLinOSSCore, w: np.ndarray, omega: torch.Tensor, spacing: float
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-oscillator quantities of one direction (module docstring) and H_p(e^{iω}) (F, P).

    w: the core's coupling matrices (P, H, H).
    """
    dt, g, a = (t.detach().double() for t in core.dynamics())  # (P,)
    s = 1.0 + dt * g
    tr = 2.0 + dt * g - dt * dt * a
    lam = core.eigenvalues().detach()  # (P,) complex128, upper half plane
    r = 1.0 / torch.sqrt(s)
    theta = torch.atan2(lam.imag, lam.real)  # (0, π)
    cos_t, sin_t = torch.cos(theta), torch.sin(theta)
    one_minus_r2 = dt * g / s  # 1 − r², without cancellation

    # Peak of |H| on [0, π] (closed form, module docstring).
    x_star = cos_t * (1.0 + r * r) / (2.0 * r)
    interior = x_star.abs() < 1.0
    edge = torch.where(cos_t >= 0, 0.0, math.pi).to(theta)
    omega_res = torch.where(interior, torch.arccos(x_star.clamp(-1.0, 1.0)), edge)
    z = torch.exp(1j * omega_res)
    peak = (dt * dt * z * z / (s * z * z - tr * z + 1.0)).abs()
    # Half-power points x* ± δ; both must lie in [−1, 1] (and the peak inside).
    delta = one_minus_r2 * sin_t / (2.0 * r)
    both = interior & (x_star + delta <= 1.0) & (x_star - delta >= -1.0)
    bw_omega = torch.arccos((x_star - delta).clamp(-1.0, 1.0)) - torch.arccos(
        (x_star + delta).clamp(-1.0, 1.0)
    )
    bw_omega = torch.where(both, bw_omega, torch.nan)
    log_r = -0.5 * torch.log1p(dt * g)
    zeta = -log_r / torch.sqrt(log_r * log_r + theta * theta)

    coupling = _coupling(core, w)
    hp = core.oscillator_response(omega).detach()  # (F, P) complex128

    to_f = 1.0 / (2.0 * math.pi * spacing)  # rad/sample → cycles per cm⁻¹
    out = {
        "dt": dt,
        "g": g,
        "a": a,
        "S": s,
        "r": r,
        "theta": theta,
        "f_pole": theta * to_f,
        "omega_res": omega_res,
        "f_res": omega_res * to_f,
        "bandwidth": bw_omega * to_f,
        "zeta": zeta,
        "peak_gain_db": 20.0 * torch.log10(peak),
    }
    out = {k: v.numpy().astype(np.float64) for k, v in out.items()} | coupling
    with np.errstate(divide="ignore", invalid="ignore"):
        out["period_pole"] = 1.0 / out["f_pole"]
        out["period_res"] = 1.0 / out["f_res"]  # inf for a low-pass peak at f = 0
        out["q_factor"] = out["f_res"] / out["bandwidth"]
    out = {k: out[k] for k in SCALAR_FIELDS}  # documented order
    out["numerator"] = np.stack(
        [(dt * dt / s).numpy(), np.zeros(len(s)), np.zeros(len(s))], axis=1
    )  # (P, 3), powers of z⁻¹
    out["denominator"] = np.stack(
        [np.ones(len(s)), (-tr / s).numpy(), (1.0 / s).numpy()], axis=1
    )  # (P, 3)
    h = hp.numpy().T  # (P, F)
    with np.errstate(divide="ignore"):
        out["magnitude_db"] = 20.0 * np.log10(np.abs(h))  # (P, F)
    out["phase"] = np.angle(h)  # (P, F), rad, in the core's own time
    return out, hp.numpy()


def _coupling(core: DLinOSSCore, w: np.ndarray) -> dict[str, np.ndarray]:
    """‖W_p‖_F, the two singular values of W_p (P, H, H) and the rank-2 residual, each (P,)."""
    b = core.B.detach().double().numpy()  # (P, H, 2): V_p = [Re B_p, Im B_p]
    c = core.C.detach().double().numpy().transpose(1, 0, 2) * [1.0, -1.0]  # (P, H, 2): U_p
    qu, ru = np.linalg.qr(c)  # (P, H, k), (P, k, 2), k = min(H, 2)
    qv, rv = np.linalg.qr(b)
    sv = np.linalg.svd(ru @ rv.transpose(0, 2, 1), compute_uv=False)  # (P, k)
    sv = np.pad(sv, ((0, 0), (0, 2 - sv.shape[1])))  # (P, 2)
    inner = qu.transpose(0, 2, 1) @ w @ qv  # (P, k, k)
    resid = w - qu @ inner @ qv.transpose(0, 2, 1)  # (P, H, H): W_p outside the two spans
    norm = np.linalg.norm(w, axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(norm > 0, np.linalg.norm(resid, axis=(1, 2)) / norm, 0.0)
    return {
        "coupling_norm": norm,
        "coupling_sv1": sv[:, 0],
        "coupling_sv2": sv[:, 1],
        "coupling_rank_residual": rel,
    }


def _cpu_copy(core: DLinOSSCore) -> DLinOSSCore:
    """The core itself when on CPU; otherwise a CPU copy (analysis is float64 numpy)."""
    if core.D.device.type == "cpu":
        return core
    return copy.deepcopy(core).cpu()


def _direction_mats(core: DLinOSSCore, w: np.ndarray) -> np.ndarray:
    """(P + 1, H, H): the coupling matrices W_p (P, H, H) and diag(D) (the feed-through)."""
    d = np.diag(core.D.detach().double().numpy())[None]  # (1, H, H)
    return np.concatenate((w, d), axis=0)


@torch.no_grad()
def analyse_model(model: Spektron, spacing_cm: float, n_freq: int = 512) -> dict[str, Any]:
    """Transfer-function analysis of every D-LinOSS layer and direction of ``model``.

    Parameters
    ----------
    model : Spektron
        A model with a D-LinOSS backbone (any device; it is not modified).
    spacing_cm : float
        Δν̃, the sample spacing the backbone sees (:func:`sample_spacing_cm`).
    n_freq : int
        Number of frequencies ω = linspace(0, π, n_freq) for the responses.

    Returns
    -------
    dict
        ``spacing_cm``, ``stride``, ``n_freq``, ``omega`` (F,) rad/sample, ``frequency`` (F,)
        cycles per cm⁻¹, ``nyquist`` (cycles per cm⁻¹), ``combine``, ``bidirectional`` and
        ``layers``: one dict per layer in depth order with ``index``, ``directions``
        ({"forward": ..., "backward": ...}: every field of :data:`SCALAR_FIELDS` as (P,),
        ``numerator``/``denominator`` (P, 3) in powers of z⁻¹, ``magnitude_db`` and ``phase``
        (P, F), ``gain_rms_db`` (F,) of the core u → y), and ``total`` (``gain_rms_db`` (F,)
        of the whole linear layer on the original axis). All arrays are float64 numpy.
    """
    if not (math.isfinite(spacing_cm) and spacing_cm > 0):
        raise ConfigError(f"spacing_cm must be a positive number, got {spacing_cm!r}")
    if n_freq < 2:
        raise ConfigError(f"n_freq must be >= 2, got {n_freq}")
    layers = dlinoss_layers(model)
    omega = torch.linspace(0.0, math.pi, n_freq, dtype=torch.float64)
    cfg = layers[0].cfg
    out: dict[str, Any] = {
        "spacing_cm": float(spacing_cm),
        "stride": int(model.cfg.embedding.stride),
        "n_freq": int(n_freq),
        "omega": omega.numpy(),
        "frequency": omega.numpy() / (2.0 * math.pi * spacing_cm),
        "nyquist": 1.0 / (2.0 * spacing_cm),
        "combine": cfg.combine if cfg.bidirectional else "none",
        "bidirectional": bool(cfg.bidirectional),
        "layers": [],
    }
    for i, layer in enumerate(layers):
        dirs, resp, mats = {}, [], []
        proj = None if layer.proj is None else layer.proj.weight.detach().double().cpu().numpy()
        for k, (name, core) in enumerate(layer.cores().items()):
            core_cpu = _cpu_copy(core)
            w = core_cpu.coupling_matrices().numpy()  # (P, H, H)
            d, h = _oscillators(core_cpu, w, omega, spacing_cm)  # h: (F, P)
            r_dir = np.concatenate((h, np.ones((n_freq, 1))), axis=1)  # (F, P + 1)
            m_dir = _direction_mats(core_cpu, w)  # (P + 1, H, H)
            d["gain_rms_db"] = _gram_rms_gain_db(r_dir, m_dir)
            if proj is not None:  # how the oscillator reaches the layer's output
                hh = m_dir.shape[-1]
                m_dir = proj[:, k * hh : (k + 1) * hh] @ m_dir  # (P + 1, H, H)
                d["coupling_norm_in_layer"] = np.linalg.norm(m_dir[:-1], axis=(1, 2))
            resp.append(r_dir if name == "forward" else r_dir.conj())  # backward: reversed axis
            mats.append(m_dir)
            dirs[name] = d
        total = _gram_rms_gain_db(np.concatenate(resp, axis=1), np.concatenate(mats, axis=0))
        out["layers"].append({"index": i, "directions": dirs, "total": {"gain_rms_db": total}})
    return out


@torch.no_grad()
def coupling_matrices(model: Spektron) -> dict[tuple[int, str], np.ndarray]:
    """{(layer index, direction): W (P, H_out, H_in) float64}, W_p = Re(C_{:,p} B_{p,:}).

    The core's own coupling (before a "concat" projection), for NPZ files.
    """
    return {
        (i, name): _cpu_copy(core).coupling_matrices().numpy()
        for i, layer in enumerate(dlinoss_layers(model))
        for name, core in layer.cores().items()
    }


def analyse_checkpoint(path: str | os.PathLike, n_freq: int = 512) -> dict[str, Any]:
    """:func:`analyse_model` of a Spektron model checkpoint (e.g. ``best.pt``, ``init.pt``).

    The grid comes from ``checkpoint["extra"]["grid"]`` (n_points, lo, hi), the default grid
    when absent; the stride from the model config. Adds ``source`` (the path) and ``grid``.
    Raises :class:`~spektron.errors.CheckpointError` for unreadable checkpoints, a backbone
    other than D-LinOSS or an invalid grid.
    """
    state = read_checkpoint(path)
    backbone = state["config"].get("backbone")
    if backbone != "dlinoss":
        raise CheckpointError(
            f"{path}: transfer-function analysis needs a D-LinOSS backbone, the checkpoint has "
            f"{backbone!r}"
        )
    extra = state.get("extra") or {}
    grid = extra.get("grid") if isinstance(extra, dict) else None
    model = Spektron.from_checkpoint_state(state, source=str(path))
    try:
        spacing = sample_spacing_cm(grid, model.cfg.embedding.stride)
    except ConfigError as e:
        raise CheckpointError(f"{path}: extra['grid'] is invalid: {e}") from e
    out = analyse_model(model, spacing, n_freq)
    out["source"] = str(path)
    out["grid"] = dict(DEFAULT_GRID if grid is None else grid)
    return out


def response_from_coefficients(
    numerator: np.ndarray, denominator: np.ndarray, omega: np.ndarray
) -> np.ndarray:
    """H_p(e^{iω}) from the coefficients in powers of z⁻¹: (P, 3), (P, 3), (F,) → (P, F) complex.

    Lets figures and tables rebuild every response from a JSON file (no stored (P, F) arrays).
    """
    zinv = np.exp(-1j * np.asarray(omega, float))[None, :, None] ** np.arange(3)  # (1, F, 3)
    num = (zinv * np.asarray(numerator, float)[:, None, :]).sum(-1)  # (P, F)
    den = (zinv * np.asarray(denominator, float)[:, None, :]).sum(-1)  # (P, F)
    return num / den


# (P, F) per-oscillator responses: large (12 cores × 128 × 512 per default model), and exactly
# rebuilt from the coefficients by response_from_coefficients(), so to_json() leaves them out.
RESPONSE_FIELDS: tuple[str, ...] = ("magnitude_db", "phase")


def to_json(analysis: dict[str, Any], responses: bool = False) -> dict[str, Any]:
    """A JSON-able copy (numpy → lists; NaN/inf stay floats, written as NaN/Infinity by
    ``json``), without the (P, F) :data:`RESPONSE_FIELDS` unless ``responses``."""

    def conv(obj: Any, key: str = "") -> Any:
        if isinstance(obj, dict):
            return {k: conv(v, k) for k, v in obj.items() if responses or k not in RESPONSE_FIELDS}
        if isinstance(obj, (list, tuple)):
            return [conv(v) for v in obj]
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        if isinstance(obj, np.generic):
            return obj.item()
        return obj

    return conv(analysis)


def from_json(data: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`to_json`: lists of numbers become float64 arrays again."""

    def conv(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: conv(v) for k, v in obj.items()}
        if isinstance(obj, list) and not any(isinstance(v, dict) for v in obj):
            return np.asarray(obj, dtype=np.float64)
        if isinstance(obj, list):
            return [conv(v) for v in obj]
        return obj

    return conv(data)


def oscillator_table(analysis: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (layer, direction, oscillator) with the scalar fields (for CSV/JSON).

    Each row: ``layer``, ``direction``, ``oscillator``, every field of :data:`SCALAR_FIELDS`
    (and ``coupling_norm_in_layer`` for "concat" layers), ``numerator`` and ``denominator``
    (lists of 3 coefficients in powers of z⁻¹). Values are Python floats (NaN/inf kept).
    """
    rows = []
    for layer in analysis["layers"]:
        for name, d in layer["directions"].items():
            fields = [f for f in (*SCALAR_FIELDS, "coupling_norm_in_layer") if f in d]
            for p in range(len(d["r"])):
                row: dict[str, Any] = {"layer": layer["index"], "direction": name, "oscillator": p}
                row.update({f: float(d[f][p]) for f in fields})
                row["numerator"] = [float(c) for c in d["numerator"][p]]
                row["denominator"] = [float(c) for c in d["denominator"][p]]
                rows.append(row)
    return rows


__all__ = [
    "DEFAULT_GRID",
    "FIELD_UNITS",
    "RESPONSE_FIELDS",
    "SCALAR_FIELDS",
    "analyse_checkpoint",
    "analyse_model",
    "coupling_matrices",
    "dlinoss_layers",
    "from_json",
    "oscillator_table",
    "response_from_coefficients",
    "sample_spacing_cm",
    "to_json",
]
