"""RePoseDM's two trained parts as diffusers models: the condition encoder and the U-Net.

Notation (paper sec. 3): y_t -> `latents`, eps_theta -> `noise_pred`, I_S -> `source` (in model space:
VAE latent or pixels in [-1, 1]), P -> `pose_map` (rendered target pose at image resolution), F_S^N ->
`Condition.tokens` (cross-attention), encoded P -> `Condition.pose_embed` (concatenated with y_t).

`ConditionEncoder` holds everything before the U-Net (pose encoder, B1 texture encoder or RPA, token positions,
null tokens); the U-Net is a plain diffusers `UNet2DConditionModel`, so a pipeline has it as its own `unet`
component (swappable, LoRA-able). `RePoseDMModel` is the training-time module holding both (`condition_encoder` +
`unet`), saved as one safetensors file per checkpoint; `Denoiser` composes the two pipeline components into the
same sampling interface without copying weights.

The condition depends on the source and the target pose only, never on t, so samplers compute it once
per image (`encode_condition`) and call `denoise` at every step.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.resnet import ResnetBlock2D

from reposedm.config import ModelConfig
from reposedm.models.texture import PoseEncoder, TextureEncoder


@dataclass
class Condition:
    """Everything the denoiser needs besides y_t and t, computed once per sample."""

    tokens: torch.Tensor  # (B, L, D) texture tokens (B1 encoder or F_S^N of the RPA)
    pose_embed: torch.Tensor  # (B, P, h, w) encoded target pose on the latent grid
    flow: torch.Tensor | None = None  # (B, 2, h, w) accumulated RPA flow F^N (b2/full)
    warped: list[torch.Tensor] = field(default_factory=list)  # W(I_S; F^n), n = 1..N (paper fig. 9)

    def cat(self, other: Condition) -> Condition:
        """Batch-concatenate (the conditional and unconditional halves of CFG)."""
        return Condition(torch.cat([self.tokens, other.tokens]), torch.cat([self.pose_embed, other.pose_embed]))


def zero_init_residuals(unet: UNet2DConditionModel) -> None:
    """Start every ResNet block as the identity and the output at 0, as improved DDPM / guided-diffusion (the
    code base of PIDM) do with `zero_module`; `model.zero_init`, off by default, on in the `demo` size
    (docs/model.md has the measurements). The attention output projections keep diffusers' init."""
    for module in unet.modules():
        if isinstance(module, ResnetBlock2D):
            nn.init.zeros_(module.conv2.weight)
            nn.init.zeros_(module.conv2.bias)
    nn.init.zeros_(unet.conv_out.weight)
    nn.init.zeros_(unet.conv_out.bias)


def build_unet(*, latent_channels: int, latent_size: tuple[int, int], pose_embed_channels: int,
               block_out_channels: tuple[int, ...], cross_attention_levels: tuple[bool, ...], layers_per_block: int,
               attention_head_dim: int, norm_num_groups: int, cond_dim: int, learned_variance: bool,
               zero_init: bool) -> UNet2DConditionModel:
    """The denoiser: y_t concatenated with the encoded pose in, eps (and the variance interpolation v) out."""
    down = tuple("CrossAttnDownBlock2D" if c else "DownBlock2D" for c in cross_attention_levels)
    up = tuple("CrossAttnUpBlock2D" if c else "UpBlock2D" for c in reversed(cross_attention_levels))
    unet = UNet2DConditionModel(
        sample_size=tuple(latent_size), in_channels=latent_channels + pose_embed_channels,
        out_channels=latent_channels * (2 if learned_variance else 1), block_out_channels=tuple(block_out_channels),
        down_block_types=down, up_block_types=up, mid_block_type="UNetMidBlock2DCrossAttn",
        layers_per_block=layers_per_block, cross_attention_dim=cond_dim, attention_head_dim=attention_head_dim,
        norm_num_groups=norm_num_groups)
    if zero_init:
        zero_init_residuals(unet)
    return unet


def denoise_with(unet: nn.Module, latents: torch.Tensor, timesteps: torch.Tensor, cond: Condition) -> torch.Tensor:
    """eps_theta (and the variance interpolation v when learned): (B, C or 2C, h, w)."""
    x = torch.cat([latents, cond.pose_embed.to(latents.dtype)], dim=1)
    return unet(x, timesteps, encoder_hidden_states=cond.tokens.to(latents.dtype)).sample


class ConditionEncoder(ModelMixin, ConfigMixin):
    """I_S and P -> the U-Net's condition: texture tokens (B1 encoder or RPA F_S^N) + the encoded target pose.

    A pipeline component of its own (`condition_encoder`), saved as config.json + safetensors.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        variant: str = "full",
        latent_channels: int = 3,
        latent_size: tuple[int, int] = (32, 22),
        latent_factor: int = 1,
        pose_channels: int = 20,
        pose_embed_channels: int = 4,
        cond_dim: int = 32,
        cond_downsample: int = 1,
        cfg_drop: str = "source",
        rpa_iterations: int = 5,
        rpa_radius: int = 3,
        rpa_kernel_sizes: tuple[int, ...] = (4, 2),
        rpa_depth: int = 1,
        rpa_heads: int = 4,
        pose_encoding: str = "learned",
        rpa_first_flow: str = "zero",
        rpa_warp: str = "latent",
    ) -> None:
        super().__init__()
        # Registration order = RePoseDMModel's before the split (token_pos, null_tokens, pose_encoder,
        # texture/alignment, then the U-Net): same init RNG draws and the same parameter order, so optimizer and
        # EMA states of runs written by the older layout still line up.
        # pose_encoding "vae" (the paper): P arrives VAE-encoded (F_T, latent_channels on the latent grid) and is
        # concatenated with y_t as it is; "learned": a conv encoder of the rendered map (pose_channels, image grid).
        pose_in = latent_channels if pose_encoding == "vae" else pose_channels
        self.pose_encoder = nn.Identity() if pose_encoding == "vae" else PoseEncoder(
            pose_channels, pose_embed_channels, latent_factor)
        if variant == "b1":
            self.texture = TextureEncoder(latent_channels, cond_dim, cond_downsample)
        else:
            from reposedm.models.alignment import RecurrentPoseAlignment

            # rpa_first_flow "mapformer" (the paper): F^0 = M(F_T, F_S) is one more pass of the same modules from
            # the zero flow, so M is applied N + 1 times; "zero": F^0 = 0, N passes
            passes = rpa_iterations + (1 if rpa_first_flow == "mapformer" else 0)
            self.alignment = RecurrentPoseAlignment(
                latent_channels, pose_in, cond_dim, num_iterations=passes, radius=rpa_radius,
                kernel_sizes=tuple(rpa_kernel_sizes), depth=rpa_depth, heads=rpa_heads, downsample=cond_downsample)
        h, w = latent_size
        num_tokens = (h // cond_downsample) * (w // cond_downsample)
        # Learned positions: cross-attention is otherwise blind to where a texture token came from.
        self.token_pos = nn.Parameter(torch.zeros(1, num_tokens, cond_dim))
        # The unconditional branch of classifier-free guidance attends to these instead (eq. 16).
        self.null_tokens = nn.Parameter(torch.zeros(1, 1, cond_dim))

    def _check(self, source: torch.Tensor, pose_map: torch.Tensor) -> None:
        cfg = self.config
        h, w = cfg.latent_size
        if source.ndim != 4 or tuple(source.shape[1:]) != (cfg.latent_channels, h, w):
            raise ValueError(f"source must be (B, {cfg.latent_channels}, {h}, {w}) in model space, "
                             f"got {tuple(source.shape)}")
        if cfg.pose_encoding == "vae":  # F_T: the VAE latent of the rendered pose
            want = (cfg.latent_channels, h, w)
        else:
            want = (cfg.pose_channels, h * cfg.latent_factor, w * cfg.latent_factor)
        if pose_map.ndim != 4 or tuple(pose_map.shape[1:]) != want:
            what = "the VAE-encoded pose F_T" if cfg.pose_encoding == "vae" else "the rendered pose map"
            raise ValueError(f"pose_map must be {what}, (B, {', '.join(map(str, want))}), got {tuple(pose_map.shape)}")
        if pose_map.shape[0] != source.shape[0]:
            raise ValueError(f"source and pose_map batch sizes differ: {source.shape[0]} vs {pose_map.shape[0]}")

    def forward(self, source: torch.Tensor, pose_map: torch.Tensor, *, drop: torch.Tensor | None = None,
                return_intermediates: bool = False, source_image: torch.Tensor | None = None,
                encode_image: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Condition:
        """Texture tokens (B1 encoder or RPA F_S^N) and the encoded target pose.

        Args:
            source: (B, C, h, w) source image in model space.
            pose_map: (B, P, H, W) target pose map at image resolution (or F_T, `pose_encoding: vae`).
            drop: (B,) bool; True replaces that item's condition by the unconditional one (CFG dropout).
            return_intermediates: keep W(I_S; F^n) for every RPA iteration.
            source_image, encode_image: the source in [0, 1] and the differentiable VAE encoder (images in [0, 1] ->
                model space), which `rpa_warp: image` (eq. 9) needs.
        """
        self._check(source, pose_map)
        image_warp = self.config.variant != "b1" and self.config.rpa_warp == "image"
        if image_warp and (source_image is None or encode_image is None):
            raise ValueError("rpa_warp 'image' (eq. 9) re-encodes the warped source image: pass source_image and "
                             "encode_image")
        pose_embed = self.pose_encoder(pose_map)
        flow, warped = None, []
        if self.config.variant == "b1":
            feats = self.texture(source)
        else:
            pose_small = pose_map
            if self.config.latent_factor > 1 and self.config.pose_encoding != "vae":  # RPA works on the latent grid
                pose_small = F.interpolate(pose_map, size=tuple(source.shape[-2:]), mode="area")
            extra = {"source_image": source_image, "encode_image": encode_image} if image_warp else {}
            out = self.alignment(source, pose_small, return_intermediates=return_intermediates, **extra)
            feats, flow, warped = out.source_feats, out.flow, out.warped
        tokens = feats.flatten(2).transpose(1, 2) + self.token_pos
        if drop is not None:
            keep = (~drop).to(tokens.dtype)
            tokens = tokens * keep[:, None, None] + self.null_tokens * (1 - keep)[:, None, None]
            if self.config.cfg_drop == "both":
                pose_embed = pose_embed * keep[:, None, None, None]
        return Condition(tokens, pose_embed, flow, warped)

    def unconditional(self, cond: Condition) -> Condition:
        """The CFG unconditional branch for a computed condition (no second RPA pass)."""
        tokens = self.null_tokens.expand_as(cond.tokens)
        pose_embed = cond.pose_embed if self.config.cfg_drop == "source" else torch.zeros_like(cond.pose_embed)
        return Condition(tokens, pose_embed)


class DenoiserSteps:
    """What `reposedm.sampling.sample` calls, for any object with a `condition_encoder` and a `unet`: the training
    module (`RePoseDMModel`) and the pipeline's components (`Denoiser`) share it."""

    condition_encoder: ConditionEncoder
    unet: nn.Module

    @property
    def latent_channels(self) -> int:
        return int(self.condition_encoder.config.latent_channels)

    def encode_condition(self, source: torch.Tensor, pose_map: torch.Tensor, *, drop: torch.Tensor | None = None,
                         return_intermediates: bool = False, **image_warp: Any) -> Condition:
        """`ConditionEncoder.forward`: texture tokens and the encoded target pose."""
        return self.condition_encoder(source, pose_map, drop=drop, return_intermediates=return_intermediates,
                                      **image_warp)

    def unconditional(self, cond: Condition) -> Condition:
        """The CFG unconditional branch for a computed condition (no second RPA pass)."""
        return self.condition_encoder.unconditional(cond)

    def denoise(self, latents: torch.Tensor, timesteps: torch.Tensor, cond: Condition) -> torch.Tensor:
        """eps_theta (and the variance interpolation v when learned): (B, C or 2C, h, w)."""
        return denoise_with(self.unet, latents, timesteps, cond)


class Denoiser(DenoiserSteps):
    """A condition encoder and a U-Net seen as one denoiser.

    Holds references, not copies: the pipeline's components are used as they are (a swapped or LoRA-patched
    `unet` is what samples)."""

    def __init__(self, condition_encoder: ConditionEncoder, unet: nn.Module) -> None:
        self.condition_encoder = condition_encoder
        self.unet = unet


# Checkpoints written before the condition encoder became its own module hold its tensors at the top level.
LEGACY_PREFIXES = ("pose_encoder.", "texture.", "alignment.")
LEGACY_NAMES = ("token_pos", "null_tokens")


def is_legacy_key(key: str) -> bool:
    return key in LEGACY_NAMES or key.startswith(LEGACY_PREFIXES)


def upgrade_legacy_state_dict(state_dict: dict[str, torch.Tensor]) -> bool:
    """Rename an older-layout RePoseDMModel state dict in place (`pose_encoder.*` -> `condition_encoder.pose_encoder.*`,
    ...; `unet.*` unchanged). Returns whether it was one; a dict already in the current layout is left alone."""
    if any(k.startswith("condition_encoder.") for k in state_dict):
        return False
    old = [k for k in state_dict if is_legacy_key(k)]
    for key in old:
        state_dict[f"condition_encoder.{key}"] = state_dict.pop(key)
    return bool(old)


class RePoseDMModel(DenoiserSteps, ModelMixin, ConfigMixin):
    """B1 / B2 / full RePoseDM for training: `condition_encoder` + `unet` (`save_pretrained` as safetensors).

    Older checkpoints (condition tensors at the top level) load through `upgrade_legacy_state_dict`.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        variant: str = "full",
        latent_channels: int = 3,
        latent_size: tuple[int, int] = (32, 22),
        latent_factor: int = 1,
        pose_channels: int = 20,
        pose_embed_channels: int = 4,
        block_out_channels: tuple[int, ...] = (32, 64),
        cross_attention_levels: tuple[bool, ...] = (False, True),
        layers_per_block: int = 1,
        attention_head_dim: int = 8,
        norm_num_groups: int = 8,
        cond_dim: int = 32,
        cond_downsample: int = 1,
        cfg_drop: str = "source",
        rpa_iterations: int = 5,
        rpa_radius: int = 3,
        rpa_kernel_sizes: tuple[int, ...] = (4, 2),
        rpa_depth: int = 1,
        rpa_heads: int = 4,
        learned_variance: bool = True,
        zero_init: bool = False,
        pose_encoding: str = "learned",
        rpa_first_flow: str = "zero",
        rpa_warp: str = "latent",
    ) -> None:
        super().__init__()
        self.condition_encoder = ConditionEncoder(
            variant=variant, latent_channels=latent_channels, latent_size=tuple(latent_size),
            latent_factor=latent_factor, pose_channels=pose_channels, pose_embed_channels=pose_embed_channels,
            cond_dim=cond_dim, cond_downsample=cond_downsample, cfg_drop=cfg_drop, rpa_iterations=rpa_iterations,
            rpa_radius=rpa_radius, rpa_kernel_sizes=tuple(rpa_kernel_sizes), rpa_depth=rpa_depth, rpa_heads=rpa_heads,
            pose_encoding=pose_encoding, rpa_first_flow=rpa_first_flow, rpa_warp=rpa_warp)
        self.unet = build_unet(
            latent_channels=latent_channels, latent_size=tuple(latent_size), pose_embed_channels=pose_embed_channels,
            block_out_channels=tuple(block_out_channels), cross_attention_levels=tuple(cross_attention_levels),
            layers_per_block=layers_per_block, attention_head_dim=attention_head_dim,
            norm_num_groups=norm_num_groups, cond_dim=cond_dim, learned_variance=learned_variance,
            zero_init=zero_init)

    @classmethod
    def from_model_config(cls, cfg: ModelConfig) -> RePoseDMModel:
        return cls(
            variant=cfg.variant, latent_channels=cfg.latent_channels, latent_size=cfg.latent_size,
            latent_factor=cfg.latent_factor, pose_channels=cfg.pose_channels,
            pose_embed_channels=cfg.pose_embed_channels, block_out_channels=cfg.block_out_channels,
            cross_attention_levels=cfg.cross_attention_levels, layers_per_block=cfg.layers_per_block,
            attention_head_dim=cfg.attention_head_dim, norm_num_groups=cfg.norm_num_groups, cond_dim=cfg.cond_dim,
            cond_downsample=cfg.cond_downsample, cfg_drop=cfg.cfg_drop, rpa_iterations=cfg.rpa_iterations,
            rpa_radius=cfg.rpa_radius, rpa_kernel_sizes=cfg.rpa_kernel_sizes, rpa_depth=cfg.rpa_depth,
            rpa_heads=cfg.rpa_heads, learned_variance=cfg.learned_variance, zero_init=cfg.zero_init,
            pose_encoding=cfg.pose_encoding, rpa_first_flow=cfg.rpa_first_flow, rpa_warp=cfg.rpa_warp)

    def _fix_state_dict_keys_on_load(self, state_dict: OrderedDict) -> None:
        """diffusers' hook between reading a (single-file) checkpoint and loading it: the older layout's keys."""
        super()._fix_state_dict_keys_on_load(state_dict)
        upgrade_legacy_state_dict(state_dict)

    # The condition encoder's parts under their former names (tests, notebooks and hooks written against the
    # older layout keep working; the state dict uses the new names).
    @property
    def pose_encoder(self) -> nn.Module:
        return self.condition_encoder.pose_encoder

    @property
    def texture(self) -> nn.Module:
        return self.condition_encoder.texture

    @property
    def alignment(self) -> nn.Module:
        return self.condition_encoder.alignment

    @property
    def token_pos(self) -> nn.Parameter:
        return self.condition_encoder.token_pos

    @property
    def null_tokens(self) -> nn.Parameter:
        return self.condition_encoder.null_tokens

    def forward(self, latents: torch.Tensor, timesteps: torch.Tensor, source: torch.Tensor, pose_map: torch.Tensor,
                drop: torch.Tensor | None = None, **image_warp: Any) -> torch.Tensor:
        return self.denoise(latents, timesteps, self.encode_condition(source, pose_map, drop=drop, **image_warp))
