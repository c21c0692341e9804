"""CLIPSIM, HumanSD's text-consistency metric: the CLIP score of each generated image against its prompt.

CLIP ViT-B/16 (`openai/clip-vit-base-patch16`, from the weights registry) embeds the generated image (E_I) and its
prompt (E_T; on Human-Art the validation image's `description`, "<scenario>, <caption>"); per image

    s_i = 100 * cos(E_I, E_T)      (the projected embeddings, cosine in float64)

and the two computations (docs/metrics.md, "CLIPSIM"):

- `clean`: value = mean over all images of max(s_i, 0) (the per-pair CLIPScore definition); prompts longer than
  CLIP's 77 tokens are truncated by the tokenizer to 77 tokens with the end-of-text token kept; the per-image column
  holds max(s_i, 0).
- `humansd`: HumanSD's `utils/metrics/text_metrics.py` calls torchmetrics' `CLIPScore` (`forward`) once per
  generated batch of 10, which returns max(mean of the batch's s_i, 0): the clamp is on the batch mean, not per image.
  value = plain mean over batches of 10 in scoring order; a prompt over 77 tokens has its token ids cut at 77 (the
  end-of-text token is lost) as torchmetrics' CLIPScore does since its fix of torchmetrics#2000; the per-image column
  holds s_i unclamped.

Both read the 8-bit generated image and prepare it as CLIP's preprocessing does (transformers' PIL image processor:
PIL bicubic resize of the shorter side to 224, centre crop 224x224, / 255, CLIP mean and std). HumanSD handed floats
in [0, 1] to transformers 4.19, which multiplied them by 255 and truncated to uint8 (`astype`) before the same PIL
resize: the 8-bit image its script saved. Its centre crop rounds the offset as int((d + 1) / 2), where newer
transformers take d // 2; `humansd` follows 4.19 (the two differ only for non-square images with an odd overhang).

transformers is imported on first use; the CLIP network is `transformers.CLIPModel`, never re-implemented here.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from posebench.errors import OfflineError, PosebenchError, WeightsError

MODEL_NAME = "openai/clip-vit-base-patch16"
# registry names of the model's files (posebench/_weights_catalog.py), by role
WEIGHT_FILES = {"model": "clip-vit-b16-model", "config": "clip-vit-b16-config",
                "vocab": "clip-vit-b16-tokenizer-vocab", "merges": "clip-vit-b16-tokenizer-merges"}
# a folder given instead (`--clip-weights DIR`): the Hugging Face layout
FOLDER_FILES = {"config": ("config.json",), "model": ("model.safetensors", "pytorch_model.bin"),
                "vocab": ("vocab.json",), "merges": ("merges.txt",)}


@dataclass(frozen=True)
class ClipSimSettings:
    """How CLIPSIM aggregates and prepares its inputs.

    Attributes:
        name: `clean`, `humansd`, or the name of a custom pose profile it follows.
        aggregation: `dataset` (mean over images of max(s_i, 0)) or `batches` (mean over batches of max(batch
            mean of s_i, 0), torchmetrics `CLIPScore.forward` per batch).
        batch_size: images per batch for `batches` (HumanSD: 10), None for `dataset`.
        long_prompts: `truncate` (tokenizer truncation to the context length, end-of-text kept) or `cut` (token ids
            cut at the context length, end-of-text lost: torchmetrics).
        crop: `floor` (offset d // 2, current transformers) or `transformers-4.19` (offset int((d + 1) / 2)).
        float_to_uint8: how float images in [0, 1] become 8-bit: `round` (a saved PNG) or `truncate` (4.19's
            `astype(np.uint8)` of x * 255).
    """

    name: str
    aggregation: Literal["dataset", "batches"]
    batch_size: int | None
    long_prompts: Literal["truncate", "cut"]
    crop: Literal["floor", "transformers-4.19"]
    float_to_uint8: Literal["round", "truncate"]


SETTINGS = {
    "clean": ClipSimSettings("clean", "dataset", None, "truncate", "floor", "round"),
    "humansd": ClipSimSettings("humansd", "batches", 10, "cut", "transformers-4.19", "truncate"),
}


def settings_for(profile: Any) -> ClipSimSettings:
    """The CLIPSIM computation of a profile: `clean` / `humansd` (a name, or a pose profile of that name), or
    `ClipSimSettings`. A custom pose profile gets `humansd`'s when it aggregates per batch (its batch size), else
    `clean`'s."""
    if isinstance(profile, ClipSimSettings):
        return profile
    if isinstance(profile, str):
        if profile not in SETTINGS:
            raise PosebenchError(f"CLIPSIM has no profile {profile!r}; choose one of {', '.join(SETTINGS)}")
        return SETTINGS[profile]
    from posebench.protocols.pose_profile import is_custom

    name = profile.name
    if name in SETTINGS and not is_custom(profile):
        return SETTINGS[name]
    if profile.aggregation == "batches":
        return ClipSimSettings(str(name), "batches", int(profile.batch_size), "cut", "transformers-4.19", "truncate")
    return ClipSimSettings(str(name), "dataset", None, "truncate", "floor", "round")


# ---------------------------------------------------------------------------------------------- the network


@dataclass
class ClipNet:
    """A CLIP model with its tokenizer and image processor, and where its files came from.

    Attributes:
        model: `transformers.CLIPModel` (eval mode, float32) on `device`.
        tokenizer: `transformers.CLIPTokenizer`; image_processor: `transformers` PIL CLIP image processor.
        files: {role: {"file", "sha256", "registry"}} of config, model, vocab, merges (`registry`: the registry
            name, or None for files given by the user).
    """

    model: Any
    tokenizer: Any
    image_processor: Any
    device: torch.device
    files: dict[str, dict[str, Any]]

    @property
    def context_length(self) -> int:
        return int(self.model.config.text_config.max_position_embeddings)

    @property
    def image_size(self) -> int:
        return int(self.model.config.vision_config.image_size)

    @property
    def weights_registry_name(self) -> str | None:
        """The registry name of the model file, None when any file is not a registry file (non-canonical)."""
        if any(f["registry"] is None for f in self.files.values()):
            return None
        return self.files["model"]["registry"]

    @property
    def weights_sha256(self) -> str | None:
        return self.files["model"]["sha256"]

    def env(self) -> dict[str, Any]:
        name = MODEL_NAME if self.weights_registry_name is not None else "user files"
        return {"model": name, "weights_sha256": self.weights_sha256,
                "files": {role: dict(f) for role, f in self.files.items()}}


def _registry_files() -> dict[str, Any]:
    """The registry files of CLIP ViT-B/16, verified (downloaded when allowed); every missing one is named in one
    offline error, with the command that fetches them all."""
    from posebench import weights

    found: dict[str, Any] = {}
    failed: dict[str, OfflineError] = {}
    for role, name in WEIGHT_FILES.items():
        try:
            found[role] = weights.resolve(None, default=name)
        except OfflineError as exc:
            failed[name] = exc
    if failed:
        listed = ", ".join(f"{n} ({weights.get(n).filename})" for n in failed)
        raise OfflineError(f"CLIPSIM needs {len(failed)} file(s) of {MODEL_NAME} that are not in the weights cache: "
                           f"{listed}. Fetch them with `posebench weights download {' '.join(failed)}`.\n"
                           + str(next(iter(failed.values()))))
    return found


def _folder_files(folder: Path) -> dict[str, Any]:
    from posebench import weights
    from posebench.utils.io import sha256_file

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise WeightsError(f"--clip-weights {folder} is not a folder: give a folder holding a CLIP model in the "
                           f"Hugging Face layout ({', '.join(' or '.join(v) for v in FOLDER_FILES.values())}), or "
                           f"omit it to use the registry's {MODEL_NAME}")
    found = {}
    for role, names in FOLDER_FILES.items():
        path = next((folder / n for n in names if (folder / n).is_file()), None)
        if path is None:
            raise WeightsError(f"{folder} has no {' or '.join(names)}: a CLIP folder needs "
                               f"{', '.join(' or '.join(v) for v in FOLDER_FILES.values())}")
        found[role] = weights.ResolvedFile(path, sha256_file(path), None)
    return found


def load_clip(folder: str | os.PathLike[str] | None = None, *, device: str | torch.device = "cpu") -> ClipNet:
    """CLIP ViT-B/16 from the weights registry (missing files: the registry's offline error naming each file and
    the `posebench weights download` command), or the CLIP model in `folder` (config.json, model.safetensors or
    pytorch_model.bin, vocab.json, merges.txt). Checkpoints are read with safetensors or `weights_only=True`."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    from posebench import weights

    files = _registry_files() if folder is None else _folder_files(Path(folder))
    cfg_path = files["config"].path
    try:
        config = CLIPConfig.from_dict(json.loads(Path(cfg_path).read_text(encoding="utf-8")))
    except (ValueError, TypeError, KeyError) as exc:
        raise WeightsError(f"{cfg_path} is not a CLIP model configuration ({exc})") from None
    if config.vision_config.image_size < 1 or config.text_config.max_position_embeddings < 3:
        raise WeightsError(f"{cfg_path}: implausible CLIP sizes (image {config.vision_config.image_size}, "
                           f"context {config.text_config.max_position_embeddings})")
    model = CLIPModel(config)
    state = weights.load_state_dict(files["model"].path)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # old checkpoints store the position-id buffers newer transformers no longer save
    unexpected = [k for k in unexpected if not k.endswith("position_ids")]
    if missing or unexpected:
        raise WeightsError(f"{files['model'].path} does not fit the CLIP model of {cfg_path}: missing "
                           f"{missing[:5]}{' ...' if len(missing) > 5 else ''}, unexpected "
                           f"{unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
    model = model.float().eval().to(device)
    vocab, merges = (str(files[r].path) for r in ("vocab", "merges"))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=config.text_config.max_position_embeddings)
    return ClipNet(model, tokenizer, image_processor(config.vision_config.image_size), torch.device(device),
                   {role: {"file": str(f.path), "sha256": f.sha256 or None, "registry": f.registry_name}
                    for role, f in files.items()})


def image_processor(size: int = 224) -> Any:
    """transformers' PIL CLIP image processor: PIL bicubic resize of the shorter side to `size`, centre crop
    `size` x `size`, / 255, CLIP mean and std (the settings of openai's `preprocessor_config.json` at 224). The
    default processor of transformers 5 resizes with torchvision instead, which OpenAI's CLIP and HumanSD's
    transformers 4.19 did not."""
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    return CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


def _embedding(out: Any) -> torch.Tensor:
    """transformers 5 returns the projected embedding as `pooler_output` of a model output; 4.x as the tensor."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def resize_crop_4_19(image: np.ndarray, size: int) -> np.ndarray:
    """transformers 4.19 `CLIPFeatureExtractor`: PIL bicubic resize of the shorter side to `size` (longer side
    int(size * long / short)), then a centre crop whose offset is int((d + 1) * 0.5)."""
    from PIL import Image

    h, w = image.shape[:2]
    pil = Image.fromarray(image)
    short, long = (w, h) if w <= h else (h, w)
    if short != size:
        new_short, new_long = size, int(size * long / short)
        pil = pil.resize((new_short, new_long) if w <= h else (new_long, new_short), Image.BICUBIC)
    width, height = pil.size
    top, left = int((height - size + 1) * 0.5), int((width - size + 1) * 0.5)
    return np.asarray(pil.crop((left, top, left + size, top + size)))


def clip_scores(net: ClipNet, images: Sequence[np.ndarray], prompts: Sequence[str],
                settings: ClipSimSettings) -> tuple[np.ndarray, int]:
    """(s_i = 100 * cos(E_I, E_T) per image as float64, how many prompts exceeded the context length) for 8-bit
    RGB (H, W, 3) images and their prompts."""
    if len(images) != len(prompts):
        raise ValueError(f"{len(images)} images and {len(prompts)} prompts")
    if not images:
        return np.zeros(0), 0
    ctx = net.context_length
    if settings.crop == "transformers-4.19":
        images = [resize_crop_4_19(im, net.image_size) for im in images]
    pixels = net.image_processor(images=list(images), return_tensors="pt")["pixel_values"]
    lengths = [len(ids) for ids in net.tokenizer(list(prompts), verbose=False)["input_ids"]]
    n_long = sum(n > ctx for n in lengths)
    if settings.long_prompts == "truncate":
        enc = net.tokenizer(list(prompts), padding=True, truncation=True, max_length=ctx, return_tensors="pt")
        ids, mask = enc["input_ids"], enc["attention_mask"]
    else:  # torchmetrics: pad to the longest, then keep the first `ctx` ids (the end-of-text token may be gone)
        enc = net.tokenizer(list(prompts), padding=True, return_tensors="pt", verbose=False)
        ids, mask = enc["input_ids"][:, :ctx], enc["attention_mask"][:, :ctx]
    dev = net.device
    with torch.inference_mode():
        img = _embedding(net.model.get_image_features(pixel_values=pixels.to(dev))).double()
        txt = _embedding(net.model.get_text_features(input_ids=ids.to(dev), attention_mask=mask.to(dev))).double()
    img = img / img.norm(dim=-1, keepdim=True)
    txt = txt / txt.norm(dim=-1, keepdim=True)
    return (100 * (img * txt).sum(-1)).cpu().numpy(), n_long


def aggregate(scores: np.ndarray, settings: ClipSimSettings) -> dict[str, Any]:
    """{value, stderr, n, n_batches} of per-image s_i in scoring order under `settings`."""
    n = len(scores)
    if n == 0:
        return {"value": math.nan, "stderr": None, "n": 0, "n_batches": 0}
    if settings.aggregation == "dataset":
        units = np.maximum(scores, 0.0)
    else:  # torchmetrics CLIPScore.forward per batch: max(batch mean, 0); then the plain mean over batches
        bs = int(settings.batch_size or 1)
        units = np.array([max(float(np.mean(scores[i:i + bs])), 0.0) for i in range(0, n, bs)])
    se = float(np.std(units, ddof=1) / math.sqrt(len(units))) if len(units) > 1 else None
    return {"value": float(np.mean(units)), "stderr": se, "n": n, "n_batches": len(units)}


# ---------------------------------------------------------------------------------------------- the metric


class CLIPSim(Metric):
    """CLIPSIM (`clean` or `humansd`, see the module docstring): per-image CLIP scores of generated images against
    their prompts, aggregated as the profile says.

    `update(images, prompts, index=None)`: 8-bit RGB images ((H, W, 3) arrays, or a (B, 3, H, W) / (B, H, W, 3)
    uint8 tensor or array; floats in [0, 1] become 8-bit as the profile says), their prompts, and each image's
    position in the global order (default: the order of updates).

    Args:
        profile: `clean`, `humansd`, a pose profile, or `ClipSimSettings` (see `settings_for`).
        weights: a folder with a CLIP model in the Hugging Face layout instead of the registry's files.
        device: where CLIP runs. net: an already loaded `ClipNet` (e.g. a test's tiny random CLIP).
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, profile: Any = "clean", *, weights: str | os.PathLike[str] | None = None,
                 device: str = "cpu", net: ClipNet | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings_for(profile)
        self.net = net if net is not None else load_clip(weights, device=device)
        self.add_state("values", default=[], dist_reduce_fx="cat")
        self.add_state("index", default=[], dist_reduce_fx="cat")
        self.add_state("seen", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("long_prompts", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def _uint8(self, images: Any) -> list[np.ndarray]:
        if isinstance(images, (list, tuple)):  # the evaluator's decoded (H, W, 3) uint8 arrays pass as they are
            return [im if isinstance(im, np.ndarray) and im.dtype == np.uint8 and im.ndim == 3 and im.shape[-1] == 3
                    else self._uint8(im[None])[0] for im in images]
        x = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        if x.ndim != 4:
            raise ValueError(f"expected a batch of images (B, 3, H, W) or (B, H, W, 3), got shape {x.shape}")
        if x.shape[1] == 3 and x.shape[-1] != 3:
            x = x.transpose(0, 2, 3, 1)
        if x.dtype != np.uint8:
            if not np.issubdtype(x.dtype, np.floating):
                raise ValueError(f"images must be uint8 or floats in [0, 1], got {x.dtype}")
            x = np.clip(x, 0.0, 1.0) * 255.0
            x = np.floor(x) if self.settings.float_to_uint8 == "truncate" else np.round(x)
            x = x.astype(np.uint8)
        return [np.ascontiguousarray(im) for im in x]

    def update(self, images: Any, prompts: Sequence[str], *, index: Any = None) -> None:
        arrays = self._uint8(images)
        scores, n_long = clip_scores(self.net, arrays, list(prompts), self.settings)
        n = len(scores)
        idx = (torch.arange(n, dtype=torch.long) + int(self.seen)) if index is None else \
            torch.as_tensor(index, dtype=torch.long).reshape(-1)
        if idx.shape[0] != n:
            raise ValueError(f"index has {idx.shape[0]} positions for {n} images")
        self.values.append(torch.from_numpy(scores).to(self.device))
        self.index.append(idx.to(self.device))
        self.seen += n
        self.long_prompts += n_long

    def scores(self) -> tuple[np.ndarray, np.ndarray]:
        """(positions, s_i) of every image seen (this process's, or all after a sync), in position order."""
        if isinstance(self.values, list) and not self.values:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        idx = dim_zero_cat(self.index).cpu().numpy()
        vals = dim_zero_cat(self.values).cpu().numpy()
        order = np.argsort(idx, kind="stable")
        return idx[order], vals[order]

    def per_image(self) -> tuple[np.ndarray, np.ndarray]:
        """(positions, per-image column): max(s_i, 0) for `dataset` aggregation, s_i for `batches` (the term each
        batch averages before its clamp)."""
        pos, vals = self.scores()
        return pos, (np.maximum(vals, 0.0) if self.settings.aggregation == "dataset" else vals)

    def value(self, positions: Sequence[int] | None = None) -> dict[str, Any]:
        """`aggregate` over every image seen, or over the images at `positions` (a breakdown group, in order)."""
        pos, vals = self.scores()
        if positions is not None:
            keep = np.isin(pos, np.asarray(list(positions), dtype=np.int64))
            vals = vals[keep]
        return aggregate(vals, self.settings)

    def compute(self) -> torch.Tensor:
        return torch.tensor(self.value()["value"], dtype=torch.float64)

    def summary(self) -> dict[str, Any]:
        """The results entry: {value, stderr, n, details}."""
        agg = self.value()
        s = self.settings
        details: dict[str, Any] = {
            "profile": s.name, "aggregation": s.aggregation, "batch_size": s.batch_size,
            "clamp": "per image: max(s, 0)" if s.aggregation == "dataset" else "per batch: max(batch mean, 0)",
            "long_prompts": s.long_prompts, "long_prompt_count": int(self.long_prompts),
            "model": self.net.env()["model"], "weights_sha256": self.net.weights_sha256,
            "context_length": self.net.context_length, "image_size": self.net.image_size,
        }
        if s.aggregation == "batches":
            details["n_batches"] = agg["n_batches"]
        return {"value": agg["value"], "stderr": agg["stderr"], "n": agg["n"], "details": details}
