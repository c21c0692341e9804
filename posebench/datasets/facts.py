"""Pinned facts of the real datasets, checked by `posebench data verify` (datasets.md §2.1, §3.5, §8).

Image-list hashes are sha256 over the sorted image names joined by newlines, computed from the real
`train.lst` / `test.lst` (PATN repository; copies in shared/data). Pair-list hashes are not pinned yet:
the pair CSVs are not redistributable here; `posebench data prepare` on a real copy prints them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

DEEPFASHION = {
    "train": {"images": 48_674, "pairs": 101_966, "identities": 12_029,
              "images_sha256": "3f6242f5b9c07e83fd6994b2caec7757d80857ca8a76655c4fb58ee673d1346c"},
    "test": {"images": 4_038, "pairs": 8_570, "identities": 1_000,
             "images_sha256": "cd242136679fc66175f9a0e80ce4e619adae709a787c42e089f6887a246772e0"},
}

MARKET = {
    "train": {"images": 12_936, "identities": 751, "pairs": 263_632},
    "test": {"pairs": 12_000},
    "query": {"images": 3_368, "identities": 750},
    "gallery": {"images": 15_913},  # bounding_box_test after junk (-1) removal; distractors (0) stay
}

# Human-Art: 19 released scenarios; the HumanSD / Stable-Pose evaluation set has 250 images each
# (4,750). Whether that is the official validation split is unverified (datasets.md §3.5).
HUMANART_SCENARIOS: tuple[tuple[int, str, str], ...] = (
    (1, "cartoon", "2D_virtual_human"), (2, "digital_art", "2D_virtual_human"),
    (3, "ink_painting", "2D_virtual_human"), (4, "kids_drawing", "2D_virtual_human"),
    (5, "mural", "2D_virtual_human"), (6, "oil_painting", "2D_virtual_human"),
    (7, "shadow_play", "2D_virtual_human"), (8, "sketch", "2D_virtual_human"),
    (9, "stained_glass", "2D_virtual_human"), (10, "ukiyoe", "2D_virtual_human"),
    (11, "watercolor", "2D_virtual_human"), (12, "garage_kits", "3D_virtual_human"),
    (13, "relief", "3D_virtual_human"), (14, "sculpture", "3D_virtual_human"),
    (15, "acrobatics", "real_human"), (16, "cosplay", "real_human"), (17, "dance", "real_human"),
    (18, "drama", "real_human"), (19, "movie", "real_human"),
)
HUMANART = {"validation": {"images_per_scenario": 250, "scenarios": 19}}


def names_sha256(names: Iterable[str]) -> str:
    """Order-independent hash of a set of image names."""
    return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()
