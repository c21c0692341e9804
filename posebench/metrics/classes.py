"""Stateful metrics for training loops and custom evaluations (style rule R2): each class carries its
metadata, keeps per-image values, accumulates in float64 and never re-implements the math of
`functional/`.

    ssim = SSIM(profile="clean")
    for preds, target in loader:          # (B, 3, H, W) in [0, 1]
        ssim.update(preds, target)
    ssim.compute()                        # mean over every image seen
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from posebench.protocols import get_profile


def _check(preds: Tensor, target: Tensor) -> None:
    if preds.shape != target.shape or preds.ndim != 4 or preds.shape[1] != 3:
        raise ValueError(f"expected preds and target of one shape (B, 3, H, W), got {tuple(preds.shape)} and "
                         f"{tuple(target.shape)}")


class _PerImage:
    name = ""
    version = 1
    higher_is_better = True

    def __init__(self) -> None:
        self.values: list[float] = []

    def reset(self) -> None:
        self.values = []

    def compute(self) -> float:
        if not self.values:
            raise ValueError(f"{self.name}: no images were added")
        return float(np.mean(np.asarray(self.values, dtype=np.float64)))

    def stderr(self) -> float | None:
        n = len(self.values)
        return float(np.std(self.values, ddof=1) / math.sqrt(n)) if n > 1 else None


class SSIM(_PerImage):
    """The profile's reported SSIM variant on images in [0, 1] (quantised to the 0..255 grid first, as the
    evaluator sees decoded images)."""

    name = "ssim"

    def __init__(self, profile: str = "clean") -> None:
        super().__init__()
        spec = get_profile(profile).metrics["ssim"]
        self.variant: dict[str, Any] = spec["variants"][spec["reported"]]

    def update(self, preds: Tensor, target: Tensor) -> None:
        from posebench.metrics.functional.ssim import ssim_variant

        _check(preds, target)
        p = (preds.detach().double().clamp(0, 1) * 255).round()
        t = (target.detach().double().clamp(0, 1) * 255).round()
        self.values.extend(ssim_variant(p, t, self.variant).tolist())


class PSNR(_PerImage):
    """PSNR on images in [0, 1] (data range 1)."""

    name = "psnr"

    def update(self, preds: Tensor, target: Tensor) -> None:
        from posebench.metrics.functional.psnr import psnr

        _check(preds, target)
        self.values.extend(psnr(preds.detach().double(), target.detach().double(), data_range=1.0).tolist())


class LPIPS(_PerImage):
    """LPIPS with the profile's net, version and input range; backbone from the weights registry."""

    name = "lpips"
    higher_is_better = False

    def __init__(self, profile: str = "clean", weights: str | None = None, device: str = "cpu") -> None:
        from posebench.metrics.lpips_net import build_lpips

        super().__init__()
        spec = get_profile(profile).metrics["lpips"]
        self.input_range = spec["input_range"]
        self.net = build_lpips(spec["net"], spec["version"], weights=weights, device=device)
        self.device = device

    def update(self, preds: Tensor, target: Tensor) -> None:
        _check(preds, target)
        with torch.inference_mode():
            d = self.net(preds.detach().float().to(self.device), target.detach().float().to(self.device),
                         input_range=self.input_range)
        self.values.extend(d.double().cpu().tolist())


class FID:
    """FID of generated images against a real set, both streamed through `update(images, real=...)`.

    Images are (B, 3, H, W) in [0, 1]; features come from the profile's extractor.
    """

    name = "fid"
    version = 1
    higher_is_better = False

    def __init__(self, profile: str = "clean", weights: str | None = None, device: str = "cpu") -> None:
        from posebench.metrics.features import build_extractor
        from posebench.metrics.stats import FeatureStats

        spec = get_profile(profile).metrics["fid"]
        self.extractor = build_extractor(spec["extractor"], weights=weights, device=device)
        self.fake, self.real = FeatureStats(), FeatureStats()
        self.device = device

    def update(self, images: Tensor, *, real: bool) -> None:
        x = (images.detach().float().clamp(0, 1) * 255).round().to(self.device)
        with torch.inference_mode():
            feats = self.extractor(x).double().cpu().numpy()
        (self.real if real else self.fake).update(feats)

    def compute(self) -> float:
        from posebench.metrics.functional.frechet import frechet_distance

        return frechet_distance(self.fake.mean(), self.fake.cov(), self.real.mean(), self.real.cov())
