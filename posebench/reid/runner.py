"""Re-ID augmentation experiment on Market-1501 (docs/reid.md): Standard vs real + generated images.

For every (fraction, seed):

1. D_tr = `make_subset` of the `bounding_box_train/` names (junk -1 and distractors 0000 excluded); the subset
   manifest and the generation plan (`make_plan`, k per real image) are written under `out/plans/`.
2. Generated images come from `generator`:
   - `none`: the Standard baseline only;
   - `copy-source`: each planned image is a copy of its source image (shows whether pose transfer beats plain
     duplication);
   - `folder:DIR`: images named by the plan (`{source}__{target}.png`) in `DIR/f{fraction}_s{seed}/` when that
     folder exists, else in `DIR` itself;
   - `reposedm:RUN`: the reference model samples the plan (source image, target pose of the plan's target) into
     `out/generated/f{fraction}_s{seed}/` (resumable; seeds per image); a run whose config is another dataset's
     is refused before anything is written, unless allowed (`posebench.reid.provenance`);
   - `shell:COMMAND`: a command template with {plan}, {out} and {seed}, run once per plan;
   every plan is checked with `validate_generated` before any training.
3. Training on torchreid's components: its ResNet-50 (softmax classifier over the D_tr pids; 2048-d pooled
   features for retrieval), its label-smoothing cross-entropy (0.1), optimizer (Adam lr 3e-4, wd 5e-4) and
   single-step schedule (20, 0.1); batch 32, random horizontal flip, resize to `image_size`, ImageNet
   normalisation; ImageNet weights from the registry file `resnet50-torchreid-imagenet` when `pretrained`,
   loaded by key name. The epoch loop is ours (seeded batches, DDP sharding) instead of torchreid's engine,
   which needs its own data manager. Seeded per run (torch, numpy, random).
   - `joint`: train from the initial weights on D_tr + generated;
   - `finetune`: train Standard on D_tr, then fine-tune it on D_tr + generated for `epochs // 2` (>= 1) epochs.
   The Standard baseline (D_tr only) always runs.
4. Evaluation: pooled features of `query/` and `bounding_box_test/` (junk -1 removed, as torchreid),
   Euclidean distance, `evaluate_rank` -> mAP, Rank-1/5/10.

Each (fraction, seed, method) result is written atomically to `out/runs/*.json`; a rerun with the same settings
skips finished runs. `out/results.json` (eval's schema family, `kind: reid-augment`), a rich table and
`out/map_vs_fraction.png` summarise mean and std over seeds (`posebench.reid.summary`), with what is known of the
generator's training data and where the run departs from the protocol (`posebench.reid.provenance`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from posebench.datasets.names import parse_market
from posebench.errors import PosebenchError
from posebench.reid.plan import PlanRow, make_plan, validate_generated, write_plan
from posebench.reid.provenance import (
    GeneratorTraining,
    MarketCounts,
    check_dataset,
    describe_generator,
    protocol_deviations,
)
from posebench.reid.subsets import make_subset, names_sha256, write_subset_manifest
from posebench.reid.summary import aggregate, generator_lines, plot, plot_note, print_summary, results_document
from posebench.utils.distributed import Shard
from posebench.utils.io import atomic_open, atomic_write_text

log = logging.getLogger(__name__)

MODES = ("joint", "finetune")
WEIGHTS_NAME = "resnet50-torchreid-imagenet"
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp"}
GENERATED_SIZE = (128, 64)  # (H, W) of Market-1501 images and of generated images


@dataclass(frozen=True)
class Generator:
    kind: str  # none | copy-source | folder | reposedm | shell
    folder: Path | None = None  # folder: the images; reposedm: the run folder
    command: str | None = None  # shell: the command template

    @property
    def method(self) -> str:
        return self.kind


def parse_generator(spec: str) -> Generator:
    """`none`, `copy-source`, `folder:DIR`, `reposedm:RUN` or `shell:COMMAND` (see `run_reid_augment`)."""
    spec = str(spec).strip()
    if spec in ("none", "copy-source"):
        return Generator(spec)
    if spec.startswith("folder:"):
        folder = Path(spec[len("folder:"):]).expanduser()
        if not spec[len("folder:"):]:
            raise PosebenchError("generator 'folder:' needs a folder, e.g. folder:/data/generated")
        if not folder.is_dir():
            raise PosebenchError(f"generator folder {folder} does not exist")
        return Generator("folder", folder)
    if spec.startswith("reposedm:"):
        run = Path(spec[len("reposedm:"):]).expanduser()
        if not spec[len("reposedm:"):] or not run.is_dir():
            raise PosebenchError(f"generator {spec!r}: reposedm:RUN needs a reference-model run or checkpoint folder")
        return Generator("reposedm", run)
    if spec.startswith("shell:"):
        command = spec[len("shell:"):].strip()
        if "{plan}" not in command or "{out}" not in command:
            raise PosebenchError(f"generator {spec!r}: a shell template must contain {{plan}} (the plan CSV) and "
                                 "{out} (the folder to fill), e.g. shell:python gen.py --plan {plan} --out {out}")
        return Generator("shell", command=command)
    raise PosebenchError(f"unknown generator {spec!r}: use none, copy-source, folder:DIR, reposedm:RUN or "
                         "shell:COMMAND")


def run_shell_template(command: str, plan: Path, out: Path, seed: int) -> None:
    """Fill `out` with the plan's images by running the user's command (argv split with shlex, no shell).

    Placeholders: {plan} (the plan CSV), {out} (the folder to fill), {seed}.
    """
    import shlex
    import subprocess

    argv = [part.format(plan=str(plan), out=str(out), seed=seed) for part in shlex.split(command)]
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-800:]
        raise PosebenchError(f"generator command {' '.join(argv)!r} exited {proc.returncode}: {tail}")


def _list_images(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise PosebenchError(f"Market-1501 folder {folder} does not exist (expected bounding_box_train/, query/ "
                             "and bounding_box_test/ under the Market root)")
    return sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)


def _labelled(folder: Path, names: list[str], *, keep_distractors: bool) -> list[tuple[Path, int, int]]:
    """(path, pid, camid) for Market names; junk (-1) always removed, distractors (0) kept only when asked."""
    out = []
    for n in names:
        try:
            m = parse_market(n)
        except ValueError:
            continue
        if m.pid == -1 or (m.pid == 0 and not keep_distractors):
            continue
        out.append((folder / n, m.pid, m.camid))
    return out


def _check_fractions(fractions: list[float]) -> list[float]:
    if not fractions:
        raise PosebenchError("no fractions given (e.g. 0.2,0.4,0.6,0.8)")
    out = []
    for f in fractions:
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 < float(f) <= 1.0:
            raise PosebenchError(f"fraction must be in (0, 1], got {f!r}")
        out.append(float(f))
    if len(set(out)) != len(out):
        raise PosebenchError(f"duplicate fractions in {fractions}")
    return out


def _run_key(fraction: float, seed: int) -> str:
    return f"f{fraction:g}_s{seed}"


# ---------------------------------------------------------------------------------------------- torch parts


def _torchreid():
    """torchreid, imported without its warning that the compiled ranking extension is missing (PyPI's 0.2.5 ships
    none; posebench ranks with its own code, posebench.reid.rank). Only that message is filtered."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Cython evaluation \(very fast so highly recommended\) is "
                                "unavailable", category=UserWarning)
        import torchreid
    return torchreid


def _seed_all(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _build_model(num_classes: int, pretrained: bool, device: str):
    """torchreid's ResNet-50 (softmax head); ImageNet weights from the registry file, loaded by key name
    (torchreid would download the same torchvision file itself: offline it cannot)."""
    from posebench import weights

    torchreid = _torchreid()
    model = torchreid.models.build_model("resnet50", num_classes=num_classes, loss="softmax", pretrained=False)
    if pretrained:
        state = weights.load_state_dict(weights.ensure(WEIGHTS_NAME))
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}  # ImageNet's 1000-way fc
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # wrong shapes
            raise PosebenchError(f"{WEIGHTS_NAME} does not fit torchreid's ResNet-50: {exc}") from exc
        bad = [k for k in missing if not k.startswith("classifier.")]
        if bad or unexpected:
            raise PosebenchError(f"{WEIGHTS_NAME} does not fit torchreid's ResNet-50: missing {bad[:5]}, "
                                 f"unexpected {list(unexpected)[:5]}")
    return model.to(device)


def _features(model, x):
    """torchreid's ResNet-50 in eval mode returns the 2048-d globally pooled features (no classifier)."""
    was_training = model.training
    model.eval()
    try:
        return model(x)
    finally:
        model.train(was_training)


class _Images:
    """Loads, resizes and normalises images into tensors.

    Training images are cached as uint8 at the target size (read every epoch, ~98 kB each at 256x128: ~1.3 GB for
    the full Market training set); query and gallery images are read once per evaluation and not cached, which
    keeps the other ~1.9 GB of the full test set out of memory.
    """

    def __init__(self, image_size: tuple[int, int]) -> None:
        self.size = image_size
        self.cache: dict[Path, Any] = {}

    def get(self, path: Path, cache: bool = True):
        import torch
        from PIL import Image

        t = self.cache.get(path)
        if t is None:
            with Image.open(path) as im:
                im = im.convert("RGB").resize((self.size[1], self.size[0]), Image.BILINEAR)
                t = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).contiguous()
            if cache:
                self.cache[path] = t
        return t

    def batch(self, paths: list[Path], flips=None, cache: bool = True):
        import torch

        x = torch.stack([self.get(p, cache) for p in paths]).float().div_(255.0)
        if flips is not None:
            x[flips] = x[flips].flip(-1)
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        return (x - mean) / std


def _train(model, items: list[tuple[Path, int]], epochs: int, images: _Images, seed: int, device: str,
           progress_label: str, console=None, batch_size: int = 32, shard: Shard | None = None) -> float:
    """Train in place. Under a launcher (shard.world > 1) the model runs in DDP and each process takes its slice
    of every global batch of `batch_size` (the same seeded order everywhere); BatchNorm statistics are then per
    process, as in any DDP run."""
    import torch

    shard = shard or Shard(0, 1)
    net = model
    if shard.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[torch.device(device).index] if "cuda" in device else None)
    gen = torch.Generator().manual_seed(seed)
    torchreid = _torchreid()

    # deep-person-reid defaults, from torchreid itself: Adam (lr 3e-4, wd 5e-4, betas 0.9/0.99), single-step
    # schedule (step 20, gamma 0.1), cross-entropy with label smoothing 0.1.
    opt = torchreid.optim.build_optimizer(model, optim="adam", lr=3e-4, weight_decay=5e-4)
    sched = torchreid.optim.build_lr_scheduler(opt, lr_scheduler="single_step", stepsize=20, gamma=0.1)
    num_classes = model.classifier.out_features
    crit = torchreid.losses.CrossEntropyLoss(num_classes, eps=0.1, use_gpu=device.startswith("cuda"),
                                             label_smooth=True)
    model.train()
    loss_value = float("nan")
    n = len(items)
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen).tolist()
        flips_all = torch.rand(n, generator=gen) < 0.5
        batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
        if len(batches) > 1 and len(batches[-1]) < 2 * shard.world:
            batches.pop()  # a batch of one image per process breaks BatchNorm statistics
        total, count = 0.0, 0
        for b in batches:
            b = b[shard.rank::shard.world]
            x = images.batch([items[i][0] for i in b], flips_all[b]).to(device)
            y = torch.tensor([items[i][1] for i in b], device=device)
            loss = crit(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
            count += len(b)
        sched.step()
        loss_value = total / max(count, 1)
        if console is not None:
            console.print(f"  {progress_label} epoch {epoch + 1}/{epochs} loss {loss_value:.4f}")
    return loss_value


def _extract(model, items: list[tuple[Path, int, int]], images: _Images, device: str, batch_size: int = 64):
    import torch

    model.eval()
    feats = []
    with torch.no_grad():
        for i in range(0, len(items), batch_size):
            x = images.batch([p for p, _, _ in items[i:i + batch_size]], cache=False).to(device)
            feats.append(_features(model, x).cpu())
    return torch.cat(feats)


def _evaluate(model, query, gallery, images: _Images, device: str) -> dict[str, float]:
    import torch

    from posebench.reid.rank import evaluate_rank

    qf = _extract(model, query, images, device)
    gf = _extract(model, gallery, images, device)
    dist = torch.cdist(qf.double(), gf.double()).pow(2).numpy()
    cmc, mean_ap = evaluate_rank(dist, np.array([p for _, p, _ in query]), np.array([p for _, p, _ in gallery]),
                                 np.array([c for _, _, c in query]), np.array([c for _, _, c in gallery]),
                                 max_rank=50)

    def rank(r: int) -> float:
        return float(cmc[min(r, len(cmc)) - 1])

    return {"mAP": float(mean_ap), "rank1": rank(1), "rank5": rank(5), "rank10": rank(10)}


# ---------------------------------------------------------------------------------------------- runner


def _settings_hash(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _read_run(path: Path, digest: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(doc, dict) and doc.get("settings_hash") == digest and "metrics" in doc:
        return doc
    return None


def _versions() -> dict[str, str]:
    import torch
    import torchvision

    from posebench._version import __version__

    return {"posebench": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": np.__version__}


def run_reid_augment(market_root: str | Path, generator: str, fractions: list[float], k: int, mode: str,
                     seeds: list[int], out: str | Path, epochs: int = 60, max_images: int | None = None,
                     image_size: tuple[int, int] = (256, 128), pretrained: bool = True, device: str = "cpu",
                     progress: bool = True,
                     fill_plan: Callable[[list[PlanRow], Path, int], None] | None = None,
                     generator_training: GeneratorTraining | None = None,
                     allow_other_dataset: bool = False) -> dict[str, Any]:
    """Run the augmentation experiment (see the module docstring) and return the results document.

    Args:
        market_root: Market-1501 root with bounding_box_train/, query/, bounding_box_test/.
        generator: `none`, `copy-source`, `folder:DIR`, `reposedm:RUN` (images sampled by `fill_plan`, which the
            CLI builds from the reference model: posebench's floors never import reposedm) or `shell:COMMAND`
            (a template with {plan}, {out}, {seed}, run once per plan). Generated images go to
            `out/generated/f{fraction}_s{seed}/` for the last two and are resumable.
        fractions: subset fractions in (0, 1].
        k: generated images per real image.
        mode: `joint` or `finetune`.
        seeds: one run per seed (subset, plan and training seed).
        out: output folder (runs/, plans/, results.json, map_vs_fraction.png).
        epochs: training epochs (finetune: epochs // 2 more on the augmented set).
        max_images: smoke-test cap: keep only the first N (sorted) train, query and gallery images.
        image_size: (H, W) network input.
        pretrained: ImageNet weights (`resnet50-torchreid-imagenet`); False = random init.
        device: torch device.
        progress: print progress lines.
        fill_plan: `fill_plan(rows, folder, seed)` writes the plan's images (needed for `reposedm:RUN`).
        generator_training: what a `reposedm:RUN` generator was trained on (the CLI reads it from the run's
            config, `posebench.reid.provenance.reposedm_training`); other kinds are described by their kind.
        allow_other_dataset: run a generator whose config is another dataset's than Market-1501 (non-canonical).

    Raises:
        PosebenchError: bad input (missing folders, fractions, seeds, mode, generated images, a generator trained on
            another dataset), before training.
    """
    from rich.console import Console

    shard = Shard.current(device)  # accelerate launch / torchrun: one process per GPU
    device = shard.local_device(device)
    console = Console(highlight=False, quiet=not shard.is_main)  # setup notes, warnings, the results table
    chatter = Console(highlight=False, quiet=not (progress and shard.is_main))  # per-run and per-epoch lines
    root = Path(market_root)
    out = Path(out)
    gen = parse_generator(generator)
    if gen.kind == "reposedm" and fill_plan is None:
        raise PosebenchError("generator reposedm:RUN needs fill_plan (the CLI provides it: posebench reid-augment "
                             "--generator reposedm:RUN)")
    training = generator_training if gen.kind == "reposedm" and generator_training else describe_generator(gen.kind)
    other_dataset = check_dataset(training, generator, allow_other_dataset)
    fractions = _check_fractions(list(fractions))
    if mode not in MODES:
        raise PosebenchError(f"mode must be one of {list(MODES)}, got {mode!r}")
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise PosebenchError(f"seeds must be non-negative integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise PosebenchError(f"duplicate seeds in {seeds}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise PosebenchError(f"epochs must be an integer >= 1, got {epochs!r}")
    if max_images is not None and (not isinstance(max_images, int) or max_images < 2):
        raise PosebenchError(f"max_images must be an integer >= 2, got {max_images!r}")
    if len(image_size) != 2 or any(int(v) < 16 for v in image_size):
        raise PosebenchError(f"image_size must be (H, W) with both >= 16, got {image_size!r}")
    image_size = (int(image_size[0]), int(image_size[1]))
    if pretrained:  # the ImageNet file checked before any plan or run is written (offline: the error names it)
        from posebench import weights

        weights.ensure(WEIGHTS_NAME, allow_download=not weights.is_offline())

    train_dir, query_dir, gallery_dir = root / "bounding_box_train", root / "query", root / "bounding_box_test"
    train_names = [n for n in _list_images(train_dir)
                   if _labelled(train_dir, [n], keep_distractors=False)]
    query = _labelled(query_dir, _list_images(query_dir), keep_distractors=False)
    gallery = _labelled(gallery_dir, _list_images(gallery_dir), keep_distractors=True)
    counts = MarketCounts(len(train_names), len({parse_market(n).pid for n in train_names}), len(query),
                          len(gallery))
    if max_images is not None:
        train_names, query, gallery = train_names[:max_images], query[:max_images], gallery[:max_images]
    non_canonical = protocol_deviations(root, counts, epochs=epochs, pretrained=pretrained, image_size=image_size,
                                        max_images=max_images) + ([other_dataset] if other_dataset else [])
    for what, items in (("bounding_box_train", train_names), ("query", query), ("bounding_box_test", gallery)):
        if not items:
            raise PosebenchError(f"{root / what} holds no Market-1501 images")
    source_hash = names_sha256(train_names)
    for line in generator_lines(training, gen.kind):
        console.print(line, soft_wrap=True)  # unwrapped: paths stay copyable
    if non_canonical:
        console.print("Non-canonical: " + "; ".join(non_canonical) + ".", soft_wrap=True)

    # Subsets and plans for every run, and the generated images checked, before any training.
    plans: dict[tuple[float, int], tuple[list[str], list[PlanRow], Path | None]] = {}
    for f in fractions:
        for s in seeds:
            key = _run_key(f, s)
            subset = make_subset(train_names, f, s)
            rows = make_plan(subset, k=k, seed=s) if gen.kind != "none" else []
            if shard.is_main:
                write_subset_manifest(out / "plans" / f"{key}_subset.json", subset, f, s, source_hash)
                if rows:
                    write_plan(out / "plans" / f"{key}_plan.csv", rows)
            folder = None
            if gen.kind == "folder":
                assert gen.folder is not None
                folder = gen.folder / key if (gen.folder / key).is_dir() else gen.folder
                validate_generated(rows, folder, GENERATED_SIZE)
            elif gen.kind in ("reposedm", "shell"):
                folder = out / "generated" / key
                if shard.is_main:  # one process generates; the others wait at the barrier below
                    chatter.print(f"generate {key}: {len(rows)} images with {generator}")
                    if gen.kind == "shell":
                        assert gen.command is not None
                        run_shell_template(gen.command, out / "plans" / f"{key}_plan.csv", folder, s)
                    else:
                        assert fill_plan is not None
                        fill_plan(rows, folder, s)
                shard.barrier()
                validate_generated(rows, folder, GENERATED_SIZE)
            plans[(f, s)] = (subset, rows, folder)

    settings = {"generator": generator if gen.kind not in ("folder", "reposedm") else f"{gen.kind}:{gen.folder}",
                "k": k, "mode": mode,
                "epochs": epochs, "finetune_epochs": max(1, epochs // 2) if mode == "finetune" else None,
                "max_images": max_images, "image_size": list(image_size), "pretrained": pretrained,
                "init": WEIGHTS_NAME if pretrained else "random", "model": "torchreid resnet50 (softmax)",
                "loss": "torchreid cross-entropy, label smoothing 0.1",
                "optimizer": "torchreid adam lr 3e-4 wd 5e-4 betas 0.9/0.99",
                "scheduler": "StepLR step 20 gamma 0.1", "batch_size": 32, "augment": "random horizontal flip",
                "distance": "euclidean (squared) on 2048-d pooled features", "source_hash": source_hash}
    methods = ["Standard"] + ([gen.method] if gen.kind != "none" else [])
    images = _Images(image_size)
    runs_dir = out / "runs"
    runs: list[dict[str, Any]] = []
    for f in fractions:
        for s in seeds:
            key = _run_key(f, s)
            subset, rows, folder = plans[(f, s)]
            pids = sorted({parse_market(n).pid for n in subset})
            label = {p: i for i, p in enumerate(pids)}
            real = [(train_dir / n, label[parse_market(n).pid]) for n in subset]
            by_stem = {Path(n).stem: n for n in subset}
            if gen.kind == "copy-source":
                extra = [(train_dir / by_stem[r.source], label[r.pid]) for r in rows]
            elif gen.kind in ("folder", "reposedm", "shell"):
                assert folder is not None
                extra = [(folder / r.filename, label[r.pid]) for r in rows]
            else:
                extra = []
            std_settings = {k_: v for k_, v in settings.items() if k_ not in ("generator", "k", "mode",
                                                                              "finetune_epochs")}
            standard_model = None
            for method in methods:
                is_std = method == "Standard"
                run_settings = std_settings if is_std else settings
                digest = _settings_hash({**run_settings, "fraction": f, "seed": s, "method": method})
                path = runs_dir / (f"{key}_standard.json" if is_std else f"{key}_{method}_{mode}.json")
                shard.barrier()  # every process sees the same finished runs
                done = _read_run(path, digest)
                if done is not None:
                    chatter.print(f"skip {key} {method}: finished run in {path}")
                    runs.append(done)
                    continue
                t0 = time.time()
                chatter.print(f"run {key} {method} ({len(real)} real + {0 if is_std else len(extra)} generated, "
                              f"{len(pids)} ids)")
                _seed_all(s)
                ckpt = runs_dir / f"{key}_standard.pt"
                if is_std or mode == "joint":
                    model = _build_model(len(pids), pretrained, device)
                    _train(model, real if is_std else real + extra, epochs, images, s, device, f"{key} {method}",
                           chatter, shard=shard)
                    if is_std and mode == "finetune" and gen.kind != "none":
                        import torch

                        if shard.is_main:
                            with atomic_open(ckpt, "wb") as fh:
                                torch.save(model.state_dict(), fh)
                        standard_model = model
                else:
                    import torch

                    model = standard_model
                    if model is None:
                        model = _build_model(len(pids), False, device)
                        if ckpt.is_file():
                            model.load_state_dict(torch.load(ckpt, map_location=device, weights_only=True))
                        else:
                            model = _build_model(len(pids), pretrained, device)
                            _train(model, real, epochs, images, s, device, f"{key} Standard (for finetune)",
                                   chatter, shard=shard)
                    _seed_all(s + 1)
                    _train(model, real + extra, max(1, epochs // 2), images, s + 1, device,
                           f"{key} {method} finetune", chatter, shard=shard)
                if not shard.is_main:  # the main process evaluates and writes; the others go on
                    continue
                metrics = _evaluate(model, query, gallery, images, device)
                doc = {"fraction": f, "seed": s, "method": method, "mode": None if is_std else mode,
                       "settings_hash": digest, "settings": run_settings, "metrics": metrics,
                       "n_real": len(real), "n_generated": 0 if is_std else len(extra), "n_ids": len(pids),
                       "n_query": len(query), "n_gallery": len(gallery), "seconds": round(time.time() - t0, 2)}
                atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
                chatter.print(f"done {key} {method}: mAP {metrics['mAP']:.4f} rank-1 {metrics['rank1']:.4f}")
                runs.append(doc)

    shard.barrier()
    if not shard.is_main:
        return {"rank": shard.rank, "note": "the main process writes the results"}
    from posebench.env import provenance, versions

    rows_out = aggregate(runs, methods, fractions)
    published = published_rows()
    results = results_document(root=root, fractions=fractions, seeds=seeds, settings=settings,
                               versions=_versions(),
                               env={**versions(), **provenance(), "device": device, "processes": shard.world},
                               training=training, non_canonical=non_canonical, rows=rows_out, runs=runs,
                               published=published)
    atomic_write_text(out / "results.json", json.dumps(results, indent=1) + "\n")
    n_ids = len({parse_market(n).pid for n in train_names})
    plot(rows_out, methods, out / "map_vs_fraction.png", published,
         plot_note(len(non_canonical), n_ids, epochs, image_size), draw_published=not non_canonical)
    print_summary(rows_out, console, training, gen.kind, non_canonical)
    return results


def published_rows(board: str = "market-reid") -> list[dict[str, Any]]:
    """The published re-ID augmentation rows of a leaderboard, for reference on the plot (empty if unavailable)."""
    from posebench.results.leaderboard import load_board, resolve_board

    try:
        parsed = load_board(resolve_board(board))
    except PosebenchError as exc:
        log.info("no published rows on the plot: %s", exc)
        return []
    out = []
    for e in parsed.entries:
        points = sorted((int(k.split("_", 1)[1]) / 100, float(v)) for k, v in e.values.items()
                        if k.startswith("map_") and k.split("_", 1)[1].isdigit())
        if points:
            out.append({"method": e.method, "points": points, "source": e.source.get("where", ""),
                        "confidence": e.confidence})
    return out
