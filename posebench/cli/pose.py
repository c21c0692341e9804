"""`posebench eval-pose`: HumanSD pose-accuracy metrics (AP, AP(m), CAP, PCE) from COCO keypoint files (thin
layer over posebench.metrics.pose); `posebench pose detect`: COCO keypoint results of an estimator on a folder of
images (thin layer over posebench.pose.detect)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

pose_app = typer.Typer(help="Pose estimation: detect keypoints in images (COCO results format).",
                       no_args_is_help=True)


def _one_spelling(value, old_value, name: str, old_name: str):
    """An option kept under its older spelling (hidden from --help): either may be given, not both differently."""
    from posebench.errors import PosebenchError

    if value is not None and old_value is not None and value != old_value:
        raise PosebenchError(f"{name} {value} and {old_name} {old_value} are the same option (two spellings); pass one")
    return value if value is not None else old_value


@pose_app.command("detect")
def detect(
    images: Annotated[Path, typer.Option("--images", help="Folder of images (searched recursively).")],
    out: Annotated[Path, typer.Option("--out", help="COCO keypoint results JSON to write.")],
    estimator: Annotated[str, typer.Option(help="Registered pose estimator (tiny-random, synthetic-posenet with "
                                           "--pose-weights from `pose train`, higherhrnet-w32-coco, "
                                           "higherhrnet-w48-coco-udp, higherhrnet-w48-humanart-udp).")]
    = "higherhrnet-w32-coco",
    weights: Annotated[Path | None, typer.Option("--pose-weights", help="Checkpoint file to use instead of the "
                                                 "registered one.")] = None,
    weights_old: Annotated[Path | None, typer.Option("--weights", hidden=True)] = None,  # the older spelling
    gt: Annotated[Path | None, typer.Option("--gt", help="COCO ground truth: detect only the images its 'images' "
                                            "list names (ids by file_name); other images in the folder are "
                                            "skipped and counted.")] = None,
    no_flip: Annotated[bool, typer.Option("--no-pose-flip", help="Skip the flip test.")] = False,
    no_flip_old: Annotated[bool, typer.Option("--no-flip", hidden=True)] = False,  # the older spelling
    device: Annotated[str, typer.Option(help="Torch device.")] = "cpu",
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.", min=1)] = 8,
    progress: Annotated[bool, typer.Option("--progress/--quiet")] = True,
) -> None:
    """Detect people's keypoints in every image of a folder and write COCO keypoint results.

    Images of any size are letterboxed to the estimator's input and keypoints mapped back to original pixels.
    With --gt, only the images the ground truth names are detected (others in the folder are skipped, and
    counted); without it, image ids are 1..N by sorted relative path and the mapping is written to OUT with
    suffix `.image_ids.json`. Example: posebench pose detect --images HumanArt/images --gt val.json --out dt.json
    """
    from posebench.metrics.pose import load_json
    from posebench.pose.detect import assign_image_ids, detect_images, list_images, match_gt_images
    from posebench.utils.device import checked_device
    from posebench.utils.io import atomic_write_text

    checked_device(device)
    weights = _one_spelling(weights, weights_old, "--pose-weights", "--weights")
    no_flip = no_flip or no_flip_old
    files = list_images(images)
    if gt is not None:
        chosen = match_gt_images(files, images, load_json(gt, "ground-truth"), gt)
        files, ids = chosen.images, chosen.ids
        if chosen.skipped:
            shown = ", ".join(p.relative_to(images).as_posix() for p in chosen.skipped[:3])
            typer.echo(f"note: {len(chosen.skipped)} of the {len(files) + len(chosen.skipped)} images under {images} "
                       f"are not in {gt} and were skipped (e.g. {shown}); scoring the {len(files)} it names")
    else:
        ids = assign_image_ids(files, images)
    dets = detect_images(files, estimator, weights=weights, device=device, flip_test=not no_flip,
                         batch_size=batch_size, image_ids=ids, progress=progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(dets) + "\n")
    typer.echo(f"wrote {out}: {len(dets)} detections in {len(files)} images")
    if gt is None:
        mapping = {p.relative_to(images).as_posix(): ids[str(p)] for p in files}
        side = out.with_name(out.stem + ".image_ids.json")
        atomic_write_text(side, json.dumps(mapping, indent=1) + "\n")
        typer.echo(f"wrote {side} (file name -> image id)")


@pose_app.command("train")
def train(
    root: Annotated[Path, typer.Option(help="Dataset root with exact keypoints (synthetic people: `posebench data "
                                       "synth`).", file_okay=False)],
    out: Annotated[Path, typer.Option(help="safetensors file to write (use with --estimator synthetic-posenet "
                                      "--pose-weights OUT).")],
    dataset: Annotated[str, typer.Option(help="Dataset format of the root: deepfashion, market or humanart.")]
    = "deepfashion",
    split: Annotated[str, typer.Option(help="Split to train on.")] = "train",
    val_split: Annotated[str, typer.Option(help="Split for the before/after joint error (auto: test; validation "
                                           "for Human-Art).")] = "auto",
    steps: Annotated[int | None, typer.Option("--max-steps", help="Optimizer steps [default: 600].")] = None,
    steps_old: Annotated[int | None, typer.Option("--steps", hidden=True)] = None,  # the older spelling
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 16,
    input_size: Annotated[int, typer.Option(help="Square network input side (multiple of 16).")] = 128,
    seed: Annotated[int, typer.Option(help="Seed (initialization and batches).")] = 0,
    progress: Annotated[bool, typer.Option("--progress/--quiet")] = True,
) -> None:
    """Train a small single-person pose network on synthetic people (a synthetic-domain estimator).

    Example: posebench pose train --root synth/df --out posenet.safetensors --max-steps 600
    """
    from posebench.pose.train import train_pose

    steps = _one_spelling(steps, steps_old, "--max-steps", "--steps")
    steps = 600 if steps is None else steps
    summary = train_pose(root, dataset, out, split=split, steps=steps, batch_size=batch_size, input_size=input_size,
                         seed=seed, val_split=val_split, progress=progress)
    err = summary["joint_error_px"]
    typer.echo(f"wrote {out}: trained {summary['steps']} steps on the {summary['images']} images of split "
               f"{summary['split']!r}; mean joint error on the {err['images']} images of split "
               f"{err['evaluated_on']!r}: {err['untrained']:.1f} px untrained -> {err['trained']:.1f} px trained. A "
               "synthetic-domain estimator: do not use it on real photographs.")
    if err["trained"] >= err["untrained"]:
        from rich.console import Console

        Console(stderr=True).print(
            f"[yellow]warning:[/] the trained network is no better than the untrained one on split "
            f"{err['evaluated_on']!r} ({err['trained']:.1f} >= {err['untrained']:.1f} px): train longer (--max-steps), "
            "on more images, or check the keypoints of the root")


def eval_pose(
    gt: Annotated[Path, typer.Argument(help="COCO keypoint ground-truth JSON (images, annotations).",
                                       metavar="GT")],
    detections: Annotated[Path, typer.Argument(help="COCO keypoint results JSON: a list of {image_id, keypoints "
                                               "(51 floats), score} (or a dict with an 'annotations' list).",
                                               metavar="DETECTIONS")],
    profile: Annotated[str, typer.Option(help="Pose profile: clean (dataset-level, fixed), humansd "
                                         "(released code, per-10-image batches, CAP bug) or a pose-profile "
                                         "YAML file.")] = "clean",
    out: Annotated[Path | None, typer.Option(help="Write the full result (with per-image PCE) as JSON here.")] = None,
) -> None:
    """Score keypoint detections against a ground truth: AP, AP(m), CAP (fractions) and PCE.

    Example: posebench eval-pose gt.json dets.json --profile humansd --out pose.json
    """
    from rich.console import Console
    from rich.table import Table

    from posebench.errors import PosebenchError
    from posebench.metrics.pose import evaluate_pose, load_json
    from posebench.utils.io import atomic_write_text

    gt_data = load_json(gt, "ground-truth")
    dets = load_json(detections, "detections")
    if isinstance(dets, dict):
        if not isinstance(dets.get("annotations"), list):
            raise PosebenchError(f"the detections file {detections} must hold a list of results "
                                 "(or a dict with an 'annotations' list)")
        dets = dets["annotations"]
    try:
        res = evaluate_pose(gt_data, dets, profile=profile)
    except PosebenchError as exc:  # its messages name the entry (detections[3], images[0]); add the files
        raise PosebenchError(f"{exc} (ground truth {gt}, detections {detections})") from None

    def fmt(v: float | None, scale: float = 100.0) -> str:
        return "n/a" if v is None else f"{v * scale:.2f}"

    table = Table(title=f"pose metrics ({res['profile']})")
    for col in ("AP", "AP(m)", "CAP", "PCE", "images", "GT", "detections"):
        table.add_column(col, justify="right")
    table.add_row(fmt(res["ap"]), fmt(res["ap_m"]), fmt(res["cap"]), fmt(res["pce"], 1.0), str(res["n_images"]),
                  str(res["n_gt"]), str(res["n_dt"]))
    Console(soft_wrap=True).print(table)
    typer.echo("AP, AP(m), CAP shown x100; n/a = no GT in range" +
               (f"; mean over {res['n_batches']} batches" if "n_batches" in res else ""))
    if out is not None:
        atomic_write_text(out, json.dumps(res, indent=2, default=str) + "\n")
        typer.echo(f"wrote {out}")
