"""The metric classes (`from posebench.metrics import ...`): torchmetrics semantics (update / compute / forward /
reset / to), the profile's preparation applied by the class itself, and the same numbers as `posebench eval`."""

from __future__ import annotations

import csv
import json

import numpy as np
import peer_scripts as peers
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from typer.testing import CliRunner

import posebench.metrics as pm
from posebench.cli import app
from posebench.metrics import FID, KID, LPIPS, PSNR, SSIM


def _images(seed: int, n: int = 4, h: int = 64, w: int = 48) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, h, w, generator=g, dtype=torch.float64) * 255).round() / 255


def test_public_api_and_registry():
    from posebench.metrics.registry import METRICS, base_name, higher_is_better

    assert {"FID", "IS", "KID", "LPIPS", "PCKh", "PSNR", "SSIM"} <= set(dir(pm)) and pm.SSIM is SSIM
    assert METRICS.names() == ["ap", "ap_m", "cap", "clipsim", "fid", "is", "kid", "lpips", "pce", "pckh", "psnr",
                               "ssim"]
    for name in METRICS.names():
        spec = METRICS.get(name)
        assert spec.cls().__name__ and spec.consumes in ("pixels", "features", "pose", "text")
    assert base_name("ssim_win51") == base_name("ssim_masked") == "ssim" and base_name("fid_test") == "fid"
    assert higher_is_better("ssim_win51") and not higher_is_better("lpips_masked") and not higher_is_better("pce")
    import torchmetrics

    assert isinstance(SSIM(), torchmetrics.Metric)


def test_ssim_and_psnr_accumulate_over_batches():
    a, b = _images(0), _images(1)
    ssim, psnr = SSIM("clean"), PSNR("clean")
    for lo, hi in ((0, 1), (1, 3), (3, 4)):  # uneven batches
        ssim.update(a[lo:hi], b[lo:hi])
        psnr.update(a[lo:hi], b[lo:hi])
    ref_s = [structural_similarity((y * 255).numpy(), (x * 255).numpy(), gaussian_weights=True, sigma=1.5,
                                   use_sample_covariance=False, data_range=255, channel_axis=0)
             for x, y in zip(a, b, strict=True)]
    ref_p = [peak_signal_noise_ratio(y.numpy(), x.numpy(), data_range=1) for x, y in zip(a, b, strict=True)]
    assert float(ssim.compute()) == pytest.approx(np.mean(ref_s), abs=1e-10)
    assert float(psnr.compute()) == pytest.approx(np.mean(ref_p), abs=1e-10)
    pos, vals = ssim.per_image()
    assert pos.tolist() == [0, 1, 2, 3] and vals == pytest.approx(ref_s, abs=1e-10)
    assert ssim.summary()["n"] == 4 and ssim.summary()["stderr"] is not None
    # forward: the batch's value, and the batch is accumulated
    batch = float(ssim(a[:2], b[:2]))
    assert batch == pytest.approx(np.mean(ref_s[:2]), abs=1e-10) and ssim.summary()["n"] == 6
    ssim.reset()
    assert ssim.summary()["n"] == 0 and np.isnan(float(ssim.compute()))
    with pytest.raises(Exception, match="size|shape"):
        ssim.update(a, b[:, :, :10])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ssim.update(a * 2, b)


def test_variants_drop_last_and_positions():
    a, b = _images(2, n=5), _images(3, n=5)
    pidm = SSIM("pidm")  # reported: Gaussian sigma 1.2 with the prediction's range, on PIDM's 256x256 images
    win51 = SSIM("pidm", variant="ssim_win51")
    assert pidm.variant_name == "ssim_256" and pidm.summary()["details"]["variant"] == "ssim_256"
    big_a = _images(2, n=5, h=256, w=256)
    big_b = ((0.7 * big_a + 0.3 * _images(3, n=5, h=256, w=256)) * 255).round() / 255  # correlated: SSIM well above 0
    pidm.update(big_a, big_b, index=[4, 3, 2, 1, 0])
    x, y = (big_a[4] * 255).numpy(), (big_b[4] * 255).numpy()
    ref = structural_similarity(y, x, gaussian_weights=True, sigma=1.2, use_sample_covariance=False,
                                data_range=x.max() - x.min(), channel_axis=0)
    assert pidm.per_image()[1][0] == pytest.approx(ref, abs=1e-10)  # position 0 is the fifth image
    win51.update(big_a, big_b)
    assert float(win51.compute()) != pytest.approx(float(pidm.compute()), abs=1e-3)
    # LPIPS under pidm drops the remainder of batches of 64: 70 images keep 64
    from posebench.metrics.base import kept_by_drop_last
    from posebench.protocols import get_profile

    lp = get_profile("pidm").section("lpips")
    assert kept_by_drop_last(70, lp) == 64 and kept_by_drop_last(40, lp) == 40 and kept_by_drop_last(130, lp) == 128
    with pytest.raises(ValueError, match="no SSIM variant"):
        SSIM("clean", variant="ssim_win51")
    del a, b


def test_lpips_fid_kid_with_test_weights(tmp_path):
    import torchvision

    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), tmp_path / "alex.pth")
    lp = LPIPS("clean", weights=str(tmp_path / "alex.pth"))
    a, b = _images(4).float(), _images(5).float()
    lp.update(a, a)
    assert lp.per_image()[1] == pytest.approx([0.0] * 4, abs=1e-6)
    lp.update(a, b)
    assert all(v > 0 for v in lp.per_image()[1][4:])
    assert lp.to("cpu") is lp  # nn.Module semantics
    inception = peers.tiny_inception(seed=0)
    torch.save(inception.state_dict(), tmp_path / "tiny.pth")
    from posebench.metrics import features

    mp = pytest.MonkeyPatch()
    mp.setattr(features, "tv_inception_v3_skeleton", peers.TinyInception)
    try:
        fid = FID("pidm", weights=str(tmp_path / "tiny.pth"))
        kid = KID("pidm", extractor=fid.extractor)
    finally:
        mp.undo()
    real, gen = _images(6, n=12, h=256, w=256).float(), _images(7, n=12, h=256, w=256).float()
    for m in (fid, kid):
        m.update(real, real=True)
        m.update(real)
    assert float(fid.compute()) == pytest.approx(0.0, abs=1e-6)  # a set against itself
    fid.reset()
    fid.update(gen)
    assert float(fid.compute()) > 0 and fid.summary()["n"] == 12  # a batch larger than the data keeps all
    lonely = FID("pidm", extractor=fid.extractor)
    with pytest.raises(Exception, match="at least 2 generated"):
        lonely.compute()
    lonely.update(gen)
    with pytest.raises(Exception, match="real set"):
        lonely.compute()


# ---------------------------------------------------------------------------------------------- same as eval


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    """Synthetic DeepFashion at 384x264 (so the profiles resize), generated images at 256x256 (PIDM's size)."""
    from posebench.datasets.synth import synthesize

    base = tmp_path_factory.mktemp("classes")
    root = base / "df"
    synthesize("deepfashion", root, identities=6, poses=3, size=(384, 264), seed=4, test_fraction=0.5,
               progress=False)
    pairs = [r.split(",") for r in (root / "fasion-resize-pairs-test.csv").read_text().split()[1:]]
    rng = np.random.default_rng(0)
    gen = base / "gen"
    gen.mkdir()
    for s, t in pairs:
        with Image.open(root / "test" / t) as im:
            img = np.asarray(im.convert("RGB").resize((256, 256), Image.BILINEAR), dtype=np.float64)
        img = np.clip(np.round(img + rng.normal(0, 15, img.shape)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(gen / f"{s[:-4]}_2_{t[:-4]}_vis.png")
    return {"base": base, "root": root, "pairs": pairs, "gen": gen}


@pytest.mark.parametrize("profile", ["pidm", "cfld", "pcdms"])
def test_a_training_loop_gets_what_eval_writes(small_world, profile):
    """SSIM / PSNR of a profile on full-size images equal `posebench eval --profile` on the same images."""
    w = small_world
    out = w["base"] / f"{profile}.json"
    res = CliRunner().invoke(app, ["eval", "--protocol", "deepfashion-256x176", "--root", str(w["root"]), "--pred",
                                   str(w["gen"]), "--out", str(out), "--profile", profile, "--metrics", "ssim,psnr"])
    assert res.exit_code == 0, res.output
    written = json.loads(out.read_text())["metrics"]

    def load(path):
        return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"))).permute(2, 0, 1)

    ssim, psnr = SSIM(profile, protocol="deepfashion-256x176"), PSNR(profile, protocol="deepfashion-256x176")
    for s, t in w["pairs"]:  # one pair at a time, full-size ground truth (uint8 tensors): the class prepares them
        p, g = load(w["gen"] / f"{s[:-4]}_2_{t[:-4]}_vis.png")[None], load(w["root"] / "test" / t)[None]
        ssim.update(p, g)
        psnr.update(p, g)
    assert float(ssim.compute()) == pytest.approx(written["ssim"]["value"], abs=1e-12)
    assert float(psnr.compute()) == pytest.approx(written["psnr"]["value"], abs=1e-12)
    with open(out.with_suffix(".per_image.csv"), newline="") as fh:
        rows = {(r["source"], r["target"]): float(r["ssim"]) for r in csv.DictReader(fh)}
    ours = dict(zip([(s[:-4], t[:-4]) for s, t in w["pairs"]], ssim.per_image()[1], strict=True))
    assert all(ours[k] == pytest.approx(v, abs=1e-12) for k, v in rows.items())


def test_every_profile_key_is_used(tmp_path, monkeypatch):
    """fid.weights picks the weights file the extractor loads; a metric the profile lacks is an error, in the class
    and in `posebench eval`."""
    import yaml

    from posebench.metrics import features

    data = yaml.safe_load((__import__("importlib").resources.files("posebench.protocols") / "profiles/pidm.yaml")
                          .read_text())
    data["name"], data["metrics"]["fid"]["weights"] = "mine", "inception-tv-imagenet-2019"
    del data["metrics"]["lpips"]
    custom = tmp_path / "mine.yaml"
    custom.write_text(yaml.safe_dump(data))
    seen = {}
    monkeypatch.setattr(features, "build_extractor", lambda name, weights=None, device="cpu": seen.update(
        name=name, weights=weights) or object())
    FID(str(custom))
    assert seen == {"name": "tv-imagenet", "weights": "inception-tv-imagenet-2019"}
    with pytest.raises(Exception, match="defines no metric 'lpips'"):
        LPIPS(str(custom))
    res = CliRunner().invoke(app, ["eval", "--protocol", "deepfashion-256x176", "--root", str(tmp_path), "--pred",
                                   str(tmp_path), "--profile", str(custom), "--metrics", "ssim,lpips"])
    assert res.exit_code == 2 and "defines no lpips section" in res.output
