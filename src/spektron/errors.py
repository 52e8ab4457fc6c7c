"""Typed errors. Library code raises these; the CLI turns them into one-line messages."""


class SpektronError(Exception):
    """Base class of every error Spektron raises on purpose (bad input, bad config, ...)."""


class ConfigError(SpektronError, ValueError):
    """A configuration value is invalid."""


class DataError(SpektronError):
    """Input data are missing, corrupt or inconsistent (the message names file and problem)."""


class StoreError(DataError):
    """A spectral store (HDF5) cannot be opened, is incomplete or does not match the request."""


class SimulationError(SpektronError):
    """One molecule could not be simulated (embedding, optimisation, imaginary modes, ...)."""


class MoleculeError(DataError):
    """A molecule (SMILES, geometry, QM9 row) is invalid."""


class CheckpointError(DataError):
    """A model checkpoint is missing, unreadable or does not match its config."""


class TrainingError(SpektronError):
    """Training cannot go on (non-finite loss or gradients, inconsistent resume state, ...)."""
