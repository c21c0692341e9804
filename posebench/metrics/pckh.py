"""PCKh as PATN `tool/calPCKH_fashion.py` / `calPCKH_market.py` compute it (and Def-GAN, GFLA after them).

For each generated image, the pose estimator's best detection (highest score; a joint counts as detected when its
score is > 0) is compared with the target's OpenPose-18 keypoints, both in the generated image's pixels:

1. The head box: the extent (width, height) of the target's visible head joints among nose, neck, eyes and ears
   (OpenPose 0, 1, 14-17); an image with fewer than 2 of them is skipped.
2. A joint is right when both it and the target joint are present and |x - x_t| < alpha * width and
   |y - y_t| < alpha * height (a per-axis box, as the script does, not a radius); alpha = 0.5.
3. PCKh = the number of right joints over the number of visible target joints, pooled over all scored images.

Deviation, stated: those papers ran OpenPose (18 joints, its own neck). posebench takes any registered estimator;
COCO-17 detections become OpenPose-18 with the neck at the shoulder midpoint when both shoulders are detected
(`Keypoints.convert`). PCKh is therefore estimator-specific: compare only numbers from the same estimator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

HEAD_JOINTS = (0, 1, 14, 15, 16, 17)  # OpenPose-18: nose, neck, right eye, left eye, right ear, left ear


def head_box(xy: np.ndarray, visible: np.ndarray) -> tuple[float, float] | None:
    """(width, height) of the visible head joints' extent, None with fewer than 2 (PATN `get_head_wh`)."""
    head = [j for j in HEAD_JOINTS if visible[j]]
    if len(head) < 2:
        return None
    pts = xy[head]
    return float(pts[:, 0].max() - pts[:, 0].min()), float(pts[:, 1].max() - pts[:, 1].min())


def pckh_counts(pred_xy: np.ndarray, pred_visible: np.ndarray, target_xy: np.ndarray, target_visible: np.ndarray,
                alpha: float = 0.5) -> tuple[int, int] | None:
    """(right joints, visible target joints) of one image (18 OpenPose joints each); None when the target has no
    head box (the script skips the image)."""
    box = head_box(target_xy, target_visible)
    if box is None:
        return None
    both = pred_visible & target_visible
    d = np.abs(pred_xy - target_xy)
    right = both & (d[:, 0] < box[0] * alpha) & (d[:, 1] < box[1] * alpha)
    return int(right.sum()), int(target_visible.sum())


def best_person(detections: Sequence[dict], frame: tuple[int, int]) -> Any:
    """The highest-scoring COCO-17 detection as OpenPose-18 `Keypoints` (joint present when its score > 0), or
    None when there is none."""
    from posebench.datasets.keypoints import Keypoints

    if not detections:
        return None
    best = max(detections, key=lambda d: d["score"])
    kp = np.asarray(best["keypoints"], dtype=np.float64).reshape(17, 3)
    return Keypoints(kp[:, :2].astype(np.float32), kp[:, 2] > 0, frame, "coco17").convert("openpose18")


class PCKh(Metric):
    """PCKh (module doc) of the estimator's detections on generated images against their targets' keypoints.

    `update(detections, targets, index=None)`: per image, its COCO-17 detections (list of COCO results) and
    its target `Keypoints` (OpenPose-18 or any format converted to it) in the generated image's frame.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, alpha: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha = alpha
        for name in ("right", "valid", "index"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self.add_state("seen", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, detections: Sequence[Sequence[dict]], targets: Sequence[Any], *,
               index: Sequence[int] | None = None) -> None:
        right, valid = [], []
        for dets, target in zip(detections, targets, strict=True):
            t = target.convert("openpose18")
            person = best_person(dets, t.frame)
            if person is None:
                person_xy, person_vis = np.zeros((18, 2)), np.zeros(18, dtype=bool)
            else:
                person_xy, person_vis = person.xy.astype(np.float64), person.visible
            counts = pckh_counts(person_xy, person_vis, t.xy.astype(np.float64), t.visible, self.alpha)
            right.append(-1 if counts is None else counts[0])  # -1: skipped (no head box)
            valid.append(-1 if counts is None else counts[1])
        n = len(right)
        idx = np.arange(n) + int(self.seen) if index is None else np.asarray(index)
        self.right.append(torch.tensor(right, dtype=torch.long))
        self.valid.append(torch.tensor(valid, dtype=torch.long))
        self.index.append(torch.as_tensor(idx, dtype=torch.long))
        self.seen += n

    def _counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if isinstance(self.right, list) and not self.right:
            return (np.zeros(0, dtype=np.int64),) * 3
        idx = dim_zero_cat(self.index).numpy()
        order = np.argsort(idx, kind="stable")
        return idx[order], dim_zero_cat(self.right).numpy()[order], dim_zero_cat(self.valid).numpy()[order]

    def per_image(self) -> tuple[np.ndarray, np.ndarray]:
        """(positions, per-image PCKh); NaN for images the script skips (no head box) or without visible joints."""
        idx, right, valid = self._counts()
        with np.errstate(divide="ignore", invalid="ignore"):
            return idx, np.where(valid > 0, right / np.maximum(valid, 1), np.nan)

    def compute(self) -> torch.Tensor:
        return torch.tensor(self.summary()["value"], dtype=torch.float64)

    def summary(self) -> dict[str, Any]:
        _, right, valid = self._counts()
        scored = valid >= 0
        n_valid = int(valid[scored].sum())
        value = float(right[scored].sum() / n_valid) if n_valid else float("nan")
        return {"value": value, "stderr": None, "n": int(scored.sum()),
                "details": {"alpha": self.alpha, "right": int(right[scored].sum()), "joints": n_valid,
                            "skipped_no_head": int((~scored).sum()),
                            "rule": "PATN calPCKH: per-axis box alpha x head extent (nose, neck, eyes, ears)"}}
