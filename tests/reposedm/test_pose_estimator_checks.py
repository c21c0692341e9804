"""The guidance pose estimator at paper size: a real one by default, its weights checked before any step, a random
one refused unless allowed, and a random one's non-canonical mark carried from the run to its samples' results."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from posebench.cli import app
from reposedm.config import load_config, named_config

runner = CliRunner()


def _config(tmp_path: Path, **guidance) -> Path:
    """deepfashion-256-full in pixel space (no VAE file needed; so a learned pose encoder), with guidance
    overrides."""
    import yaml

    path = tmp_path / "paper-full.yaml"
    model = {"latent": "pixel", "pose_encoding": "learned", "pose_renderer": "pidm20", "rpa_warp": "latent",
             "pose_embed_channels": 8, "guidance": dict(guidance)}
    path.write_text(yaml.safe_dump({"base": "deepfashion-256-full", "model": model}))
    return path


def test_paper_size_full_configs_use_higherhrnet():
    for name in ("deepfashion-256-full", "deepfashion-512-full", "market-128-full"):
        assert named_config(name).model.guidance.estimator == "higherhrnet-w32-coco", name
    assert named_config("tiny-full").model.guidance.estimator == "tiny-random"


def test_missing_estimator_weights_fail_before_training(synth_root, tmp_path, monkeypatch):
    monkeypatch.setenv("POSEBENCH_OFFLINE", "1")
    out = tmp_path / "run"
    res = runner.invoke(app, ["train-reference", "--config", str(_config(tmp_path)), "--protocol",
                              "deepfashion-256x176", "--root", str(synth_root), "--out", str(out), "--quiet"])
    assert res.exit_code == 2, res.output
    assert "higherhrnet-w32-coco" in res.output and "posebench weights download" in res.output
    assert not out.exists()  # nothing written


def test_random_estimator_at_paper_size_is_refused_unless_allowed(synth_root, tmp_path):
    out = tmp_path / "run"
    cfg = _config(tmp_path, estimator="tiny-random")
    common = ["train-reference", "--config", str(cfg), "--protocol", "deepfashion-256x176", "--root",
              str(synth_root), "--out", str(out), "--quiet"]
    res = runner.invoke(app, common)
    assert res.exit_code == 2, res.output
    assert "'tiny-random' is randomly initialised" in res.output and "--allow-random-estimator" in res.output
    assert not out.exists()
    # allowed: the flag lands in the resolved config (checked with --dry-run: a 256x176 model is too big to train
    # here), and the run's non-canonical reason is what check_pose_estimator returns
    res = runner.invoke(app, [*common, "--allow-random-estimator", "--dry-run"])
    assert res.exit_code == 0, res.output
    resolved = json.loads(res.output)
    assert resolved["model"]["guidance"]["allow_random_estimator"] is True
    from reposedm.config import RunConfig
    from reposedm.train import check_pose_estimator

    reasons = check_pose_estimator(RunConfig.from_dict(resolved))
    assert len(reasons) == 1 and "randomly initialised" in reasons[0]
    # a trained estimator is never a reason; a tiny config with a random one is allowed but still marked
    assert check_pose_estimator(load_config("deepfashion-256-full")) == []
    assert check_pose_estimator(load_config("tiny-b1")) == []
    assert len(check_pose_estimator(load_config("tiny-full"))) == 1


def test_random_estimator_marks_the_samples_results_non_canonical(synth_root, tmp_path):
    """tiny-full guides with `tiny-random`: the run records it (training_data.json), sampling copies it into
    sampling.json, and `posebench eval` of those images is non-canonical with the generator's reason."""
    run, gen, results = tmp_path / "run", tmp_path / "gen", tmp_path / "results.json"
    common = ["--protocol", "deepfashion-256x176", "--root", str(synth_root)]
    res = runner.invoke(app, ["train-reference", "--config", "tiny-full", *common, "--out", str(run),
                              "--max-steps", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    record = json.loads((run / "training_data.json").read_text())
    assert record["sources"] == [{"dataset": "deepfashion", "split": "train", "root": str(synth_root),
                                  "pairs": record["sources"][0]["pairs"]}]
    assert record["sources"][0]["pairs"] > 0
    assert len(record["non_canonical_reasons"]) == 1 and "tiny-random" in record["non_canonical_reasons"][0]

    res = runner.invoke(app, ["sample", "--run", str(run), *common, "--out", str(gen), "--steps", "2", "--limit",
                              "2", "--quiet"])
    assert res.exit_code == 0, res.output
    sampling = json.loads((gen / "sampling.json").read_text())
    assert sampling["pose_guidance_rule"] == "eps"  # tiny-full trains eq. 15 (second order): eq. 16 at sampling
    assert sampling["non_canonical_reasons"] == record["non_canonical_reasons"]
    assert sampling["training_data"] == record["sources"]

    res = runner.invoke(app, ["eval", *common, "--pred", str(gen), "--metrics", "psnr", "--allow-missing", "--out",
                              str(results)])
    assert res.exit_code == 0, res.output
    scored = json.loads(results.read_text())
    assert scored["canonical"] is False
    inherited = [r for r in scored["non_canonical_reasons"] if r.startswith("the generator's own record")]
    assert len(inherited) == 1 and "tiny-random" in inherited[0]
