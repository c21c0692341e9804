"""Cached VAE latents of training images, keyed by the image's content and the VAE that encoded it.

Training encodes every source and target image with the frozen VAE at every step; at paper size that is a large
share of the step. The encoder is deterministic here (the posterior mean, `Objective.to_model_space`), so a latent
can be stored once and read back: `train.cache_latents: true`.

Key: sha256 of the image tensor the encoder sees (float32, model resolution, [0, 1]), inside a namespace that is the
sha256 of the VAE's weights, its scaling factor and the encoding precision (autocast dtype, or float32), so another
VAE, another size or another precision never reads a latent it did not make. Files are safetensors, one per image,
written atomically; a damaged file is re-encoded and replaced. The default folder is shared between runs:
`$POSEBENCH_HOME/latents/`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def default_folder() -> Path:
    from posebench import weights

    return weights.home() / "latents"


def vae_fingerprint(vae: torch.nn.Module, scaling_factor: float, precision: str) -> str:
    """sha256 over the VAE's parameters and buffers (names, shapes, dtypes, bytes), its scaling factor and the
    encoding precision."""
    h = hashlib.sha256()
    for name, tensor in sorted(vae.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    h.update(f"scaling={scaling_factor!r}|precision={precision}".encode())
    return h.hexdigest()


def content_key(image: torch.Tensor) -> str:
    """sha256 of one image tensor (C, H, W) as the encoder sees it."""
    t = image.detach().to("cpu", torch.float32).contiguous()
    return hashlib.sha256(f"{tuple(t.shape)}|".encode() + t.numpy().tobytes()).hexdigest()


class LatentCache:
    """Latents on disk under `folder/<vae fingerprint>/<key[:2]>/<key>.safetensors`."""

    def __init__(self, folder: Path, fingerprint: str) -> None:
        self.folder = Path(folder) / fingerprint[:32]
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.safetensors"

    def _read(self, path: Path) -> torch.Tensor | None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)["latent"]
        except FileNotFoundError:
            return None
        except (SafetensorError, KeyError, OSError, ValueError) as exc:
            log.warning("latent cache: %s is unreadable (%s); encoding again", path, exc)
            return None

    def _write(self, path: Path, latent: torch.Tensor) -> None:
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        save_file({"latent": latent.detach().cpu().contiguous()}, tmp)
        os.replace(tmp, path)  # atomic: a reader sees the old file or the whole new one

    def encode(self, images: torch.Tensor, encode: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Latents of a batch (B, 3, H, W): cached ones read, the others encoded together with `encode` and stored."""
        keys = [content_key(img) for img in images]
        found = [self._read(self._path(k)) for k in keys]
        todo = [i for i, f in enumerate(found) if f is None]
        if todo:
            fresh = encode(images[todo])
            for j, i in enumerate(todo):
                found[i] = fresh[j]
                self._write(self._path(keys[i]), fresh[j])
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        return torch.stack([f.to(images.device) for f in found])
