"""A small single-person pose network trained on posebench's synthetic people (their keypoints are exact).

It makes pose accuracy and the reference model's gradient guidance real offline, where HigherHRNet's weights
cannot be fetched. It is a synthetic-domain estimator: its numbers say nothing about real photographs, and
results made with it are marked as such. `posebench pose train` trains it (`posebench.pose.train`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn

from posebench.errors import PosebenchError
from posebench.pose.base import PoseEstimator, PoseOutput

FORMAT_VERSION = 1


def _block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.GroupNorm(8, c_out),
                         nn.SiLU())


class SyntheticPoseNet(PoseEstimator):
    """Conv encoder-decoder: heatmaps at 1/2 of a square `input_size` input, COCO-17 joints, single person."""

    keypoint_format = "coco17"
    num_joints = 17
    stride = 2

    def __init__(self, input_size: int = 128, width: int = 32) -> None:
        super().__init__()
        if input_size % 16 or input_size < 32:
            raise ValueError(f"input_size must be a multiple of 16 and >= 32, got {input_size}")
        self.input_size = input_size
        self.width = width
        w = width
        self.down = nn.ModuleList([_block(3, w, 2), _block(w, 2 * w, 2), _block(2 * w, 4 * w, 2),
                                   _block(4 * w, 4 * w, 2)])
        self.mid = _block(4 * w, 4 * w)
        # Up path to 1/2 resolution with skip connections (enough context to tell left from right limbs).
        self.up = nn.ModuleList([_block(8 * w, 4 * w), _block(6 * w, 2 * w), _block(3 * w, w)])
        self.head = nn.Conv2d(w, self.num_joints, 1)

    def forward(self, images: torch.Tensor) -> PoseOutput:
        self.check_input(images)
        x = images * 2 - 1
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        x = self.mid(x)
        features = x
        for layer, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            x = nn.functional.interpolate(x, size=skip.shape[-2:], mode="nearest")
            x = layer(torch.cat([x, skip], dim=1))
        return PoseOutput(heatmaps=torch.sigmoid(self.head(x)), features=features)

    def config(self) -> dict:
        return {"estimator": "synthetic-posenet", "format_version": FORMAT_VERSION, "input_size": self.input_size,
                "width": self.width, "keypoint_format": self.keypoint_format}


def load_synthetic(path: str | Path) -> SyntheticPoseNet:
    """A trained SyntheticPoseNet from its safetensors file (architecture read from the file's metadata)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise PosebenchError(f"pose network file {path} does not exist; train one with `posebench pose train`")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        cfg = json.loads(meta.get("config", "{}"))
    except Exception as exc:  # noqa: BLE001 - any parse failure means the same to the user
        raise PosebenchError(f"{path} is not a posebench pose network file ({exc})") from exc
    if cfg.get("estimator") != "synthetic-posenet" or cfg.get("format_version") != FORMAT_VERSION:
        raise PosebenchError(f"{path} is not a synthetic-posenet file (metadata {cfg or 'missing'})")
    model = SyntheticPoseNet(int(cfg["input_size"]), int(cfg["width"]))
    model.load_state_dict(load_file(str(path)))
    return model.eval()


def synthetic_posenet(weights: str | Path | None = None, **kwargs: int) -> SyntheticPoseNet:
    """Registry builder: a trained network from `weights`, else a fresh (untrained) one."""
    return load_synthetic(weights) if weights is not None else SyntheticPoseNet(**kwargs)
