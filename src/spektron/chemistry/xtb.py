"""GFN2-xTB vibrational analysis through tblite: geometry, Hessian, dipole and polarizability
derivatives for IR and Raman intensities.

What is computed (GFN2-xTB, Bannwarth, Ehlert & Grimme, J. Chem. Theory Comput. 15 (2019)
1652; tblite, https://github.com/tblite/tblite, pinned to 0.8.0):

1. ``xtb_optimise``: minimum of the xTB energy, started from a given geometry (MMFF94 or QM9),
   by SciPy's L-BFGS-B on the analytic energy and gradient (tblite 0.8.0 has no optimiser in its
   Python API) until max |∂E/∂x| < ``opt_gtol`` Eh/bohr.
2. ``xtb_hessian``: central differences of the analytic gradient, H_{:,j} = (g(x + h e_j) −
   g(x − h e_j)) / 2h (h = ``hessian_step`` bohr, 6N gradients), symmetrised, returned in
   kcal/mol/Å² — the unit of the MMFF94 path, so ``simulate.normal_modes`` works unchanged.
   Every displaced SCF restarts from the wavefunction of the undisplaced geometry.
3. ``xtb_field_derivatives``: response to a homogeneous electric field F (atomic units,
   Eh/(e·bohr)). With E(F) = E₀ − μ·F − ½ F·α·F and g = ∂E/∂R:

       μ = −∂E/∂F,  α = ∂μ/∂F = −∂²E/∂F²,
       ∂μ_c/∂R_i = −∂g_i/∂F_c                   (atomic polar tensors, e),
       ∂α_ab/∂R_i = −∂²g_i/∂F_a∂F_b              (bohr² → Å²),

   by central differences in F at the fixed geometry (step f = ``field_step``): the diagonal
   second derivatives from ±f e_a and F = 0, the off-diagonal ones from the four (±f e_a,
   ±f e_b) combinations — 19 single points in all. α itself comes from the SCF dipoles as
   ∂μ/∂F (first differences, less noisy than −∂²E/∂F²), in Å³. Checked against displacement
   finite differences of the dipole and of α (``tests/data/test_xtb.py``).
4. ``xtb_ir_raman``: IR intensities (km/mol) from ∂μ/∂Q_k = Σ_i (∂μ/∂R_i) L_ik (e → D with
   4.80320) and Raman activities 45 a′² + 7 γ′² (Å⁴/amu) from ∂α/∂Q_k, on given normal modes.

Units: coordinates in Å at the interface (bohr inside, 1 bohr = 0.529177210903 Å, CODATA
2018), energies in Eh (1 Eh = 627.509474 kcal/mol), polarizability bohr³ → Å³ (× 0.148184711),
∂α/∂R bohr² → Å² (× 0.529177²), APTs in e (= e·Å/Å, unit-free between bohr and Å).

tblite 0.8.0 quirks this module relies on (hence the exact pin):

* ``Calculator.add("electric-field", F)`` hands F to cffi as ``double*``: a NumPy array raises
  TypeError, a plain list of 3 floats works.
* Fields *accumulate* over ``add`` calls and cannot be removed, so every field value gets a new
  ``Calculator``. The energy contains −μ·F and the gradient includes the field term. (ASE's
  ``electric_field`` argument of the tblite calculator is broken and not used.)
* The default SCF ``accuracy`` 1.0 makes the second field derivatives noisy (up to 100 % errors
  in Raman activities); ``accuracy`` 0.01 with a field step of 1e-3 a.u. is stable to ~0.4 %.

Caveat: GFN2-xTB's minimal basis gives static polarizabilities 2–4× smaller than experiment, so
the Raman activities (and their ratios between molecules) are qualitative; frequencies and IR
intensities are semi-quantitative.

tblite is imported lazily inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from spektron.chemistry.vibrations import E_ANGSTROM_TO_DEBYE, ir_intensity, raman_activity
from spektron.errors import ConfigError, MoleculeError, SimulationError

# ----------------------------------------------------------------------------- constants

#: Bohr radius in Å (CODATA 2018).
BOHR_ANGSTROM = 0.529177210903
#: Hartree in kcal/mol.
HARTREE_KCAL_MOL = 627.509474
#: Polarizability, bohr³ (a.u.) → Å³.
POLARIZABILITY_AU_TO_A3 = BOHR_ANGSTROM**3  # 0.148184711
#: Polarizability derivative, bohr² (a.u.) → Å².
DPOLARIZABILITY_AU_TO_A2 = BOHR_ANGSTROM**2
#: Hessian, Eh/bohr² → kcal/mol/Å².
HESSIAN_AU_TO_KCAL_A2 = HARTREE_KCAL_MOL / BOHR_ANGSTROM**2
#: GFN2-xTB parameterises H..Rn.
MAX_ATOMIC_NUMBER = 86
#: Atoms closer than this (Å) make a geometry invalid (as ``simulate.MIN_ATOM_DISTANCE``).
MIN_ATOM_DISTANCE = 0.5
#: Single points of ``xtb_field_derivatives`` (F = 0, 6 diagonal, 12 off-diagonal).
N_FIELD_SINGLEPOINTS = 19

_TBLITE_PIN = "tblite==0.8.0"


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class XtbSettings:
    """Numerical settings of the xTB vibrational analysis.

    ``method``: tblite method name ("GFN2-xTB"; "GFN1-xTB" also exists). ``accuracy``: tblite's
    SCF accuracy (smaller = tighter; 0.01 keeps the second field derivatives clean).
    ``field_step``: electric-field step (a.u.). ``hessian_step``: Cartesian displacement of the
    Hessian (bohr). ``opt_gtol``: max |gradient| (Eh/bohr) at convergence of the optimiser.
    ``opt_max_iter``: optimiser iterations at most.
    """

    method: str = "GFN2-xTB"
    accuracy: float = 0.01
    field_step: float = 1e-3  # a.u.
    hessian_step: float = 0.005  # bohr
    opt_gtol: float = 1e-4  # max |gradient| Eh/bohr at convergence
    opt_max_iter: int = 500

    def __post_init__(self) -> None:
        if self.method not in ("GFN2-xTB", "GFN1-xTB", "IPEA1-xTB"):
            raise ConfigError(
                f"xtb method must be GFN2-xTB, GFN1-xTB or IPEA1-xTB, got {self.method!r}"
            )
        checks = (
            (_pos_finite(self.accuracy), f"xtb accuracy must be > 0, got {self.accuracy!r}"),
            (
                _pos_finite(self.field_step) and self.field_step < 0.05,
                f"xtb field_step must lie in (0, 0.05) a.u., got {self.field_step!r}",
            ),
            (
                _pos_finite(self.hessian_step) and self.hessian_step < 0.1,
                f"xtb hessian_step must lie in (0, 0.1) bohr, got {self.hessian_step!r}",
            ),
            (
                _pos_finite(self.opt_gtol) and self.opt_gtol < 0.1,
                f"xtb opt_gtol must lie in (0, 0.1) Eh/bohr, got {self.opt_gtol!r}",
            ),
            (
                isinstance(self.opt_max_iter, int | np.integer)
                and not isinstance(self.opt_max_iter, bool)
                and self.opt_max_iter > 0,
                f"xtb opt_max_iter must be an integer > 0, got {self.opt_max_iter!r}",
            ),
        )
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)


def _pos_finite(v) -> bool:
    return (
        isinstance(v, int | float | np.floating | np.integer)
        and not isinstance(v, bool)
        and bool(np.isfinite(v))
        and v > 0
    )


# ----------------------------------------------------------------------------- results


@dataclass
class XtbVibrations:
    """Everything the IR/Raman simulation needs from xTB, at the optimised geometry.

    ``coords`` (N, 3) Å; ``energy`` Eh; ``hessian`` (3N, 3N) kcal/mol/Å²;
    ``dipole_derivatives`` (3N, 3) ∂μ_c/∂x_i in e (row 3a + d = atom a, axis d);
    ``polarizability`` (3, 3) Å³; ``polarizability_derivatives`` (3N, 3, 3) ∂α_ab/∂x_i in Å²;
    ``n_singlepoints`` SCF calculations spent (optimisation included); ``opt_iterations``
    optimiser iterations (0 without optimisation).
    """

    coords: np.ndarray
    energy: float
    hessian: np.ndarray
    dipole_derivatives: np.ndarray
    polarizability: np.ndarray
    polarizability_derivatives: np.ndarray
    n_singlepoints: int
    opt_iterations: int


# ----------------------------------------------------------------------------- tblite access


def _calculator_class():
    try:
        from tblite.interface import Calculator
    except ImportError as e:
        raise ConfigError(
            f"the xTB level needs tblite: pip install {_TBLITE_PIN} ({type(e).__name__}: {e})"
        ) from None
    return Calculator


@contextmanager
def _single_thread():
    """tblite's OpenMP and BLAS limited to one thread for the duration.

    Molecules are small: threads cost more than they give (and spin-waiting OpenMP threads
    slow down badly on a shared machine); parallelism comes from worker processes. tblite is
    imported first so that threadpoolctl sees its OpenMP runtime.
    """
    _calculator_class()
    with threadpool_limits(limits=1):
        yield


def _check_inputs(numbers, coords_angstrom, charge) -> tuple[np.ndarray, np.ndarray, int]:
    """Atomic numbers (N,) int, coordinates (N, 3) Å float and the charge, validated."""
    z = np.asarray(numbers)
    if z.ndim != 1 or z.size == 0:
        raise MoleculeError(f"xtb: atomic numbers must be a non-empty 1-D array, got {z.shape}")
    if z.dtype.kind not in "iuf" or not np.all(np.mod(z, 1) == 0):
        raise MoleculeError("xtb: atomic numbers must be integers")
    z = z.astype(np.int64)
    if np.any(z < 1):
        raise MoleculeError(f"xtb: atomic numbers must be >= 1, got {sorted(set(z.tolist()))}")
    if np.any(z > MAX_ATOMIC_NUMBER):
        bad = sorted(set(z[z > MAX_ATOMIC_NUMBER].tolist()))
        raise SimulationError(f"xtb: GFN2-xTB has no parameters for atomic numbers {bad} (> Rn)")
    x = np.asarray(coords_angstrom, dtype=np.float64)
    if x.shape != (z.size, 3):
        raise MoleculeError(f"xtb: coordinates shape {x.shape} for {z.size} atoms (need (N, 3))")
    if not np.all(np.isfinite(x)):
        raise MoleculeError("xtb: non-finite coordinates")
    if z.size > 1:
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)[~np.eye(z.size, dtype=bool)]
        if d.min() < MIN_ATOM_DISTANCE:
            raise MoleculeError(f"xtb: atoms closer than {MIN_ATOM_DISTANCE} Å ({d.min():.3f} Å)")
    if isinstance(charge, bool) or not float(charge).is_integer():
        raise MoleculeError(f"xtb: charge must be an integer, got {charge!r}")
    q = int(charge)
    if int(z.sum()) - q < 0:
        raise MoleculeError(f"xtb: charge {q} leaves a negative number of electrons")
    return z, x, q


class _Engine:
    """tblite calculators for one molecule; counts single points, wraps errors by stage."""

    def __init__(self, numbers: np.ndarray, charge: int, settings: XtbSettings):
        self.cls = _calculator_class()
        self.numbers = numbers
        self.charge = charge
        # Closed shell when the electron count is even, one unpaired electron otherwise.
        self.uhf = (int(numbers.sum()) - charge) % 2
        self.settings = settings
        self.n_singlepoints = 0

    def new(self, x_bohr: np.ndarray, stage: str, field: np.ndarray | None = None):
        try:
            calc = self.cls(
                self.settings.method,
                self.numbers,
                np.ascontiguousarray(x_bohr, dtype=np.float64),
                charge=float(self.charge),
                uhf=self.uhf,
            )
            calc.set("verbosity", 0)
            calc.set("accuracy", float(self.settings.accuracy))
            if field is not None:
                # cffi wants a plain list of floats (double*), not an ndarray; fields accumulate,
                # so this calculator is used for this one field value only.
                calc.add("electric-field", [float(v) for v in field])
        except Exception as e:  # noqa: BLE001 - tblite raises several types
            raise SimulationError(f"xtb {stage}: setup failed ({type(e).__name__}: {e})") from e
        return calc

    def run(self, calc, stage: str, x_bohr: np.ndarray | None = None, restart=None):
        """Single point (optionally at new positions, restarted from a copy of ``restart``)."""
        try:
            if x_bohr is not None:
                calc.update(np.ascontiguousarray(x_bohr, dtype=np.float64))
            res = calc.singlepoint() if restart is None else calc.singlepoint(restart, copy=True)
            self.n_singlepoints += 1
            e = float(res.get("energy"))
            g = np.asarray(res.get("gradient"), dtype=np.float64).reshape(-1, 3)
        except Exception as ex:  # noqa: BLE001 - tblite raises several types
            raise SimulationError(
                f"xtb {stage}: single point failed ({type(ex).__name__}: {ex})"
            ) from ex
        if not (np.isfinite(e) and np.all(np.isfinite(g))):
            raise SimulationError(f"xtb {stage}: non-finite energy or gradient")
        return res, e, g


# ----------------------------------------------------------------------------- stages


def _optimise(eng: _Engine, x0: np.ndarray, settings: XtbSettings) -> tuple[np.ndarray, float, int]:
    from scipy.optimize import minimize

    stage = "optimisation"
    calc = eng.new(x0 / BOHR_ANGSTROM, stage)
    state: dict = {"res": None}

    def fun(y: np.ndarray) -> tuple[float, np.ndarray]:
        res, e, g = eng.run(calc, stage, y.reshape(-1, 3), restart=state["res"])
        state["res"] = res  # restart the next SCF from this wavefunction
        return e, g.reshape(-1)

    y = (x0 / BOHR_ANGSTROM).reshape(-1)
    iters, gmax, e = 0, np.inf, np.nan
    # L-BFGS-B stops on its own gtol (max |projected gradient|) or, with SCF noise in the
    # energy, on a failed line search: then restart it from the last point (fresh curvature).
    for _ in range(5):
        left = settings.opt_max_iter - iters
        if left <= 0:
            break
        r = minimize(
            fun,
            y,
            jac=True,
            method="L-BFGS-B",
            options={"gtol": settings.opt_gtol, "ftol": 1e-15, "maxiter": left, "maxcor": 30},
        )
        iters += int(r.nit)
        y = np.asarray(r.x, dtype=np.float64)
        e, g = fun(y)
        gmax = float(np.abs(g).max())
        if gmax < settings.opt_gtol:
            return y.reshape(-1, 3) * BOHR_ANGSTROM, e, iters
        if r.nit == 0:
            break
    raise SimulationError(
        f"xtb optimisation did not converge: max |gradient| {gmax:.2e} Eh/bohr "
        f"(target {settings.opt_gtol:.1e}) after {iters} iterations"
    )


def _hessian(eng: _Engine, x: np.ndarray, settings: XtbSettings) -> tuple[np.ndarray, float]:
    stage = "hessian"
    y0 = (x / BOHR_ANGSTROM).reshape(-1)
    calc = eng.new(y0.reshape(-1, 3), stage)
    ref, e0, _ = eng.run(calc, stage)
    h = settings.hessian_step
    hess = np.empty((y0.size, y0.size))
    for j in range(y0.size):
        grads = []
        for s in (h, -h):
            y = y0.copy()
            y[j] += s
            grads.append(eng.run(calc, stage, y.reshape(-1, 3), restart=ref)[2].reshape(-1))
        hess[:, j] = (grads[0] - grads[1]) / (2.0 * h)
    return 0.5 * (hess + hess.T) * HESSIAN_AU_TO_KCAL_A2, e0


def _field_point(
    eng: _Engine, xb: np.ndarray, f: float, k: tuple[int, int, int], stage: str
) -> tuple[np.ndarray, np.ndarray]:
    """(gradient (3N,), dipole (3,)) at positions ``xb`` (bohr) in the field f·k, k ∈ {−1, 0, 1}³.

    A new calculator per field value: fields accumulate in tblite 0.8.0."""
    field = None if k == (0, 0, 0) else f * np.asarray(k, dtype=np.float64)
    res, _, g = eng.run(eng.new(xb, stage, field), stage)
    try:
        mu = np.asarray(res.get("dipole"), dtype=np.float64).reshape(3)
    except Exception as ex:  # noqa: BLE001
        raise SimulationError(f"xtb {stage}: no dipole ({ex})") from ex
    return g.reshape(-1), mu


def _field_derivatives(
    eng: _Engine, x: np.ndarray, settings: XtbSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    stage = "field derivatives"
    xb = x / BOHR_ANGSTROM
    f = settings.field_step
    n = len(x)
    cache: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]] = {}

    def point(k: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(gradient (3N,), dipole (3,)) at field f·k (k ∈ {−1, 0, 1}³)."""
        if k not in cache:
            cache[k] = _field_point(eng, xb, f, k, stage)
        return cache[k]

    def unit(a: int, s: int, b: int | None = None, t: int = 0) -> tuple[int, int, int]:
        k = [0, 0, 0]
        k[a] += s
        if b is not None:
            k[b] += t
        return tuple(k)

    g0, _ = point((0, 0, 0))
    apt = np.empty((3 * n, 3))  # ∂μ_c/∂R_i = −∂g_i/∂F_c
    alpha = np.empty((3, 3))  # α_ab = ∂μ_a/∂F_b
    dalpha = np.empty((3 * n, 3, 3))  # ∂α_ab/∂R_i = −∂²g_i/∂F_a∂F_b
    for a in range(3):
        gp, mp = point(unit(a, 1))
        gm, mm = point(unit(a, -1))
        apt[:, a] = -(gp - gm) / (2.0 * f)
        alpha[:, a] = (mp - mm) / (2.0 * f)
        dalpha[:, a, a] = -(gp - 2.0 * g0 + gm) / f**2
    for a in range(3):
        for b in range(a + 1, 3):
            gpp = point(unit(a, 1, b, 1))[0]
            gpm = point(unit(a, 1, b, -1))[0]
            gmp = point(unit(a, -1, b, 1))[0]
            gmm = point(unit(a, -1, b, -1))[0]
            d = -(gpp - gpm - gmp + gmm) / (4.0 * f**2)
            dalpha[:, a, b] = dalpha[:, b, a] = d
    alpha = 0.5 * (alpha + alpha.T) * POLARIZABILITY_AU_TO_A3
    return apt, alpha, dalpha * DPOLARIZABILITY_AU_TO_A2


# ----------------------------------------------------------------------------- public API


def xtb_optimise(
    numbers, coords_angstrom, charge: int = 0, settings: XtbSettings | None = None
) -> tuple[np.ndarray, float, int]:
    """xTB minimum from ``coords_angstrom``: (coords (N, 3) Å, energy Eh, iterations).

    Raises ``SimulationError`` when max |gradient| stays above ``settings.opt_gtol`` Eh/bohr
    within ``settings.opt_max_iter`` iterations, or when tblite fails.
    """
    settings = XtbSettings() if settings is None else settings
    z, x, q = _check_inputs(numbers, coords_angstrom, charge)
    with _single_thread():
        return _optimise(_Engine(z, q, settings), x, settings)


def xtb_hessian(
    numbers, coords_angstrom, charge: int = 0, settings: XtbSettings | None = None
) -> np.ndarray:
    """(3N, 3N) Cartesian Hessian in kcal/mol/Å² (central differences of xTB gradients)."""
    settings = XtbSettings() if settings is None else settings
    z, x, q = _check_inputs(numbers, coords_angstrom, charge)
    with _single_thread():
        return _hessian(_Engine(z, q, settings), x, settings)[0]


def xtb_field_derivatives(
    numbers, coords_angstrom, charge: int = 0, settings: XtbSettings | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Electric-field derivatives at a fixed geometry (19 single points).

    Returns ``(apt, alpha, dalpha)``: atomic polar tensors ∂μ_c/∂x_i (3N, 3) in e, static
    polarizability α (3, 3) in Å³ and ∂α_ab/∂x_i (3N, 3, 3) in Å².
    """
    settings = XtbSettings() if settings is None else settings
    z, x, q = _check_inputs(numbers, coords_angstrom, charge)
    with _single_thread():
        return _field_derivatives(_Engine(z, q, settings), x, settings)


def xtb_dipole_derivatives(
    numbers, coords_angstrom, charge: int = 0, settings: XtbSettings | None = None
) -> tuple[np.ndarray, int]:
    """Atomic polar tensors ∂μ_c/∂x_i (3N, 3) in e at a fixed geometry, and the single points
    spent: central differences of the gradient in ±f e_c (6 single points, no Hessian, no
    optimisation; the same first field derivatives as :func:`xtb_field_derivatives`)."""
    settings = XtbSettings() if settings is None else settings
    z, x, q = _check_inputs(numbers, coords_angstrom, charge)
    f = settings.field_step
    stage = "dipole derivatives"
    with _single_thread():
        eng = _Engine(z, q, settings)
        xb = x / BOHR_ANGSTROM
        apt = np.empty((3 * len(x), 3))
        for c in range(3):
            k = tuple(int(i == c) for i in range(3))
            gp = _field_point(eng, xb, f, k, stage)[0]
            gm = _field_point(eng, xb, f, tuple(-i for i in k), stage)[0]
            apt[:, c] = -(gp - gm) / (2.0 * f)
    if not np.all(np.isfinite(apt)):
        raise SimulationError("xtb dipole derivatives: non-finite APT")
    return apt, eng.n_singlepoints


def xtb_vibrations(
    numbers,
    coords_angstrom,
    charge: int = 0,
    settings: XtbSettings | None = None,
    optimise: bool = True,
) -> XtbVibrations:
    """Optimisation (unless ``optimise=False``), Hessian and field derivatives of one molecule.

    Raises ``MoleculeError`` on malformed input, ``SimulationError`` (naming the stage) when
    tblite fails or the optimisation does not converge, ``ConfigError`` without tblite.
    """
    settings = XtbSettings() if settings is None else settings
    z, x, q = _check_inputs(numbers, coords_angstrom, charge)
    with _single_thread():
        eng = _Engine(z, q, settings)
        iters = 0
        if optimise:
            x, _, iters = _optimise(eng, x, settings)
        hess, energy = _hessian(eng, x, settings)
        apt, alpha, dalpha = _field_derivatives(eng, x, settings)
    for name, arr in (("APT", apt), ("polarizability", alpha), ("dα/dx", dalpha)):
        if not np.all(np.isfinite(arr)):
            raise SimulationError(f"xtb field derivatives: non-finite {name}")
    return XtbVibrations(
        coords=x,
        energy=energy,
        hessian=hess,
        dipole_derivatives=apt,
        polarizability=alpha,
        polarizability_derivatives=dalpha,
        n_singlepoints=eng.n_singlepoints,
        opt_iterations=iters,
    )


def xtb_ir_raman(vib: XtbVibrations, modes) -> tuple[np.ndarray, np.ndarray]:
    """(IR km/mol (K,), Raman activity Å⁴/amu (K,)) on ``modes`` (``simulate.NormalModes``).

    ∂μ/∂Q_k = Σ_i (∂μ/∂x_i) L_ik (e/√amu, × 4.80320 → D/(Å·√amu)) and
    ∂α/∂Q_k = Σ_i (∂α/∂x_i) L_ik (Å²/√amu), as the MMFF path.
    """
    cart = np.asarray(modes.cart, dtype=np.float64)
    apt = np.asarray(vib.dipole_derivatives, dtype=np.float64)
    dalpha = np.asarray(vib.polarizability_derivatives, dtype=np.float64)
    if cart.ndim != 2 or cart.shape[0] != apt.shape[0] or dalpha.shape[0] != apt.shape[0]:
        raise SimulationError(
            f"xtb IR/Raman: modes {cart.shape} do not match {apt.shape[0] // 3} atoms"
        )
    ir = ir_intensity((cart.T @ apt) * E_ANGSTROM_TO_DEBYE)
    da = np.einsum("mab,mk->kab", dalpha, cart)  # (K, 3, 3) Å²/√amu
    raman = raman_activity(
        da[:, 0, 0], da[:, 0, 1], da[:, 1, 1], da[:, 0, 2], da[:, 1, 2], da[:, 2, 2]
    )
    return ir, raman
