"""Pose accuracy (AP, AP(m), CAP, PCE) in `posebench eval` for the image protocols, on synthetic DeepFashion.

A "perfect" estimator stub (the `predict` interface) recognises each dataset image by its exact letterboxed pixels
and returns that image's annotated keypoints: on `oracle` predictions (the target itself) it finds the target's
pose (known answer AP = CAP = 1, PCE = 0); on `copy-source` predictions it finds the source's pose (AP < 1). The
values are checked against `evaluate_pose` called on a ground truth built here from the annotation CSV by hand.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from posebench.cli import app
from posebench.results.schema import read_results

runner = CliRunner()
SIZE = (256, 176)
# COCO-17 joint k is OpenPose-18 joint OP18_OF_COCO17[k]; OpenPose-18 in the PATN/GFLA label order posebench uses
# (..., 14 left eye, 15 right eye, 16 left ear, 17 right ear)
OP18_OF_COCO17 = [0, 14, 15, 16, 17, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Synthetic DeepFashion at the protocol size with oracle and copy-source predictions."""
    from posebench.datasets.synth import synthesize

    base = tmp_path_factory.mktemp("pose-eval")
    root = base / "df"
    synthesize("deepfashion", root, identities=3, poses=3, size=SIZE, seed=3, test_fraction=0.4, progress=False)
    pairs = [ln.split(",") for ln in (root / "fasion-resize-pairs-test.csv").read_text().split()[1:]]
    for name, pick in (("oracle", 1), ("copy-source", 0)):
        d = base / name
        d.mkdir()
        for p in pairs:
            Image.open(root / "test" / p[pick]).convert("RGB").save(d / f"{Path(p[0]).stem}__{Path(p[1]).stem}.png")
    return {"base": base, "root": root, "pairs": pairs}


def _annotations(root: Path) -> dict[str, np.ndarray]:
    """COCO-17 (17, 3) [x, y, v] per test image, from the annotation CSV by hand (v = 2 visible, 0 missing)."""
    out = {}
    for line in (root / "fasion-resize-annotation-test.csv").read_text().splitlines()[1:]:
        name, ys, xs = line.split(":")
        y, x = np.asarray(json.loads(ys), float), np.asarray(json.loads(xs), float)
        kp = np.zeros((17, 3))
        for k, j in enumerate(OP18_OF_COCO17):
            if x[j] >= 0 and y[j] >= 0:
                kp[k] = (x[j], y[j], 2.0)
        out[name] = kp
    return out


class PerfectEstimator:
    """Recognises a dataset image from its letterboxed pixels and returns its annotated joints (input pixels)."""

    def __init__(self, root: Path, input_size: int = 256, scale: int = 1) -> None:
        """`scale`: the generated images are the dataset images enlarged `scale` times (nearest neighbour)."""
        from posebench.images import read_rgb
        from posebench.pose.detect import letterbox

        self.input_size = input_size
        self.table: dict[str, np.ndarray] = {}
        for name, kp in _annotations(root).items():
            img = read_rgb(root / "test" / name).repeat(scale, axis=0).repeat(scale, axis=1)
            padded, box = letterbox(img, self.input_size)
            joints = np.zeros((17, 3))
            vis = kp[:, 2] > 0
            joints[vis, :2] = box.to_input(kp[vis, :2] * scale)
            joints[vis, 2] = 1.0
            self.table[self._key(padded)] = joints
        self.calls = 0

    @staticmethod
    def _key(img: np.ndarray) -> str:
        return hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest()

    def predict(self, images, flip_test: bool = True):
        self.calls += 1
        arrays = (images.permute(0, 2, 3, 1) * 255).round().byte().cpu().numpy()
        return [[SimpleNamespace(keypoints=self.table[self._key(a)], score=1.0)] for a in arrays]


@pytest.fixture
def perfect(world, monkeypatch):
    """Install the stub as what `load_estimator` returns; records the names asked for."""
    stub = PerfectEstimator(world["root"])
    asked: list[str] = []

    def load(name, *, weights=None, device="cpu"):
        asked.append(name)
        return stub

    monkeypatch.setattr("posebench.pose.detect.load_estimator", load)
    return SimpleNamespace(stub=stub, asked=asked)


def _run(world, pred: str | Path, out: str, metrics=("ap", "ap_m", "cap", "pce"), **kw):
    from posebench.run.evaluator import EvalConfig, evaluate

    cfg = EvalConfig(protocol="deepfashion-256x176", root=world["root"], pred=world["base"] / pred,
                     out=world["base"] / out, metrics=tuple(metrics), batch_size=4, progress=False, **kw)
    return evaluate(cfg)


def _per_image(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, ln.split(","), strict=True)) for ln in lines[1:]]
    return {(r["source"], r["target"]): r for r in rows}


def test_oracle_known_answer(world, perfect):
    r = _run(world, "oracle", "oracle.json", metrics=("ssim", "ap", "ap_m", "cap", "pce"))
    assert perfect.asked == ["higherhrnet-w32-coco"]  # the default estimator of the image protocols
    m = r["metrics"]
    assert m["ap"]["value"] == pytest.approx(1.0) and m["cap"]["value"] == pytest.approx(1.0)
    assert m["pce"]["value"] == 0.0
    assert m["ap"]["higher_is_better"] is True and m["pce"]["higher_is_better"] is False
    assert m["ap"]["stderr"] is None and m["ap"]["n"] == len(world["pairs"])
    details = m["ap"]["details"]
    assert details["profile"] == "clean" and details["n_gt"] == details["n_dt"] == len(world["pairs"])
    assert details["estimator"]["name"] == "higherhrnet-w32-coco"
    assert r["env"]["pose_estimator"]["name"] == "higherhrnet-w32-coco"
    assert m["ap_m"]["value"] == pytest.approx(1.0)  # the synthetic people at 256x176 are medium-sized (32² to 96²)
    assert not any("synthetic-domain" in reason for reason in r["non_canonical_reasons"])
    rows = _per_image(world["base"] / "oracle.per_image.csv")
    assert len(rows) == len(world["pairs"]) and all(float(row["pce"]) == 0.0 for row in rows.values())
    assert "ssim" in m and m["ssim"]["value"] == pytest.approx(1.0)


def test_copy_source_is_worse_and_matches_evaluate_pose(world, perfect):
    """copy-source: the stub finds the source's pose, so AP < 1; every value equals `evaluate_pose` on a ground
    truth built from the annotation CSV and detections from `detect_with` on the generated files."""
    from posebench.metrics.pose import evaluate_pose
    from posebench.pose.detect import detect_with

    r = _run(world, "copy-source", "copy.json")
    m = r["metrics"]
    assert m["ap"]["value"] < 1.0 and m["cap"]["value"] <= 1.0
    assert m["pce"]["value"] == 0.0  # one person found per image all the same

    keys = sorted((Path(s).stem, Path(t).stem) for s, t in world["pairs"])
    ann = _annotations(world["root"])
    files = [world["base"] / "copy-source" / f"{s}__{t}.png" for s, t in keys]
    gt = {"images": [{"id": i + 1, "file_name": f.name, "height": SIZE[0], "width": SIZE[1]}
                     for i, f in enumerate(files)],
          "annotations": [{"image_id": i + 1, "keypoints": ann[f"{t}.jpg"].reshape(-1).tolist()}
                          for i, (_, t) in enumerate(keys)],
          "categories": [{"id": 1, "name": "person"}]}
    dets = detect_with(perfect.stub, files, {str(f): i + 1 for i, f in enumerate(files)})
    ref = evaluate_pose(gt, dets, profile="clean")
    for name in ("ap", "cap", "pce"):
        assert m[name]["value"] == pytest.approx(ref[name], abs=1e-12), name
    if ref["ap_m"] is None:
        assert math.isnan(m["ap_m"]["value"]) and "undefined" in m["ap_m"]["details"]
    else:
        assert m["ap_m"]["value"] == pytest.approx(ref["ap_m"], abs=1e-12)
    rows = _per_image(world["base"] / "copy.per_image.csv")
    by_id = {row["image_id"]: row["error"] for row in ref["per_image_pce"]}
    assert [float(rows[k]["pce"]) for k in keys] == [float(by_id[i + 1]) for i in range(len(keys))]


def test_gt_is_rescaled_to_the_generated_size(world, monkeypatch, tmp_path):
    """Generated images at twice the protocol size (pose metrics only, so no metric resizes them): the ground truth
    is rescaled to the generated image, and a stub finding the doubled target pose scores AP = CAP = 1."""
    pred = tmp_path / "big"
    pred.mkdir()
    for f in sorted((world["base"] / "oracle").iterdir()):
        Image.open(f).resize((2 * SIZE[1], 2 * SIZE[0]), Image.NEAREST).save(pred / f.name)
    stub = PerfectEstimator(world["root"], input_size=512, scale=2)
    monkeypatch.setattr("posebench.pose.detect.load_estimator", lambda name, **kw: stub)
    r = _run(world, pred, "big.json")
    assert r["metrics"]["ap"]["value"] == pytest.approx(1.0) and r["metrics"]["cap"]["value"] == pytest.approx(1.0)
    assert stub.calls == 2  # 6 pairs in batches of 4: each generated image decoded and detected once
    # at twice the size every person is large: AP(m) is undefined, reported as NaN and said so
    ap_m = r["metrics"]["ap_m"]
    assert math.isnan(ap_m["value"]) and ap_m["details"]["undefined"] == "no ground truth in the medium area range"


def test_cli_tiny_random_is_non_canonical(world):
    out = world["base"] / "tiny.json"
    res = runner.invoke(app, ["eval", "--protocol", "deepfashion-256x176", "--root", str(world["root"]),
                              "--pred", str(world["base"] / "oracle"), "--out", str(out), "--metrics", "ssim,ap",
                              "--pose-estimator", "tiny-random", "--no-pose-flip"])
    assert res.exit_code == 0, res.output
    r = read_results(out)
    assert set(r["metrics"]) == {"ssim", "ap"}
    assert 0.0 <= r["metrics"]["ap"]["value"] <= 1.0
    assert r["canonical"] is False
    assert any("synthetic-domain / random estimator" in reason for reason in r["non_canonical_reasons"])
    assert any("synthetic-domain" in w for w in r["warnings"])
    assert r["env"]["pose_estimator"] == {"name": "tiny-random", "weights": None, "weights_sha256": None,
                                          "flip_test": False}
    assert "ap ↑" in res.output  # the results table prints it like the others
    assert "pce" in (world["base"] / "tiny.per_image.csv").read_text().splitlines()[0].split(",")


def test_cli_refusals(world, tmp_path):
    base = ["eval", "--protocol", "deepfashion-256x176", "--root", str(world["root"]),
            "--pred", str(world["base"] / "oracle"), "--out", str(tmp_path / "x.json")]
    res = runner.invoke(app, [*base, "--metrics", "ssim", "--pose-estimator", "tiny-random"])
    assert res.exit_code == 2 and "--pose-estimator" in res.output and "is asked for none" in res.output
    res = runner.invoke(app, [*base, "--no-pose-flip"])
    assert res.exit_code == 2 and "--no-pose-flip" in res.output
    res = runner.invoke(app, [*base, "--metrics", "ap", "--detections", str(tmp_path / "d.json")])
    assert res.exit_code == 2 and "--detections" in res.output
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("row", ["missing", "all-invisible"])
def test_target_without_keypoints(world, tmp_path, row):
    """No annotation row: the dataset reader's error; a row of -1 only: the pose metrics' own error (exit 2 both,
    naming the target, nothing written)."""
    root = tmp_path / "df"
    shutil.copytree(world["root"], root)
    target = world["pairs"][0][1]
    csv = root / "fasion-resize-annotation-test.csv"
    lines = csv.read_text().splitlines()
    if row == "missing":
        lines = [ln for ln in lines if not ln.startswith(f"{target}:")]
    else:
        lines = [f"{target}:{[-1] * 18}:{[-1] * 18}" if ln.startswith(f"{target}:") else ln for ln in lines]
    csv.write_text("\n".join(lines) + "\n")
    res = runner.invoke(app, ["eval", "--protocol", "deepfashion-256x176", "--root", str(root),
                              "--pred", str(world["base"] / "oracle"), "--out", str(tmp_path / "x.json"),
                              "--metrics", "ap", "--pose-estimator", "tiny-random"])
    assert res.exit_code == 2, res.output
    assert Path(target).stem in res.output and "keypoints" in res.output and not (tmp_path / "x.json").exists()
    if row == "all-invisible":
        assert "pose metrics need the keypoints of target" in res.output and "only invisible" in res.output


def test_two_processes_match_one(world, tmp_path, free_port):
    """torchrun, 2 CPU processes (gloo): gathered detections and ground truth give one process's numbers."""
    one = tmp_path / "one.json"
    common = ["--protocol", "deepfashion-256x176", "--root", str(world["root"]), "--pred",
              str(world["base"] / "copy-source"), "--metrics", "ssim,ap,ap_m,cap,pce", "--pose-estimator",
              "tiny-random", "--batch-size", "2"]
    res = runner.invoke(app, ["eval", *common, "--out", str(one)])
    assert res.exit_code == 0, res.output
    two = tmp_path / "two.json"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--nproc_per_node", "2", "--master_port", str(free_port), "-m", "posebench", "eval",
           *common, "--out", str(two)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    a, b = read_results(one), read_results(two)
    assert b["env"]["processes"] == 2
    for name in ("ssim", "ap", "ap_m", "cap", "pce"):
        va, vb = a["metrics"][name]["value"], b["metrics"][name]["value"]
        assert (math.isnan(va) and math.isnan(vb)) or vb == pytest.approx(va, abs=1e-9), name
        assert a["metrics"][name]["details"].get("n_dt") == b["metrics"][name]["details"].get("n_dt")
    assert (tmp_path / "one.per_image.csv").read_text() == (tmp_path / "two.per_image.csv").read_text()
