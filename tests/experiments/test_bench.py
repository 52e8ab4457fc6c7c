"""`spektron bench backbones` on a tiny setting: report structure and measured values."""

from __future__ import annotations

import json

import pytest

from spektron.cli import main
from spektron.errors import ConfigError
from spektron.experiments.bench import bench_backbones, resolve_device


def test_bench_cli_writes_measurements(tmp_path, capsys):
    out = tmp_path / "b.json"
    code = main(
        [
            "-q",
            "bench",
            "backbones",
            "--backbones",
            "cnn,s4d_real",
            "--batch",
            "2",
            "--length",
            "64",
            "--budget",
            "200000",
            "--repeats",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    rep = json.loads(out.read_text())
    row, other = rep["results"]
    assert row["backbone"] == "cnn" and abs(row["params"] - 200_000) <= 10_000
    assert row["forward_samples_per_s"] > 0 and row["forward_backward_samples_per_s"] > 0
    assert row["flops_per_sample"]["total"] >= row["flops_per_sample"]["matmul"] > 0
    assert row["forward_backward_vs_cnn"] == row["interleaved_vs_cnn"] == 1.0  # CNN vs itself
    alt = other["interleaved_forward_backward_samples_per_s"]
    assert (
        alt > 0
        and other["interleaved_vs_cnn"] == alt / row["interleaved_forward_backward_samples_per_s"]
    )
    assert "s4d_real" in capsys.readouterr().out


def test_bench_rejects_bad_options():
    with pytest.raises(ConfigError, match="unknown backbone"):
        bench_backbones(["lstm"])
    with pytest.raises(ConfigError):
        bench_backbones(["cnn"], batch=0)
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")


def test_dlinoss_modes_bench_cli(tmp_path, capsys):
    out = tmp_path / "m.json"
    code = main(
        [
            "-q",
            "bench",
            "dlinoss-modes",
            "--lengths",
            "32,48",
            "--batch",
            "2",
            "--repeats",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    rep = json.loads(out.read_text())
    assert {(r["length"], r["mode"]) for r in rep["results"]} == {
        (L, m) for L in (32, 48) for m in ("recurrent", "scan", "fft", "chunk")
    }
    for r in rep["results"]:
        assert r["fwd_s_best"] > 0 and r["fwdbwd_s_best"] > 0
        if r["mode"] == "fft":
            assert r["fwd_ratio_vs_fft"] == 1.0
    assert "x fft" in capsys.readouterr().out
    assert main(["-q", "bench", "dlinoss-modes", "--modes", "turbo", "--out", str(out)]) == 2
