"""The clean pose profile's deterministic Human-Art target frame (quirk 6): resize so the image covers 512x512,
centre-crop, joints outside become invisible, empty persons dropped, areas from the visible joints; the
`posebench data targets` export; and scoring in that frame."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from posebench.cli import app
from posebench.humanart_targets import crop_annotation, target_frame
from posebench.results.schema import read_results

runner = CliRunner()
FRAME = (512, 512)


def _ann(points: dict[int, tuple[float, float]], v: float = 2.0) -> dict:
    kp = np.zeros((17, 3))
    for j, (x, y) in points.items():
        kp[j] = (x, y, v)
    return {"image_id": 7, "keypoints": kp.reshape(-1).tolist(), "area": 1e6, "bbox": [0, 0, 1e3, 1e3]}


def test_landscape_known_answer():
    f = target_frame(100, 200, FRAME)  # H x W: shorter side 100 -> 512, width 1024, crop 256 px each side
    assert (f.scale_x, f.scale_y, f.offset_x, f.offset_y) == (5.12, 5.12, 256, 0)
    np.testing.assert_allclose(f.to_frame(np.array([100.0, 50.0])), [256.0, 256.0])
    np.testing.assert_allclose(f.to_frame(np.array([150.0, 10.0])), [512.0, 51.2])  # right edge: outside
    assert not f.inside(f.to_frame(np.array([150.0, 10.0])))
    assert f.inside(f.to_frame(np.array([149.9, 10.0])))


def test_portrait_known_answer():
    f = target_frame(300, 100, FRAME)  # width 100 -> 512, height 1536, crop 512 px top and bottom
    assert (f.offset_x, f.offset_y) == (0, 512) and f.scale_y == pytest.approx(5.12)
    np.testing.assert_allclose(f.to_frame(np.array([50.0, 150.0])), [256.0, 256.0])
    np.testing.assert_allclose(f.to_frame(np.array([0.0, 100.0])), [0.0, 0.0])
    assert not f.inside(f.to_frame(np.array([10.0, 99.0])))


def test_square_image_is_a_plain_resize():
    f = target_frame(128, 128, FRAME)
    assert (f.scale_x, f.scale_y, f.offset_x, f.offset_y) == (4.0, 4.0, 0, 0)


def test_joint_outside_the_crop_becomes_invisible_and_area_comes_from_visible_joints():
    f = target_frame(100, 200, FRAME)
    out = crop_annotation(_ann({0: (100, 50), 5: (110, 80), 9: (20, 50)}), f)  # joint 9 is left of the crop
    kp = np.asarray(out["keypoints"]).reshape(17, 3)
    np.testing.assert_allclose(kp[0], [256.0, 256.0, 2.0])
    np.testing.assert_allclose(kp[5], [307.2, 409.6, 2.0])
    np.testing.assert_allclose(kp[9], [0.0, 0.0, 0.0])
    assert out["num_keypoints"] == 2 and out["image_id"] == 7
    np.testing.assert_allclose(out["bbox"], [256.0, 256.0, 51.2, 153.6])
    assert out["area"] == pytest.approx(51.2 * 153.6)  # not the annotated 1e6, scaled


def test_person_fully_outside_is_dropped():
    f = target_frame(100, 200, FRAME)
    assert crop_annotation(_ann({0: (10, 50), 5: (30, 80), 16: (190, 90)}), f) is None
    assert crop_annotation(_ann({0: (100, 50)}, v=0.0), f) is None  # no visible joint to begin with


@pytest.fixture(scope="module")
def landscape_root(tmp_path_factory):
    """A synthetic Human-Art root with 160x96 (W x H) validation images."""
    from posebench.datasets.synth import synthesize

    root = tmp_path_factory.mktemp("ha_land") / "ha"
    synthesize("humanart", root, identities=2, poses=2, size=(96, 160), seed=3, progress=False)
    return root


def test_data_targets_cli_writes_the_cropped_frame(landscape_root, tmp_path):
    out = tmp_path / "t" / "targets.json"
    r = runner.invoke(app, ["data", "targets", "--protocol", "humanart-val", "--root", str(landscape_root),
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    coco = json.loads(out.read_text())
    val = json.loads((landscape_root / "annotations" / "validation_humanart.json").read_text())
    assert len(coco["images"]) == len(val["images"])
    assert {im["file_name"] for im in coco["images"]} == {im["file_name"] for im in val["images"]}
    assert all(im["width"] == 512 and im["height"] == 512 for im in coco["images"])
    assert coco["info"]["pose_profile"]["name"] == "clean" and coco["info"]["pose_profile"]["version"] == 1
    frame = coco["images"][0]["posebench_frame"]
    wide = round(160 * 512 / 96)  # 853: the resized width, so x scales by 853 / 160
    assert frame["scale"] == [wide / 160, 512 / 96] and frame["offset"] == [(wide - 512) // 2, 0]
    assert 0 < len(coco["annotations"]) <= len(val["annotations"])
    for a in coco["annotations"]:
        kp = np.asarray(a["keypoints"]).reshape(17, 3)
        vis = kp[:, 2] > 0
        assert vis.any() and np.all((kp[vis, :2] >= 0) & (kp[vis, :2] < 512))
        assert a["area"] == pytest.approx(a["bbox"][2] * a["bbox"][3])
    assert [a["id"] for a in coco["annotations"]] == list(range(1, len(coco["annotations"]) + 1))
    # the humansd profile scores in the annotated frame: no crop targets to export
    r = runner.invoke(app, ["data", "targets", "--protocol", "humanart-val", "--root", str(landscape_root),
                            "--out", str(tmp_path / "h.json"), "--profile", "humansd"])
    assert r.exit_code == 2 and "annotated frame" in r.output


def test_perfect_detections_in_the_crop_frame_score_one(landscape_root, tmp_path):
    targets = tmp_path / "targets.json"
    assert runner.invoke(app, ["data", "targets", "--protocol", "humanart-val", "--root", str(landscape_root),
                               "--out", str(targets)]).exit_code == 0
    coco = json.loads(targets.read_text())
    pred = tmp_path / "pred"
    for im in coco["images"]:  # "generated" images at the protocol resolution, named by key
        (pred / im["key"]).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (512, 512)).save(pred / f"{im['key']}.png")
    dets = [{"image_id": a["image_id"], "category_id": 1, "score": 1.0,
             "keypoints": [v if k % 3 < 2 else float(v > 0) for k, v in enumerate(a["keypoints"])]}
            for a in coco["annotations"]]
    dt = tmp_path / "dt.json"
    dt.write_text(json.dumps(dets))
    out = tmp_path / "res.json"
    r = runner.invoke(app, ["eval", "--protocol", "humanart-val", "--root", str(landscape_root), "--pred",
                            str(pred), "--detections", str(dt), "--metrics", "ap,cap,pce", "--out", str(out)])
    assert r.exit_code == 0, r.output
    res = read_results(out)
    assert res["metrics"]["ap"]["value"] == pytest.approx(1.0) and res["metrics"]["pce"]["value"] == 0.0
    # clean CAP never matches a person the crop left with one visible joint (the cosine is undefined)
    lone = sum(a["num_keypoints"] < 2 for a in coco["annotations"])
    assert (res["metrics"]["cap"]["value"] == pytest.approx(1.0)) == (lone == 0)
    assert res["predictions"]["gt_rescaled"] == 0 and not any("rescaled" in w for w in res["warnings"])
    # the same detections against the uncropped annotations (humansd's frame) do not score 1
    out_h = tmp_path / "res_h.json"
    r = runner.invoke(app, ["eval", "--protocol", "humanart-val", "--root", str(landscape_root), "--pred",
                            str(pred), "--detections", str(dt), "--metrics", "ap", "--out", str(out_h),
                            "--profile", "humansd"])
    assert r.exit_code == 0, r.output
    assert read_results(out_h)["metrics"]["ap"]["value"] < 0.5


def test_custom_pose_profile_file_is_non_canonical(landscape_root, tmp_path):
    from importlib import resources

    text = resources.files("posebench.protocols").joinpath("pose_profiles", "clean.yaml").read_text()
    mine = tmp_path / "mine.yaml"
    mine.write_text(text.replace("name: clean", "name: mine").replace("pce_score_threshold: 0.1",
                                                                       "pce_score_threshold: 0.5"))
    pred = tmp_path / "pred"
    val = json.loads((landscape_root / "annotations" / "validation_humanart.json").read_text())
    for im in val["images"]:
        rel = im["file_name"].removeprefix("HumanArt/").split("/")
        (pred / rel[-2]).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (512, 512)).save(pred / rel[-2] / (rel[-1].rsplit(".", 1)[0] + ".png"))
    dt = tmp_path / "dt.json"
    dt.write_text("[]")
    out = tmp_path / "res.json"
    r = runner.invoke(app, ["eval", "--protocol", "humanart-val", "--root", str(landscape_root), "--pred",
                            str(pred), "--detections", str(dt), "--metrics", "pce", "--out", str(out),
                            "--profile", str(mine)])
    assert r.exit_code == 0, r.output
    res = read_results(out)
    assert res["profile"]["name"] == "mine" and res["profile"]["version"] == 1
    assert any("custom pose profile mine" in reason for reason in res["non_canonical_reasons"])
