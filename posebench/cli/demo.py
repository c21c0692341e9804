"""`posebench demo` and `posebench baseline` (thin layers over posebench.run.demo and posebench.run.baselines)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from posebench.run.demo import DemoPlan


def demo(
    out: Annotated[Path, typer.Option(help="Folder for everything the demo writes (re-running resumes).")] = Path(
        "demo-out"),
    minutes: Annotated[float, typer.Option(help=f"Time budget; the two trainings get up to "
                                          f"{DemoPlan.train_share:.0%} of it, side by side.")] = 10.0,
    seed: Annotated[int, typer.Option(help="Seed of the data, the networks and the samples.")] = 0,
    progress: Annotated[bool, typer.Option("--progress/--quiet")] = True,
) -> None:
    """The whole benchmark loop offline: synthetic data, trained RePoseDM b1 and full, samples, baselines,
    every metric whose weights are here, a leaderboard and the HTML report.

    Example: posebench demo --out demo-out --minutes 10
    """
    from posebench.run.demo import run_demo

    run_demo(out, minutes=minutes, plan=DemoPlan(seed=seed), progress=progress)


def baseline(
    kind: Annotated[str, typer.Option(help="copy-source (the source image) or mean-train (mean training image).")],
    protocol: Annotated[str, typer.Option(help="See `posebench protocols ls`.")],
    root: Annotated[Path, typer.Option(help="Dataset root (your copy).", file_okay=False)],
    out: Annotated[Path, typer.Option(help="Folder for {source}__{target}.png at the protocol resolution.")],
    progress: Annotated[bool, typer.Option("--progress/--quiet")] = True,
) -> None:
    """Write a trivial baseline for every test pair, to score with `posebench eval --pred OUT`.

    Example: posebench baseline --kind copy-source --protocol deepfashion-256x176 --root data/df --out gen/copy
    """
    from posebench.run.baselines import write_baseline

    n = write_baseline(kind, protocol, root, out, progress=progress)
    typer.echo(f"{out}: {n} images written")
