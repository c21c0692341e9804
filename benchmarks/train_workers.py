"""Training steps per second with the DataLoader's workers off (0) and on (2), on the same synthetic data.

The items (decode, resize, render the pose) are made in the training process with 0 workers and in worker
processes otherwise; everything else is identical (the batches are bit-identical, see the test suite). Both runs
are timed in one process, alternately, and reported as a ratio; the synthetic root is made at DeepFashion's size
(256x176 images) so decoding costs what it costs on real data, while the model is a config of your choice (`tiny`
by default: the step is cheap, so the data path shows).

    .venv/bin/python benchmarks/train_workers.py [--config tiny-b1] [--steps 40] [--workers 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="tiny-b1")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="alternating timed rounds per setting (median)")
    args = ap.parse_args()

    from posebench.datasets.synth import synthesize
    from reposedm.config import load_config
    from reposedm.data import PairSource
    from reposedm.train import train

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "df"
        synthesize("deepfashion", root, identities=8, poses=4, size=(256, 176), seed=0, test_fraction=0.25,
                   progress=False)
        source = PairSource("deepfashion", root, "train")
        seconds: dict[int, list[float]] = {0: [], args.workers: []}
        for r in range(args.rounds):
            for workers in seconds:
                cfg = load_config(args.config, num_workers=workers, sample_every=0, checkpoint_every=10**6,
                                  log_every=10**6)
                t0 = time.perf_counter()
                train(cfg, source=source, out=Path(tmp) / f"run-{workers}-{r}", max_steps=args.steps, progress=False)
                seconds[workers].append(time.perf_counter() - t0)
        rate = {w: args.steps / statistics.median(s) for w, s in seconds.items()}
        for w, r in rate.items():
            print(f"{args.config}, {w} workers: {r:.2f} steps/s (median of {args.rounds}, {args.steps} steps each, "
                  "setup included)")
        print(f"ratio {args.workers} workers / 0 workers: {rate[args.workers] / rate[0]:.2f}x")


if __name__ == "__main__":
    main()
