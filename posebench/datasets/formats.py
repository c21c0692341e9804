"""Readers of the small text formats shared by DeepFashion and Market-1501 (PATN / GFLA lineage):
image lists (`*.lst`), pair CSVs (`from,to`), annotation CSVs (`name:keypoints_y:keypoints_x`), and the
NTED/PIDM `*_pairs.txt` and `pose/*.txt` files. Each reader validates as it reads and logs every problem
with its file and line into a ProblemLog instead of stopping at the first.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from posebench.datasets.keypoints import Keypoints
from posebench.datasets.names import PairKey, flat_name, stem
from posebench.datasets.problems import ProblemLog

NUM_OPENPOSE_JOINTS = 18


def check_name(name: str, file: Path, line: int, log: ProblemLog) -> bool:
    """A bare image file name: no directory parts, nothing that escapes the root."""
    if name and name[0] != "." and "/" not in name and "\\" not in name:
        return True  # the common case, decided without further work
    if not name:
        log.error(file, line, "empty image name")
        return False
    if "/" in name or "\\" in name or name in {".", ".."} or name.startswith(".."):
        log.error(file, line, f"image name {name!r} contains a path; names must be bare file names",
                  "remove directory parts (and never '../')")
        return False
    return True


def read_lst(path: Path, log: ProblemLog) -> list[str]:
    """One image name per line (blank lines skipped); duplicates and bad names are logged."""
    names: list[str] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(path.read_text().splitlines(), start=1):
        name = raw.strip()
        if not name:
            continue
        if not check_name(name, path, i, log):
            continue
        if name in seen:
            log.error(path, i, f"duplicate name {name!r} (first on line {seen[name]})", "remove the repeat")
            continue
        seen[name] = i
        names.append(name)
    return names


def read_pairs_csv(path: Path, log: ProblemLog) -> list[PairKey]:
    """`from,to` CSV (source first). Self-pairs, duplicates and malformed rows are logged."""
    lines = path.read_text().splitlines()
    if not lines or [c.strip() for c in lines[0].split(",")] != ["from", "to"]:
        log.error(path, 1, f"header must be 'from,to', got {lines[0]!r}" if lines else "file is empty",
                  "this is the PATN/GFLA pair format: source first, target second")
        return []
    pairs: list[PairKey] = []
    seen: dict[PairKey, int] = {}
    stems: dict[str, str] = {}  # each image occurs in many pairs: strip its suffix once
    for i, raw in enumerate(lines[1:], start=2):
        if not raw.strip():
            continue
        cells = raw.split(",")
        if len(cells) != 2:
            log.error(path, i, f"expected 2 comma-separated names, got {len(cells)}: {raw!r}")
            continue
        a, b = cells[0].strip(), cells[1].strip()
        if not (check_name(a, path, i, log) and check_name(b, path, i, log)):
            continue
        sa = stems.get(a) or stems.setdefault(a, stem(a))
        sb = stems.get(b) or stems.setdefault(b, stem(b))
        key = PairKey(sa, sb)
        if key.source == key.target:
            log.error(path, i, f"source and target are the same image {cells[0]!r}",
                      "a pair needs two different images of one person")
            continue
        if key in seen:
            log.error(path, i, f"duplicate pair {key} (first on line {seen[key]})")
            continue
        seen[key] = i
        pairs.append(key)
    return pairs


def _parse_int_list(cell: str) -> list[int] | None:
    try:
        values = json.loads(cell)
    except ValueError:
        return None
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) for v in values):
        return None
    return [int(round(v)) for v in values]


def _parse_rows_bulk(cells: list[str]) -> np.ndarray | None:
    """All `[a, b, ...]` cells as one (rows, 18) array in a single conversion, or None if any cell is not
    a clean list of 18 integers (then the caller re-parses row by row to report exact lines)."""
    try:
        if not all(c.startswith("[") and c.endswith("]") and c.count(",") == NUM_OPENPOSE_JOINTS - 1 for c in cells):
            return None
        flat = ",".join(c[1:-1] for c in cells).split(",")
        return np.array(flat, dtype=np.int64).reshape(len(cells), NUM_OPENPOSE_JOINTS)
    except ValueError:
        return None


def read_annotation_csv(path: Path, frame: tuple[int, int], log: ProblemLog) -> dict[str, Keypoints]:
    """`name:keypoints_y:keypoints_x` (colon separated, Y LIST FIRST), 18 OpenPose joints, -1 = missing.

    Returns OpenPose-18 Keypoints in `frame` keyed by image stem. A coordinate outside the frame (the
    PATN x-40 shift leaves such joints unmarked) is treated as missing and logged as a warning.
    """
    lines = path.read_text().splitlines()
    if not lines or [c.strip() for c in lines[0].split(":")] != ["name", "keypoints_y", "keypoints_x"]:
        log.error(path, 1, f"header must be 'name:keypoints_y:keypoints_x', got {lines[0]!r}" if lines
                  else "file is empty")
        return {}
    h, w = frame
    rows: list[tuple[int, str, str, str]] = []  # (line, name, y cell, x cell)
    first_line: dict[str, int] = {}
    for i, raw in enumerate(lines[1:], start=2):
        if not raw.strip():
            continue
        cells = raw.split(":")
        if len(cells) != 3:
            log.error(path, i, f"expected 3 colon-separated fields, got {len(cells)}")
            continue
        name = cells[0].strip()
        if not check_name(name, path, i, log):
            continue
        key = stem(name)
        if key in first_line:
            log.error(path, i, f"duplicate annotation for {name!r} (first on line {first_line[key]})")
            continue
        first_line[key] = i
        rows.append((i, key, cells[1].replace(" ", ""), cells[2].replace(" ", "")))

    ys = _parse_rows_bulk([r[2] for r in rows])
    xs = _parse_rows_bulk([r[3] for r in rows]) if ys is not None else None
    if ys is None or xs is None:  # slow path: find and report the bad rows
        good, ys_l, xs_l = [], [], []
        for row in rows:
            y, x = _parse_int_list(row[2]), _parse_int_list(row[3])
            if y is None or x is None:
                log.error(path, row[0], "keypoints must be lists of integers like [12, -1, ...]")
            elif len(y) != NUM_OPENPOSE_JOINTS or len(x) != NUM_OPENPOSE_JOINTS:
                log.error(path, row[0], f"expected {NUM_OPENPOSE_JOINTS} joints, got {len(y)} y and {len(x)} x "
                          "values", "these files use the 18 OpenPose joints")
            else:
                good.append(row)
                ys_l.append(y)
                xs_l.append(x)
        rows = good
        ys = np.array(ys_l, dtype=np.int64).reshape(-1, NUM_OPENPOSE_JOINTS)
        xs = np.array(xs_l, dtype=np.int64).reshape(-1, NUM_OPENPOSE_JOINTS)

    # Visibility for every row at once: not marked -1 and inside the frame.
    xy = np.stack([xs, ys], axis=-1).astype(np.float32)  # (rows, 18, 2) as (x, y)
    marked = (xs == -1) | (ys == -1)
    inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    visible = ~marked & inside
    outside = ~marked & ~inside
    xy[~visible] = np.nan
    out: dict[str, Keypoints] = {}
    for r, (line, key, _, _) in enumerate(rows):
        if outside[r].any():
            log.warning(path, line, f"{int(outside[r].sum())} joint(s) of {key!r} lie outside the {h}x{w} frame",
                        "treated as missing")
        out[key] = Keypoints._trusted(xy[r], visible[r], (int(h), int(w)), "openpose18")
    return out


def read_pairs_txt(path: Path, log: ProblemLog) -> list[PairKey]:
    """NTED/PIDM `*_pairs.txt`: `target,source[,source...]` per line (TARGET FIRST).

    NTED/PIDM pick one source at random when several are listed, even at test time; posebench pins the
    first listed source so the pairs are fixed, and logs a warning per multi-source line.
    """
    pairs: list[PairKey] = []
    seen: set[PairKey] = set()
    for i, raw in enumerate(path.read_text().splitlines(), start=1):
        if not raw.strip():
            continue
        cells = [c.strip() for c in raw.split(",")]
        if len(cells) < 2:
            log.error(path, i, f"expected 'target,source[,source...]', got {raw!r}")
            continue
        try:  # the files hold img/... paths; posebench keys are the flattened names
            names = [flat_name(c) if c.startswith(("img/", "img_highres/")) else c for c in cells]
        except ValueError as exc:
            log.error(path, i, str(exc))
            continue
        if any(not check_name(n, path, i, log) for n in names):
            continue
        if len(cells) > 2:
            log.warning(path, i, f"{len(cells) - 1} sources listed; posebench pins the first",
                        "NTED/PIDM choose one at random")
        key = PairKey.of(names[1], names[0])
        if key.source == key.target:
            log.error(path, i, "source and target are the same image")
            continue
        if key not in seen:
            seen.add(key)
            pairs.append(key)
    return pairs


def read_pose_txt(path: Path, frame: tuple[int, int], log: ProblemLog) -> Keypoints | None:
    """NTED/PIDM `pose/<path>.txt`: 18 rows of (x, y) (X FIRST), in the 256x256 low-res frame."""
    try:
        xy = np.loadtxt(path, dtype=np.float32, ndmin=2)
    except ValueError as exc:
        log.error(path, None, f"not a numeric 18x2 table ({exc})")
        return None
    if xy.shape != (NUM_OPENPOSE_JOINTS, 2):
        log.error(path, None, f"expected 18 rows of (x, y), got shape {xy.shape}")
        return None
    return Keypoints.from_xy(xy, frame, "openpose18")


def write_annotation_csv_rows(keypoints: dict[str, Keypoints]) -> str:
    """The annotation CSV text for `keypoints` (the inverse of read_annotation_csv, for tests and synth)."""
    rows = ["name:keypoints_y:keypoints_x"]
    for name, kp in keypoints.items():
        arr = np.rint(kp.to_array(-1)).astype(int)
        rows.append(f"{name}:{json.dumps(arr[:, 1].tolist())}:{json.dumps(arr[:, 0].tolist())}")
    return "\n".join(rows) + "\n"


def read_name_map(path: Path, log: ProblemLog) -> dict[str, str]:
    """A map from a release's own image names to dataset names (PCDMs renamed DeepFashion to `img1.png` ..
    `img52712.png`): a JSON object `{"img1": "fashionWOMEN...jpg", ...}`, or a CSV / TSV / whitespace file of
    two columns per line (an optional header line `name,dataset_name`). Both sides are keyed by stem.
    Malformed lines, empty names and a name mapped twice are logged with file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        log.error(path, None, f"cannot read the name map ({type(exc).__name__}: {exc})")
        return {}
    out: dict[str, str] = {}
    if text.lstrip().startswith("{"):
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            log.error(path, exc.lineno, f"not valid JSON: {exc.msg}")
            return {}
        for k, v in raw.items():
            if not isinstance(v, str) or not k or not v:
                log.error(path, None, f"entry {k!r}: expected a non-empty dataset name string, got {v!r}")
                continue
            out[stem(k)] = stem(v)
        return out
    seen: dict[str, int] = {}
    for i, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        cells = [c.strip() for c in (line.split(",") if "," in line else line.split())]
        if i == 1 and cells and cells[0].lower() in ("name", "pcdms", "from", "release_name"):
            continue  # header
        if len(cells) != 2 or not all(cells):
            log.error(path, i, f"expected two names (release name, dataset name), got {line!r}")
            continue
        key = stem(cells[0])
        if key in seen:
            log.error(path, i, f"{cells[0]!r} is mapped twice (first on line {seen[key]})", "keep one line")
            continue
        seen[key] = i
        out[key] = stem(cells[1])
    if not out and not log.errors:
        log.error(path, None, "the name map is empty")
    return out
