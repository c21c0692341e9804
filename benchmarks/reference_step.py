"""Reference-model step costs: training step of b1 / b2 / full, sampling per step with the RPA cached, guidance.

All on randomly initialised networks of one named config size (`{size}-{b1,b2,full}`) and random batches
of the right shapes, so no dataset and no weights are needed (paper sizes get a random-weight SD
AutoencoderKL: timings only). Everything is measured in one run on one machine and reported as medians
of `--repeats` timed iterations after `--warmup` warm-up iterations, and as ratios:

1. training step (forward + backward + AdamW step) of b1, b2, full (second-order pose guidance, the
   config default) and full with first-order guidance; ratio to b1;
2. sampling per step for b2 and full (pose guidance off), DDIM, CFG w_c = 2:
   (a) `sample()` total / S, which includes the RPA computed once per sample,
   (b) one plain U-Net call on the same CFG-doubled batch (2B),
   (c) a hand-written loop that recomputes the RPA (`encode_condition`) at every step;
   a/b is checked against the target of at most 1.15x (PASS/MISS); c/b shows what caching saves;
3. pose-guidance overhead per sampling step for full: `sample()` with eta = 1 and sample_grad "unet" /
   "tweedie" vs eta = 0;
4. peak memory per measurement: `torch.cuda.max_memory_allocated` on CUDA (reset before each); on CPU
   only the process's peak RSS so far (monotone over the run, so later rows include earlier peaks).

On CPU (tiny, a couple of minutes on 2 cores):

    .venv/bin/python benchmarks/reference_step.py [--json out.json]

On the GPU machine, the same at paper size:

    python benchmarks/reference_step.py --size deepfashion-256 --device cuda --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

TARGET_CACHED_RATIO = 1.15  # sampling step with the RPA cached vs a plain U-Net step (issue)


# ------------------------------------------------------------------------------------------------ setup


class Bench:
    def __init__(self, device: torch.device, repeats: int, warmup: int) -> None:
        self.device, self.repeats, self.warmup = device, repeats, warmup
        self.rows: list[dict[str, Any]] = []

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def time(self, fn: Callable[[], Any]) -> tuple[float, float | None]:
        """Median seconds of `repeats` calls after `warmup` calls, and the peak memory in MiB."""
        return self.time_many({"": fn})[""]

    def time_many(self, fns: dict[str, Callable[[], Any]]) -> dict[str, tuple[float, float | None]]:
        """Like `time` for several functions, interleaved (a busy moment of a shared machine hits all)."""
        cuda = self.device.type == "cuda"
        times: dict[str, list[float]] = {k: [] for k in fns}
        peaks: dict[str, float] = {}
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
        for _ in range(self.warmup):
            for fn in fns.values():
                fn()
        for _ in range(self.repeats):
            for key, fn in fns.items():
                if cuda:
                    torch.cuda.reset_peak_memory_stats(self.device)
                self.sync()
                t0 = time.perf_counter()
                fn()
                self.sync()
                times[key].append(time.perf_counter() - t0)
                if cuda:
                    peak = torch.cuda.max_memory_allocated(self.device) / 2**20
                else:
                    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
                peaks[key] = max(peaks.get(key, 0.0), peak)
        return {k: (statistics.median(times[k]), peaks.get(k)) for k in fns}

    def add(self, group: str, name: str, seconds: float, peak: float | None, ratio: float | None = None,
            ratio_to: str = "", per: str = "step") -> None:
        self.rows.append({"group": group, "name": name, "seconds": seconds, "per": per, "ratio": ratio,
                          "ratio_to": ratio_to, "peak_mib": peak})


def build_cfg(size: str, variant: str, train_mode: str | None = None) -> Any:
    from reposedm.config import load_config

    cfg = load_config(f"{size}-{variant}")
    if train_mode is not None:
        guidance = dataclasses.replace(cfg.model.guidance, train_mode=train_mode)
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, guidance=guidance))
    return cfg


def build_vae(cfg: Any, device: torch.device) -> Any:
    if cfg.model.latent != "vae":
        return None
    from diffusers import AutoencoderKL

    from reposedm.vae import SD_VAE_CONFIG

    torch.manual_seed(1)
    vae = AutoencoderKL(**{**SD_VAE_CONFIG, "scaling_factor": cfg.model.vae_scaling_factor})
    return vae.to(device).eval().requires_grad_(False)


def build_pose_field(cfg: Any, device: torch.device) -> Any:
    """The config's pose field; at paper size its HigherHRNet with random weights (timings only: the weights are
    not downloadable everywhere, and the cost does not depend on them)."""
    from posebench.pose.higherhrnet import SPECS, build
    from reposedm.guidance import PoseField
    from reposedm.train import build_pose_field as real_pose_field

    g = cfg.model.guidance
    if g.enabled and g.estimator in SPECS and g.estimator_weights is None:
        torch.manual_seed(2)
        return PoseField(build(g.estimator).to(device), g)
    return real_pose_field(cfg, device)


def model_pose(cfg: Any, vae: Any, pose_map: torch.Tensor) -> torch.Tensor:
    """What the model takes as P: the rendered map, or its VAE latent F_T (`pose_encoding: vae`)."""
    from reposedm.train import Objective

    return Objective(cfg, vae, None).to_model_space(pose_map) if cfg.model.pose_encoding == "vae" else pose_map


def build_model(cfg: Any, device: torch.device) -> Any:
    from reposedm.models.network import RePoseDMModel

    torch.manual_seed(0)
    return RePoseDMModel.from_model_config(cfg.model).to(device)


def random_batch(cfg: Any, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
    m = cfg.model
    h, w = m.resolution
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(batch, 17, 2, generator=g) * torch.tensor([w - 1, h - 1], dtype=torch.float32)
    out = {
        "source": torch.rand(batch, 3, h, w, generator=g),
        "target": torch.rand(batch, 3, h, w, generator=g),
        "pose_map": torch.rand(batch, m.pose_channels, h, w, generator=g),
        "target_xy": xy,
        "target_visible": torch.ones(batch, 17, dtype=torch.bool),
    }
    return {k: v.to(device) for k, v in out.items()}


# ------------------------------------------------------------------------------------------- measurements


def bench_training(bench: Bench, size: str, batch: int, amp: bool, vae: Any) -> None:
    from reposedm.train import Objective, enable_double_backward, needs_double_backward

    device = bench.device
    cases = [("b1", "b1", None), ("b2", "b2", None), ("full (2nd-order)", "full", "second-order"),
             ("full (1st-order)", "full", "first-order")]
    base = None
    for name, variant, mode in cases:
        cfg = build_cfg(size, variant, mode)
        model = build_model(cfg, device).train()
        saved = vae.attn_processors if vae is not None else None
        if needs_double_backward(cfg):
            enable_double_backward(model, vae)  # as train.py does
        objective = Objective(cfg, vae, build_pose_field(cfg, device))
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
        data = random_batch(cfg, batch, device)
        g = torch.Generator().manual_seed(1)
        t = torch.randint(0, cfg.model.num_train_timesteps, (batch,), generator=g).to(device)
        noise = torch.randn(batch, cfg.model.latent_channels, *cfg.model.latent_size, generator=g).to(device)
        drop = torch.zeros(batch, dtype=torch.bool, device=device)

        def step(model=model, objective=objective, optimizer=optimizer, data=data, t=t, noise=noise,
                 drop=drop) -> None:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss, _ = objective(model, data, t, noise, drop)
            loss.backward()
            optimizer.step()

        sec, peak = bench.time(step)
        base = sec if base is None else base
        bench.add("train", name, sec, peak, sec / base, "b1")
        if saved is not None:
            vae.set_attn_processor(saved)
        del model, objective, optimizer, step
        gc.collect()


def _cfg_eps(out: torch.Tensor, c: int, scale: float) -> torch.Tensor:
    out_c, out_u = out.chunk(2)
    return out_u[:, :c] + scale * (out_c[:, :c] - out_u[:, :c])


def bench_sampling(bench: Bench, size: str, batch: int, steps: int, vae: Any) -> dict[str, Any]:
    from reposedm.diffusion import make_scheduler
    from reposedm.sampling import generators_for, sample
    from reposedm.train import Objective

    device, verdicts, w_c = bench.device, {}, 2.0
    for variant in ("b2", "full"):
        cfg = build_cfg(size, variant)
        model = build_model(cfg, device).eval().requires_grad_(False)
        scheduler = make_scheduler(cfg.model, "ddim")
        data = random_batch(cfg, batch, device)
        source = Objective(cfg, vae, None).to_model_space(data["source"])
        pose_map = model_pose(cfg, vae, data["pose_map"])
        c = model.latent_channels
        label = variant if variant == "b2" else "full (no pose guidance)"

        def cached(model=model, scheduler=scheduler, source=source, pose_map=pose_map) -> None:
            sample(model, scheduler, source, pose_map, generators=generators_for(0, range(batch), device),
                   num_inference_steps=steps, guidance_scale=w_c)

        with torch.no_grad():
            cond = model.encode_condition(source, pose_map)
            both = cond.cat(model.unconditional(cond))
            x = torch.randn(2 * batch, c, *source.shape[-2:], device=device)
            x = torch.cat([x, both.pose_embed], dim=1)
            ts = torch.full((2 * batch,), 500, device=device, dtype=torch.long)

        def plain(model=model, x=x, ts=ts, tokens=both.tokens) -> None:
            with torch.no_grad():
                model.unet(x, ts, encoder_hidden_states=tokens)

        def recomputed(model=model, scheduler=scheduler, source=source, pose_map=pose_map, c=c) -> None:
            with torch.no_grad():
                scheduler.set_timesteps(steps, device=device)
                latents = torch.randn(batch, c, *source.shape[-2:], device=device) * scheduler.init_noise_sigma
                for t in scheduler.timesteps:
                    cond = model.encode_condition(source, pose_map)
                    both = cond.cat(model.unconditional(cond))
                    y = scheduler.scale_model_input(latents, t)
                    out = model.denoise(torch.cat([y, y]), t.expand(2 * batch), both)
                    latents = scheduler.step(_cfg_eps(out, c, w_c), t, latents).prev_sample

        res = bench.time_many({"a": cached, "b": plain, "c": recomputed})
        (sec_a, peak_a), (sec_b, peak_b), (sec_c, peak_c) = res["a"], res["b"], res["c"]
        a, cc = sec_a / steps, sec_c / steps
        group = f"sample {label}"
        bench.add(group, "plain U-Net step (2B)", sec_b, peak_b, 1.0, "plain")
        bench.add(group, f"sample(), RPA cached ({steps} steps)", a, peak_a, a / sec_b, "plain")
        bench.add(group, "RPA recomputed every step", cc, peak_c, cc / sec_b, "plain")
        verdicts[variant] = {"ratio": a / sec_b, "target": TARGET_CACHED_RATIO,
                             "verdict": "PASS" if a / sec_b <= TARGET_CACHED_RATIO else "MISS"}
        del model, cached, plain, recomputed
        gc.collect()
    return verdicts


def bench_guidance(bench: Bench, size: str, batch: int, steps: int, vae: Any) -> None:
    from reposedm.diffusion import Schedule, make_scheduler
    from reposedm.sampling import generators_for, sample
    from reposedm.train import Objective

    device = bench.device
    cfg = build_cfg(size, "full")
    model = build_model(cfg, device).eval().requires_grad_(False)
    scheduler = make_scheduler(cfg.model, "ddim")
    data = random_batch(cfg, batch, device)
    objective = Objective(cfg, vae, None)
    source = objective.to_model_space(data["source"])
    field = build_pose_field(cfg, device)
    ref = field.reference(target_xy=data["target_xy"], target_visible=data["target_visible"],
                          image_size=cfg.model.resolution)
    schedule = Schedule.from_config(cfg.model)
    runs = {}
    for name, eta, mode in (("eta 0 (off)", 0.0, "unet"), ("eta 1, grad through U-Net", 1.0, "unet"),
                            ("eta 1, Tweedie only", 1.0, "tweedie")):

        def run(eta=eta, mode=mode, pose_map=model_pose(cfg, vae, data["pose_map"])) -> None:
            sample(model, scheduler, source, pose_map, generators=generators_for(0, range(batch), device),
                   num_inference_steps=steps, guidance_scale=2.0, schedule=schedule, pose_field=field,
                   field_reference=ref, pose_guidance_scale=eta, sample_grad=mode, decode=objective.decode)

        runs[name] = run
    res = bench.time_many(runs)
    base = res["eta 0 (off)"][0] / steps
    for name, (sec, peak) in res.items():
        bench.add("pose guidance (full)", name, sec / steps, peak, sec / steps / base, "eta 0")


# ---------------------------------------------------------------------------------------------- output


def versions() -> dict[str, str]:
    import diffusers

    import posebench

    return {"python": platform.python_version(), "torch": torch.__version__, "diffusers": diffusers.__version__,
            "posebench": posebench.__version__}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU"


def print_table(bench: Bench, title: str, mem_note: str, verdicts: dict[str, Any]) -> None:
    header = ("measurement", "median s", "per", "ratio", "peak MiB")
    lines = []
    for r in bench.rows:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}x {r['ratio_to']}"
        peak = "" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
        lines.append((f"{r['group']}: {r['name']}", f"{r['seconds']:.4f}", r["per"], ratio, peak))
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is a dependency
        widths = [max(len(str(x)) for x in col) for col in zip(header, *lines, strict=True)]
        print(title)
        for row in (header, *lines):
            print("  ".join(str(x).ljust(wd) if i == 0 else str(x).rjust(wd)
                            for i, (x, wd) in enumerate(zip(row, widths, strict=True))))
    else:
        table = Table(title=title)
        for i, h in enumerate(header):
            table.add_column(h, justify="left" if i == 0 else "right")
        for row in lines:
            table.add_row(*row)
        Console(width=max(120, Console().width)).print(table)
    for variant, v in verdicts.items():
        print(f"{variant}: sampling step with RPA cached / plain U-Net step = {v['ratio']:.2f}x "
              f"(target <= {v['target']:.2f}x): {v['verdict']}")
    print(mem_note)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="tiny", choices=("tiny", "deepfashion-256", "deepfashion-512", "market-128"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))
    ap.add_argument("--batch", type=int, default=None, help="default: 4 on tiny, 2 at paper sizes")
    ap.add_argument("--steps", type=int, default=None, help="sampling steps S (default: 10 on tiny, 25 otherwise)")
    ap.add_argument("--repeats", type=int, default=5, help="timed iterations; the median is reported")
    ap.add_argument("--warmup", type=int, default=2, help="untimed iterations before each measurement")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                    help="training steps only (auto: bf16 autocast on CUDA as the trainer does, fp32 on CPU); "
                         "sampling runs in fp32 as the pipeline does")
    ap.add_argument("--parts", default="train,sample,guidance", help="comma-separated subset to run")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device here")
    if args.threads:
        torch.set_num_threads(args.threads)
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    unknown = parts - {"train", "sample", "guidance"}
    if unknown:
        sys.exit(f"--parts: unknown {sorted(unknown)}; choose from train, sample, guidance")
    device = torch.device(args.device)
    tiny = args.size == "tiny"
    batch = args.batch or (4 if tiny else 2)
    steps = args.steps or (10 if tiny else 25)
    amp = args.precision == "bf16" or (args.precision == "auto" and device.type == "cuda")
    bench = Bench(device, args.repeats, args.warmup)
    vae = build_vae(build_cfg(args.size, "b1"), device)

    t0 = time.perf_counter()
    verdicts: dict[str, Any] = {}
    if "train" in parts:
        bench_training(bench, args.size, batch, amp, vae)
    if "sample" in parts:
        verdicts = bench_sampling(bench, args.size, batch, steps, vae)
    if "guidance" in parts:
        bench_guidance(bench, args.size, batch, steps, vae)
    wall = time.perf_counter() - t0

    if device.type == "cuda":
        mem_note = "peak MiB: torch.cuda.max_memory_allocated during that measurement (reset before each)."
    else:
        mem_note = ("peak MiB on CPU: the process's peak RSS so far (ru_maxrss), monotone over the run, so a row "
                    "includes every earlier row's peak; only growth between rows says anything.")
    title = (f"{args.size}, batch {batch}, {device_name(device)}, {torch.get_num_threads()} threads, "
             f"train precision {'bf16' if amp else 'fp32'}, median of {args.repeats} after {args.warmup} warm-up")
    print_table(bench, title, mem_note, verdicts)
    print("Absolute times depend on the machine and its load; compare the ratios, measured in this one run.")

    if args.json is not None:
        result = {
            "benchmark": "reference_step", "versions": versions(), "device": device_name(device),
            "device_type": device.type, "size": args.size, "batch": batch, "sampling_steps": steps,
            "threads": torch.get_num_threads(), "repeats": args.repeats, "warmup": args.warmup,
            "train_precision": "bf16" if amp else "fp32", "memory": "cuda_max_allocated" if device.type == "cuda"
            else "cpu_peak_rss_so_far", "memory_note": mem_note, "target_cached_ratio": TARGET_CACHED_RATIO,
            "cached_ratio_verdicts": verdicts, "rows": bench.rows, "wall_s": wall,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
