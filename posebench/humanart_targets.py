"""The deterministic target frame of `humanart-val` under the `clean` pose profile (quirk 6 fixed).

HumanSD built its validation targets with the training augmentations (flips, rotation, colour jitter, a random
crop), so they cannot be reproduced. posebench's clean targets instead are a fixed resize and centre crop of each
annotated image to the protocol resolution (512x512):

1. scale so the image covers the output (for a square output: the shorter side becomes 512); the resized size is
   (round(H·s), round(W·s)), and keypoints scale per axis by resized / original size;
2. centre-crop: offset = (resized − output) // 2 on each axis; keypoints move by −offset;
3. a joint whose (x, y) falls outside [0, W_out) x [0, H_out) becomes invisible, (0, 0, 0); pixel coordinates are
   continuous, pixel i covering [i, i + 1);
4. a person with no visible joint left is dropped;
5. `bbox` is the min/max box of the visible joints and `area` its w·h: the annotated area, scaled, would still
   count the parts the crop cut off.

`posebench data targets` writes these targets as COCO keypoint JSON, so generation can be conditioned on exactly
what is scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from posebench.errors import PosebenchError
from posebench.metrics.pose import visible_box

N_JOINTS = 17


@dataclass(frozen=True)
class TargetFrame:
    """Resize-then-centre-crop map from an annotated image to the protocol frame.

    Attributes:
        source: (H, W) of the annotated image.
        size: (H, W) of the target frame (the protocol resolution).
        scale_x: resized width / source width.
        scale_y: resized height / source height.
        offset_x: pixels cropped on the left of the resized image.
        offset_y: pixels cropped on the top.
    """

    source: tuple[int, int]
    size: tuple[int, int]
    scale_x: float
    scale_y: float
    offset_x: int
    offset_y: int

    def to_frame(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) annotated-image coordinates to target-frame coordinates."""
        xy = np.asarray(xy, dtype=np.float64)
        return np.stack([xy[..., 0] * self.scale_x - self.offset_x, xy[..., 1] * self.scale_y - self.offset_y], -1)

    def inside(self, xy: np.ndarray) -> np.ndarray:
        """(...,) True where a target-frame point lies on the frame's pixels."""
        h, w = self.size
        return (xy[..., 0] >= 0) & (xy[..., 0] < w) & (xy[..., 1] >= 0) & (xy[..., 1] < h)

    def as_dict(self) -> dict[str, Any]:
        return {"source_height": self.source[0], "source_width": self.source[1], "scale": [self.scale_x,
                self.scale_y], "offset": [self.offset_x, self.offset_y], "method": "resize-cover-center-crop"}


def target_frame(height: int, width: int, size: tuple[int, int]) -> TargetFrame:
    """The frame of an annotated (height, width) image: scale to cover `size` (H, W), then crop the centre."""
    out_h, out_w = size
    if height <= 0 or width <= 0:
        raise PosebenchError(f"annotated image size must be positive, got {height}x{width}")
    s = max(out_h / height, out_w / width)
    new_h, new_w = max(out_h, round(height * s)), max(out_w, round(width * s))
    return TargetFrame((height, width), (out_h, out_w), new_w / width, new_h / height, (new_w - out_w) // 2,
                       (new_h - out_h) // 2)


def crop_annotation(ann: dict, frame: TargetFrame, visibility_threshold: float = 0.0) -> dict | None:
    """One annotation in the target frame (keypoints, visible-joint bbox and area); None when no joint is left.

    A joint is visible when v > `visibility_threshold` and it falls inside the frame; the others become (0, 0, 0).
    """
    kp = np.asarray(ann["keypoints"], dtype=np.float64)[:3 * N_JOINTS].reshape(N_JOINTS, 3)
    xy = frame.to_frame(kp[:, :2])
    visible = (kp[:, 2] > visibility_threshold) & frame.inside(xy)
    if not visible.any():
        return None
    out_kp = np.zeros((N_JOINTS, 3))
    out_kp[visible, :2] = xy[visible]
    out_kp[visible, 2] = kp[visible, 2]
    x0, y0, x1, y1 = visible_box(out_kp, ~visible)
    return {"image_id": ann["image_id"], "category_id": 1, "iscrowd": int(ann.get("iscrowd", 0)),
            "keypoints": [float(v) for v in out_kp.reshape(-1)], "num_keypoints": int(visible.sum()),
            "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)], "area": float((x1 - x0) * (y1 - y0))}


def targets_coco(root: Path, protocol: str = "humanart-val", profile: str = "clean") -> dict:
    """COCO keypoint targets of every validation image of a pose protocol, in the profile's target frame.

    Images carry their Human-Art `file_name`, the posebench `key` ({scenario}/{stem}, what generated files are
    named after), width and height of the frame and `posebench_frame` (the crop); annotation ids are 1..N.

    Raises:
        PosebenchError: not a pose protocol, a profile whose targets are not a centre crop, a bad root.
    """
    from posebench.datasets.humanart import read_validation
    from posebench.datasets.keypoints import COCO17_NAMES
    from posebench.protocols import get_protocol
    from posebench.protocols.pose_profile import get_pose_profile

    proto = get_protocol(protocol)
    if proto.kind != "pose":
        raise PosebenchError(f"protocol {proto.name} is not a pose protocol: it has no pose targets")
    prof = get_pose_profile(profile)
    if prof.target_frame != "center-crop":
        raise PosebenchError(f"the {prof.name} pose profile scores in the annotated frame (target_frame: "
                             f"{prof.target_frame}): its targets are the validation annotations themselves")
    images, annotations = [], []
    for key, img in sorted(read_validation(root).items()):
        frame = target_frame(*img.frame, proto.resolution)
        images.append({"id": img.image_id, "file_name": img.file_name, "key": key, "height": frame.size[0],
                       "width": frame.size[1], "posebench_frame": frame.as_dict()})
        for ann in img.annotations:
            cropped = crop_annotation(ann, frame, prof.visibility_threshold)
            if cropped is not None:
                annotations.append({**cropped, "id": len(annotations) + 1})
    return {"info": {"description": f"{proto.name} targets, {prof.name} pose profile v{prof.version}",
                     "protocol": {"name": proto.name, "version": proto.version, "sha256": proto.sha256},
                     "pose_profile": prof.meta()},
            "images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "person", "supercategory": "person", "keypoints": list(COCO17_NAMES)}]}
