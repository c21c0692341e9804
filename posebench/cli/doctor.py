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
    from rich.table import Table

    from posebench.env import doctor_report

    report = doctor_report(check_weights=check_weights)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        raise typer.Exit(0 if report["ok"] else 1)

    console = Console()
    console.print(f"[bold]posebench {report['posebench']}[/] on Python {report['python']['version']} "
                  f"({report['platform']})")
    dev = report["device"]
    if "error" in dev:
        console.print(f"device: [red]{dev['error']}[/]")
    elif dev["cuda_available"]:
        console.print(f"device: CUDA x{dev['cuda_device_count']} ({', '.join(dev['devices'])})")
    else:
        console.print(f"device: CPU only ({dev['cpu_threads']} threads; torch CUDA build {dev['cuda_build']})")

    table = Table(title="packages", show_lines=False)
    for col in ("package", "version", "imports", "note"):
        table.add_column(col)
    for name, entry in report["packages"].items():
        mark = "[green]yes[/]" if entry["ok"] else "[red]NO[/]"
        table.add_row(name, str(entry["version"]), mark, entry["error"] or "")
    for name, entry in report["optional"].items():
        mark = "[green]yes[/]" if entry["ok"] else "[yellow]no[/]"
        note = "" if entry["ok"] else f"optional: {entry['install']}"
        table.add_row(name, str(entry["version"]), mark, note)
    console.print(table)

    wt = Table(title=f"weights cache: {report['weights']['cache_dir']}"
               + (" (offline)" if report["weights"]["offline"] else ""))
    for col in ("name", "status", "file"):
        wt.add_column(col)
    colours = {"verified": "green", "unchecked": "cyan", "missing": "yellow", "corrupt": "red"}
    for row in report["weights"]["files"]:
        wt.add_row(row["name"], f"[{colours[row['status']]}]{row['status']}[/]", row["filename"])
    console.print(wt)
    if report["ok"]:
        console.print("[green]install OK[/]")
    else:
        console.print(f"[red]broken install:[/] {', '.join(report['broken'])} do not import. "
                      "Reinstall with `make test` (it rebuilds .venv) or `pip install -e .`.")
        raise typer.Exit(1)
