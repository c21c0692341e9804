"""Pose Interaction Field G_phi (paper eq. 11) and its gradient (eq. 12, 15, 19).

Notation: y_t -> `latents`; y~_0 -> `x0_pred` (Tweedie, eq. 10); P~_t -> the image decoded from y~_0;
phi -> `PoseEstimator` output (heatmaps or backbone features, `GuidanceConfig.field`); M -> `mask`.
  1. decode y~_0 to an image in [0, 1] (the VAE decoder, or the identity map in pixel space);
  2. phi(P~_t) from the differentiable pose estimator (on the image upsampled by `estimator_scale`, bilinear);
  3. M = 1[sum_j H_j > threshold] (eq. 11, threshold 0.1) of the generated image's heatmaps (the paper;
     `mask_from: generated`) or of the reference's (`mask_from: reference`), resized to phi's grid;
  4. G = sum_{c} mean_{x} M(x) (phi_c(P~_t)(x) - phi_c(reference)(x))^2, one value per sample.
The reference is either heatmaps rendered from the target keypoints (defined at sampling time, where no
ground-truth image exists) or phi of the ground-truth target image (training only). docs/model.md lists
these choices with their equation numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from posebench.pose import PoseEstimator, keypoint_heatmaps
from reposedm.config import GuidanceConfig
from reposedm.diffusion import Schedule, predict_x0


@dataclass
class FieldReference:
    """phi(reference) and the mask M of eq. 11 for a batch."""

    target: torch.Tensor  # (B, C, h, w)
    mask: torch.Tensor  # (B, 1, h, w) in {0, 1}


def random_estimator_reason(cfg: GuidanceConfig) -> str | None:
    """Why the configured estimator is a random network (None when it has trained weights)."""
    from posebench.pose.base import ESTIMATORS

    if not cfg.enabled or cfg.estimator_weights is not None:
        return None
    entry = ESTIMATORS.get(cfg.estimator)
    if cfg.estimator == "tiny-random" or entry.weights is None:
        return (f"the guidance pose estimator {cfg.estimator!r} is randomly initialised (no weights file), so the "
                "pose field's gradient carries no pose information")
    return None


class PoseField:
    """G_phi of eq. 11 over a frozen, differentiable pose estimator."""

    def __init__(self, estimator: PoseEstimator, cfg: GuidanceConfig) -> None:
        self.estimator = estimator.eval().requires_grad_(False)
        self.cfg = cfg

    def _phi(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cfg.estimator_scale != 1:
            images = F.interpolate(images, scale_factor=self.cfg.estimator_scale, mode="bilinear",
                                   align_corners=False)
        out = self.estimator(images)
        return (out.heatmaps if self.cfg.field == "heatmaps" else out.features), out.heatmaps

    def _mask(self, heatmaps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        mask = (heatmaps.sum(1, keepdim=True) > self.cfg.mask_threshold).to(heatmaps.dtype)
        return F.interpolate(mask, size=size, mode="nearest") if mask.shape[-2:] != size else mask

    @torch.no_grad()
    def reference(self, *, target_xy: torch.Tensor | None = None, target_visible: torch.Tensor | None = None,
                  target_images: torch.Tensor | None = None, image_size: tuple[int, int] | None = None,
                  ) -> FieldReference:
        """phi(reference) and M from target keypoints (`reference: keypoints`) or target images.

        Args:
            target_xy, target_visible: (B, J, 2) / (B, J) keypoints in the estimator's joint order, in
                pixels of the generated image (`image_size`).
            target_images: (B, 3, H, W) in [0, 1] (`reference: target-image`, training only).
        """
        if self.cfg.reference == "keypoints":
            if target_xy is None or target_visible is None or image_size is None:
                raise ValueError("guidance reference 'keypoints' needs target_xy, target_visible and image_size")
            stride, scale = self.estimator.stride, self.cfg.estimator_scale
            size = (image_size[0] * scale // stride, image_size[1] * scale // stride)
            # pixel-centre coordinates through align_corners=False upsampling: x -> (x + 0.5) * scale - 0.5
            xy = target_xy if scale == 1 else (target_xy + 0.5) * scale - 0.5
            maps = keypoint_heatmaps(xy, target_visible, size, stride)
            return FieldReference(maps, self._mask(maps, size))
        if target_images is None:
            raise ValueError("guidance reference 'target-image' needs the target images (training only); "
                             "sample with reference 'keypoints'")
        phi, heatmaps = self._phi(target_images)
        return FieldReference(phi, self._mask(heatmaps, tuple(phi.shape[-2:])))

    @torch.no_grad()
    def reference_of_people(self, people_xy: torch.Tensor, people_visible: torch.Tensor,
                            image_size: tuple[int, int]) -> FieldReference:
        """Several people per image, (B, P, J, 2) / (B, P, J) (unused slots invisible): per joint, the maximum of the
        people's heatmaps, so every person's joints are attractors and M covers all of them."""
        b, p = people_xy.shape[:2]
        ref = self.reference(target_xy=people_xy.flatten(0, 1), target_visible=people_visible.flatten(0, 1),
                             image_size=image_size)
        maps = ref.target.unflatten(0, (b, p)).amax(1)
        return FieldReference(maps, self._mask(maps, tuple(maps.shape[-2:])))

    def __call__(self, images: torch.Tensor, ref: FieldReference) -> torch.Tensor:
        """Step 2-4: G per sample, (B,), differentiable w.r.t. `images`."""
        phi, heatmaps = self._phi(images)
        if phi.shape != ref.target.shape:
            raise ValueError(f"phi(P~_t) {tuple(phi.shape)} and phi(reference) {tuple(ref.target.shape)} differ: "
                             "the estimator's grid must match the reference's")
        # eq. 11's M from the generated pose's heatmaps (the paper) or the reference's; an indicator, so no gradient
        mask = self._mask(heatmaps.detach(), tuple(phi.shape[-2:])) if self.cfg.mask_from == "generated" \
            else ref.mask
        sq = mask * (phi - ref.target.to(phi.dtype)).square()
        return sq.sum(1).flatten(1).mean(1)


def field_of_latents(field: PoseField, ref: FieldReference, schedule: Schedule, latents: torch.Tensor,
                     t: torch.Tensor, eps_pred: torch.Tensor, decode: Callable[[torch.Tensor], torch.Tensor],
                     ) -> torch.Tensor:
    """Step 1-4 from y_t and eps_theta: G(decode(y~_0)), (B,)."""
    x0_pred = predict_x0(schedule, latents, t, eps_pred)
    return field(decode(x0_pred), ref)


def guidance_gradient(field: PoseField, ref: FieldReference, schedule: Schedule, latents: torch.Tensor,
                      t: torch.Tensor, decode: Callable[[torch.Tensor], torch.Tensor],
                      eps_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
                      eps_pred: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """grad_{y_t} G at sampling time (eq. 12/19), and G.

    `eps_fn` (y_t -> eps_theta with CFG applied) differentiates through the denoiser (`sample_grad:
    unet`); `eps_pred` holds eps_theta fixed so only Tweedie's map is differentiated (`tweedie`).
    """
    if (eps_fn is None) == (eps_pred is None):
        raise ValueError("pass exactly one of eps_fn (through the U-Net) or eps_pred (Tweedie only)")
    with torch.enable_grad():
        y = latents.detach().requires_grad_(True)
        eps = eps_fn(y) if eps_fn is not None else eps_pred.detach()
        g = field_of_latents(field, ref, schedule, y, t, eps, decode)
        (grad,) = torch.autograd.grad(g.sum(), y)
    return grad.detach(), g.detach()


@dataclass
class TrainingFieldTerms:
    """What the pose field adds to one training loss (eq. 15): `eps_offset` (second order, in the graph) or `loss`
    (first order, lambda * mean G), and the batch's mean G for the log."""

    eps_offset: torch.Tensor | None
    loss: torch.Tensor | None
    value: float


def training_field_terms(field: PoseField, ref: FieldReference, schedule: Schedule, x_t: torch.Tensor,
                         t: torch.Tensor, eps_pred: torch.Tensor, decode: Callable[[torch.Tensor], torch.Tensor],
                         mode: str, weight: float = 1.0) -> TrainingFieldTerms:
    """Eq. 15 for `mode` "second-order": eps~ = eps_theta + sqrt(1 - abar_t) grad_{y_t} G, the gradient kept in the
    graph (double backward; `x_t` must require grad); "first-order": weight * G added to the loss."""
    g = field_of_latents(field, ref, schedule, x_t, t, eps_pred, decode)
    value = float(g.detach().mean())
    if mode == "second-order":
        (grad,) = torch.autograd.grad(g.sum(), x_t, create_graph=True)
        sigma = schedule.at(schedule.alphas_cumprod, t, x_t).mul(-1).add(1).sqrt()  # sqrt(1 - abar_t)
        return TrainingFieldTerms(sigma * grad, None, value)
    if mode == "first-order":
        return TrainingFieldTerms(None, weight * g.mean(), value)
    raise ValueError(f"unknown guidance train_mode {mode!r}")
