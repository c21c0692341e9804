"""What this installation is: package versions, devices, optional backends and cached weights.

Used by `posebench doctor` and recorded in every results file, so a number can be traced to the exact
software that produced it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import sys
import warnings
from pathlib import Path
from typing import Any

from posebench._version import __version__

DOCTOR_SCHEMA_VERSION = 1

# (distribution name, import name). Every one is a runtime dependency: failing to import is a broken install.
REQUIRED: tuple[tuple[str, str], ...] = (
    ("torch", "torch"),
    ("torchvision", "torchvision"),
    ("numpy", "numpy"),
    ("scipy", "scipy"),
    ("pillow", "PIL"),
    ("pyyaml", "yaml"),
    ("rich", "rich"),
    ("typer", "typer"),
    ("safetensors", "safetensors"),
    ("diffusers", "diffusers"),
    ("accelerate", "accelerate"),
    ("timm", "timm"),
    ("lpips", "lpips"),
    ("clean-fid", "cleanfid"),
    ("pytorch-msssim", "pytorch_msssim"),
    ("pycocotools", "pycocotools.coco"),
    ("torchreid", "torchreid"),
    ("opencv-python-headless", "cv2"),
    ("matplotlib", "matplotlib"),
    ("starlette", "starlette"),  # the human-study server
    ("uvicorn", "uvicorn"),
)

# Optional backends: absence is normal and reported, never an error.
OPTIONAL: tuple[tuple[str, str, str], ...] = (
    ("mmpose", "mmpose", "mmpose"),
    ("mmcv", "mmcv", "mmpose"),
    ("scikit-image", "skimage", "dev"),
    ("xtcocotools", "xtcocotools.cocoeval", "dev"),
    ("selenium", "selenium", "dev"),
)
# How to get an optional package when `pip install 'posebench[EXTRA]'` is not the way.
INSTALL_HINTS: dict[str, str] = {
    # Its PyPI wheel is built against numpy 1 and fails under numpy 2: the Makefile builds it from source.
    "xtcocotools": "make install-xtcocotools (builds it from source)",
}


def _dist_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _probe(dist: str, module: str) -> dict[str, Any]:
    """Version from the installed metadata, plus whether the module really imports."""
    entry: dict[str, Any] = {"version": _dist_version(dist), "import": module, "ok": False, "error": None}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torchreid warns about its missing Cython ranker
            mod = importlib.import_module(module)
        entry["ok"] = True
        entry["version"] = entry["version"] or getattr(mod, "__version__", None)
    except Exception as exc:  # any failure to import is what we report, whatever its type
        entry["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    return entry


def device_info() -> dict[str, Any]:
    try:
        import torch
    except Exception as exc:
        return {"error": f"torch does not import: {exc}"}
    info: dict[str, Any] = {
        "cuda_available": torch.cuda.is_available(),
        "cuda_device_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "cuda_build": torch.version.cuda,
        "cpu_threads": torch.get_num_threads(),
        "devices": [],
    }
    if info["cuda_available"]:
        info["devices"] = [torch.cuda.get_device_name(i) for i in range(info["cuda_device_count"])]
    info["default"] = "cuda" if info["cuda_available"] else "cpu"
    return info


def versions() -> dict[str, str | None]:
    """Versions of posebench and its main dependencies, for provenance in results files (no imports)."""
    out: dict[str, str | None] = {"posebench": __version__, "python": platform.python_version()}
    for dist, _ in REQUIRED:
        out[dist] = _dist_version(dist)
    return out


def provenance() -> dict[str, Any]:
    """How this posebench was run, for results files (as lm-eval-harness records): the command line, and the git
    commit of the checkout posebench was imported from (None for an installed wheel or without git), with a flag
    when the checkout had uncommitted changes."""
    import subprocess

    package = Path(__file__).resolve().parents[1]
    commit, dirty = None, None
    if (package / ".git").exists():
        try:
            run = {"cwd": package, "capture_output": True, "text": True, "timeout": 10, "check": True}
            commit = subprocess.run(["git", "rev-parse", "HEAD"], **run).stdout.strip() or None
            dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], **run).stdout.strip())
        except (OSError, subprocess.SubprocessError):
            commit, dirty = None, None
    return {"command_line": [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv else [],
            "git_commit": commit, "git_dirty": dirty}


def doctor_report(*, check_weights: bool = False) -> dict[str, Any]:
    """The full health report. `ok` is False only when a required dependency fails to import."""
    from posebench import weights

    packages = {dist: _probe(dist, module) for dist, module in REQUIRED}
    optional = {dist: {**_probe(dist, module), "extra": extra,
                       "install": INSTALL_HINTS.get(dist, f"pip install 'posebench[{extra}]'")}
                for dist, module, extra in OPTIONAL}
    broken = sorted(name for name, entry in packages.items() if not entry["ok"])
    return {
        "schema_version": DOCTOR_SCHEMA_VERSION,
        "posebench": __version__,
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "platform": platform.platform(),
        "packages": packages,
        "optional": optional,
        "device": device_info(),
        "weights": {
            "cache_dir": str(weights.weights_dir()),
            "offline": weights.is_offline(),
            "files": weights.describe(check=check_weights),
        },
        "broken": broken,
        "ok": not broken,
    }
