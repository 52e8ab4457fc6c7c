"""Configuration: nested dataclasses validated in ``__post_init__``, JSON round trip, hashing.

Every run writes its resolved config as JSON; the data cache is keyed by the hash of the config
that produced it, so a changed physics setting never reuses stale spectra.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from spektron.errors import ConfigError
from spektron.training.config import MSRPConfig, TrainConfig

T = TypeVar("T")


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _check_normalization(value: str, name: str) -> None:
    _check(value in ("max", "area", "l2"), f"{name} must be max|area|l2, got {value!r}")


def _check_subset(values: tuple, allowed: tuple, name: str, non_empty: bool = False) -> None:
    _check(
        set(values) <= set(allowed) and (len(values) > 0 or not non_empty),
        f"{name} must be a {'non-empty ' if non_empty else ''}subset of {allowed}, got {values}",
    )


def _check_convergence(cfg: Any, section: str) -> None:
    """The convergence rule's settings of an experiment section (tol, window, check)."""
    _check(
        cfg.convergence_tol > 0 and 0 < cfg.convergence_window < 1,
        f"{section}.convergence_tol must be > 0 and {section}.convergence_window in (0, 1), "
        f"got {cfg.convergence_tol}, {cfg.convergence_window}",
    )
    _check(
        cfg.convergence_check == 0 or cfg.convergence_check >= 2,
        f"{section}.convergence_check must be 0 (off) or a step multiple >= 2, got "
        f"{cfg.convergence_check}",
    )


@dataclass
class GridConfig:
    """Uniform wavenumber grid of the model (cm⁻¹)."""

    n_points: int = 2048
    lo: float = 500.0
    hi: float = 4000.0

    def __post_init__(self) -> None:
        _check(self.n_points >= 2, f"grid.n_points must be >= 2, got {self.n_points}")
        _check(self.hi > self.lo, f"grid.hi must exceed grid.lo, got {self.lo}..{self.hi}")


# mmff: MMFF94 modes, fixed-charge IR, bond-polarizability Raman; xtb: GFN2-xTB modes, IR and
# Raman; hybrid: QM9's DFT frequencies with xtb intensities; mmff-hybrid: DFT frequencies with
# mmff intensities; fast-hybrid: DFT frequencies, MMFF94 modes, IR from GFN2-xTB atomic polar
# tensors at the DFT geometry, bond-polarizability Raman (the hybrid levels need QM9 molecules).
PHYSICS_LEVELS = ("mmff", "xtb", "hybrid", "mmff-hybrid", "fast-hybrid")
# The level of every experiment's dataset (DatasetConfig); PhysicsConfig itself defaults to
# mmff, the level that applies to any molecule.
DATASET_LEVEL = "fast-hybrid"


@dataclass
class PhysicsConfig:
    """Settings of the simulated IR/Raman physics (docs/DESIGN.md §2.1)."""

    level: str = "mmff"
    # MMFF94 optimisation: iterations and the RMS-gradient target (kcal/mol/Å).
    opt_max_iters: int = 5000
    opt_grad_tol: float = 1e-4
    # Central finite-difference step of the Hessian (Å).
    fd_step: float = 1e-3
    # Frequencies below −imag_tol_cm count as imaginary: the geometry is pushed along that mode
    # (largest atom displacement saddle_step Å) and re-optimised, at most saddle_escapes times,
    # then the molecule is rejected.
    imag_tol_cm: float = 10.0
    saddle_escapes: int = 2
    saddle_step: float = 0.1
    # Modes closer than this (cm⁻¹) form a near-degenerate block for symmetry adaptation.
    degeneracy_tol_cm: float = 1.0
    # Distance tolerance (Å) for symmetry detection on the simulated geometry.
    symmetry_tol: float = 0.05
    # Atomic charges for IR: "auto" (DFT Mulliken when given, else Gasteiger), "gasteiger", "mmff".
    charges: str = "auto"
    # Lorentzian FWHM (cm⁻¹), as QM9S.
    ir_fwhm: float = 15.0
    raman_fwhm: float = 10.0
    # User SMILES: seed of the ETKDG embeddings and their number; each is MMFF94-optimised and
    # the lowest-energy conformer is kept (1: the single embedding, as before).
    embed_seed: int = 42
    n_conformers: int = 10
    # Largest |Σ Mulliken − molecular charge| (e) accepted; QM9 rows sum to within 5e-6.
    mulliken_sum_tol: float = 1e-3
    # Scale α∥ per bond type (element pair and order) in the bond-polarizability Raman model
    # (spektron.chemistry.simulate.RAMAN_BOND_FACTOR, calibrated); False gives the raw model.
    raman_bond_correction: bool = True
    # Levels "hybrid" / "mmff-hybrid": QM9's DFT harmonic frequencies (B3LYP/6-31G(2df,p)) times
    # this factor (QM9S's convention) replace the level's own frequencies, matched in sorted order.
    dft_freq_scale: float = 0.965
    # Level "xtb" / "hybrid" (GFN2-xTB through tblite; spektron.chemistry.xtb): SCF accuracy (0.01:
    # the field second derivatives of the Raman tensors are noisy at tblite's default 1.0),
    # electric-field step (a.u.) and Hessian displacement (bohr).
    xtb_accuracy: float = 0.01
    # Raman activities at the xtb levels: "xtb" (GFN2-xTB polarizability derivatives) or "bond"
    # (the bond-polarizability model of the mmff level, on the xtb geometry and modes).
    xtb_raman: str = "xtb"
    xtb_field_step: float = 1e-3
    xtb_hessian_step: float = 0.005

    def __post_init__(self) -> None:
        _check(
            self.level in PHYSICS_LEVELS,
            f"physics.level must be one of {PHYSICS_LEVELS}, got {self.level!r}",
        )
        _check(
            0.5 < self.dft_freq_scale <= 1.1,
            f"physics.dft_freq_scale must lie in (0.5, 1.1], got {self.dft_freq_scale}",
        )
        _check(self.xtb_accuracy > 0, "physics.xtb_accuracy must be > 0")
        _check(
            self.xtb_raman in ("xtb", "bond"),
            f"physics.xtb_raman must be xtb|bond, got {self.xtb_raman!r}",
        )
        _check(0 < self.xtb_field_step < 0.05, "physics.xtb_field_step must lie in (0, 0.05) a.u.")
        _check(
            0 < self.xtb_hessian_step < 0.1, "physics.xtb_hessian_step must lie in (0, 0.1) bohr"
        )
        _check(self.opt_max_iters > 0, "physics.opt_max_iters must be > 0")
        _check(self.opt_grad_tol > 0, "physics.opt_grad_tol must be > 0")
        _check(0 < self.fd_step < 0.1, f"physics.fd_step must be in (0, 0.1) Å, got {self.fd_step}")
        _check(self.imag_tol_cm >= 0, "physics.imag_tol_cm must be >= 0")
        _check(self.saddle_escapes >= 0, "physics.saddle_escapes must be >= 0")
        _check(0 < self.saddle_step <= 1, "physics.saddle_step must be in (0, 1] Å")
        _check(self.degeneracy_tol_cm >= 0, "physics.degeneracy_tol_cm must be >= 0")
        _check(self.symmetry_tol > 0, "physics.symmetry_tol must be > 0")
        _check(
            self.charges in ("auto", "gasteiger", "mmff"),
            f"physics.charges must be auto|gasteiger|mmff, got {self.charges!r}",
        )
        _check(self.ir_fwhm > 0 and self.raman_fwhm > 0, "physics FWHMs must be > 0")
        _check(
            0 <= self.embed_seed < 2**31,
            f"physics.embed_seed must be in [0, 2**31), got {self.embed_seed}",
        )
        _check(
            isinstance(self.n_conformers, int) and 1 <= self.n_conformers <= 1000,
            f"physics.n_conformers must be an integer in [1, 1000], got {self.n_conformers!r}",
        )
        _check(self.mulliken_sum_tol > 0, "physics.mulliken_sum_tol must be > 0")


@dataclass
class DatasetConfig:
    """Which molecules to simulate (the default data, "qm9s-sim") and how."""

    # "qm9": real QM9 molecules from qm9pack; "smiles": a user list (see ``smiles``).
    source: str = "qm9"
    # Number of QM9 molecules (seeded selection, nested across sizes); None = all valid rows.
    n_molecules: int | None = 3000
    selection_seed: int = 0
    # Comma-separated SMILES or a file with one SMILES per line (source == "smiles").
    smiles: str | None = None
    # source == "smiles": a molecule whose InChIKey is a QM9 row's is simulated from that row
    # (DFT geometry, Mulliken charges, DFT frequencies), so every level applies to it.
    qm9_lookup: bool = True
    grid: GridConfig = field(default_factory=GridConfig)
    # Datasets default to the fast-hybrid level (QM9's DFT frequencies, MMFF94 modes, GFN2-xTB
    # atomic-polar-tensor IR, bond-polarizability Raman): `spektron data validate` IR / Raman
    # cosine 0.398 / 0.564 (hybrid 0.422 / 0.557) at 0.084 CPU-s per molecule (hybrid 1.05-1.52;
    # mmff 0.144 / 0.219). It needs QM9 molecules: SMILES
    # that QM9 does not hold need level "mmff" or "xtb" (the CLI picks mmff for --smiles).
    physics: PhysicsConfig = field(default_factory=lambda: PhysicsConfig(level=DATASET_LEVEL))

    def __post_init__(self) -> None:
        _check(
            self.source in ("qm9", "smiles"), f"data.source must be qm9|smiles, got {self.source!r}"
        )
        _check(
            self.n_molecules is None or self.n_molecules > 0,
            f"data.n_molecules must be > 0 or null (all), got {self.n_molecules}",
        )
        _check(
            self.source != "smiles" or bool(self.smiles),
            "data.source='smiles' needs data.smiles (a list or a file)",
        )


E1_BACKBONES = ("dlinoss", "mamba", "transformer", "cnn", "s4d", "s4d_real")
E1_BASELINES = ("mean", "interpolation", "pca")
# The study's arms: E1's and the sigmoid-parameterised D-LinOSS variant.
STUDY_BACKBONES = ("dlinoss", "dlinoss_sigmoid", *E1_BACKBONES[1:])


def _paper_train() -> TrainConfig:
    # docs/DESIGN.md §4: batch 16 × 4 accumulation = 64, 50K optimizer steps.
    return TrainConfig(
        steps=50_000,
        batch_size=16,
        accumulation=4,
        warmup_steps=1000,
        eval_every=1000,
        checkpoint_every=1000,
        log_every=50,
    )


@dataclass
class TuneConfig:
    """One tuning protocol for every arm (``spektron.experiments.e1.tuning``): per arm the same
    number of trials, each a short training run of ``steps`` on the first seed, sampled by
    Optuna's TPE over the learning rate (log-uniform in [lr_min, lr_max]) and the arm's own
    knobs (``knobs``, else those its backbone config declares); chosen on validation only.
    When the best LR lies in the outer ``edge`` of the log range, that end is moved out by
    ``extend`` and ``extension_trials`` more trials run, at most ``max_extensions`` times."""

    n_trials: int = 0  # per arm; 0 = off (the LR sweep of e1.lr_sweep instead)
    steps: int = 200  # optimizer steps of every trial (the recipe's warmup and schedule)
    lr_min: float = 1e-4
    lr_max: float = 1e-2
    edge: float = 0.1  # fraction of the log LR range counted as its edge at either end
    extend: float = 3.0
    max_extensions: int = 2
    extension_trials: int = 4
    startup_trials: int = 4  # TPE's random start (per arm)
    # Per arm, field → candidate values; an arm listed with {} tunes the LR only; an arm not
    # listed gets its backbone config's TUNE_KNOBS.
    knobs: dict[str, dict[str, list[Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(self.n_trials >= 0, f"e1.tune.n_trials must be >= 0, got {self.n_trials}")
        _check(self.steps >= 1, f"e1.tune.steps must be >= 1, got {self.steps}")
        _check(
            0 < self.lr_min < self.lr_max,
            f"e1.tune needs 0 < lr_min < lr_max, got {self.lr_min}, {self.lr_max}",
        )
        _check(0 < self.edge < 0.5, f"e1.tune.edge must lie in (0, 0.5), got {self.edge}")
        _check(self.extend > 1, f"e1.tune.extend must be > 1, got {self.extend}")
        _check(
            self.max_extensions >= 0 and self.extension_trials >= 1 and self.startup_trials >= 1,
            "e1.tune.max_extensions must be >= 0, extension_trials and startup_trials >= 1",
        )
        for arm, space in self.knobs.items():
            _check(
                isinstance(space, dict)
                and all(isinstance(v, list) and len(v) >= 1 for v in space.values()),
                f"e1.tune.knobs.{arm} must map config fields to lists of values, got {space!r}",
            )


@dataclass
class E1Config:
    """E1: masked spectral reconstruction benchmark (arms differ only in the backbone)."""

    backbones: tuple[str, ...] = E1_BACKBONES
    n_seeds: int = 3  # seeds run.seed, run.seed + 1, ...
    # Every arm gets this sweep on validation (first seed); the best LR runs the other seeds.
    lr_sweep: tuple[float, ...] = (3e-4, 1e-3, 3e-3)
    budget: int = 1_000_000  # backbone parameters (parameter-matched arms)
    budget_tol: float = 0.05
    d_model: int = 128
    stride: int = 1  # embedding stride: the backbone sees L / stride positions
    kinds: tuple[str, ...] = ("ir", "raman")
    normalization: str = "max"
    train: TrainConfig = field(default_factory=_paper_train)
    msrp: MSRPConfig = field(default_factory=MSRPConfig)
    baselines: tuple[str, ...] = E1_BASELINES
    pca_candidates: tuple[int, ...] = (4, 8, 16, 32, 64)
    peak_tolerance_cm: float = 10.0
    peak_prominence: float = 0.05
    n_bootstrap: int = 2000
    n_examples: int = 4
    jobs: int = 0  # parallel training processes (CPU); 0 = one per core; 1 on CUDA
    max_train_spectra: int | None = None  # cap on training spectra (None = the whole split)
    # Per-arm backbone settings, e.g. {"dlinoss": {"theta_min": 0.2}} (``--set
    # e1.arm_overrides.dlinoss.theta_min=0.2``): fields of that backbone's config, fixed for
    # the sizer (a size field given here is not searched). E1 holds the model shape of every
    # experiment, so E2 and E4 arms (pretrained from E1's checkpoints) get the same settings.
    arm_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Gap-length axis: every arm and baseline is also scored on test under span masks of
    # exactly these lengths (grid points, at the training mask fraction); () = off.
    eval_spans: tuple[int, ...] = ()
    # Convergence rule, the same for every arm (spektron.training.convergence): the best
    # validation loss improved by less than ``convergence_tol`` (relative) over the last
    # ``convergence_window`` of the steps. Judged from each run's history, never retrained for.
    convergence_tol: float = 0.02
    convergence_window: float = 0.25
    # Budget check (0 = off): the first seed of every arm also trains for this many times
    # ``train.steps`` (same LR, settings and warmup; the cosine over the longer budget). The
    # budget counts as converged for an arm when that run's best validation masked MSE is
    # within ``convergence_tol`` of the first seed's. Under a decaying schedule this is the
    # rule that holds: the last part of a run is its low-LR part, whatever its length.
    convergence_check: int = 0
    tune: TuneConfig = field(default_factory=TuneConfig)

    def __post_init__(self) -> None:
        self.backbones = tuple(self.backbones)
        self.lr_sweep = tuple(self.lr_sweep)
        self.kinds = tuple(self.kinds)
        self.baselines = tuple(self.baselines)
        self.pca_candidates = tuple(self.pca_candidates)
        self.eval_spans = tuple(self.eval_spans)
        _check(
            all(n >= 1 for n in self.eval_spans)
            and len(set(self.eval_spans)) == len(self.eval_spans),
            f"e1.eval_spans must be distinct span lengths >= 1 (points), got {self.eval_spans}",
        )
        _check_convergence(self, "e1")
        _check(len(self.backbones) > 0, "e1.backbones is empty")
        _check(len(set(self.backbones)) == len(self.backbones), "e1.backbones has duplicates")
        _check(self.n_seeds >= 1, f"e1.n_seeds must be >= 1, got {self.n_seeds}")
        _check(
            len(self.lr_sweep) > 0 and all(lr > 0 for lr in self.lr_sweep),
            f"e1.lr_sweep must be a non-empty list of positive learning rates, got {self.lr_sweep}",
        )
        _check(self.budget > 0, f"e1.budget must be > 0 parameters, got {self.budget}")
        _check(0 <= self.budget_tol < 1, f"e1.budget_tol must lie in [0, 1), got {self.budget_tol}")
        _check(self.d_model >= 1 and self.stride >= 1, "e1.d_model and e1.stride must be >= 1")
        _check(
            set(self.kinds) <= {"ir", "raman"} and len(self.kinds) > 0,
            f"e1.kinds must be a subset of ('ir', 'raman'), got {self.kinds}",
        )
        _check_normalization(self.normalization, "e1.normalization")
        _check_subset(self.baselines, E1_BASELINES, "e1.baselines")
        _check(all(k >= 1 for k in self.pca_candidates), "e1.pca_candidates must be >= 1")
        _check(
            self.peak_tolerance_cm > 0 and self.peak_prominence > 0,
            f"e1.peak_tolerance_cm and e1.peak_prominence must be > 0, got "
            f"{self.peak_tolerance_cm} and {self.peak_prominence}",
        )
        _check(self.n_bootstrap >= 100, "e1.n_bootstrap must be >= 100")
        _check(self.n_examples >= 0 and self.jobs >= 0, "e1.n_examples and e1.jobs must be >= 0")
        _check(
            self.max_train_spectra is None or self.max_train_spectra > 0,
            "e1.max_train_spectra must be > 0 or null",
        )
        for arm, fields in self.arm_overrides.items():
            _check(
                isinstance(fields, dict),
                f"e1.arm_overrides.{arm} must map config fields to values, got {fields!r}",
            )
            _check(
                "d_model" not in fields,
                f"e1.arm_overrides.{arm}.d_model: the model width is shared by every arm "
                "(set e1.d_model)",
            )


E2_DIRECTIONS = ("ir_to_raman", "raman_to_ir")
E2_INITS = ("scratch", "pretrained")
E2_BASELINES = ("identity", "mean", "pls", "nearest_neighbour")


@dataclass
class E2Config:
    """E2: cross-spectral prediction (Raman from IR, IR from Raman).

    The model shape (``d_model``, embedding ``stride``, parameter ``budget``) is E1's
    (``e1.*``), so an E1 / ``pretrain`` checkpoint of the same backbone loads into an E2 model:
    its embedding and backbone weights are copied, the cross-spectral head starts fresh.
    """

    backbones: tuple[str, ...] = E1_BACKBONES
    directions: tuple[str, ...] = E2_DIRECTIONS
    inits: tuple[str, ...] = E2_INITS
    # Folder of an E1 run (its summary.json names each backbone's chosen LR and runs); run-all
    # sets it to its own E1 folder. Needed when "pretrained" is in ``inits``.
    pretrained_from: str | None = None
    n_seeds: int = 3
    lr_sweep: tuple[float, ...] = (3e-4, 1e-3, 3e-3)
    # An arm whose best LR (first seed, validation) is an end of the sweep gets one more LR
    # beyond that end, at most this many times; an edge left after them is flagged.
    lr_extensions: int = 0
    normalization: str = "max"
    nonnegative: bool = False  # softplus on the head's output
    train: TrainConfig = field(default_factory=_paper_train)
    baselines: tuple[str, ...] = E2_BASELINES
    # Up to 512: at the quick scale validation chose the largest k of a grid that stopped at 128.
    pls_candidates: tuple[int, ...] = (2, 4, 8, 16, 32, 64, 128, 256, 512)
    nn_metric: str = "cosine"
    # PLS fits on at most this many training pairs (a seeded subsample); null = all. Its kernel
    # fit reads the data once (X^T X, X^T Y: O(N L^2); 69-75 s in all at N = 2.5k, k = 512) but
    # holds a centred float64 copy of X and Y (3.3 GB at N = 100k), hence the cap.
    pls_max_train: int | None = 20_000
    peak_tolerances_cm: tuple[float, ...] = (5.0, 10.0, 20.0)
    peak_prominence: float = 0.05
    sid_eps: float = 1e-8
    n_bootstrap: int = 2000
    n_extremes: int = 100  # best / worst test molecules described in the error analysis
    min_group_size: int = 5  # smaller functional-group / symmetry groups are flagged too_few
    # Centrosymmetric molecules are held out of training and validation and form their own test
    # set, together with simulated centrosymmetric molecules from outside QM9.
    hold_out_centrosymmetric: bool = True
    external_centrosymmetric: bool = True
    jobs: int = 0  # parallel training processes (CPU); 0 = one per core; 1 on CUDA
    max_train_molecules: int | None = None
    # The convergence rule, as E1's (e1.convergence_*): judged from each run's validation
    # history (window) or, when ``convergence_check`` is a step multiple >= 2, from the first
    # seed of every arm trained again for that many times the steps (the budget check).
    convergence_tol: float = 0.02
    convergence_window: float = 0.25
    convergence_check: int = 0

    def __post_init__(self) -> None:
        for name in ("backbones", "directions", "inits", "lr_sweep", "baselines"):
            setattr(self, name, tuple(getattr(self, name)))
        self.pls_candidates = tuple(self.pls_candidates)
        self.peak_tolerances_cm = tuple(self.peak_tolerances_cm)
        _check(len(self.backbones) > 0, "e2.backbones is empty")
        _check(len(set(self.backbones)) == len(self.backbones), "e2.backbones has duplicates")
        _check_subset(self.directions, E2_DIRECTIONS, "e2.directions", non_empty=True)
        _check_subset(self.inits, E2_INITS, "e2.inits", non_empty=True)
        _check(self.n_seeds >= 1, f"e2.n_seeds must be >= 1, got {self.n_seeds}")
        _check(
            len(self.lr_sweep) > 0 and all(lr > 0 for lr in self.lr_sweep),
            f"e2.lr_sweep must be a non-empty list of positive learning rates, got {self.lr_sweep}",
        )
        _check(
            self.lr_extensions >= 0,
            f"e2.lr_extensions must be >= 0, got {self.lr_extensions}",
        )
        _check_normalization(self.normalization, "e2.normalization")
        _check_subset(self.baselines, E2_BASELINES, "e2.baselines")
        _check(
            len(self.pls_candidates) > 0 and all(k >= 1 for k in self.pls_candidates),
            f"e2.pls_candidates must be positive integers, got {self.pls_candidates}",
        )
        _check(
            self.nn_metric in ("cosine", "euclidean"),
            f"e2.nn_metric must be cosine|euclidean, got {self.nn_metric!r}",
        )
        _check(
            len(self.peak_tolerances_cm) > 0 and all(t > 0 for t in self.peak_tolerances_cm),
            f"e2.peak_tolerances_cm must be positive, got {self.peak_tolerances_cm}",
        )
        _check(
            self.peak_prominence > 0 and self.sid_eps > 0,
            f"e2.peak_prominence and e2.sid_eps must be > 0, got {self.peak_prominence} and "
            f"{self.sid_eps}",
        )
        _check(self.n_bootstrap >= 100, f"e2.n_bootstrap must be >= 100, got {self.n_bootstrap}")
        _check(self.n_extremes >= 1, f"e2.n_extremes must be >= 1, got {self.n_extremes}")
        _check(self.min_group_size >= 1, "e2.min_group_size must be >= 1")
        _check(self.jobs >= 0, f"e2.jobs must be >= 0, got {self.jobs}")
        _check(
            self.pls_max_train is None or self.pls_max_train > 0,
            f"e2.pls_max_train must be > 0 or null, got {self.pls_max_train}",
        )
        _check(
            self.max_train_molecules is None or self.max_train_molecules > 0,
            f"e2.max_train_molecules must be > 0 or null, got {self.max_train_molecules}",
        )
        _check_convergence(self, "e2")


@dataclass
class E3Config:
    """E3: transfer functions of trained D-LinOSS against untrained and shuffled-order controls.

    Trained models are the D-LinOSS runs of an E1 folder (``trained_from``; run-all sets it to
    its own E1 folder): their best checkpoints, and their step-0 checkpoints (``init.pt``) as the
    untrained control. The shuffled-order control trains ``n_shuffled`` seeds with E1's recipe
    and chosen LR on spectra whose grid order (values and wavenumber encoding alike) is one fixed
    permutation (``permutation_seed``).
    """

    trained_from: str | None = None
    n_shuffled: int = 3
    permutation_seed: int = 1
    n_freq: int = 512  # points of the frequency responses on [0, π]
    n_bootstrap: int = 2000
    alpha: float = 0.05
    jobs: int = 0  # parallel training processes (CPU); 0 = one per core; 1 on CUDA

    def __post_init__(self) -> None:
        _check(self.n_shuffled >= 0, f"e3.n_shuffled must be >= 0, got {self.n_shuffled}")
        _check(self.n_freq >= 16, f"e3.n_freq must be >= 16, got {self.n_freq}")
        _check(self.n_bootstrap >= 100, f"e3.n_bootstrap must be >= 100, got {self.n_bootstrap}")
        _check(0 < self.alpha < 1, f"e3.alpha must lie in (0, 1), got {self.alpha}")
        _check(self.jobs >= 0, f"e3.jobs must be >= 0, got {self.jobs}")


E4_PAIRS = ("corn:m5:mp5", "corn:m5:mp6", "tablet:1:2")
E4_HEADS = ("probe", "finetune")
E4_INPUT_MODES = ("wavenumber", "index")
E4_NORMALIZATIONS = ("center", "minmax", "snv")


def _e4_train() -> TrainConfig:
    # Fixed a priori (no validation split: corn has 30 calibration samples); see E4Config.
    return TrainConfig(
        steps=400,
        batch_size=16,
        warmup_steps=20,
        lr=1e-3,
        eval_every=400,
        checkpoint_every=100,
        log_every=20,
    )


def _e4_standards_train() -> TrainConfig:
    return TrainConfig(
        steps=100,
        batch_size=16,
        warmup_steps=10,
        lr=3e-4,
        eval_every=100,
        checkpoint_every=100,
        log_every=20,
    )


@dataclass
class E4Config:
    """E4: calibration transfer on the real NIR data (corn, tablets).

    Classical part: :mod:`spektron.experiments.e4.classical` on every pair of ``pairs``
    ("dataset:master:slave"), learning curve over ``n_standards`` (Kennard–Stone and
    ``n_random_subsets`` random subsets per size).

    Deep part: backbones of E1's shape (``e1.d_model``, ``e1.stride``, ``e1.budget``),
    from scratch or from E1 / ``pretrain`` checkpoints (``pretrained_from``; run-all sets it to
    its own E1 folder), with two heads: ``probe`` (frozen backbone, ridge regression on the
    mean-pooled features, α by leave-one-out on the calibration set) for every backbone of
    ``backbones`` and mode of ``input_modes``, and ``finetune`` (whole model trained with the
    regression head, recipe ``train``; then ``standards_train`` on the slave transfer standards)
    for ``finetune_backbones`` × ``finetune_input_modes``. Input modes: ``wavenumber`` (the NIR
    channels at their own wavenumbers, outside the 500–4000 cm⁻¹ pretraining range) and
    ``index`` (the spectrum resampled along its channel index onto the pretraining grid and
    given that grid's wavenumbers). ``normalization``: ``center`` (minus the master
    calibration mean spectrum, over one global scale), ``minmax`` or ``snv`` per spectrum.
    """

    pairs: tuple[str, ...] = E4_PAIRS
    n_standards: tuple[int, ...] = (5, 10, 20, 30)
    n_random_subsets: int = 10
    max_components: int = 20
    n_bootstrap: int = 2000
    backbones: tuple[str, ...] = E1_BACKBONES
    finetune_backbones: tuple[str, ...] = E1_BACKBONES
    inits: tuple[str, ...] = E2_INITS
    input_modes: tuple[str, ...] = E4_INPUT_MODES
    finetune_input_modes: tuple[str, ...] = E4_INPUT_MODES
    normalization: str = "center"
    n_seeds: int = 3
    pretrained_from: str | None = None
    probe_alphas: tuple[float, ...] = tuple(10.0**k for k in range(-3, 6))
    train: TrainConfig = field(default_factory=_e4_train)
    standards_train: TrainConfig = field(default_factory=_e4_standards_train)
    jobs: int = 0  # parallel processes (CPU); 0 = one per core; 1 on CUDA

    def __post_init__(self) -> None:
        for name in (
            "pairs",
            "n_standards",
            "backbones",
            "finetune_backbones",
            "inits",
            "input_modes",
            "finetune_input_modes",
            "probe_alphas",
        ):
            setattr(self, name, tuple(getattr(self, name)))
        _check(len(self.pairs) > 0, "e4.pairs is empty")
        for p in self.pairs:
            parts = str(p).split(":")
            _check(
                len(parts) == 3 and parts[0] in ("corn", "tablet") and parts[1] != parts[2],
                f"e4.pairs entries must be 'dataset:master:slave' with dataset corn|tablet and "
                f"two different instruments, got {p!r}",
            )
        _check(
            all(int(n) >= 2 for n in self.n_standards),
            f"e4.n_standards must be >= 2 each, got {self.n_standards}",
        )
        _check(self.n_random_subsets >= 0, "e4.n_random_subsets must be >= 0")
        _check(self.max_components >= 1, "e4.max_components must be >= 1")
        _check(self.n_bootstrap >= 100, f"e4.n_bootstrap must be >= 100, got {self.n_bootstrap}")
        for name in ("backbones", "finetune_backbones"):
            _check_subset(getattr(self, name), E1_BACKBONES, f"e4.{name}")
        _check_subset(self.inits, E2_INITS, "e4.inits", non_empty=True)
        _check_subset(self.input_modes, E4_INPUT_MODES, "e4.input_modes")
        _check_subset(self.finetune_input_modes, E4_INPUT_MODES, "e4.finetune_input_modes")
        _check(
            self.normalization in E4_NORMALIZATIONS,
            f"e4.normalization must be one of {E4_NORMALIZATIONS}, got {self.normalization!r}",
        )
        _check(self.n_seeds >= 1, f"e4.n_seeds must be >= 1, got {self.n_seeds}")
        _check(
            len(self.probe_alphas) > 0 and all(a > 0 for a in self.probe_alphas),
            f"e4.probe_alphas must be positive, got {self.probe_alphas}",
        )
        _check(self.jobs >= 0, f"e4.jobs must be >= 0, got {self.jobs}")

    @property
    def has_deep(self) -> bool:
        return bool(
            (self.backbones and self.input_modes)
            or (self.finetune_backbones and self.finetune_input_modes)
        )


@dataclass
class RunConfig:
    """Top-level config of ``spektron run-all`` (grows as experiments land)."""

    preset: str = "quick"
    seed: int = 0
    device: str = "auto"
    workers: int = 0  # simulation processes; 0 = all cores
    n_figure_pairs: int = 4
    # The data stage scores these simulation levels against the DFT reference set
    # (``spektron data validate``); ``validate_only``: those reference QM9 indices (None = all).
    validate_levels: tuple[str, ...] = PHYSICS_LEVELS
    validate_only: tuple[int, ...] | None = None
    data: DatasetConfig = field(default_factory=DatasetConfig)
    e1: E1Config = field(default_factory=E1Config)
    e2: E2Config = field(default_factory=E2Config)
    e3: E3Config = field(default_factory=E3Config)
    e4: E4Config = field(default_factory=E4Config)

    def __post_init__(self) -> None:
        _check(
            self.preset in PRESETS, f"preset must be one of {sorted(PRESETS)}, got {self.preset!r}"
        )
        _check(self.workers >= 0, f"workers must be >= 0, got {self.workers}")
        _check(self.n_figure_pairs >= 1, "n_figure_pairs must be >= 1")
        _check(
            all(lv in PHYSICS_LEVELS for lv in self.validate_levels),
            f"validate_levels must be among {PHYSICS_LEVELS}, got {self.validate_levels}",
        )


# Presets differ only in size: smoke (seconds, for tests), quick (minutes on a laptop CPU; its
# E1 runs at a reduced scale that it states in its output), paper (docs/DESIGN.md §4: all of QM9,
# ~1M-parameter backbones on the full 2048-point grid, 50K optimizer steps).
PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "data": {"n_molecules": 48},
        "validate_levels": ["mmff", "mmff-hybrid"],
        "validate_only": [1, 3],
        "e1": {
            "n_seeds": 1,
            "lr_sweep": [1e-3],
            "budget": 20_000,
            "budget_tol": 0.1,
            "d_model": 32,
            "stride": 8,
            "pca_candidates": [2, 4],
            "n_bootstrap": 200,
            "n_examples": 2,
            "train": {
                "steps": 3,
                "batch_size": 4,
                "accumulation": 1,
                "warmup_steps": 1,
                "eval_every": 3,
                "checkpoint_every": 3,
                "log_every": 1,
            },
        },
        "e3": {"n_shuffled": 1, "n_freq": 64, "n_bootstrap": 200},
        "e4": {
            "pairs": ["corn:m5:mp5"],
            "n_standards": [5],
            "n_random_subsets": 1,
            "max_components": 5,
            "n_bootstrap": 200,
            "backbones": ["dlinoss", "cnn"],
            "finetune_backbones": ["dlinoss"],
            "finetune_input_modes": ["wavenumber"],
            "n_seeds": 1,
            "train": {"steps": 3, "batch_size": 4, "warmup_steps": 1, "checkpoint_every": 3},
            "standards_train": {"steps": 2, "batch_size": 4, "warmup_steps": 1},
        },
        "e2": {
            "n_seeds": 1,
            "lr_sweep": [1e-3],
            "pls_candidates": [2, 4],
            "n_bootstrap": 200,
            "n_extremes": 5,
            "min_group_size": 2,
            "train": {
                "steps": 3,
                "batch_size": 4,
                "accumulation": 1,
                "warmup_steps": 1,
                "eval_every": 3,
                "checkpoint_every": 3,
                "log_every": 1,
            },
        },
    },
    "quick": {
        # The demo: the study's whole structure (six arms, 3 seeds, both E2 directions,
        # scratch and pretrained, E3, E4) in about 30 minutes on 2 CPU cores. Its steps and
        # its single learning rate are set by that budget, not by convergence or tuning: the
        # `study` preset is the one whose answer is meant to hold.
        "data": {"n_molecules": 3000},
        "e1": {
            # One LR, no sweep: at 800 steps with {1e-3, 3e-3} every arm chose 3e-3 (the top
            # of that grid), so the sweep bought nothing at this scale. 8 × 500 at stride 8
            # (the backbone sees 256 positions); with 200 steps of 16 at stride 4 no SSM arm
            # beat the interpolation baseline.
            "lr_sweep": [3e-3],
            "budget": 150_000,
            "d_model": 64,
            "stride": 8,
            "pca_candidates": [4, 8, 16, 32, 64],
            "train": {
                "steps": 500,
                "batch_size": 8,
                "accumulation": 1,
                "warmup_steps": 25,
                "eval_every": 100,
                "checkpoint_every": 100,
                "log_every": 20,
            },
        },
        "e2": {
            # 6 backbones x 2 directions x 2 inits x 3 seeds = 72 runs at E1's LR.
            "lr_sweep": [3e-3],
            "train": {
                "steps": 150,
                "batch_size": 8,
                "accumulation": 1,
                "warmup_steps": 10,
                "eval_every": 50,
                "checkpoint_every": 50,
                "log_every": 10,
            },
        },
        "e4": {
            # Probes (cheap) for every backbone, init and input mode; the costly fine-tuned arms
            # for D-LinOSS and the CNN in the wavenumber mode; 3 random subsets per curve size;
            # half the fine-tuning steps of the default recipe.
            "n_random_subsets": 3,
            "finetune_backbones": ["dlinoss", "cnn"],
            "finetune_input_modes": ["wavenumber"],
            "train": {"steps": 200, "checkpoint_every": 100, "eval_every": 200},
            "standards_train": {"steps": 50, "checkpoint_every": 50, "eval_every": 50},
        },
    },
    # The study: the answer meant to hold at a scale that fits 2 CPU cores in about 3 hours.
    # Quick's model shape (~150K-parameter backbones, d_model 64, the backbone sees 256 of the
    # 2048 points), 10,000 molecules at the default level, every E1 arm (the sigmoid D-LinOSS
    # variant too) tuned by one protocol, 6 seeds, trained on one log-uniform span distribution
    # from 8 to 256 points and scored at four gap lengths, 6 shuffled-order E3 controls.
    "study": {
        "data": {"n_molecules": 10000},
        "e1": {
            "backbones": list(STUDY_BACKBONES),
            "n_seeds": 6,
            "budget": 150_000,
            "d_model": 64,
            "stride": 8,
            "msrp": {
                "mask": {
                    "kind": "span",
                    "fraction": 0.15,
                    "min_span": 8,
                    "max_span": 256,
                    "span_dist": "log_uniform",
                }
            },
            "eval_spans": [8, 32, 128, 256],
            # The convergence rule's budget check: every arm's first seed also for 2 × steps.
            "convergence_check": 2,
            "tune": {
                "n_trials": 8,
                "steps": 300,
                "lr_min": 3e-4,
                "lr_max": 1e-2,
                "startup_trials": 4,
                "extension_trials": 2,
                "max_extensions": 2,
            },
            "train": {
                "steps": 1500,
                "batch_size": 8,
                "accumulation": 1,
                "warmup_steps": 75,
                "eval_every": 250,
                "checkpoint_every": 250,
                "log_every": 50,
            },
        },
        "e2": {
            # Every arm's LR chosen on validation (first seed) from the same grid, extended
            # beyond an end that is chosen, at most twice (after one extension S4D and
            # S4D-Real still chose the new end, 0.033); the other two seeds at the chosen LR.
            "backbones": list(STUDY_BACKBONES),
            "lr_sweep": [1e-3, 3e-3, 1e-2],
            "lr_extensions": 2,
            "convergence_check": 2,
            "train": {
                "steps": 400,
                "batch_size": 8,
                "accumulation": 1,
                "warmup_steps": 20,
                "eval_every": 100,
                "checkpoint_every": 100,
                "log_every": 20,
            },
        },
        "e3": {"n_shuffled": 6},
        "e4": {
            "n_random_subsets": 3,
            "finetune_backbones": ["dlinoss", "cnn"],
            "finetune_input_modes": ["wavenumber"],
            "train": {"steps": 200, "checkpoint_every": 100, "eval_every": 200},
            "standards_train": {"steps": 50, "checkpoint_every": 50, "eval_every": 50},
        },
    },
    # All of QM9 at the hybrid level (QM9's B3LYP frequencies x 0.965, GFN2-xTB intensities):
    # the level closest to the DFT reference (`spektron data validate`), measured at 1.05 s CPU
    # per molecule (100 random QM9 molecules, 2 % rejected for an imaginary xtb mode), so about
    # 38 CPU-hours for QM9: run it on Dask (`data simulate --all --level hybrid --scheduler`).
    "paper": {"data": {"n_molecules": None, "physics": {"level": "hybrid"}}},
}


def _deep_update(base: dict[str, Any], upd: dict[str, Any]) -> dict[str, Any]:
    for k, v in upd.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_update(base[k], v)
        else:
            base[k] = v
    return base


def preset_config(
    preset: str, overrides: list[str] | None = None, prefer: str = "", **top: Any
) -> RunConfig:
    """RunConfig for a preset, with top-level fields and ``key=value`` overrides applied
    (``prefer``: the section an unknown key's suggestions come from first, e.g. ``"e1"``)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    data = _deep_update(to_dict(RunConfig()), PRESETS[preset])
    data["preset"] = preset
    data.update({k: v for k, v in top.items() if v is not None})
    return apply_overrides(from_dict(RunConfig, data), overrides or [], prefer=prefer)


# ----------------------------------------------------------------------------- generic helpers


def to_dict(cfg: Any) -> dict[str, Any]:
    """Dataclass → plain dict (JSON-serialisable)."""
    return dataclasses.asdict(cfg)


def config_hash(cfg: Any, n: int = 12) -> str:
    """Stable short hash of a config (sorted JSON)."""
    blob = json.dumps(to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:n]


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Check/convert ``value`` to the annotated type ``tp`` (dataclasses, scalars, optionals)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: {value!r} matches none of {args}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        _, inner = typing.get_args(tp) or (str, Any)
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"{where}: keys must be strings, got {k!r}")
            out[k] = _coerce(inner, v, f"{where}.{k}")
        return out
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (inner, *_) = typing.get_args(tp) or (Any,)
        return origin(_coerce(inner, v, f"{where}[]") for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
        if f != int(f):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a dict, rejecting unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{where or cls.__name__}: unknown key(s) {sorted(unknown)}")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def flat_config(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf of a config as ``{"a.b.c": value}``, in field order (the ``--set`` keys)."""
    out: dict[str, Any] = {}

    def walk(node: dict[str, Any], path: str) -> None:
        for k, v in node.items():
            key = f"{path}.{k}" if path else k
            if isinstance(v, dict) and v:
                walk(v, key)
            else:
                out[key] = v

    walk(to_dict(cfg), prefix)
    return out


# How a user lists every key, quoted in each unknown-key message.
_KEYS_HINT = "keys are full config paths; `spektron config show` lists every key and value"


def _suggest(key: str, prefer: str) -> list[str]:
    """Full config paths the user may have meant by ``key``: those ending in it (the short form
    of a section's key, e.g. ``train.lr`` → ``e1.train.lr``), those under ``prefer`` first;
    else close spellings."""
    import difflib

    keys = list(flat_config(RunConfig()))
    tail = [k for k in keys if k.endswith("." + key)]
    if tail:
        return sorted(tail, key=lambda k: (not k.startswith(prefer + "."), keys.index(k)))
    return difflib.get_close_matches(key, keys, n=3, cutoff=0.75)


def _unknown_key(item: str, key: str, prefer: str, why: str) -> ConfigError:
    hints = _suggest(key, prefer)
    mean = ""
    if hints:
        mean = f"; did you mean {hints[0]}" + (
            f" (or {', '.join(hints[1:])})" if len(hints) > 1 else ""
        )
        mean += "?"
    return ConfigError(f"override {item!r}: {why}{mean} ({_KEYS_HINT})")


def _free_mapping_depth(cls: Any, parts: list[str]) -> int | None:
    """Number of leading ``parts`` that end on a ``dict``-typed field (a mapping whose keys the
    user chooses, e.g. ``e1.arm_overrides``), or None when the path crosses none."""
    tp = cls
    for i, p in enumerate(parts):
        if not dataclasses.is_dataclass(tp):
            return None
        hints = typing.get_type_hints(tp)
        if p not in hints:
            return None
        tp = hints[p]
        if typing.get_origin(tp) is dict:
            return i + 1
    return None


def apply_overrides(cfg: T, overrides: list[str], root: str = "", prefer: str = "") -> T:
    """Apply ``a.b.c=value`` overrides (values parsed as JSON when possible), type-checked.

    Keys are full paths in :class:`RunConfig` (``data.physics.ir_fwhm``, ``e1.train.lr``) for
    every command. ``root`` is the path of ``cfg`` in it ("" for a RunConfig, ``"data"`` for a
    DatasetConfig): keys must start with it. An unknown key is refused with the full paths it may
    stand for (those under section ``prefer`` first)."""
    data = to_dict(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        path = key
        if root:
            if not key.startswith(root + "."):
                full = flat_config(RunConfig())
                if key in full or any(k.startswith(key + ".") for k in full):
                    raise ConfigError(
                        f"override {item!r}: this command takes {root}.* keys only ({_KEYS_HINT})"
                    )
                raise _unknown_key(item, key, root, f"no config key {key!r}")
            path = key[len(root) + 1 :]
        node = data
        parts = path.split(".")
        free = _free_mapping_depth(type(cfg), parts)
        for i, p in enumerate(parts[:-1]):
            if free is not None and i >= free:  # inside a free mapping: new keys are made
                node = node.setdefault(p, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"override {item!r}: {'.'.join(parts[: i + 1])} is a value")
                continue
            if not isinstance(node.get(p), dict):
                raise _unknown_key(item, key, prefer or root, f"no config key {key!r}")
            node = node[p]
        if (free is None or len(parts) <= free) and parts[-1] not in node:
            raise _unknown_key(item, key, prefer or root, f"no config key {key!r}")
        node[parts[-1]] = value
    return from_dict(type(cfg), data)
