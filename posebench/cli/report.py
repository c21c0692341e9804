"""`posebench report`: one self-contained HTML page from results files (thin layer over
posebench.results.report)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report(
    results: Annotated[list[Path], typer.Argument(
        help="Results JSON files of one protocol (posebench eval --out), each with its per-image CSV beside it; the "
        "sample grids (pair protocols) also need the dataset root and predictions they recorded (--samples 0: "
        "neither).", metavar="RESULTS")],
    out: Annotated[Path, typer.Option(help="HTML file to write.")] = Path("report.html"),
    label: Annotated[list[str] | None, typer.Option(
        "--label", help="Column label, once per results file in the same order (default: prediction folder name).",
    )] = None,
    samples: Annotated[int, typer.Option(help="Worst and best pairs shown per results file (0: none).",
                                         min=0)] = 6,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Also write the comparison as CSV (full "
                                                 "precision).", dir_okay=False)] = None,
    latex_out: Annotated[Path | None, typer.Option("--latex", help="Also write the comparison as LaTeX booktabs "
                                                   "tables (one per profile).", dir_okay=False)] = None,
) -> None:
    """Compare results files in one HTML page: tables, per-image histograms, worst/best sample grids.

    Example: posebench report runs/oracle.json runs/ours.json --label oracle --label ours --out report.html
    """
    from posebench.results.report import write_report
    from posebench.utils.io import atomic_write_text, check_output_path

    for extra, option in ((csv_out, "--csv"), (latex_out, "--latex")):  # before the (long) page is built
        if extra is not None:
            check_output_path(extra, option)
            from posebench.errors import PosebenchError
            from posebench.results.human_study import file_is_study

            study = next((p for p in results if file_is_study(p)), None)
            if study is not None:
                raise PosebenchError(f"{study} is a human-study results file: {option} exports the comparison of "
                                     "`posebench eval` results; a study's numbers are in its results file and page")
    path = write_report(results, out, labels=label, samples=samples)
    typer.echo(f"report: {path} ({path.stat().st_size / 1e6:.2f} MB)")
    if csv_out is not None or latex_out is not None:
        from posebench.results.report import load_runs
        from posebench.results.report_export import comparison_csv, comparison_latex

        runs = load_runs(results, label)
        for extra, text in ((csv_out, comparison_csv), (latex_out, comparison_latex)):
            if extra is not None:
                atomic_write_text(extra, text(runs))
                typer.echo(f"wrote {extra}")
