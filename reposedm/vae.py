"""The pretrained autoencoder of the paper configs: Stable Diffusion's VAE (ft-MSE) from the weights registry.

The architecture is fixed here (it is the SD 1.x AutoencoderKL); the weights come only from the
sha256-checked registry file, so an offline machine gets posebench's clear "download it / add it by
hand" error instead of a hub lookup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from diffusers import AutoencoderKL

    from reposedm.config import ModelConfig

SD_VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=4, sample_size=512, scaling_factor=0.18215,
    block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32, act_fn="silu",
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
)


_OLD_ATTENTION = {".query.": ".to_q.", ".key.": ".to_k.", ".value.": ".to_v.", ".proj_attn.": ".to_out.0."}


def _current_attention_names(state: dict) -> dict:
    """The 2022 file names the mid-block attention `query/key/value/proj_attn`; diffusers now says `to_q...`."""
    out = {}
    for key, value in state.items():
        for old, new in _OLD_ATTENTION.items():
            key = key.replace(old, new)
        out[key] = value
    return out


def load_vae(cfg: ModelConfig, *, allow_download: bool = True) -> AutoencoderKL | None:
    """The frozen AutoencoderKL for `latent: vae` configs; None in pixel space.

    Raises:
        PosebenchError: the weights are missing and cannot be downloaded (offline), or fail their checksum.
    """
    if cfg.latent != "vae":
        return None
    from diffusers import AutoencoderKL

    from posebench import weights

    path = weights.ensure(cfg.vae_weights, allow_download=allow_download)
    vae = AutoencoderKL(**{**SD_VAE_CONFIG, "scaling_factor": cfg.vae_scaling_factor})
    state = _current_attention_names(weights.load_state_dict(path))
    missing, unexpected = vae.load_state_dict(state, strict=False)
    if missing or unexpected:
        from posebench.errors import PosebenchError

        raise PosebenchError(f"{path} is not an SD AutoencoderKL state dict ({len(missing)} missing keys, e.g. "
                             f"{missing[:2]}; {len(unexpected)} unexpected, e.g. {unexpected[:2]})")
    return vae.eval().requires_grad_(False)
