"""Parity of posebench's pose metrics (pycocotools inside) with xtcocotools, the COCO fork HumanSD's released code
evaluates with (`utils/metrics/pose_metrics.py`, `coco_similarity.py`; docs/metrics.md, "Pose profiles").

- `clean`: AP/AP(m) equal xtcocotools `COCOeval(iouType="keypoints", sigmas=COCO σ, use_area=True)` stats[0]/[3],
  and CAP equals the same COCOeval with `computeOks` returning the weighted cosine similarity.
- `humansd`: an independent reproduction of the released pipeline (per 10-image batch: GT written the way HumanSD
  writes it, JSON files, xtcocotools COCO/loadRes/COCOeval, mean over batches) gives posebench's AP, AP(m), CAP, PCE.
- Where pycocotools and xtcocotools genuinely differ, a test pins which one posebench follows:
  GT annotation id 0 (xtcocotools' -1 sentinel; posebench renumbers ids, so it agrees with xtcocotools), the GT
  ignore rule (`num_keypoints` in pycocotools, count of v > 0 in xtcocotools) and detections without any joint
  score > 0 (dropped by xtcocotools; kept by pycocotools and `clean`, dropped by `humansd`). The four places where
  `humansd` once deviated from the released code (negative joint scores, PCE counting scoreless detections, the
  input crowd flag, score ties across images) have a test each.

xtcocotools must be built from source against numpy 2 (`make install` does it); without it the module is skipped.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("xtcocotools")
from xtcocotools.coco import COCO as XtCOCO  # noqa: E402
from xtcocotools.cocoeval import COCOeval as XtCOCOeval  # noqa: E402

from posebench.datasets.keypoints import COCO17_SIGMAS  # noqa: E402
from posebench.metrics.pose import evaluate_pose, weighted_pose_cosine  # noqa: E402

SIGMAS = np.asarray(COCO17_SIGMAS, dtype=np.float64)
TOL = 1e-12

# unit-box person layout (x in [0.15, 0.85], y in [0.03, 1]) in COCO-17 order
_TEMPLATE = np.array([
    (0.50, 0.05), (0.45, 0.03), (0.55, 0.03), (0.40, 0.06), (0.60, 0.06), (0.30, 0.20), (0.70, 0.20),
    (0.20, 0.40), (0.80, 0.40), (0.15, 0.55), (0.85, 0.55), (0.38, 0.55), (0.62, 0.55), (0.37, 0.78),
    (0.63, 0.78), (0.36, 1.00), (0.64, 1.00),
])
# person heights giving small (< 32²), medium (32² to 96²) and large (> 96²) visible-joint boxes (area ≈ 0.34 h²)
_HEIGHTS = ((22.0, 50.0), (60.0, 160.0), (175.0, 420.0))


# ----------------------------------------------------------------------------------------------- synthetic data
def _person(rng: np.random.Generator) -> np.ndarray:
    h = rng.uniform(*_HEIGHTS[rng.integers(3)])
    x0, y0 = rng.uniform(5, 500 - h / 2), rng.uniform(5, 500 - h)
    xy = np.stack([x0 + _TEMPLATE[:, 0] * h / 2, y0 + _TEMPLATE[:, 1] * h], axis=1)
    return xy + rng.normal(0, 0.03 * h, xy.shape)  # pose variation


def _world(seed: int, n_images: int, *, vis_scores: bool, crowd: bool, zero_dets: bool,
           negative_dets: bool = False, low_scores: bool = False,
           cross_image_ties: bool = False) -> tuple[dict, list[dict]]:
    """Seeded COCO keypoint GT and detections.

    GT: 0-6 persons per image, a mix of small/medium/large, visibility per person full / partial / single joint /
    none; v in {1, 2} (`vis_scores=False`) or a conditioning score in (0.05, 1] (`True`, the HumanSD targets;
    `low_scores`: some in (0, 0.02], below HumanSD's visibility threshold); annotation ids from 0; image ids
    shuffled and non-contiguous; optional crowd annotations.
    Detections: perturbed GT (noise up to 15 % of the height), misses, duplicates, false positives, random scores,
    exact score ties inside an image (and across images with `cross_image_ties`), one image with more than 20
    detections (maxDets), optional detections whose joint scores are all 0 (placed on a GT with a top score, so
    dropping them changes AP) or all <= 0 with some negative.
    """
    rng = np.random.default_rng(seed)
    img_ids = [int(i) for i in rng.permutation(np.arange(n_images) * 3 + 1)]
    images = [{"id": i, "width": 512, "height": 512} for i in img_ids]
    anns: list[dict] = []
    dets: list[dict] = []
    for n, img in enumerate(img_ids):
        people = [_person(rng) for _ in range(int(rng.integers(0, 7)))]
        for xy in people:
            mode = rng.choice(["full", "partial", "one", "none"], p=[0.4, 0.5, 0.05, 0.05])
            vis = {"full": np.ones(17, bool), "partial": rng.uniform(size=17) < rng.uniform(0.4, 0.95),
                   "one": np.arange(17) == rng.integers(17), "none": np.zeros(17, bool)}[mode]
            v = (rng.uniform(0.05, 1.0, 17) if vis_scores else rng.choice([1.0, 2.0], 17)) * vis
            if low_scores:
                v = np.where(vis & (rng.uniform(size=17) < 0.15), rng.uniform(0.001, 0.02, 17), v)
            kp = np.concatenate([xy, v[:, None]], axis=1)
            kp[~vis] = 0.0
            box_pts = xy[vis] if vis.any() else xy
            (x0, y0), (x1, y1) = box_pts.min(0), box_pts.max(0)
            anns.append({"id": len(anns), "image_id": img, "category_id": 1, "keypoints": kp.reshape(-1).tolist(),
                         "num_keypoints": int(vis.sum()), "iscrowd": 0,
                         "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                         "area": float((x1 - x0) * (y1 - y0))})
            for _ in range(int(rng.choice([0, 1, 1, 1, 1, 1, 2]))):  # miss, hit, duplicate
                noisy = xy + rng.normal(0, rng.uniform(0.0, 0.15) * (y1 - y0 + 10), xy.shape)
                dets.append(_det(noisy, img, rng))
        if crowd and rng.uniform() < 0.3:
            xy = _person(rng)
            vis = rng.uniform(size=17) < 0.5
            kp = np.concatenate([xy, 2.0 * vis[:, None]], axis=1)
            kp[~vis] = 0.0
            (x0, y0), (x1, y1) = xy.min(0), xy.max(0)
            anns.append({"id": len(anns), "image_id": img, "category_id": 1, "keypoints": kp.reshape(-1).tolist(),
                         "num_keypoints": int(vis.sum()), "iscrowd": 1,
                         "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                         "area": float((x1 - x0) * (y1 - y0))})
            dets.append(_det(xy + rng.normal(0, 3, xy.shape), img, rng))
        for _ in range(int(rng.integers(0, 3)) + (22 if n == 1 else 0)):  # false positives; image 1: > 20 dets
            dets.append(_det(_person(rng), img, rng))
        if zero_dets and people and n % 3 == 0:
            dets.append(_det(people[0], img, rng, score=0.999, joint=0.0))
        if negative_dets and people and n % 3 == 1:
            neg = np.where(rng.uniform(size=17) < 0.5, -0.1, 0.0)
            dets.append(_det(people[0], img, rng, score=0.999, joint=neg))
    for k in range(0, len(dets) - 1, 4):  # exact score ties (stable mergesort order in both libraries)
        if (dets[k]["image_id"] == dets[k + 1]["image_id"]) != cross_image_ties:
            dets[k + 1]["score"] = dets[k]["score"]
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    return gt, dets


def _det(xy: np.ndarray, img: int, rng: np.random.Generator, *, score: float | None = None,
         joint: float | np.ndarray | None = None) -> dict:
    js = rng.uniform(0.05, 1.0, 17) * (rng.uniform(size=17) > 0.1) if joint is None else np.broadcast_to(joint, 17)
    kp = np.concatenate([xy, np.asarray(js, dtype=np.float64)[:, None]], axis=1)
    s = float(rng.uniform(0.0, 1.0)) if score is None else score
    return {"image_id": img, "category_id": 1, "keypoints": kp.reshape(-1).tolist(), "score": s}


def _require(ok: bool, what: str) -> None:
    """A precondition on the synthetic data; not an AssertionError, so a strict xfail cannot swallow it."""
    if not ok:
        raise RuntimeError(f"test data: {what}")


def _drop_scoreless(dets: list[dict]) -> list[dict]:
    return [d for d in dets if any(v > 0 for v in d["keypoints"][2::3])]


# ----------------------------------------------------------------------------------------------- xtcocotools side
class SimilarityEval(XtCOCOeval):
    """xtcocotools COCOeval whose `computeOks` returns posebench's weighted cosine similarity (dts x gts)."""

    variant = "clean"

    def computeOks(self, imgId, catId):  # noqa: N802 (xtcocotools name)
        p = self.params
        gts, dts = self._gts[imgId, catId], self._dts[imgId, catId]
        inds = np.argsort([-d[self.score_key] for d in dts], kind="mergesort")
        dts = [dts[i] for i in inds][: p.maxDets[-1]]
        if len(gts) == 0 or len(dts) == 0:
            return []
        sims = np.zeros((len(dts), len(gts)))
        for j, g in enumerate(gts):
            gk = np.asarray(g["keypoints"], dtype=np.float64).reshape(17, 3)
            for i, d in enumerate(dts):
                dk = np.asarray(d["keypoints"], dtype=np.float64).reshape(17, 3)
                sims[i, j] = weighted_pose_cosine(gk[:, :2], dk[:, :2], gk[:, 2], SIGMAS, variant=self.variant)
        return sims


def _xt_pair(gt: dict, dets: list[dict]):
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = XtCOCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(dets))
    return coco_gt, coco_dt


def _xt_stats(coco_gt, coco_dt, cls=XtCOCOeval, variant: str = "clean") -> np.ndarray:
    ev = cls(coco_gt, coco_dt, iouType="keypoints", sigmas=SIGMAS.copy(), use_area=True)
    ev.variant = variant
    ev.params.maxDets = [20]
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


def _xt_clean(gt: dict, dets: list[dict]) -> dict:
    """Dataset-level xtcocotools AP, AP(m) (None for -1) and CAP with the clean similarity."""
    stats = _xt_stats(*_xt_pair(gt, dets))
    cap = _xt_stats(*_xt_pair(gt, dets), cls=SimilarityEval, variant="clean")[0]
    return {"ap": stats[0], "ap_m": None if stats[3] < 0 else stats[3], "cap": cap}


def _pycoco_stats(gt: dict, dets: list[dict], *, ids_from_one: bool = True) -> np.ndarray:
    """pycocotools COCOeval stats; GT annotation ids renumbered from 1 unless told (id 0 breaks pycocotools)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = copy.deepcopy(gt)
    if ids_from_one:
        for k, a in enumerate(gt["annotations"]):
            a["id"] = k + 1
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(dets))
        ev = COCOeval(coco_gt, coco_dt, iouType="keypoints")
        ev.params.kpt_oks_sigmas = SIGMAS.copy()
        ev.params.maxDets = [20]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


def _humansd_reference(gt: dict, dets: list[dict], workdir: Path) -> dict:
    """The released pipeline, rebuilt from the notes (sections 1.3, 2.3, 2.4) on xtcocotools.

    Per batch of 10 images in `gt["images"]` order: batch-local image ids 0..B-1; per person slot `anno_i` of an
    image, joints with v (the conditioning score) <= 0.02 become (-1, -1, 0); the person is written when some
    x > 0, with num_keypoints = count of x > 0, bbox/area over all 17 points (placeholders included), iscrowd 0 and
    id idx*10 + anno_i; GT and detections go through JSON files into `COCO(path)` / `loadRes(path)`;
    `COCOeval(gt, dt, 'keypoints')` with xtcocotools' default σ and use_area; CAP through the same COCOeval with
    the `humansd` similarity; PCE over positions 0..len(imgToAnns)-1. Each metric is a plain mean over batches
    (AP(m): -1 batches left out, and included).
    """
    per_img: dict = defaultdict(list)
    for a in gt["annotations"]:
        per_img[a["image_id"]].append(a)
    ids = [im["id"] for im in gt["images"]]
    rows = []
    for b, start in enumerate(range(0, len(ids), 10)):
        batch = ids[start:start + 10]
        local = {img: idx for idx, img in enumerate(batch)}
        g: dict = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]}
        for idx, img in enumerate(batch):
            g["images"].append({"file_name": "None", "height": 512, "width": 512, "id": idx})
            for anno_i, a in enumerate(per_img[img]):
                kp = np.asarray(a["keypoints"], dtype=np.float64).reshape(17, 3)
                kp[kp[:, 2] <= 0.02] = (-1.0, -1.0, 0.0)
                keypoint_num = int((kp[:, 0] > 0).sum())
                if keypoint_num:
                    x, y = kp[:, 0], kp[:, 1]
                    g["annotations"].append({
                        "keypoints": kp.reshape(-1).tolist(), "num_keypoints": keypoint_num, "iscrowd": 0,
                        "image_id": idx, "category_id": 1, "id": idx * 10 + anno_i,
                        "bbox": [x.min(), y.min(), x.max() - x.min(), y.max() - y.min()],
                        "area": (y.max() - y.min()) * (x.max() - x.min())})
        d = [{"category_id": 1, "image_id": local[r["image_id"]], "keypoints": list(r["keypoints"]),
              "score": r["score"]} for r in dets if r["image_id"] in local]
        gt_path, dt_path = workdir / f"gt_{b}.json", workdir / f"dt_{b}.json"
        gt_path.write_text(json.dumps(g))
        dt_path.write_text(json.dumps(d))
        out = {}
        for cls, variant in ((XtCOCOeval, None), (SimilarityEval, "humansd")):
            with contextlib.redirect_stdout(io.StringIO()):
                gt_coco = XtCOCO(str(gt_path))
                dt_coco = gt_coco.loadRes(str(dt_path))
                ev = cls(gt_coco, dt_coco, "keypoints")
                if variant:
                    ev.variant = variant
                ev.params.useSegm = None
                ev.evaluate()
                ev.accumulate()
                ev.summarize()
            if cls is XtCOCOeval:
                out.update(ap=float(ev.stats[0]), ap_m=float(ev.stats[3]))
            else:
                out["cap"] = float(ev.stats[0])
        diff = [abs(len(gt_coco.imgToAnns[i]) - len(dt_coco.imgToAnns[i])) for i in range(len(gt_coco.imgToAnns))]
        out["pce"] = float(np.mean(diff)) if diff else None
        rows.append(out)
    _require(all(r["ap"] >= 0 and r["cap"] >= 0 for r in rows), "every batch needs GT")
    ap_m = [r["ap_m"] for r in rows]
    return {"ap": float(np.mean([r["ap"] for r in rows])), "cap": float(np.mean([r["cap"] for r in rows])),
            "ap_m": float(np.mean([v for v in ap_m if v >= 0])) if any(v >= 0 for v in ap_m) else None,
            "ap_m_incl_missing": float(np.mean(ap_m)),
            "pce": float(np.mean([r["pce"] for r in rows if r["pce"] is not None])), "batches": rows}


# ----------------------------------------------------------------------------------------------- tests
def test_sigmas_are_xtcocotools_defaults():
    # xtcocotools (and HumanSD, which passes no sigmas) computes np.array([.26, ...]) / 10.0; posebench's literals
    # differ from that in the last bit for 4 joints (at most 1.4e-17), far below anything the tests can see
    assert np.allclose(SIGMAS, XtCOCOeval().sigmas, rtol=1e-15, atol=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_matches_xtcocotools(seed):
    gt, dets = _world(seed, 17, vis_scores=False, crowd=True, zero_dets=False)
    res = evaluate_pose(gt, dets, profile="clean")
    ref = _xt_clean(gt, dets)
    assert ref["ap_m"] is not None and 0 < ref["ap"] < 1 and 0 < ref["ap_m"] < 1  # AP(m) defined, not degenerate
    assert res["ap"] == pytest.approx(ref["ap"], abs=TOL)
    assert res["ap_m"] == pytest.approx(ref["ap_m"], abs=TOL)
    assert res["cap"] == pytest.approx(ref["cap"], abs=TOL)
    assert res["max_dets"] == 20


def test_perfect_detections_give_one_on_xtcocotools():
    gt, _ = _world(5, 12, vis_scores=False, crowd=False, zero_dets=False)
    rng = np.random.default_rng(5)
    perfect = [_det(np.asarray(a["keypoints"]).reshape(17, 3)[:, :2], a["image_id"], rng)
               for a in gt["annotations"] if a["num_keypoints"] >= 2]  # CAP needs 2 joints; 0-1 joint GT ignored
    gt["annotations"] = [a for a in gt["annotations"] if a["num_keypoints"] >= 2]
    ref = _xt_clean(gt, perfect)
    assert ref["ap"] == pytest.approx(1.0, abs=TOL) and ref["ap_m"] == pytest.approx(1.0, abs=TOL)
    assert ref["cap"] == pytest.approx(1.0, abs=TOL)
    res = evaluate_pose(gt, perfect, profile="clean")
    assert res["ap"] == pytest.approx(1.0, abs=TOL) and res["cap"] == pytest.approx(1.0, abs=TOL)
    hs = evaluate_pose(gt, perfect, profile="humansd")
    assert hs["ap"] == pytest.approx(1.0, abs=TOL)


def test_clean_keeps_scoreless_detections_like_pycocotools_not_xtcocotools():
    """xtcocotools drops a detection with no joint score > 0 before matching (`cocoeval.py` `_prepare`,
    `k = np.count_nonzero(d[2::3] > 0)`; `if k == 0: continue`); pycocotools keeps it. `clean` follows
    pycocotools: its AP on such detections equals xtcocotools' only once they are removed."""
    gt, dets = _world(3, 17, vis_scores=False, crowd=True, zero_dets=True)
    kept = _drop_scoreless(dets)
    assert len(kept) < len(dets)
    res = evaluate_pose(gt, dets, profile="clean")
    pyco = _pycoco_stats(gt, dets)
    assert res["ap"] == pytest.approx(pyco[0], abs=TOL) and res["ap_m"] == pytest.approx(pyco[3], abs=TOL)
    assert res["n_dt"] == len(dets)
    xt = _xt_clean(gt, dets)
    assert abs(res["ap"] - xt["ap"]) > 1e-3  # the scoreless detections sit on GTs with top scores
    assert xt["ap"] == pytest.approx(evaluate_pose(gt, kept, profile="clean")["ap"], abs=TOL)


def test_gt_id_zero_follows_xtcocotools():
    """pycocotools uses 0 as "unmatched" in dtMatches (`tps = dtm`), so a match to a GT with annotation id 0 counts
    as a false positive; xtcocotools uses -1 (`dtm >= 0`, cocoapi PR 332). HumanSD's GT ids are idx*10 + i, so
    image 0's first person has id 0. posebench renumbers GT ids from 1 and gets xtcocotools' answer."""
    rng = np.random.default_rng(4)
    xy = _person(rng)
    kp = np.concatenate([xy, np.full((17, 1), 2.0)], axis=1)
    (x0, y0), (x1, y1) = xy.min(0), xy.max(0)
    gt = {"images": [{"id": 0}], "categories": [{"id": 1, "name": "person"}],
          "annotations": [{"id": 0, "image_id": 0, "category_id": 1, "iscrowd": 0, "num_keypoints": 17,
                           "keypoints": kp.reshape(-1).tolist(), "bbox": [x0, y0, x1 - x0, y1 - y0],
                           "area": float((x1 - x0) * (y1 - y0))}]}
    det = [_det(xy, 0, rng)]
    assert _xt_clean(gt, det)["ap"] == pytest.approx(1.0)
    assert _pycoco_stats(gt, det, ids_from_one=False)[0] == pytest.approx(0.0)
    assert _pycoco_stats(gt, det)[0] == pytest.approx(1.0)
    assert evaluate_pose(gt, det, profile="clean")["ap"] == pytest.approx(1.0)
    assert evaluate_pose(gt, det, profile="humansd")["ap"] == pytest.approx(1.0)


def test_clean_gt_ignore_uses_num_keypoints_like_pycocotools():
    """GT ignore rule: pycocotools `gt['num_keypoints'] == 0`; xtcocotools counts v > 0 in `keypoints`
    (`cocoeval.py` `_prepare`, `k = np.count_nonzero(g[2::3] > 0)`). They differ only when `num_keypoints` disagrees
    with the visibilities; `clean` takes a given `num_keypoints` (pycocotools), `humansd` recomputes it."""
    gt, dets = _world(6, 17, vis_scores=False, crowd=False, zero_dets=False)
    full = [a for a in gt["annotations"] if a["num_keypoints"] == 17]
    assert len(full) >= 3
    for a in full[:3]:
        a["num_keypoints"] = 0  # inconsistent: 17 visible joints
    res = evaluate_pose(gt, dets, profile="clean")
    assert res["ap"] == pytest.approx(_pycoco_stats(gt, dets)[0], abs=TOL)
    assert abs(res["ap"] - _xt_clean(gt, dets)["ap"]) > 1e-4
    consistent = copy.deepcopy(gt)
    for a in consistent["annotations"]:
        a["num_keypoints"] = int(sum(v > 0 for v in a["keypoints"][2::3]))
    assert _xt_clean(gt, dets)["ap"] == pytest.approx(evaluate_pose(consistent, dets)["ap"], abs=TOL)


@pytest.mark.parametrize("seed, n_images", [(10, 27), (11, 27), (12, 27), (35, 21), (39, 21)])
def test_humansd_matches_released_pipeline(seed, n_images, tmp_path):
    """Shuffled images -> batches of 10, 10, 7 (or 10, 10, 1, whose AP(m) is -1); detections include ones with all
    joint scores 0, which both drop (xtcocotools `_prepare`; posebench's `drop_zero_score_detections`) before
    matching."""
    gt, dets = _world(seed, n_images, vis_scores=True, crowd=False, zero_dets=True)
    res = evaluate_pose(gt, dets, profile="humansd")
    ref = _humansd_reference(gt, dets, tmp_path)
    assert res["n_dt"] == len(dets) > len(_drop_scoreless(dets))  # every detection; COCOeval sees fewer
    assert res["n_batches"] == len(ref["batches"]) == 3
    _require(n_images == 27 or any(b["ap_m"] < 0 for b in ref["batches"]), "a batch without medium GT")
    for mine, theirs in zip(res["batches"], ref["batches"], strict=True):
        assert mine["ap"] == pytest.approx(theirs["ap"], abs=TOL)
        assert mine["cap"] == pytest.approx(theirs["cap"], abs=TOL)
        if theirs["ap_m"] < 0:
            assert mine["ap_m"] is None
        else:
            assert mine["ap_m"] == pytest.approx(theirs["ap_m"], abs=TOL)
    assert ref["ap_m"] is not None and 0 < ref["ap"] < 1
    for name in ("ap", "ap_m", "ap_m_incl_missing", "cap"):
        assert res[name] == pytest.approx(ref[name], abs=TOL), name
    # the quirks are live in this data: the clean profile gives another AP
    clean = evaluate_pose(gt, dets, profile="clean")
    assert clean["ap"] != pytest.approx(res["ap"], abs=1e-6)


def test_humansd_visibility_threshold_matches_released_targets(tmp_path):
    """Conditioning scores in (0, 0.02] are missing joints in HumanSD's targets (quirk 10)."""
    gt, dets = _world(14, 27, vis_scores=True, crowd=False, zero_dets=True, low_scores=True)
    res = evaluate_pose(gt, dets, profile="humansd")
    ref = _humansd_reference(gt, dets, tmp_path)
    for name in ("ap", "ap_m", "ap_m_incl_missing", "cap"):
        assert res[name] == pytest.approx(ref[name], abs=TOL), name


@pytest.mark.parametrize("seed", [10, 13])
def test_humansd_pce_matches_released_pipeline(seed, tmp_path):
    gt, dets = _world(seed, 27, vis_scores=True, crowd=False, zero_dets=False)
    res = evaluate_pose(gt, dets, profile="humansd")
    ref = _humansd_reference(gt, dets, tmp_path)
    assert res["pce"] == pytest.approx(ref["pce"], abs=TOL)
    assert [b["pce"] for b in res["batches"]] == pytest.approx([b["pce"] for b in ref["batches"]], abs=TOL)


def test_humansd_negative_joint_scores_dropped_like_xtcocotools(tmp_path):
    gt, dets = _world(20, 27, vis_scores=True, crowd=False, zero_dets=False, negative_dets=True)
    _require(len(_drop_scoreless(dets)) < len(dets), "detections without a positive joint score")
    ref = _humansd_reference(gt, dets, tmp_path)
    assert evaluate_pose(gt, dets, profile="humansd")["ap"] == pytest.approx(ref["ap"], abs=TOL)


def test_humansd_pce_counts_scoreless_detections(tmp_path):
    gt, dets = _world(10, 27, vis_scores=True, crowd=False, zero_dets=True)
    _require(len(_drop_scoreless(dets)) < len(dets), "detections with all joint scores 0")
    ref = _humansd_reference(gt, dets, tmp_path)
    assert evaluate_pose(gt, dets, profile="humansd")["pce"] == pytest.approx(ref["pce"], abs=TOL)


def test_humansd_ignores_input_crowd_flag(tmp_path):
    gt, dets = _world(21, 27, vis_scores=True, crowd=True, zero_dets=False)
    _require(any(a["iscrowd"] for a in gt["annotations"]), "crowd annotations")
    ref = _humansd_reference(gt, dets, tmp_path)
    assert evaluate_pose(gt, dets, profile="humansd")["ap"] == pytest.approx(ref["ap"], abs=TOL)


def test_humansd_cross_image_score_ties_rank_by_batch_position(tmp_path):
    gt, dets = _world(12, 27, vis_scores=True, crowd=False, zero_dets=False, cross_image_ties=True)
    res = evaluate_pose(gt, dets, profile="humansd")
    ref = _humansd_reference(gt, dets, tmp_path)
    mine = [b[k] for b in res["batches"] for k in ("ap", "cap")]
    assert mine == pytest.approx([b[k] for b in ref["batches"] for k in ("ap", "cap")], abs=TOL)
