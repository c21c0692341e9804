"""The trainer: HF accelerate (CPU, one or several GPUs, several nodes via `accelerate launch`), EMA,
atomic safetensors checkpoints, exact resume.

Determinism by construction: the items of optimizer step s are drawn from a generator seeded by
(seed, s), and the timestep, noise and CFG dropout of item j of step s from one seeded by (seed, s, j).
Nothing depends on the global RNG, on the number of processes or on where a run was interrupted, so
N steps = N/2 steps + resume + N/2 steps bit for bit (same device), and P processes see the same global
batch as one (each takes its slice; DDP averages the gradients).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from posebench.errors import PosebenchError
from posebench.utils.io import atomic_open
from reposedm.checkpoints import (
    apply_retention,
    list_checkpoints,
    load_training_state,
    read_run_config,
    save_checkpoint,
    verify_checkpoint,
    write_run_config,
    write_run_pipeline,
)
from reposedm.config import ConfigError, RunConfig
from reposedm.data import PairDataset, PairSource, collate
from reposedm.diffusion import Schedule, eps_from_output, hybrid_loss, q_sample
from reposedm.guidance import PoseField, random_estimator_reason, training_field_terms
from reposedm.models.network import RePoseDMModel
from reposedm.png import write_png
from reposedm.sampling import image_seed

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run: Path
    step: int  # optimizer steps done
    last_checkpoint: Path | None
    losses: list[float]  # loss of every optimizer step of this invocation
    stopped_by: str = "max_steps"  # or "time" (max_seconds reached first)
    main_process: bool = True  # False on the other ranks of a multi-process run (they report nothing)


# ------------------------------------------------------------------------------------------ determinism


def step_items(seed: int, step: int, num_items: int, batch_size: int) -> np.ndarray:
    """Dataset indices of the global batch of optimizer step `step` (without replacement when possible)."""
    rng = np.random.default_rng([seed, step, 0xDA7A])
    return rng.choice(num_items, size=batch_size, replace=num_items < batch_size)


def item_randomness(seed: int, step: int, slots: list[int], shape: tuple[int, ...], num_timesteps: int,
                    cond_dropout: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(t, noise, drop) for the given global batch slots of a step, each from its own generator."""
    ts, noises, drops = [], [], []
    for j in slots:
        g = torch.Generator().manual_seed(image_seed(seed, step * 1_000_003 + j))
        ts.append(int(torch.randint(0, num_timesteps, (1,), generator=g)))
        drops.append(bool(torch.rand(1, generator=g) < cond_dropout))
        noises.append(torch.randn(shape, generator=g))
    return torch.tensor(ts), torch.stack(noises), torch.tensor(drops)


class StepBatches(torch.utils.data.Sampler):
    """The batch sampler of the training DataLoader: for every optimizer step from `start` to `total`, this process's
    micro-batches of dataset indices, in order (`step_items`, sliced by process as DDP expects).

    Items are deterministic functions of their index (decode, resize, render; no augmentation) and the per-item
    randomness (t, noise, CFG dropout) is drawn in the main process from (seed, step, slot), so neither the number
    of workers nor where a run was resumed can change a batch."""

    def __init__(self, seed: int, start: int, total: int, num_items: int, batch_size: int, grad_accum: int,
                 rank: int, world: int) -> None:
        self.seed, self.start, self.total, self.num_items = seed, start, total, num_items
        self.batch_size, self.grad_accum, self.rank, self.world = batch_size, grad_accum, rank, world
        self.per_micro = batch_size // grad_accum

    def micro_slots(self, micro: int) -> list[int]:
        """Global batch slots of micro-batch `micro` that this process computes."""
        lo = micro * self.per_micro + self.rank * (self.per_micro // self.world)
        return list(range(lo, lo + self.per_micro // self.world))

    def __iter__(self):
        for step in range(self.start, self.total):
            indices = step_items(self.seed, step, self.num_items, self.batch_size)
            for micro in range(self.grad_accum):
                yield [int(indices[j]) for j in self.micro_slots(micro)]

    def __len__(self) -> int:
        return (self.total - self.start) * self.grad_accum


def training_batches(dataset: Any, sampler: StepBatches, num_workers: int, collate_fn: Callable = collate) -> Any:
    """A DataLoader over `sampler`'s micro-batches: with workers, decoding and rendering overlap the GPU's step."""
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_fn, num_workers=num_workers,
                                       pin_memory=torch.cuda.is_available(), persistent_workers=False,
                                       prefetch_factor=4 if num_workers > 0 else None)


# ---------------------------------------------------------------------------------------- the objective


class Objective:
    """One micro-batch's loss: L_mse + L_vlb (diffusion.py), plus the pose field (eq. 15) for `full`."""

    def __init__(self, cfg: RunConfig, vae: Any, pose_field: PoseField | None, latent_cache: Any = None) -> None:
        self.cfg = cfg
        self.schedule = Schedule.from_config(cfg.model)
        self.vae = vae
        self.pose_field = pose_field
        self.latent_cache = latent_cache  # reposedm.latent_cache.LatentCache, or None
        g = cfg.model.guidance
        self.guidance_mode = g.train_mode if (g.enabled and pose_field is not None) else "off"

    def to_model_space(self, images: torch.Tensor) -> torch.Tensor:
        if self.vae is None:
            return images * 2 - 1
        if self.latent_cache is not None:
            return self.latent_cache.encode(images, self._encode)
        return self._encode(images)

    def encode_differentiable(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> model space through the frozen VAE encoder, with the gradient to the images (the
        RPA's image warp, eq. 9, trains the flow through it)."""
        return self.vae.encode((images * 2 - 1).to(self.vae.dtype)).latent_dist.mean.float() \
            * self.cfg.model.vae_scaling_factor

    def _encode(self, images: torch.Tensor) -> torch.Tensor:
        """The VAE posterior mean x scaling factor (deterministic, so it can be cached), without a gradient."""
        with torch.no_grad():
            return self.encode_differentiable(images)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        if self.vae is None:
            return (latents + 1) / 2
        return (self.vae.decode(latents.to(self.vae.dtype) / self.cfg.model.vae_scaling_factor).sample.float() + 1) / 2

    def __call__(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], t: torch.Tensor, noise: torch.Tensor,
                 drop: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        m = self.cfg.model
        x0 = self.to_model_space(batch["target"])
        source = self.to_model_space(batch["source"])
        x_t = q_sample(self.schedule, x0, t, noise)
        second_order = self.guidance_mode == "second-order"
        if second_order:
            x_t = x_t.detach().requires_grad_(True)
        # F_T: the rendered pose through the VAE (the paper), or the map itself for a learned encoder
        pose = self.to_model_space(batch["pose_map"]) if m.pose_encoding == "vae" else batch["pose_map"]
        # eq. 9 (rpa_warp: image): the RPA re-encodes the warped source image, differentiably through the VAE
        image_warp = {"source_image": batch["source"], "encode_image": self.encode_differentiable} \
            if m.rpa_warp == "image" and m.variant != "b1" else {}
        out = model(x_t, t, source, pose, drop, **image_warp)
        # eps_theta whatever the output parametrization (eq. 10 and 15 are written in eps).
        eps_pred = eps_from_output(self.schedule, out[:, : x0.shape[1]], x_t, t, m.prediction_type)
        offset, extra, field_value = None, None, None
        if self.guidance_mode != "off":
            ref = self.pose_field.reference(
                target_xy=batch.get("target_xy"), target_visible=batch.get("target_visible"),
                target_images=batch.get("target"), image_size=m.resolution)
            field = training_field_terms(self.pose_field, ref, self.schedule, x_t, t, eps_pred, self.decode,
                                         self.guidance_mode, m.guidance.train_weight)
            offset, extra, field_value = field.eps_offset, field.loss, field.value
        terms = hybrid_loss(self.schedule, out, x0, x_t.detach() if second_order else x_t, t, noise,
                            learned_variance=m.learned_variance, vlb_weight=m.vlb_weight, eps_offset=offset,
                            prediction_type=m.prediction_type)
        loss = terms.loss if extra is None else terms.loss + extra
        logs = {"loss": float(loss.detach()), "mse": float(terms.mse), "vlb": float(terms.vlb)}
        if field_value is not None:
            logs["pose_field"] = field_value
        return loss, logs


# --------------------------------------------------------------------------------------------- trainer


def _mixed_precision(cfg: RunConfig, cpu: bool) -> str:
    mp = cfg.train.mixed_precision
    if mp == "auto":
        return "no" if cpu else "bf16"
    return "no" if cpu else mp


def _check_run_folder(out: Path, cfg: RunConfig, resume: bool) -> Path | None:
    """The checkpoint to resume from (verified), or None for a fresh run; refuses to clobber a run."""
    ckpts = list_checkpoints(out)
    if not resume:
        if ckpts or (out / "config.json").exists():
            raise PosebenchError(f"{out} already holds a run; pass --resume to continue it, or choose a new --out")
        return None
    _remove_stale_temporaries(out)
    if not ckpts:
        if (out / "config.json").exists():
            _same_model(out / "config.json", cfg)
        return None
    last = ckpts[-1]
    verify_checkpoint(last)
    _same_model(last / "run_config.json", cfg)
    return last


def _remove_stale_temporaries(out: Path) -> None:
    """A run killed while writing a checkpoint leaves `checkpoint-N.tmp-PID`; a resume removes them (the complete
    checkpoints are untouched)."""
    import shutil

    from reposedm.checkpoints import checkpoint_dir

    folder = checkpoint_dir(out)
    if folder.is_dir():
        for tmp in folder.glob("checkpoint-*.tmp-*"):
            log.info("removing %s, left by a run killed while writing it", tmp)
            shutil.rmtree(tmp, ignore_errors=True)


def _same_model(path: Path, cfg: RunConfig) -> None:
    saved = read_run_config(path)
    if saved.model != cfg.model:
        raise ConfigError(f"--resume with a different model config than {path}; resume with the run's own config "
                          "(the default when --config is omitted) or start a new --out")
    keep = ("max_steps", "checkpoint_every", "keep_checkpoints", "keep_every", "log_every", "sample_every",
            "num_workers", "sample_steps", "num_samples", "cache_latents")
    a = {k: v for k, v in vars(saved.train).items() if k not in keep}
    b = {k: v for k, v in vars(cfg.train).items() if k not in keep}
    if a != b:
        diff = sorted(k for k in a if a[k] != b[k])
        raise ConfigError(f"--resume changes training settings {diff} of {path}: an exact resume needs them equal")


def needs_double_backward(cfg: RunConfig) -> bool:
    g = cfg.model.guidance
    return g.enabled and g.train_mode == "second-order"


def enable_double_backward(model: RePoseDMModel, vae: Any) -> None:
    """Eq. 15 differentiates grad G again, through the U-Net and the VAE decoder; SDPA kernels have no double
    backward, so both switch to diffusers' classic attention processor (same math, materialized weights)."""
    from diffusers.models.attention_processor import AttnProcessor

    model.unet.set_attn_processor(AttnProcessor())
    if vae is not None:
        vae.set_attn_processor(AttnProcessor())


def check_pose_estimator(cfg: RunConfig) -> list[str]:
    """Refuse a random guidance estimator at paper size unless the config allows it; returns the non-canonical
    reasons the run's results carry (a random estimator at any size)."""
    g = cfg.model.guidance
    reason = random_estimator_reason(g)
    if reason is None:
        return []
    if not cfg.model.is_test_size and not g.allow_random_estimator:
        h, w = cfg.model.resolution
        raise ConfigError(
            f"config {cfg.name}: {reason}; a {h}x{w} `full` run with it is not RePoseDM. Use a trained estimator "
            "(model.guidance.estimator: higherhrnet-w32-coco, fetched by `posebench weights download "
            "higherhrnet-w32-coco`, or estimator_weights: FILE), or pass --allow-random-estimator "
            "(model.guidance.allow_random_estimator: true) to train anyway: the run and every result of its samples "
            "are then marked non-canonical")
    return [reason]


def build_pose_field(cfg: RunConfig, device: torch.device) -> PoseField | None:
    g = cfg.model.guidance
    if not g.enabled:
        return None
    from posebench.pose.detect import load_estimator

    weights = Path(g.estimator_weights) if g.estimator_weights else None
    return PoseField(load_estimator(g.estimator, weights=weights, device=str(device)), g)


class RePoseDMFamily:
    """What the trainer needs of RePoseDM (and B1 / B2): its frozen parts, data, module, objective, grids.
    RePoseSD has the same interface (`reposedm.sd.train.SDFamily`); `model_family` picks by the config."""

    model_cls = RePoseDMModel
    collate = staticmethod(collate)

    def __init__(self, cfg: RunConfig, source: PairSource, device: torch.device) -> None:
        from reposedm.vae import load_vae

        self.cfg = cfg
        self.non_canonical = check_pose_estimator(cfg)
        self.vae = load_vae(cfg.model)
        self.pose_field = build_pose_field(cfg, device)
        self.dataset = PairDataset(source, cfg.model.resolution, cfg.model.pose_renderer)
        self.noise_shape = (cfg.model.latent_channels, *cfg.model.latent_size)
        self.cond_dropout = cfg.model.cond_dropout

    def build_model(self) -> RePoseDMModel:
        model = RePoseDMModel.from_model_config(self.cfg.model)
        if self.cfg.train.gradient_checkpointing:
            model.unet.enable_gradient_checkpointing()
        if needs_double_backward(self.cfg):
            enable_double_backward(model, self.vae)
        return model

    def frozen_to(self, device: torch.device) -> None:
        if self.vae is not None:
            self.vae.to(device)

    def objective(self, accelerator: Any) -> Objective:
        return Objective(self.cfg, self.vae, self.pose_field, _latent_cache(self.cfg, self.vae, accelerator))

    def validation(self, source: PairSource) -> _ValidationGrid:
        return _ValidationGrid(self.cfg, source, self.vae)


def model_family(cfg: Any, source: Any, device: torch.device) -> Any:
    """The trainer's view of the config's model family (RePoseDM or RePoseSD)."""
    if cfg.family == "reposesd":
        from reposedm.sd.train import SDFamily

        return SDFamily(cfg, source, device)
    return RePoseDMFamily(cfg, source, device)


def train(cfg: RunConfig, *, source: PairSource, out: Path, resume: bool = False, max_steps: int | None = None,
          val_source: PairSource | None = None, progress: bool = True, max_seconds: float | None = None,
          on_step: Callable[[int, dict[str, float]], None] | None = None) -> TrainResult:
    """Train (or continue) a run; see the module docstring for the guarantees.

    Args:
        source: pairs to learn from (the protocol dataset's train split).
        out: run folder.
        resume: continue from the newest checkpoint in `out` (verified first).
        max_steps: stop after this many optimizer steps in total (default: the config's).
        val_source: pairs for the periodic validation grids (default: `source`).
        max_seconds: also stop (with a checkpoint) once this invocation has trained this long; the step count
            then depends on the machine's speed, so `TrainResult.stopped_by` says which limit ended the run.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    out = Path(out)
    tc = cfg.train
    total_steps = int(max_steps if max_steps is not None else tc.max_steps)
    cpu = not torch.cuda.is_available()
    accelerator = Accelerator(mixed_precision=_mixed_precision(cfg, cpu), cpu=cpu)
    world, rank = accelerator.num_processes, accelerator.process_index
    _warn_single_cpu_process(world)
    per_micro = tc.batch_size // tc.grad_accum
    if per_micro % world:
        raise ConfigError(f"train.batch_size {tc.batch_size} / grad_accum {tc.grad_accum} = {per_micro} items per "
                          f"micro-batch do not split over {world} processes")
    resume_from = _check_run_folder(out, cfg, resume)
    # early: missing weights offline and bad data fail before anything is written
    family = model_family(cfg, source, accelerator.device)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_run_config(out, cfg)  # before step 1, so a crashed run still says what it was
        write_training_data(out, source, len(family.dataset), family.non_canonical)
        for reason in family.non_canonical:
            log.warning("%s: %s; the run's results are marked non-canonical", cfg.name, reason)
    accelerator.wait_for_everyone()

    set_seed(tc.seed)  # model init only; training randomness comes from step-seeded generators
    model = family.build_model()
    ema = EMAModel(model.parameters(), decay=tc.ema_decay, update_after_step=tc.ema_start,
                   model_cls=family.model_cls, model_config=model.config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, betas=tc.adam_betas, weight_decay=tc.weight_decay)
    # The horizon of a decaying schedule is the config's max_steps (not --max-steps), so a resumed or
    # extended run follows the same curve.
    lr_schedule = get_scheduler("constant_with_warmup" if tc.lr_schedule == "constant" else "cosine", optimizer,
                                num_warmup_steps=tc.warmup_steps, num_training_steps=tc.max_steps)
    step = 0
    if resume_from is not None:
        loaded = family.model_cls.from_pretrained(resume_from / "model")
        model.load_state_dict(loaded.state_dict())
        state = load_training_state(resume_from)
        optimizer.load_state_dict(state["optimizer"])
        lr_schedule.load_state_dict(state["lr_scheduler"])
        ema.load_state_dict(state["ema"])
        step = int(state["step"])
        log.info("resumed %s at step %d", resume_from, step)
    # Eq. 15 differentiates through autograd.grad(create_graph=True), which DDP's gradient hooks cannot follow: with
    # several processes the second-order objective trains an unwrapped model and averages its gradients by hand
    # (`all_reduce_gradients`, after the local backward passes), which is what DDP computes.
    manual_sync = world > 1 and needs_double_backward(cfg)
    if manual_sync:
        model = model.to(accelerator.device)
        optimizer = accelerator.prepare(optimizer)
        broadcast_parameters(model)
    else:
        model, optimizer = accelerator.prepare(model, optimizer)
    ema.to(accelerator.device)
    family.frozen_to(accelerator.device)
    objective = family.objective(accelerator)
    noise_shape = family.noise_shape
    metrics_path = out / "metrics.jsonl"
    if accelerator.is_main_process:
        _truncate_log(metrics_path, step)
    val = family.validation(val_source or source) if tc.sample_every and accelerator.is_main_process else None

    losses: list[float] = []
    last_ckpt = resume_from  # the newest checkpoint, or None for a fresh run
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from posebench.utils.progress import Progress

    columns = [TextColumn("train {task.fields[name]}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[status]}")]
    started, seen_at_start = time.perf_counter(), step
    stopped_by = "max_steps"
    sampler = StepBatches(tc.seed, step, total_steps, len(family.dataset), tc.batch_size, tc.grad_accum, rank, world)
    micro_batches = iter(training_batches(family.dataset, sampler, tc.num_workers, family.collate))
    with Progress(*columns, disable=not (progress and accelerator.is_main_process)) as bar:
        task = bar.add_task("train", total=total_steps, completed=step, name=cfg.name, status="")
        while step < total_steps:
            model.train()
            sums: dict[str, float] = {}
            for micro in range(tc.grad_accum):
                slots = sampler.micro_slots(micro)
                batch = next(micro_batches)
                batch = {k: v.to(accelerator.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                         for k, v in batch.items()}
                t, noise, drop = item_randomness(tc.seed, step, slots, noise_shape,
                                                 cfg.model.num_train_timesteps, family.cond_dropout)
                t, noise, drop = t.to(accelerator.device), noise.to(accelerator.device), drop.to(accelerator.device)
                sync = micro == tc.grad_accum - 1
                ctx = accelerator.no_sync(model) if not sync else contextlib.nullcontext()
                with ctx, accelerator.autocast():
                    loss, logs = objective(model, batch, t, noise, drop)
                    accelerator.backward(loss / tc.grad_accum)
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0.0) + v / tc.grad_accum
            if manual_sync:
                all_reduce_gradients(model)
            if tc.grad_clip > 0:
                accelerator.clip_grad_norm_(model.parameters(), tc.grad_clip)
            optimizer.step()
            lr_schedule.step()
            optimizer.zero_grad(set_to_none=True)
            ema.step(accelerator.unwrap_model(model).parameters())
            step += 1
            sums = {k: _mean_over_processes(accelerator, v) for k, v in sums.items()}
            losses.append(sums["loss"])
            if not all(math.isfinite(v) for v in sums.values()):
                raise PosebenchError(f"training diverged at step {step}: {sums}; lower train.lr or check the data")
            rate = (step - seen_at_start) / max(time.perf_counter() - started, 1e-9)
            bar.update(task, completed=step, status=" ".join(f"{k} {v:.4f}" for k, v in sums.items())
                       + f" {rate:.2f} it/s")
            if on_step is not None:
                on_step(step, sums)
            if accelerator.is_main_process and (step % tc.log_every == 0 or step == total_steps):
                record = {"step": step, **sums, "lr": lr_schedule.get_last_lr()[0], "it_per_s": rate,
                          "elapsed_s": time.perf_counter() - started, "items_seen": step * tc.batch_size}
                with open(metrics_path, "a") as fh:
                    fh.write(json.dumps(record) + "\n")
            if val is not None and step % tc.sample_every == 0:
                val.save(accelerator.unwrap_model(model), ema, out / "samples" / f"step-{step:06d}.png")
            out_of_time = max_seconds is not None and step < total_steps and _any_process(
                accelerator, time.perf_counter() - started >= max_seconds)
            if step % tc.checkpoint_every == 0 or step == total_steps or out_of_time:
                last_ckpt = _checkpoint(accelerator, out, step, cfg, model, optimizer, lr_schedule, ema) or last_ckpt
            if out_of_time:
                stopped_by = "time"
                break
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return TrainResult(out, step, last_ckpt, losses, stopped_by, accelerator.is_main_process)


def _warn_single_cpu_process(world: int) -> None:
    """`accelerate launch --cpu --num_processes N` starts one process (accelerate runs several CPU processes only
    through mpirun), and says nothing; it leaves MASTER_ADDR set without a WORLD_SIZE, which is how this is seen."""
    import os

    asked_cpu = os.environ.get("ACCELERATE_USE_CPU", "false").lower() in ("1", "true", "yes")
    if world == 1 and asked_cpu and os.environ.get("MASTER_ADDR") and "WORLD_SIZE" not in os.environ:
        log.warning("accelerate launch --cpu started one process: accelerate runs several CPU processes only through "
                    "mpirun (--mpirun_hostfile). This run trains on 1 process. For N CPU processes run: "
                    "torchrun --nproc_per_node N -m posebench train-reference ...")


TRAINING_DATA = "training_data.json"


def write_training_data(out: Path, source: PairSource, pairs: int, non_canonical: list[str]) -> None:
    """RUN/training_data.json: what the run learns from (dataset, split, root, pairs) and why its results are not
    canonical, for the tools that score its samples (`posebench eval`, `reid-augment`). A resumed run keeps the
    first record unless the data changed, which is recorded as a list of sources."""
    from posebench.utils.io import atomic_write_text

    path = out / TRAINING_DATA
    entry = {"dataset": source.dataset, "split": source.split, "root": str(source.root), "pairs": pairs}
    record: dict[str, Any] = {"schema_version": 1, "sources": [entry], "non_canonical_reasons": non_canonical}
    if path.is_file():
        try:
            before = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            before = {}
        sources = before.get("sources", [])
        record["sources"] = sources + [entry] if entry not in sources else sources
        record["non_canonical_reasons"] = sorted(set(before.get("non_canonical_reasons", [])) | set(non_canonical))
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def read_training_data(run: Path) -> dict[str, Any]:
    """The run's training_data.json, or {} for a run written before it existed."""
    path = Path(run) / TRAINING_DATA
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _latent_cache(cfg: RunConfig, vae: Any, accelerator: Any) -> Any:
    """The VAE-latent cache when `train.cache_latents` is on (latent-space configs), else None."""
    if not cfg.train.cache_latents:
        return None
    if vae is None:
        log.warning("train.cache_latents: %s works in pixel space (no VAE), nothing to cache", cfg.name)
        return None
    from reposedm.latent_cache import LatentCache, default_folder, vae_fingerprint

    cache = LatentCache(default_folder(), vae_fingerprint(vae, cfg.model.vae_scaling_factor,
                                                          str(accelerator.mixed_precision)))
    log.info("caching VAE latents in %s", cache.folder)
    return cache


def broadcast_parameters(model: torch.nn.Module) -> None:
    """Every process starts from rank 0's weights (what DDP does when it wraps a model)."""
    import torch.distributed as dist

    for tensor in [*model.parameters(), *model.buffers()]:
        dist.broadcast(tensor.data, src=0)


def all_reduce_gradients(model: torch.nn.Module) -> None:
    """Average the gradients over processes, as DDP does, for a model DDP cannot wrap (eq. 15's double backward).

    A parameter no process used keeps grad None (AdamW then skips it, as on one process); one used on some processes
    only counts zeros on the others. One flat buffer per dtype keeps it to a few collectives."""
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    params = [p for p in model.parameters() if p.requires_grad]
    used = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=params[0].device)
    dist.all_reduce(used, op=dist.ReduceOp.MAX)
    world = dist.get_world_size()
    live = [p for p, u in zip(params, used.tolist(), strict=True) if u > 0]
    for p in live:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    for dtype in sorted({p.grad.dtype for p in live}, key=str):
        grads = [p.grad for p in live if p.grad.dtype == dtype]
        flat = _flatten_dense_tensors(grads)
        dist.all_reduce(flat)
        flat /= world
        for g, synced in zip(grads, _unflatten_dense_tensors(flat, grads), strict=True):
            g.copy_(synced)


def _any_process(accelerator: Any, flag: bool) -> bool:
    """True on every process when `flag` is true on any (so all processes stop at the same step)."""
    if accelerator.num_processes == 1:
        return flag
    t = torch.tensor([float(flag)], device=accelerator.device)
    return bool(accelerator.gather(t).max() > 0)


def _mean_over_processes(accelerator: Any, value: float) -> float:
    if accelerator.num_processes == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=accelerator.device)
    return float(accelerator.gather(t).mean())


def _truncate_log(path: Path, step: int) -> None:
    """On resume, drop log lines from steps after the checkpoint (they will be logged again)."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    with atomic_open(path, "w") as fh:
        fh.write("".join(line + "\n" for line in kept))


def _checkpoint(accelerator: Any, out: Path, step: int, cfg: RunConfig, model: Any, optimizer: Any,
                lr_schedule: Any, ema: Any) -> Path | None:
    accelerator.wait_for_everyone()
    path = None
    if accelerator.is_main_process:
        raw = accelerator.unwrap_model(model)

        def write(folder: Path) -> None:
            raw.save_pretrained(folder / "model", safe_serialization=True)
            ema.store(raw.parameters())
            ema.copy_to(raw.parameters())
            try:
                raw.save_pretrained(folder / "ema", safe_serialization=True)
            finally:
                ema.restore(raw.parameters())
            state = {"step": step, "optimizer": optimizer.state_dict(), "lr_scheduler": lr_schedule.state_dict(),
                     "ema": ema.state_dict()}
            torch.save(state, folder / "training_state.pt")
            (folder / "run_config.json").write_text(cfg.to_json() + "\n")

        path = save_checkpoint(out, step, write)
        apply_retention(out, cfg.train.keep_checkpoints, cfg.train.keep_every)
        try:  # RUN itself loads as a diffusers pipeline of the newest EMA weights (either family's)
            write_run_pipeline(out, path)
        except PosebenchError as exc:  # the checkpoint is what matters; the export can be made again later
            log.warning("checkpoint %s written, but the run's pipeline export failed: %s (make it later with "
                        "reposedm.write_run_pipeline(RUN))", path, exc)
    accelerator.wait_for_everyone()
    return path


class _ValidationGrid:
    """Every `sample_every` steps: a grid of (source | target pose | EMA sample | target) rows."""

    def __init__(self, cfg: RunConfig, source: PairSource, vae: Any) -> None:
        self.cfg, self.vae = cfg, vae
        try:
            ds = PairDataset(source, cfg.model.resolution, cfg.model.pose_renderer)
        except PosebenchError as exc:
            log.warning("no validation grids: %s", exc)
            self.batch = None
            return
        n = min(cfg.train.num_samples, len(ds))
        self.batch = collate([ds[i] for i in range(n)])

    def save(self, model: RePoseDMModel, ema: Any, path: Path) -> None:
        if self.batch is None:
            return
        from torchvision.utils import make_grid

        from reposedm.diffusion import make_scheduler
        from reposedm.pipeline import RePoseDMPipeline

        was_training = model.training
        ema.store(model.parameters())
        ema.copy_to(model.parameters())
        try:
            pipe = RePoseDMPipeline.from_model(model.eval(), make_scheduler(self.cfg.model, "ddim"), self.vae)
            pipe.set_progress_bar_config(disable=True)
            device = next(model.parameters()).device
            images = pipe(self.batch["source"].to(device), self.batch["pose_map"].to(device),
                          num_inference_steps=self.cfg.train.sample_steps,
                          guidance_scale=self.cfg.model.guidance_scale, seed=0,
                          indices=self.batch["index"].tolist()).images.cpu()
        finally:
            ema.restore(model.parameters())
            model.train(was_training)
        pose = self.batch["pose_map"].amax(1, keepdim=True).clamp(0, 1).expand(-1, 3, -1, -1)
        rows = torch.stack([self.batch["source"], pose, images, self.batch["target"]], dim=1).flatten(0, 1)
        grid = make_grid(rows, nrow=4, padding=2, pad_value=1.0)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_png(path, grid)
