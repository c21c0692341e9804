"""Typed configs of the reference model (reposedm.config): named configs, YAML files, validation, the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from posebench.cli import app
from posebench.errors import PosebenchError
from reposedm.config import (
    VARIANTS,
    ConfigError,
    GuidanceConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    config_names,
    load_config,
    named_config,
    validate,
)

runner = CliRunner()


def _write(tmp_path: Path, data: dict[str, Any], name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def _tiny(model: dict[str, Any] | None = None, train: dict[str, Any] | None = None,
          variant: str = "b1") -> dict[str, Any]:
    """The tiny-{variant} config as a dict with overrides merged in."""
    data = named_config(f"tiny-{variant}").to_dict()
    data["model"].update(model or {})
    data["train"].update(train or {})
    return data


# ----------------------------------------------------------------------------------------------------- named configs


def test_config_names_cover_sizes_and_variants() -> None:
    names = config_names()
    assert len(names) == len(set(names)) == 5 * len(VARIANTS)  # tiny, demo and three paper sizes
    for size in ("tiny", "deepfashion-256", "deepfashion-512", "market-128"):
        for variant in VARIANTS:
            assert f"{size}-{variant}" in names


@pytest.mark.parametrize("name", config_names())
def test_every_named_config_builds_and_validates(name: str) -> None:
    cfg = named_config(name)
    assert isinstance(cfg, RunConfig) and cfg.name == name
    assert isinstance(cfg.model, ModelConfig) and isinstance(cfg.train, TrainConfig)
    assert isinstance(cfg.model.guidance, GuidanceConfig)
    assert cfg.model.variant == name.rpartition("-")[2]
    validate(cfg)  # no exception
    assert load_config(name) == cfg


def test_guidance_is_on_for_full_only() -> None:
    assert named_config("tiny-full").model.guidance.enabled is True
    assert named_config("tiny-b1").model.guidance.enabled is False
    assert named_config("tiny-b2").model.guidance.enabled is False
    assert named_config("tiny-b1").model.uses_rpa is False
    assert named_config("tiny-b2").model.uses_rpa is True and named_config("tiny-full").model.uses_rpa is True


@pytest.mark.parametrize(("size", "resolution", "latent"), [
    ("deepfashion-256", (256, 176), "vae"), ("deepfashion-512", (512, 352), "vae"), ("market-128", (128, 64), "vae"),
    ("tiny", (32, 22), "pixel"),
])
def test_paper_sizes(size: str, resolution: tuple[int, int], latent: str) -> None:
    for variant in VARIANTS:
        model = named_config(f"{size}-{variant}").model
        assert model.resolution == resolution
        assert model.latent == latent
    m = named_config(f"{size}-full").model
    factor = 8 if latent == "vae" else 1
    assert m.latent_factor == factor and m.latent_channels == (4 if latent == "vae" else 3)
    assert m.latent_size == (resolution[0] // factor, resolution[1] // factor)


def test_market_has_three_levels() -> None:
    m = named_config("market-128-full").model
    assert len(m.block_out_channels) == len(m.cross_attention_levels) == 3


def test_unknown_name_suggests_the_near_miss() -> None:
    with pytest.raises(ConfigError, match=r"unknown config 'tiny-ful'.*Did you mean: tiny-full") as info:
        named_config("tiny-ful")
    assert isinstance(info.value, PosebenchError) and info.value.exit_code == 2
    with pytest.raises(ConfigError, match="unknown config 'nope'") as info:
        load_config("nope")
    assert "tiny-sd-humansd" in str(info.value) and "humanart-sd-reposesd" in str(info.value)  # both families


# ------------------------------------------------------------------------------------------------------------ YAML


def test_yaml_base_with_overrides(tmp_path: Path) -> None:
    path = _write(tmp_path, {"base": "tiny-b1", "train": {"lr": 0.001}, "model": {"guidance_scale": 3.5}},
                  "my-run.yaml")
    cfg = load_config(path)
    base = named_config("tiny-b1")
    assert cfg.train.lr == 0.001 and cfg.model.guidance_scale == 3.5
    assert cfg.train == TrainConfig(**{**base.to_dict()["train"], "lr": 0.001, "adam_betas": base.train.adam_betas})
    assert cfg.model.resolution == base.model.resolution and cfg.model.variant == "b1"
    assert cfg.model.block_out_channels == base.model.block_out_channels  # tuples restored
    assert load_config(str(path)) == cfg


def test_yaml_with_base_is_named_after_the_file(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, {"base": "tiny-b1", "train": {"lr": 0.001}}, "my-run.yaml"))
    assert cfg.name == "my-run"  # not "tiny-b1": a run with lr 0.001 must not call itself tiny-b1


def test_yaml_explicit_name_and_nested_guidance(tmp_path: Path) -> None:
    path = _write(tmp_path, {"base": "tiny-full", "name": "exp7",
                             "model": {"guidance": {"pose_guidance_scale": 0.5, "sample_grad": "tweedie"}}})
    cfg = load_config(path)
    assert cfg.name == "exp7"
    g = cfg.model.guidance
    assert g.enabled is True and g.pose_guidance_scale == 0.5 and g.sample_grad == "tweedie"  # merged, not replaced


def test_yaml_without_base_starts_from_defaults(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, {"model": {"variant": "b2"}}, "plain.yml"))
    assert cfg.name == "plain" and cfg.model == ModelConfig(variant="b2") and cfg.train == TrainConfig()


@pytest.mark.parametrize(("data", "key", "suggestion"), [
    ({"base": "tiny-b1", "trian": {"lr": 0.1}}, "trian", "train"),
    ({"base": "tiny-b1", "model": {"resolutoin": [32, 22]}}, "resolutoin", "resolution"),
    ({"base": "tiny-b1", "train": {"batchsize": 4}}, "batchsize", "batch_size"),
    ({"base": "tiny-full", "model": {"guidance": {"enable": True}}}, "enable", "enabled"),
    ({"base": "tiny-b1", "train": {"zzz_unrelated": 1}}, "zzz_unrelated", None),
])
def test_yaml_unknown_keys_are_named_with_the_file(tmp_path: Path, data: dict[str, Any], key: str,
                                                   suggestion: str | None) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert str(path) in msg and f"unknown key {key!r}" in msg
    if suggestion is None:
        assert "did you mean" not in msg
    else:
        assert f"did you mean {suggestion!r}" in msg


def test_yaml_unknown_key_in_guidance_names_the_section(tmp_path: Path) -> None:
    path = _write(tmp_path, {"base": "tiny-full", "model": {"guidance": {"scale": 1.0}}})
    with pytest.raises(ConfigError, match=r"model\.guidance: unknown key 'scale'"):
        load_config(path)


@pytest.mark.parametrize(("text", "match"), [
    ("model: [1, 2\n", "not valid YAML"),
    ("- a\n- b\n", "expected a mapping"),
    ("model: 3\n", "model: expected a mapping"),
    ("base: tiny-ful\n", "Did you mean: tiny-full"),
])
def test_bad_yaml_files(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_missing_yaml_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.yaml")


def test_empty_yaml_file_is_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    cfg = load_config(path)
    assert cfg.name == "empty" and cfg.model == ModelConfig() and cfg.train == TrainConfig()


# ------------------------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(("model", "train", "match"), [
    ({"resolution": [250, 176], "latent": "vae"}, {}, r"resolution 250x176 is not divisible by .* factor 8"),
    ({"block_out_channels": [32] * 6, "cross_attention_levels": [False] * 6}, {},
     r"latent size 32x22 is smaller than the U-Net's total downsampling 32 \(6 levels\)"),
    ({"cond_downsample": 4}, {}, r"cond_downsample must be 1, 2, 4 or 8 and divide the latent size 32x22, got 4"),
    ({"cond_downsample": 3}, {}, r"cond_downsample .* got 3"),
    ({"block_out_channels": [32, 60]}, {}, r"block_out_channels \[32, 60\] must be positive multiples of "
                                           r"norm_num_groups 8"),
    ({"block_out_channels": [32, 68], "norm_num_groups": 4}, {}, "68 is not a multiple of attention_head_dim 8"),
    ({"cross_attention_levels": [False, True, True]}, {}, "cross_attention_levels has 3 entries for 2"),
    ({"block_out_channels": [], "cross_attention_levels": []}, {}, "block_out_channels is empty"),
    ({"resolution": [32]}, {}, r"resolution: expected 2 values"),
    ({"resolution": [4, 22]}, {}, r"both >= 8"),
    ({"cond_dim": 36}, {}, "cond_dim 36 must be a multiple of 8"),
    ({"beta_start": 0.03}, {}, "need 0 < beta_start < beta_end < 1"),
    ({"cond_dropout": 1.0}, {}, r"model\.cond_dropout must be in \[0, 1\)"),
    ({"pose_renderer": "nope"}, {}, "model.pose_renderer: 'nope' is not one of"),
    ({"latent": "jpeg"}, {}, "model.latent: 'jpeg' is not one of pixel, vae"),
    ({"variant": "b3"}, {}, "model.variant: 'b3' is not one of b1, b2, full"),
    ({}, {"batch_size": 6, "grad_accum": 4}, "batch_size 6 is not divisible by grad_accum 4"),
    ({}, {"lr": -0.001}, r"train\.lr must be positive, got -0\.001"),
    ({}, {"batch_size": 0}, r"train\.batch_size must be positive"),
    ({}, {"ema_decay": 1.0}, r"train\.ema_decay must be in \[0, 1\), got 1\.0"),
    ({}, {"ema_decay": 1.5}, r"train\.ema_decay must be in \[0, 1\)"),
    ({}, {"warmup_steps": -1}, "must be >= 0"),
    ({}, {"mixed_precision": "fp8"}, "train.mixed_precision: 'fp8' is not one of"),
])
def test_impossible_sizes_are_refused(model: dict[str, Any], train: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RunConfig.from_dict(_tiny(model, train), "where.yaml")


@pytest.mark.parametrize(("section", "key", "value", "match"), [
    ("train", "batch_size", "eight", "expected a number, got 'eight'"),
    ("model", "layers_per_block", 1.5, "expected an integer, got 1.5"),
    ("train", "batch_size", True, "expected a number, got True"),
    ("train", "lr", None, "expected a number, got None"),
    ("model", "learned_variance", "yes", "expected true/false, got 'yes'"),
    ("model", "learned_variance", 1, "expected true/false, got 1"),
    ("train", "gradient_checkpointing", 0, "expected true/false"),
    ("model", "resolution", 256, "expected a list, got 256"),
    ("model", "pose_renderer", 18, "expected a string, got 18"),
])
def test_wrong_types_are_refused(tmp_path: Path, section: str, key: str, value: Any, match: str) -> None:
    path = _write(tmp_path, {"base": "tiny-b1", section: {key: value}})
    with pytest.raises(ConfigError, match=match) as info:
        load_config(path)
    assert f"{section}.{key}" in str(info.value) and str(path) in str(info.value)


def test_whole_floats_become_ints_and_ints_floats(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, {"base": "tiny-b1", "model": {"layers_per_block": 2.0},
                                        "train": {"lr": 1, "batch_size": 8.0}}))
    assert cfg.model.layers_per_block == 2 and type(cfg.model.layers_per_block) is int
    assert cfg.train.batch_size == 8 and type(cfg.train.batch_size) is int
    assert cfg.train.lr == 1.0 and type(cfg.train.lr) is float


@pytest.mark.parametrize(("key", "value"), [("resolution", ["a", 22]), ("block_out_channels", [32, "64"]),
                                           ("resolution", [256.0, 176]), ("resolution", [256, 176, 3]),
                                           ("cross_attention_levels", [False, 1])])
def test_non_numeric_list_elements_are_a_config_error(key: str, value: list[Any]) -> None:
    with pytest.raises(ConfigError, match=key):
        RunConfig.from_dict(_tiny({key: value}), "where.yaml")


def test_list_and_float_text_values(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("base: tiny-b1\ntrain:\n  lr: 1e-4\n  adam_betas: [0.9, 0.99]\n")
    cfg = load_config(path)  # YAML 1.1 reads 1e-4 as a string; a float field accepts it
    assert cfg.train.lr == 1e-4 and cfg.train.adam_betas == (0.9, 0.99)
    with pytest.raises(ConfigError, match="adam_betas"):
        RunConfig.from_dict({"train": {"adam_betas": [0.9]}}, "where.yaml")


def test_guidance_only_for_full(tmp_path: Path) -> None:
    path = _write(tmp_path, {"base": "tiny-b1", "model": {"guidance": {"enabled": True}}})
    with pytest.raises(ConfigError, match=r"guidance\.enabled is only for variant 'full'.*got variant 'b1'"):
        load_config(path)
    with pytest.raises(ConfigError, match="only for variant 'full'"):
        RunConfig.from_dict(_tiny({"variant": "b2", "guidance": {"enabled": True}}))


def test_feature_field_needs_target_image_reference() -> None:
    with pytest.raises(ConfigError, match="field 'features' needs reference 'target-image'"):
        RunConfig.from_dict(_tiny({"guidance": {"enabled": True, "field": "features"}}, variant="full"))
    cfg = RunConfig.from_dict(_tiny({"guidance": {"enabled": True, "field": "features",
                                                  "reference": "target-image"}}, variant="full"))
    assert cfg.model.guidance.field == "features"


@pytest.mark.parametrize(("key", "value"), [("field", "logits"), ("reference", "pose"), ("train_mode", "third-order"),
                                            ("sample_grad", "both")])
def test_guidance_choices(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"model\.guidance\.{key}: '{value}' is not one of"):
        RunConfig.from_dict(_tiny({"guidance": {key: value}}, variant="full"))


# --------------------------------------------------------------------------------------------------- serialisation


@pytest.mark.parametrize("name", config_names())
def test_json_round_trip(name: str) -> None:
    cfg = named_config(name)
    back = RunConfig.from_dict(json.loads(cfg.to_json()))
    assert back == cfg
    assert isinstance(back.model.resolution, tuple) and isinstance(back.train.adam_betas, tuple)
    assert isinstance(back.model.guidance, GuidanceConfig)


def test_config_json_file_loads_back(tmp_path: Path) -> None:
    cfg = named_config("tiny-full")
    path = tmp_path / "config.json"
    path.write_text(cfg.to_json())
    assert load_config(path) == cfg  # name kept from the file, not the stem


# ------------------------------------------------------------------------------------------------ train overrides


def test_load_config_train_overrides() -> None:
    cfg = load_config("tiny-b1", lr=0.005, max_steps=7)
    assert cfg.train.lr == 0.005 and cfg.train.max_steps == 7
    assert cfg.name == "tiny-b1" and cfg.model == named_config("tiny-b1").model
    with pytest.raises(ConfigError, match=r"command-line overrides: train\.max_steps must be positive"):
        load_config("tiny-b1", max_steps=0)
    with pytest.raises(ConfigError, match="unknown key 'learning_rate'"):
        load_config("tiny-b1", learning_rate=0.1)
    with pytest.raises(ConfigError, match="expected an integer"):
        load_config("tiny-b1", batch_size=2.5)


def test_load_config_yaml_plus_overrides(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, {"base": "tiny-b2", "name": "x", "train": {"lr": 0.001}}, "x.yaml"), seed=5)
    assert cfg.name == "x" and cfg.train.lr == 0.001 and cfg.train.seed == 5


# ------------------------------------------------------------------------------------------------------------- CLI


def _train_reference(tmp_path: Path, config: str) -> Any:
    return runner.invoke(app, ["train-reference", "--config", config, "--protocol", "deepfashion-256x176",
                               "--root", str(tmp_path), "--out", str(tmp_path / "run"), "--dry-run"])


def test_cli_dry_run_prints_the_resolved_config(tmp_path: Path) -> None:
    res = _train_reference(tmp_path, "tiny-b1")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["name"] == "tiny-b1" and "tiny-b1" in res.stdout
    assert RunConfig.from_dict(data) == named_config("tiny-b1")
    assert not (tmp_path / "run").exists()  # a dry run writes nothing


def test_cli_dry_run_with_a_yaml_file(tmp_path: Path) -> None:
    path = _write(tmp_path, {"base": "tiny-full", "train": {"lr": 0.001}}, "exp.yaml")
    res = _train_reference(tmp_path, str(path))
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["train"]["lr"] == 0.001 and data["model"]["variant"] == "full"
    assert RunConfig.from_dict(data) == load_config(path)


def test_cli_unknown_config_exits_2(tmp_path: Path) -> None:
    res = _train_reference(tmp_path, "nope")
    assert res.exit_code == 2
    assert "unknown config 'nope'" in res.output and "Traceback" not in res.output


def test_cli_yaml_unknown_key_exits_2(tmp_path: Path) -> None:
    path = _write(tmp_path, {"base": "tiny-b1", "train": {"batchsize": 4}})
    res = _train_reference(tmp_path, str(path))
    assert res.exit_code == 2
    assert "unknown key 'batchsize'" in res.output and "did you mean 'batch_size'" in res.output


def test_demo_configs_and_the_new_keys_are_checked(tmp_path):
    cfg = load_config("demo-full")
    assert cfg.model.prediction_type == "sample" and cfg.train.lr_schedule == "cosine"
    assert not cfg.model.learned_variance and cfg.model.resolution == (32, 22) and cfg.model.zero_init
    assert cfg.model.guidance_scale == 1.0 and load_config("deepfashion-256-full").model.guidance_scale == 2.0
    for key, value, what in (("model", {"prediction_type": "x0"}, "model.prediction_type"),
                             ("train", {"lr_schedule": "linear"}, "train.lr_schedule"),
                             ("model", {"guidance": {"estimator_scale": 0}}, "model.guidance.estimator_scale"),
                             ("model", {"guidance": {"estimator_scale": 1.5}}, "model.guidance.estimator_scale")):
        path = tmp_path / f"{what}.yaml"
        path.write_text(f"base: demo-b1\n{key}: {value}\n".replace("'", ""))
        with pytest.raises(ConfigError, match=what.replace(".", r"\.")):
            load_config(path)


def test_paper_sizes_follow_the_paper_and_older_run_dumps_keep_their_reading(tmp_path):
    """Paper sizes drop both conditions for CFG and take eq. 11's mask from the generated pose; tiny and demo keep
    the readings they were measured with; a run's JSON dump from before `mask_from` existed reads as it was trained
    (the reference's mask)."""
    import json

    from reposedm.checkpoints import read_run_config
    from reposedm.config import load_config, named_config

    for name in ("deepfashion-256-full", "deepfashion-512-full", "market-128-full"):
        m = named_config(name).model
        assert (m.cfg_drop, m.guidance.mask_from) == ("both", "generated"), name
    for name in ("tiny-full", "demo-full"):
        m = named_config(name).model
        assert (m.cfg_drop, m.guidance.mask_from) == ("source", "reference"), name
    old = named_config("tiny-full").to_dict()
    del old["model"]["guidance"]["mask_from"]
    old["model"]["guidance"]["mask_threshold"] = 0.2
    (tmp_path / "run_config.json").write_text(json.dumps(old))
    (tmp_path / "config.json").write_text(json.dumps(old))
    for cfg in (read_run_config(tmp_path / "run_config.json"), load_config(tmp_path / "config.json")):
        assert cfg.model.guidance.mask_from == "reference" and cfg.model.guidance.mask_threshold == 0.2


def test_paper_pose_encoding_and_first_flow(tmp_path):
    """Paper sizes: the pose as an RGB skeleton through the VAE (F_T, 4 channels concatenated as they are) and
    F^0 = M(F_T, F_S); a VAE pose encoding without a VAE or an RGB pose image is refused naming the keys; older run
    dumps read as a learned encoder with F^0 = 0."""
    import json

    from reposedm.config import ConfigError, RunConfig, named_config, upgrade_run_dump

    m = named_config("deepfashion-256-b2").model
    assert (m.pose_encoding, m.pose_renderer, m.pose_embed_channels, m.rpa_first_flow, m.rpa_warp) == (
        "vae", "skeleton-rgb", 4, "mapformer", "image")
    tiny = named_config("tiny-b2").model
    assert (tiny.pose_encoding, tiny.rpa_first_flow, tiny.rpa_warp) == ("learned", "zero", "latent")
    data = named_config("deepfashion-256-b2").to_dict()
    data["model"].update(latent="pixel", rpa_warp="latent")
    with pytest.raises(ConfigError, match="pose_encoding 'vae'.*latent: vae, pose_renderer: skeleton-rgb"):
        RunConfig.from_dict(data)
    old = named_config("tiny-b2").to_dict()
    del old["model"]["pose_encoding"], old["model"]["rpa_first_flow"], old["model"]["rpa_warp"]
    upgraded = upgrade_run_dump(json.loads(json.dumps(old)))["model"]
    assert (upgraded["pose_encoding"], upgraded["rpa_first_flow"], upgraded["rpa_warp"]) == (
        "learned", "zero", "latent")
    data["model"].update(pose_encoding="learned", pose_renderer="pidm20", pose_embed_channels=8, rpa_warp="image")
    with pytest.raises(ConfigError, match="rpa_warp 'image' re-encodes the warped source with the VAE"):
        RunConfig.from_dict(data)
