"""Image and pose metrics: one class per metric (`torchmetrics.Metric`s that apply a profile's preparation
themselves), registered in `posebench.metrics.registry`; pure functions in `functional/`; feature networks in
`features.py` and `lpips_net.py`.

    from posebench.metrics import FID, KID, SSIM, LPIPS, PSNR
    ssim = SSIM(profile="pidm")            # PIDM's SSIM: its resize, sigma 1.2, the prediction's data range
    ssim.update(preds, target)             # (B, 3, H, W) in [0, 1] (or uint8), any size the profile resizes
    ssim.compute()

The classes import torch and torchmetrics on first use, so `import posebench.metrics` stays light. This floor
never imports the evaluator or reposedm.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "FID": "posebench.metrics.fid",
    "KID": "posebench.metrics.kid",
    "SSIM": "posebench.metrics.ssim",
    "LPIPS": "posebench.metrics.lpips",
    "PSNR": "posebench.metrics.psnr",
    "IS": "posebench.metrics.inception_score",
    "PCKh": "posebench.metrics.pckh",
    "PoseAccuracy": "posebench.metrics.pose_accuracy",
    "CLIPSim": "posebench.metrics.clipsim",
    "ImagePairs": "posebench.metrics.inputs",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'posebench.metrics' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
