"""Market-1501 (datasets.md §2): the re-ID folders `bounding_box_train/`, `bounding_box_test/`, `query/`
(names `0002_c1s1_000451_03.jpg`; pid -1 junk is skipped as torchreid does, pid 0000 distractors stay in
the gallery) and the pose-transfer files `market-pairs-{train,test}.csv` / `market-annotation-*.csv`
(128x64 frame), whose images live in `train/` / `test/` (renamed copies) or the re-ID folders.
"""

from __future__ import annotations

from pathlib import Path

from posebench.datasets import facts
from posebench.datasets.formats import read_annotation_csv, read_pairs_csv
from posebench.datasets.index import (
    DatasetIndex,
    SplitIndex,
    check_count,
    check_identity_disjointness,
    check_pairs,
    check_paths_inside_root,
)
from posebench.datasets.keypoints import FRAME_MARKET
from posebench.datasets.names import parse_market, stem
from posebench.datasets.problems import ProblemLog

FOLDERS = {"train": ("train", "bounding_box_train"), "test": ("test", "bounding_box_test"), "query": ("query",)}
DISTRACTOR = "0000"  # pid 0: background and partial-body crops of no one (kept in the gallery, not an identity)
IMAGE_GLOB = ("*.jpg", "*.png")


def _scan(folder: Path, split: str, log: ProblemLog) -> tuple[SplitIndex, int]:
    """Images of one folder; returns the split and the number of junk images skipped."""
    sp = SplitIndex(distractor_ids=frozenset({DISTRACTOR}))
    sp.source_file["images"] = str(folder)
    junk = 0
    files = sorted(p for g in IMAGE_GLOB for p in folder.glob(g))
    for p in files:
        try:
            name = parse_market(p.name)
        except ValueError as exc:
            log.error(p, None, str(exc), "remove files that are not Market-1501 crops")
            continue
        if name.is_junk:
            junk += 1
            continue
        key = stem(p.name)
        sp.images[key] = p
        sp.identities[key] = f"{name.pid:04d}"
        sp.groups[key] = f"c{name.camid}"
    return sp, junk


def load_index(root: Path, log: ProblemLog) -> DatasetIndex:
    out: dict[str, SplitIndex] = {}
    layout = "reid"
    for split, candidates in FOLDERS.items():
        folder = next((root / c for c in candidates if (root / c).is_dir()), None)
        if folder is None:
            log.error(root / candidates[-1], None, f"missing {' or '.join(c + '/' for c in candidates)} folder")
            continue
        sp, junk = _scan(folder, split, log)
        sp.source_file["junk_skipped"] = str(junk)
        if split in ("train", "test"):
            pairs_file = root / f"market-pairs-{split}.csv"
            ann_file = root / f"market-annotation-{split}.csv"
            if pairs_file.is_file() and ann_file.is_file():
                layout = "reid+pose"
                sp.pairs = read_pairs_csv(pairs_file, log)
                sp.keypoints = {k: [v] for k, v in read_annotation_csv(ann_file, FRAME_MARKET, log).items()}
                sp.source_file["pairs"] = str(pairs_file)
                for key in sp.pairs:
                    for role, s in (("source", key.source), ("target", key.target)):
                        if sp.identities.get(s) == DISTRACTOR:
                            log.error(pairs_file, None, f"pair {key}: {role} is a distractor (pid 0000)",
                                      "pose-transfer pairs exclude junk and distractors")
                check_pairs(sp, split, str(pairs_file), log)
            elif pairs_file.is_file() != ann_file.is_file():
                missing = ann_file if pairs_file.is_file() else pairs_file
                log.error(missing, None, f"missing {missing.name} (its companion file is present)")
        check_paths_inside_root(root, sp, split, log)
        out[split] = sp
    index = DatasetIndex("market", layout, root, out)
    if "train" in out and "test" in out:
        train_only = SplitIndex(identities=out["train"].identities, source_file=out["train"].source_file)
        test_real = SplitIndex(identities={k: v for k, v in out["test"].identities.items() if v != DISTRACTOR},
                               source_file=out["test"].source_file)
        check_identity_disjointness(DatasetIndex("market", layout, root, {"train": train_only, "test": test_real}),
                                    ("train", "test"), log)
    return index


def check_facts(index: DatasetIndex, log: ProblemLog) -> None:
    pinned = facts.MARKET
    if (sp := index.splits.get("train")) is not None:
        where = sp.source_file["images"]
        check_count(log, where, "train images", len(sp.images), pinned["train"]["images"])
        check_count(log, where, "train identities", sp.num_identities, pinned["train"]["identities"])
        if sp.pairs:
            check_count(log, sp.source_file["pairs"], "train pairs", len(sp.pairs), pinned["train"]["pairs"])
    if (sp := index.splits.get("query")) is not None:
        where = sp.source_file["images"]
        check_count(log, where, "query images", len(sp.images), pinned["query"]["images"])
        check_count(log, where, "query identities", sp.num_identities, pinned["query"]["identities"])
    if (sp := index.splits.get("test")) is not None:
        check_count(log, sp.source_file["images"], "gallery images (junk removed)", len(sp.images),
                    pinned["gallery"]["images"])
        if sp.pairs:
            check_count(log, sp.source_file["pairs"], "test pairs", len(sp.pairs), pinned["test"]["pairs"])
