"""FLOPs of one training item (forward + backward) of b1 / b2 / full at a named config size, counted by torch's
FlopCounterMode on random weights and a random batch, and what a whole training run costs on a GPU under a
stated utilisation.

Counting needs no GPU: the count is a property of the model, the size and the objective. The GPU-hours figure is
an estimate, not a measurement: total FLOPs / (peak dense bf16 FLOP/s x utilisation). Peak and utilisation are
arguments (defaults: an H200's 989 TFLOP/s dense bf16, 35 % utilisation, typical for a U-Net of this size with
attention at low resolution; measure steps/s on the real machine to replace it).

    .venv/bin/python benchmarks/step_flops.py [--size deepfashion-256] [--steps 300000] [--batch 8]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry


class _FlopCount(TorchDispatchMode):
    """Sums torch's registered FLOP formulas (matmuls, convolutions, attention) over every aten call, without the
    module hooks of FlopCounterMode, which fail inside autograd.grad(create_graph=True) (eq. 15's double backward).

    Attention runs on SDPA's math backend while counting: on CPU, SDPA otherwise dispatches to
    `_scaled_dot_product_flash_attention_for_cpu`, which has no FLOP formula, so every attention of a model on
    diffusers' default processor went uncounted (the variants with a double backward use the classic processor,
    whose matmuls were counted: the ratios between them were too large). The math backend's matmuls are the same
    FLOPs the fused kernels compute."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0
        self._math = None

    def __enter__(self):
        from torch.nn.attention import SDPBackend, sdpa_kernel

        self._math = sdpa_kernel([SDPBackend.MATH])
        self._math.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        out = super().__exit__(*exc)
        self._math.__exit__(*exc)
        return out

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += int(formula(*args, **kwargs, out_val=out))
        return out


def count_item_flops(size: str, variant: str, train_mode: str | None) -> int:
    """FLOPs of forward + backward of the training objective for one item (batch 1)."""
    import reference_step as rs  # (benchmarks/ is on sys.path) the same model, VAE, pose field, batch as the timing

    from reposedm.train import Objective, enable_double_backward, needs_double_backward

    cfg = rs.build_cfg(size, variant, train_mode)
    device = torch.device("cpu")
    vae = rs.build_vae(cfg, device)
    model = rs.build_model(cfg, device).train()
    if needs_double_backward(cfg):
        enable_double_backward(model, vae)
    objective = Objective(cfg, vae, rs.build_pose_field(cfg, device))
    data = rs.random_batch(cfg, 1, device)
    g = torch.Generator().manual_seed(1)
    t = torch.tensor([500])
    noise = torch.randn(1, cfg.model.latent_channels, *cfg.model.latent_size, generator=g)
    drop = torch.zeros(1, dtype=torch.bool)
    with _FlopCount() as counter:
        loss, _ = objective(model, data, t, noise, drop)
        loss.backward()
    return counter.total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="deepfashion-256")
    ap.add_argument("--steps", type=int, default=300_000, help="optimizer steps of the run (paper: 300k)")
    ap.add_argument("--batch", type=int, default=8, help="global batch (paper: 8)")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="GPU peak dense bf16 TFLOP/s (H200: 989)")
    ap.add_argument("--utilisation", type=float, default=0.35, help="achieved fraction of the peak")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    rows = {}
    for name, variant, mode in (("b1", "b1", None), ("b2", "b2", None), ("full (2nd-order)", "full", "second-order"),
                                ("full (1st-order)", "full", "first-order")):
        flops = count_item_flops(args.size, variant, mode)
        total = flops * args.batch * args.steps
        hours = total / (args.peak_tflops * 1e12 * args.utilisation) / 3600
        rows[name] = {"gflops_per_item": flops / 1e9, "run_pflops": total / 1e15, "gpu_hours_estimate": hours}
        print(f"{args.size} {name:18s} {flops / 1e9:9.1f} GFLOP/item   run {total / 1e18:8.2f} EFLOP   "
              f"~{hours:7.1f} GPU-hours at {args.utilisation:.0%} of {args.peak_tflops:g} TFLOP/s")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
