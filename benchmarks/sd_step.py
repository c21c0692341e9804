"""RePoseSD training step with and without the pose field (eq. 15, second order) vs HumanSD's plain step.

One training step (forward + backward + AdamW) of the `{size}-humansd` and `{size}-reposesd` configs on random
weights and a random batch (no dataset, no downloads: at `humanart-sd` size the U-Net, VAE and text encoder have
SD 2.1's real architecture, the pose field a random-weight HigherHRNet-W32; timings only). Reported in one run on
one machine: median step time of `--repeats` after `--warmup`, steps/s, peak memory (`torch.cuda.max_memory_allocated`
on CUDA, reset per variant; on CPU the process's peak RSS so far), and reposesd / humansd as ratios. With `--flops`,
the FLOPs of one training item are also counted (torch's FLOP formulas over every aten call, double backward
included; needs no GPU, but at 512x512 a CPU needs several minutes and ~30 GiB).

    .venv/bin/python benchmarks/sd_step.py                      # tiny-sd, CPU, seconds
    python benchmarks/sd_step.py --size humanart-sd --device cuda --precision bf16 --batch 8 --json out.json
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def build(size: str, variant: str, device: torch.device, resolution: int | None = None) -> tuple[Any, Any, Any, Any]:
    """(config, unet, objective, optimizer) on random weights; `resolution` overrides the config's (square)."""
    from dataclasses import replace

    from reposedm.config import load_config
    from reposedm.guidance import PoseField
    from reposedm.sd.components import build_text_encoder, build_tokenizer, build_unet, build_vae
    from reposedm.sd.train import SDObjective

    cfg = load_config(f"{size}-{variant}")
    m = replace(cfg.model, weights="random")  # SD 2.1's architecture at humanart-sd size, random weights
    if resolution is not None:
        m = replace(m, resolution=(resolution, resolution))
    cfg = replace(cfg, model=m)
    def to(module: Any) -> Any:  # (a no-op on CPU: FakeTensorMode cannot swap parameters)
        return module if device.type == "cpu" else module.to(device)

    vae, text, tok = to(build_vae(m)), to(build_text_encoder(m)), build_tokenizer(m)
    field = None
    if m.guidance.enabled:
        if m.is_test_size:
            from posebench.pose.detect import load_estimator

            field = PoseField(to(load_estimator(m.guidance.estimator)), m.guidance)
        else:
            from posebench.pose.higherhrnet import build as build_hrnet

            torch.manual_seed(2)
            field = PoseField(to(build_hrnet(m.guidance.estimator)), m.guidance)
    torch.manual_seed(0)
    unet = to(build_unet(m)).train()
    if m.guidance.enabled:  # as SDFamily.build_model: no SDPA double backward
        from diffusers.models.attention_processor import AttnProcessor

        unet.set_attn_processor(AttnProcessor())
        vae.set_attn_processor(AttnProcessor())
    if cfg.train.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    objective = SDObjective(cfg, vae, text, tok, field)
    return cfg, unet, objective, torch.optim.AdamW(unet.parameters(), lr=1e-5)


def random_batch(cfg: Any, batch: int, device: torch.device) -> dict[str, Any]:
    g = torch.Generator().manual_seed(1)
    h, w = cfg.model.resolution
    xy = torch.rand(batch, 10, 17, 2, generator=g) * torch.tensor([w, h])
    visible = torch.zeros(batch, 10, 17, dtype=torch.bool)
    visible[:, :2] = True  # two people per image
    return {"image": torch.rand(batch, 3, h, w, generator=g).to(device),
            "pose_image": torch.rand(batch, 3, h, w, generator=g).to(device),
            "people_xy": xy.to(device), "people_visible": visible.to(device),
            "prompt": ["digital_art, a person in a red coat, walking"] * batch}


def peak_memory(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def time_steps(size: str, variant: str, batch: int, device: torch.device, precision: str, warmup: int,
               repeats: int) -> dict[str, float]:
    cfg, unet, objective, opt = build(size, variant, device)
    data = random_batch(cfg, batch, device)
    c, (lh, lw) = cfg.model.latent_channels, cfg.model.latent_size
    g = torch.Generator().manual_seed(3)
    t = torch.randint(0, 1000, (batch,), generator=g).to(device)
    noise = torch.randn(batch, c, lh, lw, generator=g).to(device)
    drop = torch.zeros(batch, dtype=torch.bool, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    times = []
    for i in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss, _ = objective(unet, data, t, noise, drop)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    step = statistics.median(times)
    out = {"step_s": step, "steps_per_s": 1 / step, "peak_memory_gib": peak_memory(device)}
    del unet, objective, opt
    return out


def count_flops(size: str, variant: str, resolution: int | None = None) -> int:
    from step_flops import _FlopCount  # the counter of RePoseDM's FLOP figures

    cfg, unet, objective, _ = build(size, variant, torch.device("cpu"), resolution)
    data = random_batch(cfg, 1, torch.device("cpu"))
    c, (lh, lw) = cfg.model.latent_channels, cfg.model.latent_size
    t, noise = torch.tensor([500]), torch.randn(1, c, lh, lw, generator=torch.Generator().manual_seed(3))
    with _FlopCount() as counter:
        loss, _ = objective(unet, data, t, noise, torch.zeros(1, dtype=torch.bool))
        loss.backward()
    return counter.total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny-sd", choices=["tiny-sd", "humanart-sd"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--flops", action="store_true", help="also count the FLOPs of one training item")
    parser.add_argument("--flops-only", type=int, nargs="*", metavar="RES",
                        help="only count FLOPs per item, at these square resolutions (e.g. 128 256: a CPU cannot hold "
                             "512x512's double backward; FLOPs are a + b x pixels + c x pixels^2, attention being "
                             "quadratic in tokens)")
    parser.add_argument("--only", choices=["humansd", "reposesd"], help="one variant (a fresh process per variant "
                        "gives per-variant peak RSS on CPU)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.flops_only:
        counts = {f"{args.size}-{v}@{r}": count_flops(args.size, v, r) for r in args.flops_only
                  for v in ("humansd", "reposesd")}
        for k, n in counts.items():
            print(f"{k}: {n / 1e9:,.1f} GFLOP per item")
        if args.json:
            args.json.write_text(json.dumps({"flops_per_item": counts}, indent=2) + "\n")
        return
    variants = (args.only,) if args.only else ("humansd", "reposesd")
    rows = {v: time_steps(args.size, v, args.batch, device, args.precision, args.warmup, args.repeats)
            for v in variants}
    if args.only:
        r = rows[args.only]
        print(f"{args.size}-{args.only}: {r['step_s']:.3f} s/step ({r['steps_per_s']:.2f} steps/s), peak "
              f"{r['peak_memory_gib']:.2f} GiB")
        if args.json:
            args.json.write_text(json.dumps({"size": args.size, "device": args.device, "rows": rows}, indent=2) + "\n")
        return
    if args.flops:
        for v in rows:
            rows[v]["flops_per_item"] = count_flops(args.size, v)
    base = rows["humansd"]
    result = {"size": args.size, "device": args.device, "precision": args.precision, "batch": args.batch,
              "repeats": args.repeats, "torch": torch.__version__, "rows": rows,
              "ratio_step_time": rows["reposesd"]["step_s"] / base["step_s"],
              "ratio_steps_per_s": rows["reposesd"]["steps_per_s"] / base["steps_per_s"]}
    if device.type == "cuda":  # per-variant peaks (reset per variant); CPU RSS is monotone, no ratio
        result["ratio_peak_memory"] = rows["reposesd"]["peak_memory_gib"] / base["peak_memory_gib"]
    if args.flops:
        result["ratio_flops"] = rows["reposesd"]["flops_per_item"] / base["flops_per_item"]
    for v, r in rows.items():
        extra = f", {r['flops_per_item'] / 1e9:,.0f} GFLOP/item" if "flops_per_item" in r else ""
        print(f"{args.size}-{v}: {r['step_s']:.3f} s/step ({r['steps_per_s']:.2f} steps/s), peak "
              f"{r['peak_memory_gib']:.2f} GiB{extra}")
    print(f"reposesd / humansd: step time {result['ratio_step_time']:.2f}x"
          + (f", peak memory {result['ratio_peak_memory']:.2f}x" if "ratio_peak_memory" in result else "")
          + (f", FLOPs {result['ratio_flops']:.2f}x" if "ratio_flops" in result else ""))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
