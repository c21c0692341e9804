"""The Inception features FID and KID were computed from, kept beside the results (`<results stem>.features.
safetensors`, named by the results' `features_file`), so `posebench regress` can bootstrap FID and KID over images.

One safetensors file (no pickle), written by `posebench eval` with the results JSON and the per-image CSV:
    generated            (N, D) the kept generated features (after the profile's drop-last), in scoring order;
                         float32 when that is lossless (the extractor computes in float32), else float64
    positions            (N,) int64: each row's row in the per-image CSV
    real.{i}.mean        (D,) float64, real.{i}.cov (D, D) float64: real set i's statistics as FID used them
    real.{i}.features    (M, D) float32: real set i's features as KID used them (only when KID was computed)
Metadata (strings): format, version, real_sets (JSON list of names, index i), metrics (JSON {results key:
{"metric": "fid" | "kid", "real": i}}), kid (JSON {num_subsets, max_subset_size, seed}: the KID section).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from posebench.errors import PosebenchError

FORMAT = "posebench-kept-features"
VERSION = "1"
SUFFIX = ".features.safetensors"


class FeaturesFileError(PosebenchError):
    """A features file that is missing, unreadable or not what its results file says."""


@dataclass(frozen=True)
class RealSet:
    name: str
    mean: NDArray[np.float64]
    cov: NDArray[np.float64]
    features: NDArray[np.float32] | None  # kept only when KID was computed


@dataclass(frozen=True)
class KeptFeatures:
    generated: NDArray[np.float64]
    positions: NDArray[np.int64]
    real: tuple[RealSet, ...]
    metrics: dict[str, dict[str, Any]]  # results key -> {"metric": "fid" | "kid", "real": index into `real`}
    kid: dict[str, int] | None  # {num_subsets, max_subset_size, seed}


def features_path(results: str | Path) -> Path:
    """Where `posebench eval --out results` writes the features file."""
    return Path(results).with_suffix(SUFFIX)


def from_metrics(sets: dict[str, Any], real_of: dict[str, str]) -> KeptFeatures:
    """The features of an evaluation's FID/KID metric objects (`posebench.metrics.fid.FeatureMetric`), after the
    real sets were given to them: `sets` results key -> metric, `real_of` results key -> real set name."""
    from posebench.metrics.base import kept_by_drop_last

    first = next(iter(sets.values()))
    positions, feats = first.generated()
    n_keep = kept_by_drop_last(len(feats), first.fid_section)  # what FID and KID used: the first n_keep
    names = list(dict.fromkeys(real_of[k] for k in sets))
    real = []
    for name in names:
        stats = next(m.real for k, m in sets.items() if real_of[k] == name)
        real.append(RealSet(name, stats.mean(), stats.cov(), stats.features() if stats.keep_features else None))
    metrics = {k: {"metric": m.section_name, "real": names.index(real_of[k])} for k, m in sets.items()}  # fid|kid
    kid = next(({"num_subsets": int(m.section.subsets), "max_subset_size": int(m.section.subset_size),
                 "seed": int(m.section.seed)} for k, m in sets.items() if metrics[k]["metric"] == "kid"), None)
    return KeptFeatures(feats[:n_keep], positions[:n_keep].astype(np.int64), tuple(real), metrics, kid)


def encode(kept: KeptFeatures) -> bytes:
    """The file's bytes (safetensors)."""
    from safetensors.numpy import save

    gen = np.asarray(kept.generated, dtype=np.float64)
    as32 = gen.astype(np.float32)
    tensors: dict[str, np.ndarray] = {
        "generated": as32 if np.array_equal(as32.astype(np.float64), gen) else gen,  # float32 only when lossless
        "positions": np.asarray(kept.positions, dtype=np.int64)}
    for i, r in enumerate(kept.real):
        tensors[f"real.{i}.mean"] = np.asarray(r.mean, dtype=np.float64)
        tensors[f"real.{i}.cov"] = np.asarray(r.cov, dtype=np.float64)
        if r.features is not None:
            tensors[f"real.{i}.features"] = np.asarray(r.features, dtype=np.float32)
    meta = {"format": FORMAT, "version": VERSION, "real_sets": json.dumps([r.name for r in kept.real]),
            "metrics": json.dumps(kept.metrics), "kid": json.dumps(kept.kid)}
    return save({k: np.ascontiguousarray(v) for k, v in tensors.items()}, metadata=meta)


def read(path: str | Path) -> KeptFeatures:
    """Read and check a features file.

    Raises:
        FeaturesFileError: missing, not a safetensors file, another format or version, or tensors that do not fit
            together (naming the file).
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FeaturesFileError(f"{path}: no such features file")
    try:
        with safe_open(str(path), framework="np") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise FeaturesFileError(f"{path}: not a readable safetensors file ({exc}); re-run posebench eval") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise FeaturesFileError(f"{path}: not a posebench features file of version {VERSION} (format "
                                f"{meta.get('format')!r}, version {meta.get('version')!r}); re-run posebench eval")
    try:
        names, metrics, kid = (json.loads(meta[k]) for k in ("real_sets", "metrics", "kid"))
        real = tuple(RealSet(str(name), tensors[f"real.{i}.mean"], tensors[f"real.{i}.cov"],
                             tensors.get(f"real.{i}.features")) for i, name in enumerate(names))
        kept = KeptFeatures(np.asarray(tensors["generated"], dtype=np.float64), tensors["positions"], real,
                            dict(metrics), kid)
    except (KeyError, TypeError, ValueError) as exc:
        raise FeaturesFileError(f"{path}: incomplete features file (missing {exc}); re-run posebench eval") from None
    _check(kept, path)
    return kept


def _check(kept: KeptFeatures, path: Path) -> None:
    g = kept.generated
    problems = []
    if g.ndim != 2 or len(g) < 2:
        problems.append(f"generated has shape {g.shape}, expected (N >= 2, D)")
    elif kept.positions.shape != (len(g),):
        problems.append(f"positions has shape {kept.positions.shape}, expected ({len(g)},)")
    else:
        d = g.shape[1]
        for r in kept.real:
            if r.mean.shape != (d,) or r.cov.shape != (d, d):
                problems.append(f"real set {r.name!r}: mean {r.mean.shape}, cov {r.cov.shape}, expected ({d},), "
                                f"({d}, {d})")
            if r.features is not None and (r.features.ndim != 2 or r.features.shape[1] != d):
                problems.append(f"real set {r.name!r}: features {r.features.shape}, expected (M, {d})")
        if not np.isfinite(g).all():
            problems.append("generated features contain NaN/Inf")
    for key, spec in kept.metrics.items():
        if not isinstance(spec, dict) or spec.get("metric") not in ("fid", "kid") \
                or spec.get("real") not in range(len(kept.real)):
            problems.append(f"metrics.{key}: {spec!r} is not {{metric: fid|kid, real: index}}")
        elif spec["metric"] == "kid" and (kept.kid is None or kept.real[spec["real"]].features is None):
            problems.append(f"metrics.{key}: KID without the KID settings or the real set's features")
    if problems:
        raise FeaturesFileError(f"{path}: inconsistent features file: {'; '.join(problems)}; re-run posebench eval")
