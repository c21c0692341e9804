"""Targets of the pose protocols (`humanart-val`): each generated image is named after the Human-Art validation
image whose pose conditioned it, and scored by the pose estimator's detections against that image's annotated
poses (in the pose profile's target frame), with FID/KID per scenario against the validation images of the
scenario (the headline value is the mean over scenarios, Stable-Pose's convention; the pooled value is kept in
`details`).

Generated file names (PNG; JPEG only with `allow_lossy`), searched recursively under the prediction folder:

- `{scenario}/{stem}.png` (any parent folders above the scenario folder are allowed), e.g.
  `cartoon/000000000003.png`;
- `{scenario}__{stem}.png`, e.g. `cartoon__000000000003.png`;
- `{stem}.png` when that stem names one validation image only (Human-Art numbers its files per scenario, so a
  bare stem is usually ambiguous).

Ground truth in the pose profile's target frame (`target_frame`, quirk 6):

- `center-crop` (`clean`): the annotated image resized so it covers the protocol resolution (shorter side 512) and
  centre-cropped to 512x512 (`posebench.humanart_targets`); joints outside the crop become invisible, persons with
  no visible joint left are dropped, bbox and area come from the visible joints. `posebench data targets` writes
  these targets. A generated image that is not 512x512 gets the targets rescaled per axis from 512x512 (warned).
- `annotated` (`humansd`): keypoints, bbox, area and iscrowd as annotated, rescaled per axis when a generated
  image's size differs from the annotated image's (warned). HumanSD's randomly augmented targets are not replayed.

The estimator is fed as the profile says: true RGB (`clean`) or R and B swapped (`humansd`, quirk 1); for
decoders with a refine step, `refine_fill: false` (`humansd`, quirk 4) makes refine read the log maps of the UDP
adjust, as mmpose 0.x does on CPU, so it (almost) never fills a missing joint.

On request (`--metrics ...,clipsim`, `ON_REQUEST`), CLIPSIM scores each generated image against its prompt, the
validation image's `description` (`Item.prompt`), computed as the pose profile says (`posebench.metrics.clipsim`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from posebench.datasets.humanart import ValidationImage, read_validation
from posebench.datasets.names import stem
from posebench.errors import PosebenchError
from posebench.humanart_targets import crop_annotation, target_frame
from posebench.protocols import get_profile, get_protocol
from posebench.protocols.pose_profile import PoseProfile, get_pose_profile, is_custom
from posebench.run.config import EvalConfig
from posebench.run.plan import Item, Plan, check_lossy, check_metrics, finish, raise_problems

DEFAULT_POSE_ESTIMATOR = "higherhrnet-w48-humanart-udp"
ON_REQUEST = ("clipsim",)  # metrics beyond the protocol's list, computed when --metrics names them


def _scaled_annotation(ann: dict, sx: float, sy: float) -> dict:
    kp = np.asarray(ann["keypoints"], dtype=np.float64).reshape(17, 3)
    vis = kp[:, 2] > 0
    kp[vis, 0] *= sx
    kp[vis, 1] *= sy
    out = {"keypoints": [float(v) for v in kp.reshape(-1)], "category_id": 1, "iscrowd": int(ann.get("iscrowd", 0)),
           "num_keypoints": int(ann.get("num_keypoints", int(vis.sum())))}
    if "bbox" in ann and len(ann["bbox"]) == 4:
        x, y, w, h = (float(v) for v in ann["bbox"])
        out["bbox"] = [x * sx, y * sy, w * sx, h * sy]
    if "area" in ann:
        out["area"] = float(ann["area"]) * sx * sy
    if ("bbox" in out) != ("area" in out):  # evaluate_pose recomputes both from the joints when one is missing
        out.pop("bbox", None)
        out.pop("area", None)
    return out


def targets_in_frame(img: ValidationImage, prof: PoseProfile, resolution: tuple[int, int]) -> tuple[list[dict],
                                                                                                   tuple[int, int]]:
    """The annotations of `img` in the profile's target frame (quirk 6) and that frame's (H, W)."""
    if prof.target_frame == "annotated":
        return img.annotations, img.frame
    frame = target_frame(*img.frame, resolution)
    cropped = (crop_annotation(a, frame, prof.visibility_threshold) for a in img.annotations)
    return [a for a in cropped if a is not None], frame.size


def match_generated(files: Sequence[Path], pred: Path, keys: Sequence[str],
                    allow_missing: bool) -> tuple[dict[str, Path], list[str]]:
    """Map generated files to validation keys (`{scenario}/{stem}`; names in the module docstring).

    Unparseable, ambiguous, duplicate, extra and missing files are errors, listed together; with `allow_missing`
    missing images are reported in the returned notes instead.
    """
    known = set(keys)
    by_stem: dict[str, list[str]] = {}
    for k in keys:
        by_stem.setdefault(k.split("/", 1)[1], []).append(k)
    problems: list[str] = []
    found: dict[str, Path] = {}
    for f in files:
        parts = f.relative_to(pred).parts
        s = stem(parts[-1])
        key = None
        if len(parts) >= 2 and f"{parts[-2]}/{s}" in known:
            key = f"{parts[-2]}/{s}"
        elif "__" in s and s.replace("__", "/", 1) in known:
            key = s.replace("__", "/", 1)
        elif len(by_stem.get(s, [])) == 1:
            key = by_stem[s][0]
        elif len(by_stem.get(s, [])) > 1:
            problems.append(f"{f}: stem {s!r} names {len(by_stem[s])} validation images (in "
                            f"{', '.join(k.split('/')[0] for k in by_stem[s][:5])}); put it under its scenario "
                            f"folder ({by_stem[s][0]}.png) or name it {by_stem[s][0].replace('/', '__')}.png")
            continue
        if key is None:
            problems.append(f"{f}: names no Human-Art validation image (expected {{scenario}}/{{stem}}.png, "
                            "{scenario}__{stem}.png or a unique {stem}.png)")
        elif key in found:
            problems.append(f"{f}: duplicate of {found[key]} (both are {key})")
        else:
            found[key] = f
    missing = [k for k in keys if k not in found]
    notes: list[str] = []
    if missing and not allow_missing:
        problems.append(f"{len(missing)} of {len(keys)} validation images have no generated image (e.g. "
                        f"{', '.join(missing[:5])}); generate them or pass --allow-missing to score the rest")
    elif missing:
        notes.append(f"{len(missing)} of {len(keys)} validation images have no generated image and were not scored")
    raise_problems(problems, "Human-Art validation images")
    return found, notes


def _split_view(images: dict[str, ValidationImage]) -> Any:
    from posebench.datasets.index import SplitIndex

    sp = SplitIndex()
    sp.source_file["images"] = "annotations/validation_humanart.json"
    for k, im in images.items():
        sp.images[k] = im.real
        sp.groups[k] = im.scenario
    return sp


def _precomputed(cfg: EvalConfig, images: dict[str, ValidationImage], keys: Sequence[str],
                 notes: list[str]) -> dict[int, list[dict]]:
    from posebench.pose.precomputed import load_detections

    by_id = load_detections(cfg.detections)
    known = {im.image_id for im in images.values()}
    unknown = sorted(set(by_id) - known)
    if unknown:
        raise PosebenchError(f"{cfg.detections}: {len(unknown)} image ids are not Human-Art validation image ids "
                             f"(e.g. {unknown[:5]}); detections must use the ids of the annotations")
    wanted = {images[k].image_id for k in keys}
    dropped = sum(len(v) for i, v in by_id.items() if i not in wanted)
    if dropped:
        notes.append(f"{dropped} precomputed detections belong to images without a generated image and were left out")
    return {i: v for i, v in by_id.items() if i in wanted}


def _check_prompts(root: Path, images: dict[str, ValidationImage], keys: Sequence[str]) -> None:
    """Every scored image needs its caption (the annotation's `description`) for CLIPSIM."""
    from posebench.datasets.humanart import SPLIT_FILES

    bare = [images[k].file_name or k for k in keys if not images[k].description]
    if bare:
        raise PosebenchError(f"{Path(root) / 'annotations' / SPLIT_FILES['validation']}: {len(bare)} scored validation "
                             f"images have no description (their prompt), e.g. {', '.join(bare[:5])}; clipsim "
                             "scores each generated image against it: leave clipsim out of --metrics or use the "
                             "annotation file that has the captions")


def plan(cfg: EvalConfig) -> Plan:
    """Resolve the protocol, profiles and metrics; read the ground truth; match the generated images."""
    from posebench.datasets import humanart
    from posebench.datasets.index import DatasetIndex
    from posebench.datasets.problems import ProblemLog
    from posebench.pose.detect import is_canonical, list_images

    protocol = get_protocol(cfg.protocol or "")
    if protocol.kind != "pose":
        raise PosebenchError(f"protocol {protocol.name} is not a pose protocol")
    pose_profile = get_pose_profile(cfg.profile or protocol.default_pose_profile or "clean")
    custom = is_custom(pose_profile)
    if not custom and pose_profile.name not in protocol.pose_profiles:
        raise PosebenchError(f"pose profile {pose_profile.name!r} does not apply to {protocol.name}; choose one of "
                             f"{', '.join(protocol.pose_profiles)} (or a pose-profile YAML file)")
    image_profile = get_profile(protocol.default_profile)
    metrics = check_metrics(cfg.metrics or protocol.metrics, image_profile, (*protocol.metrics, *ON_REQUEST),
                            protocol.name, prompts=True)
    images = read_validation(cfg.root)
    keys = sorted(images)
    found, notes = match_generated(list_images(cfg.pred), cfg.pred, keys, cfg.allow_missing)
    if "clipsim" in metrics:
        _check_prompts(cfg.root, images, sorted(found))
    non_canonical: list[str] = []
    log = ProblemLog()
    humanart.check_facts(DatasetIndex("humanart", "coco", cfg.root, {"validation": _split_view(images)}), log)
    if log.errors or len(images) != protocol.pinned.get("images", len(images)):
        non_canonical.append(f"{len(images):,} validation images in the root, the protocol pins "
                             f"{protocol.pinned.get('images', len(images)):,} "
                             f"({protocol.pinned.get('images_per_scenario', '?')} per scenario)")
    if len(found) < len(keys):
        non_canonical.append(f"only {len(found)} of {len(keys)} validation images scored")
    if custom:
        non_canonical.append(f"custom pose profile {pose_profile.name} from {pose_profile.source}")
    estimator = cfg.pose_estimator or DEFAULT_POSE_ESTIMATOR
    pose_metrics = {"ap", "ap_m", "cap", "pce"} & set(metrics)
    if pose_metrics and cfg.detections is not None:
        non_canonical.append("precomputed detections (--detections): their estimator is not verified")
    elif pose_metrics and not is_canonical(estimator):
        non_canonical.append(f"pose estimator {estimator} (synthetic-domain or randomly initialised)")
    elif pose_metrics and estimator != DEFAULT_POSE_ESTIMATOR:
        non_canonical.append(f"pose estimator {estimator}, the protocol's is {DEFAULT_POSE_ESTIMATOR}")
    from posebench.datasets.index import refuse_files_outside_root

    refuse_files_outside_root(cfg.root, [im.real for im in images.values()], "validation images")
    scored = sorted(found)
    items = [Item(pred=found[k], ids={"key": k, "scenario": images[k].scenario, "image_id": images[k].image_id,
                                      "file": found[k].name},
                  group=images[k].scenario, image_id=images[k].image_id, prompt=images[k].description or None)
             for k in scored]

    def ground_truth(item: Item, size: tuple[int, int]) -> tuple[dict, list[dict], bool]:
        img = images[item.ids["key"]]
        targets, (fh, fw) = targets_in_frame(img, pose_profile, protocol.resolution)
        gh, gw = size
        return ({"height": gh, "width": gw}, [_scaled_annotation(a, gw / fw, gh / fh) for a in targets],
                (gh, gw) != (fh, fw))

    all_keys = sorted(images)
    groups = sorted({im.scenario for im in images.values()})
    out = Plan(
        kind="pose", protocol=protocol, profile=image_profile, pose_profile=pose_profile, metrics=metrics,
        items=items, resolution=protocol.resolution, real_sets={}, per_group_real=True,
        group_real={g: [im.real for k, im in sorted(images.items()) if im.scenario == g] for g in groups},
        dataset={"name": protocol.dataset, "layout": "coco", "split": protocol.split, "pairs": len(all_keys),
                 "pairs_sha256": hashlib.sha256("\n".join(all_keys).encode()).hexdigest(), "scenarios": len(groups)},
        predictions={"scheme": "humanart-stem"}, id_columns=("key", "scenario", "image_id", "file"),
        pose_ground_truth=ground_truth if pose_metrics else None,
        detections=_precomputed(cfg, images, scored, notes) if pose_metrics and cfg.detections is not None else None,
        warnings=list(notes), non_canonical=non_canonical)
    check_lossy(out, list(found.values()), cfg.allow_lossy)
    return finish(out, cfg.pred)


def rescale_warning(n: int, plan: Plan) -> str:
    if plan.pose_profile.target_frame == "annotated":
        return (f"{n} generated images differ in size from their annotated image: the target keypoints, boxes and "
                "areas were rescaled to the generated image per axis")
    h, w = plan.protocol.resolution
    return (f"{n} generated images are not {h}x{w}: the targets of the {h}x{w} target frame were rescaled to the "
            "generated image per axis")
