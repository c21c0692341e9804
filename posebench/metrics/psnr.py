"""PSNR with the profile's data range (on the 0..255 scale), on the images its chains prepare."""

from __future__ import annotations

import torch

from posebench.metrics.base import PerImageMetric
from posebench.metrics.functional.psnr import psnr
from posebench.metrics.inputs import ImagePairs


class PSNR(PerImageMetric):
    """Per-image PSNR, mean over images (identical images give +inf, and so does the mean)."""

    section_name = "psnr"
    higher_is_better = True

    def score(self, pairs: ImagePairs) -> torch.Tensor:
        p255, g255 = self._prepared(pairs)
        return psnr(p255, g255, data_range=float(self.section.data_range))
