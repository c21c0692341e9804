"""Keypoint formats (OpenPose-18, COCO-17, Human-Art-21) and coordinate frames.

A `Keypoints` value always carries its format, its frame (H, W) and a visibility mask, so no bare array
crosses a function boundary (datasets.md §5). Coordinates are (x, y) in pixels of that frame, x to the
right, y down, float32. A joint that is missing, or lies outside its frame, has `visible == False`; its
coordinates are then meaningless and set to NaN so that any accidental use shows up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

FormatName = Literal["openpose18", "coco17", "humanart21"]

OPENPOSE18_NAMES: tuple[str, ...] = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "left_eye", "right_eye", "left_ear", "right_ear",
)  # PATN tool/create_pairs_dataset.py and GFLA util/pose_utils.py label order (datasets.md §4)

COCO17_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
)

HUMANART21_NAMES: tuple[str, ...] = COCO17_NAMES + ("left_finger", "right_finger", "left_toe", "right_toe")

NAMES: dict[str, tuple[str, ...]] = {
    "openpose18": OPENPOSE18_NAMES,
    "coco17": COCO17_NAMES,
    "humanart21": HUMANART21_NAMES,
}

# The 19 OpenPose limbs as 0-based joint pairs, in the order the PIDM/NTED renderer and the OpenPose
# colour table use (GFLA util/pose_utils.py LIMB_SEQ, minus one). The last two are the ear-shoulder links.
OPENPOSE18_LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
    (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (2, 16), (5, 17),
)

# COCO skeleton (0-based), as in the COCO person category.
COCO17_LIMBS: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9),
    (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)

COCO17_FLIP: tuple[int, ...] = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)

# COCO OKS sigmas (pycocotools), in COCO-17 order.
COCO17_SIGMAS: tuple[float, ...] = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087,
    0.089, 0.089,
)


def _index_map(src: tuple[str, ...], dst: tuple[str, ...]) -> tuple[int, ...]:
    """For each joint of `dst`, its index in `src` (-1 if `src` has no such joint)."""
    where = {name: i for i, name in enumerate(src)}
    return tuple(where.get(name, -1) for name in dst)


@dataclass(frozen=True)
class Keypoints:
    """Joints of one person in one frame.

    Attributes:
        xy: (J, 2) float32 pixel coordinates (x, y) in `frame`; NaN where not visible.
        visible: (J,) bool.
        frame: (H, W) of the image the coordinates refer to.
        format: joint order, one of `NAMES`.
    """

    xy: np.ndarray
    visible: np.ndarray
    frame: tuple[int, int]
    format: FormatName

    def __post_init__(self) -> None:
        n = len(NAMES[self.format])
        xy = np.asarray(self.xy, dtype=np.float32)
        vis = np.asarray(self.visible, dtype=bool)
        if xy.shape != (n, 2) or vis.shape != (n,):
            raise ValueError(f"{self.format} keypoints need xy ({n}, 2) and visible ({n},), "
                             f"got {xy.shape} and {vis.shape}")
        h, w = self.frame
        if h <= 0 or w <= 0:
            raise ValueError(f"frame must be positive (H, W), got {self.frame}")
        vis = vis & np.isfinite(xy).all(axis=1)
        xy = np.where(vis[:, None], xy, np.nan).astype(np.float32)
        object.__setattr__(self, "xy", xy)
        object.__setattr__(self, "visible", vis)
        object.__setattr__(self, "frame", (int(h), int(w)))

    @classmethod
    def from_xy(cls, xy: np.ndarray, frame: tuple[int, int], format: FormatName,
                missing: float | None = -1) -> Keypoints:
        """Build from (J, 2) (x, y); joints equal to `missing` or outside the frame are not visible.

        Outside means x not in [0, W) or y not in [0, H): the PATN x-40 shift leaves such joints
        unmarked (datasets.md §1.3), so an out-of-frame coordinate counts as missing, not only -1.
        """
        xy = np.asarray(xy, dtype=np.float32)
        vis = np.isfinite(xy).all(axis=1)
        if missing is not None:
            vis &= ~(xy == missing).any(axis=1)
        h, w = frame
        vis &= (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
        return cls(xy, vis, frame, format)

    @classmethod
    def _trusted(cls, xy: np.ndarray, visible: np.ndarray, frame: tuple[int, int], format: FormatName) -> Keypoints:
        """Skip validation for arrays a reader has already checked in bulk (float32 xy with NaN where
        invisible, bool visible of the right shape): reading 50k annotations stays fast."""
        obj = object.__new__(cls)
        object.__setattr__(obj, "xy", xy)
        object.__setattr__(obj, "visible", visible)
        object.__setattr__(obj, "frame", frame)
        object.__setattr__(obj, "format", format)
        return obj

    @property
    def num_joints(self) -> int:
        return len(self.visible)

    def rescale(self, frame: tuple[int, int]) -> Keypoints:
        """The same pose in a frame of another size (a stretch: x by W'/W, y by H'/H)."""
        h, w = self.frame
        nh, nw = frame
        scale = np.array([nw / w, nh / h], dtype=np.float32)
        return Keypoints(self.xy * scale, self.visible, (nh, nw), self.format)

    def shift(self, dx: float, dy: float, frame: tuple[int, int]) -> Keypoints:
        """Translate into a new frame (e.g. the x-40 crop); joints leaving the frame become invisible."""
        xy = self.xy + np.array([dx, dy], dtype=np.float32)
        h, w = frame
        vis = self.visible & (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
        return Keypoints(xy, vis, frame, self.format)

    def convert(self, format: FormatName) -> Keypoints:
        """Reorder into another joint format. OpenPose's neck is the shoulder midpoint when both are
        visible; joints the source lacks (fingers, toes) come out invisible."""
        if format == self.format:
            return self
        src_names = NAMES[self.format]
        dst_names = NAMES[format]
        idx = np.array(_index_map(src_names, dst_names))
        has = idx >= 0
        xy = np.full((len(dst_names), 2), np.nan, dtype=np.float32)
        vis = np.zeros(len(dst_names), dtype=bool)
        xy[has] = self.xy[idx[has]]
        vis[has] = self.visible[idx[has]]
        if "neck" in dst_names and "neck" not in src_names:
            ls, rs = src_names.index("left_shoulder"), src_names.index("right_shoulder")
            k = dst_names.index("neck")
            if self.visible[ls] and self.visible[rs]:
                xy[k] = (self.xy[ls] + self.xy[rs]) / 2
                vis[k] = True
        return Keypoints(xy, vis, self.frame, format)

    def to_array(self, missing: float = -1.0) -> np.ndarray:
        """(J, 2) (x, y) with `missing` in place of invisible joints (for writing files)."""
        return np.where(self.visible[:, None], self.xy, missing).astype(np.float32)


# DeepFashion frames (datasets.md §5): the PATN crop keeps x in [40, 216) of the 256x256 low-res image.
FRAME_DEEPFASHION_LOWRES = (256, 256)
FRAME_DEEPFASHION_CROP = (256, 176)
FRAME_MARKET = (128, 64)
DEEPFASHION_CROP_X0 = 40


def lowres256_to_crop176(kp: Keypoints) -> Keypoints:
    """256x256 low-res frame (NTED/PIDM `pose/*.txt`, old annotation CSVs) -> the 256x176 crop frame."""
    if kp.frame != FRAME_DEEPFASHION_LOWRES:
        raise ValueError(f"expected the 256x256 low-res frame, got {kp.frame}")
    return kp.shift(-DEEPFASHION_CROP_X0, 0, FRAME_DEEPFASHION_CROP)


def crop176_to_lowres256(kp: Keypoints) -> Keypoints:
    if kp.frame != FRAME_DEEPFASHION_CROP:
        raise ValueError(f"expected the 256x176 crop frame, got {kp.frame}")
    return kp.shift(DEEPFASHION_CROP_X0, 0, FRAME_DEEPFASHION_LOWRES)
