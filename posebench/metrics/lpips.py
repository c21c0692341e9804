"""LPIPS as a profile feeds it (net, weight version, input range, drop-last), on the images its chains prepare;
`masked=True` is GFLA's mask-LPIPS (`calculate_mask_lpips`: the network input `img / 127.5 - 1` times the mask)."""

from __future__ import annotations

import os
from typing import Any

import torch

from posebench.metrics.base import PerImageMetric
from posebench.metrics.inputs import ImagePairs


class LPIPS(PerImageMetric):
    """Per-image LPIPS, mean over the images the profile's drop-last keeps.

    Args:
        profile, protocol, resolution: see `ProfileMetric`.
        weights: the backbone file (registry name or path); default the registry's for the section's net.
        device: where the network runs.
        net: an already built `posebench.metrics.lpips_net.LPIPSNet` to share (e.g. with the masked metric).
        masked: GFLA's mask-LPIPS (needs `ImagePairs.keypoints`).
    """

    section_name = "lpips"
    higher_is_better = False

    def __init__(self, profile: Any = "clean", *, weights: str | os.PathLike[str] | None = None,
                 device: str = "cpu", net: Any = None, masked: bool = False, **kwargs: Any) -> None:
        super().__init__(profile, **kwargs)
        if net is None:
            from posebench.metrics.lpips_net import build_lpips

            net = build_lpips(self.section.net, self.section.version, weights=weights, device=device)
        self.net = net
        self.masked = masked

    def score(self, pairs: ImagePairs) -> torch.Tensor:
        p255, g255 = self._prepared(pairs)
        if self.masked:
            m = torch.from_numpy(pairs.masks_at(tuple(p255.shape[-2:])))[:, None].to(p255.device).double()
            # GFLA multiplies the network input in [-1, 1] by the mask: outside it, the value that maps to 0
            fill = 0.0 if self.section.input_range == "zero_1_raw" else 127.5
            p255, g255 = p255 * m + fill * (1 - m), g255 * m + fill * (1 - m)
        dev = self.net.device
        with torch.inference_mode():
            # a float chain keeps its cubic overshoot past [0, 1], as the reference feeds it
            vals = self.net((p255 / 255.0).float().to(dev), (g255 / 255.0).float().to(dev),
                            input_range=self.section.input_range, check_range=False)
        return vals.double().cpu()
