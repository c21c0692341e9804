"""Inception Score and PCKh: against independent computations (IS from the logits with scipy's relative entropy;
PCKh on hand-built known answers), end to end through `posebench eval`, and on bad input."""

from __future__ import annotations

import json

import numpy as np
import peer_scripts as peers
import pytest
import torch
from scipy.special import rel_entr, softmax
from typer.testing import CliRunner

from posebench.cli import app
from posebench.datasets.keypoints import Keypoints
from posebench.errors import PosebenchError
from posebench.metrics import IS, PCKh
from posebench.metrics.inception_score import inception_score


def _direct_is(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """IS straight from its definition: per split exp(mean_i KL(p(y|x_i) || p(y))), KL by scipy's rel_entr."""
    p = softmax(np.asarray(logits, dtype=np.float64), axis=1)
    n = len(p)
    scores = []
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]
        scores.append(np.exp(np.mean([rel_entr(row, part.mean(axis=0)).sum() for row in part])))
    return float(np.mean(scores)), float(np.std(scores))


def test_inception_score_formula():
    logits = np.random.default_rng(0).normal(scale=3, size=(53, 10))  # 53: splits of 5 and 6 images
    got = inception_score(softmax(logits, axis=1))
    assert got == pytest.approx(_direct_is(logits), rel=1e-12)
    assert inception_score(np.full((20, 4), 0.25))[0] == pytest.approx(1.0)  # no information: IS 1
    onehot = np.eye(10)[np.arange(40) % 10]
    assert inception_score(onehot)[0] == pytest.approx(4.0)  # 4 images per split, each a different class
    with pytest.raises(PosebenchError, match="at least 10 generated images"):
        inception_score(np.full((9, 3), 1 / 3))


@pytest.fixture
def tiny_is(tmp_path, monkeypatch):
    from posebench.metrics import features

    monkeypatch.setattr(features, "tv_inception_v3_skeleton", peers.TinyInception)
    net = peers.tiny_inception(seed=5)
    torch.save(net.state_dict(), tmp_path / "tiny.pth")
    return net, tmp_path / "tiny.pth"


def test_is_class_equals_the_definition(tiny_is):
    net, weights = tiny_is
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (23, 64, 48, 3)).astype(np.uint8)
    metric = IS("clean", weights=str(weights))
    metric.update(torch.from_numpy(images[:10]).permute(0, 3, 1, 2))
    metric.update(torch.from_numpy(images[10:]).permute(0, 3, 1, 2))
    mean, std = peers.inception_score_of(net, images)
    got = metric.summary()
    assert got["value"] == pytest.approx(mean, rel=1e-5) and got["stderr"] == pytest.approx(std, rel=1e-3, abs=1e-6)
    assert got["n"] == 23 and got["details"]["splits"] == 10
    short = IS("clean", classifier=metric.classifier)
    short.update(torch.from_numpy(images[:5]).permute(0, 3, 1, 2))
    with pytest.raises(PosebenchError, match="at least 10"):
        short.compute()


def _kp(points: dict[int, tuple[float, float]], frame=(256, 176)) -> Keypoints:
    xy = np.full((18, 2), np.nan, dtype=np.float32)
    vis = np.zeros(18, dtype=bool)
    for j, (x, y) in points.items():
        xy[j], vis[j] = (x, y), True
    return Keypoints(xy, vis, frame, "openpose18")


def _det(points: dict[int, tuple[float, float]], score: float, image_id: int = 1) -> dict:
    """A COCO-17 detection from OpenPose-18 joint positions (nose 0, eyes/ears 14-17, limbs 2-13)."""
    from posebench.datasets.keypoints import COCO17_NAMES, OPENPOSE18_NAMES

    kp = np.zeros((17, 3))
    for j, (x, y) in points.items():
        name = OPENPOSE18_NAMES[j]
        if name in COCO17_NAMES:
            kp[COCO17_NAMES.index(name)] = (x, y, 0.9)
    return {"image_id": image_id, "category_id": 1, "keypoints": kp.reshape(-1).tolist(), "score": score}


def test_pckh_known_answers():
    # head joints: nose (50, 40), right eye (46, 36), left eye (54, 36), ears (42, 38), (58, 38), neck (50, 60):
    # head box 16 wide (42..58) and 24 high (36..60), so a joint counts within 8 px in x and 12 px in y
    head = {0: (50, 40), 14: (46, 36), 15: (54, 36), 16: (42, 38), 17: (58, 38), 1: (50, 60)}
    target = _kp({**head, 2: (40, 70), 5: (60, 70), 3: (35, 100), 6: (65, 100)})  # 10 visible joints
    pred = {**head, 2: (47.9, 70), 5: (60, 81.9), 3: (35 + 8, 100), 6: (65, 100 + 12)}  # right, right, edge, edge
    m = PCKh()
    m.update([[_det(pred, 0.8), _det({j: (0, 0) for j in pred}, 0.3)]], [target])  # the best person is used
    # OpenPose's neck comes from the detected shoulders' midpoint: (47.9 + 60) / 2 = 53.95, (70 + 81.9) / 2 = 75.95,
    # 15.95 px below the target neck: wrong; then nose, eyes, ears, both shoulders right; both elbows on the
    # boundary (strict <): wrong -> 7 of 10
    got = m.summary()
    assert (got["details"]["right"], got["details"]["joints"]) == (7, 10) and got["value"] == pytest.approx(0.7)
    # no detection: 0 right of 10; a target with one head joint is skipped; pooled over images, not averaged
    m.update([[], [_det(pred, 0.9)]], [target, _kp({0: (50, 40), 2: (40, 70)})])
    got = m.summary()
    assert (got["details"]["right"], got["details"]["joints"], got["n"]) == (7, 20, 2)
    assert got["details"]["skipped_no_head"] == 1 and got["value"] == pytest.approx(0.35)
    pos, per = m.per_image()
    assert pos.tolist() == [0, 1, 2] and per[0] == pytest.approx(0.7) and per[1] == 0 and np.isnan(per[2])


def test_is_and_pckh_through_eval(tmp_path, tiny_is):
    """eval --metrics ssim,is,pckh on synthetic DeepFashion with the random estimator: IS equals the definition
    on the decoded files; PCKh is reported with its counts and per-image column; both need no new options."""
    from PIL import Image

    from posebench.datasets.synth import synthesize

    net, weights = tiny_is
    root = tmp_path / "df"
    synthesize("deepfashion", root, identities=5, poses=3, seed=3, test_fraction=0.4, progress=False)
    pairs = [r.split(",") for r in (root / "fasion-resize-pairs-test.csv").read_text().split()[1:]]
    pred = tmp_path / "pred"
    pred.mkdir()
    for s, t in pairs:  # the source image as the "generated" one
        Image.open(root / "test" / s).save(pred / f"{s[:-4]}__{t[:-4]}.png")
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["eval", "--protocol", "deepfashion-256x176", "--root", str(root), "--pred",
                                   str(pred), "--out", str(out), "--metrics", "ssim,is,pckh", "--is-weights",
                                   str(weights), "--pose-estimator", "tiny-random"])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    order = sorted(pred.iterdir())  # the scoring order: the sorted generated files
    images = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in order])
    assert r["metrics"]["is"]["value"] == pytest.approx(peers.inception_score_of(net, images)[0], rel=1e-5)
    pckh = r["metrics"]["pckh"]
    assert pckh["n"] + pckh["details"]["skipped_no_head"] == len(pairs)
    assert pckh["value"] == pytest.approx(pckh["details"]["right"] / pckh["details"]["joints"])
    assert "pckh" in out.with_suffix(".per_image.csv").read_text().splitlines()[0].split(",")
    assert not r["canonical"] and r["env"]["pose_estimator"]["name"] == "tiny-random"
