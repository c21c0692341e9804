"""Human-Art (datasets.md §3): COCO-style `annotations/{training,validation}_humanart.json` with the extra
fields (`description`, `category`, `keypoints_21`, ...), images under
`images/{2D_virtual_human,3D_virtual_human,real_human}/<scenario>/<12 digits>.jpg`, 19 scenarios.
Scenarios are keyed by directory name (the `category` field uses spaces instead of underscores).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from posebench.datasets import facts
from posebench.datasets.index import DatasetIndex, SplitIndex, check_paths_inside_root
from posebench.datasets.keypoints import Keypoints
from posebench.datasets.problems import ProblemLog
from posebench.errors import PosebenchError

SPLIT_FILES = {"train": "training_humanart.json", "validation": "validation_humanart.json"}
SCENARIO_BY_DIR = {d: (i, g) for i, d, g in facts.HUMANART_SCENARIOS}
IMAGE_KEYS = ("file_name", "height", "width", "id")
ANNOTATION_KEYS = ("keypoints", "image_id", "id", "bbox", "category_id", "iscrowd")


def rel_image_path(file_name: str) -> PurePosixPath:
    """A Human-Art path relative to the root: annotation files (and HumanSD's mapping files) may prefix it with
    `HumanArt/`, which is stripped."""
    p = PurePosixPath(file_name)
    return PurePosixPath(*p.parts[1:]) if p.parts and p.parts[0] == "HumanArt" else p


def read_annotation_json(path: Path, root: Path, log: ProblemLog) -> SplitIndex:
    sp = SplitIndex()
    sp.source_file["images"] = str(path)
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        log.error(path, getattr(exc, "lineno", None), f"malformed JSON ({exc})")
        return sp
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        log.error(path, None, "expected a COCO-style object with 'images' and 'annotations' lists")
        return sp
    frames: dict[int, tuple[str, tuple[int, int]]] = {}
    for i, img in enumerate(data["images"]):
        missing = [k for k in IMAGE_KEYS if k not in img]
        if missing:
            log.error(path, None, f"images[{i}] lacks {', '.join(missing)}")
            continue
        rel = rel_image_path(str(img["file_name"]))
        if ".." in rel.parts or rel.is_absolute():
            log.error(path, None, f"images[{i}] file_name {img['file_name']!r} escapes the root")
            continue
        key = rel.stem
        if img["id"] in frames:
            log.error(path, None, f"images[{i}] repeats image id {img['id']}")
            continue
        scenario = rel.parts[-2] if len(rel.parts) >= 2 else ""
        if scenario not in SCENARIO_BY_DIR:
            log.error(path, None, f"images[{i}] {img['file_name']!r} is not under a known scenario folder",
                      f"known: {', '.join(SCENARIO_BY_DIR)}")
        elif int(img["id"]) // 10**12 != SCENARIO_BY_DIR[scenario][0]:
            log.warning(path, None, f"image id {img['id']} does not encode scenario {scenario} "
                        f"(expected {SCENARIO_BY_DIR[scenario][0]}·10^12 + n)")
        key = f"{scenario}/{key}"
        frames[img["id"]] = (key, (int(img["height"]), int(img["width"])))
        sp.images[key] = root / rel
        sp.groups[key] = scenario
        sp.keypoints[key] = []
    seen_ann: set[int] = set()
    for i, ann in enumerate(data["annotations"]):
        missing = [k for k in ANNOTATION_KEYS if k not in ann]
        if missing:
            log.error(path, None, f"annotations[{i}] lacks {', '.join(missing)}")
            continue
        if ann["id"] in seen_ann:
            log.error(path, None, f"annotations[{i}] repeats annotation id {ann['id']}")
            continue
        seen_ann.add(ann["id"])
        if ann["image_id"] not in frames:
            log.error(path, None, f"annotations[{i}] refers to unknown image id {ann['image_id']}")
            continue
        kps = np.asarray(ann["keypoints"], dtype=np.float64)
        if kps.shape != (51,) or not np.isfinite(kps).all():
            log.error(path, None, f"annotations[{i}] keypoints must be 17 x (x, y, v) finite numbers, "
                      f"got {kps.size} values")
            continue
        if "keypoints_21" in ann and np.asarray(ann["keypoints_21"]).size != 63:
            log.error(path, None, f"annotations[{i}] keypoints_21 must have 21 x 3 values")
        key, frame = frames[ann["image_id"]]
        kps = kps.reshape(17, 3)
        sp.keypoints[key].append(Keypoints(kps[:, :2], kps[:, 2] > 0, frame, "coco17"))
    return sp


def load_index(root: Path, log: ProblemLog) -> DatasetIndex:
    out: dict[str, SplitIndex] = {}
    for split, fname in SPLIT_FILES.items():
        path = root / "annotations" / fname
        if not path.is_file():
            log.error(path, None, f"missing {fname}", "Human-Art annotations belong in <root>/annotations/")
            continue
        sp = read_annotation_json(path, root, log)
        check_paths_inside_root(root, sp, split, log)
        out[split] = sp
    return DatasetIndex("humanart", "coco", root, out)


def check_facts(index: DatasetIndex, log: ProblemLog) -> None:
    sp = index.splits.get("validation")
    if sp is None:
        return
    per = Counter(sp.groups.values())
    expected = facts.HUMANART["validation"]["images_per_scenario"]
    for _, scenario, _ in facts.HUMANART_SCENARIOS:
        if per.get(scenario, 0) != expected:
            log.error(sp.source_file["images"], None,
                      f"validation scenario {scenario}: {per.get(scenario, 0)} images, the protocol pins {expected}",
                      "this is not the standard Human-Art validation split")


@dataclass
class ValidationImage:
    """One Human-Art validation image with its annotations (as the annotation file holds them)."""

    key: str  # "{scenario}/{stem}", the index key
    scenario: str
    image_id: int
    real: Path  # the image file
    frame: tuple[int, int]  # (H, W) of the annotated image
    annotations: list[dict] = field(default_factory=list)
    file_name: str = ""  # as in the annotation file
    description: str = ""  # the image's caption, "<scenario>, <caption>" (HumanSD's prompt)


def read_validation(root: Path) -> dict[str, ValidationImage]:
    """Validation images and their annotations from `annotations/validation_humanart.json`, by index key.

    Raises:
        PosebenchError: the root or file is missing, or the file is malformed (the reader's problems, listed).
    """
    root = Path(root)
    if not root.is_dir():
        raise PosebenchError(f"dataset root {root} is not a folder. Pass --root pointing at your Human-Art copy.")
    path = root / "annotations" / SPLIT_FILES["validation"]
    if not path.is_file():
        raise PosebenchError(f"{path} does not exist: humanart-val needs the Human-Art validation annotations "
                             "in <root>/annotations/")
    log = ProblemLog()
    read_annotation_json(path, root, log)  # validates the file with the reader's checks
    log.raise_if_errors(f"humanart root {root}")
    data = json.loads(path.read_text(encoding="utf-8"))  # valid JSON: the reader just parsed it
    images: dict[str, ValidationImage] = {}
    by_id: dict[object, ValidationImage] = {}
    for im in data["images"]:
        rel = rel_image_path(str(im["file_name"]))
        scenario = rel.parts[-2]
        key = f"{scenario}/{PurePosixPath(rel).stem}"
        description = im.get("description")
        entry = ValidationImage(key, scenario, int(im["id"]), root / rel, (int(im["height"]), int(im["width"])), [],
                                str(im["file_name"]), description.strip() if isinstance(description, str) else "")
        images[key] = entry
        by_id[im["id"]] = entry
    for ann in data["annotations"]:
        by_id[ann["image_id"]].annotations.append(ann)
    return images
