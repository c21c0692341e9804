"""What `posebench eval` takes, for every kind of target (one config; the CLI refuses options a kind ignores)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def default_workers(device: str = "cpu") -> int:
    """DataLoader workers decoding and resizing images: none on CPU (the networks' threads already use every core:
    on 2 cores one worker made a run 1.3x slower), else one per core beyond the main process, at most 8."""
    if str(device).startswith("cpu"):
        return 0
    return max(0, min(8, (os.cpu_count() or 1) - 1))


@dataclass
class EvalConfig:
    """Attributes:
        protocol: a protocol name (`posebench protocols ls`); None with `gt` (two plain folders).
        root: the dataset root (your copy); None with `gt`.
        pred: folder of generated images. out: results JSON to write (a per-image CSV goes beside it).
        profile: metric profile (the pose-metric profile for pose protocols); default: the protocol's (`clean`).
        metrics: what to compute; default: the protocol's metrics (folders: fid, kid, ssim, lpips, psnr).
        fid_weights, lpips_weights, is_weights: weight files instead of the profile's registry files.
        pose_estimator, pose_weights, flip_test: the estimator run on the generated images for pose metrics.
        detections: pose protocols: precomputed COCO keypoint results instead of an estimator.
        clip_weights: CLIPSIM: a folder with a CLIP model in the Hugging Face layout (config.json, model.safetensors
            or pytorch_model.bin, vocab.json, merges.txt) instead of the registry's files (non-canonical).
        gt, real: two plain folders: ground truth matched to `pred` by file name, and the FID real set (default
            `gt`), as clean-fid's `compute_fid(dir1, dir2)`; no dataset root, results non-canonical.
        scheme, name_map: generated-file naming scheme and a release's name map (PCDMs' imgN).
        allow_missing, allow_lossy: score a subset when images are missing; accept JPEG (both recorded).
        best_of, oracle_selection: declared generation-side choices (recorded; oracle selection is non-canonical).
        test_fid, real_limit: also FID/KID against the protocol's other real sets; cap the real set (development).
        batch_size, workers, device, use_cache, progress: images per batch, DataLoader decoding workers (default:
            0 on CPU, the cores with a GPU), torch device, reuse of cached real-set statistics, progress bars.
        skipped: metrics left out because their weight files are missing (`posebench.run.missing_weights`), with
            the reason and the command that fetches each file; recorded in the results' warnings.
    """

    protocol: str | None
    root: Path | None
    pred: Path
    out: Path
    profile: str | None = None
    metrics: tuple[str, ...] | None = None
    fid_weights: Path | None = None
    lpips_weights: Path | None = None
    is_weights: Path | None = None
    pose_estimator: str | None = None
    pose_weights: Path | None = None
    flip_test: bool = True
    detections: Path | None = None
    clip_weights: Path | None = None
    gt: Path | None = None
    real: Path | None = None
    scheme: str | None = None
    name_map: Path | None = None
    allow_missing: bool = False
    allow_lossy: bool = False
    best_of: int = 1
    oracle_selection: bool = False
    test_fid: bool = False
    real_limit: int | None = None
    batch_size: int = 16
    workers: int | None = None
    device: str = "cpu"
    use_cache: bool = True
    progress: bool = True
    skipped: dict[str, str] | None = None  # metric -> why it was left out (`--skip-missing-weights`)

    def __post_init__(self) -> None:
        for name in ("root", "pred", "out", "fid_weights", "lpips_weights", "is_weights", "pose_weights", "detections",
                     "clip_weights", "gt", "real", "name_map"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                setattr(self, name, Path(value))
        if self.metrics is not None and not isinstance(self.metrics, tuple):
            self.metrics = tuple(self.metrics)

    @property
    def kind(self) -> str:
        """`folders` (two plain folders), or the protocol's kind: `image` (pairs) or `pose` (Human-Art)."""
        if self.gt is not None:
            return "folders"
        from posebench.protocols import get_protocol

        return get_protocol(self.protocol or "").kind

    def resolved_workers(self) -> int:
        return default_workers(self.device) if self.workers is None else self.workers

    def to_json(self) -> dict[str, Any]:
        """The config as JSON-ready values."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}
