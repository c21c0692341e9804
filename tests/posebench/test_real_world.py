"""Checks that need what CI does not have: real pretrained files (`needs_weights`), a GPU (`gpu`), real dataset
copies (`needs_data`). Each skips with the reason and the command that provides what it needs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from posebench.cli import app

runner = CliRunner()


@pytest.mark.needs_weights("inception-fid-clean")
def test_clean_features_equal_cleanfid_with_the_real_network(real_weights_home):
    """posebench's `clean` extractor on the registry's TorchScript file equals clean-fid's own InceptionV3W and
    resizer called directly on the same images."""
    from cleanfid.inception_torchscript import InceptionV3W
    from cleanfid.resize import make_resizer

    from posebench import weights
    from posebench.metrics.features import build_extractor

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 256, 176, 3)).astype(np.uint8)
    ours = build_extractor("clean", channels_last=False)(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()
    resize = make_resizer("PIL", False, "bicubic", (299, 299))
    net = InceptionV3W(str(weights.cache_path("inception-fid-clean").parent), download=False).eval()
    x = torch.from_numpy(np.stack([resize(img) for img in images])).permute(0, 3, 1, 2)
    with torch.no_grad():
        ref = net(x).reshape(3, -1).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.needs_weights("inception-tv-imagenet", "alexnet-tv-imagenet")
def test_torchvision_networks_load_and_behave(real_weights_home):
    """The torchvision files load into the IS classifier and LPIPS: class probabilities sum to 1, LPIPS of an image
    with itself is 0 and symmetric otherwise."""
    from posebench.metrics import IS, LPIPS

    rng = np.random.default_rng(1)
    a = torch.from_numpy(rng.integers(0, 256, (2, 3, 256, 176)).astype(np.uint8))
    b = torch.from_numpy(rng.integers(0, 256, (2, 3, 256, 176)).astype(np.uint8))
    lp = LPIPS("clean", protocol="deepfashion-256x176")
    lp.update(a, a)
    lp.update(a, b)
    lp.update(b, a)
    vals = lp.per_image()[1]
    assert vals[:2] == pytest.approx([0, 0], abs=1e-6) and vals[2:4] == pytest.approx(vals[4:6], rel=1e-5)
    inception = IS("clean", protocol="deepfashion-256x176")
    inception.update(a)
    assert inception.probs[0].sum(dim=1).numpy() == pytest.approx([1.0, 1.0])


@pytest.mark.gpu
def test_cuda_gives_the_cpu_numbers(tmp_path):
    """The same folders scored on CUDA and on CPU (random networks saved by the test): float64 SSIM/PSNR equal,
    float32 LPIPS within 1e-4."""
    import torchvision

    rng = np.random.default_rng(2)
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    for i in range(6):
        for folder in (pred, gt):
            Image.fromarray(rng.integers(0, 256, (256, 176, 3)).astype(np.uint8)).save(folder / f"{i}.png")
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), tmp_path / "alex.pth")
    results = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.json"
        res = runner.invoke(app, ["eval", "--pred", str(pred), "--gt", str(gt), "--metrics", "ssim,psnr,lpips",
                                  "--lpips-weights", str(tmp_path / "alex.pth"), "--device", device, "--out", str(out)])
        assert res.exit_code == 0, res.output
        results[device] = json.loads(out.read_text())["metrics"]
    for m in ("ssim", "psnr"):
        assert results["cuda"][m]["value"] == pytest.approx(results["cpu"][m]["value"], abs=1e-10)
    assert results["cuda"]["lpips"]["value"] == pytest.approx(results["cpu"]["lpips"]["value"], abs=1e-4)


@pytest.mark.needs_data
@pytest.mark.parametrize("dataset,folder", [("deepfashion", "deepfashion"), ("market", "market1501"),
                                            ("humanart", "humanart")])
def test_real_dataset_copies_pass_verify(dataset, folder):
    """$POSEBENCH_DATA_ROOT/{deepfashion,market1501,humanart}: `posebench data verify` passes with the pinned facts."""
    root = Path(os.environ["POSEBENCH_DATA_ROOT"]) / folder
    if not root.is_dir():
        pytest.skip(f"no {root}")
    res = runner.invoke(app, ["data", "verify", "-d", dataset, "-r", str(root)])
    assert res.exit_code == 0, res.output
