"""Harmonic vibrational analysis shared by the simulator and the QM9S converters.

Given a Cartesian Hessian H (3N×3N), masses m and coordinates x (Wilson, Decius & Cross;
Gaussian's "Vibrational analysis" white paper):

    H̃ = M^-1/2 H M^-1/2, projected onto the orthogonal complement of the mass-weighted rigid
    translations and rotations (6, or 5 for a linear molecule), and diagonalised: H̃ l_k = λ_k l_k
    ν_k = c_unit · sign(λ_k) √|λ_k|            (c_unit converts √(Hessian unit / amu) to cm⁻¹)
    L_k = M^-1/2 l_k                           Cartesian displacement per unit normal coordinate

IR intensity from the dipole derivative along mode k, I_k = 42.2561 · |∂μ/∂Q_k|² km/mol with
∂μ/∂Q_k in D/(Å·√amu). Raman activity from the polarizability derivative α′ = ∂α/∂Q_k:

    S_k = 45 a′² + 7 γ′²,   a′ = tr(α′)/3,
    γ′² = ½[(α′xx−α′yy)² + (α′yy−α′zz)² + (α′zz−α′xx)²] + 3(α′xy² + α′xz² + α′yz²).
"""

from __future__ import annotations

import numpy as np

#: IR intensity, (D/Å)²/amu → km/mol (Gaussian's constant, also used by QM9S/DetaNet).
IR_TO_KM_MOL = 42.2561
#: Dipole derivative, e (elementary charge · Å / Å) → D/Å (1 e·Å = 4.80320 D).
E_ANGSTROM_TO_DEBYE = 4.80320


def atomic_masses(atomic_numbers, kind: str = "isotopic") -> np.ndarray:
    """(N,) masses (amu) by atomic number: most abundant isotope (as the harmonic analyses of
    QM9 and QM9S) or, with ``kind="average"``, the standard atomic weight."""
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    get = table.GetMostCommonIsotopeMass if kind == "isotopic" else table.GetAtomicWeight
    z = np.asarray(atomic_numbers, dtype=np.int64).reshape(-1)
    if np.any(z < 1) or np.any(z > 118):
        raise ValueError(f"atomic numbers must be in 1..118, got {sorted(set(z.tolist()))}")
    return np.array([get(int(a)) for a in z], dtype=np.float64)


def rigid_motion_basis(masses: np.ndarray, coords: np.ndarray, linear: bool) -> np.ndarray:
    """(3N, 6 or 5) orthonormal basis of mass-weighted translations and rotations.

    For a linear molecule the rotation about the molecular axis (the principal axis of smallest
    moment) moves no atom and is left out.
    """
    x = np.asarray(coords, dtype=np.float64).reshape(-1, 3)
    m = np.asarray(masses, dtype=np.float64).reshape(-1)
    n = len(x)
    sm = np.sqrt(m)
    r = x - (m[:, None] * x).sum(0) / m.sum()  # (N, 3) about the centre of mass
    inertia = (
        m[:, None, None]
        * (np.einsum("ni,ni->n", r, r)[:, None, None] * np.eye(3) - r[:, :, None] * r[:, None, :])
    ).sum(0)
    _, axes = np.linalg.eigh(inertia)  # ascending: axes[:, 0] is the axis of a linear molecule
    vecs = []
    for k in range(3):
        t = np.zeros((n, 3))
        t[:, k] = 1.0
        vecs.append((sm[:, None] * t).reshape(-1))
    for k in range(1 if linear else 0, 3):
        vecs.append((sm[:, None] * np.cross(axes[:, k], r)).reshape(-1))
    q, _ = np.linalg.qr(np.array(vecs).T)
    return q


def harmonic_modes(
    hessian: np.ndarray, masses: np.ndarray, coords: np.ndarray, linear: bool, unit_to_cm: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frequencies and modes of a Cartesian Hessian with rigid motions projected out.

    Parameters
    ----------
    hessian : (3N, 3N) in energy/Å² (symmetrised here), coordinate 3a + c = atom a, axis c.
    masses : (N,) amu.
    coords : (N, 3) Å; they define the rotations.
    linear : whether the molecule is linear (3N − 5 modes instead of 3N − 6).
    unit_to_cm : √(energy/Å²/amu) → cm⁻¹ (108.59 for kcal/mol, 521.47 for eV).

    Returns
    -------
    freqs : (K,) cm⁻¹ ascending, negative = imaginary.
    l_mw : (3N, K) orthonormal mass-weighted eigenvectors.
    cart : (3N, K) Cartesian displacements L = M^-1/2 l.
    """
    h = np.asarray(hessian, dtype=np.float64)
    m = np.asarray(masses, dtype=np.float64).reshape(-1)
    n3 = 3 * len(m)
    if h.shape != (n3, n3) or np.asarray(coords).size != n3:
        raise ValueError(f"hessian {h.shape} and coords do not describe {len(m)} atoms")
    if np.any(m <= 0):
        raise ValueError("masses must be > 0")
    inv_sm = 1.0 / np.sqrt(np.repeat(m, 3))  # (3N,)
    h_mw = 0.5 * (h + h.T) * inv_sm[:, None] * inv_sm[None, :]  # (3N, 3N)
    d = rigid_motion_basis(m, coords, linear)  # (3N, R)
    u, _, _ = np.linalg.svd(d, full_matrices=True)
    b = u[:, d.shape[1] :]  # (3N, K) orthonormal complement: internal motions
    lam, v = np.linalg.eigh(b.T @ h_mw @ b)
    l_mw = b @ v
    freqs = np.sign(lam) * np.sqrt(np.abs(lam)) * unit_to_cm
    return freqs, l_mw, l_mw * inv_sm[:, None]


def ir_intensity(dmu_dq: np.ndarray) -> np.ndarray:
    """(K,) km/mol from ∂μ/∂Q (K, 3) in D/(Å·√amu)."""
    return IR_TO_KM_MOL * np.einsum("kc,kc->k", dmu_dq, dmu_dq)


def raman_activity(xx, xy, yy, xz, yz, zz) -> np.ndarray:
    """(K,) activity 45 a′² + 7 γ′² from the six components of ∂α/∂Q (each (K,))."""
    mean = (xx + yy + zz) / 3.0
    gamma2 = 0.5 * ((xx - yy) ** 2 + (yy - zz) ** 2 + (zz - xx) ** 2) + 3.0 * (
        xy**2 + xz**2 + yz**2
    )
    return 45.0 * mean**2 + 7.0 * gamma2


def kabsch_rotation(x: np.ndarray, y: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Proper rotation R (3, 3) minimising Σ m_i |R (x_i − x̄) − (y_i − ȳ)|², centres of mass."""
    w = np.asarray(masses, dtype=np.float64)[:, None]
    xc = x - (w * x).sum(0) / w.sum()
    yc = y - (w * y).sum(0) / w.sum()
    h = (w * xc).T @ yc  # (3, 3)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    return vt.T @ np.diag([1.0, 1.0, d]) @ u.T
