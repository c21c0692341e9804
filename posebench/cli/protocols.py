"""`posebench protocols ...` and `posebench profiles ...`: what is evaluated, and how."""

from __future__ import annotations

import json
from typing import Annotated

import typer

protocols_app = typer.Typer(help="Protocols: ls | show.", no_args_is_help=True)
profiles_app = typer.Typer(help="Metric profiles (image and pose): ls | show.", no_args_is_help=True)


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
    from posebench.protocols.pose_profile import POSE_PROFILES

    console = Console()
    for title, registry in (("image-metric profiles", PROFILES), ("pose-metric profiles (--pose)", POSE_PROFILES)):
        table = Table(title=title)
        for col in ("name", "version", "description"):
            table.add_column(col)
        for name in registry.names():
            p = registry.get(name)
            table.add_row(p.name, str(p.version), p.description)
        console.print(table)


@profiles_app.command("show")
def profiles_show(
    name: Annotated[str, typer.Argument(help="Profile name or YAML file.")],
    pose: Annotated[bool, typer.Option("--pose", help="A pose-metric profile (clean, humansd) instead.")] = False,
) -> None:
    """The resolved profile as JSON (with its content hash). `clean` names both an image-metric and a
    pose-metric profile; --pose picks the latter."""
    from dataclasses import asdict

    from posebench.protocols import get_profile
    from posebench.protocols.pose_profile import get_pose_profile

    shown = asdict(get_pose_profile(name)) if pose else get_profile(name).as_dict()
    typer.echo(json.dumps(shown, indent=1, default=str))
