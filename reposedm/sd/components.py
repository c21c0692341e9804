"""RePoseSD's components: the U-Net with a widened `conv_in`, the frozen VAE, text encoder and tokenizer.

`weights: sd21-base` reads SD 2.1 base's files from posebench's weights registry (diffusers layout; a missing
file offline gives the registry's "download it / add it by hand" error before anything is written). The
architectures are fixed here, as SD 2.1 base's own `config.json` files give them, so no hub lookup happens.
`weights: random` builds every component from the config's architecture keys (the tiny configs); its tokenizer
is a character-level CLIP tokenizer made here (no vocabulary file can be downloaded in a test).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from posebench.errors import PosebenchError

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from reposedm.sd.config import SDModelConfig

POSE_LATENT_CHANNELS = 4  # the pose image through the VAE encoder (HumanSD)

# SD 2.1 base (stabilityai/stable-diffusion-2-1-base, diffusers layout): U-Net, VAE and text encoder configs.
SD21_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024, use_linear_projection=True, norm_num_groups=32,
)
SD21_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, sample_size=768, scaling_factor=0.18215,
    block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32, act_fn="silu",
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
)
SD21_TEXT = dict(
    vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
    max_position_embeddings=77, hidden_act="gelu", projection_dim=512, bos_token_id=0, eos_token_id=2,
    pad_token_id=1,
)
# weights-registry names of SD 2.1 base's files (posebench/_weights_catalog.py)
SD21_FILES = {"unet": "sd21-base-unet", "vae": "sd21-base-vae", "text_encoder": "sd21-base-text-encoder",
              "vocab": "sd21-base-tokenizer-vocab", "merges": "sd21-base-tokenizer-merges"}


def _unet_config(m: SDModelConfig) -> dict[str, Any]:
    if m.weights == "sd21-base":
        return dict(SD21_UNET)
    levels = len(m.block_out_channels)
    return dict(
        sample_size=m.latent_size[0], in_channels=4, out_channels=4, layers_per_block=m.layers_per_block,
        block_out_channels=m.block_out_channels, down_block_types=("CrossAttnDownBlock2D",) * (levels - 1)
        + ("DownBlock2D",), up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (levels - 1),
        attention_head_dim=m.attention_head_dim, cross_attention_dim=m.cross_attention_dim,
        use_linear_projection=True, norm_num_groups=m.norm_num_groups)


def widen_conv_in(unet: UNet2DConditionModel, extra: int = POSE_LATENT_CHANNELS) -> UNet2DConditionModel:
    """conv_in takes y_t and the pose latent concatenated: the pretrained filters keep their weights on the first
    channels and the new channels start at zero (HumanSD), so the widened U-Net computes what SD did until training
    moves them."""
    old = unet.conv_in
    new = torch.nn.Conv2d(old.in_channels + extra, old.out_channels, old.kernel_size, old.stride, old.padding)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : old.in_channels] = old.weight
        new.bias.copy_(old.bias)
    unet.conv_in = new
    unet.register_to_config(in_channels=old.in_channels + extra)
    return unet


def ensure_sd_files(m: SDModelConfig, *, allow_download: bool = True) -> None:
    """Every registry file of `weights: sd21-base` present (downloaded when allowed), checked before any is loaded;
    offline, one error names every missing file (U-Net, VAE, text encoder, tokenizer) with its download command."""
    if m.weights != "sd21-base":
        return
    from posebench import weights
    from posebench.errors import OfflineError

    missing = []
    for name in SD21_FILES.values():
        try:
            weights.ensure(name, allow_download=allow_download)
        except OfflineError as exc:
            missing.append((name, str(exc)))
    if missing:
        names = " ".join(n for n, _ in missing)
        raise OfflineError(f"Stable Diffusion 2.1 base is incomplete in the weights cache: {len(missing)} of "
                           f"{len(SD21_FILES)} files missing ({names}). Fetch them with `posebench weights download "
                           f"{names}`.\n" + "\n".join(text for _, text in missing))


def _registry_state(name: str, allow_download: bool) -> dict[str, torch.Tensor]:
    from posebench import weights

    return weights.load_state_dict(weights.ensure(name, allow_download=allow_download))


def _load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise PosebenchError(f"{what}: the file does not fit SD 2.1 base's architecture ({len(missing)} missing keys, "
                             f"e.g. {missing[:2]}; {len(unexpected)} unexpected, e.g. {unexpected[:2]})")


def build_unet(m: SDModelConfig, *, allow_download: bool = True) -> UNet2DConditionModel:
    """The trainable U-Net: SD 2.1's (its weights) or the config's (random), with conv_in widened."""
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(**_unet_config(m))
    if m.weights == "sd21-base":
        _load_strict(unet, _registry_state(SD21_FILES["unet"], allow_download), SD21_FILES["unet"])
    return widen_conv_in(unet)


def build_vae(m: SDModelConfig, *, allow_download: bool = True) -> AutoencoderKL:
    from diffusers import AutoencoderKL

    if m.weights == "sd21-base":
        vae = AutoencoderKL(**SD21_VAE)
        _load_strict(vae, _registry_state(SD21_FILES["vae"], allow_download), SD21_FILES["vae"])
    else:
        levels = len(m.vae_block_out_channels)
        with _seeded(1):
            vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                                block_out_channels=m.vae_block_out_channels, layers_per_block=1,
                                norm_num_groups=m.norm_num_groups, scaling_factor=m.vae_scaling_factor,
                                down_block_types=("DownEncoderBlock2D",) * levels,
                                up_block_types=("UpDecoderBlock2D",) * levels, sample_size=m.resolution[0])
    return vae.eval().requires_grad_(False)


def build_text_encoder(m: SDModelConfig, *, allow_download: bool = True) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    if m.weights == "sd21-base":
        model = CLIPTextModel(CLIPTextConfig(**SD21_TEXT))
        state = _registry_state(SD21_FILES["text_encoder"], allow_download)
        state.pop("text_model.embeddings.position_ids", None)  # a buffer older transformers saved
        _load_strict(model, state, SD21_FILES["text_encoder"])
    else:
        vocab = len(character_vocabulary())
        config = CLIPTextConfig(vocab_size=vocab, hidden_size=m.text_hidden_size,
                                intermediate_size=2 * m.text_hidden_size, num_hidden_layers=m.text_layers,
                                num_attention_heads=m.text_heads, max_position_embeddings=m.max_prompt_tokens,
                                bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=vocab - 1)
        with _seeded(2):
            model = CLIPTextModel(config)
    return model.eval().requires_grad_(False)


def character_vocabulary() -> dict[str, int]:
    """A CLIP BPE vocabulary without merges: printable ASCII characters, each also as a word end, plus the two
    special tokens. Any prompt tokenizes (other characters become the unknown token)."""
    chars = [chr(i) for i in range(33, 127)]
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab


def build_tokenizer(m: SDModelConfig, *, allow_download: bool = True) -> Any:
    from transformers import CLIPTokenizer

    if m.weights == "sd21-base":
        from posebench import weights

        vocab = weights.ensure(SD21_FILES["vocab"], allow_download=allow_download)
        merges = weights.ensure(SD21_FILES["merges"], allow_download=allow_download)
        # OpenCLIP pads with "!" (id 0), as SD 2.x's tokenizer config says
        return CLIPTokenizer(vocab=str(vocab), merges=str(merges), pad_token="!", model_max_length=77)
    return CLIPTokenizer(vocab=character_vocabulary(), merges=[], model_max_length=m.max_prompt_tokens)


def _seeded(salt: int) -> Any:
    """Random components are a function of the config alone, not of the global RNG state when they are built (a
    resumed run and every process of a multi-process run must see the same frozen VAE and text encoder): built
    under a forked RNG with a fixed seed, so the library's own initialisation is kept."""
    import contextlib

    @contextlib.contextmanager
    def scope():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0x5D00 + salt)
            yield

    return scope()


def encode_prompts(tokenizer: Any, text_encoder: Any, prompts: list[str], device: torch.device) -> torch.Tensor:
    """Text embeddings (B, tokens, hidden): the last hidden state of the (already truncated) CLIP text model, which
    for SD 2.1 is OpenCLIP's penultimate layer."""
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids.to(device)
    with torch.no_grad():
        return text_encoder(ids).last_hidden_state
