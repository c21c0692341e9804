"""A study folder on disk: its manifest (sha256 of every file the build wrote) and the checked, loaded study.

Layout:
    manifest.json   {format, version, files: {relative path: sha256}}: every file below, nothing else
    build.json      seed, posebench version, parameters, the inputs' hashes and the command that rebuilds it
    key.json        the truth of every item (real or generated, which method in which slot); never served
    public/         the web root: index.html, app.js, style.css, plan.json (what the page shows), img/*.png
    answers.sqlite  written by `posebench study serve` (not in the manifest; `-wal`/`-shm` beside it)

`load_study` refuses a folder whose files no longer match the manifest (changed, missing, or added under
public/), naming the file: a study edited after it was built is not the study its build.json describes.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from posebench.study import StudyError
from posebench.utils.io import sha256_file

FORMAT = "posebench-study"
VERSION = 1
MANIFEST = "manifest.json"
PUBLIC = "public"
ANSWERS_DB = "answers.sqlite"
SCHEME1_ANSWERS = ("real", "generated")


def dumps(obj: Any) -> str:
    """The one JSON text form of every study file: the same object gives the same bytes."""
    return json.dumps(obj, indent=1, ensure_ascii=False) + "\n"


def _walk(folder: Path) -> list[str]:
    """Every file and link below `folder`, as sorted POSIX paths relative to it."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        base = Path(dirpath)
        for name in filenames + [d for d in dirnames if (base / d).is_symlink()]:
            out.append((base / name).relative_to(folder).as_posix())
    return sorted(out)


def write_manifest(folder: Path) -> str:
    """Hash every file in a freshly built study folder into manifest.json; returns the manifest's sha256."""
    files = {rel: sha256_file(folder / rel) for rel in _walk(folder) if rel != MANIFEST}
    text = dumps({"format": FORMAT, "version": VERSION, "files": files})
    (folder / MANIFEST).write_text(text, encoding="utf-8")
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Study:
    """A checked study folder. `sequence` is the item ids in presentation order; `items` maps id -> key entry."""

    folder: Path
    manifest_sha256: str
    build: dict[str, Any]
    key: dict[str, Any]
    plan: dict[str, Any]
    public_files: dict[str, Path]  # URL path (relative to the web root) -> file

    @cached_property
    def sequence(self) -> list[str]:
        return [item["id"] for item in self.plan["items"]]

    @cached_property
    def items(self) -> dict[str, dict[str, Any]]:
        return {item["id"]: item for item in self.key["items"]}

    @property
    def methods(self) -> list[str]:
        return list(self.key["methods"])

    @property
    def db_path(self) -> Path:
        return self.folder / ANSWERS_DB

    def allowed_answers(self, item_id: str) -> tuple[str, ...]:
        item = self.items[item_id]
        if item["scheme"] == 1:
            return SCHEME1_ANSWERS
        return tuple(o["slot"] for o in item["options"])


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StudyError(f"{path}: missing; {what}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise StudyError(f"{path}: not valid JSON ({exc}); {what}") from None


def _safe_relative(rel: Any, manifest: Path) -> str:
    if not isinstance(rel, str) or not rel or rel.startswith("/") or "\\" in rel \
            or any(part in ("", ".", "..") for part in rel.split("/")):
        raise StudyError(f"{manifest}: file entry {rel!r} is not a plain path inside the study folder; the manifest "
                         "was edited. Rebuild the study with `posebench study make` (build.json has the command)")
    return rel


def check_manifest(folder: Path) -> tuple[dict[str, str], str]:
    """The manifest's files after checking every one against the disk; returns (files, manifest sha256).

    Raises:
        StudyError: not a study folder, or a file changed, missing or added under public/ (named).
    """
    folder = Path(folder)
    rebuild = "rebuild it with `posebench study make` (build.json has the command) or restore the file"
    if not folder.is_dir():
        raise StudyError(f"{folder}: no such study folder (posebench study make --out {folder} builds one)")
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise StudyError(f"{folder}: not a study folder (no {MANIFEST}); posebench study make builds one")
    raw = manifest.read_bytes()
    data = _read_json(manifest, rebuild)
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("files"), dict):
        raise StudyError(f"{manifest}: not a posebench study manifest; {rebuild}")
    if data.get("version") != VERSION:
        raise StudyError(f"{manifest}: study format version {data.get('version')!r}; this posebench reads {VERSION}. "
                         "Use the posebench that built it, or rebuild the study")
    files = {_safe_relative(rel, manifest): sha for rel, sha in data["files"].items()}
    for rel, sha in sorted(files.items()):
        path = folder / rel
        if path.is_symlink() or not path.is_file():
            raise StudyError(f"{path}: listed in {manifest} but missing (or not a plain file); {rebuild}")
        if sha256_file(path) != sha:
            raise StudyError(f"{path} was changed after the study was built (its sha256 no longer matches "
                             f"{manifest}); {rebuild}")
    public = folder / PUBLIC
    extra = [f"{PUBLIC}/{rel}" for rel in _walk(public)] if public.is_dir() else []
    extra = [rel for rel in extra if rel not in files]
    if extra:
        raise StudyError(f"{folder / extra[0]} is not in {manifest} (added after the study was built"
                         + (f", with {len(extra) - 1} more" if len(extra) > 1 else "") + "); remove it or rebuild")
    for required in ("build.json", "key.json", f"{PUBLIC}/plan.json", f"{PUBLIC}/index.html"):
        if required not in files:
            raise StudyError(f"{manifest} lists no {required}; not a complete study folder, {rebuild}")
    return files, hashlib.sha256(raw).hexdigest()


def load_study(folder: str | os.PathLike[str]) -> Study:
    """Check a study folder against its manifest and load it (see `check_manifest`)."""
    folder = Path(folder)
    files, digest = check_manifest(folder)
    build = _read_json(folder / "build.json", "rebuild the study")
    key = _read_json(folder / "key.json", "rebuild the study")
    plan = _read_json(folder / PUBLIC / "plan.json", "rebuild the study")
    prefix = f"{PUBLIC}/"
    public_files = {rel[len(prefix):]: folder / rel for rel in files if rel.startswith(prefix)}
    study = Study(folder, digest, build, key, plan, public_files)
    if [i["id"] for i in key.get("items", [])] != study.sequence:
        raise StudyError(f"{folder}: key.json and public/plan.json list different items; rebuild the study")
    return study
