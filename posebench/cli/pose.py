"""`posebench eval-pose`: HumanSD pose-accuracy metrics (AP, AP(m), CAP, PCE) from COCO keypoint files (thin
layer over posebench.metrics.pose)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def eval_pose(
    gt: Annotated[Path, typer.Argument(help="COCO keypoint ground-truth JSON (images, annotations).",
                                       metavar="GT")],
    detections: Annotated[Path, typer.Argument(help="COCO keypoint results JSON: a list of {image_id, keypoints "
                                               "(51 floats), score} (or a dict with an 'annotations' list).",
                                               metavar="DETECTIONS")],
    profile: Annotated[str, typer.Option(help="Metric profile: clean (dataset-level, fixed) or humansd "
                                         "(released code, per-10-image batches, CAP bug).")] = "clean",
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
    res = evaluate_pose(gt_data, dets, profile=profile)  # type: ignore[arg-type]

    def fmt(v: float | None, scale: float = 100.0) -> str:
        return "n/a" if v is None else f"{v * scale:.2f}"

    table = Table(title=f"pose metrics ({res['profile']})")
    for col in ("AP", "AP(m)", "CAP", "PCE", "images", "GT", "detections"):
        table.add_column(col, justify="right")
    table.add_row(fmt(res["ap"]), fmt(res["ap_m"]), fmt(res["cap"]), fmt(res["pce"], 1.0), str(res["n_images"]),
                  str(res["n_gt"]), str(res["n_dt"]))
    Console(soft_wrap=True).print(table)
    typer.echo("AP, AP(m), CAP shown x100; n/a = no GT in range" +
               (f"; mean over {res['n_batches']} batches of 10" if res["profile"] == "humansd" else ""))
    if out is not None:
        atomic_write_text(out, json.dumps(res, indent=2, default=str) + "\n")
        typer.echo(f"wrote {out}")
