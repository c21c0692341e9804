"""RePoseSDPipeline: text + pose -> image with the fine-tuned SD 2.1 U-Net, as a diffusers `DiffusionPipeline`.

Components: `unet` (UNet2DConditionModel, conv_in over [y_t, pose latent]), `vae`, `text_encoder` (CLIPTextModel),
`tokenizer` (CLIPTokenizer), `scheduler` (any DDPM-family diffusers scheduler on SD's schedule) and `pose_estimator`
(runs trained with the pose field; else None). Sampling is RePoseDM's sampler (`reposedm.sampling.sample`): the
condition is the text embedding (cross-attention tokens) and the pose latent (concatenated with y_t), the CFG
unconditional branch is the negative prompt with the same pose (HumanSD), and the pose gradient enters by eq. 16
after second-order training (re-added once: both branches hold the pose, `sample(unconditional_has_pose=True)`) or
eq. 19 otherwise. Image k uses a generator seeded by
(seed, k), so a batch never changes an image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DiffusionPipeline, SchedulerMixin, UNet2DConditionModel

from reposedm.diffusion import Schedule
from reposedm.guidance import PoseField
from reposedm.models.network import Condition, denoise_with
from reposedm.models.pose_estimator import PoseEstimatorComponent
from reposedm.pipeline import TRAIN_MODES, RePoseDMOutput, RePoseDMPipeline, _none_if_missing, convert_images
from reposedm.sampling import generators_for, pose_guidance_rule_for, sample
from reposedm.sd.components import encode_prompts

SHIM_MODULE = "pipeline_reposesd"
SHIM_SOURCE = '''"""For `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`: the class is
reposedm's RePoseSDPipeline (pip install posebench); this file only names it."""

from reposedm.sd.pipeline import RePoseSDPipeline  # noqa: F401
'''


class TextPoseDenoiser:
    """The U-Net seen by RePoseDM's sampler: `encode_condition(pose_latent, text_tokens)` makes the condition (tokens
    = text embeddings for cross-attention, pose_embed = pose latent for concatenation), `unconditional` swaps in the
    negative prompt's tokens and keeps the pose."""

    latent_channels = 4

    def __init__(self, unet: torch.nn.Module, negative_tokens: torch.Tensor) -> None:
        self.unet = unet
        self.negative_tokens = negative_tokens  # (1, L, D)

    def encode_condition(self, pose_latent: torch.Tensor, text_tokens: torch.Tensor, *,
                         return_intermediates: bool = False) -> Condition:
        return Condition(text_tokens, pose_latent)

    def unconditional(self, cond: Condition) -> Condition:
        tokens = self.negative_tokens.expand(cond.tokens.shape[0], -1, -1).to(cond.tokens.dtype)
        return Condition(tokens, cond.pose_embed)

    def denoise(self, latents: torch.Tensor, timesteps: torch.Tensor, cond: Condition) -> torch.Tensor:
        return denoise_with(self.unet, latents, timesteps, cond)


class RePoseSDPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "text_encoder->unet->vae"
    _optional_components = ["pose_estimator"]

    def __init__(self, unet: UNet2DConditionModel, vae: AutoencoderKL, text_encoder: Any, tokenizer: Any,
                 scheduler: SchedulerMixin, pose_estimator: PoseEstimatorComponent | None = None,
                 guidance_scale: float = 9.0, pose_guidance_scale: float = 0.0, train_mode: str = "off",
                 negative_prompt: str = "", pose_threshold: float = 0.02) -> None:
        super().__init__()
        if train_mode not in TRAIN_MODES:
            raise ValueError(f"train_mode must be one of {', '.join(TRAIN_MODES)}, got {train_mode!r}")
        self.register_modules(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                              scheduler=scheduler, pose_estimator=_none_if_missing(pose_estimator))
        self.register_to_config(guidance_scale=float(guidance_scale), pose_guidance_scale=float(pose_guidance_scale),
                                train_mode=train_mode, negative_prompt=negative_prompt,
                                pose_threshold=float(pose_threshold))

    # the class shim in save_pretrained, and model_index.json read with the class known: as RePoseDMPipeline
    def save_pretrained(self, save_directory: str | Path, *args: Any, **kwargs: Any) -> None:
        DiffusionPipeline.save_pretrained(self, save_directory, *args, **kwargs)
        RePoseDMPipeline._write_shim(Path(save_directory), self.config_name, SHIM_MODULE, SHIM_SOURCE,
                                     type(self).__name__)

    load_config = RePoseDMPipeline.load_config

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> latents (posterior mean x scaling factor)."""
        return self.vae.encode((images * 2 - 1).to(self.vae.dtype)).latent_dist.mean * self.scaling_factor

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> images in [0, 1], differentiable and not clamped (guidance needs the gradient)."""
        return (self.vae.decode(latents.to(self.vae.dtype) / self.scaling_factor).sample + 1) / 2

    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        return encode_prompts(self.tokenizer, self.text_encoder, list(prompts), self.unet.device)

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str], pose_images: torch.Tensor, *, num_inference_steps: int = 50,
                 guidance_scale: float | None = None, negative_prompt: str | None = None,
                 pose_guidance_scale: float | None = None, pose_field: PoseField | None = None,
                 people_xy: torch.Tensor | None = None, people_visible: torch.Tensor | None = None,
                 sample_grad: str | None = None, pose_guidance_rule: str | None = None,
                 generator: Sequence[torch.Generator] | None = None, seed: int = 0,
                 indices: Sequence[int] | None = None, output_type: str = "pt", return_dict: bool = True,
                 callback: Any = None) -> RePoseDMOutput | tuple:
        """Generate one image per (prompt, pose image).

        Args:
            prompts: B prompts (Human-Art's "<scenario>, <caption>").
            pose_images: (B, 3, H, W) in [0, 1], HumanSD's skeleton drawing (`posebench.datasets.humansd.pose_image`).
            guidance_scale: w of text CFG; default the recorded one (9, HumanSD's evaluation).
            negative_prompt: the unconditional branch's text; default the recorded one (HumanSD's).
            pose_guidance_scale: eta of the pose gradient; default the recorded one when the pipeline has a
                `pose_estimator`, else 0. Needs `people_xy` (B, P, 17, 2) and `people_visible` (B, P, 17).
            generator: one per image; default `generators_for(seed, indices)`.
        """
        if len(prompts) != pose_images.shape[0]:
            raise ValueError(f"{len(prompts)} prompts for {pose_images.shape[0]} pose images")
        device, dtype = self.unet.device, self.unet.dtype
        b = len(prompts)
        w = self.config.guidance_scale if guidance_scale is None else guidance_scale
        eta = (float(self.config.pose_guidance_scale) if self.pose_estimator is not None else 0.0) \
            if pose_guidance_scale is None else pose_guidance_scale
        generators = list(generator) if generator is not None else \
            generators_for(seed, indices if indices is not None else range(b), device)
        pose_latent = self.encode_images(pose_images.to(device, dtype)).to(dtype)
        text = self.encode_prompts(prompts).to(dtype)
        negative = self.encode_prompts([self.config.negative_prompt if negative_prompt is None else negative_prompt])
        c = self.scheduler.config
        schedule = Schedule.scaled_linear(c.num_train_timesteps, c.beta_start, c.beta_end)
        reference = None
        if eta != 0.0:
            if pose_field is None:
                if self.pose_estimator is None:
                    raise ValueError("pose_guidance_scale needs a pose_field or a pipeline with a pose_estimator")
                pose_field = self.pose_estimator.pose_field()
            if people_xy is None or people_visible is None:
                raise ValueError("pose guidance needs people_xy and people_visible (the target keypoints)")
            reference = pose_field.reference_of_people(people_xy.to(device), people_visible.to(device),
                                                       tuple(pose_images.shape[-2:]))
        rule = pose_guidance_rule or pose_guidance_rule_for(self.config.train_mode)
        default_grad = self.pose_estimator.guidance_config.sample_grad if self.pose_estimator is not None else "unet"
        out = sample(TextPoseDenoiser(self.unet, negative.to(dtype)), self.scheduler, pose_latent, text,
                     generators=generators, num_inference_steps=num_inference_steps, guidance_scale=w,
                     schedule=schedule, pose_field=pose_field, field_reference=reference, pose_guidance_scale=eta,
                     sample_grad=sample_grad or default_grad, decode=self.decode_latents, pose_guidance_rule=rule,
                     callback=callback, unconditional_has_pose=True)
        images = convert_images(self.decode_latents(out.latents).clamp(0, 1).float(), output_type)
        result = RePoseDMOutput(images, [], out.pose_field)
        return result if return_dict else (result.images, result.warped, result.pose_field)
