"""Targets of two plain folders (`posebench eval --pred DIR --gt DIR [--real DIR]`): each generated image against
the ground-truth image of the same file name (stem), no dataset root, as clean-fid's `compute_fid(dir1, dir2)`.
The FID real set is `--real` (default: the ground-truth folder). Results are marked non-canonical: no protocol
pins the split. `size: protocol` steps of the profile mean the ground truth's own size."""

from __future__ import annotations

import hashlib
from pathlib import Path

from posebench.datasets.names import IMAGE_SUFFIXES, stem
from posebench.errors import PosebenchError
from posebench.protocols import get_profile
from posebench.run.config import EvalConfig
from posebench.run.plan import Item, Plan, check_lossy, check_metrics, declare, finish, raise_problems

DEFAULT_METRICS = ("fid", "kid", "ssim", "lpips", "psnr")
FOLDER_METRICS = ("fid", "kid", "ssim", "lpips", "psnr", "is")  # no keypoints: no pose metrics, no masks


def _images(folder: Path, option: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise PosebenchError(f"{option} {folder} is not a folder of images")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise PosebenchError(f"{option} {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    by_stem: dict[str, Path] = {}
    problems = []
    for f in files:
        if stem(f.name) in by_stem:
            problems.append(f"{f}: same name as {by_stem[stem(f.name)].name}; names must be unique without extension")
        by_stem[stem(f.name)] = f
    raise_problems(problems, f"names in {folder}")
    return by_stem


def plan(cfg: EvalConfig) -> Plan:
    profile = get_profile(cfg.profile or "clean")
    metrics = check_metrics(cfg.metrics or DEFAULT_METRICS, profile, FOLDER_METRICS, "two plain folders")
    preds, gts = _images(cfg.pred, "--pred"), _images(cfg.gt, "--gt")
    extra = sorted(set(preds) - set(gts))
    missing = sorted(set(gts) - set(preds))
    problems = [f"{preds[s]}: no ground truth named {s} in {cfg.gt}" for s in extra]
    notes = []
    if missing and not cfg.allow_missing:
        problems.append(f"{len(missing)} of {len(gts)} ground-truth images have no generated image (e.g. "
                        f"{', '.join(missing[:5])}); generate them or pass --allow-missing")
    elif missing:
        notes.append(f"{len(missing)} of {len(gts)} ground-truth images have no generated image and were not scored")
    raise_problems(problems, f"the ground truth in {cfg.gt}")
    names = sorted(preds, key=lambda s: preds[s].name)  # the sorted listing, as for the protocols
    real = _images(cfg.real, "--real") if cfg.real is not None else gts
    real_paths = [real[s] for s in sorted(real)]
    if cfg.real_limit is not None:
        real_paths = real_paths[: cfg.real_limit]
    out = Plan(kind="folders", protocol=None, profile=profile, metrics=metrics,
               items=[Item(pred=preds[s], gt=gts[s], ids={"name": s}) for s in names], resolution=None,
               real_sets={"real": real_paths},
               dataset={"name": "folders", "layout": "folders", "split": str(cfg.gt), "pairs": len(gts),
                        "pairs_sha256": hashlib.sha256("\n".join(sorted(gts)).encode()).hexdigest(),
                        "real_dir": str(cfg.real or cfg.gt)},
               predictions={"scheme": "same-name"}, id_columns=("name",), warnings=notes,
               non_canonical=["two plain folders (--gt): no protocol pins the images, sizes or real set"])
    check_lossy(out, list(preds.values()), cfg.allow_lossy)
    declare(out, cfg.best_of, cfg.oracle_selection)
    return finish(out, cfg.pred)
