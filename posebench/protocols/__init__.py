"""Protocols (what is evaluated) and metric profiles (how), as versioned YAML files (style rule R3).

A protocol pins the dataset, split, resolution, FID real sets and the profiles that apply to it; a profile
pins every choice that moves a number (feature network and weights, resize chains, SSIM variant, LPIPS
net and input range, drop-last). Both carry a name, a version and a content hash, which go into cache keys
and results.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from posebench.protocols.specs import (
    SECTIONS,
    Chain,
    ProfileError,
    ResizeStep,
    Section,
    parse_section,
    parse_steps,
    section_as_dict,
)
from posebench.registry import Registry
from posebench.utils.keys import read_yaml_mapping

__all__ = ["PROFILES", "PROTOCOLS", "Profile", "ProfileError", "Protocol", "ResizeStep", "get_profile",
           "get_protocol", "parse_profile", "parse_protocol"]

PROTOCOL_KINDS = ("image", "pose")
POSE_PROFILE_NAMES = ("clean", "humansd")  # the files of pose_profiles/ (posebench.protocols.pose_profile)
_PROFILE_KEYS = ("name", "version", "description", "changelog", "resize_predictions", "ground_truth_chain",
                 "prediction_chain", "metrics")
# sections with no chain of their own: their images are the `fid` section's
_FEATURES_OF = {"kid": "fid"}


@dataclass(frozen=True)
class Profile:
    """A metric profile: how images are prepared and scored, per metric (typed sections,
    `posebench.protocols.specs`)."""

    name: str
    version: int
    description: str
    resize_predictions: bool
    ground_truth_chain: Chain
    metrics: dict[str, Any]  # metric name -> its section (FIDSection, SSIMSection, ...)
    changelog: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    sha256: str = ""
    prediction_chain: Chain | None = None  # None: predictions follow the ground-truth chain

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    def section(self, metric: str) -> Any:
        """The typed section of `metric`; a metric the profile does not define is an error naming the profile."""
        if metric not in self.metrics:
            raise ProfileError(f"profile {self.name} defines no metric {metric!r} (it has "
                               f"{', '.join(self.metrics)}); add a `{metric}` section or drop the metric")
        return self.metrics[metric]

    def chain(self, metric: str) -> Chain:
        """Resize steps that bring a ground-truth (or FID real-set) image to what `metric` is computed on."""
        own = self.metrics.get(_FEATURES_OF.get(metric, metric))
        if isinstance(own, Section) and own.chain is not None:
            return own.chain
        return self.ground_truth_chain

    def prediction_chain_for(self, metric: str) -> Chain:
        """Resize steps for a generated image: the metric's `prediction_chain`, else its own `chain` (the same
        preparation as the ground truth), else the profile's `prediction_chain`, else its ground-truth chain."""
        own = self.metrics.get(_FEATURES_OF.get(metric, metric))
        if isinstance(own, Section):
            if own.prediction_chain is not None:
                return own.prediction_chain
            if own.chain is not None:
                return own.chain
        return self.prediction_chain if self.prediction_chain is not None else self.ground_truth_chain

    def as_dict(self) -> dict[str, Any]:
        """The resolved profile as plain values (`posebench profiles show`)."""
        def steps(chain: Chain | None) -> list[dict[str, Any]] | None:
            return None if chain is None else [{"resize": s.method, "size": list(s.size) if s.size else "protocol",
                                                "output": s.output} for s in chain]
        out = {"name": self.name, "version": self.version, "description": self.description,
               "resize_predictions": self.resize_predictions, "ground_truth_chain": steps(self.ground_truth_chain),
               "prediction_chain": steps(self.prediction_chain),
               "metrics": {m: section_as_dict(sec) for m, sec in self.metrics.items()},
               "changelog": list(self.changelog), "sha256": self.sha256}
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class Protocol:
    name: str
    version: int
    dataset: str
    split: str
    resolution: tuple[int, int]
    real_sets: tuple[str, ...]
    default_profile: str
    profiles: tuple[str, ...]
    metrics: tuple[str, ...]
    pinned: dict[str, Any]
    masked_metrics: tuple[str, ...] = ()  # metrics also reported inside the target-pose mask (Market)
    sha256: str = ""
    kind: str = "image"  # "image" (generated vs target image) or "pose" (pose estimator on the generated image)
    pose_profiles: tuple[str, ...] = ()  # pose-metric profiles (kind pose; POSE_PROFILE_NAMES)
    default_pose_profile: str | None = None

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"


def content_hash(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _need(data: dict[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise ProfileError(f"{where}: missing key '{key}'")
    return data[key]


def parse_profile(data: dict[str, Any], where: str) -> Profile:
    unknown = sorted(set(data) - set(_PROFILE_KEYS))
    if unknown:
        raise ProfileError(f"{where}: unknown keys {unknown}; a profile has {', '.join(_PROFILE_KEYS)}")
    raw_metrics = _need(data, "metrics", where)
    if not isinstance(raw_metrics, dict) or not raw_metrics:
        raise ProfileError(f"{where}.metrics: expected a non-empty mapping of metric sections")
    unknown = sorted(set(raw_metrics) - set(SECTIONS))
    if unknown:
        raise ProfileError(f"{where}: unknown metrics {unknown}; known: {', '.join(SECTIONS)}")
    if "kid" in raw_metrics and "fid" not in raw_metrics:
        raise ProfileError(f"{where}.metrics.kid: KID uses the fid section's extractor and chains; add a fid section")
    version = _need(data, "version", where)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ProfileError(f"{where}.version: expected an integer >= 1, got {version!r}")
    resize_predictions = _need(data, "resize_predictions", where)
    if not isinstance(resize_predictions, bool):
        raise ProfileError(f"{where}.resize_predictions: expected true or false, got {resize_predictions!r}")
    changelog = data.get("changelog", [])
    if not isinstance(changelog, list) or not all(isinstance(c, dict) for c in changelog):
        raise ProfileError(f"{where}.changelog: expected a list of {{version, date, change}} mappings")
    name = _need(data, "name", where)
    if not isinstance(name, str) or not name:
        raise ProfileError(f"{where}.name: expected a non-empty string")
    return Profile(
        name=name,
        version=version,
        description=str(data.get("description", "")).strip(),
        resize_predictions=resize_predictions,
        ground_truth_chain=parse_steps(_need(data, "ground_truth_chain", where), f"{where}.ground_truth_chain"),
        metrics={m: parse_section(m, raw, f"{where}.metrics.{m}") for m, raw in raw_metrics.items()},
        changelog=tuple(changelog),
        sha256=content_hash(data),
        prediction_chain=(parse_steps(data["prediction_chain"], f"{where}.prediction_chain")
                          if "prediction_chain" in data else None),
    )


def _pose_fields(data: dict[str, Any], where: str) -> tuple[str, tuple[str, ...], str | None]:
    """`kind`, `pose_profiles` and `default_pose_profile` (optional keys; kind pose needs the other two)."""
    kind = data.get("kind", "image")
    if kind not in PROTOCOL_KINDS:
        raise ProfileError(f"{where}: kind must be one of {', '.join(PROTOCOL_KINDS)}, got {kind!r}")
    if kind == "image":
        if "pose_profiles" in data or "default_pose_profile" in data:
            raise ProfileError(f"{where}: pose_profiles / default_pose_profile need kind: pose")
        return kind, (), None
    raw = _need(data, "pose_profiles", where)
    if not isinstance(raw, list) or not raw or any(p not in POSE_PROFILE_NAMES for p in raw):
        raise ProfileError(f"{where}: pose_profiles must be a non-empty list of {', '.join(POSE_PROFILE_NAMES)}")
    default = _need(data, "default_pose_profile", where)
    if default not in raw:
        raise ProfileError(f"{where}: default_pose_profile {default!r} is not among pose_profiles {raw}")
    return kind, tuple(raw), default


def parse_protocol(data: dict[str, Any], where: str) -> Protocol:
    res = _need(data, "resolution", where)
    if not (isinstance(res, list) and len(res) == 2 and all(isinstance(v, int) and v > 0 for v in res)):
        raise ProfileError(f"{where}: resolution must be [H, W]")
    kind, pose_profiles, default_pose = _pose_fields(data, where)
    return Protocol(
        name=_need(data, "name", where), version=int(_need(data, "version", where)),
        dataset=_need(data, "dataset", where), split=_need(data, "split", where),
        resolution=(res[0], res[1]), real_sets=tuple(_need(data, "real_sets", where)),
        default_profile=_need(data, "default_profile", where), profiles=tuple(_need(data, "profiles", where)),
        metrics=tuple(_need(data, "metrics", where)), pinned=dict(data.get("pinned", {})),
        masked_metrics=_masked(data.get("masked_metrics", []), where), sha256=content_hash(data),
        kind=kind, pose_profiles=pose_profiles, default_pose_profile=default_pose,
    )


def _masked(raw: Any, where: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or any(m not in ("ssim", "lpips", "is") for m in raw):
        raise ProfileError(f"{where}: masked_metrics must be a list of ssim, lpips and is")
    return tuple(raw)


def _load_yaml(path: Path | Any) -> dict[str, Any]:
    return read_yaml_mapping(path, ProfileError, expected="a mapping at the top level")


PROFILES: Registry[Profile] = Registry("metric profile")
PROTOCOLS: Registry[Protocol] = Registry("protocol")


def _register_builtins() -> None:
    base = resources.files("posebench.protocols")
    for entry in sorted(base.joinpath("profiles").iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yaml"):
            prof = parse_profile(_load_yaml(entry), f"profiles/{entry.name}")
            PROFILES.register(prof.name, prof)
    for entry in sorted(base.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yaml"):
            proto = parse_protocol(_load_yaml(entry), entry.name)
            PROTOCOLS.register(proto.name, proto)


def get_profile(name_or_path: str) -> Profile:
    """A built-in profile by name, or a profile YAML file by path (custom profiles)."""
    path = Path(name_or_path)
    if name_or_path.endswith((".yaml", ".yml")) and path.is_file():
        return parse_profile(_load_yaml(path), str(path))
    return PROFILES.get(name_or_path)


def get_protocol(name: str) -> Protocol:
    return PROTOCOLS.get(name)


_register_builtins()
