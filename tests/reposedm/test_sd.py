"""RePoseSD / HumanSD (reposedm.sd) with tiny random components built from the tiny-sd configs: HumanSD's data
layout and its bad inputs, eq. 15 checked by finite differences, per-image seeds, save/load, exact resume, two
processes == one, and the CLI chain train-reference -> sample -> eval on humanart-val."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from posebench.cli import app
from posebench.datasets import humansd
from reposedm.checkpoints import list_checkpoints
from reposedm.config import load_config
from reposedm.sd.data import TextPoseDataset, TextPoseSource, collate_text_pose

runner = CliRunner()


@pytest.fixture(scope="session")
def hsd_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Human-Art + HumanSD extras: 3 people x 2 poses per split at 64x64."""
    from posebench.datasets.synth import synthesize

    root = tmp_path_factory.mktemp("humansd-synth")
    synthesize("humansd", root, identities=3, poses=2, size=(64, 64), seed=0, progress=False)
    return root


def _copy(root: Path, tmp_path: Path) -> Path:
    out = tmp_path / "root"
    shutil.copytree(root, out)
    return out


def _train(cfg, root: Path, out: Path, steps: int, resume: bool = False):
    from reposedm.train import train

    return train(cfg, source=TextPoseSource("humansd", root, "train"), out=out, max_steps=steps, resume=resume,
                 progress=False)


# ------------------------------------------------------------------------------------------- data


def test_pose_files_are_read_without_running_code(tmp_path):
    people = np.random.default_rng(0).uniform(0, 60, (2, 17, 3))
    humansd.write_pose_file(tmp_path / "a.npz", people)
    assert np.allclose(humansd.read_pose_file(tmp_path / "a.npz"), people.astype(np.float32))
    np.savez(tmp_path / "plain.npz", people)  # a numeric array is read as it is
    assert np.allclose(humansd.read_pose_file(tmp_path / "plain.npz"), people)

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    evil = np.empty(1, dtype=object)
    evil[0] = Payload()
    np.savez(tmp_path / "evil.npz", evil)
    with pytest.raises(humansd.PoseFileError, match="refusing to load posix.system"):
        humansd.read_pose_file(tmp_path / "evil.npz")
    assert not (tmp_path / "ran").exists()
    # a dtype whose pickled state declares an object field inside plain bytes (bytes read as pointers): refused,
    # whether the type code itself is a void one or a plain one
    for code in ("V8", "f8"):
        class CraftedDtype:
            def __reduce__(self, code=code):
                return (np.dtype, (code, False, True),
                        (3, "|", None, ("f0",), {"f0": (np.dtype("O"), 0)}, 8, 1, 0x3F))

        crafted = np.empty(1, dtype=object)
        crafted[0] = {"keypoints": CraftedDtype()}
        np.savez(tmp_path / "crafted.npz", crafted)
        with pytest.raises(humansd.PoseFileError, match="refusing (dtype|a dtype state)"):
            humansd.read_pose_file(tmp_path / "crafted.npz")
    bad = np.empty(1, dtype=object)
    bad[0] = {"keypoints": "x"}
    np.savez(tmp_path / "bad.npz", bad)
    with pytest.raises(humansd.PoseFileError, match="person 0 has keypoints of no numbers"):
        humansd.read_pose_file(tmp_path / "bad.npz")
    bad[0] = {"keypoints": np.zeros((18, 2))}
    np.savez(tmp_path / "bad.npz", bad)
    with pytest.raises(humansd.PoseFileError, match=r"person 0 has keypoints of shape \(18, 2\)"):
        humansd.read_pose_file(tmp_path / "bad.npz")


def test_pose_image_is_humansds_drawing():
    # seaborn's color_palette("hls", 16), the first three, as HumanSD's int(255 * c)
    assert humansd.limb_colours()[:3] == [(219, 94, 86), (219, 144, 86), (219, 194, 86)]
    people = np.zeros((1, 17, 3))
    people[0, 5] = (10, 20, 0.9)  # left shoulder
    people[0, 7] = (10, 50, 0.9)  # left elbow: limb 6 (5 -> 7)
    people[0, 6] = (40, 20, 0.02)  # right shoulder at the threshold: not drawn (score must exceed 0.02)
    people[0, 8] = (40, 50, 0.9)
    img = humansd.pose_image(people, (64, 64), width=4)
    assert tuple(img[35, 10]) == humansd.limb_colours()[6]
    assert tuple(img[35, 40]) == (0, 0, 0) and img[:, 30:].max() == 0
    assert tuple(img[20, 8]) == humansd.limb_colours()[6]  # the disc of radius 2 at the joint


def test_reader_and_dataset(hsd_root):
    records = humansd.read_records("humansd", hsd_root, "train")
    mapping = json.loads((hsd_root / "mapping_file_training.json").read_text())
    assert len(records) == len(mapping) == 6
    captions = humansd.read_records("humanart", hsd_root, "train")
    assert sorted(r.prompt for r in records) == sorted(r.prompt for r in captions)
    ds = TextPoseDataset(TextPoseSource("humansd", hsd_root, "train"), (32, 32))
    item = ds[0]
    assert item["image"].shape == (3, 32, 32) and item["pose_image"].shape == (3, 32, 32)
    assert item["people_xy"].shape == (10, 17, 2) and item["people_visible"].any()
    # the keypoints follow the image: 64 -> 32 halves them
    raw = humansd.read_pose_file(records[0].pose_file)
    vis = raw[..., 2] > 0.02
    assert np.allclose(item["people_xy"][: len(raw)][vis].numpy(), raw[..., :2][vis] / 2, atol=1e-4)
    assert item["prompt"] == records[0].prompt


def _break(root: Path, how: str) -> str:
    """Damage a copy of the root; returns what the error must name."""
    path = root / "mapping_file_training.json"
    mapping = json.loads(path.read_text())
    first = mapping["0"]
    pose = root / first["pose_path"].removeprefix("HumanArt/")
    if how == "empty-caption":
        first["prompt"] = "  "
        path.write_text(json.dumps(mapping, indent=1))
        return f"{path}:2: entry '0' has an empty prompt"
    if how == "wrong-image":
        people = humansd.read_pose_file(pose)
        people[..., :2] += 500  # detections of another, larger image
        humansd.write_pose_file(pose, people)
        return f"{pose}: 31 keypoints outside its image"  # the present joints of both people
    if how == "crowd":
        humansd.write_pose_file(pose, np.tile(humansd.read_pose_file(pose)[:1], (11, 1, 1)))
        return f"{pose}: 11 people; HumanSD's pose format holds at most 10"
    if how == "other-pose-file":
        first["pose_path"] = mapping["1"]["pose_path"]
        path.write_text(json.dumps(mapping, indent=1))
        return "does not belong to image"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["empty-caption", "wrong-image", "crowd", "other-pose-file"])
def test_bad_data_exits_2_before_writing(hsd_root, tmp_path, how):
    root = _copy(hsd_root, tmp_path)
    expected = _break(root, how)
    out = tmp_path / "run"
    res = runner.invoke(app, ["train-reference", "--config", "tiny-sd-humansd", "--protocol", "humanart-val",
                              "--root", str(root), "--out", str(out), "--max-steps", "1", "--quiet"])
    assert res.exit_code == 2, res.output
    assert expected in " ".join(res.output.split()), res.output
    assert not out.exists()


def test_missing_sd_weights_offline_exit_2(hsd_root, tmp_path, monkeypatch):
    monkeypatch.setenv("POSEBENCH_OFFLINE", "1")
    out = tmp_path / "run"
    res = runner.invoke(app, ["train-reference", "--config", "humanart-sd-humansd", "--protocol", "humanart-val",
                              "--root", str(hsd_root), "--out", str(out), "--max-steps", "1", "--quiet"])
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert "5 of 5 files missing" in text and "posebench weights download sd21-base-unet sd21-base-vae " \
        "sd21-base-text-encoder sd21-base-tokenizer-vocab sd21-base-tokenizer-merges" in text
    assert not out.exists()
    # the text encoder alone missing: named, the others not
    from posebench import weights

    for name in ("sd21-base-unet", "sd21-base-vae", "sd21-base-tokenizer-vocab", "sd21-base-tokenizer-merges"):
        path = weights.cache_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"stand-in")  # present (unpinned: trusted on first use)
    res = runner.invoke(app, ["train-reference", "--config", "humanart-sd-reposesd", "--protocol", "humanart-val",
                              "--root", str(hsd_root), "--out", str(out), "--max-steps", "1", "--quiet"])
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and "1 of 5 files missing (sd21-base-text-encoder)" in text, text
    assert not out.exists()


def test_configs():
    from reposedm.config import ConfigError

    cfg = load_config("humanart-sd-reposesd")
    assert cfg.model.resolution == (512, 512) and cfg.model.guidance.enabled
    assert cfg.model.guidance.estimator == "higherhrnet-w32-coco" and cfg.model.guidance.train_mode == "second-order"
    assert not load_config("humanart-sd-humansd").model.guidance.enabled
    with pytest.raises(ConfigError, match="Did you mean: tiny-sd-reposesd"):
        load_config("tiny-sd-reposed")
    with pytest.raises(ConfigError, match="pose field is what RePoseSD adds"):
        type(cfg).from_dict({"model": {"variant": "humansd", "guidance": {"enabled": True}}})
    with pytest.raises(ConfigError, match="SD 2.1's own architecture"):
        type(cfg).from_dict({"model": {"block_out_channels": [32, 64]}})


# ------------------------------------------------------------------------------------------- eq. 15


def test_second_order_term_is_eq15_by_finite_differences(hsd_root):
    """eps~ - eps_theta = sqrt(1 - abar_t) grad_{y_t} G (eq. 15): the term the objective puts into the loss,
    projected on a random direction v, equals sqrt(1 - abar_t) (G(y_t + h v) - G(y_t - h v)) / 2h in float64."""
    from reposedm.guidance import field_of_latents, training_field_terms
    from reposedm.sd.train import SDFamily

    cfg = load_config("tiny-sd-reposesd")
    fam = SDFamily(cfg, TextPoseSource("humansd", hsd_root, "train"), torch.device("cpu"))
    torch.manual_seed(0)
    unet = fam.build_model().double().eval()
    fam.vae.double()
    fam.pose_field.estimator.double()
    obj = fam.objective(None)
    batch = collate_text_pose([fam.dataset[0], fam.dataset[1]])
    x0 = obj.encode(batch["image"].double()).double()
    pose = obj.encode(batch["pose_image"].double()).double()
    text = obj.text_embeddings(batch["prompt"], torch.zeros(2, dtype=torch.bool), x0.device).double()
    t = torch.tensor([300, 700])
    noise = torch.randn_like(x0)
    from reposedm.diffusion import q_sample

    y = q_sample(obj.schedule, x0, t, noise).detach()
    ref = fam.pose_field.reference_of_people(batch["people_xy"].double(), batch["people_visible"],
                                             cfg.model.resolution)
    ref.target = ref.target.double()

    def eps_of(yy):
        return unet(torch.cat([yy, pose], 1), t, encoder_hidden_states=text).sample

    def decode(z):  # in float64 throughout (the objective's decode returns float32 for bf16 VAEs)
        return (fam.vae.decode(z / cfg.model.vae_scaling_factor).sample + 1) / 2

    def g_of(yy):
        return field_of_latents(fam.pose_field, ref, obj.schedule, yy, t, eps_of(yy), decode)

    y_req = y.clone().requires_grad_(True)
    terms = training_field_terms(fam.pose_field, ref, obj.schedule, y_req, t, eps_of(y_req), decode, "second-order")
    v = torch.randn_like(y)
    h = 1e-3  # smaller steps reach float32 rounding somewhere in the chain (measured: 1e-3 agrees to ~1e-5)
    with torch.no_grad():
        fd = (g_of(y + h * v) - g_of(y - h * v)) / (2 * h)  # (B,): d/dh G_b along v
    sigma = (1 - obj.schedule.alphas_cumprod[t]).sqrt()
    analytic = (terms.eps_offset.detach() * v).flatten(1).sum(1)
    assert torch.all(fd.abs() > 1e-8), fd  # the field does move with y_t
    assert torch.allclose(analytic, sigma * fd, rtol=1e-4, atol=1e-10), (analytic.tolist(), (sigma * fd).tolist())


def test_guided_loss_is_eq17(hsd_root):
    """The objective's loss = mean (eps - eps~)^2 with eps~ from eq. 15, recomputed here from its parts."""
    from reposedm.diffusion import q_sample
    from reposedm.guidance import training_field_terms
    from reposedm.sd.train import SDFamily

    cfg = load_config("tiny-sd-reposesd")
    fam = SDFamily(cfg, TextPoseSource("humansd", hsd_root, "train"), torch.device("cpu"))
    torch.manual_seed(0)
    unet = fam.build_model()
    obj = fam.objective(None)
    batch = collate_text_pose([fam.dataset[2], fam.dataset[3]])
    t, noise, drop = torch.tensor([100, 900]), torch.randn(2, 4, 16, 16), torch.tensor([False, True])
    loss, logs = obj(unet, batch, t, noise, drop)
    x0, pose = obj.encode(batch["image"]), obj.encode(batch["pose_image"])
    kept = ["" if d else p for p, d in zip(batch["prompt"], drop, strict=True)]
    text = obj.text_embeddings(kept, torch.zeros(2, dtype=bool), x0.device)
    y = q_sample(obj.schedule, x0, t, noise).requires_grad_(True)
    eps = unet(torch.cat([y, pose], 1), t, encoder_hidden_states=text).sample
    ref = fam.pose_field.reference_of_people(batch["people_xy"], batch["people_visible"], cfg.model.resolution)
    offset = training_field_terms(fam.pose_field, ref, obj.schedule, y, t, eps, obj.decode, "second-order").eps_offset
    expected = (noise - (eps + offset)).square().mean()
    assert abs(float(loss.detach()) - float(expected.detach())) < 1e-6 and "pose_field" in logs
    base = SDFamily(load_config("tiny-sd-humansd"), TextPoseSource("humansd", hsd_root, "train"), torch.device("cpu"))
    plain, plain_logs = base.objective(None)(unet, batch, t, noise, drop)
    assert abs(float(plain.detach()) - float((noise - eps).square().mean().detach())) < 1e-6
    assert "pose_field" not in plain_logs


# ------------------------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def sd_run(hsd_root, tmp_path_factory):
    """tiny-sd-reposesd trained 4 steps (checkpoints at 2 and 4)."""
    cfg = load_config("tiny-sd-reposesd", checkpoint_every=2)
    out = tmp_path_factory.mktemp("sd-run") / "run"
    result = _train(cfg, hsd_root, out, 4)
    return cfg, out, result


def test_resume_is_bit_identical(sd_run, hsd_root, tmp_path):
    """4 steps == 2 steps, a kill (a half-written checkpoint left behind), resume, 2 more steps."""
    cfg, full, result = sd_run
    part = tmp_path / "part"
    _train(cfg, hsd_root, part, 2)
    (list_checkpoints(part)[-1].parent / "checkpoint-000003.tmp-999").mkdir()  # what a kill mid-write leaves
    resumed = _train(cfg, hsd_root, part, 4, resume=True)
    assert resumed.losses == result.losses[2:]
    from safetensors.torch import load_file

    for sub in ("model", "ema"):
        a = load_file(next((list_checkpoints(full)[-1] / sub).glob("*.safetensors")))
        b = load_file(next((list_checkpoints(part)[-1] / sub).glob("*.safetensors")))
        assert all(torch.equal(a[k], b[k]) for k in a), sub
    assert not list((part / "checkpoints").glob("*.tmp-*"))


def test_pipeline_round_trip_and_per_image_seeds(sd_run, hsd_root, tmp_path):
    from reposedm.sd.pipeline import RePoseSDPipeline

    _, run, _ = sd_run
    pipe = RePoseSDPipeline.from_pretrained(run)  # the run folder is itself a diffusers pipeline
    pipe.set_progress_bar_config(disable=True)
    assert pipe.config.train_mode == "second-order" and pipe.pose_estimator is not None
    assert pipe.unet.config.in_channels == 8
    ds = TextPoseDataset(TextPoseSource("humanart", hsd_root, "validation"), (32, 32))
    b = collate_text_pose([ds[0], ds[1], ds[2]])
    kw = dict(num_inference_steps=3, people_xy=b["people_xy"], people_visible=b["people_visible"])
    both = pipe(b["prompt"], b["pose_image"], indices=[0, 1, 2], **kw)
    assert len(both.pose_field) == 3  # guided by default (the run trained with the field)
    alone = pipe(b["prompt"][2:], b["pose_image"][2:], indices=[2], num_inference_steps=3,
                 people_xy=b["people_xy"][2:], people_visible=b["people_visible"][2:])
    assert torch.allclose(both.images[2], alone.images[0], atol=1e-5)
    assert not torch.allclose(both.images[0], both.images[1], atol=1e-3)
    pipe.save_pretrained(tmp_path / "export")
    again = RePoseSDPipeline.from_pretrained(tmp_path / "export")
    again.set_progress_bar_config(disable=True)
    assert torch.equal(again(b["prompt"], b["pose_image"], indices=[0, 1, 2], **kw).images, both.images)
    unguided = pipe(b["prompt"], b["pose_image"], indices=[0, 1, 2], pose_guidance_scale=0.0, num_inference_steps=3)
    assert not torch.equal(unguided.images, both.images) and unguided.pose_field == []
    # another diffusers scheduler, on SD's schedule
    from reposedm.checkpoints import load_pipeline

    unipc, _, _ = load_pipeline(run, scheduler="unipc")
    unipc.set_progress_bar_config(disable=True)
    assert type(unipc.scheduler).__name__ == "UniPCMultistepScheduler"
    assert unipc.scheduler.config.beta_schedule == "scaled_linear" and unipc.scheduler.config.beta_end == 0.012
    a = unipc(b["prompt"], b["pose_image"], indices=[0, 1, 2], **kw).images
    one = unipc(b["prompt"][1:2], b["pose_image"][1:2], indices=[1], num_inference_steps=3,
                people_xy=b["people_xy"][1:2], people_visible=b["people_visible"][1:2]).images
    assert torch.allclose(a[1], one[0], atol=1e-5) and not torch.allclose(a, both.images, atol=1e-3)


def test_two_processes_match_one(sd_run, hsd_root, tmp_path, free_port):
    """torchrun, 2 gloo processes x 1 item == 1 process x 2 items after 2 steps of the second-order objective
    (gradients averaged by hand after the double backward).

    The gradients agree to float32 rounding (measured 1.2e-7 at most, in-process), but Adam's first steps move
    every element by about +-lr whatever its size, so an element whose gradient is itself rounding noise (|g| ~ 1e-8,
    Adam's eps) can land up to ~0.15 lr apart (measured: 19 of 794,116 elements above 1e-6, the largest 1.3e-5 at
    lr 1e-4). Hence: at most 1e-4 of the elements above 1e-6, none above lr / 2; a wrong batch split or a missing
    average moves most elements by ~lr."""
    _, one, _ = sd_run
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                str(free_port), "-m", "posebench", "train-reference", "--config", "tiny-sd-reposesd", "--protocol",
                "humanart-val", "--root", str(hsd_root), "--out", str(tmp_path / "two"), "--max-steps", "2",
                "--quiet"]
    proc = subprocess.run(torchrun, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    from safetensors.torch import load_file

    a = load_file(next((list_checkpoints(one)[0] / "model").glob("*.safetensors")))  # step 2 of the 1-process run
    b = load_file(next((list_checkpoints(tmp_path / "two")[-1] / "model").glob("*.safetensors")))
    diff = torch.cat([(a[k] - b[k]).abs().flatten() for k in a])
    lr = load_config("tiny-sd-reposesd").train.lr
    assert float((diff > 1e-6).float().mean()) < 1e-4 and float(diff.max()) < lr / 2, float(diff.max())


def test_cli_sample_and_eval(sd_run, hsd_root, tmp_path):
    _, run, _ = sd_run
    gen = tmp_path / "gen"
    common = ["--protocol", "humanart-val", "--root", str(hsd_root)]
    res = runner.invoke(app, ["sample", "--run", str(run), *common, "--out", str(gen), "--steps", "2", "--limit", "4",
                              "--quiet"])
    assert res.exit_code == 0, res.output
    val = sorted(r.key for r in humansd.read_records("humanart", hsd_root, "validation"))
    assert sorted(str(p.relative_to(gen).with_suffix("")) for p in gen.rglob("*.png")) == val[:4]
    record = json.loads((gen / "sampling.json").read_text())
    assert record["complete"] and record["pose_guidance_rule"] == "eps" and record["output_resolution"] == [512, 512]
    assert record["non_canonical_reasons"] and record["training_data"][0]["dataset"] == "humansd"
    res = runner.invoke(app, ["sample", "--run", str(run), *common, "--out", str(gen), "--steps", "3", "--limit", "4",
                              "--quiet"])
    assert res.exit_code == 2 and "steps: 2 -> 3" in res.output
    res = runner.invoke(app, ["sample", "--run", str(run), *common, "--out", str(gen), "--steps", "2", "--quiet"])
    assert res.exit_code == 0 and "2 written, 4 already there" in res.output
    out = tmp_path / "res.json"
    res = runner.invoke(app, ["eval", *common, "--pred", str(gen), "--metrics", "ap,pce", "--pose-estimator",
                              "tiny-random", "--out", str(out)])
    assert res.exit_code == 0, res.output
    results = json.loads(out.read_text())
    assert results["canonical"] is False
    assert any("generator's own record" in r for r in results["non_canonical_reasons"])
    # a measured row next to Table 3's HumanSD and RePoseSD rows (marked: non-canonical)
    from posebench.results.leaderboard import default_board_dir, load_board

    boards = tmp_path / "boards"
    boards.mkdir()
    shutil.copy(default_board_dir() / "humanart-val.yaml", boards)
    res = runner.invoke(app, ["leaderboard", "add", "humanart-val", str(out), "--method", "tiny RePoseSD", "--dir",
                              str(boards)])
    assert res.exit_code == 0, res.output
    board = load_board(boards / "humanart-val.yaml")
    mine = next(e for e in board.entries if e.method == "tiny RePoseSD")
    assert mine.values["ap"] == pytest.approx(results["metrics"]["ap"]["value"]) and mine.how.endswith("†")
    assert {"HumanSD", "RePoseSD"} <= {e.method for e in board.entries}
    res = runner.invoke(app, ["sample", "--run", str(run), "--protocol", "deepfashion-256x176", "--root",
                              str(hsd_root), "--out", str(tmp_path / "df")])
    assert res.exit_code == 2 and "humanart-val" in res.output


def test_gradient_checkpointing_keeps_the_double_backward(hsd_root):
    """humanart-sd-* train with gradient checkpointing: eq. 15's double backward through a checkpointed U-Net gives
    the gradients of the plain one (bit for bit here)."""
    from reposedm.sd.train import SDFamily

    grads = {}
    for checkpointing in (False, True):
        cfg = load_config("tiny-sd-reposesd", gradient_checkpointing=checkpointing)
        fam = SDFamily(cfg, TextPoseSource("humansd", hsd_root, "train"), torch.device("cpu"))
        torch.manual_seed(0)
        unet = fam.build_model().train()
        assert unet.is_gradient_checkpointing == checkpointing
        batch = collate_text_pose([fam.dataset[0], fam.dataset[1]])
        noise = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(1))
        loss, _ = fam.objective(None)(unet, batch, torch.tensor([200, 800]), noise, torch.zeros(2, dtype=torch.bool))
        loss.backward()
        grads[checkpointing] = torch.cat([p.grad.flatten() for p in unet.parameters()])
    assert grads[False].abs().max() > 0 and torch.equal(grads[False], grads[True])
