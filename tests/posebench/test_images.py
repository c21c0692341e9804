"""Resize methods and outputs as the reference repositories produce them (posebench.images)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from posebench.errors import PosebenchError
from posebench.images import apply_chain, resize


@pytest.fixture
def noisy() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (96, 64, 3)).astype(np.uint8)  # sharp edges: cubic kernels overshoot


def test_cv2_float32_keeps_the_unrounded_overshoot(noisy):
    out = resize(noisy, (40, 30), "cv2-cubic", "float32")
    ref = cv2.resize(noisy.astype(np.float32), (30, 40), interpolation=cv2.INTER_CUBIC)  # PCDMs' call
    assert out.dtype == np.float32 and np.array_equal(out, ref)
    assert out.min() < 0 or out.max() > 255  # not clipped
    assert not np.array_equal(out, np.round(out))  # not rounded
    assert np.array_equal(resize(noisy, (40, 30), "cv2-cubic"), cv2.resize(noisy, (30, 40),
                                                                            interpolation=cv2.INTER_CUBIC))


def test_torch_antialias_truncates_or_rounds(noisy):
    x = torch.from_numpy(noisy).permute(2, 0, 1)[None].float() / 255.0
    y = (F.interpolate(x, size=(40, 30), mode="bicubic", antialias=True) * 255.0).clamp(0, 255)
    trunc = resize(noisy, (40, 30), "torch-bicubic-antialias", "uint8-truncate")
    rounded = resize(noisy, (40, 30), "torch-bicubic-antialias", "uint8")
    assert np.array_equal(trunc, y.to(torch.uint8)[0].permute(1, 2, 0).numpy())  # CFLD's `.to(torch.uint8)`
    assert np.array_equal(rounded, y.round().to(torch.uint8)[0].permute(1, 2, 0).numpy())
    assert (rounded.astype(int) - trunc.astype(int)).max() == 1 and (rounded != trunc).mean() > 0.3


def test_pil_bicubic_and_chains(noisy):
    ref = np.asarray(Image.fromarray(noisy).resize((30, 40), Image.BICUBIC))
    assert np.array_equal(resize(noisy, (40, 30), "pil-bicubic"), ref)
    chained = apply_chain(noisy, [("pil-bicubic", (64, 64), "uint8"), ("cv2-linear", (40, 30), "float32")])
    assert chained.dtype == np.float32 and np.array_equal(
        chained, cv2.resize(np.asarray(Image.fromarray(noisy).resize((64, 64), Image.BICUBIC)).astype(np.float32),
                            (30, 40)))
    assert resize(noisy, noisy.shape[:2], "cv2-cubic", "float32") is noisy  # the size it has: untouched


def test_impossible_steps_are_refused(noisy):
    with pytest.raises(PosebenchError, match="cannot give output"):
        resize(noisy, (40, 30), "pil-bicubic", "float32")
    with pytest.raises(PosebenchError, match="takes uint8 images"):
        resize(noisy.astype(np.float32), (40, 30), "pil-bicubic")
    with pytest.raises(PosebenchError, match="unknown resize method"):
        resize(noisy, (40, 30), "lanczos")
