"""Error analysis for cross-spectral prediction (E2): mutual-exclusion leak, grouped tables,
symmetry classes and the best / worst molecules.

NumPy in, plain Python / NumPy out; nothing here trains or reads files.

**Mutual-exclusion leak.** For a molecule with a centre of inversion every normal mode is either
g (Raman-active, IR-silent) or u (IR-active, Raman-silent) (Herzberg, *Infrared and Raman
Spectra*, 1945, ch. II.3; Wilson, Decius & Cross, *Molecular Vibrations*, 1955, §7-5). A model
that predicts Raman from IR should therefore put no Raman intensity where the input has its
(u) bands and the truth has none. With the molecule's K stick modes (frequency f_k, intensity
s_k of the *source* kind, i.e. the input spectrum's, and t_k of the *target* kind), a relative
threshold r and a tolerance τ (cm⁻¹):

    active_src(k) ⇔ s_k > r · max_j s_j,    active_tgt(k) ⇔ t_k > r · max_j t_j,
    forbidden F = {f_k : active_src(k), not active_tgt(k), |f_k − f_j| > τ for every j with
                   active_tgt(j)},
    window W = {grid points i : |ν_i − f| ≤ τ for some f ∈ F},
    leak(x) = Σ_{i∈W} max(x_i, 0) / Σ_i max(x_i, 0)   (sums over the L grid points).

The last condition of F keeps a u mode that (accidentally) lies within τ of a g mode out: its
window would hold legitimate target intensity. The leak is a fraction in [0, 1], invariant to a
positive scale of x (so any per-spectrum normalisation gives the same value). It is NaN when W
is empty (no forbidden mode, or none within τ of the grid) or when x has no positive mass. It is
computed for the prediction and, for reference, for the true target spectrum (its Lorentzian
tails give a non-zero floor) and for the input spectrum itself (what the identity copy scores).
Nothing restricts it to centrosymmetric molecules, but only there is the truth's leak small by
a selection rule.

**Grouped tables** (:func:`group_table`): per group (a boolean mask over molecules: a functional
group, a symmetry class, a size bin) the number of molecules and, per metric, the mean over the
group's molecules with a percentile-bootstrap CI (:func:`spektron.evaluation.metrics.
bootstrap_ci`, NaN values dropped). A group with fewer than ``min_count`` molecules keeps its row
with ``too_few = True``, its plain mean and no interval (lo = hi = NaN).

**Symmetry classes** (:func:`symmetry_classes`): see :data:`SYMMETRY_CLASSES` for the mapping.

**Extremes** (:func:`describe_extremes`): the n best and n worst molecules by one metric and how
they differ from all molecules (point groups, centrosymmetric share, functional-group enrichment
= frequency in the set / frequency in all molecules, size).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from spektron.errors import ConfigError, DataError
from spektron.evaluation.metrics import _check_grid, _finite_or_nan_1d, bootstrap_ci

# --------------------------------------------------------------------------- mutual exclusion


def _forbidden_window(
    wavenumber: np.ndarray,
    freq: np.ndarray,
    s: np.ndarray,
    t: np.ndarray,
    tolerance_cm: float,
    rel_threshold: float,
) -> tuple[np.ndarray, int]:
    """(L,) bool window W around the forbidden modes F and |F| (modes whose window touches the
    grid); see the module docstring."""

    def active(x: np.ndarray) -> np.ndarray:
        top = x.max(initial=0.0)
        return x > rel_threshold * top if top > 0 else np.zeros(x.shape, dtype=bool)

    act_s, act_t = active(s), active(t)
    cand = freq[act_s & ~act_t]  # (F0,)
    allowed = freq[act_t]  # (A,)
    if cand.size and allowed.size:
        cand = cand[np.abs(cand[:, None] - allowed[None, :]).min(axis=1) > tolerance_cm]
    near = np.abs(wavenumber[:, None] - cand[None, :]) <= tolerance_cm  # (L, F)
    return near.any(axis=1), int(near.any(axis=0).sum())


def _leak(x: np.ndarray, window: np.ndarray) -> float:
    pos = np.clip(x, 0.0, None)  # (L,)
    total = pos.sum()
    if not window.any() or total <= 0:
        return math.nan
    return float(pos[window].sum() / total)


def mutual_exclusion_leak(
    pred: np.ndarray,
    wavenumber: np.ndarray,
    stick_freq: np.ndarray | Sequence[np.ndarray],
    stick_source: np.ndarray | Sequence[np.ndarray],
    stick_target: np.ndarray | Sequence[np.ndarray],
    *,
    true: np.ndarray | None = None,
    source: np.ndarray | None = None,
    tolerance_cm: float = 10.0,
    rel_threshold: float = 0.01,
) -> dict[str, Any]:
    """Share of predicted intensity at modes the selection rules forbid (module docstring).

    Parameters
    ----------
    pred : np.ndarray
        (L,) one predicted target spectrum, or (N, L) a batch, on ``wavenumber``; finite.
    wavenumber : np.ndarray
        (L,) strictly monotonic grid in cm⁻¹.
    stick_freq, stick_source, stick_target
        The molecule's stick modes: frequencies (cm⁻¹), intensities of the source kind (the
        input spectrum's: IR intensity for IR → Raman) and of the target kind (Raman activity
        for IR → Raman). For one molecule three (K,) arrays; for a batch three sequences of N
        arrays, the n-th of length K_n (ragged, as in the store).
    true : np.ndarray, optional
        True target spectra, same shape as ``pred``: their leak is returned as ``"true"``.
    source : np.ndarray, optional
        Input spectra, same shape as ``pred``: their leak (the identity copy's) is returned as
        ``"source"``.
    tolerance_cm : float
        τ > 0: half-width of the window around each forbidden mode, and the distance within
        which a target-active mode makes a source-active one not forbidden.
    rel_threshold : float
        r in [0, 1): a mode is active in a kind when its intensity exceeds r × the molecule's
        largest intensity of that kind.

    Returns
    -------
    dict
        ``"pred"`` (and ``"true"`` / ``"source"`` when given): leak values, ``"n_forbidden"``:
        number of forbidden modes whose window touches the grid. For a batch (N,) arrays
        (float64, int64), for one molecule Python floats / an int. NaN: no forbidden mode, or a
        spectrum without positive intensity.
    """
    tolerance_cm, rel_threshold = float(tolerance_cm), float(rel_threshold)
    if not (math.isfinite(tolerance_cm) and tolerance_cm > 0):
        raise ConfigError(f"tolerance_cm must be finite and > 0, got {tolerance_cm}")
    if not 0.0 <= rel_threshold < 1.0:
        raise ConfigError(f"rel_threshold must lie in [0, 1), got {rel_threshold}")
    pred = np.asarray(pred, dtype=np.float64)
    single = pred.ndim == 1
    if single:
        stick_freq, stick_source, stick_target = [stick_freq], [stick_source], [stick_target]
    if pred.ndim not in (1, 2):
        raise DataError(f"pred must be (L,) or (N, L), got shape {pred.shape}")
    wavenumber = np.asarray(wavenumber, dtype=np.float64)
    spectra = {"pred": np.atleast_2d(pred)}
    for name, arr in (("true", true), ("source", source)):
        if arr is not None:
            a = np.atleast_2d(np.asarray(arr, dtype=np.float64))
            if a.shape != spectra["pred"].shape:
                raise DataError(f"{name} has shape {a.shape}, pred {spectra['pred'].shape}")
            spectra[name] = a
    n, length = spectra["pred"].shape
    _check_grid(wavenumber, length)
    for name, a in spectra.items():
        if not np.all(np.isfinite(a)):
            raise DataError(f"{name} has {int((~np.isfinite(a)).sum())} non-finite values")
    sticks = [list(stick_freq), list(stick_source), list(stick_target)]
    if any(len(s) != n for s in sticks):
        raise DataError(
            f"stick lists must hold one array per molecule ({n}), got {[len(s) for s in sticks]}"
        )

    out = {name: np.full(n, np.nan) for name in spectra}
    n_forbidden = np.zeros(n, dtype=np.int64)
    for i in range(n):
        f, s, t = (np.asarray(x[i], dtype=np.float64).reshape(-1) for x in sticks)
        if not f.shape == s.shape == t.shape:
            raise DataError(
                f"molecule {i}: stick arrays differ in length ({f.size}, {s.size}, {t.size})"
            )
        window, n_forbidden[i] = _forbidden_window(wavenumber, f, s, t, tolerance_cm, rel_threshold)
        for name, a in spectra.items():
            out[name][i] = _leak(a[i], window)
    result: dict[str, Any] = dict(out)
    result["n_forbidden"] = n_forbidden
    if single:
        return {k: (int(v[0]) if k == "n_forbidden" else float(v[0])) for k, v in result.items()}
    return result


# --------------------------------------------------------------------------- grouped tables


def _mask(values: Any, n: int, name: str) -> np.ndarray:
    m = np.asarray(values)
    if m.shape != (n,):
        raise DataError(f"group {name!r} mask has shape {m.shape}, expected ({n},)")
    if m.dtype != bool:
        if not np.isin(m, (0, 1)).all():
            raise DataError(f"group {name!r} mask must be boolean (or 0/1)")
        m = m.astype(bool)
    return m


def group_table(
    per_molecule: Mapping[str, np.ndarray],
    groups: Mapping[str, np.ndarray],
    metrics: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    min_count: int = 5,
    level: float = 0.95,
) -> list[dict[str, Any]]:
    """Per group: molecule count and each metric's mean with a bootstrap CI.

    Parameters
    ----------
    per_molecule : Mapping[str, np.ndarray]
        Metric name → (N,) per-molecule values (NaN = undefined for that molecule).
    groups : Mapping[str, np.ndarray]
        Group name → (N,) boolean mask (groups may overlap, e.g. functional groups).
    metrics : Sequence[str], optional
        Which metrics to tabulate (default: all of ``per_molecule``).
    n_boot, seed, level
        As in :func:`spektron.evaluation.metrics.bootstrap_ci` (one seed for every cell).
    min_count : int
        Groups with fewer molecules are kept, marked ``too_few``, without intervals.

    Returns
    -------
    list[dict]
        One row per group, in the order of ``groups``: ``group`` (name), ``n`` (molecules in
        the group), ``too_few`` (bool) and ``metrics``: metric → ``{"mean", "lo", "hi", "n"}``
        (``n`` = molecules with a defined value). ``too_few`` rows carry the plain mean and
        lo = hi = NaN; a metric undefined for the whole group has all NaN and n = 0.
    """
    names = list(per_molecule) if metrics is None else list(metrics)
    missing = [m for m in names if m not in per_molecule]
    if missing:
        raise ConfigError(f"metrics not in per_molecule: {missing}; have {sorted(per_molecule)}")
    if int(min_count) != min_count or min_count < 1:
        raise ConfigError(f"min_count must be a positive integer, got {min_count}")
    values = {m: _finite_or_nan_1d(per_molecule[m], m) for m in names}
    sizes = {v.shape[0] for v in values.values()}
    if len(sizes) > 1:
        raise DataError(f"per-molecule metrics differ in length: {sorted(sizes)}")
    n = sizes.pop() if sizes else None
    rows = []
    for gname, raw in groups.items():
        if n is None:
            n = np.asarray(raw).shape[0]
        mask = _mask(raw, n, gname)
        count = int(mask.sum())
        too_few = count < min_count
        cells = {}
        for m in names:
            x = values[m][mask]
            if too_few:
                ok = x[~np.isnan(x)]
                mean = float(ok.mean()) if ok.size else math.nan
                cells[m] = {"mean": mean, "lo": math.nan, "hi": math.nan, "n": int(ok.size)}
            else:
                cells[m] = bootstrap_ci(x, n_boot=n_boot, level=level, seed=seed)
        rows.append({"group": gname, "n": count, "too_few": too_few, "metrics": cells})
    return rows


def label_groups(labels: np.ndarray, order: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Masks ``labels == c`` for every class c (in ``order`` when given, else sorted), e.g. for
    :func:`group_table` over :func:`symmetry_classes`; classes of ``order`` absent from
    ``labels`` get all-False masks (so they appear, with n = 0)."""
    lab = np.asarray(labels).astype(str)
    classes = list(order) if order is not None else sorted(set(lab.tolist()))
    return {c: lab == c for c in classes}


# --------------------------------------------------------------------------- symmetry classes

# Class names, in table order. Mapping from (point group, centrosymmetric flag):
#   "centrosymmetric"  flag 1 (any point group with a centre of inversion: Ci, C2h, D2h, D6h,
#                      D3d, Oh, D∞h, ...); with flag −1 (unknown), a point group containing i;
#   "unknown"          otherwise, point group "" or "unknown";
#   "C1", "Cs"         those groups;
#   "Cn/Cnv (n≥2)"     Cn and Cnv for n ≥ 2, including C∞v (linear, no centre);
#   "other (higher)"   everything else without the flag: Dn, Dnh / Dnd without i, Cnh (odd n),
#                      S4, S8, T, Td, ... A group with i but flag 0 (symmetry finder and
#                      inversion test disagree; not seen, both use one tolerance) lands here too:
#                      the flag decides, because it decides whether modes were made g/u.
SYMMETRY_CLASSES: tuple[str, ...] = (
    "C1",
    "Cs",
    "Cn/Cnv (n≥2)",
    "centrosymmetric",
    "other (higher)",
    "unknown",
)
_CN_CNV = re.compile(r"C(\d+|∞)v?")


def point_group_has_inversion(point_group: str) -> bool:
    """Whether a Schoenflies group contains the inversion: Ci, Cnh and Dnh for even n, Dnd for
    odd n, S2n for odd n (S2 = Ci, S6, ...), Th, Oh, Ih, D∞h, Kh."""
    pg = str(point_group).strip()
    if pg in ("Ci", "Th", "Oh", "Ih", "D∞h", "Kh"):
        return True
    m = re.fullmatch(r"([CDS])(\d+)([hd]?)", pg)
    if not m:
        return False
    kind, order, suffix = m.group(1), int(m.group(2)), m.group(3)
    if kind == "S":
        return suffix == "" and order % 2 == 0 and (order // 2) % 2 == 1
    if suffix == "h":
        return order % 2 == 0
    return kind == "D" and suffix == "d" and order % 2 == 1


def symmetry_classes(point_group: np.ndarray, centrosymmetric: np.ndarray) -> np.ndarray:
    """Map point groups and centrosymmetry flags to :data:`SYMMETRY_CLASSES` (see the mapping
    there).

    Parameters
    ----------
    point_group : (N,) Schoenflies symbols as stored ("" or "unknown" when not known).
    centrosymmetric : (N,) int flags: 1 yes, 0 no, −1 unknown.

    Returns
    -------
    (N,) array of class names (``dtype=object``).
    """
    pgs = [str(p).strip() for p in np.asarray(point_group, dtype=object).reshape(-1)]
    flags = np.asarray(centrosymmetric).reshape(-1)
    if len(pgs) != flags.size:
        raise DataError(f"{len(pgs)} point groups for {flags.size} centrosymmetry flags")
    out = np.empty(len(pgs), dtype=object)
    for i, (pg, flag) in enumerate(zip(pgs, flags.tolist(), strict=True)):
        if flag == 1 or (flag < 0 and point_group_has_inversion(pg)):
            out[i] = "centrosymmetric"
        elif pg in ("", "unknown"):
            out[i] = "unknown"
        elif pg in ("C1", "Cs"):
            out[i] = pg
        elif _CN_CNV.fullmatch(pg):
            out[i] = "Cn/Cnv (n≥2)"
        else:
            out[i] = "other (higher)"
    return out


# --------------------------------------------------------------------------- extremes


def _set_summary(
    idx: np.ndarray,
    metric: np.ndarray,
    pg: list[str],
    cs: np.ndarray,
    fg: np.ndarray,
    fg_names: Sequence[str],
    n_atoms: np.ndarray,
    ref: dict[str, Any] | None,
    top: int,
) -> dict[str, Any]:
    counts = Counter(pg[i] or "unknown" for i in idx.tolist())
    freq = fg[idx].mean(axis=0) if idx.size else np.full(len(fg_names), np.nan)  # (F,)
    size = n_atoms[idx].astype(np.float64)
    out: dict[str, Any] = {
        "indices": idx.tolist(),
        "n": int(idx.size),
        "metric_min": float(metric[idx].min()) if idx.size else math.nan,
        "metric_max": float(metric[idx].max()) if idx.size else math.nan,
        "metric_mean": float(metric[idx].mean()) if idx.size else math.nan,
        "fraction_centrosymmetric": float((cs[idx] == 1).mean()) if idx.size else math.nan,
        "n_atoms_mean": float(size.mean()) if idx.size else math.nan,
        "n_atoms_median": float(np.median(size)) if idx.size else math.nan,
        "point_groups": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
    }
    if ref is None:  # the reference population: no index list (it would be every molecule)
        del out["indices"]
        out["functional_groups"] = {
            name: float(f) for name, f in zip(fg_names, freq.tolist(), strict=True)
        }
        return out
    out["fraction_centrosymmetric_all"] = ref["fraction_centrosymmetric"]
    out["n_atoms_mean_all"] = ref["n_atoms_mean"]
    out["n_atoms_median_all"] = ref["n_atoms_median"]
    groups = {}
    for name, f in zip(fg_names, freq.tolist(), strict=True):
        f_all = ref["functional_groups"][name]
        ratio = f / f_all if f_all > 0 else math.nan
        groups[name] = {"frequency": f, "frequency_all": f_all, "enrichment": ratio}
    out["functional_groups"] = groups
    # The strongest over- and under-represented groups (present in ≥ 1 molecule overall), for
    # one-line summaries.
    ranked = sorted(
        ((g, v["enrichment"]) for g, v in groups.items() if not math.isnan(v["enrichment"])),
        key=lambda kv: (-kv[1], kv[0]),
    )
    out["most_enriched"] = {g: r for g, r in ranked[:top] if r > 1.0}
    out["most_depleted"] = {g: r for g, r in reversed(ranked[-top:]) if r < 1.0}
    return out


def describe_extremes(
    metric: np.ndarray,
    direction: str,
    n: int = 100,
    *,
    point_group: np.ndarray,
    centrosymmetric: np.ndarray,
    fg_flags: np.ndarray,
    fg_names: Sequence[str],
    n_atoms: np.ndarray,
    top: int = 5,
) -> dict[str, Any]:
    """The n best and n worst molecules by ``metric`` and what sets them apart.

    Molecules with a NaN metric are left out (and counted). Order: by value, best first for
    ``best`` and worst first for ``worst``; equal values by ascending index (deterministic, so
    ties at the cut-off keep the lower indices). With fewer than 2n defined values the two sets
    overlap (``overlap`` counts the shared molecules).

    Parameters
    ----------
    metric : (N,) per-molecule values (NaN = undefined, ±inf refused).
    direction : ``"higher"`` or ``"lower"`` (which is better).
    n : size of each set (capped at the number of defined values).
    point_group : (N,) Schoenflies symbols ("" = unknown).
    centrosymmetric : (N,) flags 1 / 0 / −1.
    fg_flags : (N, F) bool functional-group flags; ``fg_names`` their F names.
    n_atoms : (N,) atom counts (with hydrogens, as stored).
    top : number of groups listed in ``most_enriched`` / ``most_depleted``.

    Returns
    -------
    dict
        ``direction``, ``n`` (set size used), ``n_valid``, ``n_nan``, ``overlap`` and three
        summaries ``all`` (every molecule with a defined value), ``best`` and ``worst``, each
        with ``n``, ``indices`` (list into the input arrays; not for ``all``),
        ``metric_min/max/mean``, ``fraction_centrosymmetric``, ``n_atoms_mean``,
        ``n_atoms_median``, ``point_groups`` (symbol → count, most common first) and
        ``functional_groups``: for ``all`` name → frequency; for ``best`` / ``worst`` name →
        ``{"frequency", "frequency_all", "enrichment"}`` (enrichment = frequency /
        frequency_all, NaN where the group never occurs), plus ``most_enriched`` /
        ``most_depleted`` (≤ ``top`` groups with enrichment > 1 / < 1) and the ``*_all``
        reference values of the scalar summaries.
    """
    if direction not in ("higher", "lower"):
        raise ConfigError(f"direction must be 'higher' or 'lower', got {direction!r}")
    if int(n) != n or n < 1:
        raise ConfigError(f"n must be a positive integer, got {n}")
    values = _finite_or_nan_1d(metric, "metric")
    size = values.size
    pg = [str(p) for p in np.asarray(point_group, dtype=object).reshape(-1)]
    cs = np.asarray(centrosymmetric).reshape(-1)
    fg = np.asarray(fg_flags, dtype=bool)
    atoms = np.asarray(n_atoms).reshape(-1)
    names = [str(x) for x in fg_names]
    if fg.ndim != 2 or fg.shape[1] != len(names):
        raise DataError(f"fg_flags must be (N, {len(names)}), got {fg.shape}")
    lengths = {"point_group": len(pg), "centrosymmetric": cs.size, "fg_flags": fg.shape[0]}
    lengths["n_atoms"] = atoms.size
    bad = {k: v for k, v in lengths.items() if v != size}
    if bad:
        raise DataError(f"metric has {size} values but {bad}")

    valid = np.flatnonzero(~np.isnan(values))  # (V,) ascending indices
    k = min(int(n), valid.size)
    v = values[valid]
    ascending = valid[np.lexsort((valid, v))]  # worst→best for "higher"
    descending = valid[np.lexsort((valid, -v))]
    best, worst = (descending, ascending) if direction == "higher" else (ascending, descending)
    best, worst = best[:k], worst[:k]
    ref = _set_summary(valid, values, pg, cs, fg, names, atoms, None, top)
    return {
        "direction": direction,
        "n": k,
        "n_valid": int(valid.size),
        "n_nan": int(size - valid.size),
        "overlap": int(np.intersect1d(best, worst).size),
        "all": ref,
        "best": _set_summary(best, values, pg, cs, fg, names, atoms, ref, top),
        "worst": _set_summary(worst, values, pg, cs, fg, names, atoms, ref, top),
    }
