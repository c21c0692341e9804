"""Typed configs of the reference model: variants (b1, b2, full) x sizes (tiny, paper resolutions).

A config has two parts, `model` (what the network is and how it samples) and `train` (how it learns).
Named configs are `{size}-{variant}`, e.g. `tiny-b1`, `deepfashion-256-full`; a YAML file may start from
one with `base: NAME` and override any key. Unknown keys and impossible sizes are refused with the key
and the file named, before anything is built. The resolved config is written as JSON into every run
folder and checkpoint, so a checkpoint always says what it is.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

from posebench.errors import PosebenchError
from posebench.utils.keys import check_keys, read_yaml_mapping

Variant = Literal["b1", "b2", "full"]
VARIANTS: tuple[str, ...] = ("b1", "b2", "full")


class ConfigError(PosebenchError):
    """A config the model cannot be built from."""


@dataclass(frozen=True)
class GuidanceConfig:
    """Pose Interaction Field gradient guidance (paper sec. 3.3, eq. 10-12, 15-16, 19); docs/model.md."""

    enabled: bool = False
    estimator: str = "tiny-random"  # posebench pose-estimator registry name (differentiable)
    estimator_weights: str | None = None  # its weights file (e.g. `posebench pose train` output); None: default
    field: Literal["heatmaps", "features"] = "heatmaps"  # phi: the estimator output compared in eq. 11
    reference: Literal["keypoints", "target-image"] = "keypoints"  # phi(reference) in eq. 11
    mask_threshold: float = 0.1  # M = 1[sum_j H_j > 0.1] (eq. 11)
    # whose heatmaps H_j make M: "generated" (the paper: phi of the decoded y~_0, no gradient through the indicator)
    # or "reference" (the target keypoints' / target image's; the tiny and demo sizes, where a random estimator's
    # heatmaps of a generated image rarely pass the threshold)
    mask_from: Literal["generated", "reference"] = "generated"
    # Training (eq. 15): "second-order" puts sqrt(1 - abar_t) * grad G into eps~ (double backward);
    # "first-order" adds lambda * G to the loss; "off" trains without the field.
    train_mode: Literal["second-order", "first-order", "off"] = "second-order"
    train_weight: float = 1.0  # lambda of the first-order option
    # Sampling (eq. 12/19): y'_{t-1} = y_{t-1} - eta * grad_{y_t} G. "unet" differentiates through the
    # denoiser; "tweedie" holds eps_theta fixed and differentiates only the x0 estimate (cheaper).
    sample_grad: Literal["unet", "tweedie"] = "unet"
    pose_guidance_scale: float = 1.0  # eta
    # phi sees the decoded image upsampled by this integer factor (bilinear), so that a model smaller than the
    # scale its estimator was trained at still shows it people of that size (the demo: 32x22 -> 64x44).
    estimator_scale: int = 1
    # A randomly initialised estimator (`tiny-random`, or one without weights) makes guidance noise: refused at
    # paper size unless allowed, and then every result of the run is marked non-canonical (`random_estimator`).
    allow_random_estimator: bool = False


@dataclass(frozen=True)
class ModelConfig:
    variant: Variant = "full"
    resolution: tuple[int, int] = (256, 176)  # (H, W) of images
    latent: Literal["pixel", "vae"] = "vae"  # vae: pretrained AutoencoderKL (paper); pixel: no autoencoder
    vae_weights: str = "sd-vae-ft-mse"  # posebench weights-registry name
    vae_scaling_factor: float = 0.18215
    pose_renderer: str = "pidm20"  # posebench pose renderer for the target pose map
    # "vae": the rendered pose (an RGB skeleton) goes through the VAE encoder as F_T and is concatenated with y_t
    # as it is (the paper); "learned": a conv encoder of the rendered map to pose_embed_channels
    pose_encoding: Literal["vae", "learned"] = "learned"
    pose_embed_channels: int = 8  # encoded target pose, concatenated with the noisy latent ("learned")
    # Denoiser (diffusers UNet2DConditionModel); "cross" marks the levels with cross-attention.
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    cross_attention_levels: tuple[bool, ...] = (False, True, True, True)
    layers_per_block: int = 2
    attention_head_dim: int = 64
    norm_num_groups: int = 32
    # Texture tokens: B1 CNN encoder or RPA features (dim = cross-attention dim).
    cond_dim: int = 256
    cond_downsample: int = 1  # texture/RPA feature resolution = model-space resolution / this
    rpa_iterations: int = 5  # N
    rpa_radius: int = 3  # R
    rpa_kernel_sizes: tuple[int, ...] = (4, 2)
    rpa_depth: int = 1  # D
    rpa_heads: int = 4
    # F^0: "mapformer" (the paper: F^0 = M(F_T, F_S), M applied N + 1 times) or "zero" (F^0 = 0, N times)
    rpa_first_flow: Literal["mapformer", "zero"] = "mapformer"
    # eq. 9's Encoder input: "image" (the paper: the source image warped by the flow in image pixels and re-encoded
    # by the frozen VAE encoder at every pass) or "latent" (the source's latent warped; one VAE encoding in all)
    rpa_warp: Literal["image", "latent"] = "latent"
    # Diffusion (improved DDPM): T, linear betas, learned variance, L = L_mse + vlb_weight * L_vlb.
    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    learned_variance: bool = True
    # ResNet blocks start as the identity and the output at 0 (improved DDPM's zero_module; docs/model.md).
    zero_init: bool = False
    vlb_weight: float = 1.0
    # What the denoiser predicts: "epsilon" (paper), "sample" (y_0) or "v_prediction" (docs/model.md).
    prediction_type: Literal["epsilon", "sample", "v_prediction"] = "epsilon"
    # Classifier-free guidance: condition dropout in training, w_c at sampling (eq. 16).
    cond_dropout: float = 0.1
    cfg_drop: Literal["source", "both"] = "both"  # what the unconditional branch drops (the paper: I_S and P)
    guidance_scale: float = 2.0  # w_c
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)

    @property
    def is_test_size(self) -> bool:
        """Both sides below 64 px: the `tiny` and `demo` sizes, where a random pose estimator is expected."""
        return max(self.resolution) < 64

    @property
    def uses_rpa(self) -> bool:
        return self.variant in ("b2", "full")

    @property
    def latent_factor(self) -> int:
        return 8 if self.latent == "vae" else 1

    @property
    def latent_channels(self) -> int:
        return 4 if self.latent == "vae" else 3

    @property
    def latent_size(self) -> tuple[int, int]:
        h, w = self.resolution
        return h // self.latent_factor, w // self.latent_factor

    @property
    def pose_channels(self) -> int:
        return {"heatmap18": 18, "pidm20": 20, "cfld21": 21, "skeleton-rgb": 3}[self.pose_renderer]


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 1e-4
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    batch_size: int = 8  # global batch (all processes, after accumulation)
    grad_accum: int = 1
    max_steps: int = 300_000  # optimizer steps
    warmup_steps: int = 0
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: to 0 at max_steps (short runs)
    grad_clip: float = 1.0
    ema_decay: float = 0.9999
    ema_start: int = 0  # step after which the EMA starts tracking
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    checkpoint_every: int = 5_000
    keep_checkpoints: int = 3  # the newest N are kept, plus every `keep_every`
    keep_every: int = 50_000  # 0: none kept permanently
    log_every: int = 50
    sample_every: int = 10_000  # validation grids; 0 turns them off
    sample_steps: int = 50
    num_samples: int = 8
    num_workers: int = 2
    seed: int = 0
    gradient_checkpointing: bool = False
    # VAE latents of the training images stored once and read back ($POSEBENCH_HOME/latents, keyed by image content
    # and VAE; reposedm/latent_cache.py); latent-space configs only
    cache_latents: bool = False


@dataclass(frozen=True)
class RunConfigBase:
    """A run config of either family (RePoseDM here, RePoseSD in `reposedm.sd.config`): a name, a model part and
    a train part, read from and written to one mapping. A subclass names its model class, its family tag and its
    checks."""

    name: str
    model: Any
    train: TrainConfig

    MODEL: ClassVar[type]
    FAMILY: ClassVar[str | None] = None  # written as the dump's `family` when set; RePoseDM's dumps have none

    @property
    def family(self) -> str:
        """`reposedm` or `reposesd`: which trainer, sampler and pipeline the run uses."""
        return self.FAMILY or "reposedm"

    def to_dict(self) -> dict[str, Any]:
        family = {"family": self.FAMILY} if self.FAMILY else {}
        return {**family, "name": self.name, "model": asdict(self.model), "train": asdict(self.train)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> Any:
        _unknown(data, {"name", "model", "train", "base"} | ({"family"} if cls.FAMILY else set()), where)
        model = _build(cls.MODEL, data.get("model", {}), f"{where}: model")
        train = _build(TrainConfig, data.get("train", {}), f"{where}: train")
        cfg = cls(str(data.get("name", "custom")), model, train)
        cfg.check(where)
        return cfg

    def check(self, where: str) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class RunConfig(RunConfigBase):
    model: ModelConfig
    MODEL: ClassVar[type] = ModelConfig

    def check(self, where: str) -> None:
        validate(self, where)


# ------------------------------------------------------------------------------------------ named configs

# The tiny and demo sizes keep the readings they were measured with (docs/model.md, "Deviations"): CFG drops the
# source only, and the eq. 11 mask comes from the reference.
_TINY_MODEL: dict[str, Any] = {
    "resolution": (32, 22), "latent": "pixel", "pose_embed_channels": 4, "cfg_drop": "source",
    "guidance": {"mask_from": "reference"}, "rpa_first_flow": "zero",
    "block_out_channels": (32, 64), "cross_attention_levels": (False, True), "layers_per_block": 1,
    "attention_head_dim": 8, "norm_num_groups": 8, "cond_dim": 32, "cond_downsample": 2,
    "rpa_iterations": 2, "rpa_radius": 2, "rpa_kernel_sizes": (4, 2), "rpa_heads": 2,
}
_TINY_TRAIN: dict[str, Any] = {
    "batch_size": 4, "max_steps": 200, "ema_decay": 0.99, "checkpoint_every": 50, "keep_checkpoints": 2,
    "keep_every": 0, "log_every": 10, "sample_every": 100, "sample_steps": 10, "num_samples": 4,
    "num_workers": 0, "lr": 2e-4, "warmup_steps": 10,
}
# `posebench demo`: what a 2-core CPU trains in a few minutes to beat the trivial baselines on synthetic
# people (posebench.run.demo points demo-full's guidance at its trained estimator, first order, at that estimator's
# scale). 32x22 pixels: 1200 steps fit the budget where 64x44 fit 300, and more steps beat more pixels here
# (docs/model.md). y_0-prediction (eps-prediction's y~_0 is still noise after a few hundred steps), ResNet
# blocks started as the identity, and no classifier-free guidance at sampling (w_c = 1: at the paper's 2 these
# undertrained models overshoot, and sampling costs twice).
_DEMO_MODEL: dict[str, Any] = {
    **_TINY_MODEL, "prediction_type": "sample", "guidance_scale": 1.0, "zero_init": True,
    # DDIM ignores the learned variance, and its L_vlb in y_0-space outweighs L_mse in the shared trunk.
    "learned_variance": False,
}
_DEMO_TRAIN: dict[str, Any] = {
    **_TINY_TRAIN, "batch_size": 8, "max_steps": 1200, "lr": 1e-3, "lr_schedule": "cosine", "ema_decay": 0.98,
    "checkpoint_every": 200, "log_every": 50, "sample_every": 0, "sample_steps": 20, "num_samples": 8,
}
# The paper's F_T: the target pose drawn as an RGB skeleton and encoded by the VAE (4 latent channels, concatenated).
_PAPER_POSE: dict[str, Any] = {"pose_renderer": "skeleton-rgb", "pose_encoding": "vae", "pose_embed_channels": 4,
                               "rpa_warp": "image"}
SIZES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "tiny": (_TINY_MODEL, _TINY_TRAIN),
    "demo": (_DEMO_MODEL, _DEMO_TRAIN),
    "deepfashion-256": ({"resolution": (256, 176), **_PAPER_POSE}, {}),
    "deepfashion-512": ({"resolution": (512, 352), **_PAPER_POSE}, {}),
    "market-128": ({"resolution": (128, 64), "block_out_channels": (128, 256, 512),
                    "cross_attention_levels": (False, True, True), **_PAPER_POSE}, {}),
}
_VARIANT_MODEL: dict[str, dict[str, Any]] = {
    "b1": {"variant": "b1"},
    "b2": {"variant": "b2"},
    "full": {"variant": "full", "guidance": {"enabled": True}},
}
# The paper's pose field at paper size: HigherHRNet-W32 trained on COCO (its weights are checked before training).
_PAPER_ESTIMATOR = "higherhrnet-w32-coco"


def config_names() -> list[str]:
    return [f"{size}-{variant}" for size in SIZES for variant in VARIANTS]


def named_config(name: str) -> RunConfig:
    from reposedm.sd.config import sd_config_names

    return config_from_tables(RunConfig, name, SIZES, _VARIANT_MODEL, guided="full", test_sizes=("tiny", "demo"),
                              what="config", others=sd_config_names())


def config_from_tables(cls: type[RunConfigBase], name: str, sizes: dict[str, tuple[dict[str, Any], dict[str, Any]]],
                       variant_models: dict[str, dict[str, Any]], *, guided: str, test_sizes: tuple[str, ...],
                       what: str, others: list[str]) -> Any:
    """The named config `{size}-{variant}` of a family: the size's model and train keys, then the variant's (the
    guidance keys merged, not replaced); the guided variant at a paper size uses the paper's pose estimator.
    `others`: the other family's names, offered too when `name` is unknown."""
    size, _, variant = name.rpartition("-")
    if size not in sizes or variant not in variant_models:
        names = [f"{s}-{v}" for s in sizes for v in variant_models] + others
        near = difflib.get_close_matches(name, names, n=3)
        hint = f" Did you mean: {', '.join(near)}?" if near else ""
        raise ConfigError(f"unknown {what} {name!r}.{hint} Named configs: {', '.join(names)}; or pass a YAML file")
    model_over, train_over = sizes[size]
    model = {**model_over, **variant_models[variant]}
    model["guidance"] = {**model_over.get("guidance", {}), **variant_models[variant].get("guidance", {})}
    if variant == guided and size not in test_sizes:
        model["guidance"] = {**model["guidance"], "estimator": _PAPER_ESTIMATOR}
    return cls.from_dict({"name": name, "model": model, "train": dict(train_over)}, f"config {name}")


def load_config(name_or_path: str | Path, **train_overrides: Any) -> RunConfig:
    """A named config (`tiny-b1`) or a YAML file (`base: NAME` plus overrides), checked.

    Raises:
        ConfigError: unknown name or keys, unreadable YAML, impossible sizes (the key is named).
    """
    text = str(name_or_path)
    path = Path(text)
    if text.endswith((".yaml", ".yml", ".json")) or path.is_file():
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        data = read_yaml_mapping(path, ConfigError, allow_empty=True,
                                 expected="a mapping with model: and train: sections")
        if _is_sd_data(data):  # RePoseSD: `family: reposesd`, or a base that names a RePoseSD config
            from reposedm.sd.config import sd_config_from_data

            cfg = sd_config_from_data(data, str(path))
            cfg = cfg if "name" in data else replace(cfg, name=path.stem)
            return _with_train_overrides(cfg, train_overrides)
        if path.suffix == ".json":  # a run's own dump (config.json): read as the run was trained
            data = upgrade_run_dump(data)
        named = "name" in data
        if "base" in data:
            base = named_config(str(data["base"])).to_dict()
            data = _merge(base, data)
        cfg = RunConfig.from_dict(data, str(path))
        if not named:  # a file's run is named after the file, not after its base
            cfg = replace(cfg, name=path.stem)
    else:
        from reposedm.sd.config import is_sd_name, named_sd_config

        cfg = named_sd_config(text) if is_sd_name(text) else named_config(text)
    return _with_train_overrides(cfg, train_overrides)


def _is_sd_data(data: dict[str, Any]) -> bool:
    from reposedm.sd.config import FAMILY, is_sd_name

    return data.get("family") == FAMILY or is_sd_name(str(data.get("base", "")))


def _with_train_overrides(cfg: Any, train_overrides: dict[str, Any]) -> Any:
    if not train_overrides:
        return cfg
    return type(cfg).from_dict(_merge(cfg.to_dict(), {"train": train_overrides}), "command-line overrides")


def run_config_from_dump(data: dict[str, Any], where: str) -> Any:
    """A run's own JSON dump (config.json, run_config.json) as the config it was trained with (either family)."""
    if _is_sd_data(data):
        from reposedm.sd.config import SDRunConfig

        return SDRunConfig.from_dict(data, where)
    return RunConfig.from_dict(upgrade_run_dump(data), where)


# Keys added after runs were written, with the reading those runs were trained and sampled with (a run's own JSON
# dump is read with these; a new default must never change what an existing run means).
_LEGACY_RUN_DEFAULTS: dict[tuple[str, ...], Any] = {("model", "guidance", "mask_from"): "reference",
                                                    ("model", "pose_encoding"): "learned",
                                                    ("model", "rpa_first_flow"): "zero",
                                                    ("model", "rpa_warp"): "latent"}


def upgrade_run_dump(data: dict[str, Any]) -> dict[str, Any]:
    """A run's JSON config (config.json, run_config.json) from before a key existed, with that key's old reading."""
    out = json.loads(json.dumps(data))
    for path, value in _LEGACY_RUN_DEFAULTS.items():
        node = out
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and path[-1] not in node:
            node[path[-1]] = value
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if key == "base":
            continue
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _unknown(data: dict[str, Any], known: set[str], where: str) -> None:
    check_keys(data, known, where, ConfigError, list_known=True)


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    _unknown(data, {f.name for f in fields(cls)}, where)
    defaults = cls()
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value, default = data[f.name], getattr(defaults, f.name)
        if f.name == "guidance":
            value = _build(GuidanceConfig, value or {}, f"{where}.guidance")
        elif isinstance(default, tuple):
            value = _tuple(value, default, f"{where}.{f.name}")
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{where}.{f.name}: expected true/false, got {value!r}")
        elif isinstance(default, (int, float)):
            if isinstance(default, float) and isinstance(value, str):
                value = _float_text(value, f"{where}.{f.name}")  # YAML 1.1 reads `1e-4` as a string
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{where}.{f.name}: expected a number, got {value!r}")
            if isinstance(default, int) and not isinstance(default, bool) and value != int(value):
                raise ConfigError(f"{where}.{f.name}: expected an integer, got {value!r}")
            value = type(default)(value)
        elif isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"{where}.{f.name}: expected a string, got {value!r}")
        values[f.name] = value
    return cls(**values)


def _float_text(value: str, where: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value  # refused below with the key named


def _tuple(value: Any, default: tuple, where: str) -> tuple:
    """A list field: its items must have the default's item type (ints stay ints), and fixed-length pairs
    keep their length."""
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: expected a list, got {value!r}")
    kind = type(default[0]) if default else int
    out = []
    for item in value:
        if kind is bool:
            ok = isinstance(item, bool)
        elif kind is int:
            ok = isinstance(item, int) and not isinstance(item, bool)
        else:
            item = _float_text(item, where) if isinstance(item, str) else item
            ok = isinstance(item, (int, float)) and not isinstance(item, bool)
        if not ok:
            raise ConfigError(f"{where}: expected a list of {kind.__name__} values, got {list(value)!r}")
        out.append(kind(item))
    if where.endswith((".resolution", ".adam_betas")) and len(out) != 2:
        raise ConfigError(f"{where}: expected 2 values, got {list(value)!r}")
    return tuple(out)


def _choice(where: str, value: Any, allowed: tuple[Any, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, allowed))}")


def validate(cfg: RunConfig, where: str = "config") -> None:
    """Refuse configs the model cannot be built from, naming the key and the numbers."""
    m, t, g = cfg.model, cfg.train, cfg.model.guidance
    _choice(f"{where}: model.variant", m.variant, VARIANTS)
    _choice(f"{where}: model.latent", m.latent, ("pixel", "vae"))
    _choice(f"{where}: model.pose_renderer", m.pose_renderer, ("heatmap18", "pidm20", "cfld21", "skeleton-rgb"))
    _choice(f"{where}: model.cfg_drop", m.cfg_drop, ("source", "both"))
    _choice(f"{where}: model.pose_encoding", m.pose_encoding, ("vae", "learned"))
    _choice(f"{where}: model.rpa_first_flow", m.rpa_first_flow, ("mapformer", "zero"))
    _choice(f"{where}: model.rpa_warp", m.rpa_warp, ("image", "latent"))
    if m.rpa_warp == "image" and m.latent != "vae":
        raise ConfigError(f"{where}: model.rpa_warp 'image' re-encodes the warped source with the VAE: it needs "
                          "latent: vae (in pixel space the latent warp is the image warp: use rpa_warp: latent)")
    if m.pose_encoding == "vae" and (m.latent != "vae" or m.pose_renderer != "skeleton-rgb"
                                     or m.pose_embed_channels != m.latent_channels):
        raise ConfigError(f"{where}: model.pose_encoding 'vae' encodes an RGB pose image with the autoencoder: it "
                          f"needs latent: vae, pose_renderer: skeleton-rgb and pose_embed_channels: "
                          f"{4 if m.latent == 'vae' else m.latent_channels} (got latent {m.latent!r}, renderer "
                          f"{m.pose_renderer!r}, pose_embed_channels {m.pose_embed_channels}); or use pose_encoding: "
                          "learned")
    _choice(f"{where}: model.prediction_type", m.prediction_type, ("epsilon", "sample", "v_prediction"))
    _choice(f"{where}: model.guidance.field", g.field, ("heatmaps", "features"))
    _choice(f"{where}: model.guidance.reference", g.reference, ("keypoints", "target-image"))
    _choice(f"{where}: model.guidance.mask_from", g.mask_from, ("generated", "reference"))
    _choice(f"{where}: model.guidance.train_mode", g.train_mode, ("second-order", "first-order", "off"))
    _choice(f"{where}: model.guidance.sample_grad", g.sample_grad, ("unet", "tweedie"))
    _choice(f"{where}: train.mixed_precision", t.mixed_precision, ("auto", "no", "bf16", "fp16"))
    _choice(f"{where}: train.lr_schedule", t.lr_schedule, ("constant", "cosine"))
    if g.enabled and m.variant != "full":
        raise ConfigError(f"{where}: model.guidance.enabled is only for variant 'full' (b1/b2 are the "
                          f"ablations without it), got variant {m.variant!r}")
    if g.estimator_weights is not None and not isinstance(g.estimator_weights, str):
        raise ConfigError(f"{where}: model.guidance.estimator_weights must be a file path, got "
                          f"{g.estimator_weights!r}")
    if g.field == "features" and g.reference == "keypoints":
        raise ConfigError(f"{where}: guidance.field 'features' needs reference 'target-image' (keypoints "
                          "give heatmaps, not backbone features)")
    if len(m.resolution) != 2 or min(m.resolution) < 8:
        raise ConfigError(f"{where}: model.resolution must be [H, W] with both >= 8, got {list(m.resolution)}")
    levels = len(m.block_out_channels)
    if levels < 1:
        raise ConfigError(f"{where}: model.block_out_channels is empty")
    if len(m.cross_attention_levels) != levels:
        raise ConfigError(f"{where}: model.cross_attention_levels has {len(m.cross_attention_levels)} entries "
                          f"for {levels} block_out_channels")
    h, w = m.resolution
    if h % m.latent_factor or w % m.latent_factor:
        raise ConfigError(f"{where}: model.resolution {h}x{w} is not divisible by the autoencoder's factor "
                          f"{m.latent_factor}")
    lh, lw = m.latent_size
    down = 2 ** (levels - 1)
    if lh < down or lw < down:
        raise ConfigError(f"{where}: latent size {lh}x{lw} is smaller than the U-Net's total downsampling "
                          f"{down} ({levels} levels); use fewer levels or a larger resolution")
    if m.cond_downsample not in (1, 2, 4, 8) or lh % m.cond_downsample or lw % m.cond_downsample:
        raise ConfigError(f"{where}: model.cond_downsample must be 1, 2, 4 or 8 and divide the latent size "
                          f"{lh}x{lw}, got {m.cond_downsample}")
    for c in m.block_out_channels:
        if c <= 0 or c % m.norm_num_groups:
            raise ConfigError(f"{where}: block_out_channels {list(m.block_out_channels)} must be positive "
                              f"multiples of norm_num_groups {m.norm_num_groups}")
        if any(m.cross_attention_levels) and c % m.attention_head_dim:
            raise ConfigError(f"{where}: block_out_channels {c} is not a multiple of attention_head_dim "
                              f"{m.attention_head_dim}")
    if m.cond_dim % m.rpa_heads or m.cond_dim % 8:
        raise ConfigError(f"{where}: model.cond_dim {m.cond_dim} must be a multiple of 8 and of rpa_heads "
                          f"{m.rpa_heads}")
    positive = {"model.rpa_iterations": m.rpa_iterations, "model.rpa_depth": m.rpa_depth,
                "model.num_train_timesteps": m.num_train_timesteps, "model.pose_embed_channels":
                m.pose_embed_channels, "train.batch_size": t.batch_size, "train.grad_accum": t.grad_accum,
                "train.max_steps": t.max_steps, "train.checkpoint_every": t.checkpoint_every,
                "train.keep_checkpoints": t.keep_checkpoints, "train.log_every": t.log_every,
                "train.sample_steps": t.sample_steps, "train.num_samples": t.num_samples, "train.lr": t.lr,
                "model.guidance.estimator_scale": g.estimator_scale}  # an integer: _build checks the type
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{where}: {key} must be positive, got {value}")
    if m.rpa_radius < 0 or any(k < 1 for k in m.rpa_kernel_sizes):
        raise ConfigError(f"{where}: model.rpa_radius must be >= 0 and rpa_kernel_sizes >= 1")
    if not 0 < m.beta_start < m.beta_end < 1:
        raise ConfigError(f"{where}: need 0 < beta_start < beta_end < 1, got {m.beta_start}, {m.beta_end}")
    for key, value in {"model.cond_dropout": m.cond_dropout, "train.ema_decay": t.ema_decay}.items():
        if not 0 <= value < 1:
            raise ConfigError(f"{where}: {key} must be in [0, 1), got {value}")
    if t.batch_size % t.grad_accum:
        raise ConfigError(f"{where}: train.batch_size {t.batch_size} is not divisible by grad_accum {t.grad_accum}")
    if min(t.warmup_steps, t.keep_every, t.sample_every, t.num_workers, t.seed, t.ema_start) < 0:
        raise ConfigError(f"{where}: warmup_steps, keep_every, sample_every, num_workers, seed, ema_start "
                          "must be >= 0")
