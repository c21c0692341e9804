"""`posebench protocols ...` and `posebench profiles ...`: what is evaluated, and how."""

from __future__ import annotations

import json
from typing import Annotated

import typer

protocols_app = typer.Typer(help="Protocols: ls | show.", no_args_is_help=True)
profiles_app = typer.Typer(help="Metric profiles: ls | show.", no_args_is_help=True)


@protocols_app.command("ls")
def protocols_ls() -> None:
    """Every protocol with its dataset, split, resolution and profiles."""
    from rich.console import Console
    from rich.table import Table

    from posebench.protocols import PROTOCOLS

    table = Table(title="protocols")
    for col in ("name", "dataset", "split", "H x W", "default profile", "profiles"):
        table.add_column(col)
    for name in PROTOCOLS.names():
        p = PROTOCOLS.get(name)
        table.add_row(f"{p.name}@{p.version}", p.dataset, p.split, f"{p.resolution[0]}x{p.resolution[1]}",
                      p.default_profile, ", ".join(p.profiles))
    Console().print(table)


@protocols_app.command("show")
def protocols_show(name: Annotated[str, typer.Argument(help="Protocol name.")]) -> None:
    """The resolved protocol as JSON."""
    from dataclasses import asdict

    from posebench.protocols import get_protocol

    typer.echo(json.dumps(asdict(get_protocol(name)), indent=1))


@profiles_app.command("ls")
def profiles_ls() -> None:
    """Every metric profile with its version and summary."""
    from rich.console import Console
    from rich.table import Table

    from posebench.protocols import PROFILES

    table = Table(title="metric profiles")
    for col in ("name", "version", "description"):
        table.add_column(col)
    for name in PROFILES.names():
        p = PROFILES.get(name)
        table.add_row(p.name, str(p.version), p.description)
    Console().print(table)


@profiles_app.command("show")
def profiles_show(name: Annotated[str, typer.Argument(help="Profile name or YAML file.")]) -> None:
    """The resolved profile as JSON (with its content hash)."""
    from dataclasses import asdict

    from posebench.protocols import get_profile

    typer.echo(json.dumps(asdict(get_profile(name)), indent=1, default=str))
