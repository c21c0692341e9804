"""Pose-accuracy metrics of HumanSD (arXiv 2304.04269): AP, AP(m), CAP and PCE from keypoint detections.

Inputs are a COCO keypoint ground truth (a dict as in a COCO JSON file) and a list of COCO keypoint results
(`image_id`, `keypoints` (51 floats), `score`, optional `category_id`). docs/metrics.md ("Pose profiles")
describes the released code this reproduces and the quirks each profile keeps or fixes.

- **AP** = pycocotools `COCOeval(iouType="keypoints")` `stats[0]`; **AP(m)** = `stats[3]` (medium, 32² to 96² px²).
  COCO σ, OKS thresholds 0.50:0.05:0.95, 101 recall points and `maxDets=[20]` in both profiles (20 is the COCO
  keypoint default and HumanSD's setting). An undefined value (no GT in the area range) is reported as None.
- **CAP** = the same COCO matching and accumulation with a weighted cosine pose similarity in place of OKS
  (`weighted_pose_cosine`), thresholds 0.50:0.05:0.95, `stats[0]`.
- **PCE** = mean over images of |#GT persons - #counted detections|. Which detections count is a profile setting
  (quirk 7): `humansd` counts every detection; `clean` counts those with score >= `pce_score_threshold` left after
  greedy OKS-NMS at `pce_oks_nms_threshold` (`oks_nms`, as mmpose's). AP and CAP always use every detection.

All values are fractions (the papers print AP and CAP x100).

Profiles are versioned YAML files (`posebench/protocols/pose_profiles/`, `posebench.protocols.pose_profile`);
`evaluate_pose(..., profile=)` takes a built-in name (`clean`, `humansd`), a YAML path or a `PoseProfile`. The
settings this module applies (quirk numbers of the table in docs/metrics.md):

- `gt_area` (quirk 3): `given-or-visible-joints` uses GT `area`/`bbox` as given and computes missing ones from the
  visible joints; `placeholders` turns every joint with v <= `visibility_threshold` into (-1, -1, 0), takes `bbox`
  as the min/max over all 17 points, `area` = w*h, `num_keypoints` = count of x > 0, and drops persons without
  any x > 0 from the GT (and from the PCE count).
- `visibility_threshold` (quirk 10): a GT joint is visible when v > threshold (`clean` sets v = 0 for the others,
  coordinates kept).
- `cap_similarity` (quirks 2, 9): `clean` is NaN-free with the detection's y vector; `humansd` reuses the
  normalised x vector (the released bug) and its NaN similarities are accepted as matches (pycocotools'
  `ious < thr` is False for NaN). With no visible joint at all the similarity is NaN as well (posebench's reading;
  such GTs are ignored).
- `aggregation` (quirk 5): `dataset` is one COCOeval over every image; `batches` takes images in the order of
  `gt["images"]`, `batch_size` per batch (the last may be shorter), computes AP, AP(m), CAP and PCE per batch and
  averages over batches (a plain mean, the unverified "obvious reading"). AP(m) is -1 in a batch without medium
  GT: `ap_m` averages the batches where it is defined, `ap_m_incl_missing` averages all with the -1 included.
- `pce_images` (quirk 8): `every-image` averages over every image id; `first-n-positions` averages, per batch,
  over positions 0..n-1 with n = the number of images of the batch that have GT, so a position without GT counts
  0 GT and the last images are skipped. A batch with n = 0 has an undefined PCE (0/0 in the released code);
  posebench leaves it out of the mean over batches and says so in the batch row.
- `pce_score_threshold`, `pce_oks_nms_threshold` (quirk 7): see PCE above; null = off.
- `drop_zero_score_detections`: COCOeval does not see detections without a joint score above 0 (xtcocotools'
  `_prepare`, notes 2.1; pycocotools keeps them); PCE still counts them, as the released code counts the
  detection index (`imgToAnns`).
- `sigmas`, `max_dets`: COCOeval's `kpt_oks_sigmas` (also OKS-NMS's) and `maxDets`.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np

from posebench.datasets.keypoints import COCO17_SIGMAS
from posebench.errors import PosebenchError
from posebench.protocols.pose_profile import PoseProfile, get_pose_profile

N_JOINTS = 17
_SIGMAS = np.asarray(COCO17_SIGMAS, dtype=np.float64)


# ----------------------------------------------------------------------------------------------- similarity
def _minmax(a: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a - a.min()) / (a.max() - a.min())


def _l2(a: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return a / np.linalg.norm(a)


def weighted_pose_cosine(
    gt: np.ndarray,
    dt: np.ndarray,
    vis: np.ndarray,
    sigmas: np.ndarray | None = None,
    *,
    variant: Literal["clean", "humansd"] = "clean",
) -> float:
    """Weighted cosine similarity of two (17, 2) poses over the GT-visible joints (vis > 0).

    Coordinates are divided by σ_k, min-max normalised per axis and L2 normalised, then the cosine of
    concat(x, y) is taken. `clean` never returns NaN (0.0 when undefined); `humansd` reproduces the released bug
    (detection y = x̂_d / ‖ỹ_d‖) and its NaN cases.
    """
    gt = np.asarray(gt, dtype=np.float64)
    dt = np.asarray(dt, dtype=np.float64)
    vis = np.asarray(vis, dtype=np.float64).reshape(-1)
    sig = _SIGMAS if sigmas is None else np.asarray(sigmas, dtype=np.float64)
    if gt.shape != (N_JOINTS, 2) or dt.shape != (N_JOINTS, 2) or vis.shape != (N_JOINTS,) or sig.shape != (17,):
        raise PosebenchError(f"expected gt/dt (17, 2), vis (17,), sigmas (17,); got {gt.shape}, {dt.shape}, "
                             f"{vis.shape}, {sig.shape}")
    v = vis > 0
    if variant == "clean":
        if v.sum() < 2:
            return 0.0  # undefined -> never a match

        def unit(a: np.ndarray) -> np.ndarray:
            span = a.max() - a.min()
            a = (a - a.min()) / span if span > 0 else np.zeros_like(a)
            n = np.linalg.norm(a)
            return a / n if n > 0 else a

        g, d = gt[v] / sig[v, None], dt[v] / sig[v, None]
        gv = np.concatenate([unit(g[:, 0]), unit(g[:, 1])])
        dv = np.concatenate([unit(d[:, 0]), unit(d[:, 1])])
        den = np.linalg.norm(gv) * np.linalg.norm(dv)
        return float(gv @ dv / den) if den > 0 else 0.0
    if variant != "humansd":
        raise PosebenchError(f"unknown similarity variant {variant!r}; expected 'clean' or 'humansd'")
    if not v.any():
        return math.nan
    g, d = gt[v] / sig[v, None], dt[v] / sig[v, None]
    xg, yg, xd = _l2(_minmax(g[:, 0])), _l2(_minmax(g[:, 1])), _l2(_minmax(d[:, 0]))
    with np.errstate(invalid="ignore", divide="ignore"):
        yd = xd / np.linalg.norm(_minmax(d[:, 1]))  # the released bug: x̂_d reused instead of y_d
        gv, dv = np.concatenate([xg, yg]), np.concatenate([xd, yd])
        return float(gv @ dv / (np.linalg.norm(gv) * np.linalg.norm(dv)))


# ----------------------------------------------------------------------------------------------- COCO plumbing
def _cocoeval_classes():
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    class COCOevalSimilarity(COCOeval):
        """COCOeval whose `computeOks` returns the weighted cosine similarity matrix (dts x gts)."""

        variant: str = "clean"
        sigmas: np.ndarray = _SIGMAS

        def computeOks(self, imgId, catId):  # noqa: N802 (pycocotools name)
            p = self.params
            gts = self._gts[imgId, catId]
            dts = self._dts[imgId, catId]
            inds = np.argsort([-d["score"] for d in dts], kind="mergesort")
            dts = [dts[i] for i in inds][: p.maxDets[-1]]
            if len(gts) == 0 or len(dts) == 0:
                return []
            sims = np.zeros((len(dts), len(gts)))
            for j, g in enumerate(gts):
                gk = np.asarray(g["keypoints"], dtype=np.float64).reshape(N_JOINTS, 3)
                for i, d in enumerate(dts):
                    dk = np.asarray(d["keypoints"], dtype=np.float64).reshape(N_JOINTS, 3)
                    sims[i, j] = weighted_pose_cosine(gk[:, :2], dk[:, :2], gk[:, 2], self.sigmas,
                                                      variant=self.variant)
            return sims

    return COCO, COCOeval, COCOevalSimilarity


def _coco_pair(gt: dict, dets: list[dict]):
    COCO, _, _ = _cocoeval_classes()
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        if dets:
            coco_dt = coco_gt.loadRes(copy.deepcopy(dets))
        else:  # pycocotools' loadRes cannot take an empty list: an empty result set means every GT is a miss
            coco_dt = COCO()
            coco_dt.dataset = {"images": list(gt["images"]), "categories": copy.deepcopy(gt["categories"]),
                               "annotations": []}
            coco_dt.createIndex()
    return coco_gt, coco_dt


def _run(gt: dict, dets: list[dict], prof: PoseProfile) -> tuple[float | None, float | None, float | None]:
    """(AP, AP(m), CAP) of one COCO evaluation; None where COCOeval returns -1 (no GT in range)."""
    _, COCOeval, COCOevalSimilarity = _cocoeval_classes()
    coco_gt, coco_dt = _coco_pair(gt, dets)
    img_ids = [im["id"] for im in gt["images"]]
    out: list[float | None] = []
    for cls in (COCOeval, COCOevalSimilarity):
        ev = cls(coco_gt, coco_dt, iouType="keypoints")
        if cls is COCOevalSimilarity:
            ev.variant = prof.cap_similarity
            ev.sigmas = np.asarray(prof.sigmas, dtype=np.float64)
        ev.params.imgIds = img_ids
        ev.params.kpt_oks_sigmas = np.asarray(prof.sigmas, dtype=np.float64)
        ev.params.maxDets = [prof.max_dets]
        with contextlib.redirect_stdout(io.StringIO()):
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        stats = ev.stats
        vals = [stats[0], stats[3]] if cls is COCOeval else [stats[0]]
        out.extend(None if v < 0 else float(v) for v in vals)
    return out[0], out[1], out[2]


# ----------------------------------------------------------------------------------------------- validation
def _finite_list(value: Any, n: int) -> bool:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        return False
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return bool(np.isfinite(arr).all())


def validate_ground_truth(gt: Any, prof: PoseProfile | str) -> dict:
    prof = get_pose_profile(prof)
    if not isinstance(gt, dict) or not isinstance(gt.get("images"), list) or not isinstance(
            gt.get("annotations"), list):
        raise PosebenchError("ground truth must be a COCO keypoint dict with 'images' and 'annotations' lists")
    gt = copy.deepcopy(gt)
    ids = []
    for k, im in enumerate(gt["images"]):
        if not isinstance(im, dict) or "id" not in im:
            raise PosebenchError(f"ground-truth images[{k}] has no 'id'")
        ids.append(im["id"])
    if len(set(ids)) != len(ids):
        raise PosebenchError("ground-truth image ids are not unique")
    known = set(ids)
    cats = gt.get("categories") or [{"id": 1, "name": "person"}]
    gt["categories"] = cats
    cat_id = cats[0]["id"]
    anns = []
    for k, a in enumerate(gt["annotations"]):
        where = f"ground-truth annotations[{k}]"
        if not isinstance(a, dict):
            raise PosebenchError(f"{where} is not an object")
        if a.get("image_id") not in known:
            raise PosebenchError(f"{where} refers to unknown image id {a.get('image_id')!r}")
        if "keypoints" not in a:
            raise PosebenchError(f"{where} has no 'keypoints'")
        if not _finite_list(a["keypoints"], 3 * N_JOINTS):
            raise PosebenchError(f"{where}: 'keypoints' must be {3 * N_JOINTS} finite numbers "
                                 f"(17 x [x, y, v]); got {_describe(a['keypoints'])}")
        kp = np.asarray(a["keypoints"], dtype=np.float64).reshape(N_JOINTS, 3)
        a = dict(a)
        a.setdefault("category_id", cat_id)
        a.setdefault("iscrowd", 0)
        hidden = kp[:, 2] <= prof.visibility_threshold  # quirk 10
        if prof.gt_area == "placeholders":
            a = _placeholder_annotation(a, kp, hidden)
            if a is None:
                continue
        else:
            a = _visible_joint_annotation(a, kp, hidden)
        a["id"] = k + 1
        anns.append(a)
    gt["annotations"] = anns
    return gt


def _placeholder_annotation(a: dict, kp: np.ndarray, hidden: np.ndarray) -> dict | None:
    """Quirk 3: hidden joints become (-1, -1, 0) and enter the bbox; None for a person with no x > 0 (dropped)."""
    kp[hidden] = (-1.0, -1.0, 0.0)
    a["iscrowd"] = 0  # the released code writes its own GT: nobody is a crowd
    if not (kp[:, 0] > 0).any():
        return None
    x0, y0, x1, y1 = kp[:, 0].min(), kp[:, 1].min(), kp[:, 0].max(), kp[:, 1].max()
    a["keypoints"] = kp.reshape(-1).tolist()
    a["num_keypoints"] = int((kp[:, 0] > 0).sum())
    a["bbox"] = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
    a["area"] = float((x1 - x0) * (y1 - y0))
    return a


def _visible_joint_annotation(a: dict, kp: np.ndarray, hidden: np.ndarray) -> dict:
    """Area and bbox as given; when either is missing, both from the min/max box of the visible joints."""
    if hidden.any() and (kp[hidden, 2] != 0).any():  # v at or below the threshold: invisible, coordinates kept
        kp[hidden, 2] = 0.0
        a["keypoints"] = kp.reshape(-1).tolist()
    vis = kp[~hidden]
    a.setdefault("num_keypoints", int(len(vis)))
    if "bbox" not in a or "area" not in a:
        x0, y0, x1, y1 = visible_box(kp, hidden)
        a.setdefault("bbox", [x0, y0, x1 - x0, y1 - y0])
        a.setdefault("area", (x1 - x0) * (y1 - y0))
    return a


def visible_box(kp: np.ndarray, hidden: np.ndarray | None = None) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of the joints not `hidden` (default: v <= 0) of a (17, 3) array; zeros when none."""
    hidden = kp[:, 2] <= 0 if hidden is None else hidden
    vis = kp[~hidden]
    if not len(vis):
        return 0.0, 0.0, 0.0, 0.0
    return float(vis[:, 0].min()), float(vis[:, 1].min()), float(vis[:, 0].max()), float(vis[:, 1].max())


def _describe(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return f"{len(value)} values" + ("" if _finite_list(value, len(value)) else " (non-finite or non-numeric)")
    return type(value).__name__


def validate_detections(dets: Any, gt: dict, prof: PoseProfile | str) -> list[dict]:
    prof = get_pose_profile(prof)
    if not isinstance(dets, list):
        raise PosebenchError(f"detections must be a list of COCO keypoint results, got {type(dets).__name__}")
    known = {im["id"] for im in gt["images"]}
    cat_id = gt["categories"][0]["id"]
    unknown: list[Any] = []
    out = []
    for k, d in enumerate(dets):
        where = f"detections[{k}]"
        if not isinstance(d, dict):
            raise PosebenchError(f"{where} is not an object")
        if d.get("image_id") not in known:
            unknown.append(d.get("image_id"))
            continue
        if "keypoints" not in d:
            raise PosebenchError(f"{where} (image {d['image_id']!r}) has no 'keypoints'")
        if not _finite_list(d["keypoints"], 3 * N_JOINTS):
            raise PosebenchError(f"{where} (image {d['image_id']!r}): 'keypoints' must be {3 * N_JOINTS} finite "
                                 f"numbers (17 x [x, y, score]); got {_describe(d['keypoints'])}")
        score = d.get("score")
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise PosebenchError(f"{where} (image {d['image_id']!r}): 'score' must be a finite number, got {score!r}")
        d = {**d, "keypoints": [float(v) for v in d["keypoints"]], "score": float(score)}
        d.setdefault("category_id", cat_id)
        out.append(d)
    if unknown:
        names = sorted({repr(u) for u in unknown})
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        raise PosebenchError(f"{len(unknown)} detection(s) refer to image ids not in the ground truth: {shown}")
    return out


# ----------------------------------------------------------------------------------------------- evaluator
def oks_nms(keypoints: np.ndarray, scores: np.ndarray, threshold: float,
            sigmas: np.ndarray | None = None) -> list[int]:
    """Indices kept by greedy OKS-NMS over one image's detections, as mmpose's `oks_nms` (no visibility threshold).

    Detections are visited by descending score (ties: the earlier first); each kept one suppresses the remaining
    ones whose OKS with it exceeds `threshold`. OKS uses all 17 joints, the detections' areas from their keypoint
    extent ((max - min x) * (max - min y)) averaged, and variances (2σ)².

    Args:
        keypoints: (N, 17, 2 or 3) detections.
        scores: (N,) person scores.
        threshold: OKS above which a detection is a duplicate.
        sigmas: (17,) per-joint σ (default COCO).
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if not len(kp):
        return []
    xy = kp[:, :, :2]
    var = (2 * (_SIGMAS if sigmas is None else np.asarray(sigmas, dtype=np.float64))) ** 2
    areas = np.ptp(xy[:, :, 0], axis=1) * np.ptp(xy[:, :, 1], axis=1)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    keep: list[int] = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        d2 = ((xy[rest] - xy[i]) ** 2).sum(axis=2)
        e = d2 / var / ((areas[i] + areas[rest])[:, None] / 2 + np.spacing(1)) / 2
        order = rest[np.exp(-e).mean(axis=1) <= threshold]
    return keep


def scored_detections(dets: list[dict], prof: PoseProfile) -> list[dict]:
    """The detections COCOeval sees: `drop_zero_score_detections` drops those without a joint score above 0, as
    xtcocotools' `_prepare` does (negative scores too); PCE still counts them (the released code counts
    `imgToAnns`)."""
    if not prof.drop_zero_score_detections:
        return dets
    return [d for d in dets if any(v > 0 for v in d["keypoints"][2::3])]


def pce_detections(dets: list[dict], prof: PoseProfile) -> list[dict]:
    """The detections PCE counts (quirk 7): score >= `pce_score_threshold`, then OKS-NMS per image; null = off."""
    thr, nms_thr = prof.pce_score_threshold, prof.pce_oks_nms_threshold
    kept = [d for d in dets if thr is None or d["score"] >= thr]
    if nms_thr is None:
        return kept
    by_image: dict[Any, list[dict]] = {}
    for d in kept:
        by_image.setdefault(d["image_id"], []).append(d)
    out = []
    for group in by_image.values():
        kp = np.asarray([d["keypoints"] for d in group], dtype=np.float64).reshape(len(group), N_JOINTS, 3)
        out += [group[i] for i in sorted(oks_nms(kp, np.asarray([d["score"] for d in group]), nms_thr,
                                                 np.asarray(prof.sigmas)))]
    return out


def _batch(gt: dict, dets: list[dict], img_ids: list[Any]) -> tuple[dict, list[dict]]:
    """One batch with batch-local image ids 0..B-1, as the released code builds it (quirk 5). The ids matter:
    COCOeval concatenates per-image results in image-id order before its stable score sort, so exact score ties
    across images rank by batch position."""
    local = {i: k for k, i in enumerate(img_ids)}
    sub = {**gt, "images": [{**im, "id": local[im["id"]]} for im in gt["images"] if im["id"] in local],
           "annotations": [{**a, "image_id": local[a["image_id"]]} for a in gt["annotations"]
                           if a["image_id"] in local]}
    return sub, [{**d, "image_id": local[d["image_id"]]} for d in dets if d["image_id"] in local]


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if vals else None


def _count(ids: list[Any], items: list[dict]) -> dict[Any, int]:
    n = {i: 0 for i in ids}
    for x in items:
        n[x["image_id"]] += 1
    return n


def _pce_rows(ids: list[Any], n_gt: dict[Any, int], n_dt: dict[Any, int], prof: PoseProfile,
              batch: int | None = None) -> list[dict]:
    """Per-image PCE rows of one evaluation unit; `first-n-positions` keeps positions 0..n-1 only (quirk 8)."""
    if prof.pce_images == "first-n-positions":
        ids = ids[:sum(1 for i in ids if n_gt[i] > 0)]
    extra = {} if batch is None else {"batch": batch}
    return [{"image_id": i, **extra, "n_gt": n_gt[i], "n_dt": n_dt[i], "error": abs(n_gt[i] - n_dt[i])}
            for i in ids]


def evaluate_pose(gt_coco: dict, detections: list[dict], *,
                  profile: str | Path | PoseProfile = "clean") -> dict[str, Any]:
    """AP, AP(m), CAP and PCE of keypoint `detections` against `gt_coco` (see the module docstring).

    Args:
        gt_coco: COCO keypoint ground truth.
        detections: COCO keypoint results.
        profile: a built-in pose profile name (`clean`, `humansd`), a pose-profile YAML file or a `PoseProfile`.

    Returns:
        {"profile" (name), "profile_version", "profile_sha256", "ap", "ap_m", "cap", "pce", "n_images", "n_gt",
        "n_dt" (every detection), "n_dt_pce" (the ones PCE counts), "max_dets", "per_image_pce"} (AP/CAP as
        fractions, None where undefined; per-image `n_dt` is the PCE count); `aggregation: batches` adds
        "ap_m_incl_missing", "n_batches" and "batches" (one row per batch).
    """
    prof = get_pose_profile(profile)
    gt = validate_ground_truth(gt_coco, prof)
    dets = validate_detections(detections, gt, prof)
    counted, n_all = pce_detections(dets, prof), len(dets)
    dets = scored_detections(dets, prof)
    img_ids = [im["id"] for im in gt["images"]]
    n_gt, n_dt = _count(img_ids, gt["annotations"]), _count(img_ids, counted)
    result: dict[str, Any] = {"profile": prof.name, "profile_version": prof.version, "profile_sha256": prof.sha256,
                              "n_images": len(img_ids), "n_gt": len(gt["annotations"]), "n_dt": n_all,
                              "n_dt_pce": len(counted), "max_dets": prof.max_dets}
    if prof.aggregation == "dataset":
        ap, ap_m, cap = _run(gt, dets, prof) if img_ids else (None, None, None)
        per_image = _pce_rows(img_ids, n_gt, n_dt, prof)
        pce = float(np.mean([r["error"] for r in per_image])) if per_image else None
        result.update(ap=ap, ap_m=ap_m, cap=cap, pce=pce, per_image_pce=per_image)
        return result

    batches, per_image = [], []
    size = int(prof.batch_size or 1)
    for b, start in enumerate(range(0, len(img_ids), size)):
        ids = img_ids[start:start + size]
        sub_gt, sub_dets = _batch(gt, dets, ids)
        ap, ap_m, cap = _run(sub_gt, sub_dets, prof)
        rows = _pce_rows(ids, n_gt, n_dt, prof, batch=b)
        per_image.extend(rows)
        pce = float(np.mean([r["error"] for r in rows])) if rows else None
        batches.append({"batch": b, "image_ids": ids, "ap": ap, "ap_m": ap_m, "cap": cap, "pce": pce,
                        "pce_images": len(rows), "note": "" if rows else "no image with GT: PCE undefined, left out"})
    ap_m_all = [(-1.0 if r["ap_m"] is None else r["ap_m"]) for r in batches]
    result.update(
        ap=_mean([r["ap"] for r in batches]),
        ap_m=_mean([r["ap_m"] for r in batches]),
        ap_m_incl_missing=float(np.mean(ap_m_all)) if ap_m_all else None,
        cap=_mean([r["cap"] for r in batches]),
        pce=_mean([r["pce"] for r in batches]),
        n_batches=len(batches),
        batches=batches,
        per_image_pce=per_image,
    )
    return result


def load_json(path: str | Path, what: str) -> Any:
    """Read a JSON file, turning a missing or malformed file into a PosebenchError that names it."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise PosebenchError(f"cannot read the {what} file {p}: {exc.strerror or exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PosebenchError(f"the {what} file {p} is not valid JSON (line {exc.lineno}, column {exc.colno}): "
                             f"{exc.msg}") from exc
