"""Functional-group SMARTS flags on known molecules."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem

from spektron.chemistry.functional_groups import (
    FUNCTIONAL_GROUP_NAMES,
    functional_group_flags,
    functional_groups,
)

CASES = [
    ("CCO", {"alcohol", "hydroxyl", "methyl"}),
    ("Oc1ccccc1", {"phenol", "hydroxyl", "aromatic_ring"}),
    ("COC", {"ether", "methyl"}),
    ("CC=O", {"aldehyde", "carbonyl", "methyl"}),
    ("C=O", {"aldehyde", "carbonyl"}),
    ("CC(C)=O", {"ketone", "carbonyl", "methyl"}),
    ("CC(=O)O", {"carboxylic_acid", "carbonyl", "hydroxyl", "methyl"}),
    ("CC(=O)OC", {"ester", "carbonyl", "methyl"}),
    ("CC(N)=O", {"amide", "carbonyl", "nh", "methyl"}),
    ("CCN", {"primary_amine", "nh", "methyl"}),
    ("CNC", {"secondary_amine", "nh", "methyl"}),
    ("CN(C)C", {"tertiary_amine", "methyl"}),
    ("CC#N", {"nitrile", "methyl"}),
    ("CC=NC", {"imine", "methyl"}),
    ("C=CC", {"alkene", "methyl"}),
    ("CC#C", {"alkyne", "methyl"}),
    ("c1ccncc1", {"aromatic_ring", "aromatic_n_heterocycle"}),
    ("c1ccoc1", {"aromatic_ring", "aromatic_o_heterocycle"}),
    ("FC(F)F", {"fluoro"}),
    ("C1CO1", {"ether", "epoxide", "three_membered_ring"}),
    ("C1CN1", {"secondary_amine", "aziridine", "three_membered_ring", "nh"}),
    ("C1CCC1", {"four_membered_ring"}),
    ("OC=C", {"enol", "alkene", "hydroxyl"}),
    ("[NH3+]CC([O-])=O", {"ammonium", "carboxylic_acid", "carbonyl", "nh"}),
    ("C", set()),
]


@pytest.mark.parametrize(("smiles", "expected"), CASES)
def test_known_molecules(smiles, expected):
    mol = Chem.MolFromSmiles(smiles)
    assert set(functional_groups(mol)) == expected


@pytest.mark.parametrize(("smiles", "_"), CASES)
def test_explicit_hydrogens_do_not_change_flags(smiles, _):
    mol = Chem.MolFromSmiles(smiles)
    np.testing.assert_array_equal(
        functional_group_flags(mol), functional_group_flags(Chem.AddHs(mol))
    )


def test_flags_shape_and_names():
    flags = functional_group_flags(Chem.MolFromSmiles("OCC(=O)N"))
    assert flags.dtype == bool and flags.shape == (len(FUNCTIONAL_GROUP_NAMES),)
    assert len(set(FUNCTIONAL_GROUP_NAMES)) == len(FUNCTIONAL_GROUP_NAMES)


def test_carbonyl_family_is_disjoint_where_it_should_be():
    # Acids, esters and amides are carbonyls but not ketones or aldehydes.
    for smi in ("CC(=O)O", "CC(=O)OC", "CC(N)=O", "OC=O", "NC=O", "COC=O"):
        names = set(functional_groups(Chem.MolFromSmiles(smi)))
        assert "carbonyl" in names
        assert not names & {"ketone", "aldehyde"}, smi
