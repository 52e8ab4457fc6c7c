"""``spektron`` command line. Thin: parses arguments and calls library functions.

Errors raised on purpose (:class:`spektron.errors.SpektronError`) become one line on stderr
and exit code 2; an interrupt exits with 130.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from spektron import __version__
from spektron.errors import ConfigError, SpektronError
from spektron.experiments.predict import add_predict_parser, cmd_predict
from spektron.utils import check_writable, setup_logging, tune_cpu_process

log = logging.getLogger("spektron")


def _add_set_arg(p: argparse.ArgumentParser, example: str) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"config override, e.g. --set {example} (repeatable)",
    )


def _add_force_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true", help="overwrite an existing --out store")


def _add_jobs_arg(p: argparse.ArgumentParser, what: str = "training processes") -> None:
    p.add_argument("--jobs", type=int, default=None, help=f"parallel {what} on CPU (0 = cores)")


def _add_pretrained_arg(p: argparse.ArgumentParser, arms: str) -> None:
    p.add_argument(
        "--pretrained",
        type=Path,
        default=None,
        help="E1 results folder (or a `spektron pretrain` folder) whose checkpoints start the "
        f"{arms} (default: OUT/../e1 when it exists)",
    )


def _add_experiment_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="quick", help="smoke | quick | paper (default: quick)")
    p.add_argument("--out", type=Path, default=Path("runs"), help="results folder (default runs/)")
    p.add_argument("--seed", type=int, default=None, help="seed (default from the preset)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda[:i]")
    p.add_argument("--workers", type=int, default=None, help="processes for simulation (0 = all)")
    _add_set_arg(p, "data.n_molecules=500")


VERBOSE = "more logging (-vv: debug)"
QUIET = "warnings only, no progress bars"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="spektron", description=__doc__.splitlines()[0])
    ap.add_argument("--version", action="version", version=f"spektron {__version__}")
    ap.add_argument("-v", "--verbose", action="count", default=0, help=VERBOSE)
    ap.add_argument("-q", "--quiet", action="store_true", help=QUIET)
    sub = ap.add_subparsers(dest="cmd", required=True)

    data = sub.add_parser("data", help="simulate, convert, merge and inspect spectral stores")
    dsub = data.add_subparsers(dest="data_cmd", required=True)

    sim = dsub.add_parser(
        "simulate", help="simulate IR/Raman spectra into a store (physics level: --level)"
    )
    src = sim.add_mutually_exclusive_group()
    src.add_argument(
        "--n",
        type=int,
        default=None,
        help="number of QM9 molecules (seeded selection; default: the quick preset size)",
    )
    src.add_argument("--all", action="store_true", help="every valid QM9 molecule")
    src.add_argument(
        "--smiles", default=None, help="comma-separated SMILES or a file with one SMILES per line"
    )
    sim.add_argument("--out", type=Path, required=True, help="output store (.h5)")
    _add_force_arg(sim)
    sim.add_argument(
        "--scheduler",
        default=None,
        help="run the chunks on Dask distributed: 'dask' (a LocalCluster of --workers "
        "processes) or a scheduler address tcp://host:port (workers must share the output "
        "folder); default: a local process pool",
    )
    sim.add_argument(
        "--level",
        default=None,
        help="physics level: fast-hybrid (default for QM9 molecules: QM9 DFT frequencies, mmff "
        "modes, xtb dipole-derivative IR, bond Raman), mmff (default for --smiles), xtb "
        "(GFN2-xTB via tblite), hybrid (QM9 DFT frequencies + xtb intensities), mmff-hybrid (QM9 "
        "DFT frequencies + mmff intensities). The levels with DFT frequencies apply to SMILES "
        "that QM9 holds (found by InChIKey)",
    )
    sim.add_argument("--workers", type=int, default=0, help="processes (0 = all cores)")
    sim.add_argument("--shard", default="0/1", help="i/N: simulate shard i of N (default 0/1)")
    sim.add_argument(
        "--chunk-size", type=int, default=32, help="molecules per resumable chunk (default 32)"
    )
    sim.add_argument("--seed", type=int, default=0, help="selection seed for --n (default 0)")
    _add_set_arg(sim, "data.physics.ir_fwhm=12")
    sim.add_argument(
        "--report",
        type=Path,
        default=None,
        help="write the generation report JSON here (default: <out>.report.json)",
    )

    mg = dsub.add_parser("merge", help="merge shard stores into one")
    mg.add_argument("inputs", nargs="+", type=Path)
    mg.add_argument("--out", type=Path, required=True)
    mg.add_argument(
        "--allow-mixed",
        action="store_true",
        help="merge stores of different sources, levels or physics (labelled mixed)",
    )
    _add_force_arg(mg)

    cv = dsub.add_parser("convert-qm9s", help="convert the real QM9S files into a store")
    cv.add_argument("--out", type=Path, required=True)
    _add_force_arg(cv)
    cv.add_argument("--ir-csv", type=Path, default=None, help="ir_boraden.csv")
    cv.add_argument("--raman-csv", type=Path, default=None, help="raman_boraden.csv")
    cv.add_argument("--zip", dest="zip_path", type=Path, default=None, help="qm9s_csv.zip")
    cv.add_argument("--pt", dest="pt_path", type=Path, default=None, help="qm9s.pt")
    cv.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow full unpickling of qm9s.pt (only for files you trust)",
    )
    cv.add_argument("--limit", type=int, default=None, help="convert only the first N entries")

    info = dsub.add_parser("info", help="summarise a store")
    info.add_argument("file", type=Path)
    info.add_argument("--json", action="store_true", help="print JSON")

    val = dsub.add_parser(
        "validate",
        help="score the simulation levels against the DFT reference set (B3LYP, PySCF)",
    )
    val.add_argument(
        "--level",
        default=None,
        help="comma-separated levels (default: mmff,xtb,hybrid,mmff-hybrid,fast-hybrid)",
    )
    val.add_argument(
        "--reference", type=Path, default=None, help="reference folder (default: the packaged set)"
    )
    val.add_argument(
        "--only", type=int, nargs="+", default=None, metavar="QM9_INDEX", help="these molecules"
    )
    val.add_argument(
        "--ref-freq-scale",
        type=float,
        default=None,
        help="factor on the reference frequencies (default data.physics.dft_freq_scale, 0.965)",
    )
    val.add_argument(
        "--exclusion",
        action="store_true",
        help="also simulate every centrosymmetric QM9 molecule (85) at each level and check "
        "mutual exclusion (minutes at the xtb levels)",
    )
    _add_set_arg(val, "data.physics.xtb_raman=bond")
    val.add_argument(
        "--out",
        type=Path,
        default=Path("runs/data/validation.json"),
        help="report JSON (default runs/data/validation.json; a .md table is written beside it)",
    )

    nir = dsub.add_parser("nir", help="summarise the real NIR transfer datasets (corn, tablet)")
    nir.add_argument("--json", action="store_true")

    bench = sub.add_parser("bench", help="measured benchmarks (printed and written as JSON)")
    bsub = bench.add_subparsers(dest="bench_cmd", required=True)
    bb = bsub.add_parser("backbones", help="throughput, peak memory and FLOPs per backbone")
    bb.add_argument("--backbones", default=None, help="comma-separated names (default: all)")
    bb.add_argument("--batch", type=int, default=16)
    bb.add_argument("--length", type=int, default=2048)
    bb.add_argument("--d-model", type=int, default=128)
    bb.add_argument("--budget", type=int, default=1_000_000, help="backbone parameters")
    bb.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    bb.add_argument("--repeats", type=int, default=3)
    bb.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    bb.add_argument("--out", type=Path, default=Path("runs/bench/backbones.json"))
    bm = bsub.add_parser(
        "dlinoss-modes", help="D-LinOSS recurrent / scan / fft / chunk side by side"
    )
    bm.add_argument("--lengths", default="256,1024,2048,4096", help="comma-separated lengths")
    bm.add_argument("--modes", default="recurrent,scan,fft,chunk")
    bm.add_argument("--batch", type=int, default=16)
    bm.add_argument("--d-model", type=int, default=128)
    bm.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    bm.add_argument("--repeats", type=int, default=3)
    bm.add_argument("--recurrent-repeats", type=int, default=1)
    bm.add_argument("--recurrent-max-len", type=int, default=4096)
    bm.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    bm.add_argument("--out", type=Path, default=Path("runs/bench/dlinoss_modes.json"))

    e1 = sub.add_parser("e1", help="E1: masked reconstruction benchmark of every backbone")
    _add_experiment_args(e1)
    _add_jobs_arg(e1)

    e2 = sub.add_parser("e2", help="E2: cross-spectral prediction (Raman from IR and back)")
    _add_experiment_args(e2)
    _add_jobs_arg(e2)
    _add_pretrained_arg(e2, "pretrained arms")

    e3 = sub.add_parser("e3", help="E3: transfer functions of trained D-LinOSS vs controls")
    _add_experiment_args(e3)
    e3.add_argument(
        "--checkpoint",
        type=Path,
        action="append",
        default=None,
        help="D-LinOSS checkpoint(s) to analyse (repeatable; their init.pt siblings are the "
        "untrained control). Default: the dlinoss runs of OUT/../e1 (or --trained-from)",
    )
    e3.add_argument(
        "--trained-from", type=Path, default=None, help="E1 results folder with dlinoss runs"
    )
    _add_jobs_arg(e3)

    e4 = sub.add_parser("e4", help="E4: calibration transfer on the real corn / tablet NIR data")
    _add_experiment_args(e4)
    _add_jobs_arg(e4, "processes")
    _add_pretrained_arg(e4, "pretrained deep arms")

    pt = sub.add_parser("pretrain", help="train one backbone on MSRP (checkpoint for E2-E4)")
    _add_experiment_args(pt)
    pt.add_argument("--backbone", default="dlinoss", help="registered backbone (default dlinoss)")
    pt.add_argument(
        "--lr", type=float, default=None, help="learning rate (default: first of sweep)"
    )

    rp = sub.add_parser("report", help="rebuild tables and figures from the JSON results")
    rp.add_argument("--out", type=Path, default=Path("runs"), help="results folder (default runs/)")

    ex = sub.add_parser(
        "export", help="a finished run's results without checkpoints, small enough to commit"
    )
    ex.add_argument("--run", type=Path, required=True, help="the folder run-all wrote")
    ex.add_argument("--to", type=Path, required=True, help="the export's folder")
    ex.add_argument("--force", action="store_true", help="replace an existing non-empty --to")
    ex.add_argument(
        "--check",
        action="store_true",
        help="rebuild every report from the export first; refuse it unless each table comes "
        "out byte for byte the same",
    )

    ra = sub.add_parser("run-all", help="the main job: every stage of the study that exists")
    _add_experiment_args(ra)
    ra.add_argument(
        "--stages",
        default="data,e1,e2,e3,e4",
        help="comma-separated stages to run, in their order (default: all, data,e1,e2,e3,e4); "
        "E2-E4 start from --out's e1 folder, so a long study can be run in parts into the "
        "same --out (e.g. data,e1,e3,e4 then e2)",
    )

    cf = sub.add_parser("config", help="the resolved config: every --set key and its value")
    csub = cf.add_subparsers(dest="config_cmd", required=True)
    show = csub.add_parser("show", help="print every config key of a preset, overrides applied")
    show.add_argument("--preset", default="quick", help="smoke | quick | paper (default: quick)")
    show.add_argument("--json", action="store_true", help="one JSON document instead of lines")
    _add_set_arg(show, "e1.train.lr=0.01")
    add_predict_parser(sub)
    _add_log_level_args(ap)
    return ap


def _add_log_level_args(ap: argparse.ArgumentParser) -> None:
    """-v / -q after the (sub)command too: every leaf parser takes them (given there, they
    override the ones before the command)."""
    subs = [a for a in ap._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        ap.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help=VERBOSE)
        ap.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=QUIET)
        return
    for sp in subs[0].choices.values():
        _add_log_level_args(sp)


def _cmd_simulate(a: argparse.Namespace) -> int:
    from spektron.config import DatasetConfig, PhysicsConfig, apply_overrides
    from spektron.data.generate import GenerationFailed, generate_dataset, parse_shard
    from spektron.data.molecules import qm9_rejects_line
    from spektron.errors import StoreError
    from spektron.utils import write_json_atomic

    base = DatasetConfig(
        source="smiles" if a.smiles else "qm9",
        n_molecules=None if a.all else (a.n if a.n is not None else DatasetConfig.n_molecules),
        selection_seed=a.seed,
        smiles=a.smiles,
    )
    if a.level is None and a.smiles:  # the one level for any molecule, not only QM9's
        base.physics = PhysicsConfig(level="mmff")
    level = [f"data.physics.level={json.dumps(a.level)}"] if a.level is not None else []
    cfg = apply_overrides(base, level + a.overrides, root="data")
    shard = parse_shard(a.shard)
    what = (
        f"SMILES list {cfg.smiles!r}"
        if cfg.source == "smiles"
        else f"{'all' if cfg.n_molecules is None else cfg.n_molecules} QM9 molecules "
        f"(seed {cfg.selection_seed})"
    )
    log.info("simulating %s, shard %d/%d, level %s -> %s", what, *shard, cfg.physics.level, a.out)
    rpath = a.report or a.out.with_name(a.out.name + ".report.json")
    try:
        rep = generate_dataset(
            cfg,
            a.out,
            workers=a.workers,
            shard=shard,
            chunk_size=a.chunk_size,
            progress=not a.quiet,
            scheduler=a.scheduler,
        )
    except GenerationFailed as e:
        write_json_atomic(rpath, {"status": "failed", **e.report.to_dict(max_failures=10_000)})
        raise StoreError(f"{e}; every failure is in {rpath}") from e
    write_json_atomic(rpath, {"status": "complete", **rep.to_dict(max_failures=10_000)})
    print(
        f"wrote {a.out}: {rep.n_ok} molecules simulated, {rep.n_failed} failed "
        f"({rep.failures_by_reason or 'none'}); {rep.wall_s:.1f} s wall, "
        f"{1000 * rep.cpu_s_per_molecule:.0f} ms CPU/molecule; report {rpath}"
    )
    if rep.qm9_lookup:
        print(rep.qm9_lookup["summary"])
    if rep.notes:
        ions = ", ".join(f"{n['smiles']}" for n in rep.notes[:5])
        more = f" and {len(rep.notes) - 5} more" if len(rep.notes) > 5 else ""
        print(
            f"charged species: {len(rep.notes)} simulated as isolated ions, without counter-ion "
            f"or solvent ({ions}{more}); their charge_model column and the report say so"
        )
    if rep.input_rejects:
        print(qm9_rejects_line(rep.input_rejects))
    return 0


def _cmd_info(a: argparse.Namespace) -> int:
    from spektron.data.store import open_store

    with open_store(a.file) as s:
        summ = s.summary()
        keep = ("label", "source", "created", "level")
        summ["attrs"] = {k: v for k, v in s.attrs.items() if k in keep}
    if a.json:
        print(json.dumps(summ, indent=2))
        return 0
    g = summ["grid"]
    level = []
    if summ["simulated"]:  # stores written before levels existed are mmff
        lv = summ["attrs"].get("level", "mmff")
        level = [f"level        {lv}: {summ['attrs'].get('label', '')}".rstrip(": ")]
    lines = [
        f"file         {summ['file']}",
        f"source       {summ['source']}" + ("  (SIMULATED)" if summ["simulated"] else ""),
        *level,
        f"records      {summ['n_records']}  (IR {summ['has_ir']}, Raman {summ['has_raman']})",
        "structures   "
        + ", ".join(f"{k} {v}" for k, v in summ["structure_sources"].items())
        + "  (qm9: QM9 rows, DFT geometry; smiles: embedded from SMILES)",
        f"grid         {g['n_points']} points, {g['lo']:.1f}–{g['hi']:.1f} cm⁻¹",
        "splits       " + ", ".join(f"{k} {v}" for k, v in summ["splits"].items()),
        "centrosym.   " + ", ".join(f"{k} {v}" for k, v in summ["centrosymmetric"].items()),
        "point groups " + ", ".join(f"{k} {v}" for k, v in list(summ["point_groups"].items())[:10]),
        "func. groups " + ", ".join(f"{k} {v}" for k, v in summ["functional_groups"].items() if v),
        f"sticks       {summ['n_sticks']}",
        f"config hash  {summ['config_hash']}   spektron {summ['spektron_version']}",
    ]
    print("\n".join(lines))
    return 0


def _cmd_validate(a: argparse.Namespace) -> int:
    from spektron.config import DatasetConfig, apply_overrides
    from spektron.data.validate import (
        REFERENCE_DIR,
        check_mutual_exclusion,
        format_report,
        validate,
    )
    from spektron.experiments.validation_report import write_validation

    if a.out.suffix != ".json":
        raise ConfigError(f"--out must name a .json file (the .md and .png go beside it): {a.out}")
    cfg = apply_overrides(DatasetConfig(), a.overrides, root="data")
    rep = validate(
        levels=a.level,
        reference=a.reference or REFERENCE_DIR,
        only=a.only,
        physics=cfg.physics,
        grid=cfg.grid,
        ref_freq_scale=a.ref_freq_scale,
        progress=not a.quiet,
    )
    if a.exclusion:
        rep["mutual_exclusion_qm9"] = check_mutual_exclusion(
            levels=a.level, physics=cfg.physics, grid=cfg.grid, progress=not a.quiet
        )
    paths = write_validation(
        rep, a.out, a.out.with_suffix(".png"), reference=a.reference or REFERENCE_DIR
    )
    print(format_report(rep))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _cmd_convert(a: argparse.Namespace) -> int:
    if not any((a.ir_csv, a.raman_csv, a.zip_path, a.pt_path)):
        raise ConfigError("convert-qm9s needs at least one of --ir-csv, --raman-csv, --zip, --pt")
    from spektron.data.qm9s import convert_qm9s

    path = convert_qm9s(
        a.out,
        ir_csv=a.ir_csv,
        raman_csv=a.raman_csv,
        zip_path=a.zip_path,
        pt_path=a.pt_path,
        trust_pickle=a.trust_pickle,
        limit=a.limit,
        progress=not a.quiet,
    )
    print(f"wrote {path}")
    return 0


def _cmd_nir(a: argparse.Namespace) -> int:
    from spektron.data import nir

    rows = []
    for name in nir.list_nir_datasets():
        ds = nir.load_nir(name)
        rows.append(ds.describe())
    print(json.dumps(rows, indent=2) if a.json else "\n".join(json.dumps(r) for r in rows))
    return 0


def _experiment_config(a: argparse.Namespace, extra: list[str] | None = None):
    from spektron.config import preset_config

    return preset_config(
        a.preset,
        [*(extra or []), *a.overrides],
        prefer=a.cmd if a.cmd in ("e1", "e2", "e3", "e4") else "",
        seed=a.seed,
        device=a.device,
        workers=a.workers,
    )


def _announce(what: str):
    def show(plan: dict) -> None:
        plan = dict(plan)
        lines = [f"{str(plan.pop('experiment', what)).upper()} will run:"]
        for k, v in plan.items():
            if isinstance(v, float):
                v = f"{v:.3g}"
            elif isinstance(v, dict):
                v = ", ".join(
                    f"{kk}: {vv:.3g}" if isinstance(vv, float) else f"{kk}: {vv}"
                    for kk, vv in v.items()
                )
            lines.append(f"  {k}: {v}")
        # One write: run-all's side-by-side experiments announce from several threads.
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()

    return show


def _pm(t: dict, spec: str) -> str:
    """``mean ± std`` over seeds, or ``mean (1 seed)``."""
    if t.get("n") == 1:
        return f"{t['mean']:{spec}} (1 seed)"
    return f"{t['mean']:{spec}} ± {t['std']:.2g}"


def _print_e1(res: dict, out: Path) -> None:
    gate = res["quality_gate"]
    print(f"\nE1 ({res['data_label']}), preset {res['preset']}: {res['scale']['note']}")
    rows = sorted(res["backbones"].items(), key=lambda kv: kv[1]["test"]["masked_mse"]["mean"])
    for name, b in rows:
        t = b["test"]["masked_mse"]
        print(
            f"  {name:12s} test masked MSE {_pm(t, '.4g')}  "
            f"({b['n_params']:,} params, {b['train_samples_per_s']['mean']:.1f} samples/s)"
        )
    for name, b in res["baselines"].items():
        print(f"  {name:12s} test masked MSE {b['test']['masked_mse']['mean']:.4g} (baseline)")
    verdict = "PASSED" if gate["passed"] else "FAILED"
    failing = [n for n, g in gate["per_backbone"].items() if not g["passed"]]
    print(
        f"quality gate ({gate['criterion']}): {verdict}"
        + (f" (not beaten by: {', '.join(failing)})" if failing else "")
    )
    print(f"E1 wall time {res['wall_time_s'] / 60:.1f} min; table: {res['report']['table']}")


def _cmd_e1(a: argparse.Namespace) -> int:
    from spektron.experiments.e1.run import run_e1

    extra = [] if a.jobs is None else [f"e1.jobs={a.jobs}"]
    cfg = _experiment_config(a, extra)
    print(f"spektron e1: preset {cfg.preset}, out {a.out}")
    res = run_e1(cfg, a.out, progress=not a.quiet, announce=_announce("E1"))
    if res:
        _print_e1(res, a.out)
    return 0


def _print_e2(res: dict) -> None:
    print(f"\nE2 ({res['data_label']}), preset {res['preset']}: {res['scale']['note']}")
    key = res["primary_metric"]
    for dname, base in res["baselines"].items():
        print(f"  {dname}: test {key} (mean ± std over seeds; skill vs identity copy)")
        arms = [m for m in res["models"].values() if m["direction"] == dname]
        for m in sorted(arms, key=lambda m: -m["test"][key]["mean"]):
            t, sk = m["test"][key], m["skill"].get("identity", {})
            retr = ", ".join(
                f"{'beats' if m[flag] else 'does not beat'} {what}"
                for flag, what in (("beats_retrieval", "retrieval"), ("beats_pls", "PLS2"))
                if flag in m
            )
            print(
                f"    {m['backbone']:12s} {m['init']:10s} {_pm(t, '.4f')}  "
                f"skill {sk.get('skill', float('nan')):+.3f}  {retr}"
            )
        for name, b in base.items():
            print(f"    {name:23s} {b['test'][key]['mean']:.4f} (baseline)")
    print(f"E2 wall time {res['wall_time_s'] / 60:.1f} min; table: {res['report']['table']}")


def _pretrained_overrides(a: argparse.Namespace, section: str) -> tuple[Path | None, list[str]]:
    """``--jobs`` and ``--pretrained`` (default: OUT/../e1 when it holds an E1 summary) as
    config overrides of ``section``."""
    extra = [] if a.jobs is None else [f"{section}.jobs={a.jobs}"]
    pretrained = a.pretrained
    if pretrained is None and (a.out.parent / "e1" / "summary.json").is_file():
        pretrained = a.out.parent / "e1"
    if pretrained is not None:
        extra.append(f"{section}.pretrained_from={json.dumps(str(pretrained))}")
    return pretrained, extra


def _cmd_e2(a: argparse.Namespace) -> int:
    from spektron.experiments.e2.run import run_e2

    pretrained, extra = _pretrained_overrides(a, "e2")
    cfg = _experiment_config(a, extra)
    print(f"spektron e2: preset {cfg.preset}, out {a.out}, pretrained from {pretrained}")
    res = run_e2(cfg, a.out, progress=not a.quiet, announce=_announce("E2"))
    if res:
        _print_e2(res)
    return 0


def _print_e3(res: dict) -> None:
    print(f"\nE3 ({res['data_label']}), preset {res['preset']}: models per group {res['n_models']}")
    for r in res["statistics"]:
        if r["scope"] != "all":
            continue  # per-layer rows are in the table
        ci = f"[{r['ci_lo']:.3g}, {r['ci_hi']:.3g}]"
        print(
            f"  {r['group']} vs {r['reference']}: {r['statistic']} of {r['feature']} "
            f"{r['estimate']:.3g} {ci}, p {r['p_value']:.3g} (Holm {r['p_holm']:.3g})"
            + ("" if r["conclusive"] else ", inconclusive by design")
        )
    print(f"  {res['conclusions_note']}")
    print(f"E3 wall time {res['wall_time_s'] / 60:.1f} min; table: {res['report']['table']}")


def _cmd_e3(a: argparse.Namespace) -> int:
    from spektron.experiments.e3.run import run_e3

    extra = [] if a.jobs is None else [f"e3.jobs={a.jobs}"]
    trained = a.trained_from
    if trained is None and not a.checkpoint and (a.out.parent / "e1" / "summary.json").is_file():
        trained = a.out.parent / "e1"
    if trained is not None:
        extra.append(f"e3.trained_from={json.dumps(str(trained))}")
    cfg = _experiment_config(a, extra)
    print(f"spektron e3: preset {cfg.preset}, out {a.out}, models from {a.checkpoint or trained}")
    res = run_e3(
        cfg, a.out, progress=not a.quiet, announce=_announce("E3"), checkpoints=a.checkpoint
    )
    if res:
        _print_e3(res)
    return 0


def _print_e4(res: dict) -> None:
    print(f"\nE4 ({res['data_label']}), preset {res['preset']}: test RMSEP")
    for key, pair in res["pairs"].items():
        c = pair["classical"]
        ds = c["dataset"]
        print(f"  {key} (y = {ds['property']}, {ds['unit']}; n_test {ds['n_test']}):")
        for name, m in c["methods"].items():
            r = m["metrics"]["rmsep"]
            print(
                f"    {name:22s} {r['value']:.4g} [{r['lo']:.3g}, {r['hi']:.3g}]  "
                f"PLS comp. {m['pls_components']}"
            )
        for arm in (pair.get("deep") or {}).get("arms", []):
            cells = "  ".join(
                f"{v} {e['rmsep_mean']:.4g}±{e['rmsep_sd']:.2g}" for v, e in arm["variants"].items()
            )
            print(
                f"    {arm['head']:8s} {arm['backbone']:11s} {arm['init']:10s} "
                f"{arm['input_mode']:10s} {cells}"
            )
    print(f"E4 wall time {res['runtime_s'] / 60:.1f} min; table: {res['report']['table']}")


def _cmd_e4(a: argparse.Namespace) -> int:
    from spektron.experiments.e4.run import run_e4

    pretrained, extra = _pretrained_overrides(a, "e4")
    cfg = _experiment_config(a, extra)
    print(f"spektron e4: preset {cfg.preset}, out {a.out}, pretrained from {pretrained}")
    res = run_e4(cfg, a.out, progress=not a.quiet, announce=_announce("E4"))
    if res:
        _print_e4(res)
    return 0


def _cmd_pretrain(a: argparse.Namespace) -> int:
    from spektron.experiments.pretrain import run_pretrain

    cfg = _experiment_config(a)
    print(f"spektron pretrain: {a.backbone}, preset {cfg.preset}, out {a.out}")
    res = run_pretrain(
        cfg, a.out, a.backbone, a.lr, progress=not a.quiet, announce=_announce("pretrain")
    )
    if res:
        t = res["test_masked_mse"]
        print(
            f"best validation masked MSE {res['best_val_masked_mse']:.4g}; test masked MSE "
            f"{t['mean']:.4g} [{t['lo']:.4g}, {t['hi']:.4g}] (SIMULATED data)"
        )
        print(f"checkpoint: {res['checkpoint']}")
    return 0


def _cmd_config_show(a: argparse.Namespace) -> int:
    from spektron.config import flat_config, preset_config, to_dict

    cfg = preset_config(a.preset, a.overrides)
    if a.json:
        print(json.dumps(to_dict(cfg), indent=2))
        return 0
    print(f"# preset {cfg.preset}; set any key with --set KEY=VALUE (a JSON value or a string)")
    for key, value in flat_config(cfg).items():
        print(f"{key} = {json.dumps(value)}")
    return 0


def _cmd_report(a: argparse.Namespace) -> int:
    from spektron.experiments.report import build_report

    for name, res in build_report(a.out).items():
        print(f"{name}: {res['table']}, " + ", ".join(res["figures"]))
    return 0


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _cmd_export(a: argparse.Namespace) -> int:
    from spektron.experiments.export import PROVENANCE, export_run

    rec = export_run(a.run, a.to, force=a.force, check=a.check)
    pt, other = rec["left_out"]["checkpoints"], rec["left_out"]["other"]
    print(
        f"exported {', '.join(rec['source']['experiments'])} of {a.run} to {a.to}: "
        f"{len(rec['files'])} files, {_mb(rec['total_bytes'])}; left out {pt['files']} "
        f"checkpoints ({_mb(pt['bytes'])}) and {other['files']} other files ({_mb(other['bytes'])})"
    )
    if rec["check"]:
        counts = {
            kind: f"{len(c['identical'])} of {len(c['identical']) + len(c['different'])}"
            for kind, c in rec["check"].items()
        }
        print(
            "check (`spektron report` on the export), byte for byte the same: tables "
            f"{counts['tables']}, figures {counts['figures']}"
        )
    print(f"provenance: {a.to / PROVENANCE}; rebuild with: spektron report --out {a.to}")
    return 0


def _cmd_run_all(a: argparse.Namespace) -> int:
    from spektron.config import to_dict
    from spektron.experiments.run_all import check_stages, run_all

    cfg = _experiment_config(a)
    stages = check_stages([s.strip() for s in a.stages.split(",") if s.strip()], a.out)
    print(f"spektron run-all: preset {cfg.preset}, stages {', '.join(stages)}, out {a.out}")
    print("config: " + json.dumps(to_dict(cfg)))
    res = run_all(cfg, a.out, progress=not a.quiet, announce=_announce("E1"), stages=stages)
    d = res.get("data")
    if d:
        print(
            f"\ndataset ({d['source']}, SIMULATED): {d['n_records']} molecules, "
            f"splits {d['splits']}, centrosymmetric {d['centrosymmetric']['yes']}"
        )
    if d and "generation" in d:
        g = d["generation"]
        print(
            f"generation: {g['n_ok']} ok, {g['n_failed']} failed {g['failures_by_reason']}, "
            f"{g['wall_s']:.0f} s wall, {1000 * g['cpu_s_per_molecule']:.0f} ms CPU/molecule"
        )
    if d:
        print("figures: " + ", ".join(d["figures"]))
        print(f"summary: {a.out / 'data' / 'data_summary.json'}")
    if res.get("e1"):
        _print_e1(res["e1"], a.out / "e1")
    if res.get("e2"):
        _print_e2(res["e2"])
    if res.get("e3"):
        _print_e3(res["e3"])
    if res.get("e4"):
        _print_e4(res["e4"])
    print("\nwall time, estimated before the start vs measured:")
    print(res["timing"]["comparison"])
    return 0


def _cmd_merge(a: argparse.Namespace) -> int:
    from spektron.data.store import merge_stores

    merge_stores(a.inputs, a.out, allow_mixed=a.allow_mixed)
    print(f"wrote {a.out}")
    return 0


def _cmd_bench_backbones(a: argparse.Namespace) -> int:
    from spektron.experiments.bench import bench_backbones, format_table
    from spektron.utils import write_json_atomic

    names = [n.strip() for n in a.backbones.split(",")] if a.backbones else None
    rep = bench_backbones(
        names,
        batch=a.batch,
        length=a.length,
        d_model=a.d_model,
        budget=a.budget,
        device=a.device,
        repeats=a.repeats,
        threads=a.threads,
    )
    print(format_table(rep))
    write_json_atomic(a.out, rep)
    print(f"wrote {a.out}")
    return 0


def _int_list(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated integers, got {text!r}") from None


def _cmd_bench_modes(a: argparse.Namespace) -> int:
    from spektron.experiments.bench import bench_dlinoss_modes, format_modes_table
    from spektron.utils import write_json_atomic

    rep = bench_dlinoss_modes(
        _int_list(a.lengths, "--lengths"),
        tuple(m.strip() for m in a.modes.split(",") if m.strip()),
        batch=a.batch,
        d_model=a.d_model,
        device=a.device,
        repeats=a.repeats,
        recurrent_repeats=a.recurrent_repeats,
        recurrent_max_len=a.recurrent_max_len,
        threads=a.threads,
    )
    print(format_modes_table(rep))
    write_json_atomic(a.out, rep)
    print(f"wrote {a.out}")
    return 0


COMMANDS = {
    ("bench", "backbones"): _cmd_bench_backbones,
    ("bench", "dlinoss-modes"): _cmd_bench_modes,
    ("config", "show"): _cmd_config_show,
    ("data", "merge"): _cmd_merge,
    ("data", "simulate"): _cmd_simulate,
    ("data", "info"): _cmd_info,
    ("data", "validate"): _cmd_validate,
    ("data", "convert-qm9s"): _cmd_convert,
    ("data", "nir"): _cmd_nir,
    ("e1", None): _cmd_e1,
    ("e2", None): _cmd_e2,
    ("e3", None): _cmd_e3,
    ("e4", None): _cmd_e4,
    ("export", None): _cmd_export,
    ("predict", None): cmd_predict,
    ("pretrain", None): _cmd_pretrain,
    ("report", None): _cmd_report,
    ("run-all", None): _cmd_run_all,
}


# Commands whose --out is a file (the others write into a folder); `report` reads its --out.
FILE_OUTS = {
    ("data", "simulate"),
    ("data", "merge"),
    ("data", "convert-qm9s"),
    ("data", "validate"),
    ("bench", "backbones"),
    ("bench", "dlinoss-modes"),
}
READ_OUTS = {("report", None)}
# Commands writing a store: an existing one is refused without --force.
STORE_OUTS = {("data", "simulate"), ("data", "merge"), ("data", "convert-qm9s")}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(-1 if args.quiet else args.verbose)
    sub_cmd = (
        getattr(args, "data_cmd", None)
        or getattr(args, "bench_cmd", None)
        or getattr(args, "config_cmd", None)
    )
    key = (args.cmd, sub_cmd)
    handler = COMMANDS[key]
    try:
        tune_cpu_process()
        # An --out that cannot be written is refused before any work.
        if getattr(args, "out", None) is not None and key not in READ_OUTS:
            check_writable(args.out, "file" if key in FILE_OUTS else "folder")
            if key in STORE_OUTS and args.out.exists() and not args.force:
                raise ConfigError(
                    f"{args.out} exists: pass --force to overwrite it, or choose another --out"
                )
        return handler(args)
    except SpektronError as e:
        print(f"spektron: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file system failure the checks above could not foresee
        logging.getLogger("spektron").debug("file system error", exc_info=True)
        where = f": {e.filename}" if e.filename else ""
        print(f"spektron: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("spektron: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
