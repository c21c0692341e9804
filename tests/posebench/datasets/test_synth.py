"""Synthetic people: rendering and keypoints, limb-local textures, the three on-disk formats, determinism."""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from posebench.datasets.keypoints import HUMANART21_NAMES, OPENPOSE18_NAMES
from posebench.datasets.synth import (
    DEEPFASHION_CATEGORIES,
    HUMANART_SCENARIOS,
    Pattern,
    make_identity,
    make_pose,
    render_person,
    synthesize,
)
from posebench.errors import PosebenchError

MAGENTA = np.array([255, 0, 255], dtype=np.uint8)  # no skin, hair or cloth colour is near it
J = {name: i for i, name in enumerate(OPENPOSE18_NAMES)}
FACE = [J["nose"], J["left_eye"], J["right_eye"], J["left_ear"], J["right_ear"]]


def _uniform(size: tuple[int, int]) -> np.ndarray:
    return np.broadcast_to(MAGENTA, (*size, 3)).copy()


def _on_figure(img: np.ndarray, x: float, y: float) -> bool:
    """Some pixel of the 3x3 neighbourhood differs clearly from the background."""
    xi, yi = int(round(x)), int(round(y))
    patch = img[max(0, yi - 1):yi + 2, max(0, xi - 1):xi + 2].astype(int)
    return bool((np.abs(patch - MAGENTA.astype(int)).max(axis=2) > 40).any())


# ------------------------------------------------------------------------------------------------ render


@pytest.mark.parametrize("size", [(256, 176), (128, 64)])
@pytest.mark.parametrize("view", ["front", "side", "back"])
def test_render_person_keypoints_lie_on_the_figure(size, view):
    for seed in range(6):
        bg = _uniform(size)
        img, kp = render_person(make_identity(seed), make_pose(100 + seed, view), size, bg)
        assert img.shape == (*size, 3) and img.dtype == np.uint8
        assert (bg == MAGENTA).all()  # the background argument is not modified
        assert kp.format == "openpose18" and kp.frame == size
        vis = kp.visible
        assert vis.sum() >= 10
        for (x, y), v, name in zip(kp.xy, vis, OPENPOSE18_NAMES, strict=True):
            if v:
                assert 0 <= x < size[1] and 0 <= y < size[0], name
                assert _on_figure(img, x, y), f"{view} seed {seed}: {name} at ({x:.1f}, {y:.1f}) is on background"
        eyes_ears = vis[[J["left_eye"], J["right_eye"]]], vis[[J["left_ear"], J["right_ear"]]]
        if view == "back":
            assert not vis[[J["nose"], J["left_eye"], J["right_eye"]]].any()
            assert eyes_ears[1].all()
        elif view == "side":
            assert vis[J["nose"]] and eyes_ears[0].sum() == 1 and eyes_ears[1].sum() == 1
        else:
            assert vis[FACE].all()


def test_joints_outside_the_image_are_invisible():
    size = (128, 64)
    pose = replace(make_pose(3, "front", action="arms_out"), center_x=0.0)
    img, kp = render_person(make_identity(3), pose, size, _uniform(size))
    assert not kp.visible.all()
    assert not kp.visible[[J["right_wrist"], J["right_elbow"]]].any()  # right limbs are on image left
    assert np.isnan(kp.xy[~kp.visible]).all()
    xy = kp.xy[kp.visible]
    assert (xy >= 0).all() and (xy[:, 0] < size[1]).all() and (xy[:, 1] < size[0]).all()


def test_identity_and_pose_are_deterministic_by_seed():
    assert make_identity(7) == make_identity(7) != make_identity(8)
    assert make_pose(7, "side") == make_pose(7, "side") != make_pose(8, "side")
    with pytest.raises(ValueError, match="category"):
        make_identity(0, gender="MEN", category="Dresses")


def _thigh_samples(kp, grid_t, grid_v) -> np.ndarray:
    """Pixel positions at limb-local coordinates of the right thigh: t along hip->knee, v across (thigh lengths)."""
    hip, knee = kp.xy[J["right_hip"]].astype(float), kp.xy[J["right_knee"]].astype(float)
    axis = knee - hip
    across = np.array([-axis[1], axis[0]])
    return np.array([hip + t * axis + v * across for t in grid_t for v in grid_v])


def _colours(img: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return np.array([img[int(round(y)), int(round(x))] for x, y in pts], dtype=int)


def _matches(img_a, pts_a, img_b, pts_b, tol: int = 30) -> float:
    """Fraction of points whose colour in A is found within one pixel of the corresponding point in B."""
    ca = _colours(img_a, pts_a)
    hits = 0
    for c, (x, y) in zip(ca, pts_b, strict=True):
        xi, yi = int(round(x)), int(round(y))
        patch = img_b[yi - 1:yi + 2, xi - 1:xi + 2].astype(int).reshape(-1, 3)
        hits += int(np.abs(patch - c).max(axis=1).min() <= tol)
    return hits / len(ca)


def test_texture_follows_the_limb():
    size = (1024, 704)  # large, so a one-pixel sampling error rarely crosses a check boundary
    checks = Pattern("checks", ((240, 240, 236), (200, 35, 40)), period=24)
    ident = replace(make_identity(3, gender="MEN", category="Pants", bottom=checks), skirt=False, leg_cover=1.0)
    other = replace(ident, bottom=Pattern("checks", ((30, 40, 90), (240, 210, 60)), period=24))
    pose_a = replace(make_pose(1, "front", action="arms_up"), legs=(0.05, 0.0, 0.1, 0.0), lean=0.0,
                     center_x=0.5, scale=0.85)
    # Another thigh angle, position and figure size: only a limb-local texture keeps the colours.
    pose_b = replace(pose_a, legs=(0.4, -0.1, 0.2, 0.05), lean=0.04, center_x=0.42, scale=0.7)
    grid_t, grid_v = np.linspace(0.3, 0.8, 11), np.linspace(-0.08, 0.08, 5)  # clear of pelvis and knee
    img_a, kp_a = render_person(ident, pose_a, size, _uniform(size))
    img_b, kp_b = render_person(ident, pose_b, size, _uniform(size))
    img_o, kp_o = render_person(other, pose_b, size, _uniform(size))
    pts_a, pts_b = _thigh_samples(kp_a, grid_t, grid_v), _thigh_samples(kp_b, grid_t, grid_v)
    assert not np.allclose(pts_a, pts_b, atol=20)  # the limb really moved
    ca = _colours(img_a, pts_a)
    assert len({tuple(c // 40) for c in ca}) >= 2  # the samples span both check colours
    assert _matches(img_a, pts_a, img_b, pts_b) >= 0.95
    assert _matches(img_a, pts_a, img_o, _thigh_samples(kp_o, grid_t, grid_v)) <= 0.05


# ------------------------------------------------------------------------------------------- deepfashion

DF_NAME = re.compile(r"^fashion(MEN|WOMEN)([A-Za-z_]+)id(\d{8})(\d{2})_(\d)"
                     r"(front|side|back|full|flat|additional)\.jpg$")
DF_VIEW_NUMBER = {"front": "1", "side": "2", "back": "3", "full": "4", "flat": "6", "additional": "7"}


def _read_pairs(path: Path) -> list[tuple[str, str]]:
    lines = path.read_text().splitlines()
    assert lines[0] == "from,to"
    return [tuple(line.split(",")) for line in lines[1:]]


def _read_annotation(path: Path, frame: tuple[int, int]) -> dict[str, tuple[list[int], list[int]]]:
    lines = path.read_text().splitlines()
    assert lines[0] == "name:keypoints_y:keypoints_x"
    rows = {}
    for line in lines[1:]:
        name, ys_s, xs_s = line.split(":")
        ys, xs = json.loads(ys_s), json.loads(xs_s)
        assert len(ys) == len(xs) == 18 and all(isinstance(v, int) for v in ys + xs)
        for y, x in zip(ys, xs, strict=True):
            assert (y == -1) == (x == -1)  # -1 marks a whole joint
            assert y == -1 or (0 <= y < frame[0] and 0 <= x < frame[1])
        rows[name] = (ys, xs)
    return rows


def _check_pairs(pairs: list[tuple[str, str]], groups: dict[str, list[str]]) -> None:
    expected = {(a, b) for names in groups.values() for a in names for b in names if a != b}
    assert len(pairs) == len(set(pairs)) == sum(len(n) * (len(n) - 1) for n in groups.values())
    assert set(pairs) == expected


def test_deepfashion_layout(tmp_path):
    out = tmp_path / "df"
    summary = synthesize("deepfashion", out, identities=3, poses=3, progress=False)
    assert summary.size == (256, 176)
    assert summary.images == {"train": 6, "test": 3} and summary.identities == {"train": 2, "test": 1}
    assert summary.pairs == {"train": 12, "test": 6}
    units = {}
    for split in ("train", "test"):
        files = sorted(p.name for p in (out / split).iterdir())
        lst = (out / f"{split}.lst").read_text().splitlines()
        assert sorted(lst) == files and len(set(lst)) == len(lst)
        groups = defaultdict(list)
        for name in files:
            m = DF_NAME.match(name)
            assert m, name
            gender, category, _, outfit, number, word = m.groups()
            assert category in DEEPFASHION_CATEGORIES[gender] and outfit == "01" and DF_VIEW_NUMBER[word] == number
            groups[name[: name.index("_", len("fashion" + gender + category))]].append(name)
        units[split] = set(groups)
        _check_pairs(_read_pairs(out / f"fasion-resize-pairs-{split}.csv"), groups)
        ann = _read_annotation(out / f"fasion-resize-annotation-{split}.csv", (256, 176))
        assert set(ann) == set(files)
        for name, (ys, _) in ann.items():
            if "_3back" in name:
                assert ys[J["nose"]] == ys[J["left_eye"]] == ys[J["right_eye"]] == -1
            if "_1front" in name:
                assert -1 not in [ys[i] for i in FACE]
                # y list first: the ankles are far below the nose, beyond any x of the 176-wide frame.
                assert max(ys[J["right_ankle"]], ys[J["left_ankle"]]) > 176 > ys[J["nose"]] >= 0
        img = cv2.imread(str(out / split / files[0]))
        assert img.shape == (256, 176, 3) and (out / split / files[0]).read_bytes()[:2] == b"\xff\xd8"
    assert not units["train"] & units["test"] and len(units["train"]) == 2


def test_deepfashion_keypoints_are_written_in_the_256x176_frame(tmp_path):
    synthesize("deepfashion", tmp_path, identities=2, poses=2, size=(128, 88), progress=False)
    rows = {**_read_annotation(tmp_path / "fasion-resize-annotation-train.csv", (256, 176)),
            **_read_annotation(tmp_path / "fasion-resize-annotation-test.csv", (256, 176))}
    assert max(max(ys) for ys, _ in rows.values()) > 160  # feet near the bottom of a 256-high frame
    assert cv2.imread(str(next((tmp_path / "train").iterdir()))).shape == (128, 88, 3)


# ------------------------------------------------------------------------------------------------ market

MARKET_NAME = re.compile(r"^(-1|\d{4})_c([1-6])s([1-6])_(\d{6})_(\d{2})\.jpg$")


def test_market_layout(tmp_path):
    summary = synthesize("market", tmp_path, identities=4, poses=4, test_fraction=0.5, progress=False)
    assert summary.identities == {"train": 2, "test": 2}
    folders = {}
    for d in ("bounding_box_train", "bounding_box_test", "query"):
        names = sorted(p.name for p in (tmp_path / d).iterdir())
        folders[d] = [(n, *MARKET_NAME.match(n).groups()[:2]) for n in names]
        assert all(MARKET_NAME.match(n) for n in names)
    assert summary.images == {"train": len(folders["bounding_box_train"]), "test": len(folders["bounding_box_test"]),
                              "query": len(folders["query"])}
    train_pids = {pid for _, pid, _ in folders["bounding_box_train"]}
    gallery = [(n, pid, cam) for n, pid, cam in folders["bounding_box_test"] if pid not in ("-1", "0000")]
    test_pids = {pid for _, pid, _ in gallery}
    assert not {"-1", "0000"} & (train_pids | {pid for _, pid, _ in folders["query"]})
    assert {pid for _, pid, _ in folders["bounding_box_test"]} >= {"-1", "0000"}  # junk and distractors
    assert len(train_pids) == 2 and len(test_pids) == 2 and not train_pids & test_pids
    for _, pid, cam in folders["query"]:
        gallery_cams = {c for _, p, c in gallery if p == pid}
        assert gallery_cams and cam not in gallery_cams  # findable, and only from another camera
    for split, members in (("train", folders["bounding_box_train"]), ("test", gallery)):
        groups = defaultdict(list)
        for n, pid, _ in members:
            groups[pid].append(n)
        pairs = _read_pairs(tmp_path / f"market-pairs-{split}.csv")
        _check_pairs(pairs, groups)
        ann = _read_annotation(tmp_path / f"market-annotation-{split}.csv", (128, 64))
        assert {n for pair in pairs for n in pair} <= set(ann)
    assert summary.pairs == {"train": 2 * 4 * 3, "test": 2 * 4 * 3}  # test ids: 4 gallery images + 1 query
    assert summary.images["query"] == 2
    img = cv2.imread(str(tmp_path / "bounding_box_train" / folders["bounding_box_train"][0][0]))
    assert img.shape == (128, 64, 3)


# ---------------------------------------------------------------------------------------------- humanart

HA_FILE = re.compile(r"^HumanArt/images/(2D_virtual_human|3D_virtual_human|real_human)/([a-z_]+)/(\d{12})\.jpg$")
IMAGE_FIELDS = {"file_name", "height", "width", "id", "description", "category", "page_url", "image_url",
                "picture_name", "author"}
ANN_FIELDS = {"keypoints", "keypoints_21", "num_keypoints", "num_keypoints_21", "self_contact", "iscrowd", "image_id",
              "area", "bbox", "category_id", "id", "annotator"}


def test_humanart_layout(tmp_path):
    summary = synthesize("humanart", tmp_path, identities=4, poses=5, progress=False)
    assert summary.images == {"train": 20, "test": 20} and summary.pairs == {}
    scenario = {name: (sid, group) for sid, name, group in HUMANART_SCENARIOS}
    ann_dir = tmp_path / "annotations"
    seen_images, seen_anns, on_disk = set(), set(), set()
    for prefix in ("training", "validation"):
        data = json.loads((ann_dir / f"{prefix}_humanart.json").read_text())
        (cat,) = data["categories"]
        assert cat["id"] == 1 and cat["name"] == "person" and cat["keypoints"] == list(HUMANART21_NAMES)
        assert len(cat["skeleton"]) == 23 and all(1 <= i <= 21 for link in cat["skeleton"] for i in link)
        images = {im["id"]: im for im in data["images"]}
        assert len(images) == 20 and not seen_images & set(images)
        seen_images |= set(images)
        assert {im["category"] for im in images.values()} == {n.replace("_", " ") for n in scenario}  # all 19
        for im in images.values():
            assert set(im) >= IMAGE_FIELDS
            group, name, number = HA_FILE.match(im["file_name"]).groups()
            assert scenario[name] == (im["id"] // 10**12, group) and im["id"] % 10**12 == int(number)
            assert im["description"].startswith(f"{name}, a synthetic person")
            assert im["category"] == name.replace("_", " ")
            path = tmp_path / im["file_name"].removeprefix("HumanArt/")
            assert cv2.imread(str(path)).shape == (im["height"], im["width"], 3) == (256, 256, 3)
            on_disk.add(path)
        per_image = defaultdict(int)
        for ann in data["annotations"]:
            assert set(ann) >= ANN_FIELDS and ann["id"] not in seen_anns
            seen_anns.add(ann["id"])
            per_image[ann["image_id"]] += 1
            kps, k21 = ann["keypoints"], ann["keypoints_21"]
            assert len(kps) == 51 and len(k21) == 63 and k21[:51] == kps
            assert all(v in (0, 2) for v in k21[2::3])
            assert all(x == y == 0 for x, y, v in zip(k21[0::3], k21[1::3], k21[2::3], strict=True) if v == 0)
            assert ann["num_keypoints"] == sum(v > 0 for v in kps[2::3]) >= 5
            assert ann["num_keypoints_21"] == sum(v > 0 for v in k21[2::3])
            x, y, w, h = ann["bbox"]
            assert w > 0 and h > 0 and ann["area"] > 0 and x >= 0 and y >= 0 and x + w <= 256 and y + h <= 256
            for kx, ky, v in zip(kps[0::3], kps[1::3], kps[2::3], strict=True):
                assert v == 0 or (x - 1 <= kx <= x + w + 1 and y - 1 <= ky <= y + h + 1)
            assert ann["category_id"] == 1 and ann["iscrowd"] == 0 and ann["self_contact"] == []
        assert set(per_image) == set(images) and all(1 <= n <= 3 for n in per_image.values())
        # Per-scenario files partition the union file.
        union_images, union_anns = [], []
        for name in scenario:
            part = json.loads((ann_dir / f"{prefix}_humanart_{name}.json").read_text())
            assert all(im["category"] == name.replace("_", " ") for im in part["images"])
            assert part["categories"] == data["categories"]
            union_images += part["images"]
            union_anns += part["annotations"]
        assert sorted(union_images, key=lambda im: im["id"]) == sorted(data["images"], key=lambda im: im["id"])
        assert sorted(a["id"] for a in union_anns) == sorted(a["id"] for a in data["annotations"])
    assert on_disk == set((tmp_path / "images").rglob("*.jpg"))


# ------------------------------------------------------------------------------------ determinism, errors


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt", ["deepfashion", "market", "humanart"])
def test_same_seed_gives_identical_files(tmp_path, fmt):
    size = (64, 64) if fmt == "humanart" else None
    runs = [_hashes(synthesize(fmt, tmp_path / f"run{k}", identities=3, poses=2, size=size, seed=seed,
                               progress=False).root) for k, seed in enumerate((5, 5, 6))]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    changed = set(runs[0].values()) - set(runs[2].values())
    assert len(changed) >= len(runs[0]) // 2  # a new seed changes most files, not one


def test_images_do_not_depend_on_generation_order(tmp_path):
    small = synthesize("deepfashion", tmp_path / "a", identities=2, poses=2, progress=False).root
    large = synthesize("deepfashion", tmp_path / "b", identities=4, poses=3, progress=False).root
    files_large = {p.name: p.read_bytes() for p in large.rglob("*.jpg")}
    files_small = {p.name: p.read_bytes() for p in small.rglob("*.jpg")}
    assert files_small and all(files_large[name] == data for name, data in files_small.items())


def test_output_must_be_empty_unless_overwrite(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(PosebenchError, match="overwrite=True"):
        synthesize("market", tmp_path, identities=2, poses=2, progress=False)
    synthesize("market", tmp_path, identities=3, poses=2, seed=1, progress=True, overwrite=True)
    stale = tmp_path / "bounding_box_train" / "9999_c1s1_000001_01.jpg"
    stale.write_bytes(b"old")
    summary = synthesize("market", tmp_path, identities=2, poses=2, overwrite=True, progress=False)
    assert not stale.exists() and (tmp_path / "notes.txt").read_text() == "keep me"
    assert len(list((tmp_path / "bounding_box_train").iterdir())) == summary.images["train"]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"identities": 1}, "identities must be an integer >= 2"),
    ({"poses": 1}, "poses must be an integer >= 2"),
    ({"size": (16, 176)}, "32..1024"),
    ({"size": (256, 2048)}, "32..1024"),
    ({"test_fraction": 0.0}, r"test_fraction must be in \(0, 1\)"),
    ({"test_fraction": 1.0}, r"test_fraction must be in \(0, 1\)"),
    ({"poses": 7}, "poses <= 6"),
    ({"seed": -1}, "non-negative"),
    ({"format": "coco"}, "format must be one of"),
])
def test_bad_arguments_raise_posebench_error(tmp_path, kwargs, match):
    args = {"format": "deepfashion", "identities": 3, "poses": 2, **kwargs}
    with pytest.raises(PosebenchError, match=match):
        synthesize(args.pop("format"), tmp_path / "out", progress=False, **args)
    assert not (tmp_path / "out").exists()


def test_shared_background_keeps_people_and_poses_and_shares_the_backdrop(tmp_path):
    """One backdrop per person: the pixels outside every figure agree across a person's images; the keypoints
    are those of the default (per-image backdrop) run."""
    from posebench.datasets import manifest
    from posebench.datasets.problems import ProblemLog
    from posebench.images import read_rgb

    synthesize("deepfashion", tmp_path / "a", identities=2, poses=3, size=(64, 44), progress=False)
    synthesize("deepfashion", tmp_path / "b", identities=2, poses=3, size=(64, 44), shared_background=True,
               progress=False)
    for split in ("train", "test"):
        ka = manifest.load("deepfashion", tmp_path / "a", ProblemLog()).splits[split].keypoints
        kb = manifest.load("deepfashion", tmp_path / "b", ProblemLog()).splits[split].keypoints
        assert ka.keys() == kb.keys()
        for stem in ka:
            np.testing.assert_array_equal(ka[stem][0].xy, kb[stem][0].xy)
    train = sorted((tmp_path / "b" / "train").iterdir())
    imgs = [read_rgb(p).astype(int) for p in train if p.name.startswith(train[0].name.split("_")[0])]
    assert len(imgs) == 3
    corner = [img[:6, :6].mean() for img in imgs]  # a corner no figure reaches (JPEG: within a few levels)
    assert max(corner) - min(corner) < 4
    per_image = [read_rgb(p)[:6, :6].mean() for p in sorted((tmp_path / "a" / "train").iterdir())]
    assert max(per_image) - min(per_image) > max(corner) - min(corner)
    with pytest.raises(PosebenchError, match="deepfashion"):
        synthesize("market", tmp_path / "m", identities=2, poses=2, shared_background=True, progress=False)
