"""HumanSD pose metrics (posebench.metrics.pose): AP/AP(m) against pycocotools, CAP, PCE, the humansd quirks,
input validation and the `eval-pose` CLI. Tiny synthetic COCO data only."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from posebench.cli import app
from posebench.datasets.keypoints import COCO17_SIGMAS
from posebench.errors import PosebenchError
from posebench.metrics.pose import evaluate_pose, weighted_pose_cosine

# unit-box person layout (x in [0.15, 0.85], y in [0.03, 1]) in COCO-17 order
_TEMPLATE = np.array([
    (0.50, 0.05), (0.45, 0.03), (0.55, 0.03), (0.40, 0.06), (0.60, 0.06), (0.30, 0.20), (0.70, 0.20),
    (0.20, 0.40), (0.80, 0.40), (0.15, 0.55), (0.85, 0.55), (0.38, 0.55), (0.62, 0.55), (0.37, 0.78),
    (0.63, 0.78), (0.36, 1.00), (0.64, 1.00),
])


def _pose(x0: float, y0: float, h: float) -> np.ndarray:
    return np.stack([x0 + _TEMPLATE[:, 0] * h / 2, y0 + _TEMPLATE[:, 1] * h], axis=1)


def _ann(xy: np.ndarray, image_id: int, vis: np.ndarray | None = None) -> dict:
    v = np.full(17, 2.0) if vis is None else vis
    kp = np.concatenate([xy, v[:, None]], axis=1)
    kp[v == 0] = 0.0
    seen = xy[v > 0]
    x0, y0 = seen.min(0)
    w, h = seen.max(0) - seen.min(0)
    return {"image_id": image_id, "category_id": 1, "iscrowd": 0, "keypoints": kp.reshape(-1).tolist(),
            "num_keypoints": int((v > 0).sum()), "bbox": [x0, y0, w, h], "area": float(w * h)}


def _det(xy: np.ndarray, image_id: int, score: float = 0.9) -> dict:
    kp = np.concatenate([xy, np.full((17, 1), 0.8)], axis=1)
    return {"image_id": image_id, "category_id": 1, "keypoints": kp.reshape(-1).tolist(), "score": score}


def _gt(people: dict[int, list[np.ndarray]], n_images: int | None = None) -> dict:
    n = n_images if n_images is not None else max(people) + 1
    anns = [_ann(p, i) for i, ps in people.items() for p in ps]
    for k, a in enumerate(anns):
        a["id"] = k + 1
    return {"images": [{"id": i, "width": 512, "height": 512} for i in range(n)], "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": [], "skeleton": []}]}


# large (area 14000), medium (3500, 2240) and small (560) people over four images
PEOPLE = {0: [_pose(10, 10, 200), _pose(300, 50, 100)], 1: [_pose(50, 60, 80)], 2: [_pose(200, 200, 40),
                                                                                    _pose(20, 20, 200)],
          3: [_pose(100, 100, 100)]}


def _perfect() -> list[dict]:
    return [_det(p, i, 0.5 + 0.1 * k) for i, ps in PEOPLE.items() for k, p in enumerate(ps)]


def _noisy() -> list[dict]:
    rng = np.random.default_rng(0)
    dets = []
    for i, ps in PEOPLE.items():
        for k, p in enumerate(ps):
            dets.append(_det(p + rng.normal(0, 2.0 + 3 * k, p.shape), i, float(rng.uniform(0.3, 1))))
    dets.append(_det(_pose(400, 300, 90), 1, 0.95))  # false positive
    dets.append(_det(_pose(60, 60, 70) + rng.normal(0, 6, (17, 2)), 3, 0.2))
    return dets


def _pycocotools_stats(gt: dict, dets: list[dict]) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(dets))
        ev = COCOeval(coco_gt, coco_dt, iouType="keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


@pytest.mark.parametrize("dets", [_perfect(), _noisy()], ids=["perfect", "noisy"])
def test_ap_matches_pycocotools(dets):
    gt = _gt(PEOPLE)
    stats = _pycocotools_stats(gt, dets)
    res = evaluate_pose(gt, dets)
    assert res["ap"] == pytest.approx(stats[0], abs=1e-12)
    assert res["ap_m"] == pytest.approx(stats[3], abs=1e-12)
    assert res["n_images"] == 4 and res["n_gt"] == 6 and res["n_dt"] == len(dets)


def test_perfect_detections_known_answers():
    res = evaluate_pose(_gt(PEOPLE), _perfect())
    assert res["ap"] == pytest.approx(1.0) and res["ap_m"] == pytest.approx(1.0)
    assert res["cap"] == pytest.approx(1.0) and res["pce"] == 0.0
    noisy = evaluate_pose(_gt(PEOPLE), _noisy())
    assert 0 < noisy["ap"] < 1 and noisy["pce"] == pytest.approx(0.5)  # images 1 and 3 have one extra each


def test_missing_person_gives_pce_one_for_that_image():
    dets = [d for d in _perfect() if not (d["image_id"] == 0 and d["score"] > 0.55)]
    res = evaluate_pose(_gt(PEOPLE), dets)
    errors = {r["image_id"]: r["error"] for r in res["per_image_pce"]}
    assert errors == {0: 1, 1: 0, 2: 0, 3: 0} and res["pce"] == pytest.approx(0.25)
    assert res["ap"] < 1.0


def test_empty_detections_are_misses():
    res = evaluate_pose(_gt(PEOPLE), [])
    assert res["ap"] == 0.0 and res["ap_m"] == 0.0 and res["cap"] == 0.0
    assert res["pce"] == pytest.approx(6 / 4)
    # an image with GT and no detection is a miss, not a crash
    res = evaluate_pose(_gt(PEOPLE), [d for d in _perfect() if d["image_id"] != 1])
    assert 0 < res["ap"] < 1 and res["ap_m"] < 1


def test_scaled_shifted_pose_keeps_clean_cap_but_not_oks_ap():
    gt = _gt({0: [_pose(100, 100, 100)]})
    xy = _pose(100, 100, 100) * 1.3 + np.array([25.0, 12.0])
    res = evaluate_pose(gt, [_det(xy, 0)])
    assert res["cap"] == pytest.approx(1.0)
    assert res["ap"] < 0.5
    # the shift is divided by σ_k before the min-max, so it is not exactly invariant: above the top threshold only
    vis, s, ref = np.full(17, 2.0), np.asarray(COCO17_SIGMAS), _pose(100, 100, 100)
    assert 0.95 < weighted_pose_cosine(ref, xy, vis, s) < 1.0
    assert weighted_pose_cosine(ref, ref * 1.3, vis, s) == pytest.approx(1.0)  # pure scaling: exactly invariant


def test_humansd_cosine_bug_hand_computed():
    sig = np.ones(17)
    vis = np.zeros(17)
    vis[:3] = 1
    gt = np.zeros((17, 2))
    dt = np.zeros((17, 2))
    gt[:3] = [(0, 0), (1, 2), (2, 1)]
    dt[:3] = [(0, 0), (1, 0), (2, 4)]
    # x̂_g = x̂_d = (0, 1, 2)/√5, ŷ_g = (0, 2, 1)/√5, ỹ_d = (0, 0, 1) with norm 1:
    # released: (1 + ŷ_g·x̂_d / 1) / (√2 √(1 + 1)) = (1 + 4/5) / 2 = 0.9; clean: (1 + ŷ_g·ŷ_d) / 2 = (1 + 1/√5) / 2
    assert weighted_pose_cosine(gt, dt, vis, sig, variant="humansd") == pytest.approx(0.9)
    assert weighted_pose_cosine(gt, dt, vis, sig, variant="clean") == pytest.approx((1 + 1 / math.sqrt(5)) / 2)
    # the notes' closed form with ‖ỹ_d‖ ≠ 1, on COCO σ
    rng = np.random.default_rng(3)
    gt, dt = rng.uniform(0, 200, (17, 2)), rng.uniform(0, 200, (17, 2))
    vis = (rng.uniform(size=17) > 0.3).astype(float)
    s = np.asarray(COCO17_SIGMAS)
    v = vis > 0

    def mm(a):
        return (a - a.min()) / (a.max() - a.min())

    g, d = gt[v] / s[v, None], dt[v] / s[v, None]
    xg, yg, xd = (mm(a) / np.linalg.norm(mm(a)) for a in (g[:, 0], g[:, 1], d[:, 0]))
    n = np.linalg.norm(mm(d[:, 1]))
    expected = (xg @ xd + yg @ xd / n) / (math.sqrt(2) * math.sqrt(1 + 1 / n**2))
    assert weighted_pose_cosine(gt, dt, vis, s, variant="humansd") == pytest.approx(expected, rel=1e-12)


def test_humansd_nan_similarity_is_accepted_as_match():
    one = np.zeros(17)
    one[0] = 2
    xy = _pose(100, 100, 100)
    assert math.isnan(weighted_pose_cosine(xy, xy, one, variant="humansd"))
    assert weighted_pose_cosine(xy, xy, one, variant="clean") == 0.0
    ann = _ann(xy, 0, one)
    ann["area"], ann["id"] = 5000.0, 1
    gt = {"images": [{"id": 0}], "annotations": [ann], "categories": [{"id": 1, "name": "person"}]}
    far = [_det(_pose(300, 300, 100), 0)]
    assert evaluate_pose(gt, far, profile="clean")["cap"] == 0.0
    assert evaluate_pose(gt, far, profile="humansd")["cap"] == pytest.approx(1.0)  # NaN < thr is False


def test_humansd_batches_and_pce_index_quirk():
    # image 0: no GT, two detections; image 1: one GT, one detection; image 2: two GT, no detection
    gt = _gt({1: [_pose(50, 50, 150)], 2: [_pose(10, 10, 150), _pose(200, 200, 150)]}, n_images=3)
    dets = [_det(_pose(300, 300, 100), 0), _det(_pose(10, 300, 100), 0), _det(_pose(50, 50, 150), 1)]
    clean = evaluate_pose(gt, dets, profile="clean")
    assert clean["pce"] == pytest.approx(4 / 3)
    hs = evaluate_pose(gt, dets, profile="humansd")
    # n = 2 images with GT -> positions 0 and 1 only: (|0 - 2| + |1 - 1|) / 2, image 2 skipped
    assert hs["pce"] == pytest.approx(1.0) and [r["image_id"] for r in hs["per_image_pce"]] == [0, 1]
    # 14 images -> two batches, metrics averaged over batches; AP(m) -1 batches excluded or counted as -1
    people = {i: [_pose(20 + i, 30, 200)] for i in range(14)}
    people[12] = [_pose(40, 40, 100)]  # medium only in batch 1
    many = _gt(people)
    dets = [_det(p, i) for i, ps in people.items() for p in ps if i != 3]
    hs = evaluate_pose(many, dets, profile="humansd")
    assert hs["n_batches"] == 2 and [len(b["image_ids"]) for b in hs["batches"]] == [10, 4]
    b0, b1 = hs["batches"]
    assert b0["ap_m"] is None and b1["ap_m"] == pytest.approx(1.0)
    assert hs["ap_m"] == pytest.approx(1.0) and hs["ap_m_incl_missing"] == pytest.approx(0.0)
    assert hs["ap"] == pytest.approx((b0["ap"] + b1["ap"]) / 2) and b0["pce"] == pytest.approx(0.1)


def test_humansd_gt_area_from_placeholders():
    xy = _pose(200, 200, 100)
    vis = np.full(17, 2.0)
    vis[:5] = 0  # head missing -> (-1, -1) placeholders inflate the box to the image corner
    ann = _ann(xy, 0, vis)
    ann["id"] = 1
    gt = {"images": [{"id": 0}], "annotations": [ann], "categories": [{"id": 1, "name": "person"}]}
    det = _det(xy + 4.0, 0)
    clean, hs = evaluate_pose(gt, [det], profile="clean"), evaluate_pose(gt, [det], profile="humansd")
    assert hs["ap"] >= clean["ap"] and hs["ap_m"] is None and clean["ap_m"] is not None


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(image_id=99), "99"),
    (lambda d: d.update(keypoints=d["keypoints"][:50]), "51"),
    (lambda d: d["keypoints"].__setitem__(4, float("nan")), "finite"),
    (lambda d: d.update(score=float("nan")), "score"),
    (lambda d: d.pop("keypoints"), "keypoints"),
])
def test_bad_detections_raise(mutate, message):
    dets = _perfect()
    mutate(dets[2])
    with pytest.raises(PosebenchError, match=message):
        evaluate_pose(_gt(PEOPLE), dets)


def test_bad_profile_and_gt_raise():
    with pytest.raises(PosebenchError, match="profile"):
        evaluate_pose(_gt(PEOPLE), _perfect(), profile="legacy")  # type: ignore[arg-type]
    with pytest.raises(PosebenchError, match="images"):
        evaluate_pose({"annotations": []}, [])


runner = CliRunner()


def test_cli_exit_codes(tmp_path):
    gt_path, dt_path, out = tmp_path / "gt.json", tmp_path / "dt.json", tmp_path / "res" / "pose.json"
    gt_path.write_text(json.dumps(_gt(PEOPLE)))
    dt_path.write_text(json.dumps(_noisy()))
    res = runner.invoke(app, ["eval-pose", str(gt_path), str(dt_path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "AP" in res.output and json.loads(out.read_text())["n_gt"] == 6
    res = runner.invoke(app, ["eval-pose", str(gt_path), str(dt_path), "--profile", "humansd"])
    assert res.exit_code == 0, res.output
    bad = tmp_path / "bad.json"
    bad.write_text("[{oops")
    res = runner.invoke(app, ["eval-pose", str(gt_path), str(bad)])
    assert res.exit_code == 2 and "not valid JSON" in res.output
    bad.write_text(json.dumps([_det(_pose(0, 0, 100), 7)]))
    res = runner.invoke(app, ["eval-pose", str(gt_path), str(bad)])
    assert res.exit_code == 2 and "7" in res.output and str(bad) in res.output  # the file is named
    bad.write_text(json.dumps(["not a detection"]))
    res = runner.invoke(app, ["eval-pose", str(gt_path), str(bad)])
    assert res.exit_code == 2 and "detections[0] is not an object" in res.output and str(bad) in res.output


def test_oks_nms_keeps_the_best_of_duplicates():
    from posebench.metrics.pose import oks_nms

    a, far = _pose(100, 100, 100), _pose(300, 300, 100)
    kp = np.stack([a + 0.5, a, far])
    assert oks_nms(kp, np.array([0.8, 0.9, 0.7]), 0.9) == [1, 2]  # by score: the duplicate at 0.8 goes
    assert oks_nms(kp, np.array([0.8, 0.9, 0.7]), 1.0) == [1, 0, 2]  # OKS <= 1 always: nothing suppressed
    assert oks_nms(np.zeros((0, 17, 3)), np.zeros(0), 0.9) == []


def test_pce_filter_is_a_profile_setting():
    """Quirk 7: clean counts a duplicated detection once and ignores a low-score one; humansd counts every
    detection. AP uses every detection in both."""
    gt = _gt({0: [_pose(100, 100, 100)]})
    dup = [_det(_pose(100, 100, 100), 0, 0.9), _det(_pose(100, 100, 100) + 0.5, 0, 0.8)]
    clean, hs = evaluate_pose(gt, dup, profile="clean"), evaluate_pose(gt, dup, profile="humansd")
    assert clean["pce"] == 0.0 and clean["n_dt_pce"] == 1 and clean["n_dt"] == 2
    assert hs["pce"] == 1.0 and hs["n_dt_pce"] == 2
    assert clean["ap"] == pytest.approx(1.0) and clean["per_image_pce"][0]["n_dt"] == 1
    low = [_det(_pose(100, 100, 100), 0, 0.9), _det(_pose(300, 300, 100), 0, 0.05)]
    assert evaluate_pose(gt, low, profile="clean")["pce"] == 0.0
    assert evaluate_pose(gt, low, profile="humansd")["pce"] == 1.0
