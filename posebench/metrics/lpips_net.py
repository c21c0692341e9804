"""LPIPS with a sha256-checked backbone and the input conventions of each reference repository.

`lpips.LPIPS` (pip `lpips`, 0.1.4) is built with `pretrained=True` (its linear layers, v0.0 or v0.1, ship inside
the package) and `pnet_rand=True` (so torchvision downloads nothing); the AlexNet/VGG16 backbone then comes
from the registry file (`alexnet-tv-imagenet`, `vgg16-tv-imagenet`) or a user file, a torchvision state dict
whose `features.{i}.*` tensors are mapped onto the lpips slice that holds layer i (`slice{k}.{i}.*`).

Input conventions (`input_range`; images always arrive as [0, 1] floats):
- `minus1_1`: `2 * x - 1`, then LPIPS. GFLA (PerceptualSimilarity, `/127.5 - 1`), PIDM (`/127.5 - 1`), `clean`.
- `zero_1_normalize`: `LPIPS(pred, gt, normalize=True)` on [0, 1], CFLD `models/metrics.py`. lpips computes the
  same `2 * x - 1`, so the numbers equal `minus1_1`; the name records what the code did.
- `zero_1_raw`: [0, 1] fed as is, without `normalize=True`: PCDMs `metrics.py` (a bug, reproduced on purpose).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from posebench import weights as _weights
from posebench.errors import WeightsError
from posebench.metrics.features import resolve_weights

log = logging.getLogger(__name__)

InputRange = Literal["minus1_1", "zero_1_normalize", "zero_1_raw"]
INPUT_RANGES: tuple[str, ...] = get_args(InputRange)
LPIPSVersion = Literal["0.0", "0.1"]
BACKBONE_WEIGHTS = {"alex": "alexnet-tv-imagenet", "vgg": "vgg16-tv-imagenet"}


def backbone_key_map(lpips_backbone: nn.Module) -> dict[str, str]:
    """torchvision `features.{i}.{param}` -> lpips backbone `slice{k}.{i}.{param}`, read from the lpips module."""
    mapping = {}
    for slice_name, block in lpips_backbone.named_children():
        for layer_idx, layer in block.named_children():
            for param_name, _ in layer.named_parameters(recurse=False):
                mapping[f"features.{layer_idx}.{param_name}"] = f"{slice_name}.{layer_idx}.{param_name}"
    return mapping


def load_backbone(lpips_backbone: nn.Module, state: dict[str, Tensor], source: str | Path) -> int:
    """Load a torchvision AlexNet/VGG state dict into lpips' backbone slices; returns the tensors loaded.

    `classifier.*` keys are ignored. Every backbone tensor must be present and nothing under `features.` may be
    left over.
    """
    mapping = backbone_key_map(lpips_backbone)
    features = {k: v for k, v in state.items() if k.startswith("features.")}
    leftover = sorted(set(features) - set(mapping))
    missing = sorted(set(mapping) - set(features))
    if leftover or missing:
        raise WeightsError(
            f"{source} does not match the lpips backbone: missing {missing[:4]} ({len(missing)}), "
            f"unmapped {leftover[:4]} ({len(leftover)}). Give a torchvision AlexNet/VGG16 state dict "
            f"(keys `features.N.weight`)."
        )
    try:
        lpips_backbone.load_state_dict({mapping[k]: v for k, v in features.items()}, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{source} does not fit the lpips backbone: {exc}") from exc
    return len(features)


class LPIPSNet:
    """Per-image LPIPS distances. Attributes: net, version, weights_sha256, weights_path, device."""

    def __init__(self, model: nn.Module, *, net: str, version: str, resolved: _weights.ResolvedFile,
                 device: torch.device) -> None:
        self.model = model.requires_grad_(False).eval().to(device)
        self.net = net
        self.version = version
        self.weights_sha256 = resolved.sha256
        self.weights_path = resolved.path
        self.weights_registry_name = resolved.registry_name
        self.device = device

    def __repr__(self) -> str:
        return f"LPIPSNet(net={self.net!r}, version={self.version!r}, weights_sha256={self.weights_sha256[:16]!r})"

    def __call__(self, preds: Tensor, target: Tensor, input_range: InputRange = "minus1_1", *,
                 check_range: bool = True) -> Tensor:
        """LPIPS of each pair.

        Args:
            preds, target: (B, 3, H, W) float images in [0, 1].
            input_range: how the reference code fed them to LPIPS (module doc).
            check_range: refuse values outside [0, 1]; the evaluator turns it off for profiles whose float
                resize leaves cubic overshoot in the images, as the reference scripts feed them.

        Returns:
            (B,) float32 distances on the network's device.
        """
        if input_range not in INPUT_RANGES:
            raise ValueError(f"input_range must be one of {INPUT_RANGES}, got {input_range!r}")
        for label, x in (("preds", preds), ("target", target)):
            if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != 3:
                shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
                raise ValueError(f"{label}: expected a Bx3xHxW tensor, got {shape}")
            if check_range and x.numel() and (float(x.min()) < -1e-6 or float(x.max()) > 1 + 1e-6):
                raise ValueError(f"{label}: expected values in [0, 1], got [{float(x.min()):g}, {float(x.max()):g}]")
        if preds.shape != target.shape:
            raise ValueError(f"preds {tuple(preds.shape)} and target {tuple(target.shape)} differ in shape")
        with torch.inference_mode():
            p = preds.to(self.device, torch.float32)
            t = target.to(self.device, torch.float32)
            if input_range == "minus1_1":
                out = self.model(2 * p - 1, 2 * t - 1)
            elif input_range == "zero_1_normalize":
                out = self.model(p, t, normalize=True)
            else:
                out = self.model(p, t)
            return out.reshape(p.shape[0]).float()


def build_lpips(
    net: Literal["alex", "vgg"] = "alex",
    version: LPIPSVersion = "0.1",
    weights: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
) -> LPIPSNet:
    """LPIPS with lpips' own linear layers and a checked torchvision backbone.

    Args:
        net: backbone, `alex` or `vgg`.
        version: linear-layer weights, `0.1` (current) or `0.0` (first release, no input scaling layer).
        weights: None for the registry backbone (`alexnet-tv-imagenet` / `vgg16-tv-imagenet`), that registry name,
            or a path to a torchvision state dict (accepted with a warning when not a registry file).
        device: where the network runs.

    Raises:
        ValueError: unknown net or version. WeightsError / OfflineError: backbone file missing or unusable.
    """
    if net not in BACKBONE_WEIGHTS:
        raise ValueError(f"net must be one of {sorted(BACKBONE_WEIGHTS)}, got {net!r}")
    if version not in get_args(LPIPSVersion):
        raise ValueError(f"version must be one of {get_args(LPIPSVersion)}, got {version!r}")
    default = BACKBONE_WEIGHTS[net]
    resolved = resolve_weights(weights, default=default, accepted=(default,), role=f"LPIPS net '{net}'")

    import lpips

    with warnings.catch_warnings():  # lpips calls torchvision with the deprecated `pretrained=False`
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net=net, version=version, pretrained=True, pnet_rand=True, verbose=False)
    n = load_backbone(model.net, _weights.load_state_dict(resolved.path), resolved.path)
    log.info("LPIPS %s v%s: %d backbone tensors from %s", net, version, n, resolved.path)
    return LPIPSNet(model, net=net, version=version, resolved=resolved, device=torch.device(device))
