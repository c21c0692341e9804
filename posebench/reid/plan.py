"""Generation plan for the re-ID augmentation set D_aug (docs/reid.md).

For every real image of the subset D_tr (sorted), `k` generated images:

- source = that real image (so each D_tr image is a source exactly k times; per pid this is "uniform over D_tr
  images of that pid");
- target pose = drawn uniformly (seeded, `random.Random(seed)`) from the target pool, by default D_tr itself.
  Any identity may be drawn, including the source's own (Deformable GAN and PIDM draw from the whole pool); the
  source image itself is excluded (that would be a reconstruction, not a new pose). The k targets of one source
  are distinct (sampled without replacement), so k <= pool size - 1;
- labels = the source's Market pid and camera (`camid` 1..6 as in the name); relabelling to 0..N-1 happens
  together with D_tr in the dataset adapter;
- file name = posebench's pair name `{source}__{target}.png` (stems, see `PairKey.filename`). Because the k
  targets of a source are distinct, no k index is needed and every name parses with the "posebench" scheme.
  The row also carries `index` (0..k-1), the draw order.

`write_plan` writes a CSV any generator can fill (`filename,source,target,pid,camid,index`); `validate_generated`
checks a folder of outputs against the plan before any training.
"""

from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass
from pathlib import Path

from posebench.datasets.names import PairKey, parse_market, stem
from posebench.errors import PosebenchError
from posebench.utils.io import atomic_write_text

PLAN_COLUMNS = ("filename", "source", "target", "pid", "camid", "index")


@dataclass(frozen=True)
class PlanRow:
    filename: str  # generated image file name, `{source}__{target}.png`
    source: str  # source image stem (a D_tr image)
    target: str  # target-pose image stem
    pid: int  # source pid (raw Market pid)
    camid: int  # source camera, 1..6 as in the Market name
    index: int  # 0..k-1: draw order among the k targets of this source


def make_plan(subset: list[str], *, k: int = 1, seed: int = 0, target_pool: list[str] | None = None) -> list[PlanRow]:
    """k generated images per real image of `subset` (see the module docstring for the rule).

    Args:
        subset: D_tr file names (Market names, with or without extension).
        k: generated images per real image (>= 1).
        seed: integer seed of `random.Random`.
        target_pool: names the target poses are drawn from; default `subset` (D_tr).

    Returns:
        Rows sorted by source, then draw index.

    Raises:
        PosebenchError: empty or duplicate subset, non-Market names, k < 1 or k larger than the pool allows.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise PosebenchError(f"k (generated images per real image) must be an integer >= 1, got {k!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise PosebenchError(f"seed must be an integer, got {seed!r}")
    sources = sorted(stem(Path(n).name) for n in subset)
    pool = sorted(stem(Path(n).name) for n in (subset if target_pool is None else target_pool))
    if not sources:
        raise PosebenchError("the subset is empty")
    for what, items in (("subset", sources), ("target pool", pool)):
        if len(set(items)) != len(items):
            raise PosebenchError(f"the {what} has duplicate image names")
    labels = {}
    for s in sources:
        try:
            name = parse_market(s)
        except ValueError as exc:
            raise PosebenchError(f"subset: {exc}") from exc
        labels[s] = (name.pid, name.camid)
    position = {t: i for i, t in enumerate(pool)}
    rng = random.Random(seed)
    rows: list[PlanRow] = []
    for s in sources:
        own = position.get(s)
        n_choices = len(pool) - (own is not None)
        if k > n_choices:
            raise PosebenchError(f"k={k} distinct targets per source but the target pool offers only {n_choices} "
                                 f"images besides {s}")
        draws = rng.sample(range(n_choices), k)
        for j, d in enumerate(draws):
            t = pool[d + 1 if own is not None and d >= own else d]
            pid, camid = labels[s]
            rows.append(PlanRow(PairKey(s, t).filename, s, t, pid, camid, j))
    return rows


def write_plan(path: str | Path, rows: list[PlanRow]) -> Path:
    """Write the plan as CSV (header `filename,source,target,pid,camid,index`), atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(PLAN_COLUMNS)
    for r in rows:
        w.writerow((r.filename, r.source, r.target, r.pid, r.camid, r.index))
    path = Path(path)
    atomic_write_text(path, buf.getvalue())
    return path


def read_plan(path: str | Path) -> list[PlanRow]:
    """Read a plan CSV written by `write_plan`; raises PosebenchError naming the bad line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PosebenchError(f"cannot read plan {path}: {exc}") from exc
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(header) != PLAN_COLUMNS:
        raise PosebenchError(f"{path}: header {header!r}, expected {','.join(PLAN_COLUMNS)}")
    rows = []
    for line_no, rec in enumerate(reader, start=2):
        try:
            filename, source, target, pid, camid, index = rec
            rows.append(PlanRow(filename, source, target, int(pid), int(camid), int(index)))
        except ValueError as exc:
            raise PosebenchError(f"{path}:{line_no}: bad plan row {rec!r} ({exc})") from exc
    names = [r.filename for r in rows]
    if len(set(names)) != len(names):
        raise PosebenchError(f"{path}: duplicate file names in the plan")
    return rows


def validate_generated(plan_rows: list[PlanRow], folder: str | Path, size: tuple[int, int] = (128, 64)) -> None:
    """Check that `folder` holds exactly the plan's images, each readable and of `size` (H, W).

    Every file in the folder is decoded fully (PIL `load`), so truncated files count as unreadable.

    Raises:
        PosebenchError: listing every missing, extra, unreadable and wrong-size file.
    """
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise PosebenchError(f"generated-image folder {folder} does not exist")
    expected = {r.filename for r in plan_rows}
    present = {p.name for p in folder.iterdir()}
    missing = sorted(expected - present)
    extra = sorted(present - expected)
    unreadable: list[str] = []
    wrong: list[str] = []
    h, w = size
    for name in sorted(expected & present):
        p = folder / name
        try:
            with Image.open(p) as im:
                im.load()
                got_w, got_h = im.size
        except Exception as exc:  # any decoder failure means unreadable
            unreadable.append(f"{name} ({type(exc).__name__}: {exc})")
            continue
        if (got_h, got_w) != (h, w):
            wrong.append(f"{name} is {got_h}x{got_w}")
    parts = []
    for label, items in (("missing", missing), ("extra", extra), ("unreadable", unreadable),
                         (f"wrong size (expected {h}x{w} HxW)", wrong)):
        if items:
            parts.append(f"{label} ({len(items)}): " + ", ".join(items))
    if parts:
        raise PosebenchError(f"generated images in {folder} do not match the plan ({len(expected)} expected):\n  "
                             + "\n  ".join(parts))
