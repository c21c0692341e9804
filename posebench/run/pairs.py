"""Targets of the image protocols (DeepFashion, Market-1501): each generated image against its pair's target
image, from the dataset root's split manifest; generated files matched by every known naming scheme."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from posebench.datasets.names import IMAGE_SUFFIXES, PairKey, parse_generated_name
from posebench.datasets.problems import ProblemLog
from posebench.errors import PosebenchError
from posebench.protocols import get_profile, get_protocol
from posebench.run.config import EvalConfig
from posebench.run.plan import Item, Plan, check_lossy, check_metrics, declare, finish, raise_problems


def list_predictions(pred: Path) -> list[Path]:
    if not pred.is_dir():
        raise PosebenchError(f"--pred {pred} is not a folder of generated images")
    files = sorted(p for p in pred.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise PosebenchError(f"{pred} holds no images ({', '.join(IMAGE_SUFFIXES)}); generate them first")
    return files


def match_predictions(files: Sequence[Path], pairs: Sequence[PairKey], known: set[str], scheme: str | None,
                      allow_missing: bool, name_map: dict[str, str] | None = None,
                      ) -> tuple[dict[PairKey, Path], str, list[str]]:
    """Map generated files to protocol pairs. Unparseable, duplicate, extra and missing files are errors
    (listed together); with allow_missing, missing pairs are reported instead."""
    problems: list[str] = []
    found: dict[PairKey, Path] = {}
    schemes: set[str] = set()
    pair_set = set(pairs)
    for f in files:
        try:
            used, key = parse_generated_name(f.name, scheme=scheme, known=known, name_map=name_map)
        except ValueError as exc:
            problems.append(f"{f}: {exc}")
            continue
        schemes.add(used)
        if key in found:
            problems.append(f"{f}: duplicate of {found[key].name} (both are pair {key})")
        elif key not in pair_set:
            problems.append(f"{f}: pair {key} is not in the protocol's split (extra file)")
        else:
            found[key] = f
    missing = [p for p in pairs if p not in found]
    notes: list[str] = []
    if missing and not allow_missing:
        shown = ", ".join(p.filename for p in missing[:5])
        problems.append(f"{len(missing)} of {len(pairs)} pairs have no generated image (e.g. {shown}); generate "
                        "them or pass --allow-missing to score the rest (then counts are reported)")
    elif missing:
        notes.append(f"{len(missing)} of {len(pairs)} pairs have no generated image and were not scored")
    if len(schemes) > 1:
        problems.append(f"the folder mixes naming schemes {sorted(schemes)}; use one")
    raise_problems(problems, "pairs")
    return found, (schemes.pop() if schemes else scheme or "posebench"), notes


PATN_PANELS = 5  # source | source pose | target | target pose | generated (PATN's test outputs)


def _cut_patn_panels(items: list[Item], resolution: tuple[int, int]) -> str | None:
    """PATN saves `{from}___{to}_vis` strips of 5 panels and its getMetrics scores panel 5: mark that panel as the
    generated image (from each file's header). A file of the protocol's aspect is taken whole; any other layout is
    refused, named. Returns the note for the results, or None when no file was a strip."""
    from PIL import Image

    aspect = resolution[1] / resolution[0]  # W / H
    strips, problems = 0, []
    for it in items:
        with Image.open(it.pred) as im:
            w, h = im.size
        if w % PATN_PANELS == 0 and abs(w / PATN_PANELS / h - aspect) < 0.02:
            panel = w // PATN_PANELS
            it.crop = ((PATN_PANELS - 1) * panel, 0, w, h)
            strips += 1
        elif abs(w / h - aspect) >= 0.02:
            problems.append(f"{it.pred}: {w}x{h} is neither one image of the protocol's aspect nor PATN's strip of "
                            f"{PATN_PANELS} panels (source | source pose | target | target pose | generated, each "
                            f"W/H = {aspect:.3f}); save the generated image alone, or the whole strip")
    raise_problems(problems, "PATN outputs")
    if not strips:
        return None
    return (f"{strips} PATN strips: the generated image (panel {PATN_PANELS} of source | source pose | target | "
            "target pose | generated) was cut out and scored, as PATN's getMetrics does")


def pose_estimator_name(cfg: EvalConfig) -> str:
    """The estimator that pose metrics use: `cfg.pose_estimator`, else posebench.pose.detect's default."""
    from posebench.pose.detect import DEFAULT_ESTIMATOR

    return cfg.pose_estimator or DEFAULT_ESTIMATOR


def plan(cfg: EvalConfig) -> Plan:
    """Resolve protocol, profile and metrics; read the root's manifest; match the generated files."""
    from posebench.datasets import manifest
    from posebench.datasets.manifest import pairs_sha256
    from posebench.metrics.registry import METRICS

    protocol = get_protocol(cfg.protocol or "")
    profile = get_profile(cfg.profile or protocol.default_profile)
    if profile.name not in protocol.profiles and not (cfg.profile or "").endswith((".yaml", ".yml")):
        raise PosebenchError(f"profile {profile.name!r} does not apply to {protocol.name}; "
                             f"choose one of {', '.join(protocol.profiles)}")
    metrics = check_metrics(cfg.metrics or protocol.metrics, profile, where=protocol.name)
    pose_metrics = {m for m in metrics if METRICS.get(m).consumes == "pose"}
    log = ProblemLog()
    index = manifest.load(protocol.dataset, cfg.root, log)
    log.raise_if_errors(f"{protocol.dataset} root {cfg.root}")
    if protocol.split not in index.splits:
        raise PosebenchError(f"{cfg.root} has no {protocol.split!r} split")
    split = index.splits[protocol.split]
    pairs = sorted(split.pairs)
    non_canonical: list[str] = []
    if "pairs" in protocol.pinned and len(pairs) != protocol.pinned["pairs"]:
        non_canonical.append(f"{len(pairs):,} pairs in the root, the protocol pins {protocol.pinned['pairs']:,}")
    real_name = profile.metrics["fid"].real_set if "fid" in profile.metrics else protocol.real_sets[0]
    if real_name not in protocol.real_sets:
        raise PosebenchError(f"profile {profile.name}: fid.real_set {real_name!r} is not a real set of {protocol.name} "
                             f"({', '.join(protocol.real_sets)})")
    uses_real_set = bool({"fid", "kid"} & set(metrics))  # a real-set reason only when a number depends on it
    if uses_real_set and "real_images" in protocol.pinned and real_name in index.splits:
        n_real = len(index.splits[real_name].images)
        if n_real != protocol.pinned["real_images"]:
            non_canonical.append(f"{n_real:,} FID real-set images, the protocol pins "
                                 f"{protocol.pinned['real_images']:,}")
    if cfg.real_limit is not None and uses_real_set:
        non_canonical.append(f"real set capped at {cfg.real_limit} images (--real-limit)")
    from posebench.pose.detect import is_canonical

    if pose_metrics and not is_canonical(pose_estimator_name(cfg)):
        non_canonical.append(f"pose metrics from a synthetic-domain / random estimator ({pose_estimator_name(cfg)}): "
                             "not comparable with published numbers")

    name_map = None
    if cfg.name_map is not None:
        from posebench.datasets.formats import read_name_map

        map_log = ProblemLog()
        name_map = read_name_map(cfg.name_map, map_log)
        map_log.raise_if_errors(f"--name-map {cfg.name_map}")
    files, scheme, notes = match_predictions(list_predictions(cfg.pred), pairs, set(split.images), cfg.scheme,
                                             cfg.allow_missing, name_map)
    masked = tuple(m for m in protocol.masked_metrics if m in metrics)
    need_keypoints = bool(pose_metrics or masked)
    if pose_metrics:
        for key in pairs:  # the ground truth of every scored pair must exist before any compute
            people = split.keypoints.get(key.target) if key in files else None
            if key in files and not (people and people[0].visible.any()):
                raise PosebenchError(f"pose metrics need the keypoints of target {key.target} (pair {key}); the root "
                                     f"{cfg.root} has {'only invisible ones' if people else 'none'} for it")
    if len(files) < len(pairs):
        non_canonical.append(f"only {len(files)} of {len(pairs)} pairs scored")
    # Scoring order = the sorted listing of the generated files, the order the reference scripts sort them in
    # (`sorted(glob(...))`), so drop-last keeps the images they keep where they sort (LPIPS), and a deterministic
    # choice where they do not (FID lists the folder unsorted).
    keys = sorted(files, key=lambda k: files[k].name)
    items = []
    for k in keys:
        people = split.keypoints.get(k.target) if need_keypoints else None
        items.append(Item(pred=files[k], gt=split.images[k.target], ids={"source": k.source, "target": k.target},
                          keypoints=people[0] if people else None))
    panels = _cut_patn_panels(items, protocol.resolution) if scheme == "patn" else None
    if panels:
        notes.append(panels)
    from posebench.datasets.index import refuse_files_outside_root

    refuse_files_outside_root(cfg.root, [it.gt for it in items], "ground-truth images")
    real_sets = {}
    for name in (real_name, *(r for r in protocol.real_sets if r != real_name)):
        if name in index.splits:
            paths = [index.splits[name].images[k] for k in sorted(index.splits[name].images)]
            real_sets[name] = paths[: cfg.real_limit] if cfg.real_limit is not None else paths
            if {"fid", "kid"} & set(metrics) and (name == real_name or cfg.test_fid):
                refuse_files_outside_root(cfg.root, real_sets[name], f"FID real-set images ({name})")
        elif name == real_name and {"fid", "kid"} & set(metrics):
            raise PosebenchError(f"the FID real set {name!r} is not in {cfg.root}")
    out = Plan(kind="image", protocol=protocol, profile=profile, metrics=metrics, items=items,
               resolution=protocol.resolution, real_sets=real_sets,
               dataset={"name": protocol.dataset, "layout": index.layout, "split": protocol.split,
                        "pairs": len(pairs), "pairs_sha256": pairs_sha256(pairs)},
               predictions={"scheme": scheme, **({"panel": f"{PATN_PANELS} of {PATN_PANELS}"} if panels else {})},
               id_columns=("source", "target"), masked=masked,
               pose_ground_truth=_pair_ground_truth if pose_metrics else None, warnings=list(notes),
               non_canonical=non_canonical)
    check_lossy(out, list(files.values()), cfg.allow_lossy)
    declare(out, cfg.best_of, cfg.oracle_selection)
    return finish(out, cfg.pred)


def _pair_ground_truth(item: Item, size: tuple[int, int]) -> tuple[dict, list[dict], bool]:
    """The target's first person rescaled to the generated image and converted to COCO-17 (invisible joints
    v=0, visible v=2); no bbox/area: the clean pose profile derives both from the visible joints."""
    h, w = size
    kp = item.keypoints.rescale((h, w)).convert("coco17")  # plan() checked that it exists
    flat = np.zeros((kp.num_joints, 3), dtype=np.float64)
    flat[kp.visible, :2] = kp.xy[kp.visible]
    flat[kp.visible, 2] = 2.0
    image: dict[str, Any] = {"height": h, "width": w}
    ann = {"category_id": 1, "iscrowd": 0, "num_keypoints": int(kp.visible.sum()),
           "keypoints": [float(v) for v in flat.reshape(-1)]}
    return image, [ann], False
