"""Associative-embedding decoding (posebench.pose.ae_decode) on synthetic heatmaps with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from posebench.pose import ae_decode
from posebench.pose.ae_decode import COCO_FLIP_INDEX, AEDecodeConfig

SIZE = 64
# exact decoding grid: heatmaps already at the input size (stride 1)
CFG = AEDecodeConfig(project2image=False)
UDP = AEDecodeConfig(project2image=False, use_udp=True, align_corners=True)


def _skeleton(x0: float, y0: float) -> np.ndarray:
    """17 (x, y) sub-pixel positions, joints 3 px apart (farther than the 5x5 NMS window reaches)."""
    k = np.arange(17)
    return np.stack([x0 + (k % 4) * 3.0, y0 + (k // 4) * 3.0], axis=1) + 0.2


def _maps(people: list[np.ndarray], tag_values: list[float], peaks: list[np.ndarray] | None = None,
          sigma: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian heatmaps (1, 17, S, S) and one-pass tags (1, 17, S, S, 1), each person's tag near its joints."""
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    hm = np.zeros((17, SIZE, SIZE))
    tags = np.zeros((17, SIZE, SIZE))
    best = np.full((17, SIZE, SIZE), np.inf)
    for p, (xy, tag) in enumerate(zip(people, tag_values, strict=True)):
        for j, (x, y) in enumerate(xy):
            if np.isnan(x):
                continue
            d2 = (xs - x) ** 2 + (ys - y) ** 2
            peak = 1.0 if peaks is None else peaks[p][j]
            hm[j] = np.maximum(hm[j], peak * np.exp(-d2 / (2 * sigma**2)))
            closer = d2 < best[j]
            tags[j][closer] = tag
            best[j] = np.minimum(best[j], d2)
    return (torch.tensor(hm, dtype=torch.float32)[None],
            torch.tensor(tags, dtype=torch.float32)[None, ..., None])


def _by_nose(people: list[ae_decode.Person]) -> list[ae_decode.Person]:
    return sorted(people, key=lambda p: p.keypoints[0, 0])


def test_two_people_recovered_with_adjust():
    a, b = _skeleton(4, 4), _skeleton(36, 30)
    hm, tags = _maps([a, b], [1.0, 4.0])
    (people,) = ae_decode.decode(hm, tags, CFG, input_size=(SIZE, SIZE))
    assert len(people) == 2
    for person, truth in zip(_by_nose(people), [a, b], strict=True):
        assert person.keypoints.shape == (17, 3)
        # peak pixel = floor(truth); adjust moves 0.25 toward the higher (right/lower) neighbour, +0.5 pixel centre
        np.testing.assert_allclose(person.keypoints[:, :2], np.floor(truth) + 0.75, atol=1e-6)
        assert np.all(np.abs(person.keypoints[:, :2] - (truth + 0.5)) <= 0.25)
        assert person.score == pytest.approx(float(person.keypoints[:, 2].mean()))
        assert person.score > 0.9
    assert {round(float(p.tags[0, 0])) for p in people} == {1, 4}


def test_stride_maps_to_input_pixels():
    a = _skeleton(4, 4)
    hm, tags = _maps([a], [1.0])
    (people,) = ae_decode.decode(hm, tags, CFG, input_size=(2 * SIZE, 2 * SIZE))
    np.testing.assert_allclose(people[0].keypoints[:, :2], 2 * (np.floor(a) + 0.75), atol=1e-6)
    (udp,) = ae_decode.decode(hm, tags, UDP, input_size=(2 * SIZE, 2 * SIZE))
    scale = (2 * SIZE - 1) / (SIZE - 1)
    np.testing.assert_allclose(udp[0].keypoints[:, :2], a * scale, atol=0.1 * scale)


def test_udp_dark_adjust_recovers_subpixel_centres():
    a, b = _skeleton(4, 4), _skeleton(36, 30)
    hm, tags = _maps([a, b], [1.0, 4.0], sigma=2.0)
    (people,) = ae_decode.decode(hm, tags, UDP, input_size=(SIZE, SIZE))
    assert len(people) == 2
    for person, truth in zip(_by_nose(people), [a, b], strict=True):
        np.testing.assert_allclose(person.keypoints[:, :2], truth, atol=0.05)  # UDP: no +0.5 offset


def test_more_candidates_than_groups_open_new_groups():
    a, b, c = _skeleton(4, 4), _skeleton(36, 30), _skeleton(4, 40)
    c[0] = np.nan  # no nose: this person is founded at a later joint through the padded assignment
    hm, tags = _maps([a, b, c], [1.0, 4.0, 7.0])
    # without refine: refine would fill the nose from the best tag-penalised peak anywhere, as mmpose does
    cfg = AEDecodeConfig(project2image=False, refine=False)
    (people,) = ae_decode.decode(hm, tags, cfg, input_size=(SIZE, SIZE))
    assert len(people) == 3
    third = [p for p in people if round(float(p.tags[1, 0])) == 7]
    assert len(third) == 1
    assert third[0].keypoints[0, 2] == 0
    assert np.all(third[0].keypoints[1:, 2] > 0.9)
    assert third[0].score == pytest.approx(third[0].keypoints[1:, 2].sum() / 17)


def test_far_tags_split_and_refine_fills_weak_joint():
    a, b = _skeleton(4, 4), _skeleton(36, 30)
    peaks = [np.ones(17), np.ones(17)]
    peaks[1][16] = 0.05  # below the detection threshold: found only by refine
    hm, tags = _maps([a, b], [1.0, 4.0], peaks=peaks)
    no_refine = AEDecodeConfig(project2image=False, refine=False)
    (plain,) = ae_decode.decode(hm, tags, no_refine, input_size=(SIZE, SIZE))
    (refined,) = ae_decode.decode(hm, tags, CFG, input_size=(SIZE, SIZE))
    pb, rb = _by_nose(plain)[1], _by_nose(refined)[1]
    assert pb.keypoints[16, 2] == 0
    assert rb.keypoints[16, 2] == pytest.approx(0.05 * np.exp(-0.08 / 2), rel=1e-4)
    np.testing.assert_allclose(rb.keypoints[16, :2], np.floor(b[16]) + 0.75, atol=1e-6)
    assert rb.score == pytest.approx(pb.score)  # the score is taken before refine


@pytest.mark.parametrize(("drift", "groups"), [(0.8, 1), (1.5, 2)])
def test_tag_threshold_decides_joining(drift: float, groups: int):
    hm, tags = _maps([_skeleton(4, 4)], [1.0])
    tags[0, 5] = 1.0 + drift  # left shoulder's tag drifts from the person's mean tag
    cfg = AEDecodeConfig(project2image=False, refine=False)
    (people,) = ae_decode.decode(hm, tags, cfg, input_size=(SIZE, SIZE))
    assert len(people) == groups
    assert sorted(int((p.keypoints[:, 2] > 0).sum()) for p in people) == ([17] if groups == 1 else [1, 16])


def test_nms_and_empty_maps():
    hm = torch.zeros(1, 17, 16, 16)
    tags = torch.zeros(1, 17, 16, 16, 2)
    (people,) = ae_decode.decode(hm, tags, CFG, input_size=(16, 16))
    assert people == []
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 2, 2], x[0, 0, 3, 3], x[0, 0, 7, 7] = 1.0, 0.5, 0.7
    kept = ae_decode.nms(x)
    assert kept[0, 0, 2, 2] == 1 and kept[0, 0, 3, 3] == 0 and kept[0, 0, 7, 7] == pytest.approx(0.7)


def test_flip_aggregation_swaps_left_right_channels():
    b, j, h, w = 1, 17, 8, 8
    chan = torch.arange(j, dtype=torch.float32).view(1, j, 1, 1)
    outputs = [torch.cat([chan, 100 + chan], 1).expand(b, 2 * j, h, w), chan.expand(b, j, 2 * h, 2 * w)]
    flipped = [o.clone() for o in outputs]
    cfg = AEDecodeConfig(project2image=False, align_corners=True)
    hm, tags = ae_decode.aggregate(outputs, flipped, cfg)
    assert hm.shape == (b, j, 2 * h, 2 * w) and tags.shape == (b, j, 2 * h, 2 * w, 2)
    expected = (torch.arange(j) + torch.tensor(COCO_FLIP_INDEX)).float() / 2
    torch.testing.assert_close(hm[0, :, 0, 0], expected)
    torch.testing.assert_close(tags[0, :, 0, 0, 0], 100 + torch.arange(j).float())
    torch.testing.assert_close(tags[0, :, 0, 0, 1], 100 + torch.tensor(COCO_FLIP_INDEX).float())


def test_flip_test_symmetric_input_matches_single_pass():
    def net(images: torch.Tensor) -> list[torch.Tensor]:
        # flip-equivariant stand-in: the same (mirrored) map for every joint, tags = a mirrored-invariant ramp
        g = images.mean(1, keepdim=True)
        low = torch.nn.functional.avg_pool2d(g, 4)
        return [torch.cat([low.expand(-1, 17, -1, -1), 2 * low.expand(-1, 17, -1, -1)], 1),
                torch.nn.functional.avg_pool2d(g, 2).expand(-1, 17, -1, -1)]

    img = torch.rand(1, 3, 32, 16)
    img = torch.cat([img, torch.flip(img, [3])], 3)  # left-right symmetric (1, 3, 32, 32)
    cfg = AEDecodeConfig(project2image=False, align_corners=True)
    hm1, tag1 = ae_decode.flip_test(net, img, cfg, flip=False)
    hm2, tag2 = ae_decode.flip_test(net, img, cfg, flip=True)
    torch.testing.assert_close(hm1, hm2)
    assert tag1.shape[-1] == 1 and tag2.shape[-1] == 2
    torch.testing.assert_close(tag2[..., 0], tag2[..., 1])
    # project2image resizes everything to the input size
    hm3, tag3 = ae_decode.flip_test(net, img, AEDecodeConfig(), flip=True)
    assert hm3.shape[-2:] == (32, 32) and tag3.shape[2:4] == (32, 32)


def test_post_dark_udp_on_exact_quadratic():
    ys, xs = np.mgrid[0:16, 0:16].astype(np.float64)
    log_maps = (-((xs - 7.3) ** 2 + (ys - 8.6) ** 2) / 8.0)[None]
    coords = np.array([[[7.0, 9.0]]])
    np.testing.assert_allclose(ae_decode.post_dark_udp(coords, log_maps), [[[7.3, 8.6]]], atol=1e-5)


def test_refine_on_dark_maps_never_fills_a_missing_joint():
    """Quirk 4: with UDP, mmpose 0.x on CPU refines on the log maps post_dark_udp leaves behind (values <= 0 where
    the heatmap is below 1), so the weak joint stays missing (humansd, refine_fill false); refining on the
    heatmaps fills it (clean)."""
    from dataclasses import replace

    from posebench.pose.detect import set_refine_fill

    a, b = _skeleton(4, 4), _skeleton(36, 30)
    peaks = [np.ones(17), np.ones(17)]
    peaks[1][16] = 0.05  # below the detection threshold: found only by refine
    hm, tags = _maps([a, b], [1.0, 4.0], peaks=peaks, sigma=2.0)
    (filled,) = ae_decode.decode(hm, tags, replace(UDP, refine_on_dark_maps=False), input_size=(SIZE, SIZE))
    (cpu,) = ae_decode.decode(hm, tags, replace(UDP, refine_on_dark_maps=True), input_size=(SIZE, SIZE))
    fb, cb = _by_nose(filled)[1], _by_nose(cpu)[1]
    assert fb.keypoints[16, 2] > 0 and cb.keypoints[16, 2] == 0
    np.testing.assert_allclose(fb.keypoints[16, :2], b[16], atol=1.0)
    np.testing.assert_allclose(fb.keypoints[:16], cb.keypoints[:16])  # only the fill differs
    assert fb.score == pytest.approx(cb.score)

    from posebench.pose.higherhrnet import HigherHRNet
    from posebench.pose.tiny import TinyPoseNet

    net = HigherHRNet(width=32, decode=UDP)  # the estimator interface's setter, not a name check
    assert set_refine_fill(net, False) and net.decode_cfg.refine_on_dark_maps
    assert set_refine_fill(net, True) and not net.decode_cfg.refine_on_dark_maps
    assert not set_refine_fill(TinyPoseNet(), False)  # no grouping decoder: nothing to set
    assert not set_refine_fill(object(), False)
