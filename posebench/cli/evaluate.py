"""`posebench eval`: score generated images (thin layer over posebench.evaluate)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer

from posebench.errors import PosebenchError


def eval_(
    pred: Annotated[Path, typer.Option(help="Folder of generated images, one per test pair.", file_okay=False)],
    protocol: Annotated[str | None, typer.Option(help="See `posebench protocols ls` (omit with --gt).")] = None,
    root: Annotated[Path | None, typer.Option(help="Dataset root (your copy).", file_okay=False)] = None,
    out: Annotated[Path, typer.Option(help="Results JSON to write (a per-image CSV goes beside it).")] = Path(
        "results.json"),
    profile: Annotated[str | None, typer.Option(help="Metric profile (default: the protocol's).")] = None,
    metrics: Annotated[str | None, typer.Option(
        help="Comma list, e.g. fid, kid, ssim, lpips, psnr (written fid,kid,...); on request: is (Inception Score), "
        "pose accuracy ap, ap_m, cap, pce and pckh (an estimator runs on the generated images); humanart-val also "
        "clipsim (CLIP score against each image's prompt).")] = None,
    gt: Annotated[Path | None, typer.Option(
        help="Two plain folders instead of a protocol: ground truth matched to --pred by file name, no dataset "
        "root (non-canonical).", file_okay=False)] = None,
    real: Annotated[Path | None, typer.Option(
        help="With --gt: the FID real set (default: the --gt folder).", file_okay=False)] = None,
    fid_weights: Annotated[Path | None, typer.Option(
        help="Inception weights instead of the profile's: a file or a registry name (e.g. inception-fid-helper, "
        "the FID network a pip package ships, usable offline; non-canonical).")] = None,
    lpips_weights: Annotated[Path | None, typer.Option(help="LPIPS backbone weights: a file or a registry "
                                                       "name.")] = None,
    is_weights: Annotated[Path | None, typer.Option(
        help="Inception Score classifier (a full torchvision Inception-v3 state dict; a file or a registry name) "
        "instead of the profile's.")] = None,
    clip_weights: Annotated[Path | None, typer.Option(
        help="CLIPSIM (humanart-val, --metrics ...,clipsim): a folder with a CLIP model in the Hugging Face layout "
        "(config.json, model.safetensors or pytorch_model.bin, vocab.json, merges.txt) instead of the registry's "
        "openai/clip-vit-base-patch16 files (non-canonical).")] = None,
    scheme: Annotated[str | None, typer.Option(
        help="Naming scheme: posebench, patn, gfla, nted, pidm or pcdms.")] = None,
    name_map: Annotated[Path | None, typer.Option(
        help="Map of a release's own image names to dataset names (PCDMs' imgN files): JSON {name: dataset "
        "name} or two columns per line.", dir_okay=False)] = None,
    allow_missing: Annotated[bool, typer.Option(help="Score a subset when pairs are missing.")] = False,
    allow_lossy: Annotated[bool, typer.Option(help="Accept JPEG predictions (flagged).")] = False,
    best_of: Annotated[int, typer.Option(help="Declare best-of-N sampling (recorded).")] = 1,
    oracle_selection: Annotated[bool, typer.Option(help="Declare that selection looked at the ground truth.")] = False,
    test_fid: Annotated[bool, typer.Option(help="Also FID/KID against the test ground truth.")] = False,
    batch_size: Annotated[int, typer.Option(help="Images per batch.", min=1)] = 16,
    workers: Annotated[int | None, typer.Option(
        help="Processes decoding and resizing images (default: none on CPU; with a GPU one per core beyond the main "
        "process, at most 8).",
        min=0)] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Recompute real-set statistics.")] = False,
    real_limit: Annotated[int | None, typer.Option(help="Cap the real set (development; non-canonical).")] = None,
    compare: Annotated[str | None, typer.Option(help="Board name or YAML: show the nearest rows.")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", "-n", help="Check the inputs and print what would be used (profile, metrics, weight files and "
        "their state, real-set sizes, non-canonical reasons) as JSON; computes nothing.")] = False,
    pose_estimator: Annotated[str | None, typer.Option(
        help="Estimator run on the generated images for pose metrics: pose protocols (humanart-val, default "
        "higherhrnet-w48-humanart-udp), or image protocols when --metrics asks for ap/ap_m/cap/pce/pckh (default "
        "higherhrnet-w32-coco). tiny-random and synthetic-posenet give non-canonical results.")] = None,
    pose_weights: Annotated[Path | None, typer.Option(
        help="Estimator checkpoint file (pose protocols, or pose metrics of image protocols).")] = None,
    detections: Annotated[Path | None, typer.Option(
        help="Pose protocols only: precomputed COCO keypoint results (Human-Art image ids) instead of an "
        "estimator.")] = None,
    skip_missing_weights: Annotated[bool, typer.Option(
        "--skip-missing-weights", help="Leave out the metrics whose weight files are not in the cache (listed, "
        "with the command that fetches each, and recorded in the results) instead of failing.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--quiet", help="Progress bars (plain progress lines when "
                                           "not on a terminal).")] = True,
    pose_flip: Annotated[bool, typer.Option("--pose-flip/--no-pose-flip", help="The pose estimator's flip test "
                                            "(pose protocols, or pose metrics of image protocols; "
                                            "HigherHRNet's published setting is on).")] = True,
) -> None:
    """Score a folder of generated images with FID, KID, SSIM, LPIPS and PSNR under a named profile.

    On request (--metrics ...,is,ap,ap_m,cap,pce,pckh) the Inception Score and a pose estimator's accuracy on the
    generated images against the target keypoints are reported too.

    Pose protocols (humanart-val) run a pose estimator on the generated images instead and report AP, AP(m),
    CAP and PCE against the target poses, per scenario, with per-scenario FID/KID, and on request CLIPSIM (the CLIP
    score of each generated image against its prompt); --profile is then the pose-metric profile (clean, humansd or
    a pose-profile YAML file), which also chooses CLIPSIM's computation.

    Two plain folders (--pred DIR --gt DIR [--real DIR], no --protocol, no --root) are scored by file name as
    clean-fid's compute_fid(dir1, dir2) does; results are non-canonical.
    """
    from posebench import weights
    from posebench.run.evaluator import POSE_METRICS, EvalConfig, evaluate
    from posebench.utils.device import checked_device

    if (protocol is None) == (gt is None):
        raise PosebenchError("give --protocol (with --root) for a dataset, or --gt for two plain folders")
    if protocol is not None and root is None:
        raise PosebenchError(f"--protocol {protocol} needs --root, your copy of its dataset")
    if gt is not None and root is not None:
        raise PosebenchError("--gt scores two plain folders without a dataset root: drop --root")
    checked_device(device)
    fid_weights, lpips_weights, is_weights, pose_weights = (
        weights.file_or_registry_name(w, fetch=not dry_run) for w in (fid_weights, lpips_weights, is_weights,
                                                                       pose_weights))
    wanted = tuple(m.strip() for m in metrics.split(",") if m.strip()) if metrics else None
    cfg = EvalConfig(
        protocol=protocol, root=root, pred=pred, out=out, profile=profile, metrics=wanted, gt=gt, real=real,
        fid_weights=fid_weights, lpips_weights=lpips_weights, is_weights=is_weights, scheme=scheme, name_map=name_map,
        allow_missing=allow_missing, allow_lossy=allow_lossy, best_of=best_of, oracle_selection=oracle_selection,
        test_fid=test_fid, batch_size=batch_size, workers=workers, device=device, use_cache=not no_cache,
        real_limit=real_limit, pose_estimator=pose_estimator, pose_weights=pose_weights, detections=detections,
        flip_test=pose_flip, progress=progress, clip_weights=clip_weights)
    kind = cfg.kind
    if clip_weights is not None and "clipsim" not in (wanted or ()):
        raise PosebenchError("--clip-weights applies to the metric clipsim (humanart-val): add it to --metrics, e.g. "
                             "--metrics ap,clipsim")
    if kind == "pose":
        unused = {"--lpips-weights": lpips_weights is not None, "--scheme": scheme is not None,
                  "--name-map": name_map is not None, "--is-weights": is_weights is not None,
                  "--best-of": best_of != 1, "--oracle-selection": oracle_selection, "--test-fid": test_fid,
                  "--real-limit": real_limit is not None, "--compare": compare is not None}
        given = [k for k, v in unused.items() if v]
        if given:
            raise PosebenchError(f"{', '.join(given)} do not apply to the pose protocol {protocol}")
    else:
        if detections is not None:
            raise PosebenchError(f"--detections applies to pose protocols (humanart-val), not to "
                                 f"{protocol or 'two plain folders'}; image protocols run the estimator "
                                 "(--pose-estimator) on the generated images")
        given = [opt for opt, on in (("--pose-estimator", pose_estimator is not None),
                                     ("--pose-weights", pose_weights is not None), ("--no-pose-flip", not pose_flip))
                 if on]
        if given and not set(POSE_METRICS) & set(wanted or ()):
            raise PosebenchError(f"{', '.join(given)} apply to pose protocols (humanart-val) and to the pose metrics "
                                 f"of image protocols, and {protocol or 'this run'} is asked for none: add some of "
                                 f"{','.join(POSE_METRICS)} to --metrics (e.g. --metrics ssim,ap)")
    if skip_missing_weights:
        from rich.console import Console
        from rich.markup import escape

        from posebench.run.missing_weights import without_missing_weights

        cfg = without_missing_weights(cfg)
        for metric, why in (cfg.skipped or {}).items():
            # soft_wrap: one line per metric, so the fetch command can be copied
            Console(stderr=True, soft_wrap=True).print(f"[yellow]skipped {metric}:[/] {escape(why)}")
    if dry_run:
        from posebench.run.evaluator import dry_run as resolve

        typer.echo(json.dumps(resolve(cfg), indent=1))
        raise typer.Exit()
    board = None
    if compare is not None:  # load before the (long) evaluation so a wrong name fails at once
        from posebench.results.leaderboard import load_board, resolve_board

        board = load_board(resolve_board(compare))
    result = evaluate(cfg)
    if not result:  # in a multi-process run only the main process writes and reports
        return
    if kind == "pose":
        _print_pose(result, out)
        return
    _print(result, out)
    if board is not None:
        _compare(result, board)


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) and math.isfinite(value) else "–"


def _print_pose(result: dict, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    metrics = list(result["metrics"])
    table = Table(title=f"{result['protocol']['name']} · pose profile {result['profile']['name']}")
    for col in ("scenario", "n", *(f"{m} {'↑' if result['metrics'][m]['higher_is_better'] else '↓'}"
                                   for m in metrics)):
        table.add_column(col)
    for scenario, row in result["breakdown"]["rows"].items():
        table.add_row(scenario, str(row["n"]), *(_fmt(row.get(m)) for m in metrics))
    table.add_row("[bold]overall[/]", str(result["predictions"]["count"]),
                  *(_fmt(result["metrics"][m]["value"]) for m in metrics))
    console.print(table)
    for w in result["warnings"]:
        console.print(f"[yellow]warning:[/] {w}")
    console.print(f"results: {out}" + (" (replaced the previous file)" if result.get("replaced_previous") else ""))


def _print(result: dict, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    title = f"{result['protocol']['name']} · {result['profile']['name']}@{result['profile']['version']}"
    table = Table(title=title)
    for col in ("metric", "value", "± se", "n"):
        table.add_column(col)
    spreads = []
    for name, m in result["metrics"].items():
        arrow = "↑" if m["higher_is_better"] else "↓"
        se = "" if m["stderr"] is None else f"{m['stderr']:.4f}"
        subset_std = (m.get("details") or {}).get("subset_std")
        if m["stderr"] is None and subset_std is not None:  # KID: a spread over subsets, not a standard error
            se = f"(sd {subset_std:.4f})"
            spreads.append(f"{name}: sd = standard deviation over {m['details'].get('subsets')} subsets of "
                           f"{m['details'].get('subset_size')} images, not a standard error")
        table.add_row(f"{name} {arrow}", f"{m['value']:.4f}", se, str(m["n"]))
    console.print(table)
    for line in spreads:
        console.print(f"[dim]{line}[/]")
    for w in result["warnings"]:
        console.print(f"[yellow]warning:[/] {w}")
    console.print(f"results: {out}" + (" (replaced the previous file)" if result.get("replaced_previous") else ""))


def _compare(result: dict, board, k: int = 3) -> None:
    """The `k` board rows nearest to this result in the board's first metric, with this result among them."""
    from rich.console import Console
    from rich.table import Table

    metric = next((m for m in board.metrics if m in result["metrics"]), None)
    console = Console()
    if metric is None:
        console.print(f"[yellow]board {board.name} shares no metric with these results[/]")
        return
    ours = float(result["metrics"][metric]["value"])
    rows = [e for e in board.entries if metric in e.values]
    nearest = sorted(rows, key=lambda e: abs(float(e.values[metric]) - ours))[:k]
    table = Table(title=f"nearest rows of {board.name} by {metric}")
    for col in ("method", *(f"{m} {board.arrow(m)}" for m in board.metrics), "how"):
        table.add_column(col)
    mine = f"{result['profile']['name']}@{result['profile']['version']}" + ("" if result["canonical"] else "†")
    merged = [(float(e.values[metric]), e.method, [e.display(m) for m in board.metrics], e.how) for e in nearest]
    merged.append((ours, "[bold]this run[/]", [_fmt_metric(result, m) for m in board.metrics], f"measured: {mine}"))
    for _, method, values, how in sorted(merged, key=lambda r: r[0], reverse=board.higher_is_better(metric)):
        table.add_row(method, *values, how)
    console.print(table)
    console.print("Reported rows were computed with each paper's own code: compare only rows measured with the "
                  "same profile (see docs/metrics.md). † non-canonical split.")


def _fmt_metric(result: dict, metric: str) -> str:
    m = result["metrics"].get(metric)
    return "–" if m is None else f"{float(m['value']):.4f}"
