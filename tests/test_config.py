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
    flat_config,
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
        ("data.physics.nope=1", "no config key .data.physics.nope."),
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
    assert config_hash(cfg.data) != config_hash(
        apply_overrides(cfg.data, ["data.physics.ir_fwhm=14"], root="data")
    )


def test_post_init_validation():
    with pytest.raises(ConfigError):
        PhysicsConfig(charges="mulliken-ish")
    with pytest.raises(ConfigError):
        DatasetConfig(source="smiles", smiles=None)
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(RunConfig, {"bogus": 1})


@pytest.mark.parametrize(
    ("override", "prefer", "suggested"),
    [
        ("train.lr=0.01", "e1", "did you mean e1.train.lr (or e2.train.lr, e4.train.lr)?"),
        ("train.lr=0.01", "e4", "did you mean e4.train.lr (or e1.train.lr, e2.train.lr)?"),
        ("physics.ir_fwhm=12", "", "did you mean data.physics.ir_fwhm?"),
        ("e1.trian.lr=3", "e1", "did you mean e1.train.lr"),
        ("n_figure_pair=3", "", "did you mean n_figure_pairs?"),
    ],
)
def test_a_short_or_misspelt_key_is_refused_with_the_full_path_suggested(
    override, prefer, suggested
):
    with pytest.raises(ConfigError) as e:
        preset_config("quick", [override], prefer=prefer)
    msg = str(e.value)
    assert suggested in msg and "spektron config show" in msg and "\n" not in msg


def test_a_dataset_command_takes_the_full_data_path_only():
    cfg = apply_overrides(DatasetConfig(), ["data.physics.ir_fwhm=12"], root="data")
    assert cfg.physics.ir_fwhm == 12.0
    with pytest.raises(ConfigError, match=r"did you mean data\.physics\.ir_fwhm\?"):
        apply_overrides(DatasetConfig(), ["physics.ir_fwhm=12"], root="data")
    with pytest.raises(ConfigError, match=r"this command takes data\.\* keys only"):
        apply_overrides(DatasetConfig(), ["e1.train.lr=0.1"], root="data")


def test_flat_config_lists_every_leaf_once():
    flat = flat_config(RunConfig())
    assert flat["e1.train.lr"] == RunConfig().e1.train.lr
    assert flat["data.physics.level"] == "fast-hybrid"
    # Only an empty free mapping (keys of the user's choosing) is a leaf that is a dict.
    assert [k for k, v in flat.items() if isinstance(v, dict)] == [
        "e1.arm_overrides",
        "e1.tune.knobs",
    ]
    for key, value in list(flat.items())[:: max(1, len(flat) // 25)]:  # every key is settable
        apply_overrides(RunConfig(), [f"{key}={json.dumps(value)}"])


def test_per_arm_settings_are_a_free_mapping_set_key_by_key():
    cfg = preset_config(
        "quick",
        [
            "e1.arm_overrides.dlinoss.theta_min=0.2",
            "e1.arm_overrides.dlinoss.r_min=0.8",
            'e1.arm_overrides.cnn={"kernel_size": 5}',
            "e1.arm_overrides.dlinoss.theta_min=0.3",  # the later one wins
        ],
    )
    assert cfg.e1.arm_overrides == {
        "dlinoss": {"theta_min": 0.3, "r_min": 0.8},
        "cnn": {"kernel_size": 5},
    }
    assert config_hash(cfg) != config_hash(preset_config("quick"))
    assert from_dict(RunConfig, to_dict(cfg)).e1.arm_overrides == cfg.e1.arm_overrides
    flat = flat_config(cfg)
    assert flat["e1.arm_overrides.dlinoss.r_min"] == 0.8 and "e1.arm_overrides" not in flat
    with pytest.raises(ConfigError, match=r"e1\.arm_overrides\.cnn\.d_model: the model width"):
        preset_config("quick", ["e1.arm_overrides.cnn.d_model=32"])
    with pytest.raises(ConfigError, match=r"e1\.arm_overrides\.dlinoss: expected a mapping"):
        preset_config("quick", ["e1.arm_overrides.dlinoss=3"])
    with pytest.raises(ConfigError, match=r"e1\.arm_overrides\.dlinoss is a value"):
        preset_config("quick", ["e1.arm_overrides.dlinoss=3", "e1.arm_overrides.dlinoss.r_min=1"])
    with pytest.raises(ConfigError, match=r"did you mean e1\.arm_overrides\?"):
        preset_config("quick", ["e1.arm_override={}"])


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("e1.convergence_check=1", r"e1\.convergence_check must be 0 \(off\) or a step multiple"),
        ("e2.convergence_check=-2", r"e2\.convergence_check must be 0 \(off\) or a step multiple"),
        ("e2.convergence_window=1", r"e2\.convergence_tol must be > 0 and e2\.convergence_window"),
        ("e1.convergence_tol=0", r"e1\.convergence_tol must be > 0 and e1\.convergence_window"),
    ],
)
def test_convergence_settings_are_checked_per_section(override, match):
    with pytest.raises(ConfigError, match=match):
        preset_config("study", [override])
    assert preset_config("study").e2.convergence_check == 2
