"""Keypoint formats and frames: known answers for every conversion."""

from __future__ import annotations

import numpy as np
import pytest

from posebench.datasets.keypoints import (
    COCO17_NAMES,
    HUMANART21_NAMES,
    OPENPOSE18_NAMES,
    Keypoints,
    crop176_to_lowres256,
    lowres256_to_crop176,
)


def _op18(frame=(256, 176)):
    xy = np.array([[10 + 5 * i, 20 + 10 * i] for i in range(18)], dtype=np.float32)
    return Keypoints.from_xy(xy, frame, "openpose18")


def test_from_xy_marks_missing_and_out_of_frame():
    xy = np.array([[-1, -1], [5, 5], [176, 10], [10, 256], [175.9, 255.9]] + [[1, 1]] * 13, dtype=np.float32)
    kp = Keypoints.from_xy(xy, (256, 176), "openpose18")
    assert kp.visible[:5].tolist() == [False, True, False, False, True]
    assert np.isnan(kp.xy[0]).all() and kp.xy[1].tolist() == [5, 5]


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="openpose18 keypoints need xy"):
        Keypoints(np.zeros((17, 2)), np.ones(17, bool), (10, 10), "openpose18")
    with pytest.raises(ValueError, match="frame must be positive"):
        Keypoints(np.zeros((17, 2)), np.ones(17, bool), (0, 10), "coco17")


def test_openpose_to_coco_and_back():
    kp = _op18()
    coco = kp.convert("coco17")
    for j, name in enumerate(COCO17_NAMES):
        np.testing.assert_array_equal(coco.xy[j], kp.xy[OPENPOSE18_NAMES.index(name)])
    back = coco.convert("openpose18")
    neck = OPENPOSE18_NAMES.index("neck")
    ls, rs = OPENPOSE18_NAMES.index("left_shoulder"), OPENPOSE18_NAMES.index("right_shoulder")
    np.testing.assert_allclose(back.xy[neck], (kp.xy[ls] + kp.xy[rs]) / 2)  # neck = shoulder midpoint
    mask = np.ones(18, bool)
    mask[neck] = False
    np.testing.assert_array_equal(back.xy[mask], kp.xy[mask])


def test_neck_needs_both_shoulders_and_humanart_extras_are_missing():
    kp = _op18()
    vis = kp.visible.copy()
    vis[OPENPOSE18_NAMES.index("left_shoulder")] = False
    coco = Keypoints(kp.xy, vis, kp.frame, "openpose18").convert("coco17")
    assert not coco.convert("openpose18").visible[OPENPOSE18_NAMES.index("neck")]
    ha = kp.convert("humanart21")
    assert ha.num_joints == len(HUMANART21_NAMES) == 21
    assert ha.visible[:17].all() and not ha.visible[17:].any()


def test_frames_rescale_and_crop():
    kp = _op18((256, 176))
    big = kp.rescale((512, 352))
    np.testing.assert_allclose(big.xy, kp.xy * 2)
    market = kp.rescale((128, 64))
    np.testing.assert_allclose(market.xy[0], [10 * 64 / 176, 20 / 2])
    low = crop176_to_lowres256(kp)
    assert low.frame == (256, 256)
    np.testing.assert_allclose(low.xy[:, 0], kp.xy[:, 0] + 40)
    np.testing.assert_allclose(lowres256_to_crop176(low).xy, kp.xy)
    with pytest.raises(ValueError, match="256x256 low-res frame"):
        lowres256_to_crop176(kp)


def test_to_array_writes_missing_marker():
    xy = np.full((18, 2), 3.0)
    xy[4] = -1
    arr = Keypoints.from_xy(xy, (256, 176), "openpose18").to_array(-1)
    assert arr[4].tolist() == [-1, -1] and arr[0].tolist() == [3, 3]
