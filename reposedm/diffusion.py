"""DDPM with learned variance: schedules (diffusers schedulers) and the hybrid loss L = L_mse + L_vlb.

Improved DDPM (Nichol & Dhariwal 2021), as RePoseDM (sec. 3.1) and PIDM train:
  notation: y_0 -> x0 (clean latent), y_t -> x_t, eps -> noise, eps_theta -> eps_pred,
  abar_t -> alphas_cumprod[t], v -> var_interp (the second half of the U-Net output, in [-1, 1]).
  1. y_t = sqrt(abar_t) y_0 + sqrt(1 - abar_t) eps                              (q_sample)
  2. L_mse = || eps - eps_theta(y_t, t) ||^2                                     (mean over elements)
  3. Sigma_theta = exp(v' log beta_t + (1 - v') log beta~_t), v' = (v + 1) / 2  (learned range)
  4. L_vlb = KL(q(y_{t-1} | y_t, y_0) || p_theta(y_{t-1} | y_t)) for t > 0, the decoder NLL at t = 0,
     in bits per dimension, with the mean of p_theta built from a stop-gradient eps_theta so that L_vlb
     only trains the variance (improved DDPM sec. 3.1), scaled by T / 1000 as its code does.
Schedule arithmetic runs in float64 and is cast at the end.
"""

from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, SchedulerMixin

from reposedm.config import ConfigError, ModelConfig

# Short names; any other diffusers scheduler is named by its class (`make_scheduler`).
SCHEDULERS = ("ddpm", "ddim", "dpm-solver", "unipc", "euler-ancestral")
_SHORT_CLASSES = {"ddpm": "DDPMScheduler", "ddim": "DDIMScheduler", "dpm-solver": "DPMSolverMultistepScheduler",
                  "unipc": "UniPCMultistepScheduler", "euler-ancestral": "EulerAncestralDiscreteScheduler"}
# The schedule every scheduler is put on (the model's training schedule), by diffusers' config names.
_SCHEDULE_KEYS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule")


class SchedulerError(ConfigError, ValueError):
    """A scheduler name that names no usable diffusers scheduler (a ValueError too, for older callers)."""


def _on_training_schedule(name: str) -> bool:
    """Whether diffusers' class `name` is importable here and takes the training schedule (betas and T)."""
    import diffusers

    cls = getattr(diffusers, name, None)
    if not isinstance(cls, type) or not issubclass(cls, SchedulerMixin):  # missing, or a dummy (no torchsde)
        return False
    params = inspect.signature(cls.__init__).parameters
    return all(k in params for k in _SCHEDULE_KEYS)


@functools.cache
def compatible_schedulers() -> tuple[str, ...]:
    """diffusers' schedulers for noise-prediction U-Nets (DDPMScheduler's own `_compatibles`) that can be put on
    the model's training schedule here (EDM-style sigma schedulers cannot; a missing optional dependency)."""
    return tuple(n for n in DDPMScheduler._compatibles if _on_training_schedule(n))


def _unknown(kind: str) -> SchedulerError:
    import difflib

    names = [*SCHEDULERS, *compatible_schedulers()]
    # a fragment of a name ("euler") first, then spelling mistakes ("unipcc")
    near = [n for n in names if kind.lower() in n.lower()] if len(kind) >= 3 else []
    near += [n for n in difflib.get_close_matches(kind, names, n=2, cutoff=0.6) if n not in near]
    hint = f"; did you mean {' or '.join(repr(n) for n in near[:3])}?" if near else ""
    return SchedulerError(f"unknown scheduler {kind!r}{hint} (short names: {', '.join(SCHEDULERS)}; or a diffusers "
                          f"scheduler class: {', '.join(compatible_schedulers())})")


def scheduler_class(kind: str) -> type[SchedulerMixin]:
    """The diffusers class of a short name (`SCHEDULERS`) or a class name (`compatible_schedulers`).

    Raises:
        SchedulerError: unknown (with did-you-mean and the short names), or a diffusers scheduler that cannot
            sample this model (not DDPM-family, not on its training schedule, an optional dependency missing).
    """
    import diffusers

    name = _SHORT_CLASSES.get(kind, kind)
    if name in compatible_schedulers():
        return getattr(diffusers, name)
    if name.endswith("Scheduler") and hasattr(diffusers, name):
        raise SchedulerError(f"diffusers scheduler {kind!r} cannot sample this model (not a DDPM-family scheduler "
                             "on its betas, or an optional dependency is missing); use one of "
                             f"{', '.join(SCHEDULERS)} or {', '.join(compatible_schedulers())}")
    raise _unknown(kind)


def make_scheduler(cfg: ModelConfig, kind: str = "ddpm") -> SchedulerMixin:
    """A diffusers scheduler on the model's training schedule (T, linear betas, its parametrization).

    `kind`: a short name (`SCHEDULERS`) or a diffusers scheduler class name (`compatible_schedulers`), e.g.
    "UniPCMultistepScheduler"; arguments a scheduler does not take are left out, as `from_config` would.
    """
    cls = scheduler_class(kind)
    common = dict(num_train_timesteps=cfg.num_train_timesteps, beta_start=cfg.beta_start, beta_end=cfg.beta_end,
                  beta_schedule="linear", prediction_type=cfg.prediction_type)
    # In pixel space y~_0 is clipped to [-1, 1] at every step, as improved DDPM / PIDM sample
    # (`clip_denoised=True`); latents have no fixed range.
    clip = cfg.latent == "pixel"
    if cls is DDPMScheduler:
        variance = "learned_range" if cfg.learned_variance else "fixed_small"
        return DDPMScheduler(**common, variance_type=variance, clip_sample=clip)
    if cls is DDIMScheduler:
        return DDIMScheduler(**common, clip_sample=clip, set_alpha_to_one=False, steps_offset=1)
    if cls is DPMSolverMultistepScheduler:
        return DPMSolverMultistepScheduler(**common)
    params = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in common.items() if k in params})


@dataclass
class Schedule:
    """Per-timestep constants of the forward process, float64, shape (T,)."""

    betas: torch.Tensor
    alphas_cumprod: torch.Tensor
    alphas_cumprod_prev: torch.Tensor
    posterior_variance: torch.Tensor
    posterior_log_variance_clipped: torch.Tensor
    posterior_mean_coef1: torch.Tensor
    posterior_mean_coef2: torch.Tensor

    @classmethod
    def linear(cls, num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
        return cls.from_betas(torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64))

    @classmethod
    def from_betas(cls, betas: torch.Tensor) -> Schedule:
        abar = torch.cumprod(1.0 - betas, dim=0)
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        post_var = betas * (1.0 - abar_prev) / (1.0 - abar)
        # log(beta~_0) = log 0: improved DDPM clips it to beta~_1 (the t = 0 term is the decoder NLL anyway).
        post_log_var = torch.log(torch.cat([post_var[1:2], post_var[1:]]))
        coef1 = betas * torch.sqrt(abar_prev) / (1.0 - abar)
        coef2 = (1.0 - abar_prev) * torch.sqrt(1.0 - betas) / (1.0 - abar)
        return cls(betas, abar, abar_prev, post_var, post_log_var, coef1, coef2)

    @classmethod
    def scaled_linear(cls, num_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012,
                      ) -> Schedule:
        """Stable Diffusion's schedule: betas linear in sqrt (LDM's "linear", diffusers' "scaled_linear")."""
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_timesteps, dtype=torch.float64) ** 2
        return cls.from_betas(betas)

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> Schedule:
        return cls.linear(cfg.num_train_timesteps, cfg.beta_start, cfg.beta_end)

    @property
    def num_timesteps(self) -> int:
        return int(self.betas.shape[0])

    def at(self, values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """values[t] shaped (B, 1, 1, 1) in `like`'s dtype and device."""
        return values.to(like.device)[t].to(like.dtype).view(-1, *([1] * (like.ndim - 1)))


def q_sample(schedule: Schedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Step 1: y_t = sqrt(abar_t) y_0 + sqrt(1 - abar_t) eps."""
    abar = schedule.at(schedule.alphas_cumprod, t, x0)
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def predict_x0(schedule: Schedule, x_t: torch.Tensor, t: torch.Tensor, eps_pred: torch.Tensor) -> torch.Tensor:
    """Tweedie's estimate y~_0 = (y_t - sqrt(1 - abar_t) eps_theta) / sqrt(abar_t) (paper eq. 10)."""
    abar = schedule.at(schedule.alphas_cumprod, t, x_t)
    return (x_t - (1 - abar).sqrt() * eps_pred) / abar.sqrt()


# Parametrizations of the denoiser output (diffusers' names). The paper predicts eps; "sample" (y_0) and
# "v_prediction" (v = sqrt(abar) eps - sqrt(1 - abar) y_0) weight the high-noise steps more, which is what a
# few hundred CPU steps need (docs/model.md, "Parametrization"). Everything outside the loss works in eps.
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


def _coefs(schedule: Schedule, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sqrt(abar_t), sqrt(1 - abar_t)) shaped like `like`."""
    abar = schedule.at(schedule.alphas_cumprod, t, like)
    return abar.sqrt(), (1 - abar).sqrt()


def eps_from_output(schedule: Schedule, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
                    prediction_type: str = "epsilon") -> torch.Tensor:
    """eps_theta from the denoiser's output in its parametrization (y_t = a y_0 + s eps)."""
    if prediction_type == "epsilon":
        return output
    a, s = _coefs(schedule, t, x_t)
    if prediction_type == "sample":
        return (x_t - a * output) / s
    if prediction_type == "v_prediction":
        return s * x_t + a * output
    raise ValueError(f"unknown prediction_type {prediction_type!r}; choose one of {', '.join(PREDICTION_TYPES)}")


def output_from_eps(schedule: Schedule, eps: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
                    prediction_type: str = "epsilon") -> torch.Tensor:
    """The inverse of `eps_from_output`: the denoiser output that means `eps` at (y_t, t)."""
    if prediction_type == "epsilon":
        return eps
    a, s = _coefs(schedule, t, x_t)
    if prediction_type == "sample":
        return (x_t - s * eps) / a
    if prediction_type == "v_prediction":
        return (eps - s * x_t) / a
    raise ValueError(f"unknown prediction_type {prediction_type!r}; choose one of {', '.join(PREDICTION_TYPES)}")


def prediction_target(schedule: Schedule, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
                      prediction_type: str = "epsilon") -> torch.Tensor:
    """What L_mse regresses the output onto: eps, y_0 or v = sqrt(abar) eps - sqrt(1 - abar) y_0."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "sample":
        return x0
    if prediction_type == "v_prediction":
        a, s = _coefs(schedule, t, x0)
        return a * noise - s * x0
    raise ValueError(f"unknown prediction_type {prediction_type!r}; choose one of {', '.join(PREDICTION_TYPES)}")


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log p(x) of data in [-1, 1] quantized to 256 bins under N(mean, exp(log_scale)^2), elementwise.

    The edge bins take the tails (x = -1 gets (-inf, -1 + 1/255], x = 1 gets [1 - 1/255, inf)).
    """
    centered = x - mean
    inv_std = torch.exp(-log_scale)
    cdf_plus = _std_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = _std_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    cdf_delta = cdf_plus - cdf_min
    return torch.where(x < -0.999, log_cdf_plus,
                       torch.where(x > 0.999, log_one_minus_cdf_min, torch.log(cdf_delta.clamp(min=1e-12))))


def model_log_variance(schedule: Schedule, t: torch.Tensor, var_interp: torch.Tensor) -> torch.Tensor:
    """Step 3: log Sigma_theta from v in [-1, 1] (learned range between beta~_t and beta_t)."""
    min_log = schedule.at(schedule.posterior_log_variance_clipped, t, var_interp)
    max_log = schedule.at(torch.log(schedule.betas), t, var_interp)
    frac = (var_interp + 1) / 2
    return frac * max_log + (1 - frac) * min_log


def vlb_terms(schedule: Schedule, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, eps_pred: torch.Tensor,
              var_interp: torch.Tensor) -> torch.Tensor:
    """Step 4: per-sample L_vlb in bits per dimension, (B,)."""
    # q(y_{t-1} | y_t, y_0): the true posterior.
    true_mean = schedule.at(schedule.posterior_mean_coef1, t, x0) * x0 \
        + schedule.at(schedule.posterior_mean_coef2, t, x0) * x_t
    true_logvar = schedule.at(schedule.posterior_log_variance_clipped, t, x0)
    # p_theta(y_{t-1} | y_t): the mean from eps_theta (through y~_0), the learned variance.
    x0_pred = predict_x0(schedule, x_t, t, eps_pred)
    model_mean = schedule.at(schedule.posterior_mean_coef1, t, x0) * x0_pred \
        + schedule.at(schedule.posterior_mean_coef2, t, x0) * x_t
    model_logvar = model_log_variance(schedule, t, var_interp)
    kl = normal_kl(true_mean, true_logvar, model_mean, model_logvar).flatten(1).mean(1) / math.log(2.0)
    nll = -discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_logvar).flatten(1).mean(1) / math.log(2.0)
    return torch.where(t == 0, nll, kl)


def _wide(x: torch.Tensor) -> torch.Tensor:
    """Losses in at least float32 (bf16/fp16 activations are upcast; float64 stays float64 for checks)."""
    return x if x.dtype == torch.float64 else x.float()


@dataclass
class LossTerms:
    loss: torch.Tensor  # scalar, what is optimized
    mse: torch.Tensor  # scalar
    vlb: torch.Tensor  # scalar (0 without learned variance)


def hybrid_loss(schedule: Schedule, model_output: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor,
                t: torch.Tensor, noise: torch.Tensor, *, learned_variance: bool = True, vlb_weight: float = 1.0,
                eps_offset: torch.Tensor | None = None, prediction_type: str = "epsilon") -> LossTerms:
    """L = L_mse + vlb_weight * L_vlb (steps 2 and 4).

    Args:
        model_output: U-Net output, (B, 2C, h, w) with learned variance (prediction, v), else (B, C, h, w).
        eps_offset: added to eps_theta inside L_mse only: the pose-guidance term sqrt(1 - abar_t) grad G
            of eq. 15 (eps~ = eps_theta + offset; for other parametrizations the output that means eps~).
        prediction_type: what the output predicts (`PREDICTION_TYPES`); L_mse is taken in that space.
    """
    c = x0.shape[1]
    if learned_variance:
        if model_output.shape[1] != 2 * c:
            raise ValueError(f"learned variance needs a model output of {2 * c} channels, got {model_output.shape[1]}")
        pred, var_interp = model_output[:, :c], model_output[:, c:]
    else:
        pred, var_interp = model_output, None
    if eps_offset is not None:
        eps = eps_from_output(schedule, pred, x_t, t, prediction_type)
        pred = output_from_eps(schedule, eps + eps_offset, x_t, t, prediction_type)
    target = prediction_target(schedule, x0, noise, t, prediction_type)
    mse = (_wide(target) - _wide(pred)).square().mean()
    if var_interp is None:
        return LossTerms(mse, mse.detach(), torch.zeros((), device=mse.device))
    # Stop-gradient on the mean: L_vlb trains only the variance.
    eps_pred = eps_from_output(schedule, model_output[:, :c].detach(), x_t.detach(), t, prediction_type)
    vlb = vlb_terms(schedule, _wide(x0), _wide(x_t), t, _wide(eps_pred), _wide(var_interp))
    vlb = vlb.mean() * (schedule.num_timesteps / 1000.0)
    return LossTerms(mse + vlb_weight * vlb, mse.detach(), vlb.detach())
