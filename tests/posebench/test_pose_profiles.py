"""Pose-metric profiles as versioned YAML files (posebench.protocols.pose_profile): the built-ins, validation that
names the file, the content hash, custom profiles in `evaluate_pose` and `eval-pose`."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from posebench.cli import app
from posebench.metrics.pose import evaluate_pose
from posebench.protocols import POSE_PROFILE_NAMES, ProfileError
from posebench.protocols.pose_profile import POSE_PROFILES, get_pose_profile, is_custom, load_pose_profile

runner = CliRunner()


def _builtin_text(name: str) -> str:
    return resources.files("posebench.protocols").joinpath("pose_profiles", f"{name}.yaml").read_text()


def _write(tmp_path, data: dict, name: str = "mine.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_builtins_are_versioned_files():
    assert POSE_PROFILES.names() == ["clean", "humansd"] == sorted(POSE_PROFILE_NAMES)
    for name in POSE_PROFILES.names():
        p = POSE_PROFILES.get(name)
        assert p.version == 1 and p.description and len(p.sha256) == 64
        assert p.changelog[0] == {"version": 1, "date": "2026-11-24", "change": "first release as a file"}
        assert p.meta() == {"name": name, "version": 1, "kind": "pose", "sha256": p.sha256}
        assert p.max_dets == 20 and len(p.sigmas) == 17
    clean, hs = POSE_PROFILES.get("clean"), POSE_PROFILES.get("humansd")
    # one setting per quirk of the notes' table
    assert (clean.estimator_input, hs.estimator_input) == ("rgb", "rb-swapped")  # 1
    assert (clean.cap_similarity, hs.cap_similarity) == ("clean", "humansd")  # 2, 9
    assert (clean.gt_area, hs.gt_area) == ("given-or-visible-joints", "placeholders")  # 3
    assert (clean.refine_fill, hs.refine_fill) == (True, False)  # 4
    assert (clean.aggregation, clean.batch_size, hs.aggregation, hs.batch_size) == ("dataset", None, "batches", 10)
    assert (clean.target_frame, hs.target_frame) == ("center-crop", "annotated")  # 6
    assert (clean.pce_score_threshold, clean.pce_oks_nms_threshold) == (0.1, 0.9)  # 7
    assert (hs.pce_score_threshold, hs.pce_oks_nms_threshold) == (None, None)
    assert (clean.pce_images, hs.pce_images) == ("every-image", "first-n-positions")  # 8
    assert (clean.visibility_threshold, hs.visibility_threshold) == (0.0, 0.02)  # 10


def test_file_hash_ignores_comments_and_changes_with_a_setting(tmp_path):
    text = _builtin_text("clean")
    same = tmp_path / "same.yaml"
    same.write_text("# a comment of mine\n" + text)
    loaded = load_pose_profile(same)
    assert loaded.sha256 == POSE_PROFILES.get("clean").sha256 and not is_custom(loaded)
    data = yaml.safe_load(text)
    data["pce_score_threshold"] = 0.3
    changed = load_pose_profile(_write(tmp_path, data))
    assert changed.sha256 != POSE_PROFILES.get("clean").sha256 and is_custom(changed)
    assert changed.pce_score_threshold == 0.3


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.update(refine_fil=True), "unknown key 'refine_fil'; did you mean 'refine_fill'"),
    (lambda d: d.update(refine_fill="yes"), "refine_fill must be true or false"),
    (lambda d: d.update(aggregation="images"), "aggregation must be one of dataset, batches"),
    (lambda d: d.update(batch_size=10), "batch_size must be null"),
    (lambda d: d.update(aggregation="batches"), "batch_size must be a positive integer"),
    (lambda d: d.update(sigmas=[0.1] * 16), "sigmas must be a list of 17"),
    (lambda d: d.update(pce_score_threshold=2), "pce_score_threshold must be a number in [0, 1] or null"),
    (lambda d: d.update(max_dets=100), "max_dets must be 20"),
    (lambda d: d.update(version="1"), "version must be a positive integer"),
    (lambda d: d.pop("target_frame"), "missing key(s) target_frame"),
])
def test_bad_files_are_refused_naming_the_file(tmp_path, edit, message):
    data = yaml.safe_load(_builtin_text("clean"))
    edit(data)
    path = _write(tmp_path, data)
    with pytest.raises(ProfileError) as err:
        load_pose_profile(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_invalid_yaml_and_unknown_names(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [oops\n")
    with pytest.raises(ProfileError, match=str(bad)):
        get_pose_profile(str(bad))
    with pytest.raises(ProfileError, match="unknown pose-metric profile 'legacy'"):
        get_pose_profile("legacy")
    with pytest.raises(ProfileError, match="does not exist"):
        get_pose_profile(tmp_path / "missing.yaml")


_TEMPLATE = np.array([
    (0.50, 0.05), (0.45, 0.03), (0.55, 0.03), (0.40, 0.06), (0.60, 0.06), (0.30, 0.20), (0.70, 0.20),
    (0.20, 0.40), (0.80, 0.40), (0.15, 0.55), (0.85, 0.55), (0.38, 0.55), (0.62, 0.55), (0.37, 0.78),
    (0.63, 0.78), (0.36, 1.00), (0.64, 1.00),
])


def _person(x0: float, y0: float, h: float, v: float) -> list[float]:
    xy = np.stack([x0 + _TEMPLATE[:, 0] * h / 2, y0 + _TEMPLATE[:, 1] * h], axis=1)
    return np.concatenate([xy, np.full((17, 1), v)], axis=1).reshape(-1).tolist()


def test_custom_profile_in_evaluate_pose_and_the_cli(tmp_path):
    gt = {"images": [{"id": 1}], "annotations": [{"image_id": 1, "keypoints": _person(100, 100, 100, 2)}]}
    dets = [{"image_id": 1, "keypoints": _person(100, 100, 100, 0.9), "score": 0.9},
            {"image_id": 1, "keypoints": _person(100, 100, 100, 0.9), "score": 0.8}]  # a duplicate
    data = yaml.safe_load(_builtin_text("clean"))
    data.update(name="clean-no-nms", pce_oks_nms_threshold=None)
    path = _write(tmp_path, data)
    res = evaluate_pose(gt, dets, profile=path)
    assert res["profile"] == "clean-no-nms" and res["profile_sha256"] == load_pose_profile(path).sha256
    assert res["pce"] == 1.0 and evaluate_pose(gt, dets, profile="clean")["pce"] == 0.0
    gt_path, dt_path, out = tmp_path / "gt.json", tmp_path / "dt.json", tmp_path / "res.json"
    gt_path.write_text(json.dumps(gt))
    dt_path.write_text(json.dumps(dets))
    r = runner.invoke(app, ["eval-pose", str(gt_path), str(dt_path), "--profile", str(path), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["profile_version"] == 1
    data["refine_fill"] = "no"
    bad = _write(tmp_path, data, "bad.yaml")
    r = runner.invoke(app, ["eval-pose", str(gt_path), str(dt_path), "--profile", str(bad)])
    assert r.exit_code == 2 and "bad.yaml" in r.output and "refine_fill" in r.output
