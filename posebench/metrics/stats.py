"""Streaming feature statistics for FID and KID.

`FeatureStats` accumulates N, the sum and the sum of outer products of feature vectors in float64 (as
torchmetrics' `FrechetInceptionDistance` does), so that mean and covariance equal numpy's
`x.mean(0)` and `np.cov(x, rowvar=False)` over all rows seen, whatever the batching or sharding.
The state is plain numpy arrays, so it can be cached as a `.npz` file without pickle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from posebench.errors import PosebenchError

__all__ = ["FeatureStats"]

_STATE_VERSION = 1


class FeatureStats:
    """Float64 running statistics of D-dimensional feature vectors.

    Notation: x_i (D,) feature rows, i = 1..N; S = sum_i x_i; Q = sum_i x_i x_i^T.
    mean = S / N; cov = (Q - N mean mean^T) / (N - 1) (unbiased, as `np.cov(rowvar=False)`).

    Args:
        dim: feature size D; inferred from the first update when None.
        keep_features: also keep every row (as float32, as clean-fid stores them) for KID.

    Example:
        >>> st = FeatureStats()
        >>> st.update(np.array([[0.0, 1.0], [2.0, 3.0]]))
        >>> st.mean().tolist(), st.cov().tolist()
        ([1.0, 2.0], [[2.0, 2.0], [2.0, 2.0]])
    """

    def __init__(self, dim: int | None = None, *, keep_features: bool = False) -> None:
        self.dim = dim
        self.keep_features = keep_features
        self.n = 0
        self._sum: NDArray[np.float64] | None = None
        self._outer: NDArray[np.float64] | None = None
        self._feats: list[NDArray[np.float32]] = []
        if dim is not None:
            self._init(dim)

    def _init(self, dim: int) -> None:
        self.dim = dim
        self._sum = np.zeros(dim, dtype=np.float64)
        self._outer = np.zeros((dim, dim), dtype=np.float64)

    def update(self, feats: ArrayLike | torch.Tensor) -> None:
        """Add a batch of rows, (B, D) tensor or array (any float dtype; accumulated in float64).

        Raises:
            ValueError: not 2-D, or D differs from earlier updates.
            PosebenchError: some rows contain NaN or Inf (nothing is added then).
        """
        if isinstance(feats, torch.Tensor):
            feats = feats.detach().cpu().to(torch.float64).numpy()
        x = np.asarray(feats, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"features must be (B, D), got shape {x.shape}")
        if self.dim is not None and x.shape[1] != self.dim:
            raise ValueError(f"features have D = {x.shape[1]}, but these statistics have D = {self.dim}")
        bad = ~np.isfinite(x).all(axis=1)
        if bad.any():
            raise PosebenchError(f"features contain NaN/Inf in {int(bad.sum())} of {x.shape[0]} rows of this batch; "
                                 "check the images and the feature extractor (e.g. fp16 overflow)")
        if self._sum is None:
            self._init(x.shape[1])
        assert self._sum is not None and self._outer is not None
        self.n += x.shape[0]
        self._sum += x.sum(axis=0)
        self._outer += x.T @ x
        if self.keep_features:
            self._feats.append(x.astype(np.float32))

    def mean(self) -> NDArray[np.float64]:
        """Mean feature vector, (D,) float64."""
        self._require(1)
        assert self._sum is not None
        return self._sum / self.n

    def cov(self) -> NDArray[np.float64]:
        """Unbiased covariance (N - 1 denominator), (D, D) float64, symmetric."""
        self._require(2)
        assert self._sum is not None and self._outer is not None
        mu = self._sum / self.n
        c = (self._outer - self.n * np.outer(mu, mu)) / (self.n - 1)
        return (c + c.T) / 2

    def features(self) -> NDArray[np.float32]:
        """All rows seen, (N, D) float32, in update (then merge) order. Needs `keep_features=True`."""
        if not self.keep_features:
            raise ValueError("features were not kept: create FeatureStats(keep_features=True)")
        if not self._feats:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        if len(self._feats) > 1:
            self._feats = [np.concatenate(self._feats, axis=0)]
        return self._feats[0]

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Add the rows counted by `other` (e.g. another shard) into `self`; returns `self`.

        Raises:
            ValueError: the feature sizes differ, or only one side keeps features.
        """
        if other.n == 0:
            return self
        if self.dim is not None and other.dim != self.dim:
            raise ValueError(f"cannot merge statistics with D = {other.dim} into D = {self.dim}")
        if self.keep_features != other.keep_features:
            raise ValueError("cannot merge statistics that keep features with statistics that do not")
        if self._sum is None:
            self._init(other.dim)  # type: ignore[arg-type]
        assert self._sum is not None and self._outer is not None
        self.n += other.n
        self._sum += other._sum  # type: ignore[operator]
        self._outer += other._outer  # type: ignore[operator]
        if self.keep_features:
            self._feats.extend(other._feats)
        return self

    def state_dict(self) -> dict[str, NDArray[Any]]:
        """Plain numpy arrays (for `np.savez`; load without pickle): `version`, `n`, `sum`, `outer`, and
        `features` when kept."""
        self._require(1)
        state: dict[str, NDArray[Any]] = {
            "version": np.array(_STATE_VERSION, dtype=np.int64),
            "n": np.array(self.n, dtype=np.int64),
            "sum": self._sum.copy(),  # type: ignore[union-attr]
            "outer": self._outer.copy(),  # type: ignore[union-attr]
        }
        if self.keep_features:
            state["features"] = self.features().copy()
        return state

    @classmethod
    def from_state_dict(cls, state: Mapping[str, ArrayLike]) -> FeatureStats:
        """Rebuild from `state_dict()` output, or from `np.load(path)` of a `.npz` written from it.

        Raises:
            PosebenchError: keys, version or shapes are not those of a FeatureStats state (e.g. a stale or
                foreign cache file).
        """
        missing = {"version", "n", "sum", "outer"} - set(state.keys())
        if missing:
            raise PosebenchError(f"not a FeatureStats state: missing {sorted(missing)}; delete the cache file "
                                 "and recompute")
        version = int(np.asarray(state["version"]))
        if version != _STATE_VERSION:
            raise PosebenchError(f"FeatureStats state version {version} is not {_STATE_VERSION}; recompute it")
        n = int(np.asarray(state["n"]))
        s = np.asarray(state["sum"], dtype=np.float64)
        q = np.asarray(state["outer"], dtype=np.float64)
        d = s.shape[0] if s.ndim == 1 else -1
        if n < 1 or d < 1 or q.shape != (d, d):
            raise PosebenchError(f"corrupt FeatureStats state: n = {n}, sum {s.shape}, outer {q.shape}")
        out = cls(d, keep_features="features" in state)
        out.n, out._sum, out._outer = n, s.copy(), q.copy()
        if out.keep_features:
            f = np.asarray(state["features"], dtype=np.float32)
            if f.shape != (n, d):
                raise PosebenchError(f"corrupt FeatureStats state: features {f.shape}, expected {(n, d)}")
            out._feats = [f.copy()]
        return out

    def _require(self, k: int) -> None:
        if self.n < k:
            raise ValueError(f"need at least {k} feature rows, have {self.n}")
