"""Model shapes, the sampler's determinism and cost structure, and the diffusers pipeline round trip."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from reposedm.config import load_config
from reposedm.diffusion import make_scheduler
from reposedm.models.network import RePoseDMModel
from reposedm.pipeline import RePoseDMPipeline
from reposedm.sampling import generators_for, image_seed


def _model(variant: str, seed: int = 0) -> tuple:
    """A fresh tiny model whose U-Net responds to its inputs (a zero-initialized one outputs 0 for any input)."""
    cfg = load_config(f"tiny-{variant}")
    cfg = replace(cfg, model=replace(cfg.model, zero_init=False))
    torch.manual_seed(seed)
    return cfg, RePoseDMModel.from_model_config(cfg.model).eval()


def test_zero_init_starts_residual_blocks_as_identity_and_the_output_at_zero():
    from diffusers.models.resnet import ResnetBlock2D

    cfg = load_config("tiny-b1")
    torch.manual_seed(0)
    zeroed = RePoseDMModel.from_model_config(replace(cfg.model, zero_init=True))
    source, pose = _inputs(2)
    latents = torch.randn(2, 3, 32, 22)
    with torch.no_grad():
        assert not zeroed(latents, torch.tensor([10, 900]), source * 2 - 1, pose).any()
        _, plain = _model("b1")
        assert plain(latents, torch.tensor([10, 900]), source * 2 - 1, pose).abs().min() > 0
    blocks = [m for m in zeroed.unet.modules() if isinstance(m, ResnetBlock2D)]
    assert blocks and all(not b.conv2.weight.any() and not b.conv2.bias.any() for b in blocks)
    assert all(b.conv2.weight.any() for b in plain.unet.modules() if isinstance(b, ResnetBlock2D))


def _inputs(b: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, 32, 22, generator=g), torch.rand(b, 20, 32, 22, generator=g)


@pytest.mark.parametrize("variant", ["b1", "b2", "full"])
def test_shapes_and_dtypes(variant):
    cfg, model = _model(variant)
    source, pose = _inputs(2)
    cond = model.encode_condition(source * 2 - 1, pose, return_intermediates=True)
    tokens = (32 // 2) * (22 // 2)  # cond_downsample 2
    assert cond.tokens.shape == (2, tokens, cfg.model.cond_dim) and cond.tokens.dtype == torch.float32
    assert cond.pose_embed.shape == (2, cfg.model.pose_embed_channels, 32, 22)
    if variant == "b1":
        assert cond.flow is None and cond.warped == []
    else:
        assert cond.flow.shape == (2, 2, 32, 22)
        assert len(cond.warped) == cfg.model.rpa_iterations
        # fresh RPA: zero flow, the warped source is the source
        assert torch.equal(cond.flow, torch.zeros_like(cond.flow))
        torch.testing.assert_close(cond.warped[-1], source * 2 - 1, rtol=0, atol=1e-6)
    out = model(torch.randn(2, 3, 32, 22), torch.tensor([1, 999]), source * 2 - 1, pose)
    assert out.shape == (2, 6, 32, 22) and out.dtype == torch.float32  # eps + learned-variance interpolation
    half = model.to(torch.float64)(torch.randn(1, 3, 32, 22, dtype=torch.float64), torch.tensor([5]),
                                   source[:1].double(), pose[:1].double())
    assert half.dtype == torch.float64


def test_bad_shapes_are_named():
    _, model = _model("b1")
    source, pose = _inputs(2)
    with pytest.raises(ValueError, match=r"source must be \(B, 3, 32, 22\)"):
        model.encode_condition(source[:, :, :16], pose)
    with pytest.raises(ValueError, match=r"pose_map must be the rendered pose map, \(B, 20, 32, 22\)"):
        model.encode_condition(source, pose[:, :18])
    with pytest.raises(ValueError, match="batch sizes differ"):
        model.encode_condition(source, pose[:1])


def test_cfg_dropout_replaces_tokens_by_the_null_condition():
    _, model = _model("b1")
    source, pose = _inputs(2)
    with torch.no_grad():
        model.null_tokens.fill_(0.5)
        cond = model.encode_condition(source, pose, drop=torch.tensor([False, True]))
        full = model.encode_condition(source, pose)
    assert torch.equal(cond.tokens[0], full.tokens[0])
    assert torch.all(cond.tokens[1] == 0.5)
    assert torch.equal(cond.pose_embed, full.pose_embed)  # cfg_drop "source" keeps the pose (PIDM)
    assert torch.equal(model.unconditional(full).tokens, torch.full_like(full.tokens, 0.5))


def test_image_k_depends_only_on_seed_and_k():
    """The same image k whether sampled alone or in a batch with others (per-image generators)."""
    cfg, model = _model("b2")
    # float64: CPU kernels block a batch of 3 differently from a batch of 1, which in float32 leaves ~2e-5 of
    # rounding after 4 DDPM steps; in float64 that is ~1e-13, so 1e-10 checks the seeding, not the kernels.
    pipe = RePoseDMPipeline.from_model(model.to(torch.float64), make_scheduler(cfg.model, "ddpm"))
    pipe.set_progress_bar_config(disable=True)
    source, pose = _inputs(3)
    together = pipe(source, pose, num_inference_steps=4, seed=7, indices=[0, 1, 2]).images
    alone = pipe(source[2:], pose[2:], num_inference_steps=4, seed=7, indices=[2]).images
    torch.testing.assert_close(together[2:], alone, rtol=0, atol=1e-10)
    other_seed = pipe(source[2:], pose[2:], num_inference_steps=4, seed=8, indices=[2]).images
    assert (other_seed - alone).abs().max() > 1e-2
    assert image_seed(7, 2) != image_seed(2, 7) and image_seed(7, 2) == image_seed(7, 2)


def test_rpa_runs_once_per_sample_and_cfg_batches_both_branches():
    cfg, model = _model("b2")
    calls = {"rpa": 0, "unet": []}
    model.alignment.register_forward_hook(lambda *a: calls.__setitem__("rpa", calls["rpa"] + 1))
    model.unet.register_forward_hook(lambda m, args, kw, out: calls["unet"].append(args[0].shape[0]),
                                     with_kwargs=True)
    pipe = RePoseDMPipeline.from_model(model, make_scheduler(cfg.model, "ddim"))
    pipe.set_progress_bar_config(disable=True)
    source, pose = _inputs(2)
    pipe(source, pose, num_inference_steps=5, guidance_scale=2.0)
    assert calls["rpa"] == 1 and calls["unet"] == [4] * 5  # one batched call per step: conditional + null
    calls["unet"].clear()
    pipe(source, pose, num_inference_steps=3, guidance_scale=1.0)
    assert calls["unet"] == [2] * 3  # w_c = 1: no unconditional branch


@pytest.mark.parametrize(("variant", "scheduler"), [("b1", "ddpm"), ("full", "ddim"), ("b2", "dpm-solver")])
def test_save_load_round_trip_gives_identical_samples(variant, scheduler, tmp_path):
    cfg, model = _model(variant, seed=3)
    with torch.no_grad():  # make the RPA non-trivial so its weights matter
        if variant != "b1":
            model.alignment.aggregator.conv_out.bias.fill_(0.4)
    pipe = RePoseDMPipeline.from_model(model, make_scheduler(cfg.model, scheduler))
    pipe.set_progress_bar_config(disable=True)
    source, pose = _inputs(2, seed=4)
    before = pipe(source, pose, num_inference_steps=3, seed=11, return_intermediates=True)
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = RePoseDMPipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    after = loaded(source, pose, num_inference_steps=3, seed=11, return_intermediates=True)
    assert type(loaded.scheduler) is type(pipe.scheduler) and loaded.vae is None
    assert torch.equal(before.images, after.images)
    assert len(before.warped) == len(after.warped) == (0 if variant == "b1" else cfg.model.rpa_iterations)
    assert all(torch.equal(a, b) for a, b in zip(before.warped, after.warped, strict=True))
    assert all(list((tmp_path / "pipe" / name).glob("*.safetensors")) for name in ("unet", "condition_encoder"))


def test_latent_space_pipeline_with_a_tiny_autoencoder(tmp_path):
    """The VAE path (paper configs) with a tiny random AutoencoderKL of the same x8 factor, saved and reloaded."""
    from dataclasses import replace

    from diffusers import AutoencoderKL

    cfg = load_config("tiny-b2")
    mc = replace(cfg.model, latent="vae", resolution=(64, 48), cond_downsample=1, rpa_kernel_sizes=(2,))
    torch.manual_seed(0)
    model = RePoseDMModel.from_model_config(mc).eval()
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 8, 8),
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        layers_per_block=1, norm_num_groups=4, scaling_factor=0.18215).eval()
    pipe = RePoseDMPipeline.from_model(model, make_scheduler(mc, "ddim"), vae)
    pipe.set_progress_bar_config(disable=True)
    g = torch.Generator().manual_seed(0)
    source, pose = torch.rand(1, 3, 64, 48, generator=g), torch.rand(1, 20, 64, 48, generator=g)
    assert pipe.encode_images(source).shape == (1, 4, 8, 6)
    out = pipe(source, pose, num_inference_steps=2, seed=0, return_intermediates=True)
    assert out.images.shape == (1, 3, 64, 48) and 0 <= out.images.min() and out.images.max() <= 1
    assert out.warped[0].shape == (1, 3, 64, 48)  # warped latents decoded to images (fig. 9)
    pipe.save_pretrained(tmp_path / "p")
    again = RePoseDMPipeline.from_pretrained(tmp_path / "p")
    again.set_progress_bar_config(disable=True)
    assert torch.equal(again(source, pose, num_inference_steps=2, seed=0).images, out.images)


def test_sd_vae_file_names_are_converted_and_checked(tmp_path, monkeypatch):
    """load_vae reads the registry file by key name: old attention names are mapped; a wrong file is refused."""
    from safetensors.torch import save_file

    from posebench import weights
    from posebench.errors import PosebenchError
    from reposedm import vae as vae_mod

    old_style = {"encoder.mid_block.attentions.0.query.weight": torch.zeros(2, 2)}
    assert list(vae_mod._current_attention_names(old_style)) == ["encoder.mid_block.attentions.0.to_q.weight"]
    bad = tmp_path / "bad.safetensors"
    save_file({"not.a.vae": torch.zeros(1)}, bad)
    monkeypatch.setattr(weights, "ensure", lambda name, allow_download=True: bad)
    cfg = load_config("deepfashion-256-b1")
    with pytest.raises(PosebenchError, match="not an SD AutoencoderKL"):
        vae_mod.load_vae(cfg.model)
    assert vae_mod.load_vae(load_config("tiny-b1").model) is None


def test_generators_for_are_independent_objects():
    gens = generators_for(0, [0, 1])
    assert gens[0] is not gens[1]
    assert not torch.equal(torch.randn(3, generator=gens[0]), torch.randn(3, generator=gens[1]))


@pytest.mark.parametrize("cfg_drop", ["source", "both"])
def test_eq16_rule_knows_whether_the_unconditional_branch_keeps_the_pose(cfg_drop, monkeypatch):
    """cfg_drop "source" keeps P in eps_u, so eq. 16 must re-add the gradient once, not w_c times."""
    import reposedm.pipeline as pipeline_module

    cfg, model = _model("b2")
    model = RePoseDMModel.from_model_config(replace(cfg.model, cfg_drop=cfg_drop)).eval()
    seen: dict = {}
    real_sample = pipeline_module.sample

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_sample(*args, **kwargs)

    monkeypatch.setattr(pipeline_module, "sample", spy)
    pipe = RePoseDMPipeline.from_model(model, make_scheduler(cfg.model, "ddim"))
    pipe.set_progress_bar_config(disable=True)
    source, pose = _inputs(1)
    pipe(source, pose, num_inference_steps=2, guidance_scale=2.0)
    assert seen["unconditional_has_pose"] is (cfg_drop == "source")
