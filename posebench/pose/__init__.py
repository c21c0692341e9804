"""Pose estimators behind one differentiable interface.

`ESTIMATORS` maps names to builders. Every estimator takes images (B, 3, H, W) in [0, 1] and returns
joint heatmaps and backbone features with autograd intact, so the reference model's gradient guidance
can differentiate through it. The native HigherHRNet ports (issue #6) register here beside the tiny
randomly initialized network that tests and offline demos use.
"""

from __future__ import annotations

from posebench.pose.base import ESTIMATORS, PoseEstimator, PoseOutput, build_estimator, keypoint_heatmaps

__all__ = ["ESTIMATORS", "PoseEstimator", "PoseOutput", "build_estimator", "keypoint_heatmaps"]
