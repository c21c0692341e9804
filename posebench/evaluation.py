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
import math
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
from posebench.images import LOSSY_SUFFIXES, apply_chain, read_rgb
from posebench.protocols import Profile, Protocol, get_profile, get_protocol
from posebench.results.schema import HIGHER_IS_BETTER, write_results
from posebench.utils.distributed import Shard
from posebench.utils.io import atomic_write_text, files_sha256

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

POSE_METRICS = ("ap", "ap_m", "cap", "pce")  # on request only: an estimator runs on the generated images
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
    unknown = [m for m in wanted if m not in HIGHER_IS_BETTER]
    if unknown:
        raise PosebenchError(f"unknown metrics {unknown}; choose from {', '.join(HIGHER_IS_BETTER)}")
    metrics = tuple(m for m in wanted if m in profile.metrics or m in POSE_METRICS)
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
    real = protocol.real_sets[0]
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


Chain = tuple[tuple[str, tuple[int, int], str], ...]  # resolved resize steps (method, size, output)


class _Scorer:
    """Per-image metrics and feature accumulation for one profile.

    Each metric sees the generated image through its prediction chain and the ground truth through its
    ground-truth chain (`Profile.prediction_chain_for` / `Profile.chain`), each applied once per batch and
    shared by every metric with the same pair of chains. Arrays are uint8, or float32 where a profile's
    reference keeps the float result of a resize (values may overshoot [0, 255], as in the reference).
    """

    def __init__(self, prep: _Prepared, cfg: EvalConfig) -> None:
        import torch

        self.torch = torch
        self.prep = prep
        self.cfg = cfg
        res = prep.protocol.resolution
        prof = prep.profile
        self.chains: dict[str, tuple[Chain, Chain]] = {
            m: (tuple(st.resolve(res) for st in prof.prediction_chain_for(m)),
                tuple(st.resolve(res) for st in prof.chain(m)))
            for m in (*prep.metrics, "fid") if m not in POSE_METRICS and m != "kid"}
        self.per_image: dict[str, list[float]] = {}
        self.prep_resized = False  # set when a prediction had to be resized by the profile's chain
        self.extractor = None
        self.lpips = None
        self.gen_features: list[np.ndarray] = []  # empty without FID/KID (gather_into reads it in any case)
        spec = prof.metrics
        if "fid" in prep.metrics or "kid" in prep.metrics:
            from posebench.metrics.features import build_extractor

            self.extractor = build_extractor(spec["fid"]["extractor"], weights=cfg.fid_weights, device=cfg.device)
        if "lpips" in prep.metrics:
            from posebench.metrics.lpips_net import build_lpips

            self.lpips = build_lpips(spec["lpips"]["net"], spec["lpips"]["version"], weights=cfg.lpips_weights,
                                     device=cfg.device)

    def feature_chains(self) -> tuple[Chain, Chain]:
        """(prediction chain, real-set chain) of the FID/KID features: the `fid` section's, for KID too."""
        return self.chains["fid"]

    def features(self, images: list[np.ndarray]) -> np.ndarray:
        torch = self.torch
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().to(self.cfg.device)
        floats = any(img.dtype != np.uint8 for img in images)  # a float chain may overshoot [0, 255] on purpose
        with torch.inference_mode():
            return self.extractor(x, check_range=not floats).double().cpu().numpy()

    def score_batch(self, preds: list[np.ndarray], gts: list[np.ndarray], names: list[PairKey]) -> None:
        from posebench.metrics.functional.psnr import psnr
        from posebench.metrics.functional.ssim import ssim_variant

        torch = self.torch
        prof = self.prep.profile.metrics
        prepared: dict[tuple[Chain, Chain], tuple[np.ndarray, np.ndarray]] = {}

        def at(metric: str) -> tuple[torch.Tensor, torch.Tensor]:
            chains = self.chains[metric]
            if chains not in prepared:
                pred_chain, gt_chain = chains
                prepared[chains] = (np.stack([self._pred_at(p, pred_chain, n) for p, n in zip(preds, names,
                                                                                            strict=True)]),
                                    np.stack([apply_chain(g, list(gt_chain)) for g in gts]))
            p, g = prepared[chains]
            return (torch.from_numpy(p).permute(0, 3, 1, 2).double(), torch.from_numpy(g).permute(0, 3, 1, 2).double())

        if "ssim" in self.prep.metrics:
            p255, g255 = at("ssim")
            reported = prof["ssim"]["reported"]
            for vname, v in sorted(prof["ssim"]["variants"].items(), key=lambda kv: kv[0] != reported):
                vals = ssim_variant(p255, g255, v)  # the reported variant first: the headline leads the table
                # the reported variant is `ssim`; every other variant has its own key (checked in protocols)
                key = "ssim" if vname == reported else vname
                self.per_image.setdefault(key, []).extend(vals.tolist())
        if "psnr" in self.prep.metrics:
            p255, g255 = at("psnr")
            vals = psnr(p255, g255, data_range=float(prof["psnr"]["data_range"]))
            self.per_image.setdefault("psnr", []).extend(vals.tolist())
        if self.lpips is not None:
            p255, g255 = at("lpips")
            self.per_image.setdefault("lpips", []).extend(self._lpips(p255, g255).tolist())
        for metric in self.prep.protocol.masked_metrics:
            if metric in self.prep.metrics:
                self._score_masked(metric, *at(metric), names)
        if self.extractor is not None:
            pred_chain, _ = self.feature_chains()
            imgs = [self._pred_at(p, pred_chain, n) for p, n in zip(preds, names, strict=True)]
            self.gen_features.append(self.features(imgs))

    def _lpips(self, p255: torch.Tensor, g255: torch.Tensor) -> torch.Tensor:
        """LPIPS of [0, 255] images as the profile feeds them; float chains keep their overshoot."""
        dev = self.cfg.device
        with self.torch.inference_mode():
            vals = self.lpips((p255 / 255.0).float().to(dev), (g255 / 255.0).float().to(dev),
                              input_range=self.prep.profile.metrics["lpips"]["input_range"], check_range=False)
        return vals.double().cpu()

    def _score_masked(self, metric: str, p255: torch.Tensor, g255: torch.Tensor, names: list[PairKey]) -> None:
        """mask-SSIM (PATN) / mask-LPIPS (GFLA): both images multiplied by the target's pose mask."""
        from posebench.datasets.render import pose_mask
        from posebench.metrics.functional.ssim import ssim_variant

        torch = self.torch
        keypoints = self.prep.index.splits[self.prep.protocol.split].keypoints
        size = tuple(p255.shape[-2:])
        masks = []
        for key in names:
            people = keypoints.get(key.target)
            if not people:
                raise PosebenchError(f"masked {metric} needs keypoints of target {key.target}; the root has none")
            masks.append(pose_mask(people[0].rescale(size)))
        m = torch.from_numpy(np.stack(masks))[:, None].double()
        prof = self.prep.profile.metrics
        if metric == "ssim":  # PATN: the 8-bit images times the mask (black outside it)
            vals = ssim_variant(p255 * m, g255 * m, prof["ssim"]["variants"][prof["ssim"]["reported"]])
        else:  # GFLA calculate_mask_lpips: the network's input times the mask, `(img / 127.5 - 1) * mask`
            fill = 0.0 if prof["lpips"]["input_range"] == "zero_1_raw" else 127.5  # the value that maps to 0
            vals = self._lpips(p255 * m + fill * (1 - m), g255 * m + fill * (1 - m))
        self.per_image.setdefault(f"{metric}_masked", []).extend(vals.tolist())

    def _pred_at(self, img: np.ndarray, chain: Chain, name: PairKey) -> np.ndarray:
        target = chain[-1][1]
        if img.shape[:2] == target:
            return img
        if not self.prep.profile.resize_predictions:
            raise PosebenchError(
                f"{self.prep.files[name]}: generated image is {img.shape[0]}x{img.shape[1]}, the protocol needs "
                f"{target[0]}x{target[1]}; profile {self.prep.profile.name} does not resize predictions. "
                "Generate at the protocol resolution (or use a legacy profile that reproduces a resize)")
        self.prep_resized = True
        return apply_chain(img, list(chain))


def pose_estimator_name(cfg: EvalConfig) -> str:
    """The estimator that pose metrics use: `cfg.pose_estimator`, else posebench.pose.detect's default."""
    from posebench.pose.detect import DEFAULT_ESTIMATOR

    return cfg.pose_estimator or DEFAULT_ESTIMATOR


class _PoseScorer:
    """Pose accuracy (AP, AP(m), CAP, PCE): the estimator runs on the decoded generated images of each batch;
    the ground truth is the target's first person, rescaled to the generated image and converted to COCO-17.

    Image ids are the pair's position in the sorted list of scored pairs, plus 1, so detections and ground truth
    of several processes merge into what one process computes. The `clean` pose profile applies (estimator input,
    refine fill, GT areas, similarity, aggregation, PCE filter); its target frame does not: the target is the pair's
    target image itself.
    """

    def __init__(self, prep: _Prepared, cfg: EvalConfig) -> None:
        from posebench.pose.detect import load_estimator, set_refine_fill
        from posebench.protocols.pose_profile import get_pose_profile

        self.prep = prep
        self.cfg = cfg
        self.name = pose_estimator_name(cfg)
        self.profile = get_pose_profile("clean")
        self.model = load_estimator(self.name, weights=cfg.pose_weights, device=cfg.device)
        set_refine_fill(self.model, self.profile.refine_fill)
        self.detections: list[dict] = []
        self.gt_images: list[dict] = []
        self.gt_annotations: list[dict] = []
        self._env: dict[str, Any] | None = None

    def score_batch(self, preds: list[np.ndarray], names: list[PairKey], ids: list[int]) -> None:
        from posebench.pose.detect import detect_arrays

        self.detections += detect_arrays(self.model, preds, ids, device=self.cfg.device, flip_test=self.cfg.flip_test,
                                         swap_rb=self.profile.swap_rb)
        keypoints = self.prep.index.splits[self.prep.protocol.split].keypoints
        for img, key, image_id in zip(preds, names, ids, strict=True):
            h, w = img.shape[:2]
            kp = keypoints[key.target][0].rescale((h, w)).convert("coco17")  # prepare() checked that it exists
            flat = np.zeros((kp.num_joints, 3), dtype=np.float64)
            flat[kp.visible, :2] = kp.xy[kp.visible]
            flat[kp.visible, 2] = 2.0
            self.gt_images.append({"id": image_id, "file_name": self.prep.files[key].name, "height": h, "width": w})
            # no bbox/area: evaluate_pose's clean profile derives both from the visible joints
            self.gt_annotations.append({"image_id": image_id, "category_id": 1, "iscrowd": 0,
                                        "num_keypoints": int(kp.visible.sum()),
                                        "keypoints": [float(v) for v in flat.reshape(-1)]})

    def ground_truth(self) -> dict:
        return {"images": self.gt_images, "annotations": self.gt_annotations,
                "categories": [{"id": 1, "name": "person"}]}

    def env(self) -> dict[str, Any]:
        """Estimator name, weights file and its sha256 (hashed once), flip test."""
        from posebench.pose.detect import estimator_env

        if self._env is None:
            self._env = estimator_env(self.name, self.cfg.pose_weights, self.cfg.flip_test)
        return self._env

    def metrics(self, keys: list[PairKey]) -> tuple[dict[str, Any], list[float]]:
        """The requested pose metrics (results entries) and the per-image PCE in the order of `keys`."""
        from posebench.metrics.pose import evaluate_pose

        res = evaluate_pose(self.ground_truth(), self.detections, profile=self.profile)
        details = {"profile": self.profile.name, "profile_version": self.profile.version,
                   "profile_sha256": self.profile.sha256, "n_gt": res["n_gt"], "n_dt": res["n_dt"],
                   "n_dt_pce": res["n_dt_pce"], "max_dets": res["max_dets"],
                   "estimator": {k: v for k, v in self.env().items() if k in ("name", "weights_sha256")}}
        out: dict[str, Any] = {}
        for m in POSE_METRICS:
            if m in self.prep.metrics:
                extra = {"undefined": "no ground truth in the medium area range"} if res[m] is None else {}
                out[m] = {"value": math.nan if res[m] is None else float(res[m]), "stderr": None,
                          "higher_is_better": HIGHER_IS_BETTER[m], "n": res["n_images"],
                          "details": {**details, **extra}}
        by_id = {r["image_id"]: float(r["error"]) for r in res["per_image_pce"]}
        return out, [by_id[i + 1] for i in range(len(keys))]


# ---------------------------------------------------------------------------------------------- main


def kept_by_drop_last(n: int, spec: dict[str, Any]) -> int:
    """How many of `n` images a metric keeps under its profile section: all without drop-last; with drop-last,
    the whole batches of min(batch_size, n) images. The reference scripts (GFLA, PIDM, PCDMs) shrink a batch
    larger than the data to the data size ("batch size is bigger than the data size"), then drop the remainder."""
    if not spec.get("drop_last") or n == 0:
        return n
    bs = min(int(spec["batch_size"]), n)
    return (n // bs) * bs


DROP_LAST_TRIALS = 20  # random choices of the dropped generated images behind `drop_last_range`


def drop_last_fid_range(feats: np.ndarray, n_keep: int, real: Any, *, trials: int = DROP_LAST_TRIALS,
                        seed: int = 0) -> dict[str, Any]:
    """FID over `trials` seeded random choices of which generated images a drop-last batching keeps.

    GFLA, PIDM and PCDMs list the generated folder in directory order (`glob`, unsorted) and drop the last
    images, so which ones they drop, and their FID, depends on the file system; posebench keeps the first in
    sorted order. This range shows how far that choice alone moves the number (the real set stays as scored).
    """
    from posebench.metrics.functional.frechet import frechet_distances_of_subsets

    rng = np.random.default_rng(seed)
    subsets = [np.sort(rng.choice(len(feats), n_keep, replace=False)) for _ in range(trials)]
    values = frechet_distances_of_subsets(feats, subsets, real.mean(), real.cov())
    return {"min": min(values), "max": max(values), "trials": trials, "seed": seed, "kept": n_keep,
            "of": len(feats), "what": "FID with the kept generated images chosen at random (directory order)"}


def _mean_stderr(values: list[float]) -> tuple[float, float | None, int]:
    arr = np.asarray(values, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    n = len(arr)
    if n == 0:
        return math.nan, None, 0
    if len(finite) < n:  # PSNR of identical images is +inf: the mean is inf too, reported as such
        return float(arr.mean()), None, n
    se = float(finite.std(ddof=1) / math.sqrt(n)) if n > 1 else None
    return float(finite.mean()), se, n


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Run an evaluation and write `cfg.out` (+ a per-image CSV beside it). Returns the results dict."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from posebench.env import versions
    from posebench.real_stats import real_set_stats

    t0 = time.perf_counter()
    prep = prepare(cfg)
    scorer = _Scorer(prep, cfg)
    pose = _PoseScorer(prep, cfg) if set(POSE_METRICS) & set(prep.metrics) else None
    split = prep.index.splits[prep.protocol.split]
    # Scoring order = the sorted listing of the generated files, the order the reference scripts sort them in
    # (`sorted(glob(...))`), so drop-last keeps the images they keep where they sort (LPIPS), and a deterministic
    # choice where they do not (FID lists the folder unsorted).
    keys = sorted((p for p in prep.pairs if p in prep.files), key=lambda k: prep.files[k].name)
    image_id = {k: i + 1 for i, k in enumerate(keys)}  # pose ground truth and detections
    prof = prep.profile.metrics
    shard = _Shard.current(cfg.device)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not (cfg.progress and shard.is_main)) as bar:
        mine = keys[shard.rank::shard.world]  # under accelerate/torchrun each process scores a strided shard
        task = bar.add_task("scoring pairs", total=len(mine))
        for lo in range(0, len(mine), cfg.batch_size):
            batch = mine[lo:lo + cfg.batch_size]
            preds = [read_rgb(prep.files[k]) for k in batch]
            gts = [read_rgb(split.images[k.target]) for k in batch]
            scorer.score_batch(preds, gts, batch)
            if pose is not None:
                pose.score_batch(preds, batch, [image_id[k] for k in batch])
            bar.advance(task, len(batch))
        if shard.world > 1:
            shard.gather_into(scorer, mine, keys, pose)
            if not shard.is_main:
                return {}  # the main process scores the gathered values and writes the results

        metrics_out: dict[str, Any] = {}
        for name, values in scorer.per_image.items():
            spec_name = name.removesuffix("_masked")
            spec_name = "ssim" if spec_name.startswith("ssim") else spec_name
            spec = prof.get(spec_name, {})
            n_used = kept_by_drop_last(len(values), spec)
            mean, se, n = _mean_stderr(values[:n_used])
            details: dict[str, Any] = {"dropped": len(values) - n_used}
            if spec_name == "ssim":
                variant = prof["ssim"]["reported"] if name.removesuffix("_masked") == "ssim" else \
                    name.removesuffix("_masked")
                details.update(variant=variant, spec=prof["ssim"]["variants"][variant])
            metrics_out[name] = {"value": mean, "stderr": se, "higher_is_better": HIGHER_IS_BETTER.get(spec_name, True),
                                 "n": n, "details": details}

        per_image_columns = dict(scorer.per_image)
        if pose is not None:
            pose_out, per_image_columns["pce"] = pose.metrics(keys)

        real_meta: dict[str, Any] = {}
        if scorer.extractor is not None:
            from posebench.metrics.functional.frechet import frechet_distance
            from posebench.metrics.functional.kid import kid
            from posebench.metrics.stats import FeatureStats

            spec = prof["fid"]
            feats = np.concatenate(scorer.gen_features) if scorer.gen_features else np.zeros((0, 2048))
            n_gen = kept_by_drop_last(len(feats), spec)
            if n_gen < 2:
                raise PosebenchError(f"FID needs at least 2 generated images after drop-last; got {n_gen}")
            gen = FeatureStats(keep_features="kid" in prep.metrics)
            gen.update(feats[:n_gen])
            _, chain = scorer.feature_chains()
            for real_name in prep.protocol.real_sets[: 2 if cfg.test_fid else 1]:
                rsplit = prep.index.splits.get(real_name)
                if rsplit is None:
                    raise PosebenchError(f"the FID real set {real_name!r} is not in {cfg.root}")
                paths = [rsplit.images[k] for k in sorted(rsplit.images)]
                if cfg.real_limit is not None:
                    paths = paths[: cfg.real_limit]
                key_parts = {
                    "profile": [prep.profile.name, prep.profile.version, prep.profile.sha256],
                    "extractor": [scorer.extractor.name, scorer.extractor.version, scorer.extractor.weights_sha256],
                    "chain": chain, "dataset": prep.protocol.dataset, "split": real_name,
                    "names": hashlib.sha256("\n".join(p.name for p in paths).encode()).hexdigest(),
                    "bytes": sum(p.stat().st_size for p in paths), "drop_last": bool(spec.get("drop_last")),
                    "batch_size": int(spec["batch_size"]),
                }
                stats_name = f"{prep.protocol.name}-v{prep.protocol.version}__{prep.profile.name}-v" \
                             f"{prep.profile.version}__{scorer.extractor.name}__{real_name}"
                real, meta = real_set_stats(
                    stats_name, key_parts, paths,
                    lambda batch: scorer.features([apply_chain(read_rgb(p), list(chain)) for p in batch]),
                    batch_size=max(1, min(int(spec["batch_size"]), len(paths))), drop_last=bool(spec.get("drop_last")),
                    keep_features="kid" in prep.metrics, progress=bar if cfg.progress else None,
                    use_cache=cfg.use_cache)
                real_meta[real_name] = meta
                suffix = "" if real_name == prep.protocol.real_sets[0] else f"_{real_name}"
                if "fid" in prep.metrics:
                    value = frechet_distance(gen.mean(), gen.cov(), real.mean(), real.cov())
                    fid_details = {"real_set": real_name, "real_n": meta["n"], "dropped": len(feats) - n_gen,
                                   "real_dropped": meta["dropped"]}
                    if n_gen < len(feats):
                        fid_details["drop_last_range"] = drop_last_fid_range(feats, n_gen, real)
                    metrics_out["fid" + suffix] = {"value": value, "stderr": None, "higher_is_better": False,
                                                   "n": n_gen, "details": fid_details}
                if "kid" in prep.metrics:
                    kspec = prof.get("kid", {"subsets": 100, "subset_size": 1000, "seed": 0})
                    mean, std = kid(gen.features(), real.features(), num_subsets=int(kspec["subsets"]),
                                    max_subset_size=int(kspec["subset_size"]),
                                    rng=np.random.RandomState(int(kspec["seed"])))
                    metrics_out["kid" + suffix] = {"value": mean, "stderr": std, "higher_is_better": False,
                                                   "n": n_gen, "details": {"real_set": real_name,
                                                                           "real_n": meta["n"], "std": std}}

    if pose is not None:
        metrics_out.update(pose_out)
    if scorer.prep_resized:
        prep.warnings.append("generated images were resized to the metric size (profile resize chain)")
    elapsed = time.perf_counter() - t0
    sizes: dict[str, int] = {}
    for f in prep.files.values():
        from PIL import Image

        with Image.open(f) as im:
            sizes[f"{im.height}x{im.width}"] = sizes.get(f"{im.height}x{im.width}", 0) + 1
    per_image_file = cfg.out.with_suffix(".per_image.csv")
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
                        "lossy": "lossy_inputs" in prep.flags, "sizes": sizes, "resized": scorer.prep_resized},
        "flags": prep.flags,
        "declared": {"best_of": cfg.best_of, "oracle_selection": cfg.oracle_selection},
        "metrics": metrics_out,
        "per_image_file": per_image_file.name,
        "warnings": prep.warnings,
        "env": {**versions(), "extractor": _extractor_env(scorer), "lpips": _lpips_env(scorer),
                "pose_estimator": pose.env() if pose is not None else None,
                "device": cfg.device, "processes": shard.world},
        "timing": {"seconds": round(elapsed, 3),
                   "images_per_second": round(len(keys) / elapsed, 3) if elapsed else None},
        "config": cfg.to_json(),
    }
    _write_per_image(per_image_file, keys, per_image_columns)
    write_results(cfg.out, result)
    return result


class _Shard(Shard):
    """`Shard` plus the gathering of per-image values and features the evaluator needs."""

    def gather_into(self, scorer: _Scorer, mine: list[PairKey], keys: list[PairKey],
                    pose: _PoseScorer | None = None) -> None:
        """Collect every shard's per-image values, features and pose detections/ground truth on all processes,
        in the global pair order, so the main process computes exactly what a single process would."""
        import torch.distributed as dist

        feats = np.concatenate(scorer.gen_features) if scorer.gen_features else None
        pose_part = None if pose is None else (pose.detections, pose.gt_images, pose.gt_annotations)
        parts: list[Any] = [None] * self.world
        dist.all_gather_object(parts, (mine, scorer.per_image, feats, pose_part))
        if pose is not None:
            # image ids are global (position in `keys` + 1): ordering by id (stable, so an image's people keep
            # the estimator's order) gives one process's lists
            pose.detections = sorted((d for part in parts for d in part[3][0]), key=lambda d: d["image_id"])
            pose.gt_images = sorted((im for part in parts for im in part[3][1]), key=lambda im: im["id"])
            pose.gt_annotations = sorted((a for part in parts for a in part[3][2]), key=lambda a: a["image_id"])
        where: dict[PairKey, tuple[int, int]] = {}
        for p, (part_keys, *_) in enumerate(parts):
            for i, k in enumerate(part_keys):
                where[k] = (p, i)
        order = [where[k] for k in keys]
        scorer.per_image = {name: [parts[p][1][name][i] for p, i in order] for name in parts[0][1]}
        if feats is not None:
            scorer.gen_features = [np.stack([parts[p][2][i] for p, i in order])]


def _pairs_sha(pairs: list[PairKey]) -> str:
    from posebench.datasets.manifest import pairs_sha256

    return pairs_sha256(pairs)


def _extractor_env(scorer: _Scorer) -> dict[str, Any] | None:
    e = scorer.extractor
    return None if e is None else {"name": e.name, "version": e.version, "weights_sha256": e.weights_sha256}


def _lpips_env(scorer: _Scorer) -> dict[str, Any] | None:
    n = scorer.lpips
    return None if n is None else {"net": n.net, "version": n.version, "weights_sha256": n.weights_sha256}


def _write_per_image(path: Path, keys: list[PairKey], per_image: dict[str, list[float]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    names = sorted(per_image)
    writer.writerow(["source", "target", *names])
    for i, k in enumerate(keys):
        writer.writerow([k.source, k.target, *(repr(per_image[n][i]) for n in names)])
    atomic_write_text(path, buf.getvalue())
