"""`posebench study make | serve | score`: the human perception study (thin layer over posebench.study)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Human perception study (R2G, G2R, JAB): make | serve | score. See docs/study.md.",
                  no_args_is_help=True)

_StudyArg = Annotated[Path, typer.Argument(help="Study folder (posebench study make --out).", file_okay=False)]


@app.command("make", context_settings={"allow_extra_args": True})
def make(
    ctx: typer.Context,
    root: Annotated[Path, typer.Option(help="Dataset root the results were scored on (real images, poses).",
                                       file_okay=False)],
    out: Annotated[Path, typer.Option(help="New study folder (must not exist, or be empty).", file_okay=False)],
    results: Annotated[list[Path] | None, typer.Option("--results", help="posebench eval results files, one per "
                                                       "method (at least two; `--results a.json b.json` or "
                                                       "--results a.json --results b.json); each names its samples "
                                                       "folder.")] = None,
    label: Annotated[list[str] | None, typer.Option("--label", help="Method label, once per results file in the "
                                                    "same order (default: the samples folder's name).")] = None,
    real: Annotated[int, typer.Option(help="Scheme 1: real images per method block.")] = 30,
    generated: Annotated[int, typer.Option(help="Scheme 1: generated images per method block.")] = 20,
    sets: Annotated[int, typer.Option(help="Scheme 2: sets (source, target pose, one image per method).")] = 30,
    checks: Annotated[int, typer.Option(help="Attention checks: items repeated later, per scheme.")] = 2,
    seed: Annotated[int, typer.Option(help="Seed of every random choice (same inputs + seed = same folder).")] = 0,
    progress: Annotated[bool, typer.Option("--progress/--quiet", help="Show a progress bar.")] = True,
) -> None:
    """Build a self-contained study folder: scheme 1 (real or generated?) and scheme 2 (which is best?).

    Example: posebench study make --results pidm.json ours.json --root data/df --out study/ --seed 0
    """
    from rich.console import Console

    from posebench.study import StudyError
    from posebench.study.build import make_study

    # `--results a.json b.json`: click takes one value per option; the other files arrive as extra arguments
    files = [*(results or []), *map(Path, ctx.args)]
    if not results:
        raise StudyError("give the results files with --results a.json b.json ...")
    built = make_study(files, root, out, labels=label or None, real=real, generated=generated, sets=sets,
                       checks=checks, seed=seed, progress=progress)
    Console(highlight=False).print(
        f"study [bold]{built.folder}[/] ({built.study_id}): {len(built.methods)} methods "
        f"({', '.join(built.methods)}), scheme 1 {built.scheme1} items, scheme 2 {built.scheme2} sets, "
        f"{built.images} images, from {built.shared_pairs} shared pairs\n"
        f"manifest sha256 {built.manifest_sha256}\nnext: posebench study serve {built.folder}")


@app.command("serve")
def serve(
    study: _StudyArg,
    host: Annotated[str, typer.Option(help="Address to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free one).", min=0, max=65535)] = 8000,
) -> None:
    """Serve a study to participants and record every answer in STUDY/answers.sqlite (Ctrl+C stops; answers are
    kept across restarts). Refuses a folder whose files no longer match its manifest."""
    from rich.console import Console

    from posebench.study.server import serve as run

    console = Console(highlight=False)

    def ready(url: str, loaded) -> None:
        console.print(f"serving study {loaded.build.get('study')} ({len(loaded.sequence)} items) at [bold]{url}[/]"
                      f"\nanswers: {loaded.db_path} · Ctrl+C to stop", soft_wrap=True)

    run(study, host, port, on_ready=ready)


@app.command("score")
def score(
    study: _StudyArg,
    out: Annotated[Path | None, typer.Option(help="Results JSON to write (default: STUDY/score.json); the "
                                             "judgements CSV goes beside it.", dir_okay=False)] = None,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 2000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    max_failed_checks: Annotated[int, typer.Option(help="Exclude participants failing more attention checks than "
                                                   "this.")] = 0,
    complete_only: Annotated[bool, typer.Option("--complete-only", help="Exclude participants who did not finish "
                                                "(default: they count with the answers they gave).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results JSON on stdout instead of the table."
                                          )] = False,
) -> None:
    """R2G, G2R and JAB per method with two-way bootstrap 95% intervals; a results file that `posebench
    leaderboard add human-study` and `posebench report` read."""
    from posebench.study.score import write_score

    target = out or Path(study) / "score.json"
    doc = write_score(study, target, resamples=resamples, seed=seed, max_failed_checks=max_failed_checks,
                      complete_only=complete_only)
    if as_json:
        typer.echo(json.dumps(json.loads(target.read_text(encoding="utf-8")), indent=1))
        return
    _print_score(doc, target)


def _print_score(doc: dict, target: Path) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from posebench.results.human_study import TITLES, labels, metric_key

    def cell(m: dict) -> str:
        if m["n"] == 0:
            return "–"
        lo, hi = m["details"]["ci95"]
        return f"{m['value']:.1f} [{lo:.1f}, {hi:.1f}] n={m['n']}"

    table = Table(title="human study (percent, 95% interval)")
    table.add_column("method")
    for metric in ("r2g", "g2r", "jab"):
        table.add_column(f"{TITLES[metric]} ↑", justify="right")
    for name in labels(doc):
        table.add_row(escape(name), *[cell(doc["metrics"][metric_key(m, name)]) for m in ("r2g", "g2r", "jab")])
    table.add_row("[dim]all real images[/]", cell(doc["metrics"]["r2g"]), "", "")
    console = Console(highlight=False)
    console.print(table)
    people = doc["participants"]
    console.print(f"participants: {people['complete']} complete, {people['partial']} partial (counted with their "
                  f"answers), {people['excluded']} excluded, {people['without answers']} without answers")
    for x in doc["exclusions"]:
        console.print(f"  excluded participant {x['participant']}: {escape(x['reason'])}")
    for w in doc["warnings"]:
        console.print(f"[yellow]warning:[/] {escape(w)}")
    console.print(f"results: {target}")
