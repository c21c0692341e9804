"""Protocols and profiles: the built-ins load, carry versions and hashes, and bad files are refused."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from posebench.cli import app
from posebench.protocols import PROFILES, PROTOCOLS, ProfileError, get_profile, parse_profile

runner = CliRunner()


def test_builtins():
    assert PROFILES.names() == ["cfld", "clean", "legacy-gfla", "pcdms", "pidm"]
    assert PROTOCOLS.names() == ["deepfashion-256x176", "deepfashion-512x352", "humanart-val", "market-128x64"]
    for name in PROFILES.names():
        prof = PROFILES.get(name)
        assert prof.version >= 1 and len(prof.sha256) == 64 and prof.changelog
    pidm = get_profile("pidm")
    assert pidm.section("ssim").variants["ssim_256"].sigma == 1.2  # PIDM/PCDMs use 1.2, not 1.5
    assert get_profile("pcdms").section("lpips").input_range == "zero_1_raw"
    assert get_profile("clean").section("fid").drop_last is False
    assert [s.method for s in pidm.chain("fid")] == ["pil-bicubic", "cv2-linear"]
    assert pidm.chain("fid")[-1].output == "float32" and pidm.prediction_chain_for("fid") == pidm.chain("fid")
    cfld = get_profile("cfld")  # ground truth as torchvision Resize on PIL images; samples truncated after resizing
    assert [(s.method, s.output) for s in cfld.chain("fid")] == [("pil-bicubic", "uint8")]
    assert [(s.method, s.output) for s in cfld.prediction_chain_for("ssim")] == [("torch-bicubic-antialias",
                                                                                  "uint8-truncate")]
    for name in ("legacy-gfla", "pidm", "cfld"):  # reported variant -> `ssim`, the other one under its own key
        variants = get_profile(name).section("ssim").variants
        assert sorted(variants) == ["ssim_256", "ssim_win51"] and get_profile(name).version == 2
    for proto in PROTOCOLS.names():
        p = PROTOCOLS.get(proto)
        assert p.default_profile in p.profiles and all(x in PROFILES for x in p.profiles)


def _clean_dict():
    import importlib.resources

    text = importlib.resources.files("posebench.protocols").joinpath("profiles/clean.yaml").read_text()
    return yaml.safe_load(text)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["metrics"].update(fidd={}), r"unknown metrics \['fidd'\]"),
    (lambda d: d["metrics"]["ssim"].update(reported="nope"), "reported variant"),
    (lambda d: d["metrics"]["ssim"]["variants"]["ssim"].update(window="box"),
     r"metrics.ssim.variants.ssim.window: expected one of 'gaussian', 'uniform', got 'box'"),
    (lambda d: d["metrics"]["lpips"].update(input_range="0_255"), r"metrics.lpips.input_range: expected one of"),
    # typed sections: every key is known and read, and has the right type
    (lambda d: d["metrics"]["fid"].update(batchsize=32), r"metrics.fid: unknown keys \['batchsize'\]"),
    (lambda d: d["metrics"]["fid"].update(drop_last="yes"), r"metrics.fid.drop_last: expected bool"),
    (lambda d: d["metrics"]["fid"].update(batch_size=0), r"metrics.fid.batch_size: must be >= 1"),
    (lambda d: d["metrics"]["fid"].pop("weights"), r"metrics.fid: missing keys \['weights'\]"),
    (lambda d: d["metrics"]["ssim"]["variants"]["ssim"].update(win_size=7), r"a gaussian window has no win_size"),
    (lambda d: d["metrics"].pop("fid"), "KID uses the fid section"),
    (lambda d: d.update(resize_predictions="no"), "resize_predictions: expected true or false"),
    (lambda d: d.update(extra=1), r"unknown keys \['extra'\]"),
    (lambda d: d.update(ground_truth_chain=[{"resize": "nearest"}]), "unknown resize"),
    (lambda d: d.update(ground_truth_chain=[{"resize": "cv2-cubic", "size": [256]}]), "size must be"),
    (lambda d: d.pop("version"), "missing key 'version'"),
    # a second variant named `ssim` would share the results key with the reported one (v1's averaged headline)
    (lambda d: d["metrics"]["ssim"].update(reported="ssim_256", variants={
        "ssim": {"window": "uniform", "win_size": 51, "data_range": 1.0},
        "ssim_256": {"window": "gaussian", "sigma": 1.5, "data_range": "prediction"}}), "must start with 'ssim_'"),
    (lambda d: d["metrics"]["ssim"]["variants"].update(win51={"window": "uniform", "data_range": 1.0}),
     "must start with 'ssim_'"),
    (lambda d: d.update(ground_truth_chain=[{"resize": "pil-bicubic", "output": "float32"}]), "cannot give output"),
    (lambda d: d.update(prediction_chain=[{"resize": "cv2-cubic", "output": "uint8-truncate"}]), "cannot give output"),
    (lambda d: d.update(ground_truth_chain=[{"resize": "cv2-cubic", "output": "float32"},
                                            {"resize": "pil-bicubic"}]), "cannot follow a float32 step"),
    (lambda d: d.update(ground_truth_chain=[{"resize": "cv2-cubic", "sise": [2, 2]}]), "unknown keys"),
])
def test_bad_profiles_are_refused(mutate, message):
    data = _clean_dict()
    mutate(data)
    with pytest.raises(ProfileError, match=message):
        parse_profile(data, "test.yaml")


def test_any_change_changes_the_hash():
    a = parse_profile(_clean_dict(), "a")
    data = _clean_dict()
    data["metrics"]["ssim"]["variants"]["ssim"]["sigma"] = 1.2
    assert parse_profile(data, "b").sha256 != a.sha256


def test_custom_profile_file_and_cli(tmp_path):
    data = _clean_dict()
    data["name"] = "mine"
    f = tmp_path / "mine.yaml"
    f.write_text(yaml.safe_dump(data))
    assert get_profile(str(f)).name == "mine"
    res = runner.invoke(app, ["profiles", "show", "pcdms"])
    assert res.exit_code == 0 and '"input_range": "zero_1_raw"' in res.stdout
    res = runner.invoke(app, ["protocols", "ls"])
    assert res.exit_code == 0 and "deepfashion" in res.stdout and "market" in res.stdout
    res = runner.invoke(app, ["profiles", "show", "clen"])
    assert res.exit_code == 2 and "Did you mean: clean" in res.output


def test_profiles_cli_lists_and_shows_pose_profiles():
    import json

    res = runner.invoke(app, ["profiles", "ls"])
    assert res.exit_code == 0 and "pose-metric profiles" in res.stdout and "humansd" in res.stdout
    res = runner.invoke(app, ["profiles", "show", "clean", "--pose"])
    shown = json.loads(res.stdout)
    assert res.exit_code == 0 and shown["target_frame"] == "center-crop" and shown["estimator_input"] == "rgb"
    assert "metrics" not in shown  # not the image profile of the same name
    res = runner.invoke(app, ["profiles", "show", "humansd", "--pose"])
    assert res.exit_code == 0 and json.loads(res.stdout)["aggregation"] == "batches"
    res = runner.invoke(app, ["profiles", "show", "humansd"])  # an image profile of that name does not exist
    assert res.exit_code == 2
