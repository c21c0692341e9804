"""Metric functions against independent references: scikit-image (SSIM, PSNR), scipy `sqrtm` and clean-fid
(Fréchet distance, KID), numpy (feature statistics). Every tolerance says why it is what it is."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
from cleanfid import fid as cleanfid_fid
from scipy.ndimage import gaussian_filter

from posebench.errors import PosebenchError
from posebench.metrics.functional.frechet import frechet_distance
from posebench.metrics.functional.kid import kid
from posebench.metrics.functional.psnr import psnr
from posebench.metrics.functional.ssim import gaussian_window_size, legacy_data_range, ssim_gaussian, ssim_uniform
from posebench.metrics.stats import FeatureStats

skm = pytest.importorskip("skimage.metrics")

# float64 throughout and the same formula as scikit-image: differences are pure round-off (~1e-15 measured).
SSIM_ATOL = 1e-10


def _pair(shape: tuple[int, ...], seed: int, *, uint8: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """x255 float images that do not span the full range (so the legacy data range differs from 255), and a
    noisy, smoothed copy as the 'prediction'. With `uint8=True` both are rounded to integer values."""
    rng = np.random.default_rng(seed)
    target = gaussian_filter(rng.random(shape), (0, 0, 1.0, 1.0))
    target = 40 + 150 * (target - target.min()) / (target.max() - target.min())
    preds = np.clip(target + rng.normal(0, 12, shape), 0, 255)
    preds = gaussian_filter(preds, (0, 0, 0.7, 0.7))
    if uint8:
        preds, target = np.round(preds), np.round(target)
    return preds, target


def _sk_ssim_gaussian(preds: np.ndarray, target: np.ndarray, sigma: float, data_range: np.ndarray) -> np.ndarray:
    return np.array([
        skm.structural_similarity(p, t, gaussian_weights=True, sigma=sigma, use_sample_covariance=False,
                                  data_range=float(r), channel_axis=0)
        for p, t, r in zip(preds, target, data_range, strict=True)
    ])


# ---------------------------------------------------------------------------------------------- SSIM (Gaussian)


@pytest.mark.parametrize("uint8", [False, True], ids=["float", "uint8-valued"])
@pytest.mark.parametrize("legacy_range", [False, True], ids=["range255", "legacy-range"])
@pytest.mark.parametrize("sigma", [1.5, 1.2])
def test_ssim_gaussian_matches_skimage(sigma: float, legacy_range: bool, uint8: bool) -> None:
    preds, target = _pair((2, 3, 64, 44), seed=0, uint8=uint8)
    if uint8:  # scikit-image converts uint8 input to float64 itself
        sk_p, sk_t = preds.astype(np.uint8), target.astype(np.uint8)
    else:
        sk_p, sk_t = preds, target
    p, t = torch.from_numpy(preds), torch.from_numpy(target)
    if legacy_range:
        dr = legacy_data_range(p)
        ranges = np.array([x.max() - x.min() for x in preds])  # the GFLA / PIDM `pred.max() - pred.min()`
        np.testing.assert_array_equal(dr.numpy(), ranges)
        assert (ranges < 250).all()  # really different from 255, so per-image C1/C2 are exercised
    else:
        dr, ranges = 255.0, np.full(2, 255.0)
    ours = ssim_gaussian(p, t, sigma=sigma, data_range=dr)
    assert ours.dtype == torch.float64 and ours.shape == (2,)
    np.testing.assert_allclose(ours.numpy(), _sk_ssim_gaussian(sk_p, sk_t, sigma, ranges), rtol=0, atol=SSIM_ATOL)


@pytest.mark.parametrize("sigma", [1.5, 1.2])
def test_ssim_gaussian_equals_pytorch_msssim(sigma: float) -> None:
    """Our banded-matrix filtering computes pytorch-msssim's `ssim` (float64 window): only the summation order of
    the separable filter differs (products with banded matrices vs grouped convolutions), ~1e-16 relative."""
    import pytorch_msssim

    from posebench.metrics.functional.ssim import gaussian_window

    preds, target = (torch.from_numpy(a) for a in _pair((2, 3, 256, 176), seed=7))
    k = gaussian_window_size(sigma)
    win = gaussian_window(sigma, k).reshape(1, 1, 1, k).repeat(3, 1, 1, 1)
    ref = pytorch_msssim.ssim(preds, target, data_range=255.0, size_average=False, win=win)
    torch.testing.assert_close(ssim_gaussian(preds, target, sigma=sigma, data_range=255.0), ref, rtol=0, atol=1e-14)


def test_ssim_gaussian_per_image_range_equals_one_image_at_a_time() -> None:
    preds, target = (torch.from_numpy(a) for a in _pair((3, 3, 32, 24), seed=1))
    dr = torch.tensor([100.0, 180.0, 255.0], dtype=torch.float64)
    batched = ssim_gaussian(preds, target, data_range=dr)
    single = torch.cat([ssim_gaussian(preds[i:i + 1], target[i:i + 1], data_range=float(dr[i])) for i in range(3)])
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-14)  # same arithmetic, batch-independent
    assert not torch.allclose(batched, ssim_gaussian(preds, target, data_range=255.0))


def test_ssim_gaussian_float32_needs_1e_5() -> None:
    """Documents the tolerance a float32 computation needs: pytorch-msssim in float32 (its own float32 window)
    is off by up to ~2.5e-6 on smooth x255 images (E[x^2] - mu^2 cancels in float32), hence the float64 path."""
    import pytorch_msssim

    preds, target = _pair((2, 3, 64, 44), seed=2)
    ref = _sk_ssim_gaussian(preds, target, 1.5, np.full(2, 255.0))
    f32 = pytorch_msssim.ssim(torch.from_numpy(preds).float(), torch.from_numpy(target).float(), data_range=255.0,
                              size_average=False, win_size=11, win_sigma=1.5)
    err = np.abs(f32.double().numpy() - ref).max()
    assert err < 1e-5
    assert err > SSIM_ATOL  # float32 would not pass the float64 tolerance


def test_ssim_identity_is_one_and_window_sizes() -> None:
    preds, _ = _pair((2, 3, 40, 30), seed=3)
    x = torch.from_numpy(preds)
    torch.testing.assert_close(ssim_gaussian(x, x, sigma=1.2, data_range=legacy_data_range(x)),
                               torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(ssim_uniform(x / 255, x / 255, win_size=7), torch.ones(2, dtype=torch.float64),
                               rtol=0, atol=1e-12)
    assert gaussian_window_size(1.5) == 11 and gaussian_window_size(1.2) == 9  # skimage's truncate=3.5 rule


def test_ssim_averages_channels() -> None:
    preds, target = (torch.from_numpy(a) for a in _pair((2, 3, 32, 24), seed=4))
    per_channel = torch.stack([ssim_gaussian(preds[:, c:c + 1], target[:, c:c + 1]) for c in range(3)], dim=1)
    torch.testing.assert_close(ssim_gaussian(preds, target), per_channel.mean(dim=1), rtol=0, atol=1e-14)
    per_channel = torch.stack([ssim_uniform(preds[:, c:c + 1] / 255, target[:, c:c + 1] / 255, win_size=7)
                               for c in range(3)], dim=1)
    torch.testing.assert_close(ssim_uniform(preds / 255, target / 255, win_size=7), per_channel.mean(dim=1),
                               rtol=0, atol=1e-14)


def test_ssim_validation() -> None:
    a, b = torch.zeros(2, 3, 32, 32), torch.zeros(2, 3, 32, 30)
    with pytest.raises(ValueError, match=r"\(2, 3, 32, 32\) and \(2, 3, 32, 30\)"):
        ssim_gaussian(a, b)
    with pytest.raises(ValueError, match=r"\(2, 3, 32, 32\) and \(2, 3, 32, 30\)"):
        ssim_uniform(a, b)
    with pytest.raises(ValueError, match="smaller than the 11x11"):
        ssim_gaussian(torch.zeros(1, 3, 10, 40), torch.zeros(1, 3, 10, 40))
    with pytest.raises(ValueError, match="smaller than the 51x51"):
        ssim_uniform(a, a)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        ssim_gaussian(a, a, data_range=torch.ones(3))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        ssim_gaussian(a[0], a[0])


# ----------------------------------------------------------------------------------------------- SSIM (uniform)


def test_ssim_uniform_matches_skimage_default() -> None:
    preds, target = (a / 255 for a in _pair((2, 3, 80, 64), seed=5))
    ours = ssim_uniform(torch.from_numpy(preds), torch.from_numpy(target), win_size=51, data_range=1.0)
    ref = [skm.structural_similarity(p, t, win_size=51, data_range=1, channel_axis=0)
           for p, t in zip(preds, target, strict=True)]
    # float64 on both sides, same formula; scipy's running-sum box filter vs avg_pool2d differ only by round-off.
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=SSIM_ATOL)


# ------------------------------------------------------------------------------------------------------- PSNR


def test_psnr_matches_skimage_and_identity_is_inf() -> None:
    preds, target = (a / 255 for a in _pair((3, 3, 20, 16), seed=6))
    ours = psnr(torch.from_numpy(preds), torch.from_numpy(target), data_range=1.0)
    ref = [skm.peak_signal_noise_ratio(t, p, data_range=1) for p, t in zip(preds, target, strict=True)]
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-10)  # float64 MSE, same formula: round-off
    x = torch.from_numpy(preds)
    assert torch.isposinf(psnr(x, x)).all()
    with pytest.raises(ValueError, match="same shape"):
        psnr(x, x[:, :2])


# ------------------------------------------------------------------------------------------- Fréchet distance


def _gaussian_stats(n: int, d: int, seed: int, shift: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inception-like features: non-negative and correlated (ReLU of isotropic noise plus a rank-64 mixture;
    cheap at D = 2048, and full rank when N > D)."""
    rng = np.random.default_rng(seed)
    k = min(d, 64)
    mix = rng.standard_normal((k, d)) * 0.3
    x = np.maximum(rng.standard_normal((n, d)) + rng.standard_normal((n, k)) @ mix + shift, 0)
    return x, x.mean(axis=0), np.cov(x, rowvar=False)


def _cleanfid_frechet(mu1, s1, mu2, s2) -> float:
    with warnings.catch_warnings():  # clean-fid passes `disp=False`, deprecated in SciPy 1.17
        warnings.simplefilter("ignore", DeprecationWarning)
        return float(cleanfid_fid.frechet_distance(mu1, s1, mu2, s2))


def test_frechet_matches_sqrtm_and_cleanfid_small() -> None:
    _, mu1, s1 = _gaussian_stats(500, 64, seed=7, shift=0.0)
    _, mu2, s2 = _gaussian_stats(500, 64, seed=8, shift=0.2)
    ours = frechet_distance(mu1, s1, mu2, s2)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real  # the textbook reference, independent of our eigh route
    ref = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
    # FID is a difference of traces much larger than itself; sqrtm's Schur iteration on the non-symmetric
    # product carries ~cond * eps error in tr(covmean), amplified by that cancellation. 1e-4 relative leaves a
    # wide margin over the ~1e-12 observed while still catching any formula error.
    assert ours == pytest.approx(ref, rel=1e-4)
    assert ours == pytest.approx(_cleanfid_frechet(mu1, s1, mu2, s2), rel=1e-4)
    # torch inputs give the same value
    assert frechet_distance(*(torch.from_numpy(a) for a in (mu1, s1, mu2, s2))) == pytest.approx(ours, rel=1e-12)


def test_frechet_matches_cleanfid_inception_size() -> None:
    """D = 2048 (Inception pool features), N = 3000 > D so both covariances are full rank. ~15 s on 2 cores,
    ~12 s of it in clean-fid's sqrtm (ours: ~2 s)."""
    _, mu1, s1 = _gaussian_stats(3000, 2048, seed=9, shift=0.0)
    _, mu2, s2 = _gaussian_stats(3000, 2048, seed=10, shift=0.1)
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(_cleanfid_frechet(mu1, s1, mu2, s2), rel=1e-4)  # tolerance: see the D=64 test


def test_frechet_known_answers_and_errors() -> None:
    # N(0, 1) vs N(3, 4): (0 - 3)^2 + 1 + 4 - 2 sqrt(1 * 4) = 10
    assert frechet_distance(np.array([0.0]), np.array([[1.0]]), np.array([3.0]), np.array([[4.0]])) == \
        pytest.approx(10.0, abs=1e-12)
    # a set against itself: 0 up to round-off in the eigenvalues (relative to the trace)
    _, mu, s = _gaussian_stats(500, 64, seed=11, shift=0.0)
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-6 * np.trace(s)
    # a rank-deficient covariance (N < D) still works: its tiny negative eigenvalues are clipped
    _, mu_r, s_r = _gaussian_stats(40, 64, seed=12, shift=0.0)
    assert abs(frechet_distance(mu_r, s_r, mu_r, s_r)) < 1e-6 * np.trace(s_r)
    bad = s.copy()
    bad[3, 5] = np.nan
    with pytest.raises(PosebenchError, match="NaN/Inf"):
        frechet_distance(mu, bad, mu, s)
    with pytest.raises(ValueError, match="expected mu1"):
        frechet_distance(mu, s, mu[:10], s)


# ------------------------------------------------------------------------------------------------------- KID


def test_kid_matches_cleanfid_with_matched_rng() -> None:
    rng = np.random.default_rng(13)
    f1 = np.maximum(rng.standard_normal((300, 32)) + 0.2, 0)
    f2 = np.maximum(rng.standard_normal((250, 32)), 0)
    ours, std = kid(f1, f2, num_subsets=20, max_subset_size=200, rng=np.random.RandomState(5))
    state = np.random.get_state()
    try:
        np.random.seed(5)
        ref = cleanfid_fid.kernel_distance(f1, f2, num_subsets=20, max_subset_size=200)
    finally:
        np.random.set_state(state)
    # same subsets, same float64 arithmetic; only the order of the final averaging differs
    assert abs(ours - ref) < 1e-12
    assert std > 0


def test_kid_properties() -> None:
    rng = np.random.default_rng(14)
    x = rng.standard_normal((400, 16))
    same, _ = kid(x, x, num_subsets=10, max_subset_size=100, rng=np.random.default_rng(0))
    shifted, _ = kid(x, x + 1.0, num_subsets=10, max_subset_size=100, rng=np.random.default_rng(0))
    assert abs(same) < 0.05 * shifted  # unbiased: ~0 (can be slightly negative) for identical distributions
    assert shifted > 0.1
    with pytest.raises(PosebenchError, match="NaN/Inf"):
        kid(np.full((4, 2), np.inf), x[:, :2], rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="different feature sizes"):
        kid(x, x[:, :8], rng=np.random.default_rng(0))


# -------------------------------------------------------------------------------------------------- FeatureStats


def test_feature_stats_matches_numpy_and_merges() -> None:
    rng = np.random.default_rng(15)
    x = rng.standard_normal((77, 12)) * 3 + 1.5
    st = FeatureStats(keep_features=True)
    for lo, hi in ((0, 5), (5, 46), (46, 77)):  # three uneven batches, numpy and torch
        st.update(torch.from_numpy(x[lo:hi]) if lo else x[lo:hi])
    assert st.n == 77
    # float64 sums of 77 rows: round-off only
    np.testing.assert_allclose(st.mean(), x.mean(axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(st.cov(), np.cov(x, rowvar=False), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(st.features(), x.astype(np.float32))

    shard_a, shard_b = FeatureStats(keep_features=True), FeatureStats(keep_features=True)
    shard_a.update(x[:30])
    shard_b.update(x[30:60])
    shard_b.update(x[60:])
    merged = FeatureStats(keep_features=True).merge(shard_a).merge(shard_b)
    assert merged.n == st.n
    np.testing.assert_allclose(merged.mean(), st.mean(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(merged.cov(), st.cov(), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(merged.features(), st.features())


def test_feature_stats_state_dict_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(16)
    st = FeatureStats(keep_features=True)
    st.update(rng.standard_normal((20, 6)))
    path = tmp_path / "stats.npz"
    np.savez(path, **st.state_dict())
    with np.load(path) as npz:  # allow_pickle=False by default: plain arrays only
        back = FeatureStats.from_state_dict(npz)
    assert back.n == 20 and back.keep_features
    np.testing.assert_array_equal(back.mean(), st.mean())
    np.testing.assert_array_equal(back.cov(), st.cov())
    np.testing.assert_array_equal(back.features(), st.features())
    plain = FeatureStats.from_state_dict({k: v for k, v in st.state_dict().items() if k != "features"})
    assert not plain.keep_features
    with pytest.raises(PosebenchError, match="missing"):
        FeatureStats.from_state_dict({"n": np.array(3)})


def test_feature_stats_rejects_nan() -> None:
    st = FeatureStats()
    x = np.ones((5, 3))
    x[1, 0], x[3, 2] = np.nan, np.inf
    with pytest.raises(PosebenchError, match="2 of 5 rows"):
        st.update(x)
    assert st.n == 0
    st.update(np.ones((2, 3)))
    with pytest.raises(ValueError, match="D = 4"):
        st.update(np.ones((2, 4)))


def test_frechet_of_subsets_equals_the_full_formula():
    """Drop-last ranges: each subset's FID equals frechet_distance on that subset's mean and covariance,
    with fewer rows than dimensions (n x n Gram form) and more (D x D form)."""
    from posebench.metrics.functional.frechet import frechet_distance, frechet_distances_of_subsets

    rng = np.random.default_rng(0)
    for n, d in ((30, 50), (90, 20)):
        feats = rng.normal(size=(n, d))
        real = rng.normal(size=(200, d)) * 1.3 + 0.2
        mu_r, s_r = real.mean(0), np.cov(real, rowvar=False)
        subsets = [np.sort(rng.choice(n, n - 7, replace=False)) for _ in range(3)]
        got = frechet_distances_of_subsets(feats, subsets, mu_r, s_r)
        want = [frechet_distance(feats[i].mean(0), np.cov(feats[i], rowvar=False), mu_r, s_r) for i in subsets]
        # 1e-6: with n < D the D x D route sums square roots of ~1e-16 round-off eigenvalues (~1e-8 each)
        np.testing.assert_allclose(got, want, rtol=1e-6)
