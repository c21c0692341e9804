"""`posebench reid-augment`: the Market-1501 re-ID augmentation experiment (thin layer over
posebench.reid.runner)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def _numbers(text: str, what: str, cast: type, example: str) -> list:
    """A comma-separated option (`--fractions 0.2,0.4`, `--seeds 0,1`) as a list, or a clear exit-2 error."""
    from posebench.errors import PosebenchError

    kind = "numbers" if cast is float else "integers"
    try:
        values = [cast(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise PosebenchError(f"{what} must be comma-separated {kind} (e.g. {example}), got {text!r}") from exc
    if not values:
        raise PosebenchError(f"{what} is empty, got {text!r}")
    return values


def _floats(text: str, what: str) -> list[float]:
    return _numbers(text, what, float, "0.2,0.4")


def _ints(text: str, what: str) -> list[int]:
    return _numbers(text, what, int, "0,1,2")


def _size(text: str) -> tuple[int, int]:
    from posebench.errors import PosebenchError

    parts = text.lower().replace(",", "x").split("x")
    try:
        h, w = (int(p) for p in parts)
    except ValueError as exc:
        raise PosebenchError(f"image size must be HxW (e.g. 256x128), got {text!r}") from exc
    return h, w


def reid_augment(
    market_root: Annotated[Path, typer.Option("--market-root", help="Market-1501 root (bounding_box_train/, "
                                              "query/, bounding_box_test/).", metavar="DIR")],
    generator: Annotated[str, typer.Option(help="none (Standard only), copy-source (duplicates the source image), "
                                           "folder:DIR (images named by the plan), reposedm:RUN (the reference "
                                           "model samples the plan; a run whose config is another dataset's "
                                           "is refused) or shell:'CMD {plan} {out} {seed}'. Results record what "
                                           "is known of its training data (generator_train_set).")
                         ] = "copy-source",
    fractions: Annotated[str, typer.Option(help="Comma-separated real-data fractions.")] = "0.2,0.4,0.6,0.8",
    k: Annotated[int, typer.Option("--k", "-k", help="Generated images per real image.")] = 1,
    mode: Annotated[str, typer.Option(help="joint (train on real + generated) or finetune (fine-tune "
                                      "Standard on real + generated).")] = "joint",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds (one run each).")] = "0",
    out: Annotated[Path, typer.Option(help="Output folder (runs/, plans/, results.json, PNG).")] = Path(
        "reid-augment"),
    epochs: Annotated[int, typer.Option(help="Training epochs (finetune adds epochs // 2).")] = 60,
    max_images: Annotated[int | None, typer.Option(help="Smoke tests: keep only the first N train, query and "
                                                   "gallery images.")] = None,
    image_size: Annotated[str, typer.Option(help="Network input HxW.")] = "256x128",
    pretrained: Annotated[bool, typer.Option("--pretrained/--no-pretrained",
                                             help="ImageNet init (resnet50-torchreid-imagenet) or random.")] = True,
    device: Annotated[str, typer.Option(help="torch device.")] = "cpu",
    sample_steps: Annotated[int, typer.Option(help="reposedm:RUN sampling steps (DDIM).")] = 50,
    progress: Annotated[bool, typer.Option("--progress/--quiet", help="Print progress lines.")] = True,
    allow_other_dataset: Annotated[bool, typer.Option(
        "--allow-other-dataset", help="Run a reposedm:RUN generator whose config says it was trained on another "
        "dataset than Market-1501 (e.g. DeepFashion), which is refused otherwise; the results are non-canonical."
    )] = False,
) -> None:
    """Train ResNet-50 re-ID on Market-1501 subsets with and without generated images; report mAP / Rank-k.

    Example: posebench reid-augment --market-root data/market --generator folder:gen/ --fractions 0.2,0.4 --seeds 0,1,2
    """
    from posebench.reid.runner import parse_generator, run_reid_augment
    from posebench.utils.device import checked_device

    checked_device(device)
    fill, training = None, None
    gen = parse_generator(generator)
    if gen.kind == "reposedm":
        assert gen.folder is not None
        training = _reposedm_training(gen.folder)
        fill = _reposedm_filler(gen.folder, market_root, device, sample_steps, progress)
    run_reid_augment(market_root, generator, _floats(fractions, "--fractions"), k, mode, _ints(seeds, "--seeds"),
                     out, epochs=epochs, max_images=max_images, image_size=_size(image_size), pretrained=pretrained,
                     device=device, progress=progress, fill_plan=fill, generator_training=training,
                     allow_other_dataset=allow_other_dataset)


def _reposedm_training(run: Path):
    """What the run's config (the newest checkpoint's run_config.json, which sampling loads) says about its
    training data; a run without checkpoints or with an unreadable config is an error naming it."""
    from posebench.reid.provenance import reposedm_training
    from reposedm.checkpoints import read_run_config, resolve_checkpoint, run_of
    from reposedm.train import TRAINING_DATA, read_training_data

    ckpt = resolve_checkpoint(run)
    path = ckpt / "run_config.json"
    cfg = read_run_config(path)
    run_folder = run_of(ckpt)
    return reposedm_training(run, path, cfg.name, tuple(cfg.model.resolution), read_training_data(run_folder),
                             run_folder / TRAINING_DATA)


def _reposedm_filler(run: Path, market_root: Path, device: str, steps: int, progress: bool):
    """`fill_plan` for reposedm:RUN: sample each plan row (source image, target's pose) at Market size 128x64."""
    from posebench.reid.runner import GENERATED_SIZE

    def fill(rows, folder: Path, seed: int) -> None:
        from posebench.datasets.names import PairKey
        from reposedm.generate import generate

        generate(run, protocol="market-128x64", root=market_root, out=folder, split="train",
                 pairs=[PairKey.of(r.source, r.target) for r in rows], seed=seed, steps=steps, device=device,
                 output_size=GENERATED_SIZE, record_path=folder.with_name(f"{folder.name}.sampling.json"),
                 progress=progress)

    return fill
