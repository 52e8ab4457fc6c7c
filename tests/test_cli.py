"""CLI: one-line errors with exit code 2 on bad input; info on a real store."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from spektron.cli import main
from spektron.data.store import StoreWriter
from tests.helpers import fake_record, run_cli


def test_info_on_store(tmp_path, capsys, small_grid):
    rng = np.random.default_rng(0)
    with StoreWriter(
        tmp_path / "s.h5", small_grid, attrs={"source": "test"}, fg_names=["a", "b"]
    ) as w:
        w.extend(fake_record(i, small_grid, rng) for i in range(12))
    code, out, _ = run_cli(capsys, "data", "info", str(tmp_path / "s.h5"))
    assert code == 0 and "records      12" in out and "64 points" in out


@pytest.mark.parametrize(
    "argv, pattern",
    [
        (["data", "info", "{tmp}/missing.h5"], "missing.h5: file does not exist"),
        (["data", "info", "{tmp}/junk.h5"], "junk.h5: not a readable HDF5"),
        (["data", "simulate", "--n", "5", "--out", "{tmp}/x.h5", "--shard", "3/2"], "--shard"),
        (
            [
                "data",
                "simulate",
                "--n",
                "5",
                "--out",
                "{tmp}/x.h5",
                "--set",
                "data.physics.fd_step=5",
            ],
            "fd_step",
        ),
        (
            ["run-all", "--preset", "smoke", "--out", "{tmp}/r", "--set", "data.n_molecules=-4"],
            "n_molecules",
        ),
        (["run-all", "--preset", "gigantic", "--out", "{tmp}/r"], "unknown preset"),
        (["data", "convert-qm9s", "--out", "{tmp}/q.h5"], "at least one of"),
        (["data", "simulate", "--smiles", "CCO,C1CC(,C", "--out", "{tmp}/x.h5"], "C1CC("),
        (["data", "simulate", "--smiles", "{tmp}/none.smi", "--out", "{tmp}/x.h5"], "none.smi"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, argv, pattern):
    (tmp_path / "junk.h5").write_bytes(b"garbage" * 50)
    code, _, err = run_cli(capsys, "-q", *[a.format(tmp=tmp_path) for a in argv])
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("spektron: error: ")
    assert pattern in err
    assert not (tmp_path / "x.h5").exists()


# Each command that writes an --out, with just enough arguments to parse.
WRITERS = {
    ("bench", "backbones"): ["bench", "backbones"],
    ("bench", "dlinoss-modes"): ["bench", "dlinoss-modes"],
    ("data", "merge"): ["data", "merge", "{tmp}/a.h5"],
    ("data", "simulate"): ["data", "simulate", "--n", "3"],
    ("data", "validate"): ["data", "validate"],
    ("data", "convert-qm9s"): ["data", "convert-qm9s", "--zip", "{tmp}/q.zip"],
    ("e1", None): ["e1", "--preset", "smoke"],
    ("e2", None): ["e2", "--preset", "smoke"],
    ("e3", None): ["e3", "--preset", "smoke"],
    ("e4", None): ["e4", "--preset", "smoke"],
    ("predict", None): ["predict", "--from", "ir", "--to", "raman", "--checkpoint", "c", "s.csv"],
    ("pretrain", None): ["pretrain", "--preset", "smoke"],
    ("run-all", None): ["run-all", "--preset", "smoke"],
}


def test_every_command_with_an_out_is_checked():
    # Every (sub)command whose parser has --out is in WRITERS, except report (reads its --out).
    import argparse

    from spektron.cli import READ_OUTS, build_parser

    found = set()

    def walk(p, key):
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            if any("--out" in a.option_strings for a in p._actions):
                found.add((key[0], key[1] if len(key) > 1 else None))
            return
        for name, sp in subs[0].choices.items():
            walk(sp, (*key, name))

    walk(build_parser(), ())
    assert found - READ_OUTS == set(WRITERS)


@pytest.mark.parametrize("key", sorted(WRITERS, key=str))
@pytest.mark.parametrize("where", ["under_a_file", "an_existing_file_or_folder", "proc"])
def test_unwritable_out_is_one_line_exit_2_before_any_work(tmp_path, capsys, key, where):
    from spektron.cli import FILE_OUTS

    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    is_file = key in FILE_OUTS
    out = {
        "under_a_file": blocker / "sub" / ("o.json" if is_file else "o"),
        "an_existing_file_or_folder": tmp_path if is_file else blocker,
        "proc": "/proc/spektron-test/o.json" if is_file else "/proc/spektron-test",
    }[where]
    argv = [a.format(tmp=tmp_path) for a in WRITERS[key]]
    code, _, err = run_cli(capsys, "-q", *argv, "--out", str(out))
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("spektron: error: --out ")
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # nothing written


def test_console_exit_code(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "spektron.cli", "data", "info", str(tmp_path / "nope.h5")],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2 and "nope.h5: file does not exist" in p.stderr


def test_convert_qm9s_wide_csvs_end_to_end(tmp_path, capsys):
    from tests.data.qm9s_fixtures import wide_csv_lines, write_analytic_csv, write_lines

    ir = write_analytic_csv(tmp_path / "ir_boraden.csv", range(5), "ir")
    ra = write_analytic_csv(tmp_path / "raman_boraden.csv", range(5), "raman")
    code, out, err = run_cli(
        capsys,
        "-q",
        "data",
        "convert-qm9s",
        "--ir-csv",
        str(ir),
        "--raman-csv",
        str(ra),
        "--out",
        str(tmp_path / "q.h5"),
    )
    assert code == 0, err
    code, out, _ = run_cli(capsys, "data", "info", str(tmp_path / "q.h5"))
    assert code == 0 and "records      5  (IR 5, Raman 5)" in out and "SIMULATED" not in out
    # a wide CSV with a broken header is refused with the file named, and nothing is written
    bad = write_lines(
        tmp_path / "bad.csv", wide_csv_lines([0], np.ones((1, 3)), grid=np.array([1.0, 2.0, 3.0]))
    )
    code, _, err = run_cli(
        capsys, "-q", "data", "convert-qm9s", "--ir-csv", str(bad), "--out", str(tmp_path / "b.h5")
    )
    assert code == 2 and "bad.csv" in err and err.count("\n") == 1
    assert not (tmp_path / "b.h5").exists()


@pytest.mark.slow
def test_run_all_smoke_end_to_end(tmp_path):
    """The main command on real (simulated) QM9 data at the smoke scale, as a user runs it."""
    out = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "-m", "spektron.cli", "-q", "run-all", "--preset", "smoke"]
        + ["--out", str(out), "--set", "data.grid.n_points=512"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "E1 will run" in proc.stdout and "quality gate" in proc.stdout
    assert (out / "data" / "data_summary.json").is_file()
    assert (out / "e1" / "summary.json").is_file() and (out / "e1" / "table.md").is_file()
    # E2 on the same run's E1 checkpoints, with the simulated centrosymmetric set outside QM9.
    assert "E2 will run" in proc.stdout and "beat retrieval" in proc.stdout
    e2 = json.loads((out / "e2" / "summary.json").read_text())
    assert e2["dataset"]["n_symmetric"]["external"] > 0
    assert any(m["init"] == "pretrained" for m in e2["models"].values())
    # E3 on the same run's E1 D-LinOSS models and one shuffled-order control (smoke).
    assert "E3 will run" in proc.stdout and "models per group" in proc.stdout
    e3 = json.loads((out / "e3" / "summary.json").read_text())
    assert e3["n_models"] == {"trained": 1, "init": 1, "shuffled": 1}
    # E4 on the real corn data, deep arms from the same run's E1 checkpoints.
    assert "E4 will run" in proc.stdout and "corn_m5_mp5" in proc.stdout
    e4 = json.loads((out / "e4" / "summary.json").read_text())
    arms = e4["pairs"]["corn_m5_mp5"]["deep"]["arms"]
    assert {a["head"] for a in arms} == {"probe", "finetune"}
    assert any(a["init"] == "pretrained" for a in arms)
    assert (out / "e4" / "table.md").is_file()
    # the wall time estimated before the start, and measured per stage at the end
    assert "RUN-ALL will run" in proc.stdout and "estimated wall time" in proc.stdout
    assert "measured/estimated" in proc.stdout
    timing = json.loads((out / "timing.json").read_text())
    # E2-E4 ran side by side (CPU, pools of 2): each measured, and the block they made
    m = timing["measured_s"]
    assert set(m) == {"data", "e1", "e2", "e3", "e4", "e2+e3+e4"}
    assert m["e2+e3+e4"] >= max(m["e2"], m["e3"], m["e4"])
    assert m["e2+e3+e4"] < m["e2"] + m["e3"] + m["e4"]  # they overlapped
    assert m["data"] + m["e1"] + m["e2+e3+e4"] <= timing["measured_total_s"]
    assert timing["estimate_side_by_side_s"] is not None
    assert "side by side" in proc.stdout


def test_log_level_flags_are_accepted_after_every_command():
    import argparse

    from spektron.cli import build_parser

    ap = build_parser()
    leaves = []

    def walk(p, key):
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            leaves.append((key, p))
            return
        for name, sp in subs[0].choices.items():
            walk(sp, (*key, name))

    walk(ap, ())
    assert len(leaves) > 10
    for key, p in leaves:
        flags = {s for a in p._actions for s in a.option_strings}
        assert {"-v", "-q", "--verbose", "--quiet"} <= flags, key
    a = ap.parse_args(["e1", "-q"])
    assert a.quiet and a.verbose == 0
    a = ap.parse_args(["-q", "data", "info", "x.h5", "-vv"])  # both kept
    assert a.verbose == 2 and a.quiet
    a = ap.parse_args(["e2"])
    assert a.verbose == 0 and not a.quiet


def test_a_warning_reaches_the_console_as_one_log_line():
    # The pool workers' set-up is the one checked: the main process calls setup_logging too.
    code = (
        "import warnings\n"
        "from spektron.experiments.runner import init_worker\n"
        "init_worker()\n"
        "warnings.warn('the largest candidate n_components=64 was best; consider larger k')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "WARNING" in lines[0] and "UserWarning: the largest candidate" in lines[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["data", "simulate", "--smiles", "CCO", "--out", "{out}"],
        ["data", "merge", "{out}", "--out", "{out}"],
        ["data", "convert-qm9s", "--zip", "{tmp}/q.zip", "--out", "{out}"],
    ],
)
def test_an_existing_store_is_not_overwritten_without_force(tmp_path, capsys, argv):
    out = tmp_path / "x.h5"
    out.write_bytes(b"an earlier store")
    before = out.stat().st_mtime_ns
    argv = [a.format(out=out, tmp=tmp_path) for a in argv]

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "exists" in err and "--force" in err
    assert out.read_bytes() == b"an earlier store" and out.stat().st_mtime_ns == before


def test_force_overwrites_an_existing_store(tmp_path, capsys):
    out = tmp_path / "x.h5"
    out.write_bytes(b"an earlier store")
    assert main(["-q", "data", "simulate", "--smiles", "CCO", "--out", str(out), "--force"]) == 0
    from spektron.data.store import open_store

    with open_store(out) as st:
        assert len(st) == 1


def test_config_show_prints_every_key_with_overrides_applied(capsys):
    from spektron.config import flat_config, preset_config

    assert main(["config", "show", "--preset", "smoke", "--set", "e1.train.lr=0.02"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if not ln.startswith("#")]
    shown = dict(ln.split(" = ", 1) for ln in lines)
    assert list(shown) == list(flat_config(preset_config("smoke")))
    assert json.loads(shown["e1.train.lr"]) == 0.02 and json.loads(shown["preset"]) == "smoke"
    assert main(["config", "show", "--json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["e1"]["n_seeds"] == 3
    assert main(["config", "show", "--set", "train.lr=1"]) == 2
    assert "did you mean e1.train.lr" in capsys.readouterr().err


def test_bad_allocator_setting_is_one_line_exit_2(capsys, monkeypatch):
    monkeypatch.setenv("SPEKTRON_KEEP_FREED_MEMORY", "yes")
    code, _, err = run_cli(capsys, "-q", "config", "show", "--preset", "smoke")
    assert code == 2
    assert err.strip() == "spektron: error: SPEKTRON_KEEP_FREED_MEMORY must be 0 or 1, got 'yes'"
