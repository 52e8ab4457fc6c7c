"""Reference Raman activities along the MMFF stretch modes: B3LYP/aug-cc-pVDZ finite-field α."""

import json
import sys
import time

import numpy as np
from pyscf import dft, gto, lib

# usage: python calib_dft.py MODES_JSON [names|all] [threads]
#   calib_modes.json → calib_dft_all.json; calib_modes2.json → calib_dft2_all.json
MODES = sys.argv[1]
TAG = "calib_dft2" if MODES.endswith("2.json") else "calib_dft"
sys.argv = sys.argv[1:]
lib.num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
BOHR3_TO_A3 = 0.529177210903**3
data = json.load(open(MODES))
names = (
    sys.argv[1].split(",")
    if len(sys.argv) > 1 and sys.argv[1] != "all"
    else [d["name"] for d in data]
)
FIELD = 1e-3


def alpha(symbols, x):
    mol = gto.M(
        atom=[(s, p) for s, p in zip(symbols, x, strict=False)],
        basis="aug-cc-pvdz",
        unit="Angstrom",
        verbose=0,
    )
    r = mol.intor_symmetric("int1e_r", comp=3)
    base = dft.RKS(mol).density_fit()
    base.xc = "b3lyp"
    base.conv_tol = 1e-11
    base.grids.level = 4
    h0 = base.get_hcore()
    base.kernel()
    dm0 = base.make_rdm1()
    mus = {}
    for c in range(3):
        for s in (+1, -1):
            F = np.zeros(3)
            F[c] = s * FIELD
            mf = dft.RKS(mol).density_fit()
            mf.xc = "b3lyp"
            mf.conv_tol = 1e-11
            mf.grids.level = 4
            h = h0 + np.einsum("x,xij->ij", F, r)
            mf.get_hcore = lambda *a, h=h: h
            mf.kernel(dm0=dm0)
            mus[c, s] = mf.dip_moment(unit="AU", verbose=0)
    a = np.array(
        [(mus[c, 1] - mus[c, -1]) / (2 * FIELD) for c in range(3)]
    ).T  # a[i, c] = dmu_i/dF_c
    return 0.5 * (a + a.T) * BOHR3_TO_A3


res = {}
for d in data:
    if d["name"] not in names:
        continue
    t = time.time()
    x = np.array(d["x"])
    L = np.array(d["mode"]).reshape(-1, 3)
    delta = 0.01 / np.abs(L).max()
    ap = alpha(d["symbols"], x + delta * L)
    am = alpha(d["symbols"], x - delta * L)
    da = (ap - am) / (2 * delta)
    a = np.trace(da) / 3
    g2 = 0.5 * (
        (da[0, 0] - da[1, 1]) ** 2 + (da[1, 1] - da[2, 2]) ** 2 + (da[2, 2] - da[0, 0]) ** 2
    ) + 3 * (da[0, 1] ** 2 + da[1, 2] ** 2 + da[0, 2] ** 2)
    act = 45 * a**2 + 7 * g2
    a0 = alpha(d["symbols"], x)
    res[d["name"]] = dict(activity=act, alpha_iso=float(np.trace(a0) / 3))
    print(
        f"{d['name']:14s} {d['label']:15s} {d['freq']:7.1f}  DFT act {act:7.2f}  raw model {d['raw']:7.2f}  iso alpha {np.trace(a0) / 3:.2f} A3  ({time.time() - t:.0f}s)",
        flush=True,
    )
json.dump(res, open(f"{TAG}_{sys.argv[1] if len(sys.argv) > 1 else 'all'}.json", "w"))
