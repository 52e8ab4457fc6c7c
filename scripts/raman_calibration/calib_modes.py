"""Dump MMFF geometries + target stretch modes + raw-model activities for the calibration."""

import json

import numpy as np

from spektron.chemistry import simulate as S
from spektron.config import PhysicsConfig

ph = PhysicsConfig()
# (name, smiles, bond atoms (heavy indices in SMILES order), label)
targets = [
    ("ethane", "CC", (0, 1), "C-C"),
    ("ethylene", "C=C", (0, 1), "C=C"),
    ("acetylene", "C#C", (0, 1), "C#C"),
    ("propane", "CCC", None, "C-C sym"),
    ("propene", "CC=C", (1, 2), "C=C"),
    ("propyne", "CC#C", (1, 2), "C#C"),
    ("methanol", "CO", (0, 1), "C-O"),
    ("formaldehyde", "C=O", (0, 1), "C=O"),
    ("methylamine", "CN", (0, 1), "C-N"),
    ("methanimine", "C=N", (0, 1), "C=N"),
    ("hcn", "C#N", (0, 1), "C#N"),
    ("acetonitrile", "CC#N", (1, 2), "C#N"),
    ("benzene", "c1ccccc1", None, "ring breathing"),
    ("fluoromethane", "CF", (0, 1), "C-F"),
]
out = []
for name, smi, bond, lab in targets:
    mol = S.molecule_from_smiles(smi, ph.embed_seed)
    ff, x = S.mmff_optimise(mol, ph)
    H = S.hessian_fd(ff, x, ph.fd_step)
    masses = S.atomic_masses(mol)
    modes = S.normal_modes(H, masses, x, S.is_linear(x, ph.symmetry_tol))
    bt = S.bond_table(mol)
    raw = S.raman_activities(S.polarizability_gradient(bt, x, False), modes)
    n = len(x)
    if bond is None:  # totally symmetric breathing: largest mean C-C length change
        cc = [
            (b.GetBeginAtomIdx(), b.GetEndAtomIdx())
            for b in mol.GetBonds()
            if b.GetBeginAtom().GetSymbol() == "C" and b.GetEndAtom().GetSymbol() == "C"
        ]
    else:
        cc = [bond]
    L = modes.cart.reshape(n, 3, -1)
    dl = np.zeros(L.shape[2])
    for i, j in cc:
        e = x[j] - x[i]
        e /= np.linalg.norm(e)
        dl += np.einsum("c,ck->k", e, L[j] - L[i])
    dl = np.abs(dl) / len(cc)
    # only modes with freq > 700 (skeletal stretches), pick max |dL/dQ| weighted
    k = int(np.argmax(np.where(modes.freqs > 700, dl, 0)))
    print(
        f"{name:14s} {lab:15s} mode {k} {modes.freqs[k]:7.1f} cm-1 dL/dQ {dl[k]:.3f} raw activity {raw[k]:.2f}"
    )
    out.append(
        dict(
            name=name,
            smiles=smi,
            label=lab,
            symbols=[a.GetSymbol() for a in mol.GetAtoms()],
            x=x.tolist(),
            mode=modes.cart[:, k].tolist(),
            freq=float(modes.freqs[k]),
            raw=float(raw[k]),
            order=[b.GetBondTypeAsDouble() for b in mol.GetBonds()],
        )
    )
json.dump(out, open("calib_modes.json", "w"))
