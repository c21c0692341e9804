"""`posebench train-reference` and `posebench sample`: the bundled reference model (reposedm).

Thin layer: reposedm is imported inside the commands (posebench itself never depends on it). Several
processes or nodes: `accelerate launch -m posebench train-reference ...` (or torchrun).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def train_reference(
    protocol: Annotated[str, typer.Option(help="Protocol whose dataset is trained on (its train split).")],
    root: Annotated[Path, typer.Option(help="Dataset root (your copy).", file_okay=False)],
    out: Annotated[Path, typer.Option(help="Run folder (config.json, metrics.jsonl, checkpoints/, samples/).")],
    config: Annotated[str | None, typer.Option(
        help="Named config ({tiny,demo,deepfashion-256,deepfashion-512,market-128}-{b1,b2,full}; RePoseSD: "
             "{tiny-sd,humanart-sd}-{humansd,reposesd}) or a YAML file; default on --resume: the run's own.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest checkpoint in --out.")] = False,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many optimizer steps in total.")] = None,
    max_minutes: Annotated[float | None, typer.Option(
        help="Also stop (with a checkpoint) after this many minutes of training; --resume continues.")] = None,
    split: Annotated[str, typer.Option(help="Split to train on.")] = "train",
    val_split: Annotated[str | None, typer.Option(help="Split for the validation grids (default: the "
                                                  "protocol's test split).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Print the resolved config and exit.")] = False,
    allow_random_estimator: Annotated[bool, typer.Option(
        "--allow-random-estimator", help="Train a paper-size `full` config with a randomly initialised guidance "
        "pose estimator (refused otherwise); the run and its samples' results are marked non-canonical.")] = False,
    text_pose_data: Annotated[str, typer.Option(
        help="RePoseSD / HumanSD configs: `humansd` (HumanSD's mapping files and pose/*.npz under --root), "
             "`humanart` (Human-Art's captions and annotated poses) or `auto` (humansd when its mapping file "
             "exists).")] = "auto",
    progress: Annotated[bool, typer.Option("--progress/--quiet")] = True,
) -> None:
    """Train RePoseDM (full) or its ablations B1 / B2, or RePoseSD / HumanSD (`*-sd-*` configs), with HF accelerate.

    Example: posebench train-reference --config tiny-full --protocol deepfashion-256x176 --root data/df --out runs/t
    """
    from posebench.errors import PosebenchError
    from posebench.protocols import get_protocol
    from reposedm.config import load_config
    from reposedm.data import PairSource

    spec = get_protocol(protocol)
    if max_minutes is not None and max_minutes <= 0:
        raise PosebenchError(f"--max-minutes must be positive, got {max_minutes}")
    if config is None:
        if not (resume and (out / "config.json").is_file()):
            raise PosebenchError("pass --config NAME|FILE (or --resume an existing run folder)")
        config = str(out / "config.json")
    cfg = load_config(config)
    if allow_random_estimator:
        from dataclasses import replace

        g = replace(cfg.model.guidance, allow_random_estimator=True)
        cfg = replace(cfg, model=replace(cfg.model, guidance=g))
    if dry_run:
        typer.echo(cfg.to_json())
        return
    if tuple(cfg.model.resolution) != tuple(spec.resolution):
        typer.echo(f"note: config {cfg.name} trains at {cfg.model.resolution[0]}x{cfg.model.resolution[1]}, "
                   f"protocol {spec.name} evaluates at {spec.resolution[0]}x{spec.resolution[1]}; images are "
                   "resized for training and sampling", err=True)
    from reposedm.train import train

    if getattr(cfg, "family", None) == "reposesd":
        source = val_source = _text_pose_source(spec, root, split, text_pose_data)
    else:
        source = PairSource(spec.dataset, root, split)
        val_source = PairSource(spec.dataset, root, val_split or spec.split)
    result = train(cfg, source=source, out=out, resume=resume, max_steps=max_steps, val_source=val_source,
                   progress=progress, max_seconds=None if max_minutes is None else 60.0 * max_minutes)
    if not result.main_process:  # the other ranks of torchrun / accelerate launch: rank 0 reports
        return
    last = f"{result.losses[-1]:.4f}" if result.losses else "n/a"
    why = " (time limit reached)" if result.stopped_by == "time" else ""
    typer.echo(f"{out}: step {result.step}{why}, last loss {last}, checkpoint {result.last_checkpoint}")


def _text_pose_source(spec: Any, root: Path, split: str, layout: str) -> Any:
    """Where a RePoseSD run's text-image-pose items come from (a Human-Art root: HumanSD's layout or its captions)."""
    from posebench.datasets.humansd import mapping_file
    from posebench.errors import PosebenchError
    from reposedm.sd.data import TextPoseSource

    if spec.dataset != "humanart":
        raise PosebenchError(f"RePoseSD / HumanSD configs train on Human-Art text-image-pose data: use --protocol "
                             f"humanart-val, not {spec.name}")
    if layout not in ("auto", "humansd", "humanart"):
        raise PosebenchError(f"--text-pose-data must be auto, humansd or humanart, got {layout!r}")
    if layout == "auto":
        layout = "humansd" if mapping_file(root, split) is not None else "humanart"
    return TextPoseSource(layout, root, split)


def sample(
    run: Annotated[Path, typer.Option(help="Run folder (newest checkpoint) or a checkpoint folder.")],
    protocol: Annotated[str, typer.Option(help="Protocol (dataset, split, output resolution).")],
    root: Annotated[Path, typer.Option(help="Dataset root.", file_okay=False)],
    out: Annotated[Path, typer.Option(help="Folder for {source}__{target}.png images.")],
    split: Annotated[str | None, typer.Option(help="Split (default: the protocol's).")] = None,
    scheduler: Annotated[str, typer.Option(
        help="ddim, ddpm, dpm-solver, unipc, euler-ancestral, or a diffusers scheduler class name (e.g. "
             "EulerDiscreteScheduler), put on the run's training schedule.")] = "ddim",
    steps: Annotated[int, typer.Option(help="Sampling steps.")] = 50,
    guidance_scale: Annotated[float | None, typer.Option(help="w_c, classifier-free guidance (default 2).")] = None,
    pose_guidance_scale: Annotated[float | None, typer.Option(help="eta, pose-field gradient guidance "
                                                              "(default: the run's for full, else 0).")] = None,
    seed: Annotated[int, typer.Option(help="Image k uses a generator seeded by (seed, k).")] = 0,
    limit: Annotated[int | None, typer.Option(help="Only the first N pairs.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 8,
    device: Annotated[str, typer.Option(help="torch device.")] = "cpu",
    ema: Annotated[bool, typer.Option("--ema/--raw", help="EMA weights (default) or the raw ones.")] = True,
    save_warped: Annotated[bool, typer.Option("--save-warped", help="Also write OUT/warped/: the source warped "
                                              "by each RPA iteration (paper fig. 9).")] = False,
    progress: Annotated[bool, typer.Option("--progress/--quiet")] = True,
) -> None:
    """Generate a protocol split with a trained run; `posebench eval --pred OUT` scores the folder directly.

    Resumable: finished images are skipped. Example: posebench sample --run runs/t --protocol
    deepfashion-256x176 --root data/df --out gen/ --steps 50
    """
    from posebench.utils.device import checked_device
    from reposedm.generate import generate

    checked_device(device)
    result = generate(run, protocol=protocol, root=root, out=out, split=split, scheduler=scheduler, steps=steps,
                      guidance_scale=guidance_scale, pose_guidance_scale=pose_guidance_scale, seed=seed,
                      limit=limit, batch_size=batch_size, device=device, ema=ema, save_warped=save_warped,
                      progress=progress)
    typer.echo(f"{out}: {result.written} written, {result.skipped} already there, {result.total} pairs")
