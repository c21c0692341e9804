"""`posebench weights ...`: list, download, verify, locate and add pretrained files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from posebench.errors import PosebenchError

app = typer.Typer(help="Pretrained files: list, download, verify, path, add.", no_args_is_help=True)

_COLOURS = {"verified": "green", "unchecked": "cyan", "missing": "yellow", "corrupt": "red"}


@app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON rows.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Hash files not verified yet.")] = False,
) -> None:
    """Every registered file with its cache status, size and licence."""
    from rich.console import Console
    from rich.table import Table

    from posebench import weights

    rows = weights.describe(check=check)
    if as_json:
        typer.echo(json.dumps({"cache_dir": str(weights.weights_dir()), "files": rows}, indent=2))
        return
    table = Table(title=f"weights cache: {weights.weights_dir()}")
    for col in ("name", "status", "size", "licence", "used by"):
        table.add_column(col)
    for row in rows:
        size = f"{row['size'] / 2**20:.1f} MiB" if row["size"] else "?"
        table.add_row(row["name"], f"[{_COLOURS[row['status']]}]{row['status']}[/]", size, row["licence"],
                      ", ".join(row["used_by"]))
    Console().print(table)


@app.command()
def download(
    names: Annotated[list[str] | None, typer.Argument(help="Registry names (see `weights list`).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Download every registered file.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Download again even if cached.")] = False,
) -> None:
    """Fetch files into the cache, resuming partial downloads, and verify their sha256."""
    from posebench import weights

    if not names and not all_:
        raise typer.BadParameter("name at least one file, or pass --all", param_hint="NAMES")
    specs = weights.all_files() if all_ else [weights.get(n) for n in names or []]
    failures = []
    for spec in specs:
        try:
            path = weights.download(spec, force=force)
            typer.echo(f"{spec.name}: {path}")
        except PosebenchError as exc:
            if len(specs) == 1:
                raise
            failures.append(f"{spec.name}: {exc}")
    if failures:
        raise PosebenchError("Some files could not be downloaded:\n" + "\n".join(failures))


@app.command()
def verify(
    names: Annotated[list[str] | None, typer.Argument(help="Registry names; default: every cached file.")] = None,
) -> None:
    """Re-hash cached files. A file that does not match is deleted and reported (exit 2)."""
    from posebench import weights

    specs = [weights.get(n) for n in names] if names else [
        s for s in weights.all_files() if weights.cache_path(s).is_file()
    ]
    problems = []
    for spec in specs:
        try:
            digest = weights.verify(spec)
            typer.echo(f"{spec.name}: ok ({digest[:16]}…)")
        except PosebenchError as exc:
            problems.append(str(exc))
    if not specs:
        typer.echo("no cached files to verify")
    if problems:
        raise PosebenchError("\n".join(problems))


@app.command()
def path(name: Annotated[str, typer.Argument(help="Registry name.")]) -> None:
    """Print where a file is (or must be placed) in the cache."""
    from posebench import weights

    spec = weights.get(name)
    typer.echo(str(weights.cache_path(spec)))
    st = weights.status(spec)
    if st is not weights.Status.VERIFIED:
        typer.echo(f"({st.value}; source: {spec.url})", err=True)


@app.command()
def add(
    name: Annotated[str, typer.Argument(help="Registry name.")],
    file: Annotated[Path, typer.Argument(help="A copy of the file obtained by hand.")],
    trust_unpublished: Annotated[bool, typer.Option(
        "--trust-unpublished", help="Accept a file for an entry without a published sha256 (its digest is "
        "recorded and checked from then on).")] = False,
) -> None:
    """Check a hand-downloaded file's sha256 and copy it into the cache (prints the path and the digest)."""
    from posebench import weights

    path = weights.add_local_file(name, file, trust=trust_unpublished)
    typer.echo(f"{path}\nsha256 {weights.verify(name)}")
