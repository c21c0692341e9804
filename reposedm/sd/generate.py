"""Sample a RePoseSD / HumanSD run over a Human-Art split into the files `posebench eval --protocol humanart-val`
scores: `{scenario}/{stem}.png`, one image per validation image, from its caption and its annotated people in the
clean target frame (the frame the protocol scores in), HumanSD's evaluation settings by default (DDIM 50 steps,
text CFG 9 with its negative prompt).

Image k (the k-th validation image, sorted by key) uses the generator of `image_seed(seed, k)`: a resumed or
limited run or another batch size give the same image k (on the same kind of device: CPU and CUDA generators
differ). Finished images are skipped; each PNG is written
atomically; settings that differ from those of the images already in the folder are refused.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from posebench.errors import PosebenchError
from posebench.utils.io import atomic_write_text
from reposedm.generate import RESUME_KEYS, GenerateResult, _check_resume, chosen_positions, sampling_provenance
from reposedm.png import to_uint8, write_png
from reposedm.sampling import pose_guidance_rule_for
from reposedm.sd.data import TextPoseDataset, TextPoseSource, collate_text_pose


def generate_text_pose(run: Path, *, protocol: str, root: Path, out: Path, split: str | None = None,
                       scheduler: str = "ddim", steps: int = 50, guidance_scale: float | None = None,
                       pose_guidance_scale: float | None = None, seed: int = 0, limit: int | None = None,
                       batch_size: int = 8, device: str = "cpu", ema: bool = True, indices: list[int] | None = None,
                       progress: bool = True) -> GenerateResult:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from posebench.images import resize
    from posebench.protocols import get_protocol
    from posebench.utils.progress import Progress
    from reposedm.checkpoints import load_pipeline, weights_fingerprint
    from reposedm.train import build_pose_field

    spec = get_protocol(protocol)
    if spec.dataset != "humanart":
        raise PosebenchError(f"{run} is a RePoseSD / HumanSD run (text + pose -> image); it samples the Human-Art "
                             f"protocol humanart-val, not {spec.name}")
    split = split or spec.split
    pipe, cfg, ckpt = load_pipeline(run, ema=ema, scheduler=scheduler, device=device,
                                    pose_estimator=None if pose_guidance_scale != 0.0 else False)
    pipe.set_progress_bar_config(disable=True)
    m, g = cfg.model, cfg.model.guidance
    w = m.guidance_scale if guidance_scale is None else guidance_scale
    eta = (g.pose_guidance_scale if g.enabled else 0.0) if pose_guidance_scale is None else pose_guidance_scale
    pose_field = None
    if eta != 0.0:
        pose_field = pipe.pose_estimator.pose_field() if pipe.pose_estimator is not None else build_pose_field(
            replace(cfg, model=replace(m, guidance=replace(g, enabled=True))), torch.device(device))
    # Human-Art's own captions and annotated people: the validation split has no HumanSD pose files to trust
    ds = TextPoseDataset(TextPoseSource("humanart", Path(root), split), m.resolution, m.pose_threshold)
    order = sorted(range(len(ds)), key=lambda i: ds.records[i].key)
    chosen = chosen_positions(indices, limit, len(order), "image")
    names = {k: f"{ds.records[order[k]].key}.png" for k in chosen}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    todo = [k for k in chosen if not (out / names[k]).exists()]
    target_size = tuple(spec.resolution)
    resized = tuple(m.resolution) != target_size
    rule = pose_guidance_rule_for(pipe.config.train_mode)  # eq. 16 after eq. 15 training, else eq. 19
    settings = {
        "run": str(run), "checkpoint": str(ckpt), "config": cfg.name, "variant": m.variant,
        "weights": "ema" if ema else "raw", "weights_sha256": weights_fingerprint(ckpt, "ema" if ema else "model"),
        "protocol": spec.name, "split": split, "scheduler": scheduler, "steps": steps, "guidance_scale": w,
        "negative_prompt": m.negative_prompt, "pose_guidance_scale": eta,
        "pose_guidance_rule": rule if eta != 0.0 else None, "seed": seed,
        "model_resolution": list(m.resolution), "output_resolution": list(target_size), "resized": resized,
    }
    record_file = out / "sampling.json"
    _check_resume(out, record_file, settings, len(chosen) - len(todo), (*RESUME_KEYS, "negative_prompt"))
    provenance = sampling_provenance(ckpt, g, eta)
    atomic_write_text(record_file, json.dumps({**settings, **provenance, "images": len(chosen), "complete": False},
                                              indent=2) + "\n")
    columns = [TextColumn("sample"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("sample", total=len(chosen), completed=len(chosen) - len(todo))
        for lo in range(0, len(todo), batch_size):
            ks = todo[lo: lo + batch_size]
            batch = collate_text_pose([ds[order[k]] for k in ks])
            result = pipe(batch["prompt"], batch["pose_image"], num_inference_steps=steps, guidance_scale=w,
                          pose_guidance_scale=eta, pose_field=pose_field, people_xy=batch["people_xy"],
                          people_visible=batch["people_visible"], sample_grad=g.sample_grad, seed=seed, indices=ks,
                          pose_guidance_rule=rule)
            for k, img in zip(ks, result.images, strict=True):
                array = to_uint8(img)
                if resized:
                    array = resize(array, target_size, "pil-bicubic")
                (out / names[k]).parent.mkdir(parents=True, exist_ok=True)
                write_png(out / names[k], array)
            bar.update(task, advance=len(ks))
    record: dict[str, Any] = {**settings, **provenance, "images": len(chosen), "complete": True,
                              "seeding": "image k uses image_seed(seed, k), k = index in the key-sorted split"}
    atomic_write_text(record_file, json.dumps(record, indent=2) + "\n")
    return GenerateResult(out, len(todo), len(chosen) - len(todo), len(chosen), record)
