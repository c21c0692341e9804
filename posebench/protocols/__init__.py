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

from posebench.errors import PosebenchError
from posebench.images import METHOD_OUTPUTS  # resize methods and the outputs each can give
from posebench.registry import Registry
from posebench.utils.keys import read_yaml_mapping

RESIZE_METHODS = tuple(METHOD_OUTPUTS)
METRIC_NAMES = ("fid", "kid", "ssim", "lpips", "psnr")
SSIM_WINDOWS = ("gaussian", "uniform")
LPIPS_RANGES = ("minus1_1", "zero_1_normalize", "zero_1_raw")
PROTOCOL_KINDS = ("image", "pose")
POSE_PROFILE_NAMES = ("clean", "humansd")  # the files of pose_profiles/ (posebench.protocols.pose_profile)


class ProfileError(PosebenchError):
    """A protocol or profile file that does not follow the schema."""


@dataclass(frozen=True)
class ResizeStep:
    method: str
    size: tuple[int, int] | None  # None = the protocol resolution
    output: str = "uint8"  # posebench.images.RESIZE_OUTPUTS: uint8 | uint8-truncate | float32

    def resolve(self, resolution: tuple[int, int]) -> tuple[str, tuple[int, int], str]:
        return self.method, self.size or resolution, self.output


@dataclass(frozen=True)
class Profile:
    name: str
    version: int
    description: str
    resize_predictions: bool
    ground_truth_chain: tuple[ResizeStep, ...]
    metrics: dict[str, dict[str, Any]]
    changelog: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    sha256: str = ""
    prediction_chain: tuple[ResizeStep, ...] | None = None  # None: predictions follow the ground-truth chain

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    def chain(self, metric: str) -> tuple[ResizeStep, ...]:
        """Resize steps that bring a ground-truth (or FID real-set) image to what `metric` is computed on."""
        spec = self.metrics.get(metric, {})
        return tuple(_steps(spec["chain"], f"{self.name}.metrics.{metric}.chain")) if "chain" in spec \
            else self.ground_truth_chain

    def prediction_chain_for(self, metric: str) -> tuple[ResizeStep, ...]:
        """Resize steps for a generated image: the metric's `prediction_chain`, else its own `chain` (the same
        preparation as the ground truth), else the profile's `prediction_chain`, else its ground-truth chain."""
        spec = self.metrics.get(metric, {})
        if "prediction_chain" in spec:
            return tuple(_steps(spec["prediction_chain"], f"{self.name}.metrics.{metric}.prediction_chain"))
        if "chain" in spec:
            return self.chain(metric)
        return self.prediction_chain if self.prediction_chain is not None else self.ground_truth_chain


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


def _hash(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _need(data: dict[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise ProfileError(f"{where}: missing key '{key}'")
    return data[key]


def _steps(raw: Any, where: str) -> list[ResizeStep]:
    if not isinstance(raw, list):
        raise ProfileError(f"{where}: expected a list of resize steps")
    out = []
    for i, step in enumerate(raw):
        if not isinstance(step, dict):
            raise ProfileError(f"{where}[{i}]: expected a mapping like {{resize: pil-bicubic, size: protocol}}")
        unknown = set(step) - {"resize", "size", "output"}
        if unknown:
            raise ProfileError(f"{where}[{i}]: unknown keys {sorted(unknown)}; a step has resize, size, output")
        method = _need(step, "resize", f"{where}[{i}]")
        if method not in RESIZE_METHODS:
            raise ProfileError(f"{where}[{i}]: unknown resize {method!r}; known: {', '.join(RESIZE_METHODS)}")
        output = step.get("output", "uint8")
        if output not in METHOD_OUTPUTS[method]:
            raise ProfileError(f"{where}[{i}]: resize {method} cannot give output {output!r}; it gives "
                               f"{', '.join(METHOD_OUTPUTS[method])}")
        if out and out[-1].output == "float32" and not method.startswith("cv2"):
            raise ProfileError(f"{where}[{i}]: {method} cannot follow a float32 step (only cv2 float32 resizes "
                               "take float images)")
        size = step.get("size", "protocol")
        if size == "protocol":
            out.append(ResizeStep(method, None, output))
        elif isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size):
            out.append(ResizeStep(method, (size[0], size[1]), output))
        else:
            raise ProfileError(f"{where}[{i}]: size must be 'protocol' or [H, W], got {size!r}")
    return out


def _check_metrics(metrics: dict[str, Any], where: str) -> None:
    unknown = set(metrics) - set(METRIC_NAMES)
    if unknown:
        raise ProfileError(f"{where}: unknown metrics {sorted(unknown)}; known: {', '.join(METRIC_NAMES)}")
    ssim = metrics.get("ssim")
    if ssim:
        variants = _need(ssim, "variants", f"{where}.ssim")
        reported = _need(ssim, "reported", f"{where}.ssim")
        if reported not in variants:
            raise ProfileError(f"{where}.ssim: reported variant {reported!r} is not among {list(variants)}")
        for vname, v in variants.items():
            # Results key the reported variant as `ssim` and every other variant by its own name, so another
            # variant named `ssim` would share the key (two SSIMs averaged into one headline number).
            if vname != reported and (vname == "ssim" or not vname.startswith("ssim_")):
                raise ProfileError(f"{where}.ssim.variants.{vname}: a variant that is not the reported one is "
                                   "reported under its own name, which must start with 'ssim_' (e.g. ssim_win51)")
            if v.get("window") not in SSIM_WINDOWS:
                raise ProfileError(f"{where}.ssim.{vname}: window must be one of {SSIM_WINDOWS}")
            dr = v.get("data_range")
            if not (dr == "prediction" or isinstance(dr, (int, float))):
                raise ProfileError(f"{where}.ssim.{vname}: data_range must be a number or 'prediction'")
    lp = metrics.get("lpips")
    if lp and lp.get("input_range") not in LPIPS_RANGES:
        raise ProfileError(f"{where}.lpips: input_range must be one of {LPIPS_RANGES}")


def parse_profile(data: dict[str, Any], where: str) -> Profile:
    metrics = _need(data, "metrics", where)
    _check_metrics(metrics, where)
    prof = Profile(
        name=_need(data, "name", where),
        version=int(_need(data, "version", where)),
        description=str(data.get("description", "")).strip(),
        resize_predictions=bool(_need(data, "resize_predictions", where)),
        ground_truth_chain=tuple(_steps(_need(data, "ground_truth_chain", where), f"{where}.ground_truth_chain")),
        metrics=metrics,
        changelog=tuple(data.get("changelog", ())),
        sha256=_hash(data),
        prediction_chain=(tuple(_steps(data["prediction_chain"], f"{where}.prediction_chain"))
                          if "prediction_chain" in data else None),
    )
    for metric in metrics:  # validates chains now, not at evaluation time
        prof.chain(metric)
        prof.prediction_chain_for(metric)
    return prof


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
        masked_metrics=_masked(data.get("masked_metrics", []), where), sha256=_hash(data),
        kind=kind, pose_profiles=pose_profiles, default_pose_profile=default_pose,
    )


def _masked(raw: Any, where: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or any(m not in ("ssim", "lpips") for m in raw):
        raise ProfileError(f"{where}: masked_metrics must be a list of ssim and/or lpips")
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
