"""Pose-metric profiles (`clean`, `humansd`) as versioned YAML files (`posebench/protocols/pose_profiles/`).

A pose profile pins every setting that moves AP, AP(m), CAP or PCE: what the estimator is fed, how it decodes,
the frame the targets live in, how GT areas are made, the similarity behind CAP, the aggregation and which
detections PCE counts. Each setting names the quirk of HumanSD's released code it reproduces or fixes (numbers of
the quirk table in docs/metrics.md). Like image profiles, a pose profile carries a name, a version and
a content hash (of the parsed YAML, so comments do not count), which go into results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from posebench.protocols import ProfileError, content_hash
from posebench.registry import Registry
from posebench.utils.keys import check_keys, read_yaml_mapping

# allowed values of the string settings
CHOICES: dict[str, tuple[str, ...]] = {
    "estimator_input": ("rgb", "rb-swapped"),
    "target_frame": ("center-crop", "annotated"),
    "gt_area": ("given-or-visible-joints", "placeholders"),
    "cap_similarity": ("clean", "humansd"),
    "aggregation": ("dataset", "batches"),
    "pce_images": ("every-image", "first-n-positions"),
}
BOOLS = ("refine_fill", "drop_zero_score_detections")
OPTIONAL_UNIT = ("pce_score_threshold", "pce_oks_nms_threshold")  # a number in [0, 1], or null (off)
META = ("name", "version", "description", "changelog")
KEYS = (*META, *CHOICES, *BOOLS, *OPTIONAL_UNIT, "visibility_threshold", "batch_size", "max_dets", "sigmas")
N_JOINTS = 17


@dataclass(frozen=True)
class PoseProfile:
    """One pose-metric profile (the YAML keys; see `docs/metrics.md` for what each one does)."""

    name: str
    version: int
    description: str
    estimator_input: str
    refine_fill: bool
    target_frame: str
    gt_area: str
    visibility_threshold: float
    cap_similarity: str
    aggregation: str
    batch_size: int | None
    pce_images: str
    pce_score_threshold: float | None
    pce_oks_nms_threshold: float | None
    drop_zero_score_detections: bool
    max_dets: int
    sigmas: tuple[float, ...]
    changelog: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    sha256: str = ""
    source: str = ""  # the file it was read from

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def swap_rb(self) -> bool:
        """Feed the estimator B, G, R instead of R, G, B (quirk 1)."""
        return self.estimator_input == "rb-swapped"

    def meta(self) -> dict[str, Any]:
        """What results record about the profile."""
        return {"name": self.name, "version": self.version, "kind": "pose", "sha256": self.sha256}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_types(data: dict[str, Any], where: str) -> None:
    """Refuse wrong types and values, naming the file and the key."""
    def bad(key: str, expected: str) -> ProfileError:
        return ProfileError(f"{where}: {key} must be {expected}, got {data[key]!r}")

    if not isinstance(data["name"], str) or not data["name"]:
        raise bad("name", "a non-empty string")
    if isinstance(data["version"], bool) or not isinstance(data["version"], int) or data["version"] < 1:
        raise bad("version", "a positive integer")
    if not isinstance(data.get("description", ""), str):
        raise bad("description", "a string")
    changelog = data.get("changelog", [])
    if not isinstance(changelog, list) or not all(isinstance(c, dict) for c in changelog):
        raise ProfileError(f"{where}: changelog must be a list of {{version, date, change}} mappings")
    for key, allowed in CHOICES.items():
        if data[key] not in allowed:
            raise bad(key, "one of " + ", ".join(allowed))
    for key in BOOLS:
        if not isinstance(data[key], bool):
            raise bad(key, "true or false")
    for key in OPTIONAL_UNIT:
        if data[key] is not None and not (_is_number(data[key]) and 0 <= data[key] <= 1):
            raise bad(key, "a number in [0, 1] or null")
    if not _is_number(data["visibility_threshold"]) or data["visibility_threshold"] < 0:
        raise bad("visibility_threshold", "a non-negative number")
    if data["max_dets"] != 20 or isinstance(data["max_dets"], bool):  # pycocotools' keypoint summary reads 20
        raise bad("max_dets", "20 (pycocotools summarises keypoint AP at maxDets 20)")
    sig = data["sigmas"]
    if not isinstance(sig, list) or len(sig) != N_JOINTS or not all(_is_number(s) and s > 0 for s in sig):
        raise bad("sigmas", f"a list of {N_JOINTS} positive numbers (COCO order)")
    bs = data["batch_size"]
    if data["aggregation"] == "batches":
        if isinstance(bs, bool) or not isinstance(bs, int) or bs < 1:
            raise bad("batch_size", "a positive integer with aggregation: batches")
    elif bs is not None:
        raise bad("batch_size", "null with aggregation: dataset")


def parse_pose_profile(data: dict[str, Any], where: str) -> PoseProfile:
    """Validate a parsed pose-profile YAML (unknown or missing keys and wrong types are refused, naming `where`)."""
    check_keys(data, set(KEYS), where, ProfileError)
    missing = [k for k in KEYS if k not in data and k not in ("description", "changelog")]
    if missing:
        raise ProfileError(f"{where}: missing key(s) {', '.join(missing)}")
    _check_types(data, where)
    optional = {k: None if data[k] is None else float(data[k]) for k in OPTIONAL_UNIT}
    return PoseProfile(
        name=data["name"], version=data["version"], description=str(data.get("description", "")).strip(),
        estimator_input=data["estimator_input"], refine_fill=data["refine_fill"],
        target_frame=data["target_frame"], gt_area=data["gt_area"],
        visibility_threshold=float(data["visibility_threshold"]), cap_similarity=data["cap_similarity"],
        aggregation=data["aggregation"], batch_size=data["batch_size"], pce_images=data["pce_images"],
        drop_zero_score_detections=data["drop_zero_score_detections"], max_dets=data["max_dets"],
        sigmas=tuple(float(s) for s in data["sigmas"]), changelog=tuple(data.get("changelog", ())),
        sha256=content_hash(data), source=where, **optional,
    )


def load_pose_profile(path: Path | Any, where: str | None = None) -> PoseProfile:
    """Read and validate one pose-profile YAML file (a path or a package resource)."""
    where = where or str(path)
    return parse_pose_profile(read_yaml_mapping(path, ProfileError, expected="a mapping at the top level"), where)


POSE_PROFILES: Registry[PoseProfile] = Registry("pose-metric profile")


def _register_builtins() -> None:
    folder = resources.files("posebench.protocols").joinpath("pose_profiles")
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yaml"):
            prof = load_pose_profile(entry, f"pose_profiles/{entry.name}")
            if prof.name != entry.name.removesuffix(".yaml"):
                raise ProfileError(f"pose_profiles/{entry.name}: name {prof.name!r} differs from the file name")
            POSE_PROFILES.register(prof.name, prof)


def get_pose_profile(profile: str | Path | PoseProfile) -> PoseProfile:
    """A built-in pose profile by name, a pose-profile YAML file by path, or `profile` itself."""
    if isinstance(profile, PoseProfile):
        return profile
    text = str(profile)
    if text.endswith((".yaml", ".yml")):
        path = Path(text)
        if not path.is_file():
            raise ProfileError(f"the pose-profile file {path} does not exist")
        return load_pose_profile(path)
    if text not in POSE_PROFILES:
        raise ProfileError(f"unknown pose-metric profile {text!r}; expected one of "
                           f"{', '.join(POSE_PROFILES.names())} or a pose-profile YAML file")
    return POSE_PROFILES.get(text)


def is_custom(profile: PoseProfile) -> bool:
    """True for a profile read from a user's file rather than a built-in one (or a built-in one edited)."""
    return profile.name not in POSE_PROFILES or POSE_PROFILES.get(profile.name).sha256 != profile.sha256


_register_builtins()
