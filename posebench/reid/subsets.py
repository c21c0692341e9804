"""Seeded real-data subsets D_tr of the Market-1501 training set (docs/reid.md).

Rule (posebench default, docs/reid.md):

1. `rng = random.Random(seed)`; group the names by pid.
2. For every pid in ascending order, keep `rng.choice(sorted(names of that pid))` (at least one image per id).
3. Fill with `rng.sample(sorted(rest), round(fraction * N) - n_ids)` where `rest` are the names not yet kept and
   `N` is the number of input images.
4. Return the kept names sorted.

For the real set (N = 12,936, 751 ids) this gives 2,587 / 5,174 / 7,762 / 10,349 images at 20/40/60/80 %.
A fraction whose target is smaller than the number of identities is an error (the rule cannot hold).

The manifest (JSON: sorted names, fraction, seed, hash of the source list, hash of the names) is the source of
truth; loaders read it and never resample.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posebench.datasets.names import parse_market
from posebench.errors import PosebenchError
from posebench.utils.io import atomic_write_text

MANIFEST_FORMAT = "posebench-reid-subset"
MANIFEST_VERSION = 1


def names_sha256(names: list[str]) -> str:
    """sha256 of the sorted names joined by newlines (order-independent hash of a name list)."""
    return hashlib.sha256("\n".join(sorted(names)).encode("utf-8")).hexdigest()


def group_by_pid(names: list[str]) -> dict[int, list[str]]:
    """Market names -> {pid: names}. Raises PosebenchError for bad, junk (-1), distractor (0) or duplicate names."""
    out: dict[int, list[str]] = defaultdict(list)
    seen: set[str] = set()
    bad: list[str] = []
    dup: list[str] = []
    for name in names:
        if name in seen:
            dup.append(name)
            continue
        seen.add(name)
        try:
            parsed = parse_market(Path(name).name)
        except ValueError:
            bad.append(name)
            continue
        if parsed.pid <= 0:
            bad.append(name)
            continue
        out[parsed.pid].append(name)
    if bad or dup:
        parts = []
        if bad:
            parts.append(f"{len(bad)} names that are not Market-1501 training names (pid >= 1), e.g. {bad[:5]}")
        if dup:
            parts.append(f"{len(dup)} duplicate names, e.g. {dup[:5]}")
        raise PosebenchError("train_images has " + "; ".join(parts)
                             + ": pass the file names of bounding_box_train/ (junk -1 and distractors 0000 removed)")
    return dict(out)


def subset_size(n_images: int, fraction: float) -> int:
    """round(fraction * n_images), Python's rounding (the four real-set sizes never hit .5)."""
    return round(fraction * n_images)


def _check_fraction(fraction: float) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not math.isfinite(fraction):
        raise PosebenchError(f"fraction must be a number in (0, 1], got {fraction!r}")
    if not 0.0 < fraction <= 1.0:
        raise PosebenchError(f"fraction must be in (0, 1] (e.g. 0.2 for 20 %), got {fraction!r}")
    return float(fraction)


def make_subset(train_images: list[str], fraction: float, seed: int) -> list[str]:
    """Seeded subset with at least one image per identity, filled at random to round(fraction * N).

    Args:
        train_images: Market-1501 training file names (e.g. `0002_c1s1_000451_03.jpg`), no junk or distractors.
        fraction: share of the images to keep, in (0, 1].
        seed: integer seed of `random.Random`.

    Returns:
        The kept names, sorted (strings exactly as given).

    Raises:
        PosebenchError: bad fraction, bad names, or a target size smaller than the number of identities.

    Example:
        >>> make_subset(["0002_c1s1_000451_03.jpg", "0002_c2s1_000451_03.jpg"], 0.5, 0)
        ['0002_c2s1_000451_03.jpg']
    """
    fraction = _check_fraction(fraction)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise PosebenchError(f"seed must be an integer, got {seed!r}")
    by_pid = group_by_pid(list(train_images))
    if not by_pid:
        raise PosebenchError("train_images is empty")
    total = sum(len(v) for v in by_pid.values())
    target = subset_size(total, fraction)
    if target < len(by_pid):
        raise PosebenchError(f"fraction {fraction} keeps {target} of {total} images, fewer than the {len(by_pid)} "
                             "identities; the rule needs at least one image per identity")
    rng = random.Random(seed)
    keep = {rng.choice(sorted(by_pid[pid])) for pid in sorted(by_pid)}
    rest = sorted(n for v in by_pid.values() for n in v if n not in keep)
    keep |= set(rng.sample(rest, target - len(keep)))
    return sorted(keep)


@dataclass(frozen=True)
class SubsetManifest:
    names: list[str]
    fraction: float
    seed: int
    source_hash: str  # names_sha256 of the full training list the subset was drawn from
    names_hash: str


def write_subset_manifest(path: str | Path, names: list[str], fraction: float, seed: int, source_hash: str) -> Path:
    """Write the subset manifest atomically as JSON (sorted names, fraction, seed, source hash, names hash)."""
    fraction = _check_fraction(fraction)
    names = sorted(names)
    if len(set(names)) != len(names):
        raise PosebenchError(f"subset for {path} has duplicate names")
    doc = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "fraction": fraction,
        "seed": int(seed),
        "source_hash": str(source_hash),
        "count": len(names),
        "names_hash": names_sha256(names),
        "names": names,
    }
    path = Path(path)
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
    return path


def read_subset_manifest(path: str | Path, *, source_hash: str | None = None) -> SubsetManifest:
    """Read and validate a manifest written by `write_subset_manifest`.

    Raises:
        PosebenchError: unreadable file, wrong format/version, count or hash mismatch, unsorted or duplicate names,
            or a `source_hash` different from the expected one.
    """
    path = Path(path)
    try:
        doc: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PosebenchError(f"cannot read subset manifest {path}: {exc}") from exc
    problems: list[str] = []
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
        raise PosebenchError(f"{path} is not a posebench re-ID subset manifest (format {MANIFEST_FORMAT!r})")
    if doc.get("version") != MANIFEST_VERSION:
        problems.append(f"version {doc.get('version')!r}, expected {MANIFEST_VERSION}")
    names = doc.get("names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise PosebenchError(f"{path}: 'names' must be a list of strings")
    if names != sorted(set(names)):
        problems.append("names are not sorted and unique")
    if doc.get("count") != len(names):
        problems.append(f"count {doc.get('count')!r} but {len(names)} names")
    if doc.get("names_hash") != names_sha256(names):
        problems.append("names_hash does not match the names (edited by hand?)")
    fraction, seed = doc.get("fraction"), doc.get("seed")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        problems.append(f"fraction {fraction!r} not in (0, 1]")
    if isinstance(seed, bool) or not isinstance(seed, int):
        problems.append(f"seed {seed!r} is not an integer")
    if not isinstance(doc.get("source_hash"), str):
        problems.append("source_hash missing")
    elif source_hash is not None and doc["source_hash"] != source_hash:
        problems.append(f"source_hash {doc['source_hash'][:12]}… differs from the training set's {source_hash[:12]}…")
    if problems:
        raise PosebenchError(f"invalid subset manifest {path}: " + "; ".join(problems))
    return SubsetManifest(names, float(fraction), int(seed), doc["source_hash"], doc["names_hash"])
