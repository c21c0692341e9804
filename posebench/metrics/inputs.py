"""`ImagePairs`: one batch of generated images and their ground truths, as the metric classes consume them.

The evaluator decodes each image once and hands the same `ImagePairs` to every metric; each metric asks for the
images prepared by its profile's chains (`preds_at`, `targets_at`), and each distinct chain runs once per batch
(memoised), however many metrics share it. Feature extractors memoise their features the same way (`memo`), so
FID, KID and a second FID against another real set cost one forward pass.

A training loop can hand tensors instead: `ImagePairs.of(preds, target)` turns (B, 3, H, W) floats in [0, 1]
into the 8-bit images a saved PNG would hold (rounded), uint8 tensors or (B, H, W, 3) uint8 arrays as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from posebench.errors import PosebenchError
from posebench.images import apply_chain

ResolvedChain = tuple[tuple[str, tuple[int, int], str], ...]  # (method, size, output) per step


class ImagePairs:
    """Generated images (`preds`) and, for reference metrics, their ground truths (`targets`).

    Args:
        preds: (H, W, 3) uint8 arrays (sizes may differ between images).
        targets: the matching ground-truth arrays, or None for set metrics of generated images only.
        labels: what an error names for image i (the file, or the pair); default "image i".
        keypoints: the targets' OpenPose-18 keypoints (`posebench.datasets.keypoints.Keypoints`), for masked
            metrics.
    """

    def __init__(self, preds: Sequence[np.ndarray], targets: Sequence[np.ndarray] | None = None, *,
                 labels: Sequence[str] | None = None, keypoints: Sequence[Any] | None = None) -> None:
        if targets is not None and len(targets) != len(preds):
            raise ValueError(f"{len(preds)} generated images but {len(targets)} ground truths")
        self.preds = list(preds)
        self.targets = None if targets is None else list(targets)
        self.labels = list(labels) if labels is not None else [f"image {i}" for i in range(len(preds))]
        self.keypoints = None if keypoints is None else list(keypoints)
        self.resized: set[int] = set()  # positions of generated images a chain had to resize
        self._memo: dict[Any, Any] = {}

    def __len__(self) -> int:
        return len(self.preds)

    @classmethod
    def of(cls, preds: Any, target: Any = None) -> ImagePairs:
        """`preds` as is when it is an ImagePairs (then `target` must be None), else built from tensors/arrays."""
        if isinstance(preds, ImagePairs):
            if target is not None:
                raise ValueError("pass the ground truth inside the ImagePairs, not as `target`")
            return preds
        return cls(_as_uint8_list(preds, "preds"), None if target is None else _as_uint8_list(target, "target"))

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """`compute()` once per batch and key."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def preds_at(self, chain: ResolvedChain, *, resize: bool, profile: str) -> np.ndarray:
        """(B, H, W, 3) generated images at the chain's size (`prepare_prediction` per image)."""
        def build() -> np.ndarray:
            out = []
            for i, img in enumerate(self.preds):
                prepared, resized = prepare_prediction(img, chain, resize=resize, profile=profile, label=self.labels[i])
                if resized:
                    self.resized.add(i)
                out.append(prepared)
            return _stack(out, self.labels, "generated")
        return self.memo(("preds", chain, resize), build)

    def targets_at(self, chain: ResolvedChain) -> np.ndarray:
        """(B, H, W, 3) ground truths through the chain."""
        if self.targets is None:
            raise ValueError("this metric compares with the ground truth: give the targets")
        return self.memo(("targets", chain), lambda: _stack([apply_chain(t, list(chain)) for t in self.targets],
                                                            self.labels, "ground-truth"))

    def preload(self, key: tuple, images: list[np.ndarray], resized: Sequence[bool] = ()) -> None:
        """Images a `preds_at` / `targets_at` key would give, prepared elsewhere (the evaluator's decoding
        workers run the chains in parallel): stacked now, so the metrics read them as if prepared here."""
        self._memo[key] = _stack(images, self.labels, "generated" if key[0] == "preds" else "ground-truth")
        self.resized.update(i for i, r in enumerate(resized) if r)

    def masks_at(self, size: tuple[int, int]) -> np.ndarray:
        """(B, H, W) bool target-pose masks (PATN's `produce_ma_mask`) at `size`."""
        from posebench.datasets.render import pose_mask

        if self.keypoints is None:
            raise ValueError("masked metrics need the targets' keypoints")

        def build() -> np.ndarray:
            masks = []
            for i, kp in enumerate(self.keypoints):
                if kp is None:
                    raise PosebenchError(f"{self.labels[i]}: a masked metric needs the target's keypoints; the root "
                                         "has none for it")
                masks.append(pose_mask(kp.rescale(size)))
            return np.stack(masks)
        return self.memo(("masks", size), build)


def prepare_prediction(img: np.ndarray, chain: ResolvedChain, *, resize: bool, profile: str,
                       label: str) -> tuple[np.ndarray, bool]:
    """A generated image through a prediction chain: used as it is when already at the chain's final size;
    another size is resized through the chain when the profile resizes predictions, else refused naming `label`.
    Returns the image and whether it was resized."""
    if not chain or img.shape[:2] == chain[-1][1]:
        return img, False
    target = chain[-1][1]
    if not resize:
        raise PosebenchError(
            f"{label}: generated image is {img.shape[0]}x{img.shape[1]}, the protocol needs {target[0]}x{target[1]}; "
            f"profile {profile} does not resize predictions. Generate at the protocol resolution (or use a legacy "
            "profile that reproduces a resize)")
    return apply_chain(img, list(chain)), True


def _stack(images: list[np.ndarray], labels: list[str], what: str) -> np.ndarray:
    sizes = {img.shape for img in images}
    if len(sizes) > 1:
        first = images[0].shape
        odd = next(i for i, img in enumerate(images) if img.shape != first)
        raise PosebenchError(f"{labels[odd]}: {what} image is {images[odd].shape[0]}x{images[odd].shape[1]}, "
                             f"others in its batch are {first[0]}x{first[1]}; give images of one size")
    return np.stack(images)


def _as_uint8_list(x: Any, name: str) -> list[np.ndarray]:
    """(B, 3, H, W) tensors (float in [0, 1] -> rounded to 8 bits; uint8 as is), (B, H, W, 3) uint8 arrays, or a
    list of (H, W, 3) uint8 arrays -> list of (H, W, 3) uint8 arrays."""
    import torch

    if isinstance(x, (list, tuple)):  # one image per element: (3, H, W) tensors or (H, W, 3) uint8 arrays
        return [_as_uint8_list(img[None] if isinstance(img, torch.Tensor) else np.asarray(img)[None], name)[0]
                for img in x]
    if isinstance(x, torch.Tensor):
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"{name}: expected a (B, 3, H, W) tensor, got {tuple(x.shape)}")
        t = x.detach().cpu()
        if t.dtype != torch.uint8:
            if not t.is_floating_point():
                raise ValueError(f"{name}: expected uint8 or float images in [0, 1], got dtype {t.dtype}")
            lo, hi = (float(t.min()), float(t.max())) if t.numel() else (0.0, 1.0)
            if lo < -1e-6 or hi > 1 + 1e-6:
                raise ValueError(f"{name}: expected float images in [0, 1], got values in [{lo:g}, {hi:g}]")
            t = (t.double().clamp(0, 1) * 255).round().to(torch.uint8)
        return list(t.permute(0, 2, 3, 1).numpy())
    arr = np.asarray(x)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"{name}: expected (B, H, W, 3) uint8 arrays or (B, 3, H, W) tensors, got "
                         f"{arr.dtype} {arr.shape}")
    return list(arr)
