"""SSIM as the pose-transfer repositories compute it, per image, in float64.

Two variants (docs/metrics.md, "Results keys"):

- `ssim_gaussian` reproduces scikit-image's `structural_similarity(gaussian_weights=True, sigma=sigma,
  use_sample_covariance=False, data_range=..., channel_axis=...)`, the `ssim_256` of PATN, GFLA and CFLD
  (sigma 1.5) and of PIDM and PCDMs (sigma 1.2). It computes pytorch-msssim's `ssim` (same formula, same
  order of operations, float64 window) with one change: the separable Gaussian filter runs as two products
  with banded matrices (BLAS) instead of pytorch-msssim's grouped float64 convolutions, which have no fast
  CPU kernel: 5x faster filtering at 256x176, equal to `pytorch_msssim.ssim` to ~1e-15 (tested), and to
  scikit-image as before.
- `ssim_uniform` reproduces scikit-image's default `structural_similarity(win_size=51, data_range=1,
  channel_axis=...)` (uniform window, sample covariance), the `ssim` of GFLA, PIDM and CFLD.

`legacy_data_range` gives the `pred.max() - pred.min()` data range of the legacy `ssim_256`.

scikit-image filters the whole image with mode="reflect" and then averages the SSIM map over the interior that
lies at least `(win - 1) // 2` pixels from the border. Those interior values never see the reflected border, so
they equal a *valid* (unpadded) convolution, which is what both functions compute.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["gaussian_window", "gaussian_window_size", "legacy_data_range", "ssim_gaussian", "ssim_uniform"]

_K1, _K2 = 0.01, 0.03  # scikit-image and pytorch-msssim defaults


def gaussian_window_size(sigma: float, truncate: float = 3.5) -> int:
    """Side of scikit-image's Gaussian SSIM window: `2 * int(truncate * sigma + 0.5) + 1` (11 for sigma 1.5,
    9 for sigma 1.2)."""
    return 2 * int(truncate * sigma + 0.5) + 1


def legacy_data_range(preds: Tensor) -> Tensor:
    """Per-image `max - min` of the prediction: the data range of the legacy `ssim_256` (GFLA, PIDM, CFLD, PCDMs).

    Args:
        preds: images, (N, C, H, W), any real dtype.

    Returns:
        float64 tensor of shape (N,).
    """
    _check_4d(preds, "preds")
    flat = preds.detach().to(torch.float64).flatten(1)
    return flat.amax(dim=1) - flat.amin(dim=1)


def ssim_gaussian(
    preds: Tensor,
    target: Tensor,
    *,
    sigma: float = 1.5,
    data_range: float | Tensor = 255.0,
    truncate: float = 3.5,
) -> Tensor:
    """Gaussian-window SSIM per image, equal to scikit-image's
    `structural_similarity(gaussian_weights=True, sigma=sigma, use_sample_covariance=False, data_range=...,
    channel_axis=...)`.

    Notation: x = preds, y = target; mu, sigma^2 and sigma_xy are Gaussian-weighted local means, variances and
    covariance (population form, no N/(N-1)); L = data_range; C1 = (0.01 L)^2, C2 = (0.03 L)^2.
    SSIM map = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2)),
    averaged over the valid region of each channel, then over channels.

    Args:
        preds: generated images, (N, C, H, W), on the scale that `data_range` describes (x255 floats for the
            legacy `ssim_256`).
        target: ground-truth images, same shape.
        sigma: Gaussian sigma (1.5: PATN, GFLA, CFLD; 1.2: PIDM, PCDMs).
        data_range: L, a scalar or a per-image tensor of shape (N,) (e.g. `legacy_data_range(preds)`). A zero
            range (constant prediction) gives NaN wherever the window is flat, as scikit-image does.
        truncate: window radius in sigmas; window side = `gaussian_window_size(sigma, truncate)`.

    Returns:
        float64 tensor of shape (N,).

    Raises:
        ValueError: shapes differ, are not 4-D, the image is smaller than the window, or `data_range` has the
            wrong shape.
    """
    win_size = gaussian_window_size(sigma, truncate)
    x, y, _ = _prepare(preds, target, win_size)
    dr = _data_range(data_range, x.shape[0], x.device)
    # 1-D float64 Gaussian, same construction as scipy.ndimage.gaussian_filter (which skimage calls).
    # pytorch-msssim builds its own window in float32; passing ours keeps the whole computation in float64.
    g = gaussian_window(sigma, win_size, x.device)
    # data_range enters only C1 = (K1 L)^2 and C2 = (K2 L)^2, which broadcast against the (N, C, H', W') SSIM
    # map, so an (N, 1, 1, 1) tensor gives each image its own constants.
    dr = dr.reshape(-1, 1, 1, 1)
    c1, c2 = (_K1 * dr) ** 2, (_K2 * dr) ** 2
    # pytorch-msssim's _ssim, step for step (compensation = 1):
    mu1, mu2, xx, yy, xy = _band_filter(torch.cat([x, y, x * x, y * y, x * y]), g).chunk(5)
    mu1_sq, mu2_sq, mu1_mu2 = mu1.pow(2), mu2.pow(2), mu1 * mu2
    sigma1_sq, sigma2_sq, sigma12 = xx - mu1_sq, yy - mu2_sq, xy - mu1_mu2
    cs_map = (2 * sigma12 + c2) / (sigma1_sq + sigma2_sq + c2)
    ssim_map = ((2 * mu1_mu2 + c1) / (mu1_sq + mu2_sq + c1)) * cs_map
    return torch.flatten(ssim_map, 2).mean(-1).mean(1)


def gaussian_window(sigma: float, win_size: int, device: torch.device | str = "cpu") -> Tensor:
    """1-D float64 Gaussian of `win_size` taps, built as scipy.ndimage.gaussian_filter builds it (skimage's call)."""
    coords = torch.arange(win_size, dtype=torch.float64, device=device) - (win_size // 2)
    g = torch.exp(-0.5 * (coords / sigma) ** 2)
    return g / g.sum()


def _band(n: int, g: Tensor) -> Tensor:
    """(n, n - K + 1) matrix B with B[i + k, i] = g[k]: `v @ B` is the valid 1-D correlation of v with g."""
    k = g.shape[0]
    m = n - k + 1
    band = torch.zeros(n, m, dtype=g.dtype, device=g.device)
    cols = torch.arange(m, device=g.device)
    for j in range(k):
        band[cols + j, cols] = g[j]
    return band


def _band_filter(z: Tensor, g: Tensor) -> Tensor:
    """Valid separable filtering of (N, C, H, W) with g along W then H, as two BLAS matrix products."""
    h, w = z.shape[-2:]
    z = z @ _band(w, g)
    return (z.transpose(-1, -2) @ _band(h, g)).transpose(-1, -2)


def ssim_uniform(
    preds: Tensor,
    target: Tensor,
    *,
    win_size: int = 51,
    data_range: float | Tensor = 1.0,
) -> Tensor:
    """Uniform-window SSIM per image, equal to scikit-image's default
    `structural_similarity(win_size=win_size, data_range=..., channel_axis=...)` (`use_sample_covariance=True`).

    Notation: as in `ssim_gaussian`, with box-filter local statistics over NP = win_size^2 pixels, and the
    variances and covariance scaled by NP / (NP - 1) (sample covariance).

    Args:
        preds: generated images, (N, C, H, W) ([0, 1] floats for the legacy `ssim`).
        target: ground-truth images, same shape.
        win_size: odd window side (51 in GFLA, PIDM and CFLD).
        data_range: a scalar or a per-image tensor of shape (N,).

    Returns:
        float64 tensor of shape (N,).

    Raises:
        ValueError: shapes differ, are not 4-D, `win_size` is even or larger than the image, or `data_range` has
            the wrong shape.
    """
    if win_size < 3 or win_size % 2 == 0:
        raise ValueError(f"win_size must be odd and >= 3, got {win_size}")
    x, y, _ = _prepare(preds, target, win_size)
    dr = _data_range(data_range, x.shape[0], x.device).reshape(-1, 1, 1, 1)
    c1, c2 = (_K1 * dr) ** 2, (_K2 * dr) ** 2
    cov_norm = win_size**2 / (win_size**2 - 1.0)
    # 1. Local means of x, y, x^2, y^2, xy over the valid region (stride 1, no padding). The box mean is
    #    separable; as for the Gaussian, the two passes run as banded-matrix products (BLAS): float64
    #    `avg_pool2d` has no fast CPU kernel (a 51-wide window made it cost ~90 ms per 256x256 image).
    box = torch.full((win_size,), 1.0 / win_size, dtype=torch.float64, device=x.device)
    ux, uy, uxx, uyy, uxy = _band_filter(torch.cat([x, y, x * x, y * y, x * y]), box).chunk(5)
    # 2. Sample (co)variances.
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    # 3. SSIM map in scikit-image's order of operations, then mean per channel and over channels.
    a1, a2 = 2 * ux * uy + c1, 2 * vxy + c2
    b1, b2 = ux**2 + uy**2 + c1, vx + vy + c2
    s = (a1 * a2) / (b1 * b2)
    return s.flatten(2).mean(dim=2).mean(dim=1)


def _check_4d(t: Tensor, name: str) -> None:
    if not isinstance(t, Tensor) or t.ndim != 4:
        shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
        raise ValueError(f"{name} must be an (N, C, H, W) tensor, got {shape}")


def _prepare(preds: Tensor, target: Tensor, win_size: int) -> tuple[Tensor, Tensor, int]:
    _check_4d(preds, "preds")
    _check_4d(target, "target")
    if preds.shape != target.shape:
        raise ValueError(f"preds and target must have the same shape, got {tuple(preds.shape)} and "
                         f"{tuple(target.shape)}")
    h, w = preds.shape[-2:]
    if h < win_size or w < win_size:
        raise ValueError(f"images of size {h}x{w} are smaller than the {win_size}x{win_size} SSIM window")
    return preds.detach().to(torch.float64), target.detach().to(torch.float64), preds.shape[1]


def _data_range(data_range: float | Tensor, n: int, device: torch.device) -> Tensor:
    dr = torch.as_tensor(data_range, dtype=torch.float64, device=device)
    if dr.ndim == 0:
        dr = dr.expand(n)
    elif dr.shape != (n,):
        raise ValueError(f"data_range must be a scalar or have shape ({n},), got {tuple(dr.shape)}")
    bad = ~torch.isfinite(dr) | (dr < 0)
    if bad.any():
        raise ValueError(f"data_range must be finite and >= 0; {int(bad.sum())} of {n} values are not "
                         f"(first: {dr[bad][0].item()})")
    return dr


def ssim_variant(preds255: Tensor, target255: Tensor, variant: Any) -> Tensor:
    """The SSIM a metric profile's variant describes, on images with values in [0, 255].

    `variant` is a `posebench.protocols.specs.SSIMVariant` (window, data_range, sigma, win_size), e.g. the Gaussian
    sigma 1.5 window with a fixed data range 255, or the uniform 51 window with data range 1. Gaussian variants work
    on the x255 scale (as `ssim_256` in the reference code), uniform ones on [0, 1] floats (as their `ssim`);
    `data_range: prediction` means the per-image `max - min` of the prediction on that scale.
    """
    if variant.window == "gaussian":
        x, y = preds255, target255
    else:
        x, y = preds255 / 255.0, target255 / 255.0
    dr = legacy_data_range(x) if variant.data_range == "prediction" else float(variant.data_range)
    if variant.window == "gaussian":
        return ssim_gaussian(x, y, sigma=float(variant.sigma), data_range=dr)
    return ssim_uniform(x, y, win_size=int(variant.win_size), data_range=dr)
