"""False alarms of `posebench regress` on two samplings of the same checkpoint: point gate vs interval gate.

A simulation, not a measurement on a real model (no GPU, no trained weights here):
- data: synthetic DeepFashion (`posebench.datasets.synth.synthesize`, 256x176, `--identities` people, 3 poses each,
  half of them test identities: 6 test pairs per test identity; the train images are the FID real set);
- networks: the FID Inception and LPIPS' AlexNet randomly initialised (seed 0), the Inception's BatchNorm statistics
  calibrated on 6 train images so its features differ between images (as tests/fakenets.py does). FID/KID values are
  therefore on an arbitrary scale; what is measured is how often each gate fails, not the values;
- "checkpoint": the ground-truth target blurred (Gaussian, radius 1). A "sampling" k adds, per image i, Gaussian
  pixel noise of standard deviation s_ki ~ U(8, 24) and a brightness offset ~ N(0, 6) (numpy default_rng([k, i])),
  so each image is better or worse from one sampling to the next, as diffusion samples with other seeds are;
- pair p compares sampling 2p + 1 (new) with sampling 2p (baseline): the same checkpoint, so every failure is a
  false alarm. `--regressed` more pairs use a worse checkpoint for the new run (noise s_ki + `--worse`) to show
  that the interval gate still catches a real regression.
Each pair is evaluated with `posebench eval` (profile clean: FID, KID, SSIM, LPIPS, PSNR) and gated twice with the
same tolerances: --gate point and --gate interval (2000 per-image resamples, 200 FID/KID resamples, seed 0).

    .venv/bin/python benchmarks/regress_false_alarms.py --pairs 20 --regressed 10 --work /tmp/regress-sim
    .venv/bin/python benchmarks/regress_false_alarms.py --cost     # seconds per FID/KID resample at DeepFashion size
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter

METRICS = ("fid", "kid", "ssim", "lpips", "psnr")
# "small": about 0.6 % of the simulated FID/KID values (~16,000 on the random network's scale)
TOLERANCES = {"zero (the default)": {},
              "small": {"ssim": 0.002, "lpips": 0.002, "psnr": 0.05, "fid": 100.0, "kid": 100.0}}


def calibrated_inception(images: list[Path]) -> torch.nn.Module:
    """The FID Inception, random weights, BatchNorm statistics from `images` (what tests/fakenets.py does)."""
    import torch.nn.functional as F

    from posebench.metrics.features import fid_inception_skeleton

    model = fid_inception_skeleton()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    x = torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1) for p in images])
    model.train()
    with torch.no_grad():
        model(F.interpolate(x.float(), size=(299, 299), mode="bilinear") / 127.5 - 1)
    return model.eval()


def build(work: Path, identities: int) -> dict[str, Any]:
    import torchvision

    from posebench.datasets.synth import synthesize

    root = work / "df"
    if not root.exists():
        synthesize("deepfashion", root, identities=identities, poses=3, size=(256, 176), seed=0, test_fraction=0.5,
                   progress=False)
    torch.manual_seed(0)
    weights = {"fid": work / "fid.pth", "alex": work / "alex.pth"}
    if not weights["fid"].exists():
        torch.save(calibrated_inception(sorted((root / "train").iterdir())[:6]).state_dict(), weights["fid"])
        torch.save(torchvision.models.alexnet(weights=None).state_dict(), weights["alex"])
    pairs = [ln.split(",") for ln in (root / "fasion-resize-pairs-test.csv").read_text().split()[1:]]
    return {"root": root, "pairs": pairs, **weights}


def sample(world: dict[str, Any], out: Path, k: int, worse: float = 0.0) -> None:
    """Sampling k of the checkpoint: blurred targets, per-image noise level and brightness from default_rng([k, i])."""
    out.mkdir(parents=True, exist_ok=True)
    for i, (src, tgt) in enumerate(world["pairs"]):
        rng = np.random.default_rng([k, i])
        img = Image.open(world["root"] / "test" / tgt).convert("RGB").filter(ImageFilter.GaussianBlur(1))
        arr = np.asarray(img, dtype=np.float64)
        sigma, offset = rng.uniform(8, 24) + worse, rng.normal(0, 6)
        arr = np.clip(arr + offset + rng.normal(0, sigma, arr.shape), 0, 255).round().astype(np.uint8)
        Image.fromarray(arr).save(out / f"{Path(src).stem}__{Path(tgt).stem}.png")


def evaluate(world: dict[str, Any], pred: Path, out: Path) -> Path:
    from posebench.run.config import EvalConfig
    from posebench.run.evaluator import evaluate as run

    if not out.exists():
        run(EvalConfig(protocol="deepfashion-256x176", root=world["root"], pred=pred, out=out, profile="clean",
                       metrics=METRICS, fid_weights=world["fid"], lpips_weights=world["alex"], batch_size=16,
                       progress=False))
    return out


def gate(new: Path, base: Path) -> dict[str, dict[str, Any]]:
    """Per tolerance setting and gate: the failing metrics (intervals computed once per pair)."""
    from posebench.results.regress import compare
    from posebench.results.regress_intervals import metric_intervals
    from posebench.results.schema import read_results

    n, b = read_results(new), read_results(base)
    found, why, _ = metric_intervals(new, n, base, b, list(METRICS), resamples=2000, fid_resamples=200, seed=0)
    assert not why, why  # every metric of this simulation has an interval
    out: dict[str, dict[str, Any]] = {}
    for label, tol in TOLERANCES.items():
        point = compare(n, b, tol)
        interval = compare(n, b, tol, gate="interval", intervals=found)
        out[label] = {"point": [m.name for m in point.regressions], "interval": [m.name for m in interval.regressions]}
    out["delta"] = {m.name: m.delta for m in point.metrics}
    out["interval"] = {k: (v.low, v.high) for k, v in found.items()}
    return out


def simulate(args: argparse.Namespace) -> None:
    work = Path(args.work or tempfile.mkdtemp(prefix="regress-sim-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("POSEBENCH_HOME", str(work / "home"))  # the real-set statistics cache stays in `work`
    world = build(work, args.identities)
    print(f"work folder {work}: {len(world['pairs'])} test pairs per sampling")
    rows = []
    for p in range(args.pairs + args.regressed):
        regressed = p >= args.pairs
        t0 = time.perf_counter()
        runs = []
        for side, k in (("base", 2 * p), ("new", 2 * p + 1)):
            pred = work / f"sampling{k}{'-worse' if regressed and side == 'new' else ''}"
            if not pred.exists():
                sample(world, pred, k, worse=args.worse if regressed and side == "new" else 0.0)
            runs.append(evaluate(world, pred, pred.with_suffix(".json")))
        result = gate(runs[1], runs[0])
        result.update(pair=p, regressed=regressed)
        rows.append(result)
        print(f"pair {p}{' (worse checkpoint)' if regressed else ''}: "
              + "; ".join(f"{lab}: point {result[lab]['point']}, interval {result[lab]['interval']}"
                          for lab in TOLERANCES) + f" ({time.perf_counter() - t0:.0f} s)", flush=True)
    (work / "summary.json").write_text(json.dumps(rows, indent=1))
    for regressed in (False, True):
        chosen = [r for r in rows if r["regressed"] == regressed]
        if not chosen:
            continue
        what = "worse checkpoint (detections)" if regressed else "same checkpoint (false alarms)"
        print(f"\n{what}, {len(chosen)} pairs, {len(world['pairs'])} images each")
        print("| tolerances | gate | pairs failed | " + " | ".join(METRICS) + " |")
        print("|---|---|---|" + "---|" * len(METRICS))
        for lab, tol in TOLERANCES.items():
            for g in ("point", "interval"):
                failed = sum(bool(r[lab][g]) for r in chosen)
                per = [sum(m in r[lab][g] for r in chosen) for m in METRICS]
                tol_text = ", ".join(f"{k}={v}" for k, v in tol.items()) or "all 0"
                print(f"| {lab}: {tol_text} | {g} | {failed} / {len(chosen)} | " + " | ".join(map(str, per)) + " |")


def cost(args: argparse.Namespace) -> None:
    """Seconds per bootstrap resample of one run (FID, KID) on Gaussian features of DeepFashion's size."""
    from posebench.results.set_bootstrap import FidResampler, KidResampler

    rng = np.random.default_rng(0)
    for n in args.cost_sizes:
        gen, real = rng.normal(0.5, 1, (n, 2048)), rng.normal(0, 1, (max(n, 4096), 2048))
        mu, cov = real.mean(0), np.cov(real, rowvar=False)
        draws = rng.integers(0, n, size=(4, n))
        t0 = time.perf_counter()
        fid = FidResampler(gen, mu, cov, device=args.device)
        t1 = time.perf_counter()
        fid(draws[:1])  # the first call pays for touching the new arrays: not timed
        t1 = time.perf_counter()
        fid(draws[1:])
        t2 = time.perf_counter()
        kid = KidResampler(gen, real.astype(np.float32), num_subsets=100, max_subset_size=1000, seed=0,
                           device=args.device)
        t3 = time.perf_counter()
        kid(draws[:1])
        t3 = time.perf_counter()
        kid(draws[1:])
        t4 = time.perf_counter()
        print(f"{args.device}, n={n}, D=2048: FID set-up {t1 - t0:.1f} s (with one resample), "
              f"{(t2 - t1) / 3:.2f} s per resample; "
              f"KID set-up {t3 - t2:.1f} s, {(t4 - t3) / 3:.2f} s per resample (per run; a comparison has two runs)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=20, help="pairs of samplings of the same checkpoint")
    ap.add_argument("--regressed", type=int, default=10, help="pairs whose new run uses a worse checkpoint")
    ap.add_argument("--worse", type=float, default=4.0, help="extra pixel noise of the worse checkpoint")
    ap.add_argument("--identities", type=int, default=16, help="synthetic people (half test: 6 pairs each)")
    ap.add_argument("--work", help="folder for data, samplings and results (reused when it exists)")
    ap.add_argument("--cost", action="store_true", help="only time the FID/KID bootstrap at DeepFashion size")
    ap.add_argument("--cost-sizes", type=int, nargs="+", default=[1000, 8570])
    ap.add_argument("--device", default="cpu", help="torch device of the --cost resamplers (cpu, cuda)")
    args = ap.parse_args()
    cost(args) if args.cost else simulate(args)


if __name__ == "__main__":
    main()
