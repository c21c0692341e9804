"""Image names: DeepFashion's flattened names and identity unit, Market-1501 names, canonical pair keys,
and parsers for the generated-image names of every known repository (datasets.md §1.2, §2.1, §6).

posebench keys an image by its *stem* (the file name without extension), because repositories re-encode
images (`.jpg` ground truth, `.png` outputs) but keep the name. A pair is `(source, target)` stems, and
posebench writes a generated image as `{source}__{target}.png`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from posebench.errors import PosebenchError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_SUFFIX_SET = frozenset(IMAGE_SUFFIXES)


def stem(name: str) -> str:
    """`fashionX_1front.jpg` -> `fashionX_1front` (only known image suffixes are removed)."""
    dot = name.rfind(".")
    if dot > 0 and name[dot:].lower() in _SUFFIX_SET:
        return name[:dot]
    return name


# ---------------------------------------------------------------------------------------------- DeepFashion

_DF_FLAT = re.compile(
    r"^fashion(?P<gender>MEN|WOMEN)(?P<category>[A-Za-z_]+?)id(?P<item>\d{8})(?P<outfit>\d{2})_"
    r"(?P<view_no>\d)(?P<view>[a-z]+)$"
)


def flat_name(rel_path: str) -> str:
    """In-shop nested path -> the flattened name every repository uses.

    `img/MEN/Denim/id_00000080/01_1_front.jpg` -> `fashionMENDenimid0000008001_1front.jpg`
    (`img_highres/` is accepted too). Raises ValueError for paths of another shape.
    """
    parts = PurePosixPath(rel_path.replace("\\", "/")).parts
    if len(parts) != 5 or parts[0] not in {"img", "img_highres"}:
        raise ValueError(f"expected img/<GENDER>/<Category>/id_<item>/<file>, got {rel_path!r}")
    _, gender, category, item, fname = parts
    head, sep, tail = fname.partition("_")  # '01', '1_front.jpg'
    if not sep:
        raise ValueError(f"file name {fname!r} in {rel_path!r} has no '_' (expected like 01_1_front.jpg)")
    return "fashion" + gender + category + item.replace("_", "") + head + "_" + tail.replace("_", "")


@dataclass(frozen=True)
class DeepFashionName:
    gender: str
    category: str
    item: str
    outfit: str
    view: str  # e.g. '1front'

    @property
    def identity(self) -> str:
        """The person identity: gender + category + item id + outfit (item ids alone overlap splits)."""
        return f"fashion{self.gender}{self.category}id{self.item}{self.outfit}"


def parse_deepfashion(name: str) -> DeepFashionName:
    """Parse a flat DeepFashion name (with or without extension)."""
    m = _DF_FLAT.match(stem(name))
    if m is None:
        raise ValueError(
            f"{name!r} is not a flattened DeepFashion name (expected like "
            f"fashionWOMENDressesid0000175906_1front.jpg)"
        )
    return DeepFashionName(m["gender"], m["category"], m["item"], m["outfit"], m["view_no"] + m["view"])


# ---------------------------------------------------------------------------------------------- Market-1501

_MARKET = re.compile(r"^(?P<pid>-1|\d{4})_c(?P<cam>\d)s(?P<seq>\d)_(?P<frame>\d{6})_(?P<box>\d{2})$")


@dataclass(frozen=True)
class MarketName:
    pid: int  # -1 junk, 0 distractor
    camid: int  # 1..6 as in the name
    seq: int
    frame: int
    box: int

    @property
    def is_junk(self) -> bool:
        return self.pid == -1

    @property
    def is_distractor(self) -> bool:
        return self.pid == 0


def parse_market(name: str) -> MarketName:
    m = _MARKET.match(stem(name))
    if m is None:
        raise ValueError(f"{name!r} is not a Market-1501 name (expected like 0002_c1s1_000451_03.jpg)")
    return MarketName(int(m["pid"]), int(m["cam"]), int(m["seq"]), int(m["frame"]), int(m["box"]))


# ---------------------------------------------------------------------------------------------- pair keys


class PairKey(NamedTuple):
    """A (source, target) pair of image stems: the one naming convention inside posebench.

    A plain tuple, so hundreds of thousands of pairs hash and sort fast; build it from file names with
    `PairKey.of`, which strips the image suffixes.
    """

    source: str
    target: str

    @classmethod
    def of(cls, source: str, target: str) -> PairKey:
        return cls(stem(source), stem(target))

    @property
    def filename(self) -> str:
        """posebench's own name for the generated image of this pair (lossless PNG)."""
        return f"{self.source}__{self.target}.png"

    def __str__(self) -> str:
        return f"{self.source} -> {self.target}"


# ---------------------------------------------------------------------------------------------- generated names

# Each scheme: a regex over the file name whose groups give the source and target. Order matters in
# auto-detection: the unambiguous separators first, GFLA's `_2_` (which can occur inside names) last.
_STEM = r"(?P<{}>.+?)(?:\.(?:jpg|jpeg|png))?"
GENERATED_SCHEMES: dict[str, re.Pattern[str]] = {
    # posebench: {source}__{target}.png
    "posebench": re.compile(rf"^{_STEM.format('src')}__{_STEM.format('tgt')}\.(?:png|jpg|jpeg|bmp|webp)$"),
    # PATN: {from}___{to}_vis.(png|jpg), from/to may keep their .jpg
    "patn": re.compile(rf"^{_STEM.format('src')}___{_STEM.format('tgt')}_vis\.(?:png|jpg|jpeg)$"),
    # PCDMs: {source}_to_{target}.png (stage 2/3 test scripts: source stem + '_to_' + target file name), with
    # dataset names, or PCDMs' renamed imgN images (then a name map gives the dataset names)
    "pcdms": re.compile(rf"^{_STEM.format('src')}_to_{_STEM.format('tgt')}\.(?:png|jpg|jpeg)$"),
    # GFLA / NTED / PIDM: {src}_2_{tgt}_vis.(png|jpg)
    "gfla": re.compile(rf"^{_STEM.format('src')}_2_{_STEM.format('tgt')}_vis\.(?:png|jpg|jpeg)$"),
}
SCHEME_ALIASES = {"nted": "gfla", "pidm": "gfla"}
_PCDMS_RENAMED = re.compile(r"^img\d+$")  # PCDMs' processed-data names (img1 .. img52712)


def _split_candidates(filename: str, scheme: str) -> list[tuple[str, str]]:
    """Every (source, target) split of `filename` allowed by the scheme's separator."""
    pattern = GENERATED_SCHEMES[scheme]
    if pattern.match(filename) is None:
        return []
    sep = {"posebench": "__", "patn": "___", "gfla": "_2_", "pcdms": "_to_"}[scheme]
    body = re.sub(r"(_vis)?\.(png|jpg|jpeg|bmp|webp)$", "", filename, flags=re.IGNORECASE)
    out = []
    start = 0
    while (i := body.find(sep, start)) != -1:
        src, tgt = body[:i], body[i + len(sep):]
        if src and tgt and not (scheme == "posebench" and (src.endswith("_") or tgt.startswith("_"))):
            out.append((stem(src), stem(tgt)))
        start = i + 1
    return out


def parse_generated_name(
    filename: str, *, scheme: str | None = None, known: Iterable[str] | set[str] | None = None,
    name_map: dict[str, str] | None = None,
) -> tuple[str, PairKey]:
    """Map a generated image's file name to `(scheme, PairKey)`.

    Args:
        filename: the bare file name, e.g. `a_2_b_vis.png`.
        scheme: one of GENERATED_SCHEMES (or an alias: nted, pidm); None tries each in order.
        known: image stems of the dataset; when given, a split is accepted only if both sides are known,
            which resolves names that contain the separator.
        name_map: generated-side image name -> dataset stem, for a release that renamed the images (PCDMs'
            `imgN`); names it does not hold stay as they are.

    Raises:
        ValueError: no scheme matches, or the split is ambiguous / refers to unknown images.
    """
    known_set = set(known) if known is not None and not isinstance(known, set) else known
    schemes = [SCHEME_ALIASES.get(scheme, scheme)] if scheme else list(GENERATED_SCHEMES)
    for name in schemes:
        if name not in GENERATED_SCHEMES:
            raise PosebenchError(f"unknown naming scheme {scheme!r}; known: {', '.join(GENERATED_SCHEMES)}, "
                                 f"{', '.join(SCHEME_ALIASES)}")
        candidates = _split_candidates(filename, name)
        if name == "pcdms" and name_map is None and any(
                _PCDMS_RENAMED.match(s) and _PCDMS_RENAMED.match(t) and not (known_set and {s, t} <= known_set)
                for s, t in candidates):
            raise ValueError(f"{filename!r} uses PCDMs' renamed imgN images; pass their name map (--name-map: "
                             "imgN -> dataset name), or name the files {source}_to_{target}.png with dataset names")
        if name_map is not None:
            candidates = [(name_map.get(s, s), name_map.get(t, t)) for s, t in candidates]
        if known_set is not None:
            candidates = [(s, t) for s, t in candidates if s in known_set and t in known_set]
        if len(candidates) == 1:
            return name, PairKey(*candidates[0])
        if len(candidates) > 1:
            raise ValueError(f"{filename!r} splits into several {name} pairs: "
                             + "; ".join(f"{s} -> {t}" for s, t in candidates))
    raise ValueError(
        f"{filename!r} matches no known naming scheme"
        + (" with images of this dataset" if known_set is not None else "")
        + ": expected {source}__{target}.png (posebench), {from}___{to}_vis.png (PATN), "
        "{src}_2_{tgt}_vis.png (GFLA/NTED/PIDM) or {source}_to_{target}.png (PCDMs)"
    )


def parse_ground_truth_name(filename: str) -> str:
    """Stem of a ground-truth image: plain `{target}.jpg`, or PIDM's `deep{target}.png`."""
    s = stem(filename)
    if s.startswith("deepfashion"):  # PIDM test_256x256_pngs: 'deep' + 'fashion...'
        return s[len("deep"):]
    return s


def match_generated_files(folder: Path, *, scheme: str | None, known: set[str],
                          wanted: Iterable[PairKey] | set[PairKey]) -> dict[PairKey, Path]:
    """The generated images of `folder` (not recursive) that name a wanted pair, by the naming scheme an evaluation
    detected; other files are skipped (the evaluation that scored the folder reported them). The first file of a
    pair in name order wins."""
    wanted_set = set(wanted)
    found: dict[PairKey, Path] = {}
    for f in sorted(Path(folder).iterdir()):
        if not (f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES):
            continue
        try:
            _, key = parse_generated_name(f.name, scheme=scheme, known=known)
        except ValueError:
            continue
        if key in wanted_set:
            found.setdefault(key, f)
    return found
