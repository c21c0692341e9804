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
