"""DeepFashion In-shop, both lineages (datasets.md §1):

- `patn` (lineage A, also GFLA/CFLD): `fasion-resize-pairs-{split}.csv` (`from,to`) and
  `fasion-resize-annotation-{split}.csv` (y list first, 256x176 frame); images flat-named in `{split}/`.
- `highres` (NTED/PIDM): `{split}_pairs.txt` (target first) and `pose/<rel path>.txt` ((x, y) rows in the
  256x256 low-res frame, x-40 to reach the crop); images flat-named in `{split}/`, or nested under
  `img_highres/` (mapped with the flattening rule).

Both use `train.lst` / `test.lst` as the image lists. Keypoints are returned in the 256x176 crop frame;
callers rescale to their working size.
"""

from __future__ import annotations

from pathlib import Path

from posebench.datasets import facts
from posebench.datasets.formats import read_annotation_csv, read_lst, read_pairs_csv, read_pairs_txt, read_pose_txt
from posebench.datasets.index import (
    DatasetIndex,
    SplitIndex,
    check_count,
    check_identity_disjointness,
    check_pairs,
    check_paths_inside_root,
)
from posebench.datasets.keypoints import FRAME_DEEPFASHION_CROP, FRAME_DEEPFASHION_LOWRES, lowres256_to_crop176
from posebench.datasets.names import flat_name, parse_deepfashion, stem
from posebench.datasets.problems import ProblemLog

SPLITS = ("train", "test")


def detect_layout(root: Path) -> str | None:
    if (root / "fasion-resize-pairs-test.csv").is_file() or (root / "fasion-resize-pairs-train.csv").is_file():
        return "patn"
    if (root / "test_pairs.txt").is_file() or (root / "train_pairs.txt").is_file():
        return "highres"
    return None


def _image_paths(root: Path, split: str, names: list[str]) -> dict[str, Path]:
    flat_dir = root / split
    if flat_dir.is_dir():
        return {stem(n): flat_dir / n for n in names}
    nested: dict[str, Path] = {}
    for top in ("img_highres", "img"):
        base = root / top
        if base.is_dir():
            for p in base.glob("*/*/*/*"):
                nested[flat_name(p.relative_to(root).as_posix())] = p
            break
    return {stem(n): nested.get(n, flat_dir / n) for n in names}


def load_index(root: Path, log: ProblemLog, splits: tuple[str, ...] = SPLITS) -> DatasetIndex:
    layout = detect_layout(root)
    if layout is None:
        log.error(root, None, "no DeepFashion pair files found",
                  "expected fasion-resize-pairs-{train,test}.csv (PATN/GFLA) or {train,test}_pairs.txt (NTED/PIDM)")
        return DatasetIndex("deepfashion", "unknown", root, {})
    out: dict[str, SplitIndex] = {}
    for split in splits:
        sp = SplitIndex()
        lst = root / f"{split}.lst"
        if not lst.is_file():
            log.error(lst, None, f"missing image list {lst.name}", "copy train.lst / test.lst into the root")
            out[split] = sp
            continue
        names = read_lst(lst, log)
        sp.source_file["images"] = str(lst)
        sp.images = _image_paths(root, split, names)
        for n in names:
            try:
                sp.identities[stem(n)] = parse_deepfashion(n).identity
            except ValueError as exc:
                log.error(lst, None, str(exc))
        if layout == "patn":
            pairs_file = root / f"fasion-resize-pairs-{split}.csv"
            ann_file = root / f"fasion-resize-annotation-{split}.csv"
            for f in (pairs_file, ann_file):
                if not f.is_file():
                    log.error(f, None, f"missing {f.name}", "the PATN/GFLA pair and annotation CSVs belong in the root")
            if pairs_file.is_file():
                sp.pairs = read_pairs_csv(pairs_file, log)
            if ann_file.is_file():
                sp.keypoints = {k: [v] for k, v in read_annotation_csv(ann_file, FRAME_DEEPFASHION_CROP, log).items()}
        else:
            pairs_file = root / f"{split}_pairs.txt"
            if not pairs_file.is_file():
                log.error(pairs_file, None, f"missing {pairs_file.name}")
            else:
                sp.pairs = read_pairs_txt(pairs_file, log)
            sp.keypoints = _read_pose_dir(root, sp, log)
        sp.source_file["pairs"] = str(pairs_file)
        check_paths_inside_root(root, sp, split, log)
        check_pairs(sp, split, str(pairs_file), log)
        out[split] = sp
    index = DatasetIndex("deepfashion", layout, root, out)
    if all(s in out for s in SPLITS):
        check_identity_disjointness(index, SPLITS, log)
    return index


def _read_pose_dir(root: Path, sp: SplitIndex, log: ProblemLog) -> dict[str, list]:
    """pose/<GENDER>/<Category>/id_<item>/<file>.txt, keyed by flat name, converted to the crop frame."""
    pose_root = root / "pose"
    out: dict[str, list] = {}
    if not pose_root.is_dir():
        log.error(pose_root, None, "missing pose/ folder of NTED/PIDM keypoint files")
        return out
    for p in pose_root.glob("*/*/*/*.txt"):
        rel = "img/" + p.relative_to(pose_root).with_suffix(".jpg").as_posix()
        key = stem(flat_name(rel))
        if key in sp.images:
            kp = read_pose_txt(p, FRAME_DEEPFASHION_LOWRES, log)
            if kp is not None:
                out[key] = [lowres256_to_crop176(kp)]
    return out


def check_facts(index: DatasetIndex, log: ProblemLog) -> None:
    for split, pinned in facts.DEEPFASHION.items():
        sp = index.splits.get(split)
        if sp is None:
            continue
        where = sp.source_file.get("images", split)
        check_count(log, where, f"{split} images", len(sp.images), pinned["images"])
        check_count(log, sp.source_file.get("pairs", split), f"{split} pairs", len(sp.pairs), pinned["pairs"])
        check_count(log, where, f"{split} identities", sp.num_identities, pinned["identities"])
        if len(sp.images) == pinned["images"]:
            got = facts.names_sha256(p.name for p in sp.images.values())
            if got != pinned["images_sha256"]:
                log.error(where, None, f"{split} image names differ from the standard list (sha256 {got[:16]}…)",
                          "use the train.lst / test.lst of the PATN release")
