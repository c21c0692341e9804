"""`posebench weights ...`: list, download, verify, locate and add pretrained files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from posebench.errors import PosebenchError

app = typer.Typer(help="Pretrained files: list, download, verify, path, add, compare.", no_args_is_help=True)

_COLOURS = {"verified": "green", "unchecked": "cyan", "missing": "yellow", "corrupt": "red"}


@app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of the table.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Hash files not verified yet.")] = False,
) -> None:
    """Every registered file with its cache status, size, users and licence."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from posebench import weights

    rows = weights.describe(check=check)
    if as_json:
        typer.echo(json.dumps({"cache_dir": str(weights.weights_dir()), "files": rows}, indent=2))
        return
    # The name is what `weights download/path/add` take: it never wraps. Users and licence share one column so
    # that an 80-column terminal leaves it room.
    table = Table(title=f"weights cache: {escape(str(weights.weights_dir()))}", show_edge=False)
    for col in ("name", "status", "size"):
        table.add_column(col, no_wrap=True)
    table.add_column("used by / licence", overflow="fold")
    for row in rows:
        size = f"{row['size'] / 2**20:.1f} MiB" if row["size"] else "?"
        table.add_row(escape(row["name"]), f"[{_COLOURS[row['status']]}]{row['status']}[/]", size,
                      f"{escape(', '.join(row['used_by']))}\n[dim]licence: {escape(row['licence'])}[/]")
    Console().print(table)


@app.command()
def download(
    names: Annotated[list[str] | None, typer.Argument(help="Registry names (see `weights list`).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Download every registered file.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Download again even if cached.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--quiet")] = True,
) -> None:
    """Fetch files into the cache, resuming partial downloads, and verify their sha256."""
    from posebench import weights

    if not names and not all_:
        raise typer.BadParameter("name at least one file, or pass --all", param_hint="NAMES")
    specs = weights.all_files() if all_ else [weights.get(n) for n in names or []]
    failures = []
    for spec in specs:
        try:
            path = weights.download(spec, force=force, progress=progress)
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


@app.command()
def compare(
    first: Annotated[str, typer.Argument(help="Registry name or file.")],
    second: Annotated[str, typer.Argument(help="Registry name or file.")],
    atol: Annotated[float, typer.Option(help="Largest difference still counted as equal.", min=0)] = 0.0,
) -> None:
    """Compare two weight files tensor by tensor (read without running code from them; NVIDIA's TorchScript FID
    Inception names mapped to pytorch-fid's). Exit 0 when every shared tensor is equal within --atol, 1 if not.

    Example: posebench weights compare inception-fid-helper inception-fid-clean
    """
    from rich.console import Console

    from posebench.weights_compare import comparable_tensors
    from posebench.weights_compare import compare as compare_tensors

    console = Console(highlight=False)
    path_a, a = comparable_tensors(first)
    path_b, b = comparable_tensors(second)
    result = compare_tensors(a, b, atol)
    console.print(f"{path_a}\n{path_b}\n{result.compared} shared tensors compared")
    for label, names in (("only in the first", result.only_a), ("only in the second", result.only_b)):
        if names:
            console.print(f"{len(names)} {label} (not compared): {', '.join(names[:5])}" +
                          (" ..." if len(names) > 5 else ""))
    for line in result.shape_mismatch[:10]:
        console.print(f"[red]shape differs:[/] {line}")
    for key, diff in result.differing[:10]:
        console.print(f"[red]differs:[/] {key}: largest |a - b| = {diff:.6g}")
    if result.identical:
        console.print("[green]identical[/]" + (f" within {atol:g}" if atol else "") + " in every shared tensor")
        return
    if result.compared == 0 and not result.shape_mismatch:  # names shared but every shape differs: they differ
        raise PosebenchError(f"{path_a} and {path_b} share no tensor names: different networks or layouts")
    console.print(f"{len(result.differing) + len(result.shape_mismatch)} of "
                  f"{result.compared + len(result.shape_mismatch)} shared tensors differ")
    raise typer.Exit(1)
