"""Evaluation: metrics, baselines, cross-spectral scoring and the calibration-transfer methods.

Re-exported here: the calibration-transfer estimators (scikit-learn API) ``PLSCV``,
``DirectStandardization``, ``PiecewiseDirectStandardization``, ``CCATransfer``,
``SlopeBiasCorrection``, ``DomainInvariantPLS``, the preprocessors ``SNV`` and
``SavitzkyGolay``, and ``kennard_stone`` (transfer-standard selection). Each is imported from
its module on first use.
"""

from typing import TYPE_CHECKING

from spektron.utils import lazy_exports

__all__ = [
    "CCATransfer",
    "DirectStandardization",
    "DomainInvariantPLS",
    "PLSCV",
    "PiecewiseDirectStandardization",
    "SNV",
    "SavitzkyGolay",
    "SlopeBiasCorrection",
    "kennard_stone",
]
_EXPORTS = dict.fromkeys(__all__, "calibration_transfer")
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

if TYPE_CHECKING:
    from spektron.evaluation.calibration_transfer import (
        PLSCV,
        SNV,
        CCATransfer,
        DirectStandardization,
        DomainInvariantPLS,
        PiecewiseDirectStandardization,
        SavitzkyGolay,
        SlopeBiasCorrection,
        kennard_stone,
    )
