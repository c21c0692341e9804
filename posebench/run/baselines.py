"""Trivial baselines that give a benchmark's numbers a floor: what a method scores without generating anything.

- `copy-source`: the source image itself as the "generated" target (right person and clothes, wrong pose);
- `mean-train`: the mean of the protocol dataset's training images, the same picture for every pair (the
  best constant image in squared error; no person in any pose).

Each writes one PNG per test pair of a protocol, named `{source}__{target}.png` at the protocol resolution
(PIL bicubic, the clean profile's ground-truth resize), so `posebench eval --pred OUT` scores the folder like
any method's. Resumable: existing files are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np

from posebench.errors import PosebenchError

BaselineKind = Literal["copy-source", "mean-train"]
BASELINES: tuple[str, ...] = ("copy-source", "mean-train")


def mean_image(paths: list[Path], size: tuple[int, int], on_image: Callable[[], object] | None = None) -> np.ndarray:
    """Pixel-wise mean (float64 accumulation, rounded to uint8) of `paths` resized to `size` (H, W)."""
    from posebench.images import read_rgb, resize

    if not paths:
        raise PosebenchError("the mean image needs at least one training image")
    acc = np.zeros((*size, 3), dtype=np.float64)
    for path in paths:
        img = read_rgb(path)
        acc += resize(img, size, "pil-bicubic") if img.shape[:2] != tuple(size) else img
        if on_image is not None:
            on_image()
    return np.clip(np.rint(acc / len(paths)), 0, 255).astype(np.uint8)


RECORD = ".posebench-baseline.json"  # what a folder's images are: resuming another kind would keep the wrong images


def _claim_folder(out: Path, what: dict[str, str]) -> None:
    """Make `out` this baseline's folder, or check that it already is (resume); refuse anything else."""
    import json

    from posebench.utils.io import atomic_write_text

    if out.exists() and not out.is_dir():
        raise PosebenchError(f"--out {out} is a file; give a folder for the baseline's images")
    record = out / RECORD
    if record.is_file():
        try:
            had = json.loads(record.read_text())
        except ValueError:
            had = None
        if had != what:
            raise PosebenchError(f"{out} holds another baseline's images ({record}: {had}); resuming would keep "
                                 f"them as {what['baseline']} for {what['protocol']}. Use another --out")
        return
    if out.is_dir() and any(out.iterdir()):
        raise PosebenchError(f"{out} is not empty and was not written by `posebench baseline` ({RECORD} missing); "
                             "use an empty or new --out")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record, json.dumps(what) + "\n")


def write_baseline(kind: str, protocol: str, root: Path, out: Path, *, progress: bool = True) -> int:
    """Write baseline `kind` for every test pair of `protocol` into `out`; returns the number of new files.

    Raises:
        PosebenchError: unknown kind, a root that does not load, no test pairs or no training images.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn

    from posebench.datasets import manifest
    from posebench.datasets.problems import ProblemLog
    from posebench.images import read_rgb, resize, write_png
    from posebench.protocols import get_protocol
    from posebench.utils.progress import Progress

    if kind not in BASELINES:
        raise PosebenchError(f"unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}")
    spec = get_protocol(protocol)
    log = ProblemLog()
    index = manifest.load(spec.dataset, Path(root), log)
    log.raise_if_errors(f"{spec.dataset} root {root}")
    split = index.splits.get(spec.split)
    if split is None or not split.pairs:
        raise PosebenchError(f"{root} has no pairs in the {spec.split!r} split of {spec.name}")
    size = tuple(spec.resolution)
    out = Path(out)
    _claim_folder(out, {"baseline": kind, "protocol": spec.name})
    todo = [k for k in sorted(split.pairs) if not (out / k.filename).exists()]
    # one labelled row per step (the mean-train baseline has two: averaging the training images, then writing)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, disable=not progress) as bar:
        constant: np.ndarray | None = None
        if kind == "mean-train" and todo:
            train = index.splits.get("train")
            if train is None or not train.images:
                raise PosebenchError(f"{root} has no training images for the mean-train baseline")
            paths = [train.images[s] for s in sorted(train.images)]
            task = bar.add_task(f"baseline {kind}: mean of the training images", total=len(paths))
            constant = mean_image(paths, size, lambda: bar.advance(task))
        task = bar.add_task(f"baseline {kind}: write", total=len(todo))
        for key in todo:
            if constant is not None:
                img = constant
            else:
                img = read_rgb(split.images[key.source])
                img = resize(img, size, "pil-bicubic") if img.shape[:2] != size else img
            write_png(out / key.filename, img)
            bar.advance(task)
    return len(todo)

