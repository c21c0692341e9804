"""Pose renderers: Gaussian heatmaps, the PIDM/NTED 20-channel map, the CFLD 21-channel map, RGB stick
figures and the PATN mask used by masked metrics (datasets.md §7).

Every renderer takes a `Keypoints` and draws in its frame: the output is (C, H, W) with (H, W) =
`kp.frame`. Callers that need another size rescale first (`kp.rescale((H', W'))`), so the frame is
always explicit. Array outputs are float32 in [0, 1]; `skeleton_image` (uint8 RGB) and `pose_mask`
(bool) are the stated exceptions.

Protocols pin a renderer by name and version through `RENDERERS` and `RENDERER_VERSIONS`; bump the
version of a renderer whenever a change can move a single output value.

Provenance (each detail is reimplemented, not copied; see the comment at each function):
    - heatmaps: PATN tool/pose_utils.py::cords_to_map, GFLA util/pose_utils.py::cords_to_map.
    - pidm20: PIDM data/fashion_data.py::Dataset.get_label_tensor (identical in NTED
      data/fashion_data.py).
    - cfld21: CFLD pose_utils.py::{cords_to_map, draw_pose_from_cords}, datasets/deepfashion.py::build_pose_img.
    - pose_mask: PATN tool/pose_utils.py::produce_ma_mask.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from posebench.datasets.keypoints import (
    COCO17_LIMBS,
    COCO17_NAMES,
    OPENPOSE18_LIMBS,
    OPENPOSE18_NAMES,
    Keypoints,
)
from posebench.registry import Registry

Color = tuple[int, int, int]
Renderer = Callable[[Keypoints], np.ndarray]

# The 18 OpenPose joint colours shared by PATN, GFLA, NTED, PIDM and CFLD, indexed by OpenPose-18 joint.
OPENPOSE_COLORS: tuple[Color, ...] = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
    (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
    (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)

# CFLD pose_utils.py BONE_COLORS: the joint colours at 60 % (153 = 0.6 * 255), one per bone.
CFLD_BONE_COLORS: tuple[Color, ...] = (
    (153, 0, 0), (153, 51, 0), (153, 102, 0), (153, 153, 0), (102, 153, 0), (51, 153, 0), (0, 153, 0),
    (0, 153, 51), (0, 153, 102), (0, 153, 153), (0, 102, 153), (0, 51, 153), (0, 0, 153), (51, 0, 153),
    (102, 0, 153), (153, 0, 153), (153, 0, 102),
)

# PIDM and CFLD both draw only the first 17 OpenPose limbs (the two ear-shoulder links are skipped).
BODY17_LIMBS: tuple[tuple[int, int], ...] = OPENPOSE18_LIMBS[:17]

# PATN produce_ma_mask: the 17 body limbs plus neck-ears, the hip line, both hip-shoulder sides and the
# ear-ear link (its 1-based list minus one), 23 in all.
PATN_MASK_LIMBS: tuple[tuple[int, int], ...] = BODY17_LIMBS + (
    (1, 16), (1, 17), (8, 11), (11, 5), (8, 2), (16, 17),
)

PIDM_STICKWIDTH = 4  # ellipse half-width (px) of a PIDM limb
PIDM_JOINT_RADIUS = 4
CFLD_BONE_THICKNESS = 2
CFLD_JOINT_RADIUS = 3
PATN_MASK_RADIUS = 4
HEATMAP_SIGMA = 6.0

_FORMATS_SKELETON = ("openpose18", "coco17")


def _require_format(kp: Keypoints, allowed: Sequence[str], what: str) -> None:
    if kp.format not in allowed:
        want = " or ".join(allowed)
        hint = f"; convert first, e.g. kp.convert({allowed[0]!r})" if kp.format != allowed[0] else ""
        raise ValueError(f"{what} needs {want} keypoints, got {kp.format!r}{hint}")


def _pixel(xy: np.ndarray) -> tuple[int, int]:
    """(x, y) as the int() truncation the reference code applies before every cv2 call."""
    return int(float(xy[0])), int(float(xy[1]))


def _visible_limbs(kp: Keypoints, limbs: Sequence[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """(limb index, a, b) for the limbs whose two joints are both visible."""
    return [(i, a, b) for i, (a, b) in enumerate(limbs) if kp.visible[a] and kp.visible[b]]


# --------------------------------------------------------------------------------------------------
# Gaussian heatmaps
# --------------------------------------------------------------------------------------------------


def gaussian_heatmaps(kp: Keypoints, sigma: float = HEATMAP_SIGMA) -> np.ndarray:
    """One Gaussian bump per joint on the integer pixel grid of `kp.frame` (PATN/GFLA `cords_to_map`).

    Channel k is exp(-((yy - y_k)^2 + (xx - x_k)^2) / (2 sigma^2)). The Gaussian separates into
    exp(-(xx - x_k)^2 / 2s^2) * exp(-(yy - y_k)^2 / 2s^2), so each channel is an outer product of two 1-D
    profiles instead of a full meshgrid per joint. Sub-pixel positions are kept as given; the references
    round them (see `cfld_pose_map`), which only matters after a rescale.

    Args:
        kp: keypoints in any format; one channel per joint.
        sigma: standard deviation in pixels (6 in PATN, GFLA and CFLD).

    Returns:
        (J, H, W) float32 in [0, 1]; all zeros for an invisible joint (never uint8, unlike the known
        PATN-lineage bug).

    Raises:
        ValueError: if `sigma` is not positive.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    h, w = kp.frame
    # 1-D profiles in float64, then float32: each channel is then within ~2e-7 of the float64 product.
    xy = np.where(kp.visible[:, None], kp.xy, 0).astype(np.float64)  # invisible joints hold NaN
    denom = 2.0 * float(sigma) ** 2
    gx = np.exp(-((np.arange(w) - xy[:, :1]) ** 2) / denom).astype(np.float32)  # (J, W)
    gy = np.exp(-((np.arange(h) - xy[:, 1:]) ** 2) / denom).astype(np.float32)  # (J, H)
    gx[~kp.visible] = 0  # zero profile -> all-zero channel
    return gy[:, :, None] * gx[:, None, :]


# --------------------------------------------------------------------------------------------------
# PIDM / NTED 20 channels
# --------------------------------------------------------------------------------------------------


def _pidm_limb_polygon(p: np.ndarray, q: np.ndarray, stickwidth: int) -> np.ndarray:
    """The filled ellipse of one limb as in get_label_tensor: centre, half-length and angle are each
    truncated with int() before cv2.ellipse2Poly (delta 1 degree)."""
    (xa, ya), (xb, yb) = (float(p[0]), float(p[1])), (float(q[0]), float(q[1]))
    centre = (int((xa + xb) / 2), int((ya + yb) / 2))
    length = ((xa - xb) ** 2 + (ya - yb) ** 2) ** 0.5  # the source's formula, not hypot (last-ulp parity)
    angle = math.degrees(math.atan2(ya - yb, xa - xb))
    return cv2.ellipse2Poly(centre, (int(length / 2), stickwidth), int(angle), 0, 360, 1)


def _limb_distance(polygon: np.ndarray, frame: tuple[int, int]) -> np.ndarray:
    """get_label_tensor's distance channel of one drawn limb, as float32 in [0, 1].

    The limb mask is inverted (limb = 0), so cv2.distanceTransform gives each pixel its L1 (city-block;
    mask 3 is exact for DIST_L1) distance to the limb: 0 on the limb, growing away from it. The source then
    does clip(dist / 3, 0, 255).astype(uint8), a floor, and ToTensor's /255. It is not inverted again.
    The source's addWeighted(joint, 0.4, joint, 0.6) leaves a 0/255 mask unchanged, so it is omitted.
    """
    inverted = np.full(frame, 255, dtype=np.uint8)
    cv2.fillConvexPoly(inverted, polygon, 0)
    dist = cv2.distanceTransform(inverted, cv2.DIST_L1, 3)
    return np.clip(dist / np.float32(3), 0, 255).astype(np.uint8).astype(np.float32) / np.float32(255)


def pidm_pose_map(kp: Keypoints) -> np.ndarray:
    """The 20-channel PIDM/NTED pose map (`semantic_dim: 20`).

    Reproduces PIDM data/fashion_data.py::Dataset.get_label_tensor (identical to NTED
    data/fashion_data.py) in the frame of `kp`:

    1. Every visible joint i is a filled radius-4 circle of colour `OPENPOSE_COLORS[i]`.
    2. Each of the first 17 limbs whose two joints are visible is a filled ellipse (stick width 4) of its
       limb-index colour on a copy of the canvas, blended back with addWeighted(canvas 0.4, copy 0.6), in
       limb order; a limb with a missing joint is skipped.
    3. The canvas is converted BGR->RGB. The colour table is written into the canvas as given, so the
       output RGB of joint i is `OPENPOSE_COLORS[i]` reversed (the nose comes out blue). Then /255.
    4. One distance channel per limb (see `_limb_distance`). A limb with a missing joint has an empty
       mask; 255 - 0 has no zero pixel, cv2 returns FLT_MAX everywhere, and the clip makes the channel
       all ones (not zeros as datasets.md §7 says).

    Args:
        kp: OpenPose-18 keypoints in the frame to render.

    Returns:
        (20, H, W) float32 in [0, 1]: 3 RGB skeleton channels, then 17 limb distance channels.

    Raises:
        ValueError: if `kp` is not OpenPose-18.
    """
    _require_format(kp, ("openpose18",), "pidm_pose_map")
    h, w = kp.frame
    canvas = np.zeros((h, w, 3), dtype=np.uint8)
    for i in np.flatnonzero(kp.visible):
        cv2.circle(canvas, _pixel(kp.xy[i]), PIDM_JOINT_RADIUS, OPENPOSE_COLORS[i], thickness=-1)
    dist = np.ones((len(BODY17_LIMBS), h, w), dtype=np.float32)  # missing limb -> all ones (step 4)
    for i, a, b in _visible_limbs(kp, BODY17_LIMBS):
        polygon = _pidm_limb_polygon(kp.xy[a], kp.xy[b], PIDM_STICKWIDTH)
        limb = canvas.copy()
        cv2.fillConvexPoly(limb, polygon, OPENPOSE_COLORS[i])
        canvas = cv2.addWeighted(canvas, 0.4, limb, 0.6, 0)
        dist[i] = _limb_distance(polygon, (h, w))
    rgb = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB).transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    return np.concatenate([rgb, dist], axis=0)


# --------------------------------------------------------------------------------------------------
# CFLD 21 channels
# --------------------------------------------------------------------------------------------------


def _cfld_skeleton(kp: Keypoints) -> np.ndarray:
    """CFLD pose_utils.py::draw_pose_from_cords with radius=2: antialiased bones of thickness 2 in
    `CFLD_BONE_COLORS`, then antialiased filled joint circles of radius 3 on top; no BGR flip."""
    h, w = kp.frame
    canvas = np.zeros((h, w, 3), dtype=np.uint8)
    for i, a, b in _visible_limbs(kp, BODY17_LIMBS):
        cv2.line(canvas, _pixel(kp.xy[a]), _pixel(kp.xy[b]), CFLD_BONE_COLORS[i], CFLD_BONE_THICKNESS,
                 cv2.LINE_AA)
    for i in np.flatnonzero(kp.visible):
        cv2.circle(canvas, _pixel(kp.xy[i]), CFLD_JOINT_RADIUS, OPENPOSE_COLORS[i], -1, cv2.LINE_AA)
    return canvas


def cfld_pose_map(kp: Keypoints) -> np.ndarray:
    """The 21-channel CFLD pose map (`POSE_CHANNELS = 21`), CFLD datasets/deepfashion.py::build_pose_img.

    Channels 0-2 are the CFLD skeleton (see `_cfld_skeleton`) / 255. Channels 3-20 are 18 Gaussian
    heatmaps with sigma 6 whose centres are truncated to integers first, as CFLD pose_utils.py::cords_to_map
    (copied from GFLA util/pose_utils.py) does with int(); for integer keypoints they equal
    `gaussian_heatmaps(kp)`. CFLD renders at 256x256 from the 256x176 frame: pass `kp.rescale((256, 256))`.

    Args:
        kp: OpenPose-18 keypoints in the frame to render.

    Returns:
        (21, H, W) float32 in [0, 1].

    Raises:
        ValueError: if `kp` is not OpenPose-18.
    """
    _require_format(kp, ("openpose18",), "cfld_pose_map")
    skeleton = _cfld_skeleton(kp).transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    truncated = Keypoints(np.trunc(kp.xy), kp.visible, kp.frame, kp.format)
    return np.concatenate([skeleton, gaussian_heatmaps(truncated, HEATMAP_SIGMA)], axis=0)


# --------------------------------------------------------------------------------------------------
# RGB stick figure for grids
# --------------------------------------------------------------------------------------------------


def _skeleton_style(fmt: str) -> tuple[tuple[tuple[int, int], ...], tuple[Color, ...]]:
    """Limbs and per-joint colours; a COCO joint takes the OpenPose colour of the joint with its name."""
    if fmt == "openpose18":
        return OPENPOSE18_LIMBS, OPENPOSE_COLORS
    colours = tuple(OPENPOSE_COLORS[OPENPOSE18_NAMES.index(name)] for name in COCO17_NAMES)
    return COCO17_LIMBS, colours


def skeleton_image(kp: Keypoints, stickwidth: int = PIDM_STICKWIDTH, radius: int = PIDM_JOINT_RADIUS) -> np.ndarray:
    """An OpenPose-style stick figure for grids and visual checks (not a model input).

    Limbs are PIDM-style ellipses blended 0.4 / 0.6, coloured by limb index from `OPENPOSE_COLORS`
    (cycled); joints are filled circles drawn last, so each visible joint shows its own colour. Colours
    are used as RGB (unlike PIDM's BGR quirk).

    Args:
        kp: OpenPose-18 or COCO-17 keypoints.
        stickwidth: limb half-width in pixels.
        radius: joint radius in pixels.

    Returns:
        (H, W, 3) uint8 RGB.

    Raises:
        ValueError: for another keypoint format.
    """
    _require_format(kp, _FORMATS_SKELETON, "skeleton_image")
    limbs, joint_colours = _skeleton_style(kp.format)
    h, w = kp.frame
    canvas = np.zeros((h, w, 3), dtype=np.uint8)
    for i, a, b in _visible_limbs(kp, limbs):
        limb = canvas.copy()
        cv2.fillConvexPoly(limb, _pidm_limb_polygon(kp.xy[a], kp.xy[b], stickwidth),
                           OPENPOSE_COLORS[i % len(OPENPOSE_COLORS)])
        canvas = cv2.addWeighted(canvas, 0.4, limb, 0.6, 0)
    for i in np.flatnonzero(kp.visible):
        cv2.circle(canvas, _pixel(kp.xy[i]), radius, joint_colours[i], thickness=-1)
    return canvas


def _skeleton_rgb(kp: Keypoints) -> np.ndarray:
    """`skeleton_image` as a (3, H, W) float32 renderer output."""
    return skeleton_image(kp).transpose(2, 0, 1).astype(np.float32) / np.float32(255)


# --------------------------------------------------------------------------------------------------
# PATN mask for masked metrics
# --------------------------------------------------------------------------------------------------


def _fill_quad(mask: np.ndarray, quad: np.ndarray) -> None:
    """Set the pixels whose centres lie inside or on a convex quad given as (x, y) rows.

    skimage.draw.polygon (which produce_ma_mask uses) includes boundary pixels in current releases;
    the sign test with >= / <= does the same for a convex polygon.
    """
    h, w = mask.shape
    x0, y0 = max(0, math.ceil(quad[:, 0].min())), max(0, math.ceil(quad[:, 1].min()))
    x1, y1 = min(w - 1, math.floor(quad[:, 0].max())), min(h - 1, math.floor(quad[:, 1].max()))
    if x0 > x1 or y0 > y1:
        return
    yy, xx = np.mgrid[y0:y1 + 1, x0:x1 + 1].astype(np.float64)
    edges = np.roll(quad, -1, axis=0) - quad
    cross = [ex * (yy - vy) - ey * (xx - vx) for (vx, vy), (ex, ey) in zip(quad, edges, strict=True)]
    inside = np.logical_and.reduce([c >= 0 for c in cross]) | np.logical_and.reduce([c <= 0 for c in cross])
    mask[y0:y1 + 1, x0:x1 + 1] |= inside


def _fill_disk(mask: np.ndarray, centre: np.ndarray, radius: float) -> None:
    """skimage.draw.disk: pixels strictly inside the circle, (r - y)^2 + (c - x)^2 < radius^2."""
    h, w = mask.shape
    cx, cy = float(centre[0]), float(centre[1])
    x0, y0 = max(0, math.ceil(cx - radius)), max(0, math.ceil(cy - radius))
    x1, y1 = min(w - 1, math.floor(cx + radius)), min(h - 1, math.floor(cy + radius))
    if x0 > x1 or y0 > y1:
        return
    yy, xx = np.mgrid[y0:y1 + 1, x0:x1 + 1].astype(np.float64)
    mask[y0:y1 + 1, x0:x1 + 1] |= (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2


def pose_mask(kp: Keypoints, point_radius: float = PATN_MASK_RADIUS) -> np.ndarray:
    """The body mask of PATN tool/pose_utils.py::produce_ma_mask, for any frame size.

    For each of the 23 `PATN_MASK_LIMBS` with both joints visible: the rectangle f +- n, t -+ n where n is
    the bone's unit normal times `point_radius`. Then a disk of that radius at every visible joint, and
    a closing: 5x5 square dilation followed by 5x5 erosion (pixels outside the image are ignored, as with
    skimage's reflect padding). GFLA script/metrics.py hard-codes 128x64; here the size is `kp.frame`.
    A zero-length bone (PATN divides by zero there) draws only its disk.

    Args:
        kp: OpenPose-18 keypoints of the target image, in its frame.
        point_radius: rectangle half-width and disk radius in pixels.

    Returns:
        (H, W) bool.

    Raises:
        ValueError: if `kp` is not OpenPose-18.
    """
    _require_format(kp, ("openpose18",), "pose_mask")
    mask = np.zeros(kp.frame, dtype=bool)
    xy = kp.xy.astype(np.float64)
    for _, a, b in _visible_limbs(kp, PATN_MASK_LIMBS):
        bone = xy[a] - xy[b]
        norm = math.hypot(bone[0], bone[1])
        if norm == 0:
            continue
        normal = point_radius * np.array([-bone[1], bone[0]]) / norm
        _fill_quad(mask, np.stack([xy[a] + normal, xy[a] - normal, xy[b] - normal, xy[b] + normal]))
    for i in np.flatnonzero(kp.visible):
        _fill_disk(mask, xy[i], point_radius)
    square = np.ones((5, 5), dtype=np.uint8)
    closed = cv2.erode(cv2.dilate(mask.astype(np.uint8), square), square)
    return closed.astype(bool)


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------


def _heatmap18(kp: Keypoints) -> np.ndarray:
    """`gaussian_heatmaps` with sigma 6, restricted to OpenPose-18 so the channel count is fixed."""
    _require_format(kp, ("openpose18",), "renderer 'heatmap18'")
    return gaussian_heatmaps(kp, HEATMAP_SIGMA)


RENDERERS: Registry[Renderer] = Registry("pose renderer")
RENDERERS.register("heatmap18", _heatmap18)
RENDERERS.register("pidm20", pidm_pose_map)
RENDERERS.register("cfld21", cfld_pose_map)
RENDERERS.register("skeleton-rgb", _skeleton_rgb)

# Bump an entry (and add a docs/changelog.md line) whenever that renderer's output can change.
RENDERER_VERSIONS: dict[str, int] = {"heatmap18": 1, "pidm20": 1, "cfld21": 1, "skeleton-rgb": 1}


def render(name: str, kp: Keypoints) -> np.ndarray:
    """Render `kp` with a registered renderer.

    Args:
        name: one of `RENDERERS.names()`: heatmap18 (18, H, W), pidm20 (20, H, W), cfld21 (21, H, W),
            skeleton-rgb (3, H, W).
        kp: keypoints in the frame to render.

    Returns:
        (C, H, W) float32 in [0, 1].

    Raises:
        UnknownNameError: for an unknown name (the message suggests near matches).
        ValueError: if the renderer does not accept `kp.format`.
    """
    return RENDERERS.get(name)(kp)
