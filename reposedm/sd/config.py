"""Configs of RePoseSD (paper sec. 4.4) and its baseline HumanSD: Stable Diffusion 2.1 base fine-tuned on
text-image-pose data, with (`reposesd`) or without (`humansd`) the pose field of eq. 15 / 17.

Named configs are `{size}-sd-{variant}`: `humanart-sd-humansd`, `humanart-sd-reposesd` (512x512, SD 2.1's real
architecture and weights) and `tiny-sd-*` (a few-channel U-Net, VAE and CLIP text model built from these configs
with random weights, for tests and CPU). A YAML file may start from one with `base: NAME`. The run's dump carries
`family: reposesd`, which is how a run folder's config is told from a RePoseDM one. Training settings are
RePoseDM's `TrainConfig`, the pose field RePoseDM's `GuidanceConfig` (the same code computes G).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from reposedm.config import ConfigError, GuidanceConfig, RunConfigBase, _choice, _merge, config_from_tables

FAMILY = "reposesd"
SD_VARIANTS: tuple[str, ...] = ("humansd", "reposesd")
# HumanSD's negative prompt at evaluation (its `eval_humansd.py`); the unconditional branch of CFG at sampling.
HUMANSD_NEGATIVE_PROMPT = ("longbody, lowres, bad anatomy, bad hands, missing fingers, extra digit, fewer digits, "
                           "cropped, worst quality, low quality")


@dataclass(frozen=True)
class SDModelConfig:
    variant: Literal["humansd", "reposesd"] = "humansd"  # a named config or base: sets it with the guidance
    resolution: tuple[int, int] = (512, 512)  # (H, W)
    # "sd21-base": SD 2.1 base from the weights registry (U-Net, VAE, OpenCLIP text encoder, tokenizer);
    # "random": every component built from the architecture keys below with random weights (tiny, tests)
    weights: Literal["sd21-base", "random"] = "sd21-base"
    # U-Net (UNet2DConditionModel), used as written for "random"; "sd21-base" has SD 2.1's own
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    attention_head_dim: tuple[int, ...] = (5, 10, 20, 20)
    norm_num_groups: int = 32
    vae_block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    # text encoder (CLIPTextModel) for "random": hidden size = the U-Net's cross-attention dim
    text_hidden_size: int = 1024
    text_layers: int = 23  # SD 2.x uses OpenCLIP's penultimate layer: 23 of ViT-H's 24
    text_heads: int = 16
    max_prompt_tokens: int = 77
    vae_scaling_factor: float = 0.18215
    # the pose condition: HumanSD's drawn skeleton (posebench.datasets.humansd.pose_image) through the VAE encoder,
    # concatenated with y_t, so the U-Net takes 4 + 4 channels; the new conv_in channels start at zero
    pose_threshold: float = 0.02  # a joint is drawn above this score (HumanSD)
    # SD's schedule: T = 1000, betas linear in sqrt between 0.00085 and 0.012 (diffusers' "scaled_linear")
    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    # text dropout for classifier-free guidance: the prompt is replaced by "" with this probability. HumanSD
    # fine-tunes without it (0) and relies on SD's own unconditional model; the tiny configs, trained from scratch,
    # need it for CFG to mean anything
    text_dropout: float = 0.0
    guidance_scale: float = 9.0  # w of text CFG at sampling (HumanSD's evaluation)
    negative_prompt: str = HUMANSD_NEGATIVE_PROMPT
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)

    # what RePoseDM's shared code reads
    prediction_type: str = "epsilon"
    learned_variance: bool = False
    latent: str = "vae"

    @property
    def latent_factor(self) -> int:
        return 2 ** (len(self.vae_block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return 4

    @property
    def latent_size(self) -> tuple[int, int]:
        return self.resolution[0] // self.latent_factor, self.resolution[1] // self.latent_factor

    @property
    def is_test_size(self) -> bool:
        return max(self.resolution) < 64

    @property
    def cross_attention_dim(self) -> int:
        return self.text_hidden_size


@dataclass(frozen=True)
class SDRunConfig(RunConfigBase):
    model: SDModelConfig
    MODEL: ClassVar[type] = SDModelConfig
    FAMILY: ClassVar[str | None] = FAMILY

    def check(self, where: str) -> None:
        validate_sd(self, where)


_TINY_MODEL: dict[str, Any] = {
    "resolution": (32, 32), "weights": "random", "block_out_channels": (32, 64), "layers_per_block": 1,
    "attention_head_dim": (4, 8), "norm_num_groups": 8, "vae_block_out_channels": (16, 32), "text_hidden_size": 32,
    "text_layers": 2, "text_heads": 2, "max_prompt_tokens": 32, "text_dropout": 0.1, "guidance_scale": 3.0,
    "guidance": {"mask_from": "reference"},
}
_TINY_TRAIN: dict[str, Any] = {
    "batch_size": 2, "max_steps": 20, "ema_decay": 0.9, "checkpoint_every": 10, "keep_checkpoints": 2,
    "keep_every": 0, "log_every": 5, "sample_every": 0, "sample_steps": 4, "num_samples": 2, "num_workers": 0,
    "lr": 1e-4,
}
# HumanSD's fine-tune: lr 5e-6 (its base rate, before Lightning's scale_lr multiplies it by GPUs x batch x
# accumulation), EMA, 512x512; batch 8 per step here (set train.batch_size / grad_accum for the machine).
_HUMANART_TRAIN: dict[str, Any] = {"lr": 5e-6, "batch_size": 8, "max_steps": 100_000, "warmup_steps": 0,
                                   "mixed_precision": "bf16", "gradient_checkpointing": True}
SD_SIZES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "tiny-sd": (_TINY_MODEL, _TINY_TRAIN),
    "humanart-sd": ({}, _HUMANART_TRAIN),
}
_VARIANT_MODEL: dict[str, dict[str, Any]] = {
    "humansd": {"variant": "humansd", "guidance": {"enabled": False}},
    "reposesd": {"variant": "reposesd", "guidance": {"enabled": True}},
}


def sd_config_names() -> list[str]:
    return [f"{size}-{variant}" for size in SD_SIZES for variant in SD_VARIANTS]


def is_sd_name(name: str) -> bool:
    return any(name.startswith(f"{size}-") for size in SD_SIZES) or "-sd-" in name


def named_sd_config(name: str) -> SDRunConfig:
    # the pose field at 512x512 uses RePoseDM's paper estimator (HigherHRNet-W32 on COCO)
    from reposedm.config import config_names

    return config_from_tables(SDRunConfig, name, SD_SIZES, _VARIANT_MODEL, guided="reposesd",
                              test_sizes=("tiny-sd",), what="RePoseSD config", others=config_names())


def sd_config_from_data(data: dict[str, Any], where: str) -> SDRunConfig:
    """A YAML / JSON mapping (optionally `base: NAME` of a named RePoseSD config) as a checked config."""
    if "base" in data:
        data = _merge(named_sd_config(str(data["base"])).to_dict(), data)
    return SDRunConfig.from_dict(data, where)


def validate_sd(cfg: SDRunConfig, where: str = "config") -> None:
    """Refuse configs that cannot be built, naming the key."""
    m, g, t = cfg.model, cfg.model.guidance, cfg.train
    _choice(f"{where}: model.variant", m.variant, SD_VARIANTS)
    _choice(f"{where}: model.weights", m.weights, ("sd21-base", "random"))
    _choice(f"{where}: model.guidance.train_mode", g.train_mode, ("second-order", "first-order", "off"))
    _choice(f"{where}: model.guidance.sample_grad", g.sample_grad, ("unet", "tweedie"))
    _choice(f"{where}: model.guidance.mask_from", g.mask_from, ("generated", "reference"))
    _choice(f"{where}: train.mixed_precision", t.mixed_precision, ("auto", "no", "bf16", "fp16"))
    _choice(f"{where}: train.lr_schedule", t.lr_schedule, ("constant", "cosine"))
    if m.prediction_type != "epsilon" or m.learned_variance or m.latent != "vae":
        raise ConfigError(f"{where}: RePoseSD predicts eps with a fixed variance in SD's latent space "
                          "(prediction_type, learned_variance and latent cannot be changed)")
    if g.enabled != (m.variant == "reposesd"):
        raise ConfigError(f"{where}: model.guidance.enabled is {g.enabled} for variant {m.variant!r}: the pose "
                          "field is what RePoseSD adds to HumanSD (reposesd: true, humansd: false)")
    if g.reference != "keypoints" or g.field != "heatmaps":
        raise ConfigError(f"{where}: RePoseSD's pose field compares heatmaps with the target keypoints' "
                          "(guidance.reference: keypoints, field: heatmaps)")
    if m.weights == "sd21-base" and (m.block_out_channels != SDModelConfig.block_out_channels
                                     or m.text_hidden_size != 1024 or m.vae_block_out_channels != (128, 256, 512, 512)
                                     or m.vae_scaling_factor != 0.18215):
        raise ConfigError(f"{where}: model.weights 'sd21-base' has SD 2.1's own architecture and VAE scaling "
                          "(0.18215); the architecture keys apply to weights: random")
    h, w = m.resolution
    if len(m.resolution) != 2 or h % m.latent_factor or w % m.latent_factor:
        raise ConfigError(f"{where}: model.resolution {list(m.resolution)} must be [H, W] divisible by the VAE's "
                          f"factor {m.latent_factor}")
    down = 2 ** (len(m.block_out_channels) - 1)
    lh, lw = m.latent_size
    if lh % down or lw % down:
        raise ConfigError(f"{where}: latent size {lh}x{lw} is not divisible by the U-Net's downsampling {down}")
    if len(m.attention_head_dim) != len(m.block_out_channels):
        raise ConfigError(f"{where}: model.attention_head_dim needs one entry per block_out_channels level")
    for c in (*m.block_out_channels, *m.vae_block_out_channels):
        if c % m.norm_num_groups:
            raise ConfigError(f"{where}: channel count {c} is not a multiple of norm_num_groups {m.norm_num_groups}")
    if m.text_hidden_size % m.text_heads:
        raise ConfigError(f"{where}: text_hidden_size {m.text_hidden_size} is not divisible by text_heads")
    if not 0 <= m.text_dropout < 1:
        raise ConfigError(f"{where}: model.text_dropout must be in [0, 1), got {m.text_dropout}")
    if not 0 < m.beta_start < m.beta_end < 1:
        raise ConfigError(f"{where}: need 0 < beta_start < beta_end < 1")
    if t.batch_size % t.grad_accum or min(t.batch_size, t.max_steps, t.checkpoint_every, t.log_every) <= 0:
        raise ConfigError(f"{where}: train.batch_size, max_steps, checkpoint_every, log_every must be positive and "
                          "batch_size divisible by grad_accum")
    if t.cache_latents:
        raise ConfigError(f"{where}: train.cache_latents is not supported by RePoseSD yet (it encodes every step)")
