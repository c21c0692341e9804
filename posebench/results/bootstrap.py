"""Seeded bootstrap over images: the resample indices, the percentile interval, and the paired difference of a
per-image mean (SSIM, LPIPS, PSNR, ...) between two runs that scored the same images.

Definition (what every interval `posebench regress` shows is, and what its tests recompute independently):
    rng = numpy.random.default_rng(seed); for b = 0 .. B-1 in order, resample b is
    idx_b = rng.integers(0, n, size=n) (n image indices drawn with replacement, one call per resample).
    For a statistic T of a run, d_b = T(new rows idx_b) - T(baseline rows idx_b): paired, the same images in both.
    The interval is numpy.quantile(d, [(1 - level) / 2, (1 + level) / 2]) (linear interpolation, numpy's
    default), a percentile interval of new - baseline; level 0.95 gives the 2.5th and 97.5th percentiles.
Every metric starts its own generator from `seed`, so its interval does not depend on which other metrics exist.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["LEVEL", "Interval", "paired_difference", "paired_mean_difference", "percentile_interval",
           "resample_indices"]

LEVEL = 0.95
_CHUNK = 128  # resamples per vectorised step: bounded memory (128 x n indices), large enough to be fast


@dataclass(frozen=True)
class Interval:
    """A bootstrap interval of new - baseline for one metric."""

    low: float
    high: float
    level: float
    resamples: int
    n: int  # images resampled (the same images in both runs)
    method: str  # one line for reports: what was resampled and recomputed


def resample_indices(n: int, resamples: int, seed: int, chunk: int = _CHUNK) -> Iterator[NDArray[np.int64]]:
    """The resamples of the module's definition, in order, as (b, n) index arrays of at most `chunk` rows."""
    if n < 1 or resamples < 1:
        raise ValueError(f"need n >= 1 and resamples >= 1, got n={n}, resamples={resamples}")
    rng = np.random.default_rng(seed)
    for lo in range(0, resamples, chunk):
        # one call per resample: the stream then does not depend on `chunk` (numpy buffers within a call)
        yield np.stack([rng.integers(0, n, size=n) for _ in range(min(chunk, resamples - lo))])


def percentile_interval(diffs: ArrayLike, level: float = LEVEL) -> tuple[float, float]:
    """(low, high): the (1 - level) / 2 and (1 + level) / 2 quantiles of `diffs` (numpy's linear method)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    lo, hi = np.quantile(np.asarray(diffs, dtype=np.float64), [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def paired_difference(stat_new: Callable[[NDArray[np.int64]], NDArray[np.float64]],
                      stat_base: Callable[[NDArray[np.int64]], NDArray[np.float64]], n: int, *, resamples: int,
                      seed: int, chunk: int = _CHUNK,
                      advance: Callable[[int], None] | None = None) -> NDArray[np.float64]:
    """d_b = stat_new(idx_b) - stat_base(idx_b) for every resample b; each `stat` maps a (b, n) chunk of index
    rows to (b,) values. Returns the (resamples,) differences in resample order (the same for any `chunk`).
    `advance(k)` is told after each chunk of k resamples (progress)."""
    out = []
    for idx in resample_indices(n, resamples, seed, chunk):
        out.append(np.asarray(stat_new(idx), dtype=np.float64) - np.asarray(stat_base(idx), dtype=np.float64))
        if advance is not None:
            advance(len(idx))
    return np.concatenate(out)


def paired_mean_difference(new: ArrayLike, base: ArrayLike, *, resamples: int, seed: int, level: float = LEVEL,
                           what: str = "images") -> Interval:
    """Percentile interval of mean(new) - mean(base) over paired resamples of images; `new[i]` and `base[i]` are
    the same image's values in the two runs."""
    x, y = np.asarray(new, dtype=np.float64), np.asarray(base, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or len(x) == 0:
        raise ValueError(f"need two 1-D arrays of the same non-zero length, got {x.shape} and {y.shape}")
    diffs = paired_difference(lambda idx: x[idx].mean(axis=1), lambda idx: y[idx].mean(axis=1), len(x),
                              resamples=resamples, seed=seed)
    lo, hi = percentile_interval(diffs, level)
    return Interval(lo, hi, level, resamples, len(x), f"paired bootstrap over {len(x)} {what} (mean of the "
                    f"per-image values), {resamples} resamples, seed {seed}, {level:.0%} percentile interval")
