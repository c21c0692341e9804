"""Sample a run's checkpoint over a protocol split into posebench-named PNGs that `posebench eval` scores.

Image k (the k-th pair of the split, sorted) uses the generator of `image_seed(seed, k)`, so a resumed or
limited run, another batch size or another device count produce the same image k. Finished images are
skipped; each PNG is written atomically.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from posebench.errors import PosebenchError
from posebench.utils.io import atomic_write_text
from reposedm.data import PairDataset, PairSource, collate, load_pairs, load_split
from reposedm.png import to_uint8, write_png

log = logging.getLogger(__name__)


@dataclass
class GenerateResult:
    out: Path
    written: int
    skipped: int
    total: int
    record: dict[str, Any]


# the run and checkpoint paths are recorded but not compared: a copied or moved run resumes; its weights
# fingerprint is what must not change
RESUME_KEYS = ("weights_sha256", "config", "variant", "weights", "protocol", "split", "scheduler", "steps",
               "guidance_scale", "pose_guidance_scale", "pose_guidance_rule", "seed", "model_resolution",
               "output_resolution")


def _check_resume(out: Path, record_file: Path, settings: dict, existing: int,
                  keys: tuple[str, ...] = RESUME_KEYS) -> None:
    """A folder that already holds some of the images is resumed only with the settings that made them: a
    different --steps / --seed / checkpoint would mix two settings in one folder (refused, each difference named)."""
    if existing == 0:
        return
    try:
        before = json.loads(record_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise PosebenchError(f"{out} already holds {existing} of these generated images but no readable settings "
                             f"record ({record_file}); sample into another --out, or empty this one") from None
    changed = [f"{k}: {before.get(k)!r} -> {settings[k]!r}" for k in keys
               if k != "weights_sha256" and before.get(k) != settings[k]]
    if before.get("weights_sha256") != settings["weights_sha256"]:
        changed.insert(0, f"checkpoint weights: {before.get('checkpoint')} -> {settings['checkpoint']} (other weights)")
    if changed:
        raise PosebenchError(f"{out} holds {existing} images made with other settings ({'; '.join(changed)}); "
                             "resume with the same settings, or sample into another --out")


def chosen_positions(indices: list[int] | None, limit: int | None, total: int, what: str) -> list[int]:
    """Positions k to generate: the given `indices` (checked), or the first `limit` (default all) of `total`."""
    if indices is not None:
        bad = [k for k in indices if not 0 <= k < total]
        if bad:
            raise PosebenchError(f"{what} indices {bad[:3]} are outside the split's {total} {what}s")
        return sorted(set(indices))
    return list(range(total if limit is None else min(limit, total)))


def sampling_provenance(ckpt: Path, guidance: Any, eta: float) -> dict[str, Any]:
    """What the run learnt from and why its samples are not canonical (a random estimator in training or in this
    sampling), for sampling.json: `posebench eval` and `reid-augment` read it; not resume keys."""
    from reposedm.checkpoints import run_of
    from reposedm.guidance import random_estimator_reason
    from reposedm.train import read_training_data

    trained_on = read_training_data(run_of(ckpt))
    reasons = list(trained_on.get("non_canonical_reasons", []))
    sampling_reason = random_estimator_reason(replace(guidance, enabled=True)) if eta != 0.0 else None
    if sampling_reason and sampling_reason not in reasons:
        reasons.append(sampling_reason)
    return {"training_data": trained_on.get("sources", []), "non_canonical_reasons": reasons}


def _is_text_pose_run(run: Path) -> bool:
    from reposedm.checkpoints import read_run_config, resolve_checkpoint

    ckpt = resolve_checkpoint(Path(run))
    return read_run_config(ckpt / "run_config.json").family == "reposesd"


def generate(run: Path, *, protocol: str, root: Path, out: Path, split: str | None = None, scheduler: str = "ddim",
             steps: int = 50, guidance_scale: float | None = None, pose_guidance_scale: float | None = None,
             seed: int = 0, limit: int | None = None, batch_size: int = 8, device: str = "cpu", ema: bool = True,
             save_warped: bool = False, indices: list[int] | None = None, pairs: list[Any] | None = None,
             output_size: tuple[int, int] | None = None, record_path: Path | None = None,
             progress: bool = True, restart_stale: bool = False) -> GenerateResult:
    """Generate every pair of a protocol's split with a trained run (see module docstring).

    Args:
        run: run folder (newest checkpoint) or a checkpoint folder.
        protocol: posebench protocol name; its dataset, split and resolution are used.
        guidance_scale: w_c (default: the run's config, 2).
        pose_guidance_scale: eta (default: the run's config for `full`, 0 otherwise).
        limit: only the first N pairs (sorted), e.g. for smoke tests.
        indices: only these pairs (positions k in the sorted split; their seeds are those of a full run).
        pairs: generate these (source, target) `PairKey`s of `split` instead of the split's own pairs (e.g. a
            re-ID augmentation plan); image k of the list uses seed (seed, k).
        output_size: (H, W) of the written images (default: the protocol's resolution).
        record_path: where the settings record goes (default OUT/sampling.json).
        restart_stale: images made with other settings are deleted and made again instead of refused (for
            folders a caller owns, e.g. the demo's after a run trained further).
        save_warped: also write `warped/{name}.png`: source | W(I_S; F^n) for n = 1..N | generated | target
            (paper fig. 9; b2 and full only).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from posebench.images import resize
    from posebench.protocols import get_protocol
    from posebench.utils.progress import Progress
    from reposedm.checkpoints import load_pipeline, weights_fingerprint
    from reposedm.train import build_pose_field

    for option, value in (("--steps", steps), ("--batch-size", batch_size), ("--limit", limit)):
        if value is not None and value <= 0:
            raise PosebenchError(f"{option} must be a positive number, got {value}")
    if _is_text_pose_run(run):  # RePoseSD / HumanSD: prompts and poses of a Human-Art split
        from reposedm.sd.generate import generate_text_pose

        unsupported = {"pairs": pairs, "output_size": output_size, "record_path": record_path,
                       "save_warped": save_warped or None, "restart_stale": restart_stale or None}
        given = sorted(k for k, v in unsupported.items() if v is not None)
        if given:
            raise PosebenchError(f"{run} is a RePoseSD / HumanSD run: {', '.join(given)} apply to pose-transfer runs "
                                 "only")

        return generate_text_pose(run, protocol=protocol, root=root, out=out, split=split, scheduler=scheduler,
                                  steps=steps, guidance_scale=guidance_scale, pose_guidance_scale=pose_guidance_scale,
                                  seed=seed, limit=limit, batch_size=batch_size, device=device, ema=ema,
                                  indices=indices, progress=progress)
    spec = get_protocol(protocol)
    split = split or spec.split
    # the guidance estimator only when it may be used (an explicit --pose-guidance-scale 0 needs none)
    pipe, cfg, ckpt = load_pipeline(run, ema=ema, scheduler=scheduler, device=device,
                                    pose_estimator=None if pose_guidance_scale != 0.0 else False)
    pipe.set_progress_bar_config(disable=True)
    w_c = cfg.model.guidance_scale if guidance_scale is None else guidance_scale
    g = cfg.model.guidance
    eta = (g.pose_guidance_scale if g.enabled else 0.0) if pose_guidance_scale is None else pose_guidance_scale
    pose_field = None
    if eta != 0.0 and pipe.pose_estimator is not None:
        pose_field = pipe.pose_estimator.pose_field()  # the run's own estimator, already built
    elif eta != 0.0:
        pose_field = build_pose_field(replace(cfg, model=replace(cfg.model, guidance=replace(g, enabled=True))),
                                      torch.device(device))
    if pairs is None:
        index, pairs = load_pairs(PairSource(spec.dataset, Path(root), split))
    else:
        index = load_split(PairSource(spec.dataset, Path(root), split))
        _check_custom_pairs(index.splits[split], pairs, split, Path(root))
    chosen = chosen_positions(indices, limit, len(pairs), "pair")
    n = len(chosen)
    ds = PairDataset(PairSource(spec.dataset, Path(root), split), cfg.model.resolution, cfg.model.pose_renderer,
                     pairs=pairs, index=index)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    todo = [k for k in chosen if not (out / pairs[k].filename).exists()]
    target_size = tuple(output_size or spec.resolution)
    resized = tuple(cfg.model.resolution) != target_size
    settings = {
        "run": str(run), "checkpoint": str(ckpt), "config": cfg.name, "variant": cfg.model.variant,
        "weights": "ema" if ema else "raw", "weights_sha256": weights_fingerprint(ckpt, "ema" if ema else "model"),
        "protocol": spec.name, "split": split, "scheduler": scheduler,
        "steps": steps, "guidance_scale": w_c, "pose_guidance_scale": eta,
        # eq. 16 after second-order training, eq. 19 otherwise; None without guidance (older records have no key)
        "pose_guidance_rule": pipe.default_pose_guidance_rule() if eta != 0.0 else None, "seed": seed,
        "model_resolution": list(cfg.model.resolution), "output_resolution": list(target_size), "resized": resized,
    }
    provenance = sampling_provenance(ckpt, g, eta)
    record_file = Path(record_path or out / "sampling.json")
    try:
        _check_resume(out, record_file, settings, n - len(todo))
    except PosebenchError:
        if not restart_stale:
            raise
        log.warning("%s: images of other settings (an earlier checkpoint) are replaced", out)
        for k in chosen:
            (out / pairs[k].filename).unlink(missing_ok=True)
        todo = list(chosen)
    # the settings go down before the first image: a resumed run is checked against them
    atomic_write_text(record_file, json.dumps({**settings, **provenance, "pairs": n, "complete": False}, indent=2)
                      + "\n")
    if save_warped and cfg.model.variant == "b1":
        log.warning("--save-warped: %s is a %s run, which has no recurrent pose alignment (no warped sources); "
                    "no warped/ strips are written", run, cfg.model.variant.upper())
    if resized:
        log.warning("the model generates %s images; they are resized to the protocol's %s (pil-bicubic)",
                    "x".join(map(str, cfg.model.resolution)), "x".join(map(str, target_size)))
    columns = [TextColumn("sample"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("sample", total=n, completed=n - len(todo))
        for lo in range(0, len(todo), batch_size):
            ks = todo[lo: lo + batch_size]
            batch = collate([ds[k] for k in ks])
            result = pipe(batch["source"], batch["pose_map"], num_inference_steps=steps, guidance_scale=w_c,
                          pose_guidance_scale=eta, pose_field=pose_field, target_xy=batch["target_xy"],
                          target_visible=batch["target_visible"], sample_grad=g.sample_grad, seed=seed, indices=ks,
                          pose_guidance_rule=settings["pose_guidance_rule"] or "step",
                          return_intermediates=save_warped)
            if save_warped and result.warped:
                _save_warped_strips(out / "warped", [pairs[k].filename for k in ks], batch, result)
            for k, img in zip(ks, result.images, strict=True):
                array = to_uint8(img)
                if resized:
                    array = resize(array, target_size, "pil-bicubic")
                write_png(out / pairs[k].filename, array)
            bar.update(task, advance=len(ks))
    record = {**settings, **provenance, "pairs": n, "complete": True,
              "seeding": "image k uses image_seed(seed, k), k = index in the sorted pair list"}
    atomic_write_text(record_file, json.dumps(record, indent=2) + "\n")
    return GenerateResult(out, len(todo), n - len(todo), n, record)


def _save_warped_strips(folder: Path, names: list[str], batch: dict[str, Any], result: Any) -> None:
    """One PNG per pair: source | warped source after each RPA iteration | generated | target (model size)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        tiles = [batch["source"][i], *(w[i].cpu() for w in result.warped), result.images[i].cpu(), batch["target"][i]]
        write_png(folder / name, torch.cat([t.float().clamp(0, 1) for t in tiles], dim=2))


def _check_custom_pairs(split_index: Any, pairs: list[Any], split: str, root: Path) -> None:
    """Every image of an explicit pair list must be in the split, and every target must have keypoints."""
    missing = [p for p in pairs if p.source not in split_index.images or p.target not in split_index.images]
    no_pose = [p for p in pairs if p.target in split_index.images and not split_index.keypoints.get(p.target)]
    if missing:
        raise PosebenchError(f"{len(missing)} pairs name images that are not in split {split!r} of {root}, e.g. "
                             f"{missing[0]}")
    if no_pose:
        raise PosebenchError(f"{len(no_pose)} target images have no keypoints in {root}, e.g. {no_pose[0].target}; "
                             "their poses cannot be rendered (add them to the annotation file)")
