"""Molecular chemistry below the data layer: point groups and inversion centres of geometries
(:mod:`~spektron.chemistry.symmetry`) and functional-group flags of molecules
(:mod:`~spektron.chemistry.functional_groups`). Depends on NumPy and RDKit only."""
