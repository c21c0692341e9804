"""The in-memory index of a dataset root: images, identities, pairs and keypoints per split.

Readers (deepfashion.py, market.py, humanart.py) build it while logging problems; integrity checks
shared by every dataset live here.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from posebench.datasets.keypoints import Keypoints
from posebench.datasets.names import PairKey
from posebench.datasets.problems import ProblemLog


@dataclass
class SplitIndex:
    """One split. Keys are image stems (file names without extension)."""

    images: dict[str, Path] = field(default_factory=dict)
    identities: dict[str, str] = field(default_factory=dict)  # stem -> person identity
    pairs: list[PairKey] = field(default_factory=list)
    keypoints: dict[str, list[Keypoints]] = field(default_factory=dict)  # stem -> people in the image
    groups: dict[str, str] = field(default_factory=dict)  # stem -> camera (Market) or scenario (Human-Art)
    source_file: dict[str, str] = field(default_factory=dict)  # where the split's names came from
    # identity values that name no person (Market's distractors, pid 0000): kept with their images, not counted
    distractor_ids: frozenset[str] = frozenset()

    @property
    def num_identities(self) -> int:
        return len(set(self.identities.values()) - self.distractor_ids)


@dataclass
class DatasetIndex:
    dataset: str
    layout: str
    root: Path
    splits: dict[str, SplitIndex]


def check_paths_inside_root(root: Path, split: SplitIndex, name: str, log: ProblemLog) -> None:
    """Image folders must resolve inside the root (no `../` or folder links that escape it).

    Names are already checked to be bare, so resolving each distinct folder once suffices here; links of
    single files are followed when the images are decoded (`check_images_readable`).
    """
    real_root = root.resolve()
    resolved: dict[str, bool] = {}
    for key, path in split.images.items():
        parent = os.path.dirname(path)
        if parent not in resolved:
            real = Path(parent).resolve()
            resolved[parent] = real == real_root or real_root in real.parents
        if not resolved[parent]:
            log.error(path, None, f"image {key!r} of split {name!r} resolves outside the root {root}",
                      "keep every image inside the dataset root")


def refuse_files_outside_root(root: Path, paths: list[Path] | list[str], what: str) -> None:
    """Every file must resolve inside the root: a symbolic link to a file elsewhere is refused (named), as
    `posebench data verify` refuses it. Raises PosebenchError listing the first few."""
    from posebench.errors import PosebenchError

    real_root = Path(root).resolve()
    outside = [p for p in paths if real_root not in Path(p).resolve().parents]
    if outside:
        shown = ", ".join(f"{p} -> {Path(p).resolve()}" for p in outside[:3])
        raise PosebenchError(f"{len(outside)} {what} resolve outside the dataset root {root} ({shown}); keep every "
                             "image inside the root (`posebench data verify` lists them)")


def check_pairs(split: SplitIndex, name: str, pairs_file: str, log: ProblemLog) -> None:
    """Every pair refers to known images of the same identity that have keypoints."""
    for key in split.pairs:
        for role, stem_ in (("source", key.source), ("target", key.target)):
            if stem_ not in split.images:
                log.error(pairs_file, None, f"pair {key}: {role} image {stem_!r} is not in split {name!r}",
                          "add the image or remove the pair")
            elif stem_ not in split.keypoints:
                log.error(pairs_file, None, f"pair {key}: {role} image {stem_!r} has no keypoints",
                          "add its row to the annotation file")
        a, b = split.identities.get(key.source), split.identities.get(key.target)
        if a is not None and b is not None and a != b:
            log.error(pairs_file, None, f"pair {key} joins two identities ({a} and {b})",
                      "pose-transfer pairs show one person in two poses")


def check_identity_disjointness(index: DatasetIndex, splits: tuple[str, str], log: ProblemLog) -> None:
    """No identity may appear in both splits (checked at the dataset's identity unit)."""
    a, b = (index.splits[s] for s in splits)
    ids_b: dict[str, list[str]] = defaultdict(list)
    for key, ident in b.identities.items():
        ids_b[ident].append(key)
    shared = sorted(set(a.identities.values()) & set(ids_b))
    for ident in shared[:200]:
        log.error(b.source_file.get("images", splits[1]), None,
                  f"identity {ident} appears in both {splits[0]} and {splits[1]} (e.g. {ids_b[ident][0]})",
                  "identities must be disjoint between training and test")
    if len(shared) > 200:
        log.error(splits[1], None, f"... {len(shared) - 200} more identities shared between splits")


def check_images_readable(index: DatasetIndex, log: ProblemLog, progress: bool = True) -> None:
    """Decode every image fully (catches truncated and corrupt files)."""
    from PIL import Image

    items = [(s, k, p) for s, split in index.splits.items() for k, p in split.images.items()]
    bar_ctx = None
    if progress:
        from posebench.utils.progress import Progress

        bar_ctx = Progress()
        bar_ctx.start()
        task = bar_ctx.add_task("decoding images", total=len(items))
    real_root = index.root.resolve()
    try:
        for split_name, key, path in items:
            if path.is_symlink() and real_root not in path.resolve().parents:
                log.error(path, None, f"image {key!r} is a link to a file outside the root {index.root}",
                          "keep every image inside the dataset root")
                continue
            try:
                with Image.open(path) as im:
                    im.load()
            except FileNotFoundError:
                log.error(path, None, f"image {key!r} of split {split_name!r} is missing")
            except Exception as exc:  # PIL raises many types for broken files
                log.error(path, None, f"unreadable image ({type(exc).__name__}: {exc})",
                          "re-extract or re-download this file")
            if bar_ctx is not None:
                bar_ctx.advance(task)
    finally:
        if bar_ctx is not None:
            bar_ctx.stop()


def check_count(log: ProblemLog, where: str, what: str, got: int, expected: int) -> None:
    if got != expected:
        log.error(where, None, f"{what}: found {got:,}, the protocol pins {expected:,}",
                  "this root is not the standard split (use --integrity-only to check it on its own terms)")
