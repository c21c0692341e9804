"""Listings users read names from: whole names at 80 columns, `--json` on stdout, and markup-safe `doctor`."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from posebench import weights
from posebench.cli import app
from posebench.protocols import PROFILES, PROTOCOLS
from posebench.protocols.pose_profile import POSE_PROFILES
from posebench.results.leaderboard import default_board_dir, load_boards

runner = CliRunner()
NARROW = {"COLUMNS": "80"}


def _narrow(*args: str) -> str:
    res = runner.invoke(app, list(args), env=NARROW)
    assert res.exit_code == 0, res.output
    assert "…" not in res.stdout, res.stdout  # rich shortened a cell
    assert max(len(line) for line in res.stdout.splitlines()) <= 80, res.stdout
    return res.stdout


def test_protocols_ls_shows_whole_names_at_80_columns():
    out = _narrow("protocols", "ls")
    for name in PROTOCOLS.names():
        p = PROTOCOLS.get(name)
        assert f"{p.name}@{p.version}" in out and p.dataset in out and p.split in out
        for profile in p.profiles:
            assert (f"{profile}*" if profile == p.default_profile else profile) in out, profile
        for profile in p.pose_profiles:
            assert f"{profile}{'*' if profile == p.default_pose_profile else ''} (pose)" in out, profile


def test_profiles_ls_and_weights_list_show_whole_names_at_80_columns():
    out = _narrow("profiles", "ls")
    for registry in (PROFILES, POSE_PROFILES):
        for name in registry.names():
            assert f"│ {name} " in out, name
    out = _narrow("weights", "list")
    for spec in weights.all_files():
        assert f" {spec.name} " in out, spec.name
    out = _narrow("leaderboard", "list")
    for board in load_boards(default_board_dir()):
        assert f"│ {board.name} " in out, board.name
        for metric in board.metrics:  # each arrow beside its own metric, however narrow the column
            assert f"│ {metric} {board.arrow(metric)} " in out, (board.name, metric)


def test_protocols_and_profiles_ls_json():
    res = runner.invoke(app, ["protocols", "ls", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["protocols"]
    assert [r["name"] for r in rows] == list(PROTOCOLS.names())
    for r in rows:
        p = PROTOCOLS.get(r["name"])
        assert list(r) == ["name", "version", "kind", "dataset", "split", "resolution", "default_profile", "profiles",
                           "default_pose_profile", "pose_profiles", "metrics", "sha256"]
        assert (r["version"], r["kind"], r["dataset"], r["split"]) == (p.version, p.kind, p.dataset, p.split)
        assert r["resolution"] == list(p.resolution) and all(isinstance(v, int) for v in r["resolution"])
        assert r["profiles"] == list(p.profiles) and r["default_profile"] == p.default_profile
        assert r["pose_profiles"] == list(p.pose_profiles) and r["sha256"] == p.sha256
    assert {r["name"]: r for r in rows}["deepfashion-256x176"]["resolution"] == [256, 176]

    res = runner.invoke(app, ["profiles", "ls", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert list(data) == ["image", "pose"]
    for kind, registry in (("image", PROFILES), ("pose", POSE_PROFILES)):
        assert [r["name"] for r in data[kind]] == list(registry.names())
        for r in data[kind]:
            p = registry.get(r["name"])
            assert r == {"name": p.name, "version": p.version, "sha256": p.sha256, "description": p.description}
            assert isinstance(r["version"], int)


@pytest.mark.parametrize("command", [["leaderboard", "list"], ["protocols", "ls"], ["profiles", "ls"],
                                     ["weights", "list"]])
def test_json_is_a_flag_everywhere(command):
    res = runner.invoke(app, [*command, "--json"])
    assert res.exit_code == 0, res.output
    assert isinstance(json.loads(res.stdout), dict)


def test_doctor_keeps_square_brackets_of_install_hints(monkeypatch):
    """rich reads `[mmpose]` as markup and drops it unless escaped: the hint must print as written."""
    from posebench import env

    monkeypatch.setattr(env, "OPTIONAL", env.OPTIONAL + (("no-such-optional", "no_such_module_xyz", "mmpose"),))
    monkeypatch.setitem(env.INSTALL_HINTS, "no-such-optional-2", "pip install 'x[y]' [bold]")
    monkeypatch.setattr(env, "OPTIONAL", env.OPTIONAL + (("no-such-optional-2", "no_such_module_xyz", "dev"),))
    res = runner.invoke(app, ["doctor"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "optional: pip install 'posebench[mmpose]'" in res.stdout
    assert "optional: pip install 'x[y]' [bold]" in res.stdout


@pytest.mark.parametrize("command", [["eval", "--help"], ["regress", "--help"], ["sample", "--help"],
                                     ["reid-augment", "--help"]])
def test_help_never_cuts_option_names_at_80_columns(command):
    res = CliRunner().invoke(app, command, env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    assert "…" not in res.output
    long_options = [o for o in re.findall(r"--[a-z][a-z-]+", res.output) if len(o) > 14]
    assert long_options, res.output  # the long names are there, whole


@pytest.mark.parametrize("command", [["eval"], ["sample"], ["train-reference"], ["demo"], ["baseline"],
                                     ["reid-augment"], ["pose", "detect"], ["pose", "train"], ["data", "verify"],
                                     ["data", "synth"], ["weights", "download"]])
def test_every_long_command_has_progress_and_quiet(command):
    res = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "--progress" in res.output and "--quiet" in res.output, command


def test_profiles_show_points_a_pose_profile_to_pose():
    res = runner.invoke(app, ["profiles", "show", "humansd"])
    assert res.exit_code == 2 and "posebench profiles show humansd --pose" in res.output
    assert runner.invoke(app, ["profiles", "show", "humansd", "--pose"]).exit_code == 0
