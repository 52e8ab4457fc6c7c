"""Fit RAMAN_BOND_FACTOR: model activity of each reference stretch = B3LYP/aug-cc-pVDZ activity
along the same MMFF94 mode. Gauss-Seidel over bond types; activity is quadratic in each factor."""

import json

import numpy as np

from spektron.chemistry import simulate as S

modes = {
    d["name"]: d for d in json.load(open("calib_modes.json")) + json.load(open("calib_modes2.json"))
}
dft = {}
for f in ["calib_dft_all.json", "calib_dft2_all.json"]:
    try:
        dft.update(json.load(open(f)))
    except FileNotFoundError:
        pass
FIT = {
    "C-H": "methane",
    "H-N": "ammonia",
    "H-O": "water",
    "C-C": "ethane",
    "C=C": "ethylene",
    "C#C": "acetylene",
    "C-O": "methanol",
    "C=O": "formaldehyde",
    "C-N": "methylamine",
    "C=N": "methanimine",
    "C#N": "hcn",
    "C-F": "fluoromethane",
    "C:C": "benzene",
}
FIT = {k: v for k, v in FIT.items() if v in dft}


def setup(name):
    d = modes[name]
    mol = S.molecule_from_xyz(d["symbols"], np.array(d["x"]), d["smiles"])
    x = np.array(d["x"])
    L = np.array(d["mode"])[:, None]
    return mol, x, S.NormalModes(np.array([d["freq"]]), L, L, False)


cache = {n: setup(n) for n in set(FIT.values()) | set(dft)}


def activity(name, factors):
    mol, x, m = cache[name]
    return float(S.raman_activities(S.polarizability_gradient(S.bond_table(mol, factors), x), m)[0])


f = {k: 1.0 for k in FIT}
for sweep in range(100):
    old = dict(f)
    for key, name in FIT.items():
        target = dft[name]["activity"]
        a0 = activity(name, {**f, key: 0.0})
        a1 = activity(name, {**f, key: 1.0})
        a2 = activity(name, {**f, key: 2.0})
        # quadratic through (0,a0),(1,a1),(2,a2)
        A = (a2 - 2 * a1 + a0) / 2
        B = a1 - a0 - A
        C = a0 - target
        disc = B * B - 4 * A * C
        if disc < 0:
            f[key] = -B / (2 * A)
            continue
        roots = [(-B + s * np.sqrt(disc)) / (2 * A) for s in (1, -1)]
        roots = [r for r in roots if r > 0]
        f[key] = min(roots, key=lambda r: abs(r - f[key]))
    if max(abs(f[k] - old[k]) for k in f) < 1e-10:
        break
print("sweeps", sweep)
for k in FIT:
    print(
        f"  {k:4s} f = {f[k]:.3f}   (ref {FIT[k]}: DFT {dft[FIT[k]]['activity']:.1f}, raw {activity(FIT[k], None):.1f}, fitted {activity(FIT[k], f):.1f})"
    )
print("validation (not fitted):")
for name in dft:
    if name in FIT.values():
        continue
    print(
        f"  {name:12s} {modes[name]['label']:18s} DFT {dft[name]['activity']:7.1f}  raw {activity(name, None):7.1f}  corrected {activity(name, f):7.1f}"
    )
json.dump({k: round(v, 3) for k, v in f.items()}, open("factors.json", "w"))
