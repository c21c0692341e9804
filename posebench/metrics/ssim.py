"""SSIM as a profile applies it: one variant of the profile's `ssim` section (the reported one by default), on the
images its chains prepare; `masked=True` is PATN's mask-SSIM (both 8-bit images times the target-pose mask)."""

from __future__ import annotations

from typing import Any

import torch

from posebench.metrics.base import PerImageMetric
from posebench.metrics.functional.ssim import ssim_variant
from posebench.metrics.inputs import ImagePairs


class SSIM(PerImageMetric):
    """Per-image SSIM, mean over images.

    Args:
        profile, protocol, resolution: see `ProfileMetric`.
        variant: a variant of the profile's `ssim` section; default the reported one (results key `ssim`).
        masked: multiply both images by the target-pose mask first (needs `ImagePairs.keypoints`).

    Example:
        >>> ssim = SSIM(profile="pidm")       # sigma 1.2, the prediction's data range, at PIDM's 256x256
        >>> ssim.update(preds, target)        # (B, 3, H, W) in [0, 1], full size: the profile resizes
        >>> ssim.compute()
    """

    section_name = "ssim"
    higher_is_better = True

    def __init__(self, profile: Any = "clean", *, variant: str | None = None, masked: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(profile, **kwargs)
        self.variant_name = variant or self.section.reported
        if self.variant_name not in self.section.variants:
            raise ValueError(f"profile {self.profile.name} has no SSIM variant {self.variant_name!r}; it has "
                             f"{', '.join(self.section.variants)}")
        self.variant = self.section.variants[self.variant_name]
        self.masked = masked

    def score(self, pairs: ImagePairs) -> torch.Tensor:
        p255, g255 = self._prepared(pairs)
        if self.masked:
            m = torch.from_numpy(pairs.masks_at(tuple(p255.shape[-2:])))[:, None].to(p255.device).double()
            p255, g255 = p255 * m, g255 * m
        return ssim_variant(p255, g255, self.variant)

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        out["details"].update(variant=self.variant_name, spec=self.variant.as_dict())
        return out
