"""What a targets adapter hands the evaluator: the images to score, in order, and everything the results need.

A targets adapter (one module per kind: `pairs`, `humanart`, `folders`) reads the dataset, matches the generated
files, checks what must hold before any compute, and returns a `Plan`; the evaluator (`posebench.run.evaluator`)
then runs one streaming pass over `Plan.items` whatever the kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posebench.errors import PosebenchError
from posebench.images import LOSSY_SUFFIXES
from posebench.protocols import Profile


@dataclass
class Item:
    """One generated image to score.

    Attributes:
        pred: the generated file. gt: its ground-truth image (pairs, folders), None for pose targets.
        ids: the per-image CSV's identity columns ({"source", "target"}, {"name"}, {"key", "scenario", ...}).
        keypoints: the target's first person (OpenPose-18, dataset frame): masks, pose metrics and PCKh of pairs.
        group: the breakdown group (Human-Art scenario). image_id: the pose ground truth's image id.
        crop: where the generated image lies in the file when the file holds more (PATN's 5-panel strips).
        prompt: the text the image was generated from (Human-Art: the validation image's description), for the
            text metrics (CLIPSIM); None where a protocol has no captions.
    """

    pred: Path
    gt: Path | None = None
    ids: dict[str, Any] = field(default_factory=dict)
    keypoints: Any = None
    group: str | None = None
    image_id: int | None = None
    crop: tuple[int, int, int, int] | None = None  # (left, top, right, bottom) of the generated image in the file
    prompt: str | None = None


@dataclass
class Plan:
    """Attributes:
        kind: `image`, `pose` or `folders`. protocol: the Protocol (None for folders).
        profile: the image-metric profile. pose_profile: the pose-metric profile (pose kind), else None.
        metrics: the metrics to compute, in order. items: what to score, in scoring order.
        resolution: what `size: protocol` means (None: the ground truth's own size).
        real_sets: FID real sets, name -> files; the first is the headline real set. per_group_real: FID/KID per
            breakdown group against the real files of that group (`group_real`), mean over groups (Human-Art).
        dataset, predictions: the results' `dataset` and `predictions` blocks (the evaluator adds counts).
        id_columns: the per-image CSV's identity columns.
        pose_ground_truth: (item, generated (H, W)) -> (COCO image entry, annotations, rescaled?) for pose metrics.
        detections: precomputed COCO results by image id (pose kind with --detections), else None.
        warnings, flags, non_canonical: for the results.
    """

    kind: str
    protocol: Any
    profile: Profile
    metrics: tuple[str, ...]
    items: list[Item]
    resolution: tuple[int, int] | None
    real_sets: dict[str, list[Path]]
    dataset: dict[str, Any]
    predictions: dict[str, Any]
    id_columns: tuple[str, ...]
    pose_profile: Any = None
    per_group_real: bool = False
    group_real: dict[str, list[Path]] = field(default_factory=dict)
    pose_ground_truth: Callable[[Item, tuple[int, int]], tuple[dict, list[dict], bool]] | None = None
    detections: dict[int, list[dict]] | None = None
    masked: tuple[str, ...] = ()
    warnings: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    non_canonical: list[str] = field(default_factory=list)

    @property
    def has_ground_truth_images(self) -> bool:
        return any(item.gt is not None for item in self.items)


def check_lossy(plan: Plan, files: list[Path], allow_lossy: bool) -> None:
    """JPEG generated images are refused (they change the pixels metrics see) unless allowed; then flagged."""
    lossy = [f for f in files if f.suffix.lower() in LOSSY_SUFFIXES]
    if lossy and not allow_lossy:
        raise PosebenchError(f"{len(lossy)} generated images are lossy ({lossy[0].name}, ...): JPEG changes the "
                             "pixels metrics see. Save PNG, or pass --allow-lossy (recorded in the results)")
    if lossy:
        plan.flags.append("lossy_inputs")


def declare(plan: Plan, best_of: int, oracle_selection: bool) -> None:
    """Record generation-side choices; selection with the ground truth makes results non-canonical."""
    if best_of > 1:
        plan.flags.append(f"best_of_{best_of}")
    if oracle_selection:
        plan.flags.append("oracle_selection")
        plan.non_canonical.append("samples were selected with the ground truth (oracle selection)")


def generator_reasons(pred: Path) -> list[str]:
    """Non-canonical reasons the generator recorded beside its images (`posebench sample` writes PRED/sampling.json;
    e.g. a RePoseDM run trained with a random pose estimator): its results inherit them."""
    import json

    record = pred / "sampling.json"
    try:
        reasons = json.loads(record.read_text(encoding="utf-8")).get("non_canonical_reasons") or []
    except (OSError, ValueError, AttributeError):
        return []
    return [f"the generator's own record ({record}): {r}" for r in reasons if isinstance(r, str)]


def finish(plan: Plan, pred: Path | None = None) -> Plan:
    if pred is not None:
        plan.non_canonical.extend(generator_reasons(Path(pred)))
    for reason in plan.non_canonical:
        plan.warnings.append(f"non-canonical: {reason}; not comparable with leaderboard rows")
    return plan


def raise_problems(problems: list[str], what: str) -> None:
    """Every matching problem at once (the first 30), as one error."""
    if problems:
        head = "\n  ".join(problems[:30])
        more = f"\n  ... and {len(problems) - 30} more" if len(problems) > 30 else ""
        raise PosebenchError(f"cannot match generated images to {what}:\n  {head}{more}")


def check_metrics(wanted: tuple[str, ...], profile: Profile, allowed: tuple[str, ...] | None = None,
                  where: str = "", prompts: bool = False) -> tuple[str, ...]:
    """Known metrics, allowed for the target kind, each with its section in the profile; text metrics only where
    the targets have prompts (`prompts`)."""
    from posebench.metrics.registry import METRICS

    unknown = [m for m in wanted if m not in METRICS]
    if unknown:
        raise PosebenchError(f"unknown metrics {unknown}; choose from {', '.join(METRICS.names())}")
    text = [m for m in wanted if METRICS.get(m).consumes == "text"]
    if text and not prompts:
        raise PosebenchError(f"{', '.join(text)} scores each generated image against the text prompt it was made "
                             f"from, and the targets of {where or 'this evaluation'} have no prompts: use it with "
                             "humanart-val (the Human-Art captions)")
    if allowed is not None:
        refused = [m for m in wanted if m not in allowed]
        if refused:
            raise PosebenchError(f"metrics {refused} do not apply to {where}; choose from {', '.join(allowed)}")
    missing = [m for m in wanted if METRICS.get(m).section and METRICS.get(m).section not in profile.metrics]
    if missing:
        raise PosebenchError(f"profile {profile.name} defines no {', '.join(missing)} section; add it to the profile "
                             f"or leave {', '.join(missing)} out of --metrics")
    return tuple(dict.fromkeys(wanted))
