"""`posebench leaderboard ...` (boards with provenance) and `posebench regress` (the CI regression gate).

Thin layer over `posebench.results.leaderboard` and `posebench.results.regress`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from posebench.results.regress import RegressionReport

app = typer.Typer(help="Leaderboards with provenance: list | show | export | validate | render | add | init.",
                  no_args_is_help=True)

_DirOption = Annotated[
    Path | None,
    typer.Option("--dir", help="Folder of board YAML files (default: $POSEBENCH_LEADERBOARDS, else the boards "
                 "that ship with posebench).", file_okay=False),
]


_JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of the table.")]


def _print_json(data: object) -> None:
    import json

    typer.echo(json.dumps(data, indent=2, allow_nan=False))


@app.command("list")
def list_(board_dir: _DirOption = None, as_json: _JsonFlag = False) -> None:
    """Every board with its protocol, metrics and entry counts (titles: `posebench leaderboard show`)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from posebench.results.board_export import board_summary
    from posebench.results.leaderboard import default_board_dir, load_boards

    boards = load_boards(board_dir)
    if as_json:
        _print_json({"dir": str(board_dir or default_board_dir()), "boards": [board_summary(b) for b in boards]})
        return
    table = Table(title="leaderboards")
    for col in ("board", "protocol", "metrics", "reported", "measured"):
        table.add_column(col, justify="right" if col in ("reported", "measured") else "left",
                         no_wrap=col in ("board", "protocol"))
    for b in boards:
        kinds = [e.kind for e in b.entries]
        # one metric per line: a wrapped "fid ↓, ap ↑" could leave an arrow under the wrong metric
        table.add_row(escape(b.name), escape(b.protocol or "–"), "\n".join(f"{m} {b.arrow(m)}" for m in b.metrics),
                      str(kinds.count("reported")), str(kinds.count("measured")))
    Console().print(table)


_SortOption = Annotated[str | None, typer.Option(help="Rank by this metric, best first (default: the first).")]


@app.command("show")
def show(
    board: Annotated[str, typer.Argument(help="Board name (see `posebench leaderboard list`) or YAML path.")],
    sort: _SortOption = None,
    board_dir: _DirOption = None,
    as_json: _JsonFlag = False,
) -> None:
    """One board as a table: direction arrows in the headers, and per row how it was measured (--json: every
    row with its values and provenance)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from posebench.results.board_export import board_json
    from posebench.results.leaderboard import load_board, resolve_board

    b = load_board(resolve_board(board, board_dir))
    if as_json:
        _print_json(board_json(b, sort))
        return
    rows = b.ranked(sort)
    table = Table(title=f"{escape(b.title)}  [dim]({escape(b.name)})[/]")
    table.add_column("#", justify="right")
    table.add_column("method", overflow="fold")
    for m in b.metrics:
        table.add_column(f"{escape(m)} {b.arrow(m)}", justify="right", no_wrap=True)
    table.add_column("how", overflow="fold")
    table.add_column("source", overflow="fold")
    for rank, e in enumerate(rows, 1):
        style = "green" if e.kind == "measured" else None
        table.add_row(str(rank), escape(e.method), *[e.display(m) for m in b.metrics], escape(e.how),
                      escape(e.where), style=style)
    console = Console()
    console.print(table)
    if any(not e.canonical for e in rows):
        console.print("† non-canonical measurement (see the entry's results.non_canonical_reasons)")
    console.print("[dim]reported = read from a paper (confidence: see docs/leaderboards.md); "
                  "measured = posebench results file, profile@version[/]")


@app.command("export")
def export(
    board: Annotated[str, typer.Argument(help="Board name or YAML path.")],
    fmt: Annotated[str, typer.Option("--format", help="csv (every value exactly, with provenance columns) or "
                                     "latex (a booktabs table for a paper).")],
    out: Annotated[Path | None, typer.Option(help="File to write (atomically; default: stdout).")] = None,
    sort: _SortOption = None,
    board_dir: _DirOption = None,
) -> None:
    """Export one board for a paper or a spreadsheet: CSV, or a LaTeX booktabs table with the best value per
    metric in bold and markers on non-canonical and non-as-printed rows.

    Example: posebench leaderboard export deepfashion-256x176 --format latex --out table1.tex
    """
    from posebench.results.board_export import check_format, export_board
    from posebench.results.leaderboard import load_board, resolve_board
    from posebench.utils.io import OutputError, atomic_write_text, check_output_path

    check_format(fmt)
    if out is not None:
        if out.is_dir():
            suffix = ".tex" if fmt == "latex" else ".csv"
            raise OutputError(f"--out {out} is a folder; give a file path (e.g. {out / ('table' + suffix)})")
        check_output_path(out, "--out")
    b = load_board(resolve_board(board, board_dir))
    text = export_board(b, fmt, sort)
    if out is None:
        typer.echo(text, nl=False)
        return
    atomic_write_text(out, text)
    typer.echo(f"wrote {out} ({fmt}, {len(b.entries)} rows of board {b.name})")


@app.command("validate")
def validate(
    boards: Annotated[list[str] | None, typer.Argument(help="Board names or paths (default: every board).")] = None,
    board_dir: _DirOption = None,
) -> None:
    """Check board files against the schema; exit 2 listing every problem."""
    from posebench.results.leaderboard import BoardError, board_paths, resolve_board, validate_boards

    paths = [resolve_board(b, board_dir) for b in boards] if boards else board_paths(board_dir)
    if not paths:  # a mistyped --dir that exists but holds no boards must not pass a CI check
        raise BoardError(f"no board files (*.yaml) in {board_dir}: nothing to validate; check --dir")
    problems = validate_boards(paths)
    if problems:
        raise BoardError(f"{len(problems)} problem(s) in {len(paths)} board(s):\n"
                         + "\n".join(f"  - {p}" for p in problems))
    typer.echo(f"{len(paths)} board(s) valid: {', '.join(p.stem for p in paths)}")


@app.command("render")
def render(
    out: Annotated[Path | None, typer.Option(help="Markdown file (default: <boards folder>/README.md).")] = None,
    html: Annotated[Path | None, typer.Option(help="Also write one self-contained HTML page here.")] = None,
    check: Annotated[bool, typer.Option("--check", help="Write nothing; exit 1 when the Markdown is stale.")] = False,
    board_dir: _DirOption = None,
) -> None:
    """Render every board into one Markdown page (and optionally one HTML page); both say they are generated."""
    from posebench.results.leaderboard import (
        check_writable_boards,
        default_board_dir,
        load_boards,
        render_html,
        render_markdown,
    )
    from posebench.utils.io import atomic_write_text, check_output_path

    boards = load_boards(board_dir)
    out = out or Path(board_dir or default_board_dir()) / "README.md"
    if not check:
        check_writable_boards(out)
        check_output_path(out, "--out")
        if html is not None:  # both outputs checked before either is written
            check_output_path(html, "--html")
    text = render_markdown(boards)
    if check:
        current = out.read_text(encoding="utf-8") if out.is_file() else ""
        if current != text:
            typer.echo(f"{out} is stale; run `posebench leaderboard render`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{out} is up to date")
        return
    atomic_write_text(out, text)
    typer.echo(f"wrote {out} ({len(boards)} boards)")
    if html is not None:
        atomic_write_text(html, render_html(boards))
        typer.echo(f"wrote {html}")


@app.command("add")
def add(
    board: Annotated[str, typer.Argument(help="Board name or YAML path.")],
    results: Annotated[Path, typer.Argument(help="posebench results JSON (from `posebench eval`, or `posebench study "
                                            "score` for the human-study board).")],
    method: Annotated[str, typer.Option(help="Row label, e.g. 'RePoseDM (ours, ckpt 400k)'.")],
    study_method: Annotated[str | None, typer.Option(help="Human-study results (posebench study score) hold every "
                                                     "method of the study: the one to add (default: --method).")
                            ] = None,
    board_dir: _DirOption = None,
) -> None:
    """Append a measured entry with the results' provenance (protocol, profile, hashes); the file is written
    atomically and keeps its comments. Refuses results of another protocol. Human-study results go to the
    human-study board, one method per row."""
    from posebench.results.leaderboard import add_measured, check_writable_boards, resolve_board

    path = resolve_board(board, board_dir)
    check_writable_boards(path)
    entry = add_measured(path, results, method, study_method)
    values = ", ".join(f"{m}={entry.display(m)}" for m in entry.values)
    typer.echo(f"added entries[{entry.index}] to {path}: {entry.method} ({entry.how}) {values}")


@app.command("init")
def init(dest: Annotated[Path, typer.Argument(help="A folder of your own for boards (created).", file_okay=False)]
         ) -> None:
    """Copy the boards that ship with posebench into DEST, to add measured rows there (--dir DEST)."""
    from posebench.results.leaderboard import init_boards

    copied = init_boards(dest)
    typer.echo(f"copied {len(copied)} files to {dest}; use --dir {dest} (or POSEBENCH_LEADERBOARDS={dest})")


def regress(
    results: Annotated[Path | None, typer.Option(help="New results JSON (the checkpoint under test).")] = None,
    baseline: Annotated[Path | None, typer.Option(help="Baseline results JSON.")] = None,
    tolerance: Annotated[str | None, typer.Option(help="Absolute tolerances, e.g. fid=0.5,ssim=0.005 "
                                                       "(metrics not named: 0; with --suite: the suite's).")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Reference-model run or checkpoint folder to gate "
                                                    "(with --suite and --root).")] = None,
    suite: Annotated[str | None, typer.Option(help="Suite NAME (suites/NAME.yaml) or YAML file: subset, "
                                              "sampling, metrics, tolerances, baseline.")] = None,
    root: Annotated[Path | None, typer.Option(help="Dataset root for --suite.", file_okay=False)] = None,
    work: Annotated[Path | None, typer.Option(help="Folder for the suite's images and results (default "
                                              ".posebench-gate/SUITE/CHECKPOINT).")] = None,
    update_baseline: Annotated[bool, typer.Option("--update-baseline", help="Store this checkpoint's suite "
                                                  "results as the baseline instead of comparing.")] = False,
    device: Annotated[str, typer.Option(help="torch device of --suite's sampling and evaluation and of the FID/KID "
                                        "bootstrap (cuda: the same intervals to round-off, much faster at "
                                        "full size).")] = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout instead of the "
                                          "table.")] = False,
    json_out: Annotated[Path | None, typer.Option("--json-out", help="Also write the report as JSON to this "
                                                  "file.", dir_okay=False)] = None,
    junit: Annotated[Path | None, typer.Option(help="Write JUnit XML (one testcase per metric).")] = None,
    gate: Annotated[str, typer.Option(help="point: fail when the point difference is worse than the tolerance; "
                                      "interval: fail only when the whole 95% bootstrap interval of new - baseline "
                                      "is (per-image metrics, FID, KID; others fall back to point).")] = "point",
    intervals: Annotated[bool, typer.Option("--intervals", help="Compute and show the intervals with --gate point "
                                            "too (they do not gate then).")] = False,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples of the per-image metrics (paired over "
                                           "images).")] = 2000,
    fid_resamples: Annotated[int, typer.Option(help="Bootstrap resamples of FID and KID (each recomputes them on "
                                               "resampled generated features).")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap (the same seed, the same intervals).")] = 0,
    progress: Annotated[bool, typer.Option("--progress/--quiet", help="Progress bars on stderr (suite sampling and "
                                           "evaluation, FID/KID bootstrap).")] = True,
) -> None:
    """Gate a checkpoint: exit 1 when a metric is worse than the baseline beyond its tolerance, 0 otherwise.

    Two forms: --results NEW --baseline BASE compares two results files; --checkpoint RUN --suite NAME --root
    DATA samples the suite's fixed, seeded subset with the checkpoint, evaluates it and compares with the
    suite's stored baseline (what a CI job runs on every new checkpoint). Refuses (exit 2) results of a
    different protocol, profile (name, version, hash), pair list or suite definition.
    --gate interval reads the per-image CSV and the features file beside each results file, pairs the images of the
    two runs, and fails a metric only when its whole bootstrap interval is worse than the tolerance.
    Example: posebench regress --results new.json --baseline main.json --tolerance fid=0.5 --junit regress.xml
    """
    from posebench.errors import PosebenchError
    from posebench.results.regress import compare_files, parse_tolerances, write_junit, write_report_json
    from posebench.utils.device import checked_device

    checked_device(device)
    stats = {"gate": gate, "intervals": intervals, "resamples": resamples, "fid_resamples": fid_resamples,
             "seed": seed, "device": device, "progress": progress}

    if checkpoint is not None or suite is not None:
        if checkpoint is None or suite is None or root is None:
            raise PosebenchError("--checkpoint needs --suite and --root (and no --results/--baseline)")
        if results is not None or baseline is not None:
            raise PosebenchError("pass either --results/--baseline or --checkpoint/--suite, not both")
        from posebench.run.gate import load_suite, run_checkpoint_suite

        spec = load_suite(suite)
        if tolerance is not None:
            spec = replace(spec, tolerance={**spec.tolerance, **parse_tolerances(tolerance)})
        outcome = run_checkpoint_suite(checkpoint, spec, root=root, work=work, update_baseline=update_baseline,
                                       device=device, progress=progress)
        if outcome.baseline_written:
            typer.echo(f"baseline written: {spec.baseline} (from {outcome.results})")
            return
        report = outcome.report
        if gate != "point" or intervals:  # the suite's own comparison is the point gate; add the intervals
            report = compare_files(outcome.results, spec.baseline, spec.tolerance, **stats)
    else:
        if results is None or baseline is None:
            raise PosebenchError("pass --results NEW --baseline BASE, or --checkpoint RUN --suite NAME --root DATA")
        report = compare_files(results, baseline, parse_tolerances(tolerance), **stats)
    if as_json:
        typer.echo(report.to_json(), nl=False)
    else:
        _print_report(report)
    if json_out is not None:
        write_report_json(report, json_out)
    if junit is not None:
        write_junit(report, junit)
    if not report.ok:
        raise typer.Exit(1)


def _print_report(report: RegressionReport) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.measure import Measurement
    from rich.table import Table

    from posebench.results.regress import fmt_interval, fmt_value

    colours = {"regressed": "bold red", "missing": "bold red", "improved": "green", "within": "yellow",
               "unchanged": "", "added": "cyan"}
    boot = report.bootstrap
    title = f"{report.protocol} · {report.profile} · {report.gate} gate"
    table = Table(title=title)
    table.add_column("metric")
    cols = ("baseline", "new", "delta", f"{boot['level']:.0%} interval", "tolerance") if boot else \
        ("baseline", "new", "delta", "tolerance")
    for col in cols:
        table.add_column(col, justify="right")
    table.add_column("status")
    rows = []
    for m in report.metrics:
        colour = colours[m.status]
        status = f"[{colour}]{m.status}[/]" if colour else m.status
        if report.gate == "interval" and m.status in ("regressed", "within", "improved", "unchanged"):
            status += f" ({m.basis})"
        values = [fmt_value(m.baseline), fmt_value(m.new), fmt_value(m.delta, signed=True)]
        if boot:
            values.append(fmt_interval(m.interval))
        rows.append((f"{escape(m.name)} {'↑' if m.higher_is_better else '↓'}", [*values, fmt_value(m.tolerance)],
                     status))
        table.add_row(rows[-1][0], *rows[-1][1], status)
    console = Console()
    natural = Measurement.get(console, console.options.update_width(10_000), table).maximum  # unclipped width
    if natural <= console.width:
        console.print(table)
    else:  # narrower than the table (a CI log is 80 columns): rich would cut cells to `…`; one line per metric
        console.print(title, highlight=False)
        for name, values, status in rows:
            pairs = ", ".join(f"{col} {v}" for col, v in zip(cols, values, strict=True))
            console.print(f"{name}: {pairs}; {status}", highlight=False)
    if boot:
        console.print(f"[dim]interval: bootstrap of new - baseline, images paired by identity; {boot['resamples']} "
                      f"resamples (per-image metrics), {boot['fid_resamples']} (FID/KID), seed {boot['seed']}[/]")
    for w in report.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}")
    n = len(report.regressions)
    console.print("[green]no regression[/]" if report.ok else f"[bold red]{n} metric(s) regressed[/]: "
                  + ", ".join(m.name for m in report.regressions))
