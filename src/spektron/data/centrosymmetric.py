"""Simulated centrosymmetric molecules from outside QM9: the held-out symmetric set of E2.

For a molecule with a centre of inversion every normal mode is g (Raman-active, IR-silent) or u
(IR-active, Raman-silent): the rule of mutual exclusion (Herzberg, *Infrared and Raman Spectra*,
1945, ch. II.3). E2 tests whether a model predicting Raman from IR (and back) respects it. QM9
has very few such molecules (~0.07 %; docs/DESIGN.md §2.1), so this module adds a curated set of
centrosymmetric molecules that cannot be QM9 molecules and simulates them with the pipeline of
the main dataset (:func:`spektron.data.generate.simulate_to_store`: lowest-energy ETKDG
embedding of the SMILES, symmetry-adapted g/u modes) at the main dataset's level, or, where
that level needs QM9's DFT frequencies, at the closest level without them
(:func:`external_physics`).

**The list** (:data:`CENTROSYMMETRIC_MOLECULES`): 58 molecules of H, C, N, O, F only, each with
at least 10 heavy atoms. Only those elements: the bond-polarizability Raman model has
parameters for H, C, N, O and F alone (``spektron.chemistry.simulate.LS_ATOMIC_POLARIZABILITY``;
Cl, Br and S raise ``SimulationError``). At least 10 heavy atoms: QM9 holds molecules of up to 9
heavy atoms of C, N, O, F (Ramakrishnan et al., Sci. Data 1, 140022, 2014), so none of these
can be a QM9 molecule. Bond types without a calibrated Raman factor (aromatic C–N, C–O, N–O of
nitro, ...) take the C–C factor of their order, as everywhere in the simulator; the two N–O
bonds of a nitro group, written N=O and N–O⁻, even get different factors and charges (the
molecule as a whole stays inversion-symmetric, so mutual exclusion is unaffected, but its nitro
bands are the least trustworthy of the set). Chosen after
simulating ~90 candidates with the default physics and six ETKDG seeds (42, 0, 1, 2, 3, 7):

- 55 rigid molecules kept an inversion centre for every seed (polyacenes and other fused
  aromatics, aza- and fluoro-aromatics, nitriles, quinones, polyenes, polyynes, cages);
- 3 conformer-dependent ones (terephthalaldehyde, 1,4-diacetylbenzene, diethyl oxalate) pass
  at the default seed 42 and 3–4 of the 5 others; with another ``physics.embed_seed`` they may
  be dropped, and the drop is reported.

(That selection used one embedding per molecule. With the lowest-energy search over
``physics.n_conformers`` = 10 embeddings, the default since, all 58 pass at seed 42 as well.)

Tried and left out because the MMFF94 minimum reached from the embedding has no inversion
centre: biphenyl, p-terphenyl, decafluorobiphenyl, diphenylacetylene (phenyl rings twisted:
D2 / D2d), trans-azobenzene (C2), trans-decalin, n-decane, n-dodecane (gauche or twisted
conformers), and about a dozen flexible ones passing for only some seeds (1,4-dimethoxybenzene,
p-divinylbenzene, bicyclohexyl, perfluorodecalin, dimethyl terephthalate, ...).

**Filter and checks.** :func:`build_centrosymmetric_store` simulates the list into a candidate
store and writes the final store with only the molecules that

1. are not QM9 molecules: (a) by construction, more than 9 heavy atoms or an element other than
   C, N, O, F (this also covers the QM9 rows our parser rejects, which are absent from the
   QM9 index); (b) by InChIKey: the connectivity block (first 14 characters: the constitution,
   without stereo, isotope and protonation layers, so stricter than whole-key equality) of
   neither the SMILES-derived key nor the stored key occurs among the keys of every accepted
   QM9 row (computed from their InChIs, :func:`qm9_inchikeys`);
2. were simulated without error;
3. have ``centrosymmetric == 1`` in the store, i.e. the optimised geometry has an inversion
   centre per :func:`spektron.chemistry.symmetry.inversion_permutation` (tolerance
   ``physics.symmetry_tol``);
4. obey mutual exclusion in their sticks: with IR intensities a_k and Raman activities s_k,
   ``leak = max_k min(a_k / max a, s_k / max s) ≤ threshold`` (default 0.01), i.e. no mode
   carries more than 1 % of the strongest band in *both* spectra. Measured on the list: every
   kept molecule has leak < 1e-8 (exact g/u symmetry up to round-off), so the threshold only
   separates real violations (every candidate without an inversion centre scored ≥ 0.02).
   Duplicates (same InChIKey) are dropped too.

Each molecule that fails is recorded with its reason in the store attribute
``centrosymmetric_report`` (JSON) and in ``<store stem>.report.json`` beside it. The store
keeps the main dataset's schema and labels (``simulated = True``, ``label`` says SIMULATED);
``source_index`` is the molecule's position in the list. Its ``split`` column is the usual hash
split and has no meaning here: the whole store is a held-out test set. Cost, measured on a
shared 2-core machine: about 0.08 CPU s per molecule with the 10-conformer search (0.03 with
one embedding; the whole list in ~4.4 s on one core),
plus ~3 s to load the QM9 InChIKeys from the cached QM9 index.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from spektron import __version__
from spektron.chemistry.spectra import make_grid
from spektron.config import GridConfig, PhysicsConfig, config_hash, to_dict
from spektron.data.generate import GENERATOR_VERSION, simulate_to_store
from spektron.data.molecules import (
    QM9_MAX_HEAVY_ATOMS,
    MoleculeInput,
    heavy_atoms_in_qm9_scope,
    inchikey_of,
)
from spektron.data.store import StoreWriter, open_store
from spektron.errors import ConfigError, DataError, MoleculeError, StoreError
from spektron.utils import cache_dir, write_json_atomic

log = logging.getLogger(__name__)

# Bumped whenever the list or the filter changes results, so cached stores are regenerated.
CENTROSYMMETRIC_VERSION = 1
# Largest accepted max_k min(IR_k / max IR, Raman_k / max Raman) (see the module docstring).
EXCLUSION_THRESHOLD = 0.01
# Characters of the InChIKey connectivity block (the constitution).
INCHIKEY_SKELETON = 14
SOURCE = "centrosym-sim"
CENTROSYMMETRIC_LABEL = (
    "SIMULATED spectra (MMFF94 normal modes, Gasteiger fixed-charge IR (C-H weak), "
    "bond-polarizability Raman) of centrosymmetric molecules from outside QM9; "
    "not DFT, not measured"
)

# (name, SMILES, point group of the simulated geometry at the default physics). All H/C/N/O/F,
# ≥ 10 heavy atoms. The point group is for information; the filter decides on the store's flag.
CENTROSYMMETRIC_MOLECULES: tuple[tuple[str, str, str], ...] = (
    # fused aromatics
    ("naphthalene", "c1ccc2ccccc2c1", "D2h"),
    ("anthracene", "c1ccc2cc3ccccc3cc2c1", "D2h"),
    ("tetracene", "c1ccc2cc3cc4ccccc4cc3cc2c1", "D2h"),
    ("pyrene", "c1cc2ccc3cccc4ccc(c1)c2c34", "D2h"),
    ("chrysene", "c1ccc2c(c1)ccc1c3ccccc3ccc21", "C2h"),
    ("perylene", "c1cc2cccc3c2c(c1)-c1cccc2cccc-3c12", "D2h"),
    ("coronene", "c1cc2ccc3ccc4ccc5ccc6ccc1c1c2c3c4c5c61", "D6h"),
    # aza / oxa / NH heteroaromatics
    ("phenazine", "c1ccc2nc3ccccc3nc2c1", "D2h"),
    ("1,5-naphthyridine", "c1cc2ncccc2nc1", "C2h"),
    ("2,6-naphthyridine", "c1cc2cnccc2cn1", "C2h"),
    ("pyrazino[2,3-b]pyrazine", "c1cnc2nccnc2n1", "D2h"),
    ("benzo[1,2-b:4,5-b']difuran", "c1cc2cc3occc3cc2o1", "C2h"),
    ("1,5-dihydropyrrolo[2,3-f]indole", "c1cc2cc3[nH]ccc3cc2[nH]1", "C2h"),
    ("dibenzo-p-dioxin", "c1ccc2Oc3ccccc3Oc2c1", "D2h"),
    ("anthraquinone", "O=C1c2ccccc2C(=O)c2ccccc12", "D2h"),
    # fluoroaromatics
    ("hexafluorobenzene", "Fc1c(F)c(F)c(F)c(F)c1F", "D6h"),
    ("1,2,4,5-tetrafluorobenzene", "Fc1cc(F)c(F)cc1F", "D2h"),
    ("octafluoronaphthalene", "Fc1c(F)c(F)c2c(F)c(F)c(F)c(F)c2c1F", "D2h"),
    ("1,5-difluoronaphthalene", "Fc1cccc2c(F)cccc12", "C2h"),
    ("2,6-difluoronaphthalene", "Fc1ccc2cc(F)ccc2c1", "C2h"),
    ("1,4,5,8-tetrafluoronaphthalene", "Fc1ccc(F)c2c(F)ccc(F)c12", "D2h"),
    ("2,3,6,7-tetrafluoronaphthalene", "Fc1cc2cc(F)c(F)cc2cc1F", "D2h"),
    ("9,10-difluoroanthracene", "Fc1c2ccccc2c(F)c2ccccc12", "D2h"),
    # nitriles and nitro
    ("terephthalonitrile", "N#Cc1ccc(C#N)cc1", "D2h"),
    ("1,2,4,5-tetracyanobenzene", "N#Cc1cc(C#N)c(C#N)cc1C#N", "D2h"),
    ("tetrafluoroterephthalonitrile", "N#Cc1c(F)c(F)c(C#N)c(F)c1F", "D2h"),
    ("2,6-dicyanonaphthalene", "N#Cc1ccc2cc(C#N)ccc2c1", "C2h"),
    ("1,5-dicyanonaphthalene", "N#Cc1cccc2c(C#N)cccc12", "C2h"),
    ("2,5-dicyanopyrazine", "N#Cc1cnc(C#N)cn1", "C2h"),
    ("tetracyanoethylene", "N#CC(C#N)=C(C#N)C#N", "D2h"),
    ("7,7,8,8-tetracyanoquinodimethane", "N#CC(C#N)=C1C=CC(=C(C#N)C#N)C=C1", "D2h"),
    ("1,4-dinitrobenzene", "[O-][N+](=O)c1ccc(cc1)[N+]([O-])=O", "D2h"),
    # alkynes, polyynes, polyenes, stilbenes
    ("1,4-diethynylbenzene", "C#Cc1ccc(C#C)cc1", "D2h"),
    ("1,4-bis(cyanoethynyl)benzene", "N#CC#Cc1ccc(C#CC#N)cc1", "D2h"),
    ("1,4-bis(phenylethynyl)benzene", "c1ccc(cc1)C#Cc1ccc(cc1)C#Cc1ccccc1", "D2h"),
    ("deca-1,3,5,7,9-pentayne", "C#CC#CC#CC#CC#C", "D∞h"),
    ("octa-2,4,6-triynedinitrile", "N#CC#CC#CC#CC#N", "D∞h"),
    ("hexafluoro-2-butyne", "FC(F)(F)C#CC(F)(F)F", "D3d"),
    ("(E,E,E)-deca-1,3,5,7,9-pentaene", "C=C/C=C/C=C/C=C/C=C", "C2h"),
    ("(E,E,E,E)-deca-2,4,6,8-tetraene", "C/C=C/C=C/C=C/C=C/C", "C2h"),
    ("(E,E,E)-octa-2,4,6-trienedinitrile", "N#C/C=C/C=C/C=C/C#N", "C2h"),
    ("trans-stilbene", "c1ccc(cc1)/C=C/c1ccccc1", "Ci"),
    ("(E,E)-1,4-diphenyl-1,3-butadiene", "c1ccc(cc1)/C=C/C=C/c1ccccc1", "Ci"),
    # quinones, acids, imides, anhydrides
    ("tetrafluoro-1,4-benzoquinone", "O=C1C(F)=C(F)C(=O)C(F)=C1F", "D2h"),
    ("2,5-difluoro-1,4-benzoquinone", "FC1=CC(=O)C(F)=CC1=O", "C2h"),
    ("2,5-dimethyl-1,4-benzoquinone", "CC1=CC(=O)C(C)=CC1=O", "C2h"),
    ("2,5-dihydroxy-1,4-benzoquinone", "OC1=CC(=O)C(O)=CC1=O", "C2h"),
    ("terephthalic acid", "OC(=O)c1ccc(cc1)C(O)=O", "C2h"),
    ("pyromellitic diimide", "O=C1NC(=O)c2cc3C(=O)NC(=O)c3cc12", "D2h"),
    ("pyromellitic dianhydride", "O=C1OC(=O)c2cc3C(=O)OC(=O)c3cc12", "D2h"),
    # methylated aromatics, saturated and cage molecules
    ("durene", "Cc1cc(C)c(C)cc1C", "D2h"),
    ("hexamethylbenzene", "Cc1c(C)c(C)c(C)c(C)c1C", "D3d"),
    ("tetramethylpyrazine", "Cc1nc(C)c(C)nc1C", "D2h"),
    ("trans-cyclohexane-1,4-dicarbonitrile", "N#C[C@H]1CC[C@H](C#N)CC1", "C2h"),
    ("octafluorocubane", "C12(F)C3(F)C4(F)C1(F)C5(F)C2(F)C3(F)C45F", "Oh"),
    # conformer-dependent (see the module docstring)
    ("terephthalaldehyde", "O=Cc1ccc(C=O)cc1", "C2h"),
    ("1,4-diacetylbenzene", "CC(=O)c1ccc(cc1)C(C)=O", "C2h"),
    ("diethyl oxalate", "CCOC(=O)C(=O)OCC", "Ci"),
)
CENTROSYMMETRIC_SMILES: tuple[str, ...] = tuple(s for _, s, _ in CENTROSYMMETRIC_MOLECULES)

# Molecules as (name, SMILES, ...) tuples or bare SMILES strings (then name = SMILES).
MoleculeList = Sequence[tuple[str, ...] | str]


# ----------------------------------------------------------------------------- molecules


def _name_smiles(molecules: MoleculeList) -> list[tuple[str, str]]:
    out = []
    for m in molecules:
        if isinstance(m, str):
            out.append((m, m))
        elif len(m) >= 2:
            out.append((str(m[0]), str(m[1])))
        else:
            raise ConfigError(f"molecule entries must be SMILES or (name, SMILES, ...), got {m!r}")
    if not out:
        raise ConfigError("no molecules given")
    return out


def centrosymmetric_inputs(
    molecules: MoleculeList = CENTROSYMMETRIC_MOLECULES,
) -> list[MoleculeInput]:
    """Simulator inputs for ``molecules``: ``source_index`` = position in the list, ``name`` set.

    Raises
    ------
    MoleculeError
        A SMILES RDKit cannot parse (named by its position).
    """
    from rdkit import Chem, rdBase

    inputs = []
    for pos, (name, smiles) in enumerate(_name_smiles(molecules)):
        with rdBase.BlockLogs():
            ok = bool(smiles.strip()) and Chem.MolFromSmiles(smiles) is not None
        if not ok:
            raise MoleculeError(f"molecule {pos} ({name}): RDKit cannot parse SMILES {smiles!r}")
        inputs.append(MoleculeInput(source_index=pos, smiles=smiles, name=name, source="smiles"))
    return inputs


def outside_qm9_by_construction(smiles: str) -> bool:
    """True when the molecule cannot be a QM9 molecule: more than 9 heavy atoms, or a heavy
    element other than C, N, O, F."""
    from rdkit import Chem, rdBase

    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ConfigError(f"RDKit cannot parse SMILES {smiles!r}")
    return not heavy_atoms_in_qm9_scope(mol)


def qm9_inchikeys(cache: str | os.PathLike | None = None) -> frozenset[str]:
    """Standard InChIKeys of every accepted QM9 row (from its InChI), via the cached QM9 index
    (:func:`spektron.data.molecules.load_qm9`: about half a minute the first time, seconds after).

    Raises
    ------
    DataError
        qm9pack (or its data files) is missing.
    """
    from spektron.data.molecules import load_qm9

    mols, _ = load_qm9(cache_dir=cache)
    return frozenset(inchikey_of(m) for m in mols)


def exclusion_leak(stick_ir: np.ndarray, stick_raman: np.ndarray) -> float:
    """max_k min(a_k / max a, s_k / max s) over modes k (IR a, Raman s); 0 when either kind is
    silent everywhere. At most t exactly when no mode carries more than t × the strongest band
    in both spectra."""
    a = np.clip(np.asarray(stick_ir, dtype=np.float64), 0.0, None)
    s = np.clip(np.asarray(stick_raman, dtype=np.float64), 0.0, None)
    if a.size == 0 or a.max() <= 0 or s.max() <= 0:
        return 0.0
    return float(np.max(np.minimum(a / a.max(), s / s.max())))


# ----------------------------------------------------------------------------- store subset


def subset_store(
    src: str | os.PathLike,
    rows: Sequence[int],
    out: str | os.PathLike,
    attrs: dict[str, Any] | None = None,
) -> Path:
    """Copy rows ``rows`` (in that order) of the store ``src`` into a new store ``out``.

    Attributes are those of ``src`` (without the writer's own bookkeeping) updated by ``attrs``;
    splits are reassigned by the writer from the same InChIKey hash, so a row keeps its split.
    """
    rows = [int(r) for r in rows]
    if not rows:
        raise StoreError(f"{out}: no rows selected from {src}; refusing an empty store")
    with open_store(src) as s:
        bad = [r for r in rows if not 0 <= r < s.n]
        if bad:
            raise StoreError(f"{src}: rows {bad[:5]} out of range for {s.n} records")
        keep = {
            k: v
            for k, v in s.attrs.items()
            if k not in ("complete", "n_records", "created", "schema_version", "merged_from")
        }
        keep.update(attrs or {})
        with StoreWriter(out, s.wavenumber, attrs=keep, fg_names=s.fg_names) as w:
            for r in rows:
                w.append(s.record(r))
    return Path(out)


# ----------------------------------------------------------------------------- build


@dataclass
class CentrosymmetricReport:
    """What :func:`build_centrosymmetric_store` did: kept and dropped molecules, timing."""

    out: str = ""
    n_candidates: int = 0
    # name, smiles, inchikey, point_group, exclusion_leak (kept); name, smiles, reason, detail
    # (dropped).
    kept: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    qm9_check: str = ""
    n_qm9_keys: int = 0
    exclusion_threshold: float = EXCLUSION_THRESHOLD
    max_exclusion_leak: float = 0.0
    wall_s: float = 0.0
    simulate_wall_s: float = 0.0
    cpu_s_per_molecule: float = 0.0
    workers: int = 1

    @property
    def n_kept(self) -> int:
        return len(self.kept)

    def dropped_by_reason(self) -> dict[str, int]:
        return dict(Counter(d["reason"] for d in self.dropped).most_common())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["n_kept"] = self.n_kept
        d["dropped_by_reason"] = self.dropped_by_reason()
        return d

    def summary(self) -> str:
        """One line for logs."""
        why = ", ".join(f"{k} {v}" for k, v in self.dropped_by_reason().items()) or "none"
        return (
            f"centrosymmetric set: {self.n_kept} of {self.n_candidates} kept, dropped: {why}; "
            f"largest exclusion leak {self.max_exclusion_leak:.1e}; QM9 check: {self.qm9_check}"
        )


def centrosymmetric_label(physics: PhysicsConfig) -> str:
    """The SIMULATED label of the set at its physics (mmff or xtb; see external_physics)."""
    if physics.level == "xtb":
        raman = (
            "bond-polarizability Raman"
            if physics.xtb_raman == "bond"
            else "Raman from polarizability derivatives"
        )
        return (
            f"SIMULATED spectra (GFN2-xTB normal modes, IR from dipole derivatives, {raman}) of "
            "centrosymmetric molecules from outside QM9; not DFT, not measured"
        )
    return CENTROSYMMETRIC_LABEL


def centrosymmetric_attrs(
    physics: PhysicsConfig,
    grid_cfg: GridConfig,
    molecules: MoleculeList = CENTROSYMMETRIC_MOLECULES,
    exclusion_threshold: float = EXCLUSION_THRESHOLD,
) -> dict[str, Any]:
    """Store attributes: what generated the set, its hash (the cache key) and the SIMULATED
    label."""
    cfg = {
        "molecules": [list(p) for p in _name_smiles(molecules)],
        "physics": to_dict(physics),
        "grid": to_dict(grid_cfg),
        "exclusion_threshold": float(exclusion_threshold),
    }
    versions = {"gen": GENERATOR_VERSION, "centrosymmetric": CENTROSYMMETRIC_VERSION}
    return {
        "source": SOURCE,
        "simulated": True,
        "label": centrosymmetric_label(physics),
        "level": physics.level,
        "config": cfg,
        "config_hash": config_hash({"cfg": cfg, **versions}),
        "generator_version": GENERATOR_VERSION,
        "centrosymmetric_version": CENTROSYMMETRIC_VERSION,
        "spektron_version": __version__,
    }


def _drop(inp: MoleculeInput, reason: str, detail: str) -> dict[str, Any]:
    return {"name": inp.name, "smiles": inp.smiles, "reason": reason, "detail": detail}


def build_centrosymmetric_store(
    out_path: str | os.PathLike,
    physics: PhysicsConfig,
    grid_cfg: GridConfig,
    workers: int = 1,
    progress: bool = False,
    *,
    molecules: MoleculeList = CENTROSYMMETRIC_MOLECULES,
    qm9_keys: frozenset[str] | set[str] | None = None,
    exclusion_threshold: float = EXCLUSION_THRESHOLD,
    chunk_size: int = 8,
) -> CentrosymmetricReport:
    """Simulate ``molecules`` and store those that pass the checks of the module docstring.

    Parameters
    ----------
    out_path : the final store (a ``<stem>.report.json`` is written beside it).
    physics, grid_cfg : physics and grid, as for the main dataset.
    workers : simulation processes (0 = all cores).
    progress : show a progress bar.
    molecules : (name, SMILES, ...) tuples or SMILES; default :data:`CENTROSYMMETRIC_MOLECULES`.
    qm9_keys : InChIKeys of QM9 for the InChIKey check; None loads them (:func:`qm9_inchikeys`),
        falling back to the structural check alone, with a warning, when QM9 is not installed.
    exclusion_threshold : largest accepted :func:`exclusion_leak`.
    chunk_size : molecules per simulation chunk (see ``simulate_to_store``).

    Returns
    -------
    CentrosymmetricReport (also stored as JSON in the store attribute ``centrosymmetric_report``
    and in ``<stem>.report.json``).

    Raises
    ------
    StoreError
        No molecule passes (an empty store is never written).
    """
    t0 = time.perf_counter()
    out = Path(out_path)
    if not 0 <= exclusion_threshold < 1:
        raise ConfigError(f"exclusion_threshold must lie in [0, 1), got {exclusion_threshold}")
    inputs = centrosymmetric_inputs(molecules)
    report = CentrosymmetricReport(
        out=str(out), n_candidates=len(inputs), exclusion_threshold=float(exclusion_threshold)
    )
    if qm9_keys is None:
        try:
            qm9_keys = qm9_inchikeys()
            report.qm9_check = "structural + InChIKey connectivity vs the QM9 index"
        except DataError as e:
            log.warning("QM9 not available (%s): centrosymmetric set checked structurally only", e)
            qm9_keys = frozenset()
            report.qm9_check = f"structural only (QM9 unavailable: {e})"
    else:
        report.qm9_check = "structural + InChIKey connectivity vs the given QM9 keys"
    report.n_qm9_keys = len(qm9_keys)
    qm9_skeletons = {k[:INCHIKEY_SKELETON] for k in qm9_keys}

    # Checks that need no simulation: duplicates and QM9 membership.
    todo: list[MoleculeInput] = []
    seen: dict[str, str] = {}
    for inp in inputs:
        key = inchikey_of(inp)
        if key in seen:
            report.dropped.append(_drop(inp, "duplicate", f"same InChIKey {key} as {seen[key]}"))
        elif not outside_qm9_by_construction(inp.smiles):
            report.dropped.append(
                _drop(inp, "within QM9 scope", f"≤ {QM9_MAX_HEAVY_ATOMS} heavy atoms of C, N, O, F")
            )
        elif key[:INCHIKEY_SKELETON] in qm9_skeletons:
            report.dropped.append(_drop(inp, "in QM9", f"InChIKey {key} (connectivity) in QM9"))
        else:
            seen[key] = inp.name or inp.smiles
            todo.append(inp)
    if not todo:
        raise StoreError(f"{out}: no candidate molecule is left to simulate")

    attrs = centrosymmetric_attrs(physics, grid_cfg, molecules, exclusion_threshold)
    candidates = out.with_name(f".{out.name}.candidates.h5")
    by_index = {inp.source_index: inp for inp in inputs}
    try:
        gen = simulate_to_store(
            todo,
            candidates,
            physics,
            grid_cfg,
            workers=workers,
            chunk_size=chunk_size,
            attrs=attrs,
            progress=progress,
        )
        report.simulate_wall_s = gen.wall_s
        report.cpu_s_per_molecule = gen.cpu_s_per_molecule
        report.workers = gen.workers
        for f in gen.failures:
            inp = by_index[f["source_index"]]
            report.dropped.append(_drop(inp, "simulation failed", f["message"]))
        keep_rows = _filter_candidates(candidates, by_index, qm9_skeletons, report)
        if not keep_rows:
            raise StoreError(f"{out}: no molecule passed; dropped {report.dropped_by_reason()}")
        report.max_exclusion_leak = max(k["exclusion_leak"] for k in report.kept)
        report.wall_s = time.perf_counter() - t0
        payload = report.to_dict()
        subset_store(candidates, keep_rows, out, {"centrosymmetric_report": payload})
    finally:
        candidates.unlink(missing_ok=True)
    write_json_atomic(out.with_name(out.stem + ".report.json"), payload)
    log.info("%s", report.summary())
    return report


def _filter_candidates(
    path: Path,
    by_index: dict[int, MoleculeInput],
    qm9_skeletons: set[str],
    report: CentrosymmetricReport,
) -> list[int]:
    """Rows of the candidate store that pass checks 1b, 3 and 4; the rest go to ``report``."""
    keep = []
    with open_store(path) as s:
        src = s.column("source_index")
        cs = s.column("centrosymmetric")
        pg = s.column("point_group")
        keys = s.column("inchikey")
        for row in range(s.n):
            inp = by_index[int(src[row])]
            _, ir, raman = s.sticks(row)
            leak = exclusion_leak(ir, raman)
            if keys[row][:INCHIKEY_SKELETON] in qm9_skeletons:
                report.dropped.append(_drop(inp, "in QM9", f"stored InChIKey {keys[row]} in QM9"))
            elif cs[row] != 1:
                report.dropped.append(
                    _drop(
                        inp,
                        "no inversion centre",
                        f"MMFF94 geometry has point group {pg[row] or 'unknown'}",
                    )
                )
            elif not leak <= report.exclusion_threshold:
                report.dropped.append(
                    _drop(inp, "mutual exclusion violated", f"exclusion leak {leak:.3g}")
                )
            else:
                keep.append(row)
                report.kept.append(
                    {
                        "name": inp.name,
                        "smiles": inp.smiles,
                        "inchikey": keys[row],
                        "point_group": pg[row],
                        "exclusion_leak": leak,
                    }
                )
    return keep


# ----------------------------------------------------------------------------- cache


def default_centrosymmetric_path(
    physics: PhysicsConfig,
    grid_cfg: GridConfig,
    molecules: MoleculeList = CENTROSYMMETRIC_MOLECULES,
    exclusion_threshold: float = EXCLUSION_THRESHOLD,
) -> Path:
    """Cache location of the set (keyed by the hash of list, physics, grid and versions)."""
    h = centrosymmetric_attrs(physics, grid_cfg, molecules, exclusion_threshold)["config_hash"]
    return cache_dir() / "datasets" / f"{SOURCE}-{h}.h5"


# Molecules outside QM9 have no QM9 DFT frequencies: a level that needs them falls back to the
# level of its intensity physics — (level, xtb_raman) of the fallback. fast-hybrid's IR comes
# from GFN2-xTB dipole derivatives and its Raman from the bond-polarizability model, so its
# fallback is the xtb level with bond-polarizability Raman (not GFN2 Raman, which the training
# molecules never saw).
EXTERNAL_LEVEL: dict[str, tuple[str, str | None]] = {
    "hybrid": ("xtb", None),
    "mmff-hybrid": ("mmff", None),
    "fast-hybrid": ("xtb", "bond"),
}


def external_physics(physics: PhysicsConfig) -> PhysicsConfig:
    """The physics for the external (non-QM9) molecules: a level that needs QM9's DFT
    frequencies becomes the level of its intensities (hybrid → xtb, mmff-hybrid → mmff,
    fast-hybrid → xtb with ``xtb_raman="bond"``); other levels are kept."""
    fallback = EXTERNAL_LEVEL.get(physics.level)
    if fallback is None:
        return physics
    level, raman = fallback
    out = replace(physics, level=level)
    if raman is not None:
        out = replace(out, xtb_raman=raman)
    log.warning(
        "centrosymmetric set: molecules outside QM9 have no DFT frequencies; simulated at level "
        "%r%s (the intensity physics of %r)",
        level,
        f" with {raman!r} Raman" if raman else "",
        physics.level,
    )
    return out


def ensure_centrosymmetric_store(
    physics: PhysicsConfig,
    grid_cfg: GridConfig,
    *,
    workers: int = 0,
    progress: bool = True,
    molecules: MoleculeList = CENTROSYMMETRIC_MOLECULES,
    exclusion_threshold: float = EXCLUSION_THRESHOLD,
) -> Path:
    """Return the cached centrosymmetric store, simulating it first if needed (as
    :func:`spektron.data.generate.ensure_dataset` does for the main dataset). A hybrid level
    is replaced by :func:`external_physics`; the store records the level it used."""
    physics = external_physics(physics)
    path = default_centrosymmetric_path(physics, grid_cfg, molecules, exclusion_threshold)
    grid = make_grid(grid_cfg.n_points, grid_cfg.lo, grid_cfg.hi)
    if path.exists():
        try:
            open_store(path, expected_grid=grid).close()
            log.info("using cached centrosymmetric set %s", path)
            return path
        except StoreError as e:
            log.warning("cached centrosymmetric set unusable (%s); regenerating", e)
            path.unlink()
    log.info("simulating the centrosymmetric set into %s", path)
    build_centrosymmetric_store(
        path,
        physics,
        grid_cfg,
        workers=workers,
        progress=progress,
        molecules=molecules,
        exclusion_threshold=exclusion_threshold,
    )
    return path
