"""Diffusion math (reposedm.diffusion) against independent references: diffusers, torch.distributions, scipy.

Everything of ours runs in float64. Tolerances, and why:
  * 1e-12 (absolute or relative): float64 against a float64 reference that is a different but exact
    formula for the same quantity; a few dozen ulps of float64 (2.2e-16) plus headroom.
  * 1e-6 relative: against diffusers' stock schedulers, which store betas / alphas_cumprod in float32
    (ulp 6e-8; the cumulative product of 1000 factors accumulates a few hundred ulps at most, measured 4e-7).
  * 1e-3 relative: quantities that diffusers derives in float32 by cancellation, e.g. 1 - abar_t ~ 1e-4 at
    t = 1 gives float32 a relative error of ~6e-8 / 1e-4 (measured up to 2.5e-4); the same formulas are
    also checked at 1e-12 with diffusers' code fed float64 constants.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    UniPCMultistepScheduler,
)
from scipy.stats import norm

from reposedm.config import ModelConfig, named_config
from reposedm.diffusion import (
    PREDICTION_TYPES,
    SCHEDULERS,
    Schedule,
    discretized_gaussian_log_likelihood,
    eps_from_output,
    hybrid_loss,
    make_scheduler,
    model_log_variance,
    normal_kl,
    output_from_eps,
    predict_x0,
    prediction_target,
    q_sample,
    vlb_terms,
)

F64 = torch.float64
T = 1000
BETA_START, BETA_END = 1e-4, 0.02
TS_POS = [1, 2, 5, 10, 50, 100, 250, 500, 750, 999]  # t >= 1


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def schedule() -> Schedule:
    return Schedule.linear(T, BETA_START, BETA_END)


def _ddpm(**kwargs) -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=T, beta_start=BETA_START, beta_end=BETA_END, beta_schedule="linear",
                         **kwargs)


def _ddpm_float64(schedule: Schedule, **kwargs) -> DDPMScheduler:
    """A diffusers DDPMScheduler whose constants are float64 (its own formulas, no float32 cancellation)."""
    sched = _ddpm(**kwargs)
    betas = torch.linspace(BETA_START, BETA_END, T, dtype=F64)  # the same linear rule, recomputed here
    sched.betas = betas
    sched.alphas = 1.0 - betas
    sched.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    sched.one = torch.tensor(1.0, dtype=F64)
    return sched


# ------------------------------------------------------------------------------------------------------------ schedule


def test_schedule_matches_numpy_closed_forms(schedule: Schedule) -> None:
    # Independent float64 reference in numpy; the posterior from Bayes' rule (Gaussian conditioning):
    # x_{t-1} ~ N(sqrt(abar_{t-1}) x0, 1 - abar_{t-1}), x_t | x_{t-1} ~ N(sqrt(alpha_t) x_{t-1}, beta_t).
    betas = np.linspace(BETA_START, BETA_END, T)
    alphas = 1.0 - betas
    abar = np.cumprod(alphas)
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    post_var = np.empty(T)
    coef1 = np.empty(T)
    coef2 = np.empty(T)
    post_var[0], coef1[0], coef2[0] = 0.0, 1.0, 0.0  # q(x_0 | x_1... ) degenerate: x_{-1} := x_0
    for t in range(1, T):
        precision = 1.0 / (1.0 - abar_prev[t]) + alphas[t] / betas[t]
        post_var[t] = 1.0 / precision
        coef1[t] = post_var[t] * math.sqrt(abar_prev[t]) / (1.0 - abar_prev[t])
        coef2[t] = post_var[t] * math.sqrt(alphas[t]) / betas[t]
    pairs = [(schedule.betas, betas), (schedule.alphas_cumprod, abar), (schedule.alphas_cumprod_prev, abar_prev),
             (schedule.posterior_variance, post_var), (schedule.posterior_mean_coef1, coef1),
             (schedule.posterior_mean_coef2, coef2)]
    for ours, ref in pairs:
        assert ours.dtype == F64 and ours.shape == (T,)
        torch.testing.assert_close(ours, torch.from_numpy(ref), rtol=1e-12, atol=1e-15)
    # log(beta~_0) = log 0 is clipped to log(beta~_1) (improved DDPM); elsewhere it is the plain log.
    expected_log = np.log(np.concatenate([[post_var[1]], post_var[1:]]))
    torch.testing.assert_close(schedule.posterior_log_variance_clipped, torch.from_numpy(expected_log),
                               rtol=1e-12, atol=1e-12)
    assert schedule.num_timesteps == T


def test_schedule_matches_diffusers_betas_and_alphas_cumprod(schedule: Schedule) -> None:
    ref = _ddpm()
    # diffusers stores float32: relative tolerance of float32 accumulated over the cumprod (measured 4e-7).
    torch.testing.assert_close(schedule.betas, ref.betas.to(F64), rtol=1e-6, atol=0)
    torch.testing.assert_close(schedule.alphas_cumprod, ref.alphas_cumprod.to(F64), rtol=1e-6, atol=0)


@pytest.mark.parametrize("t", TS_POS)
def test_posterior_variance_matches_diffusers_fixed_small(schedule: Schedule, t: int) -> None:
    # Stock float32 diffusers: 1 - abar_t is formed by cancellation, hence rtol 1e-3 (see module docstring).
    stock = _ddpm(variance_type="fixed_small")._get_variance(t)
    assert math.isclose(float(stock), float(schedule.posterior_variance[t]), rel_tol=1e-3)
    # diffusers' own formula (with its 1e-20 clamp, inactive for t > 0) run on float64 constants: exact.
    exact = _ddpm_float64(schedule, variance_type="fixed_small")._get_variance(t)
    assert float(exact) > 1e-20
    assert math.isclose(float(exact), float(schedule.posterior_variance[t]), rel_tol=1e-12)


def test_posterior_variance_at_zero_is_zero_where_diffusers_clamps(schedule: Schedule) -> None:
    assert float(schedule.posterior_variance[0]) == 0.0
    assert float(_ddpm(variance_type="fixed_small")._get_variance(0)) == pytest.approx(1e-20)
    # Clipped log variance at t = 0 is finite (log beta~_1), not log(0) nor diffusers' log(1e-20).
    assert float(schedule.posterior_log_variance_clipped[0]) == pytest.approx(math.log(schedule.posterior_variance[1]))


def test_schedule_from_config_uses_the_model_schedule() -> None:
    cfg = ModelConfig(num_train_timesteps=200, beta_start=2e-4, beta_end=0.03)
    sched = Schedule.from_config(cfg)
    assert sched.num_timesteps == 200
    torch.testing.assert_close(sched.betas, torch.linspace(2e-4, 0.03, 200, dtype=F64), rtol=0, atol=0)


def test_at_broadcasts_in_the_dtype_of_like(schedule: Schedule) -> None:
    like = torch.zeros(3, 2, 4, 5, dtype=torch.float32)
    t = torch.tensor([0, 10, 999])
    out = schedule.at(schedule.alphas_cumprod, t, like)
    assert out.shape == (3, 1, 1, 1) and out.dtype == torch.float32
    torch.testing.assert_close(out.flatten(), schedule.alphas_cumprod[t].float(), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------- model log variance


@pytest.mark.parametrize("t", TS_POS)
def test_model_log_variance_matches_diffusers_learned_range(schedule: Schedule, t: int) -> None:
    # diffusers' learned_range _get_variance returns the *log* variance (step() takes exp(0.5 * it)), so the
    # log variances are compared. t = 0 differs by design (diffusers: log of its 1e-20 clamp; ours: clipped
    # to log beta~_1 as improved DDPM), hence t >= 1 only.
    vs = torch.tensor([-1.0, -0.7, -0.25, 0.0, 0.3, 0.9, 1.0], dtype=F64)
    ours = model_log_variance(schedule, torch.full((len(vs),), t), vs.view(-1, 1, 1, 1)).flatten()
    stock = _ddpm(variance_type="learned_range")
    exact = _ddpm_float64(schedule, variance_type="learned_range")
    for v, got in zip(vs, ours, strict=True):
        # log of a float32 quantity with relative error <= 1e-3 -> absolute error <= 1e-3 in the log.
        assert math.isclose(float(got), float(stock._get_variance(t, predicted_variance=v.float())), abs_tol=1e-3)
        assert math.isclose(float(got), float(exact._get_variance(t, predicted_variance=v)), abs_tol=1e-12)


def test_model_log_variance_endpoints_and_elementwise(schedule: Schedule) -> None:
    t = torch.tensor([0, 3, 400])
    lo = model_log_variance(schedule, t, torch.full((3, 2, 2, 2), -1.0, dtype=F64))
    hi = model_log_variance(schedule, t, torch.full((3, 2, 2, 2), 1.0, dtype=F64))
    torch.testing.assert_close(lo, schedule.posterior_log_variance_clipped[t].view(3, 1, 1, 1).expand_as(lo),
                               rtol=0, atol=1e-14)
    torch.testing.assert_close(hi, torch.log(schedule.betas[t]).view(3, 1, 1, 1).expand_as(hi), rtol=0, atol=1e-14)
    v = torch.rand(3, 2, 2, 2, dtype=F64) * 2 - 1
    mid = model_log_variance(schedule, t, v)
    assert mid.shape == v.shape
    assert torch.all(mid >= lo - 1e-14) and torch.all(mid <= hi + 1e-14)  # beta~_t <= beta_t


# ------------------------------------------------------------------------------------------- q_sample, predict_x0


@pytest.mark.parametrize("shape", [(4, 3, 8, 6), (2, 4, 5, 7)])
def test_q_sample_then_predict_x0_recovers_x0(schedule: Schedule, shape: tuple[int, ...]) -> None:
    x0 = torch.rand(shape, dtype=F64) * 2 - 1
    noise = torch.randn(shape, dtype=F64)
    t = torch.tensor([0, 1, 500, 999][: shape[0]])
    x_t = q_sample(schedule, x0, t, noise)
    # 1e-12 absolute: at t = 999 sqrt(abar) ~ 6e-3, so dividing amplifies float64 rounding by ~160x (~1e-14).
    torch.testing.assert_close(predict_x0(schedule, x_t, t, noise), x0, rtol=0, atol=1e-12)


def test_q_sample_matches_closed_form(schedule: Schedule) -> None:
    x0 = torch.randn(3, 2, 4, 4, dtype=F64)
    noise = torch.randn(3, 2, 4, 4, dtype=F64)
    t = torch.tensor([0, 123, 999])
    abar = np.cumprod(1.0 - np.linspace(BETA_START, BETA_END, T))[t.numpy()]
    ref = np.sqrt(abar)[:, None, None, None] * x0.numpy() + np.sqrt(1 - abar)[:, None, None, None] * noise.numpy()
    torch.testing.assert_close(q_sample(schedule, x0, t, noise), torch.from_numpy(ref), rtol=0, atol=1e-12)


# -------------------------------------------------------------------------------------------------------- normal_kl


def test_normal_kl_matches_torch_distributions() -> None:
    mean1, mean2 = torch.randn(50, dtype=F64) * 3, torch.randn(50, dtype=F64) * 3
    logvar1, logvar2 = torch.randn(50, dtype=F64) * 2, torch.randn(50, dtype=F64) * 2
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mean1, torch.exp(0.5 * logvar1)),
                                            torch.distributions.Normal(mean2, torch.exp(0.5 * logvar2)))
    # 1e-12: two float64 forms of the same closed form; values are O(1..100), so also relative 1e-12.
    torch.testing.assert_close(normal_kl(mean1, logvar1, mean2, logvar2), ref, rtol=1e-12, atol=1e-12)


def test_normal_kl_of_identical_distributions_is_zero_and_broadcasts() -> None:
    mean = torch.randn(2, 3, 4, dtype=F64)
    logvar = torch.randn(2, 3, 4, dtype=F64)
    torch.testing.assert_close(normal_kl(mean, logvar, mean, logvar), torch.zeros_like(mean), rtol=0, atol=1e-15)
    out = normal_kl(mean, logvar, torch.zeros(()), torch.zeros(()))  # against N(0, 1)
    assert out.shape == mean.shape and torch.all(out >= 0)


# ------------------------------------------------------------------------------- discretized gaussian log-likelihood


def _scipy_discretized_ll(x: np.ndarray, mean: np.ndarray, log_scale: np.ndarray) -> np.ndarray:
    sigma = np.exp(log_scale)
    upper = (x + 1 / 255 - mean) / sigma
    lower = (x - 1 / 255 - mean) / sigma
    interior = np.log(norm.cdf(upper) - norm.cdf(lower))
    left_tail = norm.logcdf(upper)  # x = -1 takes (-inf, -1 + 1/255]
    right_tail = norm.logsf(lower)  # x = 1 takes [1 - 1/255, inf)
    return np.where(x <= -1.0, left_tail, np.where(x >= 1.0, right_tail, interior))


def test_discretized_ll_interior_matches_scipy() -> None:
    k = torch.randint(1, 255, (400,))
    x = -1 + 2 * k.to(F64) / 255  # interior bin centres
    log_scale = torch.empty(400, dtype=F64).uniform_(math.log(0.01), math.log(0.5))
    mean = x + torch.randn(400, dtype=F64).clamp(-3, 3) * log_scale.exp()  # within 3 sigma of the bin
    got = discretized_gaussian_log_likelihood(x, mean, log_scale)
    ref = _scipy_discretized_ll(x.numpy(), mean.numpy(), log_scale.numpy())
    # Within 3 sigma every bin holds >= ~5e-5 of probability, so the float64 CDF difference (ulp 1e-16)
    # is exact to ~1e-11 relative, i.e. ~1e-11 absolute in the log.
    torch.testing.assert_close(got, torch.from_numpy(ref), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("edge", [-1.0, 1.0])
def test_discretized_ll_tails_match_scipy(edge: float) -> None:
    # Means on the edge's side: the tail mass stays >= 3e-5 (z >= -4), where no 1e-12 floor applies.
    mean = edge * torch.tensor([1.5, 1.2, 1.0, 0.95, 0.7, 0.5, 0.2], dtype=F64)
    log_scale = torch.full_like(mean, math.log(0.2))
    x = torch.full_like(mean, edge)
    got = discretized_gaussian_log_likelihood(x, mean, log_scale)
    sigma = 0.2
    if edge < 0:
        ref = norm.logcdf((-1 + 1 / 255 - mean.numpy()) / sigma)
    else:
        ref = norm.logsf((1 - 1 / 255 - mean.numpy()) / sigma)
    # Tail mass >= 3e-5: 1 - cdf in float64 then loses <= 1e-16 / 3e-5 ~ 3e-12 relative; the log, absolute.
    torch.testing.assert_close(got, torch.from_numpy(ref), rtol=1e-9, atol=1e-9)


def test_discretized_ll_is_floored_at_log_1e12() -> None:
    # A bin far out in the tail gets log(1e-12) (the clamp of improved DDPM), not -inf nor its true log.
    x = torch.tensor([-1.0, 0.0, 1.0], dtype=F64)
    mean = torch.tensor([1.0, 0.9, -1.0], dtype=F64)
    got = discretized_gaussian_log_likelihood(x, mean, torch.full_like(x, math.log(0.05)))
    torch.testing.assert_close(got, torch.full_like(x, math.log(1e-12)), rtol=0, atol=1e-12)


@pytest.mark.parametrize(("mean", "scale"), [(0.0, 0.1), (0.37, 0.02), (-0.9, 0.3), (0.99, 0.05), (-1.5, 1.0),
                                             (0.2, 0.003)])
def test_discretized_ll_sums_to_one_over_all_bins(mean: float, scale: float) -> None:
    x = -1 + 2 * torch.arange(256, dtype=F64) / 255
    ll = discretized_gaussian_log_likelihood(x, torch.full_like(x, mean), torch.full_like(x, math.log(scale)))
    # The bins tile the real line; the only error is the 1e-12 floor on empty bins (<= 256e-12) and
    # float64 rounding, far below the 1e-6 asked for.
    assert float(ll.exp().sum()) == pytest.approx(1.0, abs=1e-6)
    assert torch.all(ll <= 0)


# --------------------------------------------------------------------------------------------------------- vlb terms


def _batch(schedule: Schedule, t: list[int], shape: tuple[int, ...] = (3, 4, 4)):
    b = len(t)
    k = torch.randint(0, 256, (b, *shape))
    x0 = -1 + 2 * k.to(F64) / 255  # data on the 256-level grid, as the decoder NLL assumes
    noise = torch.randn(b, *shape, dtype=F64)
    tt = torch.tensor(t)
    return x0, noise, tt, q_sample(schedule, x0, tt, noise)


def test_vlb_kl_is_zero_when_model_equals_posterior(schedule: Schedule) -> None:
    x0, noise, t, x_t = _batch(schedule, [1, 2, 10, 300, 999])
    v = torch.full_like(x0, -1.0)  # model log var = min_log = clipped posterior log var
    vlb = vlb_terms(schedule, x0, x_t, t, noise, v)
    assert vlb.shape == (5,)
    # mean error ~1e-15 (x0 recovered to 1e-15), squared and divided by beta~_t >= 5e-5: ~1e-25; 1e-10 is slack.
    torch.testing.assert_close(vlb, torch.zeros_like(vlb), rtol=0, atol=1e-10)
    vlb_hi = vlb_terms(schedule, x0, x_t, t, noise, torch.ones_like(x0))  # beta_t > beta~_t: KL > 0
    # beta_t / beta~_t -> 1 as t grows, so the KL shrinks (2e-13 bits at t = 999) but stays positive.
    assert torch.all(vlb_hi > 0) and torch.all(vlb_hi[:3] > 1e-3)
    assert torch.all(vlb_hi[:-1] > vlb_hi[1:])


def test_vlb_matches_independent_reference_for_t_positive(schedule: Schedule) -> None:
    ts = [1, 7, 250, 999]
    x0, noise, t, x_t = _batch(schedule, ts)
    eps_pred = noise + 0.3 * torch.randn_like(noise)
    v = torch.rand_like(x0) * 2 - 1
    got = vlb_terms(schedule, x0, x_t, t, eps_pred, v)
    betas = np.linspace(BETA_START, BETA_END, T)
    abar = np.cumprod(1 - betas)
    for i, ti in enumerate(ts):
        a, ap, b = abar[ti], abar[ti - 1], betas[ti]
        post_var = b * (1 - ap) / (1 - a)
        c1, c2 = math.sqrt(ap) * b / (1 - a), math.sqrt(1 - b) * (1 - ap) / (1 - a)
        xt, e = x_t[i].numpy(), eps_pred[i].numpy()
        x0_hat = (xt - math.sqrt(1 - a) * e) / math.sqrt(a)
        mu_q, mu_p = c1 * x0[i].numpy() + c2 * xt, c1 * x0_hat + c2 * xt
        frac = (v[i].numpy() + 1) / 2
        var_p = np.exp(frac * math.log(b) + (1 - frac) * math.log(post_var))
        kl = 0.5 * (np.log(var_p / post_var) + (post_var + (mu_q - mu_p) ** 2) / var_p - 1)  # KL(q || p)
        # Float64 vs float64, same quantity by a different formula: 1e-12 relative.
        assert float(got[i]) == pytest.approx(kl.mean() / math.log(2), rel=1e-10, abs=1e-12)


def test_vlb_at_t_zero_is_the_decoder_nll(schedule: Schedule) -> None:
    x0, noise, t, x_t = _batch(schedule, [0, 0, 0])
    eps_pred = noise + 0.01 * torch.randn_like(noise)
    v = torch.rand_like(x0) * 2 - 1
    got = vlb_terms(schedule, x0, x_t, t, eps_pred, v)
    a = float(schedule.alphas_cumprod[0])
    mean = (x_t - math.sqrt(1 - a) * eps_pred) / math.sqrt(a)  # posterior mean at t = 0 is x0_hat itself
    frac = (v + 1) / 2
    logvar = frac * math.log(BETA_START) + (1 - frac) * float(torch.log(schedule.posterior_variance[1]))
    ll = _scipy_discretized_ll(x0.numpy(), mean.numpy(), 0.5 * logvar.numpy())
    ref = -ll.reshape(3, -1).mean(1) / math.log(2)
    # The log-likelihoods are O(1..10); the CDF differences lose ~1e-12 relative: 1e-9.
    torch.testing.assert_close(got, torch.from_numpy(ref), rtol=1e-9, atol=1e-9)
    assert torch.all(got > 0)


def test_vlb_mixes_t_zero_and_positive_per_sample(schedule: Schedule) -> None:
    x0, noise, t, x_t = _batch(schedule, [0, 5, 0, 600])
    v = torch.full_like(x0, -1.0)
    both = vlb_terms(schedule, x0, x_t, t, noise, v)
    torch.testing.assert_close(both[[1, 3]], torch.zeros(2, dtype=F64), rtol=0, atol=1e-10)
    alone = vlb_terms(schedule, x0[[0]], x_t[[0]], t[[0]], noise[[0]], v[[0]])
    torch.testing.assert_close(both[0], alone[0], rtol=1e-14, atol=0)


# ------------------------------------------------------------------------------------------------------- hybrid loss


def _loss_inputs(schedule: Schedule, c: int = 3):
    x0, noise, t, x_t = _batch(schedule, [0, 4, 300, 999], (c, 5, 4))
    x0, noise, x_t = x0.float(), noise.float(), x_t.float()
    eps = noise + 0.2 * torch.randn_like(noise)
    v = torch.rand_like(x0) * 2 - 1
    return x0, noise, t, x_t, eps, v


def test_hybrid_loss_mse_and_vlb_terms(schedule: Schedule) -> None:
    x0, noise, t, x_t, eps, v = _loss_inputs(schedule)
    terms = hybrid_loss(schedule, torch.cat([eps, v], 1), x0, x_t, t, noise, vlb_weight=0.5)
    ref_mse = ((noise.double() - eps.double()) ** 2).mean()
    # Float32 mean of 240 squares: relative error a few ulps of float32 -> 1e-6.
    assert float(terms.mse) == pytest.approx(float(ref_mse), rel=1e-6)
    ref_vlb = vlb_terms(schedule, x0.double(), x_t.double(), t, eps.double(), v.double()).mean()
    # Ours evaluates the VLB in float32; the KL at t=999 divides by beta~ ~ 0.02 and the NLL takes logs of
    # CDF differences: 1e-4 relative covers float32 there.
    assert float(terms.vlb) == pytest.approx(float(ref_vlb), rel=1e-4)
    assert float(terms.loss) == pytest.approx(float(terms.mse) + 0.5 * float(terms.vlb), rel=1e-6)
    assert terms.loss.ndim == terms.mse.ndim == terms.vlb.ndim == 0


def test_hybrid_loss_in_float64_is_exact(schedule: Schedule) -> None:
    x0, noise, t, x_t = _batch(schedule, [0, 4, 300, 999], (3, 5, 4))
    eps, v = noise + 0.2 * torch.randn_like(noise), torch.rand_like(x0) * 2 - 1
    terms = hybrid_loss(schedule, torch.cat([eps, v], 1), x0, x_t, t, noise)
    assert terms.loss.dtype == terms.mse.dtype == terms.vlb.dtype == F64  # float64 is not narrowed
    # Same float64 arithmetic by another route: 1e-12 relative.
    assert float(terms.mse) == pytest.approx(float(((noise - eps) ** 2).mean()), rel=1e-12)
    assert float(terms.vlb) == pytest.approx(float(vlb_terms(schedule, x0, x_t, t, eps, v).mean()), rel=1e-12)
    assert float(terms.loss) == pytest.approx(float(terms.mse + terms.vlb), rel=1e-12)


def test_hybrid_loss_eps_offset_enters_the_mse_only(schedule: Schedule) -> None:
    x0, noise, t, x_t, eps, v = _loss_inputs(schedule)
    offset = 0.1 * torch.randn_like(eps)
    out = torch.cat([eps, v], 1)
    plain = hybrid_loss(schedule, out, x0, x_t, t, noise)
    shifted = hybrid_loss(schedule, out, x0, x_t, t, noise, eps_offset=offset)
    ref = ((noise.double() - eps.double() - offset.double()) ** 2).mean()
    assert float(shifted.mse) == pytest.approx(float(ref), rel=1e-6)
    assert float(shifted.mse) != pytest.approx(float(plain.mse), rel=1e-3)
    assert float(shifted.vlb) == float(plain.vlb)


def test_hybrid_loss_without_learned_variance(schedule: Schedule) -> None:
    x0, noise, t, x_t, eps, _ = _loss_inputs(schedule)
    eps = eps.requires_grad_(True)
    terms = hybrid_loss(schedule, eps, x0, x_t, t, noise, learned_variance=False, vlb_weight=3.0)
    ref = ((noise.double() - eps.detach().double()) ** 2).mean()
    assert float(terms.loss.detach()) == pytest.approx(float(ref), rel=1e-6)
    assert float(terms.mse) == float(terms.loss.detach())
    assert float(terms.vlb) == 0.0
    assert terms.loss.requires_grad and not terms.mse.requires_grad


def test_hybrid_loss_vlb_only_trains_the_variance(schedule: Schedule) -> None:
    x0, noise, t, x_t, eps, v = _loss_inputs(schedule)
    c = x0.shape[1]
    out = torch.cat([eps, v], 1).requires_grad_(True)
    terms = hybrid_loss(schedule, out, x0, x_t, t, noise, vlb_weight=1.0)
    (grad,) = torch.autograd.grad(terms.loss, out)
    eps_only = eps.clone().requires_grad_(True)
    mse = (noise - eps_only).square().mean()
    (grad_mse,) = torch.autograd.grad(mse, eps_only)
    # Stop-gradient: the eps half gets exactly the MSE gradient, the same float32 ops -> bitwise close.
    torch.testing.assert_close(grad[:, :c], grad_mse, rtol=1e-6, atol=1e-9)
    assert float(grad[:, c:].abs().sum()) > 0  # the variance half is trained by L_vlb
    # And with vlb_weight = 0 the variance half gets nothing.
    (grad0,) = torch.autograd.grad(hybrid_loss(schedule, out, x0, x_t, t, noise, vlb_weight=0.0).loss, out)
    assert float(grad0[:, c:].abs().sum()) == 0.0


def test_hybrid_loss_scales_vlb_by_t_over_1000() -> None:
    sched = Schedule.linear(500, BETA_START, BETA_END)
    x0, noise, t, x_t = _batch(sched, [0, 3, 499])
    eps, v = noise + 0.1 * torch.randn_like(noise), torch.rand_like(x0) * 2 - 1
    terms = hybrid_loss(sched, torch.cat([eps, v], 1), x0, x_t, t, noise)
    ref = vlb_terms(sched, x0, x_t, t, eps, v).mean() * 0.5
    assert float(terms.vlb) == pytest.approx(float(ref), rel=1e-4)  # float32 evaluation, see above


def test_hybrid_loss_wrong_channel_count_raises(schedule: Schedule) -> None:
    x0, noise, t, x_t, eps, v = _loss_inputs(schedule)
    with pytest.raises(ValueError, match="6 channels, got 3"):
        hybrid_loss(schedule, eps, x0, x_t, t, noise)
    with pytest.raises(ValueError, match="6 channels, got 7"):
        hybrid_loss(schedule, torch.cat([eps, v, v[:, :1]], 1), x0, x_t, t, noise)


# ------------------------------------------------------------------------------------------------------- schedulers


@pytest.mark.parametrize("kind", SCHEDULERS)
@pytest.mark.parametrize("config", ["tiny-b1", "deepfashion-256-full"])
def test_make_scheduler_matches_schedule(kind: str, config: str) -> None:
    cfg = named_config(config).model
    sched = make_scheduler(cfg, kind)
    expected_cls = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "dpm-solver": DPMSolverMultistepScheduler,
                    "unipc": UniPCMultistepScheduler, "euler-ancestral": EulerAncestralDiscreteScheduler}[kind]
    assert isinstance(sched, expected_cls)
    assert sched.config.num_train_timesteps == cfg.num_train_timesteps
    assert sched.config.prediction_type == "epsilon"
    ours = Schedule.from_config(cfg)
    # float32 storage in diffusers: 1e-6 relative (see module docstring).
    torch.testing.assert_close(sched.alphas_cumprod.to(F64), ours.alphas_cumprod, rtol=1e-6, atol=0)


def test_make_scheduler_ddpm_variance_type_follows_learned_variance() -> None:
    assert make_scheduler(ModelConfig(learned_variance=True), "ddpm").config.variance_type == "learned_range"
    assert make_scheduler(ModelConfig(learned_variance=False), "ddpm").config.variance_type == "fixed_small"
    assert make_scheduler(ModelConfig()).config.clip_sample is False


def test_make_scheduler_unknown_name_raises() -> None:
    with pytest.raises(ValueError, match=r"unknown scheduler 'euler'.*ddpm, ddim, dpm-solver"):
        make_scheduler(ModelConfig(), "euler")


# ------------------------------------------------------------------------------------------- parametrizations


def _noisy(schedule: Schedule, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(4, 3, 8, 6, generator=g, dtype=F64) * 2 - 1
    noise = torch.randn(4, 3, 8, 6, generator=g, dtype=F64)
    t = torch.tensor([0, 10, 500, 999])
    return x0, noise, t, q_sample(schedule, x0, t, noise)


@pytest.mark.parametrize("kind", PREDICTION_TYPES)
def test_parametrizations_convert_to_eps_and_back_exactly(schedule: Schedule, kind: str) -> None:
    x0, noise, t, x_t = _noisy(schedule)
    target = prediction_target(schedule, x0, noise, t, kind)
    torch.testing.assert_close(eps_from_output(schedule, target, x_t, t, kind), noise, rtol=0, atol=1e-9)
    torch.testing.assert_close(output_from_eps(schedule, noise, x_t, t, kind), target, rtol=0, atol=1e-9)
    # the target's y~_0 is y_0 itself (Tweedie from the exact eps)
    torch.testing.assert_close(predict_x0(schedule, x_t, t, eps_from_output(schedule, target, x_t, t, kind)), x0,
                               rtol=0, atol=1e-9)


def test_known_targets(schedule: Schedule) -> None:
    x0, noise, t, _ = _noisy(schedule)
    torch.testing.assert_close(prediction_target(schedule, x0, noise, t, "sample"), x0)
    a = schedule.alphas_cumprod[t].sqrt().view(-1, 1, 1, 1)
    s = (1 - schedule.alphas_cumprod[t]).sqrt().view(-1, 1, 1, 1)
    torch.testing.assert_close(prediction_target(schedule, x0, noise, t, "v_prediction"), a * noise - s * x0)
    with pytest.raises(ValueError, match="prediction_type"):
        prediction_target(schedule, x0, noise, t, "x0")


@pytest.mark.parametrize("kind", PREDICTION_TYPES)
def test_hybrid_loss_in_each_parametrization(schedule: Schedule, kind: str) -> None:
    """The exact output gives L_mse = 0 and the same L_vlb as the exact eps; the eq. 15 offset is applied in eps."""
    x0, noise, t, x_t = _noisy(schedule)
    v = torch.zeros_like(x0)
    exact = prediction_target(schedule, x0, noise, t, kind)
    terms = hybrid_loss(schedule, torch.cat([exact, v], 1), x0, x_t, t, noise, prediction_type=kind)
    ref = hybrid_loss(schedule, torch.cat([noise, v], 1), x0, x_t, t, noise)
    assert float(terms.mse) < 1e-18
    torch.testing.assert_close(terms.vlb, ref.vlb, rtol=1e-9, atol=1e-12)
    offset = 0.1 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(3), dtype=F64)
    # an output meaning eps - offset becomes exact once the offset is added: L_mse = 0 again
    shifted = output_from_eps(schedule, noise - offset, x_t, t, kind)
    terms = hybrid_loss(schedule, torch.cat([shifted, v], 1), x0, x_t, t, noise, eps_offset=offset,
                        prediction_type=kind)
    assert float(terms.mse) < 1e-18
    wrong = hybrid_loss(schedule, torch.cat([shifted, v], 1), x0, x_t, t, noise, prediction_type=kind)
    assert float(wrong.mse) > 1e-6


@pytest.mark.parametrize("kind", PREDICTION_TYPES)
def test_ddim_with_an_exact_denoiser_ends_at_y0_in_each_parametrization(kind: str) -> None:
    """make_scheduler passes the parametrization: an oracle output in that space walks DDIM to y_0."""
    from dataclasses import replace

    cfg = replace(named_config("tiny-b1").model, prediction_type=kind)
    scheduler = make_scheduler(cfg, "ddim")
    assert scheduler.config.prediction_type == kind and scheduler.config.clip_sample  # pixel space clips y~_0
    schedule = Schedule.from_config(cfg)
    x0 = torch.rand(2, 3, 8, 6, generator=torch.Generator().manual_seed(1)) * 1.8 - 0.9
    y = torch.randn(x0.shape, generator=torch.Generator().manual_seed(2))
    scheduler.set_timesteps(20)
    for step_t in scheduler.timesteps:
        tt = step_t.expand(2)
        eps = (y - schedule.at(schedule.alphas_cumprod, tt, y).sqrt() * x0) \
            / (1 - schedule.at(schedule.alphas_cumprod, tt, y)).sqrt()
        step = scheduler.step(output_from_eps(schedule, eps, y, tt, kind), step_t, y)
        torch.testing.assert_close(step.pred_original_sample, x0, rtol=0, atol=1e-3)  # y~_0 at every step
        y = step.prev_sample
    # the last DDIM step lands on t = 0 (abar_0 < 1: set_alpha_to_one False), i.e. y_0 up to its 1% noise
    torch.testing.assert_close(y, x0, rtol=0, atol=0.05)


def test_latent_schedulers_do_not_clip() -> None:
    cfg = named_config("deepfashion-256-b1").model
    assert not make_scheduler(cfg, "ddim").config.clip_sample
    assert not make_scheduler(cfg, "ddpm").config.clip_sample
