"""Point group and centre of inversion of a 3-D geometry (plain NumPy, with a distance tolerance).

A symmetry operation R (3×3 orthogonal, about the centroid) is accepted when it maps every atom
onto an atom of the same element within ``tol`` Å:

    max_i min_{j: Z_j = Z_i} ‖R x_i − x_j‖ < tol.

Every symmetry element passes through the centroid (any operation permutes equal atoms, so it
fixes their mean). Candidate directions are complete for finite point groups, following the
search strategy of the classic symmetry finders (e.g. Beruski & Vidal, J. Comput. Chem. 35
(2014) 290, "Algorithms for computer detection of symmetry elements in molecular systems";
pymatgen's ``PointGroupAnalyzer``):

- a proper axis Cₙ either passes through an atom (candidate: the atom's direction), or maps a
  pair of equal atoms onto each other with a non-zero midpoint (candidate: the midpoint), or
  sends atoms to their antipodes (candidate: xᵢ × xⱼ of two such atoms, or, when all atoms lie
  in the plane perpendicular to it, a principal axis of the gyration tensor Σ xᵢxᵢᵀ); an axis of
  order n ≥ 3 makes the gyration tensor a symmetric top about it (a principal axis) unless the
  tensor is spherical, where the normals of planes through a reference atom and two more equal,
  equidistant atoms are added (a Cₙ maps the reference r to r, g·r, g²·r);
- a mirror either swaps two equal atoms (normal ∥ xᵢ − xⱼ) or contains them (normal ∥ xᵢ × xⱼ,
  or the principal axis of a planar molecule);
- an improper axis S₂ₙ coincides with a proper axis Cₙ (S₂ₙ² = Cₙ); S₂ = inversion.

Pairs are taken within classes of equal atoms (same element, same distance from the centroid,
which every operation maps onto themselves): all pairs for small classes, the pairs of two
reference atoms for large ones (an operation moves a reference or keeps it on the element), so
the candidate count grows linearly, not quadratically, with highly symmetric clusters. Candidates
carry the positional noise of single atoms: an operation that misses by less than a few ``tol``
is refined once (least-squares axis of the best orthogonal map onto the atoms' images, Kabsch)
and tested again.

Each candidate is tested for C₂…C₁₂ (all orders at once, vectorised). The group follows from the
elements found (Schoenflies symbols): no axis → C1/Cs/Ci; several axes of order ≥ 3 → T/Td/Th,
O/Oh, I/Ih; otherwise the main axis Cₙ (preferring the one carrying S₂ₙ) with n perpendicular
C₂ → Dₙ/Dₙh/Dₙd, else Cₙ/Cₙv/Cₙh/S₂ₙ. Linear molecules are C∞v or D∞h. When the counts of
elements do not match the group they imply (tolerance too loose or too tight for the geometry),
"unknown" is returned rather than a wrong group.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import combinations

import numpy as np

# Highest rotation order searched. Molecules of QM9 size have at most C6 (benzene) outside the
# linear case; 12 leaves room for larger rings.
MAX_AXIS_ORDER = 12
# Cosine below which two directions are distinct symmetry elements (3°): distinct elements of
# one group differ by at least 180°/MAX_AXIS_ORDER = 15°.
_SAME_DIRECTION = np.cos(np.deg2rad(3.0))
# Cosine above which two candidate directions are tested once (0.5°).
_SAME_CANDIDATE = np.cos(np.deg2rad(0.5))
# Two directions are perpendicular when |cos| is below this (3°).
_PERPENDICULAR = np.sin(np.deg2rad(3.0))
# Largest number of distances held at once (K operations × N² atom pairs): bounds memory.
_CHUNK = 2_000_000
# Classes of equal atoms up to this size contribute all their pairs as candidates.
_SMALL_CLASS = 8
# Operations missing by less than this many tolerances get their axis refined and are retested.
_LOOSE = 4.0
# Relative spread of the gyration-tensor eigenvalues below which it counts as spherical.
_SPHERICAL_REL = 0.02


@dataclass
class SymmetryElements:
    """Symmetry elements found for a geometry (unit vectors through the centroid).

    ``axes`` holds (direction, order) for every proper rotation axis (order ≥ 2), ``mirrors`` the
    mirror-plane normals, ``improper`` (direction, n) for every Sₙ axis found (n = 2·order of
    the proper axis it lies on), ``inversion`` whether the centroid is a centre of inversion.
    """

    axes: list[tuple[np.ndarray, int]] = field(default_factory=list)
    mirrors: list[np.ndarray] = field(default_factory=list)
    improper: list[tuple[np.ndarray, int]] = field(default_factory=list)
    inversion: bool = False
    linear: bool = False


def _prepare(labels: Sequence, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(coords, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"coords must have shape (N, 3), got {x.shape}")
    lab = np.asarray([str(v) for v in labels])
    if lab.shape[0] != x.shape[0]:
        raise ValueError(f"{lab.shape[0]} labels for {x.shape[0]} atoms")
    return lab, x - x.mean(axis=0)


def _images(rots: np.ndarray, x: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest equal atom of every image: permutation (K, N) and worst displacement (K,) in Å."""
    chunk = max(1, _CHUNK // max(len(x) ** 2, 1))  # bound the (K, N, N) distance tensor
    perms, devs = [], []
    sq = (x * x).sum(axis=1)  # (N,)
    for k0 in range(0, len(rots), chunk):
        y = np.einsum("kab,nb->kna", rots[k0 : k0 + chunk], x)  # (K, N, 3)
        # Squared distances ‖y‖² + ‖x‖² − 2 y·x (‖y‖ = ‖x‖ for orthogonal maps), via BLAS.
        d2 = (sq[:, None] + sq[None, :])[None] - 2.0 * (y @ x.T)  # (K, N, N)
        d2 = np.where(same[None], d2, np.inf)
        perm = d2.argmin(axis=2)  # (K, N)
        perms.append(perm)
        worst = np.take_along_axis(d2, perm[..., None], axis=2)[..., 0].max(axis=1)
        devs.append(np.sqrt(np.maximum(worst, 0.0)))
    if not perms:
        return np.zeros((0, len(x)), dtype=int), np.zeros(0)
    return np.concatenate(perms), np.concatenate(devs)


def _ops_ok(rots: np.ndarray, x: np.ndarray, same: np.ndarray, tol: float) -> np.ndarray:
    """Which of the operations ``rots`` (K, 3, 3) map the structure onto itself within tol."""
    return _images(rots, x, same)[1] < tol


def _best_orthogonal(x: np.ndarray, y: np.ndarray, proper: bool) -> np.ndarray:
    """Orthogonal R (det +1 or −1) minimising Σ‖R xᵢ − yᵢ‖² (Kabsch)."""
    u, _, vt = np.linalg.svd(y.T @ x)
    d = np.sign(np.linalg.det(u @ vt)) * (1.0 if proper else -1.0)
    return u @ np.diag([1.0, 1.0, d]) @ vt


def _find_ops(
    dirs: np.ndarray,
    make: Callable[[np.ndarray], np.ndarray],  # (A, 3) directions → (A, 3, 3) operations
    proper: bool,
    x: np.ndarray,
    same: np.ndarray,
    tol: float,
) -> list[np.ndarray]:
    """Directions d (refined) for which the operation ``make(d)`` is a symmetry within ``tol``.

    Candidate directions come from single atoms or pairs and carry their positional noise, so
    an operation that misses by less than ``_LOOSE``·tol is refined once: the best orthogonal
    map onto the atoms' images (Kabsch) gives a least-squares axis, which is tested again.
    """
    if len(dirs) == 0:
        return []
    perm, dev = _images(make(dirs), x, same)
    found = [d for d, e in zip(dirs, dev, strict=True) if e < tol]
    retry = [
        (d, p)
        for d, p, e in zip(dirs, perm, dev, strict=True)
        if tol <= e < _LOOSE * tol and len(set(p.tolist())) == len(x)
    ]
    if retry:
        refined = []
        for d, p in retry:
            r = _best_orthogonal(x, x[p], proper)
            _, v = np.linalg.eigh(0.5 * (r + r.T))
            a = v[:, -1] if proper else v[:, 0]  # rotation axis (+1) / improper axis (−1)
            refined.append(a if a @ d >= 0 else -a)
        refined = np.array(refined)
        ok = _ops_ok(make(refined), x, same, tol)
        found += [d for d, good in zip(refined, ok, strict=True) if good]
    return found


def _rotations(axes: np.ndarray, angle: float) -> np.ndarray:
    """(A, 3, 3) Rodrigues rotations by ``angle`` about unit ``axes`` (A, 3)."""
    a = np.asarray(axes, dtype=np.float64).reshape(-1, 3)
    k = np.zeros((len(a), 3, 3))
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -a[:, 2], a[:, 1], -a[:, 0]
    k -= k.transpose(0, 2, 1)
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


def _reflections(normals: np.ndarray) -> np.ndarray:
    """(A, 3, 3) mirrors through the planes with unit ``normals`` (A, 3)."""
    n = np.asarray(normals, dtype=np.float64).reshape(-1, 3)
    return np.eye(3) - 2.0 * n[:, :, None] * n[:, None, :]


def _impropers(axes: np.ndarray, angle: float) -> np.ndarray:
    """(A, 3, 3) rotation-reflections: rotation by ``angle``, then the perpendicular mirror."""
    return _reflections(axes) @ _rotations(axes, angle)


def _max_orders(axes: np.ndarray, x: np.ndarray, same: np.ndarray, tol: float) -> np.ndarray:
    """(A,) upper bound of the rotation order about each axis (cheap necessary condition).

    A Cₙ maps every off-axis atom onto n distinct equal atoms at the same height along the axis
    and the same distance from it, so n ≤ the number of such partners of every off-axis atom.
    """
    slack = 2 * _LOOSE * tol
    chunk = max(1, _CHUNK // max(len(x) ** 2, 1))
    out = []
    for k0 in range(0, len(axes), chunk):
        h = axes[k0 : k0 + chunk] @ x.T  # (A, N) height along the axis
        rho = np.sqrt(np.maximum((x * x).sum(1)[None, :] - h * h, 0.0))  # (A, N) distance to it
        partners = (
            same[None]
            & (np.abs(h[:, :, None] - h[:, None, :]) < slack)
            & (np.abs(rho[:, :, None] - rho[:, None, :]) < slack)
        ).sum(-1)  # (A, N)
        out.append(np.where(rho > tol, partners, MAX_AXIS_ORDER).min(axis=1))
    return np.concatenate(out) if out else np.zeros(0, dtype=int)


def _unique_dirs(vs: np.ndarray, same_cos: float = _SAME_DIRECTION) -> np.ndarray:
    """Normalise and de-duplicate directions (v and −v are the same), keeping the first."""
    vs = np.asarray(vs, dtype=np.float64).reshape(-1, 3)
    norm = np.linalg.norm(vs, axis=1)
    u = vs[norm > 1e-8] / norm[norm > 1e-8, None]
    kept = np.zeros((0, 3))
    for b0 in range(0, len(u), 512):  # blocks bound the (A, A) comparison matrix
        blk = u[b0 : b0 + 512]
        if len(kept):
            blk = blk[(np.abs(blk @ kept.T) < same_cos).all(axis=1)]
        close = np.abs(blk @ blk.T) >= same_cos
        keep = np.zeros(len(blk), dtype=bool)
        taken = np.zeros(len(blk), dtype=bool)
        for i in range(len(blk)):
            if not taken[i]:
                keep[i] = True
                taken |= close[i]
        kept = np.concatenate([kept, blk[keep]])
    return kept


def is_linear(coords: np.ndarray, tol: float = 0.05) -> bool:
    """True when every atom lies within ``tol`` Å of one straight line (always for ≤ 2 atoms)."""
    x = np.asarray(coords, dtype=np.float64)
    x = x - x.mean(axis=0)
    if len(x) <= 2:
        return True
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    off = x - np.outer(x @ vt[0], vt[0])  # (N, 3) distance from the principal line
    return bool(np.linalg.norm(off, axis=1).max() < tol)


def inversion_permutation(
    labels: Sequence, coords: np.ndarray, tol: float = 0.05
) -> np.ndarray | None:
    """Atom permutation of the inversion through the centroid, or None when there is none.

    Returns ``perm`` with ``x[perm[i]] ≈ 2c − x[i]`` (c the centroid) and equal elements, a
    bijection; None when some atom has no image within ``tol`` Å.
    """
    lab, x = _prepare(labels, coords)
    d = np.linalg.norm(-x[:, None, :] - x[None, :, :], axis=-1)  # (N, N)
    d = np.where(lab[:, None] == lab[None, :], d, np.inf)
    perm = d.argmin(axis=1)
    if d[np.arange(len(x)), perm].max() >= tol or len(set(perm.tolist())) != len(x):
        return None
    return perm


def has_inversion_centre(labels: Sequence, coords: np.ndarray, tol: float = 0.05) -> bool:
    """Whether the geometry has a centre of inversion (within ``tol`` Å)."""
    return inversion_permutation(labels, coords, tol) is not None


def _classes(lab: np.ndarray, radius: np.ndarray, tol: float) -> list[np.ndarray]:
    """Partition off-centre atoms into classes of equal element and equal distance from the
    centroid (gaps > 2·tol split); every symmetry operation maps each class onto itself."""
    out = []
    for el in np.unique(lab):
        idx = np.flatnonzero((lab == el) & (radius > tol))
        idx = idx[np.argsort(radius[idx], kind="stable")]
        if len(idx):
            out += np.split(idx, np.flatnonzero(np.diff(radius[idx]) > 2 * tol) + 1)
    return out


def _candidates(
    lab: np.ndarray, x: np.ndarray, evecs: np.ndarray, spherical: bool, tol: float
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate rotation axes and mirror normals (unit vectors), complete for point groups.

    Per class of equal atoms: every pair for small classes; for large ones only the pairs of
    two reference atoms r₁, r₂ (not parallel) with the others, plus r₁ × r₂ — an operation
    moves r₁ (or r₂) to a partner in the class, or fixes both (the element then contains both,
    or, for a C₂ that sends both to their antipodes, is perpendicular to both).
    """
    radius = np.linalg.norm(x, axis=1)
    classes = _classes(lab, radius, tol)
    pairs, extra = [], []
    for c in classes:
        if len(c) <= _SMALL_CLASS:
            pairs += list(combinations(c.tolist(), 2))
            continue
        r1 = c[0]
        r2 = c[np.argmax(np.linalg.norm(np.cross(x[r1], x[c]), axis=1))]
        pairs += [(r1, j) for j in c if j != r1] + [(r2, j) for j in c if j not in (r1, r2)]
        extra.append(np.cross(x[r1], x[r2]))
    pi, pj = np.array(pairs, dtype=int).reshape(-1, 2).T
    mid = 0.5 * (x[pi] + x[pj])
    extra_v = np.array(extra).reshape(-1, 3)
    # Directions through atoms and midpoints first: where the gyration tensor is degenerate its
    # eigenvectors are arbitrary within the degenerate plane and must not shadow them.
    cand = [x[radius > tol], mid[np.linalg.norm(mid, axis=1) > tol], extra_v, evecs.T]
    big = [c for c in classes if len(c) >= 3]
    if spherical and big:
        # Axes of order ≥ 3 of a spherical top: a Cₙ through the centroid maps a reference
        # atom r (off the axis) to r, g·r, g²·r, whose plane is perpendicular to the axis.
        c = min(big, key=len)
        r, rest = c[0], c[1:]
        j, k = np.array(list(combinations(rest.tolist(), 2))).T
        cand.append(np.cross(x[j] - x[r], x[k] - x[r]))
    axes = _unique_dirs(np.concatenate(cand), _SAME_CANDIDATE)
    normals = _unique_dirs(np.concatenate([x[pi] - x[pj], extra_v, evecs.T]), _SAME_CANDIDATE)
    return axes, normals


def symmetry_elements(labels: Sequence, coords: np.ndarray, tol: float = 0.05) -> SymmetryElements:
    """Find the proper axes, mirror planes, improper axes and inversion centre of a geometry.

    Parameters
    ----------
    labels : (N,) element symbols or atomic numbers (only equality matters).
    coords : (N, 3) positions in Å.
    tol : largest displacement (Å) of an atom from its image under an accepted operation.
    """
    lab, x = _prepare(labels, coords)
    same = lab[:, None] == lab[None, :]
    el = SymmetryElements()
    el.inversion = bool(_ops_ok(-np.eye(3)[None], x, same, tol)[0])
    if len(x) == 1 or is_linear(x, tol):
        el.linear = True
        return el

    evals, evecs = np.linalg.eigh(x.T @ x)  # gyration tensor; eigenvalues ascending
    spherical = (evals[-1] - evals[0]) <= _SPHERICAL_REL * evals[-1]
    axes, normals = _candidates(lab, x, evecs, spherical, tol)

    # Proper axes, every order; an axis's order is the largest n found on it.
    found: list[tuple[np.ndarray, int]] = []
    bound = _max_orders(axes, x, same, tol)
    for n in range(2, min(MAX_AXIS_ORDER, int(bound.max(initial=1))) + 1):
        rot_n = partial(_rotations, angle=2 * np.pi / n)
        found += [(d, n) for d in _find_ops(axes[bound >= n], rot_n, True, x, same, tol)]
    for d, n in sorted(found, key=lambda t: -t[1]):
        if all(abs(float(d @ a)) < _SAME_DIRECTION for a, _ in el.axes):
            el.axes.append((d, n))

    el.mirrors = list(_unique_dirs(_find_ops(normals, _reflections, False, x, same, tol)))

    # Improper axes S2n along each Cn.
    for a, n in el.axes:
        s2n = _find_ops(a[None], partial(_impropers, angle=np.pi / n), False, x, same, tol)
        if s2n:
            el.improper.append((s2n[0], 2 * n))
    return el


def _classify(el: SymmetryElements) -> str:
    if el.linear:
        return "D∞h" if el.inversion else "C∞v"
    n_mirror = len(el.mirrors)
    if not el.axes:
        if n_mirror == 1 and not el.inversion:
            return "Cs"
        if n_mirror == 0:
            return "Ci" if el.inversion else "C1"
        return "unknown"

    high = [n for _, n in el.axes if n >= 3]
    if len(high) > 1:
        n_c2 = sum(1 for _, n in el.axes if n % 2 == 0)
        if 5 in high:
            name, n_ax, n_m = "I", 31, 15  # 6 C5 + 10 C3 + 15 C2
        elif 4 in high:
            name, n_ax, n_m = "O", 13, 9  # 3 C4 + 4 C3 + 6 C2
        else:
            name, n_ax, n_m = "T", 7, 6  # 4 C3 + 3 C2 (Td: 6 σd; Th: 3 σh)
        if len(el.axes) != n_ax or n_c2 == 0:
            return "unknown"
        if el.inversion:
            expect = 3 if name == "T" else n_m
            return name + "h" if n_mirror == expect else "unknown"
        if name == "T" and n_mirror == 6:
            return "Td"
        return name if n_mirror == 0 else "unknown"

    n = max(k for _, k in el.axes)
    mains = [a for a, k in el.axes if k == n]
    improper_dirs = [a for a, _ in el.improper]

    def _has_s(a: np.ndarray) -> bool:
        return any(abs(float(a @ b)) >= _SAME_DIRECTION for b in improper_dirs)

    main = next((a for a in mains if _has_s(a)), mains[0])
    perp_c2 = [a for a, k in el.axes if k == 2 and abs(float(a @ main)) < _PERPENDICULAR]
    sigma_h = any(abs(float(m @ main)) >= _SAME_DIRECTION for m in el.mirrors)
    sigma_v = [m for m in el.mirrors if abs(float(m @ main)) < _PERPENDICULAR]
    if perp_c2:
        if len(perp_c2) != n:
            return "unknown"
        if sigma_h:
            return f"D{n}h" if len(sigma_v) == n and n_mirror == n + 1 else "unknown"
        if n_mirror == n:
            return f"D{n}d"
        return f"D{n}" if n_mirror == 0 else "unknown"
    if sigma_h:
        return f"C{n}h" if n_mirror == 1 else "unknown"
    if n_mirror:
        return f"C{n}v" if len(sigma_v) == n_mirror == n else "unknown"
    if _has_s(main) and not (n % 2 == 1 and not el.inversion):
        return f"S{2 * n}"
    return f"C{n}"


def point_group(labels: Sequence, coords: np.ndarray, tol: float = 0.05) -> str:
    """Schoenflies point group of a geometry ("C1", "C2v", "D6h", "Td", "D∞h", ..., "unknown").

    Parameters
    ----------
    labels : (N,) element symbols or atomic numbers.
    coords : (N, 3) positions in Å.
    tol : distance tolerance in Å (an atom's image must lie within ``tol`` of an equal atom).
    """
    lab, _ = _prepare(labels, coords)
    if len(lab) == 1:
        return "Kh"
    return _classify(symmetry_elements(labels, coords, tol))
