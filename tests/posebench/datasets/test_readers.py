"""Readers, manifests and `posebench data` on tiny hand-made roots in the real formats."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tinyroots import BASE_X, BASE_Y, deepfashion_patn, humanart_root, market_root, write_image
from typer.testing import CliRunner

from posebench.cli import app
from posebench.datasets import formats
from posebench.datasets.manifest import pairs_sha256, prepare, read_manifest, stats, verify
from posebench.datasets.names import PairKey
from posebench.datasets.problems import DataError, ProblemLog

runner = CliRunner()


def _errors(problems):
    return [p for p in problems if p.severity == "error"]


# ------------------------------------------------------------------------------------------------ formats


def test_annotation_csv_is_y_first_and_marks_missing(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text(f"name:keypoints_y:keypoints_x\nimg.jpg:{json.dumps(BASE_Y)}:{json.dumps(BASE_X)}\n")
    log = ProblemLog()
    kp = formats.read_annotation_csv(f, (256, 176), log)["img"]
    assert log.problems == []
    assert kp.frame == (256, 176) and kp.format == "openpose18"
    assert tuple(kp.xy[0]) == (88.0, 30.0)  # (x, y) of the nose: x from the SECOND list
    assert not kp.visible[15] and np.isnan(kp.xy[15]).all()
    assert kp.visible.sum() == 17


def test_annotation_csv_problems_have_lines(tmp_path):
    f = tmp_path / "a.csv"
    ys_short = json.dumps(BASE_Y[:17])
    xs_out = json.dumps([200] + BASE_X[1:])  # x=200 is outside the 176-wide frame
    f.write_text("name:keypoints_y:keypoints_x\n"
                 f"a.jpg:{ys_short}:{json.dumps(BASE_X)}\n"
                 f"b.jpg:{json.dumps(BASE_Y)}:{xs_out}\n"
                 "c.jpg:[1,2\n"
                 f"b.jpg:{json.dumps(BASE_Y)}:{json.dumps(BASE_X)}\n"
                 f"../d.jpg:{json.dumps(BASE_Y)}:{json.dumps(BASE_X)}\n")
    log = ProblemLog()
    out = formats.read_annotation_csv(f, (256, 176), log)
    msgs = {(p.line, p.severity): p.message for p in log.problems}
    assert "expected 18 joints" in msgs[(2, "error")]
    assert "outside the 256x176 frame" in msgs[(3, "warning")]
    assert "3 colon-separated fields" in msgs[(4, "error")]
    assert "duplicate annotation" in msgs[(5, "error")]
    assert "contains a path" in msgs[(6, "error")]
    assert not out["b"].visible[0] and out["b"].visible[1]  # out-of-frame joint counts as missing


def test_pairs_csv_problems(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("from,to\na.jpg,b.jpg\na.jpg,a.jpg\na.jpg,b.jpg\nonly-one\n")
    log = ProblemLog()
    pairs = formats.read_pairs_csv(f, log)
    assert pairs == [PairKey("a", "b")]
    assert [(p.line, p.message.split(" ")[0]) for p in log.errors] == [(3, "source"), (4, "duplicate"), (5, "expected")]
    g = tmp_path / "q.csv"
    g.write_text("to,from\na,b\n")
    log = ProblemLog()
    assert formats.read_pairs_csv(g, log) == [] and "header must be 'from,to'" in log.errors[0].message


def test_pairs_txt_is_target_first_and_pins_first_source(tmp_path):
    f = tmp_path / "test_pairs.txt"
    f.write_text("img/MEN/Denim/id_00000080/01_1_front.jpg,img/MEN/Denim/id_00000080/01_2_side.jpg,"
                 "img/MEN/Denim/id_00000080/01_3_back.jpg\n")
    log = ProblemLog()
    pairs = formats.read_pairs_txt(f, log)
    assert pairs == [PairKey("fashionMENDenimid0000008001_2side", "fashionMENDenimid0000008001_1front")]
    assert len(log.warnings) == 1 and "pins the first" in log.warnings[0].message


def test_pose_txt_x40_offset(tmp_path):
    from posebench.datasets.keypoints import lowres256_to_crop176

    xy = np.array([[50 + i, 20 + 10 * i] for i in range(18)], dtype=float)
    xy[3] = [30, 100]  # inside the white padding of the 256x256 image: outside the crop after x-40
    f = tmp_path / "01_1_front.txt"
    np.savetxt(f, xy)
    kp = lowres256_to_crop176(formats.read_pose_txt(f, (256, 256), ProblemLog()))
    assert kp.frame == (256, 176)
    assert tuple(kp.xy[0]) == (10.0, 20.0) and not kp.visible[3]


# ------------------------------------------------------------------------------------------------ deepfashion


def test_deepfashion_root_reads_clean(tmp_path):
    root = deepfashion_patn(tmp_path / "df")
    problems = verify("deepfashion", root, integrity_only=True, progress=False)
    assert problems == []
    report = stats("deepfashion", root)
    assert report["layout"] == "patn"
    assert report["splits"]["train"] | {"joint_visibility": None} == {
        "images": 4, "pairs": 4, "identities": 2, "people": 4, "images_with_keypoints": 4, "groups": 0,
        "joint_visibility": None}
    assert report["splits"]["train"]["joint_visibility"]["left_eye"] == 1.0
    assert report["splits"]["train"]["joint_visibility"]["right_eye"] == 0.0


def test_deepfashion_verify_lists_every_problem(tmp_path):
    root = deepfashion_patn(tmp_path / "df")
    # identity shared across splits, a truncated image, a pair with a missing image, a self-pair
    (root / "test.lst").write_text((root / "test.lst").read_text() + "fashionMENDenimid0000008001_4full.jpg\n")
    write_image(root / "test" / "fashionMENDenimid0000008001_4full.jpg")
    data = (root / "train" / "fashionMENDenimid0000008001_1front.jpg").read_bytes()
    (root / "train" / "fashionMENDenimid0000008001_1front.jpg").write_bytes(data[: len(data) // 3])
    with open(root / "fasion-resize-pairs-train.csv", "a") as fh:
        fh.write("fashionMENDenimid0000008001_1front.jpg,fashionMENDenimid0000008001_9nothere.jpg\n")
        fh.write("fashionMENDenimid0000008001_1front.jpg,fashionMENDenimid0000008001_1front.jpg\n")
    res = runner.invoke(app, ["data", "verify", "-d", "deepfashion", "-r", str(root), "--integrity-only"])
    assert res.exit_code == 2
    out = res.output
    assert "appears in both train and test" in out
    assert "unreadable image" in out and "fashionMENDenimid0000008001_1front.jpg" in out
    assert "9nothere" in out and "is not in split 'train'" in out
    assert "fasion-resize-pairs-train.csv:7: source and target are the same image" in out


def test_deepfashion_pinned_facts(tmp_path):
    root = deepfashion_patn(tmp_path / "df")
    problems = _errors(verify("deepfashion", root, decode_images=False, progress=False))
    text = "\n".join(map(str, problems))
    assert "train images: found 4, the protocol pins 48,674" in text
    assert "test pairs: found 2, the protocol pins 8,570" in text


def test_prepare_writes_manifest_and_keypoints(tmp_path):
    root = deepfashion_patn(tmp_path / "df")
    res = runner.invoke(app, ["data", "prepare", "-d", "deepfashion", "-r", str(root)])
    assert res.exit_code == 0, res.output
    manifest = read_manifest(root / "posebench-manifest" / "manifest.json")
    test = manifest["splits"]["test"]
    assert test["counts"] == {"images": 2, "pairs": 2, "identities": 1, "people": 2}
    assert test["pairs_sha256"] == pairs_sha256([PairKey(a, b) for a, b in test["pairs"]])
    img = test["images"]["fashionMENTees_Tanksid0000122204_1front"]
    assert img["identity"] == "fashionMENTees_Tanksid0000122204" and len(img["sha256"]) == 64
    npz = np.load(root / "posebench-manifest" / "keypoints.npz", allow_pickle=False)
    assert npz["xy"].shape == (6, 18, 2) and npz["frame"].tolist()[0] == [256, 176]
    # the pair hash does not depend on row order
    rows = (root / "fasion-resize-pairs-test.csv").read_text().splitlines()
    (root / "fasion-resize-pairs-test.csv").write_text("\n".join([rows[0]] + rows[1:][::-1]) + "\n")
    _, again = prepare("deepfashion", root, tmp_path / "m2", hash_images=False, progress=False)
    assert again["splits"]["test"]["pairs_sha256"] == test["pairs_sha256"]


def test_prepare_refuses_bad_root_and_writes_nothing(tmp_path):
    root = deepfashion_patn(tmp_path / "df")
    (root / "fasion-resize-annotation-test.csv").write_text("name:keypoints_y:keypoints_x\nx.jpg:[1]:[2]\n")
    with pytest.raises(DataError, match="expected 18 joints"):
        prepare("deepfashion", root, progress=False)
    assert not (root / "posebench-manifest").exists()
    res = runner.invoke(app, ["data", "prepare", "-d", "deepfashion", "-r", str(root)])
    assert res.exit_code == 2 and "fasion-resize-annotation-test.csv:2" in res.output


def test_missing_root_and_files(tmp_path):
    res = runner.invoke(app, ["data", "verify", "-d", "deepfashion", "-r", str(tmp_path / "nope")])
    assert res.exit_code == 2
    (tmp_path / "empty").mkdir()
    res = runner.invoke(app, ["data", "verify", "-d", "deepfashion", "-r", str(tmp_path / "empty")])
    assert res.exit_code == 2 and "no DeepFashion pair files found" in res.output
    res = runner.invoke(app, ["data", "verify", "-d", "deepfasion", "-r", str(tmp_path / "empty")])
    assert res.exit_code == 2 and "Did you mean: deepfashion" in res.output


# ------------------------------------------------------------------------------------------------ market, humanart


def test_market_root(tmp_path):
    root = market_root(tmp_path / "m")
    assert _errors(verify("market", root, integrity_only=True, progress=False)) == []
    report = stats("market", root)
    assert report["layout"] == "reid+pose"
    assert report["splits"]["test"]["images"] == 3  # junk skipped, distractor kept
    assert report["splits"]["test"]["identities"] == 1  # pid 0003; the distractors (0000) are no one
    assert report["splits"]["train"]["pairs"] == 4 and report["splits"]["train"]["identities"] == 2
    text = "\n".join(map(str, _errors(verify("market", root, decode_images=False, progress=False))))
    assert "query images: found 1, the protocol pins 3,368" in text


def test_market_distractor_in_pairs_is_an_error(tmp_path):
    root = market_root(tmp_path / "m")
    with open(root / "market-pairs-test.csv", "a") as fh:
        fh.write("0000_c1s1_000001_01.jpg,0003_c1s1_000100_01.jpg\n")
    text = "\n".join(map(str, verify("market", root, integrity_only=True, progress=False)))
    assert "is a distractor" in text


def test_humanart_root(tmp_path):
    root = humanart_root(tmp_path / "h")
    assert _errors(verify("humanart", root, integrity_only=True, progress=False)) == []
    report = stats("humanart", root)
    val = report["splits"]["validation"]
    assert val["images"] == 2 and val["people"] == 2 and val["groups"] == 1
    assert val["joint_visibility"]["left_ear"] == 0.0 and val["joint_visibility"]["nose"] == 1.0
    text = "\n".join(map(str, _errors(verify("humanart", root, decode_images=False, progress=False))))
    assert "validation scenario dance: 2 images, the protocol pins 250" in text


def test_humanart_bad_json(tmp_path):
    root = humanart_root(tmp_path / "h")
    f = root / "annotations" / "validation_humanart.json"
    data = json.loads(f.read_text())
    data["annotations"][0]["keypoints"] = [1, 2, 3]
    data["annotations"][1]["image_id"] = 999
    f.write_text(json.dumps(data))
    (root / "annotations" / "training_humanart.json").write_text("{not json")
    text = "\n".join(map(str, verify("humanart", root, integrity_only=True, progress=False)))
    assert "malformed JSON" in text
    assert "keypoints must be 17 x (x, y, v)" in text and "unknown image id 999" in text


def test_prepare_refuses_a_truncated_image_and_writes_nothing(tmp_path):
    """`prepare` checks integrity as `verify --integrity-only`: a truncated image is exit 2, no manifest."""
    root = deepfashion_patn(tmp_path / "df")
    ok = runner.invoke(app, ["data", "verify", "-d", "deepfashion", "-r", str(root), "--integrity-only"])
    assert ok.exit_code == 0, ok.output
    bad = root / "train" / "fashionMENDenimid0000008001_1front.jpg"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 3])
    out = tmp_path / "manifest"
    res = runner.invoke(app, ["data", "prepare", "-d", "deepfashion", "-r", str(root), "--out", str(out), "--quiet"])
    assert res.exit_code == 2 and "unreadable image" in res.output and bad.name in res.output
    assert not out.exists()
    # --no-decode skips the check (the file still hashes), as its help says
    res = runner.invoke(app, ["data", "prepare", "-d", "deepfashion", "-r", str(root), "--out", str(out), "--quiet",
                              "--no-decode"])
    assert res.exit_code == 0 and (out / "manifest.json").is_file()
