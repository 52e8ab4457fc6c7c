"""Assembled model: forward contract for every head and backbone, checkpoint round trip and the
errors a bad checkpoint raises."""

from __future__ import annotations

import importlib.util
import json
import zipfile

import pytest
import torch

from spektron.errors import ConfigError, SpektronError
from spektron.models.registry import BACKBONE_MODULES, available_backbones, backbone_spec
from spektron.models.spektron import (
    CheckpointError,
    Spektron,
    SpektronConfig,
    read_checkpoint,
)

D = 16
L = 50
GRID = torch.linspace(500.0, 4000.0, L)
SMALL_EMBEDDING = {"wavelets": ["db2"], "levels": [1, 2], "mexh_scales": [1.0], "n_frequencies": 4}


def _small_backbone_fields(name: str) -> dict:
    module = BACKBONE_MODULES[name]
    assert importlib.util.find_spec(module) is not None, f"backbone {name!r}: no module {module}"
    knobs = getattr(backbone_spec(name).config_cls, "SIZE_KNOBS", {})
    return {k: min(v) for k, v in knobs.items()}


def _config(backbone: str = "mamba", head: str = "reconstruction", **kw) -> SpektronConfig:
    fields = {"n_layers": 1, "d_state": 4} if backbone == "mamba" else {}
    return SpektronConfig.from_json_dict(
        {
            "d_model": D,
            "embedding": {**SMALL_EMBEDDING, **kw.pop("embedding", {})},
            "backbone": backbone,
            "backbone_config": kw.pop("backbone_config", fields),
            "head": head,
            "head_config": kw.pop("head_config", {}),
        }
    )


def _inputs(B: int = 2):
    torch.manual_seed(5)
    values = torch.rand(B, L)
    mask = torch.zeros(B, L, dtype=torch.bool)
    mask[:, 10:20] = True
    return values, GRID, mask


@pytest.mark.parametrize(
    "head,head_config,pred_shape",
    [
        ("reconstruction", {}, (2, L)),
        ("cross_spectral", {"nonnegative": True}, (2, L)),
        ("regression", {"n_targets": 3, "hidden": 8}, (2, 3)),
    ],
)
@pytest.mark.parametrize("stride", [1, 3])
def test_forward_contract(head, head_config, pred_shape, stride):
    model = Spektron(_config(head=head, head_config=head_config, embedding={"stride": stride}))
    out = model(*_inputs())
    Lp = (L - 1) // stride + 1
    assert out["pred"].shape == pred_shape
    assert out["features"].shape == (2, Lp, D)
    torch.testing.assert_close(out["wavenumber"], GRID[::stride])
    out["pred"].sum().backward()
    assert model.embedding.conv.weight.grad is not None
    counts = model.parameter_counts()
    assert counts["total"] == sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", available_backbones())
def test_checkpoint_round_trip_gives_identical_outputs(name, tmp_path):
    fields = {"n_layers": 1, "d_state": 4} if name == "mamba" else _small_backbone_fields(name)
    cfg = _config(name, head="regression", head_config={"hidden": 8}, backbone_config=fields)
    torch.manual_seed(0)
    model = Spektron(cfg).eval()
    path = model.save_checkpoint(tmp_path / "sub" / "model.pt", extra={"step": 7})
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temp file left over
    loaded = Spektron.from_checkpoint(path)
    assert not loaded.training
    with torch.no_grad():
        a, b = model(*_inputs()), loaded(*_inputs())
    for key in ("pred", "features"):
        assert torch.equal(a[key], b[key]), key
    state = read_checkpoint(path)
    assert state["extra"] == {"step": 7}
    json.dumps(state["config"])  # plain JSON
    assert SpektronConfig.from_json_dict(state["config"]) == cfg


def test_save_replaces_an_existing_checkpoint(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"old")
    Spektron(_config()).save_checkpoint(path)
    assert isinstance(Spektron.from_checkpoint(path), Spektron)


def _assert_names_file(err: pytest.ExceptionInfo, path) -> None:
    assert isinstance(err.value, SpektronError)
    assert str(path) in str(err.value)


def test_missing_checkpoint(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError, match="no such checkpoint") as err:
        Spektron.from_checkpoint(path)
    _assert_names_file(err, path)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_checkpoint(tmp_path, damage):
    path = tmp_path / "model.pt"
    Spektron(_config()).save_checkpoint(path)
    blob = path.read_bytes()
    path.write_bytes(b"not a checkpoint" * 10 if damage == "garbage" else blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="cannot read checkpoint") as err:
        Spektron.from_checkpoint(path)
    _assert_names_file(err, path)


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"format": "spektron-model", "obj": zipfile.ZipInfo("x")}, path)
    with pytest.raises(CheckpointError, match="holds Python objects beyond tensors") as err:
        Spektron.from_checkpoint(path)
    assert "weights_only" not in str(err.value)  # not torch's advice to run the file's code


def test_a_training_checkpoint_gives_the_model_it_holds(tmp_path, caplog):
    model = Spektron(_config())
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": "spektron-train", "step": 7, "model": model.checkpoint_state()}, path)
    with caplog.at_level("WARNING"):
        loaded = Spektron.from_checkpoint(path)
    assert "training checkpoint (step 7)" in caplog.text and "best.pt" in caplog.text
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_foreign_or_wrong_config_checkpoint(tmp_path):
    model = Spektron(_config())
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not a Spektron model checkpoint") as err:
        Spektron.from_checkpoint(foreign)
    _assert_names_file(err, foreign)

    bad_cfg = tmp_path / "bad_cfg.pt"
    state = model.checkpoint_state()
    state["config"]["embedding"]["stride"] = 0
    torch.save(state, bad_cfg)
    with pytest.raises(CheckpointError, match="invalid model config") as err:
        Spektron.from_checkpoint(bad_cfg)
    _assert_names_file(err, bad_cfg)

    mismatch = tmp_path / "mismatch.pt"
    state = model.checkpoint_state()
    state["config"]["backbone_config"]["n_layers"] = 2  # weights are for one layer
    torch.save(state, mismatch)
    with pytest.raises(CheckpointError, match="weights do not match") as err:
        Spektron.from_checkpoint(mismatch)
    _assert_names_file(err, mismatch)

    future = tmp_path / "future.pt"
    state = model.checkpoint_state()
    state["format_version"] = 99
    torch.save(state, future)
    with pytest.raises(CheckpointError, match="version"):
        Spektron.from_checkpoint(future)


def test_config_validation():
    with pytest.raises(ConfigError, match="differs"):
        _config(backbone_config={"d_model": 32, "n_layers": 1})
    with pytest.raises(ConfigError, match="unknown head"):
        _config(head="nope")
    with pytest.raises(ConfigError, match="unknown backbone"):
        _config(backbone="nope")
    with pytest.raises(ConfigError):
        _config(backbone_config={"n_layers": 0})
    with pytest.raises(ConfigError):
        _config(head="regression", head_config={"n_targets": "two"})


def test_masked_values_never_reach_the_output():
    model = Spektron(_config()).eval()
    values, grid, mask = _inputs()
    poisoned = values.clone()
    poisoned[mask] = float("nan")
    with torch.no_grad():
        assert torch.equal(model(values, grid, mask)["pred"], model(poisoned, grid, mask)["pred"])
