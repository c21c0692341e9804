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
    from reposedm.config import RunConfig

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read run config {path} ({exc})") from exc
    return RunConfig.from_dict(data, str(path))


def write_run_config(run: Path, cfg: RunConfig) -> None:
    atomic_write_text(Path(run) / "config.json", cfg.to_json() + "\n")


def load_training_state(path: Path) -> dict[str, Any]:
    import torch

    try:
        return torch.load(Path(path) / "training_state.pt", map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same to the user
        raise CheckpointError(f"checkpoint {path}: training_state.pt cannot be read ({exc})") from exc


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
                  ) -> tuple[RePoseDMPipeline, RunConfig, Path]:
    """RePoseDMPipeline from a run's newest (or a given) checkpoint, after verifying its checksums."""
    from reposedm.diffusion import make_scheduler
    from reposedm.models.network import RePoseDMModel
    from reposedm.pipeline import RePoseDMPipeline
    from reposedm.vae import load_vae

    ckpt = resolve_checkpoint(Path(run_or_checkpoint))
    verify_checkpoint(ckpt)
    cfg = read_run_config(ckpt / "run_config.json")
    weights = ckpt / ("ema" if ema else "model")
    try:
        model = RePoseDMModel.from_pretrained(weights)
    except (ValueError, RuntimeError, OSError) as exc:  # diffusers: a tensor whose shape does not fit, a bad file
        raise CheckpointError(f"{weights}: the weights do not fit the run's model ({str(exc).strip()[:300]}); the "
                              "checkpoint is damaged or was written by another config") from None
    vae = load_vae(cfg.model, allow_download=allow_download)
    pipe = RePoseDMPipeline(model.eval(), make_scheduler(cfg.model, scheduler), vae)
    return pipe.to(device), cfg, ckpt
