"""`posebench doctor`: is this installation complete, and what can it run?"""

from __future__ import annotations

import json
from typing import Annotated

import typer


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON for machines.")] = False,
    check_weights: Annotated[
        bool, typer.Option("--check-weights", help="Hash cached weight files that were not verified yet.")
    ] = False,
) -> None:
    """Report versions, devices, optional backends and the weights cache.

    Exits 0 unless a required dependency fails to import (then 1).
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from posebench.env import doctor_report

    report = doctor_report(check_weights=check_weights)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        raise typer.Exit(0 if report["ok"] else 1)

    # Every text from the report is escaped: install hints hold square brackets (`posebench[mmpose]`), which rich
    # would otherwise read as markup and drop.
    console = Console()
    console.print(f"[bold]posebench {escape(report['posebench'])}[/] on Python {report['python']['version']} "
                  f"({escape(report['platform'])})")
    dev = report["device"]
    if "error" in dev:
        console.print(f"device: [red]{escape(dev['error'])}[/]")
    elif dev["cuda_available"]:
        console.print(f"device: CUDA x{dev['cuda_device_count']} ({escape(', '.join(dev['devices']))})")
    else:
        console.print(f"device: CPU only ({dev['cpu_threads']} threads; torch CUDA build {dev['cuda_build']})")

    table = Table(title="packages", show_lines=False)
    for col in ("package", "version", "imports"):
        table.add_column(col, no_wrap=True)
    table.add_column("note", overflow="fold")
    for name, entry in report["packages"].items():
        mark = "[green]yes[/]" if entry["ok"] else "[red]NO[/]"
        table.add_row(escape(name), escape(str(entry["version"])), mark, escape(entry["error"] or ""))
    for name, entry in report["optional"].items():
        mark = "[green]yes[/]" if entry["ok"] else "[yellow]no[/]"
        note = "" if entry["ok"] else f"optional: {entry['install']}"
        table.add_row(escape(name), escape(str(entry["version"])), mark, escape(note))
    console.print(table)

    wt = Table(title=f"weights cache: {escape(report['weights']['cache_dir'])}"
               + (" (offline)" if report["weights"]["offline"] else ""))
    for col in ("name", "status"):
        wt.add_column(col, no_wrap=True)
    wt.add_column("file", overflow="fold")
    colours = {"verified": "green", "unchecked": "cyan", "missing": "yellow", "corrupt": "red"}
    for row in report["weights"]["files"]:
        wt.add_row(escape(row["name"]), f"[{colours[row['status']]}]{row['status']}[/]", escape(row["filename"]))
    console.print(wt)
    if report["ok"]:
        console.print("[green]install OK[/]")
    else:
        console.print(f"[red]broken install:[/] {escape(', '.join(report['broken']))} do not import. "
                      "Reinstall with `make test` (it rebuilds .venv) or `pip install -e .`.")
        raise typer.Exit(1)
