"""Every metric posebench computes, registered once: name, version, direction, what it consumes, how it aggregates
and the class that computes it (imported on first use). Adding a metric is one file with its class and one
`register_metric` line below (docs/extending.md).

Consumes:
    `pixels`: generated and ground-truth images through the profile's resize chains (SSIM, PSNR, LPIPS);
    `features`: generated images through a feature network (FID, KID, IS), against a real set where one applies;
    `pose`: pose-estimator detections on the generated images against target keypoints (AP, PCKh, ...);
    `text`: generated images against the text prompts they were made from (CLIPSIM; protocols with captions only).
Aggregation:
    `mean`: the mean of per-image values (a per-image CSV column); `set`: a statistic of the whole set.

Results keys beyond the registered names: the non-reported SSIM variants (`ssim_win51`, ...), masked metrics
(`ssim_masked`, `lpips_masked`, `is_masked`) and a second real set (`fid_test`) take their base metric's
direction (`higher_is_better`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from posebench.registry import Registry

Consumes = Literal["pixels", "features", "pose", "text"]
Aggregation = Literal["mean", "set"]


@dataclass(frozen=True)
class MetricSpec:
    name: str
    version: int  # bumps when the metric's own computation changes a number (profiles version the settings)
    higher_is_better: bool
    consumes: Consumes
    aggregation: Aggregation
    target: str  # "module:Class" of the torchmetrics class that computes it
    section: str  # the profile section that configures it (pose metrics: "" - the pose profile does)
    description: str
    masked: bool = False  # also reported inside the target-pose mask when the protocol lists it (Market)
    valid: tuple[float, float] = (-math.inf, math.inf)  # what a value can be (results files are checked on read)
    allows_inf: bool = False  # +inf is a real value (PSNR of identical images); otherwise only finite or NaN

    def cls(self) -> type:
        import importlib

        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)


METRICS: Registry[MetricSpec] = Registry("metric")


def register_metric(spec: MetricSpec) -> None:
    METRICS.register(spec.name, spec)


def base_name(key: str) -> str:
    """The registered metric behind a results key: `ssim_win51` / `ssim_masked` -> `ssim`, `fid_test` -> `fid`."""
    if key in METRICS:
        return key
    for suffix in ("_masked", "_test"):
        if key.endswith(suffix) and key.removesuffix(suffix) in METRICS:
            return key.removesuffix(suffix)
    if key.startswith("ssim_"):
        return "ssim"
    return key


def higher_is_better(key: str) -> bool:
    """Direction of a results key (registered name, SSIM variant, masked metric or second real set).

    Raises:
        UnknownNameError: no registered metric is behind `key`.
    """
    return METRICS.get(base_name(key)).higher_is_better


def known_direction(key: str) -> bool | None:
    """`higher_is_better(key)`, or None for a key no registered metric is behind (e.g. a newer posebench's)."""
    name = base_name(key)
    return METRICS.get(name).higher_is_better if name in METRICS else None


# `valid` allows float round-off at the edges (SSIM 1e-9 above 1; FID a little below 0: the eigenvalues of
# rank-deficient covariances of a few images give -0.007 on 2 near-identical images a side, seen in the tests).
register_metric(MetricSpec("fid", 1, False, "features", "set", "posebench.metrics.fid:FID", "fid",
                           "Fréchet Inception Distance against the profile's FID real set", valid=(-1.0, math.inf)))
register_metric(MetricSpec("kid", 1, False, "features", "set", "posebench.metrics.kid:KID", "kid",
                           "Kernel Inception Distance (mean over random subsets; stderr = their std)"))
register_metric(MetricSpec("ssim", 1, True, "pixels", "mean", "posebench.metrics.ssim:SSIM", "ssim",
                           "SSIM, the profile's reported variant (others under their own keys)", masked=True,
                           valid=(-1 - 1e-9, 1 + 1e-9)))
register_metric(MetricSpec("lpips", 1, False, "pixels", "mean", "posebench.metrics.lpips:LPIPS", "lpips",
                           "LPIPS with the profile's net, weight version and input range", masked=True,
                           valid=(-1e-6, math.inf)))
register_metric(MetricSpec("psnr", 1, True, "pixels", "mean", "posebench.metrics.psnr:PSNR", "psnr",
                           "PSNR with the profile's data range", allows_inf=True))
register_metric(MetricSpec("is", 1, True, "features", "set", "posebench.metrics.inception_score:IS", "is",
                           "Inception Score (torchvision ImageNet Inception logits, 10 splits; stderr = std over "
                           "splits)", masked=True, valid=(1 - 1e-9, math.inf)))
register_metric(MetricSpec("pckh", 1, True, "pose", "set", "posebench.metrics.pckh:PCKh", "pckh",
                           "PCKh@0.5 of the estimator's best person against the target joints (PATN's rule)",
                           valid=(0, 1)))
register_metric(MetricSpec("ap", 1, True, "pose", "set", "posebench.metrics.pose_accuracy:PoseAccuracy", "",
                           "COCO keypoint AP of the estimator's detections on the generated images", valid=(0, 1)))
register_metric(MetricSpec("ap_m", 1, True, "pose", "set", "posebench.metrics.pose_accuracy:PoseAccuracy", "",
                           "COCO keypoint AP, medium people only", valid=(0, 1)))
register_metric(MetricSpec("cap", 1, True, "pose", "set", "posebench.metrics.pose_accuracy:PoseAccuracy", "",
                           "pose-cosine AP (HumanSD)", valid=(0, 1)))
register_metric(MetricSpec("pce", 1, False, "pose", "mean", "posebench.metrics.pose_accuracy:PoseAccuracy", "",
                           "people count error per image (HumanSD)", valid=(0, math.inf)))
register_metric(MetricSpec("clipsim", 1, True, "text", "mean", "posebench.metrics.clipsim:CLIPSim", "",
                           "CLIP score of each generated image against its prompt, 100 * cos (HumanSD's CLIPSIM)",
                           valid=(0, 100 + 1e-6)))
