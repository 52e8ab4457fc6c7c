"""What every experiment shares to train and record its runs: provenance, arm sizing, the
run-folder claim (reuse a finished run, resume an interrupted one, refuse a folder holding other
settings), the thread allocation and the process pool.

A *spec* is the JSON-serialisable dict of one run (its ``run_dir``, ``backbone``, ``threads``,
...); an experiment's module-level ``train_one(spec)`` trains it, and :func:`run_specs` runs a
list of them in a pool of reused worker processes on the CPU (each run measures its own peak
memory), or in-process under ``torchrun``; :func:`sweep_then_seeds` is the LR sweep on the
first seed and the other seeds at each arm's chosen LR. What one experiment takes from another
it reads from files: :func:`measured_step_seconds` and :func:`find_checkpoints` read a finished
E1's folder.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import json
import logging
import math
import multiprocessing as mp
import os
import platform
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from spektron.config import E1Config
from spektron.data.store import open_store
from spektron.errors import CheckpointError, ConfigError
from spektron.training import distributed as D
from spektron.training.data import ArrayData, load_spectra_split
from spektron.utils import setup_logging, tune_cpu_process, write_json_atomic

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- provenance


def git_commit() -> str | None:
    """The checkout's commit (None outside a git checkout)."""
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str]:
    """Versions of the packages a result depends on, for its provenance record."""
    import h5py
    import scipy
    import sklearn

    from spektron import __version__

    return {
        "spektron": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "h5py": h5py.__version__,
        "python": platform.python_version(),
    }


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    """SHA-256 hex digest of a file (a dataset or checkpoint a result was made from)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def device_description(dev: torch.device) -> str:
    """The device in words: the GPU's name, or the CPU and its core count."""
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


# ----------------------------------------------------------------------------- arms


def size_arms(e1: E1Config) -> dict[str, dict[str, Any]]:
    """Parameter-matched backbone configs (and their counts) for every arm, each with its
    ``e1.arm_overrides`` fixed (checked against the backbone's config fields first)."""
    from spektron.models.registry import (
        available_backbones,
        backbone_spec,
        make_backbone_config,
    )
    from spektron.models.sizing import size_backbone

    for arm, fields in e1.arm_overrides.items():
        if arm not in available_backbones():
            raise ConfigError(
                f"e1.arm_overrides.{arm}: no backbone {arm!r}; choose among "
                f"{', '.join(available_backbones())}"
            )
        known = {f.name for f in dataclasses.fields(backbone_spec(arm).config_cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ConfigError(
                f"e1.arm_overrides.{arm}: {', '.join(unknown)} "
                f"{'is not a field' if len(unknown) == 1 else 'are not fields'} of the {arm} "
                f"config; its fields: {', '.join(sorted(known - {'d_model'}))}"
            )
        try:
            make_backbone_config(arm, **{**fields, "d_model": e1.d_model})
        except ConfigError as exc:
            raise ConfigError(f"e1.arm_overrides.{arm}: {exc}") from None
    arms = {}
    for name in e1.backbones:
        base = e1.arm_overrides.get(name) or None
        try:
            cfg, n = size_backbone(
                name, budget=e1.budget, d_model=e1.d_model, tol=e1.budget_tol, base=base
            )
        except ConfigError as exc:
            if base is None:
                raise
            raise ConfigError(f"e1.arm_overrides.{name} {base}: {exc}") from None
        arms[name] = {"backbone_config": dataclasses.asdict(cfg), "n_params": n}
        if base:
            arms[name]["overrides"] = dict(base)
    return arms


def scale_note(preset: str) -> str:
    """What a preset's numbers can support, as each summary states it."""
    if preset == "paper":
        return "paper scale (docs/DESIGN.md §4)"
    if preset == "study":
        return (
            "study scale: ~150K-parameter backbones on 256 positions, every arm tuned by one "
            "protocol, 6 seeds, 10,000 simulated molecules; its conclusions hold for this "
            "scale and these simulated spectra, not for the paper scale (~1M parameters on "
            "2048 points), which was not run"
        )
    return f"reduced scale ({preset} preset): conclusions need the study or paper preset"


def with_e1_tuning(e1: E1Config, e1_dir: str | os.PathLike | None) -> E1Config:
    """``e1`` with the knobs that a tuned E1 folder chose for each arm (its summary's
    ``backbones.<arm>.tuned.shape``) added to ``arm_overrides``, so E2/E4 arms have the shape of
    the E1 checkpoints they start from; unchanged when that E1 was not tuned (or is absent)."""
    if not e1_dir:
        return e1
    path = Path(e1_dir) / "summary.json"
    try:
        summ = json.loads(path.read_text())
    except FileNotFoundError:
        return e1
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable E1 summary ({exc})") from None
    over = {k: dict(v) for k, v in e1.arm_overrides.items()}
    for arm, b in (summ.get("backbones") or {}).items():
        shape = (b.get("tuned") or {}).get("shape")
        if shape:
            over[arm] = {**over.get(arm, {}), **shape}
    return dataclasses.replace(e1, arm_overrides=over)


def model_config(
    e1: E1Config,
    backbone: str,
    backbone_config: dict[str, Any],
    head: str = "reconstruction",
    head_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The shared model config of every arm; only the backbone fields differ. E2 and E4 use the
    same shape with their own head, so E1 / ``pretrain`` checkpoints load into their models."""
    return {
        "d_model": e1.d_model,
        "embedding": {"stride": e1.stride},
        "backbone": backbone,
        "backbone_config": backbone_config,
        "head": head,
        "head_config": dict(head_config or {}),
    }


def seeded_model(spec: dict[str, Any], train: Any) -> tuple[torch.nn.Module, Any]:
    """A run's model, built from ``spec["model"]`` after seeding torch with the run's seed, and
    its training config: ``train`` (a ``TrainConfig``) with the run's LR and seed."""
    from spektron.config import from_dict, to_dict
    from spektron.models.spektron import Spektron, SpektronConfig
    from spektron.training.config import TrainConfig

    train_cfg = from_dict(TrainConfig, {**to_dict(train), "lr": spec["lr"], "seed": spec["seed"]})
    torch.manual_seed(spec["seed"])
    return Spektron(SpektronConfig.from_json_dict(spec["model"])), train_cfg


def run_record(
    spec: dict[str, Any], dev: torch.device, best: torch.nn.Module, fit: dict[str, Any]
) -> dict[str, Any]:
    """The fields a trained run's ``metrics.json`` shares with every other experiment's: the
    arm, LR and seed, provenance (commit, device, package versions, dataset), the best model's
    parameter counts, the arm's FLOPs and the trainer's record."""
    return {
        "backbone": spec["backbone"],
        "lr": spec["lr"],
        "seed": spec["seed"],
        "git_commit": spec["git_commit"],
        "device": device_description(dev),
        "package_versions": spec["package_versions"],
        "dataset": spec["dataset"],
        "parameters": best.parameter_counts(),
        "flops_per_spectrum": spec["flops"],
        "train": fit,
    }


def arm_flops(model_cfg: dict[str, Any], length: int) -> dict[str, float]:
    """Forward FLOPs of one spectrum (B = 1) through the whole model, on the CPU."""
    from spektron.models.flops import count_flops
    from spektron.models.spektron import Spektron, SpektronConfig

    torch.manual_seed(0)
    model = Spektron(SpektronConfig.from_json_dict(model_cfg)).eval()
    x = torch.rand(1, length)
    wn = torch.linspace(500.0, 4000.0, length)
    mask = torch.zeros(1, length, dtype=torch.bool)
    mask[:, length // 3 : length // 3 + 16] = True
    with torch.no_grad():
        f = count_flops(model, x.masked_fill(mask, 0.0), wn, mask)
    return {"matmul": float(f["matmul"]), "total": float(f["total"])}


# ----------------------------------------------------------------------------- runs


def load_splits(store_path: Path, e1: E1Config) -> dict[str, ArrayData]:
    """Train/val/test spectra of the masked-reconstruction task (every kind of ``e1.kinds``),
    normalised by ``e1.normalization``: E1's data, which E3's shuffled-order controls share."""
    store = open_store(store_path)
    try:
        out = {
            s: load_spectra_split(store, s, e1.kinds, e1.normalization)
            for s in ("train", "val", "test")
        }
        smiles = np.asarray(store.column("smiles"))
    finally:
        store.close()
    if e1.max_train_spectra is not None and len(out["train"]) > e1.max_train_spectra:
        out["train"] = out["train"].subset(np.arange(e1.max_train_spectra))
    for s, d in out.items():
        d.arrays["smiles"] = np.array(
            [v.decode() if isinstance(v, bytes) else str(v) for v in smiles[d.arrays["row"]]]
        )
        log.info("E1 %s: %d spectra", s, len(d))
    return out


def threads_for(jobs: int) -> int:
    """Torch threads of each of ``jobs`` parallel runs: the cores shared out, at least 1."""
    return max(1, (os.cpu_count() or 1) // max(jobs, 1))


def mean_std(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation (ddof 1; 0 for one value) and count ``n`` of the finite
    values; NaN when none is finite. Reports write one value as "(1 seed)", not "± 0"."""
    a = np.asarray(values, dtype=np.float64)
    a = a[np.isfinite(a)]
    if len(a) == 0:
        return {"mean": math.nan, "std": math.nan, "n": 0}
    std = float(a.std(ddof=1)) if len(a) > 1 else 0.0
    return {"mean": float(a.mean()), "std": std, "n": len(a)}


def claim_run_dir(
    run_dir: Path,
    key: str,
    hashed: dict[str, Any],
    public: dict[str, Any],
    dist: D.DistInfo,
    project: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any] | None:
    """Reuse or claim a run folder: the finished run's ``metrics.json`` when the folder holds
    this run (same ``key``) and it finished; None when it is to be (re)started, after writing
    ``run_spec.json`` (rank 0). A folder holding another run is refused, naming what changed.
    ``project``: as in :func:`run_folder_finished`.
    """
    spec_path, metrics_path = run_dir / "run_spec.json", run_dir / "metrics.json"
    if run_folder_finished(run_dir, key, hashed, project=project):
        return json.loads(metrics_path.read_text())
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(spec_path, {"run_hash": key, "hashed": hashed, "spec": public})
    return None


def _flatten(d: Any, path: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {path: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{path}.{k}" if path else str(k)))
    return out


def settings_diff(was: dict[str, Any], now: dict[str, Any], limit: int = 4) -> str:
    """The settings that differ between two run specs, as 'key: old there, new now; …' (the
    first ``limit`` keys, then how many more)."""

    def show(v: Any) -> str:
        text = "(absent)" if v is _ABSENT else json.dumps(v)
        return text if len(text) <= 60 else text[:57] + "..."

    a, b = _flatten(was), _flatten(now)
    keys = [k for k in dict.fromkeys([*a, *b]) if a.get(k, _ABSENT) != b.get(k, _ABSENT)]
    parts = [
        f"{k}: {show(a.get(k, _ABSENT))} there, {show(b.get(k, _ABSENT))} now" for k in keys[:limit]
    ]
    more = f"; and {len(keys) - limit} more" if len(keys) > limit else ""
    return "; ".join(parts) + more if parts else "the same settings under another hash"


_ABSENT = object()


def run_folder_finished(
    run_dir: Path,
    key: str,
    hashed: dict[str, Any],
    spec_name: str = "run_spec.json",
    done_name: str = "metrics.json",
    project: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> bool:
    """Whether ``run_dir`` holds a finished run with these settings (``spec_name`` records its
    ``run_hash`` and ``hashed`` settings, ``done_name`` marks it finished); ``ConfigError``
    naming the keys that differ, and both values, when it holds a run with other settings.
    ``project`` maps recorded settings onto today's identity (a setting that has since stopped
    identifying a run dropped): a folder whose projected settings equal ``hashed`` is this run."""
    try:
        stored = json.loads((run_dir / spec_name).read_text())
    except FileNotFoundError:
        return False
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{run_dir / spec_name}: unreadable ({e})") from e
    was = stored.get("hashed")
    same = project is not None and isinstance(was, dict) and project(was) == hashed
    if stored.get("run_hash") != key and not same:
        what = (
            settings_diff(was, hashed)
            if isinstance(was, dict)
            else "settings not recorded by the version that wrote it"
        )
        raise ConfigError(
            f"{run_dir} holds a run with other settings ({what}); choose a new --out folder, "
            "or delete that run folder to train it again"
        )
    return (run_dir / done_name).is_file()


def check_run_folders(
    arms: list[Any],
    lr_sweep: tuple[float, ...],
    seeds: list[int],
    spec_for: Callable[..., dict[str, Any]],
    hashed: Callable[[dict[str, Any]], dict[str, Any]],
    project: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, int]:
    """Before any work: the run folders :func:`sweep_then_seeds` may use, checked. A folder
    holding a run with other settings is refused (``ConfigError`` naming the keys and both
    values; nothing is written); finished runs with these settings are counted, as
    ``{"n_runs": planned runs, "n_reused": finished ones that will be reused}`` (after an LR
    sweep the seed runs count when a finished one exists at any LR of the sweep)."""

    def spec(arm: Any, lr: float, seed: int) -> dict[str, Any]:
        return spec_for(*arm, lr, seed) if isinstance(arm, tuple) else spec_for(arm, lr, seed)

    def finished(sp: dict[str, Any]) -> bool:
        return run_folder_finished(Path(sp["run_dir"]), sp["run_hash"], hashed(sp), project=project)

    reused = sum(finished(spec(a, lr, seeds[0])) for a in arms for lr in lr_sweep)
    for a in arms:
        for s in seeds[1:]:
            reused += any([finished(spec(a, lr, s)) for lr in lr_sweep])
    return {"n_runs": len(arms) * (len(lr_sweep) + len(seeds) - 1), "n_reused": int(reused)}


def reuse_line(counts: dict[str, int], out: Path) -> str:
    """'k of n runs already finished in OUT (reused), m to train' for the printed plan."""
    n, k = counts["n_runs"], counts["n_reused"]
    return f"{k} of {n} runs already finished in {out} (reused), {n - k} to train"


def wall_times(out: Path, seconds: float, key: str = "wall_time_s") -> dict[str, Any]:
    """This call's wall time (``key``) and, under ``earlier_wall_times_s``, those of the
    earlier calls whose ``summary.json`` in ``out`` this call replaces (a staged or resumed
    experiment, or one that only gathered finished runs again, keeps its history)."""
    earlier: list[float] = []
    try:
        prev = json.loads((Path(out) / "summary.json").read_text())
        earlier = [*prev.get("earlier_wall_times_s", []), float(prev[key])]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no earlier summary, or one that recorded no wall time
    return {key: seconds, "earlier_wall_times_s": earlier}


def arm_convergence(
    section: Any,
    out: Path,
    dirs: list[Path],
    runs: list[dict[str, Any]],
    term: str,
    val_key: str,
    test_key: str,
    check_dir: str | None = None,
    check_run: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An arm's ``convergence`` and ``val_curves`` entries under the rule of ``section`` (an
    experiment's config: ``convergence_tol``, ``_window``, ``_check``, ``train``): every
    seed's validation curve (history term ``term``; ``dirs``/``runs``: the seeds' folders and
    metrics) with the window rule, and the budget check when its run is given (``check_dir``,
    ``check_run``: its folder and metrics), which then decides. ``val_key``: a run's best
    validation value; ``test_key``: the test metric shown beside it, never used to decide."""
    from spektron.training.convergence import budget_check, run_convergence

    tol, window = section.convergence_tol, section.convergence_window
    conv = [run_convergence(d, term, tol, window) for d in dirs]
    entry: dict[str, Any] = {
        "convergence": {
            "converged": all(c["converged"] for c in conv),
            "per_seed": [{k: v for k, v in c.items() if k != "curve"} for c in conv],
        },
        "val_curves": [c["curve"] for c in conv],
    }
    if check_dir is not None and check_run is not None:
        first = runs[0]
        steps, k = section.train.steps, section.convergence_check
        check = budget_check(first[val_key], check_run[val_key], steps, k, tol)
        check["test_" + test_key] = first["test"][test_key]["mean"]
        check["check_test_" + test_key] = check_run["test"][test_key]["mean"]
        check["curve"] = run_convergence(Path(check_dir), term)["curve"]
        check["run"] = str(Path(check_dir).relative_to(out))
        entry["convergence"]["budget_check"] = check
        entry["convergence"]["converged"] = check["converged"]
    return entry


def measured_step_seconds(e1_dir: str | Path | None) -> dict[str, float] | None:
    """Seconds per optimizer step of each arm as a finished E1 measured them (its
    ``summary.json``), for other experiments' job order; None when not recorded."""
    if e1_dir is None:
        return None
    try:
        summary = json.loads((Path(e1_dir) / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    step_s = summary.get("measured_step_s")
    return step_s if isinstance(step_s, dict) else None


# The arms by measured step time at the quick scale on 2 CPU cores, slowest first: the job
# order when no measurement is at hand.
SLOWEST_FIRST = {"mamba": 0, "s4d": 1, "dlinoss": 2, "s4d_real": 3, "transformer": 4, "cnn": 5}


def run_specs(
    specs: list[dict[str, Any]],
    jobs: int,
    dist: D.DistInfo,
    progress: bool,
    desc: str,
    fn: Callable[[dict[str, Any]], dict[str, Any]],
    step_s: dict[str, float] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run training specs through ``fn`` (a module-level function, so a spawn pool can import
    it) in a pool of ``jobs`` processes, or in-process; results by ``spec["run_dir"]``.

    Slowest runs first, so the pool's last jobs are short ones: by ``step_s`` (measured seconds
    per step of each backbone, as E1 records them) × the spec's ``"steps"`` (1 when absent)
    when given, else in
    the order measured on 2 CPU cores at the quick scale. Specs with a ``"first"`` entry go
    before all others, in the order given (jobs known to be long that are not training runs)."""
    results: dict[str, dict[str, Any]] = {}
    if not specs:
        return results
    if step_s:
        specs = sorted(specs, key=lambda s: -step_s.get(s.get("backbone"), 0.0) * s.get("steps", 1))
    else:
        specs = sorted(specs, key=lambda s: SLOWEST_FIRST.get(s.get("backbone"), -1))
    specs = [s for s in specs if s.get("first")] + [s for s in specs if not s.get("first")]
    bar = tqdm(total=len(specs), desc=desc, disable=not (progress and dist.is_main))
    if jobs == 1:
        for spec in specs:
            # Under torchrun every rank trains; rank 0 scores and shares the result.
            res = fn({**spec, "dist": dist})
            results[spec["run_dir"]] = D.broadcast_object(res, dist)
            bar.update(1)
    else:
        # Workers are reused: a process start (spawn + imports) costs 3-4 s on 2 CPU cores,
        # against 15-60 s for a quick-preset run. Each run sets what it depends on itself
        # (threads, seeds; the trainer measures memory as its own live-heap peak), so nothing
        # carried over in a worker changes its result (tested).
        ctx = mp.get_context("spawn")
        debug = logging.getLogger().getEffectiveLevel() <= logging.DEBUG
        with cf.ProcessPoolExecutor(
            jobs, mp_context=ctx, initializer=init_worker, initargs=(debug,)
        ) as pool:
            futs = {pool.submit(fn, spec): spec for spec in specs}
            for fut in cf.as_completed(futs):
                results[futs[fut]["run_dir"]] = fut.result()
                bar.update(1)
    bar.close()
    return results


def sweep_then_seeds(
    arms: list[Any],
    lr_sweep: tuple[float, ...],
    seeds: list[int],
    spec_for: Callable[..., dict[str, Any]],
    run: Callable[[list[dict[str, Any]], str], dict[str, dict[str, Any]]],
    val_key: str,
    extensions: int = 0,
) -> tuple[dict[str, dict[str, Any]], dict[Any, float], dict[Any, dict[str, float]]]:
    """Every arm at every LR of ``lr_sweep`` on ``seeds[0]``, then the other seeds at the LR
    with the lowest ``result[val_key]`` (validation; ties to the smaller LR).

    With ``extensions`` > 0 and at least two LRs, an arm whose best LR is the smallest or the
    largest it was tried at gets one more run on ``seeds[0]`` beyond that end (the end times the
    grid's ratio there, e.g. 1e-2 -> 3e-2 after 3e-3, 1e-2), repeated at most ``extensions``
    times, so that the chosen value is interior where the budget allows; an arm still at an edge
    afterwards is visible in its returned sweep (see :func:`lr_edge`).

    ``spec_for(*arm, lr, seed)`` builds a run's spec (``arm`` a tuple, or one value), ``run(specs,
    what)`` trains a list of them. With one LR there is nothing to choose: every run goes in
    one call, so the pool has no barrier between the phases. Returns (results by run folder,
    the chosen LR of each arm, each arm's validation value by LR as ``f"{lr:g}"``)."""

    def spec(arm: Any, lr: float, seed: int) -> dict[str, Any]:
        return spec_for(*arm, lr, seed) if isinstance(arm, tuple) else spec_for(arm, lr, seed)

    single = len(lr_sweep) == 1
    first = [spec(a, lr, seeds[0]) for a in arms for lr in lr_sweep]
    if single:
        first += [spec(a, lr_sweep[0], s) for a in arms for s in seeds[1:]]
    results = run(first, "runs" if single else "LR sweep")
    vals: dict[Any, dict[float, float]] = {
        a: {lr: results[spec(a, lr, seeds[0])["run_dir"]][val_key] for lr in lr_sweep} for a in arms
    }

    def best(a: Any) -> float:
        return min(vals[a], key=lambda lr: (vals[a][lr], lr))

    for round_ in range(extensions if not single else 0):
        beyond: dict[Any, float] = {}
        for a in arms:
            grid = sorted(vals[a])
            b = best(a)
            if b == grid[-1]:
                beyond[a] = grid[-1] * grid[-1] / grid[-2]
            elif b == grid[0]:
                beyond[a] = grid[0] * grid[0] / grid[1]
        if not beyond:
            break
        ext = [spec(a, lr, seeds[0]) for a, lr in beyond.items()]
        results.update(run(ext, f"LR sweep extension {round_ + 1}"))
        for a, lr in beyond.items():
            vals[a][lr] = results[spec(a, lr, seeds[0])["run_dir"]][val_key]
    best_lr = {a: best(a) for a in arms}
    lr_vals = {a: {f"{lr:g}": vals[a][lr] for lr in sorted(vals[a])} for a in arms}
    if not single:
        rest = [spec(a, best_lr[a], s) for a in arms for s in seeds[1:]]
        results.update(run(rest, "seeds"))
    return results, best_lr, lr_vals


def lr_edge(lr: float, sweep: dict[str, float]) -> str | None:
    """``"upper"`` / ``"lower"`` when ``lr`` is the largest / smallest of the LRs an arm was
    tried at (``sweep``: validation value by ``f"{lr:g}"``, as :func:`sweep_then_seeds` keys
    it), None when it is interior or the sweep had one LR (nothing was chosen)."""
    grid = sorted(sweep, key=float)
    if len(grid) < 2:
        return None
    return {grid[-1]: "upper", grid[0]: "lower"}.get(f"{lr:g}")


def init_worker(debug: bool = False) -> None:
    """A pool worker's set-up: CPU tuning, and the console logging of the CLI at WARNING (DEBUG
    under -v), so a worker's warnings arrive as the main process's do, one line each."""
    tune_cpu_process()
    setup_logging(1 if debug else -1)


# ----------------------------------------------------------------------------- checkpoints


def find_checkpoints(
    root: str | os.PathLike | None, backbones: tuple[str, ...], section: str
) -> dict[str, list[str]]:
    """Checkpoint paths per backbone (one per seed of the source) from an E1 folder
    (``summary.json``: each backbone's runs at its chosen LR) or a ``pretrain`` folder
    (``pretrain.json``: one backbone, one checkpoint); ``section`` names the config section
    (``e2``, ``e4``) in the errors."""
    if not root:
        raise ConfigError(
            f"{section}.inits includes 'pretrained' but {section}.pretrained_from is not set: "
            f"run E1 (spektron e1 / run-all) or `spektron pretrain` first and pass its folder "
            f"with --pretrained, or use --set {section}.inits='[\"scratch\"]'"
        )
    root = Path(root)
    found: dict[str, list[str]] = {}
    if (root / "summary.json").is_file():
        summ = json.loads((root / "summary.json").read_text())
        for name, b in summ.get("backbones", {}).items():
            found[name] = [str(root / r / "best.pt") for r in b.get("runs", [])]
    elif (root / "pretrain.json").is_file():
        p = json.loads((root / "pretrain.json").read_text())
        found[p["backbone"]] = [p["checkpoint"]]
    else:
        raise ConfigError(
            f"{section}.pretrained_from = {root}: no E1 summary.json or pretrain.json there"
        )
    missing = [b for b in backbones if not found.get(b)]
    if missing:
        raise ConfigError(
            f"{section}.pretrained_from = {root} has no checkpoint for backbone(s) {missing}"
        )
    for b in backbones:
        for p in found[b]:
            if not Path(p).is_file():
                raise ConfigError(f"pretrained checkpoint {p} (backbone {b}) does not exist")
    return {b: found[b] for b in backbones}


_SHARED_MODEL_KEYS = ("d_model", "embedding", "backbone", "backbone_config")


def complete_model_config(model: dict[str, Any]) -> dict[str, Any]:
    """A model config as JSON with the fields its backbone config lacks filled in at their
    defaults (a run written before a backbone config gained a field, as today's settings
    name it); the fields it has are kept as they are."""
    from spektron.models.spektron import SpektronConfig

    try:
        bb = dataclasses.asdict(SpektronConfig.from_json_dict(model).backbone_cfg())
    except (ConfigError, TypeError, KeyError):
        return model  # not a model this code builds: compared as recorded
    have = model.get("backbone_config") or {}
    missing = {k: v for k, v in json.loads(json.dumps(bb)).items() if k not in have}
    return {**model, "backbone_config": {**have, **missing}} if missing else model


def _model_shape(cfg: Any) -> dict[str, Any]:
    """A model config as JSON with its backbone config complete: a field the checkpoint's
    code did not have yet compares as its default (a checkpoint written before a backbone
    gained a field still loads into the same model)."""
    out = cfg.to_json_dict()
    bb = dataclasses.asdict(cfg.backbone_cfg())
    bb.pop("d_model", None)  # the model's own field, compared as d_model
    out["backbone_config"] = json.loads(json.dumps(bb))
    return out


def load_pretrained(model: torch.nn.Module, path: str) -> dict[str, Any]:
    """Copy the embedding and backbone weights of an E1 / ``pretrain`` checkpoint into
    ``model`` (the head stays as initialised). Refuses a checkpoint of another shape.
    Used by E2 and E4 for their pretrained arms."""
    from spektron.models.spektron import SpektronConfig, read_checkpoint

    state = read_checkpoint(path)
    try:
        theirs = _model_shape(SpektronConfig.from_json_dict(state["config"]))
    except ConfigError as e:
        raise CheckpointError(f"{path}: invalid model config: {e}") from e
    mine = _model_shape(model.cfg)
    for k in _SHARED_MODEL_KEYS:
        if theirs.get(k) != mine.get(k):
            raise CheckpointError(
                f"{path}: pretrained {k} = {theirs.get(k)!r} differs from this "
                f"model's {mine.get(k)!r}; pretrain with the same preset (e1.d_model, e1.stride, "
                "e1.budget) as the experiment that loads it"
            )
    sd = {k: v for k, v in state["state_dict"].items() if k.startswith(("embedding.", "backbone."))}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    left = [k for k in missing if not k.startswith("head.")]
    if left or unexpected:
        raise CheckpointError(
            f"{path}: weights do not fit (missing {left}, unexpected {unexpected})"
        )
    return {"checkpoint": str(path), "copied_tensors": len(sd)}
