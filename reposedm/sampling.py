"""The sampler: one plain function, per-image generators, CFG (eq. 16) + pose gradient guidance (eq. 19).

Notation: y_t -> `latents`, eps_theta -> `noise_pred`, w_c -> `guidance_scale`, eta ->
`pose_guidance_scale`. For each timestep t of the scheduler:
  1. eps_c, eps_u = eps_theta(y_t | I_S, P), eps_theta(y_t | null, P)   (one batched U-Net call; in the
     model's parametrization, `ModelConfig.prediction_type`; converted to eps where eq. 10/19 need it)
  2. eps^ = eps_u + w_c (eps_c - eps_u)                                   (eq. 16, CFG)
  3. y_{t-1} = scheduler.step(eps^, t, y_t)                               (DDPM with learned variance / DDIM / ...)
  4. y'_{t-1} = y_{t-1} - eta grad_{y_t} G(decode(y~_0(y_t, eps^)))      (eq. 12/19)
The pose gradient enters by one of two rules (`pose_guidance_rule`), matching how the run was trained:
  "step" (eq. 12/19, runs trained without the field or with the first-order loss): step 4 as written;
  "eps"  (eq. 16, runs trained with the second-order eq. 15 objective, which teaches eps_theta to carry minus
         sqrt(1 - abar_t) grad G): the gradient is re-added inside eps before step 3 and step 4 is skipped,
         eps^ = eps_u + w_c ((eps_c - eps_u) + eta sqrt(1 - abar_t) grad_{y_t} G)   (eta = 1 is the paper's).
         When the unconditional branch keeps the pose (`unconditional_has_pose`: RePoseSD's text-only CFG), both
         branches carry the learned minus sqrt(1 - abar_t) grad G, CFG keeps it once, and the gradient is re-added
         once: eps^ = eps_u + w_c (eps_c - eps_u) + eta sqrt(1 - abar_t) grad_{y_t} G (with the paper's w_c factor
         a w = 9 text CFG would push 8 times the learned shift the other way).
Both move Tweedie's y~_0 down G (tested with an analytic field). Guidance works in DDPM-space latents, so it needs
a scheduler whose latents are y_t itself (init_noise_sigma 1: DDPM, DDIM, DPM-Solver, UniPC; not Euler's sigmas).
The RPA condition depends on I_S and P only, so it is computed once before the loop.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from diffusers import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from reposedm.diffusion import Schedule, eps_from_output, output_from_eps
from reposedm.guidance import FieldReference, PoseField, guidance_gradient
from reposedm.models.network import RePoseDMModel


def image_seed(seed: int, index: int) -> int:
    """The seed of image `index` in a run with `seed`: independent of batch size, order and device count."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint64)[0] >> 1)


def generators_for(seed: int, indices: Sequence[int], device: torch.device | str = "cpu") -> list[torch.Generator]:
    return [torch.Generator(device).manual_seed(image_seed(seed, k)) for k in indices]


@dataclass
class SampleOutput:
    latents: torch.Tensor  # y_0 in model space
    flow: torch.Tensor | None = None
    warped: list[torch.Tensor] = field(default_factory=list)  # W(I_S; F^n) in model space
    pose_field: list[float] = field(default_factory=list)  # mean G per step (guided runs)


POSE_GUIDANCE_RULES = ("step", "eps")


def pose_guidance_rule_for(train_mode: str) -> str:
    """The sampling rule that matches a run's training objective (`GuidanceConfig.train_mode`)."""
    return "eps" if train_mode == "second-order" else "step"


def eps_with_pose_gradient(eps: torch.Tensor, grad: torch.Tensor, schedule: Schedule, t: torch.Tensor,
                           guidance_scale: float, pose_guidance_scale: float) -> torch.Tensor:
    """Eq. 16 after eq. 15 training: eps^ + w_c eta sqrt(1 - abar_t) grad_{y_t} G (eps^ already CFG-combined; w_c = 1
    when both CFG branches hold the pose)."""
    sigma = schedule.at(schedule.alphas_cumprod, t, eps).mul(-1).add(1).sqrt()  # sqrt(1 - abar_t)
    return eps + guidance_scale * pose_guidance_scale * sigma * grad


def _learned_variance_scheduler(scheduler: SchedulerMixin) -> bool:
    return getattr(scheduler.config, "variance_type", None) in ("learned", "learned_range")


def _step_kwargs(scheduler: SchedulerMixin, generators: Sequence[torch.Generator]) -> dict:
    """The per-image generators for `scheduler.step` if it draws noise (DDPM, Euler ancestral); deterministic
    steps (DDIM's default, UniPC, DPM-Solver) take no `generator` argument at all."""
    takes = "generator" in inspect.signature(scheduler.step).parameters
    return {"generator": list(generators)} if takes else {}


def sample(model: RePoseDMModel, scheduler: SchedulerMixin, source: torch.Tensor, pose_map: torch.Tensor, *,
           generators: Sequence[torch.Generator], num_inference_steps: int = 50, guidance_scale: float = 2.0,
           schedule: Schedule | None = None, pose_field: PoseField | None = None,
           field_reference: FieldReference | None = None, pose_guidance_scale: float = 0.0,
           sample_grad: str = "unet", decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
           pose_guidance_rule: str = "step", return_intermediates: bool = False,
           condition_inputs: dict | None = None, unconditional_has_pose: bool = False,
           callback: Callable[[int, int, torch.Tensor], None] | None = None) -> SampleOutput:
    """Generate y_0 for a batch of (source, target pose) conditions.

    Args:
        source: (B, C, h, w) source in model space.
        pose_map: (B, P, H, W) target pose map.
        generators: one per image (`generators_for`); image k depends only on its generator.
        guidance_scale: w_c; 1 turns CFG off (no unconditional pass).
        pose_field, field_reference, decode, schedule: needed when `pose_guidance_scale` > 0.
        sample_grad: "unet" (differentiate through the denoiser) or "tweedie".
        pose_guidance_rule: "step" (eq. 19) or "eps" (eq. 16; `pose_guidance_rule_for` the run's train_mode).
        condition_inputs: extra inputs of the condition encoder (`source_image`, `encode_image` for eq. 9).
        unconditional_has_pose: the CFG unconditional branch keeps the pose (rule "eps" re-adds the gradient once,
            not w_c times; see the module docstring).
        callback: called as callback(step_index, num_steps, latents) after every step.
    """
    if len(generators) != source.shape[0]:
        raise ValueError(f"need one generator per image: {len(generators)} for a batch of {source.shape[0]}")
    guided = pose_guidance_scale != 0.0
    if guided and (pose_field is None or field_reference is None or decode is None or schedule is None):
        raise ValueError("pose guidance needs pose_field, field_reference, decode and schedule")
    if pose_guidance_rule not in POSE_GUIDANCE_RULES:
        raise ValueError(f"pose_guidance_rule must be one of {', '.join(POSE_GUIDANCE_RULES)}, got "
                         f"{pose_guidance_rule!r}")
    if guided and float(scheduler.init_noise_sigma) != 1.0:
        raise ValueError(f"pose guidance needs a scheduler whose latents are y_t (init_noise_sigma 1); "
                         f"{type(scheduler).__name__} works in sigma space (init_noise_sigma "
                         f"{float(scheduler.init_noise_sigma):g}): use ddim, ddpm, dpm-solver or unipc")
    c = model.latent_channels
    with torch.no_grad():
        cond = model.encode_condition(source, pose_map, return_intermediates=return_intermediates,
                                      **(condition_inputs or {}))
    use_cfg = guidance_scale != 1.0
    both = cond.cat(model.unconditional(cond)) if use_cfg else cond
    b = source.shape[0]
    shape = (b, c, *source.shape[-2:])
    latents = randn_tensor(shape, generator=list(generators), device=source.device, dtype=source.dtype)
    # set_timesteps first: sigma-space schedulers (Euler) take init_noise_sigma from the chosen timesteps
    scheduler.set_timesteps(num_inference_steps, device=source.device)
    latents = latents * scheduler.init_noise_sigma
    pass_variance = _learned_variance_scheduler(scheduler)
    step_kwargs = _step_kwargs(scheduler, generators)

    def model_output(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Steps 1-2: the CFG-combined output (eps^, and the conditional branch's variance).

        CFG combines the outputs in the model's parametrization: every parametrization is affine in eps with
        the same y_t, so this equals eq. 16 taken in eps."""
        y_in = scheduler.scale_model_input(y, t)
        ts = t.expand(both.tokens.shape[0]) if t.ndim == 0 else t
        out = model.denoise(torch.cat([y_in, y_in]) if use_cfg else y_in, ts, both)
        if not use_cfg:
            return out
        out_c, out_u = out.chunk(2)
        eps = out_u[:, :c] + guidance_scale * (out_c[:, :c] - out_u[:, :c])
        return torch.cat([eps, out_c[:, c:]], dim=1)

    prediction_type = getattr(scheduler.config, "prediction_type", "epsilon")

    def to_eps(output: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if prediction_type == "epsilon":
            return output
        if schedule is None:
            raise ValueError(f"pose guidance with prediction_type {prediction_type!r} needs the schedule")
        return eps_from_output(schedule, output, y, t.expand(b), prediction_type)

    fields: list[float] = []
    timesteps = scheduler.timesteps
    for i, t in enumerate(timesteps):
        grad = None
        if guided and sample_grad == "unet":
            # The differentiated U-Net call also gives this step's output: keep it instead of a second forward.
            taken: list[torch.Tensor] = []

            def eps_fn(y: torch.Tensor, t: torch.Tensor = t, taken: list = taken) -> torch.Tensor:
                taken.append(model_output(y, t))
                return to_eps(taken[-1][:, :c], y, t)

            grad, g = guidance_gradient(pose_field, field_reference, schedule, latents, t.expand(b), decode,
                                        eps_fn=eps_fn)
            out = taken[-1].detach()
        else:
            with torch.no_grad():
                out = model_output(latents, t)
        if guided and sample_grad == "tweedie":
            grad, g = guidance_gradient(pose_field, field_reference, schedule, latents, t.expand(b), decode,
                                        eps_pred=to_eps(out[:, :c], latents, t))
        if grad is not None and pose_guidance_rule == "eps":  # eq. 16: the gradient inside eps, no step 4
            eps = eps_with_pose_gradient(to_eps(out[:, :c], latents, t), grad, schedule, t.expand(b),
                                         1.0 if unconditional_has_pose else guidance_scale, pose_guidance_scale)
            out = torch.cat([output_from_eps(schedule, eps, latents, t.expand(b), prediction_type), out[:, c:]], 1)
        step_in = out if pass_variance else out[:, :c]
        with torch.no_grad():
            latents_next = scheduler.step(step_in, t, latents, **step_kwargs).prev_sample
        if grad is not None:
            if pose_guidance_rule == "step":  # step 4
                latents_next = latents_next - pose_guidance_scale * grad
            fields.append(float(g.mean()))
        latents = latents_next
        if callback is not None:
            callback(i, len(timesteps), latents)
    return SampleOutput(latents.detach(), cond.flow, cond.warped, fields)
