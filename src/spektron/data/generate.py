"""Dataset generation: simulate many molecules in parallel, shardable, resumable, into a store.

Work is cut into chunks of molecules. Each chunk is simulated by one worker process and written
as its own small store plus a JSON log (failures with reasons, timings) into a parts folder
beside the output, ``.<out>.parts-<confighash>/``. A killed run therefore keeps every finished
chunk; rerunning the same command skips them. When all chunks are done they are merged into
``out`` atomically and the parts folder is removed. ``--shard i/N`` simulates every N-th
molecule of the selection starting at i; shard stores are merged with ``spektron data merge``
(splits are hash-based, so a merged store equals an unsharded one row for row up to order).
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from spektron import __version__
from spektron.chemistry.molecule import MoleculeInput
from spektron.chemistry.spectra import make_grid
from spektron.config import DatasetConfig, PhysicsConfig, config_hash, to_dict
from spektron.data.store import StoreWriter, merge_stores, open_store
from spektron.errors import ConfigError, SpektronError, StoreError
from spektron.utils import cache_dir, single_threaded_blas, write_json_atomic

log = logging.getLogger(__name__)

# Bumped whenever the physics changes results, so cached datasets are regenerated.
GENERATOR_VERSION = 2  # 2: per-molecule structure source
SIMULATED_LABEL = (
    "SIMULATED spectra (MMFF94 normal modes, fixed-charge IR, bond-polarizability Raman) "
    "of real QM9 molecules; not DFT, not measured"
)
# What each physics level's spectra are (the store's "label" attribute).
LEVEL_LABELS = {
    "mmff": SIMULATED_LABEL,
    "xtb": "SIMULATED spectra (GFN2-xTB normal modes, IR from dipole derivatives, Raman from "
    "polarizability derivatives) of real QM9 molecules; not DFT, not measured",
    "hybrid": "SIMULATED spectra (QM9's B3LYP harmonic frequencies x scale, GFN2-xTB IR and "
    "Raman intensities matched in sorted order) of real QM9 molecules; not measured",
    "mmff-hybrid": "SIMULATED spectra (QM9's B3LYP harmonic frequencies x scale, MMFF94-mode "
    "fixed-charge IR and bond-polarizability Raman intensities matched in sorted order) of real "
    "QM9 molecules; not measured",
    "fast-hybrid": "SIMULATED spectra (QM9's B3LYP harmonic frequencies x scale, MMFF94 modes with "
    "GFN2-xTB atomic-polar-tensor IR and bond-polarizability Raman, matched in sorted order) of "
    "real QM9 molecules; not measured",
}

# CPU seconds per QM9 molecule at each level, measured on 100 random QM9 molecules on a 2-core
# x86-64 CPU (`data simulate --n 100 --seed 7 --workers 1`); used by run-all's time estimate.
LEVEL_CPU_S = {
    "mmff": 0.010,
    "xtb": 1.04,
    "hybrid": 1.05,
    "mmff-hybrid": 0.011,
    "fast-hybrid": 0.084,
}


@dataclass
class GenerationReport:
    """What a generation run did: counts, failures by reason, timing."""

    n_requested: int = 0
    n_ok: int = 0
    n_failed: int = 0
    failures_by_reason: dict[str, int] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    n_resumed_chunks: int = 0
    wall_s: float = 0.0
    cpu_s_per_molecule: float = 0.0
    workers: int = 1
    shard: str = "0/1"
    input_rejects: dict[str, int] = field(default_factory=dict)
    # Molecules simulated with a caveat (charged species): source_index, smiles, note.
    notes: list[dict[str, Any]] = field(default_factory=list)
    # SMILES sources: what the QM9 lookup found (``QM9LookupReport.to_dict``); {} otherwise.
    qm9_lookup: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, max_failures: int = 200) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["failures"] = self.failures[:max_failures]
        return d


class GenerationFailed(StoreError):
    """Every molecule failed: no store is written. ``report`` holds every failure."""

    def __init__(self, report: GenerationReport, out: Path) -> None:
        first = "; ".join(f"{f['smiles']}: {f['message']}" for f in report.failures[:3])
        more = f" (and {report.n_failed - 3} more)" if report.n_failed > 3 else ""
        super().__init__(
            f"{out}: every molecule failed ({report.n_failed} of {report.n_requested}), no "
            f"store written: {first}{more}"
        )
        self.report = report


def parse_shard(text: str) -> tuple[int, int]:
    """'i/N' → (i, N) with 0 ≤ i < N."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m:
        raise ConfigError(f"--shard must look like i/N (e.g. 0/4), got {text!r}")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard i/N needs N >= 1 and 0 <= i < N, got {text!r}")
    return i, n


def failure_reason(exc: BaseException) -> str:
    """Short category of a failure (message without numbers), for counting."""
    msg = str(exc).split(":")[0] if isinstance(exc, SpektronError) else type(exc).__name__
    return re.sub(r"[-+]?\d+(\.\d+)?", "#", msg).strip()[:80] or type(exc).__name__


def _simulate_chunk(args: tuple) -> tuple[int, int, list[dict], float]:
    """Worker: simulate one chunk, write its store and log. Returns (k, n_ok, failures, cpu_s)."""
    k, inputs, physics, grid_cfg, parts, attrs = args
    from spektron.chemistry.functional_groups import FUNCTIONAL_GROUP_NAMES
    from spektron.chemistry.simulate import ion_note, simulate_molecule

    t0 = time.process_time()
    grid = make_grid(grid_cfg["n_points"], grid_cfg["lo"], grid_cfg["hi"])
    records, failures, notes = [], [], []
    with single_threaded_blas():
        for inp in inputs:
            details: dict[str, Any] = {}
            try:
                records.append(simulate_molecule(inp, physics, grid, details=details))
                if details["net_charge"]:
                    note = ion_note(details["net_charge"])
                    notes.append(
                        {"source_index": inp.source_index, "smiles": inp.smiles, "note": note}
                    )
            except Exception as e:  # noqa: BLE001 - every failure is counted with its reason
                failures.append(
                    {
                        "source_index": inp.source_index,
                        "smiles": inp.smiles,
                        "reason": failure_reason(e),
                        "message": f"{type(e).__name__}: {e}",
                    }
                )
    parts = Path(parts)
    if records:
        with StoreWriter(parts / f"chunk_{k:06d}.h5", grid, attrs, FUNCTIONAL_GROUP_NAMES) as w:
            w.extend(records)
    cpu = time.process_time() - t0
    log_entry = {
        "chunk": k,
        "n_ok": len(records),
        "failures": failures,
        "notes": notes,
        "cpu_s": cpu,
    }
    write_json_atomic(parts / f"chunk_{k:06d}.json", log_entry)  # written last: marks "done"
    return k, len(records), failures, cpu


def _worker_init() -> None:
    from spektron.utils import setup_logging

    setup_logging(-1)


DASK_CONNECT_TIMEOUT_S = 30  # seconds to reach a remote Dask scheduler


def _run_dask(todo: list[tuple], scheduler: str, workers: int, bar: Any) -> None:
    """The chunks on Dask distributed: a LocalCluster (``scheduler == "dask"``) or a running
    scheduler at an address. Each chunk is one task (a molecule is too small a task)."""
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError as e:
        raise ConfigError(
            f"the Dask scheduler needs dask[distributed] ({e}); pip install 'dask[distributed]'"
        ) from e
    cluster = None
    if scheduler == "dask":
        cluster = LocalCluster(
            n_workers=max(1, min(workers, len(todo))),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout=DASK_CONNECT_TIMEOUT_S)
        except OSError as e:
            raise ConfigError(f"cannot reach the Dask scheduler at {scheduler!r}: {e}") from e
    try:
        client.run(_worker_init)
        futures = client.map(_simulate_chunk, todo, pure=False)
        for fut in as_completed(futures):
            _k, n_ok, fails, _cpu = fut.result()
            bar.update(n_ok + len(fails))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def simulate_to_store(
    inputs: Sequence[MoleculeInput],
    out: str | os.PathLike,
    physics: PhysicsConfig,
    grid_cfg: Any,
    *,
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    chunk_size: int = 32,
    attrs: dict[str, Any] | None = None,
    progress: bool = True,
    keep_parts: bool = False,
    scheduler: str | None = None,
) -> GenerationReport:
    """Simulate ``inputs`` (this shard's part) into the store ``out``; see module docstring.

    ``scheduler``: None runs the chunks in a local spawn pool of ``workers`` processes;
    ``"dask"`` in a Dask distributed ``LocalCluster`` of ``workers`` single-threaded worker
    processes; any other value is the address of a running Dask scheduler
    (``tcp://host:8786``), whose workers must see ``out``'s folder (they write the chunk stores
    there) and have spektron installed. Chunks, resumption and merge are the same for all.
    """
    out = Path(out)
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    if workers < 0:
        raise ConfigError(f"workers must be >= 0, got {workers}")
    workers = workers or os.cpu_count() or 1
    i, n = shard
    mine = list(inputs)[i::n]
    if not mine:
        raise ConfigError(f"shard {i}/{n} selects no molecules out of {len(inputs)}")
    grid_dict = to_dict(grid_cfg)
    attrs = dict(attrs or {})
    attrs.setdefault("config", {})
    attrs["shard"] = f"{i}/{n}"
    run_hash = config_hash(
        {"attrs": attrs, "ids": [m.source_index for m in mine], "smiles": [m.smiles for m in mine]}
    )
    parts = out.parent / f".{out.name}.parts-{run_hash}"
    try:
        parts.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"{out}: cannot create its work folder {parts.name} ({e.strerror})") from e
    chunks = [mine[s : s + chunk_size] for s in range(0, len(mine), chunk_size)]
    report = GenerationReport(n_requested=len(mine), workers=workers, shard=f"{i}/{n}")
    done = {k for k in range(len(chunks)) if (parts / f"chunk_{k:06d}.json").exists()}
    report.n_resumed_chunks = len(done)
    if done:
        log.info("resuming: %d of %d chunks already done in %s", len(done), len(chunks), parts)
    todo = [
        (k, c, physics, grid_dict, str(parts), attrs) for k, c in enumerate(chunks) if k not in done
    ]
    t0 = time.perf_counter()
    bar = tqdm(
        total=len(mine),
        initial=sum(len(chunks[k]) for k in done),
        unit="mol",
        desc=f"simulate {out.name}",
        disable=not progress,
    )
    try:
        if scheduler is not None:
            _run_dask(todo, scheduler, workers, bar)
        elif workers == 1 or len(todo) <= 1:
            for a in todo:
                _simulate_chunk(a)
                bar.update(len(a[1]))
        else:
            ctx = mp.get_context("spawn")
            with ctx.Pool(min(workers, len(todo)), initializer=_worker_init) as pool:
                for _k, n_ok, fails, _cpu in pool.imap_unordered(_simulate_chunk, todo):
                    bar.update(n_ok + len(fails))
    finally:
        bar.close()
    report.wall_s = time.perf_counter() - t0
    cpu_total = 0.0
    chunk_stores = []
    for k in range(len(chunks)):
        entry = json.loads((parts / f"chunk_{k:06d}.json").read_text())
        report.n_ok += entry["n_ok"]
        report.failures.extend(entry["failures"])
        report.notes.extend(entry.get("notes", []))  # chunk logs of older versions have none
        cpu_total += entry["cpu_s"]
        if entry["n_ok"]:
            chunk_stores.append(parts / f"chunk_{k:06d}.h5")
    report.n_failed = len(report.failures)
    report.failures_by_reason = dict(Counter(f["reason"] for f in report.failures).most_common())
    report.cpu_s_per_molecule = cpu_total / max(1, len(mine))
    if not chunk_stores:
        # Nothing to resume (every chunk ran to its end) and no store: the report is all
        # that is left, so the work folder goes.
        shutil.rmtree(parts, ignore_errors=True)
        raise GenerationFailed(report, out)
    merge_stores(chunk_stores, out, attrs={"generation_report": json.dumps(report.to_dict())})
    if not keep_parts:
        shutil.rmtree(parts, ignore_errors=True)
    return report


def dataset_inputs(
    cfg: DatasetConfig,
) -> tuple[list[MoleculeInput], dict[str, int], dict[str, Any]]:
    """The molecules a dataset config selects, input rejects by reason, and (SMILES sources
    with ``cfg.qm9_lookup``) what the QM9 lookup found."""
    from spektron.data import molecules

    if cfg.source == "smiles":
        inputs = molecules.read_smiles_list(cfg.smiles)
        if not cfg.qm9_lookup:
            return inputs, {}, {}
        inputs, found = molecules.lookup_qm9(inputs)
        log.info("%s", found.summary())
        return inputs, {}, found.to_dict()
    mols, rep = molecules.load_qm9(n=cfg.n_molecules, seed=cfg.selection_seed)
    return mols, dict(rep.rejects), {}


def data_label(cfg: DatasetConfig, lookup: dict[str, Any] | None = None) -> str:
    """What the spectra of a dataset config are (SIMULATED, at its physics level); ``lookup``
    (``QM9LookupReport.to_dict``) adds how many user molecules came from their QM9 rows."""
    label = LEVEL_LABELS[cfg.physics.level]
    if cfg.physics.level in ("xtb", "hybrid") and cfg.physics.xtb_raman == "bond":
        label = label.replace(
            "Raman from polarizability derivatives", "bond-polarizability Raman"
        ).replace("GFN2-xTB IR and Raman intensities", "GFN2-xTB IR and bond-polarizability Raman")
    if cfg.source == "smiles":
        smiles = "SMILES"
        if lookup and lookup["n_found"]:
            smiles += (
                f"; {lookup['n_found']} of {lookup['n_inputs']} from their QM9 rows: DFT "
                "geometry, Mulliken charges, DFT frequencies"
            )
        label = label.replace("of real QM9 molecules", f"of user-supplied molecules ({smiles})")
    return label


def dataset_attrs(cfg: DatasetConfig, lookup: dict[str, Any] | None = None) -> dict[str, Any]:
    """Store attributes recording what generated the data (and that it is simulated), with what
    the QM9 lookup of a SMILES source found (``lookup``) when given."""
    attrs = {
        "source": "qm9s-sim" if cfg.source == "qm9" else "smiles-sim",
        "simulated": True,
        "label": data_label(cfg, lookup),
        "level": cfg.physics.level,
        "config": to_dict(cfg),
        "config_hash": config_hash({"cfg": to_dict(cfg), "gen": GENERATOR_VERSION}),
        "generator_version": GENERATOR_VERSION,
        "spektron_version": __version__,
    }
    if lookup:  # not its timing: the attributes key a resumable run's parts folder
        attrs["qm9_lookup"] = json.dumps({k: v for k, v in lookup.items() if k != "seconds"})
    return attrs


def generate_dataset(
    cfg: DatasetConfig,
    out: str | os.PathLike,
    *,
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    chunk_size: int = 32,
    progress: bool = True,
    scheduler: str | None = None,
) -> GenerationReport:
    """Select molecules per ``cfg`` and simulate them into ``out`` (``scheduler``: see
    :func:`simulate_to_store`)."""
    from spektron.chemistry.simulate import HYBRID_LEVELS

    inputs, rejects, lookup = dataset_inputs(cfg)
    if cfg.physics.level in HYBRID_LEVELS and not any(i.dft_freqs is not None for i in inputs):
        raise ConfigError(
            f"level {cfg.physics.level!r} needs QM9's DFT frequencies and none of the "
            f"{len(inputs)} molecules is a QM9 row (lookup by InChIKey "
            f"{'on' if cfg.qm9_lookup else 'off'}): use level 'mmff' or 'xtb'"
        )
    report = simulate_to_store(
        inputs,
        out,
        cfg.physics,
        cfg.grid,
        workers=workers,
        shard=shard,
        chunk_size=chunk_size,
        attrs=dataset_attrs(cfg, lookup),
        progress=progress,
        scheduler=scheduler,
    )
    report.input_rejects = rejects
    report.qm9_lookup = lookup
    return report


def default_dataset_path(cfg: DatasetConfig) -> Path:
    """Cache location of the dataset a config describes (keyed by its hash)."""
    h = dataset_attrs(cfg)["config_hash"]
    n = "all" if cfg.n_molecules is None else cfg.n_molecules
    return cache_dir() / "datasets" / f"qm9s-sim-n{n}-{h}.h5"


def ensure_dataset(
    cfg: DatasetConfig, *, workers: int = 0, progress: bool = True
) -> tuple[Path, GenerationReport | None]:
    """Return the cached store for ``cfg``, simulating it first if needed."""
    path = default_dataset_path(cfg)
    grid = make_grid(cfg.grid.n_points, cfg.grid.lo, cfg.grid.hi)
    if path.exists():
        try:
            open_store(path, expected_grid=grid).close()
            log.info("using cached dataset %s", path)
            return path, None
        except StoreError as e:
            log.warning("cached dataset unusable (%s); regenerating", e)
            path.unlink()
    log.info(
        "simulating dataset into %s (%s)",
        path,
        "all QM9" if cfg.n_molecules is None else f"{cfg.n_molecules} molecules",
    )
    report = generate_dataset(cfg, path, workers=workers, progress=progress)
    return path, report
