"""Split manifests: `prepare` writes the canonical record of a dataset root (pairs, images, identities,
keypoints, content hashes); `verify` checks a root against the protocol's pinned facts and its own
integrity, listing every problem; `stats` counts images, pairs, identities and keypoint visibility.

Files: `manifest.json` (schema-versioned) and `keypoints.npz` (plain arrays, loaded without pickle).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from posebench._version import __version__
from posebench.datasets import deepfashion, humanart, market
from posebench.datasets.index import DatasetIndex, check_images_readable
from posebench.datasets.keypoints import NAMES
from posebench.datasets.names import PairKey
from posebench.datasets.problems import DataError, Problem, ProblemLog
from posebench.errors import PosebenchError
from posebench.registry import Registry
from posebench.utils.io import atomic_write_bytes, atomic_write_text, sha256_file

MANIFEST_SCHEMA_VERSION = 1
MANIFEST_DIRNAME = "posebench-manifest"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    load_index: Callable[[Path, ProblemLog], DatasetIndex]
    check_facts: Callable[[DatasetIndex, ProblemLog], None]
    identity_splits: tuple[str, str] | None


DATASETS: Registry[DatasetSpec] = Registry("dataset")
DATASETS.register("deepfashion", DatasetSpec(
    "deepfashion", "DeepFashion In-shop (PATN/GFLA CSVs or NTED/PIDM pairs.txt)",
    deepfashion.load_index, deepfashion.check_facts, ("train", "test")))
DATASETS.register("market", DatasetSpec(
    "market", "Market-1501 (re-ID folders + pose-transfer CSVs)", market.load_index, market.check_facts,
    ("train", "test")))
DATASETS.register("humanart", DatasetSpec(
    "humanart", "Human-Art (COCO-style annotations, 19 scenarios)", humanart.load_index, humanart.check_facts,
    None))


def load(dataset: str, root: str | Path, log: ProblemLog) -> DatasetIndex:
    spec = DATASETS.get(dataset)
    root = Path(root)
    if not root.is_dir():
        raise PosebenchError(f"dataset root {root} is not a folder. Pass --root pointing at your {dataset} copy.")
    return spec.load_index(root, log)


def pairs_sha256(pairs: list[PairKey]) -> str:
    """Hash of the normalized pair list: unique `source,target` stems, sorted, newline-joined."""
    lines = sorted({f"{p.source},{p.target}" for p in pairs})
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def images_content_sha256(entries: dict[str, dict[str, Any]]) -> str:
    """Hash over sorted (stem, file sha256): changes when any image's bytes change."""
    lines = sorted(f"{k} {v.get('sha256', '')}" for k, v in entries.items())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def build_manifest(index: DatasetIndex, *, hash_images: bool = True, progress: bool = True,
                   warnings: list[Problem] | None = None) -> tuple[dict[str, Any], bytes]:
    """The manifest dict and the bytes of its keypoints.npz."""
    total = sum(len(s.images) for s in index.splits.values())
    bar = None
    if progress and hash_images:
        from posebench.utils.progress import Progress

        bar = Progress()
        bar.start()
        task = bar.add_task("hashing images", total=total)
    splits: dict[str, Any] = {}
    kp_rows: dict[str, list] = {"split": [], "image": [], "person": [], "xy": [], "visible": [], "frame": []}
    fmt = None
    try:
        for name, sp in index.splits.items():
            images: dict[str, dict[str, Any]] = {}
            for key, path in sorted(sp.images.items()):
                entry: dict[str, Any] = {"file": path.relative_to(index.root).as_posix()}
                if key in sp.identities:
                    entry["identity"] = sp.identities[key]
                if key in sp.groups:
                    entry["group"] = sp.groups[key]
                if hash_images:
                    entry["sha256"] = sha256_file(path)
                    if bar is not None:
                        bar.advance(task)
                images[key] = entry
            for key, people in sorted(sp.keypoints.items()):
                for j, kp in enumerate(people):
                    fmt = kp.format
                    kp_rows["split"].append(name)
                    kp_rows["image"].append(key)
                    kp_rows["person"].append(j)
                    kp_rows["xy"].append(np.nan_to_num(kp.xy, nan=-1.0))
                    kp_rows["visible"].append(kp.visible)
                    kp_rows["frame"].append(kp.frame)
            splits[name] = {
                "counts": {"images": len(images), "pairs": len(sp.pairs), "identities": sp.num_identities,
                           "people": sum(len(v) for v in sp.keypoints.values())},
                "images_sha256": hashlib.sha256("\n".join(sorted(p.name for p in sp.images.values()))
                                                .encode()).hexdigest(),
                "content_sha256": images_content_sha256(images) if hash_images else None,
                "pairs_sha256": pairs_sha256(sp.pairs),
                "pairs": [[p.source, p.target] for p in sp.pairs],
                "images": images,
            }
    finally:
        if bar is not None:
            bar.stop()
    manifest = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "dataset": index.dataset,
        "layout": index.layout,
        "keypoint_format": fmt,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "posebench": __version__,
        "warnings": [p.as_dict() for p in warnings or []],
        "splits": splits,
    }
    buf = io.BytesIO()
    n_joints = len(NAMES[fmt]) if fmt else 0
    np.savez(buf,
             split=np.array(kp_rows["split"], dtype=str), image=np.array(kp_rows["image"], dtype=str),
             person=np.array(kp_rows["person"], dtype=np.int32),
             xy=np.array(kp_rows["xy"], dtype=np.float32).reshape(-1, n_joints, 2),
             visible=np.array(kp_rows["visible"], dtype=bool).reshape(-1, n_joints),
             frame=np.array(kp_rows["frame"], dtype=np.int32).reshape(-1, 2))
    return manifest, buf.getvalue()


def default_manifest_dir(root: str | Path) -> Path:
    return Path(root) / MANIFEST_DIRNAME


def prepare(dataset: str, root: str | Path, out: str | Path | None = None, *, hash_images: bool = True,
            decode_images: bool = True, progress: bool = True) -> tuple[Path, dict[str, Any]]:
    """Read and validate a root (format and integrity, as `verify(integrity_only=True)`: every image decoded unless
    `decode_images` is False), then write manifest.json + keypoints.npz (atomically) into `out`. The protocol's
    pinned counts are `verify`'s to check: a manifest records whatever root it was given (a subset, synthetic data).

    Raises DataError listing every problem if the root has errors; warnings go into the manifest.
    """
    log = ProblemLog()
    index = load(dataset, root, log)
    if decode_images and index.splits:
        check_images_readable(index, log, progress=progress)
    log.raise_if_errors(f"{dataset} root {root}")
    manifest, npz = build_manifest(index, hash_images=hash_images, progress=progress, warnings=log.warnings)
    out_dir = Path(out) if out is not None else default_manifest_dir(root)
    atomic_write_bytes(out_dir / "keypoints.npz", npz)
    atomic_write_text(out_dir / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    return out_dir / "manifest.json", manifest


def read_manifest(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise PosebenchError(f"no manifest at {path}; run `posebench data prepare` first") from None
    except ValueError as exc:
        raise PosebenchError(f"{path} is not valid JSON ({exc}); run `posebench data prepare` again") from exc
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != MANIFEST_SCHEMA_VERSION:
        raise PosebenchError(f"{path} has manifest schema {version!r}; this posebench reads "
                             f"{MANIFEST_SCHEMA_VERSION}. Re-run `posebench data prepare`.")
    return data


def verify(dataset: str, root: str | Path, *, integrity_only: bool = False, decode_images: bool = True,
           progress: bool = True) -> list[Problem]:
    """Every problem of a root: format errors, integrity, and (unless integrity_only) the pinned facts."""
    spec = DATASETS.get(dataset)
    log = ProblemLog()
    index = load(dataset, root, log)
    if decode_images and index.splits:
        check_images_readable(index, log, progress=progress)
    if not integrity_only:
        spec.check_facts(index, log)
    return log.problems


def stats(dataset: str, root: str | Path) -> dict[str, Any]:
    """Counts per split and per-joint visibility rates."""
    log = ProblemLog()
    index = load(dataset, root, log)
    out: dict[str, Any] = {"dataset": dataset, "layout": index.layout, "splits": {},
                           "errors": len(log.errors), "warnings": len(log.warnings)}
    for name, sp in index.splits.items():
        people = [kp for v in sp.keypoints.values() for kp in v]
        vis: dict[str, float] = {}
        if people:
            joint_names = NAMES[people[0].format]
            rate = np.mean([kp.visible for kp in people], axis=0)
            vis = {j: round(float(r), 4) for j, r in zip(joint_names, rate, strict=True)}
        out["splits"][name] = {
            "images": len(sp.images), "pairs": len(sp.pairs), "identities": sp.num_identities,
            "people": len(people), "images_with_keypoints": sum(1 for v in sp.keypoints.values() if v),
            "groups": len(set(sp.groups.values())), "joint_visibility": vis,
        }
    return out


__all__ = ["DATASETS", "DataError", "build_manifest", "prepare", "read_manifest", "stats", "verify"]
