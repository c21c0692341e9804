"""What a re-ID augmentation run knows about its generator's training data, and where the run departs from the
protocol docs/reid.md fixes. Both go into results.json, the printed summary and the plot.

Generator training data (`generator_train_set` in results):

- `none`: no generator (`none`: Standard only; `copy-source`: the generated images are copies of D_tr images);
- `recorded`: a `reposedm:RUN` that records its training data (RUN/training_data.json: dataset, split, root,
  pairs; written by train-reference) on Market-1501;
- `unknown`: `folder:` and `shell:` (posebench sees only images), and an older `reposedm:RUN` without that record,
  whose dataset is then read from the run's config;
- `other-dataset`: a `reposedm:RUN` trained (by its record or its config) on another dataset (refused unless
  allowed explicitly).

Without the record the dataset comes from the config: the size part of a named config (`market-128-full`,
`deepfashion-256-b1`) and the model resolution, which matches one protocol's (128x64 is market-128x64's).
Conflicting or missing evidence is `unknown`, never a guess.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from posebench.datasets.facts import MARKET
from posebench.errors import PosebenchError

DATASET_NAMES = {"market": "Market-1501", "deepfashion": "DeepFashion", "humanart": "Human-Art"}
# Sizes of the named reference-model configs (`{size}-{variant}`, reposedm/config.py) made for one dataset.
CONFIG_SIZE_DATASETS = {"market-128": "market", "deepfashion-256": "deepfashion", "deepfashion-512": "deepfashion"}
CONFIG_VARIANTS = ("b1", "b2", "full")
UNKNOWN = "unknown: posebench cannot tell what the generator was trained on"
LEAK_IF_SEEN = ("if it saw Market-1501 training images outside the subset, generated images may leak identities "
                "beyond it")
# What docs/reid.md fixes (a run that departs from any of these is non-canonical).
PROTOCOL_EPOCHS = 60
PROTOCOL_IMAGE_SIZE = (256, 128)


@dataclass(frozen=True)
class GeneratorTraining:
    train_set: str  # none | unknown | other-dataset (see the module docstring)
    dataset: str | None  # what the generator was trained on, when known (a key of DATASET_NAMES)
    description: str  # one line: what posebench knows
    caveat: str | None  # the leakage caveat, None where there is none (no generator)
    evidence: str | None = None  # where posebench read it

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def describe_generator(kind: str) -> GeneratorTraining:
    """What posebench knows of a generator from its kind alone (`reposedm` without its config: nothing)."""
    if kind == "none":
        return GeneratorTraining("none", None, "no generator (Standard only)", None)
    if kind == "copy-source":
        return GeneratorTraining("none", None, "no generator: copy-source adds copies of D_tr images, so nothing "
                                 "outside the subset is seen", None)
    return GeneratorTraining("unknown", None, UNKNOWN, LEAK_IF_SEEN)


def _dataset_from_name(name: str) -> str | None:
    size, _, variant = name.rpartition("-")
    return CONFIG_SIZE_DATASETS.get(size) if variant in CONFIG_VARIANTS else None


def _protocol_at(resolution: tuple[int, int]) -> tuple[str | None, str | None]:
    """(dataset, protocol) whose resolution this is, when exactly one dataset's protocols have it."""
    from posebench.protocols import PROTOCOLS, get_protocol

    hits = [(p.dataset, p.name) for p in map(get_protocol, PROTOCOLS.names()) if tuple(p.resolution) == resolution]
    return hits[0] if len({d for d, _ in hits}) == 1 else (None, None)


def _recorded_training(run: str | Path, record: dict[str, Any], record_path: str | Path) -> GeneratorTraining | None:
    """From the run's own record of its data (RUN/training_data.json, written by train-reference): the dataset and
    split it learned from. None when the record names no source."""
    sources = [s for s in record.get("sources", []) if isinstance(s, dict) and s.get("dataset")]
    if not sources:
        return None
    datasets = sorted({str(s["dataset"]) for s in sources})
    seen = "; ".join(f"{DATASET_NAMES.get(s['dataset'], s['dataset'])} split {s.get('split')!r} of {s.get('root')} "
                     f"({s.get('pairs')} pairs)" for s in sources)
    evidence = f"{record_path}: trained on {seen}"
    if datasets != ["market"]:
        other = [d for d in datasets if d != "market"][0]
        return GeneratorTraining("other-dataset", other, f"{DATASET_NAMES.get(other, other)}, not Market-1501 (run "
                                 f"{run}, {evidence})", "its images are not Market-1501 people", evidence)
    return GeneratorTraining(
        "recorded", "market", f"Market-1501, as the run records (run {run}, {evidence})",
        "the generator saw every image of the split(s) named; if that is the whole Market-1501 training set "
        "(train-reference's default --split train), generated images may leak identities beyond the subset",
        evidence)


def reposedm_training(run: str | Path, config_path: str | Path, name: str, resolution: tuple[int, int],
                      record: dict[str, Any] | None = None, record_path: str | Path | None = None,
                      ) -> GeneratorTraining:
    """What a reference-model run says about its training data (see the module docstring).

    Args:
        run: the run or checkpoint folder given as `reposedm:RUN` (named in messages).
        config_path: the `run_config.json` the generator samples with.
        name: the config's `name`.
        resolution: the config's `model.resolution` (H, W).
        record, record_path: the run's training_data.json (runs since it exists); it wins over the config.
    """
    if record:
        recorded = _recorded_training(run, record, record_path or run)
        if recorded is not None:
            return recorded
    h, w = (int(v) for v in resolution)
    by_name = _dataset_from_name(name)
    by_size, protocol = _protocol_at((h, w))
    evidence = f"{config_path}: config {name!r} at {h}x{w}" + (f" (protocol {protocol}'s size)" if protocol else "")
    if by_name and by_size and by_name != by_size:
        return GeneratorTraining("unknown", None, f"{UNKNOWN} (the name of config {name!r} is "
                                 f"{DATASET_NAMES[by_name]}'s, its {h}x{w} resolution {DATASET_NAMES[by_size]}'s)",
                                 LEAK_IF_SEEN, evidence)
    dataset = by_name or by_size
    if dataset is None:
        return GeneratorTraining("unknown", None, f"{UNKNOWN} (config {name!r} at {h}x{w} names no dataset)",
                                 LEAK_IF_SEEN, evidence)
    if dataset != "market":
        return GeneratorTraining("other-dataset", dataset, f"{DATASET_NAMES[dataset]}, not Market-1501 (run {run}, "
                                 f"{evidence})", "its images are not Market-1501 people", evidence)
    return GeneratorTraining(
        "unknown", dataset, f"Market-1501 (run {run}, {evidence}); the run does not record which Market-1501 "
        "images it was trained on", "if it saw the whole Market-1501 training set (train-reference's default "
        "--split train), generated images may leak identities beyond the subset", evidence)


def check_dataset(training: GeneratorTraining, generator: str, allow_other_dataset: bool) -> str | None:
    """Refuse a generator trained on another dataset than Market-1501 unless allowed; returns the non-canonical
    reason when allowed, else None.

    Raises:
        PosebenchError: the generator's config is another dataset's and `allow_other_dataset` is False.
    """
    if training.dataset in (None, "market"):
        return None
    other = DATASET_NAMES.get(training.dataset, training.dataset)
    if not allow_other_dataset:
        raise PosebenchError(f"generator {generator}: the run was trained on {other}, not Market-1501 "
                             f"({training.evidence}); its images are not Market-1501 people. Train a Market run "
                             "(posebench train-reference --config market-128-full --protocol market-128x64), or pass "
                             "--allow-other-dataset to run it anyway (the results are then non-canonical)")
    return f"generator trained on {other}, not Market-1501 (--allow-other-dataset)"


@dataclass(frozen=True)
class MarketCounts:
    """Images of a Market-1501 root as the runner loads it (junk removed; distractors kept in the gallery)."""

    train_images: int
    train_ids: int
    query: int
    gallery: int


def protocol_deviations(root: str | Path, counts: MarketCounts, *, epochs: int, pretrained: bool,
                        image_size: tuple[int, int], max_images: int | None) -> list[str]:
    """Where a run departs from what docs/reid.md fixes (empty: canonical)."""
    full = (MARKET["train"]["images"], MARKET["train"]["identities"], MARKET["query"]["images"],
            MARKET["gallery"]["images"])
    reasons = []
    if (counts.train_images, counts.train_ids) != full[:2]:
        reasons.append(f"Market-1501 root {root} holds {counts.train_images:,} training images of "
                       f"{counts.train_ids:,} identities, not the full {full[0]:,} of {full[1]:,}")
    if (counts.query, counts.gallery) != full[2:]:
        reasons.append(f"Market-1501 root {root} holds {counts.query:,} query and {counts.gallery:,} gallery images, "
                       f"not {full[2]:,} and {full[3]:,}")
    if max_images is not None:
        reasons.append(f"--max-images {max_images}: only the first {max_images} training, query and gallery images")
    if epochs != PROTOCOL_EPOCHS:
        reasons.append(f"{epochs} epoch{'s' if epochs != 1 else ''}, not {PROTOCOL_EPOCHS}")
    if not pretrained:
        reasons.append("random initialisation (--no-pretrained), not ImageNet weights")
    if tuple(image_size) != PROTOCOL_IMAGE_SIZE:
        reasons.append(f"input {image_size[0]}x{image_size[1]}, not {PROTOCOL_IMAGE_SIZE[0]}x"
                       f"{PROTOCOL_IMAGE_SIZE[1]}")
    return reasons
