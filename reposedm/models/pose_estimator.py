"""The guidance pose estimator as a diffusers pipeline component (`pose_estimator`).

posebench's estimators (`posebench.pose.base.PoseEstimator`) are plain nn.Modules built from a registry name; a
diffusers pipeline can only save and reload ModelMixin + ConfigMixin components. `PoseEstimatorComponent` wraps
one: its config holds the registry name, the constructor arguments of the estimator's architecture and the run's
guidance settings (what `reposedm.guidance.PoseField` needs), its weights go to safetensors like any diffusers
model. Reloading builds the architecture through the registry and then loads the saved weights over it.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import torch.nn as nn
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config

from reposedm.config import GuidanceConfig
from reposedm.guidance import PoseField

_PLAIN = (bool, int, float, str)


def _init_parameters(obj: Any) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(obj).parameters)
    except (TypeError, ValueError):
        return {}


def architecture_of(module: nn.Module) -> dict[str, Any]:
    """The constructor arguments of an estimator's class that the instance records (an attribute, or its
    `config()`, of the same name and a plain type): enough to rebuild the architecture before loading weights."""
    params = _init_parameters(type(module).__init__)
    recorded = dict(module.config()) if callable(getattr(module, "config", None)) else {}
    for name in params:
        if name not in recorded and isinstance(getattr(module, name, None), _PLAIN):
            recorded[name] = getattr(module, name)
    return {k: v for k, v in recorded.items() if k in params and k != "self" and isinstance(v, _PLAIN)}


def _build_architecture(name: str, architecture: dict[str, Any]) -> nn.Module:
    """The registered estimator `name`, passing the architecture arguments its registry factory accepts."""
    from posebench.pose.base import ESTIMATORS

    entry = ESTIMATORS.get(name)
    module_name, _, attr = entry.target.partition(":")
    import importlib

    factory = getattr(importlib.import_module(module_name), attr)
    params = _init_parameters(factory)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in architecture.items() if takes_any or k in params}
    return entry.build(None, **kwargs)


def guidance_settings(cfg: GuidanceConfig) -> dict[str, Any]:
    """A GuidanceConfig as JSON-able settings (the estimator's own fields are the component's)."""
    data = dataclasses.asdict(cfg)
    data.pop("estimator_weights", None)  # the weights are the component's safetensors now
    return data


class PoseEstimatorComponent(ModelMixin, ConfigMixin):
    """A posebench pose estimator + the guidance settings of the run, saveable as a pipeline component."""

    config_name = "config.json"
    ignore_for_config = ["module"]

    @register_to_config
    def __init__(self, estimator_name: str = "tiny-random", architecture: dict[str, Any] | None = None,
                 guidance: dict[str, Any] | None = None, module: nn.Module | None = None) -> None:
        super().__init__()
        # `module`: an estimator already built with its weights (wrapping); None: the bare architecture, whose
        # weights `from_pretrained` then loads. (The config says `estimator_name`: a config key named like a
        # submodule would shadow it.)
        self.estimator = module if module is not None else _build_architecture(estimator_name, architecture or {})
        self.estimator.eval().requires_grad_(False)

    @classmethod
    def from_estimator(cls, module: nn.Module, cfg: GuidanceConfig) -> PoseEstimatorComponent:
        return cls(estimator_name=cfg.estimator, architecture=architecture_of(module), guidance=guidance_settings(cfg),
                   module=module)

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> PoseEstimatorComponent:
        # An estimator is arbitrary posebench code (seeded inits, weight conversions): build it on real tensors,
        # not on diffusers' empty "meta" ones, then load the saved weights over it.
        kwargs["low_cpu_mem_usage"] = False
        kwargs.pop("device_map", None)
        return super().from_pretrained(*args, **kwargs)

    @property
    def guidance_config(self) -> GuidanceConfig:
        """The recorded guidance settings (fields a newer or older GuidanceConfig lacks are ignored)."""
        known = {f.name for f in dataclasses.fields(GuidanceConfig)}
        saved = {k: v for k, v in (self.config.guidance or {}).items() if k in known}
        return GuidanceConfig(**{**saved, "estimator": self.config.estimator_name, "enabled": True})

    def pose_field(self) -> PoseField:
        """G_phi of eq. 11 over this estimator, with the recorded settings."""
        return PoseField(self.estimator, self.guidance_config)

    def forward(self, images: Any) -> Any:
        return self.estimator(images)
