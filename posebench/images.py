"""Reading images strictly and resizing them the way each reference repository did.

`read_rgb` accepts 8-bit RGB only and names the file and what to do otherwise (RGBA, grayscale, 16-bit,
truncated or corrupt files are errors, never silent conversions). `resize` implements the resize methods
that metric profiles name; every method returns uint8 (the references quantise after resizing).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from posebench.errors import PosebenchError

LOSSY_SUFFIXES = (".jpg", ".jpeg", ".webp")


class ImageError(PosebenchError):
    """An image that cannot be used as it is."""


def read_rgb(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB, decoded fully. Raises ImageError naming the file for anything else."""
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as im:
            mode = im.mode
            if mode != "RGB":
                hint = {
                    "RGBA": "drop the alpha channel (e.g. save as RGB)",
                    "L": "grayscale: save it as RGB",
                    "I;16": "16-bit: convert to 8-bit RGB",
                    "I": "32-bit integer: convert to 8-bit RGB",
                    "P": "palette image: convert to RGB",
                }.get(mode, "convert it to 8-bit RGB")
                raise ImageError(f"{path}: expected an 8-bit RGB image, got mode {mode} — {hint}")
            im.load()
            arr = np.asarray(im, dtype=np.uint8)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except Exception as exc:  # PIL raises many exception types for damaged files
        raise ImageError(f"{path}: cannot decode image ({type(exc).__name__}: {exc}); "
                         "re-export or regenerate this file") from exc
    return arr


def resize(img: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    """Resize a (H, W, 3) uint8 image to `size` = (H', W') with a profile's method; returns uint8.

    Methods: `pil-bicubic` (PIL BICUBIC on uint8: PIDM/NTED data preparation, clean ground truth),
    `cv2-linear` (cv2.resize default INTER_LINEAR: PIDM metrics), `cv2-cubic` (INTER_CUBIC: PCDMs),
    `torch-bicubic-antialias` (F.interpolate bicubic, antialias=True on [0, 1] floats, then round to
    uint8: CFLD).
    """
    h, w = size
    if img.shape[:2] == (h, w):
        return img
    if method == "pil-bicubic":
        from PIL import Image

        return np.asarray(Image.fromarray(img).resize((w, h), resample=Image.BICUBIC))
    if method in ("cv2-linear", "cv2-cubic"):
        import cv2

        flag = cv2.INTER_LINEAR if method == "cv2-linear" else cv2.INTER_CUBIC
        return cv2.resize(img, (w, h), interpolation=flag)
    if method == "torch-bicubic-antialias":
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].double() / 255.0
        y = F.interpolate(x, size=(h, w), mode="bicubic", antialias=True, align_corners=False)
        # CFLD quantises to uint8 before dividing by 255 again (rounding here; floor vs round unverified)
        return (y.clamp(0, 1) * 255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
    raise PosebenchError(f"unknown resize method {method!r}")


def apply_chain(img: np.ndarray, steps: list[tuple[str, tuple[int, int]]]) -> np.ndarray:
    """Apply resize steps in order; a step whose size the image already has is skipped."""
    for method, size in steps:
        img = resize(img, size, method)
    return img


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB array as a PNG, atomically (no half-written file after a kill)."""
    from PIL import Image

    from posebench.utils.io import atomic_open

    with atomic_open(path, "wb") as fh:
        Image.fromarray(image).save(fh, format="PNG")
