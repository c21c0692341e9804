"""FID and KID of resampled generated sets against a fixed real set, fast enough to recompute hundreds of times.

A resample replaces the generated set by rows idx (drawn with replacement, `posebench.results.bootstrap`); the
real set stays as the evaluation scored it. Both classes compute, for such a set, the number posebench's own
functions give on `features[idx]`; the arithmetic is rearranged so the parts that do not change between resamples
are computed once.

FID (`FidResampler`): d^2 = ||mu_g - mu_r||^2 + tr(S_g) + tr(S_r) - 2 tr((S_g S_r)^(1/2)), as
`posebench.metrics.functional.frechet.frechet_distance`. With A = S_r^(1/2) (symmetric, from `eigh`, eigenvalues
clipped at 0), tr((S_g S_r)^(1/2)) = sum sqrt(eig(A S_g A)) (similar matrices). A resample is a count w_u for each
distinct generated row u; with Z = X A computed once, mu_g = sum w_u x_u / n, A S_g A = Y^T Y with rows
Y_u = sqrt(w_u / (n - 1)) (z_u - mu_g A), and tr(S_g) = (sum w_u ||x_u||^2 - n ||mu_g||^2) / (n - 1), the
second-moment form `FeatureStats` uses too. The nonzero eigenvalues of Y^T Y are those of Y Y^T, so the smaller of
the two is decomposed; the rows of Y are dependent (sqrt(w) . Y = 0), so the eigenvalues beyond rank k - 1 (k
distinct rows) are set to 0 rather than left as round-off whose square root (~1e-8 each) would enter the trace.
This is `frechet_distances_of_subsets` with X A hoisted out of the loop; tests hold it to `frechet_distance` on
`features[idx]` within 1e-9 relative when S_g has full rank, and to a 40-digit computation within 1e-12 when not.

KID (`KidResampler`): posebench's KID (`posebench.metrics.functional.kid.kid`, clean-fid's estimator) draws its
subsets with `RandomState(seed)`: per subset s, x = real[ix_s], then y = gen[iy_s]. The draws depend only on the
set sizes, which a resample keeps, so every resample uses the same ix_s, iy_s, and y = gen[idx[iy_s]]. With
k(a, b) = (a.b / D + 1)^3, K = k(gen, gen) and C[s, j] = sum_i k(real[ix_s, i], gen_j), all computed once:
    MMD_s = [(Srr_s + Sgg_s) / (m - 1) - 2 Sgr_s / m] / m,
    Srr_s = sum_{i != j} k(x_i, x_j) (fixed), Sgg_s = w_s^T K w_s - w_s . diag(K), Sgr_s = w_s . C[s],
where w_s counts how often each generated row appears in y (positions i != j, as the estimator sums them, so a
row drawn twice pairs with itself). KID = mean_s MMD_s. Tests hold it to `kid` on `features[idx]` within 1e-9
relative. K takes n^2 x 8 bytes.

Both run in torch float64 on a chosen device (`device="cuda"` for `posebench regress --device cuda`): at
n = 8,570 one FID resample is a 2048 x 2048 Gram product and eigendecomposition, about a second on a 2-core CPU
(GPU time not measured here). The resample indices come from numpy's seeded stream either way, so the intervals agree
across devices to round-off (tests hold CPU torch to posebench's numpy FID / KID).
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

__all__ = ["FidResampler", "KidResampler", "kid_kernel_bytes"]

_BLOCK = 1024  # real rows per kernel block while building C (bounded memory)
_W_BYTES = 1 << 27  # 128 MiB for the per-subset count matrix of a step of resamples


def _f64(x: ArrayLike, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(x, dtype=np.float64), device=device)


def _index(idx: NDArray[np.int64], device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(idx, dtype=np.int64), device=device)


def _smaller_gram(y: torch.Tensor) -> torch.Tensor:
    """Y Y^T or Y^T Y, whichever is smaller (they share their nonzero eigenvalues). On the CPU through numpy:
    torch's float64 GEMM took 0.56 s for a 5400 x 2048 Gram where numpy's OpenBLAS took 0.32 s (measured here,
    2 cores), the larger part of a resample's time."""
    if y.device.type == "cpu":
        a = y.numpy()
        return torch.from_numpy(a @ a.T if a.shape[0] < a.shape[1] else a.T @ a)
    return y @ y.T if y.shape[0] < y.shape[1] else y.T @ y


class FidResampler:
    """FID of generated rows `idx` against a fixed real Gaussian; call with a (b, n) chunk of index rows."""

    def __init__(self, generated: ArrayLike, mu_real: ArrayLike, sigma_real: ArrayLike, *,
                 like: FidResampler | None = None, device: str | torch.device = "cpu") -> None:
        """`like`: another resampler; its S_r^(1/2) is reused when its real set is the same (one eigh saved).
        `device`: where the arithmetic runs (float64 throughout)."""
        self.device = torch.device(device)
        self.x = _f64(generated, self.device)
        self.mu_r = _f64(mu_real, self.device)
        self.sigma_r = _f64(sigma_real, self.device)
        if like is not None and like.device == self.device and torch.equal(like.sigma_r, self.sigma_r):
            self.a = like.a
        else:
            w, v = torch.linalg.eigh(self.sigma_r)
            self.a = (v * w.clamp(min=0).sqrt()) @ v.T  # S_r^(1/2), as frechet_distance takes it
        self.z = self.x @ self.a
        self.sq = (self.x * self.x).sum(dim=1)  # ||x_i||^2, for tr(S_g) without centring a copy
        self.tr_r = float(torch.trace(self.sigma_r))

    def one(self, idx: NDArray[np.int64]) -> float:
        n, d = len(idx), self.x.shape[1]
        if n < 2:
            raise ValueError(f"FID needs at least 2 generated rows, got {n}")
        # a resample is a count w_u per distinct row u: no n x D copies, one scaled gather of the distinct rows
        w = torch.bincount(_index(idx, self.device), minlength=len(self.x))
        u = torch.nonzero(w).squeeze(1)
        wu = w[u].to(torch.float64)
        mu_g = wu @ self.x[u] / n
        z_bar = wu @ self.z[u] / n  # mu_g A
        tr_g = float((wu @ self.sq[u] - n * (mu_g @ mu_g)) / (n - 1))  # sum_u w_u ||x_u - mu_g||^2 / (n - 1)
        y = (self.z[u] - z_bar) * (wu / (n - 1)).sqrt()[:, None]  # Y^T Y = A S_g A
        k = len(u)
        gram = _smaller_gram(y)
        lam = torch.linalg.eigvalsh((gram + gram.T) / 2)  # symmetrise away round-off before the symmetric solver
        # the rows of Y satisfy sqrt(w) . Y = 0, so rank <= k - 1: the smallest eigenvalues beyond that are 0
        # exactly, and the square root of their round-off (~1e-8 each) would otherwise enter the trace
        lam[: len(lam) - min(k - 1, d)] = 0.0
        diff = mu_g - self.mu_r
        return float(diff @ diff) + tr_g + self.tr_r - 2 * float(lam.clamp(min=0).sqrt().sum())

    def __call__(self, idx: NDArray[np.int64]) -> NDArray[np.float64]:
        return np.array([self.one(row) for row in np.atleast_2d(idx)])


def kid_kernel_bytes(n: int) -> int:
    """Memory the KID resampler's n x n generated kernel takes."""
    return 8 * n * n


def _kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a @ b.T / a.shape[1] + 1) ** 3


class KidResampler:
    """KID of generated rows `idx` against a fixed real feature set, with posebench's subsets; call with a (b, n)
    chunk of index rows (every row a resample of all n generated rows)."""

    def __init__(self, generated: ArrayLike, real: ArrayLike, *, num_subsets: int, max_subset_size: int,
                 seed: int, device: str | torch.device = "cpu") -> None:
        self.device = dev = torch.device(device)
        g, r = _f64(generated, dev), _f64(real, dev)
        if g.ndim != 2 or r.ndim != 2 or g.shape[1] != r.shape[1] or len(g) < 2 or len(r) < 2:
            raise ValueError(f"need (N, D) generated and real features, N >= 2, got {tuple(g.shape)} and "
                             f"{tuple(r.shape)}")
        self.n, self.subsets = len(g), int(num_subsets)
        self.m = m = min(len(g), len(r), int(max_subset_size))
        rng = np.random.RandomState(seed)  # the draws of `kid`, in its order: x from the real set, then y
        draws = [(rng.choice(len(r), m, replace=False), rng.choice(len(g), m, replace=False))
                 for _ in range(self.subsets)]
        self.iy = np.stack([iy for _, iy in draws])  # (S, m) positions in the generated set
        self.srr = torch.empty(self.subsets, dtype=torch.float64, device=dev)
        for s, (ix, _) in enumerate(draws):
            k = _kernel(r[ix], r[ix])
            self.srr[s] = k.sum() - torch.trace(k)
        used = np.unique(np.concatenate([ix for ix, _ in draws]))
        member = torch.zeros((self.subsets, len(used)), dtype=torch.float64, device=dev)
        for s, (ix, _) in enumerate(draws):
            member[s, _index(np.searchsorted(used, ix), dev)] = 1.0  # a subset's real rows are distinct
        self.c = torch.zeros((self.subsets, self.n), dtype=torch.float64, device=dev)
        for lo in range(0, len(used), _BLOCK):
            self.c += member[:, lo:lo + _BLOCK] @ _kernel(r[_index(used[lo:lo + _BLOCK], dev)], g)
        self.k = _kernel(g, g)
        self.k_diag = torch.diagonal(self.k).clone()

    def __call__(self, idx: NDArray[np.int64]) -> NDArray[np.float64]:
        idx = np.atleast_2d(idx)
        per = max(1, _W_BYTES // (8 * self.subsets * self.n))  # resamples per step: the count matrix stays small
        return np.concatenate([self._some(idx[lo:lo + per]) for lo in range(0, len(idx), per)])

    def _some(self, idx: NDArray[np.int64]) -> NDArray[np.float64]:
        b, s, n, m = len(idx), self.subsets, self.n, self.m
        rows = _index(idx[:, self.iy], self.device)  # (b, S, m): the generated rows of each subset of each resample
        offsets = (torch.arange(b * s, device=self.device) * n).reshape(b, s, 1)
        w = torch.bincount((rows + offsets).ravel(), minlength=b * s * n).reshape(b * s, n).to(torch.float64)
        sgg = (((w @ self.k) * w).sum(dim=1) - w @ self.k_diag).reshape(b, s)
        sgr = (w.reshape(b, s, n) * self.c).sum(dim=2)
        mmd = ((self.srr + sgg) / (m - 1) - 2 * sgr / m) / m
        return mmd.mean(dim=1).cpu().numpy()
