"""`posebench pose train`: a small pose network learns synthetic people's keypoints; its file loads and detects."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from posebench.cli import app
from posebench.errors import PosebenchError
from posebench.pose.synthetic import SyntheticPoseNet, load_synthetic
from posebench.pose.train import train_pose

runner = CliRunner()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from posebench.datasets.synth import synthesize

    out = tmp_path_factory.mktemp("pose-synth") / "df"
    synthesize("deepfashion", out, identities=6, poses=4, size=(64, 44), seed=1, test_fraction=0.34, progress=False)
    return out


def test_training_lowers_the_joint_error_on_held_out_people(root, tmp_path):
    """Deterministic (seeded batches and init): the held-out mean joint error must fall below 0.75x the untrained
    network's (measured here: 27 px -> 14 px at a 64 px input, 150 steps, 16 training images)."""
    out = tmp_path / "net.safetensors"
    summary = train_pose(root, "deepfashion", out, steps=150, batch_size=8, input_size=64, width=8, lr=3e-3,
                         progress=False)
    err = summary["joint_error_px"]
    assert err["evaluated_on"] == "test"
    assert err["trained"] < 0.75 * err["untrained"], err
    model = load_synthetic(out)
    assert (model.input_size, model.width) == (64, 8)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert model(x).heatmaps.shape == (2, 17, 32, 32)
    from safetensors import safe_open

    with safe_open(str(out), framework="pt") as fh:
        provenance = json.loads(fh.metadata()["provenance"])
    assert "synthetic-domain" in provenance["note"] and provenance["steps"] == 150


def test_cli_train_then_detect(root, tmp_path):
    out = tmp_path / "net.safetensors"
    res = runner.invoke(app, ["pose", "train", "--root", str(root), "--out", str(out), "--steps", "2",
                              "--batch-size", "2", "--input-size", "64", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "synthetic-domain" in res.output
    dets = tmp_path / "dt.json"
    res = runner.invoke(app, ["pose", "detect", "--images", str(root / "test"), "--out", str(dets), "--estimator",
                              "synthetic-posenet", "--weights", str(out), "--no-flip"])
    assert res.exit_code == 0, res.output
    rows = json.loads(dets.read_text())
    assert rows and all(len(r["keypoints"]) == 51 for r in rows)


def test_cli_train_says_what_it_counted_and_warns_when_no_better(root, tmp_path):
    """The option names agree with the other commands (--max-steps, --pose-weights, --no-pose-flip); the summary
    names the split of each count; two steps do not beat the untrained network here, which is said."""
    out = tmp_path / "net.safetensors"
    res = runner.invoke(app, ["pose", "train", "--root", str(root), "--out", str(out), "--max-steps", "1",
                              "--batch-size", "2", "--input-size", "64", "--quiet"])
    assert res.exit_code == 0, res.output
    n_train = len((root / "train.lst").read_text().split())
    n_test = len((root / "test.lst").read_text().split())
    text = " ".join(res.output.split())
    assert f"trained 1 steps on the {n_train} images of split 'train'" in text
    assert f"mean joint error on the {n_test} images of split 'test'" in text
    before, after = (float(x) for x in re.search(r"([\d.]+) px untrained -> ([\d.]+) px trained", text).groups())
    assert ("no better than the untrained one" in text) == (after >= before)
    res = runner.invoke(app, ["pose", "detect", "--images", str(root / "test"), "--out", str(tmp_path / "d.json"),
                              "--estimator", "synthetic-posenet", "--pose-weights", str(out), "--no-pose-flip"])
    assert res.exit_code == 0, res.output


def test_older_option_spellings_work_but_are_hidden(root, tmp_path):
    """--steps, --weights and --no-flip still work (older scripts) but --help shows only the names every command
    shares; the two spellings of one option given different values are refused."""
    for command, shown, hidden in ((["pose", "train"], ["--max-steps"], ["--steps"]),
                                   (["pose", "detect"], ["--pose-weights", "--no-pose-flip"], ["--weights",
                                                                                                "--no-flip"])):
        text = runner.invoke(app, [*command, "--help"]).output
        assert all(name in text for name in shown), text
        assert not any(f"{name} " in text or f"{name}\n" in text for name in hidden), text
    res = runner.invoke(app, ["pose", "train", "--root", str(root), "--out", str(tmp_path / "n.safetensors"),
                              "--max-steps", "1", "--steps", "2", "--quiet"])
    assert res.exit_code == 2 and "same option" in res.output


def test_bad_files_and_roots(root, tmp_path):
    with pytest.raises(PosebenchError, match="does not exist"):
        load_synthetic(tmp_path / "nope.safetensors")
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(1)}, other)
    with pytest.raises(PosebenchError, match="not a synthetic-posenet file"):
        load_synthetic(other)
    with pytest.raises(PosebenchError, match="no 'val' split"):
        train_pose(root, "deepfashion", tmp_path / "x.safetensors", split="val", steps=1, progress=False)
    # the held-out split too: no silent fallback to the training split
    with pytest.raises(PosebenchError, match="no 'nope' split"):
        train_pose(root, "deepfashion", tmp_path / "x.safetensors", val_split="nope", steps=1, progress=False)
    with pytest.raises(PosebenchError, match="--input-size must be a multiple of 16"):
        train_pose(root, "deepfashion", tmp_path / "x.safetensors", input_size=100, steps=1, progress=False)
    with pytest.raises(PosebenchError, match="--max-steps must be positive, got 0"):
        train_pose(root, "deepfashion", tmp_path / "x.safetensors", steps=0, progress=False)
    assert not (tmp_path / "x.safetensors").exists()
    with pytest.raises(ValueError, match="multiple of 16"):
        SyntheticPoseNet(input_size=50)


def test_detecting_with_an_untrained_network_warns(tmp_path, caplog):
    import logging

    import numpy as np

    from posebench.images import write_png
    from posebench.pose.detect import detect_images

    img = tmp_path / "a.png"
    write_png(img, np.zeros((64, 64, 3), np.uint8))
    with caplog.at_level(logging.WARNING, logger="posebench.pose.detect"):
        detect_images([img], "synthetic-posenet", progress=False)
    assert "no weights file: a randomly initialised network runs" in caplog.text
