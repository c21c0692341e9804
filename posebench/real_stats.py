"""Feature statistics of an FID real set, cached by what determines them (never by folder name).

The cache key is a hash of: the profile's name, version and content hash, the feature extractor's name,
version and weight sha256, the resolved resize chain, the dataset, split, the sorted image names and
the total byte size of those files. A cache whose stored key differs is rejected and recomputed. Long
computations checkpoint their partial statistics, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from posebench.errors import PosebenchError
from posebench.utils.io import atomic_write_bytes

log = logging.getLogger(__name__)
CHECKPOINT_EVERY = 2048  # images between partial-statistics checkpoints


def stats_dir() -> Path:
    from posebench.weights import home

    return home() / "stats"


def cache_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _save(path: Path, state: dict[str, np.ndarray], key: str, meta: dict[str, Any]) -> None:
    import io

    buf = io.BytesIO()
    np.savez(buf, __key__=np.array(key), __meta__=np.array(json.dumps(meta)), **state)
    atomic_write_bytes(path, buf.getvalue())


def _load(path: Path, key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["__key__"]) != key:
                log.warning("ignoring %s: it was computed for other settings", path)
                return None
            meta = json.loads(str(data["__meta__"]))
            return {k: data[k] for k in data.files if not k.startswith("__")}, meta
    except (OSError, ValueError, KeyError) as exc:
        log.warning("ignoring unreadable statistics cache %s (%s)", path, exc)
        return None


def real_set_stats(
    name: str,
    key_parts: dict[str, Any],
    paths: list[Path],
    featurize: Callable[[list[Path]], np.ndarray],
    *,
    batch_size: int,
    drop_last: bool,
    keep_features: bool,
    progress: Any = None,
    use_cache: bool = True,
) -> tuple[Any, dict[str, Any]]:
    """FeatureStats of `paths` (computed in batches by `featurize`), from the cache when possible.

    Returns the stats and metadata {"n", "dropped", "cache_file", "from_cache"}.
    """
    from posebench.metrics.stats import FeatureStats

    key = cache_key(key_parts)
    final = stats_dir() / f"{name}__{key[:16]}.npz"
    partial = final.with_suffix(".partial.npz")
    if use_cache and (hit := _load(final, key)) is not None:
        state, meta = hit
        return FeatureStats.from_state_dict(state), {**meta, "cache_file": str(final), "from_cache": True}

    n_total = len(paths)
    n_use = (n_total // batch_size) * batch_size if drop_last else n_total
    if n_use == 0:
        raise PosebenchError(f"the FID real set has {n_total} images, fewer than one batch of {batch_size} "
                             "that this profile's drop-last keeps")
    stats = FeatureStats(keep_features=keep_features)
    start = 0
    if use_cache and (hit := _load(partial, key)) is not None:
        state, meta = hit
        stats = FeatureStats.from_state_dict(state)
        start = int(meta["done"])
        log.info("resuming real-set statistics at image %d of %d", start, n_use)
    task = progress.add_task(f"real set ({name})", total=n_use, completed=start) if progress else None
    since = 0
    for lo in range(start, n_use, batch_size):
        batch = paths[lo:min(lo + batch_size, n_use)]
        stats.update(featurize(batch))
        since += len(batch)
        if progress:
            progress.advance(task, len(batch))
        if use_cache and since >= CHECKPOINT_EVERY and lo + batch_size < n_use:
            _save(partial, stats.state_dict(), key, {"done": lo + len(batch)})
            since = 0
    meta = {"n": n_use, "dropped": n_total - n_use}
    if use_cache:
        _save(final, stats.state_dict(), key, meta)
        partial.unlink(missing_ok=True)
    return stats, {**meta, "cache_file": str(final) if use_cache else None, "from_cache": False}
