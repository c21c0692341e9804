"""RePoseSD training: the objective of eq. 17 with eq. 15's eps~, and what RePoseDM's trainer needs of the family.

Notation (paper sec. 4.4): y_0 -> `x0` (VAE latent of the image), c_T -> `text` (prompt embeddings), c_P ->
`pose` (VAE latent of HumanSD's pose drawing, concatenated with y_t), G -> the pose field of RePoseDM
(`reposedm.guidance`, HigherHRNet heatmaps of the decoded Tweedie estimate against the target people's).
  eq. 15: eps~ = eps_theta(y_t, t, c_T, c_P) + sqrt(1 - abar_t) grad_{y_t} G(D(y~_0))   (second order)
  eq. 17: L = || eps - eps~ ||^2
HumanSD (`humansd`) trains L = || eps - eps_theta ||^2 on the same data. The trainer (`reposedm.train.train`)
provides everything else: step-seeded batches and noise, EMA, atomic checkpoints, exact resume, several processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from reposedm.diffusion import Schedule, hybrid_loss, q_sample
from reposedm.guidance import PoseField, training_field_terms
from reposedm.sd.components import (
    build_text_encoder,
    build_tokenizer,
    build_unet,
    build_vae,
    encode_prompts,
    ensure_sd_files,
)
from reposedm.sd.config import SDRunConfig
from reposedm.sd.data import TextPoseDataset, TextPoseSource, collate_text_pose


def make_sd_scheduler(cfg: SDRunConfig, kind: str = "ddim") -> Any:
    """A diffusers scheduler on SD's schedule (scaled-linear betas, eps prediction, no clipping, DDIM's
    `steps_offset` 1 and `set_alpha_to_one` False as SD 2.1's scheduler config)."""
    import inspect

    from diffusers import DDIMScheduler

    from reposedm.diffusion import scheduler_class

    m = cfg.model
    cls = scheduler_class(kind)
    common = dict(num_train_timesteps=m.num_train_timesteps, beta_start=m.beta_start, beta_end=m.beta_end,
                  beta_schedule="scaled_linear", prediction_type="epsilon", clip_sample=False,
                  set_alpha_to_one=False, steps_offset=1)
    if cls is DDIMScheduler:
        return DDIMScheduler(**common)
    params = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in common.items() if k in params})


class SDObjective:
    """One micro-batch's loss (eq. 17) and its log."""

    def __init__(self, cfg: SDRunConfig, vae: Any, text_encoder: Any, tokenizer: Any,
                 pose_field: PoseField | None) -> None:
        self.cfg = cfg
        m = cfg.model
        self.schedule = Schedule.scaled_linear(m.num_train_timesteps, m.beta_start, m.beta_end)
        self.vae, self.text_encoder, self.tokenizer = vae, text_encoder, tokenizer
        self.pose_field = pose_field
        g = cfg.model.guidance
        self.guidance_mode = g.train_mode if (g.enabled and pose_field is not None) else "off"

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> latents: the posterior mean x 0.18215 (HumanSD samples the posterior; the mean keeps
        an item a function of its index, docs/model.md)."""
        with torch.no_grad():
            x = (images * 2 - 1).to(self.vae.dtype)
            return self.vae.encode(x).latent_dist.mean.float() * self.cfg.model.vae_scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> images in [0, 1], differentiable (the pose field's input)."""
        return (self.vae.decode(latents.to(self.vae.dtype) / self.cfg.model.vae_scaling_factor).sample.float() + 1) / 2

    def text_embeddings(self, prompts: list[str], drop: torch.Tensor, device: torch.device) -> torch.Tensor:
        """c_T; a dropped item's prompt is "" (classifier-free guidance's null text)."""
        kept = ["" if bool(d) else p for p, d in zip(prompts, drop.tolist(), strict=True)]
        return encode_prompts(self.tokenizer, self.text_encoder, kept, device).float()

    def __call__(self, unet: torch.nn.Module, batch: dict[str, Any], t: torch.Tensor, noise: torch.Tensor,
                 drop: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        m = self.cfg.model
        x0 = self.encode(batch["image"])
        pose = self.encode(batch["pose_image"])
        text = self.text_embeddings(batch["prompt"], drop, x0.device)
        x_t = q_sample(self.schedule, x0, t, noise)
        second_order = self.guidance_mode == "second-order"
        if second_order:
            x_t = x_t.detach().requires_grad_(True)
        eps_pred = unet(torch.cat([x_t, pose.to(x_t.dtype)], dim=1), t, encoder_hidden_states=text).sample
        offset, extra, field_value = None, None, None
        if self.guidance_mode != "off":
            ref = self.pose_field.reference_of_people(batch["people_xy"], batch["people_visible"], m.resolution)
            field = training_field_terms(self.pose_field, ref, self.schedule, x_t, t, eps_pred, self.decode,
                                         self.guidance_mode, m.guidance.train_weight)
            offset, extra, field_value = field.eps_offset, field.loss, field.value
        terms = hybrid_loss(self.schedule, eps_pred, x0, x_t.detach() if second_order else x_t, t, noise,
                            learned_variance=False, eps_offset=offset)
        loss = terms.loss if extra is None else terms.loss + extra
        logs = {"loss": float(loss.detach()), "mse": float(terms.mse)}
        if field_value is not None:
            logs["pose_field"] = field_value
        return loss, logs


class SDFamily:
    """RePoseSD / HumanSD for `reposedm.train.train` (the interface of `reposedm.train.RePoseDMFamily`)."""

    collate = staticmethod(collate_text_pose)

    def __init__(self, cfg: SDRunConfig, source: TextPoseSource, device: torch.device) -> None:
        from diffusers import UNet2DConditionModel

        from reposedm.train import build_pose_field, check_pose_estimator

        self.cfg = cfg
        self.model_cls = UNet2DConditionModel
        self.non_canonical = check_pose_estimator(cfg)
        # every frozen file first (offline errors before anything is written), then the data (checked in full)
        ensure_sd_files(cfg.model)
        self.vae = build_vae(cfg.model)
        self.text_encoder = build_text_encoder(cfg.model)
        self.tokenizer = build_tokenizer(cfg.model)
        self.pose_field = build_pose_field(cfg, device)
        self.dataset = TextPoseDataset(source, cfg.model.resolution, cfg.model.pose_threshold)
        self.noise_shape = (cfg.model.latent_channels, *cfg.model.latent_size)
        self.cond_dropout = cfg.model.text_dropout

    def build_model(self) -> torch.nn.Module:
        from reposedm.train import needs_double_backward

        unet = build_unet(self.cfg.model)
        if self.cfg.train.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        if needs_double_backward(self.cfg):
            # eq. 15 differentiates grad G again through the U-Net and the VAE decoder: SDPA kernels have no
            # double backward, diffusers' classic processor computes the same attention with materialized weights
            from diffusers.models.attention_processor import AttnProcessor

            unet.set_attn_processor(AttnProcessor())
            self.vae.set_attn_processor(AttnProcessor())
        return unet

    def frozen_to(self, device: torch.device) -> None:
        self.vae.to(device)
        self.text_encoder.to(device)

    def objective(self, accelerator: Any) -> SDObjective:
        return SDObjective(self.cfg, self.vae, self.text_encoder, self.tokenizer, self.pose_field)

    def validation(self, source: Any) -> None:
        return None  # no periodic grids for RePoseSD yet: `posebench sample` on a checkpoint shows its images


def load_sd_pipeline(ckpt: Path, cfg: SDRunConfig, *, ema: bool = True, scheduler: str = "ddim",
                     allow_download: bool = True, pose_estimator: bool | None = None) -> Any:
    """RePoseSDPipeline of a verified checkpoint: its U-Net (`ema/` or `model/`), the frozen components from the
    config, and the guidance estimator when the run trained with it."""
    from diffusers import UNet2DConditionModel

    from reposedm.checkpoints import CheckpointError, _pose_estimator_component
    from reposedm.sd.pipeline import RePoseSDPipeline

    weights = ckpt / ("ema" if ema else "model")
    try:
        unet, info = UNet2DConditionModel.from_pretrained(weights, output_loading_info=True)
    except (ValueError, RuntimeError, OSError) as exc:
        raise CheckpointError(f"{weights}: the weights do not fit the run's U-Net ({str(exc).strip()[:300]})") from None
    if info["missing_keys"] or info["unexpected_keys"]:
        raise CheckpointError(f"{weights}: tensors missing or unknown ({sorted(info['missing_keys'])[:2]}, "
                              f"{sorted(info['unexpected_keys'])[:2]}); the checkpoint is damaged")
    m, g = cfg.model, cfg.model.guidance
    ensure_sd_files(m, allow_download=allow_download)
    with_estimator = g.enabled if pose_estimator is None else pose_estimator
    return RePoseSDPipeline(
        unet.eval(), build_vae(m, allow_download=allow_download), build_text_encoder(m, allow_download=allow_download),
        build_tokenizer(m, allow_download=allow_download), make_sd_scheduler(cfg, scheduler),
        pose_estimator=_pose_estimator_component(cfg) if with_estimator else None, guidance_scale=m.guidance_scale,
        pose_guidance_scale=g.pose_guidance_scale if g.enabled else 0.0,
        train_mode=g.train_mode if g.enabled else "off", negative_prompt=m.negative_prompt,
        pose_threshold=m.pose_threshold)
