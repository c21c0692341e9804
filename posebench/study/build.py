"""`posebench study make`: build a self-contained study folder from results files and their samples.

The folder is written beside `out` under a temporary name and renamed into place when complete, so an
interrupted build leaves nothing that looks like a study. The same inputs and seed give a byte-identical
folder (no timestamps; content-named images; one JSON text form), which `build.json` says how to rebuild.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posebench.datasets.names import PairKey
from posebench.study.design import Design, Item, draw_design
from posebench.study.folder import FORMAT, PUBLIC, VERSION, dumps, write_manifest
from posebench.study.images import ImageWriter, display_size
from posebench.study.sources import StudySources, load_sources
from posebench.utils.io import OutputError, _umask

STATIC = Path(__file__).resolve().parent / "static"
STATIC_FILES = ("index.html", "app.js", "style.css")


@dataclass(frozen=True)
class BuiltStudy:
    folder: Path
    study_id: str
    manifest_sha256: str
    methods: list[str]
    scheme1: int  # items, repeats included
    scheme2: int
    images: int
    shared_pairs: int


def _check_out(out: Path) -> None:
    """A study is never written over anything: answers collected for an earlier build would no longer fit it."""
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise OutputError(f"--out {out} already exists and is not an empty folder; a study is never written over "
                          "another (its answers would no longer match). Choose a new folder")
    parent = out.parent
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"--out {out}: {parent} is a file, not a folder; choose another path")


def _entries(design: Design, sources: StudySources, writer: ImageWriter,
             progress: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(key items, plan items): the truth of each item, and what the page shows of it."""
    from rich.progress import track

    methods = {m.label: m for m in sources.methods}
    key: list[dict[str, Any]] = []
    plan: list[dict[str, Any]] = []
    items: list[Item] = design.items
    for item in track(items, description="study images", disable=not progress, transient=True):
        pair = item.pair
        repeat = item.repeat_of.id if item.repeat_of is not None else None
        if item.scheme == 1:
            real = item.kind == "real"
            image = writer.file(sources.split.images[pair.target] if real else methods[item.method].files[pair])
            key.append({"id": item.id, "scheme": 1, "kind": item.kind, "method": item.method,
                        "source": pair.source, "target": pair.target, "image": image, "repeat_of": repeat})
            plan.append({"id": item.id, "scheme": 1, "image": image})
        else:
            source = writer.file(sources.split.images[pair.source])
            pose = writer.pose(sources.split, pair)
            options = [{"slot": str(k), "method": m, "image": writer.file(methods[m].files[pair])}
                       for k, m in enumerate(item.order, 1)]
            key.append({"id": item.id, "scheme": 2, "source": pair.source, "target": pair.target,
                        "source_image": source, "pose_image": pose, "options": options, "repeat_of": repeat})
            plan.append({"id": item.id, "scheme": 2, "source": source, "pose": pose,
                         "options": [{"slot": o["slot"], "image": o["image"]} for o in options]})
    return key, plan


def _method_images_sha256(key: list[dict[str, Any]], methods: list[str]) -> dict[str, str]:
    """Per method, one sha256 over the (content-named) images of it the study shows: what a board row records."""
    shown: dict[str, set[str]] = {m: set() for m in methods}
    for item in key:
        if item["scheme"] == 1 and item["kind"] == "generated":
            shown[item["method"]].add(item["image"])
        for o in item.get("options", ()):
            shown[o["method"]].add(o["image"])
    return {m: hashlib.sha256("\n".join(sorted(shown[m])).encode()).hexdigest() for m in methods}


def _rebuild_command(results: list[Path], root: Path, labels: list[str], params: dict[str, int]) -> str:
    """The command that rebuilds the study; its output folder is left to choose (NEW_FOLDER), so the folder's own
    name is not part of its content and two builds of the same inputs are byte-identical wherever they are."""
    argv = ["posebench", "study", "make", "--results", *map(str, results), "--root", str(root), "--out", "NEW_FOLDER"]
    for name, value in params.items():
        argv += [f"--{name}", str(value)]
    for label in labels:
        argv += ["--label", label]
    return shlex.join(argv)


def make_study(results: list[Path], root: Path, out: Path, *, labels: list[str] | None = None, real: int = 30,
               generated: int = 20, sets: int = 30, checks: int = 2, seed: int = 0,
               progress: bool = False) -> BuiltStudy:
    """Build a study folder at `out` (see the module and docs/study.md).

    Raises:
        StudyError: bad inputs (a results file without samples, fewer shared images than asked for, ...).
        OutputError: `out` exists and is not an empty folder, or cannot be written.
    """
    from posebench._version import __version__
    from posebench.datasets.manifest import pairs_sha256

    out = Path(out)
    _check_out(out)
    sources = load_sources([Path(r) for r in results], Path(root), labels)
    names = [m.label for m in sources.methods]
    params = {"real": real, "generated": generated, "sets": sets, "checks": checks, "seed": seed}
    design = draw_design(names, sources.common, real=real, generated=generated, sets=sets, checks=checks, seed=seed)
    size = display_size(sources)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".building", dir=out.parent))
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot create the study folder ({exc.strerror or exc}); choose another "
                          "path") from None
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # what mkdir gives; mkdtemp's 0700 would hide the study from its group
        writer = ImageWriter(tmp / PUBLIC, size)
        key_items, plan_items = _entries(design, sources, writer, progress)
        used = sorted({(i["source"], i["target"]) for i in key_items})
        key = {"format": FORMAT, "version": VERSION, "methods": names, "items": key_items,
               "method_images_sha256": _method_images_sha256(key_items, names)}
        key_text = dumps(key)
        study_id = hashlib.sha256(key_text.encode()).hexdigest()[:16]
        (tmp / "key.json").write_text(key_text, encoding="utf-8")
        plan = {"study": study_id, "methods": len(names), "size": list(size),
                "counts": {"scheme1": len(design.scheme1), "scheme2": len(design.scheme2)}, "items": plan_items}
        (tmp / PUBLIC / "plan.json").write_text(dumps(plan), encoding="utf-8")
        for name in STATIC_FILES:
            shutil.copyfile(STATIC / name, tmp / PUBLIC / name)
        build = {
            "format": FORMAT, "version": VERSION, "study": study_id, "posebench": __version__, "seed": seed,
            "parameters": {k: v for k, v in params.items() if k != "seed"},
            "dataset": {"name": sources.dataset, "split": sources.split_name, "root": str(root),
                        "shared_pairs": len(sources.common),
                        "pairs_shown": len(used), "pairs_shown_sha256": pairs_sha256([PairKey(*p) for p in used])},
            "display_size": list(size),
            "inputs": [{"label": m.label, "results": str(m.results), "results_sha256": m.results_sha256,
                        "samples": str(m.pred), "pairs_with_samples": len(m.files),
                        # what the evaluation said of itself: a study of a subset or synthetic data inherits it
                        "canonical": bool(m.data.get("canonical", False)),
                        "non_canonical_reasons": list(m.data.get("non_canonical_reasons") or [])}
                       for m in sources.methods],
            "rebuild": _rebuild_command(results, root, names, params),
        }
        (tmp / "build.json").write_text(dumps(build), encoding="utf-8")
        manifest_sha = write_manifest(tmp)
        if out.is_dir():
            out.rmdir()  # empty (checked above); the rename below needs the name free
        tmp.rename(out)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        if isinstance(exc, OSError):  # reading inputs fails as StudyError; this is the output (disk full, ...)
            raise OutputError(f"--out {out}: the study could not be written ({exc.strerror or exc}); nothing was "
                              "left behind") from None
        raise
    return BuiltStudy(out, study_id, manifest_sha, names, len(design.scheme1), len(design.scheme2),
                      len(writer.written), len(sources.common))
