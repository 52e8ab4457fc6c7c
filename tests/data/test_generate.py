"""Dataset generation: sharding + merge, resume after a real kill, failures counted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from spektron.config import DatasetConfig, GridConfig, PhysicsConfig
from spektron.data.generate import generate_dataset, parse_shard
from spektron.data.store import open_store
from spektron.errors import ConfigError

SMILES = ["O", "C", "CC", "C=C", "C#C", "CO", "CCO", "C=O", "N", "CN", "CC#N", "OC=O"]


def cfg_for(smiles_file, n_points=256) -> DatasetConfig:
    # mmff and no QM9 lookup: these tests are about the SMILES embedding path and the runner
    return DatasetConfig(
        source="smiles",
        smiles=str(smiles_file),
        grid=GridConfig(n_points=n_points),
        physics=PhysicsConfig(),
        qm9_lookup=False,
    )


@pytest.fixture
def smiles_file(tmp_path):
    p = tmp_path / "mols.smi"
    p.write_text("# test molecules\n" + "\n".join(SMILES) + "\n")
    return p


def test_shards_merge_to_the_full_run(tmp_path, smiles_file):
    cfg = cfg_for(smiles_file)
    full = generate_dataset(cfg, tmp_path / "full.h5", workers=1, chunk_size=5, progress=False)
    assert full.n_ok + full.n_failed == len(SMILES) and full.n_ok >= len(SMILES) - 1
    for i in range(3):
        generate_dataset(cfg, tmp_path / f"s{i}.h5", workers=1, shard=(i, 3), progress=False)
    from spektron.data.store import merge_stores

    merge_stores([tmp_path / f"s{i}.h5" for i in range(3)], tmp_path / "merged.h5")
    with open_store(tmp_path / "full.h5") as a, open_store(tmp_path / "merged.h5") as b:
        ia, ib = a.column("source_index"), b.column("source_index")
        assert sorted(ia) == sorted(ib)
        order = np.argsort(ib)[np.argsort(np.argsort(ia))]
        np.testing.assert_array_equal(
            a.spectra("ir", slice(None)), b.spectra("ir", slice(None))[order]
        )
        np.testing.assert_array_equal(a.column("split"), b.column("split")[order])
        assert a.attrs["simulated"] and "SIMULATED" in a.attrs["label"]


def test_parallel_workers_equal_serial(tmp_path, smiles_file):
    cfg = cfg_for(smiles_file)
    generate_dataset(cfg, tmp_path / "w1.h5", workers=1, chunk_size=4, progress=False)
    generate_dataset(cfg, tmp_path / "w2.h5", workers=2, chunk_size=4, progress=False)
    with open_store(tmp_path / "w1.h5") as a, open_store(tmp_path / "w2.h5") as b:
        np.testing.assert_array_equal(a.column("source_index"), b.column("source_index"))
        np.testing.assert_allclose(
            a.spectra("raman", slice(None)), b.spectra("raman", slice(None)), rtol=1e-5, atol=1e-6
        )


def test_failures_are_counted_with_reasons(tmp_path):
    p = tmp_path / "mix.smi"
    p.write_text("CCO\n[Na+].[Cl-]\nC\n")  # a salt: no MMFF-able neutral molecule
    rep = generate_dataset(cfg_for(p), tmp_path / "mix.h5", workers=1, progress=False)
    assert rep.n_ok == 2 and rep.n_failed == 1
    assert rep.failures[0]["smiles"] == "[Na+].[Cl-]" and rep.failures[0]["reason"]
    assert sum(rep.failures_by_reason.values()) == 1


def test_parse_shard():
    assert parse_shard("2/5") == (2, 5)
    for bad in ("5/5", "1", "a/b", "-1/3"):
        with pytest.raises(ConfigError):
            parse_shard(bad)


def test_killed_run_resumes_and_finishes(tmp_path):
    """Kill a real `spektron data simulate` process mid-run, rerun it, check it resumes."""
    p = tmp_path / "many.smi"
    p.write_text("\n".join(SMILES * 4) + "\n")
    out = tmp_path / "r.h5"
    cmd = [
        sys.executable,
        "-m",
        "spektron.cli",
        "-q",
        "data",
        "simulate",
        "--smiles",
        str(p),
        "--out",
        str(out),
        "--workers",
        "1",
        "--chunk-size",
        "2",
        "--set",
        "data.grid.n_points=128",
        "--set",
        "data.qm9_lookup=false",  # the SMILES embedding path (no QM9 parse in a subprocess)
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    parts = []
    while time.time() < deadline:
        parts = [q for d in tmp_path.glob(".r.h5.parts-*") for q in d.glob("chunk_*.json")]
        if len(parts) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(parts) >= 3, "no chunk finished before the kill"
    assert not out.exists()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    rep = json.loads((tmp_path / "r.h5.report.json").read_text())
    assert rep["n_resumed_chunks"] >= 3
    assert rep["n_ok"] + rep["n_failed"] == len(SMILES) * 4
    with open_store(out) as s:
        assert s.n == rep["n_ok"]
    assert not list(tmp_path.glob(".r.h5.parts-*"))


def test_dask_local_cluster_equals_the_process_pool_and_resumes(tmp_path, smiles_file):
    cfg = cfg_for(smiles_file)
    generate_dataset(cfg, tmp_path / "pool.h5", workers=2, chunk_size=4, progress=False)
    rep = generate_dataset(
        cfg, tmp_path / "dask.h5", workers=2, chunk_size=4, progress=False, scheduler="dask"
    )
    assert rep.n_ok + rep.n_failed == len(SMILES)
    with open_store(tmp_path / "pool.h5") as a, open_store(tmp_path / "dask.h5") as b:
        np.testing.assert_array_equal(a.column("source_index"), b.column("source_index"))
        np.testing.assert_array_equal(a.column("split"), b.column("split"))
        np.testing.assert_allclose(
            a.spectra("ir", slice(None)), b.spectra("ir", slice(None)), rtol=1e-5, atol=1e-6
        )
    # a kept parts folder with finished chunks is resumed through Dask too
    out = tmp_path / "keep.h5"
    from spektron.data.generate import dataset_attrs, dataset_inputs, simulate_to_store

    inputs, _, _ = dataset_inputs(cfg)
    kw = dict(workers=2, chunk_size=4, attrs=dataset_attrs(cfg), progress=False)
    simulate_to_store(inputs[:8], out, cfg.physics, cfg.grid, keep_parts=True, **kw)
    parts = next(tmp_path.glob(".keep.h5.parts-*"))
    (parts / "chunk_000001.json").unlink()  # one chunk "unfinished"
    out.unlink()
    again = simulate_to_store(inputs[:8], out, cfg.physics, cfg.grid, scheduler="dask", **kw)
    assert again.n_resumed_chunks == 1 and again.n_ok + again.n_failed == 8


def test_unreachable_dask_scheduler_is_a_config_error(tmp_path, smiles_file, monkeypatch):
    monkeypatch.setattr("spektron.data.generate.DASK_CONNECT_TIMEOUT_S", 2)
    with pytest.raises(ConfigError, match="Dask scheduler"):
        generate_dataset(
            cfg_for(smiles_file),
            tmp_path / "x.h5",
            workers=1,
            progress=False,
            scheduler="tcp://127.0.0.1:9",
        )


def test_every_molecule_failing_leaves_a_report_and_no_hidden_folder(tmp_path, capsys):
    from spektron.cli import main

    p = tmp_path / "bad.smi"
    p.write_text("C[Se]C\n[Na+].[Cl-]\n")
    out = tmp_path / "bad.h5"
    assert main(["-q", "data", "simulate", "--smiles", str(p), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "every molecule failed (2 of 2), no store written" in err
    assert "unsupported element Se" in err and "several fragments" in err
    report = out.with_name(out.name + ".report.json")
    assert str(report) in err
    rep = json.loads(report.read_text())
    assert rep["status"] == "failed" and rep["n_failed"] == 2 and rep["n_ok"] == 0
    assert not out.exists()
    assert [q.name for q in tmp_path.iterdir() if q.name.startswith(".")] == []


def test_charged_species_are_noted_in_the_report_and_on_the_console(tmp_path, capsys):
    from spektron.cli import main

    p = tmp_path / "ions.smi"
    p.write_text("CCO\n[NH4+]\n")
    out = tmp_path / "ions.h5"
    assert main(["data", "simulate", "--smiles", str(p), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (
        "charged species: 1 simulated as isolated ions, without counter-ion or solvent ([NH4+])"
        in printed
    )
    rep = json.loads(out.with_name(out.name + ".report.json").read_text())
    assert rep["status"] == "complete"
    assert [(n["smiles"], n["note"]) for n in rep["notes"]] == [
        ("[NH4+]", "ion, net charge +1: simulated isolated (no counter-ion, no solvent)")
    ]
    with open_store(out) as st:
        models = list(st.column("charge_model"))
    assert sum("ion, net charge +1" in str(m) for m in models) == 1


def test_the_qm9_rejects_line_explains_every_reason():
    from spektron.data.molecules import REJECT_MEANING, REJECT_REASONS, qm9_rejects_line

    assert set(REJECT_MEANING) == set(REJECT_REASONS)
    line = qm9_rejects_line({"smiles_mismatch": 3054, "negative_freqs": 2})
    assert line.startswith("QM9 rows left out: 3056 rows of the QM9 files fail the parser's checks")
    assert (
        "3054 a SMILES that is charged or not of the geometry's formula (smiles_mismatch)" in line
    )
    assert "2 an imaginary (negative) frequency (negative_freqs)" in line
