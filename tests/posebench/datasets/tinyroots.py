"""Tiny hand-made dataset roots in the real formats (independent of the synthetic generator)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

# 18 OpenPose joints (x, y) in the 256x176 frame; joint 14 (left eye) missing.
BASE_X = [88, 88, 70, 64, 60, 106, 112, 116, 78, 76, 74, 98, 100, 102, 92, -1, 96, 80]
BASE_Y = [30, 50, 52, 90, 125, 52, 90, 125, 130, 180, 230, 130, 180, 230, 26, -1, 28, 28]


def write_image(path: Path, size_hw=(256, 176), seed=0, fmt="JPEG") -> None:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (*size_hw, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)


def ann_row(name: str, dx: int = 0) -> str:
    xs = [x + dx if x >= 0 else -1 for x in BASE_X]
    return f"{name}:{json.dumps(BASE_Y)}:{json.dumps(xs)}"


DF_TRAIN = {
    "fashionMENDenimid0000008001": ["fashionMENDenimid0000008001_1front.jpg", "fashionMENDenimid0000008001_2side.jpg"],
    "fashionWOMENDressesid0000175906": ["fashionWOMENDressesid0000175906_1front.jpg",
                                        "fashionWOMENDressesid0000175906_3back.jpg"],
}
DF_TEST = {
    "fashionMENTees_Tanksid0000122204": ["fashionMENTees_Tanksid0000122204_1front.jpg",
                                         "fashionMENTees_Tanksid0000122204_7additional.jpg"],
}


def deepfashion_patn(root: Path, train=DF_TRAIN, test=DF_TEST) -> Path:
    """A PATN-layout DeepFashion root: lists, pair CSVs, annotation CSVs, images in train/ and test/."""
    root.mkdir(parents=True, exist_ok=True)
    for split, ids in (("train", train), ("test", test)):
        names = [n for group in ids.values() for n in group]
        (root / f"{split}.lst").write_text("\n".join(names) + "\n")
        pairs = ["from,to"] + [f"{a},{b}" for group in ids.values() for a in group for b in group if a != b]
        (root / f"fasion-resize-pairs-{split}.csv").write_text("\n".join(pairs) + "\n")
        rows = ["name:keypoints_y:keypoints_x"] + [ann_row(n, dx=i) for i, n in enumerate(names)]
        (root / f"fasion-resize-annotation-{split}.csv").write_text("\n".join(rows) + "\n")
        for i, n in enumerate(names):
            write_image(root / split / n, seed=i)
    return root


def market_root(root: Path) -> Path:
    train = ["0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg", "0007_c1s1_000101_01.jpg",
             "0007_c3s1_000201_01.jpg"]
    test = ["0003_c1s1_000100_01.jpg", "0003_c4s1_000300_01.jpg", "0000_c1s1_000001_01.jpg",
            "-1_c1s1_000002_01.jpg"]
    query = ["0003_c2s1_000200_01.jpg"]
    for folder, names in (("bounding_box_train", train), ("bounding_box_test", test), ("query", query)):
        for i, n in enumerate(names):
            write_image(root / folder / n, size_hw=(128, 64), seed=i)
    ys = [10, 20, 22, 40, 55, 22, 40, 55, 60, 85, 110, 60, 85, 110, 8, 8, 9, 9]
    xs = [32, 32, 24, 20, 18, 40, 44, 46, 28, 27, 26, 36, 37, 38, 30, 34, 28, 36]
    for split, names in (("train", train), ("test", test[:2])):
        pairs = ["from,to"] + [f"{a},{b}" for a in names for b in names
                               if a != b and a.split("_")[0] == b.split("_")[0]]
        (root / f"market-pairs-{split}.csv").write_text("\n".join(pairs) + "\n")
        rows = ["name:keypoints_y:keypoints_x"] + [f"{n}:{json.dumps(ys)}:{json.dumps(xs)}" for n in names]
        (root / f"market-annotation-{split}.csv").write_text("\n".join(rows) + "\n")
    return root


def humanart_root(root: Path) -> Path:
    for _split, fname, scenario, group, sid in (
        ("train", "training_humanart.json", "cartoon", "2D_virtual_human", 1),
        ("validation", "validation_humanart.json", "dance", "real_human", 17),
    ):
        images, anns = [], []
        for n in range(2):
            rel = f"images/{group}/{scenario}/{n:012d}.jpg"
            write_image(root / rel, size_hw=(64, 48), seed=n)
            image_id = sid * 10**12 + n
            images.append({"file_name": f"HumanArt/{rel}", "height": 64, "width": 48, "id": image_id,
                           "description": f"{scenario}, a person", "category": scenario.replace("_", " ")})
            kps = []
            for j in range(17):
                kps += [10 + j, 5 + 3 * j, 2 if j != 3 else 0]
            anns.append({"keypoints": kps, "keypoints_21": kps + [0] * 12, "image_id": image_id, "id": 100 * sid + n,
                         "bbox": [5, 5, 30, 55], "category_id": 1, "iscrowd": 0, "area": 1650, "num_keypoints": 16})
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / fname).write_text(json.dumps({"images": images, "annotations": anns,
                                                              "categories": [{"id": 1, "name": "person"}]}))
    return root
