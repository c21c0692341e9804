"""`posebench pose train`: fit `SyntheticPoseNet` to a dataset root whose keypoints are exact (synthetic people).

Images are letterboxed to the network's square input (as `posebench pose detect` does), the first person's
keypoints are converted to COCO-17 and rendered as Gaussian heatmaps (sigma 2 heatmap pixels) at 1/2 of the
input; the loss is the mean squared heatmap error. Batches are drawn from a generator seeded by (seed, step),
so a run is reproducible. The file written is safetensors with the architecture and provenance in its
metadata, written atomically.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from posebench.datasets.problems import ProblemLog
from posebench.errors import PosebenchError
from posebench.images import read_rgb
from posebench.pose.base import keypoint_heatmaps
from posebench.pose.detect import letterbox
from posebench.pose.synthetic import SyntheticPoseNet
from posebench.utils.io import atomic_open


@dataclass
class PoseSamples:
    """Letterboxed images (N, 3, S, S) in [0, 1] and their keypoints in input pixels (N, 17, 2) + visibility."""

    images: torch.Tensor
    xy: torch.Tensor
    visible: torch.Tensor
    stems: list[str]


def load_samples(root: Path, dataset: str, split: str, input_size: int, limit: int | None = None) -> PoseSamples:
    """Every image of `split` with keypoints (first person), letterboxed to `input_size`."""
    from posebench.datasets import manifest

    log = ProblemLog()
    index = manifest.load(dataset, root, log)
    log.raise_if_errors(f"{dataset} root {root}")
    if split not in index.splits:
        raise PosebenchError(f"{root} has no {split!r} split ({dataset}; found: {', '.join(sorted(index.splits))})")
    sp = index.splits[split]
    stems = sorted(s for s in sp.images if sp.keypoints.get(s))
    if limit is not None:
        stems = stems[:limit]
    if not stems:
        raise PosebenchError(f"split {split!r} of {root} has no images with keypoints to train on")
    images, xys, vis = [], [], []
    for stem in stems:
        img = read_rgb(sp.images[stem])
        boxed, box = letterbox(img, input_size)
        kp = sp.keypoints[stem][0].rescale(img.shape[:2]).convert("coco17")
        xy = box.to_input(np.nan_to_num(kp.xy, nan=0.0))
        images.append(torch.from_numpy(boxed).permute(2, 0, 1))
        xys.append(torch.from_numpy(xy.astype(np.float32)))
        vis.append(torch.from_numpy(kp.visible.copy()))
    return PoseSamples(torch.stack(images).float() / 255.0, torch.stack(xys), torch.stack(vis), stems)


def mean_joint_error(model: SyntheticPoseNet, samples: PoseSamples) -> float:
    """Mean distance (input pixels) between argmax joints and the true visible joints."""
    from posebench.pose.detect import letterbox_params

    s = samples.images.shape[-1]
    boxes = [letterbox_params(s, s, s)] * len(samples.stems)
    model.eval()
    errors = []
    with torch.no_grad():
        for lo in range(0, len(boxes), 32):
            joints = model.argmax_keypoints(samples.images[lo:lo + 32], boxes[lo:lo + 32])
            for i, found in enumerate(joints, start=lo):
                d = np.linalg.norm(found[:, :2] - samples.xy[i].numpy(), axis=1)
                errors.append(d[samples.visible[i].numpy()])
    return float(np.concatenate(errors).mean())


def train_pose(root: Path, dataset: str, out: Path, *, split: str = "train", steps: int = 600, batch_size: int = 16,
               lr: float = 2e-3, input_size: int = 128, width: int = 32, seed: int = 0, val_split: str | None = "auto",
               progress: bool = True) -> dict[str, Any]:
    """Train and save a SyntheticPoseNet; returns a summary with the joint error before and after.

    `val_split`: where the joint error is measured: "auto" is the dataset's held-out split (test; validation for
    Human-Art), None the training split itself; a split the root lacks is an error, not a silent fallback.

    Raises:
        PosebenchError: a root without the split, without keypoints, or bad arguments.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from safetensors.torch import save

    for option, value in (("--max-steps", steps), ("--batch-size", batch_size), ("lr", lr)):
        if value <= 0:
            raise PosebenchError(f"{option} must be positive, got {value}")
    if input_size < 32 or input_size % 16:
        raise PosebenchError(f"--input-size must be a multiple of 16 and at least 32, got {input_size}")
    samples = load_samples(Path(root), dataset, split, input_size)
    if val_split == "auto":
        val_split = "validation" if dataset == "humanart" else "test"
    val = load_samples(Path(root), dataset, val_split, input_size) if val_split is not None else None
    torch.manual_seed(seed)
    model = SyntheticPoseNet(input_size, width)
    before = mean_joint_error(model, val or samples)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    h = input_size // model.stride
    started = time.perf_counter()
    losses: list[float] = []
    columns = [TextColumn("pose train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[loss]}")]
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("train", total=steps, loss="")
        for step in range(steps):
            model.train()
            g = torch.Generator().manual_seed(seed * 1_000_003 + step)
            idx = torch.randint(0, len(samples.stems), (batch_size,), generator=g)
            target = keypoint_heatmaps(samples.xy[idx], samples.visible[idx], (h, h), model.stride)
            pred = model(samples.images[idx]).heatmaps
            # Joints away from the person dominate the pixels: weight the Gaussian support up.
            weight = 1.0 + 9.0 * target
            loss = (weight * (pred - target) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            bar.update(task, advance=1, loss=f"loss {losses[-1]:.5f}")
    after = mean_joint_error(model, val or samples)
    summary = {"estimator": "synthetic-posenet", "dataset": dataset, "root": str(root), "split": split,
               "images": len(samples.stems), "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed,
               "input_size": input_size, "width": width, "seconds": round(time.perf_counter() - started, 1),
               "joint_error_px": {"evaluated_on": val_split if val is not None else split, "untrained": before,
                                  "trained": after, "images": len((val or samples).stems)},
               "note": "synthetic-domain estimator: trained on posebench's synthetic people; not for real photos"}
    meta = {"config": json.dumps(model.config()), "provenance": json.dumps(summary)}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out, "wb") as fh:
        fh.write(save({k: v.contiguous() for k, v in model.state_dict().items()}, metadata=meta))
    return summary
