"""Functional-group flags from SMARTS patterns (RDKit substructure search).

The groups are those that shape mid-IR/Raman spectra of QM9 chemistry (C, H, N, O, F; up to
nine heavy atoms): O–H, N–H, C=O, C≡N, C≡C, C=C, C–F stretches and small strained rings. The
patterns follow the Daylight SMARTS examples (https://www.daylight.com/dayhtml_tutorials/
languages/smarts/smarts_examples.html) and the RDKit ``FragmentCatalog`` conventions (``[CX3]``:
trivalent carbon, ``[OX2H]``: hydroxyl oxygen, uppercase = aliphatic, lowercase = aromatic).
Hydrogens are matched as counts, so the molecule may carry explicit hydrogens or not. Charged
forms seen in QM9 (carboxylate, ammonium) count with their neutral parents.
"""

from __future__ import annotations

import numpy as np
from rdkit import Chem

# (name, SMARTS). Order is the column order of the stored flags: append, never reorder.
_PATTERNS: tuple[tuple[str, str], ...] = (
    ("alcohol", "[OX2H][CX4]"),
    ("phenol", "[OX2H]c"),
    ("enol", "[OX2H][CX3]=[CX3]"),
    ("ether", "[OD2;!$(O[#6]=[O,N]);!$(O[#6]#N)]([#6])[#6]"),
    ("aldehyde", "[CX3;H1,H2;!$(C[O,N;!$([OX1])])]=[OX1]"),
    ("ketone", "[#6][CX3](=[OX1])[#6]"),
    ("carboxylic_acid", "[CX3](=[OX1])[OX2H1,OX1-]"),
    ("ester", "[CX3](=[OX1])[OX2H0][#6]"),
    ("amide", "[NX3][CX3]=[OX1]"),
    ("primary_amine", "[NX3;H2;!$(N[#6]=[O,N]);!$(N[#6]#N)][#6]"),
    ("secondary_amine", "[NX3;H1;!$(N[#6]=[O,N]);!$(N[#6]#N)]([#6])[#6]"),
    ("tertiary_amine", "[NX3;H0;!$(N[#6]=[O,N]);!$(N[#6]#N)]([#6])([#6])[#6]"),
    ("ammonium", "[NX4+]"),
    ("nitrile", "[NX1]#[CX2]"),
    ("imine", "[CX3]=[NX2]"),
    ("alkene", "[CX3]=[CX3]"),
    ("alkyne", "[CX2]#[CX2]"),
    ("aromatic_ring", "a"),
    ("aromatic_n_heterocycle", "n"),
    ("aromatic_o_heterocycle", "o"),
    ("carbonyl", "[CX3]=[OX1]"),
    ("fluoro", "[#6]F"),
    ("epoxide", "[OX2r3]1[#6r3][#6r3]1"),
    ("aziridine", "[NX3r3]1[#6r3][#6r3]1"),
    ("three_membered_ring", "[r3]"),
    ("four_membered_ring", "[r4]"),
    ("methyl", "[CX4H3]"),
    ("hydroxyl", "[OX2H]"),
    ("nh", "[#7;!H0]"),
)

FUNCTIONAL_GROUP_NAMES: tuple[str, ...] = tuple(name for name, _ in _PATTERNS)
_COMPILED = tuple(Chem.MolFromSmarts(smarts) for _, smarts in _PATTERNS)
if any(q is None for q in _COMPILED):  # pragma: no cover - a typo in the table above
    raise RuntimeError("invalid SMARTS in functional_groups._PATTERNS")


def functional_group_flags(mol: Chem.Mol) -> np.ndarray:
    """Presence of each group of ``FUNCTIONAL_GROUP_NAMES`` in ``mol`` → (G,) bool array."""
    return np.array([mol.HasSubstructMatch(q) for q in _COMPILED], dtype=bool)


def functional_groups(mol: Chem.Mol) -> list[str]:
    """Names of the groups present in ``mol`` (readable form of ``functional_group_flags``)."""
    return [
        n for n, f in zip(FUNCTIONAL_GROUP_NAMES, functional_group_flags(mol), strict=True) if f
    ]
