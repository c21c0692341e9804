"""Pose interaction field G (eq. 11) and its gradients (eq. 12/15/19) against finite differences in float64."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from posebench.pose import build_estimator, keypoint_heatmaps
from reposedm.config import GuidanceConfig, load_config
from reposedm.diffusion import Schedule, make_scheduler
from reposedm.guidance import PoseField, field_of_latents, guidance_gradient
from reposedm.models.network import RePoseDMModel
from reposedm.sampling import generators_for, sample
from reposedm.train import Objective

RTOL = 1e-6  # central differences with h = 1e-5 in float64: truncation O(h^2) ~1e-10, rounding ~1e-11 / h


def _tiny_full(dtype=torch.float64):
    cfg = load_config("tiny-full")
    cfg = replace(cfg, model=replace(cfg.model, zero_init=False))  # a zero-initialized U-Net ignores its input
    torch.manual_seed(0)
    model = RePoseDMModel.from_model_config(cfg.model).eval()
    model = model.to(dtype)
    with torch.no_grad():  # a fresh RPA predicts zero flow; give it a non-trivial one
        head = model.alignment.aggregator.conv_out
        head.weight.copy_(torch.randn(head.weight.shape, generator=torch.Generator().manual_seed(2)) * 0.01)
        head.bias.fill_(0.3)
    return cfg, model


def _keypoints(b: int, h: int, w: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(b, 17, 2, generator=g, dtype=torch.float64) * torch.tensor([w - 1, h - 1], dtype=torch.float64)
    visible = torch.rand(b, 17, generator=g) > 0.2
    return xy, visible


def _field(cfg, dtype=torch.float64, **over) -> PoseField:
    est = build_estimator("tiny-random", seed=1).to(dtype)
    return PoseField(est, replace(cfg.model.guidance, **over))


def _guided_setup(b: int, seed: int):
    """A tiny float64 full model, its pose field, schedule, a random condition and a keypoint reference."""
    cfg, model = _tiny_full()
    field = _field(cfg)
    g = torch.Generator().manual_seed(seed)
    source = torch.rand(b, 3, 32, 22, generator=g, dtype=torch.float64) * 2 - 1
    pose = torch.rand(b, 20, 32, 22, generator=g, dtype=torch.float64)
    xy, visible = _keypoints(b, 32, 22)
    ref = field.reference(target_xy=xy, target_visible=visible, image_size=(32, 22))
    return cfg, model, field, Schedule.from_config(cfg.model), source, pose, ref, g


def _central_difference(fn, y: torch.Tensor, v: torch.Tensor, h: float = 1e-5) -> float:
    return float((fn(y + h * v) - fn(y - h * v)) / (2 * h))


def test_field_is_zero_at_the_reference_and_positive_elsewhere():
    cfg, _ = _tiny_full()
    field = _field(cfg, reference="target-image")
    images = torch.rand(2, 3, 32, 22, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    ref = field.reference(target_images=images)
    assert torch.equal(field(images, ref), torch.zeros(2, dtype=torch.float64))
    assert (field(images.flip(-1), ref) > 0).all()
    assert set(ref.mask.unique().tolist()) <= {0.0, 1.0}


def test_keypoint_reference_mask_follows_eq11_threshold():
    cfg, _ = _tiny_full()
    field = _field(cfg)
    xy, visible = _keypoints(1, 32, 22)
    ref = field.reference(target_xy=xy, target_visible=visible, image_size=(32, 22))
    maps = keypoint_heatmaps(xy, visible, (16, 11), stride=2)
    assert torch.equal(ref.target, maps)
    assert torch.equal(ref.mask, (maps.sum(1, keepdim=True) > 0.1).to(maps.dtype))
    with pytest.raises(ValueError, match="target_xy"):
        field.reference(image_size=(32, 22))
    with pytest.raises(ValueError, match="training only"):
        _field(cfg, reference="target-image").reference()


def test_estimator_scale_is_the_field_of_the_upsampled_image():
    """estimator_scale 2 on a 32x22 image == scale 1 on the same image upsampled to 64x44 (bilinear, pixel
    centres kept), keypoints mapped by x -> (x + 0.5) * 2 - 0.5; and phi really runs at 64x44."""
    import torch.nn.functional as F

    cfg, _ = _tiny_full()
    plain, scaled = _field(cfg), _field(cfg, estimator_scale=2)
    g = torch.Generator().manual_seed(4)
    images = torch.rand(2, 3, 32, 22, generator=g, dtype=torch.float64)
    xy, visible = _keypoints(2, 32, 22)
    ref = scaled.reference(target_xy=xy, target_visible=visible, image_size=(32, 22))
    big = F.interpolate(images, scale_factor=2, mode="bilinear", align_corners=False)
    ref_big = plain.reference(target_xy=(xy + 0.5) * 2 - 0.5, target_visible=visible, image_size=(64, 44))
    assert ref.target.shape[-2:] == (64 // 2, 44 // 2)  # tiny-random has stride 2
    torch.testing.assert_close(ref.target, ref_big.target, rtol=0, atol=1e-12)
    torch.testing.assert_close(scaled(images, ref), plain(big, ref_big), rtol=0, atol=1e-12)
    assert not torch.allclose(plain.reference(target_xy=xy, target_visible=visible, image_size=(32, 22)).target[
        ..., :16, :11], ref.target[..., :16, :11])  # the scale is not a no-op
    # the field's gradient still reaches the small image
    y = images.clone().requires_grad_(True)
    scaled(y, ref).sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", ["unet", "tweedie"])
def test_sampling_gradient_matches_finite_differences(mode):
    """grad_{y_t} G (eq. 12/19) through the denoiser (unet) or through Tweedie's map only (tweedie)."""
    cfg, model, field, schedule, source, pose, ref, g = _guided_setup(1, seed=0)
    y = torch.randn(1, 3, 32, 22, generator=g, dtype=torch.float64)
    t = torch.tensor([400])
    cond = model.encode_condition(source, pose)

    def decode(x):
        return (x + 1) / 2

    def eps_fn(latents):
        return model.denoise(latents, t, cond)[:, :3]

    with torch.no_grad():
        eps_fixed = eps_fn(y)
    if mode == "unet":
        grad, _ = guidance_gradient(field, ref, schedule, y, t, decode, eps_fn=eps_fn)

        def G(latents):
            with torch.no_grad():
                return field_of_latents(field, ref, schedule, latents, t, eps_fn(latents), decode).sum()
    else:
        grad, _ = guidance_gradient(field, ref, schedule, y, t, decode, eps_pred=eps_fixed)

        def G(latents):
            with torch.no_grad():
                return field_of_latents(field, ref, schedule, latents, t, eps_fixed, decode).sum()

    assert grad.abs().sum() > 0
    for k in range(3):
        v = torch.randn(y.shape, generator=torch.Generator().manual_seed(10 + k), dtype=torch.float64)
        assert float((grad * v).sum()) == pytest.approx(_central_difference(G, y, v), rel=RTOL, abs=1e-12)


@pytest.mark.parametrize("mode", ["second-order", "first-order"])
def test_training_gradient_matches_finite_differences(mode, synth_root):
    """d loss / d theta with the field in the loss (eq. 15 second-order through autograd, or lambda * G).

    L_vlb is switched off here: its stop-gradient on the mean (by design) makes autograd differ from the true
    derivative, which finite differences would see.
    """
    from reposedm.data import PairDataset, PairSource, collate

    cfg, model = _tiny_full()
    cfg = replace(cfg, model=replace(cfg.model, vlb_weight=0.0,
                                     guidance=replace(cfg.model.guidance, train_mode=mode)))
    if mode == "second-order":
        from diffusers.models.attention_processor import AttnProcessor

        model.unet.set_attn_processor(AttnProcessor())
    objective = Objective(cfg, None, _field(cfg))
    ds = PairDataset(PairSource("deepfashion", synth_root, "train"), cfg.model.resolution, cfg.model.pose_renderer)
    batch = {k: (v.double() if v.is_floating_point() else v) for k, v in collate([ds[0], ds[1]]).items()}
    g = torch.Generator().manual_seed(5)
    t = torch.tensor([300, 700])
    noise = torch.randn(2, 3, 32, 22, generator=g, dtype=torch.float64)
    drop = torch.tensor([False, False])
    param = model.unet.conv_out.bias  # on every path: eps, the x0 estimate, the field and its gradient

    def loss_at(value: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            param.copy_(value)
        return objective(model, batch, t, noise, drop)[0]

    base = param.detach().clone()
    model.zero_grad()
    loss_at(base).backward()
    analytic = param.grad.clone()
    for k in range(param.numel()):
        e = torch.zeros_like(base)
        e[k] = 1e-5
        with torch.enable_grad():
            numeric = (float(loss_at(base + e).detach()) - float(loss_at(base - e).detach())) / 2e-5
        assert float(analytic[k]) == pytest.approx(numeric, rel=1e-5, abs=1e-9), k
    loss_at(base)


def _first_ddim_step(cfg, model, field, ref, schedule, source, pose, decode):
    """Recomputed by hand for a 1-step DDIM run of 2 images with seed 0: y_T, the scheduler, t, the condition, the
    CFG-combined eps (w_c = 2) and the Tweedie-only gradient of G at y_T."""
    from diffusers.utils.torch_utils import randn_tensor

    y = randn_tensor((2, 3, 32, 22), generator=generators_for(0, [0, 1]), dtype=torch.float64)
    scheduler = make_scheduler(cfg.model, "ddim")
    scheduler.set_timesteps(1)
    t = scheduler.timesteps[0]
    cond = model.encode_condition(source, pose)
    with torch.no_grad():
        out = model.denoise(torch.cat([y, y]), t.expand(4), cond.cat(model.unconditional(cond)))
    eps = out[2:, :3] + 2.0 * (out[:2, :3] - out[2:, :3])
    grad, _ = guidance_gradient(field, ref, schedule, y, t.expand(2), decode, eps_pred=eps)
    return y, scheduler, t, cond, eps, grad


def test_guided_sampling_step_is_the_unguided_step_minus_eta_grad():
    """One DDIM step: y'_{t-1} = y_{t-1} - eta * grad_{y_t} G (eq. 19), with CFG combined as in eq. 16."""
    cfg, model, field, schedule, source, pose, ref, _ = _guided_setup(2, seed=1)

    def decode(x):
        return (x + 1) / 2

    def run(eta: float, mode: str = "tweedie"):
        scheduler = make_scheduler(cfg.model, "ddim")
        return sample(model, scheduler, source, pose, generators=generators_for(0, [0, 1]), num_inference_steps=1,
                      guidance_scale=2.0, schedule=schedule, pose_field=field, field_reference=ref,
                      pose_guidance_scale=eta, sample_grad=mode, decode=decode)

    plain, guided = run(0.0), run(0.5)
    y, scheduler, t, cond, eps, grad = _first_ddim_step(cfg, model, field, ref, schedule, source, pose, decode)
    torch.testing.assert_close(guided.latents, plain.latents - 0.5 * grad, rtol=0, atol=1e-12)
    assert len(guided.pose_field) == 1 and not plain.pose_field

    # sample_grad "unet": the gradient goes through the denoiser; the step itself reuses that U-Net output.
    both = cond.cat(model.unconditional(cond))

    def eps_fn(latents):
        o = model.denoise(torch.cat([latents, latents]), t.expand(4), both)
        return o[2:, :3] + 2.0 * (o[:2, :3] - o[2:, :3])

    grad_unet, _ = guidance_gradient(field, ref, schedule, y, t.expand(2), decode, eps_fn=eps_fn)
    assert not torch.allclose(grad_unet, grad)
    torch.testing.assert_close(run(0.5, "unet").latents, plain.latents - 0.5 * grad_unet, rtol=0, atol=1e-12)


def test_guidance_config_defaults_are_the_documented_ones():
    g = GuidanceConfig()
    assert (g.mask_threshold, g.field, g.reference, g.train_mode, g.sample_grad, g.estimator_scale) == (
        0.1, "heatmaps", "keypoints", "second-order", "unet", 1)


def test_second_order_training_through_a_vae_decoder():
    """Eq. 15 in latent space differentiates twice through the VAE decoder's attention: the trainer's
    `enable_double_backward` must cover it (SDPA kernels have no double backward)."""
    from diffusers import AutoencoderKL

    from reposedm.train import enable_double_backward, needs_double_backward

    cfg = load_config("tiny-full")
    mc = replace(cfg.model, latent="vae", resolution=(64, 48), cond_downsample=1, rpa_kernel_sizes=(2,),
                 zero_init=False)
    cfg = replace(cfg, model=mc)
    torch.manual_seed(0)
    model = RePoseDMModel.from_model_config(mc)
    vae = AutoencoderKL(latent_channels=4, block_out_channels=(8, 8, 8, 8),
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        layers_per_block=1, norm_num_groups=4).eval()
    vae.requires_grad_(False)
    assert needs_double_backward(cfg)
    enable_double_backward(model, vae)  # without it: "derivative ... not implemented"
    objective = Objective(cfg, vae, _field(cfg, dtype=torch.float32))
    g = torch.Generator().manual_seed(0)
    xy, visible = _keypoints(2, 64, 48)
    batch = {"source": torch.rand(2, 3, 64, 48, generator=g), "target": torch.rand(2, 3, 64, 48, generator=g),
             "pose_map": torch.rand(2, 20, 64, 48, generator=g), "target_xy": xy.float(), "target_visible": visible}
    loss, logs = objective(model, batch, torch.tensor([100, 900]), torch.randn(2, 4, 8, 6, generator=g),
                           torch.tensor([False, True]))
    loss.backward()
    assert "pose_field" in logs and model.unet.conv_out.bias.grad is not None


def test_pose_field_with_higherhrnet_at_deepfashion_size():
    """Gradient guidance's G_phi with HigherHRNet on 256x176 images: the keypoint reference's grid equals phi's,
    and G is differentiable down to the image (the paper-size `full` configs need exactly this)."""
    from posebench.pose.higherhrnet import higherhrnet_w32

    torch.manual_seed(0)
    field = PoseField(higherhrnet_w32(), GuidanceConfig(enabled=True, estimator="higherhrnet-w32-coco"))
    xy = torch.tensor([[[88.0, 40.0]] * 17])
    ref = field.reference(target_xy=xy, target_visible=torch.ones(1, 17), image_size=(256, 176))
    assert ref.target.shape == (1, 17, 128, 88) and ref.mask.sum() > 0
    image = torch.rand(1, 3, 256, 176, requires_grad=True)
    g = field(image, ref)
    g.sum().backward()
    assert g.shape == (1,) and torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0


# ---------------------------------------------------------------- both sampling rules move y~_0 down an analytic G


class _IdentityEstimator(torch.nn.Module):
    """phi(image) = image: with a full mask, G(image) = sum_c mean_x (image - target)^2, minimal at `target`."""

    stride = 1

    def forward(self, images):
        from posebench.pose.base import PoseOutput

        return PoseOutput(heatmaps=images, features=images)


class _LinearDenoiser:
    """eps_theta(y_t) = k y_t for both CFG branches: Tweedie's y~_0 is linear in y_t, so the effect of guidance on
    it can be compared step by step between a guided and an unguided run from the same noise."""

    latent_channels = 3

    def __init__(self, k: float) -> None:
        self.k = k

    def encode_condition(self, source, pose_map, return_intermediates=False):
        from types import SimpleNamespace

        def cat(other):
            return SimpleNamespace(tokens=torch.cat([source[:, :1, 0]] * 2), cat=cat)

        return SimpleNamespace(tokens=source[:, :1, 0], flow=None, warped=[], cat=cat)

    def unconditional(self, cond):
        return cond

    def denoise(self, latents, timesteps, cond):
        return self.k * latents


@pytest.mark.parametrize("rule", ["eps", "step"])
@pytest.mark.parametrize("mode", ["tweedie", "unet"])
def test_both_guidance_rules_move_the_predicted_y0_down_an_analytic_field(rule: str, mode: str):
    """With a quadratic G of known minimum, guided sampling (eq. 16 after second-order training, eq. 19 otherwise)
    lowers G of Tweedie's y~_0 after every step, and of the final sample, against the same run unguided."""
    from reposedm.diffusion import predict_x0
    from reposedm.guidance import FieldReference
    from reposedm.sampling import pose_guidance_rule_for

    assert pose_guidance_rule_for("second-order") == "eps" and pose_guidance_rule_for("first-order") == "step"
    cfg = load_config("tiny-full")
    # latent-space DDIM: no y~_0 clipping, which would saturate the analytic check (docs/model.md, eq. 16)
    model_cfg = replace(cfg.model, learned_variance=False, latent="vae")
    schedule = Schedule.from_config(model_cfg)
    model = _LinearDenoiser(0.9)
    field = PoseField(_IdentityEstimator(), GuidanceConfig(enabled=True))
    target = torch.rand(2, 3, 16, 12, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ref = FieldReference(target, torch.ones(2, 1, 16, 12, dtype=torch.float64))
    source = torch.zeros(2, 3, 16, 12, dtype=torch.float64)

    def decode(x):
        return (x + 1) / 2

    def run(eta: float) -> list[torch.Tensor]:
        """G(decode(y~_0)) after every step, y~_0 from the latents the step produced."""
        scheduler = make_scheduler(model_cfg, "ddim")
        fields: list[torch.Tensor] = []

        def after_step(i: int, n: int, latents: torch.Tensor) -> None:
            if i + 1 < n:
                t = scheduler.timesteps[i + 1].expand(2)
                fields.append(field(decode(predict_x0(schedule, latents, t, model.k * latents)), ref))

        out = sample(model, scheduler, source, source, generators=generators_for(0, [0, 1]), num_inference_steps=10,
                     guidance_scale=2.0, schedule=schedule, pose_field=field, field_reference=ref,
                     pose_guidance_scale=eta, sample_grad=mode, decode=decode, pose_guidance_rule=rule,
                     callback=after_step)
        fields.append(field(decode(out.latents), ref))
        return fields

    # eq. 16 scales the gradient by w_c sqrt(1 - abar_t) inside eps, which Tweedie divides by sqrt(abar_t) again:
    # near t = T that is ~1e4 times eq. 19's step, so the same G needs a much smaller eta
    plain, guided = run(0.0), run(0.02 if rule == "step" else 0.01)
    for k, (g_plain, g_guided) in enumerate(zip(plain, guided, strict=True)):
        assert torch.all(g_guided < g_plain), f"step {k}: G {g_guided.tolist()} not below {g_plain.tolist()}"


def test_eps_rule_is_eq16_in_one_step():
    """One DDIM step under the "eps" rule equals the DDIM step taken with eps^ + w_c eta sqrt(1 - abar_t) grad G."""
    cfg, model, field, schedule, source, pose, ref, _ = _guided_setup(2, seed=1)

    def decode(x):
        return (x + 1) / 2

    def run(eta: float, rule: str):
        return sample(model, make_scheduler(cfg.model, "ddim"), source, pose, generators=generators_for(0, [0, 1]),
                      num_inference_steps=1, guidance_scale=2.0, schedule=schedule, pose_field=field,
                      field_reference=ref, pose_guidance_scale=eta, sample_grad="tweedie", decode=decode,
                      pose_guidance_rule=rule)

    y, scheduler, t, _, eps, grad = _first_ddim_step(cfg, model, field, ref, schedule, source, pose, decode)
    abar = schedule.alphas_cumprod[int(t)]
    expected_eps = eps + 2.0 * 0.5 * (1 - abar).sqrt() * grad
    expected = scheduler.step(expected_eps, t, y).prev_sample  # DDIM takes eps only (no learned variance)
    torch.testing.assert_close(run(0.5, "eps").latents, expected, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="pose_guidance_rule"):
        run(0.5, "sideways")
    # both CFG branches holding the pose (RePoseSD's text-only CFG): the gradient is re-added once, not w_c times
    once = sample(model, make_scheduler(cfg.model, "ddim"), source, pose, generators=generators_for(0, [0, 1]),
                  num_inference_steps=1, guidance_scale=2.0, schedule=schedule, pose_field=field, field_reference=ref,
                  pose_guidance_scale=0.5, sample_grad="tweedie", decode=decode, pose_guidance_rule="eps",
                  unconditional_has_pose=True)
    expected_once = scheduler.step(eps + 0.5 * (1 - abar).sqrt() * grad, t, y).prev_sample
    torch.testing.assert_close(once.latents, expected_once, rtol=0, atol=1e-12)


def test_mask_from_the_generated_pose_is_eq11_and_carries_no_gradient():
    """mask_from "generated" (the paper): M = 1[sum_j H_j(P~_t) > 0.1] of phi of the image being scored, an indicator
    that the gradient does not flow through; "reference" keeps the reference's M."""
    cfg = load_config("tiny-full")
    images = torch.rand(2, 3, 32, 22, generator=torch.Generator().manual_seed(4), dtype=torch.float64,
                        requires_grad=True)
    out = _field(cfg).estimator(images)
    # a random network's heatmaps sum to ~9 everywhere: threshold at their median so that M is a real partition
    threshold = float(out.heatmaps.detach().sum(1).median())
    gen_field = _field(cfg, mask_from="generated", mask_threshold=threshold)
    ref_field = _field(cfg, mask_from="reference", mask_threshold=threshold)
    xy, visible = _keypoints(2, 32, 22)
    ref = _field(cfg).reference(target_xy=xy, target_visible=visible, image_size=(32, 22))
    mask = (out.heatmaps.sum(1, keepdim=True) > threshold).to(torch.float64)
    assert 0 < mask.mean() < 1  # the check below is not trivial
    by_hand = (mask * (out.heatmaps - ref.target).square()).sum(1).flatten(1).mean(1)
    torch.testing.assert_close(gen_field(images, ref), by_hand, rtol=0, atol=1e-12)
    (grad,) = torch.autograd.grad(gen_field(images, ref).sum(), images)
    (grad_by_hand,) = torch.autograd.grad(by_hand.sum(), images)  # the mask is a constant there too
    torch.testing.assert_close(grad, grad_by_hand, rtol=0, atol=1e-12)
    with_ref_mask = (ref.mask * (out.heatmaps - ref.target).square()).sum(1).flatten(1).mean(1)
    torch.testing.assert_close(ref_field(images, ref), with_ref_mask, rtol=0, atol=1e-12)
    assert not torch.allclose(by_hand, with_ref_mask)
