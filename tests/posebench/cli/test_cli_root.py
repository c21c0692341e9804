"""The CLI shell: version, help, doctor (human and --json), error handling."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from posebench import __version__
from posebench.cli import app

runner = CliRunner()


def test_version():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0
    assert res.stdout.strip() == f"posebench {__version__}"


def test_help_lists_only_working_commands():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("doctor", "weights"):
        assert cmd in res.stdout


def test_no_arguments_shows_help():
    res = runner.invoke(app, [])
    assert "Usage" in res.output


def test_doctor_json_schema():
    res = runner.invoke(app, ["doctor", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["schema_version"] == 1
    assert report["posebench"] == __version__
    assert report["ok"] is True and report["broken"] == []
    for name in ("torch", "torchvision", "diffusers", "accelerate", "lpips", "clean-fid", "torchreid", "timm"):
        entry = report["packages"][name]
        assert entry["ok"] is True, (name, entry["error"])
        assert isinstance(entry["version"], str) and entry["version"]
    assert set(report["optional"]) >= {"mmpose", "mmcv"}
    for entry in report["optional"].values():
        assert isinstance(entry["ok"], bool) and entry["extra"]
    dev = report["device"]
    assert isinstance(dev["cuda_available"], bool) and dev["default"] in {"cpu", "cuda"}
    w = report["weights"]
    assert w["cache_dir"].endswith("weights") and w["offline"] is False
    assert {row["status"] for row in w["files"]} <= {"verified", "unchecked", "missing", "corrupt"}
    assert all(row["status"] == "missing" for row in w["files"])  # the test's cache is empty


def test_doctor_human_output():
    res = runner.invoke(app, ["doctor"])
    assert res.exit_code == 0, res.output
    assert "install OK" in res.stdout and "torchvision" in res.stdout


def test_doctor_reports_broken_install(monkeypatch):
    from posebench import env

    monkeypatch.setattr(env, "REQUIRED", env.REQUIRED + (("no-such-dist", "no_such_module_xyz"),))
    res = runner.invoke(app, ["doctor", "--json"])
    assert res.exit_code == 1
    report = json.loads(res.stdout)
    assert report["ok"] is False and report["broken"] == ["no-such-dist"]
    assert "ModuleNotFoundError" in report["packages"]["no-such-dist"]["error"]


def test_unknown_weight_name_is_exit_2_with_suggestion():
    res = runner.invoke(app, ["weights", "path", "inception-fid-clen"])
    assert res.exit_code == 2
    assert "Did you mean: inception-fid-clean" in res.output
    assert "Traceback" not in res.output


def test_every_device_option_is_checked_before_work(tmp_path):
    """A mistyped or unusable --device is exit 2 naming the value, before a file is read or a model built."""
    import torch

    (tmp_path / "imgs").mkdir()
    commands = {
        "eval": ["eval", "--pred", str(tmp_path / "imgs"), "--gt", str(tmp_path / "imgs")],
        "pose detect": ["pose", "detect", "--images", str(tmp_path / "imgs"), "--out", str(tmp_path / "d.json")],
        "sample": ["sample", "--run", str(tmp_path / "run"), "--protocol", "deepfashion-256x176", "--root",
                   str(tmp_path), "--out", str(tmp_path / "gen")],
        "reid-augment": ["reid-augment", "--market-root", str(tmp_path), "--generator",
                         f"folder:{tmp_path / 'imgs'}", "--out", str(tmp_path / "reid")],
        "regress": ["regress", "--results", str(tmp_path / "a.json"), "--baseline", str(tmp_path / "b.json")],
    }
    bad = ["cudx", "tpu"] + ([] if torch.cuda.is_available() else ["cuda"])
    for name, args in commands.items():
        for device in bad:
            res = runner.invoke(app, [*args, "--device", device])
            assert res.exit_code == 2, (name, device, res.output)
            assert f"--device {device}" in res.output or f"--device '{device}'" in res.output, (name, res.output)
    assert not any(p.name != "imgs" for p in tmp_path.iterdir())  # nothing written


def test_sample_names_the_option_that_is_not_positive(tmp_path):
    for option in ("--steps", "--batch-size", "--limit"):
        res = runner.invoke(app, ["sample", "--run", str(tmp_path / "run"), "--protocol", "deepfashion-256x176",
                                  "--root", str(tmp_path), "--out", str(tmp_path / "gen"), option, "0"])
        assert res.exit_code == 2 and f"{option} must be a positive number, got 0" in res.output, res.output
