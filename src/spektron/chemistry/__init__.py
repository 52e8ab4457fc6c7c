"""Molecules and their vibrational spectra, below the data layer: the simulation physics
(:mod:`~spektron.chemistry.simulate` — MMFF94 / GFN2-xTB / DFT-frequency hybrid levels —,
:mod:`~spektron.chemistry.xtb`, :mod:`~spektron.chemistry.vibrations`), the spectrum primitives
(grid, Lorentzian broadening, normalisation, the per-molecule record:
:mod:`~spektron.chemistry.spectra`), the simulation input (:mod:`~spektron.chemistry.molecule`),
point groups and inversion centres (:mod:`~spektron.chemistry.symmetry`) and functional-group
flags (:mod:`~spektron.chemistry.functional_groups`). It knows nothing of stores, datasets or
QM9's files: :mod:`spektron.data` reads those and calls it."""
