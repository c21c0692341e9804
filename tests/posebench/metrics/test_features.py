"""Inception feature extractors and LPIPS: built from seeded random weights, checked against the reference code.

No pretrained file can be downloaded here, so every network is a seeded random instance of the right
architecture whose state dict the test writes to disk (BatchNorm statistics calibrated on smooth images so that
features are O(1) and tolerances mean something). Parity is then checked against the reference pipelines on
the same weights: clean-fid's own code path for `clean`, a re-implementation of GFLA `script/inception.py` for
`tv-imagenet`, and `lpips.LPIPS` loaded by hand for LPIPS.

Tolerances: with `channels_last=False` the extractors do the reference arithmetic in the reference memory layout
and must agree to atol 1e-5 (they agree bit for bit on CPU here). The default channels_last layout changes the
summation order; seeded random networks amplify that rounding far more than trained ones (~1e-7 relative with
real weights), so there the bound is 2e-4 of the largest feature. Batch invariance:
atol 1e-4.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from posebench import weights
from posebench.errors import OfflineError, WeightsError
from posebench.metrics import features
from posebench.metrics.features import (
    EXTRACTORS,
    build_extractor,
    fid_inception_skeleton,
    tv_inception_v3_skeleton,
)
from posebench.metrics.lpips_net import build_lpips
from posebench.registry import UnknownNameError

EXACT = {"rtol": 0.0, "atol": 1e-5}

pytestmark = [  # deprecation noise from the libraries driven here, not from posebench
    pytest.mark.filterwarnings("ignore:`torch.jit.:FutureWarning"),
    pytest.mark.filterwarnings("ignore:'torch.load' received a zip file that looks like a TorchScript:UserWarning"),
    pytest.mark.filterwarnings("ignore:The parameter 'pretrained' is deprecated:UserWarning"),
    pytest.mark.filterwarnings("ignore:Arguments other than a weight enum:UserWarning"),
]


@pytest.fixture(scope="module", autouse=True)
def _one_intra_op_thread():
    """One thread: on a 2-vCPU machine shared with other jobs, OpenMP's spinning barriers made a 2-thread
    Inception forward 10x slower (3.6 s instead of 0.3 s for two images); numerics do not depend on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _smooth_batch(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    """uint8 RGB images that look more like photos than white noise (upsampled coarse noise)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, max(h // 8, 2), max(w // 8, 2), generator=g)
    img = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
    return (img * 255).round().to(torch.uint8)


def _calibrated(model: nn.Module) -> nn.Module:
    """Set BatchNorm running statistics from one batch so activations stay O(1) with random weights."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one batch gives exactly its statistics
    x = F.interpolate(_smooth_batch(2, 64, 44, seed=123).float(), size=(299, 299), mode="bilinear") / 127.5 - 1
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tv_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tv_random.pth"
    torch.save(_calibrated(tv_inception_v3_skeleton()).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def fid_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "fid_random.safetensors"
    from safetensors.torch import save_file

    save_file(_calibrated(fid_inception_skeleton()).state_dict(), str(path))
    return path


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return _smooth_batch(2, 64, 44, seed=7)  # 256x176 evaluation size, scaled down


@pytest.fixture(scope="module")
def extractor(request: pytest.FixtureRequest):
    """Built extractors, cached for the module: extractor(name, channels_last=True)."""
    cache: dict[tuple[str, bool], features.InceptionExtractor] = {}

    def get(name: str, channels_last: bool = True) -> features.InceptionExtractor:
        if (name, channels_last) not in cache:
            path = request.getfixturevalue("fid_file" if name == "clean" else "tv_file")
            cache[name, channels_last] = build_extractor(name, weights=path, channels_last=channels_last)
        return cache[name, channels_last]

    return get


def _close_to_layout_rounding(default: torch.Tensor, exact: torch.Tensor) -> None:
    torch.testing.assert_close(default, exact, rtol=0, atol=2e-4 * float(exact.abs().max()))


# ---------------------------------------------------------------------------------------------- extractors


def test_registry_names():
    assert EXTRACTORS.names() == ["clean", "tv-imagenet", "tv-imagenet-cfld"]
    with pytest.raises(UnknownNameError, match="Did you mean: tv-imagenet"):
        build_extractor("tv-imagenett")


def test_user_file_is_accepted_with_a_warning(tv_file, caplog):
    with caplog.at_level(logging.WARNING, logger="posebench.weights"):
        resolved = features.resolve_weights(tv_file, default="inception-tv-imagenet",
                                            accepted=("inception-tv-imagenet",), role="test")
    assert "is not a registry file" in caplog.text
    assert resolved.registry_name is None and resolved.sha256 == _sha256(tv_file)


@pytest.mark.parametrize(("name", "file_fixture", "backend"), [
    ("clean", "fid_file", "pytorch-fid-state-dict"),
    ("tv-imagenet", "tv_file", "torchvision"),
    ("tv-imagenet-cfld", "tv_file", "torchvision"),
])
def test_extractor_from_user_state_dict(name, file_fixture, backend, images, extractor, request):
    path = request.getfixturevalue(file_fixture)
    ext = extractor(name)
    assert (ext.name, ext.version, ext.dims, ext.backend) == (name, 1, 2048, backend)
    assert ext.weights_sha256 == _sha256(path) and ext.weights_registry_name is None
    assert ext.weights_path == path and ext.input and ext.reference

    feats = ext(images)
    assert feats.shape == (2, 2048) and feats.dtype == torch.float32
    assert torch.isfinite(feats).all() and feats.std() > 1e-2  # not a degenerate network
    alone = ext(images[1:2].float())  # float input with uint8 values == uint8 input
    assert torch.equal(alone, ext(images[1:2]))  # deterministic
    torch.testing.assert_close(alone[0], feats[1], rtol=0, atol=1e-4)  # batch-size invariant


def test_clean_matches_cleanfid_pytorch_path(fid_file, images, extractor, tmp_path, monkeypatch):
    """Our `clean` state-dict path == clean-fid's own pipeline: file decode, resize, model_fn, same weights."""
    import cleanfid.inception_pytorch
    from cleanfid.features import feature_extractor
    from cleanfid.fid import get_files_features
    from PIL import Image

    state = weights.load_state_dict(fid_file)
    monkeypatch.setattr(cleanfid.inception_pytorch, "load_state_dict_from_url", lambda *a, **k: state)
    model_fn = feature_extractor("pytorch_inception", device=torch.device("cpu"), use_dataparallel=False)
    files = []
    for i, img in enumerate(images):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(files[-1])
    ref = torch.from_numpy(get_files_features(files, model=model_fn, num_workers=0, batch_size=2,
                                              device=torch.device("cpu"), mode="clean", verbose=False))

    exact = extractor("clean", channels_last=False)(images)
    torch.testing.assert_close(exact, ref, **EXACT)
    _close_to_layout_rounding(extractor("clean")(images), ref)


def _gfla_reference(images: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
    """GFLA `script/inception.py` InceptionV3([3]) as `FID.get_activations` drives it, written from its code."""
    import torchvision

    inception = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    inception.load_state_dict(state)
    blocks = nn.Sequential(
        inception.Conv2d_1a_3x3, inception.Conv2d_2a_3x3, inception.Conv2d_2b_3x3,
        nn.MaxPool2d(kernel_size=3, stride=2),
        inception.Conv2d_3b_1x1, inception.Conv2d_4a_3x3, nn.MaxPool2d(kernel_size=3, stride=2),
        inception.Mixed_5b, inception.Mixed_5c, inception.Mixed_5d, inception.Mixed_6a, inception.Mixed_6b,
        inception.Mixed_6c, inception.Mixed_6d, inception.Mixed_6e,
        inception.Mixed_7a, inception.Mixed_7b, inception.Mixed_7c, nn.AdaptiveAvgPool2d(output_size=(1, 1)),
    ).eval()
    imgs = images.numpy().astype(np.float32)
    imgs /= 255
    with torch.no_grad():
        x = torch.from_numpy(imgs)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)  # F.upsample, torch >= 0.4
        x = x.clone()
        x[:, 0] = x[:, 0] * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
        x[:, 1] = x[:, 1] * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
        x[:, 2] = x[:, 2] * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
        return blocks(x).reshape(images.shape[0], -1)


def test_tv_imagenet_matches_gfla_reference(tv_file, images, extractor):
    ref = _gfla_reference(images, weights.load_state_dict(tv_file))
    torch.testing.assert_close(extractor("tv-imagenet", channels_last=False)(images), ref, **EXACT)
    _close_to_layout_rounding(extractor("tv-imagenet")(images), ref)
    # CFLD's forward_inception is the same arithmetic; only its name and accepted weights differ.
    _close_to_layout_rounding(extractor("tv-imagenet-cfld")(images), ref)


class _StandInLayers(nn.Module):
    """Reports what it receives: per-channel means, then the first 2045 input values."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[2] != 299 or x.shape[3] != 299:
            raise RuntimeError("expected 299x299 input")
        out = torch.cat([x.mean(dim=(2, 3)), x.flatten(1)[:, :2045]], dim=1)
        return out.view(x.shape[0], 2048, 1, 1)


class _StandInInception(nn.Module):
    """Same interface as clean-fid's TorchScript Inception: a `layers` submodule, forward(x, return_features)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = _StandInLayers()

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return self.layers(x)


@pytest.fixture
def torchscript_file(tmp_path: Path) -> Path:
    path = tmp_path / features.TORCHSCRIPT_FILENAME
    torch.jit.save(torch.jit.script(_StandInInception()), str(path))
    return path


def _expected_torchscript_input(images: torch.Tensor) -> torch.Tensor:
    from cleanfid.resize import build_resizer

    resize = build_resizer("clean")
    x = torch.stack([torch.from_numpy(resize(img.permute(1, 2, 0).numpy())).permute(2, 0, 1) for img in images])
    x = (x - 128) / 128
    return torch.cat([x.mean(dim=(2, 3)), x.flatten(1)[:, :2045]], dim=1)


def test_clean_torchscript_registry_file(torchscript_file, images, monkeypatch):
    """The registry file goes through clean-fid's InceptionV3W: clean resize, (x-128)/128, 299x299."""
    monkeypatch.setattr(weights, "ensure", lambda spec, **kw: torchscript_file)
    ext = build_extractor("clean")
    assert ext.backend == "torchscript" and ext.weights_registry_name == "inception-fid-clean"
    assert ext.weights_sha256 == _sha256(torchscript_file)
    torch.testing.assert_close(ext(images), _expected_torchscript_input(images), **EXACT)


def test_clean_torchscript_verified_file_under_another_name(torchscript_file, images, monkeypatch, tmp_path):
    """A user copy whose hash is the registry's loads through InceptionV3W, whatever its file name."""
    other = tmp_path / "copy" / "my-inception.pt"
    other.parent.mkdir()
    other.write_bytes(torchscript_file.read_bytes())
    monkeypatch.setattr(weights, "resolve", lambda p, default: weights.ResolvedFile(other, "0" * 64,
                                                                                     "inception-fid-clean"))
    ext = build_extractor("clean", weights=other)
    torch.testing.assert_close(ext(images[:1]), _expected_torchscript_input(images[:1]), **EXACT)


def test_unverified_torchscript_is_never_loaded(torchscript_file):
    with pytest.raises(WeightsError, match="TorchScript archive, i.e. a program. posebench runs TorchScript only"):
        build_extractor("clean", weights=torchscript_file)


def test_registry_file_for_another_role_is_refused():
    with pytest.raises(WeightsError, match="not a weight file for feature extractor 'tv-imagenet-cfld'"):
        build_extractor("tv-imagenet-cfld", weights="inception-tv-imagenet-2019")
    with pytest.raises(WeightsError, match="not a weight file for feature extractor 'clean'"):
        build_extractor("clean", weights="inception-tv-imagenet")


def test_bad_state_dict_and_bad_images(tmp_path, extractor, images):
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(WeightsError, match="missing keys"):
        build_extractor("tv-imagenet", weights=bad)
    ext = extractor("tv-imagenet")
    with pytest.raises(ValueError, match="Bx3xHxW"):
        ext(images[:, :1])
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        ext(images.float() * 2)


def test_checkpoint_without_num_batches_tracked_loads(tv_file):
    """Files saved before PyTorch 0.4.1 (such as the 2019 torchvision Inception) lack `num_batches_tracked`."""
    state = {k: v for k, v in weights.load_state_dict(tv_file).items() if not k.endswith("num_batches_tracked")}
    with torch.device("meta"):
        trunk = features.InceptionPool3(tv_inception_v3_skeleton())
    features._load_trunk(trunk, state, tv_file)
    tensors = dict(trunk.state_dict())
    assert not any(t.is_meta for t in tensors.values())
    assert all(torch.equal(tensors[k], v) for k, v in state.items() if k in tensors)


@pytest.mark.parametrize(("name", "weights_arg", "filename"), [
    ("clean", None, "inception-2015-12-05.pt"),
    ("clean", "inception-fid-pytorch", "pt_inception-2015-12-05-6726825d.pth"),
    ("tv-imagenet", None, "inception_v3_google-0cc3c7bd.pth"),
    ("tv-imagenet", "inception-tv-imagenet-2019", "inception_v3_google-1a9a5a14.pth"),
    ("tv-imagenet-cfld", None, "inception_v3_google-0cc3c7bd.pth"),
])
def test_missing_weights_offline(name, weights_arg, filename, monkeypatch):
    monkeypatch.setenv("POSEBENCH_OFFLINE", "1")
    with pytest.raises(OfflineError, match=filename):
        build_extractor(name, weights=weights_arg)


# ---------------------------------------------------------------------------------------------- LPIPS

_ALEX_SLICE = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}  # torchvision AlexNet conv index -> lpips slice (lpips 0.1.4)


@pytest.fixture(scope="module")
def alex_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torchvision

    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in torchvision.models.AlexNet().features.state_dict().items()}
    state["classifier.6.bias"] = torch.zeros(1000)  # classifier keys, as in the real file, must be ignored
    path = tmp_path_factory.mktemp("w") / "alex_random.pth"
    torch.save(state, path)
    return path


def _lpips_by_hand(alex_file: Path, version: str = "0.1"):
    import lpips

    ref = lpips.LPIPS(net="alex", version=version, pretrained=True, pnet_rand=True, verbose=False)
    state = torch.load(alex_file, weights_only=True)
    with torch.no_grad():
        for idx, k in _ALEX_SLICE.items():
            conv = getattr(getattr(ref.net, f"slice{k}"), str(idx))
            conv.weight.copy_(state[f"features.{idx}.weight"])
            conv.bias.copy_(state[f"features.{idx}.bias"])
    return ref


def test_lpips_matches_lpips_package(alex_file, caplog):
    g = torch.Generator().manual_seed(1)
    preds, target = torch.rand(2, 3, 64, 44, generator=g), torch.rand(2, 3, 64, 44, generator=g)
    with caplog.at_level(logging.WARNING, logger="posebench.weights"):
        net = build_lpips("alex", "0.1", weights=alex_file)
    assert "is not a registry file" in caplog.text
    assert (net.net, net.version, net.weights_sha256) == ("alex", "0.1", _sha256(alex_file))
    ref = _lpips_by_hand(alex_file)

    ours = net(preds, target, input_range="minus1_1")
    assert ours.shape == (2,) and ours.dtype == torch.float32
    with torch.no_grad():
        expected = ref(preds * 2 - 1, target * 2 - 1).reshape(2)
        expected_raw = ref(preds, target).reshape(2)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(net(preds, target, input_range="zero_1_normalize"), ours, rtol=0, atol=1e-7)
    raw = net(preds, target, input_range="zero_1_raw")
    torch.testing.assert_close(raw, expected_raw, rtol=0, atol=1e-6)
    assert (raw - ours).abs().min() > 1e-4  # PCDMs' [0, 1] input gives other numbers
    assert torch.equal(net(preds, preds), torch.zeros(2))


def test_lpips_backbone_mapping_loads_every_tensor(alex_file):
    from posebench.metrics.lpips_net import backbone_key_map, load_backbone

    net = build_lpips("alex", weights=alex_file)
    backbone = net.model.net
    assert len(backbone.state_dict()) == 10  # 5 convs x (weight, bias)
    assert load_backbone(backbone, weights.load_state_dict(alex_file), alex_file) == 10
    assert sorted(backbone_key_map(backbone).values()) == sorted(backbone.state_dict())
    state = torch.load(alex_file, weights_only=True)
    for idx, k in _ALEX_SLICE.items():
        assert torch.equal(getattr(getattr(backbone, f"slice{k}"), str(idx)).weight, state[f"features.{idx}.weight"])
    old = build_lpips("alex", "0.0", weights=alex_file)  # v0.0 linear layers and no scaling layer
    x, y = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    assert not torch.allclose(old(x, y), net(x, y))


def test_lpips_vgg_mapping_counts(tmp_path):
    import torchvision

    torch.manual_seed(0)
    vgg = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
    path = tmp_path / "vgg_features.pth"
    torch.save({f"features.{k}": v for k, v in vgg.state_dict().items()}, path)
    net = build_lpips("vgg", weights=path)
    assert len(net.model.net.state_dict()) == 26  # 13 convs x (weight, bias)
    assert torch.equal(getattr(net.model.net.slice5, "28").weight, vgg[28].weight)


def test_lpips_errors(alex_file, tmp_path, monkeypatch):
    net = build_lpips("alex", weights=alex_file)
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="input_range"):
        net(x, x, input_range="minus1_to_1")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        net(x * 2 - 1, x)
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 11, 11)}, bad)
    with pytest.raises(WeightsError, match="missing"):
        build_lpips("alex", weights=bad)
    monkeypatch.setenv("POSEBENCH_OFFLINE", "1")
    with pytest.raises(OfflineError, match="alexnet-owt-7be5be79.pth"):
        build_lpips("alex")
    with pytest.raises(OfflineError, match="vgg16-397923af.pth"):
        build_lpips("vgg")
