"""The pose-estimator interface and the registry of estimators."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from posebench.registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import Tensor


@dataclass
class PoseOutput:
    """What an estimator returns for a batch.

    Attributes:
        heatmaps: (B, J, h, w) non-negative joint heatmaps, joints in the estimator's `keypoint_format`.
        features: (B, C, h', w') backbone features (the `phi` a pose-feature loss compares).
    """

    heatmaps: Tensor
    features: Tensor


def _module_base() -> type:
    import torch.nn as nn

    return nn.Module


class PoseEstimator(_module_base()):  # type: ignore[misc]
    """Base class: an `nn.Module` mapping images in [0, 1] to `PoseOutput`, differentiable end to end.

    Attributes:
        keypoint_format: joint order of the heatmaps (a posebench keypoint format, e.g. "coco17").
        num_joints: J.
        stride: input pixels per heatmap pixel.
    """

    keypoint_format: str = "coco17"
    num_joints: int = 17
    stride: int = 1

    def forward(self, images: torch.Tensor) -> PoseOutput:  # pragma: no cover - interface
        raise NotImplementedError

    def check_input(self, images: torch.Tensor) -> None:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"{type(self).__name__} expects images (B, 3, H, W) in [0, 1], "
                             f"got {tuple(images.shape)}")


ESTIMATORS: Registry[Callable[..., PoseEstimator]] = Registry("pose estimator")
ESTIMATORS.register("tiny-random", target="posebench.pose.tiny:TinyPoseNet")
# Trained on synthetic people by `posebench pose train` (pass its file as weights): a synthetic-domain estimator.
ESTIMATORS.register("synthetic-posenet", target="posebench.pose.synthetic:synthetic_posenet")
ESTIMATORS.register("higherhrnet-w32-coco", target="posebench.pose.higherhrnet:higherhrnet_w32_coco")
ESTIMATORS.register("higherhrnet-w48-coco-udp", target="posebench.pose.higherhrnet:higherhrnet_w48_coco_udp")
ESTIMATORS.register("higherhrnet-w48-humanart-udp", target="posebench.pose.higherhrnet:higherhrnet_w48_humanart_udp")


def build_estimator(name: str, **kwargs: Any) -> PoseEstimator:
    """Build a registered estimator (`tiny-random`; the HigherHRNet ports when they land)."""
    return ESTIMATORS.get(name)(**kwargs)


def keypoint_heatmaps(xy: torch.Tensor, visible: torch.Tensor, size: tuple[int, int], stride: int,
                      sigma: float = 2.0) -> torch.Tensor:
    """Gaussian heatmaps of keypoints at an estimator's heatmap resolution.

    Args:
        xy: (B, J, 2) keypoint (x, y) in input pixels.
        visible: (B, J) bool; invisible joints give all-zero maps.
        size: (h, w) of the heatmaps.
        stride: input pixels per heatmap pixel (pixel centres: x_hm = (x + 0.5) / stride - 0.5).
        sigma: Gaussian sigma in heatmap pixels.

    Returns:
        (B, J, h, w) in [0, 1], peak 1 at each visible joint.
    """
    import torch

    h, w = size
    centre = (xy.to(torch.float32) + 0.5) / stride - 0.5
    ys = torch.arange(h, dtype=torch.float32, device=xy.device).view(1, 1, h, 1)
    xs = torch.arange(w, dtype=torch.float32, device=xy.device).view(1, 1, 1, w)
    cx = torch.nan_to_num(centre[..., 0])[..., None, None]
    cy = torch.nan_to_num(centre[..., 1])[..., None, None]
    maps = torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))
    return maps * visible.to(maps.dtype)[..., None, None]
