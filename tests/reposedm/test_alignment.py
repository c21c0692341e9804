"""Recurrent Pose Alignment (reposedm.models.alignment): warping, flow composition, correlation, MapFormer, RPA."""

from __future__ import annotations

import math

import pytest
import torch

from reposedm.models.alignment import (
    AlignmentOutput,
    MapFormer,
    PoseAggregator,
    RecurrentPoseAlignment,
    compose_flows,
    local_correlation,
    warp,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _smooth_image(height: int, width: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    ys = torch.arange(height, dtype=dtype).view(height, 1)
    xs = torch.arange(width, dtype=dtype).view(1, width)
    first = torch.sin(xs / 10.0) + torch.cos(ys / 12.0)
    second = 0.002 * xs * ys + torch.sin((xs + ys) / 15.0)
    return torch.stack((first, second)).unsqueeze(0)  # (1, 2, H, W)


def _smooth_flow(height: int, width: int, dx: float, dy: float, amp: float, phase: float) -> torch.Tensor:
    ys = torch.arange(height, dtype=torch.float64).view(height, 1)
    xs = torch.arange(width, dtype=torch.float64).view(1, width)
    fx = dx + amp * torch.sin(2 * math.pi * (xs + phase) / 24.0) * torch.cos(2 * math.pi * ys / 30.0)
    fy = dy + amp * torch.cos(2 * math.pi * (ys + phase) / 28.0)
    return torch.stack((fx.expand(height, width), fy.expand(height, width))).unsqueeze(0)


# ---------------------------------------------------------------------------------------------------------------- warp


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_warp_zero_flow_is_identity(dtype: torch.dtype, atol: float) -> None:
    for height, width in [(5, 4), (16, 12), (64, 48), (1, 7), (6, 1)]:
        image = torch.randn(2, 3, height, width, dtype=dtype) * 5
        out = warp(image, torch.zeros(2, 2, height, width, dtype=dtype))
        assert out.dtype == dtype
        torch.testing.assert_close(out, image, atol=atol, rtol=0)


def test_warp_integer_flow_shifts_exactly() -> None:
    image = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    flow = torch.zeros(2, 2, 7, 6, dtype=torch.float64)
    flow[:, 0] = 1.0  # out(y, x) = image(y, x + 1)
    out = warp(image, flow)
    torch.testing.assert_close(out[..., :-1], image[..., 1:], atol=1e-12, rtol=0)
    torch.testing.assert_close(out[..., -1], image[..., -1], atol=1e-12, rtol=0)  # border padding
    flow = torch.zeros_like(flow)
    flow[:, 1] = -2.0  # out(y, x) = image(y - 2, x)
    out = warp(image, flow)
    torch.testing.assert_close(out[:, :, 2:], image[:, :, :-2], atol=1e-12, rtol=0)


def test_warp_gradcheck() -> None:
    gen = torch.Generator().manual_seed(1)
    image = torch.randn(1, 1, 5, 4, dtype=torch.float64, generator=gen).requires_grad_()
    # Non-integer displacements, well away from integer sample positions where bilinear is not differentiable.
    flow = (0.2 + 0.6 * torch.rand(1, 2, 5, 4, dtype=torch.float64, generator=gen)) * torch.tensor(
        [1.0, -1.0], dtype=torch.float64
    ).view(1, 2, 1, 1)
    flow.requires_grad_()
    assert torch.autograd.gradcheck(warp, (image, flow), eps=1e-6, atol=1e-6)


def test_warp_rejects_mismatched_flow() -> None:
    with pytest.raises(ValueError, match=r"\(1, 2, 4, 4\)"):
        warp(torch.zeros(1, 3, 5, 4), torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError):
        warp(torch.zeros(1, 3, 5, 4), torch.zeros(1, 3, 5, 4))


# -------------------------------------------------------------------------------------------------------- compose_flows


def test_compose_flows_matches_sequential_warps() -> None:
    height, width = 40, 36
    src = _smooth_image(height, width)
    f1 = _smooth_flow(height, width, dx=1.3, dy=-0.7, amp=0.6, phase=0.0)
    f2 = _smooth_flow(height, width, dx=-0.4, dy=0.9, amp=0.5, phase=5.0)
    twice = warp(warp(src, f1), f2)
    once = warp(src, compose_flows(f1, f2))
    margin = 5  # beyond |f1| + |f2|, so no sample is clamped at the border
    inner = (..., slice(margin, -margin), slice(margin, -margin))
    # The two sides differ only by bilinear resampling (of f1, and of the intermediate image on the left), which
    # for these smooth fields is ~3e-3 against image values of order 1.
    torch.testing.assert_close(once[inner], twice[inner], atol=5e-3, rtol=0)
    # Warping by the plain sum, which ignores that F^n is read at x + ΔF(x), is ten times further off (~3e-2).
    naive = warp(src, f1 + f2)
    assert (naive[inner] - twice[inner]).abs().max() > 5 * (once[inner] - twice[inner]).abs().max()


def test_compose_flows_constant_and_zero() -> None:
    flow = _smooth_flow(12, 10, dx=0.5, dy=0.25, amp=0.3, phase=1.0)
    torch.testing.assert_close(compose_flows(flow, torch.zeros_like(flow)), flow, atol=1e-12, rtol=0)
    const_a = torch.full((1, 2, 12, 10), 1.5, dtype=torch.float64)
    const_b = torch.full((1, 2, 12, 10), -0.25, dtype=torch.float64)
    torch.testing.assert_close(compose_flows(const_a, const_b), const_a + const_b, atol=1e-12, rtol=0)
    with pytest.raises(ValueError):
        compose_flows(flow, torch.zeros(1, 2, 12, 9, dtype=torch.float64))


# ---------------------------------------------------------------------------------------------------- local_correlation


def _naive_correlation(pose: torch.Tensor, source: torch.Tensor, radius: int) -> torch.Tensor:
    batch, channels, height, width = pose.shape
    side = 2 * radius + 1
    out = torch.zeros(batch, side * side, height, width, dtype=pose.dtype)
    for b in range(batch):
        for y in range(height):
            for x in range(width):
                for i, dy in enumerate(range(-radius, radius + 1)):
                    for j, dx in enumerate(range(-radius, radius + 1)):
                        yy, xx = y + dy, x + dx
                        if 0 <= yy < height and 0 <= xx < width:
                            value = float((pose[b, :, y, x] * source[b, :, yy, xx]).sum()) / math.sqrt(channels)
                            out[b, i * side + j, y, x] = max(value, 0.0)
    return out


@pytest.mark.parametrize("radius", [0, 1, 2])
def test_local_correlation_matches_naive_loop(radius: int) -> None:
    pose = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    source = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    corr = local_correlation(pose, source, radius)
    assert corr.shape == (2, (2 * radius + 1) ** 2, 4, 5)
    assert bool((corr >= 0).all())
    torch.testing.assert_close(corr, _naive_correlation(pose, source, radius), atol=1e-12, rtol=0)


def test_local_correlation_offset_order() -> None:
    # A single bright source pixel right of and below the query: r = (dx=+1, dy=+2) at radius 2.
    pose = torch.ones(1, 1, 5, 5, dtype=torch.float64)
    source = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    source[0, 0, 4, 3] = 1.0
    corr = local_correlation(pose, source, 2)
    assert corr[0, (2 + 2) * 5 + (1 + 2), 2, 2] == 1.0
    assert float(corr[0, :, 2, 2].sum()) == 1.0


def test_local_correlation_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="source_feats"):
        local_correlation(torch.zeros(1, 4, 3, 3), torch.zeros(1, 4, 3, 2), 1)
    with pytest.raises(ValueError, match="radius"):
        local_correlation(torch.zeros(1, 4, 3, 3), torch.zeros(1, 4, 3, 3), -1)


# ------------------------------------------------------------------------------------------------------------ MapFormer


def test_mapformer_shapes_with_padding() -> None:
    former = MapFormer(16, heads=4, kernel_sizes=(4, 2), depth=2)
    source, pose = torch.randn(2, 16, 6, 5), torch.randn(2, 16, 6, 5)
    refined_source, refined_pose = former(source, pose)
    assert refined_source.shape == refined_pose.shape == (2, 16, 6, 5)
    assert torch.isfinite(refined_source).all() and torch.isfinite(refined_pose).all()
    # Regions made only of padding (non-local k=4 on 3 rows) must not poison anything.
    refined_source, _ = former(torch.randn(1, 16, 3, 5), torch.randn(1, 16, 3, 5))
    assert torch.isfinite(refined_source).all()
    refined_source.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in former.layers.parameters())


def _changed_tokens(regions: tuple[str, ...], kernel: int, token: tuple[int, int]) -> torch.Tensor:
    former = MapFormer(8, heads=2, kernel_sizes=(kernel,), regions=regions).double()
    source = torch.randn(1, 8, 6, 5, dtype=torch.float64)
    pose = torch.randn(1, 8, 6, 5, dtype=torch.float64)
    before, pose_before = former(source, pose)
    perturbed = source.clone()
    perturbed[0, :, token[0], token[1]] += torch.randn(8, dtype=torch.float64)
    after, pose_after = former(perturbed, pose)
    torch.testing.assert_close(pose_after, pose_before, atol=0, rtol=0)
    return (after - before).abs().amax(dim=(0, 1)) > 1e-12  # (H, W)


def test_mapformer_local_region_is_the_window() -> None:
    changed = _changed_tokens(("local",), kernel=3, token=(4, 4))
    expected = torch.zeros(6, 5, dtype=torch.bool)
    expected[3:6, 3:5] = True  # the (padded) 3 x 3 window holding (4, 4)
    assert torch.equal(changed, expected)


def test_mapformer_non_local_region_is_the_residue_class() -> None:
    changed = _changed_tokens(("non-local",), kernel=2, token=(3, 2))
    ys, xs = torch.meshgrid(torch.arange(6), torch.arange(5), indexing="ij")
    assert torch.equal(changed, (ys % 2 == 1) & (xs % 2 == 0))


def test_mapformer_global_region_is_everything() -> None:
    changed = _changed_tokens(("global",), kernel=2, token=(0, 0))
    assert bool(changed.all())


def test_mapformer_padding_is_masked() -> None:
    # One local window covering the whole (padded) 6 x 5 map is a global region once padding is masked out.
    local = MapFormer(8, heads=2, kernel_sizes=(8,), regions=("local",)).double()
    full = MapFormer(8, heads=2, regions=("global",)).double()
    full.load_state_dict(local.state_dict())
    source = torch.randn(2, 8, 6, 5, dtype=torch.float64)
    pose = torch.randn(2, 8, 6, 5, dtype=torch.float64)
    torch.testing.assert_close(local(source, pose)[0], full(source, pose)[0], atol=1e-12, rtol=0)


def test_mapformer_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="heads"):
        MapFormer(10, heads=4)
    with pytest.raises(ValueError, match="region"):
        MapFormer(8, heads=2, regions=("windowed",))
    former = MapFormer(8, heads=2)
    with pytest.raises(ValueError, match=r"\(1, 8, 4, 4\)"):
        former(torch.zeros(1, 8, 4, 4), torch.zeros(1, 8, 4, 3))
    with pytest.raises(ValueError):
        former(torch.zeros(1, 6, 4, 4), torch.zeros(1, 6, 4, 4))


# ------------------------------------------------------------------------------------------------------- PoseAggregator


def test_pose_aggregator_starts_at_zero_flow() -> None:
    aggregator = PoseAggregator(radius=2, hidden=16)
    delta = aggregator(torch.randn(2, 8, 6, 5), torch.randn(2, 8, 6, 5))
    assert delta.shape == (2, 2, 6, 5)
    assert torch.count_nonzero(delta) == 0


# ------------------------------------------------------------------------------------------------------------------ RPA


def _inputs(batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(batch, 3, 16, 12), torch.randn(batch, 20, 16, 12)


@pytest.mark.parametrize("downsample", [1, 2])
def test_rpa_shapes_and_identity_at_init(downsample: int) -> None:
    model = RecurrentPoseAlignment(3, 20, 16, num_iterations=3, radius=2, downsample=downsample)
    source, pose = _inputs()
    out = model(source, pose, return_intermediates=True)
    assert isinstance(out, AlignmentOutput)
    h, w = 16 // downsample, 12 // downsample
    assert out.source_feats.shape == (2, 16, h, w)
    assert out.tokens.shape == (2, h * w, 16)
    assert out.flow.shape == (2, 2, 16, 12)
    assert len(out.warped) == 3 and all(x.shape == source.shape for x in out.warped)
    assert torch.count_nonzero(out.flow) == 0
    torch.testing.assert_close(out.warped[-1], source, atol=1e-6, rtol=0)
    expected = model.source_encoder(source).flatten(2).transpose(1, 2)
    torch.testing.assert_close(out.tokens, expected, atol=1e-6, rtol=1e-6)
    assert model(source, pose).warped == []


@pytest.mark.parametrize("downsample", [1, 2])
def test_rpa_constant_increments_add_up(downsample: int) -> None:
    model = RecurrentPoseAlignment(3, 20, 16, num_iterations=4, radius=1, downsample=downsample)
    with torch.no_grad():
        model.aggregator.conv_out.bias.copy_(torch.tensor([1.0, 0.0]))  # ΔF = 1 feature pixel right, every step
    source, pose = _inputs()
    out = model(source, pose, return_intermediates=True)
    inner = out.flow[:, :, 2:-2, 2:-2]
    torch.testing.assert_close(inner[:, 0], torch.full_like(inner[:, 0], 4.0 * downsample), atol=1e-5, rtol=0)
    torch.testing.assert_close(inner[:, 1], torch.zeros_like(inner[:, 1]), atol=1e-5, rtol=0)
    # The last warp is the source shifted by N * downsample columns (border-clamped on the right).
    shift = 4 * downsample
    torch.testing.assert_close(out.warped[-1][..., :-shift], source[..., shift:], atol=1e-5, rtol=0)


def test_rpa_gradients_reach_all_parameters() -> None:
    model = RecurrentPoseAlignment(3, 20, 16, num_iterations=2, radius=1, downsample=2)
    with torch.no_grad():
        model.aggregator.conv_out.weight.normal_(std=0.05)
        model.aggregator.conv_out.bias.copy_(torch.tensor([0.3, -0.2]))
    source, pose = _inputs()
    source.requires_grad_()
    out = model(source, pose)
    (out.tokens.square().mean() + out.flow.square().mean()).backward()
    assert source.grad is not None
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert missing == []
    for module in (model.source_encoder, model.pose_encoder, model.aggregator):
        assert any(p.grad.abs().sum() > 0 for p in module.parameters())


def test_rpa_rejects_bad_shapes() -> None:
    model = RecurrentPoseAlignment(3, 20, 16, num_iterations=1, downsample=4)
    source, pose = _inputs(1)
    with pytest.raises(ValueError, match="3 channels, got 4"):
        model(torch.randn(1, 4, 16, 12), pose)
    with pytest.raises(ValueError, match="20 channels, got 19"):
        model(source, torch.randn(1, 19, 16, 12))
    with pytest.raises(ValueError, match="spatial"):
        model(source, torch.randn(1, 20, 16, 8))
    with pytest.raises(ValueError, match="H=18 and W=12"):
        model(torch.randn(1, 3, 18, 12), torch.randn(1, 20, 18, 12))
    with pytest.raises(ValueError):
        model(source[0], pose[0])
    with pytest.raises(ValueError, match="downsample"):
        RecurrentPoseAlignment(3, 20, 16, downsample=3)


def test_first_flow_from_the_mapformer_is_one_more_pass():
    """rpa_first_flow "mapformer" (F^0 = M(F_T, F_S)) applies the same modules N + 1 times: with equal weights it
    equals "zero" with N + 1 iterations, and returns N + 1 warps."""
    from reposedm.models.network import ConditionEncoder

    common = dict(variant="b2", latent_channels=3, latent_size=(32, 22), pose_channels=20, pose_embed_channels=4,
                  cond_dim=32, cond_downsample=2, rpa_radius=2, rpa_kernel_sizes=(4, 2), rpa_heads=2)
    torch.manual_seed(0)
    paper = ConditionEncoder(**common, rpa_iterations=2, rpa_first_flow="mapformer").double()
    zero = ConditionEncoder(**common, rpa_iterations=3, rpa_first_flow="zero").double()
    zero.load_state_dict(paper.state_dict())
    with torch.no_grad():  # a fresh aggregator predicts zero flow; give it a real one
        for enc in (paper, zero):
            enc.alignment.aggregator.conv_out.bias.fill_(0.3)
    g = torch.Generator().manual_seed(1)
    source = torch.rand(2, 3, 32, 22, generator=g, dtype=torch.float64)
    pose = torch.rand(2, 20, 32, 22, generator=g, dtype=torch.float64)
    with torch.no_grad():
        a = paper(source, pose, return_intermediates=True)
        b = zero(source, pose, return_intermediates=True)
    assert len(a.warped) == 3
    torch.testing.assert_close(a.tokens, b.tokens, rtol=0, atol=0)
    torch.testing.assert_close(a.flow, b.flow, rtol=0, atol=0)


def test_image_warp_of_eq9():
    """rpa_warp "image": the source image is warped by the flow in image pixels and re-encoded. With a 1x grid and
    the identity encoder it is the latent warp exactly; a flow of d latent pixels is d * f image pixels; the gradient
    reaches the flow head through the encoder."""
    from reposedm.models.alignment import RecurrentPoseAlignment, upsample_flow

    flow = torch.zeros(1, 2, 4, 3, dtype=torch.float64)
    flow[:, 0], flow[:, 1] = 0.5, -1.0
    up = upsample_flow(flow, (32, 24))
    assert up.shape == (1, 2, 32, 24)
    torch.testing.assert_close(up[:, 0], torch.full((1, 32, 24), 4.0, dtype=torch.float64))
    torch.testing.assert_close(up[:, 1], torch.full((1, 32, 24), -8.0, dtype=torch.float64))

    torch.manual_seed(0)
    rpa = RecurrentPoseAlignment(3, 20, 32, num_iterations=2, radius=2, kernel_sizes=(4, 2), heads=2).double()
    with torch.no_grad():
        rpa.aggregator.conv_out.bias.fill_(0.4)
    g = torch.Generator().manual_seed(1)
    source = torch.rand(2, 3, 16, 12, generator=g, dtype=torch.float64)
    pose = torch.rand(2, 20, 16, 12, generator=g, dtype=torch.float64)
    latent = rpa(source, pose, return_intermediates=True)
    image = rpa(source, pose, return_intermediates=True, source_image=source, encode_image=lambda x: x)
    torch.testing.assert_close(image.tokens, latent.tokens, rtol=0, atol=1e-12)
    assert len(image.warped) == 2

    # an 2x "encoder" (average pooling) on a 2x image: the loss reaches the flow head through it
    big = torch.rand(2, 3, 32, 24, generator=g, dtype=torch.float64)
    out = rpa(source, pose, source_image=big, encode_image=lambda x: torch.nn.functional.avg_pool2d(x, 2))
    out.tokens.square().mean().backward()
    assert rpa.aggregator.conv_out.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="needs both source_image and encode_image"):
        rpa(source, pose, source_image=big)
