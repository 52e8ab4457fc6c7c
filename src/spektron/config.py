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

T = TypeVar("T")


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass
class GridConfig:
    """Uniform wavenumber grid of the model (cm⁻¹)."""

    n_points: int = 2048
    lo: float = 500.0
    hi: float = 4000.0

    def __post_init__(self) -> None:
        _check(self.n_points >= 2, f"grid.n_points must be >= 2, got {self.n_points}")
        _check(self.hi > self.lo, f"grid.hi must exceed grid.lo, got {self.lo}..{self.hi}")


@dataclass
class PhysicsConfig:
    """Settings of the simulated IR/Raman physics (DESIGN §2.1)."""

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
    # Seed of the ETKDG embedding of user SMILES (one conformer, then MMFF94).
    embed_seed: int = 42
    # Largest |Σ Mulliken − molecular charge| (e) accepted; QM9 rows sum to within 5e-6.
    mulliken_sum_tol: float = 1e-3
    # Scale α∥ per bond type (element pair and order) in the bond-polarizability Raman model
    # (spektron.data.simulate.RAMAN_BOND_FACTOR, calibrated); False gives the raw model.
    raman_bond_correction: bool = True

    def __post_init__(self) -> None:
        _check(self.level in ("mmff",), f"physics.level must be 'mmff', got {self.level!r}")
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
    grid: GridConfig = field(default_factory=GridConfig)
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)

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


@dataclass
class RunConfig:
    """Top-level config of ``spektron run-all`` (grows as experiments land)."""

    preset: str = "quick"
    seed: int = 0
    device: str = "auto"
    workers: int = 0  # simulation processes; 0 = all cores
    n_figure_pairs: int = 4
    data: DatasetConfig = field(default_factory=DatasetConfig)

    def __post_init__(self) -> None:
        _check(
            self.preset in PRESETS, f"preset must be one of {sorted(PRESETS)}, got {self.preset!r}"
        )
        _check(self.workers >= 0, f"workers must be >= 0, got {self.workers}")
        _check(self.n_figure_pairs >= 1, "n_figure_pairs must be >= 1")


# Presets differ only in size: smoke (seconds, for tests), quick (minutes on a laptop CPU),
# paper (all of QM9: ~3.5 CPU-hours of simulation).
PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"data": {"n_molecules": 48}},
    "quick": {"data": {"n_molecules": 3000}},
    "paper": {"data": {"n_molecules": None}},
}


def _deep_update(base: dict[str, Any], upd: dict[str, Any]) -> dict[str, Any]:
    for k, v in upd.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_update(base[k], v)
        else:
            base[k] = v
    return base


def preset_config(preset: str, overrides: list[str] | None = None, **top: Any) -> RunConfig:
    """RunConfig for a preset, with top-level fields and ``key=value`` overrides applied."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    data = _deep_update(to_dict(RunConfig()), PRESETS[preset])
    data["preset"] = preset
    data.update({k: v for k, v in top.items() if v is not None})
    return apply_overrides(from_dict(RunConfig, data), overrides or [])


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


def apply_overrides(cfg: T, overrides: list[str]) -> T:
    """Apply ``a.b.c=value`` overrides (values parsed as JSON when possible), type-checked."""
    data = to_dict(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = data
        parts = key.split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise ConfigError(f"override {item!r}: no config section {p!r}")
            node = node[p]
        if parts[-1] not in node:
            raise ConfigError(f"override {item!r}: unknown key {parts[-1]!r}")
        node[parts[-1]] = value
    return from_dict(type(cfg), data)
