"""Stateful metric classes agree with the functional core and with skimage, batch by batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from posebench.metrics.classes import FID, LPIPS, PSNR, SSIM


def _images(seed: int, n: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, 64, 48, generator=g, dtype=torch.float64) * 255).round() / 255


def test_ssim_and_psnr_accumulate_over_batches():
    a, b = _images(0), _images(1)
    ssim, psnr = SSIM("clean"), PSNR()
    for lo in (0, 1, 3):  # uneven batches
        hi = {0: 1, 1: 3, 3: 4}[lo]
        ssim.update(a[lo:hi], b[lo:hi])
        psnr.update(a[lo:hi], b[lo:hi])
    ref_s = [structural_similarity((x * 255).numpy(), (y * 255).numpy(), gaussian_weights=True, sigma=1.5,
                                   use_sample_covariance=False, data_range=255, channel_axis=0)
             for x, y in zip(a, b, strict=True)]
    ref_p = [peak_signal_noise_ratio(y.numpy(), x.numpy(), data_range=1) for x, y in zip(a, b, strict=True)]
    assert ssim.compute() == pytest.approx(np.mean(ref_s), abs=1e-10)
    assert psnr.compute() == pytest.approx(np.mean(ref_p), abs=1e-10)
    assert len(ssim.values) == 4 and ssim.stderr() is not None
    ssim.reset()
    with pytest.raises(ValueError, match="no images"):
        ssim.compute()
    with pytest.raises(ValueError, match="same shape|one shape"):
        ssim.update(a, b[:, :, :10])


def test_legacy_ssim_variant_uses_prediction_range():
    a, b = _images(2), _images(3)
    pidm = SSIM("pidm")
    pidm.update(a, b)
    x, y = (a[0] * 255).numpy(), (b[0] * 255).numpy()
    ref = structural_similarity(x, y, gaussian_weights=True, sigma=1.2, use_sample_covariance=False,
                                data_range=x.max() - x.min(), channel_axis=0)
    assert pidm.values[0] == pytest.approx(ref, abs=1e-10)


def test_lpips_and_fid_with_test_weights(tmp_path):
    import torchvision

    from posebench.metrics.features import fid_inception_skeleton

    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), tmp_path / "alex.pth")
    torch.save(fid_inception_skeleton().state_dict(), tmp_path / "fid.pth")
    lp = LPIPS("clean", weights=str(tmp_path / "alex.pth"))
    a, b = _images(4).float(), _images(5).float()
    lp.update(a, a)
    assert lp.values == pytest.approx([0.0] * 4, abs=1e-6)
    lp.update(a, b)
    assert all(v > 0 for v in lp.values[4:])
    fid = FID("clean", weights=str(tmp_path / "fid.pth"))
    fid.update(a, real=False)
    fid.update(a, real=True)
    assert fid.compute() == pytest.approx(0.0, abs=1e-3)  # a set against itself
    fid.update(b, real=True)
    assert fid.compute() > 0
