"""Reading images strictly and resizing them the way each reference repository did.

`read_rgb` accepts 8-bit RGB only and names the file and what to do otherwise (RGBA, grayscale, 16-bit,
truncated or corrupt files are errors, never silent conversions). `resize` implements the resize methods
that metric profiles name, with the output each reference produces: the reference repositories do not all
quantise after resizing. PIDM and PCDMs resize float32 arrays with cv2 and keep the float result (no rounding,
no clipping: cubic overshoot past [0, 255] stays); CFLD truncates to uint8 (`clamp(0, 255).to(torch.uint8)`);
the PIL and cv2 uint8 paths round inside the library.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from posebench.errors import PosebenchError

LOSSY_SUFFIXES = (".jpg", ".jpeg", ".webp")


class ImageError(PosebenchError):
    """An image that cannot be used as it is."""


MAX_PIXELS = 50_000_000  # no image of any protocol comes near it (DeepFashion's high-res images are 0.8 MP)


def read_rgb(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """(H, W, 3) uint8 RGB, decoded fully. Raises ImageError naming the file for anything else.

    The size is read from the header first: an image of more than `max_pixels` is refused before it is decoded
    (a 420 KB PNG can hold 12000x12000 pixels, 1.9 GiB decoded).
    """
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise ImageError(f"{path}: {h}x{w} pixels, more than the {max_pixels:,} this read allows; not "
                                 "decoded. Save the image at the size the protocol scores")
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


RESIZE_OUTPUTS = ("uint8", "uint8-truncate", "float32")
# Which outputs each method can produce, as its reference code produced them.
METHOD_OUTPUTS = {
    "pil-bicubic": ("uint8",),
    "cv2-linear": ("uint8", "float32"),
    "cv2-cubic": ("uint8", "float32"),
    "torch-bicubic-antialias": ("uint8", "uint8-truncate"),
}


def resize(img: np.ndarray, size: tuple[int, int], method: str, output: str = "uint8") -> np.ndarray:
    """Resize a (H, W, 3) image to `size` = (H', W') with a profile's method and output.

    Methods:
        `pil-bicubic`: PIL BICUBIC on uint8 (PIDM/NTED data preparation; torchvision `Resize` on a PIL image,
            CFLD's ground truth; the clean ground truth). Output uint8.
        `cv2-linear`, `cv2-cubic`: `cv2.resize` with INTER_LINEAR (PIDM metrics) or INTER_CUBIC (PCDMs).
            Output `uint8`: cv2 on the uint8 array (rounds and saturates inside cv2). Output `float32`: cv2 on
            `img.astype(np.float32)`, the result kept as float32 with no rounding and no clipping, as PIDM's
            and PCDMs' metric scripts do (`cv2.resize(imread(f).astype(np.float32), ...)`).
        `torch-bicubic-antialias`: `F.interpolate(x, mode="bicubic", antialias=True)` on float32 x = img / 255,
            then `* 255` and `clamp(0, 255)`; output `uint8` rounds to nearest, `uint8-truncate` truncates as
            `.to(torch.uint8)` does (CFLD's sampler).

    An image that already has the size is returned unchanged (each reference's resize is the identity there:
    checked for cv2 and the antialiased bicubic).

    Returns:
        uint8 or (output `float32`) float32 array of shape (H', W', 3).
    """
    if output not in METHOD_OUTPUTS.get(method, ()):
        if method not in METHOD_OUTPUTS:
            raise PosebenchError(f"unknown resize method {method!r}; known: {', '.join(METHOD_OUTPUTS)}")
        raise PosebenchError(f"resize {method} cannot give output {output!r}; it gives "
                             f"{', '.join(METHOD_OUTPUTS[method])}")
    h, w = size
    if img.shape[:2] == (h, w):
        return img
    if img.dtype != np.uint8 and not (method.startswith("cv2") and output == "float32"):
        raise PosebenchError(f"resize {method} ({output}) takes uint8 images, got {img.dtype}: a chain can resize "
                             "a float result only with a cv2 float32 step")
    if method == "pil-bicubic":
        from PIL import Image

        return np.asarray(Image.fromarray(img).resize((w, h), resample=Image.BICUBIC))
    if method in ("cv2-linear", "cv2-cubic"):
        import cv2

        flag = cv2.INTER_LINEAR if method == "cv2-linear" else cv2.INTER_CUBIC
        src = img.astype(np.float32) if output == "float32" else img
        return cv2.resize(src, (w, h), interpolation=flag)
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255.0
    y = F.interpolate(x, size=(h, w), mode="bicubic", antialias=True, align_corners=False) * 255.0
    y = y.clamp(0, 255)
    y = y.round() if output == "uint8" else y  # `.to(torch.uint8)` truncates the fraction
    return y.to(torch.uint8)[0].permute(1, 2, 0).numpy()


def apply_chain(img: np.ndarray, steps: list[tuple[str, tuple[int, int], str]]) -> np.ndarray:
    """Apply resize steps (method, size, output) in order; a step whose size the image already has is skipped."""
    for method, size, output in steps:
        img = resize(img, size, method, output)
    return img


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB array as a PNG, atomically (no half-written file after a kill)."""
    from PIL import Image

    from posebench.utils.io import atomic_open

    with atomic_open(path, "wb") as fh:
        Image.fromarray(image).save(fh, format="PNG")
