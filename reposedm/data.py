"""Training and sampling data: posebench's pairs of a split, as tensors at the model's resolution.

Splits come from posebench's readers (never re-derived here). Each item is a (source, target) pair of
one person: the source image, the target pose rendered with the model's renderer, the target keypoints in
the pose estimator's joint order (for the guidance reference) and, in training, the target image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from posebench.datasets.keypoints import Keypoints
from posebench.datasets.names import PairKey
from posebench.datasets.problems import ProblemLog
from posebench.datasets.render import render
from posebench.errors import PosebenchError
from posebench.images import read_rgb, resize


@dataclass(frozen=True)
class PairSource:
    """Where pairs come from: a posebench dataset root and split."""

    dataset: str
    root: Path
    split: str


def load_split(source: PairSource) -> Any:
    """The dataset index, after checking that it has the split."""
    from posebench.datasets import manifest

    log = ProblemLog()
    index = manifest.load(source.dataset, source.root, log)
    log.raise_if_errors(f"{source.dataset} root {source.root}")
    if source.split not in index.splits:
        have = ", ".join(sorted(index.splits)) or "none"
        raise PosebenchError(f"{source.root} has no {source.split!r} split ({source.dataset}; splits found: {have}). "
                             "Point --root at a prepared dataset root (posebench data verify)")
    return index


def load_pairs(source: PairSource) -> tuple[Any, list[PairKey]]:
    """The split's index and its sorted pairs; refuses a root without the split or without pairs."""
    index = load_split(source)
    pairs = sorted(index.splits[source.split].pairs)
    if not pairs:
        raise PosebenchError(f"split {source.split!r} of {source.root} has no pairs to train or sample on")
    return index, pairs


def _first_person(kps: list[Keypoints], stem: str, root: Path) -> Keypoints:
    if not kps:
        raise PosebenchError(f"{root}: image {stem!r} has no keypoints")
    return kps[0]


class PairDataset(Dataset):
    """Items: dict of tensors for one pair (see module docstring); images in [0, 1], float32."""

    def __init__(self, source: PairSource, resolution: tuple[int, int], pose_renderer: str,
                 keypoint_format: str = "coco17", pairs: list[PairKey] | None = None, index: Any = None,
                 resize_method: str = "pil-bicubic") -> None:
        if index is None or pairs is None:
            index, pairs = load_pairs(source)
        self.source = source
        self.split = index.splits[source.split]
        self.pairs = pairs
        self.resolution = (int(resolution[0]), int(resolution[1]))
        self.pose_renderer = pose_renderer
        self.keypoint_format = keypoint_format
        self.resize_method = resize_method

    def __len__(self) -> int:
        return len(self.pairs)

    def _image(self, stem: str) -> torch.Tensor:
        img = read_rgb(self.split.images[stem])
        if img.shape[:2] != self.resolution:
            img = resize(img, self.resolution, self.resize_method)
        return torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255.0

    def keypoints(self, stem: str) -> Keypoints:
        kp = _first_person(self.split.keypoints.get(stem, []), stem, self.source.root)
        return kp.rescale(self.resolution)

    def __getitem__(self, i: int) -> dict[str, Any]:
        pair = self.pairs[i]
        kp = self.keypoints(pair.target)
        pose_map = torch.from_numpy(np.ascontiguousarray(render(self.pose_renderer, kp)))
        est = kp.convert(self.keypoint_format)
        return {
            "index": i,
            "source": self._image(pair.source),
            "target": self._image(pair.target),
            "pose_map": pose_map.float(),
            "target_xy": torch.from_numpy(np.nan_to_num(est.xy, nan=0.0)).float(),
            "target_visible": torch.from_numpy(est.visible.copy()),
        }


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [it[key] for it in items]
        out[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else torch.tensor(values)
    return out
