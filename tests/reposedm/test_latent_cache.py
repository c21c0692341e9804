"""Cached VAE latents (`train.cache_latents`): keyed by image content and VAE, equal to encoding, safe to damage."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from reposedm.config import load_config
from reposedm.latent_cache import LatentCache, content_key, vae_fingerprint


def _tiny_vae(seed: int = 0):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(latent_channels=4, block_out_channels=(8, 8, 8, 8),
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        layers_per_block=1, norm_num_groups=4)
    return vae.eval().requires_grad_(False)


def _encoder(vae):
    def encode(images):
        return vae.encode(images * 2 - 1).latent_dist.mean * 0.18215

    return encode


def test_cache_reads_back_what_it_encoded_and_keys_by_vae(tmp_path, caplog):
    vae, other = _tiny_vae(0), _tiny_vae(1)
    images = torch.rand(3, 3, 32, 24, generator=torch.Generator().manual_seed(0))
    cache = LatentCache(tmp_path, vae_fingerprint(vae, 0.18215, "no"))
    with torch.no_grad():
        first = cache.encode(images, _encoder(vae))
        direct = _encoder(vae)(images)
        assert (cache.hits, cache.misses) == (0, 3)
        again = cache.encode(images[[2, 0]], _encoder(vae))  # another batch order: read, not encoded
    assert (cache.hits, cache.misses) == (2, 3)
    torch.testing.assert_close(first, direct, rtol=0, atol=1e-6)
    assert torch.equal(again, first[[2, 0]])
    assert len(list(cache.folder.rglob("*.safetensors"))) == 3

    # another VAE, another scaling factor or precision: another namespace, nothing read across
    fingerprints = {vae_fingerprint(vae, 0.18215, "no"), vae_fingerprint(other, 0.18215, "no"),
                    vae_fingerprint(vae, 0.13025, "no"), vae_fingerprint(vae, 0.18215, "bf16")}
    assert len(fingerprints) == 4
    other_cache = LatentCache(tmp_path, vae_fingerprint(other, 0.18215, "no"))
    with torch.no_grad():
        theirs = other_cache.encode(images, _encoder(other))
    assert other_cache.misses == 3 and not torch.allclose(theirs, first)

    # a damaged file is encoded again (with a warning) and replaced
    victim = cache.folder / content_key(images[1])[:2] / f"{content_key(images[1])}.safetensors"
    victim.write_bytes(b"not a safetensors file")
    with torch.no_grad(), caplog.at_level("WARNING"):
        repaired = cache.encode(images[1:2], _encoder(vae))
    assert "unreadable" in caplog.text
    torch.testing.assert_close(repaired, first[1:2], rtol=0, atol=1e-6)
    fresh = LatentCache(tmp_path, vae_fingerprint(vae, 0.18215, "no"))
    with torch.no_grad():
        fresh.encode(images[1:2], _encoder(vae))
    assert fresh.hits == 1


def test_training_with_the_cache_matches_training_without(train_source, tmp_path, monkeypatch):
    """A latent-space tiny run with cache_latents fills the cache and learns what the run without it learns."""
    from reposedm import vae as vae_module
    from reposedm.train import train

    monkeypatch.setattr(vae_module, "load_vae", lambda cfg, allow_download=True: _tiny_vae(0))
    cfg = load_config("tiny-b1", sample_every=0, checkpoint_every=100, batch_size=2)
    cfg = replace(cfg, model=replace(cfg.model, latent="vae", resolution=(64, 48), cond_downsample=1))
    plain = train(cfg, source=train_source, out=tmp_path / "plain", max_steps=3, progress=False)
    cached_cfg = replace(cfg, train=replace(cfg.train, cache_latents=True))
    cached = train(cached_cfg, source=train_source, out=tmp_path / "cached", max_steps=3, progress=False)
    from posebench import weights

    stored = list((weights.home() / "latents").rglob("*.safetensors"))
    assert stored, "the cache stayed empty"
    assert cached.losses == pytest.approx(plain.losses, rel=1e-5, abs=1e-6)


def test_pose_through_the_vae_trains_and_samples(train_source, tmp_path, monkeypatch):
    """The paper-size readings in latent space, trained and sampled: pose_encoding "vae" (F_T: the rendered RGB
    skeleton through the VAE, in training and in the pipeline), F^0 = M(F_T, F_S) and eq. 9's image warp re-encoded
    by the VAE; an F_T-shaped pose is what the condition encoder then accepts."""
    from reposedm import vae as vae_module
    from reposedm.checkpoints import load_pipeline
    from reposedm.data import PairDataset, collate
    from reposedm.train import train

    monkeypatch.setattr(vae_module, "load_vae", lambda cfg, allow_download=True: _tiny_vae(0))
    cfg = load_config("tiny-b2", sample_every=0, checkpoint_every=2, batch_size=2)
    cfg = replace(cfg, model=replace(cfg.model, latent="vae", resolution=(64, 48), cond_downsample=1,
                                     rpa_kernel_sizes=(2,), pose_encoding="vae", pose_renderer="skeleton-rgb",
                                     pose_embed_channels=4, rpa_first_flow="mapformer", rpa_warp="image"))
    result = train(cfg, source=train_source, out=tmp_path / "run", max_steps=2, progress=False)
    assert len(result.losses) == 2 and all(v == v for v in result.losses)
    pipe, _, _ = load_pipeline(tmp_path / "run")
    pipe.set_progress_bar_config(disable=True)
    batch = collate([PairDataset(train_source, (64, 48), "skeleton-rgb")[i] for i in range(2)])
    assert batch["pose_map"].shape[1] == 3
    out = pipe(batch["source"], batch["pose_map"], num_inference_steps=2, guidance_scale=1.0,
               return_intermediates=True)
    assert out.images.shape == (2, 3, 64, 48) and torch.isfinite(out.images).all()
    # eq. 9: the RPA warped the source image itself (N + 1 = 3 passes), shown at image size
    assert len(out.warped) == 3 and out.warped[0].shape == (2, 3, 64, 48)
    with pytest.raises(ValueError, match="VAE-encoded pose F_T"):
        pipe.condition_encoder(torch.zeros(1, 4, 8, 6), torch.zeros(1, 3, 64, 48))
