"""Atomic writes and file hashing: a crash never leaves a half-written result or cache entry."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from posebench.errors import PosebenchError

_CHUNK = 1 << 20  # 1 MiB: large enough for fast hashing, small enough for bounded memory


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def files_sha256(files: Iterable[str | os.PathLike[str]]) -> str:
    """One sha256 over a set of files: of the sorted "NAME SHA256" lines (order-free; names are base names)."""
    lines = sorted(f"{Path(f).name} {sha256_file(f)}" for f in files)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


class OutputError(PosebenchError):
    """An output that cannot be written where it was asked for (a folder, below a file, read-only, disk full)."""


def _umask() -> int:
    """The process umask (read by setting and restoring it: there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_output_path(path: str | os.PathLike[str], what: str = "output") -> Path:
    """Refuse an output path before any long work: an existing folder, a path below a regular file, or a folder
    this process cannot write to. Returns the path."""
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"{what} {target} is a folder; give a file path (e.g. {target / 'results.json'})")
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{what} {target}: {parent} is a file, not a folder; choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {target}: cannot write in {parent} (read-only or no permission); choose another "
                          "path")
    return target


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside `path`; on success fsync and rename it over `path`, with the permissions a
    plain `open()` would give (0666 minus the umask; `mkstemp` alone gives 0600).

    On any exception the temporary file is removed and `path` is left as it was; an OS error (a folder in the way,
    read-only file system, disk full) becomes an OutputError naming `path`.
    """
    if mode not in {"w", "wb"}:
        raise ValueError(f"atomic_open supports 'w' and 'wb', got {mode!r}")
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {target}: {exc.strerror or exc}; the previous file, if any, is "
                              "unchanged") from exc
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_texts(files: dict[str | os.PathLike[str], str]) -> None:
    """Write several text files all or none: every file goes to a temporary beside its target first, and only when
    all are written are they renamed over their targets (a results JSON and its per-image CSV never disagree,
    and a failure, e.g. a full disk, leaves every previous file as it was)."""
    with contextlib.ExitStack() as stack:
        handles = [stack.enter_context(atomic_open(path, "w")) for path in files]
        for fh, text in zip(handles, files.values(), strict=True):
            fh.write(text)
