"""Associative-embedding decoding of HigherHRNet outputs, as mmpose 0.x (v0.29) does it.

Port of `mmpose/core/post_processing/group.py` (`HeatmapParser`, `_match_by_tag`), the flip and stage aggregation
of `mmpose/core/evaluation/bottom_up_eval.py` (`split_ae_outputs`, `flip_feature_maps`, `aggregate_stage_flip`,
`aggregate_scale`) and `post_dark_udp` of `top_down_eval.py`, single scale only:

1. `aggregate`: heatmaps of the stages listed in `with_heatmaps` are resized to the last stage (or, with
   `project2image`, to the input size) and averaged, then averaged with the flipped pass; the tags of the stages in
   `with_ae` (and of the flipped pass) are stacked in a last dimension L.
2. `parse`: NMS (max-pool equality), top-k per joint, Munkres grouping by tag in mmpose's joint order, `adjust`
   (quarter-pixel shift, +0.5 pixel centre) or, for UDP, `post_dark_udp`; score = mean joint value; `refine` fills
   missing joints from the mean tag of each person.
3. `to_image`: heatmap pixels to input-image pixels (stride W/W_hm, or (W-1)/(W_hm-1) with UDP), which is what
   mmpose's `get_group_preds` does for an input already at the network's size.

Known differences from mmpose: `scipy.optimize.linear_sum_assignment` replaces the `munkres` package, so exact cost
ties may be broken differently; everything is per image (mmpose's `parse` only ever sees batch 1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

# COCO-17 left/right swap applied to flipped outputs (mmpose `flip_index` of the COCO dataset info)
COCO_FLIP_INDEX: tuple[int, ...] = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
# mmpose `_Params.joint_order` for 17 joints: head, shoulders, hips, then the limbs
COCO_JOINT_ORDER: tuple[int, ...] = tuple(i - 1 for i in (1, 2, 3, 4, 5, 6, 7, 12, 13, 8, 9, 10, 11, 14, 15, 16, 17))


@dataclass(frozen=True)
class AEDecodeConfig:
    """mmpose 0.x `test_cfg` of the HigherHRNet configs (defaults: `higherhrnet_w32_coco_512x512.py`).

    Attributes:
        num_joints: J.
        max_num_people: top-k candidates per joint.
        detection_threshold: candidates at or below this heatmap value are dropped before grouping.
        tag_threshold: a candidate joins a group only if its tag distance is below this.
        use_detection_val: cost = round(distance) * 100 - value (else the plain distance).
        ignore_too_much: cap the number of groups at `max_num_people` (mmpose default False).
        nms_kernel: max-pool kernel of the NMS (padding kernel // 2).
        adjust: quarter-pixel refinement (or `post_dark_udp` with `use_udp`).
        refine: fill missing joints from each person's mean tag.
        use_udp: UDP decoding (dark-UDP adjust, no +0.5 in refine, (W-1)/(W_hm-1) back-projection).
        project2image: resize heatmaps and tags to the input size before grouping.
        align_corners: of every bilinear resize.
        with_heatmaps: which head outputs contribute heatmaps.
        with_ae: which head outputs contribute tags.
        flip_index: channel permutation applied to flipped outputs.
        joint_order: order in which joints are grouped.
        refine_on_dark_maps: let `refine` read the blurred log-heatmaps `post_dark_udp` leaves behind, as mmpose
            0.x does on CPU (it edits the CPU tensor in place through `.numpy()`); almost never fills a joint.
    """

    num_joints: int = 17
    max_num_people: int = 30
    detection_threshold: float = 0.1
    tag_threshold: float = 1.0
    use_detection_val: bool = True
    ignore_too_much: bool = False
    nms_kernel: int = 5
    adjust: bool = True
    refine: bool = True
    use_udp: bool = False
    project2image: bool = True
    align_corners: bool = False
    with_heatmaps: tuple[bool, ...] = (True, True)
    with_ae: tuple[bool, ...] = (True, False)
    flip_index: tuple[int, ...] = COCO_FLIP_INDEX
    joint_order: tuple[int, ...] = COCO_JOINT_ORDER
    refine_on_dark_maps: bool = False


# test_cfg of higherhrnet_w32_coco_512x512.py and higherhrnet_w48_coco_512x512_udp.py
W32_COCO = AEDecodeConfig()
W48_UDP = AEDecodeConfig(use_udp=True, project2image=False, align_corners=True)


@dataclass
class Person:
    """One grouped detection.

    Attributes:
        keypoints: (J, 3) [x, y, score] in input-image pixels (pixel centres at integer + 0.5 for non-UDP
            decoding, as mmpose returns them); score 0 marks a joint that was not found.
        score: person score, the mean of the J joint values after adjust and before refine.
        tags: (J, L) the tags of the grouped joints (zeros where missing or refined).
    """

    keypoints: np.ndarray
    score: float
    tags: np.ndarray = field(repr=False)


# ---------------------------------------------------------------------------------------------- aggregation


def _resize(x: torch.Tensor, size: tuple[int, int], align_corners: bool) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


def split_outputs(outputs: Sequence[torch.Tensor], cfg: AEDecodeConfig) -> tuple[list[torch.Tensor],
                                                                                   list[torch.Tensor]]:
    """mmpose `split_ae_outputs`: heatmaps and tags per head output, as selected by `with_heatmaps`/`with_ae`."""
    j = cfg.num_joints
    heatmaps = [o[:, :j] for i, o in enumerate(outputs) if cfg.with_heatmaps[i]]
    tags = [o[:, j:] for i, o in enumerate(outputs) if cfg.with_ae[i]]
    return heatmaps, tags


def flip_maps(maps: Sequence[torch.Tensor], flip_index: Sequence[int] | None) -> list[torch.Tensor]:
    """mmpose `flip_feature_maps`: undo a horizontal input flip (mirror, then swap left/right channels)."""
    out = [torch.flip(m, [3]) for m in maps]
    return [m[:, list(flip_index)] for m in out] if flip_index is not None else out


def aggregate(outputs: Sequence[torch.Tensor], outputs_flipped: Sequence[torch.Tensor] | None,
              cfg: AEDecodeConfig, input_size: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Heatmaps averaged over stages and flip, tags stacked over stages and flip.

    Args:
        outputs: head outputs of the plain pass (`HigherHRNet.forward_raw`).
        outputs_flipped: head outputs for the horizontally flipped images (not yet flipped back), or None.
        cfg: decoding settings.
        input_size: (H, W) of the network input; needed with `project2image`.

    Returns:
        heatmaps (B, J, h, w) and tags (B, J, h, w, L), both at the heatmaps' resolution.
    """
    size = None
    if cfg.project2image:
        if input_size is None:
            raise ValueError("project2image needs the input size")
        size = tuple(input_size)
    heatmaps, tags = split_outputs(outputs, cfg)
    passes_h, passes_t = [heatmaps], [tags]
    if outputs_flipped is not None:
        hf, tf = split_outputs(outputs_flipped, cfg)
        passes_h.append(flip_maps(hf, cfg.flip_index))
        passes_t.append(flip_maps(tf, cfg.flip_index))  # tag_per_joint: tags swap sides too
    hm_size = size or tuple(heatmaps[-1].shape[-2:])
    # aggregate_stage='average' then aggregate_flip='average'
    per_pass = [torch.stack([_resize(h, hm_size, cfg.align_corners) for h in hs]).mean(0) for hs in passes_h]
    hm = torch.stack(per_pass).mean(0)
    # aggregate_stage='concat', aggregate_flip='concat', aggregate_scale='unsqueeze_concat'
    tag_size = size or tuple(tags[-1].shape[-2:])
    tag_list = [_resize(t, tag_size, cfg.align_corners) for ts in passes_t for t in ts]
    tag_list = [_resize(t, hm_size, cfg.align_corners) for t in tag_list]
    return hm, torch.stack(tag_list, dim=-1)


def flip_test(forward_raw: Callable[[torch.Tensor], list[torch.Tensor]], images: torch.Tensor,
              cfg: AEDecodeConfig, flip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a network on images (and their mirror) and aggregate its outputs as mmpose's test pipeline does."""
    outputs = forward_raw(images)
    flipped = forward_raw(torch.flip(images, [3])) if flip else None
    return aggregate(outputs, flipped, cfg, input_size=tuple(images.shape[-2:]))


# ---------------------------------------------------------------------------------------------- grouping


def nms(heatmaps: torch.Tensor, kernel: int = 5) -> torch.Tensor:
    """Keep only values equal to their kernel x kernel neighbourhood maximum."""
    maxm = F.max_pool2d(heatmaps, kernel, 1, (kernel - 1) // 2)
    return heatmaps * torch.eq(maxm, heatmaps).float()


def top_k(heatmaps: torch.Tensor, tags: torch.Tensor, k: int, kernel: int = 5) -> tuple[np.ndarray, ...]:
    """Top-k NMS peaks per joint: tags (B, J, k, L), integer locations (B, J, k, 2) as (x, y), values (B, J, k)."""
    hm = nms(heatmaps, kernel)
    b, j, h, w = hm.shape
    val_k, ind = hm.view(b, j, -1).topk(k, dim=2)
    tags = tags.reshape(b, tags.shape[1], h * w, -1)
    if tags.shape[1] != j:  # one tag map shared by all joints
        tags = tags.expand(-1, j, -1, -1)
    tag_k = torch.stack([torch.gather(tags[..., i], 2, ind) for i in range(tags.shape[3])], dim=3)
    loc_k = torch.stack((ind % w, ind // w), dim=3)
    return tag_k.cpu().numpy(), loc_k.cpu().numpy(), val_k.cpu().numpy()


def match_by_tag(tag_k: np.ndarray, loc_k: np.ndarray, val_k: np.ndarray, cfg: AEDecodeConfig) -> np.ndarray:
    """mmpose `_match_by_tag` for one image: (P, J, 3 + L) rows [x, y, value, tag...]; missing joints are zeros.

    Groups are keyed by the first tag value of their founding joint, as in mmpose (two founders with the very
    same tag value merge).
    """
    num_joints = tag_k.shape[0]
    default = np.zeros((num_joints, 3 + tag_k.shape[2]), dtype=np.float32)
    joint_dict: dict[float, np.ndarray] = {}
    tag_dict: dict[float, list[np.ndarray]] = {}
    for i, idx in enumerate(cfg.joint_order[:num_joints]):
        tags = tag_k[idx]
        joints = np.concatenate((loc_k[idx], val_k[idx, :, None], tags), 1)
        mask = joints[:, 2] > cfg.detection_threshold
        tags, joints = tags[mask], joints[mask]
        if joints.shape[0] == 0:
            continue
        if i == 0 or len(joint_dict) == 0:
            for tag, joint in zip(tags, joints, strict=True):
                key = float(tag[0])
                joint_dict.setdefault(key, np.copy(default))[idx] = joint
                tag_dict[key] = [tag]
            continue
        grouped_keys = list(joint_dict)
        if cfg.ignore_too_much:
            grouped_keys = grouped_keys[:cfg.max_num_people]
        grouped_tags = np.array([np.mean(tag_dict[g], axis=0) for g in grouped_keys])
        diff = joints[:, None, 3:] - grouped_tags[None, :, :]
        diff_normed = np.linalg.norm(diff, ord=2, axis=2)
        diff_saved = np.copy(diff_normed)
        if cfg.use_detection_val:
            diff_normed = np.round(diff_normed) * 100 - joints[:, 2:3]
        num_added, num_grouped = diff.shape[0], diff.shape[1]
        if num_added > num_grouped:  # mmpose pads with prohibitive costs so that extra candidates open new groups
            pad = np.full((num_added, num_added - num_grouped), 1e10, dtype=np.float32)
            diff_normed = np.concatenate((diff_normed, pad), axis=1)
        rows, cols = linear_sum_assignment(diff_normed)
        for row, col in zip(rows, cols, strict=True):
            if row < num_added and col < num_grouped and diff_saved[row][col] < cfg.tag_threshold:
                key = grouped_keys[col]
                joint_dict[key][idx] = joints[row]
                tag_dict[key].append(tags[row])
            else:
                key = float(tags[row][0])
                joint_dict.setdefault(key, np.copy(default))[idx] = joints[row]
                tag_dict[key] = [tags[row]]
    keys = list(joint_dict)
    if cfg.ignore_too_much:
        keys = keys[:cfg.max_num_people]
    if not keys:
        return np.zeros((0, num_joints, 3 + tag_k.shape[2]), dtype=np.float32)
    return np.array([joint_dict[k] for k in keys]).astype(np.float32)


def adjust(people: np.ndarray, heatmaps: np.ndarray) -> np.ndarray:
    """mmpose `HeatmapParser.adjust`: shift each found joint 0.25 px toward its higher neighbour, then +0.5.

    Args:
        people: (P, J, 3 + L) from `match_by_tag` (edited in place and returned).
        heatmaps: (J, H, W) of the same image.
    """
    _, h, w = heatmaps.shape
    for person in people:
        for joint_id, joint in enumerate(person):
            if joint[2] <= 0:
                continue
            x, y = float(joint[0]), float(joint[1])
            xx, yy = int(x), int(y)
            tmp = heatmaps[joint_id]
            y += 0.25 if tmp[min(h - 1, yy + 1), xx] > tmp[max(0, yy - 1), xx] else -0.25
            x += 0.25 if tmp[yy, min(w - 1, xx + 1)] > tmp[yy, max(0, xx - 1)] else -0.25
            person[joint_id, 0:2] = (x + 0.5, y + 0.5)
    return people


def _gaussian_blur3(maps: np.ndarray) -> np.ndarray:
    """cv2.GaussianBlur(k=3, sigma=0) on each (H, W) map: kernel [1, 2, 1] / 4, BORDER_REFLECT_101."""
    pad = np.pad(maps, ((0, 0), (1, 1), (1, 1)), mode="reflect")  # numpy 'reflect' is OpenCV's REFLECT_101
    rows = 0.25 * pad[:, :, :-2] + 0.5 * pad[:, :, 1:-1] + 0.25 * pad[:, :, 2:]
    return 0.25 * rows[:, :-2] + 0.5 * rows[:, 1:-1] + 0.25 * rows[:, 2:]


def dark_log_maps(heatmaps: np.ndarray) -> np.ndarray:
    """The maps `post_dark_udp` differentiates: blurred, clipped to [0.001, 50], log."""
    return np.log(np.clip(_gaussian_blur3(heatmaps.astype(np.float32)), 0.001, 50))


def post_dark_udp(coords: np.ndarray, log_maps: np.ndarray) -> np.ndarray:
    """mmpose `post_dark_udp` for one image: one Newton step on the log heatmaps at each (P, J, 2) coordinate."""
    p, k = coords.shape[:2]
    _, h, w = log_maps.shape
    flat = np.pad(log_maps, ((0, 0), (1, 1), (1, 1)), mode="edge").flatten()
    index = coords[..., 0] + 1 + (coords[..., 1] + 1) * (w + 2)
    index = index + (w + 2) * (h + 2) * np.arange(k).reshape(1, k)
    index = index.astype(int).reshape(-1, 1)
    i_ = flat[index]
    ix1, iy1, ix1y1 = flat[index + 1], flat[index + w + 2], flat[index + w + 3]
    ix1_y1_, ix1_, iy1_ = flat[index - w - 3], flat[index - 1], flat[index - 2 - w]
    derivative = np.concatenate([0.5 * (ix1 - ix1_), 0.5 * (iy1 - iy1_)], axis=1).reshape(p, k, 2, 1)
    dxx = ix1 - 2 * i_ + ix1_
    dyy = iy1 - 2 * i_ + iy1_
    dxy = 0.5 * (ix1y1 - ix1 - iy1 + i_ + i_ - ix1_ - iy1_ + ix1_y1_)
    hessian = np.concatenate([dxx, dxy, dxy, dyy], axis=1).reshape(p, k, 2, 2)
    hessian = np.linalg.inv(hessian + np.finfo(np.float32).eps * np.eye(2))
    return coords - np.einsum("ijmn,ijnk->ijmk", hessian, derivative)[..., 0]


def refine(heatmaps: np.ndarray, tags: np.ndarray, keypoints: np.ndarray, use_udp: bool = False) -> np.ndarray:
    """mmpose `HeatmapParser.refine`: fill each missing joint at the argmax of heatmap - round(tag distance).

    Args:
        heatmaps: (J, H, W).
        tags: (J, H, W, L).
        keypoints: (J, 3 + L) one person (edited in place and returned).
        use_udp: no +0.5 pixel-centre offset.
    """
    num_joints, h, w = heatmaps.shape
    found = []
    for i in range(num_joints):
        if keypoints[i, 2] > 0:
            x, y = keypoints[i][:2].astype(int)
            found.append(tags[i, int(np.clip(y, 0, h - 1)), int(np.clip(x, 0, w - 1))])
    if not found:
        return keypoints
    prev_tag = np.mean(found, axis=0)
    for i in range(num_joints):
        hm = heatmaps[i]
        distance = ((tags[i] - prev_tag[None, None, :]) ** 2).sum(axis=2) ** 0.5
        yy, xx = np.unravel_index(np.argmax(hm - np.round(distance)), hm.shape)
        val = hm[yy, xx]
        x, y = float(xx), float(yy)
        if not use_udp:
            x, y = x + 0.5, y + 0.5
        x += 0.25 if hm[yy, min(w - 1, xx + 1)] > hm[yy, max(0, xx - 1)] else -0.25
        y += 0.25 if hm[min(h - 1, yy + 1), xx] > hm[max(0, yy - 1), xx] else -0.25
        if val > 0 and keypoints[i, 2] == 0:
            keypoints[i, :3] = (x, y, val)
    return keypoints


def parse(heatmaps: torch.Tensor, tags: torch.Tensor, cfg: AEDecodeConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """mmpose `HeatmapParser.parse`, per image.

    Args:
        heatmaps: (B, J, H, W) aggregated heatmaps.
        tags: (B, J, H, W, L) aggregated tags.
        cfg: decoding settings.

    Returns:
        Per image: people (P, J, 3 + L) in heatmap pixels and their scores (P,).
    """
    heatmaps = heatmaps.detach().float()
    tags = tags.detach().float()
    tag_k, loc_k, val_k = top_k(heatmaps, tags, cfg.max_num_people, cfg.nms_kernel)
    hm_np = heatmaps.cpu().numpy()
    tag_np = tags.cpu().numpy()
    if tag_np.shape[1] != cfg.num_joints:
        tag_np = np.broadcast_to(tag_np, (tag_np.shape[0], cfg.num_joints, *tag_np.shape[2:]))
    results = []
    for b in range(hm_np.shape[0]):
        people = match_by_tag(tag_k[b], loc_k[b].astype(np.float32), val_k[b], cfg)
        maps = hm_np[b]
        if cfg.adjust and len(people):
            if cfg.use_udp:
                log_maps = dark_log_maps(maps)
                people[..., :2] = post_dark_udp(people[..., :2].astype(np.float64), log_maps)
                if cfg.refine_on_dark_maps:
                    maps = log_maps
            else:
                people = adjust(people, maps)
        scores = people[:, :, 2].mean(axis=1) if len(people) else np.zeros(0, dtype=np.float32)
        if cfg.refine:
            for person in people:
                refine(maps, tag_np[b], person, use_udp=cfg.use_udp)
        results.append((people, scores))
    return results


def to_image(xy: np.ndarray, heatmap_size: tuple[int, int], input_size: tuple[int, int],
             use_udp: bool) -> np.ndarray:
    """Heatmap (x, y) to input-image pixels, as mmpose `get_group_preds` for an unwarped input.

    Args:
        xy: (..., 2).
        heatmap_size: (H_hm, W_hm).
        input_size: (H, W) of the network input.
        use_udp: scale (W - 1) / (W_hm - 1) instead of W / W_hm.
    """
    (hh, hw), (ih, iw) = heatmap_size, input_size
    if use_udp:
        scale = np.array([(iw - 1) / max(hw - 1, 1), (ih - 1) / max(hh - 1, 1)])
    else:
        scale = np.array([iw / hw, ih / hh])
    return xy * scale


def decode(heatmaps: torch.Tensor, tags: torch.Tensor, cfg: AEDecodeConfig,
           input_size: tuple[int, int]) -> list[list[Person]]:
    """Group aggregated heatmaps and tags into people in input-image pixels.

    Args:
        heatmaps: (B, J, H, W) from `aggregate` / `flip_test`.
        tags: (B, J, H, W, L).
        cfg: decoding settings.
        input_size: (H, W) of the network input the maps came from.

    Returns:
        Per image, the people in mmpose's group order (no score threshold, no OKS-NMS).
    """
    out = []
    hm_size = tuple(heatmaps.shape[-2:])
    for people, scores in parse(heatmaps, tags, cfg):
        persons = []
        for person, score in zip(people, scores, strict=True):
            kpts = person[:, :3].astype(np.float64)
            kpts[:, :2] = to_image(kpts[:, :2], hm_size, input_size, cfg.use_udp)
            persons.append(Person(keypoints=kpts, score=float(score), tags=person[:, 3:].copy()))
        out.append(persons)
    return out
