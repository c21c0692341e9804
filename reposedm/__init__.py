"""reposedm: the RePoseDM reference model (arXiv 2310.16074), built on diffusers and accelerate.

It depends on posebench (split manifests, keypoints, pose estimators); posebench never imports it.
Heavy names (torch, diffusers) load on first use, so `import reposedm` stays cheap; diffusers'
`from_pretrained` finds `RePoseDMModel` and `RePoseDMPipeline` here by name.
"""

from __future__ import annotations

import importlib
from typing import Any

from posebench._version import __version__

_LAZY = {
    "RePoseDMModel": "reposedm.models.network",
    "RePoseDMPipeline": "reposedm.pipeline",
    "RePoseDMOutput": "reposedm.pipeline",
    "ConditionEncoder": "reposedm.models.network",
    "PoseEstimatorComponent": "reposedm.models.pose_estimator",
    "export_pipeline": "reposedm.checkpoints",
    "write_run_pipeline": "reposedm.checkpoints",
    "RunConfig": "reposedm.config",
    "load_config": "reposedm.config",
    "load_pipeline": "reposedm.checkpoints",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'reposedm' has no attribute {name!r}")
