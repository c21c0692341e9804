"""Fréchet distance between two Gaussians, the FID formula of TTUR, pytorch-fid and clean-fid
(`cleanfid.fid.frechet_distance`), computed in float64 with symmetric eigen-decompositions instead of
`scipy.linalg.sqrtm` (clean-fid passes `disp=False`, an argument SciPy 1.18 removes)."""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from posebench.errors import PosebenchError

__all__ = ["frechet_distance", "frechet_distances_of_subsets", "sqrtm_trace"]


def _as_f64(x: ArrayLike | torch.Tensor) -> NDArray[np.float64]:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().to(torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _psd_sqrt(s: NDArray[np.float64]) -> NDArray[np.float64]:
    """Symmetric PSD square root from `eigh`; eigenvalues below 0 (round-off) are clipped to 0."""
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def sqrtm_trace(sigma1: NDArray[np.float64], sigma2: NDArray[np.float64]) -> float:
    """tr((sigma1 sigma2)^(1/2)) for symmetric PSD sigma1, sigma2.

    With A = sigma1^(1/2) (symmetric), sigma1 sigma2 = A (A sigma2 A) A^(-1) is similar to the symmetric PSD
    matrix A sigma2 A, so both have the same eigenvalues lambda_i >= 0, and tr((sigma1 sigma2)^(1/2)) =
    sum_i sqrt(lambda_i). Negative round-off eigenvalues are clipped to 0.
    """
    a = _psd_sqrt(sigma1)
    m = a @ sigma2 @ a
    lam = np.linalg.eigvalsh((m + m.T) / 2)  # symmetrise away round-off before the symmetric solver
    return float(np.sqrt(np.clip(lam, 0.0, None)).sum())


def frechet_distance(
    mu1: ArrayLike | torch.Tensor,
    sigma1: ArrayLike | torch.Tensor,
    mu2: ArrayLike | torch.Tensor,
    sigma2: ArrayLike | torch.Tensor,
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (FID when the inputs are Inception statistics).

    Notation: mu_i (D,) means, sigma_i (D, D) covariances (symmetric PSD).
    d^2 = ||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2)),
    with tr((sigma1 sigma2)^(1/2)) = sum sqrt(eigvalsh(A sigma2 A)), A = sigma1^(1/2) (see `sqrtm_trace`).
    Everything runs in float64. Scalars and 1-element inputs are treated as D = 1.

    Args:
        mu1: mean of the first set, (D,).
        sigma1: covariance of the first set, (D, D).
        mu2: mean of the second set, (D,).
        sigma2: covariance of the second set, (D, D).

    Returns:
        The squared distance d^2, as a Python float (>= 0 up to round-off).

    Raises:
        ValueError: shapes do not match (D,), (D, D), (D,), (D, D).
        PosebenchError: an input contains NaN or Inf.

    Example:
        >>> frechet_distance([0.0], [[1.0]], [3.0], [[4.0]])  # (0-3)^2 + 1 + 4 - 2 * sqrt(4)
        10.0
    """
    m1, m2 = np.atleast_1d(_as_f64(mu1)), np.atleast_1d(_as_f64(mu2))
    s1, s2 = np.atleast_2d(_as_f64(sigma1)), np.atleast_2d(_as_f64(sigma2))
    d = m1.shape[0]
    if m1.ndim != 1 or m2.shape != m1.shape or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"expected mu1 (D,), sigma1 (D, D), mu2 (D,), sigma2 (D, D); got {m1.shape}, "
                         f"{s1.shape}, {m2.shape}, {s2.shape}")
    for name, arr in (("mu1", m1), ("sigma1", s1), ("mu2", m2), ("sigma2", s2)):
        if not np.isfinite(arr).all():
            raise PosebenchError(f"features contain NaN/Inf: {name} has {int((~np.isfinite(arr)).sum())} non-finite "
                                 "values; check the images and the feature extractor (e.g. fp16 overflow)")
    diff = m1 - m2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * sqrtm_trace(s1, s2))


def frechet_distances_of_subsets(
    features: ArrayLike,
    subsets: list[NDArray[np.intp]],
    mu_real: ArrayLike,
    sigma_real: ArrayLike,
) -> list[float]:
    """Fréchet distance of several row subsets of one feature set against one fixed Gaussian.

    Used to show how far the choice of the images a drop-last batching leaves out moves FID. The real
    covariance's square root A = sigma_real^(1/2) is computed once; for a subset with centred rows X_c (n, D),
    sigma_g = X_c^T X_c / (n - 1) and A sigma_g A = Y^T Y with Y = X_c A / sqrt(n - 1), whose nonzero
    eigenvalues are those of the smaller of Y Y^T (n, n) and Y^T Y (D, D); then
    d^2 = ||mu_g - mu_r||^2 + tr(sigma_g) + tr(sigma_real) - 2 sum sqrt(lambda_i), as `frechet_distance`.

    Args:
        features: (N, D) generated features.
        subsets: index arrays into the N rows, each with at least 2 rows.
        mu_real: (D,) real mean. sigma_real: (D, D) real covariance.

    Returns:
        One distance per subset, in float64 arithmetic.
    """
    x = _as_f64(features)
    mu_r, s_r = _as_f64(mu_real), _as_f64(sigma_real)
    a = _psd_sqrt(s_r)
    tr_r = float(np.trace(s_r))
    out = []
    for idx in subsets:
        rows = x[idx]
        n = rows.shape[0]
        if n < 2:
            raise ValueError(f"a subset needs at least 2 rows, got {n}")
        mu_g = rows.mean(axis=0)
        xc = rows - mu_g
        y = (xc @ a) / np.sqrt(n - 1)
        gram = y @ y.T if n < y.shape[1] else y.T @ y
        lam = np.linalg.eigvalsh((gram + gram.T) / 2)
        diff = mu_g - mu_r
        tr_g = float((xc * xc).sum() / (n - 1))
        out.append(float(diff @ diff + tr_g + tr_r - 2 * np.sqrt(np.clip(lam, 0.0, None)).sum()))
    return out
