"""RePoseDMPipeline: a diffusers `DiffusionPipeline` around `reposedm.sampling.sample`.

Components: `model` (RePoseDMModel), `scheduler` (any diffusers scheduler on the training schedule) and
`vae` (AutoencoderKL, or None in pixel space). `save_pretrained` writes each as safetensors + JSON;
`from_pretrained` rebuilds them (reposedm must be importable: model_index.json names `reposedm`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers import AutoencoderKL, DiffusionPipeline, SchedulerMixin

from reposedm.diffusion import Schedule
from reposedm.guidance import PoseField
from reposedm.models.network import RePoseDMModel
from reposedm.sampling import generators_for, sample


@dataclass
class RePoseDMOutput:
    images: torch.Tensor  # (B, 3, H, W) in [0, 1]
    warped: list[torch.Tensor] = field(default_factory=list)  # decoded W(I_S; F^n), n = 1..N (fig. 9)
    pose_field: list[float] = field(default_factory=list)


class RePoseDMPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "model->vae"
    _optional_components = ["vae"]

    def __init__(self, model: RePoseDMModel, scheduler: SchedulerMixin, vae: AutoencoderKL | None = None) -> None:
        super().__init__()
        if isinstance(vae, (list, tuple)) and not any(vae):  # diffusers reloads a None component as [None, None]
            vae = None
        self.register_modules(model=model, scheduler=scheduler, vae=vae)

    # ------------------------------------------------------------------------------ model space <-> images

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor) if self.vae is not None else 1.0

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> model space (VAE posterior mean x scaling factor, or [-1, 1] pixels)."""
        x = images * 2 - 1
        if self.vae is None:
            return x
        return self.vae.encode(x.to(self.vae.dtype)).latent_dist.mean * self.scaling_factor

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Model space -> images in [0, 1], differentiable (not clamped: guidance needs the gradient)."""
        x = latents if self.vae is None else self.vae.decode(latents.to(self.vae.dtype) / self.scaling_factor).sample
        return (x + 1) / 2

    # ------------------------------------------------------------------------------------------ sampling

    @torch.no_grad()
    def __call__(self, source_images: torch.Tensor, pose_maps: torch.Tensor, *, num_inference_steps: int = 50,
                 guidance_scale: float = 2.0, pose_guidance_scale: float = 0.0,
                 pose_field: PoseField | None = None, target_xy: torch.Tensor | None = None,
                 target_visible: torch.Tensor | None = None, sample_grad: str = "unet",
                 generator: torch.Generator | Sequence[torch.Generator] | None = None, seed: int = 0,
                 indices: Sequence[int] | None = None, return_intermediates: bool = False,
                 callback: Any = None) -> RePoseDMOutput:
        """Generate the source person in the target poses.

        Args:
            source_images: (B, 3, H, W) in [0, 1].
            pose_maps: (B, P, H, W) rendered target poses (the model's `pose_renderer`).
            guidance_scale: w_c of classifier-free guidance (eq. 16).
            pose_guidance_scale: eta of the pose-field gradient (eq. 19); needs `pose_field` and, for the
                keypoint reference, `target_xy` / `target_visible` in the estimator's joint order.
            generator: one generator per image; default: `generators_for(seed, indices)` (image k depends
                only on the seed and k).
            return_intermediates: also decode the RPA's warped sources (paper fig. 9).
        """
        device = self.model.device
        source_images = source_images.to(device, self.model.dtype)
        pose_maps = pose_maps.to(device, self.model.dtype)
        b = source_images.shape[0]
        if generator is None:
            generator = generators_for(seed, indices if indices is not None else range(b), device)
        elif isinstance(generator, torch.Generator):
            generator = [generator] * b if b == 1 else _split_generator(generator, b, device)
        source = self.encode_images(source_images)
        schedule = Schedule.linear(self.scheduler.config.num_train_timesteps, self.scheduler.config.beta_start,
                                   self.scheduler.config.beta_end)
        reference = None
        if pose_guidance_scale != 0.0:
            if pose_field is None:
                raise ValueError("pose_guidance_scale needs a pose_field (reposedm.guidance.PoseField)")
            reference = pose_field.reference(target_xy=None if target_xy is None else target_xy.to(device),
                                             target_visible=None if target_visible is None else
                                             target_visible.to(device), image_size=tuple(source_images.shape[-2:]))
        out = sample(self.model, self.scheduler, source, pose_maps, generators=generator,
                     num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, schedule=schedule,
                     pose_field=pose_field, field_reference=reference, pose_guidance_scale=pose_guidance_scale,
                     sample_grad=sample_grad, decode=self.decode_latents, return_intermediates=return_intermediates,
                     callback=callback)
        images = self.decode_latents(out.latents).clamp(0, 1).float()
        warped = [self.decode_latents(w).clamp(0, 1).float() for w in out.warped]
        return RePoseDMOutput(images, warped, out.pose_field)


def _split_generator(generator: torch.Generator, n: int, device: torch.device) -> list[torch.Generator]:
    seeds = torch.randint(0, 2**62, (n,), generator=generator).tolist()
    return [torch.Generator(device).manual_seed(s) for s in seeds]
