"""`posebench eval` end to end on synthetic DeepFashion with randomly initialised networks the test builds.

The real-weights path is exercised by loading the files the test writes through --fid-weights and
--lpips-weights. Baselines: `oracle` (the ground-truth target itself) and `copy-source` (the source image).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fakenets import calibrated
from PIL import Image
from typer.testing import CliRunner

from posebench.cli import app
from posebench.datasets.names import parse_deepfashion
from posebench.results.schema import ResultsError, read_results

runner = CliRunner()


@pytest.fixture(scope="module")
def module_home(tmp_path_factory):
    """One POSEBENCH_HOME for the whole module, so module-scoped runs and later tests share the stats cache."""
    home = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    mp.setenv("POSEBENCH_HOME", str(home))
    mp.delenv("POSEBENCH_OFFLINE", raising=False)
    yield home
    mp.undo()


@pytest.fixture(autouse=True)
def _isolated_home(module_home, monkeypatch):  # overrides conftest's per-test home for this module
    monkeypatch.setenv("POSEBENCH_HOME", str(module_home))
    return module_home


@pytest.fixture(scope="module")
def world(tmp_path_factory, module_home):
    """Synthetic DeepFashion at the protocol size, oracle/copy-source predictions, random weight files."""
    from posebench.datasets.synth import synthesize
    from posebench.metrics.features import fid_inception_skeleton, tv_inception_v3_skeleton

    base = tmp_path_factory.mktemp("eval")
    root = base / "df"
    synthesize("deepfashion", root, identities=5, poses=3, size=(256, 176), seed=3, test_fraction=0.4,
               progress=False)
    torch.manual_seed(0)
    sample = sorted((root / "train").iterdir())[:6]
    torch.save(calibrated(fid_inception_skeleton(), sample).state_dict(), base / "fid.pth")
    torch.save(calibrated(tv_inception_v3_skeleton(), sample).state_dict(), base / "tv.pth")
    import torchvision

    torch.save(torchvision.models.alexnet(weights=None).state_dict(), base / "alex.pth")
    pairs = [ln.split(",") for ln in (root / "fasion-resize-pairs-test.csv").read_text().split()[1:]]
    for name, pick in (("oracle", 1), ("copy-source", 0)):
        d = base / name
        d.mkdir()
        for p in pairs:
            img = Image.open(root / "test" / p[pick]).convert("RGB")
            img.save(d / f"{Path(p[0]).stem}__{Path(p[1]).stem}.png")
    return {"base": base, "root": root, "pairs": pairs}


def _eval(world, pred: str | Path, *extra: str, out: str = "res.json", profile: str = "clean"):
    base = world["base"]
    weights = ["--fid-weights", str(base / ("fid.pth" if profile == "clean" else "tv.pth")),
               "--lpips-weights", str(base / "alex.pth")]
    args = ["eval", "--protocol", "deepfashion-256x176", "--root", str(world["root"]),
            "--pred", str(base / pred if isinstance(pred, str) else pred), "--out", str(base / out),
            "--profile", profile, "--batch-size", "8", *weights, *extra]
    return runner.invoke(app, args)


@pytest.fixture(scope="module")
def runs(world):
    """The two full evaluations (all metrics, clean profile) several tests read."""
    for pred, out in (("oracle", "oracle.json"), ("copy-source", "copy.json")):
        res = _eval(world, pred, out=out)
        assert res.exit_code == 0, res.output
    return {name: read_results(world["base"] / f"{name}.json") for name in ("oracle", "copy")}


def test_oracle_and_copy_source(world, runs):
    oracle = runs["oracle"]
    m = oracle["metrics"]
    assert m["ssim"]["value"] == pytest.approx(1.0, abs=1e-12)
    assert m["lpips"]["value"] == pytest.approx(0.0, abs=1e-6)
    assert m["psnr"]["value"] == float("inf") or m["psnr"]["value"] == "inf"
    n = len(world["pairs"])
    n_train = len((world["root"] / "train.lst").read_text().split())
    assert m["ssim"]["n"] == n and m["fid"]["n"] == n and m["fid"]["details"]["real_n"] == n_train
    assert oracle["canonical"] is False and any("non-canonical" in w for w in oracle["warnings"])
    assert oracle["profile"]["name"] == "clean" and oracle["profile"]["version"] == 2
    assert oracle["env"]["extractor"]["name"] == "clean"

    copy = runs["copy"]["metrics"]
    assert copy["fid"]["value"] > 1e-3 and m["fid"]["value"] > 1e-3  # informative features, not a constant
    assert copy["ssim"]["value"] < 0.95 and copy["lpips"]["value"] > 0.01 and np.isfinite(copy["psnr"]["value"])
    assert copy["kid"]["value"] == pytest.approx(copy["kid"]["value"])  # present and a number

    lines = (world["base"] / "copy.per_image.csv").read_text().splitlines()
    assert lines[0] == "source,target,lpips,psnr,ssim" and len(lines) == n + 1


def test_env_records_the_lpips_package_and_network_apart(world, runs):
    from importlib.metadata import version

    env = runs["oracle"]["env"]
    assert env["lpips"] == version("lpips")  # the package version, not overwritten by the network entry
    assert env["lpips_network"]["net"] == "alex" and len(env["lpips_network"]["weights_sha256"]) == 64
    # how it was run (as lm-eval-harness records it): the command line and this checkout's commit
    import subprocess

    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parents[2], capture_output=True,
                          text=True).stdout.strip()
    assert env["git_commit"] == head and isinstance(env["git_dirty"], bool)
    assert isinstance(env["command_line"], list) and env["command_line"]
    # networks from files that are not registry files: the numbers are not comparable, and each is named
    reasons = runs["oracle"]["non_canonical_reasons"]
    assert any(r.startswith("FID/KID features from a weight file that is not a registry file") for r in reasons)
    assert any(r.startswith("LPIPS from a weight file that is not a registry file") for r in reasons)


def test_real_set_reasons_only_when_a_number_uses_the_real_set(world, runs):
    res = _eval(world, "oracle", "--metrics", "ssim,psnr", out="ssim-only.json")
    assert res.exit_code == 0, res.output
    reasons = read_results(world["base"] / "ssim-only.json")["non_canonical_reasons"]
    assert reasons and not any("real-set" in r or "real set" in r for r in reasons)
    assert any("FID real-set images" in r for r in runs["oracle"]["non_canonical_reasons"])


def test_dry_run_shows_what_would_be_used(world):
    res = _eval(world, "oracle", "--dry-run", out="never.json", profile="pidm")
    assert res.exit_code == 0, res.output
    shown = json.loads(res.output)
    n_train = len((world["root"] / "train.lst").read_text().split())
    assert shown["profile"] == {"name": "pidm", "version": 2} and shown["protocol"] == "deepfashion-256x176"
    print(shown["metrics"])
    assert shown["generated_images"] == len(world["pairs"]) and shown["real_sets"]["train"] == n_train
    used = {w["registry"]: w for w in shown["weights"]}
    assert used["inception-tv-imagenet"]["file"] == str(world["base"] / "tv.pth")
    assert used["inception-tv-imagenet"]["status"] == "present" and "fid" in used["inception-tv-imagenet"]["for"]
    assert not (world["base"] / "never.json").exists()
    # the inputs are checked: a folder missing pairs fails now, not after the real-set statistics
    res = _eval(world, world["base"], "--dry-run", out="never.json")
    assert res.exit_code == 2


def test_per_image_ssim_matches_skimage_and_lpips_matches_package(world, runs):
    import lpips as lpips_pkg
    from skimage.metrics import structural_similarity

    rows = (world["base"] / "copy.per_image.csv").read_text().splitlines()[1:4]
    net = lpips_pkg.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    from posebench.metrics.lpips_net import load_backbone

    load_backbone(net.net, torch.load(world["base"] / "alex.pth", weights_only=True), "alex.pth")
    for row in rows:
        src, tgt, lp, _, ss = row.split(",")
        a = np.asarray(Image.open(world["base"] / "copy-source" / f"{src}__{tgt}.png"), dtype=np.float64)
        b = np.asarray(Image.open(world["root"] / "test" / f"{tgt}.jpg"), dtype=np.float64)
        ref = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                    data_range=255, channel_axis=2)
        assert float(ss) == pytest.approx(ref, abs=1e-4)  # the parity bound; float64 gives ~1e-12
        ta = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 127.5 - 1
        tb = torch.from_numpy(b).permute(2, 0, 1)[None].float() / 127.5 - 1
        with torch.no_grad():
            assert float(lp) == pytest.approx(float(net(ta, tb)), abs=1e-5)


def test_fid_matches_scipy_on_the_same_features(world, runs):
    """FID from the results equals a scipy sqrtm Frechet distance on the cached real statistics."""
    from scipy import linalg

    from posebench.metrics.features import build_extractor
    from posebench.real_stats import stats_dir

    result = runs["copy"]
    cache = Path(result["dataset"]["real_sets"]["train"]["cache_file"])
    assert cache.parent == stats_dir() and cache.is_file()
    with np.load(cache, allow_pickle=False) as real:
        n_r, s_r, ss_r = float(real["n"]), real["sum"], real["outer"]
    mu_r = s_r / n_r
    cov_r = (ss_r - n_r * np.outer(mu_r, mu_r)) / (n_r - 1)
    ext = build_extractor("clean", weights=world["base"] / "fid.pth")
    imgs = [np.asarray(Image.open(p)) for p in sorted((world["base"] / "copy-source").iterdir())]
    with torch.inference_mode():
        f = ext(torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float()).double().numpy()
    mu_g, cov_g = f.mean(0), np.cov(f, rowvar=False)
    covmean = linalg.sqrtm(cov_g @ cov_r).real
    ref = float(((mu_g - mu_r) ** 2).sum() + np.trace(cov_g) + np.trace(cov_r) - 2 * np.trace(covmean))
    assert result["metrics"]["fid"]["value"] == pytest.approx(ref, rel=1e-4)


def test_real_stats_cache_is_reused(world, runs):
    assert _eval(world, "oracle", out="c2.json").exit_code == 0
    a, b = runs["oracle"], read_results(world["base"] / "c2.json")
    assert a["dataset"]["real_sets"]["train"]["from_cache"] is False
    assert b["dataset"]["real_sets"]["train"]["from_cache"] is True
    assert a["metrics"]["fid"]["value"] == b["metrics"]["fid"]["value"]


def test_missing_extra_duplicate_and_lossy_inputs(world, tmp_path):
    pred = tmp_path / "pred"
    shutil.copytree(world["base"] / "oracle", pred)
    victim = sorted(pred.iterdir())[0]
    victim.unlink()
    res = _eval(world, pred, out="m.json")
    assert res.exit_code == 2 and "have no generated image" in res.output
    assert not (world["base"] / "m.json").exists()  # nothing half-written
    res = _eval(world, pred, "--allow-missing", "--metrics", "ssim,psnr", out="m.json")
    assert res.exit_code == 0, res.output
    got = read_results(world["base"] / "m.json")
    assert got["metrics"]["ssim"]["n"] == len(world["pairs"]) - 1 and got["canonical"] is False

    (pred / "fashionMENDenimid9999999901_1front__fashionMENDenimid9999999901_2side.png").write_bytes(
        victim.with_name("x").name.encode())  # an extra pair that is not in the split
    res = _eval(world, pred, "--allow-missing", out="e.json")
    assert res.exit_code == 2 and "no known naming scheme" in res.output

    jpg = tmp_path / "jpg"
    jpg.mkdir()
    for f in sorted((world["base"] / "oracle").iterdir()):
        Image.open(f).save(jpg / f.with_suffix(".jpg").name, quality=95)
    res = _eval(world, jpg, "--metrics", "ssim", out="j.json")
    assert res.exit_code == 2 and "--allow-lossy" in res.output
    res = _eval(world, jpg, "--metrics", "ssim", "--allow-lossy", out="j.json")
    assert res.exit_code == 0 and "lossy_inputs" in read_results(world["base"] / "j.json")["flags"]


@pytest.mark.parametrize("mode, message", [("RGBA", "got mode RGBA"), ("L", "grayscale"), ("I;16", "16-bit")])
def test_bad_image_modes_name_the_file(world, tmp_path, mode, message):
    pred = tmp_path / "pred"
    shutil.copytree(world["base"] / "oracle", pred)
    victim = sorted(pred.iterdir())[1]
    Image.open(victim).convert(mode if mode != "I;16" else "I").save(victim) if mode != "I;16" else \
        Image.fromarray(np.zeros((256, 176), dtype=np.uint16)).save(victim)
    res = _eval(world, pred, "--metrics", "ssim", out="bad.json")
    assert res.exit_code == 2 and victim.name in res.output and message in res.output


def test_truncated_image_and_wrong_size(world, tmp_path):
    pred = tmp_path / "pred"
    shutil.copytree(world["base"] / "oracle", pred)
    victim = sorted(pred.iterdir())[2]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    res = _eval(world, pred, "--metrics", "ssim", out="t.json")
    assert res.exit_code == 2 and victim.name in res.output and "cannot decode" in res.output
    Image.open(world["base"] / "oracle" / victim.name).resize((128, 88)).save(victim)
    res = _eval(world, pred, "--metrics", "ssim", out="t.json")
    assert res.exit_code == 2 and "does not resize predictions" in res.output


def test_legacy_profile_resizes_and_records(world):
    res = _eval(world, "copy-source", "--metrics", "ssim,psnr,lpips", out="pidm.json", profile="pidm")
    assert res.exit_code == 0, res.output
    r = read_results(world["base"] / "pidm.json")
    assert r["profile"]["name"] == "pidm" and "ssim_256" not in r["metrics"]  # reported variant is named ssim
    # the other SSIM variant under its own key, each over every pair once (v1 averaged both into `ssim`)
    assert set(r["metrics"]) == {"ssim", "ssim_win51", "psnr", "lpips"}
    n = len(world["pairs"])
    assert r["metrics"]["ssim"]["n"] == r["metrics"]["ssim_win51"]["n"] == n
    assert r["metrics"]["ssim"]["details"]["variant"] == "ssim_256"
    assert r["metrics"]["ssim"]["value"] != pytest.approx(r["metrics"]["ssim_win51"]["value"], abs=1e-3)
    header = (world["base"] / "pidm.per_image.csv").read_text().splitlines()[0]
    assert header == "source,target,lpips,psnr,ssim,ssim_win51"
    # PIDM: LPIPS in batches of 64 with drop-last, but a batch larger than the data shrinks to the data size
    # (the script's "batch size is bigger than the data size"), so fewer than 64 pairs are all kept
    assert n < 64 and r["metrics"]["lpips"]["details"]["dropped"] == 0 and r["metrics"]["lpips"]["n"] == n


def test_pcdms_renamed_images_with_a_name_map(world, tmp_path):
    """PCDMs' processed data renames the images imgN: its outputs `imgA_to_imgB.png` are scored through
    --name-map; without it, or with a broken map, the error names what to do / the file and line."""
    pred = tmp_path / "pcdms"
    pred.mkdir()
    stems = sorted({Path(n).stem for p in world["pairs"] for n in p})
    number = {s: f"img{i + 1}" for i, s in enumerate(stems)}
    for src, tgt in world["pairs"]:
        shutil.copy(world["base"] / "oracle" / f"{Path(src).stem}__{Path(tgt).stem}.png",
                    pred / f"{number[Path(src).stem]}_to_{number[Path(tgt).stem]}.png")
    name_map = tmp_path / "names.csv"
    name_map.write_text("".join(f"{n}.png,{s}.jpg\n" for s, n in number.items()))
    res = _eval(world, pred, "--metrics", "ssim", "--name-map", str(name_map), out="pcdms-map.json")
    assert res.exit_code == 0, res.output
    r = read_results(world["base"] / "pcdms-map.json")
    assert r["predictions"]["scheme"] == "pcdms" and r["metrics"]["ssim"]["value"] == pytest.approx(1.0, abs=1e-12)
    res = _eval(world, pred, "--metrics", "ssim", out="pcdms-nomap.json")
    assert res.exit_code == 2 and "--name-map" in res.output
    name_map.write_text("img1.png\n")
    res = _eval(world, pred, "--metrics", "ssim", "--name-map", str(name_map), out="pcdms-bad.json")
    assert res.exit_code == 2 and f"{name_map}:1" in res.output and "expected two names" in res.output
    assert not (world["base"] / "pcdms-bad.json").exists()


def test_profile_and_protocol_errors(world):
    res = _eval(world, "oracle", profile="pidmm")
    assert res.exit_code == 2 and "Did you mean: pidm" in res.output
    res = runner.invoke(app, ["eval", "--protocol", "market-128x64", "--root", str(world["root"]),
                              "--pred", str(world["base"] / "oracle"), "--profile", "pidm"])
    assert res.exit_code == 2 and "does not apply to market-128x64" in res.output


def test_results_reader_rejects_unknown_schema(tmp_path):
    f = tmp_path / "r.json"
    f.write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(ResultsError, match="schema 99 is not supported"):
        read_results(f)


def test_identity_parsing_of_synthetic_names(world):
    a, b = world["pairs"][0]
    assert parse_deepfashion(a).identity == parse_deepfashion(b).identity


def test_two_processes_match_one(world, runs, module_home, free_port):
    """torchrun with 2 CPU processes (gloo) reproduces one process: float64 SSIM/PSNR exactly; the float32
    networks (LPIPS, Inception) to 1e-6, because a shard batches other images together and float32
    convolutions depend on the batch in the last bits."""
    import os
    import subprocess
    import sys

    base = world["base"]
    out = base / "two.json"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--nproc_per_node", "2", "--master_port", str(free_port), "-m", "posebench", "eval",
           "--protocol", "deepfashion-256x176",
           "--root", str(world["root"]), "--pred", str(base / "copy-source"), "--out", str(out),
           "--fid-weights", str(base / "fid.pth"), "--lpips-weights", str(base / "alex.pth"), "--batch-size", "4"]
    env = {**os.environ, "POSEBENCH_HOME": str(module_home), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    two = read_results(out)
    one = runs["copy"]
    assert two["env"]["processes"] == 2
    for name in ("ssim", "psnr"):
        assert two["metrics"][name]["value"] == one["metrics"][name]["value"]
    assert two["metrics"]["lpips"]["value"] == pytest.approx(one["metrics"]["lpips"]["value"], abs=1e-6)
    rows = [(ln.split(",")[:2], ln.split(",")[3:]) for ln in (base / "two.per_image.csv").read_text().split()]
    ref = [(ln.split(",")[:2], ln.split(",")[3:]) for ln in (base / "copy.per_image.csv").read_text().split()]
    assert rows == ref  # same pairs in the same order, identical psnr and ssim columns
    assert two["metrics"]["fid"]["value"] == pytest.approx(one["metrics"]["fid"]["value"], rel=1e-6, abs=1e-9)


def test_market_masked_metrics(tmp_path, world):
    """mask-SSIM / mask-LPIPS on Market: both images multiplied by the target's pose mask (PATN/GFLA)."""
    from skimage.metrics import structural_similarity

    from posebench.datasets.keypoints import Keypoints
    from posebench.datasets.render import pose_mask
    from posebench.datasets.synth import synthesize

    root = tmp_path / "market"
    synthesize("market", root, identities=4, poses=3, seed=2, progress=False)
    pred = tmp_path / "pred"
    pred.mkdir()
    pairs = [ln.split(",") for ln in (root / "market-pairs-test.csv").read_text().split()[1:]]
    for src, tgt in pairs:
        Image.open(root / "bounding_box_test" / src).save(pred / f"{Path(src).stem}__{Path(tgt).stem}.png")
    out = tmp_path / "m.json"
    res = runner.invoke(app, ["eval", "--protocol", "market-128x64", "--root", str(root), "--pred", str(pred),
                              "--out", str(out), "--metrics", "ssim,lpips", "--lpips-weights",
                              str(world["base"] / "alex.pth")])
    assert res.exit_code == 0, res.output
    r = read_results(out)
    assert {"ssim", "ssim_masked", "lpips", "lpips_masked"} <= set(r["metrics"])
    assert r["metrics"]["ssim_masked"]["higher_is_better"] is True
    assert r["metrics"]["lpips_masked"]["higher_is_better"] is False
    # one pair by hand: mask from the target's annotation row, skimage SSIM of the masked images
    src, tgt = pairs[0]
    ann = (root / "market-annotation-test.csv").read_text().splitlines()[1:]
    rows = {ln.split(":")[0]: ln.split(":")[1:] for ln in ann}
    ys, xs = (json.loads(c) for c in rows[tgt])
    kp = Keypoints.from_xy(np.array([xs, ys], dtype=np.float32).T, (128, 64), "openpose18")
    m = pose_mask(kp)[..., None]
    a = np.asarray(Image.open(pred / f"{Path(src).stem}__{Path(tgt).stem}.png"), dtype=np.float64) * m
    b = np.asarray(Image.open(root / "bounding_box_test" / tgt), dtype=np.float64) * m
    ref = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                data_range=255, channel_axis=2)
    per = (tmp_path / "m.per_image.csv").read_text().splitlines()
    header = per[0].split(",")
    row = next(dict(zip(header, ln.split(","), strict=True)) for ln in per[1:]
               if ln.startswith(f"{Path(src).stem},{Path(tgt).stem},"))
    assert float(row["ssim_masked"]) == pytest.approx(ref, abs=1e-6)


def test_compare_with_a_board(world, runs):
    res = _eval(world, "oracle", "--metrics", "ssim,psnr", "--compare", "deepfashion-256x176", out="cmp.json")
    assert res.exit_code == 0, res.output
    assert "nearest rows of deepfashion-256x176" in res.output and "this run" in res.output
    res = _eval(world, "oracle", "--compare", "no-such-board", out="cmp2.json")
    assert res.exit_code == 2 and not (world["base"] / "cmp2.json").exists()


def test_two_plain_folders(world, runs, tmp_path):
    """eval --pred DIR --gt DIR: matched by file name, no root, clean-fid's folder FID (real set = --gt by default);
    the same numbers as the protocol run for the same images, non-canonical; mismatched names listed, exit 2."""
    gt, real = tmp_path / "gt", tmp_path / "real"
    gt.mkdir()
    real.mkdir()
    for src, tgt in world["pairs"]:
        name = f"{Path(src).stem}__{Path(tgt).stem}.png"
        Image.open(world["root"] / "test" / tgt).convert("RGB").save(gt / name)
    for f in sorted((world["root"] / "train").iterdir()):
        Image.open(f).convert("RGB").save(real / f"{f.stem}.png")
    out = tmp_path / "folders.json"
    args = ["eval", "--pred", str(world["base"] / "copy-source"), "--gt", str(gt), "--real", str(real), "--out",
            str(out), "--metrics", "ssim,psnr,lpips,fid", "--fid-weights", str(world["base"] / "fid.pth"),
            "--lpips-weights", str(world["base"] / "alex.pth"), "--workers", "2"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    r = read_results(out)
    ref = read_results(world["base"] / "copy.json")  # the protocol run on the same images (clean)
    for m in ("ssim", "psnr", "lpips"):
        assert r["metrics"][m]["value"] == pytest.approx(ref["metrics"][m]["value"], abs=1e-9)
    # the real set here is the lossless PNG copy of the training JPEGs the protocol run decodes: the same pixels
    assert r["metrics"]["fid"]["value"] == pytest.approx(ref["metrics"]["fid"]["value"], rel=1e-6)
    assert r["protocol"]["name"] == "folders" and not r["canonical"] and r["dataset"]["real_dir"] == str(real)
    assert (tmp_path / "folders.per_image.csv").read_text().splitlines()[0] == "name,lpips,psnr,ssim"
    (gt / next(iter(sorted(gt.iterdir()))).name).rename(gt / "renamed.png")
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "no ground truth named" in res.output and "have no generated image" in res.output
    res = runner.invoke(app, ["eval", "--pred", str(gt), "--gt", str(gt), "--root", str(world["root"])])
    assert res.exit_code == 2 and "drop --root" in res.output
    res = runner.invoke(app, ["eval", "--pred", str(gt)])
    assert res.exit_code == 2 and "give --protocol" in res.output


def test_decoding_workers_do_not_change_a_number(world, runs, tmp_path):
    """The DataLoader's worker processes decode in order: 0 and 2 workers write the same results and CSV."""
    res = _eval(world, "copy-source", "--workers", "0", "--metrics", "ssim,lpips,psnr", out="w0.json")
    assert res.exit_code == 0, res.output
    res = _eval(world, "copy-source", "--workers", "2", "--metrics", "ssim,lpips,psnr", out="w2.json")
    assert res.exit_code == 0, res.output
    a, b = read_results(world["base"] / "w0.json"), read_results(world["base"] / "w2.json")
    assert {k: v["value"] for k, v in a["metrics"].items()} == {k: v["value"] for k, v in b["metrics"].items()}
    assert (world["base"] / "w0.per_image.csv").read_text() == (world["base"] / "w2.per_image.csv").read_text()


def test_nan_values_and_features_name_the_image(tmp_path, monkeypatch):
    """A per-image value that is NaN is reported with the file it came from (the mean is NaN, as the reference's
    would be); a NaN Inception feature stops the run naming the file."""
    from posebench.metrics.psnr import PSNR

    rng = np.random.default_rng(0)
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    for i in range(4):
        for folder in (gt, pred):
            Image.fromarray(rng.integers(0, 256, (64, 44, 3)).astype(np.uint8)).save(folder / f"im{i}.png")
    real_score = PSNR.score
    monkeypatch.setattr(PSNR, "score", lambda self, pairs: torch.where(
        torch.tensor(["im2" in label for label in pairs.labels]), torch.tensor(float("nan"), dtype=torch.float64),
        real_score(self, pairs)))
    res = runner.invoke(app, ["eval", "--pred", str(pred), "--gt", str(gt), "--metrics", "psnr", "--out",
                              str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    r = read_results(tmp_path / "r.json")
    assert np.isnan(float(r["metrics"]["psnr"]["value"]))  # JSON stores it as "nan"
    assert any(w.startswith("psnr is NaN for 1 generated images") and "im2.png" in w for w in r["warnings"])

    from posebench.errors import PosebenchError
    from posebench.metrics import FID, ImagePairs

    class NaNForSecond:  # an extractor whose second image overflows
        name, version, weights_sha256, dims, device = "fake", 1, "0" * 64, 4, torch.device("cpu")

        def __call__(self, x, check_range=True):
            out = torch.ones(x.shape[0], 4)
            out[1] = float("nan")
            return out

    fid = FID("clean", extractor=NaNForSecond())
    images = [rng.integers(0, 256, (64, 44, 3)).astype(np.uint8) for _ in range(3)]
    with pytest.raises(PosebenchError, match=r"^b\.png: its Inception features are NaN/Inf"):
        fid.update(ImagePairs(images, labels=["a.png", "b.png", "c.png"]))


def test_patn_strips_are_scored_on_their_generated_panel(world, tmp_path):
    """PATN saves 5-panel strips (source | source pose | target | target pose | generated) and its getMetrics
    scores panel 5: an oracle strip scores SSIM 1 (its noise panels are never seen); another layout is refused."""
    rng = np.random.default_rng(0)
    strips = tmp_path / "patn"
    strips.mkdir()
    for src, tgt in world["pairs"]:
        target = np.asarray(Image.open(world["root"] / "test" / tgt).convert("RGB"))
        noise = [rng.integers(0, 256, target.shape, dtype=np.uint8) for _ in range(4)]
        Image.fromarray(np.concatenate([*noise, target], axis=1)).save(strips / f"{src}___{tgt}_vis.png")
    res = _eval(world, strips, "--metrics", "ssim,psnr", "--scheme", "patn", out="patn.json")
    assert res.exit_code == 0, res.output
    r = read_results(world["base"] / "patn.json")
    assert r["metrics"]["ssim"]["value"] == pytest.approx(1.0, abs=1e-12) and r["predictions"]["panel"] == "5 of 5"
    assert any("PATN strips" in w and "panel 5" in w for w in r["warnings"])

    first = sorted(strips.iterdir())[0]
    img = np.asarray(Image.open(first))
    Image.fromarray(img[:, : img.shape[1] * 4 // 5]).save(first)  # four panels: not PATN's layout
    res = _eval(world, strips, "--metrics", "ssim,psnr", "--scheme", "patn", out="patn-bad.json")
    assert res.exit_code == 2 and first.name in res.output and "5 panels" in res.output


def test_skip_missing_weights_scores_the_rest_and_says_how_to_fetch(world, tmp_path, monkeypatch):
    from posebench import weights

    monkeypatch.setattr(weights, "from_installed_package", lambda spec: None)  # nothing cached, nothing installed
    monkeypatch.setenv("POSEBENCH_HOME", str(tmp_path / "empty-home"))
    out = tmp_path / "skip.json"
    res = runner.invoke(app, ["eval", "--protocol", "deepfashion-256x176", "--root", str(world["root"]), "--pred",
                              str(world["base"] / "oracle"), "--out", str(out), "--skip-missing-weights"])
    assert res.exit_code == 0, res.output
    assert "skipped fid" in res.output and "posebench weights download inception-fid-clean" in res.output
    r = read_results(out)
    assert set(r["metrics"]) == {"ssim", "psnr"}
    assert r["config"]["skipped"]["lpips"].endswith("posebench weights download alexnet-tv-imagenet")
    assert any(w.startswith("fid skipped: weight file 'inception-fid-clean'") for w in r["warnings"])
    # every metric missing its weights: nothing to score is an error, not an empty results file
    res = runner.invoke(app, ["eval", "--protocol", "deepfashion-256x176", "--root", str(world["root"]), "--pred",
                              str(world["base"] / "oracle"), "--out", str(tmp_path / "none.json"), "--metrics",
                              "fid,lpips", "--skip-missing-weights"])
    assert res.exit_code == 2 and "every metric asked for needs a weight file that is missing" in res.output
    assert not (tmp_path / "none.json").exists()
