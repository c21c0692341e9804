"""Pose-conditioned generation on Human-Art (`posebench eval --protocol humanart-val`).

Each generated image is named after the validation image whose pose conditioned it. A pose estimator runs on every
generated image (or precomputed detections are read), and its detections are compared with the target poses of
the annotations: AP, AP(m), CAP and PCE (`posebench.metrics.pose.evaluate_pose`, profile `clean` or `humansd`),
overall and per scenario. On request, FID and KID are computed per scenario (generated images of a scenario
against the validation images of the same scenario) with the image profile's extractor and resize chain
(`clean`: PIL bicubic to 512x512, then clean-fid's resize to 299); the overall FID/KID is the mean over the
scenarios (Stable-Pose's convention), and the pooled value (all generated vs all validation images) is kept in
`details`.

Generated file names (PNG; JPEG only with `allow_lossy`), searched recursively under the prediction folder:

- `{scenario}/{stem}.png` (any parent folders above the scenario folder are allowed), e.g.
  `cartoon/000000000003.png`;
- `{scenario}__{stem}.png`, e.g. `cartoon__000000000003.png`;
- `{stem}.png` when that stem names one validation image only (Human-Art numbers its files per scenario, so a
  bare stem is usually ambiguous).

Ground truth is taken from `annotations/validation_humanart.json` and put in the pose profile's target frame
(`target_frame`, quirk 6):

- `center-crop` (`clean`): the annotated image resized so it covers the protocol resolution (shorter side 512) and
  centre-cropped to 512x512 (`posebench.humanart_targets`); joints outside the crop become invisible, persons with
  no visible joint left are dropped, bbox and area come from the visible joints. `posebench data targets` writes
  these targets. A generated image that is not 512x512 gets the targets rescaled per axis from 512x512 (warned).
- `annotated` (`humansd`): keypoints, bbox, area and iscrowd as annotated, rescaled per axis when a generated
  image's size differs from the annotated image's (warned). HumanSD's randomly augmented targets are not replayed.

The estimator is fed as the profile says: true RGB (`clean`) or R and B swapped (`humansd`, quirk 1); for
decoders with a refine step, `refine_fill: false` (`humansd`, quirk 4) makes refine read the log maps of the UDP
adjust, as mmpose 0.x does on CPU, so it (almost) never fills a missing joint.

Orchestration, like `posebench.evaluation`: nothing below it imports it.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from posebench._version import __version__
from posebench.datasets.names import stem
from posebench.errors import PosebenchError
from posebench.evaluation import ScoringConfig
from posebench.humanart_targets import crop_annotation, target_frame
from posebench.metrics.registry import higher_is_better
from posebench.protocols import Protocol, get_profile, get_protocol
from posebench.protocols.pose_profile import PoseProfile, get_pose_profile, is_custom
from posebench.results.schema import write_results
from posebench.utils.io import atomic_write_text, files_sha256, sha256_file

DEFAULT_POSE_ESTIMATOR = "higherhrnet-w48-humanart-udp"
POSE_METRICS = ("ap", "ap_m", "cap", "pce")
IMAGE_METRICS = ("fid", "kid")


@dataclass
class PoseEvalConfig(ScoringConfig):
    """What `posebench eval` needs for a pose protocol (kind `pose`, `humanart-val`): the shared fields
    (`posebench.evaluation.ScoringConfig`; `profile` is the pose-metric profile, `clean`, `humansd` or a
    pose-profile YAML file; `root` the Human-Art root with `annotations/validation_humanart.json` and `images/`;
    `flip_test` applies to estimators with a grouping decoder) and:

    Attributes:
        detections: precomputed COCO keypoint results (image ids = the Human-Art validation image ids); when
            given, no estimator runs.
    """

    detections: Path | None = None


@dataclass
class _Image:
    key: str  # "{scenario}/{stem}", the Human-Art index key
    scenario: str
    image_id: int
    real: Path
    frame: tuple[int, int]  # (H, W) of the annotated image
    annotations: list[dict]
    file_name: str = ""  # as in the annotation file


@dataclass
class _Prepared:
    protocol: Protocol
    pose_profile: PoseProfile
    metrics: tuple[str, ...]
    images: dict[str, _Image]  # every validation image, by key
    files: dict[str, Path]  # matched generated files, by key
    sizes: dict[str, tuple[int, int]]  # (H, W) of each matched generated file
    warnings: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    non_canonical: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- ground truth


def read_validation(root: Path) -> dict[str, _Image]:
    """Validation images and their annotations from `annotations/validation_humanart.json`, by index key.

    Raises:
        PosebenchError: the file is missing or malformed (the Human-Art reader's problems, listed).
    """
    from posebench.datasets import humanart
    from posebench.datasets.problems import ProblemLog
    from posebench.metrics.pose import load_json

    root = Path(root)
    if not root.is_dir():
        raise PosebenchError(f"dataset root {root} is not a folder. Pass --root pointing at your Human-Art copy.")
    path = root / "annotations" / humanart.SPLIT_FILES["validation"]
    if not path.is_file():
        raise PosebenchError(f"{path} does not exist: humanart-val needs the Human-Art validation annotations "
                             "in <root>/annotations/")
    log = ProblemLog()
    humanart.read_annotation_json(path, root, log)  # validates the file with the reader's checks
    log.raise_if_errors(f"humanart root {root}")
    data = load_json(path, "Human-Art validation annotation")
    images: dict[str, _Image] = {}
    by_id: dict[Any, _Image] = {}
    for im in data["images"]:
        rel = humanart._rel_image_path(str(im["file_name"]))
        scenario = rel.parts[-2]
        key = f"{scenario}/{PurePosixPath(rel).stem}"
        entry = _Image(key, scenario, int(im["id"]), root / rel, (int(im["height"]), int(im["width"])), [],
                       str(im["file_name"]))
        images[key] = entry
        by_id[im["id"]] = entry
    for ann in data["annotations"]:
        by_id[ann["image_id"]].annotations.append(ann)
    return images


def _scaled_annotation(ann: dict, sx: float, sy: float) -> dict:
    kp = np.asarray(ann["keypoints"], dtype=np.float64).reshape(17, 3)
    vis = kp[:, 2] > 0
    kp[vis, 0] *= sx
    kp[vis, 1] *= sy
    out = {"keypoints": [float(v) for v in kp.reshape(-1)], "image_id": int(ann["image_id"]),
           "category_id": 1, "iscrowd": int(ann.get("iscrowd", 0)),
           "num_keypoints": int(ann.get("num_keypoints", int(vis.sum())))}
    if "bbox" in ann and len(ann["bbox"]) == 4:
        x, y, w, h = (float(v) for v in ann["bbox"])
        out["bbox"] = [x * sx, y * sy, w * sx, h * sy]
    if "area" in ann:
        out["area"] = float(ann["area"]) * sx * sy
    if ("bbox" in out) != ("area" in out):  # evaluate_pose recomputes both from the joints when one is missing
        out.pop("bbox", None)
        out.pop("area", None)
    return out


def targets_in_frame(img: _Image, prof: PoseProfile, resolution: tuple[int, int]) -> tuple[list[dict],
                                                                                          tuple[int, int]]:
    """The annotations of `img` in the profile's target frame (quirk 6) and that frame's (H, W)."""
    if prof.target_frame == "annotated":
        return img.annotations, img.frame
    frame = target_frame(*img.frame, resolution)
    cropped = (crop_annotation(a, frame, prof.visibility_threshold) for a in img.annotations)
    return [a for a in cropped if a is not None], frame.size


def build_ground_truth(prep: _Prepared, keys: Sequence[str]) -> tuple[dict, int]:
    """COCO keypoint ground truth of `keys` in the generated images' pixel frames; also the number of images whose
    targets were rescaled per axis (generated size differs from the target frame)."""
    images, anns, rescaled = [], [], 0
    for key in keys:
        img = prep.images[key]
        gh, gw = prep.sizes[key]
        targets, (fh, fw) = targets_in_frame(img, prep.pose_profile, prep.protocol.resolution)
        rescaled += int((gh, gw) != (fh, fw))
        images.append({"id": img.image_id, "file_name": prep.files[key].name, "height": gh, "width": gw})
        anns.extend(_scaled_annotation(a, gw / fw, gh / fh) for a in targets)
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}, rescaled


# ---------------------------------------------------------------------------------------------- matching


def _list_predictions(pred: Path) -> list[Path]:
    from posebench.pose.detect import list_images

    return list_images(pred)  # recursive, sorted by relative path; clear errors for a missing or empty folder


def match_generated(files: Sequence[Path], pred: Path, keys: Sequence[str],
                    allow_missing: bool) -> tuple[dict[str, Path], list[str]]:
    """Map generated files to validation keys (`{scenario}/{stem}`; names in the module docstring).

    Unparseable, ambiguous, duplicate, extra and missing files are errors, listed together; with `allow_missing`
    missing images are reported in the returned notes instead.
    """
    known = set(keys)
    by_stem: dict[str, list[str]] = {}
    for k in keys:
        by_stem.setdefault(k.split("/", 1)[1], []).append(k)
    problems: list[str] = []
    found: dict[str, Path] = {}
    for f in files:
        parts = f.relative_to(pred).parts
        s = stem(parts[-1])
        key = None
        if len(parts) >= 2 and f"{parts[-2]}/{s}" in known:
            key = f"{parts[-2]}/{s}"
        elif "__" in s and s.replace("__", "/", 1) in known:
            key = s.replace("__", "/", 1)
        elif len(by_stem.get(s, [])) == 1:
            key = by_stem[s][0]
        elif len(by_stem.get(s, [])) > 1:
            problems.append(f"{f}: stem {s!r} names {len(by_stem[s])} validation images (in "
                            f"{', '.join(k.split('/')[0] for k in by_stem[s][:5])}); put it under its scenario "
                            f"folder ({by_stem[s][0]}.png) or name it {by_stem[s][0].replace('/', '__')}.png")
            continue
        if key is None:
            problems.append(f"{f}: names no Human-Art validation image (expected {{scenario}}/{{stem}}.png, "
                            "{scenario}__{stem}.png or a unique {stem}.png)")
        elif key in found:
            problems.append(f"{f}: duplicate of {found[key]} (both are {key})")
        else:
            found[key] = f
    missing = [k for k in keys if k not in found]
    notes: list[str] = []
    if missing and not allow_missing:
        problems.append(f"{len(missing)} of {len(keys)} validation images have no generated image (e.g. "
                        f"{', '.join(missing[:5])}); generate them or pass --allow-missing to score the rest")
    elif missing:
        notes.append(f"{len(missing)} of {len(keys)} validation images have no generated image and were not scored")
    if problems:
        head = "\n  ".join(problems[:30])
        more = f"\n  ... and {len(problems) - 30} more" if len(problems) > 30 else ""
        raise PosebenchError(f"cannot match generated images to Human-Art validation images:\n  {head}{more}")
    return found, notes


# ---------------------------------------------------------------------------------------------- preparation


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    from posebench.images import ImageError

    try:
        with Image.open(path) as im:
            return im.height, im.width
    except Exception as exc:  # PIL raises many exception types for damaged files
        raise ImageError(f"{path}: cannot open image ({type(exc).__name__}: {exc})") from exc


def prepare(cfg: PoseEvalConfig) -> _Prepared:
    """Resolve the protocol, profile and metrics; read the ground truth; match the generated images."""
    from posebench.datasets import humanart
    from posebench.datasets.index import DatasetIndex
    from posebench.datasets.problems import ProblemLog
    from posebench.images import LOSSY_SUFFIXES

    protocol = get_protocol(cfg.protocol)
    if protocol.kind != "pose":
        raise PosebenchError(f"protocol {protocol.name} is not a pose protocol; use posebench.evaluation")
    pose_profile = get_pose_profile(cfg.profile or protocol.default_pose_profile or "clean")
    custom = is_custom(pose_profile)
    if not custom and pose_profile.name not in protocol.pose_profiles:
        raise PosebenchError(f"pose profile {pose_profile.name!r} does not apply to {protocol.name}; choose one of "
                             f"{', '.join(protocol.pose_profiles)} (or a pose-profile YAML file)")
    wanted = cfg.metrics or protocol.metrics
    unknown = [m for m in wanted if m not in protocol.metrics]
    if unknown:
        raise PosebenchError(f"metrics {unknown} are not part of {protocol.name}; choose from "
                             f"{', '.join(protocol.metrics)}")
    metrics = tuple(dict.fromkeys(wanted))
    images = read_validation(cfg.root)
    keys = sorted(images)
    files = _list_predictions(cfg.pred)
    found, notes = match_generated(files, cfg.pred, keys, cfg.allow_missing)
    prep = _Prepared(protocol, pose_profile, metrics, images, found, {k: _image_size(f) for k, f in found.items()})
    prep.warnings += notes

    log = ProblemLog()
    humanart.check_facts(DatasetIndex("humanart", "coco", cfg.root, {"validation": _split_view(images)}),
                         log)
    if log.errors or len(images) != protocol.pinned.get("images", len(images)):
        prep.non_canonical.append(f"{len(images):,} validation images in the root, the protocol pins "
                                  f"{protocol.pinned.get('images', len(images)):,} "
                                  f"({protocol.pinned.get('images_per_scenario', '?')} per scenario)")
    if len(found) < len(keys):
        prep.non_canonical.append(f"only {len(found)} of {len(keys)} validation images scored")
    if custom:
        prep.non_canonical.append(f"custom pose profile {pose_profile.name} from {pose_profile.source}")
    estimator = cfg.pose_estimator or DEFAULT_POSE_ESTIMATOR
    if cfg.detections is not None:
        prep.non_canonical.append("precomputed detections (--detections): their estimator is not verified")
    elif estimator == "tiny-random":
        prep.non_canonical.append("pose estimator tiny-random (randomly initialised; a test double)")
    elif estimator != DEFAULT_POSE_ESTIMATOR:
        prep.non_canonical.append(f"pose estimator {estimator}, the protocol's is {DEFAULT_POSE_ESTIMATOR}")
    lossy = [f for f in found.values() if f.suffix.lower() in LOSSY_SUFFIXES]
    if lossy and not cfg.allow_lossy:
        raise PosebenchError(f"{len(lossy)} generated images are lossy ({lossy[0].name}, ...): JPEG changes the "
                             "pixels metrics see. Save PNG, or pass --allow-lossy (recorded in the results)")
    if lossy:
        prep.flags.append("lossy_inputs")
    for reason in prep.non_canonical:
        prep.warnings.append(f"non-canonical: {reason}; not comparable with leaderboard rows")
    return prep


def _split_view(images: dict[str, _Image]) -> Any:
    from posebench.datasets.index import SplitIndex

    sp = SplitIndex()
    sp.source_file["images"] = "annotations/validation_humanart.json"
    for k, im in images.items():
        sp.images[k] = im.real
        sp.groups[k] = im.scenario
    return sp


# ---------------------------------------------------------------------------------------------- detections


def _estimator_env(cfg: PoseEvalConfig, prep: _Prepared) -> dict[str, Any]:
    """Estimator name, the sha256 of the weights it ran with (None for random initialisation), and how the pose
    profile fed it (channel order, refine fill)."""
    if cfg.detections is not None:
        return {"name": None, "detections_file": str(cfg.detections), "detections_sha256": sha256_file(cfg.detections)}
    from posebench.pose.detect import estimator_env

    prof = prep.pose_profile
    return {**estimator_env(cfg.pose_estimator or DEFAULT_POSE_ESTIMATOR, cfg.pose_weights, cfg.flip_test),
            "input": prof.estimator_input, "refine_fill": prof.refine_fill}


def get_detections(cfg: PoseEvalConfig, prep: _Prepared, keys: Sequence[str]) -> list[dict]:
    """COCO keypoint results on the generated images of `keys` (estimator run, or the precomputed file)."""
    if cfg.detections is not None:
        from posebench.pose.precomputed import load_detections

        by_id = load_detections(cfg.detections)
        known = {im.image_id for im in prep.images.values()}
        unknown = sorted(set(by_id) - known)
        if unknown:
            raise PosebenchError(f"{cfg.detections}: {len(unknown)} image ids are not Human-Art validation image "
                                 f"ids (e.g. {unknown[:5]}); detections must use the ids of the annotations")
        wanted = {prep.images[k].image_id for k in keys}
        dropped = sum(len(v) for i, v in by_id.items() if i not in wanted)
        if dropped:
            prep.warnings.append(f"{dropped} precomputed detections belong to images without a generated image "
                                 "and were left out")
        return [d for i, v in by_id.items() if i in wanted for d in v]
    from posebench.pose.detect import detect_with, load_estimator, set_refine_fill

    model = load_estimator(cfg.pose_estimator or DEFAULT_POSE_ESTIMATOR, weights=cfg.pose_weights,
                           device=cfg.device)
    set_refine_fill(model, prep.pose_profile.refine_fill)  # quirk 4
    paths = [prep.files[k] for k in keys]
    ids = {str(prep.files[k]): prep.images[k].image_id for k in keys}
    return detect_with(model, paths, ids, device=cfg.device, flip_test=cfg.flip_test, batch_size=cfg.batch_size,
                       progress=cfg.progress, swap_rb=prep.pose_profile.swap_rb)  # quirk 1


# ---------------------------------------------------------------------------------------------- FID / KID


class _Features:
    """The image profile's FID/KID (`posebench.metrics.fid.FID`, `posebench.metrics.kid.KID`) at the protocol
    resolution: one feature extractor, per-scenario metrics and the pooled ones, fed the same features."""

    def __init__(self, prep: _Prepared, cfg: PoseEvalConfig) -> None:
        from posebench.metrics.fid import FID

        self.cfg = cfg
        self.prep = prep
        self.profile = get_profile(prep.protocol.default_profile)
        self.section = self.profile.section("fid")
        self.base = FID(self.profile, weights=cfg.fid_weights, device=cfg.device,
                        resolution=prep.protocol.resolution, drop_last_range=False)
        self.extractor = self.base.extractor
        self.resized = 0

    def metrics(self) -> dict[str, Any]:
        """A fresh {fid, kid} pair sharing the extractor (the requested ones)."""
        from posebench.metrics.fid import FID
        from posebench.metrics.kid import KID

        out: dict[str, Any] = {}
        common = {"extractor": self.extractor, "resolution": self.prep.protocol.resolution}
        if "fid" in self.prep.metrics:
            out["fid"] = FID(self.profile, drop_last_range=False, **common)
        if "kid" in self.prep.metrics:
            out["kid"] = KID(self.profile, **common)
        return out

    def generated(self, paths: Sequence[Path]) -> np.ndarray:
        """Features of generated files (resized through the chain when not at the protocol size, counted)."""
        from posebench.images import read_rgb
        from posebench.metrics.inputs import ImagePairs

        pairs = ImagePairs([read_rgb(p) for p in paths], labels=[str(p) for p in paths])
        feats = self.base.pred_features(pairs, resize=True)
        self.resized += len(pairs.resized)
        return feats

    def env(self) -> dict[str, Any]:
        e = self.extractor
        return {"name": e.name, "version": e.version, "weights_sha256": e.weights_sha256,
                "image_profile": {"name": self.profile.name, "version": self.profile.version,
                                  "sha256": self.profile.sha256}}


def _fid_kid(feats: _Features, prep: _Prepared, keys: Sequence[str], cfg: PoseEvalConfig,
             bar: Any) -> tuple[dict[str, dict[str, float]], dict[str, Any], dict[str, Any]]:
    """Per-scenario FID/KID ({scenario: {fid, kid, kid_std, n, real_n}}), pooled values and real-set metadata."""
    from posebench.metrics.stats import FeatureStats
    from posebench.real_stats import real_set_stats

    need_kid = "kid" in prep.metrics
    bs = feats.section.batch_size
    scenarios = sorted({prep.images[k].scenario for k in keys})
    out: dict[str, dict[str, float]] = {}
    real_meta: dict[str, Any] = {}
    pooled_metrics = feats.metrics()
    real_all = FeatureStats(keep_features=need_kid)
    ext = feats.extractor
    position = 0
    for scenario in scenarios:
        mine = [k for k in keys if prep.images[k].scenario == scenario]
        scenario_metrics = feats.metrics()
        for lo in range(0, len(mine), bs):
            f = feats.generated([prep.files[k] for k in mine[lo:lo + bs]])
            index = list(range(position, position + len(f)))
            position += len(f)
            for m in (*scenario_metrics.values(), *pooled_metrics.values()):
                m.update_features(f, index=index)
        paths = [im.real for k, im in sorted(prep.images.items()) if im.scenario == scenario]
        key_parts = {
            "profile": [feats.profile.name, feats.profile.version, feats.profile.sha256],
            "extractor": [ext.name, ext.version, ext.weights_sha256], "chain": feats.base.gt_chain,
            "dataset": "humanart", "split": f"validation/{scenario}",
            "names": hashlib.sha256("\n".join(p.as_posix() for p in paths).encode()).hexdigest(),
            "bytes": sum(p.stat().st_size for p in paths), "drop_last": False, "batch_size": bs,
        }
        name = f"{prep.protocol.name}-v{prep.protocol.version}__{feats.profile.name}-v{feats.profile.version}__" \
               f"{ext.name}__{scenario}"
        real, meta = real_set_stats(name, key_parts, paths, feats.base.featurize_files, batch_size=bs,
                                    drop_last=False, keep_features=need_kid, progress=bar, use_cache=cfg.use_cache)
        real_meta[scenario] = meta
        out[scenario] = _distances(scenario_metrics, real, len(mine))
        real_all.merge(real)
    # one scenario: the pooled value is that scenario's (a 2048-d FID costs seconds of eigendecompositions)
    pooled = out[scenarios[0]] if len(scenarios) == 1 else _distances(pooled_metrics, real_all, len(keys))
    return out, pooled, real_meta


def _distances(metrics: dict[str, Any], real: Any, n_gen: int) -> dict[str, Any]:
    row: dict[str, Any] = {"n": n_gen, "real_n": real.n}
    if n_gen < 2 or real.n < 2:
        row.update(fid=math.nan, kid=math.nan, kid_std=math.nan,
                   note="FID/KID need at least 2 generated and 2 real images")
        return row
    for name, m in metrics.items():
        m.set_real(real)
        entry = m.summary()
        row[name] = float(entry["value"])
        if name == "kid":
            row["kid_std"] = float(entry["stderr"])
    return row


# ---------------------------------------------------------------------------------------------- main


def _value(v: Any) -> float:
    return math.nan if v is None else float(v)


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def evaluate_humanart(cfg: PoseEvalConfig) -> dict[str, Any]:
    """Run a pose-protocol evaluation and write `cfg.out` (+ a per-image CSV beside it); returns the results.

    Raises:
        PosebenchError: unmatched generated images, missing weights (named, with the download command),
            malformed annotations or detections.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from posebench.env import versions
    from posebench.metrics.pose import evaluate_pose

    t0 = time.perf_counter()
    prep = prepare(cfg)
    keys = sorted(prep.files)
    feats = _Features(prep, cfg) if set(IMAGE_METRICS) & set(prep.metrics) else None  # weights fail early
    gt, rescaled = build_ground_truth(prep, keys)
    if rescaled:
        prep.warnings.append(_rescale_warning(rescaled, prep))
    need_pose = bool(set(POSE_METRICS) & set(prep.metrics))
    dets = get_detections(cfg, prep, keys) if need_pose else []
    scenarios = sorted({prep.images[k].scenario for k in keys})
    metrics_out: dict[str, Any] = {}
    breakdown: dict[str, dict[str, Any]] = {s: {"n": sum(prep.images[k].scenario == s for k in keys)}
                                            for s in scenarios}
    per_image: dict[int, dict[str, Any]] = {}
    if need_pose:
        overall = evaluate_pose(gt, dets, profile=prep.pose_profile)
        per_image = {r["image_id"]: r for r in overall["per_image_pce"]}
        for s in scenarios:
            ids = {prep.images[k].image_id for k in keys if prep.images[k].scenario == s}
            sub = {**gt, "images": [im for im in gt["images"] if im["id"] in ids],
                   "annotations": [a for a in gt["annotations"] if a["image_id"] in ids]}
            res = evaluate_pose(sub, [d for d in dets if d["image_id"] in ids], profile=prep.pose_profile)
            breakdown[s].update({m: _value(res[m]) for m in POSE_METRICS if m in prep.metrics},
                                n_gt=res["n_gt"], n_dt=res["n_dt"])
        details = {"profile": prep.pose_profile.name, "n_gt": overall["n_gt"], "n_dt": overall["n_dt"],
                   "n_dt_pce": overall["n_dt_pce"], "max_dets": overall["max_dets"]}
        if "n_batches" in overall:
            details.update(n_batches=overall["n_batches"], ap_m_incl_missing=overall["ap_m_incl_missing"])
        for m in POSE_METRICS:
            if m in prep.metrics:
                extra = {"undefined": "no ground truth in the medium area range"} if overall[m] is None else {}
                metrics_out[m] = {"value": _value(overall[m]), "stderr": None, "higher_is_better": higher_is_better(m),
                                  "n": overall["n_images"], "details": {**details, **extra}}

    real_meta: dict[str, Any] = {}
    if feats is not None:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, disable=not cfg.progress) as bar:
            per_scenario, pooled, real_meta = _fid_kid(feats, prep, keys, cfg, bar if cfg.progress else None)
        for m in IMAGE_METRICS:
            if m not in prep.metrics:
                continue
            for s, row in per_scenario.items():
                breakdown[s][m] = row[m]
                if m == "kid":
                    breakdown[s]["kid_std"] = row["kid_std"]
            metrics_out[m] = {
                "value": _nanmean([row[m] for row in per_scenario.values()]), "stderr": None,
                "higher_is_better": higher_is_better(m), "n": len(keys),
                "details": {"aggregate": "mean over scenarios of the per-scenario value (Stable-Pose)",
                            "scenarios": sum(math.isfinite(row[m]) for row in per_scenario.values()),
                            "pooled": pooled[m], "real_set": "validation images of the same scenario",
                            "real_n": sum(row["real_n"] for row in per_scenario.values()),
                            **({"pooled_std": pooled["kid_std"]} if m == "kid" else {})}}
        if feats.resized:
            prep.warnings.append(f"{feats.resized} generated images were resized to "
                                 f"{prep.protocol.resolution[0]}x{prep.protocol.resolution[1]} for FID/KID")

    elapsed = time.perf_counter() - t0
    sizes: dict[str, int] = {}
    for h, w in prep.sizes.values():
        sizes[f"{h}x{w}"] = sizes.get(f"{h}x{w}", 0) + 1
    per_image_file = cfg.out.with_suffix(".per_image.csv")
    all_keys = sorted(prep.images)
    result = {
        "schema_version": 1,
        "posebench": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "canonical": not prep.non_canonical,
        "non_canonical_reasons": prep.non_canonical,
        "protocol": {"name": prep.protocol.name, "version": prep.protocol.version, "sha256": prep.protocol.sha256},
        "profile": prep.pose_profile.meta(),
        "dataset": {"name": prep.protocol.dataset, "layout": "coco", "split": prep.protocol.split,
                    "pairs": len(all_keys),
                    "pairs_sha256": hashlib.sha256("\n".join(all_keys).encode()).hexdigest(),
                    "scenarios": len({im.scenario for im in prep.images.values()}), "real_sets": real_meta},
        "predictions": {"dir": str(cfg.pred), "count": len(keys), "scheme": "humanart-stem",
                        "images_sha256": files_sha256([prep.files[k] for k in keys]),
                        "lossy": "lossy_inputs" in prep.flags, "sizes": sizes,
                        "resized": bool(feats is not None and feats.resized), "gt_rescaled": rescaled},
        "flags": prep.flags,
        "declared": {"best_of": 1, "oracle_selection": False},
        "metrics": metrics_out,
        "breakdown": {"by": "scenario", "rows": breakdown},
        "per_image_file": per_image_file.name,
        "warnings": prep.warnings,
        "env": {**versions(), "pose_estimator": _estimator_env(cfg, prep) if need_pose else None,
                "extractor": feats.env() if feats is not None else None, "device": cfg.device, "processes": 1},
        "timing": {"seconds": round(elapsed, 3),
                   "images_per_second": round(len(keys) / elapsed, 3) if elapsed else None},
        "config": cfg.to_json(),
    }
    _write_per_image(per_image_file, prep, keys, per_image)
    write_results(cfg.out, result)
    return result


def _rescale_warning(n: int, prep: _Prepared) -> str:
    if prep.pose_profile.target_frame == "annotated":
        return (f"{n} generated images differ in size from their annotated image: the target keypoints, boxes and "
                "areas were rescaled to the generated image per axis")
    h, w = prep.protocol.resolution
    return (f"{n} generated images are not {h}x{w}: the targets of the {h}x{w} target frame were rescaled to the "
            "generated image per axis")


def _write_per_image(path: Path, prep: _Prepared, keys: Sequence[str], per_image: dict[int, dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["key", "scenario", "image_id", "file", "n_gt", "n_dt", "pce_error"])
    for k in keys:
        im = prep.images[k]
        row = per_image.get(im.image_id, {})
        writer.writerow([k, im.scenario, im.image_id, prep.files[k].name, row.get("n_gt", ""), row.get("n_dt", ""),
                         row.get("error", "")])
    atomic_write_text(path, buf.getvalue())
