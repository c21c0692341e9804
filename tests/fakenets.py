"""Randomly initialized networks that tests make usable as metric backbones (no pretrained weights here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def calibrated(model: torch.nn.Module, images: list[Path]) -> torch.nn.Module:
    """BatchNorm statistics from a few real images, so a randomly initialised Inception gives features that
    differ between images (with default statistics they are nearly constant and FID is ~0 for anything)."""
    import torch.nn.functional as F

    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    x = torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1) for p in images])
    x = F.interpolate(x.float(), size=(299, 299), mode="bilinear") / 127.5 - 1
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()
