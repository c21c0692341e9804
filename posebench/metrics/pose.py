"""Pose-accuracy metrics of HumanSD (arXiv 2304.04269): AP, AP(m), CAP and PCE from keypoint detections.

Inputs are a COCO keypoint ground truth (a dict as in a COCO JSON file) and a list of COCO keypoint results
(`image_id`, `keypoints` (51 floats), `score`, optional `category_id`). See `/work/shared/notes/pose-metrics.md`
sections 1-2 and 4 for the released code this reproduces.

- **AP** = pycocotools `COCOeval(iouType="keypoints")` `stats[0]`; **AP(m)** = `stats[3]` (medium, 32² to 96² px²).
  COCO σ, OKS thresholds 0.50:0.05:0.95, 101 recall points and `maxDets=[20]` in both profiles (20 is the COCO
  keypoint default and HumanSD's setting). An undefined value (no GT in the area range) is reported as None.
- **CAP** = the same COCO matching and accumulation with a weighted cosine pose similarity in place of OKS
  (`weighted_pose_cosine`), thresholds 0.50:0.05:0.95, `stats[0]`.
- **PCE** = mean over images of |#GT persons - #detections|. Every detection counts (no score threshold, no NMS):
  detections are taken as given.

All values are fractions (the papers print AP and CAP x100).

Profiles:

- `clean`: one dataset-level COCOeval over every image of the GT; CAP uses the NaN-free similarity of the notes
  (detection y uses y); PCE over every image id of the GT. GT `area`/`bbox` are used as given; when missing they
  are computed from the visible joints.
- `humansd`: reproduces the released code as far as the notes describe. Quirks reproduced:

  1. *CAP y bug* (quirk 2): the detection's y vector is the already normalised x vector divided by the norm of the
     min-max-only y vector, so the detection's vertical layout enters only through one scalar.
  2. *CAP NaN matches* (quirk 9): with fewer than two visible joints, or a zero x/y range, the similarity is NaN;
     pycocotools' `ious < thr` test is False for NaN, so the pair is accepted as a match (and becomes the running
     best). With no visible joint at all the similarity is NaN as well (posebench's reading; such GTs are ignored).
  3. *GT bbox/area from the (-1, -1) placeholders* (quirk 3): every joint with v <= 0 becomes (-1, -1, 0); `bbox`
     is the min/max over all 17 points, `area` = w*h, `num_keypoints` = count of x > 0; persons without any x > 0
     are dropped from the GT (and from the PCE count).
  4. *Per-10-image batches* (quirk 5): images are taken in the order of `gt["images"]`, 10 per batch (the last may
     be shorter); AP, AP(m), CAP and PCE are computed per batch and averaged over batches (a plain mean is the
     unverified "obvious reading"). AP(m) is -1 in a batch without medium GT: `ap_m` averages the batches where it
     is defined, `ap_m_incl_missing` averages all batches with the -1 values included.
  5. *PCE index loop* (quirk 8): per batch, with n = number of images of the batch that have GT, the mean runs over
     batch positions 0..n-1, not over the images with GT; a position without GT counts 0 GT and the last images
     of the batch are skipped. A batch with n = 0 has an undefined PCE (0/0 in the released code); posebench
     leaves it out of the mean over batches and says so in the batch row.
  6. Detections whose joint scores are all 0 are dropped (xtcocotools behaviour, notes section 2.1).
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

Profile = Literal["clean", "humansd"]
PROFILES: tuple[str, ...] = ("clean", "humansd")
N_JOINTS = 17
BATCH_SIZE = 10  # HumanSD's driver batch size (notes section 1.2)
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
                    sims[i, j] = weighted_pose_cosine(gk[:, :2], dk[:, :2], gk[:, 2], _SIGMAS, variant=self.variant)
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


def _run(gt: dict, dets: list[dict], variant: str) -> tuple[float | None, float | None, float | None]:
    """(AP, AP(m), CAP) of one COCO evaluation; None where COCOeval returns -1 (no GT in range)."""
    _, COCOeval, COCOevalSimilarity = _cocoeval_classes()
    coco_gt, coco_dt = _coco_pair(gt, dets)
    img_ids = [im["id"] for im in gt["images"]]
    out: list[float | None] = []
    for cls in (COCOeval, COCOevalSimilarity):
        ev = cls(coco_gt, coco_dt, iouType="keypoints")
        if cls is COCOevalSimilarity:
            ev.variant = variant
        ev.params.imgIds = img_ids
        ev.params.kpt_oks_sigmas = _SIGMAS.copy()
        ev.params.maxDets = [20]
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


def _validate_gt(gt: Any, profile: str) -> dict:
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
        if profile == "humansd":  # quirk 3: placeholders enter the bbox, persons with no x > 0 are dropped
            kp[kp[:, 2] <= 0] = (-1.0, -1.0, 0.0)
            if not (kp[:, 0] > 0).any():
                continue
            x0, y0, x1, y1 = kp[:, 0].min(), kp[:, 1].min(), kp[:, 0].max(), kp[:, 1].max()
            a["keypoints"] = kp.reshape(-1).tolist()
            a["num_keypoints"] = int((kp[:, 0] > 0).sum())
            a["bbox"] = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
            a["area"] = float((x1 - x0) * (y1 - y0))
        else:
            vis = kp[kp[:, 2] > 0]
            a.setdefault("num_keypoints", int(len(vis)))
            if "bbox" not in a or "area" not in a:
                if len(vis):
                    x0, y0, x1, y1 = vis[:, 0].min(), vis[:, 1].min(), vis[:, 0].max(), vis[:, 1].max()
                else:
                    x0 = y0 = x1 = y1 = 0.0
                a.setdefault("bbox", [float(x0), float(y0), float(x1 - x0), float(y1 - y0)])
                a.setdefault("area", float((x1 - x0) * (y1 - y0)))
        a["id"] = k + 1
        anns.append(a)
    gt["annotations"] = anns
    return gt


def _describe(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return f"{len(value)} values" + ("" if _finite_list(value, len(value)) else " (non-finite or non-numeric)")
    return type(value).__name__


def _validate_dets(dets: Any, gt: dict, profile: str) -> list[dict]:
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
        if profile == "humansd" and not any(d["keypoints"][2::3]):
            continue  # quirk 6: all joint scores 0 -> dropped
        out.append(d)
    if unknown:
        names = sorted({repr(u) for u in unknown})
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        raise PosebenchError(f"{len(unknown)} detection(s) refer to image ids not in the ground truth: {shown}")
    return out


# ----------------------------------------------------------------------------------------------- evaluator
def _subset(gt: dict, dets: list[dict], img_ids: list[Any]) -> tuple[dict, list[dict]]:
    keep = set(img_ids)
    sub = {**gt, "images": [im for im in gt["images"] if im["id"] in keep],
           "annotations": [a for a in gt["annotations"] if a["image_id"] in keep]}
    return sub, [d for d in dets if d["image_id"] in keep]


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if vals else None


def evaluate_pose(gt_coco: dict, detections: list[dict], *, profile: Profile = "clean") -> dict[str, Any]:
    """AP, AP(m), CAP and PCE of keypoint `detections` against `gt_coco` (see the module docstring).

    Returns {"profile", "ap", "ap_m", "cap", "pce", "n_images", "n_gt", "n_dt", "per_image_pce"} (AP/CAP as
    fractions, None where undefined); `humansd` adds "ap_m_incl_missing" and "batches" (one row per 10 images).
    """
    if profile not in PROFILES:
        raise PosebenchError(f"unknown pose-metric profile {profile!r}; expected one of {', '.join(PROFILES)}")
    gt = _validate_gt(gt_coco, profile)
    dets = _validate_dets(detections, gt, profile)
    img_ids = [im["id"] for im in gt["images"]]
    n_gt = {i: 0 for i in img_ids}
    for a in gt["annotations"]:
        n_gt[a["image_id"]] += 1
    n_dt = {i: 0 for i in img_ids}
    for d in dets:
        n_dt[d["image_id"]] += 1
    result: dict[str, Any] = {"profile": profile, "n_images": len(img_ids), "n_gt": len(gt["annotations"]),
                              "n_dt": len(dets), "max_dets": 20}
    if profile == "clean":
        ap, ap_m, cap = _run(gt, dets, "clean") if img_ids else (None, None, None)
        per_image = [{"image_id": i, "n_gt": n_gt[i], "n_dt": n_dt[i], "error": abs(n_gt[i] - n_dt[i])}
                     for i in img_ids]
        pce = float(np.mean([r["error"] for r in per_image])) if per_image else None
        result.update(ap=ap, ap_m=ap_m, cap=cap, pce=pce, per_image_pce=per_image)
        return result

    batches, per_image = [], []
    for b, start in enumerate(range(0, len(img_ids), BATCH_SIZE)):
        ids = img_ids[start:start + BATCH_SIZE]
        sub_gt, sub_dets = _subset(gt, dets, ids)
        ap, ap_m, cap = _run(sub_gt, sub_dets, "humansd")
        n = sum(1 for i in ids if n_gt[i] > 0)  # quirk 5: loop over positions 0..n-1
        rows = [{"image_id": i, "batch": b, "n_gt": n_gt[i], "n_dt": n_dt[i], "error": abs(n_gt[i] - n_dt[i])}
                for i in ids[:n]]
        per_image.extend(rows)
        pce = float(np.mean([r["error"] for r in rows])) if rows else None
        batches.append({"batch": b, "image_ids": ids, "ap": ap, "ap_m": ap_m, "cap": cap, "pce": pce,
                        "pce_images": n, "note": "" if rows else "no image with GT: PCE undefined, left out"})
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
