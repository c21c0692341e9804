"""`posebench data synth` end to end through the readers: every format verifies and prepares clean."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from posebench.cli import app

runner = CliRunner()


@pytest.mark.parametrize("fmt, size", [("deepfashion", "128x88"), ("market", "128x64"), ("humanart", "96x96")])
def test_synth_then_verify_prepare_stats(tmp_path, fmt, size):
    out = tmp_path / fmt
    res = runner.invoke(app, ["data", "synth", "-f", fmt, "-o", str(out), "--identities", "3", "--poses", "3",
                              "--size", size, "--seed", "1"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["data", "verify", "-d", fmt, "-r", str(out), "--integrity-only", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["ok"] is True
    res = runner.invoke(app, ["data", "prepare", "-d", fmt, "-r", str(out), "--no-hash"])
    assert res.exit_code == 0, res.output
    if fmt == "market":  # hashing shows progress (plain lines without a terminal) unless --quiet
        hashed = runner.invoke(app, ["data", "prepare", "-d", fmt, "-r", str(out), "--out", str(tmp_path / "m1")])
        assert hashed.exit_code == 0 and "hashing images:" in hashed.output and "(100%)" in hashed.output
        quiet = runner.invoke(app, ["data", "prepare", "-d", fmt, "-r", str(out), "--out", str(tmp_path / "m2"),
                                    "--quiet"])
        assert quiet.exit_code == 0 and "hashing images" not in quiet.output
        assert (tmp_path / "m1" / "manifest.json").read_bytes() == (tmp_path / "m2" / "manifest.json").read_bytes()
    res = runner.invoke(app, ["data", "stats", "-d", fmt, "-r", str(out), "--json"])
    report = json.loads(res.stdout)
    assert report["errors"] == 0 and all(s["images"] > 0 for s in report["splits"].values())
    # the synthetic root is not the standard split: the pinned facts say so (exit 2, listing them)
    res = runner.invoke(app, ["data", "verify", "-d", fmt, "-r", str(out), "--no-decode"])
    assert res.exit_code == 2 and "the protocol pins" in res.output


def test_synth_bad_arguments_exit_2(tmp_path):
    res = runner.invoke(app, ["data", "synth", "-f", "coco", "-o", str(tmp_path / "x")])
    assert res.exit_code == 2 and "unknown format" in res.output
    res = runner.invoke(app, ["data", "synth", "-f", "market", "-o", str(tmp_path / "y"), "--size", "12by4"])
    assert res.exit_code == 2
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / "keep.txt").write_text("mine")
    res = runner.invoke(app, ["data", "synth", "-f", "market", "-o", str(tmp_path / "z"), "--identities", "1"])
    assert res.exit_code == 2


def test_stats_of_the_wrong_dataset_exits_2(tmp_path):
    """A DeepFashion root read as Market gives zeros and errors: exit 2 (also with --json, which still prints)."""
    out = tmp_path / "df"
    res = runner.invoke(app, ["data", "synth", "-f", "deepfashion", "-o", str(out), "--identities", "2", "--poses",
                              "2", "--size", "64x44", "--quiet"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["data", "stats", "-d", "market", "-r", str(out)])
    assert res.exit_code == 2 and "is this a market root?" in res.output
    res = runner.invoke(app, ["data", "stats", "-d", "market", "-r", str(out), "--json"])
    assert res.exit_code == 2 and json.loads(res.stdout)["errors"] > 0
    res = runner.invoke(app, ["data", "synth", "-f", "market", "-o", str(tmp_path / "m"), "--size", "12x"])
    assert res.exit_code == 2 and "--size" in res.output
