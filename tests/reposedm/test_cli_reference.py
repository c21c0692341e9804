"""`posebench train-reference` -> `posebench sample` -> `posebench eval`, end to end on tiny synthetic data."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from posebench.cli import app

runner = CliRunner()


def test_train_sample_eval_chain(synth_root, tmp_path):
    run, gen = tmp_path / "run", tmp_path / "gen"
    common = ["--protocol", "deepfashion-256x176", "--root", str(synth_root)]
    res = runner.invoke(app, ["train-reference", "--config", "tiny-b2", *common, "--out", str(run), "--max-steps",
                              "2", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "step 2" in res.output and (run / "checkpoints" / "checkpoint-000002").is_dir()

    # --resume without --config continues with the run's own config
    res = runner.invoke(app, ["train-reference", *common, "--out", str(run), "--resume", "--max-steps", "3",
                              "--quiet"])
    assert res.exit_code == 0, res.output
    assert "step 3" in res.output

    sample = ["sample", "--run", str(run), *common, "--out", str(gen), "--steps", "2", "--quiet"]
    res = runner.invoke(app, [*sample, "--limit", "2", "--save-warped"])
    assert res.exit_code == 0, res.output
    assert "2 written, 0 already there" in res.output
    from PIL import Image

    strips = sorted((gen / "warped").glob("*.png"))
    # source | N = 2 warps | generated | target
    assert len(strips) == 2 and Image.open(strips[0]).size == (22 * (1 + 2 + 2), 32)
    first = {p.name: p.read_bytes() for p in gen.glob("*.png")}
    assert len(first) == 2 and all("__" in name for name in first)
    record = json.loads((gen / "sampling.json").read_text())
    assert record["variant"] == "b2" and record["resized"] and record["output_resolution"] == [256, 176]
    assert record["pose_guidance_rule"] is None  # no pose guidance
    # pose guidance at sampling only: b2 never trained with eq. 15, so the rule is eq. 19's y-space step
    res = runner.invoke(app, ["sample", "--run", str(run), *common, "--out", str(tmp_path / "guided"), "--steps", "1",
                              "--limit", "1", "--pose-guidance-scale", "0.5", "--quiet"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "guided" / "sampling.json").read_text())["pose_guidance_rule"] == "step"

    # a resume with other settings would mix two settings in one folder: refused, naming each difference
    res = runner.invoke(app, [*sample[:-3], "--steps", "3", "--seed", "7", "--quiet"])
    assert res.exit_code == 2 and "steps: 2 -> 3" in res.output and "seed: 0 -> 7" in res.output
    assert all((gen / name).read_bytes() == data for name, data in first.items())

    # an earlier checkpoint of the same run holds other weights: refused, naming both checkpoints
    older = run / "checkpoints" / "checkpoint-000002"
    res = runner.invoke(app, ["sample", "--run", str(older), *common, "--out", str(gen), "--steps", "2", "--quiet"])
    assert res.exit_code == 2 and "checkpoint weights" in res.output and "checkpoint-000002" in res.output

    # the paths are not the identity: the run moved elsewhere resumes into the same folder
    moved = tmp_path / "moved-run"
    run.rename(moved)
    sample = ["sample", "--run", str(moved), *common, "--out", str(gen), "--steps", "2", "--quiet"]
    res = runner.invoke(app, sample)  # resumable: the two finished images are kept, the rest are added
    assert res.exit_code == 0, res.output
    assert "already there" in res.output
    assert all((gen / name).read_bytes() == data for name, data in first.items())
    assert json.loads((gen / "sampling.json").read_text())["complete"] is True

    res = runner.invoke(app, ["eval", *common, "--pred", str(gen), "--metrics", "ssim,psnr", "--out",
                              str(tmp_path / "results.json")])
    assert res.exit_code == 0, res.output
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["metrics"]["ssim"]["n"] == len(list(gen.glob("*.png")))

    # a folder its caller owns (the demo's) is made again from the other checkpoint instead of refused
    from reposedm.generate import generate

    again = generate(moved / "checkpoints" / "checkpoint-000002", protocol="deepfashion-256x176", root=synth_root,
                     out=gen, steps=2, limit=2, progress=False, restart_stale=True)
    assert (again.written, again.skipped) == (2, 0)
    assert json.loads((gen / "sampling.json").read_text())["checkpoint"].endswith("checkpoint-000002")


def test_bad_reference_commands_exit_2(synth_root, tmp_path):
    common = ["--protocol", "deepfashion-256x176", "--root", str(synth_root)]
    res = runner.invoke(app, ["train-reference", *common, "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "--config" in res.output
    res = runner.invoke(app, ["train-reference", "--config", "tiny-b9", *common, "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "tiny-b1" in res.output  # did-you-mean
    res = runner.invoke(app, ["train-reference", "--config", "tiny-b1", "--protocol", "deepfashion-256x176",
                              "--root", str(tmp_path), "--out", str(tmp_path / "r2"), "--quiet"])
    assert res.exit_code == 2, res.output  # not a DeepFashion root
    (tmp_path / "empty").mkdir()
    res = runner.invoke(app, ["sample", "--run", str(tmp_path / "empty"), *common, "--out", str(tmp_path / "g")])
    assert res.exit_code == 2 and "has no checkpoints" in res.output


def test_checkpoint_faults(synth_root, tmp_path):
    """A run killed while writing a checkpoint left `checkpoint-*.tmp-PID` forever; a safetensors tensor of the
    wrong shape crashed `sample` with diffusers' ValueError instead of naming the file and the tensor."""
    import hashlib

    from safetensors.torch import load_file, save_file

    from reposedm.checkpoints import CHECKSUMS

    run = tmp_path / "run"
    common = ["--protocol", "deepfashion-256x176", "--root", str(synth_root)]
    res = runner.invoke(app, ["train-reference", "--config", "tiny-b1", *common, "--out", str(run), "--max-steps",
                              "1", "--quiet"])
    assert res.exit_code == 0, res.output
    stale = run / "checkpoints" / "checkpoint-000002.tmp-99999"
    stale.mkdir()
    (stale / "half-written.bin").write_bytes(b"x")
    res = runner.invoke(app, ["train-reference", *common, "--out", str(run), "--resume", "--max-steps", "2",
                              "--quiet"])
    assert res.exit_code == 0, res.output
    assert not stale.exists() and (run / "checkpoints" / "checkpoint-000002").is_dir()

    # a B1 run has no recurrent pose alignment: --save-warped says so instead of writing nothing silently
    res = runner.invoke(app, ["sample", "--run", str(run), *common, "--out", str(tmp_path / "b1-gen"), "--steps",
                              "1", "--limit", "1", "--save-warped", "--quiet"])
    assert res.exit_code == 0 and "no recurrent pose alignment" in " ".join(res.output.split()), res.output
    assert not (tmp_path / "b1-gen" / "warped").exists()

    # any diffusers scheduler by short or class name; a name diffusers does not have: exit 2 before any work
    res = runner.invoke(app, ["sample", "--run", str(run), *common, "--out", str(tmp_path / "unipc"), "--steps", "2",
                              "--limit", "1", "--scheduler", "unipc", "--quiet"])
    assert res.exit_code == 0 and "1 written" in res.output, res.output
    assert json.loads((tmp_path / "unipc" / "sampling.json").read_text())["scheduler"] == "unipc"
    res = runner.invoke(app, ["sample", "--run", str(run), *common, "--out", str(tmp_path / "bad"), "--steps", "2",
                              "--limit", "1", "--scheduler", "nonsense", "--quiet"])
    assert res.exit_code == 2 and "unknown scheduler 'nonsense'" in res.output and "unipc" in res.output
    assert not (tmp_path / "bad").exists()

    ckpt = run / "checkpoints" / "checkpoint-000002"
    weights = next((ckpt / "ema").glob("*.safetensors"))
    tensors = load_file(str(weights))
    name = next(k for k, v in tensors.items() if v.ndim == 4)
    tensors[name] = tensors[name][:, :1].contiguous()  # one input channel instead of several
    save_file(tensors, str(weights), metadata={"format": "pt"})
    sums = json.loads((ckpt / CHECKSUMS).read_text())  # a consistent but wrong checkpoint, as by another config
    sums[str(weights.relative_to(ckpt))] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (ckpt / CHECKSUMS).write_text(json.dumps(sums))
    res = runner.invoke(app, ["sample", "--run", str(run), *common, "--out", str(tmp_path / "gen"), "--steps", "1",
                              "--limit", "1", "--quiet"])
    assert res.exit_code == 2 and str(weights.parent) in res.output and "do not fit the run's model" in res.output
    assert name.split(".")[0] in res.output  # diffusers' message names the tensor
