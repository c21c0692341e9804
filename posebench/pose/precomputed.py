"""Precomputed keypoints: a COCO keypoint results file (from `posebench pose detect` or any other detector) used as
a keypoint source instead of running an estimator.

Validation is the one `posebench eval-pose` applies (`posebench.metrics.pose`): 17 x [x, y, score] finite numbers
and a finite `score` per entry; here every error also names the file and the entry index, and `image_id` must be
an integer (a known one when a ground truth is given).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from posebench.errors import PosebenchError


def _gt_ids(gt: dict | str | Path) -> set[int]:
    from posebench.metrics.pose import load_json, validate_ground_truth

    data = load_json(gt, "ground-truth") if isinstance(gt, (str, Path)) else gt
    try:
        return {im["id"] for im in validate_ground_truth(data, "clean")["images"]}
    except PosebenchError as exc:
        where = f"{gt}: " if isinstance(gt, (str, Path)) else ""
        raise PosebenchError(f"{where}{exc}") from exc


def load_detections(path: str | Path, gt: dict | str | Path | None = None) -> dict[int, list[dict]]:
    """Read and validate a COCO keypoint results file; detections grouped by image id.

    Args:
        path: a JSON list of {image_id, keypoints (51 numbers), score[, category_id]}, or a dict with such an
            `annotations` list (as `posebench eval-pose` accepts). An empty list is allowed.
        gt: a COCO ground truth (dict or file); when given, every `image_id` must be one of its images.

    Returns:
        {image_id: [detection, ...]} in file order, keypoints and score as floats, `category_id` defaulting to 1.

    Raises:
        PosebenchError: unreadable or malformed JSON, a malformed entry, an unknown image id; the message names the
            file and the entry index.
    """
    from posebench.metrics.pose import load_json, validate_detections

    path = Path(path)
    data: Any = load_json(path, "detections")
    if isinstance(data, dict):
        if not isinstance(data.get("annotations"), list):
            raise PosebenchError(f"{path}: must hold a list of COCO keypoint results (or a dict with an "
                                 "'annotations' list)")
        data = data["annotations"]
    if not isinstance(data, list):
        raise PosebenchError(f"{path}: must hold a list of COCO keypoint results, got {type(data).__name__}")
    known = _gt_ids(gt) if gt is not None else None
    for k, d in enumerate(data):
        if not isinstance(d, dict):
            raise PosebenchError(f"{path}: detections[{k}] is not an object")
        iid = d.get("image_id")
        if isinstance(iid, bool) or not isinstance(iid, int):
            raise PosebenchError(f"{path}: detections[{k}]: 'image_id' must be an integer, got {iid!r}")
        if known is not None and iid not in known:
            raise PosebenchError(f"{path}: detections[{k}] refers to image id {iid} which is not in the ground "
                                 "truth")
    ids = sorted({d["image_id"] for d in data})
    shim = {"images": [{"id": i} for i in ids], "categories": [{"id": 1}]}
    try:
        valid = validate_detections(data, shim, "clean")
    except PosebenchError as exc:
        raise PosebenchError(f"{path}: {exc}") from exc
    out: dict[int, list[dict]] = {}
    for d in valid:
        out.setdefault(d["image_id"], []).append(d)
    return out
