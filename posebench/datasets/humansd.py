"""HumanSD's text-image-pose layout on a Human-Art root, and Human-Art's own captions.

HumanSD (IDEA-Research/HumanSD, `ldm/data/humansd.py`) trains and validates from
  <root>/mapping_file_{training,validation}.json   {"<n>": {"img_path", "prompt", "pose_path"}, ...}
  <root>/images/<group>/<scenario>/<12 digits>.jpg
  <root>/pose/<group>/<scenario>/<12 digits>.npz    `arr_0`: a list of bottom-up detections, each a dict
                                                     {"keypoints": (17, 3) [x, y, score], "score", "area"}
Paths in the mapping may start with `HumanArt/` (stripped, as for the annotation files). The pose score is a
detector confidence: a joint is present when it exceeds 0.02 (HumanSD's threshold), and HumanSD draws at most
10 people per image.

The `.npz` arrays are pickled Python objects. They are read with a restricted unpickler that rebuilds only plain
numpy arrays (number or object dtypes, never structured ones, whose pickled state could make raw bytes pass for
object pointers), numpy number scalars and plain containers, with every array's state checked before numpy sees it
(the reason it is written here: numpy's own `allow_pickle=True` would run whatever a file names, and no library
reads these files otherwise).

Human-Art's annotation files carry the same prompt as the image's `description`; `read_humanart_captions` reads
those with the annotated keypoints (visibility > 0 becomes score 1), so a root without HumanSD's extras trains too.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posebench.datasets.humanart import rel_image_path
from posebench.datasets.problems import ProblemLog
from posebench.errors import PosebenchError

MAPPING_FILES: dict[str, tuple[str, ...]] = {
    # the HumanSD config says mapping_validation.json, its README mapping_file_validation.json: both are read
    "train": ("mapping_file_training.json",),
    "validation": ("mapping_file_validation.json", "mapping_validation.json"),
}
CAPTION_FILES = {"train": "training_humanart.json", "validation": "validation_humanart.json"}
MAX_PEOPLE = 10  # HumanSD's pose tensor holds 10 people
SCORE_THRESHOLD = 0.02  # a joint is present above this detector score (HumanSD)
NUM_JOINTS = 17  # COCO-17

# HumanSD's drawn skeleton: 16 limbs of COCO-17 (colour index = limb index), in its order.
HUMANSD_LIMBS: tuple[tuple[int, int], ...] = (
    (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7), (6, 8), (7, 9), (8, 10), (5, 11), (6, 12),
    (11, 13), (12, 14), (13, 15), (14, 16),
)


class PoseFileError(PosebenchError):
    """A HumanSD pose file that cannot be read safely or holds something else than detections."""


@dataclass(frozen=True)
class TextPoseRecord:
    """One training or validation item: an image, its prompt, and its people (COCO-17 x, y, score in the image's
    own pixels), read from `pose_file` when given, else held in `people`."""

    key: str
    image: Path
    prompt: str
    pose_file: Path | None = None
    people: np.ndarray | None = None  # (P, 17, 3)
    source: str = ""  # the file (and line) the record comes from, for errors found later


# ------------------------------------------------------------------------------------------- pose files

MAX_POSE_FILE_BYTES = 16 * 2**20  # a pose file is a few KB; a larger arr_0 is refused before it is read
_MAX_ELEMENTS = 1_000_000


def _plain_dtype(dt: object) -> np.dtype:
    """A dtype of plain numbers or Python objects: no fields, no sub-arrays, native or no byte order. (A pickled
    dtype's state can otherwise declare an object field inside a plain buffer, and bytes become pointers.)"""
    if not isinstance(dt, np.dtype) or dt.fields is not None or dt.subdtype is not None or dt.kind not in "biufO" \
            or dt.byteorder not in ("=", "|", "<" if np.little_endian else ">"):
        raise pickle.UnpicklingError(f"refusing dtype {dt!r}")
    return dt


def _dtype(spec: object, align: object = False, copy: object = False) -> np.dtype:
    """`numpy.dtype` for the unpickler: the shared built-in dtype of a plain type code (never a fresh, mutable one)."""
    if not isinstance(spec, str) or len(spec) > 4:
        raise pickle.UnpicklingError(f"refusing dtype {spec!r}")
    return _plain_dtype(np.dtype(spec))


def _reconstruct(cls: object, shape: object, typecode: object) -> np.ndarray:
    if cls is not np.ndarray or typecode != b"b":
        raise pickle.UnpicklingError("refusing an array of another class")
    return np.ndarray.__new__(np.ndarray, (0,), np.dtype("b"))


def _scalar(dt: object, data: object = None) -> object:
    dt = _plain_dtype(dt)
    if dt.kind == "O" or not isinstance(data, bytes) or len(data) != dt.itemsize:
        raise pickle.UnpicklingError("refusing a numpy scalar that is not a plain number")
    return np.frombuffer(data, dtype=dt)[0]


def _check_array_state(state: object) -> None:
    """ndarray.__setstate__'s (version, shape, dtype, fortran, data): a plain dtype, a bounded size, and data of the
    exact length (raw bytes for numbers, a list of that many objects for object arrays)."""
    if not isinstance(state, tuple) or len(state) != 5:
        raise pickle.UnpicklingError("refusing an array state of an unknown form")
    _, shape, dt, _, data = state
    dt = _plain_dtype(dt)
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and 0 <= n <= _MAX_ELEMENTS for n in shape):
        raise pickle.UnpicklingError(f"refusing an array of shape {shape!r}")
    count = int(np.prod(shape)) if shape else 1
    if count > _MAX_ELEMENTS:
        raise pickle.UnpicklingError(f"refusing an array of {count} elements")
    ok = isinstance(data, list) and len(data) == count if dt.kind == "O" else \
        isinstance(data, bytes) and len(data) == count * dt.itemsize
    if not ok:
        raise pickle.UnpicklingError("refusing array data that does not fit its shape and dtype")


_FACTORIES = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct, ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): _scalar, ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): _dtype,
}


class _DetectionUnpickler(pickle._Unpickler):  # the Python implementation: its BUILD can be checked
    """Rebuilds plain numpy arrays, numpy number scalars and Python containers only: every global is one of the
    factories above (any other class or function is refused), a dtype is always a shared built-in one, and every
    array's state is checked before numpy sees it."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str):  # noqa: ANN201 (pickle's signature)
        factory = _FACTORIES.get((module, name))
        if factory is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return factory

    def load_build(self) -> None:
        state = self.stack[-1]
        target = self.stack[-2]
        if isinstance(target, np.dtype):  # the shared dtype is kept as it is; its state must describe it
            self.stack.pop()
            if not isinstance(state, tuple) or len(state) < 5 or state[2:5] != (None, None, None):
                raise pickle.UnpicklingError("refusing a dtype state with fields or sub-arrays")
            return
        if not isinstance(target, np.ndarray) or type(target) is not np.ndarray:
            raise pickle.UnpicklingError(f"refusing to set the state of a {type(target).__name__}")
        _check_array_state(state)
        super().load_build()

    dispatch[pickle.BUILD[0]] = load_build


def _load_npy(raw: bytes, path: Path) -> np.ndarray:
    fh = io.BytesIO(raw)
    version = np.lib.format.read_magic(fh)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(fh)
    try:
        _plain_dtype(dtype)
    except pickle.UnpicklingError as exc:
        raise PoseFileError(f"{path}: arr_0 has {exc}; HumanSD pose files hold a list of detections") from None
    if dtype.hasobject:
        try:
            obj = _DetectionUnpickler(fh).load()
        except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError, IndexError, KeyError,
                MemoryError, OverflowError, RecursionError) as exc:
            raise PoseFileError(f"{path}: not a HumanSD pose file ({exc}); it may only hold numpy arrays and "
                                "plain containers") from None
        return np.asarray(obj, dtype=object) if not isinstance(obj, np.ndarray) else obj
    count = int(np.prod(shape)) if shape else 1
    data = np.frombuffer(fh.read(count * dtype.itemsize), dtype=dtype, count=count)
    return data.reshape(shape, order="F" if fortran else "C")


def read_pose_file(path: Path) -> np.ndarray:
    """People of a HumanSD `.npz` pose file as a float64 array (P, 17, 3) of x, y, score (P may be 0).

    Raises:
        PoseFileError: not a zip of `arr_0`, a class outside numpy arrays and containers, or detections that
            are not 17 x 3 finite numbers (the file and the person are named).
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            if "arr_0.npy" not in zf.namelist():
                raise PoseFileError(f"{path}: no arr_0 (HumanSD pose files are np.savez of one list of detections)")
            if zf.getinfo("arr_0.npy").file_size > MAX_POSE_FILE_BYTES:
                raise PoseFileError(f"{path}: arr_0 unpacks to {zf.getinfo('arr_0.npy').file_size} bytes; a pose "
                                    f"file holds a few detections (at most {MAX_POSE_FILE_BYTES} bytes read)")
            arr = _load_npy(zf.read("arr_0.npy"), path)
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        if isinstance(exc, PoseFileError):
            raise
        raise PoseFileError(f"{path}: unreadable pose file ({exc})") from None
    items = list(arr.reshape(-1)) if arr.dtype == object else None
    if items is None:  # a plain numeric array (P, 17, 3) is accepted as well
        people = np.asarray(arr, dtype=np.float64)
        if people.size == 0:
            return np.zeros((0, NUM_JOINTS, 3))
    else:
        rows = []
        for i, det in enumerate(items):
            kp = det.get("keypoints") if isinstance(det, dict) else det
            try:
                row = np.asarray(kp, dtype=np.float64) if isinstance(kp, (np.ndarray, list, tuple)) else None
            except (ValueError, TypeError):
                row = None
            if row is None or row.shape != (NUM_JOINTS, 3):
                got = "no numbers" if row is None else f"shape {row.shape}"
                raise PoseFileError(f"{path}: person {i} has keypoints of {got}, expected ({NUM_JOINTS}, 3) x, y, "
                                    "score")
            rows.append(row)
        people = np.stack(rows) if rows else np.zeros((0, NUM_JOINTS, 3))
    if people.ndim != 3 or people.shape[1:] != (NUM_JOINTS, 3):
        raise PoseFileError(f"{path}: keypoints of shape {people.shape}, expected (people, {NUM_JOINTS}, 3)")
    if not np.isfinite(people).all():
        raise PoseFileError(f"{path}: keypoints hold NaN or infinite values")
    return people


def write_pose_file(path: Path, people: np.ndarray) -> None:
    """A pose file in HumanSD's layout (`np.savez` of a list of {"keypoints", "score", "area"} dicts)."""
    dets = np.empty(len(people), dtype=object)
    for i, kp in enumerate(people):
        kp = np.asarray(kp, dtype=np.float32)
        present = kp[:, 2] > SCORE_THRESHOLD
        xy = kp[present, :2]
        area = float(np.ptp(xy[:, 0]) * np.ptp(xy[:, 1])) if len(xy) else 0.0
        dets[i] = {"keypoints": kp, "score": float(kp[:, 2].mean()), "area": area}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, dets)
    tmp.replace(path)


# ------------------------------------------------------------------------------------------- pose image


def limb_colours() -> list[tuple[int, int, int]]:
    """seaborn's `color_palette("hls", 16)` as 0-255 RGB (hues i/16 + 0.01, lightness 0.6, saturation 0.65);
    written with colorsys so that seaborn is not a dependency."""
    import colorsys

    out = []
    for i in range(len(HUMANSD_LIMBS)):
        r, g, b = colorsys.hls_to_rgb((i / len(HUMANSD_LIMBS) + 0.01) % 1, 0.6, 0.65)
        out.append((int(255 * r), int(255 * g), int(255 * b)))
    return out


def pose_image(people: np.ndarray, size: tuple[int, int], *, threshold: float = SCORE_THRESHOLD,
               width: int | None = None) -> np.ndarray:
    """HumanSD's pose condition: a black (H, W, 3) uint8 image with each present limb drawn as a line of `width`
    pixels in its hls colour and a disc of radius width // 2 at both ends (width 10 at 512 px; scaled with the
    shorter side when not given). `people` is (P, 17, 3) in this image's pixels."""
    import cv2

    h, w = size
    width = width if width is not None else max(1, round(10 * min(h, w) / 512))
    canvas = np.zeros((h, w, 3), dtype=np.uint8)
    colours = limb_colours()
    for kp in people:
        if not np.any(kp):
            continue
        for idx, (a, b) in enumerate(HUMANSD_LIMBS):
            if kp[a, 2] > threshold and kp[b, 2] > threshold:
                pa, pb = (int(kp[a, 0]), int(kp[a, 1])), (int(kp[b, 0]), int(kp[b, 1]))
                cv2.line(canvas, pa, pb, colours[idx], width)
                cv2.circle(canvas, pa, width // 2, colours[idx], -1)
                cv2.circle(canvas, pb, width // 2, colours[idx], -1)
    return canvas


# ------------------------------------------------------------------------------------------- readers


def _line_of(text: str, needle: str) -> int | None:
    at = text.find(needle)
    return None if at < 0 else text.count("\n", 0, at) + 1


def _read_json(path: Path, log: ProblemLog) -> tuple[str, object]:
    """(text, parsed JSON), or (text, None) with the problem (and its line) logged."""
    text = path.read_text(encoding="utf-8")
    try:
        return text, json.loads(text)
    except ValueError as exc:
        log.error(path, getattr(exc, "lineno", None), f"malformed JSON ({exc})")
        return text, None


def mapping_file(root: Path, split: str) -> Path | None:
    for name in MAPPING_FILES.get(split, ()):
        if (root / name).is_file():
            return root / name
    return None


def read_mapping(root: Path, split: str, log: ProblemLog) -> list[TextPoseRecord]:
    """The records of HumanSD's mapping file of `split`; problems go to `log` with the file and line (missing
    keys, empty prompts, paths outside the root, missing image or pose files, a pose file not named after its
    image)."""
    path = mapping_file(root, split)
    if path is None:
        names = " or ".join(MAPPING_FILES.get(split, ("?",)))
        log.error(root / MAPPING_FILES.get(split, ("mapping.json",))[0], None,
                  f"no HumanSD mapping file for split {split!r} ({names})",
                  "HumanSD's extras (mapping files and pose/) come from its own download form; or train on "
                  "Human-Art's captions (--text-pose-data humanart)")
        return []
    text, data = _read_json(path, log)
    if data is None:
        return []
    if not isinstance(data, dict):
        log.error(path, 1, "expected an object {\"<index>\": {\"img_path\", \"prompt\", \"pose_path\"}, ...}")
        return []
    lines: dict[str, int] = {}

    def key_lines() -> dict[str, int]:  # the line of every top-level key, found in one pass at the first problem
        if not lines:
            import re

            pos, line = 0, 1
            for m in re.finditer(r'"((?:[^"\\]|\\.)*)"\s*:\s*\{', text):
                line += text.count("\n", pos, m.start())
                pos = m.start()
                lines.setdefault(m.group(1), line)
        return lines

    out = []
    for key, entry in data.items():
        where = f"{path} (entry {key!r})"

        def problem(message: str, hint: str = "", key: str = key) -> None:
            log.error(path, key_lines().get(key), f"entry {key!r}{message}", hint)
        if not isinstance(entry, dict):
            problem(" is not an object")
            continue
        missing = [k for k in ("img_path", "prompt", "pose_path") if k not in entry]
        if missing:
            problem(f" lacks {', '.join(missing)}")
            continue
        prompt = entry["prompt"]
        if not isinstance(prompt, str) or not prompt.strip():
            problem(" has an empty prompt", "every image needs its caption")
            continue
        img_rel, pose_rel = rel_image_path(str(entry["img_path"])), rel_image_path(str(entry["pose_path"]))
        bad = [p for p in (img_rel, pose_rel) if p.is_absolute() or ".." in p.parts]
        if bad:
            problem(f": {bad[0]} escapes the dataset root")
            continue
        if img_rel.stem != pose_rel.stem or img_rel.parts[-2:-1] != pose_rel.parts[-2:-1]:
            problem(f": pose file {pose_rel} does not belong to image {img_rel}",
                    "HumanSD names a pose file after its image (pose/<same tree>/<same stem>.npz)")
            continue
        for rel, what in ((img_rel, "image"), (pose_rel, "pose file")):
            if not (root / rel).is_file():
                problem(f": {what} {root / rel} does not exist")
                break
        else:
            out.append(TextPoseRecord(str(key), root / img_rel, prompt.strip(), pose_file=root / pose_rel,
                                      source=where))
    if not out and not log.errors:
        log.error(path, None, "the mapping file lists no items")
    return out


def read_humanart_captions(root: Path, split: str, log: ProblemLog) -> list[TextPoseRecord]:
    """Human-Art's own annotation file of `split`: each image's `description` as the prompt and its annotated
    people (17 COCO joints; visibility > 0 -> score 1.0)."""
    path = root / "annotations" / CAPTION_FILES.get(split, f"{split}_humanart.json")
    if not path.is_file():
        log.error(path, None, f"missing Human-Art annotations for split {split!r}")
        return []
    text, data = _read_json(path, log)
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        log.error(path, None, "expected a COCO-style object with an 'images' list")
        return []
    people: dict[object, list[np.ndarray]] = {}
    for ann in data.get("annotations", []):
        kp = np.asarray(ann.get("keypoints", []), dtype=np.float64)
        if kp.shape == (NUM_JOINTS * 3,) and np.isfinite(kp).all():
            kp = kp.reshape(NUM_JOINTS, 3)
            kp[:, 2] = (kp[:, 2] > 0).astype(np.float64)
            people.setdefault(ann.get("image_id"), []).append(kp)
    out = []
    for i, img in enumerate(data["images"]):
        name = str(img.get("file_name", ""))
        def line(name: str = name) -> int | None:  # looked up only for an error: a scan per entry is quadratic
            return _line_of(text, json.dumps(name)) if name else None
        prompt = img.get("description")
        if not isinstance(prompt, str) or not prompt.strip():
            log.error(path, line(), f"images[{i}] ({name or 'no file_name'}) has no description (its caption)")
            continue
        rel = rel_image_path(name)
        if rel.is_absolute() or ".." in rel.parts:
            log.error(path, line(), f"images[{i}] file_name {name!r} escapes the root")
            continue
        found = people.get(img.get("id"), [])
        arr = np.stack(found) if found else np.zeros((0, NUM_JOINTS, 3))
        key = f"{rel.parts[-2]}/{rel.stem}" if len(rel.parts) >= 2 else rel.stem
        out.append(TextPoseRecord(key, root / rel, prompt.strip(), people=arr,
                                  source=f"{path} (images[{i}])"))
    return out


READERS = {"humansd": read_mapping, "humanart": read_humanart_captions}


def read_records(dataset: str, root: Path, split: str) -> list[TextPoseRecord]:
    """All records of a split, checked: raises DataError listing every problem (file and line)."""
    if dataset not in READERS:
        raise PosebenchError(f"unknown text-image-pose dataset {dataset!r}; choose {' or '.join(READERS)}")
    log = ProblemLog()
    records = READERS[dataset](Path(root), split, log)
    log.raise_if_errors(f"{dataset} root {root} ({split})")
    return records
