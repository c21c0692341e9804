"""posebench works from an installed wheel, outside the repository: the wheel is built here from a copy of the
sources, installed into a temporary folder, and its commands run from another folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for package in ("posebench", "reposedm"):  # a copy: building in the checkout would leave build/ behind
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    run = {"check": True, "capture_output": True, "text": True, "timeout": 300}
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(work / "dist")], **run)
    wheel = next((work / "dist").glob("posebench-*.whl"))
    site = work / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   **run)
    elsewhere = work / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("POSEBENCH_LEADERBOARDS", None)
    return {"site": site, "cwd": elsewhere, "env": env, "wheel": wheel}


def _posebench(installed: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "posebench", *args], cwd=installed["cwd"], env=installed["env"],
                          capture_output=True, text=True, timeout=300)


def test_the_wheel_holds_the_package_data(installed):
    import zipfile

    names = zipfile.ZipFile(installed["wheel"]).namelist()
    for expected in ("posebench/leaderboards/deepfashion-256x176.yaml", "posebench/leaderboards/README.md",
                     "posebench/protocols/profiles/clean.yaml", "posebench/protocols/pose_profiles/humansd.yaml",
                     "posebench/protocols/deepfashion-256x176.yaml", "posebench/study/static/index.html",
                     "posebench/study/static/app.js", "posebench/study/static/style.css"):
        assert expected in names, expected
    res = subprocess.run([sys.executable, "-c", "import posebench; print(posebench.__file__)"], cwd=installed["cwd"],
                         env=installed["env"], capture_output=True, text=True, timeout=60)
    assert res.stdout.strip().startswith(str(installed["site"])), res.stdout + res.stderr  # not the checkout
    res = subprocess.run([sys.executable, "-c", "import json; from posebench.env import provenance; "
                          "print(json.dumps(provenance()))"], cwd=installed["cwd"], env=installed["env"],
                         capture_output=True, text=True, timeout=60)
    assert json.loads(res.stdout)["git_commit"] is None, res.stdout + res.stderr  # an installed wheel has no commit


def test_boards_profiles_and_protocols_from_the_installed_wheel(installed, tmp_path):
    res = _posebench(installed, "leaderboard", "list")
    assert res.returncode == 0, res.stderr
    assert "deepfashion-256x176" in res.stdout and "market-reid" in res.stdout
    res = _posebench(installed, "leaderboard", "show", "deepfashion-256x176")
    assert res.returncode == 0 and "RePoseDM" in res.stdout, res.stderr
    res = _posebench(installed, "leaderboard", "render", "--check")
    assert res.returncode == 0, res.stdout + res.stderr  # the shipped README is the render of the shipped boards
    for listing in (("profiles", "ls"), ("protocols", "ls")):
        res = _posebench(installed, *listing)
        assert res.returncode == 0, res.stderr
    assert "deepfashion-256x176" in res.stdout

    # the package's own boards are not edited in place: `add` names `leaderboard init`, which copies them out
    results = tmp_path / "r.json"
    results.write_text(json.dumps({"schema_version": 1}))
    res = _posebench(installed, "leaderboard", "add", "deepfashion-256x176", str(results), "--method", "x")
    assert res.returncode == 2 and "posebench leaderboard init DIR" in res.stdout + res.stderr
    mine = tmp_path / "boards"
    res = _posebench(installed, "leaderboard", "init", str(mine))
    assert res.returncode == 0, res.stderr
    assert (mine / "deepfashion-256x176.yaml").is_file() and (mine / "README.md").is_file()
    res = _posebench(installed, "leaderboard", "validate", "--dir", str(mine))
    assert res.returncode == 0 and "7 board(s) valid" in res.stdout, res.stdout + res.stderr
    res = _posebench(installed, "leaderboard", "init", str(mine))
    assert res.returncode == 2 and "already holds" in res.stdout + res.stderr
