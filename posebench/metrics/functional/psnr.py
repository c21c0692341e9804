"""PSNR per image, equal to scikit-image's `peak_signal_noise_ratio(image_true, image_test, data_range=...)`
(the `compare_psnr(data_range=1)` of GFLA and `peak_signal_noise_ratio(data_range=1)` of CFLD)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["psnr"]


def psnr(preds: Tensor, target: Tensor, *, data_range: float | Tensor = 1.0) -> Tensor:
    """Peak signal-to-noise ratio per image, in dB.

    Notation: L = data_range; MSE = mean of (preds - target)^2 over all C * H * W values of one image.
    PSNR = 10 log10(L^2 / MSE).

    Args:
        preds: generated images, (N, C, H, W).
        target: ground-truth images, same shape.
        data_range: L, a scalar or a per-image tensor of shape (N,) (1 for [0, 1] images).

    Returns:
        float64 tensor of shape (N,). Identical images (MSE = 0) give `+inf`, as scikit-image does; average
        such values with care (one `inf` makes the mean `inf`).

    Raises:
        ValueError: shapes differ or are not 4-D, or `data_range` has the wrong shape.
    """
    for name, t in (("preds", preds), ("target", target)):
        if not isinstance(t, Tensor) or t.ndim != 4:
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"{name} must be an (N, C, H, W) tensor, got {shape}")
    if preds.shape != target.shape:
        raise ValueError(f"preds and target must have the same shape, got {tuple(preds.shape)} and "
                         f"{tuple(target.shape)}")
    n = preds.shape[0]
    dr = torch.as_tensor(data_range, dtype=torch.float64, device=preds.device)
    if dr.ndim != 0 and dr.shape != (n,):
        raise ValueError(f"data_range must be a scalar or have shape ({n},), got {tuple(dr.shape)}")
    diff = preds.detach().to(torch.float64) - target.detach().to(torch.float64)
    mse = diff.square().flatten(1).mean(dim=1)
    return 10 * torch.log10(dr**2 / mse)
