"""Native HigherHRNet (posebench.pose.higherhrnet): shapes, gradients, mmpose key diff and loading, registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from posebench.errors import OfflineError, WeightsError
from posebench.pose import ESTIMATORS, ae_decode, build_estimator
from posebench.pose.higherhrnet import (
    HigherHRNet,
    fake_mmpose_checkpoint,
    higherhrnet_w32,
    mmpose_checkpoint_shapes,
)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # tiny convolutions: OpenMP threads only add spin-wait overhead when the cores are shared
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def w32() -> HigherHRNet:
    torch.manual_seed(0)
    return higherhrnet_w32()


def test_shapes_and_features(w32: HigherHRNet):
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        raw = w32.forward_raw(x)
        out = w32(x)
    assert [tuple(r.shape) for r in raw] == [(2, 34, 16, 16), (2, 17, 32, 32)]
    assert out.heatmaps.shape == (2, 17, 32, 32) and w32.stride == 2
    assert out.features.shape == (2, 32, 16, 16)
    # forward = mmpose's stage average (1/4 upsampled to 1/2) without flip
    up = torch.nn.functional.interpolate(raw[0][:, :17], size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out.heatmaps, (up + raw[1]) / 2)
    with pytest.raises(ValueError, match="expects images"):
        w32(torch.rand(1, 1, 64, 64))


def test_gradient_reaches_input(w32: HigherHRNet):
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    out = w32(x)
    (out.heatmaps.square().mean() + out.features.mean()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_predict_runs_flip_test(w32: HigherHRNet):
    people = w32.predict(torch.rand(1, 3, 64, 64))
    assert len(people) == 1
    for person in people[0]:
        assert person.keypoints.shape == (17, 3) and np.isfinite(person.keypoints).all()
        assert np.all((person.keypoints[:, :2] >= -1) & (person.keypoints[:, :2] <= 65))


@pytest.mark.parametrize("size", [(256, 176), (512, 352), (128, 64), (100, 70)])
def test_any_input_size_maps_back_to_the_image_grid(w32: HigherHRNet, size: tuple[int, int]):
    """The paper sizes (176 and 352 are not multiples of 32) and an odd size run, on the image's own grid, with the
    gradient reaching every input pixel's neighbourhood; a side that is a multiple of 32 is untouched."""
    h, w = size
    torch.manual_seed(1)
    x = torch.rand(1, 3, h, w, requires_grad=True)
    out = w32(x)
    assert out.heatmaps.shape == (1, 17, h // 2, w // 2) and out.features.shape == (1, 32, h // 4, w // 4)
    raw = w32.forward_raw(x.detach())
    assert [tuple(r.shape) for r in raw] == [(1, 34, h // 4, w // 4), (1, 17, h // 2, w // 2)]
    out.heatmaps[..., -1, -1].sum().backward()  # the bottom-right heatmap pixel sees the bottom-right image corner
    assert torch.isfinite(x.grad).all() and x.grad[..., -8:, -8:].abs().sum() > 0
    # cropping, not resizing: the output equals the output of the image padded by hand with the ImageNet mean
    ph, pw = -h % 32, -w % 32
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    padded = mean.expand(1, 3, h + ph, w + pw).clone()
    padded[..., :h, :w] = x.detach()
    with torch.no_grad():
        by_hand = w32(padded)
        again = w32(x.detach())
    torch.testing.assert_close(again.heatmaps, by_hand.heatmaps[..., : h // 2, : w // 2])
    torch.testing.assert_close(again.features, by_hand.features[..., : h // 4, : w // 4])


@pytest.mark.parametrize("width", [32, 48])
def test_generated_mmpose_keys_match_the_model(width: int):
    model = HigherHRNet(width=width)
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    ckpt = mmpose_checkpoint_shapes(width)
    assert own == ckpt  # same names, same shapes: 0 renamed, 0 missing, 0 unexpected
    assert sum(k.startswith("backbone.") for k in ckpt) == 1752
    assert sum(k.startswith("keypoint_head.") for k in ckpt) == 58
    assert sum(not k.endswith("num_batches_tracked") for k in ckpt) == 1460 + 49


def _extra_ignored() -> dict[str, torch.Tensor]:
    # keys of timm's classification head and of a multi-scale stage 4, which are dropped on purpose
    return {
        "backbone.incre_modules.0.0.conv1.weight": torch.zeros(32, 32, 1, 1),
        "backbone.final_layer.0.weight": torch.zeros(2048, 1024, 1, 1),
        "backbone.classifier.weight": torch.zeros(1000, 2048),
        "backbone.stage4.2.fuse_layers.1.0.0.0.weight": torch.zeros(64, 32, 3, 3),
    }


def test_fake_mmpose_checkpoint_loads():
    model = higherhrnet_w32()
    ckpt = fake_mmpose_checkpoint(32)
    ckpt = {k: v for k, v in ckpt.items() if not k.endswith("num_batches_tracked")}  # older files lack them
    ignored = model.load_mmpose_state_dict({**ckpt, **_extra_ignored()})
    assert ignored == sorted(_extra_ignored())
    sd = model.state_dict()
    for k in ("backbone.conv1.weight", "backbone.stage4.2.fuse_layers.0.3.0.weight",
              "keypoint_head.deconv_layers.0.0.0.weight", "keypoint_head.final_layers.1.bias"):
        torch.testing.assert_close(sd[k], ckpt[k])
    # the original HigherHRNet repository's names carry no prefixes
    bare = {k.split(".", 1)[1]: v for k, v in ckpt.items()}
    model.load_mmpose_state_dict(bare)
    torch.testing.assert_close(model.state_dict()["keypoint_head.final_layers.0.weight"],
                               ckpt["keypoint_head.final_layers.0.weight"])


def test_bad_checkpoints_fail_clearly(w32: HigherHRNet):
    ckpt = fake_mmpose_checkpoint(32)
    wrong = dict(ckpt, **{"keypoint_head.final_layers.0.weight": torch.zeros(17, 32, 1, 1)})
    with pytest.raises(WeightsError, match=r"wrong shape \(1\).*final_layers\.0\.weight"):
        w32.load_mmpose_state_dict(wrong)
    unknown = dict(ckpt, **{"backbone.mystery.weight": torch.zeros(3)})
    with pytest.raises(WeightsError, match=r"unexpected \(1\): backbone\.mystery\.weight"):
        w32.load_mmpose_state_dict(unknown)
    missing = {k: v for k, v in ckpt.items() if not k.startswith("backbone.layer1.")}
    with pytest.raises(WeightsError, match=r"missing \(\d+\): backbone\.layer1\.0"):
        w32.load_mmpose_state_dict(missing)
    # W48 checkpoint into W32: every conv is the wrong shape
    with pytest.raises(WeightsError, match="HigherHRNet-W32"):
        w32.load_mmpose_state_dict({k: torch.zeros(s) for k, s in mmpose_checkpoint_shapes(48).items()})


def test_registry_builders_are_offline_safe(monkeypatch: pytest.MonkeyPatch):
    for name in ("higherhrnet-w32-coco", "higherhrnet-w48-coco-udp", "higherhrnet-w48-humanart-udp"):
        assert name in ESTIMATORS
    monkeypatch.setenv("POSEBENCH_OFFLINE", "1")
    with pytest.raises(OfflineError, match="higher_hrnet32_coco_512x512"):
        build_estimator("higherhrnet-w32-coco")
    with pytest.raises(OfflineError):
        HigherHRNet.from_weights("higherhrnet-w48-humanart-udp", allow_download=False)


def test_udp_variant_uses_udp_decoding():
    spec_cfg = HigherHRNet(width=32, decode=ae_decode.W48_UDP).decode_cfg
    assert spec_cfg.use_udp and not spec_cfg.project2image and spec_cfg.align_corners
