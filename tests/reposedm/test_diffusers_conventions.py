"""diffusers conventions (issue #21): any scheduler, output_type / return_dict, `unet` / `condition_encoder` /
`pose_estimator` components, older checkpoint layouts, and `DiffusionPipeline.from_pretrained(run_folder)`."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from posebench.errors import PosebenchError
from reposedm.config import GuidanceConfig, load_config
from reposedm.diffusion import SchedulerError, make_scheduler
from reposedm.models.network import RePoseDMModel
from reposedm.pipeline import RePoseDMPipeline


def _pipe(variant: str = "b1", scheduler: str = "ddim", seed: int = 0, **kwargs) -> tuple:
    """A tiny pipeline whose U-Net responds to its inputs (not zero-initialized)."""
    cfg = load_config(f"tiny-{variant}")
    cfg = replace(cfg, model=replace(cfg.model, zero_init=False))
    torch.manual_seed(seed)
    model = RePoseDMModel.from_model_config(cfg.model).eval()
    pipe = RePoseDMPipeline.from_model(model, make_scheduler(cfg.model, scheduler), **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return cfg, model, pipe


def _inputs(b: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, 32, 22, generator=g), torch.rand(b, 20, 32, 22, generator=g)


# ------------------------------------------------------------------------------------------------ schedulers


@pytest.mark.parametrize("scheduler", ["unipc", "euler-ancestral", "EulerDiscreteScheduler", "dpm-solver"])
def test_schedulers_sample_deterministically_per_image_seed(scheduler):
    """UniPC's step() takes no generator (it used to fail with "unexpected keyword argument 'generator'"); Euler's
    latents start at init_noise_sigma != 1 and go through scale_model_input."""
    _, _, pipe = _pipe(scheduler=scheduler)
    assert type(pipe.scheduler).__name__ != "DDIMScheduler"
    source, pose = _inputs(2)
    first = pipe(source, pose, num_inference_steps=3, seed=5).images
    again = pipe(source, pose, num_inference_steps=3, seed=5).images
    other = pipe(source, pose, num_inference_steps=3, seed=6).images
    assert first.shape == (2, 3, 32, 22) and torch.isfinite(first).all()
    assert torch.equal(first, again)
    assert (first - other).abs().max() > 1e-3
    if scheduler == "euler-ancestral":  # noise in every step: still image k's own generator only
        alone = pipe(source[1:], pose[1:], num_inference_steps=3, seed=5, indices=[1]).images
        torch.testing.assert_close(alone, first[1:], rtol=0, atol=1e-4)


def test_sigma_space_scheduler_starts_from_its_first_sampling_sigma():
    """init_noise_sigma is read after set_timesteps: with "leading" spacing Euler's first sigma is below the
    training schedule's largest, and the initial latents must have that std, not the larger one."""
    from diffusers import EulerDiscreteScheduler
    from diffusers.utils.torch_utils import randn_tensor

    from reposedm.sampling import generators_for

    _, _, pipe = _pipe(scheduler="EulerDiscreteScheduler")
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="leading")
    before = float(pipe.scheduler.init_noise_sigma)
    first = []
    real = pipe.scheduler.scale_model_input
    pipe.scheduler.scale_model_input = lambda y, t: (first.append(y.clone()), real(y, t))[1]
    pipe(*_inputs(1), num_inference_steps=4, seed=0, guidance_scale=1.0)
    sigma = float(pipe.scheduler.init_noise_sigma)
    assert sigma < 0.9 * before
    noise = randn_tensor((1, 3, 32, 22), generator=generators_for(0, [0]), dtype=torch.float32)
    torch.testing.assert_close(first[0], noise * sigma)


def test_unknown_or_unusable_scheduler_names_are_refused():
    cfg = load_config("tiny-b1").model
    with pytest.raises(SchedulerError, match=r"unknown scheduler 'euler'; did you mean 'euler-ancestral'") as err:
        make_scheduler(cfg, "euler")
    assert isinstance(err.value, PosebenchError) and "unipc" in str(err.value)
    with pytest.raises(SchedulerError, match="FlowMatchEulerDiscreteScheduler.*cannot sample this model"):
        make_scheduler(cfg, "FlowMatchEulerDiscreteScheduler")
    built = make_scheduler(cfg, "UniPCMultistepScheduler")
    assert built.config.num_train_timesteps == cfg.num_train_timesteps
    assert built.config.beta_end == cfg.beta_end and built.config.prediction_type == cfg.prediction_type


# ------------------------------------------------------------------------------------ output_type, return_dict


def test_output_type_and_return_dict():
    _, _, pipe = _pipe(variant="b2")
    source, pose = _inputs(2)
    pt = pipe(source, pose, num_inference_steps=2, return_intermediates=True)
    arr, warped, fields = pipe(source, pose, num_inference_steps=2, return_intermediates=True, output_type="np",
                               return_dict=False)
    pil = pipe(source, pose, num_inference_steps=2, output_type="pil").images
    assert pt.images.shape == (2, 3, 32, 22) and isinstance(pt.images, torch.Tensor)
    assert isinstance(arr, np.ndarray) and arr.shape == (2, 32, 22, 3) and arr.dtype == np.float32
    np.testing.assert_array_equal(arr, pt.images.permute(0, 2, 3, 1).numpy())
    assert warped[0].shape == (2, 32, 22, 3) and fields == []
    assert len(pil) == 2 and pil[0].size == (22, 32) and pil[0].mode == "RGB"
    np.testing.assert_array_equal(np.asarray(pil[1]), np.round(arr[1] * 255).astype(np.uint8))
    assert pt.to_tuple()[0] is pt.images  # a diffusers BaseOutput
    with pytest.raises(ValueError, match="output_type"):
        pipe(source, pose, num_inference_steps=1, output_type="latent")


# ----------------------------------------------------------------------------------------------- components


def test_unet_is_a_top_level_component_that_samples_when_swapped(tmp_path):
    from diffusers import UNet2DConditionModel

    _, model, pipe = _pipe(variant="b2")
    assert set(pipe.components) == {"unet", "condition_encoder", "scheduler", "vae", "pose_estimator"}
    assert type(pipe.unet) is UNet2DConditionModel and pipe.unet is model.unet
    assert pipe.condition_encoder is model.condition_encoder and pipe.vae is None and pipe.pose_estimator is None
    source, pose = _inputs(1)
    before = pipe(source, pose, num_inference_steps=2).images
    pipe.save_pretrained(tmp_path / "p")
    swapped = RePoseDMPipeline.from_pretrained(tmp_path / "p", unet=_pipe(variant="b2", seed=1)[2].unet)
    swapped.set_progress_bar_config(disable=True)
    assert (swapped(source, pose, num_inference_steps=2).images - before).abs().max() > 1e-3
    loaded = RePoseDMPipeline.from_pretrained(tmp_path / "p")
    loaded.set_progress_bar_config(disable=True)
    assert torch.equal(loaded(source, pose, num_inference_steps=2).images, before)
    index = json.loads((tmp_path / "p" / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_reposedm", "RePoseDMPipeline"]
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert (index["guidance_scale"], index["pose_guidance_scale"], index["train_mode"]) == (2.0, 0.0, "off")


def test_training_module_keeps_the_former_parameter_order():
    """Optimizer and EMA states list parameters by position: the split must not reorder them."""
    _, model, _ = _pipe(variant="b2")
    names = [n for n, _ in model.named_parameters()]
    assert names[:2] == ["condition_encoder.token_pos", "condition_encoder.null_tokens"]
    first_unet = next(i for i, n in enumerate(names) if n.startswith("unet."))
    assert all(n.startswith("condition_encoder.") for n in names[:first_unet])
    assert all(n.startswith("unet.") for n in names[first_unet:])
    assert names[2].startswith("condition_encoder.pose_encoder.")


def _old_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict as checkpoints were written before the condition encoder became a module."""
    return {k.removeprefix("condition_encoder."): v for k, v in state.items()}


def test_checkpoint_of_the_older_layout_loads_through_the_key_map(tmp_path):
    from reposedm.checkpoints import CheckpointError, load_model

    _, model, _ = _pipe(variant="b2", seed=2)
    with torch.no_grad():
        model.null_tokens.fill_(0.25)
    model.save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "diffusion_pytorch_model.safetensors"
    old = _old_layout(load_file(str(weights)))
    assert "pose_encoder.net.0.weight" in old or any(k.startswith("pose_encoder.") for k in old)
    assert "null_tokens" in old and not any(k.startswith("condition_encoder.") for k in old)
    save_file(old, str(weights), metadata={"format": "pt"})
    loaded = load_model(tmp_path / "m")
    mine, theirs = model.state_dict(), loaded.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)

    old["mystery.weight"] = torch.zeros(1)
    del old["null_tokens"]
    save_file(old, str(weights), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"m: the weights file is of a layout .*null_tokens.*mystery"):
        load_model(tmp_path / "m")


# ------------------------------------------------------------------------------------------ pose estimator


def _guided(pipe_kwargs: dict | None = None) -> tuple:
    from posebench.pose.detect import load_estimator
    from reposedm.models.pose_estimator import PoseEstimatorComponent

    g = GuidanceConfig(enabled=True, estimator="tiny-random", sample_grad="tweedie", pose_guidance_scale=0.5)
    component = PoseEstimatorComponent.from_estimator(load_estimator("tiny-random"), g)
    with torch.no_grad():  # weights a rebuilt (seeded) architecture would not have
        component.estimator.head.bias.add_(0.3)
    return _pipe(pose_estimator=component, pose_guidance_scale=0.5, **(pipe_kwargs or {}))


def _keypoints(b: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(9)
    xy = torch.rand(b, 17, 2, generator=g) * torch.tensor([21.0, 31.0])
    return xy, torch.ones(b, 17, dtype=torch.bool)


def test_pose_estimator_component_round_trips_and_guides_by_default(tmp_path):
    _, _, pipe = _guided()
    source, pose = _inputs(2)
    xy, vis = _keypoints(2)
    guided = pipe(source, pose, num_inference_steps=2, target_xy=xy, target_visible=vis)
    plain = pipe(source, pose, num_inference_steps=2, pose_guidance_scale=0.0)
    assert len(guided.pose_field) == 2 and not plain.pose_field  # eta from the config when not passed
    assert (guided.images - plain.images).abs().max() > 0
    with pytest.raises(ValueError, match="target_xy"):
        pipe(source, pose, num_inference_steps=1)
    pipe.save_pretrained(tmp_path / "p")
    loaded = RePoseDMPipeline.from_pretrained(tmp_path / "p")
    loaded.set_progress_bar_config(disable=True)
    before, after = pipe.pose_estimator.state_dict(), loaded.pose_estimator.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert loaded.pose_estimator.guidance_config == pipe.pose_estimator.guidance_config
    assert loaded.pose_estimator.guidance_config.sample_grad == "tweedie"
    again = loaded(source, pose, num_inference_steps=2, target_xy=xy, target_visible=vis)
    assert torch.equal(again.images, guided.images) and again.pose_field == guided.pose_field


@pytest.mark.parametrize(("train_mode", "explicit", "expected"),
                         [("second-order", None, "eps"), ("first-order", None, "step"), ("off", None, "step"),
                          ("second-order", "step", "step")])
def test_pose_guidance_rule_follows_the_recorded_training_objective(monkeypatch, train_mode, explicit, expected):
    import reposedm.pipeline as pipeline_mod

    seen = []
    real = pipeline_mod.sample

    @functools.wraps(real)
    def spy(*args, **kwargs):
        seen.append(kwargs.get("pose_guidance_rule"))
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline_mod, "sample", spy)
    _, _, pipe = _guided({"train_mode": train_mode})
    xy, vis = _keypoints(1)
    pipe(*_inputs(1), num_inference_steps=1, target_xy=xy, target_visible=vis, pose_guidance_rule=explicit)
    assert seen == [expected]


# ------------------------------------------------------------------------------ run folders as pipelines


@pytest.fixture(scope="module")
def _run_template(synth_root, tmp_path_factory) -> Path:
    from reposedm.data import PairSource
    from reposedm.train import train

    out = tmp_path_factory.mktemp("tiny-run") / "run"
    cfg = load_config("tiny-b1", sample_every=0, checkpoint_every=1, keep_checkpoints=5)
    train(cfg, source=PairSource("deepfashion", synth_root, "train"), out=out, max_steps=3, progress=False)
    return out


@pytest.fixture
def trained_run(_run_template, tmp_path) -> Path:
    """A fresh copy of a 3-step tiny-b1 run (3 checkpoints) that a test may change."""
    import shutil

    return Path(shutil.copytree(_run_template, tmp_path / "run", symlinks=True))


def _sample_in_fresh_process(folder: Path, tmp: Path) -> str:
    """DiffusionPipeline.from_pretrained in a new interpreter (nothing of reposedm imported), offline, with an
    empty HF home: what a user of plain diffusers does. Samples tmp/inputs.pt into tmp/images.pt."""
    code = ("import sys, torch; from diffusers import DiffusionPipeline; "
            "p = DiffusionPipeline.from_pretrained(sys.argv[1], trust_remote_code=True); "
            "p.set_progress_bar_config(disable=True); source, pose = torch.load(sys.argv[2] + '/inputs.pt'); "
            "torch.save(p(source, pose, num_inference_steps=2).images, sys.argv[2] + '/images.pt'); "
            "print(type(p).__module__, type(p).__name__, sorted(p.components))")
    home = tmp / "hf-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(home), HF_HUB_OFFLINE="1")
    res = subprocess.run([sys.executable, "-c", code, str(folder), str(tmp)], capture_output=True, text=True,
                         env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout.strip().splitlines()[-1]


def test_a_run_folder_becomes_a_diffusers_pipeline(trained_run, tmp_path):
    from reposedm.checkpoints import (
        EXPORT_RECORD,
        list_checkpoints,
        load_pipeline,
        weights_fingerprint,
        write_run_pipeline,
    )

    run = trained_run
    ckpts = list_checkpoints(run)
    assert len(ckpts) == 3
    # the trainer exports every checkpoint it writes: the run already loads as its newest checkpoint
    assert json.loads((run / "pipeline" / "current" / EXPORT_RECORD).read_text())["step"] == 3
    assert (run / "model_index.json").is_file()
    # a run trained before the export existed: no model_index.json, and a message that says what to do
    for entry in run.iterdir():
        if entry.is_symlink():
            entry.unlink()
    shutil.rmtree(run / "pipeline")
    with pytest.raises(PosebenchError, match=r"run folder without model_index.json.*write_run_pipeline"):
        RePoseDMPipeline.from_pretrained(run)
    write_run_pipeline(run, ckpts[0])
    write_run_pipeline(run, ckpts[1])
    target = write_run_pipeline(run)  # the newest
    assert target == run / "pipeline" / ckpts[2].name
    assert sorted(p.name for p in (run / "pipeline").iterdir()) == [ckpts[1].name, ckpts[2].name, "current"]
    assert os.readlink(run / "unet") == "pipeline/current/unet" and (run / "model_index.json").is_file()
    record = json.loads((target / EXPORT_RECORD).read_text())
    assert record["step"] == 3 and record["weights_sha256"] == weights_fingerprint(ckpts[2], "ema")

    moved = tmp_path / "moved"
    run.rename(moved)  # relative links: a moved run still loads
    source, pose = _inputs(1)
    expected, _, _ = load_pipeline(moved)
    expected.set_progress_bar_config(disable=True)
    want = expected(source, pose, num_inference_steps=2).images
    pipe = RePoseDMPipeline.from_pretrained(moved)
    pipe.set_progress_bar_config(disable=True)
    assert torch.equal(pipe(source, pose, num_inference_steps=2).images, want)

    # a copy that followed the links (shutil.copytree's default, cp -rL) holds copies where links were: the next
    # export replaces exactly those copies by links again, and a user's own file of another name stays
    copied = tmp_path / "copied"
    shutil.copytree(moved, copied)
    assert not (copied / "pipeline" / "current").is_symlink() and not (copied / "unet").is_symlink()
    (copied / "notes.txt").write_text("mine")
    write_run_pipeline(copied)
    assert (copied / "pipeline" / "current").is_symlink() and os.readlink(copied / "unet") == "pipeline/current/unet"
    assert (copied / "notes.txt").read_text() == "mine"
    pipe = RePoseDMPipeline.from_pretrained(copied)
    pipe.set_progress_bar_config(disable=True)
    assert torch.equal(pipe(source, pose, num_inference_steps=2).images, want)


def test_diffusion_pipeline_loads_a_run_in_a_fresh_process(trained_run, tmp_path):
    from reposedm.checkpoints import load_pipeline, write_run_pipeline

    write_run_pipeline(trained_run)
    source, pose = _inputs(1)
    expected, _, _ = load_pipeline(trained_run)
    expected.set_progress_bar_config(disable=True)
    torch.save((source, pose), tmp_path / "inputs.pt")
    out = _sample_in_fresh_process(trained_run, tmp_path)
    assert out.startswith("reposedm.pipeline RePoseDMPipeline") and "'condition_encoder'" in out
    assert torch.equal(torch.load(tmp_path / "images.pt"), expected(source, pose, num_inference_steps=2).images)
    assert list((tmp_path / "hf-home" / "modules").rglob("pipeline_reposedm.py"))  # where diffusers copied it


def test_export_is_atomic_and_refuses_foreign_folders(trained_run, tmp_path, monkeypatch):
    from reposedm.checkpoints import CheckpointError, export_pipeline

    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not an exported pipeline"):
        export_pipeline(trained_run, other)
    assert (other / "keep.txt").read_text() == "mine"

    out = export_pipeline(trained_run, tmp_path / "export")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def full_disk(self, folder, *args, **kwargs):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "half.bin").write_bytes(b"x")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(RePoseDMPipeline, "save_pretrained", full_disk)
    with pytest.raises(CheckpointError, match="could not export"):
        export_pipeline(trained_run, out)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_older_layout_run_samples_and_bad_names_fail_before_work(trained_run, tmp_path):
    """A run written before the split (top-level condition keys) samples as before; a bad scheduler name is
    refused before the checkpoint is even verified."""
    import hashlib

    from reposedm.checkpoints import CHECKSUMS, list_checkpoints, load_pipeline

    source, pose = _inputs(1)
    pipe, _, _ = load_pipeline(trained_run)
    pipe.set_progress_bar_config(disable=True)
    want = pipe(source, pose, num_inference_steps=2).images
    ckpt = list_checkpoints(trained_run)[-1]
    sums = json.loads((ckpt / CHECKSUMS).read_text())
    for sub in ("model", "ema"):
        weights = ckpt / sub / "diffusion_pytorch_model.safetensors"
        save_file(_old_layout(load_file(str(weights))), str(weights), metadata={"format": "pt"})
        sums[f"{sub}/{weights.name}"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (ckpt / CHECKSUMS).write_text(json.dumps(sums))
    old, _, _ = load_pipeline(trained_run)
    old.set_progress_bar_config(disable=True)
    assert torch.equal(old(source, pose, num_inference_steps=2).images, want)

    (ckpt / CHECKSUMS).unlink()  # an unverifiable checkpoint: the name is checked first, and named
    with pytest.raises(SchedulerError, match="nonsense"):
        load_pipeline(trained_run, scheduler="nonsense")
