"""The study's images: every shown image is decoded, resized to one display size and written as PNG under a name
made from its content, so a file name tells a participant nothing (real or generated, which method).

All images share one size, the smallest of the real images and each method's generated images: a real photo is
never shown larger or sharper than a generation. PNG encoding by Pillow is deterministic (no timestamps), so the
same inputs give the same bytes.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from posebench.study import StudyError

if TYPE_CHECKING:
    from posebench.datasets.index import SplitIndex
    from posebench.datasets.names import PairKey
    from posebench.study.sources import StudySources

NAME_HEX = 20  # hex digits of the content hash in a file name: 80 bits, no collisions among a study's images


def display_size(sources: StudySources) -> tuple[int, int]:
    """(H, W) every image is shown at: the smallest, by area, of the real target and each method's generated
    image of the first shared pair."""
    pair = sources.common[0]
    files = [sources.split.images[pair.target], *(m.files[pair] for m in sources.methods)]
    sizes = []
    for f in files:
        try:
            with Image.open(f) as im:
                sizes.append((im.height, im.width))
        except OSError as exc:
            raise StudyError(f"{f}: cannot be read as an image ({exc}); replace or remove it") from None
    return min(sizes, key=lambda hw: (hw[0] * hw[1], hw))


def png_bytes(img: Image.Image, size: tuple[int, int]) -> bytes:
    """`img` as RGB PNG at (H, W) `size` (Lanczos when it must be resized)."""
    img = img.convert("RGB")
    if (img.height, img.width) != size:
        img = img.resize((size[1], size[0]), Image.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


class ImageWriter:
    """Writes images into `folder` under content names; returns their path relative to the web root."""

    def __init__(self, folder: Path, size: tuple[int, int]):
        self.folder = folder
        self.size = size
        self.written: dict[str, str] = {}  # sha256 -> relative path

    def add(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if digest not in self.written:
            rel = f"img/{digest[:NAME_HEX]}.png"
            path = self.folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            self.written[digest] = rel
        return self.written[digest]

    def file(self, path: Path) -> str:
        try:
            with Image.open(path) as im:
                data = png_bytes(im, self.size)
        except OSError as exc:
            raise StudyError(f"{path}: cannot be read as an image ({exc}); replace or remove it") from None
        return self.add(data)  # outside the try: a write error (disk full) is not the input image's fault

    def pose(self, split: SplitIndex, pair: PairKey) -> str:
        """The target's pose as an OpenPose-style stick figure on black, at the display size."""
        from posebench.datasets.render import skeleton_image

        people = split.keypoints.get(pair.target)
        if not people:
            raise StudyError(f"the dataset has no keypoints for target {pair.target!r} (pair {pair}); scheme 2 shows "
                             "the target pose, so every scheme-2 pair needs its target's keypoints")
        kp = people[0]
        if kp.format not in ("openpose18", "coco17"):
            kp = kp.convert("openpose18")
        figure = skeleton_image(kp.rescale(self.size))
        return self.add(png_bytes(Image.fromarray(np.ascontiguousarray(figure)), self.size))
