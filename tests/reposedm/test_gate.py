"""`posebench regress --checkpoint RUN --suite NAME`: sample a seeded subset, evaluate, compare with the baseline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from posebench.cli import app
from posebench.run.gate import SuiteError, load_suite, subset_indices

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_run(synth_root, tmp_path_factory) -> Path:
    from reposedm.config import load_config
    from reposedm.data import PairSource
    from reposedm.train import train

    out = tmp_path_factory.mktemp("gate") / "run"
    cfg = load_config("tiny-b1", sample_every=0, checkpoint_every=2)
    train(cfg, source=PairSource("deepfashion", synth_root, "train"), out=out, max_steps=2, progress=False)
    return out


def _suite(folder: Path, **over) -> Path:
    data = {"suite": "smoke", "version": 1, "protocol": "deepfashion-256x176", "pairs": 3, "subset_seed": 0,
            "sampling": {"scheduler": "ddim", "steps": 2, "seed": 0}, "profile": "clean",
            "metrics": ["ssim", "psnr"], "tolerance": {"ssim": 0.01, "psnr": 0.1},
            "baseline": "smoke.baseline.json", **over}
    path = folder / "smoke.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_subset_is_seeded_and_stable():
    a = subset_indices(100, 10, 0)
    assert a == subset_indices(100, 10, 0) and a == sorted(a) and len(set(a)) == 10
    assert a != subset_indices(100, 10, 1)
    assert subset_indices(5, 10, 0) == [0, 1, 2, 3, 4]


def test_checkpoint_gate_end_to_end(tiny_run, synth_root, tmp_path):
    suite = _suite(tmp_path)
    gate = ["regress", "--checkpoint", str(tiny_run), "--suite", str(suite), "--root", str(synth_root),
            "--work", str(tmp_path / "work")]
    res = runner.invoke(app, gate)
    assert res.exit_code == 2 and "--update-baseline" in res.output  # no baseline yet

    res = runner.invoke(app, [*gate, "--update-baseline"])
    assert res.exit_code == 0, res.output
    baseline = json.loads((tmp_path / "smoke.baseline.json").read_text())
    assert baseline["suite"]["pairs"] == 3 and baseline["metrics"]["ssim"]["n"] == 3
    assert len(list((tmp_path / "work" / "images").glob("*.png"))) == 3

    res = runner.invoke(app, [*gate, "--junit", str(tmp_path / "gate.xml")])
    assert res.exit_code == 0, res.output  # the same checkpoint reproduces its own baseline
    assert "failures=\"0\"" in (tmp_path / "gate.xml").read_text()
    # the baseline keeps its per-image CSV beside it, so the interval gate works in suite mode too
    assert baseline["per_image_file"] == "smoke.baseline.per_image.csv"
    assert (tmp_path / "smoke.baseline.per_image.csv").is_file()
    res = runner.invoke(app, [*gate, "--gate", "interval"])
    assert res.exit_code == 0 and "interval" in res.output, res.output

    worse = dict(baseline)
    worse["metrics"] = {**baseline["metrics"], "ssim": {**baseline["metrics"]["ssim"], "value": 0.99}}
    (tmp_path / "smoke.baseline.json").write_text(json.dumps(worse))
    res = runner.invoke(app, gate)
    assert res.exit_code == 1, res.output  # the checkpoint is far below a baseline SSIM of 0.99
    assert "ssim" in res.output

    _suite(tmp_path, pairs=4)  # an edited suite must not be judged against the old baseline
    res = runner.invoke(app, gate)
    assert res.exit_code == 2 and "another suite definition" in res.output


def test_bad_suites(tmp_path, synth_root, tiny_run):
    with pytest.raises(SuiteError, match="did you mean 'metrics'"):
        load_suite(str(_suite(tmp_path, metricz=["ssim"])))
    bad = _suite(tmp_path, pairs=0)
    with pytest.raises(SuiteError, match="positive integer"):
        load_suite(str(bad))
    with pytest.raises(SuiteError, match="no suite 'nope'"):
        load_suite("nope")
    res = runner.invoke(app, ["regress", "--checkpoint", str(tiny_run), "--suite", "nope"])
    assert res.exit_code == 2 and "--root" in res.output
    res = runner.invoke(app, ["regress"])
    assert res.exit_code == 2 and "--results" in res.output


def test_reid_augment_with_the_reference_model(tmp_path):
    """`posebench reid-augment --generator reposedm:RUN`: the reference model samples every plan row."""
    from posebench.datasets.synth import synthesize
    from reposedm.config import load_config
    from reposedm.data import PairSource
    from reposedm.train import train

    market = tmp_path / "market"
    synthesize("market", market, identities=6, poses=3, seed=0, progress=False)
    run = tmp_path / "run"
    train(load_config("tiny-b1", sample_every=0, checkpoint_every=1), source=PairSource("market", market, "train"),
          out=run, max_steps=1, progress=False)
    out = tmp_path / "reid"
    res = runner.invoke(app, ["reid-augment", "--market-root", str(market), "--generator", f"reposedm:{run}",
                              "--out", str(out), "--fractions", "0.5", "--seeds", "0", "--epochs", "1",
                              "--image-size", "64x32", "--no-pretrained", "--max-images", "12", "--sample-steps", "2"])
    assert res.exit_code == 0, res.output
    from PIL import Image

    images = sorted((out / "generated" / "f0.5_s0").glob("*.png"))
    plan_rows = (out / "plans" / "f0.5_s0_plan.csv").read_text().splitlines()[1:]
    assert len(images) == len(plan_rows) > 0 and Image.open(images[0]).size == (64, 128)
    doc = json.loads((out / "results.json").read_text())
    assert {r["method"] for r in doc["rows"]} == {"Standard", "reposedm"}
    assert doc["settings"]["generator"] == f"reposedm:{run}"


def test_everything_is_checked_before_sampling(tiny_run, synth_root, tmp_path, monkeypatch):
    """A malformed suite crashed only after the checkpoint was sampled; missing LPIPS weights failed after minutes
    of sampling. Both now stop before the first image (nothing written to the work folder)."""
    import reposedm.generate

    def boom(*args, **kwargs):
        raise AssertionError("sampled before the checks")

    monkeypatch.setattr(reposedm.generate, "generate", boom)
    work = tmp_path / "work"
    cases = {"metrics": ({"metrics": [{"ssim": 1}]}, "metrics must be a non-empty list of metric names"),
             "unknown": ({"metrics": ["ssim", "fidd"]}, "unknown metrics ['fidd']"),
             "weights": ({"metrics": ["ssim", "lpips"]}, "alexnet-tv-imagenet")}
    monkeypatch.setenv("POSEBENCH_OFFLINE", "1")  # the LPIPS backbone is not in the (empty) test cache
    for label, (over, message) in cases.items():
        suite = _suite(tmp_path, **over)
        res = runner.invoke(app, ["regress", "--checkpoint", str(tiny_run), "--suite", str(suite), "--root",
                                  str(synth_root), "--work", str(work), "--update-baseline"])
        assert res.exit_code == 2 and message in res.output, (label, res.output)
        assert not work.exists(), label
