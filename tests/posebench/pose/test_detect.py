"""`posebench pose detect` and the precomputed-keypoints loader."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from posebench.cli import app
from posebench.datasets.synth import synthesize
from posebench.errors import PosebenchError
from posebench.pose.detect import assign_image_ids, detect_with, letterbox, letterbox_params
from posebench.pose.precomputed import load_detections

runner = CliRunner()


class FakeEstimator:
    """The `predict` interface with known outputs: joint j at `points[j]` (input pixels) for every image."""

    input_size = 512

    def __init__(self, points: np.ndarray) -> None:
        self.points = points
        self.seen: list[torch.Tensor] = []

    def predict(self, images: torch.Tensor, flip_test: bool = True) -> list[list[SimpleNamespace]]:
        self.seen.append(images)
        kpts = np.concatenate([self.points, np.full((17, 1), 0.75)], axis=1)
        return [[SimpleNamespace(keypoints=kpts, score=0.5)] for _ in range(images.shape[0])]


def _write(path: Path, w: int, h: int) -> Path:
    Image.fromarray(np.full((h, w, 3), 255, dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("w, h, scale, ox, oy, new", [
    # landscape 300x200: scale 512/300, height round(341.33) = 341, top padding (512 - 341) // 2 = 85
    (300, 200, 512 / 300, 0, 85, 341),
    # portrait 100x400: scale 1.28, width 128, left padding 192
    (100, 400, 1.28, 192, 0, 128),
])
def test_letterbox_round_trip_exact(tmp_path, w, h, scale, ox, oy, new):
    img = _write(tmp_path / "a.png", w, h)
    box = letterbox_params(h, w, 512)
    assert (box.offset_x, box.offset_y) == (ox, oy)
    padded, _ = letterbox(np.full((h, w, 3), 255, np.uint8), 512)
    if oy:  # centred: black bands of the computed size
        assert padded[:oy].max() == 0 and padded[oy + new:].max() == 0 and padded[oy:oy + new].min() == 255
    else:
        assert padded[:, :ox].max() == 0 and padded[:, ox + new:].max() == 0 and padded[:, ox:ox + new].min() == 255
    # original points -> input points computed by hand -> the fake estimator -> back to the original
    orig = np.stack([np.linspace(0, w, 17), np.linspace(h, 0, 17)], axis=1)
    sx = (new / w) if ox else scale
    sy = scale if ox else (new / h)
    inp = np.stack([orig[:, 0] * sx + ox, orig[:, 1] * sy + oy], axis=1)
    fake = FakeEstimator(inp)
    dets = detect_with(fake, [img], {str(img): 7}, batch_size=2)
    assert len(dets) == 1 and fake.seen[0].shape == (1, 3, 512, 512)
    d = dets[0]
    assert d["image_id"] == 7 and d["category_id"] == 1 and d["score"] == 0.5
    kp = np.asarray(d["keypoints"]).reshape(17, 3)
    np.testing.assert_allclose(kp[:, :2], orig, atol=1e-6)
    np.testing.assert_allclose(kp[:, 2], 0.75)


def test_no_detection_is_a_miss(tmp_path):
    img = _write(tmp_path / "a.png", 64, 32)

    class Empty(FakeEstimator):
        def predict(self, images, flip_test=True):
            return [[] for _ in range(images.shape[0])]

    assert detect_with(Empty(np.zeros((17, 2))), [img], assign_image_ids([img])) == []


@pytest.fixture(scope="module")
def humanart(tmp_path_factory):
    root = tmp_path_factory.mktemp("ha") / "HumanArt"
    synthesize("humanart", root, identities=2, poses=2, size=(96, 128), progress=False)
    return root


def test_tiny_random_cli_end_to_end(humanart, tmp_path):
    out = tmp_path / "dt.json"
    res = runner.invoke(app, ["pose", "detect", "--images", str(humanart / "images"), "--out", str(out),
                              "--estimator", "tiny-random", "--batch-size", "3"])
    assert res.exit_code == 0, res.output
    dets = json.loads(out.read_text())
    mapping = json.loads((tmp_path / "dt.image_ids.json").read_text())
    n_images = len(list((humanart / "images").rglob("*.jpg")))
    assert len(mapping) == n_images == len(dets) and sorted(mapping.values()) == list(range(1, n_images + 1))
    assert list(mapping) == sorted(mapping)
    for d in dets:
        kp = np.asarray(d["keypoints"]).reshape(17, 3)
        assert d["category_id"] == 1 and np.isfinite(kp).all()
        # tiny-random: 128x96 images letterboxed to 512; the argmax skips the padding -> inside the original frame
        assert (kp[:, :2] >= -0.5).all() and (kp[:, 0] <= 128).all() and (kp[:, 1] <= 96).all()
    assert sum(len(v) for v in load_detections(out).values()) == len(dets)


def test_gt_scores_its_images_and_skips_the_rest(humanart, tmp_path):
    """Human-Art's images/ holds the training images too: --gt val.json scores the validation images only and says
    how many others it skipped."""
    gt = humanart / "annotations" / "validation_humanart.json"
    val_ids = {im["id"] for im in json.loads(gt.read_text())["images"]}
    n_folder = len(list((humanart / "images").rglob("*.jpg")))
    out = tmp_path / "dt.json"
    res = runner.invoke(app, ["pose", "detect", "--images", str(humanart / "images"), "--out", str(out),
                              "--estimator", "tiny-random", "--gt", str(gt), "--no-flip"])
    assert res.exit_code == 0, res.output
    skipped = n_folder - len(val_ids)
    assert skipped == 4 and len(val_ids) == 4
    assert (f"note: {skipped} of the {n_folder} images under {humanart / 'images'} are not in {gt} and were skipped "
            f"(e.g. 2D_virtual_human/cartoon/000000000001.jpg") in " ".join(res.output.split())
    assert f"scoring the {len(val_ids)} it names" in " ".join(res.output.split())
    assert f"in {len(val_ids)} images" in res.output
    dets = json.loads(out.read_text())
    assert {d["image_id"] for d in dets} == val_ids  # tiny-random: one person in every scored image
    assert not (tmp_path / "dt.image_ids.json").exists()
    res = runner.invoke(app, ["eval-pose", str(gt), str(out)])
    assert res.exit_code == 0, res.output
    assert set(load_detections(out, gt=gt)) == val_ids


def test_gt_and_folder_in_full_agreement_skip_nothing(humanart, tmp_path):
    gt = humanart / "annotations" / "validation_humanart.json"
    both = json.loads(gt.read_text())
    train = json.loads((humanart / "annotations" / "training_humanart.json").read_text())
    both["images"] += train["images"]
    both["annotations"] += train["annotations"]
    gt_all = tmp_path / "gt.json"
    gt_all.write_text(json.dumps(both))
    out = tmp_path / "dt.json"
    res = runner.invoke(app, ["pose", "detect", "--images", str(humanart / "images"), "--out", str(out),
                              "--estimator", "tiny-random", "--gt", str(gt_all)])
    assert res.exit_code == 0, res.output
    assert "skipped" not in res.output
    assert {d["image_id"] for d in json.loads(out.read_text())} == {im["id"] for im in both["images"]}


def test_gt_image_missing_from_the_folder_exit_2(humanart, tmp_path):
    gt = json.loads((humanart / "annotations" / "validation_humanart.json").read_text())
    gt["images"].append({**gt["images"][0], "id": 99, "file_name": "HumanArt/images/real_human/dance/gone.jpg"})
    bad = tmp_path / "gt.json"
    bad.write_text(json.dumps(gt))
    out = tmp_path / "dt.json"
    res = runner.invoke(app, ["pose", "detect", "--images", str(humanart / "images"), "--out", str(out),
                              "--estimator", "tiny-random", "--gt", str(bad)])
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert f"{bad}: 1 of its 5 images are not under {humanart / 'images'}" in text
    assert "HumanArt/images/real_human/dance/gone.jpg" in text
    assert not out.exists()


@pytest.mark.parametrize(("images", "needle"), [
    ([], "lists no images"),
    ([{"file_name": "a.png"}], "images[0] needs a 'file_name' and an 'id'"),
    # a bare name found in two folders, or two entries claiming one file: ambiguous, never guessed
    ([{"file_name": "a.png", "id": 1}], "ground-truth file names match several images"),
    ([{"file_name": "x/a.png", "id": 1}, {"file_name": "root/x/a.png", "id": 2}], "match several ground-truth"),
])
def test_gt_bad_entries_exit_2(tmp_path, images, needle):
    folder = tmp_path / "root"
    for sub in ("x", "y"):
        (folder / sub).mkdir(parents=True)
        _write(folder / sub / "a.png", 40, 30)
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": images, "annotations": []}))
    res = runner.invoke(app, ["pose", "detect", "--images", str(folder), "--out", str(tmp_path / "dt.json"),
                              "--estimator", "tiny-random", "--gt", str(gt)])
    assert res.exit_code == 2, res.output
    assert str(gt) in " ".join(res.output.split()) and needle in " ".join(res.output.split())
    assert not (tmp_path / "dt.json").exists()


def test_unreadable_image_exit_2(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    _write(folder / "good.png", 40, 30)
    (folder / "broken.jpg").write_bytes(b"not an image")
    res = runner.invoke(app, ["pose", "detect", "--images", str(folder), "--out", str(tmp_path / "dt.json"),
                              "--estimator", "tiny-random"])
    assert res.exit_code == 2
    assert "broken.jpg" in res.output
    assert not (tmp_path / "dt.json").exists()


def test_higherhrnet_offline_without_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("POSEBENCH_OFFLINE", "1")
    folder = tmp_path / "imgs"
    folder.mkdir()
    _write(folder / "a.png", 40, 30)
    res = runner.invoke(app, ["pose", "detect", "--images", str(folder), "--out", str(tmp_path / "dt.json")])
    assert res.exit_code == 2, res.output
    from posebench import weights

    assert weights.get("higherhrnet-w32-coco").filename in res.output
    res = runner.invoke(app, ["pose", "detect", "--images", str(folder), "--out", str(tmp_path / "dt.json"),
                              "--weights", str(tmp_path / "nope.pth")])
    assert res.exit_code == 2 and "nope.pth" in res.output


def _det(image_id: int = 1, **kw) -> dict:
    return {"image_id": image_id, "category_id": 1, "keypoints": [1.0, 2.0, 0.5] * 17, "score": 0.9, **kw}


def test_precomputed_loader(tmp_path):
    p = tmp_path / "dt.json"
    p.write_text("[]")
    assert load_detections(p) == {}
    p.write_text(json.dumps([_det(1), _det(2), _det(1)]))
    got = load_detections(p)
    assert sorted(got) == [1, 2] and len(got[1]) == 2
    p.write_text(json.dumps({"annotations": [_det(3)]}))
    assert list(load_detections(p)) == [3]
    gt = {"images": [{"id": 1}, {"id": 2}], "annotations": []}
    p.write_text(json.dumps([_det(1), _det(5)]))
    with pytest.raises(PosebenchError, match=r"dt\.json: detections\[1\] refers to image id 5"):
        load_detections(p, gt=gt)
    cases = {
        "[1, 2": "not valid JSON",
        json.dumps([_det(1), _det(1, keypoints=[1.0] * 50)]): r"dt\.json: detections\[1\].*51 finite",
        json.dumps([{"image_id": 1, "score": 1.0}]): r"detections\[0\].*no 'keypoints'",
        json.dumps([_det(1), _det(2), _det(2, score=float("nan"))]): r"detections\[2\].*'score' must be a finite",
        json.dumps([_det("a")]): r"detections\[0\]: 'image_id' must be an integer",
        json.dumps(["x"]): r"detections\[0\] is not an object",
        json.dumps({"x": 1}): "list of COCO keypoint results",
    }
    for text, pattern in cases.items():
        p.write_text(text)
        with pytest.raises(PosebenchError, match=pattern) as exc:
            load_detections(p)
        assert str(p) in str(exc.value)


def test_swap_rb_feeds_the_estimator_bgr():
    """Quirk 1: the humansd profile hands the estimator R and B swapped (an RGB array given to mmpose 0.x)."""
    from posebench.pose.detect import detect_arrays

    img = np.zeros((512, 512, 3), dtype=np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 200, 100, 10  # R, G, B
    est = FakeEstimator(np.zeros((17, 2)))
    detect_arrays(est, [img], [1], flip_test=False)
    detect_arrays(est, [img], [1], flip_test=False, swap_rb=True)
    rgb, swapped = (x[0, :, 0, 0] * 255 for x in est.seen)
    np.testing.assert_allclose(rgb.numpy(), [200, 100, 10], atol=1e-3)
    np.testing.assert_allclose(swapped.numpy(), [10, 100, 200], atol=1e-3)
