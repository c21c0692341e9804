"""The `posebench` command line: a thin Typer layer over the Python API.

One module per command group. A command is added here only once it works end to end.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from typer.core import TyperGroup

from posebench._version import __version__
from posebench.errors import PosebenchError


class _PosebenchGroup(TyperGroup):
    """Turns every PosebenchError raised by a command (at any depth) into a clean exit-2 message.

    The message is printed without hard wrapping so that paths and commands in it can be copied.
    """

    def invoke(self, ctx: typer.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except PosebenchError as exc:
            from rich.console import Console
            from rich.markup import escape

            Console(stderr=True, soft_wrap=True, highlight=False).print(f"[bold red]Error:[/] {escape(str(exc))}")
            raise typer.Exit(exc.exit_code) from exc


app = typer.Typer(
    name="posebench",
    cls=_PosebenchGroup,
    help="Benchmark toolkit for pose-guided person image synthesis: standard splits, metric profiles, "
    "leaderboards and the RePoseDM reference model.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain click help: rich's help panels cut option names and choices at 80 columns
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_show_locals=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"posebench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        # warnings go to stderr: stdout carries what a command prints (its --json output stays parseable)
        handlers=[RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False)],
        force=True,
    )


def _register() -> None:
    from posebench.cli import (
        data,
        demo,
        doctor,
        evaluate,
        leaderboard,
        pose,
        protocols,
        reference,
        reid,
        report,
        study,
        weights,
    )

    app.command("demo")(demo.demo)
    app.command("doctor")(doctor.doctor)
    app.add_typer(weights.app, name="weights")
    app.add_typer(data.app, name="data")
    app.add_typer(protocols.protocols_app, name="protocols")
    app.add_typer(protocols.profiles_app, name="profiles")
    app.command("eval")(evaluate.eval_)
    app.add_typer(leaderboard.app, name="leaderboard")
    app.command("regress")(leaderboard.regress)
    app.command("report")(report.report)
    app.command("eval-pose")(pose.eval_pose)
    app.add_typer(pose.pose_app, name="pose")
    app.command("reid-augment")(reid.reid_augment)
    app.command("train-reference")(reference.train_reference)
    app.command("sample")(reference.sample)
    app.command("baseline")(demo.baseline)
    app.add_typer(study.app, name="study")


_register()


def main() -> None:
    app()
