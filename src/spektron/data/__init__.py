"""Data: the spectral store, simulation of QM9 molecules, QM9S converters, NIR data and user
spectrum files.

Re-exported here: ``open_store``, ``StoreWriter``, ``SpectralStore``, ``merge_stores``,
``ensure_dataset``, ``generate_dataset``, ``simulate_to_store``, ``load_qm9``,
``read_spectrum_file``, ``load_corn``, ``load_tablet``, ``make_grid`` and ``SpectrumRecord``.
Each is imported from its module on first use.
"""

from typing import TYPE_CHECKING

from spektron.utils import lazy_exports

_EXPORTS = {
    "SpectralStore": "store",
    "StoreWriter": "store",
    "merge_stores": "store",
    "open_store": "store",
    "ensure_dataset": "generate",
    "generate_dataset": "generate",
    "simulate_to_store": "generate",
    "load_qm9": "molecules",
    "read_spectrum_file": "spectrum_files",
    "load_corn": "nir",
    "load_tablet": "nir",
    # The spectrum primitives live below the data layer, with the simulation physics.
    "SpectrumRecord": "spektron.chemistry.spectra",
    "make_grid": "spektron.chemistry.spectra",
}
__all__ = [
    "SpectralStore",
    "SpectrumRecord",
    "StoreWriter",
    "ensure_dataset",
    "generate_dataset",
    "load_corn",
    "load_qm9",
    "load_tablet",
    "make_grid",
    "merge_stores",
    "open_store",
    "read_spectrum_file",
    "simulate_to_store",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

if TYPE_CHECKING:
    from spektron.chemistry.spectra import SpectrumRecord, make_grid
    from spektron.data.generate import ensure_dataset, generate_dataset, simulate_to_store
    from spektron.data.molecules import load_qm9
    from spektron.data.nir import load_corn, load_tablet
    from spektron.data.spectrum_files import read_spectrum_file
    from spektron.data.store import SpectralStore, StoreWriter, merge_stores, open_store
