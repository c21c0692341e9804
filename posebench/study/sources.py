"""What a study is built from: `posebench eval` results files, the generated images each names, and the dataset
split (real images, keypoints) under `--root`.

Every results file must be a pair protocol of the same dataset and split; its prediction folder
(`config.pred`, else `predictions.dir`) must still hold the generated images. A method's usable pairs are the
split's pairs with a generated file; a study uses the pairs every method has.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from posebench.datasets.names import PairKey, match_generated_files
from posebench.study import StudyError

if TYPE_CHECKING:
    from posebench.datasets.index import SplitIndex


@dataclass
class MethodSamples:
    """One method: its results file, label and the generated image of each pair it has."""

    label: str
    results: Path
    results_sha256: str
    data: dict[str, Any]
    pred: Path
    files: dict[PairKey, Path] = field(default_factory=dict)


@dataclass
class StudySources:
    """Everything a study draws from: the methods (in the order given), the split and the pairs all methods share."""

    methods: list[MethodSamples]
    dataset: str
    split_name: str
    split: SplitIndex
    root: Path
    common: list[PairKey]  # sorted


def _prediction_folder(results: Path, data: dict[str, Any]) -> Path:
    recorded = (data.get("config") or {}).get("pred") or data["predictions"].get("dir")
    if not recorded:
        raise StudyError(f"{results}: names no samples folder (config.pred / predictions.dir); a study shows the "
                         "generated images, so it needs results written by `posebench eval --pred DIR`")
    path = Path(str(recorded))
    if not path.is_dir() and not path.is_absolute() and (results.parent / path).is_dir():
        path = results.parent / path  # recorded relative to a working directory that held the results file
    if not path.is_dir():
        raise StudyError(f"{results}: its samples folder {recorded} (predictions.dir) does not exist; a study shows "
                         "the generated images: restore the folder or re-run `posebench eval` with its new location")
    return path


def _read_method(path: Path, label: str | None) -> MethodSamples:
    from posebench.results.schema import read_results

    data = read_results(path)
    if data.get("kind") == "human-study":
        raise StudyError(f"{path} is a human-study results file (posebench study score); a study is built from "
                         "`posebench eval` results of generated images")
    if not data["dataset"].get("pairs") or data["dataset"].get("split") is None:
        raise StudyError(f"{path}: protocol {data['protocol'].get('name')!r} has no (source, target) pairs; a study "
                         "shows a generated image beside its source and target pose, so it needs a pair protocol "
                         "(DeepFashion, Market)")
    pred = _prediction_folder(path, data)
    name = label or pred.name
    return MethodSamples(name, path, hashlib.sha256(path.read_bytes()).hexdigest(), data, pred)


def _match(method: MethodSamples, split: SplitIndex) -> None:
    """The split's pairs that have a generated file, named by the scheme the evaluation detected."""
    found = match_generated_files(method.pred, scheme=method.data["predictions"].get("scheme"),
                                  known=set(split.images), wanted=split.pairs)
    for key, f in found.items():
        method.files.setdefault(key, f)


def _check_scored_images(method: MethodSamples) -> None:
    """The folder still holds the images the evaluation scored: the results' `predictions.images_sha256` (over
    file names and contents) recomputed. Checked when the folder matches as many images as were scored (a best-of-N
    folder holds more, and is not checked)."""
    from posebench.utils.io import files_sha256

    predictions = method.data["predictions"]
    recorded = predictions.get("images_sha256")
    if not recorded or len(method.files) != predictions.get("count"):
        return
    if files_sha256(method.files.values()) != recorded:
        raise StudyError(f"{method.results}: the images in {method.pred} are not the ones it scored (their "
                         "predictions.images_sha256 differs): a study must show what was measured. Restore the "
                         "images, or evaluate the folder again with `posebench eval`")


def load_sources(results: list[Path], root: Path, labels: list[str] | None = None) -> StudySources:
    """Read the results files and match each one's generated images to the split's pairs.

    Raises:
        StudyError: fewer than two results files, labels that do not fit, another kind of results, results of
            different datasets or splits, a samples folder that is missing or holds none of the split's pairs.
        PosebenchError: an unreadable results file or dataset root.
    """
    from posebench.datasets import manifest
    from posebench.datasets.problems import ProblemLog

    if len(results) < 2:
        raise StudyError(f"give at least two results files (got {len(results)}): scheme 2 asks which of several "
                         "methods' images is best")
    if labels and len(labels) != len(results):
        raise StudyError(f"got {len(labels)} --label for {len(results)} results files; give one per file, in the "
                         "same order, or none")
    methods = [_read_method(Path(p), labels[i] if labels else None) for i, p in enumerate(results)]
    seen: dict[str, Path] = {}
    for m in methods:
        if m.label in seen:
            raise StudyError(f"two methods are labelled {m.label!r} ({seen[m.label]} and {m.results}); pass "
                             "--label once per results file to tell them apart")
        if not m.label.strip() or len(m.label) > 80:
            raise StudyError(f"{m.results}: method label {m.label!r} must be 1 to 80 characters; pass --label")
        seen[m.label] = m.results
    first = methods[0]
    dataset, split_name = first.data["dataset"].get("name"), first.data["dataset"].get("split")
    for m in methods[1:]:
        got = (m.data["dataset"].get("name"), m.data["dataset"].get("split"))
        if got != (dataset, split_name):
            raise StudyError(f"{m.results} scored {got[0]} split {got[1]!r}, {first.results} scored {dataset} split "
                             f"{split_name!r}; a study compares methods on the same pairs")
    index = manifest.load(dataset or first.data["protocol"]["name"].split("-")[0], root, ProblemLog())
    if split_name not in index.splits:
        raise StudyError(f"{root} has no {split_name!r} split, which {first.results} scored; pass the dataset root "
                         "the results were made on (--root)")
    split = index.splits[split_name]
    for m in methods:
        _match(m, split)
        if not m.files:
            raise StudyError(f"{m.results}: its samples folder {m.pred} holds no generated image of a {split_name} "
                             f"pair of {root} (names such as {{source}}__{{target}}.png); a study needs the samples "
                             "the results were scored on")
        _check_scored_images(m)
    common = sorted(set.intersection(*(set(m.files) for m in methods)))
    return StudySources(methods, dataset or "", split_name, split, root, common)
