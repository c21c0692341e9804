"""Registry, atomic IO and optional-dependency errors."""

from __future__ import annotations

import importlib.util

import pytest

from posebench.errors import PosebenchError
from posebench.registry import Registry, UnknownNameError
from posebench.utils.imports import MissingDependencyError, require
from posebench.utils.io import atomic_open, atomic_write_text, sha256_file


def test_registry_lazy_target_and_did_you_mean():
    reg: Registry[object] = Registry("metric")
    reg.register("lpips", target="posebench.utils.io:sha256_file")
    reg.register("ssim", obj=42)
    assert reg.get("lpips") is sha256_file and reg.get("ssim") == 42
    with pytest.raises(UnknownNameError) as info:
        reg.get("lpip")
    assert str(info.value) == "Unknown metric 'lpip'. Did you mean: lpips? Available: lpips, ssim"
    assert isinstance(info.value, PosebenchError)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("ssim", obj=1)


def test_atomic_write_keeps_old_content_on_failure(tmp_path):
    target = tmp_path / "results.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as fh:
            fh.write("new, half written")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary left


def test_require_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mmpose" else real(name, *a))
    with pytest.raises(MissingDependencyError, match=r"pip install 'posebench\[mmpose\]'"):
        require("mmpose", extra="mmpose", feature="The mmpose pose-estimator backend")
    require("torch", extra="x", feature="torch")  # present: no error


def test_import_posebench_is_light():
    import subprocess
    import sys

    code = "import sys, posebench; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_progress_prints_plain_lines_without_a_terminal():
    """In a CI log rich draws no bars; posebench's Progress prints one line per task every 5 %."""
    import io

    from rich.console import Console
    from rich.progress import BarColumn, TextColumn

    from posebench.utils.progress import Progress

    log = io.StringIO()
    with Progress(TextColumn("{task.description}"), BarColumn(), console=Console(file=log, force_terminal=False,
                                                                                  width=80)) as bar:
        task = bar.add_task("scoring images", total=200)
        for _ in range(200):
            bar.advance(task)
    lines = [ln for ln in log.getvalue().splitlines() if ln.startswith("scoring images: ")]
    assert lines[0] == "scoring images: 10/200 (5%)" and lines[-1] == "scoring images: 200/200 (100%)"
    assert len(lines) == 20
    assert log.getvalue().splitlines() == lines  # nothing else: no last frame of rich's bar after them

    quiet = io.StringIO()
    with Progress(console=Console(file=quiet, force_terminal=False), disable=True) as bar:
        bar.advance(bar.add_task("x", total=10), 10)
    assert quiet.getvalue() == ""
