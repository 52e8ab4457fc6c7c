"""Point groups and inversion centres: real molecules and exact synthetic structures per group."""

from __future__ import annotations

import re
import zlib

import numpy as np
import pytest

from spektron.chemistry.simulate import mmff_optimise, molecule_from_smiles
from spektron.chemistry.symmetry import (
    has_inversion_centre,
    inversion_permutation,
    is_linear,
    point_group,
    symmetry_elements,
)
from spektron.config import PhysicsConfig
from tests.helpers import qm9_rows

TOL = 0.05


def _rot(axis, angle: float) -> np.ndarray:
    a = np.asarray(axis, dtype=float)
    a = a / np.linalg.norm(a)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _mirror(normal) -> np.ndarray:
    n = np.asarray(normal, dtype=float)
    n = n / np.linalg.norm(n)
    return np.eye(3) - 2 * np.outer(n, n)


def _closure(gens: list[np.ndarray]) -> list[np.ndarray]:
    group = [np.eye(3)]
    frontier = [np.eye(3)]
    while frontier:
        new = []
        for g in frontier:
            for h in gens:
                m = h @ g
                if not any(np.allclose(m, e, atol=1e-8) for e in group):
                    group.append(m)
                    new.append(m)
        frontier = new
    return group


def _generators(name: str) -> list[np.ndarray]:
    z = (0, 0, 1)
    m = re.fullmatch(r"([CDS])(\d+)([hvd]?)", name)
    if name == "C1":
        return [np.eye(3)]
    if name == "Ci":
        return [-np.eye(3)]
    if name == "Cs":
        return [_mirror(z)]
    if name in ("T", "Td", "Th"):
        gens = [_rot(z, np.pi), _rot((1, 1, 1), 2 * np.pi / 3)]
        return gens + {"T": [], "Td": [_mirror((1, -1, 0))], "Th": [-np.eye(3)]}[name]
    if name in ("O", "Oh"):
        gens = [_rot(z, np.pi / 2), _rot((1, 1, 1), 2 * np.pi / 3)]
        return gens + ([-np.eye(3)] if name == "Oh" else [])
    if name in ("I", "Ih"):
        phi = (1 + 5**0.5) / 2
        gens = [_rot((0, 1, phi), 2 * np.pi / 5), _rot((1, 1, 1), 2 * np.pi / 3)]
        return gens + ([-np.eye(3)] if name == "Ih" else [])
    assert m, name
    kind, n, sub = m.group(1), int(m.group(2)), m.group(3)
    if kind == "S":
        return [_mirror(z) @ _rot(z, 2 * np.pi / n)]
    gens = [_rot(z, 2 * np.pi / n)]
    if kind == "D":
        gens.append(_rot((1, 0, 0), np.pi))
    if sub == "h":
        gens.append(_mirror(z))
    elif sub == "v":
        gens.append(_mirror((1, 0, 0)))
    elif sub == "d":
        a = np.pi / (2 * n) + np.pi / 2
        gens.append(_mirror((np.cos(a), np.sin(a), 0)))
    return gens


ORDERS = {"T": 12, "Td": 24, "Th": 24, "O": 24, "Oh": 48, "I": 60, "Ih": 120}


def _structure(name: str, rng: np.random.Generator, noise: float = 0.0):
    """Orbits of generic points under the group: exactly that symmetry, randomly oriented.

    Four orbits for small groups (three points are always coplanar: C1 needs four), one for the
    cubic and icosahedral groups (24–120 points already).
    """
    group = _closure(_generators(name))
    if name in ORDERS:
        assert len(group) == ORDERS[name]
    pts, labels = [], []
    seeds = (("C", [1.3, 0.47, 0.71]), ("H", [-0.52, 1.9, 1.13]), ("O", [0.3, -0.8, 2.4]))
    seeds += (("N", [-1.1, -0.6, -0.25]),)
    for label, p in seeds[: 1 if name in ORDERS else 4]:
        orbit = [g @ np.array(p) for g in group]
        pts += orbit
        labels += [label] * len(orbit)
    x = np.array(pts)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    x = x @ q.T + rng.normal(size=3) * 5 + rng.uniform(-noise, noise, size=x.shape)
    perm = rng.permutation(len(x))
    return [labels[i] for i in perm], x[perm]


GROUPS = [
    "C1", "Cs", "Ci", "C2", "C3", "C4", "C5", "C6", "C2v", "C3v", "C4v", "C6v", "C2h", "C3h",
    "C4h", "D2", "D3", "D4", "D6", "D2h", "D3h", "D4h", "D5h", "D6h", "D2d", "D3d", "D4d", "D5d",
    "S4", "S6", "S8", "T", "Td", "Th", "O", "Oh", "I", "Ih",
]  # fmt: skip


@pytest.mark.parametrize("name", GROUPS)
def test_synthetic_structure_has_its_point_group(name):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    labels, x = _structure(name, rng, noise=TOL / 10)
    assert point_group(labels, x, TOL) == name
    centro = name in ("Ci", "C2h", "C4h", "C6h", "D2h", "D4h", "D6h", "D3d", "D5d", "S6", "Th")
    centro |= name in ("Oh", "Ih")
    assert has_inversion_centre(labels, x, TOL) == centro


def test_symmetry_breaking_beyond_tolerance_lowers_the_group():
    rng = np.random.default_rng(0)
    labels, x = _structure("D6h", rng)
    assert point_group(labels, x, TOL) == "D6h"
    x[0] += np.array([0.0, 0.0, 0.5])  # one atom pushed far off: every element through it breaks
    assert point_group(labels, x, TOL) != "D6h"
    assert not has_inversion_centre(labels, x, TOL)


def _optimised(smiles: str) -> tuple[list[str], np.ndarray]:
    mol = molecule_from_smiles(smiles, seed=42)
    _, x = mmff_optimise(mol, PhysicsConfig())
    return [a.GetSymbol() for a in mol.GetAtoms()], x


MOLECULES = [
    ("O", "C2v", False),
    ("N", "C3v", False),
    ("C", "Td", False),
    ("c1ccccc1", "D6h", True),
    ("C=C", "D2h", True),
    ("O=C=O", "D∞h", True),
    ("C#N", "C∞v", False),
    ("C#C", "D∞h", True),
    ("F/C=C/F", "C2h", True),
    ("F/C=C\\F", "C2v", False),
    ("C=O", "C2v", False),
    ("CC", "D3d", True),
    ("C=C=C", "D2d", False),
    ("FC(F)F", "C3v", False),
    ("CO", "Cs", False),
    ("C1CC1", "D3h", False),
    ("c1cnccn1", "D2h", True),
    ("O=C1C=CC(=O)C=C1", "D2h", True),
    ("CC(C)(C)C", "Td", False),
    ("C12C3C4C1C5C2C3C45", "Oh", True),  # cubane
    ("C1C2CC3CC1CC(C2)C3", "Td", False),  # adamantane
    ("OCC(O)C=O", "C1", False),
]


@pytest.mark.parametrize(("smiles", "group", "centro"), MOLECULES)
def test_point_group_of_mmff_geometries(smiles, group, centro):
    labels, x = _optimised(smiles)
    assert point_group(labels, x, TOL) == group
    assert has_inversion_centre(labels, x, TOL) is centro


def test_point_group_of_qm9_b3lyp_geometries():
    expected = {1: "Td", 2: "C3v", 3: "C2v", 4: "D∞h", 5: "C∞v", 6: "C2v", 7: "D3d"}
    for row in qm9_rows(7):
        labels = re.findall(r"[A-Z][a-z]?", row["Elements"])
        x = np.array(
            [[float(v.replace("*^", "e")) for v in t.split(",")]
             for t in re.findall(r"\[([^\[\]]+)\]", row["XYZ_Ang"])]
        )  # fmt: skip
        assert point_group(labels, x, TOL) == expected[int(row["Index"])], row["SMILES"]


def test_point_group_is_invariant_to_rotation_translation_and_atom_order():
    labels, x = _optimised("c1cnccn1")
    rng = np.random.default_rng(3)
    for _ in range(3):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        perm = rng.permutation(len(x))
        y = (x @ q.T + rng.normal(size=3) * 10)[perm]
        assert point_group([labels[i] for i in perm], y, TOL) == "D2h"


def test_inversion_permutation_maps_atoms_through_the_centroid():
    labels, x = _optimised("F/C=C/F")
    perm = inversion_permutation(labels, x, TOL)
    assert perm is not None
    assert sorted(perm.tolist()) == list(range(len(x)))
    c = x.mean(0)
    np.testing.assert_allclose(x[perm], 2 * c - x, atol=TOL)
    assert [labels[i] for i in perm] == labels
    assert inversion_permutation(*_optimised("F/C=C\\F"), TOL) is None


def test_linearity_and_elements_of_linear_molecules():
    assert is_linear(np.array([[0, 0, 0], [0, 0, 1.2], [0, 0, 2.3]]), TOL)
    assert not is_linear(np.array([[0, 0, 0], [0, 0.2, 1.2], [0, 0, 2.3]]), TOL)
    el = symmetry_elements(["O", "C", "O"], np.array([[0, 0, -1.16], [0, 0, 0], [0, 0, 1.16]]))
    assert el.linear and el.inversion
    assert point_group(["C", "H"], np.array([[0.0, 0, 0], [1.1, 0, 0]])) == "C∞v"


def test_water_elements_counted():
    el = symmetry_elements(*_optimised("O"), TOL)
    assert [n for _, n in el.axes] == [2]
    assert len(el.mirrors) == 2
    assert not el.inversion
