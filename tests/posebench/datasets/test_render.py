"""Pose renderers: hand-computed values on tiny hand-made poses, plus brute-force / scikit-image references.

Fixed pose used below: neck (joint 1) at (x=10, y=30) and right shoulder (joint 2) at (30, 30) in a 64x48
frame, so limb 0 of OPENPOSE18_LIMBS is horizontal with its midpoint at (20, 30).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from posebench.datasets.keypoints import Keypoints
from posebench.datasets.render import (
    CFLD_BONE_COLORS,
    OPENPOSE_COLORS,
    PATN_MASK_LIMBS,
    RENDERER_VERSIONS,
    RENDERERS,
    cfld_pose_map,
    gaussian_heatmaps,
    pidm_pose_map,
    pose_mask,
    render,
    skeleton_image,
)
from posebench.registry import UnknownNameError

FRAME = (64, 48)
NECK, RSHO = 1, 2


def make_kp(joints: dict[int, tuple[float, float]], frame: tuple[int, int] = FRAME, fmt: str = "openpose18",
            n: int = 18) -> Keypoints:
    """Keypoints with only the given joints visible, {index: (x, y)}."""
    xy = np.full((n, 2), np.nan, dtype=np.float32)
    for k, p in joints.items():
        xy[k] = p
    return Keypoints(xy, ~np.isnan(xy[:, 0]), frame, fmt)  # type: ignore[arg-type]


def two_joint_pose() -> Keypoints:
    return make_kp({NECK: (10, 30), RSHO: (30, 30)})


# ---------------------------------------------------------------------------------------------- heatmaps


def test_heatmap_single_joint_known_values():
    hm = gaussian_heatmaps(make_kp({0: (20, 30)}), sigma=6.0)
    assert hm.shape == (18, 64, 48) and hm.dtype == np.float32
    c = hm[0]
    assert c[30, 20] == 1.0
    for y, x in [(29, 20), (31, 20), (30, 19), (30, 21)]:
        assert c[y, x] == pytest.approx(math.exp(-1 / 72), rel=1e-6)
    for y, x in [(29, 19), (31, 21)]:
        assert c[y, x] == pytest.approx(math.exp(-2 / 72), rel=1e-6)
    assert ((c > 0.01) & (c < 0.99)).sum() > 100  # fractional values survive: no uint8 truncation
    assert not hm[1:].any()  # invisible joints -> all-zero channels


def test_heatmap_subpixel_peak():
    c = gaussian_heatmaps(make_kp({3: (20.3, 30.6)}))[3]
    assert np.unravel_index(c.argmax(), c.shape) == (31, 20)  # nearest pixel
    assert c[31, 20] == pytest.approx(math.exp(-(0.3**2 + 0.4**2) / 72), rel=1e-5)
    assert c[31, 20] < 1.0


def test_heatmap_matches_meshgrid_reference():
    rng = np.random.default_rng(0)
    h, w = 256, 176
    xy = rng.uniform([0, 0], [w, h], size=(18, 2)).astype(np.float32)
    vis = rng.uniform(size=18) > 0.3
    kp = Keypoints(xy, vis, (h, w), "openpose18")
    for sigma in (6.0, 2.5):
        ours = gaussian_heatmaps(kp, sigma)
        xx, yy = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        ref = np.zeros((18, h, w))
        for k in np.flatnonzero(vis):
            x, y = xy[k].astype(np.float64)
            ref[k] = np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2))
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_heatmaps(kp, sigma=0)


# ------------------------------------------------------------------------------------------------ pidm20


def test_pidm_shape_range_and_rgb_blending():
    out = pidm_pose_map(two_joint_pose())
    assert out.shape == (20, 64, 48) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    rgb = out[:3]
    # Colours are written BGR and flipped to RGB, so the output is the colour tuple reversed.
    # Inside the neck circle but outside the limb ellipse: the neck colour (255, 85, 0), unblended.
    np.testing.assert_array_equal(rgb[:, 30, 6] * 255, [0, 85, 255])  # 4 px left: the circle edge
    assert not rgb[:, 30, 5].any()
    # Neck pixel, covered by the ellipse of limb 0 (colour (255, 0, 0)): 0.4 * (255, 85, 0) + 0.6 * (255, 0, 0).
    np.testing.assert_allclose(rgb[:, 30, 10] * 255, [0, 34, 255], atol=1e-4)
    # Limb midpoint, no joint circle: 0.4 * black + 0.6 * (255, 0, 0) = (153, 0, 0), reversed.
    np.testing.assert_allclose(rgb[:, 30, 20] * 255, [0, 0, 153], atol=1e-4)


def test_pidm_distance_channel_is_floor_l1_over_3():
    dist = pidm_pose_map(two_joint_pose())[3]  # limb 0 = (neck, right shoulder)
    assert dist[30, 10:31].max() == 0  # on the limb
    # Straight above the midpoint the ellipse ends at y = 30 - 4; a pixel d rows higher is L1 distance d.
    above = [dist[26 - d, 20] * 255 for d in range(1, 27)]
    np.testing.assert_allclose(above, [d // 3 for d in range(1, 27)], atol=1e-4)
    # Past the shoulder end (x = 30) along the bone: distance d again.
    beyond = [dist[30, 30 + d] * 255 for d in range(1, 18)]
    np.testing.assert_allclose(beyond, [d // 3 for d in range(1, 18)], atol=1e-4)
    assert np.all(np.diff(dist[:27, 20][::-1]) >= 0)  # grows away from the limb


def test_pidm_missing_limbs_are_all_ones():
    out = pidm_pose_map(two_joint_pose())
    # get_label_tensor appends an empty mask; 255 - 0 has no zero pixel, so the clipped distance is 255.
    assert np.all(out[4:] == 1.0)
    # Only the first 17 limbs are drawn: right shoulder + left ear (limb 17) draws no limb at all.
    ear = pidm_pose_map(make_kp({RSHO: (10, 10), 16: (30, 40)}))
    assert np.all(ear[3:] == 1.0)
    assert not ear[:3, 25, 20].any()  # between the joints: black
    with pytest.raises(ValueError, match="openpose18"):
        pidm_pose_map(make_kp({0: (5, 5)}, fmt="coco17", n=17))


# ------------------------------------------------------------------------------------------------ cfld21


def test_cfld_channels():
    kp = two_joint_pose()
    out = cfld_pose_map(kp)
    assert out.shape == (21, 64, 48) and out.dtype == np.float32
    np.testing.assert_array_equal(out[3:], gaussian_heatmaps(kp, 6.0))
    # Skeleton channels keep the colour order (no BGR flip): joint centres in their colour, bone in 60 %.
    np.testing.assert_allclose(out[:3, 30, 10] * 255, OPENPOSE_COLORS[NECK], atol=1e-4)
    np.testing.assert_allclose(out[:3, 30, 30] * 255, OPENPOSE_COLORS[RSHO], atol=1e-4)
    np.testing.assert_allclose(out[:3, 30, 20] * 255, CFLD_BONE_COLORS[0], atol=1e-4)


def test_cfld_heatmaps_truncate_centres_like_the_source():
    kp = make_kp({0: (20.7, 30.9)})
    heat = cfld_pose_map(kp)[3]
    assert heat[30, 20] == 1.0  # int(20.7), int(30.9)
    np.testing.assert_array_equal(heat, gaussian_heatmaps(make_kp({0: (20, 30)}))[0])


# -------------------------------------------------------------------------------------------- pose_mask


def test_pose_mask_limb_and_closing():
    mask = pose_mask(two_joint_pose())
    assert mask.shape == (64, 48) and mask.dtype == bool
    assert mask[30, 20] and mask[34, 20]  # midpoint; the rectangle's edge at half-width 4 is included
    assert not mask[40, 20] and not mask[35, 20]
    # Two unconnected joints (right and left wrist) 8 px apart: radius-4 disks (strict <) leave x = 24
    # uncovered, and the 5x5 closing fills it.
    wrists = pose_mask(make_kp({4: (20, 30), 7: (28, 30)}))
    assert (24 - 20) ** 2 >= 16 and (24 - 28) ** 2 >= 16
    assert wrists[30, 24]
    assert not wrists[30, 33] and not wrists[40, 24]
    big = pose_mask(make_kp({NECK: (10, 30), RSHO: (150, 200)}, frame=(256, 176)))
    assert big.shape == (256, 176) and big[115, 80]  # not hard-coded to 128x64


def test_pose_mask_limb_list_is_patns():
    # produce_ma_mask's 1-based list, transcribed from PATN tool/pose_utils.py.
    patn = [[2, 3], [2, 6], [3, 4], [4, 5], [6, 7], [7, 8], [2, 9], [9, 10], [10, 11], [2, 12], [12, 13],
            [13, 14], [2, 1], [1, 15], [15, 17], [1, 16], [16, 18], [2, 17], [2, 18], [9, 12], [12, 6], [9, 3],
            [17, 18]]
    assert [list(limb) for limb in PATN_MASK_LIMBS] == [[a - 1, b - 1] for a, b in patn]
    ears = pose_mask(make_kp({16: (10, 30), 17: (30, 30)}))  # the ear-ear link, not an OpenPose limb
    assert ears[30, 20] and ears[33, 20]


def test_pose_mask_matches_patn_with_scikit_image():
    """produce_ma_mask re-run with scikit-image (dev extra); exact equality."""
    draw = pytest.importorskip("skimage.draw")
    morph = pytest.importorskip("skimage.morphology")
    square = np.ones((5, 5), dtype=bool)
    rng = np.random.default_rng(1)
    for trial in range(12):
        h, w = [(128, 64), (256, 176)][trial % 2]
        xy = rng.uniform([0, 0], [w, h], size=(18, 2))
        xy = np.round(xy) if trial % 3 == 0 else xy
        kp = Keypoints(xy.astype(np.float32), rng.uniform(size=18) > 0.2, (h, w), "openpose18")
        yx = kp.xy[:, ::-1].astype(np.float64)
        ref = np.zeros((h, w), dtype=bool)
        for f, t in PATN_MASK_LIMBS:
            if kp.visible[f] and kp.visible[t]:
                n = yx[f] - yx[t]
                n = 4 * np.array([-n[1], n[0]]) / np.linalg.norm(n)
                v = np.array([yx[f] + n, yx[f] - n, yx[t] - n, yx[t] + n])
                ref[draw.polygon(v[:, 0], v[:, 1], shape=(h, w))] = True
        for j in np.flatnonzero(kp.visible):
            ref[draw.disk(yx[j], 4, shape=(h, w))] = True
        ref = morph.erosion(morph.dilation(ref, square), square)
        np.testing.assert_array_equal(pose_mask(kp), ref)


# --------------------------------------------------------------------------------------- skeleton_image


def test_skeleton_image_colours():
    img = skeleton_image(two_joint_pose())
    assert img.shape == (64, 48, 3) and img.dtype == np.uint8
    assert tuple(img[30, 10]) == OPENPOSE_COLORS[NECK] and tuple(img[30, 30]) == OPENPOSE_COLORS[RSHO]
    assert img[30, 20].any() and not img[5, 5].any()
    # COCO-17: left_shoulder (5) and right_shoulder (6) take the OpenPose colours of the same joints (5, 2).
    coco = skeleton_image(make_kp({5: (10, 10), 6: (30, 40)}, fmt="coco17", n=17))
    assert tuple(coco[10, 10]) == OPENPOSE_COLORS[5] and tuple(coco[40, 30]) == OPENPOSE_COLORS[2]
    with pytest.raises(ValueError, match="humanart21"):
        skeleton_image(make_kp({0: (5, 5)}, fmt="humanart21", n=21))


# ------------------------------------------------------------------------------------------------ registry


def test_registry_dispatch_versions_and_errors():
    assert set(RENDERERS.names()) == set(RENDERER_VERSIONS) == {"heatmap18", "pidm20", "cfld21", "skeleton-rgb"}
    assert all(v == 1 for v in RENDERER_VERSIONS.values())
    kp = two_joint_pose()
    channels = {"heatmap18": 18, "pidm20": 20, "cfld21": 21, "skeleton-rgb": 3}
    for name, c in channels.items():
        out = render(name, kp)
        assert out.shape == (c, 64, 48) and out.dtype == np.float32
        assert out.min() >= 0 and out.max() <= 1
    np.testing.assert_array_equal(render("pidm20", kp), pidm_pose_map(kp))
    with pytest.raises(UnknownNameError, match="Did you mean: pidm20"):
        render("pidm2O", kp)
    with pytest.raises(ValueError, match="openpose18"):
        render("heatmap18", make_kp({0: (5, 5)}, fmt="coco17", n=17))
