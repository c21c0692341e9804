"""Re-ID feature extraction speed: images/s of the runner's ResNet-50 feature pass at 256x128, and of image
loading (JPEG decode + resize into the uint8 cache) on synthetic Market images.

Random-init weights (speed does not depend on them). One run, medians of `--repeats` batches after a warm-up.
Full Market evaluation extracts 3,368 query + 15,913 gallery images; the script prints the projected time.

    .venv/bin/python benchmarks/reid_features.py [--batch 64] [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()

    from posebench.datasets.synth import synthesize
    from posebench.reid.runner import _build_model, _features, _Images

    device = torch.device(args.device)
    model = _build_model(751, pretrained=False, device=str(device)).eval()
    x = torch.randn(args.batch, 3, 256, 128, device=device)
    times = []
    with torch.no_grad():
        _features(model, x)
        for _ in range(args.repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            _features(model, x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    per_s = args.batch / statistics.median(times)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "market"
        synthesize("market", root, identities=20, poses=6, seed=0, progress=False)
        paths = sorted((root / "bounding_box_train").glob("*.jpg"))
        images = _Images((256, 128))
        t0 = time.perf_counter()
        images.batch(paths, cache=False)
        load_s = len(paths) / (time.perf_counter() - t0)

    n_eval = 3368 + 15913
    print(f"device {device}, threads {torch.get_num_threads()}, batch {args.batch}")
    print(f"ResNet-50 features at 256x128: {per_s:.1f} images/s -> full Market query+gallery ({n_eval:,}) "
          f"in {n_eval / per_s / 60:.1f} min")
    print(f"image loading (decode + resize to 256x128): {load_s:.0f} images/s on {len(paths)} synthetic JPEGs")


if __name__ == "__main__":
    main()
