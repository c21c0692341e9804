"""Evaluation throughput: posebench's single pass vs the way peer repositories compute the same numbers.

On N synthetic DeepFashion pairs at 256x176 (copy-source predictions, randomly initialised networks of
the real architectures, so no weights are needed), in one run on one machine:

(a) ours: `posebench.evaluate` (decode once, every metric from the same arrays, float64 SSIM with
    banded-matrix Gaussian filtering, channels_last Inception) vs the reference way: separate passes per
    metric that each decode again, scikit-image SSIM per image, the lpips package, no channels_last;
(b) ours vs the Inception forward alone on the same (pre-decoded) images;
(c) the CPU preprocessing rate alone: decode + resize chains + SSIM and PSNR, no network, one thread and no
    decoding workers, in pairs per second per core (profiles clean and pidm): what bounds a GPU run, whose
    networks are fast, by the cores that feed it.
(a) and (b) run `posebench.evaluate` with `--workers` decoding processes (default 1 on a 2-core machine).
The FID real-set statistics are computed once beforehand (both sides would reuse a cache).

    .venv/bin/python benchmarks/eval_throughput.py --pairs 2000 --workers 1
    .venv/bin/python benchmarks/eval_throughput.py --pairs 8570 --workers 15 --device cuda --only-ours   # a GPU box
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def build(base: Path, pairs_wanted: int) -> tuple[Path, Path, Path, Path, int]:
    import torchvision

    from posebench.datasets.synth import synthesize
    from posebench.metrics.features import fid_inception_skeleton

    # n identities x 6 poses gives 30 test pairs per identity
    test_ids = max(1, -(-pairs_wanted // 30))
    root = base / "df"
    synthesize("deepfashion", root, identities=test_ids * 2, poses=6, size=(256, 176), seed=0, test_fraction=0.5,
               progress=True)
    pred = base / "pred"
    pred.mkdir()
    rows = [ln.split(",") for ln in (root / "fasion-resize-pairs-test.csv").read_text().split()[1:]][:pairs_wanted]
    keep = set()
    for src, tgt in rows:
        Image.open(root / "test" / src).save(pred / f"{Path(src).stem}__{Path(tgt).stem}.png")
        keep.add((src, tgt))
    # trim the pair list to the generated set so the evaluation is complete
    lines = ["from,to"] + [f"{a},{b}" for a, b in rows]
    (root / "fasion-resize-pairs-test.csv").write_text("\n".join(lines) + "\n")
    torch.manual_seed(0)
    fid_w, alex_w = base / "fid.pth", base / "alex.pth"
    torch.save(fid_inception_skeleton().state_dict(), fid_w)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), alex_w)
    return root, pred, fid_w, alex_w, len(rows)


def ours(root: Path, pred: Path, fid_w: Path, alex_w: Path, out: Path, workers: int, device: str = "cpu",
         metrics: tuple[str, ...] = ("fid", "ssim", "lpips", "psnr")) -> float:
    from posebench.run.evaluator import EvalConfig, evaluate

    cfg = EvalConfig(protocol="deepfashion-256x176", root=root, pred=pred, out=out, profile="clean",
                     metrics=metrics, fid_weights=fid_w, lpips_weights=alex_w,
                     batch_size=32 if device == "cpu" else 128, progress=False, workers=workers, device=device)
    t0 = time.perf_counter()
    evaluate(cfg)
    return time.perf_counter() - t0


def reference(root: Path, pred: Path, fid_w: Path, alex_w: Path) -> float:
    """Separate passes, each decoding again, as GFLA/PIDM-style scripts do."""
    import lpips
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from posebench.metrics.features import build_extractor
    from posebench.metrics.lpips_net import load_backbone

    files = sorted(pred.iterdir())
    gt = [root / "test" / (f.name.split("__")[1][:-4] + ".jpg") for f in files]
    t0 = time.perf_counter()
    ext = build_extractor("clean", weights=fid_w, channels_last=False)
    feats = []
    for lo in range(0, len(files), 32):  # pass 1: FID features
        x = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files[lo:lo + 32]])
        with torch.no_grad():
            feats.append(ext(torch.from_numpy(x).permute(0, 3, 1, 2).float()).numpy())
    ssims = [structural_similarity(np.asarray(Image.open(f).convert("RGB")), np.asarray(Image.open(g).convert("RGB")),
                                   gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255,
                                   channel_axis=2) for f, g in zip(files, gt, strict=True)]  # pass 2
    net = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    load_backbone(net.net, torch.load(alex_w, weights_only=True), alex_w)
    lp = []
    for f, g in zip(files, gt, strict=True):  # pass 3: LPIPS one pair at a time
        a = torch.from_numpy(np.asarray(Image.open(f).convert("RGB"))).permute(2, 0, 1)[None].float() / 127.5 - 1
        b = torch.from_numpy(np.asarray(Image.open(g).convert("RGB"))).permute(2, 0, 1)[None].float() / 127.5 - 1
        with torch.no_grad():
            lp.append(float(net(a, b)))
    ps = [peak_signal_noise_ratio(np.asarray(Image.open(g).convert("RGB")), np.asarray(Image.open(f).convert("RGB")),
                                  data_range=255) for f, g in zip(files, gt, strict=True)]  # pass 4
    del feats, ssims, lp, ps
    return time.perf_counter() - t0


def preprocessing_rate(root: Path, pred: Path, out: Path, profile: str) -> float:
    """Pairs per second on one core: decode, the profile's resize chains, SSIM (every variant) and PSNR."""
    from posebench.run.evaluator import EvalConfig, evaluate

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = EvalConfig(protocol="deepfashion-256x176", root=root, pred=pred, out=out, profile=profile,
                         metrics=("ssim", "psnr"), batch_size=32, progress=False, workers=0)
        t0 = time.perf_counter()
        res = evaluate(cfg)
        return res["predictions"]["count"] / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)


def inception_alone(pred: Path, fid_w: Path) -> float:
    from posebench.metrics.features import build_extractor

    ext = build_extractor("clean", weights=fid_w)
    imgs = [np.asarray(Image.open(f).convert("RGB")) for f in sorted(pred.iterdir())]
    t0 = time.perf_counter()
    with torch.inference_mode():
        for lo in range(0, len(imgs), 32):
            ext(torch.from_numpy(np.stack(imgs[lo:lo + 32])).permute(0, 3, 1, 2).float())
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=2, help="alternate the methods and keep each one's best")
    ap.add_argument("--workers", type=int, default=1, help="decoding processes of posebench.evaluate")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only-ours", action="store_true",
                    help="time posebench.evaluate alone (FID+KID+SSIM+LPIPS+PSNR, real statistics cached)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        import os

        os.environ.setdefault("POSEBENCH_HOME", str(Path(tmp) / "home"))
        root, pred, fid_w, alex_w, n = build(Path(tmp), args.pairs)
        if args.only_ours:
            every = ("fid", "kid", "ssim", "lpips", "psnr")
            ours(root, pred, fid_w, alex_w, Path(tmp) / "warm.json", args.workers, args.device, every)  # caches
            t = min(ours(root, pred, fid_w, alex_w, Path(tmp) / "res.json", args.workers, args.device, every)
                    for _ in range(args.repeats))
            print(f"{n} pairs at 256x176 on {args.device}, {args.workers} decoding workers, FID+KID+SSIM+LPIPS+PSNR "
                  f"with cached real statistics: {t:.1f} s ({n / t:.1f} pairs/s)")
            return
        ours(root, pred, fid_w, alex_w, Path(tmp) / "warm.json", args.workers)  # warms the real-set cache
        runs: dict[str, list[float]] = {"ours": [], "ref": [], "inc": []}
        for _ in range(args.repeats):  # interleaved, so a busy moment on a shared machine hits all three
            runs["ours"].append(ours(root, pred, fid_w, alex_w, Path(tmp) / "res.json", args.workers))
            runs["ref"].append(reference(root, pred, fid_w, alex_w))
            runs["inc"].append(inception_alone(pred, fid_w))
        t_ours, t_ref, t_inc = (min(runs[k]) for k in ("ours", "ref", "inc"))
        rates = {p: max(preprocessing_rate(root, pred, Path(tmp) / f"pre-{p}.json", p) for _ in range(args.repeats))
                 for p in ("clean", "pidm")}
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{n} pairs at 256x176, {torch.get_num_threads()} threads, {args.workers} decoding workers")
        print(f"  ours (single pass):        {t_ours:8.1f} s  ({n / t_ours:.1f} pairs/s)")
        print(f"  reference (4 passes):      {t_ref:8.1f} s  -> ours is {t_ref / t_ours:.2f}x faster")
        print(f"  Inception forward alone:   {t_inc:8.1f} s  -> ours / Inception = {t_ours / t_inc:.2f}x")
        for p, r in rates.items():
            print(f"  preprocessing alone ({p}): {r:8.1f} pairs/s on one core (decode, resize chains, SSIM, PSNR)")
        print(f"  peak RSS of the process:   {peak:8.0f} MiB")


if __name__ == "__main__":
    main()
