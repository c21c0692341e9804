"""`eval --skip-missing-weights`: leave out the metrics whose weight files are not here, instead of failing, and
say which and how to fetch them (the demo's behaviour, for any evaluation)."""

from __future__ import annotations

from dataclasses import replace

from posebench.errors import PosebenchError
from posebench.run.config import EvalConfig

_PACKAGED_FID = "inception-fid-helper"


def without_missing_weights(cfg: EvalConfig) -> EvalConfig:
    """`cfg` with only the metrics whose weight files are cached (or installed with their package); the others are
    listed in `skipped` with the command that fetches their file. A file the user gave is never skipped."""
    from posebench import weights
    from posebench.run.evaluator import needed_weights, plan_for

    plan = plan_for(cfg)
    skipped: dict[str, str] = {}
    for need in needed_weights(plan.profile, plan.metrics, fid_weights=cfg.fid_weights,
                               lpips_weights=cfg.lpips_weights, is_weights=cfg.is_weights,
                               pose_estimator=cfg.pose_estimator, pose_weights=cfg.pose_weights,
                               detections=cfg.detections, clip_weights=cfg.clip_weights):
        name = need["registry"]
        if need["file"] is not None or name is None or weights.available(name):
            continue
        # the FID network a pip package ships works offline (non-canonical): say so where FID is skipped
        packaged = "fid" in need["for"] and name != _PACKAGED_FID and weights.available(_PACKAGED_FID)
        for metric in need["for"]:
            skipped[metric] = (f"weight file '{name}' is not in the cache ({weights.cache_path(name)}); fetch it "
                               f"with: posebench weights download {name}" +
                               (f", or use the packaged FID network: --fid-weights {_PACKAGED_FID} "
                                "(non-canonical)" if packaged else ""))
    kept = tuple(m for m in plan.metrics if m not in skipped)
    if not kept:
        raise PosebenchError("every metric asked for needs a weight file that is missing: "
                             + "; ".join(f"{m}: {why}" for m, why in skipped.items()))
    return replace(cfg, metrics=kept, skipped=skipped or None)
