"""Pose metrics inside the streaming pass: the estimator runs on each batch's decoded generated images (or
precomputed detections are looked up), the targets adapter gives each image's ground truth in the generated
image's pixels, and both go to the metric classes (`PoseAccuracy` for AP, AP(m), CAP, PCE; `PCKh`)."""

from __future__ import annotations

from typing import Any

from posebench.metrics.registry import higher_is_better
from posebench.run.config import EvalConfig
from posebench.run.plan import Item, Plan

ACCURACY = ("ap", "ap_m", "cap", "pce")


class PoseScoring:
    """Image ids are the Human-Art ids (pose kind) or the image's position in the scoring order plus 1 (pairs), so
    detections and ground truth of several processes merge into what one process computes."""

    def __init__(self, plan: Plan, cfg: EvalConfig, estimator_name: str) -> None:
        from posebench.metrics.pckh import PCKh
        from posebench.metrics.pose_accuracy import PoseAccuracy
        from posebench.protocols.pose_profile import get_pose_profile

        self.plan, self.cfg, self.name = plan, cfg, estimator_name
        self.profile = plan.pose_profile or get_pose_profile("clean")
        self.accuracy = [m for m in ACCURACY if m in plan.metrics]
        self.metric = PoseAccuracy(self.profile, sync_on_compute=False) if self.accuracy else None
        self.pckh = PCKh(plan.profile.section("pckh").alpha, sync_on_compute=False) if "pckh" in plan.metrics \
            else None
        self.rescaled = 0
        self.model = None
        if plan.detections is None:
            from posebench.pose.detect import load_estimator, set_refine_fill

            self.model = load_estimator(estimator_name, weights=cfg.pose_weights, device=cfg.device)
            set_refine_fill(self.model, self.profile.refine_fill)  # quirk 4
        self._env: dict[str, Any] | None = None

    def metrics(self) -> list[Any]:
        return [m for m in (self.metric, self.pckh) if m is not None]

    def update(self, preds: list[Any], items: list[Item], positions: list[int]) -> None:
        ids = [item.image_id if item.image_id is not None else p + 1 for item, p in zip(items, positions, strict=True)]
        if self.model is not None:
            from posebench.pose.detect import detect_arrays

            dets = detect_arrays(self.model, preds, ids, device=self.cfg.device, flip_test=self.cfg.flip_test,
                                 swap_rb=self.profile.swap_rb)  # quirk 1
        else:
            dets = [d for i in ids for d in self.plan.detections.get(i, [])]
        if self.pckh is not None:
            targets = [item.keypoints.rescale(img.shape[:2]) for img, item in zip(preds, items, strict=True)]
            self.pckh.update([[d for d in dets if d["image_id"] == i] for i in ids], targets, index=positions)
        if self.metric is None:
            return
        images, anns = [], []
        for img, item, image_id in zip(preds, items, ids, strict=True):
            image, annotations, rescaled = self.plan.pose_ground_truth(item, img.shape[:2])
            self.rescaled += int(rescaled)
            images.append({**image, "id": image_id})
            anns.extend({**a, "image_id": image_id} for a in annotations)
        self.metric.update(dets, images, anns, index=positions)

    def env(self) -> dict[str, Any]:
        """Estimator name, weights file and sha256 (hashed once), flip test, and how the profile fed it; or the
        precomputed detections file and its sha256."""
        if self._env is None:
            if self.plan.detections is not None:
                from posebench.utils.io import sha256_file

                self._env = {"name": None, "detections_file": str(self.cfg.detections),
                             "detections_sha256": sha256_file(self.cfg.detections)}
            else:
                from posebench.pose.detect import estimator_env

                self._env = estimator_env(self.name, self.cfg.pose_weights, self.cfg.flip_test)
                if self.plan.pose_profile is not None:
                    self._env.update(input=self.profile.estimator_input, refine_fill=self.profile.refine_fill)
        return self._env

    def results(self) -> dict[str, Any]:
        """The requested pose metrics' results entries."""
        out: dict[str, Any] = {}
        entries = {m: self.metric.summary(m) for m in self.accuracy}
        if self.pckh is not None:
            entries["pckh"] = self.pckh.summary()
        estimator = {k: v for k, v in self.env().items() if k in ("name", "weights_sha256")}
        for m, entry in entries.items():
            if self.plan.kind == "image":  # the estimator is part of what an image protocol's number means
                entry["details"]["estimator"] = estimator
            out[m] = {"value": entry["value"], "stderr": None, "higher_is_better": higher_is_better(m),
                      "n": entry["n"], "details": entry["details"]}
        return out

    def columns(self, items: list[Item], positions: list[int]) -> dict[str, list[Any]]:
        """Per-image columns in scoring order: PCE (pairs: `pce`; pose kind: `n_gt`, `n_dt`, `pce_error`) and
        PCKh."""
        cols: dict[str, list[Any]] = {}
        if self.metric is not None:
            by_id = self.metric.per_image_pce()
            ids = [item.image_id if item.image_id is not None else p + 1 for item, p in zip(items, positions,
                                                                                             strict=True)]
            rows = [by_id.get(i, {}) for i in ids]
            if self.plan.kind == "pose":
                cols.update(n_gt=[r.get("n_gt", "") for r in rows], n_dt=[r.get("n_dt", "") for r in rows],
                            pce_error=[r.get("error", "") for r in rows])
            else:
                cols["pce"] = [float(r["error"]) for r in rows]
        if self.pckh is not None:
            cols["pckh"] = self.pckh.per_image()[1].tolist()
        return cols
