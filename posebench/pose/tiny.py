"""A tiny randomly initialized pose network: the differentiable stand-in for tests and offline runs.

It has the interface of the real estimators (heatmaps + backbone features, COCO-17 joints) and is built
from a seed, so guidance code can be tested end to end without pretrained weights. Its heatmaps mean
nothing until it is trained.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from posebench.pose.base import PoseEstimator, PoseOutput


class TinyPoseNet(PoseEstimator):
    keypoint_format = "coco17"
    num_joints = 17

    def __init__(self, width: int = 16, stride: int = 2, seed: int = 0, num_joints: int = 17) -> None:
        super().__init__()
        if stride not in (1, 2, 4):
            raise ValueError(f"stride must be 1, 2 or 4, got {stride}")
        self.stride = stride
        self.num_joints = num_joints
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), nn.SiLU()]
        for _ in range({1: 0, 2: 1, 4: 2}[stride]):
            layers += [nn.Conv2d(width, width, 3, stride=2, padding=1), nn.SiLU()]
        layers += [nn.Conv2d(width, width, 3, padding=1), nn.SiLU()]
        self.backbone = nn.Sequential(*layers)
        self.head = nn.Conv2d(width, num_joints, 1)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():  # seeded init independent of the global RNG
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * (0.5 / max(1, p[0].numel()) ** 0.5))

    def forward(self, images: torch.Tensor) -> PoseOutput:
        self.check_input(images)
        features = self.backbone(images * 2 - 1)
        return PoseOutput(heatmaps=torch.sigmoid(self.head(features)), features=features)


def tiny_random(weights: str | Path | None = None, **kwargs: int) -> TinyPoseNet:
    """Registry factory: a seeded random network, or one with the state dict in `weights`."""
    model = TinyPoseNet(**kwargs)
    if weights is not None:
        from posebench import weights as wts
        from posebench.errors import WeightsError

        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"the weights file {path} does not exist")
        try:
            model.load_state_dict(wts.load_state_dict(path))
        except RuntimeError as exc:
            raise WeightsError(f"the weights file {path} does not fit estimator 'tiny-random': {exc}") from exc
    return model
