"""Procedural synthetic people, written in the real on-disk formats of DeepFashion, Market-1501 and Human-Art.

Every reader, the evaluator, the re-ID protocol and a pose-transfer model can run end to end on this data
without the real datasets (which may not be redistributed, datasets.md). A person is an articulated 2-D
figure: capsules for the limbs, polygons for the torso and skirt, ellipses for the head and hair, drawn
back to front. Clothing textures are small periodic tiles warped into each limb's own frame
(`cv2.warpAffine` with `BORDER_WRAP`), so a stripe stays at the same place on the thigh whatever the pose.
The keypoints are the exact joints of the skeleton that was drawn (OpenPose-18 order), so the same identity
in several poses gives a real ground-truth target for every pair.

Randomness: each identity draws from `SeedSequence(seed, spawn_key=(format, stream, [split,] identity))` and
each image from a key that adds the pose index, so an image never depends on which images were made before
it, and the same seed gives byte-identical files.

Example:
    >>> from posebench.datasets.synth import make_identity, make_pose, render_person
    >>> img, kp = render_person(make_identity(0), make_pose(1, "front"), (256, 176))
    >>> img.shape, kp.format
    ((256, 176, 3), 'openpose18')
"""

from __future__ import annotations

import functools
import json
import logging
import math
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import cv2
import numpy as np

from posebench.datasets.humansd import write_pose_file
from posebench.datasets.keypoints import COCO17_LIMBS, HUMANART21_NAMES, OPENPOSE18_NAMES, Keypoints
from posebench.errors import PosebenchError
from posebench.utils.io import atomic_write_text

__all__ = [
    "DEFAULT_SIZES",
    "DEEPFASHION_CATEGORIES",
    "DEEPFASHION_VIEWS",
    "HUMANART_SCENARIOS",
    "Identity",
    "Pattern",
    "Pose",
    "SynthSummary",
    "VIEWS",
    "make_identity",
    "make_pose",
    "render_person",
    "synthesize",
]

logger = logging.getLogger(__name__)

RGB = tuple[int, int, int]
_T = TypeVar("_T")
SynthFormat = Literal["deepfashion", "market", "humanart", "humansd"]
View = Literal["front", "side", "back"]

VIEWS: tuple[str, ...] = ("front", "side", "back")
DEFAULT_SIZES: dict[str, tuple[int, int]] = {"deepfashion": (256, 176), "market": (128, 64), "humanart": (256, 256),
                                              "humansd": (256, 256)}

DEEPFASHION_CATEGORIES: dict[str, tuple[str, ...]] = {
    "MEN": ("Denim", "Jackets_Vests", "Pants", "Shirts_Polos", "Shorts", "Suiting", "Sweaters",
            "Sweatshirts_Hoodies", "Tees_Tanks"),
    "WOMEN": ("Blouses_Shirts", "Cardigans", "Denim", "Dresses", "Graphic_Tees", "Jackets_Coats", "Leggings",
              "Pants", "Rompers_Jumpsuits", "Shorts", "Skirts", "Sweaters", "Sweatshirts_Hoodies", "Tees_Tanks"),
}
# (number, word, drawn view): 'full', 'flat' and 'additional' are front-ish full-body shots.
DEEPFASHION_VIEWS: tuple[tuple[int, str, str], ...] = (
    (1, "front", "front"), (2, "side", "side"), (3, "back", "back"), (4, "full", "front"), (6, "flat", "front"),
    (7, "additional", "front"),
)
# (id, directory, group), datasets.md §3.4.
HUMANART_SCENARIOS: tuple[tuple[int, str, str], ...] = tuple(
    (i + 1, name, group) for i, (name, group) in enumerate(
        [(n, "2D_virtual_human") for n in ("cartoon", "digital_art", "ink_painting", "kids_drawing", "mural",
                                           "oil_painting", "shadow_play", "sketch", "stained_glass", "ukiyoe",
                                           "watercolor")]
        + [(n, "3D_virtual_human") for n in ("garage_kits", "relief", "sculpture")]
        + [(n, "real_human") for n in ("acrobatics", "cosplay", "dance", "drama", "movie")]
    )
)

_J = {name: i for i, name in enumerate(OPENPOSE18_NAMES)}
_NOSE, _NECK = _J["nose"], _J["neck"]
_RSHO, _RELB, _RWRI = _J["right_shoulder"], _J["right_elbow"], _J["right_wrist"]
_LSHO, _LELB, _LWRI = _J["left_shoulder"], _J["left_elbow"], _J["left_wrist"]
_RHIP, _RKNE, _RANK = _J["right_hip"], _J["right_knee"], _J["right_ankle"]
_LHIP, _LKNE, _LANK = _J["left_hip"], _J["left_knee"], _J["left_ankle"]
_LEYE, _REYE, _LEAR, _REAR = _J["left_eye"], _J["right_eye"], _J["left_ear"], _J["right_ear"]

# Body units are fractions of the standing height (top of the head to the soles).
_ANKLE_H = 0.04        # ankle joint to sole
_HAND = 0.06           # wrist to finger tips
_TILE = 48             # texture tile side in pixels; every pattern period divides it, so the tile wraps
_TILE_UNITS = 0.16     # body units one tile spans: the pattern scales with the figure, not the image
_SHIFT = 4             # cv2 sub-pixel bits: joints are drawn to 1/16 px, so keypoints match the pixels
_FORMAT_CODE = {"deepfashion": 0, "market": 1, "humanart": 2}
_STREAM_IDENTITY, _STREAM_IMAGE, _STREAM_SPLIT, _STREAM_EXTRA = 0, 1, 2, 3

_SKIN: tuple[RGB, ...] = ((255, 224, 196), (241, 194, 160), (224, 172, 130), (198, 134, 94), (160, 102, 68),
                          (120, 78, 50), (90, 58, 38))
_HAIR: tuple[RGB, ...] = ((25, 20, 18), (60, 40, 28), (110, 75, 45), (215, 185, 120), (140, 60, 35),
                          (170, 170, 170))
_CLOTH: dict[str, RGB] = {
    "white": (240, 240, 236), "black": (30, 30, 34), "charcoal": (64, 64, 70), "grey": (140, 140, 145),
    "navy": (30, 40, 90), "royal blue": (50, 80, 190), "sky blue": (120, 180, 230), "teal": (20, 128, 128),
    "green": (40, 140, 70), "olive": (110, 115, 50), "mint": (170, 225, 190), "yellow": (240, 210, 60),
    "mustard": (200, 160, 40), "orange": (235, 120, 40), "red": (200, 35, 40), "maroon": (110, 25, 35),
    "pink": (240, 150, 180), "purple": (110, 50, 140), "lavender": (190, 170, 225), "beige": (220, 200, 165),
    "brown": (120, 80, 50), "denim": (70, 100, 150),
}
_SHOES: tuple[RGB, ...] = ((25, 25, 28), (235, 235, 235), (100, 65, 40), (120, 120, 125), (30, 40, 80))
_EYE: RGB = (35, 28, 25)
_PATTERN_KINDS = ("solid", "stripes", "pinstripes", "checks", "dots", "diagonal")

_SHORT_SLEEVES = {"Tees_Tanks", "Graphic_Tees", "Shirts_Polos", "Blouses_Shirts", "Rompers_Jumpsuits", "Dresses"}
_LONG_SLEEVES = {"Sweaters", "Cardigans", "Jackets_Vests", "Jackets_Coats", "Sweatshirts_Hoodies", "Suiting"}
_SHORT_LEGS = {"Shorts", "Rompers_Jumpsuits"}
_LONG_LEGS = {"Pants", "Denim", "Leggings", "Suiting"}
_SKIRTS = {"Dresses", "Skirts"}
_ONE_PIECE = {"Dresses", "Rompers_Jumpsuits"}


# --------------------------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class Pattern:
    """A periodic clothing texture.

    Attributes:
        kind: one of solid, stripes (across the limb), pinstripes (along it), checks, dots, diagonal.
        colors: (ground, figure) RGB colours.
        period: pattern period in tile pixels; must divide the 48-pixel tile.
        names: colour names of `colors`, used in Human-Art descriptions.
    """

    kind: str
    colors: tuple[RGB, RGB]
    period: int = 12
    names: tuple[str, str] = ("", "")

    def __post_init__(self) -> None:
        if self.kind not in _PATTERN_KINDS:
            raise ValueError(f"pattern kind must be one of {_PATTERN_KINDS}, got {self.kind!r}")
        if self.period < 2 or _TILE % self.period:
            raise ValueError(f"pattern period must divide {_TILE} and be >= 2, got {self.period}")


@dataclass(frozen=True)
class Identity:
    """Appearance and body proportions of one synthetic person.

    Lengths are body units (fractions of the standing height); `head + neck + torso + thigh + shin` plus the
    fixed ankle height is 1.

    Attributes:
        gender: "MEN" or "WOMEN" (DeepFashion naming).
        category: DeepFashion category; it decides sleeve and leg lengths and skirts.
        skin, hair, shoes: RGB colours.
        hair_style: "short", "long" or "bald".
        top, bottom: clothing textures of the upper and lower garment.
        sleeve: fraction of the arm (shoulder to wrist) the top covers, 0..1.
        leg_cover: fraction of the leg (hip to ankle) the bottom covers, 0..1.
        skirt: a skirt or dress hem drawn over the thighs.
        head, neck, torso, thigh, shin, upper_arm, forearm: segment lengths.
        shoulder, hip: half widths between the shoulder joints and the hip joints.
        build: limb thickness multiplier.
    """

    gender: Literal["MEN", "WOMEN"]
    category: str
    skin: RGB
    hair: RGB
    hair_style: Literal["short", "long", "bald"]
    top: Pattern
    bottom: Pattern
    shoes: RGB
    sleeve: float
    leg_cover: float
    skirt: bool
    head: float
    neck: float
    torso: float
    thigh: float
    shin: float
    upper_arm: float
    forearm: float
    shoulder: float
    hip: float
    build: float


@dataclass(frozen=True)
class Pose:
    """Joint angles and placement of a figure; independent of the image size.

    Angles are radians in the image plane. In the front and back views a limb angle is measured from
    hanging straight down, positive away from the body's midline (abduction); in the side view positive is
    forwards (the way the person faces). Shoulder and hip angles are absolute, elbow and knee angles are
    relative to the upper segment.

    Attributes:
        view: "front", "side" or "back".
        facing: +1 facing image right, -1 image left (side view only; the near side is then visible).
        scale: standing height as a fraction of the image (or slot) height.
        center_x: mid-hip x as a fraction of the image width.
        ground_y: lowest sole y as a fraction of the image height.
        lean: torso tilt, positive moves the head towards image right.
        head_tilt: head tilt relative to the torso.
        arms: (right shoulder, right elbow, left shoulder, left elbow).
        legs: (right hip, right knee, left hip, left knee).
        action: name of the pose family ("stand", "walk", "arms_up", ...), for descriptions.
    """

    view: View
    facing: int
    scale: float
    center_x: float
    ground_y: float
    lean: float
    head_tilt: float
    arms: tuple[float, float, float, float]
    legs: tuple[float, float, float, float]
    action: str = "stand"

    def __post_init__(self) -> None:
        if self.view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, got {self.view!r}")
        if self.facing not in (-1, 1):
            raise ValueError(f"facing must be +1 or -1, got {self.facing}")


@dataclass(frozen=True)
class SynthSummary:
    """What `synthesize` wrote.

    Attributes:
        format: "deepfashion", "market" or "humanart".
        root: the output folder.
        size: image size (H, W).
        seed: the seed used.
        images: images per split ("train"/"test"; market also "query", and its "test" counts the whole
            bounding_box_test folder, junk and distractors included).
        pairs: pose-transfer pairs per split; {} for humanart.
        identities: identities per split.
    """

    format: str
    root: Path
    size: tuple[int, int]
    seed: int
    images: dict[str, int]
    pairs: dict[str, int]
    identities: dict[str, int]


# ------------------------------------------------------------------------------------------ randomness


def _rng(seed: int, *key: int) -> np.random.Generator:
    """A generator that depends only on (seed, key), never on what was drawn before."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(int(k) for k in key)))


def _as_rng(rng_or_seed: int | np.random.Generator) -> np.random.Generator:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    return np.random.default_rng(int(rng_or_seed))


def _jitter(rng: np.random.Generator, color: RGB, amount: int) -> RGB:
    c = np.clip(np.asarray(color) + rng.integers(-amount, amount + 1, size=3), 0, 255)
    return (int(c[0]), int(c[1]), int(c[2]))


def _choice(rng: np.random.Generator, items: Sequence[_T]) -> _T:
    return items[int(rng.integers(len(items)))]


# ------------------------------------------------------------------------------------------ identities


def _random_pattern(rng: np.random.Generator, palette: Sequence[str] | None = None) -> Pattern:
    names = list(palette or _CLOTH)
    first = _choice(rng, names)
    second = _choice(rng, [n for n in _CLOTH if n != first])
    kind = _choice(rng, ("solid", "solid", "stripes", "stripes", "pinstripes", "checks", "dots", "diagonal"))
    period = int(_choice(rng, (8, 12, 16, 24)))
    return Pattern(kind, (_jitter(rng, _CLOTH[first], 10), _jitter(rng, _CLOTH[second], 10)), period,
                   (first, second))


def make_identity(rng_or_seed: int | np.random.Generator, *, gender: Literal["MEN", "WOMEN"] | None = None,
                  category: str | None = None, top: Pattern | None = None,
                  bottom: Pattern | None = None) -> Identity:
    """Draw a random identity: colours and textures of skin, hair and clothes, garment lengths, proportions.

    Args:
        rng_or_seed: a numpy Generator (consumed) or an integer seed.
        gender: "MEN" or "WOMEN"; random if None.
        category: a DeepFashion category of that gender; it sets sleeve/leg lengths (e.g. Shorts, Dresses).
            Random if None.
        top, bottom: fixed clothing patterns instead of random ones.

    Returns:
        The identity.

    Raises:
        ValueError: `gender` or `category` is not a DeepFashion value.
    """
    rng = _as_rng(rng_or_seed)
    if gender is None:
        gender = "WOMEN" if rng.random() < 0.5 else "MEN"
    if gender not in DEEPFASHION_CATEGORIES:
        raise ValueError(f"gender must be 'MEN' or 'WOMEN', got {gender!r}")
    if category is None:
        category = _choice(rng, DEEPFASHION_CATEGORIES[gender])
    if category not in DEEPFASHION_CATEGORIES[gender]:
        raise ValueError(f"category {category!r} is not a DeepFashion {gender} category: "
                         f"{', '.join(DEEPFASHION_CATEGORIES[gender])}")
    men = gender == "MEN"
    top_p = top or _random_pattern(rng)
    if bottom is not None:
        bottom_p = bottom
    elif category in _ONE_PIECE:
        bottom_p = top_p
    elif category == "Denim":
        bottom_p = _random_pattern(rng, ["denim", "navy", "sky blue"])
    else:
        bottom_p = _random_pattern(rng)
    if category in _SHORT_SLEEVES:
        sleeve = float(rng.uniform(0.0, 0.35))
    elif category in _LONG_SLEEVES:
        sleeve = float(rng.uniform(0.85, 1.0))
    else:
        sleeve = float(rng.uniform(0.0, 1.0))
    skirt = category in _SKIRTS
    if skirt:
        leg_cover = 0.0
    elif category in _SHORT_LEGS:
        leg_cover = float(rng.uniform(0.3, 0.42))
    elif category in _LONG_LEGS or rng.random() < 0.75:
        leg_cover = float(rng.uniform(0.92, 1.0))
    else:
        leg_cover = float(rng.uniform(0.3, 0.42))
    styles = ("short", "short", "short", "short", "short", "bald", "long") if men else ("long", "long", "short")
    head = float(rng.uniform(0.12, 0.14))
    neck = 0.045
    legs = float(rng.uniform(0.50, 0.55))  # hip joint to sole
    thigh = 0.52 * (legs - _ANKLE_H)
    return Identity(
        gender=gender, category=category,
        skin=_jitter(rng, _choice(rng, _SKIN), 8), hair=_jitter(rng, _choice(rng, _HAIR), 10),
        hair_style=_choice(rng, styles), top=top_p, bottom=bottom_p, shoes=_jitter(rng, _choice(rng, _SHOES), 8),
        sleeve=sleeve, leg_cover=leg_cover, skirt=skirt,
        head=head, neck=neck, torso=1.0 - head - neck - legs, thigh=thigh, shin=legs - _ANKLE_H - thigh,
        upper_arm=float(rng.uniform(0.165, 0.185)), forearm=float(rng.uniform(0.14, 0.155)),
        shoulder=float(rng.uniform(0.105, 0.125) if men else rng.uniform(0.09, 0.11)),
        hip=float(rng.uniform(0.05, 0.06) if men else rng.uniform(0.055, 0.07)),
        build=float(rng.uniform(0.9, 1.2) if men else rng.uniform(0.85, 1.1)),
    )


# ----------------------------------------------------------------------------------------------- poses

_FRONT_ACTIONS = ("stand", "stand", "arms_out", "arms_up", "wave", "hands_hips", "stride")
_SIDE_ACTIONS = ("walk", "walk", "stand", "reach")


def _front_angles(rng: np.random.Generator, action: str) -> tuple[list[float], list[float]]:
    u = rng.uniform
    arms = [u(0.06, 0.3), u(-0.35, 0.1), u(0.06, 0.3), u(-0.35, 0.1)]
    legs = [u(0.02, 0.12), u(-0.08, 0.04), u(0.02, 0.12), u(-0.08, 0.04)]
    side = 2 * int(rng.integers(2))  # which arm a one-armed action uses
    if action == "arms_out":
        arms = [u(0.9, 1.7), u(-0.5, 0.4), u(0.9, 1.7), u(-0.5, 0.4)]
    elif action == "arms_up":
        arms = [u(2.3, 2.9), u(-0.5, 0.3), u(2.3, 2.9), u(-0.5, 0.3)]
    elif action == "wave":
        arms[side:side + 2] = [u(1.9, 2.5), u(-1.2, -0.3)]
    elif action == "hands_hips":
        arms = [u(0.55, 0.85), u(-1.9, -1.4), u(0.55, 0.85), u(-1.9, -1.4)]
    elif action == "stride":
        legs = [u(0.15, 0.32), u(-0.1, 0.05), u(0.15, 0.32), u(-0.1, 0.05)]
    return arms, legs


def _side_angles(rng: np.random.Generator, action: str) -> tuple[list[float], list[float]]:
    u = rng.uniform
    arms = [u(-0.15, 0.15), u(0.0, 0.3), u(-0.15, 0.15), u(0.0, 0.3)]
    legs = [u(-0.08, 0.08), u(-0.1, 0.0), u(-0.08, 0.08), u(-0.1, 0.0)]
    if action == "walk":
        a = u(0.15, 0.45)
        b = -a * u(0.6, 1.0)
        fwd, back = (a, b) if rng.random() < 0.5 else (b, a)
        legs = [fwd, u(-0.15, 0.0) if fwd > 0 else u(-0.6, -0.15), back, u(-0.15, 0.0) if back > 0 else u(-0.6, -0.15)]
        # Arms swing against the leg of the same side.
        arms = [-0.8 * fwd + u(-0.1, 0.1), u(0.05, 0.6), -0.8 * back + u(-0.1, 0.1), u(0.05, 0.6)]
    elif action == "reach":
        side = 2 * int(rng.integers(2))
        arms[side:side + 2] = [u(1.0, 1.8), u(0.0, 0.4)]
    return arms, legs


def make_pose(rng_or_seed: int | np.random.Generator, view: str = "front", *, action: str | None = None,
              facing: int | None = None, scale: tuple[float, float] = (0.7, 0.9),
              center_x: tuple[float, float] = (0.42, 0.58)) -> Pose:
    """Draw a plausible standing, walking or arm-raised pose with joint angles within human limits.

    Args:
        rng_or_seed: a numpy Generator (consumed) or an integer seed.
        view: "front", "side" or "back".
        action: front/back: stand, arms_out, arms_up, wave, hands_hips, stride; side: walk, stand, reach.
            Random if None.
        facing: +1 (image right) or -1 for the side view; random if None.
        scale: range of the standing height as a fraction of the image height.
        center_x: range of the mid-hip x as a fraction of the image width.

    Returns:
        The pose.

    Raises:
        ValueError: unknown view or action.
    """
    rng = _as_rng(rng_or_seed)
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    actions = _SIDE_ACTIONS if view == "side" else _FRONT_ACTIONS
    if action is None:
        action = _choice(rng, actions)
    if action not in actions:
        raise ValueError(f"action for the {view} view must be one of {sorted(set(actions))}, got {action!r}")
    if facing is None:
        facing = 1 if rng.random() < 0.5 else -1
    arms, legs = (_side_angles if view == "side" else _front_angles)(rng, action)
    s = float(rng.uniform(*scale))
    lean = float(rng.uniform(-0.05, 0.05)) if view != "side" else float(facing * rng.uniform(0.0, 0.06))
    top = min(s + 0.03, 0.99)  # keep the top of the head inside the image
    return Pose(
        view=view, facing=int(facing), scale=s, center_x=float(rng.uniform(*center_x)),
        ground_y=float(rng.uniform(top, max(top, 0.99))), lean=lean, head_tilt=float(rng.uniform(-0.1, 0.1)),
        arms=tuple(float(a) for a in arms), legs=tuple(float(a) for a in legs), action=action,
    )


# -------------------------------------------------------------------------------------------- skeleton


@dataclass
class _Skeleton:
    """Joint positions of one figure in image pixels, plus what the painter needs."""

    joints: np.ndarray      # (18, 2) float64 (x, y)
    face_visible: np.ndarray  # (18,) bool: False for face joints the view hides
    fingers: np.ndarray     # (2, 2) right, left finger tips
    toes: np.ndarray        # (2, 2) right, left toes
    unit: float             # pixels per body unit
    lat: float              # image-x factor of the person's left side: front +1, back -1, side ±0.2
    axis: np.ndarray        # unit vector neck -> mid-hip
    across: np.ndarray      # unit vector perpendicular to `axis`, towards image right
    head_center: np.ndarray
    head_axes: tuple[float, float]
    head_angle: float       # radians, rotation of the head's x axis from image x


def _dir(theta: float) -> np.ndarray:
    """Unit vector at angle theta from straight down, positive towards image right (y points down)."""
    return np.array([math.sin(theta), math.cos(theta)])


def _skeleton(ident: Identity, pose: Pose, size: tuple[int, int]) -> _Skeleton:
    h, w = size
    if pose.view == "front":
        lat = 1.0
    elif pose.view == "back":
        lat = -1.0
    else:  # turned: the far side sits slightly behind, towards the back
        lat = -0.2 * pose.facing
    j = np.zeros((18, 2))
    up = np.array([math.sin(pose.lean), -math.cos(pose.lean)])
    across = np.array([-up[1], up[0]])
    neck = up * ident.torso
    j[_NECK] = neck
    j[_RSHO] = neck - across * lat * ident.shoulder
    j[_LSHO] = neck + across * lat * ident.shoulder
    j[_RHIP] = (-lat * ident.hip, 0.0)
    j[_LHIP] = (lat * ident.hip, 0.0)
    # Image sign of "outward" (front/back) or "forward" (side) for each side's limbs.
    sign_r, sign_l = (pose.facing, pose.facing) if pose.view == "side" else (-lat, lat)
    fingers = np.zeros((2, 2))
    toes = np.zeros((2, 2))
    for k, (sho, elb, wri, sign) in enumerate(((_RSHO, _RELB, _RWRI, sign_r), (_LSHO, _LELB, _LWRI, sign_l))):
        a0, a1 = pose.arms[2 * k], pose.arms[2 * k + 1]
        j[elb] = j[sho] + ident.upper_arm * _dir(sign * a0)
        j[wri] = j[elb] + ident.forearm * _dir(sign * (a0 + a1))
        fingers[k] = j[wri] + _HAND * _dir(sign * (a0 + a1))
    for k, (hip, kne, ank, sign) in enumerate(((_RHIP, _RKNE, _RANK, sign_r), (_LHIP, _LKNE, _LANK, sign_l))):
        a0, a1 = pose.legs[2 * k], pose.legs[2 * k + 1]
        j[kne] = j[hip] + ident.thigh * _dir(sign * a0)
        j[ank] = j[kne] + ident.shin * _dir(sign * (a0 + a1))
        if pose.view == "side":
            toes[k] = j[ank] + (pose.facing * 0.085, 0.028)
        elif pose.view == "front":
            toes[k] = j[ank] + (sign * 0.012, 0.034)
        else:  # back view: the toes are hidden behind the heel
            toes[k] = j[ank] + (0.0, 0.03)
    # Head and face joints in the head's own frame (u across in half-widths a, v down in half-heights b).
    phi = pose.lean + pose.head_tilt
    head_up = np.array([math.sin(phi), -math.cos(phi)])
    hc = neck + head_up * (ident.neck + ident.head / 2)
    b = ident.head / 2
    a = ident.head * (0.46 if pose.view == "side" else 0.39)
    h_across, h_down = np.array([-head_up[1], head_up[0]]), -head_up
    face_visible = np.ones(18, dtype=bool)
    f = pose.facing
    if pose.view == "front":
        face = {_NOSE: (0.0, 0.2), _REYE: (-0.36, -0.08), _LEYE: (0.36, -0.08), _REAR: (-0.95, 0.0),
                _LEAR: (0.95, 0.0)}
    elif pose.view == "back":
        face = {_NOSE: (0.0, 0.2), _REYE: (0.36, -0.08), _LEYE: (-0.36, -0.08), _REAR: (0.95, 0.0),
                _LEAR: (-0.95, 0.0)}
        face_visible[[_NOSE, _REYE, _LEYE]] = False
    else:
        near_eye, near_ear, far_eye, far_ear = (_REYE, _REAR, _LEYE, _LEAR) if f > 0 else (_LEYE, _LEAR, _REYE, _REAR)
        face = {_NOSE: (f * 0.9, 0.2), near_eye: (f * 0.52, -0.08), near_ear: (-f * 0.15, 0.0),
                far_eye: (f * 0.6, -0.08), far_ear: (-f * 0.1, 0.0)}
        face_visible[[far_eye, far_ear]] = False
    for idx, (uu, vv) in face.items():
        j[idx] = hc + h_across * (uu * a) + h_down * (vv * b)
    # Stand on the ground: the lowest sole goes to ground_y, mid-hip to center_x.
    lowest = max(j[_RANK, 1], j[_LANK, 1]) + _ANKLE_H
    unit = pose.scale * h
    origin = np.array([pose.center_x * w, pose.ground_y * h - lowest * unit])
    return _Skeleton(
        joints=origin + j * unit, face_visible=face_visible, fingers=origin + fingers * unit,
        toes=origin + toes * unit, unit=unit, lat=lat, axis=-up, across=across, head_center=origin + hc * unit,
        head_axes=(a * unit, b * unit), head_angle=phi,
    )


# ---------------------------------------------------------------------------------------------- painter


@functools.lru_cache(maxsize=4096)
def _tile(p: Pattern) -> np.ndarray:
    """The (48, 48, 3) RGB tile of a pattern: periodic, so BORDER_WRAP repeats it seamlessly."""
    yy, xx = np.mgrid[0:_TILE, 0:_TILE]
    half = p.period // 2
    if p.kind == "stripes":
        sel = (yy % p.period) < half
    elif p.kind == "pinstripes":
        sel = (xx % p.period) < max(1, p.period // 4)
    elif p.kind == "checks":
        sel = ((yy % p.period) < half) ^ ((xx % p.period) < half)
    elif p.kind == "dots":
        cy, cx = yy % p.period - (p.period - 1) / 2, xx % p.period - (p.period - 1) / 2
        sel = cy * cy + cx * cx < (0.3 * p.period) ** 2
    elif p.kind == "diagonal":
        sel = ((xx + yy) % p.period) < half
    else:
        sel = np.zeros((_TILE, _TILE), dtype=bool)
    tile = np.where(sel[..., None], np.array(p.colors[1]), np.array(p.colors[0])).astype(np.int16)
    tile += np.where((xx + yy) % 2 == 0, 4, -4)[..., None].astype(np.int16)  # faint weave, not a flat fill
    return np.clip(tile, 0, 255).astype(np.uint8)


def _fx(p: np.ndarray) -> tuple[int, int]:
    """Point to cv2 fixed-point coordinates (`_SHIFT` fractional bits)."""
    return (int(round(float(p[0]) * (1 << _SHIFT))), int(round(float(p[1]) * (1 << _SHIFT))))


def _dim(color: RGB, factor: float) -> RGB:
    return (int(color[0] * factor), int(color[1] * factor), int(color[2] * factor))


class _Canvas:
    """cv2 drawing on an RGB image that also tracks the bounding box of everything drawn."""

    def __init__(self, img: np.ndarray) -> None:
        self.img = img
        self.h, self.w = img.shape[:2]
        self.box = [math.inf, math.inf, -math.inf, -math.inf]

    def _grow(self, x0: float, y0: float, x1: float, y1: float) -> None:
        b = self.box
        b[0], b[1], b[2], b[3] = min(b[0], x0), min(b[1], y0), max(b[2], x1), max(b[3], y1)

    def capsule(self, p0: np.ndarray, p1: np.ndarray, width: float, color: RGB) -> None:
        t = max(1, int(round(width)))
        cv2.line(self.img, _fx(p0), _fx(p1), color, t, cv2.LINE_8, _SHIFT)
        r = t / 2
        self._grow(min(p0[0], p1[0]) - r, min(p0[1], p1[1]) - r, max(p0[0], p1[0]) + r, max(p0[1], p1[1]) + r)

    def ellipse(self, c: np.ndarray, axes: tuple[float, float], angle: float, color: RGB) -> None:
        ax = (max(1, int(round(axes[0] * (1 << _SHIFT)))), max(1, int(round(axes[1] * (1 << _SHIFT)))))
        cv2.ellipse(self.img, _fx(c), ax, math.degrees(angle), 0, 360, color, -1, cv2.LINE_8, _SHIFT)
        r = max(axes)
        self._grow(c[0] - r, c[1] - r, c[0] + r, c[1] + r)

    def _roi(self, pts: np.ndarray, pad: float) -> tuple[int, int, int, int] | None:
        x0 = max(0, int(math.floor(pts[:, 0].min() - pad)))
        y0 = max(0, int(math.floor(pts[:, 1].min() - pad)))
        x1 = min(self.w, int(math.ceil(pts[:, 0].max() + pad)) + 1)
        y1 = min(self.h, int(math.ceil(pts[:, 1].max() + pad)) + 1)
        return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None

    def _fill(self, roi: tuple[int, int, int, int], mask: np.ndarray, tile: np.ndarray, origin: np.ndarray,
              axis: np.ndarray, k: float, dim: float) -> None:
        """Warp the tile into the limb frame (origin, axis) and copy it where the mask is set."""
        x0, y0, x1, y1 = roi
        o = origin - (x0, y0)
        ev = np.array([-axis[1], axis[0]])
        m = np.array([[k * ev[0], k * ev[1], -k * float(ev @ o)], [k * axis[0], k * axis[1], -k * float(axis @ o)]])
        warped = cv2.warpAffine(tile, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_WRAP)
        if dim != 1.0:
            warped = cv2.convertScaleAbs(warped, alpha=dim)
        np.copyto(self.img[y0:y1, x0:x1], warped, where=mask[..., None].astype(bool))

    def tex_capsule(self, p0: np.ndarray, p1: np.ndarray, width: float, tile: np.ndarray, k: float,
                    origin: np.ndarray, axis: np.ndarray, dim: float = 1.0) -> None:
        t = max(1, int(round(width)))
        roi = self._roi(np.stack([p0, p1]), t / 2 + 2)
        self._grow(min(p0[0], p1[0]) - t / 2, min(p0[1], p1[1]) - t / 2,
                   max(p0[0], p1[0]) + t / 2, max(p0[1], p1[1]) + t / 2)
        if roi is None:
            return
        mask = np.zeros((roi[3] - roi[1], roi[2] - roi[0]), dtype=np.uint8)
        off = np.array(roi[:2], dtype=float)
        cv2.line(mask, _fx(p0 - off), _fx(p1 - off), 255, t, cv2.LINE_8, _SHIFT)
        self._fill(roi, mask, tile, origin, axis, k, dim)

    def tex_poly(self, pts: np.ndarray, tile: np.ndarray, k: float, origin: np.ndarray, axis: np.ndarray,
                 dim: float = 1.0) -> None:
        roi = self._roi(pts, 2)
        self._grow(pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max())
        if roi is None:
            return
        mask = np.zeros((roi[3] - roi[1], roi[2] - roi[0]), dtype=np.uint8)
        fixed = np.round((pts - roi[:2]) * (1 << _SHIFT)).astype(np.int32)
        cv2.fillPoly(mask, [fixed], 255, cv2.LINE_8, _SHIFT)
        self._fill(roi, mask, tile, origin, axis, k, dim)


def _unit_vec(v: np.ndarray) -> np.ndarray:
    n = float(np.hypot(v[0], v[1]))
    return v / n if n > 1e-9 else np.array([0.0, 1.0])


def _paint(cv: _Canvas, ident: Identity, pose: Pose, sk: _Skeleton) -> None:
    """Draw one figure back to front: far limbs first; the left/right order flips in the back view."""
    u, bld = sk.unit, ident.build
    k = _TILE / (_TILE_UNITS * u)
    top, bottom = _tile(ident.top), _tile(ident.bottom)
    j = sk.joints
    neck, axis, across = j[_NECK], sk.axis, sk.across
    skin, hair = ident.skin, ident.hair

    def leg(side: int, dim: float) -> None:
        hip, kne, ank = (j[_RHIP], j[_RKNE], j[_RANK]) if side == 0 else (j[_LHIP], j[_LKNE], j[_LANK])
        w_th, w_sh = 0.085 * bld * u, 0.062 * bld * u
        sk_c = _dim(skin, dim)
        cv.capsule(hip, kne, w_th, sk_c)
        cv.capsule(kne, ank, w_sh, sk_c)
        cover = ident.leg_cover * (ident.thigh + ident.shin)
        if cover > 0:
            a_th = _unit_vec(kne - hip)
            cv.tex_capsule(hip, hip + (kne - hip) * min(1.0, cover / ident.thigh), w_th * 1.12, bottom, k, hip,
                           a_th, dim)
            if cover > ident.thigh:
                frac = min(1.0, (cover - ident.thigh) / ident.shin)
                cv.tex_capsule(kne, kne + (ank - kne) * frac, w_sh * 1.18, bottom, k, kne, _unit_vec(ank - kne), dim)
        cv.capsule(ank, sk.toes[side], w_sh * 0.85, _dim(ident.shoes, dim))

    def arm(side: int, dim: float) -> None:
        sho, elb, wri = (j[_RSHO], j[_RELB], j[_RWRI]) if side == 0 else (j[_LSHO], j[_LELB], j[_LWRI])
        w_ua, w_fa = 0.058 * bld * u, 0.046 * bld * u
        sk_c = _dim(skin, dim)
        cv.capsule(sho, elb, w_ua, sk_c)
        cv.capsule(elb, wri, w_fa, sk_c)
        cv.capsule(wri, sk.fingers[side], w_fa * 0.95, sk_c)
        cover = ident.sleeve * (ident.upper_arm + ident.forearm)
        if cover > 0.01:
            cv.tex_capsule(sho, sho + (elb - sho) * min(1.0, cover / ident.upper_arm), w_ua * 1.2, top, k, sho,
                           _unit_vec(elb - sho), dim)
            if cover > ident.upper_arm:
                frac = min(1.0, (cover - ident.upper_arm) / ident.forearm)
                cv.tex_capsule(elb, elb + (wri - elb) * frac, w_fa * 1.25, top, k, elb, _unit_vec(wri - elb), dim)

    # Torso outline in its own frame: v across (body units), t down from the neck; the side view shows depth.
    lat = abs(sk.lat)
    t_waist, t_bottom = ident.torso * 0.78, ident.torso + 0.05
    half_top = max(lat * (ident.shoulder + 0.03 * bld), 0.075 * bld)
    half_waist = max(lat * (ident.hip + 0.04 * bld) * (1.0 if ident.gender == "MEN" else 0.95), 0.068 * bld)
    half_bottom = max(lat * (ident.hip + 0.045 * bld), 0.075 * bld)

    def frame_pts(rows: list[tuple[float, float]]) -> np.ndarray:
        return np.array([neck + across * (v * u) + axis * (t * u) for v, t in rows])

    def torso() -> None:
        cv.tex_poly(frame_pts([(-half_top, -0.02), (half_top, -0.02), (half_waist, t_waist), (-half_waist, t_waist)]),
                    top, k, neck, axis)
        cv.tex_poly(frame_pts([(-half_waist, t_waist - 0.005), (half_waist, t_waist - 0.005),
                               (half_bottom, t_bottom), (-half_bottom, t_bottom)]), bottom, k, neck, axis)

    def skirt() -> None:
        if ident.skirt:
            hem = max(lat * (ident.hip + 0.11 * bld), 0.12 * bld)
            t_hem = ident.torso + 0.55 * ident.thigh
            cv.tex_poly(frame_pts([(-half_waist, t_waist), (half_waist, t_waist), (hem, t_hem), (-hem, t_hem)]),
                        bottom, k, neck, axis)

    hc, (a, b), phi = sk.head_center, sk.head_axes, sk.head_angle
    h_across = np.array([math.cos(phi), math.sin(phi)])
    h_down = np.array([-math.sin(phi), math.cos(phi)])
    f = pose.facing

    def neck_part() -> None:
        cv.capsule(neck, neck + (hc - neck) * 0.6, 0.05 * bld * u, skin)

    def long_hair_behind() -> None:
        if ident.hair_style == "long" and pose.view == "front":
            cv.ellipse(hc + h_down * (0.55 * b), (1.12 * a, 1.45 * b), phi, hair)

    def head() -> None:
        ears = [j[_REAR], j[_LEAR]]
        eyes = [j[i] for i in (_REYE, _LEYE) if sk.face_visible[i]]
        if pose.view == "front":
            if ident.hair_style != "bald":
                cv.ellipse(hc - h_down * (0.12 * b), (1.06 * a, 0.95 * b), phi, hair)
            cv.ellipse(hc + h_down * (0.08 * b), (0.96 * a, 0.92 * b), phi, skin)
        elif pose.view == "back":
            if ident.hair_style == "long":
                cv.ellipse(hc + h_down * (0.6 * b), (1.1 * a, 1.5 * b), phi, hair)
            cv.ellipse(hc, (a, b), phi, skin)
            if ident.hair_style != "bald":
                # Low enough to cover the chin line: a skin crescent there reads as a face.
                cv.ellipse(hc + h_down * (0.03 * b), (1.04 * a, 1.0 * b), phi, hair)
        else:
            if ident.hair_style == "long":
                cv.ellipse(hc + h_down * (0.55 * b) - h_across * (f * 0.35 * a), (0.8 * a, 1.45 * b), phi, hair)
            cv.ellipse(hc, (a, b), phi, skin)
            cv.ellipse(j[_NOSE], (0.14 * a, 0.14 * a), phi, skin)
            if ident.hair_style != "bald":
                cv.ellipse(hc - h_down * (0.15 * b) - h_across * (f * 0.33 * a), (0.78 * a, 0.9 * b), phi, hair)
            ears = [j[_REAR] if f > 0 else j[_LEAR]]
        for e in ears:
            cv.ellipse(e, (0.2 * a, 0.28 * a), phi, _dim(skin, 0.93))
        for e in eyes:
            cv.ellipse(e, (max(0.6, 0.11 * a), max(0.6, 0.11 * a)), 0.0, _EYE)

    if pose.view == "front":
        order: list[Callable[[], None]] = [long_hair_behind, lambda: leg(0, 1.0), lambda: leg(1, 1.0), skirt, torso,
                                           lambda: arm(0, 1.0), lambda: arm(1, 1.0), neck_part, head]
    elif pose.view == "back":
        order = [lambda: leg(1, 1.0), lambda: leg(0, 1.0), skirt, torso, lambda: arm(1, 1.0), lambda: arm(0, 1.0),
                 neck_part, head]
    else:
        near = 0 if f > 0 else 1  # facing image right shows the right side
        far = 1 - near
        order = [lambda: arm(far, 0.8), lambda: leg(far, 0.8), lambda: leg(near, 1.0), skirt, torso, neck_part,
                 head, lambda: arm(near, 1.0)]
    for part in order:
        part()


@dataclass
class _Drawn:
    """One painted figure: its keypoints and extra Human-Art points, in the image frame."""

    keypoints: Keypoints
    fingers: np.ndarray  # (2, 2) right, left
    toes: np.ndarray     # (2, 2) right, left
    box: tuple[float, float, float, float]  # x0, y0, x1, y1, clipped to the image


def _draw(img: np.ndarray, ident: Identity, pose: Pose) -> _Drawn:
    h, w = img.shape[:2]
    sk = _skeleton(ident, pose, (h, w))
    cv = _Canvas(img)
    _paint(cv, ident, pose, sk)
    xy = sk.joints
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
    kp = Keypoints(xy.astype(np.float32), sk.face_visible & inside, (h, w), "openpose18")
    x0, y0, x1, y1 = cv.box
    box = (max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1))
    return _Drawn(kp, sk.fingers, sk.toes, box)


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise PosebenchError(f"size must be (H, W) with two integers, got {size!r}") from None
    if not (32 <= h <= 1024 and 32 <= w <= 1024):
        raise PosebenchError(f"size must be (H, W) with each side in 32..1024, got {size!r}; "
                             "pass e.g. size=(256, 176)")
    return h, w


def render_person(identity: Identity, pose: Pose, size: tuple[int, int],
                  background: np.ndarray | None = None) -> tuple[np.ndarray, Keypoints]:
    """Render one synthetic person in memory.

    Args:
        identity: appearance (see `make_identity`).
        pose: joint angles and placement (see `make_pose`).
        size: image size (H, W), each side in 32..1024.
        background: (H, W, 3) uint8 RGB to draw on (not modified); light grey if None.

    Returns:
        (H, W, 3) uint8 RGB image and openpose18 Keypoints in frame `size`. Joints outside the image, the
        nose and eyes in the back view and the far eye and ear in the side view are not visible.

    Raises:
        PosebenchError: bad size.
        ValueError: background of the wrong shape or dtype.
    """
    h, w = _check_size(size)
    if background is None:
        img = np.full((h, w, 3), 236, dtype=np.uint8)
    else:
        if background.shape != (h, w, 3) or background.dtype != np.uint8:
            raise ValueError(f"background must be ({h}, {w}, 3) uint8, got {background.shape} {background.dtype}")
        img = np.ascontiguousarray(background).copy()
    drawn = _draw(img, identity, pose)
    return img, drawn.keypoints


# ------------------------------------------------------------------------------------------- backgrounds


def _field(rng: np.random.Generator, size: tuple[int, int], palette: Sequence[RGB], grid: tuple[int, int],
           jitter: int = 12) -> np.ndarray:
    """Smooth multi-colour gradient: a small random colour grid upsampled bilinearly."""
    h, w = size
    small = np.array([[_jitter(rng, _choice(rng, palette), jitter) for _ in range(grid[1])] for _ in range(grid[0])],
                     dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _noise(img: np.ndarray, rng: np.random.Generator, amp: float, cell: int = 4) -> np.ndarray:
    """Add low-frequency signed noise of relative amplitude `amp`."""
    h, w = img.shape[:2]
    small = rng.integers(0, 256, size=(h // cell + 2, w // cell + 2, 3), dtype=np.uint8)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.addWeighted(img, 1.0, big, amp, -128.0 * amp)


def _shapes(img: np.ndarray, rng: np.random.Generator, palette: Sequence[RGB], n: int) -> None:
    h, w = img.shape[:2]
    for _ in range(n):
        color = _jitter(rng, _choice(rng, palette), 20)
        kind = int(rng.integers(3))
        x0, y0 = int(rng.integers(-w // 4, w)), int(rng.integers(-h // 4, h))
        if kind == 0:
            cv2.rectangle(img, (x0, y0), (x0 + int(rng.integers(4, w // 2 + 5)), y0 + int(rng.integers(4, h // 2 + 5))),
                          color, -1)
        elif kind == 1:
            cv2.circle(img, (x0, y0), int(rng.integers(3, max(4, min(h, w) // 4))), color, -1)
        else:
            cv2.line(img, (x0, y0), (int(rng.integers(w)), int(rng.integers(h))), color,
                     int(rng.integers(1, max(2, w // 30))))


_STUDIO_LIGHT: tuple[RGB, ...] = ((245, 245, 245), (236, 234, 230), (250, 248, 240), (230, 236, 242),
                                  (240, 230, 232), (226, 232, 226), (214, 214, 216))
_STUDIO_MID: tuple[RGB, ...] = ((180, 190, 200), (200, 185, 170), (170, 180, 170), (150, 160, 178))
_STREET: tuple[RGB, ...] = ((120, 120, 125), (150, 140, 130), (160, 110, 90), (90, 95, 100), (180, 175, 165),
                            (110, 120, 100), (70, 80, 90), (140, 150, 160))
_GROUND: tuple[RGB, ...] = ((90, 90, 95), (120, 115, 110), (70, 70, 72), (140, 130, 120), (100, 105, 95))


def _studio(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """DeepFashion-like: mostly light, plain studio backdrops with a soft gradient and sometimes a floor."""
    palette = _STUDIO_LIGHT if rng.random() < 0.85 else _STUDIO_MID
    img = _field(rng, size, palette, (int(rng.integers(1, 3)), int(rng.integers(1, 3))), jitter=6)
    if rng.random() < 0.5:
        y = int(size[0] * rng.uniform(0.75, 0.92))
        img[y:] = (img[y:].astype(np.uint16) * 236 >> 8).astype(np.uint8)
    return _noise(img, rng, 0.03)


def _street(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Market-like: building facades above a pavement, clutter, camera noise."""
    h, _ = size
    img = _field(rng, size, _STREET, (int(rng.integers(2, 4)), int(rng.integers(2, 4))), jitter=15)
    y = int(h * rng.uniform(0.55, 0.85))
    img[y:] = _field(rng, (h - y, size[1]), _GROUND, (2, 2), jitter=10)
    _shapes(img, rng, _STREET + ((40, 40, 45), (200, 200, 190)), int(rng.integers(2, 7)))
    img = _noise(img, rng, 0.1, cell=2)
    return cv2.GaussianBlur(img, (3, 3), 0) if rng.random() < 0.5 else img


# --------------------------------------------------------------------------------- Human-Art scenario styles

Filter = Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]


def _gray3(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)


def _posterize(img: np.ndarray, levels: int) -> np.ndarray:
    q = 256 // levels
    return (img // q) * q + q // 2


def _outline(img: np.ndarray, color: RGB, thick: int = 1) -> np.ndarray:
    edges = cv2.Canny(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), 50, 150)
    if thick > 1:
        edges = cv2.dilate(edges, np.ones((thick, thick), np.uint8))
    out = img.copy()
    out[edges > 0] = color
    return out


def _tint(img: np.ndarray, color: RGB) -> np.ndarray:
    """Grey levels times a colour (monochrome prints, stone, bronze)."""
    return cv2.multiply(_gray3(img), np.full_like(img, color), scale=1 / 255)


def _saturate(img: np.ndarray, factor: float) -> np.ndarray:
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    hsv[..., 1] = cv2.convertScaleAbs(hsv[..., 1], alpha=factor)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


@functools.lru_cache(maxsize=16)
def _vignette(size: tuple[int, int]) -> np.ndarray:
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot((yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2))
    return np.clip(1.15 - 0.45 * r * r, 0.4, 1.0).astype(np.float32)[..., None]


def _f_cartoon(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _outline(_posterize(img, 5), (20, 20, 20), 2)


def _f_digital(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return cv2.convertScaleAbs(_saturate(img, 1.35), alpha=1.1, beta=-8)


def _f_ink(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    gray[mask > 0] = (gray[mask > 0].astype(np.uint16) * 180 >> 8).astype(np.uint8)  # light skin must not vanish
    ink = _posterize(cv2.GaussianBlur(gray, (0, 0), 1.2), 4)
    return cv2.multiply(cv2.cvtColor(ink, cv2.COLOR_GRAY2RGB), np.full_like(img, (245, 238, 220)), scale=1 / 255)


def _f_kids(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    paper = np.full_like(img, 250)
    flat = cv2.addWeighted(_posterize(img, 3), 0.6, paper, 0.4, 0)
    flat[mask == 0] = paper[mask == 0]
    return _outline(flat, _jitter(rng, (40, 40, 120), 40), 2)


def _f_mural(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = cv2.addWeighted(img, 0.6, _gray3(img), 0.4, 0)
    out = cv2.multiply(out, np.full_like(img, (255, 235, 205)), scale=1 / 255)
    return _noise(out, rng, 0.15, cell=3)


def _f_oil(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _noise(_posterize(cv2.medianBlur(img, 5), 10), rng, 0.05, cell=2)


def _f_shadow(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = img.copy()
    out[mask > 0] = _jitter(rng, (35, 22, 15), 10)
    return cv2.GaussianBlur(out, (3, 3), 0)


def _f_sketch(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    blur = cv2.GaussianBlur(255 - gray, (0, 0), 3)
    sketch = cv2.divide(gray, 255 - blur, scale=256)  # colour dodge: the classic pencil-sketch filter
    return cv2.cvtColor(sketch, cv2.COLOR_GRAY2RGB)


def _f_glass(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = _saturate(_posterize(img, 4), 1.4)
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(4, 9))):
        cv2.line(out, (int(rng.integers(w)), 0), (int(rng.integers(w)), h), (15, 15, 15), 1)
        cv2.line(out, (0, int(rng.integers(h))), (w, int(rng.integers(h))), (15, 15, 15), 1)
    return _outline(out, (15, 15, 15), 2)


def _f_ukiyoe(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = cv2.addWeighted(_posterize(img, 4), 0.75, np.full_like(img, (232, 215, 180)), 0.25, 0)
    return _outline(out, (30, 35, 60), 1)


def _f_watercolor(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = _posterize(cv2.GaussianBlur(img, (0, 0), 1.5), 6)
    return _noise(cv2.addWeighted(out, 0.7, np.full_like(img, 250), 0.3, 0), rng, 0.06, cell=6)


def _f_garage(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return cv2.GaussianBlur(cv2.convertScaleAbs(_saturate(img, 1.3), alpha=1.2, beta=-15), (3, 3), 0)


def _f_relief(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    kernel = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float32)
    emb = cv2.filter2D(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), -1, kernel, delta=64)
    emb = cv2.addWeighted(emb, 0.5, cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), 0.5, 40)
    return cv2.multiply(cv2.cvtColor(emb, cv2.COLOR_GRAY2RGB), np.full_like(img, (215, 200, 175)), scale=1 / 255)


def _f_sculpture(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    stone = _choice(rng, ((230, 228, 220), (190, 140, 80), (160, 165, 170)))  # marble, bronze, granite
    out = img.copy()
    statue = _tint(img, stone)
    out[mask > 0] = statue[mask > 0]
    return out


def _f_photo(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _noise(img, rng, 0.05, cell=2)


def _f_dance(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    lights = np.zeros_like(img)
    h, w = img.shape[:2]
    for _ in range(3):
        cv2.circle(lights, (int(rng.integers(w)), int(rng.integers(h // 2))), int(rng.integers(h // 6, h // 3)),
                   _jitter(rng, _choice(rng, ((255, 60, 200), (60, 120, 255), (255, 200, 40))), 30), -1)
    return cv2.add(img, cv2.GaussianBlur(lights, (0, 0), 12) // 3)


def _f_stage(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (img.astype(np.float32) * _vignette(img.shape[:2]) * 0.9).astype(np.uint8)


def _f_movie(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    graded = cv2.multiply(img, np.full_like(img, (255, 225, 200)), scale=1 / 255)  # warm, teal shadows
    graded = cv2.add(graded, np.full_like(img, (0, 10, 18)))
    return (graded.astype(np.float32) * _vignette(img.shape[:2])).astype(np.uint8)


_ART_PAPER: tuple[RGB, ...] = ((245, 240, 225), (235, 225, 200), (250, 250, 245))
# scenario -> (background palette, number of background shapes, filter)
_SCENARIO_STYLE: dict[str, tuple[tuple[RGB, ...], int, Filter]] = {
    "cartoon": (((120, 200, 250), (250, 230, 120), (140, 220, 140), (250, 160, 160)), 3, _f_cartoon),
    "digital_art": (((40, 30, 90), (200, 60, 160), (30, 140, 200), (250, 180, 60)), 4, _f_digital),
    "ink_painting": (_ART_PAPER, 2, _f_ink),
    "kids_drawing": (((250, 250, 245), (255, 240, 150), (170, 220, 255)), 4, _f_kids),
    "mural": (((190, 150, 110), (160, 110, 80), (120, 140, 150), (210, 190, 150)), 5, _f_mural),
    "oil_painting": (((80, 110, 60), (140, 100, 60), (60, 80, 120), (200, 170, 110)), 4, _f_oil),
    "shadow_play": (((250, 200, 120), (245, 170, 80), (255, 225, 160)), 0, _f_shadow),
    "sketch": (_ART_PAPER, 3, _f_sketch),
    "stained_glass": (((200, 40, 40), (40, 80, 200), (240, 200, 40), (40, 160, 80)), 6, _f_glass),
    "ukiyoe": (((232, 215, 180), (60, 90, 140), (200, 80, 60)), 3, _f_ukiyoe),
    "watercolor": (((170, 210, 240), (240, 200, 210), (200, 230, 190), (250, 240, 200)), 4, _f_watercolor),
    "garage_kits": (((240, 240, 240), (200, 210, 230), (60, 60, 70)), 2, _f_garage),
    "relief": (((200, 190, 170), (180, 170, 150)), 3, _f_relief),
    "sculpture": (((60, 60, 65), (200, 200, 205), (120, 110, 100)), 1, _f_sculpture),
    "acrobatics": (((180, 160, 130), (90, 110, 160), (220, 220, 225)), 3, _f_photo),
    "cosplay": (((200, 200, 210), (120, 100, 140), (230, 220, 200)), 4, _f_photo),
    "dance": (((30, 25, 45), (70, 40, 90), (20, 20, 30)), 2, _f_dance),
    "drama": (((50, 30, 30), (90, 60, 40), (30, 30, 40)), 2, _f_stage),
    "movie": (((70, 80, 90), (110, 100, 80), (40, 50, 60), (150, 140, 120)), 5, _f_movie),
}


# ------------------------------------------------------------------------------------------------ writing


def _encode_jpeg(img_rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise RuntimeError("cv2.imencode failed to write a JPEG")
    return buf.tobytes()


def _write_jpeg(path: Path, img_rgb: np.ndarray) -> None:
    # Images are plain writes: the index files (lst/CSV/JSON) are written atomically last, so a crashed run is
    # recognisable by their absence.
    path.write_bytes(_encode_jpeg(img_rgb))


def _csv_coords(kp: Keypoints, frame: tuple[int, int]) -> tuple[list[int], list[int]]:
    """(y list, x list) of 18 ints in `frame`, -1 for an invisible joint (PATN annotation CSVs)."""
    scaled = kp.rescale(frame)
    fh, fw = frame
    ys, xs = [], []
    for (x, y), vis in zip(scaled.xy, scaled.visible, strict=True):
        if vis:
            # Clip so that rounding never pushes a visible joint out of the frame (readers treat that as missing).
            ys.append(min(fh - 1, max(0, int(round(float(y))))))
            xs.append(min(fw - 1, max(0, int(round(float(x))))))
        else:
            ys.append(-1)
            xs.append(-1)
    return ys, xs


def _annotation_text(rows: Sequence[tuple[str, Keypoints]], frame: tuple[int, int]) -> str:
    lines = ["name:keypoints_y:keypoints_x"]
    for name, kp in rows:
        ys, xs = _csv_coords(kp, frame)
        lines.append(f"{name}:{json.dumps(ys)}:{json.dumps(xs)}")
    return "\n".join(lines) + "\n"


def _pairs_text(groups: Sequence[Sequence[str]]) -> tuple[str, int]:
    """All ordered pairs of distinct images within each group, source first."""
    lines = ["from,to"]
    for names in groups:
        lines.extend(f"{a},{b}" for a in names for b in names if a != b)
    return "\n".join(lines) + "\n", len(lines) - 1


def _lines(names: Sequence[str]) -> str:
    return "".join(f"{n}\n" for n in names)


def _split_identities(n: int, test_fraction: float, rng: np.random.Generator) -> list[str]:
    """'train' or 'test' per identity index; at least one identity in each split."""
    n_test = min(max(1, int(round(n * test_fraction))), n - 1)
    test = set(rng.permutation(n)[:n_test].tolist())
    return ["test" if i in test else "train" for i in range(n)]


class _Bar:
    """A rich progress bar, or nothing."""

    def __init__(self, enabled: bool, total: int, description: str) -> None:
        self._progress = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

            from posebench.utils.progress import Progress

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeRemainingColumn())
            self._task = self._progress.add_task(description, total=total)

    @contextmanager
    def running(self) -> Iterator[_Bar]:
        if self._progress is None:
            yield self
            return
        with self._progress:
            yield self

    def advance(self) -> None:
        if self._progress is not None:
            self._progress.advance(self._task)

    def grow(self, extra: int) -> None:
        """Raise the total once the writer knows about more images (Market query images, junk, distractors)."""
        if self._progress is not None:
            total = self._progress.tasks[0].total or 0
            self._progress.update(self._task, total=total + extra)


@dataclass(frozen=True)
class _Job:
    format: SynthFormat
    out: Path
    identities: int
    poses: int
    size: tuple[int, int]
    seed: int
    test_fraction: float
    shared_background: bool = False


def _write_deepfashion(job: _Job, bar: _Bar) -> SynthSummary:
    code = _FORMAT_CODE["deepfashion"]
    split_of = _split_identities(job.identities, job.test_fraction, _rng(job.seed, code, _STREAM_SPLIT))
    names: dict[str, list[str]] = {"train": [], "test": []}
    groups: dict[str, list[list[str]]] = {"train": [], "test": []}
    annots: dict[str, list[tuple[str, Keypoints]]] = {"train": [], "test": []}
    for split in names:
        (job.out / split).mkdir(parents=True, exist_ok=True)
    for i in range(job.identities):
        rng_id = _rng(job.seed, code, _STREAM_IDENTITY, i)
        gender = "WOMEN" if rng_id.random() < 0.5 else "MEN"
        category = _choice(rng_id, DEEPFASHION_CATEGORIES[gender])
        ident = make_identity(rng_id, gender=gender, category=category)
        split = split_of[i]
        group = []
        for p in range(job.poses):
            number, word, view = DEEPFASHION_VIEWS[p % len(DEEPFASHION_VIEWS)]
            rng = _rng(job.seed, code, _STREAM_IMAGE, i, p)
            pose = make_pose(rng, view)
            # drawn after the pose either way, so the shared backdrop changes nothing else
            backdrop = _studio(_rng(job.seed, code, _STREAM_EXTRA, i), job.size) if job.shared_background \
                else _studio(rng, job.size)
            img, kp = render_person(ident, pose, job.size, backdrop)
            name = f"fashion{gender}{category}id{i + 1:08d}01_{number}{word}.jpg"
            _write_jpeg(job.out / split / name, img)
            names[split].append(name)
            group.append(name)
            annots[split].append((name, kp))
            bar.advance()
        groups[split].append(group)
    pairs = {}
    for split in ("train", "test"):
        text, pairs[split] = _pairs_text(groups[split])
        atomic_write_text(job.out / f"fasion-resize-pairs-{split}.csv", text)
        atomic_write_text(job.out / f"fasion-resize-annotation-{split}.csv",
                          _annotation_text(annots[split], (256, 176)))
        atomic_write_text(job.out / f"{split}.lst", _lines(names[split]))
    return SynthSummary("deepfashion", job.out, job.size, job.seed, {s: len(v) for s, v in names.items()}, pairs,
                        {s: len(v) for s, v in groups.items()})


def _market_name(pid: int, cam: int, seq: int, frame: int) -> str:
    head = "-1" if pid < 0 else f"{pid:04d}"
    return f"{head}_c{cam}s{seq}_{frame:06d}_01.jpg"


def _write_market(job: _Job, bar: _Bar) -> SynthSummary:
    code = _FORMAT_CODE["market"]
    split_of = _split_identities(job.identities, job.test_fraction, _rng(job.seed, code, _STREAM_SPLIT))
    dirs = {"train": "bounding_box_train", "test": "bounding_box_test", "query": "query"}
    for d in dirs.values():
        (job.out / d).mkdir(parents=True, exist_ok=True)
    counts = {"train": 0, "test": 0, "query": 0}
    groups: dict[str, list[list[str]]] = {"train": [], "test": []}
    annots: dict[str, list[tuple[str, Keypoints]]] = {"train": [], "test": []}
    # Test ids get `poses` gallery images plus query images, as in the real set, so the pose-transfer test
    # split has as many pairs per person as the training split.
    n_query = 1 if job.poses < 6 else 2
    for i in range(job.identities):
        rng_id = _rng(job.seed, code, _STREAM_IDENTITY, i)
        ident = make_identity(rng_id)
        cams = (rng_id.permutation(6) + 1).tolist()  # test ids: query cameras first, gallery on the others
        split, group = split_of[i], []
        n_images = job.poses + (n_query if split == "test" else 0)
        bar.grow(n_images - job.poses)
        for p in range(n_images):
            rng = _rng(job.seed, code, _STREAM_IMAGE, i, p)
            pose = make_pose(rng, _choice(rng, ("front", "front", "back", "back", "side")), scale=(0.78, 0.92),
                             center_x=(0.44, 0.56))
            img, kp = render_person(ident, pose, job.size, _street(rng, job.size))
            if split == "train":
                cam, folder = int(rng.integers(1, 7)), "train"
            elif p < job.poses:
                cam, folder = cams[n_query + p % (6 - n_query)], "test"
            else:
                cam, folder = cams[p - job.poses], "query"
            # Frames of one pid come from disjoint 25-frame windows, so names never collide.
            name = _market_name(i + 1, cam, int(rng.integers(1, 7)), 25 * (p + 1) + int(rng.integers(25)))
            _write_jpeg(job.out / dirs[folder] / name, img)
            counts[folder] += 1
            if folder != "query":
                group.append(name)
                annots[folder].append((name, kp))
            bar.advance()
        groups[split].append(group)
    # Junk (pid -1: partial, blurred boxes) and distractors (pid 0000: false detections) in the gallery only.
    n_extra = max(1, round(0.05 * counts["test"]))
    bar.grow(2 * n_extra)
    for k in range(2 * n_extra):
        rng = _rng(job.seed, code, _STREAM_EXTRA, k)
        img = _street(rng, job.size)
        junk = k < n_extra
        if junk:
            pose = make_pose(rng, "front", scale=(1.2, 1.6), center_x=(0.0, 1.0))
            img = cv2.GaussianBlur(render_person(make_identity(rng), pose, job.size, img)[0], (0, 0), 2)
        pid = -1 if junk else 0
        name = _market_name(pid, int(rng.integers(1, 7)), int(rng.integers(1, 7)), 25 * (k + 1) + int(rng.integers(25)))
        _write_jpeg(job.out / dirs["test"] / name, img)
        counts["test"] += 1
        bar.advance()
    pairs = {}
    for split in ("train", "test"):
        text, pairs[split] = _pairs_text(groups[split])
        atomic_write_text(job.out / f"market-pairs-{split}.csv", text)
        atomic_write_text(job.out / f"market-annotation-{split}.csv", _annotation_text(annots[split], (128, 64)))
    return SynthSummary("market", job.out, job.size, job.seed, counts, pairs,
                        {s: len(v) for s, v in groups.items()})


_HUMANART_SKELETON: list[list[int]] = [[a + 1, b + 1] for a, b in COCO17_LIMBS] + [[10, 18], [11, 19], [16, 20],
                                                                                    [17, 21]]


def _color_name(p: Pattern) -> str:
    kind = "" if p.kind == "solid" else f"{p.kind} "
    return f"{p.names[0] or 'coloured'} {kind}".strip()


def _describe(scenario: str, ident: Identity, pose: Pose, others: int) -> str:
    lower = "skirt" if ident.skirt else ("shorts" if ident.leg_cover < 0.5 else "trousers")
    text = (f"{scenario}, a synthetic person in a {_color_name(ident.top)} top and {_color_name(ident.bottom)} "
            f"{lower}, {pose.action.replace('_', ' ')}, {pose.view} view")
    return text + (f", with {others} more {'person' if others == 1 else 'people'}" if others else "")


def _coco_person(drawn: _Drawn, size: tuple[int, int]) -> dict:
    h, w = size
    coco = drawn.keypoints.convert("coco17")
    kps: list[float] = []
    for (x, y), vis in zip(coco.xy, coco.visible, strict=True):
        kps.extend([round(float(x), 2), round(float(y), 2), 2] if vis else [0, 0, 0])
    extra: list[float] = []
    # HUMANART21 order: left_finger, right_finger, left_toe, right_toe; `_Drawn` stores (right, left).
    for x, y in (drawn.fingers[1], drawn.fingers[0], drawn.toes[1], drawn.toes[0]):
        extra.extend([round(float(x), 2), round(float(y), 2), 2] if 0 <= x < w and 0 <= y < h else [0, 0, 0])
    x0, y0, x1, y1 = drawn.box
    bw, bh = max(0.0, x1 - x0), max(0.0, y1 - y0)
    return {
        "keypoints": kps, "keypoints_21": kps + extra, "num_keypoints": int(coco.visible.sum()),
        "num_keypoints_21": int(coco.visible.sum()) + sum(1 for v in extra[2::3] if v),
        "self_contact": [], "iscrowd": 0, "area": round(bw * bh, 2),
        "bbox": [round(x0, 2), round(y0, 2), round(bw, 2), round(bh, 2)], "category_id": 1,
        "annotator": "synthetic",
    }


def _humanart_image(job: _Job, split_code: int, i: int, p: int, scenario: str) -> tuple[np.ndarray, list[_Drawn], str]:
    code = _FORMAT_CODE["humanart"]
    main = make_identity(_rng(job.seed, code, _STREAM_IDENTITY, split_code, i))
    rng = _rng(job.seed, code, _STREAM_IMAGE, split_code, i, p)
    n = int(rng.integers(1, 4))
    palette, n_shapes, style = _SCENARIO_STYLE[scenario]
    img = _field(rng, job.size, palette, (int(rng.integers(1, 4)), int(rng.integers(1, 4))), jitter=15)
    _shapes(img, rng, palette, n_shapes)
    plain = img.copy()
    # One horizontal slot per person keeps people mostly apart; smaller (farther) people are drawn first.
    slots = rng.permutation(n).tolist()
    scale_range = {1: (0.7, 0.9), 2: (0.55, 0.85), 3: (0.45, 0.75)}[n]
    people = []
    for k in range(n):
        ident = main if k == 0 else make_identity(rng)
        lo = slots[k] / n
        pose = make_pose(rng, _choice(rng, VIEWS), scale=scale_range,
                         center_x=(lo + 0.4 / n, lo + 0.6 / n))
        people.append((ident, pose))
    drawn: list[_Drawn | None] = [None] * n
    for k in sorted(range(n), key=lambda k: people[k][1].scale):
        drawn[k] = _draw(img, *people[k])
    mask = np.any(img != plain, axis=2).astype(np.uint8)
    img = style(img, mask, rng)
    return img, [d for d in drawn if d is not None], _describe(scenario, main, people[0][1], n - 1)


def _detections(drawn: list[_Drawn]) -> np.ndarray:
    """HumanSD-style detections of the drawn people: COCO-17 x, y and a score (0.9 drawn, 0 not)."""
    out = np.zeros((len(drawn), 17, 3))
    for i, d in enumerate(drawn):
        coco = d.keypoints.convert("coco17")
        out[i, :, :2] = np.nan_to_num(coco.xy)
        out[i, :, 2] = np.where(coco.visible, 0.9, 0.0)
    return out


def _write_humanart(job: _Job, bar: _Bar) -> SynthSummary:
    per_split = job.identities * job.poses
    n_scen = len(HUMANART_SCENARIOS)
    # File numbers run on per scenario: training first, then validation, as one images/ tree holds both.
    train_in = [len(range(s, per_split, n_scen)) for s in range(n_scen)]
    category = {"supercategory": "person", "id": 1, "name": "person", "keypoints": list(HUMANART21_NAMES),
                "skeleton": _HUMANART_SKELETON}
    info = {"description": "posebench synthetic people in the Human-Art annotation format", "version": "1.0"}

    def dump(imgs: list[dict], anns: list[dict]) -> str:
        return json.dumps({"info": info, "images": imgs, "annotations": anns, "categories": [category]},
                          separators=(",", ":"))

    ann_id = 0
    counts: dict[str, int] = {}
    for split_code, (split, prefix) in enumerate((("train", "training"), ("test", "validation"))):
        mapping: dict[str, dict[str, str]] = {}  # HumanSD's extras (format "humansd")
        images: list[dict] = []
        annotations: list[dict] = []
        by_scenario: dict[str, tuple[list[dict], list[dict]]] = {s[1]: ([], []) for s in HUMANART_SCENARIOS}
        for i in range(job.identities):
            for p in range(job.poses):
                k = i * job.poses + p
                sid, scenario, group = HUMANART_SCENARIOS[k % n_scen]
                number = k // n_scen + 1 + (train_in[sid - 1] if split == "test" else 0)
                image_id = sid * 10**12 + number
                img, drawn, description = _humanart_image(job, split_code, i, p, scenario)
                rel = f"images/{group}/{scenario}/{number:012d}.jpg"
                (job.out / rel).parent.mkdir(parents=True, exist_ok=True)
                _write_jpeg(job.out / rel, img)
                entry = {
                    "file_name": f"HumanArt/{rel}", "height": job.size[0], "width": job.size[1], "id": image_id,
                    "description": description, "category": scenario.replace("_", " "),
                    "page_url": f"https://synthetic.invalid/humanart/{scenario}/{number:012d}",
                    "image_url": f"https://synthetic.invalid/humanart/{rel}",
                    "picture_name": f"synthetic {scenario.replace('_', ' ')} {number}",
                    "author": "posebench synthetic people",
                }
                images.append(entry)
                by_scenario[scenario][0].append(entry)
                if job.format == "humansd":
                    pose_rel = f"pose/{group}/{scenario}/{number:012d}.npz"
                    write_pose_file(job.out / pose_rel, _detections(drawn))
                    mapping[str(len(mapping))] = {"img_path": f"HumanArt/{rel}", "prompt": description,
                                                  "pose_path": f"HumanArt/{pose_rel}"}
                for d in drawn:
                    ann_id += 1
                    ann = {**_coco_person(d, job.size), "image_id": image_id, "id": ann_id}
                    annotations.append(ann)
                    by_scenario[scenario][1].append(ann)
                bar.advance()
        (job.out / "annotations").mkdir(parents=True, exist_ok=True)
        atomic_write_text(job.out / "annotations" / f"{prefix}_humanart.json", dump(images, annotations))
        for scenario, (imgs, anns) in by_scenario.items():
            atomic_write_text(job.out / "annotations" / f"{prefix}_humanart_{scenario}.json", dump(imgs, anns))
        if job.format == "humansd":
            atomic_write_text(job.out / f"mapping_file_{prefix}.json", json.dumps(mapping, indent=1))
        counts[split] = len(images)
    return SynthSummary(job.format, job.out, job.size, job.seed, counts, {},
                        {"train": job.identities, "test": job.identities})


_WRITERS: dict[str, Callable[[_Job, _Bar], SynthSummary]] = {
    "deepfashion": _write_deepfashion, "market": _write_market, "humanart": _write_humanart,
    "humansd": _write_humanart,  # Human-Art plus HumanSD's extras (pose/*.npz, mapping files)
}
_OUTPUTS: dict[str, tuple[str, ...]] = {
    "deepfashion": ("train", "test", "train.lst", "test.lst", "fasion-resize-pairs-train.csv",
                    "fasion-resize-pairs-test.csv", "fasion-resize-annotation-train.csv",
                    "fasion-resize-annotation-test.csv"),
    "market": ("bounding_box_train", "bounding_box_test", "query", "market-pairs-train.csv",
               "market-pairs-test.csv", "market-annotation-train.csv", "market-annotation-test.csv"),
    "humanart": ("images", "annotations"),
    "humansd": ("images", "annotations", "pose", "mapping_file_training.json", "mapping_file_validation.json"),
}


def _prepare_out(out: Path, fmt: str, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise PosebenchError(f"output {out} exists and is not a directory; pass a directory path")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise PosebenchError(f"output directory {out} is not empty; pass an empty or new directory, or "
                                 "overwrite=True to replace the synthetic dataset in it")
        # Only what this format writes is removed: stale images would otherwise be picked up by the readers.
        for name in _OUTPUTS[fmt]:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    out.mkdir(parents=True, exist_ok=True)


def synthesize(format: SynthFormat, out: Path, *, identities: int, poses: int, size: tuple[int, int] | None = None,
               seed: int = 0, test_fraction: float = 0.25, overwrite: bool = False, shared_background: bool = False,
               progress: bool = True) -> SynthSummary:
    """Write a synthetic dataset in the exact on-disk format of DeepFashion, Market-1501 or Human-Art.

    Args:
        format: "deepfashion" (PATN layout: train/, test/, lst files, fasion-resize-* CSVs), "market"
            (bounding_box_train/, bounding_box_test/ with junk and distractors, query/, market-* CSVs) or
            "humanart" (images/{group}/{scenario}/, COCO-style annotations/), or "humansd": "humanart" plus
            HumanSD's extras, pose/{group}/{scenario}/*.npz and mapping_file_{training,validation}.json (prompt =
            the image's description).
        out: output folder; must be empty or absent unless `overwrite`.
        identities: synthetic people (>= 2). DeepFashion and Market split them into train/test; Human-Art
            draws `identities` fresh people for each split.
        poses: images per identity (>= 2; DeepFashion <= 6, one per real view name). Market test identities
            get `poses` gallery images plus 1 query image (2 when poses >= 6) on cameras of their own.
        size: image (H, W); default 256x176, 128x64, 256x256 for the three formats.
        seed: non-negative seed; the same seed gives byte-identical files.
        test_fraction: share of identities in the test split (deepfashion, market), in (0, 1).
        overwrite: replace what a previous run of this format wrote in `out`.
        shared_background: deepfashion only: one studio backdrop per person, as the in-shop shoots of one item
            share theirs (default: a backdrop per image). Poses and people are the same either way.
        progress: show a rich progress bar.

    Returns:
        Counts of what was written.

    Raises:
        PosebenchError: bad arguments, or `out` is not empty and `overwrite` is False.
    """
    if format not in _WRITERS:
        raise PosebenchError(f"format must be one of {sorted(_WRITERS)}, got {format!r}")
    for arg, value in (("identities", identities), ("poses", poses)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 2:
            raise PosebenchError(f"{arg} must be an integer >= 2 (pairs need two images of a person and both "
                                 f"splits need a person), got {value!r}")
    if format == "deepfashion" and poses > len(DEEPFASHION_VIEWS):
        raise PosebenchError(f"deepfashion names allow at most {len(DEEPFASHION_VIEWS)} views per identity "
                             f"(1front..7additional), got poses={poses}; pass poses <= 6 and more identities")
    if format == "market" and identities > 9999:
        raise PosebenchError(f"market person ids have 4 digits, got identities={identities}; pass <= 9999")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise PosebenchError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(test_fraction, (int, float)) or not 0.0 < float(test_fraction) < 1.0:
        raise PosebenchError(f"test_fraction must be in (0, 1), e.g. 0.25, got {test_fraction!r}")
    hw = _check_size(size if size is not None else DEFAULT_SIZES[format])
    out = Path(out)
    _prepare_out(out, format, overwrite)
    if shared_background and format != "deepfashion":
        raise PosebenchError(f"shared_background applies to the deepfashion format, not {format}")
    job = _Job(format, out, int(identities), int(poses), hw, int(seed), float(test_fraction), bool(shared_background))
    total = job.identities * job.poses * (2 if format in ("humanart", "humansd") else 1)
    bar = _Bar(progress, total, f"synth {format}")
    with bar.running():
        summary = _WRITERS[format](job, bar)
    logger.info("wrote synthetic %s to %s: images %s, pairs %s", format, out, summary.images, summary.pairs)
    return summary
