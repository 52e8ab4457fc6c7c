import json

import numpy as np

from spektron.chemistry import simulate as S
from spektron.config import PhysicsConfig

ph = PhysicsConfig()
targets = [
    ("methane", "C", ("C", "H"), "C-H sym"),
    ("ammonia", "N", ("N", "H"), "N-H sym"),
    ("water", "O", ("O", "H"), "O-H sym"),
    ("ethane_CH", "CC", ("C", "H"), "C-H sym (ethane)"),
]
out = []
for name, smi, pair, lab in targets:
    mol = S.molecule_from_smiles(smi, ph.embed_seed)
    ff, x = S.mmff_optimise(mol, ph)
    H = S.hessian_fd(ff, x, ph.fd_step)
    modes = S.normal_modes(H, S.atomic_masses(mol), x, S.is_linear(x, ph.symmetry_tol))
    raw = S.raman_activities(S.polarizability_gradient(S.bond_table(mol), x, False), modes)
    n = len(x)
    L = modes.cart.reshape(n, 3, -1)
    bl = [
        (b.GetBeginAtomIdx(), b.GetEndAtomIdx())
        for b in mol.GetBonds()
        if {b.GetBeginAtom().GetSymbol(), b.GetEndAtom().GetSymbol()} == set(pair)
    ]
    dl = np.zeros(L.shape[2])
    for i, j in bl:
        e = x[j] - x[i]
        e /= np.linalg.norm(e)
        dl += np.einsum("c,ck->k", e, L[j] - L[i])
    dl = np.abs(dl) / len(bl)
    k = int(np.argmax(dl))
    print(f"{name:14s} {lab:15s} mode {k} {modes.freqs[k]:7.1f} dL/dQ {dl[k]:.3f} raw {raw[k]:.2f}")
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
        )
    )
json.dump(out, open("calib_modes2.json", "w"))
