"""RePoseDMPipeline: a diffusers `DiffusionPipeline` around `reposedm.sampling.sample`.

Components: `unet` (diffusers UNet2DConditionModel), `condition_encoder` (`ConditionEncoder`: pose encoder, B1
texture encoder or RPA, token positions, null tokens), `scheduler` (any DDPM-family diffusers scheduler on the
training schedule, `reposedm.diffusion.make_scheduler`), `vae` (AutoencoderKL, or None in pixel space) and
`pose_estimator` (`PoseEstimatorComponent`, runs trained with pose guidance; else None). The config records the
run's sampling defaults: w_c (`guidance_scale`), eta (`pose_guidance_scale`) and the guidance `train_mode`.

`save_pretrained` writes each component as safetensors + JSON, plus `pipeline_reposedm.py`, a two-line file that
imports this class, named by model_index.json's `_class_name`: diffusers' convention for a pipeline class outside
diffusers, so `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` finds `RePoseDMPipeline` in a
fresh process (diffusers copies the file into HF_MODULES_CACHE, default ~/.cache/huggingface/modules; set
HF_MODULES_CACHE or HF_HOME where HOME is read-only). `RePoseDMPipeline.from_pretrained(folder)` needs no
`trust_remote_code`: the class is already known, the file is not executed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, SchedulerMixin, UNet2DConditionModel
from diffusers.utils import BaseOutput

from reposedm.diffusion import Schedule
from reposedm.guidance import PoseField
from reposedm.models.network import ConditionEncoder, Denoiser, RePoseDMModel
from reposedm.models.pose_estimator import PoseEstimatorComponent
from reposedm.sampling import generators_for, pose_guidance_rule_for, sample

# The file model_index.json names as the pipeline's module: diffusers imports the class through it.
SHIM_MODULE = "pipeline_reposedm"
SHIM_SOURCE = '''"""For `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`: the class is
reposedm's RePoseDMPipeline (pip install posebench); this file only names it."""

from reposedm.pipeline import RePoseDMPipeline  # noqa: F401
'''
OUTPUT_TYPES = ("pt", "np", "pil")
TRAIN_MODES = ("second-order", "first-order", "off")


@dataclass
class RePoseDMOutput(BaseOutput):
    """`images` (and each entry of `warped`) as `output_type` says: "pt" (B, 3, H, W) float in [0, 1], "np"
    (B, H, W, 3) float32 in [0, 1], "pil" a list of PIL images."""

    images: Any
    warped: list[Any] = field(default_factory=list)  # decoded W(I_S; F^n), n = 1..N (fig. 9)
    pose_field: list[float] = field(default_factory=list)  # mean G per step (guided runs)


def convert_images(images: torch.Tensor, output_type: str) -> Any:
    """(B, 3, H, W) in [0, 1] -> the output type (diffusers' conventions: NHWC float for np, uint8 PIL)."""
    if output_type == "pt":
        return images
    array = images.detach().float().cpu().permute(0, 2, 3, 1).numpy()
    if output_type == "np":
        return array
    from PIL import Image

    return [Image.fromarray(np.round(a * 255).astype(np.uint8)) for a in array]


class RePoseDMPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "condition_encoder->unet->vae"
    _optional_components = ["vae", "pose_estimator"]

    def __init__(self, unet: UNet2DConditionModel, condition_encoder: ConditionEncoder,
                 scheduler: SchedulerMixin, vae: AutoencoderKL | None = None,
                 pose_estimator: PoseEstimatorComponent | None = None, guidance_scale: float = 2.0,
                 pose_guidance_scale: float = 0.0, train_mode: str = "off") -> None:
        super().__init__()
        if isinstance(unet, RePoseDMModel):
            raise TypeError("RePoseDMPipeline takes the components (unet, condition_encoder, scheduler, ...); for a "
                            "training-time RePoseDMModel use RePoseDMPipeline.from_model(model, scheduler, vae)")
        vae, pose_estimator = _none_if_missing(vae), _none_if_missing(pose_estimator)
        if _none_if_missing(scheduler) is None:
            raise ValueError("RePoseDMPipeline needs a scheduler (reposedm.diffusion.make_scheduler)")
        if train_mode not in TRAIN_MODES:
            raise ValueError(f"train_mode must be one of {', '.join(TRAIN_MODES)}, got {train_mode!r}")
        self.register_modules(unet=unet, condition_encoder=condition_encoder, scheduler=scheduler, vae=vae,
                              pose_estimator=pose_estimator)
        self.register_to_config(guidance_scale=float(guidance_scale), pose_guidance_scale=float(pose_guidance_scale),
                                train_mode=train_mode)

    @classmethod
    def from_model(cls, model: RePoseDMModel, scheduler: SchedulerMixin, vae: AutoencoderKL | None = None,
                   **kwargs: Any) -> RePoseDMPipeline:
        """A pipeline over a training-time `RePoseDMModel` (its modules are shared, not copied)."""
        return cls(model.unet, model.condition_encoder, scheduler, vae, **kwargs)

    # ------------------------------------------------------------------------------------------ save / load

    def save_pretrained(self, save_directory: str | Path, *args: Any, **kwargs: Any) -> None:
        """diffusers' save_pretrained, plus the class shim that lets `DiffusionPipeline.from_pretrained` find us."""
        super().save_pretrained(save_directory, *args, **kwargs)
        self._write_shim(Path(save_directory), self.config_name, SHIM_MODULE, SHIM_SOURCE, type(self).__name__)

    @staticmethod
    def _write_shim(folder: Path, config_name: str, module: str, source: str, class_name: str) -> None:
        """`module`.py (the import of the class) and model_index.json's `_class_name` = [module, class]."""
        (folder / f"{module}.py").write_text(source)
        index = folder / config_name
        data = json.loads(index.read_text())
        data["_class_name"] = [module, class_name]
        index.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs: Any) -> RePoseDMPipeline:
        """diffusers' from_pretrained; a run folder not (yet) written as a pipeline is named with the fix."""
        folder = Path(pretrained_model_name_or_path)
        if (folder / "checkpoints").is_dir() and not (folder / cls.config_name).exists():
            from reposedm.checkpoints import CheckpointError

            raise CheckpointError(f"{folder} is a run folder without {cls.config_name} (not written as a diffusers "
                                  "pipeline yet, as runs trained by older versions): write it with "
                                  f"reposedm.write_run_pipeline({str(folder)!r}), or load a checkpoint with "
                                  "reposedm.load_pipeline")
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @classmethod
    def load_config(cls, *args: Any, **kwargs: Any) -> Any:
        """Read model_index.json with `_class_name` as a plain name when the class is known (called on
        RePoseDMPipeline itself): diffusers would otherwise import the shim, which needs `trust_remote_code`."""
        out = super().load_config(*args, **kwargs)
        config = out[0] if isinstance(out, tuple) else out
        if isinstance(config.get("_class_name"), (list, tuple)):
            config["_class_name"] = config["_class_name"][-1]
        return out

    # ------------------------------------------------------------------------------ model space <-> images

    @property
    def denoiser(self) -> Denoiser:
        """The two trained components as the sampler's denoiser (references, so a swapped `unet` samples)."""
        return Denoiser(self.condition_encoder, self.unet)

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

    def default_pose_guidance_rule(self) -> str:
        """The rule matching the recorded training objective: "eps" (eq. 16) after second-order (eq. 15)
        training, else "step" (eq. 19)."""
        return pose_guidance_rule_for(self.config.train_mode)

    # ------------------------------------------------------------------------------------------ sampling

    @torch.no_grad()
    def __call__(self, source_images: torch.Tensor, pose_maps: torch.Tensor, *, num_inference_steps: int = 50,
                 guidance_scale: float | None = None, pose_guidance_scale: float | None = None,
                 pose_field: PoseField | None = None, target_xy: torch.Tensor | None = None,
                 target_visible: torch.Tensor | None = None, sample_grad: str | None = None,
                 pose_guidance_rule: str | None = None,
                 generator: torch.Generator | Sequence[torch.Generator] | None = None, seed: int = 0,
                 indices: Sequence[int] | None = None, return_intermediates: bool = False,
                 output_type: str = "pt", return_dict: bool = True, callback: Any = None) -> RePoseDMOutput | tuple:
        """Generate the source person in the target poses.

        Args:
            source_images: (B, 3, H, W) in [0, 1].
            pose_maps: (B, P, H, W) rendered target poses (the model's `pose_renderer`).
            guidance_scale: w_c of classifier-free guidance (eq. 16); default: the recorded one.
            pose_guidance_scale: eta of the pose-field gradient (eq. 19); default: the recorded one when the
                pipeline has a `pose_estimator`, else 0. Needs `target_xy` / `target_visible` (the estimator's
                joint order) for the keypoint reference, and `pose_field` or the `pose_estimator` component.
            sample_grad: "unet" or "tweedie"; default: the pose estimator's recorded setting, else "unet".
            pose_guidance_rule: "step" (eq. 19) or "eps" (eq. 16); default: `default_pose_guidance_rule()`.
            generator: one generator per image; default: `generators_for(seed, indices)` (image k depends
                only on the seed and k).
            return_intermediates: also decode the RPA's warped sources (paper fig. 9).
            output_type: "pt" (default, tensors), "np" or "pil".
            return_dict: False returns the tuple (images, warped, pose_field), as diffusers pipelines do.
        """
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
        device, dtype = self.unet.device, self.unet.dtype
        source_images = source_images.to(device, dtype)
        pose_maps = pose_maps.to(device, dtype)
        b = source_images.shape[0]
        w_c = self.config.guidance_scale if guidance_scale is None else guidance_scale
        eta = self._default_eta() if pose_guidance_scale is None else pose_guidance_scale
        generator = self._generators(generator, seed, indices, b, device)
        source = self.encode_images(source_images)
        if self.condition_encoder.config.pose_encoding == "vae":  # F_T: the rendered pose through the VAE
            pose_maps = self.encode_images(pose_maps)
        schedule = Schedule.linear(self.scheduler.config.num_train_timesteps, self.scheduler.config.beta_start,
                                   self.scheduler.config.beta_end)
        reference = None
        if eta != 0.0:
            pose_field = pose_field or self._component_pose_field()
            reference = pose_field.reference(target_xy=None if target_xy is None else target_xy.to(device),
                                             target_visible=None if target_visible is None else
                                             target_visible.to(device), image_size=tuple(source_images.shape[-2:]))
        image_warp = self._image_warp_inputs(source_images)
        out = sample(self.denoiser, self.scheduler, source, pose_maps, generators=generator,
                     num_inference_steps=num_inference_steps, guidance_scale=w_c, schedule=schedule,
                     pose_field=pose_field, field_reference=reference, pose_guidance_scale=eta,
                     sample_grad=sample_grad or self._default_sample_grad(), decode=self.decode_latents,
                     return_intermediates=return_intermediates, callback=callback,
                     condition_inputs=image_warp,
                     pose_guidance_rule=pose_guidance_rule or self.default_pose_guidance_rule(),
                     # cfg_drop "source": the unconditional branch keeps P, so eq. 16 re-adds the gradient once
                     unconditional_has_pose=self.condition_encoder.config.cfg_drop == "source")
        images = convert_images(self.decode_latents(out.latents).clamp(0, 1).float(), output_type)
        # the RPA's intermediates are images with the image warp (eq. 9), latents with the latent warp
        warped = [convert_images((w if image_warp else self.decode_latents(w)).clamp(0, 1).float(), output_type)
                  for w in out.warped]
        result = RePoseDMOutput(images, warped, out.pose_field)
        return result if return_dict else (result.images, result.warped, result.pose_field)

    def _image_warp_inputs(self, source_images: torch.Tensor) -> dict[str, Any]:
        """What `rpa_warp: image` (eq. 9) needs: the source image and the VAE encoder (images in [0, 1] -> latents)."""
        cfg = self.condition_encoder.config
        if cfg.variant == "b1" or getattr(cfg, "rpa_warp", "latent") != "image":
            return {}
        return {"source_image": source_images, "encode_image": self.encode_images}

    def _default_eta(self) -> float:
        return float(self.config.pose_guidance_scale) if self.pose_estimator is not None else 0.0

    def _default_sample_grad(self) -> str:
        if self.pose_estimator is not None:
            return self.pose_estimator.guidance_config.sample_grad
        return "unet"

    def _component_pose_field(self) -> PoseField:
        if self.pose_estimator is None:
            raise ValueError("pose_guidance_scale needs a pose_field (reposedm.guidance.PoseField) or a pipeline "
                             "with a pose_estimator component (a run trained with pose guidance)")
        return self.pose_estimator.pose_field()

    @staticmethod
    def _generators(generator: torch.Generator | Sequence[torch.Generator] | None, seed: int,
                    indices: Sequence[int] | None, b: int, device: torch.device) -> list[torch.Generator]:
        if generator is None:
            return generators_for(seed, indices if indices is not None else range(b), device)
        if isinstance(generator, torch.Generator):
            return [generator] * b if b == 1 else _split_generator(generator, b, device)
        return list(generator)


def _none_if_missing(component: Any) -> Any:
    """diffusers reloads an optional component saved as None as [None, None]."""
    if isinstance(component, (list, tuple)) and not any(component):
        return None
    return component


def _split_generator(generator: torch.Generator, n: int, device: torch.device) -> list[torch.Generator]:
    seeds = torch.randint(0, 2**62, (n,), generator=generator).tolist()
    return [torch.Generator(device).manual_seed(s) for s in seeds]
