"""One molecule to simulate: its identity and, where a source provides them, its geometry,
charges and reference frequencies (the input of :mod:`spektron.chemistry.simulate`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class MoleculeInput:
    """One molecule to simulate.

    For QM9 rows, ``elements``/``coords`` are the B3LYP/6-31G(2df,p) geometry in the XYZ atom
    order (Å), ``charges`` the DFT Mulliken charges in that order and ``dft_freqs`` the unscaled
    harmonic frequencies (cm⁻¹). For user SMILES these are None.

    ``source`` says where the structure comes from, as recorded per molecule in the store:
    ``"qm9:<Index>"`` for a QM9 row (also a user SMILES found in QM9 by ``lookup_qm9``; its
    ``source_index`` stays its position in the user's list), ``"smiles"`` for a SMILES that is
    embedded and optimised here, ``""`` when unknown.
    """

    source_index: int
    smiles: str
    inchi: str | None = None
    elements: list[str] | None = None
    coords: np.ndarray | None = None  # (N, 3) Å
    charges: np.ndarray | None = None  # (N,) e
    dft_freqs: np.ndarray | None = None  # (3N-6,) cm⁻¹, unscaled; (3N-5,) for linear molecules
    # QM9: the XYZ file stem ("dsgdb9nsd_000001"); SMILES files: the optional second column.
    name: str | None = None
    source: str = ""
