"""``spektron predict`` on users' files with a tiny cross-spectral checkpoint: outputs match a
direct model call, coverage handling, Raman intensity physics, typed errors that leave no
output behind."""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from spektron.chemistry.spectra import make_grid, normalize_spectra
from spektron.data.spectrum_files import UserSpectrum
from spektron.errors import CheckpointError, ConfigError, DataError
from spektron.experiments.predict import (
    CoverageWarning,
    activity_to_intensity,
    add_predict_parser,
    cmd_predict,
    resample_to_grid,
)
from spektron.models.embedding import EmbeddingConfig
from spektron.models.spektron import Spektron, SpektronConfig

GRID = {"n_points": 256, "lo": 500.0, "hi": 4000.0}
LABEL = "SIMULATED spectra (test)"
CONTRACT = {
    "task": "cross_spectral",
    "source_kind": "ir",
    "target_kind": "raman",
    "normalization": "max",
    "grid": GRID,
    "data_label": LABEL,
}


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    """The same tiny model saved under a valid IR→Raman contract and a wrong task."""
    torch.manual_seed(0)
    cfg = SpektronConfig(
        d_model=16,
        embedding=EmbeddingConfig(wavelets=("db2",), levels=(1,), mexh_scales=(), stride=8),
        backbone="cnn",
        backbone_config={"n_layers": 1, "hidden": 16, "kernel_size": 3},
        head="cross_spectral",
        head_config={"zero_init": False},  # a zero-initialised head would predict only zeros
    )
    model = Spektron(cfg)
    root = tmp_path_factory.mktemp("ckpt")
    return {
        "ok": model.save_checkpoint(root / "ir2raman.pt", extra=CONTRACT),
        "task": model.save_checkpoint(root / "recon.pt", extra={**CONTRACT, "task": "msrp"}),
        "smoke": model.save_checkpoint(
            root / "smoke.pt", extra={**CONTRACT, "preset": "smoke", "train_steps": 3}
        ),
    }


def _bands(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * ((x - 1600) / 30) ** 2) + 0.5 * np.exp(-0.5 * ((x - 2900) / 40) ** 2)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("inputs")
    x = np.arange(4100.0, 399.0, -4.0)  # descending, covers the whole grid
    two = d / "sample.csv"
    two.write_text(
        "wavenumber,intensity\n"
        + "\n".join(f"{a:g},{b:.6g}" for a, b in zip(x, _bands(x), strict=True))
    )
    xw = np.arange(450.0, 4050.0, 10.0)
    wide = d / "wide.csv"
    wide.write_text(
        "id,"
        + ",".join(f"{v:g}" for v in xw)
        + "\n"
        + "\n".join(
            n + "," + ",".join(f"{k * v:.6g}" for v in _bands(xw))
            for n, k in (("s1", 1), ("s2", 3))
        )
    )
    half = d / "half.csv"  # covers 500–2000 of the 500–4000 grid
    xh = np.arange(400.0, 2001.0, 5.0)
    half.write_text("\n".join(f"{a:g} {b:.6g}" for a, b in zip(xh, _bands(xh), strict=True)))
    nan = d / "nan.csv"
    nan.write_text(
        "x,y\n" + "\n".join(f"{500 + 100 * i},{'nan' if i == 4 else i}" for i in range(12))
    )
    tiny = d / "tiny.csv"  # 3900–4100: 3 % of the grid
    tiny.write_text("\n".join(f"{3900 + 10 * i},{i}" for i in range(21)))
    bad_jdx = d / "bad.jdx"
    bad_jdx.write_text(
        "##TITLE=x\n##XUNITS=1/CM\n##FIRSTX=500\n##LASTX=610\n##NPOINTS=12\n"
        "##XYDATA=(X++(Y..Y))\n500 1 2 ?? 4\n##END=\n"
    )
    raman_jdx = d / "raman.jdx"
    raman_jdx.write_text(
        "##TITLE=r\n##DATA TYPE=RAMAN SPECTRUM\n##XUNITS=1/CM\n##XYDATA=(XY..XY)\n"
        + "\n".join(f"{500 + 300 * i} {i}" for i in range(12))
        + "\n##END=\n"
    )
    return {p.stem: p for p in (two, wide, half, nan, tiny, bad_jdx, raman_jdx)}


def _run(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="spektron")
    add_predict_parser(ap.add_subparsers(dest="cmd", required=True))
    return cmd_predict(ap.parse_args(["predict", *argv]))


def _read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], np.array(rows[1:], dtype=float)


def test_end_to_end_csv_inputs_match_a_direct_model_call(ckpts, inputs, tmp_path, capsys):
    out = tmp_path / "pred"
    argv = ["--from", "ir", "--to", "raman", "--checkpoint", str(ckpts["ok"]), "--out", str(out)]
    argv += ["--laser-nm", "532", "--temperature", "298.15"]
    assert _run([*argv, str(inputs["sample"]), str(inputs["wide"])]) == 0

    header, table = _read_csv(out / "predictions.csv")
    grid = make_grid(**GRID)
    assert header == ["wavenumber_cm-1", "sample:intensity", "wide:s1", "wide:s2"]
    assert table.shape == (256, 4)
    np.testing.assert_allclose(table[:, 0], grid, atol=1e-6)
    # The same pipeline by hand: interpolate, normalise (max), model, rescale to max |y| = 1.
    model = Spektron.from_checkpoint(ckpts["ok"])
    xs = np.arange(4100.0, 399.0, -4.0)[::-1]
    x = normalize_spectra(np.interp(grid, xs, _bands(xs)), "max")
    with torch.no_grad():
        ref = model(torch.tensor(x[None], dtype=torch.float32), torch.tensor(grid).float())
    ref = normalize_spectra(ref["pred"].double().numpy()[0], "max")
    np.testing.assert_allclose(table[:, 1], ref, atol=1e-6)
    # s2 = 3 × s1: identical after normalisation.
    np.testing.assert_allclose(table[:, 2], table[:, 3], atol=1e-6)
    assert np.allclose(np.abs(table[:, 1:]).max(axis=0), 1.0)

    ih, it = _read_csv(out / "predictions_intensity.csv")
    assert ih == header and it.shape == (256, 4)
    expect = activity_to_intensity(grid, table[:, 1], 532.0, 298.15)
    np.testing.assert_allclose(it[:, 1], expect, atol=1e-6)

    rep = json.loads((out / "predict.json").read_text())
    assert rep["data_label"] == LABEL and (rep["source"], rep["target"]) == ("ir", "raman")
    assert rep["laser_nm"] == 532.0 and rep["temperature_k"] == 298.15
    assert [s["column"] for s in rep["spectra"]] == header[1:]
    assert rep["spectra"][0]["coverage"]["fraction"] == 1.0
    assert any("descending" in n for n in rep["spectra"][0]["notes"])
    for s in rep["spectra"]:
        png = out / s["figure"]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert 0.0 <= s["negative_fraction"] <= 1.0
    assert sorted(p.name for p in (out / "figures").iterdir()) == [
        "sample_intensity.png",
        "wide_s1.png",
        "wide_s2.png",
    ]
    assert f"predictions: {out / 'predictions.csv'}" in capsys.readouterr().out


def test_partial_coverage_is_zero_filled_with_a_warning(inputs, tmp_path):
    grid = make_grid(**GRID)
    xs = np.arange(400.0, 2001.0, 5.0)
    user = UserSpectrum("lin", xs, 2.0 * xs + 1.0, None, inputs["half"])
    with pytest.warns(
        CoverageWarning, match=r"'lin' covers 43\.0 % .* set to 0 in 2009\.8–4000\.0"
    ):
        v, cov = resample_to_grid(user, grid)
    inside = grid <= 2000.0
    np.testing.assert_allclose(v[inside], 2.0 * grid[inside] + 1.0)  # linear data: exact
    assert np.all(v[~inside] == 0.0)
    assert cov.fraction == pytest.approx(inside.mean())
    assert cov.uncovered == [(float(grid[~inside][0]), 4000.0)]


def test_coarse_input_and_gaps_are_noted():
    grid = make_grid(**GRID)  # 13.7 cm⁻¹ spacing
    xs = np.concatenate([np.arange(500.0, 2000.0, 100.0), np.arange(3000.0, 4001.0, 100.0)])
    user = UserSpectrum("coarse", xs, np.ones_like(xs), None, Path("c.csv"))
    _, cov = resample_to_grid(user, grid)
    assert any("coarser than the grid" in n for n in cov.notes)
    assert any("gap in the input at 1900.0–3000.0" in n for n in cov.notes)


def test_activity_to_intensity_matches_a_hand_computation():
    # ν₀ = 1e7 / 532 = 18796.99 cm⁻¹, T = 298.15 K, hc/k = 1.438776877 cm K.
    # ν = 1000: (17796.99)⁴ / 1000 / (1 − e^(−4.8257)) = 1.01131e14
    # ν = 3000: (15796.99)⁴ / 3000 / (1 − e^(−14.477)) = 2.07576e13  → ratio 4.87200
    shift = np.array([1000.0, 3000.0, 2000.0])
    out = activity_to_intensity(shift, np.array([1.0, 1.0, -0.5]), 532.0, 298.15)
    assert out[0] == pytest.approx(1.0)  # max-normalised
    assert out[0] / out[1] == pytest.approx(4.872001, rel=1e-6)
    f = [(1e7 / 532 - v) ** 4 / v / (1 - math.exp(-1.438776877 * v / 298.15)) for v in shift[:2]]
    assert out[1] == pytest.approx(f[1] / f[0], rel=1e-12)
    assert out[2] == 0.0  # negative activity is clipped before the conversion


@pytest.mark.parametrize(
    ("argv", "inputs_used", "error", "match"),
    [
        ([], ["sample", "missing"], DataError, r"missing\.csv: no such file"),
        ([], ["sample", "bad"], DataError, r"bad\.jdx: block 'x': cannot parse"),
        ([], ["sample", "nan"], DataError, r"nan\.csv: .*non-finite value nan at line 6"),
        ([], ["tiny"], DataError, r"tiny\.csv: spectrum 'col2' covers 3\.1 % of the model grid"),
        ([], ["raman"], DataError, r"raman\.jdx: spectrum 'r' is marked RAMAN .* --from ir"),
        (["--laser-nm", "532"], ["sample"], ConfigError, r"--laser-nm and --temperature go"),
        (["--temperature", "300"], ["sample"], ConfigError, r"--temperature was given without"),
        (
            ["--laser-nm", "3000", "--temperature", "300"],
            ["sample"],
            ConfigError,
            r"3000 nm laser \(ν₀ = 3333 cm⁻¹\) cannot produce Stokes shifts up to 4000",
        ),
    ],
)
def test_errors_leave_no_output(ckpts, inputs, tmp_path, argv, inputs_used, error, match):
    out = tmp_path / "pred"
    files = [str(inputs.get(n, tmp_path / f"{n}.csv")) for n in inputs_used]
    base = ["--from", "ir", "--to", "raman", "--checkpoint", str(ckpts["ok"]), "--out", str(out)]
    with pytest.raises(error, match=match):
        _run([*base, *argv, *files])
    assert not out.exists()


@pytest.mark.parametrize(
    ("ckpt", "direction", "match"),
    [
        ("task", ["--from", "ir", "--to", "raman"], r"recon\.pt: task 'msrp'"),
        ("ok", ["--from", "raman", "--to", "ir"], r"predicts ir → raman, but --from raman --to ir"),
    ],
)
def test_wrong_checkpoint_is_refused(ckpts, inputs, tmp_path, ckpt, direction, match):
    out = tmp_path / "pred"
    argv = [*direction, "--checkpoint", str(ckpts[ckpt]), "--out", str(out), "--no-plot"]
    with pytest.raises(CheckpointError, match=match):
        _run([*argv, str(inputs["sample"])])
    assert not out.exists()


@pytest.mark.parametrize(
    ("x", "unit", "span"),
    [
        (np.linspace(2.5, 20.0, 200), "µm", "500–4000 cm⁻¹"),
        (np.linspace(4001.0, 20000.0, 300), "nm", "500–2499 cm⁻¹"),
    ],
)
def test_a_wavelength_axis_is_refused_with_a_units_hint(x, unit, span):
    user = UserSpectrum("w", x, np.ones_like(x), None, Path("w.csv"))
    with pytest.raises(DataError) as e:
        resample_to_grid(user, make_grid(**GRID))
    msg = str(e.value)
    assert "covers 0.0 % of the model grid" in msg
    assert (
        f"look like wavelengths in {unit}" in msg
        and span in msg
        and "give the x axis in cm⁻¹" in msg
    )
    far = UserSpectrum("f", np.linspace(5000.0, 9000.0, 50), np.ones(50), None, Path("f.csv"))
    with pytest.raises(DataError) as e:
        resample_to_grid(far, make_grid(**GRID))
    assert "wavelength" not in str(e.value)  # NIR in cm⁻¹: no misleading hint


def test_zero_and_negative_inputs_and_a_smoke_model_are_warned_about(ckpts, tmp_path, capsys):
    x = np.arange(500.0, 4001.0, 10.0)
    zero, neg = tmp_path / "zero.csv", tmp_path / "neg.csv"
    zero.write_text("\n".join(f"{a:g},0" for a in x))
    neg.write_text("\n".join(f"{a:g},{-b:.6g}" for a, b in zip(x, _bands(x), strict=True)))
    out = tmp_path / "pred"
    argv = ["--from", "ir", "--to", "raman", "--out", str(out), "--no-plot"]
    assert _run([*argv, "--checkpoint", str(ckpts["ok"]), str(zero), str(neg)]) == 0
    printed = capsys.readouterr().out
    assert "warning: " in printed and "'col2' is zero everywhere on the model grid" in printed
    assert "has no positive value (min -0.989)" in printed
    rep = json.loads((out / "predict.json").read_text())
    assert rep["warnings"] == [] and all(len(r["warnings"]) == 1 for r in rep["spectra"])
    # an earlier prediction in --out is not replaced without --force
    with pytest.raises(ConfigError, match=r"holds an earlier prediction .*--force"):
        _run([*argv, "--checkpoint", str(ckpts["smoke"]), str(zero)])
    assert _run([*argv, "--checkpoint", str(ckpts["smoke"]), str(zero), "--force"]) == 0
    printed = capsys.readouterr().out
    assert "smoke.pt: a smoke-preset model (3 training steps" in printed
    assert json.loads((out / "predict.json").read_text())["preset"] == "smoke"
