"""Evaluation (`posebench eval`, `posebench.evaluate`): score a folder of generated images against a
protocol with a metric profile.

One streaming pass: each generated and ground-truth image is decoded once, brought to each metric's size
by the profile's resize chain (cached per chain within a batch), and every metric is computed from those
arrays. Per-image values are kept; FID/KID features accumulate in float64. The FID real set's statistics
are cached by content-derived keys (real_stats.py). Results are written atomically.

Orchestration: this module chains datasets, metrics and results; nothing below it imports it.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from posebench._version import __version__
from posebench.datasets.index import DatasetIndex
from posebench.datasets.names import IMAGE_SUFFIXES, PairKey, parse_generated_name
from posebench.datasets.problems import ProblemLog
from posebench.errors import PosebenchError
from posebench.images import LOSSY_SUFFIXES, read_rgb
from posebench.metrics.registry import METRICS, higher_is_better
from posebench.protocols import Profile, Protocol, get_profile, get_protocol
from posebench.results.schema import write_results
from posebench.utils.distributed import Shard
from posebench.utils.io import atomic_write_text, files_sha256

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

# on request only: an estimator runs on the generated images (every metric that consumes "pose")
POSE_METRICS = tuple(n for n in METRICS.names() if METRICS.get(n).consumes == "pose")
SYNTHETIC_ESTIMATORS = ("synthetic-posenet", "tiny-random")


@dataclass
class ScoringConfig:
    """What every `posebench eval` takes, whatever the protocol's kind: `EvalConfig` (image protocols) and
    `posebench.humanart_eval.PoseEvalConfig` (pose protocols) add their own fields.

    Attributes:
        protocol, root, pred, out: protocol name, dataset root, folder of generated images, results JSON to
            write (a per-image CSV goes beside it).
        profile: metric profile (the pose-metric profile for pose protocols); default: the protocol's.
        metrics: what to compute; default: the protocol's metrics.
        fid_weights: Inception weights file instead of the registry's.
        pose_estimator, pose_weights, flip_test: the estimator run on the generated images for pose metrics
            (registered name, checkpoint file instead of the registered one, its flip test).
        allow_missing: score a subset when generated images are missing (counts are reported).
        allow_lossy: accept JPEG generated images (flagged).
        batch_size, device, use_cache, progress: images per forward pass, torch device, reuse of cached
            real-set statistics, progress bars.
    """

    protocol: str
    root: Path
    pred: Path
    out: Path
    profile: str | None = None
    metrics: tuple[str, ...] | None = None
    fid_weights: Path | None = None
    pose_estimator: str | None = None
    pose_weights: Path | None = None
    flip_test: bool = True
    allow_missing: bool = False
    allow_lossy: bool = False
    batch_size: int = 16
    device: str = "cpu"
    use_cache: bool = True
    progress: bool = True

    def to_json(self) -> dict[str, Any]:
        """The config as JSON-ready values."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


@dataclass
class EvalConfig(ScoringConfig):
    """`posebench eval` on an image protocol; pose metrics (ap, ap_m, cap, pce) on request only, with
    posebench.pose.detect's default estimator unless `pose_estimator` names one."""

    lpips_weights: Path | None = None
    is_weights: Path | None = None  # Inception Score classifier file instead of the profile's
    scheme: str | None = None
    name_map: Path | None = None  # release image names -> dataset names (PCDMs' imgN), JSON or two-column CSV
    best_of: int = 1
    oracle_selection: bool = False
    test_fid: bool = False
    real_limit: int | None = None  # cap the real set (development runs; recorded and non-canonical)


@dataclass
class _Prepared:
    protocol: Protocol
    profile: Profile
    index: DatasetIndex
    pairs: list[PairKey]
    files: dict[PairKey, Path]
    scheme: str
    metrics: tuple[str, ...]
    warnings: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    non_canonical: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- matching


def _list_predictions(pred: Path) -> list[Path]:
    if not pred.is_dir():
        raise PosebenchError(f"--pred {pred} is not a folder of generated images")
    files = sorted(p for p in pred.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise PosebenchError(f"{pred} holds no images ({', '.join(IMAGE_SUFFIXES)}); generate them first")
    return files


def match_predictions(files: Sequence[Path], pairs: Sequence[PairKey], known: set[str], scheme: str | None,
                      allow_missing: bool, name_map: dict[str, str] | None = None,
                      ) -> tuple[dict[PairKey, Path], str, list[str]]:
    """Map generated files to protocol pairs. Unparseable, duplicate, extra and missing files are errors
    (listed together); with allow_missing, missing pairs are reported instead."""
    problems: list[str] = []
    found: dict[PairKey, Path] = {}
    schemes: set[str] = set()
    pair_set = set(pairs)
    for f in files:
        try:
            used, key = parse_generated_name(f.name, scheme=scheme, known=known, name_map=name_map)
        except ValueError as exc:
            problems.append(f"{f}: {exc}")
            continue
        schemes.add(used)
        if key in found:
            problems.append(f"{f}: duplicate of {found[key].name} (both are pair {key})")
        elif key not in pair_set:
            problems.append(f"{f}: pair {key} is not in the protocol's split (extra file)")
        else:
            found[key] = f
    missing = [p for p in pairs if p not in found]
    notes: list[str] = []
    if missing and not allow_missing:
        shown = ", ".join(p.filename for p in missing[:5])
        problems.append(f"{len(missing)} of {len(pairs)} pairs have no generated image (e.g. {shown}); generate "
                        "them or pass --allow-missing to score the rest (then counts are reported)")
    elif missing:
        notes.append(f"{len(missing)} of {len(pairs)} pairs have no generated image and were not scored")
    if len(schemes) > 1:
        problems.append(f"the folder mixes naming schemes {sorted(schemes)}; use one")
    if problems:
        head = "\n  ".join(problems[:30])
        more = f"\n  ... and {len(problems) - 30} more" if len(problems) > 30 else ""
        raise PosebenchError(f"cannot match generated images to pairs:\n  {head}{more}")
    return found, (schemes.pop() if schemes else scheme or "posebench"), notes


def prepare(cfg: EvalConfig) -> _Prepared:
    from posebench.datasets import manifest

    protocol = get_protocol(cfg.protocol)
    profile = get_profile(cfg.profile or protocol.default_profile)
    if profile.name not in protocol.profiles and not (cfg.profile or "").endswith((".yaml", ".yml")):
        raise PosebenchError(f"profile {profile.name!r} does not apply to {protocol.name}; "
                             f"choose one of {', '.join(protocol.profiles)}")
    wanted = cfg.metrics or protocol.metrics
    unknown = [m for m in wanted if m not in METRICS]
    if unknown:
        raise PosebenchError(f"unknown metrics {unknown}; choose from {', '.join(METRICS.names())}")
    missing = [m for m in wanted if METRICS.get(m).section and METRICS.get(m).section not in profile.metrics]
    if missing:
        raise PosebenchError(f"profile {profile.name} defines no {', '.join(missing)} section; add it to the profile "
                             f"or leave {', '.join(missing)} out of --metrics")
    metrics = tuple(dict.fromkeys(wanted))
    log_ = ProblemLog()
    index = manifest.load(protocol.dataset, cfg.root, log_)
    log_.raise_if_errors(f"{protocol.dataset} root {cfg.root}")
    if protocol.split not in index.splits:
        raise PosebenchError(f"{cfg.root} has no {protocol.split!r} split")
    split = index.splits[protocol.split]
    pairs = sorted(split.pairs)
    prep = _Prepared(protocol, profile, index, pairs, {}, "", metrics)
    if "pairs" in protocol.pinned and len(pairs) != protocol.pinned["pairs"]:
        prep.non_canonical.append(f"{len(pairs):,} pairs in the root, the protocol pins {protocol.pinned['pairs']:,}")
    real = profile.metrics["fid"].real_set if "fid" in profile.metrics else protocol.real_sets[0]
    if "real_images" in protocol.pinned and real in index.splits:
        n_real = len(index.splits[real].images)
        if n_real != protocol.pinned["real_images"]:
            prep.non_canonical.append(f"{n_real:,} FID real-set images, the protocol pins "
                                      f"{protocol.pinned['real_images']:,}")
    if cfg.real_limit is not None:
        prep.non_canonical.append(f"real set capped at {cfg.real_limit} images (--real-limit)")
    if set(POSE_METRICS) & set(metrics) and pose_estimator_name(cfg) in SYNTHETIC_ESTIMATORS:
        prep.non_canonical.append(f"pose metrics from a synthetic-domain / random estimator "
                                  f"({pose_estimator_name(cfg)}): not comparable with published numbers")

    name_map = None
    if cfg.name_map is not None:
        from posebench.datasets.formats import read_name_map

        map_log = ProblemLog()
        name_map = read_name_map(cfg.name_map, map_log)
        map_log.raise_if_errors(f"--name-map {cfg.name_map}")
    files = _list_predictions(cfg.pred)
    prep.files, prep.scheme, notes = match_predictions(files, pairs, set(split.images), cfg.scheme,
                                                       cfg.allow_missing, name_map)
    prep.warnings += notes
    if set(POSE_METRICS) & set(metrics):
        for key in pairs:  # the ground truth of every scored pair must exist before any compute
            people = split.keypoints.get(key.target) if key in prep.files else None
            if key in prep.files and not (people and people[0].visible.any()):
                raise PosebenchError(f"pose metrics need the keypoints of target {key.target} (pair {key}); "
                                     f"the root {cfg.root} has {'only invisible ones' if people else 'none'} "
                                     "for it")
    if len(prep.files) < len(pairs):
        prep.non_canonical.append(f"only {len(prep.files)} of {len(pairs)} pairs scored")
    lossy = [f for f in prep.files.values() if f.suffix.lower() in LOSSY_SUFFIXES]
    if lossy and not cfg.allow_lossy:
        raise PosebenchError(f"{len(lossy)} generated images are lossy ({lossy[0].name}, ...): JPEG changes the "
                             "pixels metrics see. Save PNG, or pass --allow-lossy (recorded in the results)")
    if lossy:
        prep.flags.append("lossy_inputs")
    if cfg.best_of > 1:
        prep.flags.append(f"best_of_{cfg.best_of}")
    if cfg.oracle_selection:
        prep.flags.append("oracle_selection")
        prep.non_canonical.append("samples were selected with the ground truth (oracle selection)")
    for reason in prep.non_canonical:
        prep.warnings.append(f"non-canonical: {reason}; not comparable with leaderboard rows")
    return prep


# ---------------------------------------------------------------------------------------------- metrics


class _Metrics:
    """The metric objects of one evaluation (`posebench.metrics` classes; the only code that produces numbers),
    keyed by results key, and the batch loop's input: each batch's `ImagePairs` goes to every metric, so each image
    is decoded once and each resize chain and feature pass runs once per batch."""

    def __init__(self, prep: _Prepared, cfg: EvalConfig) -> None:
        from posebench.metrics.lpips import LPIPS
        from posebench.metrics.psnr import PSNR
        from posebench.metrics.ssim import SSIM

        self.prep = prep
        prof, res, metrics = prep.profile, prep.protocol.resolution, prep.metrics
        common: dict[str, Any] = {"resolution": res, "sync_on_compute": False}  # the evaluator syncs itself
        self.per_image: dict[str, Any] = {}  # results key -> PerImageMetric
        masked = prep.protocol.masked_metrics
        if "ssim" in metrics:
            section = prof.section("ssim")
            for vname in sorted(section.variants, key=lambda v: v != section.reported):  # headline first
                key = "ssim" if vname == section.reported else vname
                self.per_image[key] = SSIM(prof, variant=vname, **common)
            if "ssim" in masked:
                self.per_image["ssim_masked"] = SSIM(prof, masked=True, **common)
        if "psnr" in metrics:
            self.per_image["psnr"] = PSNR(prof, **common)
        if "lpips" in metrics:
            lp = LPIPS(prof, weights=cfg.lpips_weights, device=cfg.device, **common)
            self.per_image["lpips"] = lp
            if "lpips" in masked:
                self.per_image["lpips_masked"] = LPIPS(prof, net=lp.net, masked=True, **common)
        self.sets: dict[str, Any] = {}  # results key -> FID / KID, one per real set
        self.real_sets: list[str] = []
        if "fid" in metrics or "kid" in metrics:
            from posebench.metrics.fid import FID
            from posebench.metrics.kid import KID

            section = prof.section("fid")
            if section.real_set not in prep.protocol.real_sets:
                raise PosebenchError(f"profile {prof.name}: fid.real_set {section.real_set!r} is not a real set of "
                                     f"{prep.protocol.name} ({', '.join(prep.protocol.real_sets)})")
            others = [r for r in prep.protocol.real_sets if r != section.real_set]
            self.real_sets = [section.real_set, *(others if cfg.test_fid else [])]
            owner = None  # the first metric keeps the generated features; the others read them
            for real in self.real_sets:
                suffix = "" if real == section.real_set else f"_{real}"
                for name, cls in (("fid", FID), ("kid", KID)):
                    if name in metrics:
                        m = cls(prof, weights=cfg.fid_weights, device=cfg.device, features_of=owner,
                                extractor=None if owner is None else owner.extractor, **common)
                        owner = owner or m
                        m.real_set_name = real
                        self.sets[name + suffix] = m
        self.inception: dict[str, Any] = {}  # results key -> IS (generated images only)
        if "is" in metrics:
            from posebench.metrics.inception_score import IS

            self.inception["is"] = IS(prof, weights=cfg.is_weights, device=cfg.device, **common)
            if "is" in masked:
                self.inception["is_masked"] = IS(prof, classifier=self.inception["is"].classifier, masked=True,
                                                 **common)
        self.pose = None
        if set(POSE_METRICS) & set(metrics):
            self.pose = _PoseScorer(prep, cfg)
        self.resized = False

    def all(self) -> list[Any]:
        return [*self.per_image.values(), *self.sets.values(), *self.inception.values(),
                *(self.pose.metrics() if self.pose else [])]

    def update(self, pairs: Any, keys: list[PairKey], positions: list[int]) -> None:
        for m in self.per_image.values():
            m.update(pairs, index=positions)
        for m in (*self.sets.values(), *self.inception.values()):
            m.update(pairs, index=positions)
        if self.pose is not None:
            self.pose.update(pairs, keys, positions)
        self.resized = self.resized or bool(pairs.resized)


def pose_estimator_name(cfg: EvalConfig) -> str:
    """The estimator that pose metrics use: `cfg.pose_estimator`, else posebench.pose.detect's default."""
    from posebench.pose.detect import DEFAULT_ESTIMATOR

    return cfg.pose_estimator or DEFAULT_ESTIMATOR


class _PoseScorer:
    """Pose accuracy (AP, AP(m), CAP, PCE): the estimator runs on the decoded generated images of each batch;
    the ground truth is the target's first person, rescaled to the generated image and converted to COCO-17,
    both handed to `posebench.metrics.pose_accuracy.PoseAccuracy` (pose profile `clean`).

    Image ids are the pair's position in the scoring order plus 1, so detections and ground truth of several
    processes merge into what one process computes. The `clean` pose profile applies (estimator input, refine
    fill, GT areas, similarity, aggregation, PCE filter); its target frame does not: the target is the pair's
    target image itself.
    """

    def __init__(self, prep: _Prepared, cfg: EvalConfig) -> None:
        from posebench.metrics.pckh import PCKh
        from posebench.metrics.pose_accuracy import POSE_METRICS as ACCURACY
        from posebench.metrics.pose_accuracy import PoseAccuracy
        from posebench.pose.detect import load_estimator, set_refine_fill
        from posebench.protocols.pose_profile import get_pose_profile

        self.prep = prep
        self.cfg = cfg
        self.name = pose_estimator_name(cfg)
        self.accuracy = [m for m in ACCURACY if m in prep.metrics]
        self.metric = PoseAccuracy("clean", sync_on_compute=False) if self.accuracy else None
        self.pckh = PCKh(prep.profile.section("pckh").alpha, sync_on_compute=False) if "pckh" in prep.metrics \
            else None
        self.profile = get_pose_profile("clean")
        self.model = load_estimator(self.name, weights=cfg.pose_weights, device=cfg.device)
        set_refine_fill(self.model, self.profile.refine_fill)
        self._env: dict[str, Any] | None = None

    def update(self, pairs: Any, keys: list[PairKey], positions: list[int]) -> None:
        from posebench.pose.detect import detect_arrays

        ids = [p + 1 for p in positions]
        dets = detect_arrays(self.model, pairs.preds, ids, device=self.cfg.device, flip_test=self.cfg.flip_test,
                             swap_rb=self.profile.swap_rb)
        keypoints = self.prep.index.splits[self.prep.protocol.split].keypoints
        targets = [keypoints[key.target][0].rescale(img.shape[:2]) for img, key in zip(pairs.preds, keys, strict=True)]
        if self.pckh is not None:
            self.pckh.update([[d for d in dets if d["image_id"] == i] for i in ids], targets, index=positions)
        if self.metric is None:
            return
        images, anns = [], []
        for img, target, image_id in zip(pairs.preds, targets, ids, strict=True):
            h, w = img.shape[:2]
            kp = target.convert("coco17")  # prepare() checked that it exists
            flat = np.zeros((kp.num_joints, 3), dtype=np.float64)
            flat[kp.visible, :2] = kp.xy[kp.visible]
            flat[kp.visible, 2] = 2.0
            images.append({"id": image_id, "height": h, "width": w})
            # no bbox/area: evaluate_pose's clean profile derives both from the visible joints
            anns.append({"image_id": image_id, "category_id": 1, "iscrowd": 0, "num_keypoints": int(kp.visible.sum()),
                         "keypoints": [float(v) for v in flat.reshape(-1)]})
        self.metric.update(dets, images, anns, index=positions)

    def env(self) -> dict[str, Any]:
        """Estimator name, weights file and its sha256 (hashed once), flip test."""
        from posebench.pose.detect import estimator_env

        if self._env is None:
            self._env = estimator_env(self.name, self.cfg.pose_weights, self.cfg.flip_test)
        return self._env

    def metrics(self) -> list[Any]:
        return [m for m in (self.metric, self.pckh) if m is not None]

    def results(self, n_keys: int) -> tuple[dict[str, Any], dict[str, list[float]]]:
        """The requested pose metrics (results entries) and their per-image columns (pce, pckh) in scoring order."""
        out: dict[str, Any] = {}
        columns: dict[str, list[float]] = {}
        estimator = {k: v for k, v in self.env().items() if k in ("name", "weights_sha256")}
        entries = {m: self.metric.summary(m) for m in self.accuracy}
        if self.pckh is not None:
            entries["pckh"] = self.pckh.summary()
            columns["pckh"] = self.pckh.per_image()[1].tolist()
        for m, entry in entries.items():
            entry["details"]["estimator"] = estimator
            out[m] = {"value": entry["value"], "stderr": None, "higher_is_better": higher_is_better(m),
                      "n": entry["n"], "details": entry["details"]}
        if self.metric is not None:  # the per-image people count error comes with any of ap, ap_m, cap, pce
            by_id = {i: float(r["error"]) for i, r in self.metric.per_image_pce().items()}
            columns["pce"] = [by_id[i + 1] for i in range(n_keys)]
        return out, columns


# ---------------------------------------------------------------------------------------------- main


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Run an evaluation and write `cfg.out` (+ a per-image CSV beside it). Returns the results dict."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from posebench.env import versions
    from posebench.metrics.inputs import ImagePairs

    t0 = time.perf_counter()
    prep = prepare(cfg)
    metrics = _Metrics(prep, cfg)
    split = prep.index.splits[prep.protocol.split]
    # Scoring order = the sorted listing of the generated files, the order the reference scripts sort them in
    # (`sorted(glob(...))`), so drop-last keeps the images they keep where they sort (LPIPS), and a deterministic
    # choice where they do not (FID lists the folder unsorted).
    keys = sorted((p for p in prep.pairs if p in prep.files), key=lambda k: prep.files[k].name)
    position = {k: i for i, k in enumerate(keys)}
    shard = Shard.current(cfg.device)
    masked = bool(set(prep.protocol.masked_metrics) & set(prep.metrics))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not (cfg.progress and shard.is_main)) as bar:
        mine = keys[shard.rank::shard.world]  # under accelerate/torchrun each process scores a strided shard
        task = bar.add_task("scoring pairs", total=len(mine))
        for lo in range(0, len(mine), cfg.batch_size):
            batch = mine[lo:lo + cfg.batch_size]
            people = [split.keypoints.get(k.target) for k in batch] if masked else None
            pairs = ImagePairs([read_rgb(prep.files[k]) for k in batch], [read_rgb(split.images[k.target])
                                                                          for k in batch],
                               labels=[str(prep.files[k]) for k in batch],
                               keypoints=None if people is None else [p[0] if p else None for p in people])
            metrics.update(pairs, batch, [position[k] for k in batch])
            bar.advance(task, len(batch))
        if shard.world > 1:
            for m in metrics.all():  # collective: every process's states reach every process, in position order
                m.sync()
            if not shard.is_main:
                return {}  # the main process scores the gathered values and writes the results

        metrics_out: dict[str, Any] = {}
        per_image_columns: dict[str, list[float]] = {}
        for key, m in metrics.per_image.items():
            entry = m.summary()
            metrics_out[key] = {"value": entry["value"], "stderr": entry["stderr"],
                                "higher_is_better": higher_is_better(key), "n": entry["n"], "details": entry["details"]}
            per_image_columns[key] = m.per_image()[1].tolist()
        if metrics.pose is not None:
            pose_out, pose_columns = metrics.pose.results(len(keys))
            metrics_out.update(pose_out)
            per_image_columns.update(pose_columns)
        real_meta = _score_real_sets(prep, cfg, metrics, metrics_out, bar)
        for key, m in metrics.inception.items():
            entry = m.summary()
            metrics_out[key] = {"value": entry["value"], "stderr": entry["stderr"], "higher_is_better": True,
                                "n": entry["n"], "details": entry["details"]}

    if metrics.resized:
        prep.warnings.append("generated images were resized to the metric size (profile resize chain)")
    elapsed = time.perf_counter() - t0
    sizes: dict[str, int] = {}
    for f in prep.files.values():
        from PIL import Image

        with Image.open(f) as im:
            sizes[f"{im.height}x{im.width}"] = sizes.get(f"{im.height}x{im.width}", 0) + 1
    per_image_file = cfg.out.with_suffix(".per_image.csv")
    extractor = next(iter(metrics.sets.values())).extractor if metrics.sets else None
    lpips_net = metrics.per_image["lpips"].net if "lpips" in metrics.per_image else None
    result = {
        "schema_version": 1,
        "posebench": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "canonical": not prep.non_canonical,
        "non_canonical_reasons": prep.non_canonical,
        "protocol": {"name": prep.protocol.name, "version": prep.protocol.version, "sha256": prep.protocol.sha256},
        "profile": {"name": prep.profile.name, "version": prep.profile.version, "sha256": prep.profile.sha256},
        "dataset": {
            "name": prep.protocol.dataset, "layout": prep.index.layout, "split": prep.protocol.split,
            "pairs": len(prep.pairs), "pairs_sha256": _pairs_sha(prep.pairs),
            "real_sets": real_meta,
        },
        "predictions": {"dir": str(cfg.pred), "count": len(prep.files), "scheme": prep.scheme,
                        "images_sha256": files_sha256(list(prep.files.values())),
                        "lossy": "lossy_inputs" in prep.flags, "sizes": sizes, "resized": metrics.resized},
        "flags": prep.flags,
        "declared": {"best_of": cfg.best_of, "oracle_selection": cfg.oracle_selection},
        "metrics": metrics_out,
        "per_image_file": per_image_file.name,
        "warnings": prep.warnings,
        "env": {**versions(),
                "extractor": None if extractor is None else {"name": extractor.name, "version": extractor.version,
                                                             "weights_sha256": extractor.weights_sha256},
                "lpips": None if lpips_net is None else {"net": lpips_net.net, "version": lpips_net.version,
                                                         "weights_sha256": lpips_net.weights_sha256},
                "pose_estimator": metrics.pose.env() if metrics.pose is not None else None,
                "device": cfg.device, "processes": shard.world},
        "timing": {"seconds": round(elapsed, 3),
                   "images_per_second": round(len(keys) / elapsed, 3) if elapsed else None},
        "config": cfg.to_json(),
    }
    _write_per_image(per_image_file, keys, per_image_columns)
    write_results(cfg.out, result)
    return result


def _score_real_sets(prep: _Prepared, cfg: EvalConfig, metrics: _Metrics, out: dict[str, Any],
                     bar: Any) -> dict[str, Any]:
    """Real-set statistics (cached by content, `posebench.real_stats`) for each FID/KID real set, then their
    results entries into `out`. Returns the real sets' metadata."""
    from posebench.real_stats import real_set_stats

    real_meta: dict[str, Any] = {}
    for real_name in metrics.real_sets:
        mine = {key: m for key, m in metrics.sets.items() if m.real_set_name == real_name}
        first = next(iter(mine.values()))
        section = prep.profile.section("fid")
        rsplit = prep.index.splits.get(real_name)
        if rsplit is None:
            raise PosebenchError(f"the FID real set {real_name!r} is not in {cfg.root}")
        paths = [rsplit.images[k] for k in sorted(rsplit.images)]
        if cfg.real_limit is not None:
            paths = paths[: cfg.real_limit]
        ext = first.extractor
        key_parts = {
            "profile": [prep.profile.name, prep.profile.version, prep.profile.sha256],
            "extractor": [ext.name, ext.version, ext.weights_sha256],
            "chain": first.gt_chain, "dataset": prep.protocol.dataset, "split": real_name,
            "names": hashlib.sha256("\n".join(p.name for p in paths).encode()).hexdigest(),
            "bytes": sum(p.stat().st_size for p in paths), "drop_last": section.drop_last,
            "batch_size": section.batch_size,
        }
        stats_name = f"{prep.protocol.name}-v{prep.protocol.version}__{prep.profile.name}-v" \
                     f"{prep.profile.version}__{ext.name}__{real_name}"
        stats, meta = real_set_stats(
            stats_name, key_parts, paths, first.featurize_files,
            batch_size=max(1, min(section.batch_size, len(paths))), drop_last=section.drop_last,
            keep_features="kid" in prep.metrics, progress=bar if cfg.progress else None, use_cache=cfg.use_cache)
        real_meta[real_name] = meta
        for key, m in mine.items():
            m.set_real(stats, {"real_set": real_name, "real_dropped": meta["dropped"]})
            entry = m.summary()
            out[key] = {"value": entry["value"], "stderr": entry["stderr"], "higher_is_better": higher_is_better(key),
                        "n": entry["n"], "details": entry["details"]}
    return real_meta


def _pairs_sha(pairs: list[PairKey]) -> str:
    from posebench.datasets.manifest import pairs_sha256

    return pairs_sha256(pairs)


def _write_per_image(path: Path, keys: list[PairKey], per_image: dict[str, list[float]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    names = sorted(per_image)
    writer.writerow(["source", "target", *names])
    for i, k in enumerate(keys):
        writer.writerow([k.source, k.target, *(repr(per_image[n][i]) for n in names)])
    atomic_write_text(path, buf.getvalue())
