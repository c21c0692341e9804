"""Pose accuracy (AP, AP(m), CAP, PCE) of pose-estimator detections against target keypoints, as a
`torchmetrics.Metric` whose states are tensors (so detections and ground truth of several processes gather like
any other state); `compute` runs `posebench.metrics.pose.evaluate_pose` under the pose profile.

Ground truth per image: its position (the image order `aggregation: batches` profiles batch in), id, height and
width, and its annotations (keypoints, iscrowd, num_keypoints, optional bbox and area: NaN when absent, so
`evaluate_pose` derives them from the visible joints as the profile says).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

POSE_METRICS = ("ap", "ap_m", "cap", "pce")
_ANN = 8  # image_id, iscrowd, num_keypoints, area, bbox x, y, w, h; then 51 keypoint values


class PoseAccuracy(Metric):
    """AP, AP(m), CAP and PCE under a pose profile (`clean`, `humansd`, or a pose-profile YAML / PoseProfile).

    `update(detections, images, annotations, index=None)`: COCO keypoint results, COCO `images` entries
    ({id, height, width}) and `annotations` of those images. `summary(metric)` gives one metric's results entry.
    """

    full_state_update = False
    higher_is_better = None  # per metric: see posebench.metrics.registry

    def __init__(self, profile: Any = "clean", **kwargs: Any) -> None:
        from posebench.protocols.pose_profile import get_pose_profile

        super().__init__(**kwargs)
        self.profile = get_pose_profile(profile)
        for name in ("images", "annotations", "detections"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self.add_state("seen", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self._result: dict[str, Any] | None = None

    def update(self, detections: Sequence[dict], images: Sequence[dict], annotations: Sequence[dict], *,
               index: Sequence[int] | None = None) -> None:
        pos = np.arange(len(images)) + int(self.seen) if index is None else np.asarray(index)
        self.images.append(torch.tensor([[p, im["id"], im["height"], im["width"]] for p, im in zip(pos, images,
                                                                                                     strict=True)],
                                        dtype=torch.float64).reshape(-1, 4))
        rows = []
        for a in annotations:
            bbox = a.get("bbox") if isinstance(a.get("bbox"), (list, tuple)) and len(a["bbox"]) == 4 else None
            kp = np.asarray(a["keypoints"], dtype=np.float64).reshape(-1)
            rows.append([a["image_id"], a.get("iscrowd", 0), a.get("num_keypoints", int((kp[2::3] > 0).sum())),
                         a.get("area", math.nan), *(bbox or [math.nan] * 4), *kp])
        self.annotations.append(torch.tensor(rows, dtype=torch.float64).reshape(-1, _ANN + 51))
        self.detections.append(torch.tensor([[d["image_id"], d["score"], *d["keypoints"]] for d in detections],
                                            dtype=torch.float64).reshape(-1, 2 + 51))
        self.seen += len(images)

    def coco(self) -> tuple[dict, list[dict]]:
        """(ground truth, detections) as COCO structures, images in position order."""
        if isinstance(self.images, list) and not self.images:
            return {"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]}, []
        ims = dim_zero_cat(self.images).cpu().numpy()
        ims = ims[np.argsort(ims[:, 0], kind="stable")]
        anns = dim_zero_cat(self.annotations).cpu().numpy()
        dets = dim_zero_cat(self.detections).cpu().numpy()
        images = [{"id": int(r[1]), "height": int(r[2]), "width": int(r[3])} for r in ims]
        order = {im["id"]: i for i, im in enumerate(images)}
        annotations = []
        for r in sorted(anns, key=lambda r: order.get(int(r[0]), -1)):
            a = {"image_id": int(r[0]), "category_id": 1, "iscrowd": int(r[1]), "num_keypoints": int(r[2]),
                 "keypoints": [float(v) for v in r[_ANN:]]}
            if math.isfinite(r[3]) and np.isfinite(r[4:8]).all():
                a["area"], a["bbox"] = float(r[3]), [float(v) for v in r[4:8]]
            annotations.append(a)
        detections = [{"image_id": int(r[0]), "category_id": 1, "score": float(r[1]),
                       "keypoints": [float(v) for v in r[2:]]} for r in sorted(dets, key=lambda r: order.get(int(r[0]),
                                                                                                               -1))]
        return {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "person"}]}, detections

    def result(self, image_ids: set[int] | None = None) -> dict[str, Any]:
        """`evaluate_pose` on every image seen, or on the images `image_ids` (a per-scenario breakdown)."""
        from posebench.metrics.pose import evaluate_pose

        gt, dets = self.coco()
        if image_ids is not None:
            gt = {**gt, "images": [im for im in gt["images"] if im["id"] in image_ids],
                  "annotations": [a for a in gt["annotations"] if a["image_id"] in image_ids]}
            dets = [d for d in dets if d["image_id"] in image_ids]
        return evaluate_pose(gt, dets, profile=self.profile)

    def compute(self) -> dict[str, Any]:
        self._result = self.result()
        return {m: self._result[m] for m in POSE_METRICS}

    def summary(self, metric: str) -> dict[str, Any]:
        """The results entry of `metric` (ap, ap_m, cap or pce); NaN with `details.undefined` when undefined."""
        res = self._result if self._result is not None else self.result()
        self._result = res
        details: dict[str, Any] = {"profile": self.profile.name, "profile_version": self.profile.version,
                                   "profile_sha256": self.profile.sha256, "n_gt": res["n_gt"], "n_dt": res["n_dt"],
                                   "n_dt_pce": res["n_dt_pce"], "max_dets": res["max_dets"]}
        if "n_batches" in res:
            details.update(n_batches=res["n_batches"], ap_m_incl_missing=res["ap_m_incl_missing"])
        if res[metric] is None:
            details["undefined"] = "no ground truth in the medium area range"
        return {"value": math.nan if res[metric] is None else float(res[metric]), "stderr": None,
                "n": res["n_images"], "details": details}

    def per_image_pce(self) -> dict[int, dict[str, Any]]:
        """{image id: {n_gt, n_dt, error}} of the last result."""
        res = self._result if self._result is not None else self.result()
        self._result = res
        return {r["image_id"]: r for r in res["per_image_pce"]}
