"""Run folders and checkpoints: atomic writes, checksums, retention, loading a pipeline from a run.

A run folder holds `config.json` (written before step 1), `metrics.jsonl`, `samples/` and
`checkpoints/checkpoint-NNNNNN/` with
  model/          the raw weights (diffusers `save_pretrained`: config.json + safetensors)
  ema/            the EMA weights, same layout (what sampling uses)
  training_state.pt   optimizer, LR schedule, EMA counters, step (tensors and plain types only:
                      read back with torch.load(weights_only=True))
  run_config.json
  checksums.json  sha256 of every file above, written last
A checkpoint is written into a temporary sibling folder and renamed into place only when complete, so
a crash or a full disk never leaves a half checkpoint under the real name and never touches the
previous one. Loading verifies the checksums and refuses a damaged checkpoint with its path.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from posebench.errors import PosebenchError
from posebench.utils.io import atomic_write_text, sha256_file

if TYPE_CHECKING:
    import torch

    from reposedm.config import RunConfig
    from reposedm.pipeline import RePoseDMPipeline

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d{6,})$")
CHECKSUMS = "checksums.json"


class CheckpointError(PosebenchError):
    """A checkpoint that cannot be written or trusted."""


def checkpoint_dir(run: Path) -> Path:
    return Path(run) / "checkpoints"


def list_checkpoints(run: Path) -> list[Path]:
    """Complete checkpoints of a run (temporary folders excluded), oldest first."""
    folder = checkpoint_dir(run)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := CHECKPOINT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def step_of(path: Path) -> int:
    m = CHECKPOINT_RE.match(Path(path).name)
    if not m:
        raise CheckpointError(f"{path} is not a checkpoint folder (expected checkpoint-NNNNNN)")
    return int(m.group(1))


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())


def save_checkpoint(run: Path, step: int, write: Any) -> Path:
    """Write a checkpoint atomically. `write(folder)` fills the temporary folder.

    Raises:
        CheckpointError: the write failed (e.g. disk full); the temporary folder is removed and earlier
            checkpoints are untouched.
    """
    final = checkpoint_dir(run) / f"checkpoint-{step:06d}"
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    previous = list_checkpoints(run)
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        write(tmp)
        sums = {str(p.relative_to(tmp)): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        (tmp / CHECKSUMS).write_text(json.dumps(sums, indent=1, sort_keys=True))
        _fsync_tree(tmp)
        if final.exists():  # the same step again (a resumed run re-saving): swap, never delete first
            old = final.with_name(f"{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except (OSError, RuntimeError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        kept = f"the previous checkpoint {previous[-1]} is intact" if previous else "no earlier checkpoint exists"
        raise CheckpointError(f"could not write checkpoint {final} ({exc}); {kept}. Free disk space and "
                              "resume with --resume") from exc
    return final


def verify_checkpoint(path: Path) -> None:
    """Every file listed in checksums.json exists with its digest; refuses with the path otherwise."""
    path = Path(path)
    sums_file = path / CHECKSUMS
    if not sums_file.is_file():
        raise CheckpointError(f"checkpoint {path} is incomplete (no {CHECKSUMS}); delete it to resume from the "
                              "previous one")
    try:
        sums = json.loads(sums_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint {path}: {CHECKSUMS} is corrupt ({exc})") from exc
    for rel, digest in sums.items():
        f = path / rel
        if not f.is_file():
            raise CheckpointError(f"checkpoint {path} is missing {rel}; delete it to resume from the previous one")
        if sha256_file(f) != digest:
            raise CheckpointError(f"checkpoint {path}: {rel} does not match its checksum (corrupt or edited); "
                                  "delete the checkpoint to resume from the previous one")


def weights_fingerprint(path: Path, subfolder: str) -> str:
    """sha256 over the (file, sha256) entries of checksums.json under `subfolder` (e.g. "ema"): names the weights
    a checkpoint holds independently of where the run folder lies (a copied or moved run keeps it)."""
    sums = json.loads((Path(path) / CHECKSUMS).read_text())
    entries = sorted((rel, digest) for rel, digest in sums.items() if rel.split("/")[0] == subfolder)
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def apply_retention(run: Path, keep_last: int, keep_every: int) -> list[Path]:
    """Delete all but the newest `keep_last` checkpoints and those at multiples of `keep_every`."""
    ckpts = list_checkpoints(run)
    removed = []
    for path in ckpts[:-keep_last] if keep_last > 0 else ckpts:
        if keep_every and step_of(path) % keep_every == 0:
            continue
        shutil.rmtree(path)
        removed.append(path)
    return removed


def read_run_config(path: Path) -> RunConfig:
    from reposedm.config import run_config_from_dump

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read run config {path} ({exc})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"run config {path} is not a JSON object; the checkpoint is damaged")
    return run_config_from_dump(data, str(path))


def write_run_config(run: Path, cfg: RunConfig) -> None:
    atomic_write_text(Path(run) / "config.json", cfg.to_json() + "\n")


def load_training_state(path: Path) -> dict[str, Any]:
    import torch

    try:
        return torch.load(Path(path) / "training_state.pt", map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same to the user
        raise CheckpointError(f"checkpoint {path}: training_state.pt cannot be read ({exc})") from exc


def run_of(checkpoint: Path) -> Path:
    """The run folder a checkpoint belongs to (RUN/checkpoints/checkpoint-N -> RUN)."""
    return Path(checkpoint).parent.parent


def resolve_checkpoint(run_or_checkpoint: Path) -> Path:
    """A checkpoint folder, or the newest checkpoint of a run folder."""
    path = Path(run_or_checkpoint)
    if CHECKPOINT_RE.match(path.name) and path.is_dir():
        return path
    ckpts = list_checkpoints(path)
    if not ckpts:
        raise CheckpointError(f"{path} has no checkpoints (expected {checkpoint_dir(path)}/checkpoint-NNNNNN)")
    return ckpts[-1]


def load_pipeline(run_or_checkpoint: str | Path, *, ema: bool = True, scheduler: str = "ddim",
                  device: str | torch.device = "cpu", allow_download: bool = True,
                  pose_estimator: bool | None = None) -> tuple[RePoseDMPipeline, RunConfig, Path]:
    """RePoseDMPipeline from a run's newest (or a given) checkpoint, after verifying its checksums.

    Args:
        scheduler: a short name or a diffusers scheduler class (`reposedm.diffusion.make_scheduler`), checked
            before anything is read.
        pose_estimator: include the guidance estimator as the `pose_estimator` component (default: when the run
            trained with pose guidance).
    """
    from reposedm.diffusion import make_scheduler, scheduler_class
    from reposedm.pipeline import RePoseDMPipeline
    from reposedm.vae import load_vae

    scheduler_class(scheduler)  # a bad name fails before any checkpoint work
    ckpt = resolve_checkpoint(Path(run_or_checkpoint))
    verify_checkpoint(ckpt)
    cfg = read_run_config(ckpt / "run_config.json")
    if cfg.family == "reposesd":
        from reposedm.sd.train import load_sd_pipeline

        pipe = load_sd_pipeline(ckpt, cfg, ema=ema, scheduler=scheduler, allow_download=allow_download,
                                pose_estimator=pose_estimator)
        return pipe.to(device), cfg, ckpt
    model = load_model(ckpt / ("ema" if ema else "model"))
    vae = load_vae(cfg.model, allow_download=allow_download)
    g = cfg.model.guidance
    with_estimator = g.enabled if pose_estimator is None else pose_estimator
    pipe = RePoseDMPipeline.from_model(
        model.eval(), make_scheduler(cfg.model, scheduler), vae,
        pose_estimator=_pose_estimator_component(cfg) if with_estimator else None,
        guidance_scale=cfg.model.guidance_scale, pose_guidance_scale=g.pose_guidance_scale if g.enabled else 0.0,
        train_mode=g.train_mode if g.enabled else "off")
    return pipe.to(device), cfg, ckpt


def load_model(weights: Path) -> Any:
    """A checkpoint's RePoseDMModel (`model/` or `ema/`). Checkpoints of the layout before the condition encoder
    was a module of its own load through `reposedm.models.network.upgrade_legacy_state_dict`.

    Raises:
        CheckpointError: tensors of the wrong shape, or names that neither layout knows, naming the folder.
    """
    from reposedm.models.network import RePoseDMModel

    try:
        model, info = RePoseDMModel.from_pretrained(weights, output_loading_info=True)
    except (ValueError, RuntimeError, OSError) as exc:  # diffusers: a tensor whose shape does not fit, a bad file
        raise CheckpointError(f"{weights}: the weights do not fit the run's model ({str(exc).strip()[:300]}); the "
                              "checkpoint is damaged or was written by another config") from None
    missing, unexpected = sorted(info["missing_keys"]), sorted(info["unexpected_keys"])
    if missing or unexpected:  # diffusers only warns, and leaves the missing tensors uninitialised
        raise CheckpointError(
            f"{weights}: the weights file is of a layout this version of reposedm does not read ({len(missing)} "
            f"tensors missing, e.g. {missing[:2]}; {len(unexpected)} unknown, e.g. {unexpected[:2]}); sample it "
            "with the posebench version that trained it, or retrain")
    return model


def _pose_estimator_component(cfg: RunConfig) -> Any:
    """The run's guidance estimator (its registry name and weights file) with the guidance settings."""
    from posebench.pose.detect import load_estimator
    from reposedm.models.pose_estimator import PoseEstimatorComponent

    g = cfg.model.guidance
    weights = Path(g.estimator_weights) if g.estimator_weights else None
    return PoseEstimatorComponent.from_estimator(load_estimator(g.estimator, weights=weights), g)


# ------------------------------------------------------------------------------------ diffusers export

EXPORTS = "pipeline"  # RUN/pipeline/checkpoint-N/: diffusers folders written by `write_run_pipeline`
EXPORT_RECORD = "reposedm_export.json"


def export_pipeline(run_or_checkpoint: str | Path, out: str | Path, *, ema: bool = True, scheduler: str = "ddim",
                    allow_download: bool = True, pose_estimator: bool | None = None) -> Path:
    """Write a checkpoint as a self-contained diffusers pipeline folder (`RePoseDMPipeline.from_pretrained(out)`,
    or `DiffusionPipeline.from_pretrained(out, trust_remote_code=True)`), atomically.

    The folder holds every component, the VAE of latent-space runs included (a copy of the registry file's
    weights: loading it needs no weights registry or network), and `reposedm_export.json` naming the checkpoint
    and its weights' fingerprint. An earlier export at `out` is replaced as a whole; any other existing
    folder is refused.

    Raises:
        CheckpointError: no or a damaged checkpoint, `out` is something else, or the write failed (nothing
            is left at `out` but what was there before).
    """
    out = Path(out)
    if out.exists() and not (out / "model_index.json").is_file():
        raise CheckpointError(f"{out} exists and is not an exported pipeline (no model_index.json); choose "
                              "another folder")
    pipe, cfg, ckpt = load_pipeline(run_or_checkpoint, ema=ema, scheduler=scheduler, allow_download=allow_download,
                                    pose_estimator=pose_estimator)
    subfolder = "ema" if ema else "model"
    record = {"config": cfg.name, "checkpoint": ckpt.name, "step": step_of(ckpt), "weights": subfolder,
              "weights_sha256": weights_fingerprint(ckpt, subfolder), "scheduler": scheduler}
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        with _no_transformers_bar():  # its "Writing model shards" bar would cut into the trainer's progress
            pipe.save_pretrained(tmp)
        (tmp / EXPORT_RECORD).write_text(json.dumps(record, indent=1) + "\n")
        _fsync_tree(tmp)
        _swap_into_place(tmp, out)
    except (OSError, RuntimeError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(f"could not export {ckpt} to {out} ({exc}); free disk space and export again") from exc
    return out


@contextmanager
def _no_transformers_bar() -> Iterator[None]:
    """transformers' own progress bars off while a pipeline with a transformers component is written."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def _swap_into_place(new: Path, final: Path) -> None:
    """Rename a complete folder to `final`, replacing an earlier one only once the new one is complete."""
    if not final.exists():
        os.replace(new, final)
        return
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    os.replace(final, old)
    os.replace(new, final)
    shutil.rmtree(old, ignore_errors=True)


def write_run_pipeline(run: str | Path, checkpoint: str | Path | None = None, **export: Any) -> Path:
    """Make a run folder itself a diffusers pipeline of its newest (or the given) checkpoint's EMA weights, so
    that `RePoseDMPipeline.from_pretrained(RUN)` (or `DiffusionPipeline.from_pretrained(RUN,
    trust_remote_code=True)`) loads it. Returns the export folder.

    The checkpoint is exported to RUN/pipeline/checkpoint-N/ (`export_pipeline`; `export` are its options);
    RUN/pipeline/current is a relative symlink switched to it in one rename, and RUN/model_index.json, RUN/unet,
    ... are relative symlinks through `current`, so a reader sees one export or the other, never a mix, and a
    moved or copied run keeps working. The previous export is kept (a reader may be loading it); older ones are
    removed. Disk: one copy of the EMA weights (+ the VAE in latent space, the estimator with guidance) per
    export kept, at most two.
    """
    run = Path(run)
    ckpt = resolve_checkpoint(Path(checkpoint) if checkpoint is not None else run)
    exports = run / EXPORTS
    exports.mkdir(exist_ok=True)
    target = export_pipeline(ckpt, exports / ckpt.name, **export)
    current = exports / "current"
    _relink_dereferenced_copy(run, current)
    previous = os.readlink(current) if current.is_symlink() else None
    _replace_symlink(current, target.name)
    for entry in sorted(p.name for p in target.iterdir()):
        if entry != EXPORT_RECORD:
            _link_into_run(run, entry)
    for stale in run.iterdir():  # entries an earlier export had and this one has not
        if stale.is_symlink() and os.readlink(stale).startswith(f"{EXPORTS}/current/") and not stale.exists():
            stale.unlink()
    for old in exports.iterdir():
        if old.is_dir() and not old.is_symlink() and old.name not in (target.name, previous):
            shutil.rmtree(old, ignore_errors=True)
    return target


def _relink_dereferenced_copy(run: Path, current: Path) -> None:
    """A run copied without its links (`shutil.copytree`'s default, `cp -rL`) holds RUN/pipeline/current and the
    RUN/<component> entries as copies of an export: remove exactly those copies so that links replace them."""
    if not current.exists() or current.is_symlink():
        return
    if not (current / EXPORT_RECORD).is_file():
        raise CheckpointError(f"{current} is not a pipeline export of this run (no {EXPORT_RECORD}); move it away")
    for entry in sorted(p.name for p in current.iterdir() if p.name != EXPORT_RECORD):
        copy = run / entry
        if copy.is_symlink() or not copy.exists():
            continue
        shutil.rmtree(copy) if copy.is_dir() else copy.unlink()
    shutil.rmtree(current)


def _replace_symlink(link: Path, target: str) -> None:
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def _link_into_run(run: Path, entry: str) -> None:
    """RUN/entry -> pipeline/current/entry; refuses to replace anything else of that name."""
    link, target = run / entry, f"{EXPORTS}/current/{entry}"
    if link.is_symlink() and os.readlink(link) == target:
        return
    if link.exists() or link.is_symlink():
        raise CheckpointError(f"{link} exists and is not the run's pipeline link ({target}); move it away to make "
                              f"{run} a diffusers pipeline folder")
    _replace_symlink(link, target)
