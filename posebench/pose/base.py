"""The pose-estimator interface and the registry of estimators."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
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
    """Base class: an `nn.Module` mapping images in [0, 1] to `PoseOutput`, differentiable end to end, plus what
    running it over images needs (input size, decoding to people, its grouping decoder's refine setting).

    Attributes:
        keypoint_format: joint order of the heatmaps (a posebench keypoint format, e.g. "coco17").
        num_joints: J.
        stride: input pixels per heatmap pixel.
        input_size: side of the square input images are letterboxed to (`posebench.pose.detect`).
    """

    keypoint_format: str = "coco17"
    num_joints: int = 17
    stride: int = 1
    input_size: int = 512

    def forward(self, images: torch.Tensor) -> PoseOutput:  # pragma: no cover - interface
        raise NotImplementedError

    def people(self, images: torch.Tensor, *, flip_test: bool = True,
               boxes: Any = None) -> list[list[tuple[Any, float]]]:
        """[(keypoints (J, 3): x, y in input pixels and joint score; person score)] per image.

        Default: one person per image, `argmax_keypoints`, person score = the mean joint score; an image whose
        joint scores are all 0 gives nobody. Estimators with a grouping decoder override it (HigherHRNet).
        """
        import numpy as np

        return [[(k, float(k[:, 2].mean()))] if np.any(k[:, 2] > 0) else []
                for k in self.argmax_keypoints(images, boxes)]

    def argmax_keypoints(self, images: torch.Tensor, boxes: Any = None) -> list[Any]:
        """(J, 3) per image: the argmax of each joint's heatmap over the pixels inside the image (the letterbox
        `boxes`), mapped to input pixels by the stride with the pixel-centre convention of `keypoint_heatmaps`
        (x_in = (x_hm + 0.5) * stride - 0.5), and the heatmap value there as the joint score."""
        import torch

        with torch.no_grad():
            heatmaps = self(images).heatmaps.float().cpu()
        _, j, h, w = heatmaps.shape
        stride = float(self.stride)
        cx = (torch.arange(w, dtype=torch.float64) + 0.5) * stride  # pixel centres, corner convention
        cy = (torch.arange(h, dtype=torch.float64) + 0.5) * stride
        out = []
        for i in range(heatmaps.shape[0]):
            maps = heatmaps[i]
            if boxes is not None:
                box = boxes[i]
                inside = ((cy >= box.offset_y) & (cy <= box.offset_y + box.content[0]))[:, None] & (
                    (cx >= box.offset_x) & (cx <= box.offset_x + box.content[1]))[None, :]
                if inside.any():
                    maps = maps.masked_fill(~inside, float("-inf"))
            values, idx = maps.reshape(j, h * w).max(dim=1)
            xs = ((idx % w).double() + 0.5) * stride - 0.5
            ys = (torch.div(idx, w, rounding_mode="floor").double() + 0.5) * stride - 0.5
            out.append(torch.stack([xs, ys, values.double()], dim=-1).numpy())
        return out

    def set_refine_fill(self, fill: bool) -> bool:
        """Quirk 4 of the pose profiles (see `posebench.pose.detect.set_refine_fill`); False: no grouping decoder."""
        return False

    def check_input(self, images: torch.Tensor) -> None:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"{type(self).__name__} expects images (B, 3, H, W) in [0, 1], "
                             f"got {tuple(images.shape)}")


@dataclass(frozen=True)
class EstimatorEntry:
    """A registered estimator: how to build it and what its results mean.

    Attributes:
        target: "module:factory"; `factory(weights=None | Path, **kwargs)` returns the estimator: with None, its
            registered weights (an OfflineError names the file when missing) or its own initialisation; with a
            path, that checkpoint in the estimator's own format.
        canonical: published weights for real images; False for synthetic-domain or random estimators, whose
            pose metrics are marked non-canonical.
        description: one line for `posebench pose` listings.
    """

    target: str
    canonical: bool
    description: str
    weights: str | None = None  # the weights-registry file its factory loads by default (None: none)

    def build(self, weights: Path | None = None, **kwargs: Any) -> PoseEstimator:
        import importlib

        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)(weights=weights, **kwargs)


ESTIMATORS: Registry[EstimatorEntry] = Registry("pose estimator")
ESTIMATORS.register("tiny-random", EstimatorEntry("posebench.pose.tiny:tiny_random", False,
                                                  "tiny randomly initialised network (a test double)"))
ESTIMATORS.register("synthetic-posenet", EstimatorEntry(
    "posebench.pose.synthetic:synthetic_posenet", False,
    "trained on synthetic people by `posebench pose train` (pass its file as weights): synthetic-domain"))
ESTIMATORS.register("higherhrnet-w32-coco", EstimatorEntry(
    "posebench.pose.higherhrnet:higherhrnet_w32_coco", True, "HigherHRNet-W32, COCO, 512 input",
    "higherhrnet-w32-coco"))
ESTIMATORS.register("higherhrnet-w48-coco-udp", EstimatorEntry(
    "posebench.pose.higherhrnet:higherhrnet_w48_coco_udp", True, "HigherHRNet-W48 + UDP, COCO, 512 input",
    "higherhrnet-w48-coco-udp"))
ESTIMATORS.register("higherhrnet-w48-humanart-udp", EstimatorEntry(
    "posebench.pose.higherhrnet:higherhrnet_w48_humanart_udp", True,
    "HigherHRNet-W48 + UDP trained on Human-Art (HumanSD's evaluation estimator), 512 input",
    "higherhrnet-w48-humanart-udp"))


def build_estimator(name: str, weights: Path | None = None, **kwargs: Any) -> PoseEstimator:
    """Build a registered estimator (its registered weights, or the checkpoint `weights`)."""
    return ESTIMATORS.get(name).build(weights, **kwargs)


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
