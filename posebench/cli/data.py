"""`posebench data ...`: prepare, verify and describe dataset roots; make synthetic people."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from posebench.errors import PosebenchError

app = typer.Typer(help="Datasets: prepare | verify | stats | synth | targets.", no_args_is_help=True)

DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help="deepfashion | market | humanart")]
RootOpt = Annotated[Path, typer.Option("--root", "-r", help="Your copy of the dataset.", file_okay=False)]


@app.command()
def prepare(
    dataset: DatasetOpt,
    root: RootOpt,
    out: Annotated[Path | None, typer.Option(help="Manifest folder (default: ROOT/posebench-manifest).")] = None,
    no_hash: Annotated[bool, typer.Option("--no-hash", help="Skip hashing image files (faster).")] = False,
    no_decode: Annotated[bool, typer.Option("--no-decode", help="Do not decode every image (faster; a truncated "
                                            "image then goes unnoticed).")] = False,
    progress: Annotated[bool, typer.Option("--progress/--quiet", help="Progress bars (decoding, hashing).")] = True,
) -> None:
    """Validate a root (as `verify --integrity-only`) and write its canonical split manifest (pairs, images,
    identities, keypoints, hashes); nothing is written when the root has errors."""
    from rich.console import Console

    from posebench.datasets.manifest import prepare as prepare_

    path, manifest = prepare_(dataset, root, out, hash_images=not no_hash, decode_images=not no_decode,
                              progress=progress)
    console = Console()
    for name, sp in manifest["splits"].items():
        c = sp["counts"]
        console.print(f"{name}: {c['images']:,} images, {c['pairs']:,} pairs, {c['identities']:,} identities, "
                      f"pairs sha256 {sp['pairs_sha256'][:16]}…")
    if manifest["warnings"]:
        console.print(f"[yellow]{len(manifest['warnings'])} warning(s)[/] recorded in the manifest")
    console.print(f"manifest: {path}")


@app.command()
def verify(
    dataset: DatasetOpt,
    root: RootOpt,
    integrity_only: Annotated[bool, typer.Option("--integrity-only",
                                                 help="Skip the protocol's pinned counts and hashes.")] = False,
    no_decode: Annotated[bool, typer.Option("--no-decode", help="Do not decode every image.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print problems as JSON.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--quiet", help="Progress bars (off with --json).")] = True,
) -> None:
    """Check a root against the protocol's pinned facts and its own integrity; list every problem (exit 2)."""
    from posebench.datasets.manifest import verify as verify_

    problems = verify_(dataset, root, integrity_only=integrity_only, decode_images=not no_decode,
                       progress=progress and not as_json)
    errors = [p for p in problems if p.severity == "error"]
    if as_json:
        typer.echo(json.dumps({"ok": not errors, "problems": [p.as_dict() for p in problems]}, indent=1))
    else:
        for p in problems:
            typer.echo(str(p), err=p.severity == "error")
        typer.echo(f"{len(errors)} error(s), {len(problems) - len(errors)} warning(s)")
    if errors:
        raise typer.Exit(2)


@app.command()
def stats(
    dataset: DatasetOpt,
    root: RootOpt,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Counts per split and keypoint visibility per joint. Exit 2 when the root has errors (the counts are then of
    what could be read; `posebench data verify` lists the errors)."""
    from rich.console import Console
    from rich.table import Table

    from posebench.datasets.manifest import stats as stats_

    report = stats_(dataset, root)
    if as_json:
        typer.echo(json.dumps(report, indent=1))
        if report["errors"]:
            raise typer.Exit(2)
        return
    console = Console()
    table = Table(title=f"{dataset} ({report['layout']})")
    for col in ("split", "images", "pairs", "identities", "people", "groups", "mean joint visibility"):
        table.add_column(col)
    for name, sp in report["splits"].items():
        vis = sp["joint_visibility"]
        mean = f"{sum(vis.values()) / len(vis):.3f}" if vis else "-"
        table.add_row(name, f"{sp['images']:,}", f"{sp['pairs']:,}", f"{sp['identities']:,}", f"{sp['people']:,}",
                      str(sp["groups"]), mean)
    console.print(table)
    if report["errors"]:
        console.print(f"[red]{report['errors']} error(s)[/]: is this a {dataset} root? run `posebench data verify "
                      f"-d {dataset} -r {root}` for the list")
        raise typer.Exit(2)


def _parse_size(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        h, w = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"expected HxW like 256x176, got {value!r}", param_hint="--size") from None
    return h, w


@app.command()
def synth(
    format: Annotated[str, typer.Option("--format", "-f", help="deepfashion | market | humanart | humansd "
                                        "(humanart + HumanSD's pose files and prompts)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to create.", file_okay=False)],
    identities: Annotated[int, typer.Option(help="Number of people.")] = 8,
    poses: Annotated[int, typer.Option(help="Poses (images) per person.")] = 4,
    size: Annotated[str | None, typer.Option(help="HxW, e.g. 256x176 (default: the format's native size).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same bytes.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Allow writing into a non-empty folder.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--quiet")] = True,
) -> None:
    """Procedurally generated people written in the real on-disk format of a dataset."""
    from posebench.datasets.synth import synthesize

    if format not in ("deepfashion", "market", "humanart", "humansd"):
        raise PosebenchError(f"unknown format {format!r}; choose deepfashion, market, humanart or humansd")
    summary = synthesize(format, out, identities=identities, poses=poses, size=_parse_size(size), seed=seed,
                         overwrite=overwrite, progress=progress)
    typer.echo(f"{summary.format} at {summary.root}: images {summary.images}, pairs {summary.pairs}, "
               f"identities {summary.identities}")


@app.command()
def targets(
    protocol: Annotated[str, typer.Option(help="A pose protocol (humanart-val).")],
    root: RootOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="COCO keypoint JSON to write.", dir_okay=False)],
    profile: Annotated[str, typer.Option(help="Pose profile whose target frame to use.")] = "clean",
) -> None:
    """The targets a pose protocol scores against, as COCO keypoint JSON: every validation image resized and
    centre-cropped to the protocol resolution (clean pose profile), keypoints in the cropped frame."""
    from posebench.humanart_targets import targets_coco
    from posebench.utils.io import atomic_write_text

    coco = targets_coco(root, protocol, profile)
    atomic_write_text(out, json.dumps(coco, indent=1) + "\n")
    typer.echo(f"{len(coco['images']):,} images, {len(coco['annotations']):,} persons in the target frame: {out}")
