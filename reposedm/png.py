"""Writing images from tensors: one conversion ([0, 1] CHW float -> uint8 HWC) and one atomic PNG write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8 (rounded, clipped)."""
    return (image.detach().float().permute(1, 2, 0).cpu().numpy() * 255).round().clip(0, 255).astype(np.uint8)


def write_png(path: Path, image: torch.Tensor | np.ndarray) -> None:
    """Write a (3, H, W) [0, 1] tensor or an (H, W, 3) uint8 array as PNG, atomically."""
    from posebench.images import write_png as write_array

    write_array(path, to_uint8(image) if isinstance(image, torch.Tensor) else image)
