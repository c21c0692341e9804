"""What each paper-faithful choice of the reference model costs at tiny size: a training step's time (as a ratio to
the reading it replaced) and the loss after N steps, both measured in one run on the same synthetic pairs.

The choices (docs/model.md, "Deviations"): CFG dropout of both conditions vs the source only; eq. 11's mask from
the generated pose vs the reference; the RPA's first flow from the MapFormer (F^0 = M(F_T, F_S), N + 1
applications) vs zero; and, in latent space, the target pose through the VAE encoder vs a learned encoder, and the
RPA warping the source image and re-encoding it with the VAE (eq. 9) vs warping the latent. Latent-space cases use
a small random AutoencoderKL (timings and losses only: its latents mean nothing), pixel-space cases `tiny-*`.

    .venv/bin/python benchmarks/paper_choices.py [--steps 60] [--json out.json]

Each case trains from the same seed; "loss" is the mean of the last 10 steps' losses. Losses of cases that change
what is learned (another condition dropout, another mask) are not comparable as quality, only as "does it train".
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any


def _tiny_vae() -> Any:
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(latent_channels=4, block_out_channels=(16, 16, 16, 16),
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        layers_per_block=1, norm_num_groups=4)
    return vae.eval().requires_grad_(False)


def _override(obj: Any, changes: dict[str, Any]) -> Any:
    """dataclasses.replace on nested config dataclasses: {"guidance": {"mask_from": ...}, "cfg_drop": ...}."""
    out = {}
    for f in fields(obj):
        if f.name in changes:
            value = changes[f.name]
            current = getattr(obj, f.name)
            out[f.name] = _override(current, value) if is_dataclass(current) and isinstance(value, dict) else value
    return replace(obj, **out)


# (name, base config, model overrides, what it is compared with)
LATENT = {"latent": "vae", "resolution": (64, 48), "cond_downsample": 1, "rpa_kernel_sizes": (2,)}
CASES: list[tuple[str, str, dict[str, Any], str]] = [
    ("cfg_drop source", "tiny-b2", {"cfg_drop": "source"}, ""),
    ("cfg_drop both", "tiny-b2", {"cfg_drop": "both"}, "cfg_drop source"),
    ("mask reference", "tiny-full", {"guidance": {"mask_from": "reference"}}, ""),
    ("mask generated", "tiny-full", {"guidance": {"mask_from": "generated"}}, "mask reference"),
]
OPTIONAL: list[tuple[str, str, dict[str, Any], str]] = [
    ("rpa first flow zero", "tiny-b2", {"rpa_first_flow": "zero"}, ""),
    ("rpa first flow mapformer", "tiny-b2", {"rpa_first_flow": "mapformer"}, "rpa first flow zero"),
    ("pose learned (latent)", "tiny-b2", {**LATENT, "pose_encoding": "learned"}, ""),
    ("pose vae (latent)", "tiny-b2", {**LATENT, "pose_encoding": "vae", "pose_renderer": "skeleton-rgb"},
     "pose learned (latent)"),
    ("rpa warp latent", "tiny-b2", {**LATENT, "rpa_warp": "latent"}, ""),
    ("rpa warp image (eq. 9)", "tiny-b2", {**LATENT, "rpa_warp": "image"}, "rpa warp latent"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from posebench.datasets.synth import synthesize
    from reposedm import vae as vae_module
    from reposedm.config import ModelConfig, load_config
    from reposedm.data import PairSource
    from reposedm.train import train

    known = {f.name for f in fields(ModelConfig)}
    cases = CASES + [c for c in OPTIONAL if set(c[2]) <= known]
    vae_module.load_vae = lambda cfg, allow_download=True: _tiny_vae() if cfg.latent == "vae" else None
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "df"
        synthesize("deepfashion", root, identities=6, poses=4, size=(64, 44), seed=0, test_fraction=0.25,
                   progress=False)
        source = PairSource("deepfashion", root, "train")
        for name, base, changes, _ in cases:
            cfg = load_config(base, sample_every=0, checkpoint_every=10**6, log_every=10**6, batch_size=4)
            cfg = replace(cfg, model=_override(cfg.model, changes))
            t0 = time.perf_counter()
            result = train(cfg, source=source, out=Path(tmp) / name.replace(" ", "_"), max_steps=args.steps,
                           progress=False)
            seconds = time.perf_counter() - t0
            rows[name] = {"config": base, "changes": {k: str(v) for k, v in changes.items()},
                          "seconds_per_step": seconds / args.steps, "loss_last10": statistics.mean(result.losses[-10:])}
    for name, _, _, against in cases:
        row = rows[name]
        if against:
            row["step_cost_ratio"] = row["seconds_per_step"] / rows[against]["seconds_per_step"]
            row["compared_with"] = against
        ratio = f"  {row['step_cost_ratio']:.2f}x the step of '{against}'" if against else ""
        print(f"{name:28s} {row['seconds_per_step'] * 1000:8.1f} ms/step  loss(last 10) {row['loss_last10']:.4f}"
              + ratio)
    if args.json:
        args.json.write_text(json.dumps({"steps": args.steps, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
