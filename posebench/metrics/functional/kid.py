"""Kernel Inception Distance (Bińkowski et al. 2018), reproducing clean-fid's `cleanfid.fid.kernel_distance`:
unbiased MMD^2 with the cubic polynomial kernel, averaged over random subsets drawn in clean-fid's order.
It also returns the standard deviation over subsets, which clean-fid does not."""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from posebench.errors import PosebenchError

__all__ = ["kid"]


def _features(x: ArrayLike | torch.Tensor, name: str) -> NDArray[np.float64]:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().to(torch.float64).numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 2:
        raise ValueError(f"{name} must be an (N, D) array with N >= 2, got shape {arr.shape}")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise PosebenchError(f"features contain NaN/Inf: {int(bad.sum())} of {arr.shape[0]} rows of {name}; check "
                             "the images and the feature extractor (e.g. fp16 overflow)")
    return arr


def kid(
    feats1: ArrayLike | torch.Tensor,
    feats2: ArrayLike | torch.Tensor,
    *,
    num_subsets: int = 100,
    max_subset_size: int = 1000,
    rng: np.random.Generator | np.random.RandomState,
) -> tuple[float, float]:
    """KID between two feature sets: mean and standard deviation over random subsets.

    Notation: d = feature dimension; k(a, b) = (a . b / d + 1)^3; m = min(N1, N2, max_subset_size).
    For each subset s = 1..num_subsets (same order as clean-fid):
      1. x = feats2[rng.choice(N2, m, replace=False)], then y = feats1[rng.choice(N1, m, replace=False)];
      2. MMD_s^2 = [sum_{i != j} (k(x_i, x_j) + k(y_i, y_j)) / (m - 1) - 2 sum_{i, j} k(x_i, y_j) / m] / m,
         the unbiased estimate sum_{i!=j}(...)/(m(m-1)) - 2 sum k(x_i, y_j) / m^2.
    KID = mean_s MMD_s^2 (equal to clean-fid's `kernel_distance` when `rng` is `np.random.RandomState(seed)`
    and clean-fid runs after `np.random.seed(seed)`); the std is the population std (ddof = 0, as torchmetrics).

    Args:
        feats1: features of the first set, (N1, D); clean-fid's `feats1` (its generated set in `compute_kid`).
        feats2: features of the second set, (N2, D).
        num_subsets: number of random subsets.
        max_subset_size: upper bound on the subset size m.
        rng: source of the subset indices (`np.random.Generator` or `np.random.RandomState`); it is advanced.

    Returns:
        (mean, std) over the subsets, as Python floats, computed in float64.

    Raises:
        ValueError: features are not 2-D, have fewer than 2 rows or different D, or `num_subsets` < 1.
        PosebenchError: features contain NaN or Inf.
    """
    f1, f2 = _features(feats1, "feats1"), _features(feats2, "feats2")
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feats1 and feats2 have different feature sizes: {f1.shape} and {f2.shape}")
    if num_subsets < 1 or max_subset_size < 2:
        raise ValueError(f"need num_subsets >= 1 and max_subset_size >= 2, got {num_subsets}, {max_subset_size}")
    d = f1.shape[1]
    m = min(f1.shape[0], f2.shape[0], max_subset_size)
    # 1. Draw every subset first, in clean-fid's order (x from feats2, then y from feats1, per subset).
    idx = [(rng.choice(f2.shape[0], m, replace=False), rng.choice(f1.shape[0], m, replace=False))
           for _ in range(num_subsets)]
    # 2. One unbiased MMD^2 per subset; the arithmetic mirrors clean-fid's so the mean agrees to round-off.
    mmd = np.empty(num_subsets, dtype=np.float64)
    for s, (ix, iy) in enumerate(idx):
        x, y = f2[ix], f1[iy]
        a = (x @ x.T / d + 1) ** 3 + (y @ y.T / d + 1) ** 3
        b = (x @ y.T / d + 1) ** 3
        mmd[s] = ((a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m) / m
    return float(mmd.mean()), float(mmd.std())
