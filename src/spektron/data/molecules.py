"""Molecule sources: the real QM9 molecules shipped by ``qm9pack`` and user SMILES lists."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class MoleculeInput:
    """One molecule to simulate.

    For QM9 rows, ``elements``/``coords`` are the B3LYP/6-31G(2df,p) geometry in the XYZ atom
    order (Å), ``charges`` the DFT Mulliken charges in that order and ``dft_freqs`` the unscaled
    harmonic frequencies (cm⁻¹). For user SMILES these are None.
    """

    source_index: int
    smiles: str
    inchi: str | None = None
    elements: list[str] | None = None
    coords: np.ndarray | None = None  # (N, 3) Å
    charges: np.ndarray | None = None  # (N,) e
    dft_freqs: np.ndarray | None = None  # (3N-6,) cm⁻¹, unscaled
