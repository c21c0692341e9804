"""Run a pose estimator over a folder of images and write COCO keypoint results (`posebench pose detect`).

Every image, whatever its size, is letterboxed to the estimator's square input (HigherHRNet: 512x512), as mmpose's
bottom-up affine does it at a single scale: the longer side is scaled to the input size, the aspect ratio is kept,
the resized image is centred and the rest is padded with black (0 before normalisation). Keypoints come back in
input pixels and are mapped linearly to the original image (`Letterbox.to_original`, what mmpose's
`transform_preds` does without UDP): ``x = (x_in - offset_x) / scale_x``. Pixel coordinates are continuous with
pixel ``i`` covering ``[i, i + 1)`` (the resize is half-pixel aligned, so the map is exact in that convention).

Decoding:

- every estimator returns people per image (`PoseEstimator.people`); each person becomes one result row (joint
  scores as v, the person score as `score`). HigherHRNet groups joints by associative embedding; the others
  (`tiny-random`, `synthetic-posenet`) decode one person: per joint, the argmax of its heatmap, mapped to input
  pixels by the estimator's stride with the pixel-centre convention of `posebench.pose.base.keypoint_heatmaps`
  (``x_in = (x_hm + 0.5) * stride - 0.5``); the joint score is the heatmap value there and the person score the
  mean joint score. An image whose joint scores are all 0 gives no row.
- the registry entry of each estimator (`posebench.pose.base.ESTIMATORS`) says how to load its weights and whether
  its results are canonical; its class gives its input size and decoding: no estimator is special-cased by name.

An image with no person gives no rows (a miss for the metrics, not an error); an unreadable image is an error
naming the file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from posebench.errors import PosebenchError

log = logging.getLogger(__name__)

DEFAULT_ESTIMATOR = "higherhrnet-w32-coco"
DEFAULT_INPUT_SIZE = 512  # estimators without an `input_size` attribute (tiny-random)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
CATEGORY_ID = 1


# ---------------------------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class Letterbox:
    """The map from an original image to the letterboxed network input.

    Attributes:
        scale_x: input pixels per original pixel along x (new width / original width).
        scale_y: the same along y (equal to `scale_x` up to the rounding of the resized size).
        offset_x: left padding in input pixels.
        offset_y: top padding in input pixels.
        size: (H, W) of the network input.
        content: (H', W') of the resized image inside the input.
    """

    scale_x: float
    scale_y: float
    offset_x: int
    offset_y: int
    size: tuple[int, int]
    content: tuple[int, int]

    def to_input(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) original-image coordinates to input coordinates."""
        xy = np.asarray(xy, dtype=np.float64)
        return np.stack([xy[..., 0] * self.scale_x + self.offset_x, xy[..., 1] * self.scale_y + self.offset_y], -1)

    def to_original(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) input coordinates to original-image coordinates (the inverse of `to_input`)."""
        xy = np.asarray(xy, dtype=np.float64)
        return np.stack([(xy[..., 0] - self.offset_x) / self.scale_x, (xy[..., 1] - self.offset_y) / self.scale_y],
                        -1)


def letterbox_params(height: int, width: int, size: int | tuple[int, int]) -> Letterbox:
    """Scale the longer side to the input size, keep the aspect ratio, centre (see the module docstring)."""
    out_h, out_w = (size, size) if isinstance(size, int) else size
    if height <= 0 or width <= 0:
        raise ValueError(f"empty image ({height}x{width})")
    s = min(out_h / height, out_w / width)
    new_w = min(out_w, max(1, round(width * s)))
    new_h = min(out_h, max(1, round(height * s)))
    return Letterbox(new_w / width, new_h / height, (out_w - new_w) // 2, (out_h - new_h) // 2, (out_h, out_w),
                     (new_h, new_w))


def letterbox(img: np.ndarray, size: int | tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """Letterbox a (H, W, 3) uint8 image to the input size; returns the padded image and its `Letterbox`."""
    import cv2

    h, w = img.shape[:2]
    box = letterbox_params(h, w, size)
    new_h, new_w = box.content
    resized = img if (new_h, new_w) == (h, w) else cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    out = np.zeros((*box.size, 3), dtype=np.uint8)
    out[box.offset_y:box.offset_y + new_h, box.offset_x:box.offset_x + new_w] = resized
    return out, box


# ---------------------------------------------------------------------------------------------- estimators
def load_estimator(name: str, *, weights: Path | None = None, device: str = "cpu") -> Any:
    """Build the registered estimator `name` (its registered weights, or the checkpoint file `weights` in that
    estimator's own format), in eval mode on `device`.

    Raises:
        PosebenchError: unknown name (the known ones listed), missing or unfitting weights file (an OfflineError
            naming the registered file when it is missing and downloads are off).
    """
    from posebench.pose.base import build_estimator

    return build_estimator(name, Path(weights) if weights is not None else None).to(device).eval()


def is_canonical(name: str) -> bool:
    """Whether results of the registered estimator `name` can be compared with published numbers."""
    from posebench.pose.base import ESTIMATORS

    return ESTIMATORS.get(name).canonical


def set_refine_fill(model: Any, fill: bool) -> bool:
    """Quirk 4 of the pose profiles: whether the refine step of an associative-embedding decoder may fill
    missing joints from the heatmaps (`True`) or reads the log maps UDP's dark adjust leaves behind, as mmpose 0.x
    does on CPU (`False`; it then almost never fills one). Returns whether `model` has such a decoder."""
    setter = getattr(model, "set_refine_fill", None)
    return bool(setter(fill)) if callable(setter) else False


def input_size_of(model: Any) -> int:
    """The square input side of an estimator (`input_size`, else `DEFAULT_INPUT_SIZE`)."""
    return int(getattr(model, "input_size", None) or DEFAULT_INPUT_SIZE)


def _people(model: Any, batch: Any, boxes: Sequence[Letterbox],
            flip_test: bool) -> list[list[tuple[np.ndarray, float]]]:
    """[(keypoints (J, 3) in input pixels, person score)] per image (`PoseEstimator.people`; a bare object with
    only `predict`, as test doubles are, is read the same way)."""
    people = getattr(model, "people", None)
    if callable(people):
        return people(batch, flip_test=flip_test, boxes=boxes)
    return [[(np.asarray(p.keypoints, dtype=np.float64), float(p.score)) for p in found]
            for found in model.predict(batch, flip_test=flip_test)]


# ---------------------------------------------------------------------------------------------- image ids
def list_images(folder: Path) -> list[Path]:
    """Image files under `folder` (recursively; suffixes `IMAGE_SUFFIXES`), sorted by relative path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PosebenchError(f"the image folder {folder} does not exist or is not a folder")
    found = sorted((p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda p: p.relative_to(folder).as_posix())
    if not found:
        raise PosebenchError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    return found


def assign_image_ids(images: Sequence[Path], root: Path | None = None) -> dict[str, int]:
    """Ids 1..N by sorted name (relative to `root` when given); keys are `str(path)`."""
    def key(p: Path) -> str:
        return Path(p).relative_to(root).as_posix() if root is not None else Path(p).as_posix()

    return {str(p): k + 1 for k, p in enumerate(sorted(images, key=key))}


@dataclass(frozen=True)
class GtImages:
    """The images of a folder a ground truth names (what `pose detect --gt` scores) and the ones it skips."""

    images: list[Path]  # folder order
    ids: dict[str, int]  # COCO image id per `str(path)`
    skipped: list[Path]  # images under the folder the ground truth does not name


def _parts(name: str) -> tuple[str, ...]:
    return tuple(p for p in name.replace("\\", "/").split("/") if p not in ("", "."))


def match_gt_images(images: Sequence[Path], root: Path, gt: dict, gt_path: str | Path) -> GtImages:
    """Match every ground-truth image to one file under `root` by `file_name`; the other files are skipped.

    A file matches a GT entry when one path is a path suffix of the other, compared by whole components
    (`real_human/acrobatics/000000000001.jpg` under `--images HumanArt/images` matches
    `HumanArt/images/real_human/acrobatics/000000000001.jpg`). The folder may hold more images than the GT names
    (Human-Art's images/ holds the training images too): those are skipped, not scored.

    Raises:
        PosebenchError (naming `gt_path`): no 'images' list, a malformed entry, GT images missing from the folder,
            a GT name matching several files, or a file matched by several GT entries.
    """
    entries = gt.get("images") if isinstance(gt, dict) else None
    if not isinstance(entries, list):
        raise PosebenchError(f"the ground truth {gt_path} has no 'images' list")
    if not entries:
        raise PosebenchError(f"the ground truth {gt_path} lists no images: nothing to detect")
    by_name: dict[str, list[tuple[tuple[str, ...], Path]]] = {}
    for path in images:
        rel = tuple(Path(path).relative_to(root).parts)
        by_name.setdefault(rel[-1], []).append((rel, Path(path)))
    ids: dict[str, int] = {}
    claimed: dict[str, list[Any]] = {}
    missing, ambiguous = [], []
    for k, im in enumerate(entries):
        if not isinstance(im, dict) or not isinstance(im.get("file_name"), str) or "id" not in im:
            raise PosebenchError(f"{gt_path}: images[{k}] needs a 'file_name' and an 'id'")
        parts = _parts(im["file_name"])
        hits = [p for rel, p in by_name.get(parts[-1] if parts else "", [])
                if parts[-len(rel):] == rel or rel[-len(parts):] == parts]
        if not hits:
            missing.append(im["file_name"])
        elif len(hits) > 1:
            ambiguous.append(f"{im['file_name']} ({', '.join(str(h) for h in hits[:3])})")
        else:
            ids[str(hits[0])] = im["id"]
            claimed.setdefault(str(hits[0]), []).append(im["id"])
    if missing:
        raise PosebenchError(f"{gt_path}: {len(missing)} of its {len(entries)} images are not under {root} (e.g. "
                             f"{', '.join(missing[:5])}); point --images at the folder the GT file_name paths are "
                             "relative to (other images in it are skipped)")
    if ambiguous:
        raise PosebenchError(f"{gt_path}: {len(ambiguous)} ground-truth file names match several images under {root}"
                             f" (e.g. {'; '.join(ambiguous[:3])}); give full relative paths in file_name")
    shared = {f: i for f, i in claimed.items() if len(i) > 1}
    if shared:
        f, i = next(iter(shared.items()))
        raise PosebenchError(f"{gt_path}: {len(shared)} images under {root} match several ground-truth entries (e.g. "
                             f"{f}: ids {i[:5]}); point --images at the folder the GT file_name paths are relative to")
    chosen = [Path(p) for p in images if str(p) in ids]
    return GtImages(chosen, ids, [Path(p) for p in images if str(p) not in ids])


def _lookup_id(image_ids: dict[str, int], path: Path) -> int:
    for key in (str(path), Path(path).as_posix(), Path(path).name):
        if key in image_ids:
            return image_ids[key]
    raise PosebenchError(f"{path}: no image id given for this file")


# ---------------------------------------------------------------------------------------------- detection
def _batches(items: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def detect_arrays(model: Any, images: Sequence[np.ndarray], image_ids: Sequence[int], *, device: str = "cpu",
                  flip_test: bool = True, swap_rb: bool = False) -> list[dict]:
    """Detections of an already built estimator on decoded (H, W, 3) uint8 RGB images, one forward pass.

    Each image is letterboxed to the estimator's input (see the module docstring); keypoints come back in the
    image's own pixels. `image_ids[k]` is the COCO image id of `images[k]`. Rows are in image order, then in the
    estimator's person order. `swap_rb` feeds the estimator B, G, R: HumanSD hands an RGB array to mmpose 0.x,
    which takes arrays for BGR (quirk 1 of the `humansd` pose profile).
    """
    import torch

    if len(images) != len(image_ids):
        raise PosebenchError(f"{len(images)} images but {len(image_ids)} image ids")
    if not len(images):
        return []
    size = input_size_of(model)
    padded, boxes = [], []
    for img in images:
        x, box = letterbox(img, size)
        padded.append(x[..., ::-1] if swap_rb else x)
        boxes.append(box)
    batch = torch.from_numpy(np.stack(padded)).permute(0, 3, 1, 2).float().div(255.0).to(device)
    results: list[dict] = []
    for k, people in enumerate(_people(model, batch, boxes, flip_test)):
        box = boxes[k]
        for kpts, score in people:
            xy = box.to_original(kpts[:, :2])
            flat = np.concatenate([xy, kpts[:, 2:3]], axis=1).reshape(-1)
            results.append({"image_id": image_ids[k], "category_id": CATEGORY_ID,
                            "keypoints": [float(v) for v in flat], "score": float(score)})
    return results


def detect_with(model: Any, images: Sequence[Path], image_ids: dict[str, int], *, device: str = "cpu",
                flip_test: bool = True, batch_size: int = 8, progress: bool = False,
                swap_rb: bool = False) -> list[dict]:
    """Detections of an already built estimator (anything with `predict`, or a `PoseEstimator`); see
    `detect_images` (and `detect_arrays` for `swap_rb`)."""
    from posebench.images import read_rgb

    if batch_size < 1:
        raise PosebenchError(f"batch size must be at least 1, got {batch_size}")
    ids = [_lookup_id(image_ids, p) for p in images]  # fail on missing ids before any compute
    results: list[dict] = []
    bar = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("pose detect"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        task = bar.add_task("detect", total=len(images))
        bar.start()
    try:
        done = 0
        for chunk in _batches(list(images), batch_size):
            results += detect_arrays(model, [read_rgb(path) for path in chunk], ids[done:done + len(chunk)],
                                     device=device, flip_test=flip_test, swap_rb=swap_rb)
            done += len(chunk)
            if bar is not None:
                bar.update(task, completed=done)
    finally:
        if bar is not None:
            bar.stop()
    return results


def estimator_env(name: str, weights: Path | None, flip_test: bool) -> dict[str, Any]:
    """Provenance of an estimator run: its name, the weights file it ran with and that file's sha256 (None for
    random initialisation, or a registered file not in the cache), and the flip test."""
    from posebench.utils.io import sha256_file

    path: Path | None = Path(weights) if weights is not None else None
    if path is None:
        from posebench import weights as wts

        if name in wts.REGISTRY and wts.cache_path(name).is_file():
            path = wts.cache_path(name)
    return {"name": name, "weights": str(path) if path else None,
            "weights_sha256": sha256_file(path) if path else None, "flip_test": flip_test}


def detect_images(images: list[Path], estimator_name: str = DEFAULT_ESTIMATOR, *, weights: Path | None = None,
                  device: str = "cpu", flip_test: bool = True, batch_size: int = 8,
                  image_ids: dict[str, int] | None = None, progress: bool = True) -> list[dict]:
    """COCO keypoint results of a registered estimator on `images`.

    Args:
        images: image files (8-bit RGB, any size).
        estimator_name: a name of `posebench.pose.base.ESTIMATORS`.
        weights: a checkpoint file to use instead of the registered one (see `load_estimator`).
        device: torch device.
        flip_test: average with the horizontally flipped pass (estimators with `predict` only).
        batch_size: images per forward pass.
        image_ids: COCO image id per image, keyed by `str(path)` (or the POSIX path, or the file name); default:
            1..N by sorted path.
        progress: show a progress bar.

    Returns:
        One dict per detected person: `image_id`, `category_id` (1), `keypoints` (17 x [x, y, joint score] in
        original-image pixels), `score`.

    Raises:
        PosebenchError: an unreadable image (named), an image without an id, missing weights.
    """
    if not images:
        return []
    ids = image_ids if image_ids is not None else assign_image_ids(images)
    from posebench.pose.base import ESTIMATORS

    if weights is None and ESTIMATORS.get(estimator_name).weights is None:
        log.warning("estimator %r has no weights file: a randomly initialised network runs, and its detections "
                    "carry no pose information (for synthetic-posenet pass --pose-weights FILE from `posebench "
                    "pose train`)", estimator_name)
    model = load_estimator(estimator_name, weights=weights, device=device)
    return detect_with(model, images, ids, device=device, flip_test=flip_test, batch_size=batch_size,
                       progress=progress)
