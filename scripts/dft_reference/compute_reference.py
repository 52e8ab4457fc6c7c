"""DFT reference spectra of small QM9 molecules: B3LYP/def2-SVP IR and Raman (PySCF).

Not part of the package or the tests: a rerunnable provenance script that writes the small DFT
reference set against which the cheap levels of the simulator (MMFF94, GFN2-xTB) are validated
(``src/spektron/data/reference/b3lyp_def2svp/``, read later by ``spektron data validate``).

What it computes, per molecule (closed-shell, neutral, all-electron RKS)
-----------------------------------------------------------------------
1. B3LYP/def2-SVP SCF at the QM9 geometry (B3LYP/6-31G(2df,p)), then re-optimisation with
   geomeTRIC (TRIC coordinates, geomeTRIC's default convergence criteria, written out
   explicitly in ``SETTINGS``). PySCF ≥ 2.3 defines ``b3lyp`` with VWN-RPA (VWN3), the same
   functional as Gaussian's B3LYP. No dispersion correction, no density fitting.
2. Analytic Hessian (``mf.Hessian()``) and harmonic analysis: our own projection of the
   mass-weighted Hessian onto the complement of the rigid translations and rotations
   (``spektron.data.vibrations.harmonic_modes``, the same routine as the simulator; 3N−6 modes,
   3N−5 for a linear molecule), masses of the most abundant isotopes
   (``spektron.data.vibrations.atomic_masses``). PySCF's ``thermo.harmonic_analysis`` is used
   only as a cross-check (``--check``).
3. IR intensities (km/mol) from the analytic atomic polar tensor (APT, ∂μ/∂R, in e): the
   nuclear charge plus the electronic part from the density response of the Hessian's CPKS
   solution (``hobj.solve_mo1`` is captured) and the moving-basis dipole integrals
   (``int1e_irp`` = (i| r_a ∂_b |j), derivative on the KET, reshaped [r, ∇]; the other
   convention gives IR ~20× too high). I_k = 42.2561 |∂μ/∂Q_k|², ∂μ/∂Q in D/(Å·√amu).
4. Raman activities (Å⁴/amu, S = 45 a′² + 7 γ′²) from central finite differences of the
   analytic (CPKS) static polarizability (``pyscf.prop.polarizability.rks.Polarizability``)
   over all 6N Cartesian displacements of ±0.005 Å; PySCF has no analytic ∂α/∂R. The dipole
   of each displaced SCF is kept as well, so every molecule gets a free finite-difference
   check of its analytic APT.

Why def2-SVP: def2-TZVP with 6N displaced SCF + CPKS polarizabilities per molecule is
unaffordable on the 2 cores available; and the reference must use a basis different from
QM9's own 6-31G(2df,p), otherwise the simulator's 'hybrid' level (which takes QM9's DFT
frequencies) would be compared with its own frequencies.

Validations (stored under ``validation`` and ``flags`` of each file; a flagged molecule is
still written, with ``flagged: true``)
- acoustic sum rule of the APT: max |Σ_atoms ∂μ/∂R| (ideally 0; the DFT grid breaks it
  slightly), flag ``apt_acoustic_sum`` above ``ASR_TOL_E``;
- analytic APT against the central finite-difference dipoles of the Raman displacements,
  flag ``apt_vs_fd`` above ``APT_FD_TOL_E``;
- imaginary frequencies: every mode below ``IMAG_TOL_CM`` (−20 cm⁻¹) is counted and flags the
  molecule (``imaginary_frequency``); small negative values above it are numerical noise of
  the optimisation/grid and are only counted (``n_imaginary``);
- geomeTRIC not converged: flag ``optimisation_not_converged``;
- ``--check`` (meant for one or two molecules, e.g. ``--only 3 8 --check``): frequencies
  against PySCF's own harmonic analysis, the analytic polarizability against a finite-field
  (±0.001 au) derivative of the dipole, and the APT against a separate FD with ±0.001 Bohr.

Requirements (not project dependencies; install into a separate venv)
--------------------------------------------------------------------
    python -m venv /tmp/dftvenv
    /tmp/dftvenv/bin/pip install pyscf==2.14.0 geometric==1.1.1 pyscf-properties==0.1.0 \\
        numpy scipy rdkit qm9pack==1.0.3 threadpoolctl
(``qm9pack`` for the QM9 molecules through ``spektron.data.molecules.load_qm9``, rdkit for the
isotope masses; ``spektron`` itself is imported from this checkout's ``src``, added to
``sys.path`` automatically.)

How to run, resume and extend (from the repository root)
--------------------------------------------------------
    OMP_NUM_THREADS=1 nohup nice -n 19 PYTHON scripts/dft_reference/compute_reference.py \\
        --n 30 --max-heavy-atoms 4 > /tmp/dftref.log 2>&1 &
- Resume: run the same command again. A molecule whose JSON exists and is complete (same
  ``format_version`` and ``method_version``) is skipped; files are written atomically (temp
  file + rename) only when the molecule is finished, so an interrupted molecule is simply
  recomputed. ``index.json`` is rebuilt from the files on disk after every molecule.
- Extend: a larger ``--n`` (or ``--max-heavy-atoms``) keeps the earlier molecules (the order is
  deterministic: atom count, then QM9 index) and adds the next ones; ``--only I J ...``
  computes given QM9 indices. Changing any numerical setting must bump ``METHOD_VERSION`` and
  should go to a new ``--out`` folder (files of another method version are not overwritten
  unless ``--force``).
- The first call without ``--only`` parses all QM9 CSVs once (about a minute, cached in
  ``$SPEKTRON_CACHE`` or ``~/.cache/spektron``).

Selection: among the QM9 molecules with at most ``--max-heavy-atoms`` heavy atoms, the ``--n``
smallest by atom count (ties by QM9 index), plus every centrosymmetric one of those candidates
(inversion centre of the QM9 geometry within 0.05 Å,
``spektron.chemistry.symmetry.has_inversion_centre``) that is not already among them (with the
defaults: butane, QM9 39, computed last; ``--no-extra-centrosymmetric`` leaves it out). With
the defaults the 30 already contain acetylene (4), cyanogen (25), butadiyne (23), glyoxal (28)
and ethane (7).

Measured cost (1 thread, ``nice -n 19`` next to a CI job on a 2-core machine; wall seconds per
molecule, ``wall_seconds`` in each JSON and ``wall_seconds_total`` in ``index.json``): water 39
(incl. 10 of ``--check``), HCN 69 (incl. 16 of ``--check``), NH3 57, acetylene 90,
formaldehyde 97, methane 85, cyanogen 213, methanol 318 (incl. 64 of ``--check``). The 6N
displaced SCF + polarizability calculations of the Raman step take 65-80 %; cost grows with
the number of heavy atoms (basis functions) times 6N: expect ~5-25 min for the 5-9-atom
molecules and 1-2 h for butane (14 atoms), several hours for the default set.

Output (one JSON per molecule, ``qm9_<index>.json``, plus ``index.json``): see
``FILE_SCHEMA`` below and the report in this folder's README.
"""

from __future__ import annotations

import argparse
import os
import sys


def _threads_from_argv(argv: list[str]) -> int:
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if a.startswith("--threads="):
            return int(a.split("=", 1)[1])
    return 1


# BLAS/OpenMP read these when numpy/pyscf load, so they are set before those imports.
_THREADS = _threads_from_argv(sys.argv[1:])
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(_THREADS)

_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src")
if os.path.isdir(os.path.join(_SRC, "spektron")) and _SRC not in sys.path:
    sys.path.insert(0, os.path.abspath(_SRC))

import importlib.metadata  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

# pyscf-properties warns on import of each of its modules ("Module ... is under testing").
warnings.filterwarnings("ignore", message="Module .* is under testing")

#: Layout of the JSON files; bump when keys change meaning.
FORMAT_VERSION = 1
#: Numerical method/settings; bump when anything in SETTINGS (or the code computing it) changes.
METHOD_VERSION = 1

IMAG_TOL_CM = -20.0  # modes below this are real imaginary frequencies (flag)
ASR_TOL_E = 0.01  # max |Σ_atoms APT| allowed before flagging (e)
APT_FD_TOL_E = 0.01  # max |APT − FD APT| allowed before flagging (e)
CENTRO_TOL_ANG = 0.05

SETTINGS: dict = {
    "method": "RKS",
    "xc": "b3lyp",
    "xc_note": "PySCF >= 2.3 'b3lyp' = B3LYP with VWN-RPA (VWN3), as in Gaussian",
    "basis": "def2-svp",
    "charge": 0,
    "spin": 0,
    "dispersion": None,
    "density_fitting": False,
    "grid_level": 4,
    "grid_prune": "pyscf default (nwchem_prune)",
    "scf_conv_tol": 1e-10,
    "scf_max_cycle": 100,
    "cphf_conv_tol": 1e-9,  # Hessian CPKS (mf.conv_tol_cpscf)
    "polarizability_cphf_conv_tol": 1e-9,
    "polarizability_cphf_max_cycle": 50,
    "geometric": {
        "coordsys": "tric",
        "convergence_energy": 1e-6,  # Eh        (geomeTRIC defaults, made explicit)
        "convergence_grms": 3e-4,  # Eh/Bohr
        "convergence_gmax": 4.5e-4,  # Eh/Bohr
        "convergence_drms": 1.2e-3,  # Å
        "convergence_dmax": 1.8e-3,  # Å
        "maxsteps": 100,
    },
    "hessian": "analytic (pyscf mf.Hessian(), no grid response)",
    "apt": "analytic: nuclear charge + CPKS density response (Hessian solve_mo1) "
    "+ moving-basis dipole integrals (int1e_irp)",
    "polarizability": "analytic static CPKS (pyscf.prop.polarizability.rks)",
    "raman_fd_step_angstrom": 0.005,
    "raman_fd_scheme": "central differences over the 6N Cartesian displacements",
    "masses": "most abundant isotope (spektron.data.vibrations.atomic_masses, rdkit)",
    "frequencies": "own projected harmonic analysis (spektron.data.vibrations.harmonic_modes);"
    " rigid translations/rotations projected out; linear molecules 3N-5 modes",
    "linear_tol_angstrom": 0.01,
    "imaginary_tol_cm": IMAG_TOL_CM,
    "raman_activity": "45 a'^2 + 7 gamma'^2 (A^4/amu)",
    "ir_intensity": "42.2561 |dmu/dQ|^2 km/mol, dmu/dQ in D/(A sqrt(amu))",
}

FILE_SCHEMA = {
    "format, format_version, method_version, status": "'spektron-dft-reference', ints, 'complete'",
    "qm9_index, smiles, inchi, name": "QM9 identifiers",
    "n_atoms, elements, atomic_numbers, masses_amu": "atoms in QM9 XYZ order",
    "linear, centrosymmetric": "of the optimised geometry",
    "coords_qm9_angstrom, coords_angstrom": "(N,3) QM9 input and B3LYP/def2-SVP optimised",
    "opt_rmsd_vs_qm9_angstrom": "RMSD after Kabsch alignment",
    "settings, software": "SETTINGS above; package versions",
    "energies_hartree": "scf_qm9_geometry, scf_optimised, zero_point",
    "optimisation": "converged, steps",
    "n_modes, frequencies_cm": "K = 3N-6 (3N-5 linear), ascending; negative = imaginary",
    "normal_modes_mass_weighted": "(K,N,3) orthonormal eigenvectors l_k of the mass-weighted "
    "Hessian (dimensionless)",
    "normal_modes_cartesian": "(K,N,3) Cartesian displacement per unit normal coordinate, "
    "L_k = M^-1/2 l_k (1/sqrt(amu)); not renormalised",
    "reduced_masses_amu": "(K,) 1/|L_k|^2",
    "ir_intensities_km_mol, raman_activities_A4_amu": "(K,)",
    "raman_depolarization_ratios": "(K,) 3 gamma'^2 / (45 a'^2 + 4 gamma'^2), linear polarised",
    "dmu_dq_debye_per_angstrom_sqrt_amu": "(K,3)",
    "dalpha_dq_angstrom2_per_sqrt_amu": "(K,3,3)",
    "apt_e": "(3N,3) dmu_c/dR_(3a+b), row = atom a displacement b, column = dipole component c",
    "apt_fd_e": "(3N,3) the same from central FD dipoles of the Raman displacements",
    "dipole_debye": "(3,) at the optimised geometry (nuclear + electronic)",
    "polarizability_angstrom3": "(3,3) static, analytic",
    "polarizability_derivatives_angstrom2": "(3N,3,3) dalpha/dR by central FD",
    "hessian_hartree_per_bohr2": "(3N,3N) analytic Cartesian Hessian, row/col = 3a+b",
    "n_imaginary, n_imaginary_beyond_tol, flags, flagged": "validation outcome",
    "validation": "numbers of the checks",
    "qm9_dft_freqs_cm": "QM9's B3LYP/6-31G(2df,p) harmonic frequencies, for comparison",
    "wall_seconds": "per stage and total; threads",
}

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "src/spektron/data/reference/b3lyp_def2svp"

GEOMETRIC_LOG_INI = """[loggers]
keys=root

[handlers]
keys=h

[formatters]
keys=f

[logger_root]
level=WARNING
handlers=h

[handler_h]
class=StreamHandler
level=WARNING
formatter=f
args=(sys.stderr,)

[formatter_f]
format=geomeTRIC %(levelname)s: %(message)s
"""

ISOTOPE_MASS_FALLBACK = {  # most abundant isotopes (= rdkit GetMostCommonIsotopeMass)
    1: 1.00782503223,
    6: 12.0,
    7: 14.00307400443,
    8: 15.99491461957,
    9: 18.99840316273,
}


def log(msg: str) -> None:
    stamp = datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {msg}", flush=True)


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")  # noqa: UP017


def write_json_atomic(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def software_versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for pkg in ("pyscf", "geometric", "pyscf-properties", "numpy", "scipy", "rdkit", "qm9pack"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def isotope_masses(z: np.ndarray) -> np.ndarray:
    try:
        from spektron.data.vibrations import atomic_masses

        return atomic_masses(z)
    except ImportError:
        return np.array([ISOTOPE_MASS_FALLBACK[int(a)] for a in z])


def harmonic(hess_ha_ang2, masses, coords_ang, linear, unit_to_cm):
    from spektron.data.vibrations import harmonic_modes

    return harmonic_modes(hess_ha_ang2, masses, coords_ang, linear, unit_to_cm)


def raman_activity(d):  # d: (K,3,3)
    xx, yy, zz = d[:, 0, 0], d[:, 1, 1], d[:, 2, 2]
    xy = 0.5 * (d[:, 0, 1] + d[:, 1, 0])
    xz = 0.5 * (d[:, 0, 2] + d[:, 2, 0])
    yz = 0.5 * (d[:, 1, 2] + d[:, 2, 1])
    a = (xx + yy + zz) / 3.0
    g2 = 0.5 * ((xx - yy) ** 2 + (yy - zz) ** 2 + (zz - xx) ** 2) + 3.0 * (xy**2 + xz**2 + yz**2)
    act = 45.0 * a**2 + 7.0 * g2
    denom = 45.0 * a**2 + 4.0 * g2
    rho = np.divide(3.0 * g2, denom, out=np.zeros_like(denom), where=denom > 1e-12)
    return act, rho


def kabsch_rmsd(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean(0)
    b = b - b.mean(0)
    u, _, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(u @ vt))
    r = u @ np.diag([1.0, 1.0, d]) @ vt
    return float(np.sqrt(((a @ r - b) ** 2).sum(1).mean()))


# ----------------------------------------------------------------------------- selection


def select_molecules(n: int, max_heavy: int, extra_centro: bool):
    from spektron.chemistry.symmetry import has_inversion_centre
    from spektron.data.molecules import load_qm9

    mols, _ = load_qm9()
    cand = [m for m in mols if sum(e != "H" for e in m.elements) <= max_heavy]
    cand.sort(key=lambda m: (len(m.elements), m.source_index))
    chosen = cand[:n]
    ids = {m.source_index for m in chosen}
    centro = [m for m in cand if has_inversion_centre(m.elements, m.coords, CENTRO_TOL_ANG)]
    extra = [m for m in centro if m.source_index not in ids] if extra_centro else []
    chosen = sorted(chosen + extra, key=lambda m: (len(m.elements), m.source_index))
    log(
        f"selection: {len(cand)} QM9 molecules with <= {max_heavy} heavy atoms; the {n} smallest"
        f" + {len(extra)} extra centrosymmetric -> {len(chosen)}; centrosymmetric among the"
        f" candidates: {[m.source_index for m in centro]}"
    )
    return chosen


def load_only(indices):
    from spektron.data.molecules import load_qm9

    mols, _ = load_qm9(indices=list(indices))
    return mols


# ----------------------------------------------------------------------------- the physics


class Calculator:
    def __init__(self, threads: int):
        from pyscf import lib
        from pyscf.data import nist

        lib.num_threads(threads)
        self.threads = threads
        self.bohr = nist.BOHR  # Å per Bohr
        self.au2debye = nist.AU2DEBYE
        self.e_ang_debye = nist.AU2DEBYE / nist.BOHR  # 1 e·Å in D (4.8032)
        # √(Eh/Å²/amu) → cm⁻¹
        self.unit_to_cm = np.sqrt(nist.HARTREE2J / (1e-20 * nist.ATOMIC_MASS)) / (
            2 * np.pi * nist.LIGHT_SPEED_SI * 100
        )
        self.hartree_cm = nist.HARTREE2WAVENUMBER
        self.scratch = Path(tempfile.mkdtemp(prefix="dftref_"))
        self.log_ini = self.scratch / "geometric_log.ini"
        self.log_ini.write_text(GEOMETRIC_LOG_INI)

    def mk_mf(self, mol):
        from pyscf import dft

        mf = dft.RKS(mol)
        mf.xc = SETTINGS["xc"]
        mf.grids.level = SETTINGS["grid_level"]
        mf.conv_tol = SETTINGS["scf_conv_tol"]
        mf.max_cycle = SETTINGS["scf_max_cycle"]
        mf.conv_tol_cpscf = SETTINGS["cphf_conv_tol"]
        mf.chkfile = None
        mf.verbose = 0
        return mf

    def scf(self, mol, dm0=None):
        mf = self.mk_mf(mol)
        mf.kernel(dm0=dm0)
        if not mf.converged:
            mf = mf.newton()
            mf.kernel(dm0=mf.make_rdm1() if dm0 is None else dm0)
            if not mf.converged:
                raise RuntimeError("SCF did not converge")
        return mf

    def polarizability(self, mf):
        from pyscf.prop.polarizability.rks import Polarizability

        pol = Polarizability(mf)
        pol.conv_tol = SETTINGS["polarizability_cphf_conv_tol"]
        pol.max_cycle_cphf = SETTINGS["polarizability_cphf_max_cycle"]
        return np.asarray(pol.polarizability())  # Bohr³

    @staticmethod
    def dipole_au(mf):
        return np.asarray(mf.dip_moment(unit="au", verbose=0))

    def hessian_and_apt(self, mf):
        """(natm,natm,3,3) Hessian in Eh/Bohr² and (natm,3,3) APT [atom, displacement, μ] (e)."""
        mol = mf.mol
        hobj = mf.Hessian()
        hobj.verbose = 0
        stash = {}
        orig = hobj.solve_mo1

        def solve_mo1(*a, **k):
            r = orig(*a, **k)
            stash["mo1"] = r[0]
            return r

        hobj.solve_mo1 = solve_mo1
        t = time.perf_counter()
        hess = hobj.kernel()
        t_h = time.perf_counter() - t

        t = time.perf_counter()
        mocc = mf.mo_coeff[:, mf.mo_occ > 0]
        dm = mf.make_rdm1()
        with mol.with_common_orig((0, 0, 0)):
            r = mol.intor("int1e_r", comp=3)
            # (i| r_a ∂_b |j): derivative on the KET, components [r_a, ∇_b]
            irp = mol.intor("int1e_irp", comp=9).reshape(3, 3, mol.nao, mol.nao)
        apt = np.zeros((mol.natm, 3, 3))
        for ia, (_, _, p0, p1) in enumerate(mol.aoslice_by_atom()):
            mo1 = stash["mo1"][ia]  # (3, nao, nocc) AO-basis response of the occupied orbitals
            dd = 2 * (np.einsum("xpi,qi->xpq", mo1, mocc) + np.einsum("pi,xqi->xpq", mocc, mo1))
            el = -np.einsum("xpq,ypq->xy", dd, r)
            # d<p|r_a|q>/dR_Ab for p or q on atom A: -<∂_b p|r_a|q> - <p|r_a|∂_b q>
            el += 2 * np.einsum("abqp,qp->ba", irp[:, :, :, p0:p1], dm[:, p0:p1])
            apt[ia] = el + mol.atom_charge(ia) * np.eye(3)
        return hess, apt, t_h, time.perf_counter() - t

    def optimise(self, mf):
        from pyscf.geomopt import geometric_solver

        g = SETTINGS["geometric"]
        steps = [0]

        def cb(envs):
            steps[0] += 1

        conv, mol_eq = geometric_solver.kernel(
            mf,
            maxsteps=g["maxsteps"],
            callback=cb,
            coordsys=g["coordsys"],
            logIni=str(self.log_ini),
            convergence_energy=g["convergence_energy"],
            convergence_grms=g["convergence_grms"],
            convergence_gmax=g["convergence_gmax"],
            convergence_drms=g["convergence_drms"],
            convergence_dmax=g["convergence_dmax"],
        )
        return bool(conv), mol_eq, steps[0]

    # ------------------------------------------------------------------ one molecule
    def compute(self, m, check: bool) -> dict:
        from pyscf import gto

        from spektron.chemistry.symmetry import has_inversion_centre, is_linear

        wall = {}
        t_all = time.perf_counter()
        elements = list(m.elements)
        coords_qm9 = np.asarray(m.coords, dtype=np.float64)
        mol0 = gto.M(
            atom=[(e, tuple(x)) for e, x in zip(elements, coords_qm9, strict=True)],
            unit="Angstrom",
            basis=SETTINGS["basis"],
            charge=SETTINGS["charge"],
            spin=SETTINGS["spin"],
            symmetry=False,
            verbose=0,
        )
        z = mol0.atom_charges().astype(int)
        natm = mol0.natm
        masses = isotope_masses(z)

        t = time.perf_counter()
        mf0 = self.scf(mol0)
        wall["scf_qm9_geometry"] = time.perf_counter() - t
        e_qm9 = float(mf0.e_tot)

        t = time.perf_counter()
        converged, mol_eq, steps = self.optimise(mf0)
        wall["optimisation"] = time.perf_counter() - t

        t = time.perf_counter()
        mf = self.scf(mol_eq)
        wall["scf_optimised"] = time.perf_counter() - t
        x_bohr = mol_eq.atom_coords()  # Bohr
        x_ang = x_bohr * self.bohr

        hess4, apt3, wall["hessian"], wall["apt"] = self.hessian_and_apt(mf)
        hess = hess4.transpose(0, 2, 1, 3).reshape(3 * natm, 3 * natm)  # Eh/Bohr², 3a+b
        apt = apt3.reshape(3 * natm, 3)  # e

        t = time.perf_counter()
        alpha = self.polarizability(mf)  # Bohr³
        wall["polarizability"] = time.perf_counter() - t
        dip = self.dipole_au(mf)

        linear = bool(is_linear(x_ang, SETTINGS["linear_tol_angstrom"]))
        freqs, l_mw, cart = harmonic(hess / self.bohr**2, masses, x_ang, linear, self.unit_to_cm)
        k = len(freqs)

        # Raman: central FD of the analytic α (and the dipole) over 6N displacements
        t = time.perf_counter()
        h_bohr = SETTINGS["raman_fd_step_angstrom"] / self.bohr
        dm_eq = mf.make_rdm1()
        dadr = np.zeros((3 * natm, 3, 3))  # Bohr³/Bohr
        dmudr = np.zeros((3 * natm, 3))  # e
        for i in range(3 * natm):
            a, b = divmod(i, 3)
            vals = []
            for s in (1.0, -1.0):
                y = x_bohr.copy()
                y[a, b] += s * h_bohr
                mfd = self.scf(mol_eq.set_geom_(y, unit="Bohr", inplace=False), dm0=dm_eq)
                vals.append((self.polarizability(mfd), self.dipole_au(mfd)))
            dadr[i] = (vals[0][0] - vals[1][0]) / (2 * h_bohr)
            dmudr[i] = (vals[0][1] - vals[1][1]) / (2 * h_bohr)
        wall["raman_finite_differences"] = time.perf_counter() - t

        # projections on the normal modes (cart: (3N,K), 1/sqrt(amu))
        dmu_dq = cart.T @ (apt * self.e_ang_debye)  # (K,3) D/(Å·√amu)
        ir = 42.2561 * (dmu_dq**2).sum(1)
        dadq = np.einsum("ik,iab->kab", cart, dadr * self.bohr**2)  # (K,3,3) Å²/√amu
        raman, rho = raman_activity(dadq)

        # validation
        flags = []
        asr = float(np.abs(apt3.sum(0)).max())
        apt_fd = float(np.abs(apt - dmudr).max())
        n_imag = int((freqs < 0).sum())
        n_imag_bad = int((freqs < IMAG_TOL_CM).sum())
        if asr > ASR_TOL_E:
            flags.append("apt_acoustic_sum")
        if apt_fd > APT_FD_TOL_E:
            flags.append("apt_vs_fd")
        if n_imag_bad:
            flags.append("imaginary_frequency")
        if not converged:
            flags.append("optimisation_not_converged")
        validation = {
            "apt_acoustic_sum_max_abs_e": asr,
            "apt_vs_fd_dipole_max_abs_e": apt_fd,
            "apt_max_abs_e": float(np.abs(apt).max()),
            "polarizability_asymmetry_max_abs_angstrom3": float(
                np.abs(alpha - alpha.T).max() * self.bohr**3
            ),
        }
        qm9_freqs = np.asarray(m.dft_freqs, dtype=np.float64) if m.dft_freqs is not None else None
        if qm9_freqs is not None and len(qm9_freqs) == k:
            d = np.sort(freqs) - np.sort(qm9_freqs)
            validation["vs_qm9_freq_mean_abs_diff_cm"] = float(np.abs(d).mean())
            validation["vs_qm9_freq_max_abs_diff_cm"] = float(np.abs(d).max())
        elif qm9_freqs is not None:
            # not a flag: QM9 lists 3N-6 values for some linear molecules (e.g. cyanogen)
            validation["qm9_mode_count_differs"] = len(qm9_freqs)
        if check:
            t = time.perf_counter()
            validation.update(self.checks(mf, hess4, masses, freqs, apt3, alpha, linear))
            wall["checks"] = time.perf_counter() - t

        red_mass = 1.0 / (cart**2).sum(0)
        zpe = 0.5 * freqs[freqs > 0].sum() / self.hartree_cm
        wall["total"] = time.perf_counter() - t_all
        return {
            "format": "spektron-dft-reference",
            "format_version": FORMAT_VERSION,
            "method_version": METHOD_VERSION,
            "status": "complete",
            "created_utc": now_utc(),
            "qm9_index": int(m.source_index),
            "smiles": m.smiles,
            "inchi": m.inchi,
            "name": m.name,
            "n_atoms": natm,
            "elements": elements,
            "atomic_numbers": z.tolist(),
            "masses_amu": masses.tolist(),
            "linear": linear,
            "centrosymmetric": bool(has_inversion_centre(elements, x_ang, CENTRO_TOL_ANG)),
            "coords_qm9_angstrom": coords_qm9.tolist(),
            "coords_angstrom": x_ang.tolist(),
            "opt_rmsd_vs_qm9_angstrom": kabsch_rmsd(x_ang, coords_qm9),
            "settings": SETTINGS,
            "software": software_versions(),
            "energies_hartree": {
                "scf_qm9_geometry": e_qm9,
                "scf_optimised": float(mf.e_tot),
                "zero_point": float(zpe),
            },
            "optimisation": {"converged": converged, "steps": steps},
            "n_modes": k,
            "frequencies_cm": freqs.tolist(),
            "normal_modes_mass_weighted": l_mw.T.reshape(k, natm, 3).tolist(),
            "normal_modes_cartesian": cart.T.reshape(k, natm, 3).tolist(),
            "reduced_masses_amu": red_mass.tolist(),
            "ir_intensities_km_mol": ir.tolist(),
            "raman_activities_A4_amu": raman.tolist(),
            "raman_depolarization_ratios": rho.tolist(),
            "dmu_dq_debye_per_angstrom_sqrt_amu": dmu_dq.tolist(),
            "dalpha_dq_angstrom2_per_sqrt_amu": dadq.tolist(),
            "apt_e": apt.tolist(),
            "apt_fd_e": dmudr.tolist(),
            "dipole_debye": (dip * self.au2debye).tolist(),
            "polarizability_angstrom3": (alpha * self.bohr**3).tolist(),
            "polarizability_derivatives_angstrom2": (dadr * self.bohr**2).tolist(),
            "hessian_hartree_per_bohr2": hess.tolist(),
            "n_imaginary": n_imag,
            "n_imaginary_beyond_tol": n_imag_bad,
            "flags": flags,
            "flagged": bool(flags),
            "validation": validation,
            "qm9_dft_freqs_cm": None if qm9_freqs is None else qm9_freqs.tolist(),
            "wall_seconds": wall,
            "threads": self.threads,
        }

    def checks(self, mf, hess4, masses, freqs, apt3, alpha, linear) -> dict:
        """--check: PySCF's harmonic analysis, finite-field α, small-step FD APT."""
        from pyscf.hessian import thermo

        out = {}
        mol = mf.mol
        res = thermo.harmonic_analysis(mol, hess4, mass=masses, imaginary_freq=False)
        fp = np.sort(np.asarray(res["freq_wavenumber"], dtype=float))
        fp = fp[-len(freqs) :] if len(fp) >= len(freqs) else fp
        if len(fp) == len(freqs):
            out["check_freq_vs_pyscf_harmonic_analysis_max_abs_cm"] = float(
                np.abs(fp - np.sort(freqs)).max()
            )
        # finite-field polarizability: H = h + F·r, α = dμ/dF
        f = 1e-3
        dm0 = mf.make_rdm1()
        with mol.with_common_orig((0, 0, 0)):
            r = mol.intor("int1e_r", comp=3)
        h0 = mf.get_hcore()
        aff = np.zeros((3, 3))
        for c in range(3):
            mus = []
            for s in (1.0, -1.0):
                mff = self.mk_mf(mol)
                mff.get_hcore = lambda *a, _h=h0 + s * f * r[c]: _h
                mff.kernel(dm0=dm0)
                mus.append(self.dipole_au(mff))
            aff[:, c] = (mus[0] - mus[1]) / (2 * f)
        out["check_polarizability_vs_finite_field_max_abs_angstrom3"] = float(
            np.abs(aff - alpha).max() * self.bohr**3
        )
        # APT against a small-step (0.001 Bohr) FD of the dipole
        h = 1e-3
        x = mol.atom_coords()
        fd = np.zeros_like(apt3)
        for a in range(mol.natm):
            for b in range(3):
                d = []
                for s in (1.0, -1.0):
                    y = x.copy()
                    y[a, b] += s * h
                    m2 = mol.set_geom_(y, unit="Bohr", inplace=False)
                    d.append(self.dipole_au(self.scf(m2, dm0=dm0)))
                fd[a, b] = (d[0] - d[1]) / (2 * h)
        out["check_apt_vs_fd_0.001bohr_max_abs_e"] = float(np.abs(fd - apt3).max())
        return out


# ----------------------------------------------------------------------------- driver


def is_complete(path: Path) -> tuple[bool, dict | None]:
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return False, None
    ok = (
        rec.get("status") == "complete"
        and rec.get("format_version") == FORMAT_VERSION
        and rec.get("method_version") == METHOD_VERSION
    )
    return ok, rec


def write_manifest(out: Path, failed: dict, selection: dict) -> None:
    entries = []
    for p in sorted(out.glob("qm9_*.json"), key=lambda q: int(q.stem.split("_")[1])):
        ok, rec = is_complete(p)
        if not ok:
            continue
        entries.append(
            {
                "qm9_index": rec["qm9_index"],
                "file": p.name,
                "smiles": rec["smiles"],
                "n_atoms": rec["n_atoms"],
                "n_modes": rec["n_modes"],
                "linear": rec["linear"],
                "centrosymmetric": rec["centrosymmetric"],
                "n_imaginary_beyond_tol": rec["n_imaginary_beyond_tol"],
                "flagged": rec["flagged"],
                "flags": rec["flags"],
                "wall_seconds_total": rec["wall_seconds"]["total"],
                "threads": rec.get("threads"),
            }
        )
    done = {e["qm9_index"] for e in entries}
    prev = out / "index.json"
    old_failed = {}
    if prev.is_file():
        try:
            old_failed = json.loads(prev.read_text()).get("failed", {})
        except ValueError:
            old_failed = {}
    all_failed = {k: v for k, v in {**old_failed, **failed}.items() if int(k) not in done}
    manifest = {
        "format": "spektron-dft-reference-index",
        "format_version": FORMAT_VERSION,
        "method_version": METHOD_VERSION,
        "level": "B3LYP/def2-SVP (PySCF), geomeTRIC-optimised",
        "updated_utc": now_utc(),
        "settings": SETTINGS,
        "software": software_versions(),
        "file_schema": FILE_SCHEMA,
        "last_selection": selection,
        "n_molecules": len(entries),
        "molecules": entries,
        "failed": all_failed,
    }
    write_json_atomic(prev, manifest)


def summary(rec: dict) -> str:
    lines = [
        f"QM9 {rec['qm9_index']} {rec['smiles']} ({rec['n_atoms']} atoms, linear={rec['linear']},"
        f" centro={rec['centrosymmetric']}) E={rec['energies_hartree']['scf_optimised']:.8f}"
        f" opt steps={rec['optimisation']['steps']} conv={rec['optimisation']['converged']}"
        f" flags={rec['flags']}",
        "   validation: "
        + ", ".join(f"{k}={v:.3g}" for k, v in rec["validation"].items() if v is not None),
        "   wall s: " + ", ".join(f"{k}={v:.1f}" for k, v in rec["wall_seconds"].items()),
    ]
    for f, i, r in zip(
        rec["frequencies_cm"],
        rec["ir_intensities_km_mol"],
        rec["raman_activities_A4_amu"],
        strict=True,
    ):
        lines.append(f"   {f:9.1f} cm-1  IR {i:9.3f} km/mol  Raman {r:9.3f} A4/amu")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description="B3LYP/def2-SVP IR/Raman reference spectra of small QM9 molecules (PySCF).",
    )
    ap.add_argument("--n", type=int, default=30, help="number of smallest molecules (30)")
    ap.add_argument("--max-heavy-atoms", type=int, default=4, help="candidate filter (4)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder ({DEFAULT_OUT})")
    ap.add_argument("--threads", type=int, default=1, help="OpenMP/BLAS/pyscf threads (1)")
    ap.add_argument("--only", type=int, nargs="+", metavar="INDEX", help="these QM9 indices")
    ap.add_argument("--check", action="store_true", help="extra validations (slow; 1-2 mols)")
    ap.add_argument(
        "--no-extra-centrosymmetric",
        action="store_true",
        help="do not add centrosymmetric candidates beyond the N smallest",
    )
    ap.add_argument("--force", action="store_true", help="recompute complete/foreign files")
    args = ap.parse_args(argv)
    if args.threads != _THREADS:
        raise SystemExit("--threads must be given on the command line (read before imports)")

    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    log(f"output {out}; threads {args.threads}; software {software_versions()}")
    if args.only:
        mols = load_only(args.only)
        selection = {"only": list(args.only)}
    else:
        mols = select_molecules(args.n, args.max_heavy_atoms, not args.no_extra_centrosymmetric)
        selection = {
            "n": args.n,
            "max_heavy_atoms": args.max_heavy_atoms,
            "extra_centrosymmetric": not args.no_extra_centrosymmetric,
            "qm9_indices": [int(m.source_index) for m in mols],
        }
    log(f"{len(mols)} molecules: {[(int(m.source_index), m.smiles) for m in mols]}")

    calc = Calculator(args.threads)
    failed: dict = {}
    n_done = n_skip = 0
    for i, m in enumerate(mols):
        path = out / f"qm9_{int(m.source_index)}.json"
        if path.exists() and not args.force:
            ok, rec = is_complete(path)
            if ok:
                n_skip += 1
                log(f"[{i + 1}/{len(mols)}] QM9 {m.source_index} done already, skipped")
                continue
            if rec is not None and rec.get("status") == "complete":
                log(
                    f"[{i + 1}/{len(mols)}] QM9 {m.source_index}: {path.name} is of another "
                    f"format/method version; left alone (use --force or another --out)"
                )
                continue
        log(f"[{i + 1}/{len(mols)}] QM9 {m.source_index} {m.smiles} ({len(m.elements)} atoms)")
        try:
            rec = calc.compute(m, args.check)
        except Exception as e:  # noqa: BLE001 - keep going with the next molecule
            log(f"QM9 {m.source_index} FAILED: {e!r}\n{traceback.format_exc()}")
            failed[str(int(m.source_index))] = f"{type(e).__name__}: {e}"
            write_manifest(out, failed, selection)
            continue
        write_json_atomic(path, rec)
        n_done += 1
        log(summary(rec))
        write_manifest(out, failed, selection)
    write_manifest(out, failed, selection)
    log(f"finished: {n_done} computed, {n_skip} skipped, {len(failed)} failed -> {out}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
