"""Deterministic dataset splits from hashes of molecule keys.

Each molecule's split is a pure function of its key (InChIKey by default), so a molecule lands
in the same split in every subset and every size of the dataset, and duplicate molecules (same
InChIKey) always share a split. The key is hashed with SHA-256 (salted) and the first 8 bytes,
read as an integer in [0, 2⁶⁴), are mapped to u ∈ [0, 1); u < f_train → train,
u < f_train + f_val → val, else test. Default fractions 85.5 / 4.5 / 10 % (docs/DESIGN.md §2.3).

The scaffold split hashes the Bemis–Murcko scaffold instead (Bemis & Murcko, J. Med. Chem. 1996),
so molecules sharing a ring system share a split. Acyclic molecules have an empty Murcko
scaffold; putting them all in one group would send a third of QM9 to a single split, so their key
is the generic carbon skeleton of the whole molecule (all heavy atoms as C, all bonds single).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np

from spektron.errors import ConfigError

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.855, 0.045, 0.10)
SPLIT_SALT = "spektron-split-v1"


def _check_fractions(fractions: Sequence[float]) -> None:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ConfigError(
            f"split fractions must be 3 non-negative numbers summing to 1, got {fractions}"
        )


def key_to_unit(key: str, salt: str = SPLIT_SALT) -> float:
    """Map a key to a pseudo-uniform number in [0, 1) (stable across runs and machines)."""
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def hash_splits(
    keys: Iterable[str],
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    salt: str = SPLIT_SALT,
) -> np.ndarray:
    """Split code per key: 0 = train, 1 = val, 2 = test. Returns (N,) uint8."""
    _check_fractions(fractions)
    edges = np.cumsum(fractions)[:2]
    u = np.fromiter((key_to_unit(k, salt) for k in keys), dtype=np.float64)
    return np.searchsorted(edges, u, side="right").astype(np.uint8)


def scaffold_key(smiles: str) -> str:
    """Bemis–Murcko scaffold SMILES; generic skeleton for acyclic molecules; '' if unparsable."""
    from rdkit import Chem
    from rdkit.Chem.Scaffolds import MurckoScaffold

    mol = Chem.MolFromSmiles(smiles) if smiles else None
    if mol is None:
        return ""
    if mol.GetRingInfo().NumRings() > 0:
        return "ring:" + MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)
    generic = MurckoScaffold.MakeScaffoldGeneric(Chem.RemoveHs(mol))
    return "acyclic:" + Chem.MolToSmiles(generic)


def scaffold_splits(
    smiles: Sequence[str],
    fallback_keys: Sequence[str],
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> np.ndarray:
    """Split by scaffold; molecules without a usable SMILES use their fallback key instead."""
    keys = []
    for s, fb in zip(smiles, fallback_keys, strict=True):
        k = scaffold_key(s)
        keys.append(k if k else f"nosmiles:{fb}")
    return hash_splits(keys, fractions, salt=SPLIT_SALT + "-scaffold")
