"""`posebench protocols ...` and `posebench profiles ...`: what is evaluated, and how."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from posebench.protocols import Protocol

protocols_app = typer.Typer(help="Protocols: ls | show.", no_args_is_help=True)
profiles_app = typer.Typer(help="Metric profiles (image and pose): ls | show.", no_args_is_help=True)

_JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of the table.")]


def _protocol_row(p: Protocol) -> dict[str, Any]:
    return {"name": p.name, "version": p.version, "kind": p.kind, "dataset": p.dataset, "split": p.split,
            "resolution": list(p.resolution), "default_profile": p.default_profile, "profiles": list(p.profiles),
            "default_pose_profile": p.default_pose_profile, "pose_profiles": list(p.pose_profiles),
            "metrics": list(p.metrics), "sha256": p.sha256}


@protocols_app.command("ls")
def protocols_ls(as_json: _JsonFlag = False) -> None:
    """Every protocol with its dataset, split, resolution and profiles (* the default; pose protocols also list
    their pose-metric profiles, which --profile names for them)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from posebench.protocols import PROTOCOLS

    protocols = [PROTOCOLS.get(name) for name in PROTOCOLS.names()]
    if as_json:
        typer.echo(json.dumps({"protocols": [_protocol_row(p) for p in protocols]}, indent=2))
        return
    # Names are typed by users (--protocol, -d, --profile): their columns never wrap, and the profiles go one
    # per line, so an 80-column terminal still shows each whole.
    table = Table(title="protocols", caption="* default profile")
    for col in ("name", "dataset", "split", "H x W", "profiles"):
        table.add_column(col, no_wrap=True)
    for p in protocols:
        profiles = [f"{name}*" if name == p.default_profile else name for name in p.profiles]
        profiles += [f"{name}{'*' if name == p.default_pose_profile else ''} (pose)" for name in p.pose_profiles]
        table.add_row(escape(p.id), escape(p.dataset), escape(p.split), f"{p.resolution[0]}x{p.resolution[1]}",
                      escape("\n".join(profiles)))
    Console().print(table)


@protocols_app.command("show")
def protocols_show(name: Annotated[str, typer.Argument(help="Protocol name.")]) -> None:
    """The resolved protocol as JSON."""
    from dataclasses import asdict

    from posebench.protocols import get_protocol

    typer.echo(json.dumps(asdict(get_protocol(name)), indent=1))


@profiles_app.command("ls")
def profiles_ls(as_json: _JsonFlag = False) -> None:
    """Every metric profile with its version and summary."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from posebench.protocols import PROFILES
    from posebench.protocols.pose_profile import POSE_PROFILES

    registries = {"image": PROFILES, "pose": POSE_PROFILES}
    if as_json:
        rows = {kind: [{"name": p.name, "version": p.version, "sha256": p.sha256, "description": p.description}
                       for p in (reg.get(n) for n in reg.names())] for kind, reg in registries.items()}
        typer.echo(json.dumps(rows, indent=2))
        return
    console = Console()
    for kind, registry in registries.items():
        table = Table(title="image-metric profiles" if kind == "image" else "pose-metric profiles (--pose)")
        table.add_column("name", no_wrap=True)
        table.add_column("version", no_wrap=True)
        table.add_column("description", overflow="fold")
        for name in registry.names():
            p = registry.get(name)
            table.add_row(escape(p.name), str(p.version), escape(p.description))
        console.print(table)


@profiles_app.command("show")
def profiles_show(
    name: Annotated[str, typer.Argument(help="Profile name or YAML file.")],
    pose: Annotated[bool, typer.Option("--pose", help="A pose-metric profile (clean, humansd) instead.")] = False,
) -> None:
    """The resolved profile as JSON (with its content hash). `clean` names both an image-metric and a
    pose-metric profile; --pose picks the latter."""
    from dataclasses import asdict

    from posebench.errors import PosebenchError
    from posebench.protocols import PROFILES, get_profile
    from posebench.protocols.pose_profile import POSE_PROFILES, get_pose_profile

    if not pose and name in POSE_PROFILES.names() and name not in PROFILES.names():
        raise PosebenchError(f"{name!r} is a pose-metric profile, not an image-metric one: posebench profiles show "
                             f"{name} --pose")
    shown = asdict(get_pose_profile(name)) if pose else get_profile(name).as_dict()
    typer.echo(json.dumps(shown, indent=1, default=str))
