"""Typed metric sections of a profile: one frozen dataclass per metric, parsed from the profile YAML.

Every key a section may hold is a field here, and every field is read by the metric it configures: unknown
keys, missing keys, wrong types and values outside a field's choices are refused with the file and the dotted
key, so a typo in a custom profile cannot be silently ignored.

Each section also says how its images are prepared (`chain` for the ground truth and the FID real set,
`prediction_chain` for the generated images; both default to the profile's own chains).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin

from posebench.errors import PosebenchError
from posebench.images import METHOD_OUTPUTS


class ProfileError(PosebenchError):
    """A protocol or profile file that does not follow the schema."""


@dataclass(frozen=True)
class ResizeStep:
    """One resize of a chain: a `posebench.images.resize` method, its size and its output dtype/rounding."""

    method: str
    size: tuple[int, int] | None  # None = the protocol resolution
    output: str = "uint8"  # posebench.images.RESIZE_OUTPUTS: uint8 | uint8-truncate | float32

    def resolve(self, resolution: tuple[int, int] | None) -> tuple[str, tuple[int, int], str] | None:
        """(method, size, output) at a protocol resolution; None for a protocol-size step without a resolution
        (a metric used outside a protocol scores the ground truth at its own size)."""
        size = self.size or resolution
        return None if size is None else (self.method, size, self.output)


Chain = tuple[ResizeStep, ...]


def parse_steps(raw: Any, where: str) -> Chain:
    if not isinstance(raw, list):
        raise ProfileError(f"{where}: expected a list of resize steps")
    out: list[ResizeStep] = []
    for i, step in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(step, dict):
            raise ProfileError(f"{at}: expected a mapping like {{resize: pil-bicubic, size: protocol}}")
        unknown = set(step) - {"resize", "size", "output"}
        if unknown:
            raise ProfileError(f"{at}: unknown keys {sorted(unknown)}; a step has resize, size, output")
        if "resize" not in step:
            raise ProfileError(f"{at}: missing key 'resize'")
        method = step["resize"]
        if method not in METHOD_OUTPUTS:
            raise ProfileError(f"{at}: unknown resize {method!r}; known: {', '.join(METHOD_OUTPUTS)}")
        output = step.get("output", "uint8")
        if output not in METHOD_OUTPUTS[method]:
            raise ProfileError(f"{at}: resize {method} cannot give output {output!r}; it gives "
                               f"{', '.join(METHOD_OUTPUTS[method])}")
        if out and out[-1].output == "float32" and not method.startswith("cv2"):
            raise ProfileError(f"{at}: {method} cannot follow a float32 step (only cv2 float32 resizes take float "
                               "images)")
        size = step.get("size", "protocol")
        if size == "protocol":
            out.append(ResizeStep(method, None, output))
        elif isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size):
            out.append(ResizeStep(method, (size[0], size[1]), output))
        else:
            raise ProfileError(f"{at}: size must be 'protocol' or [H, W], got {size!r}")
    return tuple(out)


# ---------------------------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class Section:
    """What every metric section may say about its inputs (both optional: the profile's chains apply)."""

    chain: Chain | None = None  # ground truth / FID real set
    prediction_chain: Chain | None = None  # generated images


@dataclass(frozen=True)
class FIDSection(Section):
    extractor: str = ""  # posebench.metrics.features.EXTRACTORS name
    weights: str = ""  # the weights registry file the extractor loads (an accepted one for that extractor)
    batch_size: int = 64  # images per feature batch; with drop_last, the batch whose remainder is dropped
    drop_last: bool = False
    real_set: str = "train"  # which of the protocol's real sets is the FID real set


@dataclass(frozen=True)
class KIDSection:
    """KID uses the `fid` section's extractor and chains (one feature pass serves both)."""

    subsets: int = 100
    subset_size: int = 1000
    seed: int = 0


@dataclass(frozen=True)
class SSIMVariant:
    window: Literal["gaussian", "uniform"]
    data_range: float | Literal["prediction"]
    sigma: float | None = None  # gaussian only
    win_size: int | None = None  # uniform only (default 51)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class SSIMSection(Section):
    reported: str = ""
    variants: Mapping[str, SSIMVariant] = field(default_factory=dict)


@dataclass(frozen=True)
class LPIPSSection(Section):
    net: Literal["alex", "vgg"] = "alex"
    version: Literal["0.0", "0.1"] = "0.1"
    input_range: Literal["minus1_1", "zero_1_normalize", "zero_1_raw"] = "minus1_1"
    batch_size: int = 64
    drop_last: bool = False


@dataclass(frozen=True)
class PSNRSection(Section):
    data_range: float = 255.0  # on the 0..255 scale (data range 1 on [0, 1] is the same number)


@dataclass(frozen=True)
class ISSection(Section):
    weights: str = "inception-tv-imagenet"  # torchvision ImageNet Inception-v3 (its logits)
    splits: int = 10
    batch_size: int = 64


@dataclass(frozen=True)
class PCKhSection:
    alpha: float = 0.5  # a joint counts within alpha x the head-segment length of the target joint


SECTIONS: dict[str, type] = {"fid": FIDSection, "kid": KIDSection, "ssim": SSIMSection, "lpips": LPIPSSection,
                             "psnr": PSNRSection, "is": ISSection, "pckh": PCKhSection}
REQUIRED: dict[str, tuple[str, ...]] = {"fid": ("extractor", "weights", "batch_size", "drop_last", "real_set"),
                                        "ssim": ("reported", "variants"), "lpips": ("net", "version", "input_range"),
                                        "psnr": ("data_range",)}


def _type_ok(value: Any, annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin is Literal:
        return value in get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    return True


def _describe(annotation: Any) -> str:
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(annotation))
    if get_origin(annotation) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(annotation) if a is not type(None))
    return getattr(annotation, "__name__", str(annotation))


def _parse_fields(cls: type, raw: Any, where: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ProfileError(f"{where}: expected a mapping")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ProfileError(f"{where}: unknown keys {unknown}; this section takes {', '.join(names)}")
    out: dict[str, Any] = {}
    for name in names:
        if name in skip or name not in raw:
            continue
        value = raw[name]
        if name in ("chain", "prediction_chain"):
            out[name] = parse_steps(value, f"{where}.{name}")
            continue
        if not _type_ok(value, hints[name]):
            raise ProfileError(f"{where}.{name}: expected {_describe(hints[name])}, got {value!r}")
        out[name] = float(value) if hints[name] is float else value
    return out


def parse_section(metric: str, raw: Any, where: str) -> Any:
    """The typed section of `metric` from its YAML mapping (`where` = the file and the key path, for errors)."""
    cls = SECTIONS.get(metric)
    if cls is None:
        raise ProfileError(f"{where}: unknown metric {metric!r}; known: {', '.join(SECTIONS)}")
    values = _parse_fields(cls, raw, where, skip=("variants",) if cls is SSIMSection else ())
    missing = [k for k in REQUIRED.get(metric, ()) if k not in raw]
    if missing:
        raise ProfileError(f"{where}: missing keys {missing}")
    if cls is SSIMSection:
        values["variants"] = _parse_variants(raw["variants"], values["reported"], f"{where}.variants")
    for name in ("batch_size", "subsets", "subset_size", "splits"):
        if name in values and values[name] < 1:
            raise ProfileError(f"{where}.{name}: must be >= 1, got {values[name]}")
    if cls is PCKhSection and not 0 < values.get("alpha", 0.5):
        raise ProfileError(f"{where}.alpha: must be > 0")
    return cls(**values)


def _parse_variants(raw: Any, reported: str, where: str) -> dict[str, SSIMVariant]:
    if not isinstance(raw, dict) or not raw:
        raise ProfileError(f"{where}: expected a non-empty mapping of SSIM variants")
    if reported not in raw:
        raise ProfileError(f"{where}: reported variant {reported!r} is not among {list(raw)}")
    out: dict[str, SSIMVariant] = {}
    for name, spec in raw.items():
        at = f"{where}.{name}"
        # Results key the reported variant as `ssim` and every other variant by its own name, so another
        # variant named `ssim` would share the key (two SSIMs averaged into one headline number).
        if name != reported and (name == "ssim" or not str(name).startswith("ssim_")):
            raise ProfileError(f"{at}: a variant that is not the reported one is reported under its own name, which "
                               "must start with 'ssim_' (e.g. ssim_win51)")
        values = _parse_fields(SSIMVariant, spec, at)
        for key in ("window", "data_range"):
            if key not in values:
                raise ProfileError(f"{at}: missing key '{key}'")
        unread = "win_size" if values["window"] == "gaussian" else "sigma"
        if values.get(unread) is not None:
            raise ProfileError(f"{at}.{unread}: a {values['window']} window has no {unread}")
        if values["window"] == "gaussian":
            values.setdefault("sigma", 1.5)
        else:
            values.setdefault("win_size", 51)
            if values["win_size"] < 3 or values["win_size"] % 2 == 0:
                raise ProfileError(f"{at}.win_size: must be odd and >= 3")
        out[str(name)] = SSIMVariant(**values)
    return out


def section_as_dict(section: Any) -> dict[str, Any]:
    """A section as plain JSON-ready values (`posebench profiles show`)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if value is None:
            continue
        if f.name in ("chain", "prediction_chain"):
            value = [{"resize": s.method, "size": list(s.size) if s.size else "protocol", "output": s.output}
                     for s in value]
        elif f.name == "variants":
            value = {k: v.as_dict() for k, v in value.items()}
        out[f.name] = value
    return out
