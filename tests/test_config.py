"""Config dataclasses: validation, overrides, JSON round trip, hashing."""

from __future__ import annotations

import json

import pytest

from spektron.config import (
    DatasetConfig,
    PhysicsConfig,
    RunConfig,
    apply_overrides,
    config_hash,
    from_dict,
    preset_config,
    to_dict,
)
from spektron.errors import ConfigError


def test_presets_and_overrides_are_type_checked():
    cfg = preset_config("smoke", ["data.physics.ir_fwhm=12", "data.n_molecules=10"], seed=3)
    assert cfg.data.physics.ir_fwhm == 12.0 and cfg.data.n_molecules == 10 and cfg.seed == 3
    paper = preset_config("paper")
    assert paper.data.n_molecules is None and paper.data.physics.level == "hybrid"
    assert preset_config("quick").data.physics.level == "fast-hybrid"
    assert DatasetConfig().physics.level == "fast-hybrid" and PhysicsConfig().level == "mmff"
    for bad, msg in [
        ("data.n_molecules=abc", "n_molecules"),
        ("data.n_molecules=1.5", "n_molecules"),
        ("data.physics.ir_fwhm=-1", "FWHM"),
        ("data.physics.nope=1", "unknown key"),
        ("data.grid.hi=100", "grid.hi"),
        ("noequals", "key.sub=value"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            preset_config("quick", [bad])
    with pytest.raises(ConfigError, match="unknown preset"):
        preset_config("huge")


def test_json_round_trip_and_hash():
    cfg = RunConfig()
    again = from_dict(RunConfig, json.loads(json.dumps(to_dict(cfg))))
    assert again == cfg
    assert config_hash(cfg) == config_hash(again)
    assert config_hash(cfg.data) != config_hash(apply_overrides(cfg.data, ["physics.ir_fwhm=14"]))


def test_post_init_validation():
    with pytest.raises(ConfigError):
        PhysicsConfig(charges="mulliken-ish")
    with pytest.raises(ConfigError):
        DatasetConfig(source="smiles", smiles=None)
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(RunConfig, {"bogus": 1})
