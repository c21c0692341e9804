"""The streaming evaluator behind `posebench eval` and `posebench.evaluate()`, for every kind of target.

1. The targets adapter of the config's kind (`posebench.run.pairs`, `.humanart`, `.folders`) returns a `Plan`:
   the generated images in scoring order, their ground truth, the real sets, what to record.
2. One pass over the plan: DataLoader worker processes decode each image once (`--workers`); each batch becomes
   an `ImagePairs` that every metric object reads (`posebench.metrics` classes, the only code that produces a
   number; resize chains and feature passes run once per batch); the pose estimator runs on the same arrays.
   Under torchrun / `accelerate launch` each process scores a strided shard and the metric states are gathered
   (in position order) before the main process computes.
3. Real sets: their feature statistics come from the content-keyed cache (`posebench.real_stats`), per real set or
   per breakdown group (Human-Art scenarios: FID/KID per scenario, mean over scenarios, pooled in details).
4. One results document (`posebench.results.schema.results_document`) and a per-image CSV, written atomically.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import io
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from posebench.errors import PosebenchError
from posebench.metrics.registry import METRICS, higher_is_better
from posebench.protocols import Profile
from posebench.run.config import EvalConfig
from posebench.run.plan import Item, Plan
from posebench.utils.distributed import Shard
from posebench.utils.io import files_sha256

TARGETS = {"image": "posebench.run.pairs", "pose": "posebench.run.humanart", "folders": "posebench.run.folders"}
POSE_METRICS = tuple(n for n in METRICS.names() if METRICS.get(n).consumes == "pose")


def plan_for(cfg: EvalConfig) -> Plan:
    """The targets adapter of the config's kind, run: everything checked before any image is scored."""
    return importlib.import_module(TARGETS[cfg.kind]).plan(cfg)


# ---------------------------------------------------------------------------------------------- decoding


class _Decoded:
    """A torch Dataset over plan items. In a worker process: decode the generated image and its ground truth, and
    run every resize chain the metrics need (`needs`: `ImagePairs` memo keys), so the main process only scores.
    A PosebenchError (an unreadable image, a refused size) comes back as data, raised by the main process with its
    own message (a worker's exception would carry the worker's traceback)."""

    def __init__(self, items: list[Item], needs: list[tuple], profile: str, max_pixels: int) -> None:
        self.items, self.needs, self.profile, self.max_pixels = items, needs, profile, max_pixels

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[int, Any, Any, dict, str | None]:
        from posebench.errors import PosebenchError
        from posebench.images import apply_chain, read_rgb
        from posebench.metrics.inputs import prepare_prediction

        item = self.items[i]
        try:
            pred = read_rgb(item.pred, self.max_pixels)
            if item.crop is not None:  # e.g. the generated panel of a PATN strip
                left, top, right, bottom = item.crop
                pred = np.ascontiguousarray(pred[top:bottom, left:right])
            gt = None if item.gt is None else read_rgb(item.gt)
            prepared: dict[tuple, tuple[np.ndarray, bool]] = {}
            for key in self.needs:
                if key[0] == "preds":
                    prepared[key] = prepare_prediction(pred, key[1], resize=key[2], profile=self.profile,
                                                       label=str(item.pred))
                elif gt is not None:
                    prepared[key] = (apply_chain(gt, list(key[1])), False)
        except PosebenchError as exc:
            return i, None, None, {}, str(exc)
        return i, pred, gt, prepared, None


def _collate(batch: list[tuple]) -> list[tuple]:
    return batch


def _batches(items: list[Item], needs: list[tuple], profile: str, batch_size: int, workers: int,
             max_pixels: int) -> Any:
    """Decoded, prepared batches in order: [(position in `items`, generated, ground truth, prepared, error)]."""
    data = _Decoded(items, needs, profile, max_pixels)
    if workers <= 0:
        for lo in range(0, len(items), batch_size):
            yield [data[i] for i in range(lo, min(lo + batch_size, len(items)))]
        return
    from torch.utils.data import DataLoader

    loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=_collate,
                        prefetch_factor=2, persistent_workers=False)
    yield from loader


# ---------------------------------------------------------------------------------------------- metrics


class _Metrics:
    """The metric objects of one evaluation, keyed by results key."""

    def __init__(self, plan: Plan, cfg: EvalConfig) -> None:
        self.plan = plan
        prof, metrics = plan.profile, plan.metrics
        common: dict[str, Any] = {"resolution": plan.resolution, "sync_on_compute": False}  # the evaluator syncs
        self.per_image: dict[str, Any] = {}
        if plan.has_ground_truth_images:
            self._reference_metrics(plan, cfg, common)
        self.sets: dict[str, Any] = {}  # FID / KID: results key -> metric
        self.real_of: dict[str, str] = {}  # results key -> real set name
        if "fid" in metrics or "kid" in metrics:
            from posebench.metrics.fid import FID
            from posebench.metrics.kid import KID

            names = list(plan.real_sets)[: None if cfg.test_fid else 1] or ["groups"]
            owner = None  # the first metric keeps the generated features; the others read them
            for i, real in enumerate(names):
                suffix = "" if i == 0 else f"_{real}"
                for name, cls in (("fid", FID), ("kid", KID)):
                    if name in metrics:
                        kw = {"drop_last_range": not plan.per_group_real} if cls is FID else {}
                        m = cls(prof, weights=cfg.fid_weights, device=cfg.device, features_of=owner, **kw, **common)
                        owner = owner or m
                        self.sets[name + suffix], self.real_of[name + suffix] = m, real
        self.inception: dict[str, Any] = {}
        if "is" in metrics:
            from posebench.metrics.inception_score import IS

            self.inception["is"] = IS(prof, weights=cfg.is_weights, device=cfg.device, **common)
            if "is" in plan.masked:
                self.inception["is_masked"] = IS(prof, classifier=self.inception["is"].classifier, masked=True,
                                                 **common)
        self.pose = None
        if set(POSE_METRICS) & set(metrics):
            from posebench.run.pose import PoseScoring

            estimator = cfg.pose_estimator
            if estimator is None:
                from posebench.pose.detect import DEFAULT_ESTIMATOR

                estimator = DEFAULT_ESTIMATOR if plan.kind != "pose" else \
                    importlib.import_module(TARGETS["pose"]).DEFAULT_POSE_ESTIMATOR
            self.pose = PoseScoring(plan, cfg, estimator)
        self.text = None  # CLIPSIM: the generated images against their prompts
        if "clipsim" in metrics:
            from posebench.metrics.clipsim import CLIPSim, settings_for

            self.text = CLIPSim(settings_for(plan.pose_profile or "clean"), weights=cfg.clip_weights,
                                device=cfg.device, sync_on_compute=False)
        self.resized = 0

    def _reference_metrics(self, plan: Plan, cfg: EvalConfig, common: dict[str, Any]) -> None:
        from posebench.metrics.lpips import LPIPS
        from posebench.metrics.psnr import PSNR
        from posebench.metrics.ssim import SSIM

        prof, metrics = plan.profile, plan.metrics
        if "ssim" in metrics:
            section = prof.section("ssim")
            for vname in sorted(section.variants, key=lambda v: v != section.reported):  # the headline first
                self.per_image["ssim" if vname == section.reported else vname] = SSIM(prof, variant=vname, **common)
            if "ssim" in plan.masked:
                self.per_image["ssim_masked"] = SSIM(prof, masked=True, **common)
        if "psnr" in metrics:
            self.per_image["psnr"] = PSNR(prof, **common)
        for m in self.per_image.values():  # the float64 SSIM / PSNR arithmetic runs where the networks run
            m.to(cfg.device)
        if "lpips" in metrics:
            lp = LPIPS(prof, weights=cfg.lpips_weights, device=cfg.device, **common)
            self.per_image["lpips"] = lp
            if "lpips" in plan.masked:
                self.per_image["lpips_masked"] = LPIPS(prof, net=lp.net, masked=True, **common)

    def all(self) -> list[Any]:
        return [*self.per_image.values(), *self.sets.values(), *self.inception.values(),
                *(self.pose.metrics() if self.pose else []), *([self.text] if self.text is not None else [])]

    def needs(self) -> list[tuple]:
        """The `ImagePairs` memo keys the metrics read: each resize chain, once (run by the decoding workers)."""
        resize = self.plan.profile.resize_predictions
        keys: dict[tuple, None] = {}
        for m in self.per_image.values():
            keys[("preds", m.pred_chain, resize)] = None
            keys[("targets", m.gt_chain)] = None
        for m in self.sets.values():
            if m.features_of is None:
                keys[("preds", m.pred_chain, True if self.plan.kind == "pose" else resize)] = None
        for m in self.inception.values():
            keys[("preds", m.pred_chain, resize)] = None
        return list(keys)

    def update(self, pairs: Any, items: list[Item], positions: list[int]) -> None:
        for m in (*self.per_image.values(), *self.sets.values(), *self.inception.values()):
            # Human-Art scores every generated image for FID at the protocol size, whatever its size (warned)
            if self.plan.kind == "pose" and m in self.sets.values():
                if m.features_of is None:
                    m.update_features(m.pred_features(pairs, resize=True), index=positions)
                continue
            m.update(pairs, index=positions)
        if self.pose is not None:
            self.pose.update(pairs.preds, items, positions)
        if self.text is not None:
            self.text.update(pairs.preds, [item.prompt or "" for item in items], index=positions)
        self.resized += len(pairs.resized)


# ---------------------------------------------------------------------------------------------- main


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Run an evaluation and write `cfg.out` (+ a per-image CSV beside it). Returns the results dict (an empty
    dict on the non-main processes of a sharded run)."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from posebench.metrics.inputs import ImagePairs
    from posebench.utils.io import check_output_path
    from posebench.utils.progress import Progress

    t0 = time.perf_counter()
    check_output_path(cfg.out, "--out")  # before any long work: a folder, a path below a file, read-only
    check_output_path(cfg.out.with_suffix(".per_image.csv"), "the per-image CSV beside --out")
    check_output_path(_features_path(cfg.out), "the FID/KID features file beside --out")
    replaced = cfg.out.exists()
    plan = plan_for(cfg)
    metrics = _Metrics(plan, cfg)
    plan.non_canonical.extend(_weights_reasons(metrics))
    plan.warnings.extend(f"{m} skipped: {why}" for m, why in (cfg.skipped or {}).items())
    shard = Shard.current(cfg.device)
    need_keypoints = bool(plan.masked)
    mine = list(range(shard.rank, len(plan.items), shard.world))  # a strided shard under torchrun / accelerate
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not (cfg.progress and shard.is_main)) as bar:
        task = bar.add_task("scoring images", total=len(mine))
        items = [plan.items[i] for i in mine]
        needs = metrics.needs()
        for batch in _batches(items, needs, plan.profile.name, cfg.batch_size, cfg.resolved_workers(),
                              _max_generated_pixels(plan)):
            error = next((b[4] for b in batch if b[4] is not None), None)
            if error is not None:
                raise PosebenchError(error)
            positions = [mine[j] for j, *_ in batch]
            chunk = [plan.items[p] for p in positions]
            pairs = ImagePairs([b[1] for b in batch], [b[2] for b in batch] if plan.has_ground_truth_images else None,
                               labels=[str(it.pred) for it in chunk],
                               keypoints=[it.keypoints for it in chunk] if need_keypoints else None)
            for key in needs:
                if key[0] == "preds" or plan.has_ground_truth_images:
                    pairs.preload(key, [b[3][key][0] for b in batch], [b[3][key][1] for b in batch])
            metrics.update(pairs, chunk, positions)
            bar.advance(task, len(batch))
        if shard.world > 1:
            for m in metrics.all():  # collective: every process's states reach every process, in position order
                m.sync()
            if not shard.is_main:
                return {}
        out, per_image_cols = _results(plan, metrics)
        real_meta, breakdown = _real_sets(plan, cfg, metrics, out, bar)
    for key, entry in out.items():  # e.g. KID from subsets smaller than the profile's
        note = (entry.get("details") or {}).get("note") if isinstance(entry, dict) else None
        if note:
            plan.warnings.append(f"{key}: {note}")
    if metrics.resized:
        plan.warnings.append(f"{metrics.resized} generated images were resized to the metric size (profile resize "
                             "chain)" if plan.kind != "pose" else
                             f"{metrics.resized} generated images were resized to {plan.resolution[0]}x"
                             f"{plan.resolution[1]} for FID/KID")
    if metrics.pose is not None and metrics.pose.rescaled:
        from posebench.run.humanart import rescale_warning

        plan.warnings.append(rescale_warning(metrics.pose.rescaled, plan))
    per_image_file = cfg.out.with_suffix(".per_image.csv")
    doc = _document(plan, cfg, metrics, out, real_meta, breakdown, per_image_file, shard.world,
                    time.perf_counter() - t0)
    from posebench.results.schema import results_json

    # --- for `posebench regress` intervals: which CSV columns name an image, and the kept FID/KID features
    doc["per_image_id_columns"] = list(plan.id_columns)
    features = _kept_features(plan, metrics)
    if features is not None:
        doc["features_file"] = _features_path(cfg.out).name
    # the per-image CSV, the features file and the results JSON are replaced together, or none is
    _write_together({per_image_file: _per_image_csv(plan, per_image_cols), cfg.out: results_json(doc),
                     **({_features_path(cfg.out): features} if features is not None else {})})
    out = dict(doc)
    if replaced:
        out["replaced_previous"] = True  # not stored in the file: the CLI says so
    return out


def _features_path(out: Path) -> Path:
    from posebench.results.kept_features import features_path

    return features_path(out)


def _kept_features(plan: Plan, metrics: _Metrics) -> bytes | None:
    """The features file's bytes (`posebench.results.kept_features`) when FID or KID was computed against fixed
    real sets; None otherwise (per-scenario FID/KID of Human-Art has no single generated set to resample)."""
    if not metrics.sets or plan.per_group_real:
        return None
    from posebench.results.kept_features import encode, from_metrics

    return encode(from_metrics(metrics.sets, metrics.real_of))


def _write_together(files: dict[Path, str | bytes]) -> None:
    """Each file to a temporary beside it, then all renamed (`atomic_write_texts`, with bytes allowed)."""
    import contextlib

    from posebench.utils.io import atomic_open

    with contextlib.ExitStack() as stack:
        handles = [stack.enter_context(atomic_open(p, "wb" if isinstance(d, bytes) else "w")) for p, d in files.items()]
        for fh, data in zip(handles, files.values(), strict=True):
            fh.write(data)


def _weights_reasons(metrics: _Metrics) -> list[str]:
    """Networks whose weights are not registry files (or a registry copy whose equality with the reference file is
    only claimed) make numbers that published rows did not: non-canonical, naming the file."""
    from posebench.metrics.features import NVIDIA_LAYOUT_FILES

    used = []
    first = next(iter(metrics.sets.values()), None)
    if first is not None:
        used.append(("FID/KID features", first.extractor))
    if "lpips" in metrics.per_image:
        used.append(("LPIPS", metrics.per_image["lpips"].net))
    if "is" in metrics.inception:
        used.append(("Inception Score", metrics.inception["is"]))
    reasons = []
    if metrics.text is not None and metrics.text.net.weights_registry_name is None:
        from posebench.metrics.clipsim import MODEL_NAME

        net = metrics.text.net
        reasons.append(f"CLIPSIM from the CLIP files in {Path(net.files['model']['file']).parent} (model sha256 "
                       f"{(net.weights_sha256 or '')[:16]}), not the registry's {MODEL_NAME}")
    for what, net in used:
        name = getattr(net, "weights_registry_name", None)
        sha = getattr(net, "weights_sha256", None) or ""
        if name is None:
            reasons.append(f"{what} from a weight file that is not a registry file (sha256 {sha[:16]})")
        elif name in NVIDIA_LAYOUT_FILES:
            reasons.append(f"{what} from '{name}': that it holds NVIDIA's inception-2015-12-05 numbers is its "
                           f"packager's claim, not checked by posebench (check: posebench weights compare {name} "
                           "inception-fid-clean)")
    return reasons


def _max_generated_pixels(plan: Plan) -> int:
    """Generated images far above the protocol's size are refused from their header, before decoding: 64 times
    the protocol's pixels (CFLD's and PCDMs' 512x512 samples are 6 times 256x176), at least 4 megapixels."""
    from posebench.images import MAX_PIXELS

    if plan.resolution is None:
        return MAX_PIXELS
    return min(MAX_PIXELS, max(4_000_000, 64 * plan.resolution[0] * plan.resolution[1]))


def _entry(key: str, summary: dict[str, Any]) -> dict[str, Any]:
    return {"value": summary["value"], "stderr": summary["stderr"], "higher_is_better": higher_is_better(key),
            "n": summary["n"], "details": summary["details"]}


def _results(plan: Plan, metrics: _Metrics) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Results entries of the per-image, IS and pose metrics, and the per-image CSV columns."""
    out: dict[str, Any] = {}
    cols: dict[str, list[Any]] = {}
    for key, m in metrics.per_image.items():
        out[key] = _entry(key, m.summary())
        positions, values = m.per_image()
        cols[key] = values.tolist()
        nan = positions[np.isnan(values)]
        if len(nan):  # e.g. SSIM with the prediction's data range on a constant image, as the reference gives it
            plan.warnings.append(f"{key} is NaN for {len(nan)} generated images (e.g. {plan.items[int(nan[0])].pred});"
                                 " the mean is NaN, as the reference computation's would be")
    for key, m in metrics.inception.items():
        out[key] = _entry(key, m.summary())
    if metrics.pose is not None:
        out.update(metrics.pose.results())
        cols.update(metrics.pose.columns(plan.items, list(range(len(plan.items)))))
    if metrics.text is not None:
        out["clipsim"] = _entry("clipsim", metrics.text.summary())
        cols["clipsim"] = metrics.text.per_image()[1].tolist()
        n_long = out["clipsim"]["details"]["long_prompt_count"]
        if n_long:
            how = ("truncated to the context length, the end-of-text token kept" if
                   metrics.text.settings.long_prompts == "truncate" else "cut at the context length as torchmetrics' "
                   "CLIPScore does (the end-of-text token is lost; HumanSD's torchmetrics raised an error instead)")
            plan.warnings.append(f"clipsim: {n_long} prompts are longer than CLIP's {metrics.text.net.context_length} "
                                 f"tokens: {how}")
    return out, cols


def _real_stats(plan: Plan, cfg: EvalConfig, first: Any, name: str, split: str, paths: list[Path],
                bar: Any) -> tuple[Any, dict[str, Any]]:
    """Feature statistics of a real set, from the content-keyed cache when possible."""
    from posebench.real_stats import real_set_stats

    section = plan.profile.section("fid")
    ext = first.extractor
    dataset = plan.protocol.dataset if plan.protocol else "folders"
    key_parts = {
        "profile": [plan.profile.name, plan.profile.version, plan.profile.sha256],
        "extractor": [ext.name, ext.version, ext.weights_sha256], "chain": first.gt_chain, "dataset": dataset,
        "split": split, "names": hashlib.sha256("\n".join(p.as_posix() for p in paths).encode()).hexdigest(),
        "bytes": sum(p.stat().st_size for p in paths), "drop_last": section.drop_last,
        "batch_size": section.batch_size,
    }
    where = f"{plan.protocol.name}-v{plan.protocol.version}" if plan.protocol else "folders"
    stats_name = f"{where}__{plan.profile.name}-v{plan.profile.version}__{ext.name}__{name.replace('/', '_')}"
    return real_set_stats(stats_name, key_parts, paths, first.featurize_files,
                          batch_size=max(1, min(section.batch_size, len(paths))), drop_last=section.drop_last,
                          keep_features="kid" in plan.metrics, progress=bar if cfg.progress else None,
                          use_cache=cfg.use_cache)


def _real_sets(plan: Plan, cfg: EvalConfig, metrics: _Metrics, out: dict[str, Any],
               bar: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """FID/KID entries into `out`: per real set, or per breakdown group (mean over groups); also the pose metrics
    per group. Returns the real sets' metadata and the breakdown (None without groups)."""
    real_meta: dict[str, Any] = {}
    if not plan.per_group_real:
        for real_name in dict.fromkeys(metrics.real_of.values()):
            mine = {k: m for k, m in metrics.sets.items() if metrics.real_of[k] == real_name}
            stats, meta = _real_stats(plan, cfg, next(iter(mine.values())), real_name, real_name,
                                      plan.real_sets[real_name], bar)
            real_meta[real_name] = meta
            for key, m in mine.items():
                m.set_real(stats, {"real_set": real_name, "real_dropped": meta["dropped"]})
                out[key] = _entry(key, m.summary())
        return real_meta, None
    groups = sorted({it.group for it in plan.items})
    positions = {g: [i for i, it in enumerate(plan.items) if it.group == g] for g in groups}
    rows: dict[str, dict[str, Any]] = {g: {"n": len(positions[g])} for g in groups}
    if metrics.pose is not None and metrics.pose.metric is not None:
        for g in groups:
            res = metrics.pose.metric.result({plan.items[i].image_id for i in positions[g]})
            rows[g].update({m: math.nan if res[m] is None else float(res[m]) for m in metrics.pose.accuracy},
                           n_gt=res["n_gt"], n_dt=res["n_dt"])
    if metrics.text is not None:  # the profile's aggregation within each group (humansd: its batches of 10)
        for g in groups:
            rows[g]["clipsim"] = metrics.text.value(positions[g])["value"]
    if metrics.sets:
        from posebench.metrics.stats import FeatureStats

        first = next(iter(metrics.sets.values()))
        pooled_real = FeatureStats(keep_features="kid" in plan.metrics)
        for g in groups:
            stats, meta = _real_stats(plan, cfg, first, g, f"validation/{g}", plan.group_real[g], bar)
            real_meta[g] = meta
            pooled_real.merge(stats)
            rows[g].update(_distances(metrics, stats, positions[g]))
        pooled = {k: rows[groups[0]].get(k) for k in ("fid", "kid", "kid_std")} if len(groups) == 1 else \
            _distances(metrics, pooled_real, None)
        for key in metrics.sets:
            vals = [rows[g][key] for g in groups if math.isfinite(rows[g].get(key, math.nan))]
            details = {"aggregate": "mean over scenarios of the per-scenario value (Stable-Pose)",
                       "scenarios": len(vals), "pooled": pooled.get(key), "real_set": "validation images of the same "
                       "scenario", "real_n": int(sum(m["n"] for m in real_meta.values()))}
            if key == "kid":
                details["pooled_std"] = pooled.get("kid_std")
            out[key] = {"value": float(np.mean(vals)) if vals else math.nan, "stderr": None,
                        "higher_is_better": higher_is_better(key), "n": len(plan.items), "details": details}
    return real_meta, {"by": "scenario", "rows": rows}


def _distances(metrics: _Metrics, real: Any, positions: list[int] | None) -> dict[str, Any]:
    n = len(positions) if positions is not None else None
    row: dict[str, Any] = {"real_n": real.n}
    if (n is not None and n < 2) or real.n < 2:
        row.update(fid=math.nan, kid=math.nan, kid_std=math.nan, note="FID/KID need at least 2 generated and 2 real "
                   "images")
        return row
    for key, m in metrics.sets.items():
        m.set_real(real)
        entry = m.summary(positions)
        row[key] = float(entry["value"])
        if key == "kid":
            row["kid_std"] = float(entry["details"]["subset_std"])
    return row


def _document(plan: Plan, cfg: EvalConfig, metrics: _Metrics, out: dict[str, Any], real_meta: dict[str, Any],
              breakdown: dict[str, Any] | None, per_image_file: Path, processes: int, seconds: float) -> Any:
    from PIL import Image

    from posebench.results.schema import results_document

    sizes: dict[str, int] = {}
    for it in plan.items:
        with Image.open(it.pred) as im:
            sizes[f"{im.height}x{im.width}"] = sizes.get(f"{im.height}x{im.width}", 0) + 1
    files = [it.pred for it in plan.items]
    predictions = {"dir": str(cfg.pred), "count": len(files), **plan.predictions,
                   "images_sha256": files_sha256(files), "lossy": "lossy_inputs" in plan.flags, "sizes": sizes,
                   "resized": bool(metrics.resized)}
    if plan.kind == "pose":
        predictions["gt_rescaled"] = metrics.pose.rescaled if metrics.pose is not None else 0
    env: dict[str, Any] = {"device": cfg.device, "processes": processes,
                           "pose_estimator": metrics.pose.env() if metrics.pose is not None else None}
    first = next(iter(metrics.sets.values()), None)
    extractor = None if first is None else {"name": first.extractor.name, "version": first.extractor.version,
                                            "weights_sha256": first.extractor.weights_sha256}
    if extractor is not None and plan.kind == "pose":
        extractor["image_profile"] = {"name": plan.profile.name, "version": plan.profile.version,
                                      "sha256": plan.profile.sha256}
    env["extractor"] = extractor
    if plan.kind != "pose":
        lp = metrics.per_image.get("lpips")
        # not "lpips": that key holds the lpips package's version (env.versions())
        env["lpips_network"] = None if lp is None else {"net": lp.net.net, "version": lp.net.version,
                                                        "weights_sha256": lp.net.weights_sha256}
    if metrics.inception:
        env["inception_score"] = {"weights_sha256": getattr(metrics.inception["is"], "weights_sha256", None)}
    if metrics.text is not None:
        env["clip"] = metrics.text.net.env()
    if plan.protocol is not None:
        protocol = {"name": plan.protocol.name, "version": plan.protocol.version, "sha256": plan.protocol.sha256}
    else:
        protocol = {"name": "folders", "version": 1, "sha256": None}
    profile = plan.pose_profile.meta() if plan.pose_profile is not None else \
        {"name": plan.profile.name, "version": plan.profile.version, "sha256": plan.profile.sha256}
    return results_document(
        protocol=protocol, profile=profile, dataset={**plan.dataset, "real_sets": real_meta}, predictions=predictions,
        metrics=out, warnings=plan.warnings, non_canonical=plan.non_canonical, env=env, seconds=seconds,
        scored=len(files), config=cfg.to_json(), per_image_file=per_image_file.name, flags=plan.flags,
        declared={"best_of": cfg.best_of, "oracle_selection": cfg.oracle_selection}, breakdown=breakdown)


def _per_image_csv(plan: Plan, columns: dict[str, list[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    names = sorted(columns) if plan.kind != "pose" else list(columns)
    writer.writerow([*plan.id_columns, *names])
    for i, it in enumerate(plan.items):
        values = [columns[n][i] for n in names]
        writer.writerow([*(it.ids[c] for c in plan.id_columns),
                         *(repr(v) if isinstance(v, float) else v for v in values)])
    return buf.getvalue()


def needed_weights(profile: Profile, metrics: tuple[str, ...], *, fid_weights: Path | None = None,
                   lpips_weights: Path | None = None, is_weights: Path | None = None,
                   pose_estimator: str | None = None, pose_weights: Path | None = None,
                   detections: Path | None = None, clip_weights: Path | None = None) -> list[dict[str, Any]]:
    """Every weight file `metrics` will load under `profile`: {"for": metrics, "registry": name or None, "file":
    the user's file (or folder: `clip_weights`) or None}. One place for the rule, used by `preflight` and by
    `eval --dry-run`."""
    from posebench.metrics.lpips_net import BACKBONE_WEIGHTS
    from posebench.pose.base import ESTIMATORS

    wanted = set(metrics)
    needed: list[dict[str, Any]] = []
    if {"fid", "kid"} & wanted:
        needed.append({"for": sorted({"fid", "kid"} & wanted), "registry": profile.section("fid").weights,
                       "file": fid_weights})
    if "lpips" in wanted:
        needed.append({"for": ["lpips"], "registry": BACKBONE_WEIGHTS[profile.section("lpips").net],
                       "file": lpips_weights})
    if "is" in wanted:
        needed.append({"for": ["is"], "registry": profile.section("is").weights, "file": is_weights})
    if set(POSE_METRICS) & wanted and detections is None:
        from posebench.pose.detect import DEFAULT_ESTIMATOR

        entry = ESTIMATORS.get(pose_estimator or DEFAULT_ESTIMATOR)
        needed.append({"for": sorted(set(POSE_METRICS) & wanted), "registry": entry.weights, "file": pose_weights})
    if "clipsim" in wanted:
        from posebench.metrics.clipsim import WEIGHT_FILES

        if clip_weights is not None:
            needed.append({"for": ["clipsim"], "registry": WEIGHT_FILES["model"], "file": clip_weights})
        else:
            needed.extend({"for": ["clipsim"], "registry": name, "file": None} for name in WEIGHT_FILES.values())
    return needed


def preflight(protocol: str, *, profile: str | None = None, metrics: tuple[str, ...] | None = None,
              fid_weights: Path | None = None, lpips_weights: Path | None = None, is_weights: Path | None = None,
              pose_estimator: str | None = None, pose_weights: Path | None = None,
              clip_weights: Path | None = None) -> tuple[str, ...]:
    """What an evaluation will need, checked before a long step that comes first (the gate samples a checkpoint
    for minutes before it evaluates): the protocol, the profile and the metrics it defines, and every weight file
    the metrics will load, present and verified now (downloaded when allowed, else an offline error naming the
    file). Returns the metrics."""
    from posebench import weights
    from posebench.protocols import get_profile, get_protocol
    from posebench.run.plan import check_metrics

    spec = get_protocol(protocol)
    prof = get_profile(profile or spec.default_profile)
    wanted = check_metrics(tuple(metrics or spec.metrics), prof, where=spec.name, prompts=spec.kind == "pose")
    for need in needed_weights(prof, wanted, fid_weights=fid_weights, lpips_weights=lpips_weights,
                               is_weights=is_weights, pose_estimator=pose_estimator, pose_weights=pose_weights,
                               clip_weights=clip_weights):
        if need["file"] is not None:
            if not Path(need["file"]).exists():
                raise PosebenchError(f"the weights file {need['file']} does not exist")
        elif need["registry"] is not None:
            weights.ensure(need["registry"], allow_download=not weights.is_offline())
    return wanted


def dry_run(cfg: EvalConfig) -> dict[str, Any]:
    """What `evaluate(cfg)` would use, resolved and checked without computing anything (`eval --dry-run`): the
    dataset is read and the generated files matched (so naming problems show now), nothing is downloaded."""
    from posebench import weights

    plan = plan_for(cfg)
    needs = needed_weights(plan.profile, plan.metrics, fid_weights=cfg.fid_weights, lpips_weights=cfg.lpips_weights,
                           is_weights=cfg.is_weights, pose_estimator=cfg.pose_estimator,
                           pose_weights=cfg.pose_weights, detections=cfg.detections, clip_weights=cfg.clip_weights)
    files = []
    for need in needs:
        if need["file"] is not None:
            state = "present" if Path(need["file"]).exists() else "missing"
            files.append({**need, "file": str(need["file"]), "status": state})
        elif need["registry"] is not None:
            files.append({**need, "file": str(weights.cache_path(need["registry"])),
                          "status": weights.status(need["registry"]).value})
    profile = {"name": plan.profile.name, "version": plan.profile.version}
    if plan.pose_profile is not None:
        profile = {**plan.pose_profile.meta(), "image_profile": profile}
    real = {name: len(paths) for name, paths in plan.real_sets.items()} if {"fid", "kid"} & set(plan.metrics) else {}
    return {"config": cfg.to_json(), "kind": plan.kind,
            "protocol": plan.protocol.name if plan.protocol is not None else None, "profile": profile,
            "metrics": list(plan.metrics), "generated_images": len(plan.items), "real_sets": real,
            "weights": files, "non_canonical_reasons": list(plan.non_canonical), "warnings": list(plan.warnings)}

